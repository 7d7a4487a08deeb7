//! The examples of the specification (`spec/*.md`), generated with the real
//! code so that they cannot go stale.
//!
//! Every example sits in a spec file between `<!-- example: NAME -->` and
//! `<!-- /example -->`. This test builds each one with a fixed clock, fixed
//! keys (the RFC 8037 key from `spec/vectors/`) and deterministic randomness,
//! and compares it with the text between the markers. With
//! `PROTONPASS_BLESS=1` it rewrites the spec files instead.

// A test crate: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod binary;
mod protocol;
mod wire;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use axum::response::IntoResponse;
use axum::response::sse::{Event, Sse};
use binary::from_the_binary;
use protocol::{dpop, scopes, tokens};
use protonpass_agent::wire::{
    Confirmation, DeviceAuthorizationResponse, ErrorBody, IntrospectionResponse, RevocationEvent,
    RevocationFeed, ServerMetadata, TOKEN_TYPE_ACCESS, TokenResponse, UsageEvent, UsageReport,
    oauth_status,
};
use protonpass_agent::{
    AccessTokenClaims, AgentKey, Clock, Error, KeySet, ProofCheck, ProofInput, ProofVerifier,
    Random, Reason, Scope, ScopeSet, SigningKey, TokenValidation, b64, create_proof, json,
    normalize_htu, random_id, status_for, verify_access_token, verify_request, www_authenticate,
};
use wire::{audit, errors, feed, wire};

use protonpass_broker::audit::{GENESIS, record_hash};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// 2026-01-01T00:00:00Z: the fixed clock of every example.
const NOW: i64 = 1_767_225_600;
const ISSUER: &str = "https://auth.example.com";
const AUDIENCE: &str = "https://api.example.com";
const OWNER: &str = "alice";
const AGENT: &str = "travel-bot";
const SCOPE: &str = "travel:search travel:book:under-500";

/// Deterministic "randomness": SHA-256 of a counter. For examples only.
#[derive(Debug, Default)]
struct Counter(AtomicU64);

impl Random for Counter {
    fn fill(&self, buf: &mut [u8]) -> protonpass_agent::Result<()> {
        for chunk in buf.chunks_mut(32) {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            let d = Sha256::digest(format!("protonpass spec example {n}"));
            chunk.copy_from_slice(&d[..chunk.len()]);
        }
        Ok(())
    }
}

fn spec_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec")
}

