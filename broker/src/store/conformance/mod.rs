//! The contract every store backend passes: one set of functions over
//! [`Store`] and [`Tx`](super::Tx), run against a fresh SQLite store always
//! and against PostgreSQL when `PROTONPASS_TEST_STORE` holds a postgres://
//! URL of a server the tests may create databases on (`make test-postgres`).
//! A new backend is added by opening it in [`each_backend`] and passing.
//!
//! Each contract gets a store of its own, so that none depends on what
//! another left behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod logs;
mod once;
mod records;

use std::sync::Arc;
use std::time::Duration;

use super::Store;
use super::postgres::{PgStore, PgUrl};
use super::sqlite::SqliteStore;

/// A contract: what the store must do, asserted.
type Contract = fn(&Arc<dyn Store>);

const CONTRACTS: &[(&str, Contract)] = &[
    ("grants", records::grants),
    ("tokens", records::tokens),
    ("devices", records::devices),
    ("stepups", records::stepups),
    ("audit", logs::audit),
    ("budgets", logs::budgets),
    ("budget_totals", logs::budget_totals),
    ("revocation_feed", logs::revocation_feed),
    ("pruning", logs::pruning),
    ("taken_once", once::taken_once),
    ("auth_codes", once::auth_codes),
    ("dashboard", once::dashboard),
    ("proofs_once", once::proofs_once),
];

#[test]
fn every_backend_keeps_the_store_contract() {
    each_backend(|backend, open| {
        for (name, contract) in CONTRACTS {
            eprintln!("store contract {name} on {backend}");
            let (store, _keep) = open();
            contract(&store);
        }
    });
}

/// What must live as long as a store (its SQLite directory).
type Keep = Option<tempfile::TempDir>;

/// Run `f` with a way to open a fresh store of each backend under test.
fn each_backend(f: impl Fn(&str, &dyn Fn() -> (Arc<dyn Store>, Keep))) {
    f("sqlite", &|| {
        let dir = tempfile::tempdir().unwrap();
        let s: Arc<dyn Store> =
            SqliteStore::open_with(&dir.path().join("broker.db"), Duration::from_secs(10)).unwrap();
        (s, Some(dir))
    });
    if let Some(base) = protonpass_e2e::test_store() {
        f("postgres", &|| {
            let url = protonpass_e2e::fresh_database(base.trim(), "conf");
            let s: Arc<dyn Store> = PgStore::open(&PgUrl::parse(&url).unwrap()).unwrap();
            (s, None)
        });
    }
}
