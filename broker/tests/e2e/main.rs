//! End-to-end tests: each starts the real broker binary on 127.0.0.1:0 with a
//! throw-away data directory and speaks HTTP to it.

// A test crate: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod authcode;
mod budget;
mod catalog;
mod challenges;
mod cli;
mod client_documents;
mod config;
mod crash;
mod dash_pages;
mod dashboard;
mod dashboard_budget;
mod dashboard_catalog;
mod dashboard_resources;
mod device;
mod discovery;
mod exposure;
mod files;
mod flows;
mod gateway;
mod gateway_oauth;
mod hostile;
mod inputs;
mod lifetime;
mod logs;
mod mfa;
mod oauth_provider;
mod operator;
mod ops;
mod owners;
mod passkey;
mod persistence;
mod postgres;
mod postgres_replicas;
mod proxy;
mod ratelimit;
mod replicas;
mod replicas_faults;
mod revocation;
mod schema;
mod stepup;
mod stepup_dashboard;
mod stepup_more;
mod stepup_owner;
mod stepup_redeem;
mod stepup_webhook;
mod waiting;
