//! A small command-line face of the core for cross-implementation tests: other
//! JOSE libraries check what the core produces, and the core checks what they
//! produce.
//!
//! ```text
//! interop make [--now T] [--method M] [--url U] [--bind-jkt J]
//!     prints {jwks, issuer, audience, kid, token, proof, method, url, htu, now,
//!             agent_jwk, jkt, ath}; the token is bound to the generated agent key
//!     (whose proof is `proof`), or with --bind-jkt to a key held elsewhere
//! interop verify-proof --method M --url U --now T [--jkt J] [--ath-token TOKEN] [--no-es256]
//!     reads a DPoP proof on stdin; prints {ok, code, reason, message, jkt, alg, jti, htu}
//! interop verify-request
//!     reads {jwks, issuer, audience, authorization, dpop, method, url, now} on stdin
//!     (`dpop` a string or a list of header values); prints {ok, code, reason, message,
//!     claims, jkt}
//! interop thumbprint
//!     reads a JWK on stdin; prints {jkt}
//! ```
//!
//! Exit status: 0 when the check passed (or for `make`), 1 when the input was
//! refused (the JSON says why), 2 for a usage error.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a CLI prints

use std::io::Read as _;
use std::process::ExitCode;
use std::result::Result;

use protonpass_agent::*;
use serde_json::{Map, Value, json};

mod common;

use common::ISSUER;

const AUDIENCE: &str = "https://api.example";
const KID: &str = "broker-2026-1";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        return usage("no command");
    };
    let result = match cmd.as_str() {
        "make" => make(rest),
        "verify-proof" => verify_proof_cmd(rest),
        "verify-request" => verify_request_cmd(rest),
        "thumbprint" => thumbprint_cmd(rest),
        other => return usage(&format!("unknown command {other:?}")),
    };
    match result {
        Ok((out, passed)) => {
            println!("{out}");
            if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(msg) => usage(&msg),
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!(
        "interop: {msg}\nusage: interop make [--now T] [--method M] [--url U] [--bind-jkt J]\n       \
         interop verify-proof --method M --url U --now T [--jkt J] [--ath-token TOKEN] [--no-es256] < proof\n       \
         interop verify-request < request.json\n       \
         interop thumbprint < jwk.json"
    );
    ExitCode::from(2)
}

/// `--name value` options and `--flag` switches.
struct Opts(Vec<(String, Option<String>)>);

impl Opts {
    fn parse(args: &[String], flags: &[&str], valued: &[&str]) -> Result<Self, String> {
        let mut out = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let name = a
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {a:?}"))?;
            if flags.contains(&name) {
                out.push((name.to_owned(), None));
            } else if valued.contains(&name) {
                let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                out.push((name.to_owned(), Some(v.clone())));
            } else {
                return Err(format!("unknown option --{name}"));
            }
        }
        Ok(Opts(out))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    fn time(&self, name: &str) -> Result<Option<i64>, String> {
        self.get(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("--{name} must be an integer"))
            })
            .transpose()
    }
}

fn read_stdin() -> Result<String, String> {
    let mut s = String::new();
    std::io::stdin()
        .take(1 << 20)
        .read_to_string(&mut s)
        .map_err(|e| format!("reading stdin: {e}"))?;
    Ok(s)
}

fn refusal(e: &Error) -> Value {
    json!({
        "ok": false,
        "code": e.code(),
        "reason": e.reason().map(Reason::as_str),
        "message": e.to_string(),
    })
}