fn rfc8037_key() -> AgentKey {
    let text = std::fs::read_to_string(spec_dir().join("vectors/rfc8037-vectors.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    AgentKey::from_private_jwk(&v["A1_private_jwk"].to_string()).unwrap()
}

fn fence(lang: &str, body: &str) -> String {
    format!("```{lang}\n{}\n```", body.trim_end())
}

fn pretty(v: &impl serde::Serialize) -> String {
    fence("json", &serde_json::to_string_pretty(v).unwrap())
}

/// The decoded header and payload of a compact JWS.
fn decode_jws(jws: &str) -> (Value, Value) {
    let mut parts = jws.split('.');
    let mut part = || {
        let bytes = b64::decode(parts.next().unwrap()).unwrap();
        Value::Object(json::parse_object(&bytes).unwrap())
    };
    (part(), part())
}

/// Wrap a long single-line value for display (a JWS has no white space, so
/// the reader joins the lines back).
fn wrap(s: &str, width: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    chars
        .chunks(width)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

struct World {
    rng: Counter,
    broker: SigningKey,
    agent: AgentKey,
    claims: AccessTokenClaims,
    token: String,
    url: &'static str,
    proof: String,
    refresh: String,
}

impl World {
    fn new() -> World {
        let rng = Counter::default();
        let broker_key = AgentKey::from_seed(&Sha256::digest("protonpass spec broker key").into());
        // The broker names a key by the first 16 characters of its thumbprint.
        let kid: String = broker_key.thumbprint().chars().take(16).collect();
        let broker = SigningKey::new(kid, broker_key);
        let agent = rfc8037_key();
        let claims = AccessTokenClaims {
            iss: ISSUER.into(),
            sub: OWNER.into(),
            aud: AUDIENCE.into(),
            client_id: AGENT.into(),
            iat: NOW,
            exp: NOW + 3600,
            jti: random_id(&rng, 16).unwrap(),
            scope: SCOPE.into(),
            jkt: agent.thumbprint().into(),
            gid: random_id(&rng, 16).unwrap(),
            act_sub: AGENT.into(),
        };
        let token = broker.sign(&claims);
        let url = "https://api.example.com/bookings?trip=42";
        let input = ProofInput {
            method: "POST",
            url,
            access_token: Some(&token),
            nonce: None,
            reason: Some("book the flight the user chose"),
        };
        let proof = create_proof(&agent, &input, NOW, &rng).unwrap();
        let refresh = format!("rt_{}", random_id(&rng, 32).unwrap());
        World {
            rng,
            broker,
            agent,
            claims,
            token,
            url,
            proof,
            refresh,
        }
    }

    fn keys(&self) -> KeySet {
        let mut keys = KeySet::default();
        keys.insert(&self.broker.kid, &self.broker.key().public_jwk())
            .unwrap();
        keys
    }
}

/// Every example, by name.
fn examples() -> BTreeMap<&'static str, String> {
    let w = World::new();
    let mut out = BTreeMap::new();
    tokens(&w, &mut out);
    dpop(&w, &mut out);
    scopes(&mut out);
    wire(&w, &mut out);
    errors(&w, &mut out);
    feed(&mut out);
    audit(&mut out);
    from_the_binary(&w, &mut out);
    out
}

fn hex(bytes: &[u8]) -> String {
    protonpass_broker::audit::hex(bytes)
}

/// One marked example in a spec file.
struct Marked {
    file: PathBuf,
    name: String,
    /// Byte range of the text between the markers.
    range: std::ops::Range<usize>,
}

const OPEN: &str = "<!-- example: ";
const CLOSE: &str = "<!-- /example -->";

fn markers(file: &Path, text: &str) -> Vec<Marked> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find(OPEN) {
        let start = from + i;
        // A marker is a line of its own; one quoted inside text is not.
        if start > 0 && !text[..start].ends_with('\n') {
            from = start + OPEN.len();
            continue;
        }
        let name_end = start + text[start..].find(" -->").unwrap();
        let name = text[start + OPEN.len()..name_end].trim().to_owned();
        let body_start = name_end + " -->".len();
        let body_start = body_start + usize::from(text[body_start..].starts_with('\n'));
        let end = body_start
            + text[body_start..]
                .find(CLOSE)
                .unwrap_or_else(|| panic!("{}: example {name} is not closed", file.display()));
        out.push(Marked {
            file: file.to_owned(),
            name,
            range: body_start..end,
        });
        from = end + CLOSE.len();
    }
    out
}

fn spec_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(spec_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    files.sort();
    files
}

/// The lines that differ, numbered, for the failure message.
fn diff(expected: &str, found: &str) -> String {
    let (e, f): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), found.lines().collect());
    let mut out = String::new();
    for i in 0..e.len().max(f.len()) {
        let (a, b) = (e.get(i), f.get(i));
        if a != b {
            let _ = writeln!(
                out,
                "  line {}:\n    spec: {:?}\n    code: {:?}",
                i + 1,
                b,
                a
            );
        }
    }
    out
}

#[test]
fn spec_examples_match_the_code() {
    let generated = examples();
    let bless = std::env::var("PROTONPASS_BLESS").is_ok_and(|v| v == "1");
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for file in spec_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let marks = markers(&file, &text);
        let mut new_text = text.clone();
        for m in marks.iter().rev() {
            *seen.entry(m.name.clone()).or_default() += 1;
            let Some(want) = generated.get(m.name.as_str()) else {
                failures.push(format!(
                    "{}: example `{}` has no generator in broker/tests/spec_examples/",
                    m.file.display(),
                    m.name
                ));
                continue;
            };
            let want = format!("{want}\n");
            let found = &text[m.range.clone()];
            if found != want {
                if bless {
                    new_text.replace_range(m.range.clone(), &want);
                } else {
                    failures.push(format!(
                        "{}: example `{}` differs from what the code produces:\n{}",
                        m.file.display(),
                        m.name,
                        diff(&want, found)
                    ));
                }
            }
        }
        if bless && new_text != text {
            std::fs::write(&file, new_text).unwrap();
        }
    }
    for name in generated.keys() {
        match seen.get(*name) {
            None => failures.push(format!(
                "example `{name}` is generated but no spec file has `<!-- example: {name} -->`"
            )),
            Some(1) => {}
            Some(n) => failures.push(format!("example `{name}` is marked {n} times")),
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\n(run with PROTONPASS_BLESS=1 to rewrite the spec from the code)",
        failures.join("\n\n")
    );
}

#[test]
fn examples_are_deterministic() {
    // Two runs give the same bytes: nothing reads the real clock or the OS RNG.
    let (a, b) = (World::new(), World::new());
    assert_eq!(a.token, b.token);
    assert_eq!(a.proof, b.proof);
    assert_eq!(a.refresh, b.refresh);
}