fn make(args: &[String]) -> Result<(Value, bool), String> {
    let o = Opts::parse(args, &[], &["now", "method", "url", "bind-jkt"])?;
    let now = o.time("now")?.unwrap_or_else(|| SystemClock.now());
    let method = o.get("method").unwrap_or("POST");
    let url = o
        .get("url")
        .unwrap_or("https://api.example/bookings?trip=42");
    let rng = OsRandom;
    let fail = |e: Error| e.to_string();
    let broker = SigningKey::new(KID, AgentKey::generate(&rng).map_err(fail)?);
    let agent = AgentKey::generate(&rng).map_err(fail)?;
    let jkt = o.get("bind-jkt").unwrap_or(agent.thumbprint());
    let scope = "travel:search travel:book";
    let claims = common::travel_bot_claims(&rng, now, AUDIENCE, scope, jkt).map_err(fail)?;
    let token = broker.sign(&claims);
    let proof = create_proof(
        &agent,
        &ProofInput {
            method,
            url,
            access_token: Some(&token),
            ..Default::default()
        },
        now,
        &rng,
    )
    .map_err(fail)?;
    let out = json!({
        "jwks": { "keys": [broker.public_jwk_json()] },
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "kid": KID,
        "token": token,
        "proof": proof,
        "method": method,
        "url": url,
        "htu": normalize_htu(url),
        "now": now,
        "agent_jwk": agent.public_jwk().to_json(),
        "jkt": o.get("bind-jkt").unwrap_or(agent.thumbprint()),
        "ath": access_token_hash(&token),
    });
    Ok((out, true))
}

fn verify_proof_cmd(args: &[String]) -> Result<(Value, bool), String> {
    let o = Opts::parse(
        args,
        &["no-es256"],
        &["method", "url", "now", "jkt", "ath-token"],
    )?;
    let method = o.get("method").ok_or("--method is required")?;
    let url = o.get("url").ok_or("--url is required")?;
    let now = o.time("now")?.ok_or("--now is required")?;
    let proof = read_stdin()?;
    let check = ProofCheck {
        method,
        url,
        access_token: o.get("ath-token"),
        expected_jkt: o.get("jkt"),
        nonce: None,
    };
    let opts = ProofOptions {
        allow_es256: !o.has("no-es256"),
        ..ProofOptions::default()
    };
    Ok(match verify_proof(proof.trim(), &check, &opts, now) {
        Ok(p) => (
            json!({
                "ok": true, "code": null, "reason": null,
                "jkt": p.jkt, "alg": p.alg.as_str(), "jti": p.jti, "htu": p.htu,
            }),
            true,
        ),
        Err(e) => (refusal(&e), false),
    })
}

fn verify_request_cmd(args: &[String]) -> Result<(Value, bool), String> {
    Opts::parse(args, &[], &[])?;
    let input: Map<String, Value> =
        serde_json::from_str(&read_stdin()?).map_err(|e| format!("stdin: {e}"))?;
    let s = |name: &str| {
        input
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("`{name}` must be a string"))
    };
    let jwks = match input.get("jwks") {
        Some(Value::String(t)) => t.clone(),
        Some(v @ Value::Object(_)) => v.to_string(),
        _ => return Err("`jwks` must be an object or a string".into()),
    };
    let dpop: Vec<String> = match input.get("dpop") {
        Some(Value::String(p)) => vec![p.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or("`dpop` must hold strings")?,
        None => Vec::new(),
        _ => return Err("`dpop` must be a string or a list".into()),
    };
    let now = input
        .get("now")
        .and_then(Value::as_i64)
        .ok_or("`now` must be an integer")?;
    let keys = match KeySet::from_jwks_json(&jwks) {
        Ok(k) => k,
        Err(e) => return Ok((refusal(&e), false)),
    };
    let validation = TokenValidation::new(s("issuer")?, s("audience")?);
    let proofs = ProofVerifier::default();
    Ok(
        match verify_request(
            s("method")?,
            s("url")?,
            &[s("authorization")?],
            &dpop,
            &keys,
            &validation,
            &proofs,
            None,
            now,
        ) {
            Ok(r) => (
                json!({
                    "ok": true, "code": null, "reason": null,
                    "claims": {
                        "iss": r.claims.iss, "sub": r.claims.sub, "aud": r.claims.aud,
                        "client_id": r.claims.client_id, "jti": r.claims.jti,
                        "scope": r.claims.scope, "exp": r.claims.exp, "jkt": r.claims.jkt,
                    },
                    "jkt": r.proof.jkt,
                }),
                true,
            ),
            Err(e) => (refusal(&e), false),
        },
    )
}

fn thumbprint_cmd(args: &[String]) -> Result<(Value, bool), String> {
    Opts::parse(args, &[], &[])?;
    let m = json::parse_object(read_stdin()?.as_bytes())?;
    Ok(match jwk_thumbprint(&m) {
        Ok(jkt) => (json!({ "ok": true, "jkt": jkt }), true),
        Err(e) => (refusal(&e), false),
    })
}
