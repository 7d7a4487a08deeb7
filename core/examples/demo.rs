//! A walk through one DPoP-bound request, from keys to the resource server's
//! decision, including the requests it must refuse.
//!
//! Run with `cargo run -p protonpass-agent --example demo`.

#![allow(clippy::print_stdout)] // a demo prints what it does

use std::process::ExitCode;

use protonpass_agent::*;
use rust_decimal::Decimal;

mod common;

use common::ISSUER;

const AUDIENCE: &str = "https://api.travel.example";
const URL: &str = "https://api.travel.example/bookings?trip=42";

fn main() -> ExitCode {
    match run() {
        Ok(()) => {
            println!("\nEverything behaved as expected.");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            println!("\nUNEXPECTED: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Print one refused request and check it was refused for the expected reason.
fn expect_refusal(
    what: &str,
    result: Result<VerifiedRequest>,
    code: &str,
    reason: Option<Reason>,
) -> std::result::Result<(), String> {
    match result {
        Ok(_) => Err(format!("{what}: was accepted but must be refused")),
        Err(e) if e.code() == code && e.reason() == reason => {
            println!(
                "   refused, as it must be: HTTP {} {} ({})",
                status_for(&e),
                e.code(),
                e.reason().map_or("-", Reason::as_str)
            );
            Ok(())
        }
        Err(e) => Err(format!(
            "{what}: refused with {} ({:?}), expected {code} ({reason:?})",
            e.code(),
            e.reason()
        )),
    }
}

fn run() -> std::result::Result<(), String> {
    let rng = OsRandom;
    let now = SystemClock.now();
    let fail = |e: Error| e.to_string();

    println!("1. The agent generates its own Ed25519 key; the private half never leaves it.");
    let agent = AgentKey::generate(&rng).map_err(fail)?;
    println!(
        "   agent key thumbprint (RFC 7638, what the token binds to): {}",
        agent.thumbprint()
    );

    println!("\n2. The broker has a signing key and publishes it as a JWKS.");
    let broker = SigningKey::new("broker-key-1", AgentKey::generate(&rng).map_err(fail)?);
    let jwks = serde_json::json!({ "keys": [broker.public_jwk_json()] }).to_string();
    println!("   {jwks}");
    let keys = KeySet::from_jwks_json(&jwks).map_err(fail)?;
    println!(
        "   the API loaded {} key(s) from it, kid {:?}",
        keys.len(),
        broker.kid
    );

    println!("\n3. The owner approved a grant; the broker issues a one-hour access token.");
    let scope = "travel:search travel:book payment:execute:under-100";
    let claims =
        common::travel_bot_claims(&rng, now, AUDIENCE, scope, agent.thumbprint()).map_err(fail)?;
    let token = broker.sign(&claims);
    println!(
        "   token ({} bytes), scope {:?}, bound to the agent's key",
        token.len(),
        claims.scope
    );

    println!("\n4. The agent signs a fresh DPoP proof for POST {URL}.");
    let proof = create_proof(
        &agent,
        &ProofInput {
            method: "POST",
            url: URL,
            access_token: Some(&token),
            reason: Some("book the flight the user picked"),
            ..Default::default()
        },
        now,
        &rng,
    )
    .map_err(fail)?;
    println!(
        "   proof ({} bytes), signed with the agent's key",
        proof.len()
    );

    println!("\n5. The API checks the whole request: token, proof, binding, replay.");
    let validation = TokenValidation::new(ISSUER, AUDIENCE);
    let proofs = ProofVerifier::default();
    let auth = [format!("DPoP {token}")];
    // Every request below is a POST to URL, checked against the same keys,
    // validation and replay cache: only the headers and the time change.
    let check = |auth: &[String], dpop: &[String], at: i64| {
        verify_request(
            "POST",
            URL,
            auth,
            dpop,
            &keys,
            &validation,
            &proofs,
            None,
            at,
        )
    };
    // A proof for POST URL bound to `token`, signed by `key` at `at`.
    let sign = |key: &AgentKey, token: &str, at: i64| {
        create_proof(
            key,
            &ProofInput {
                method: "POST",
                url: URL,
                access_token: Some(token),
                ..Default::default()
            },
            at,
            &rng,
        )
        .map_err(fail)
    };
    let ok = check(&auth, std::slice::from_ref(&proof), now).map_err(fail)?;
    println!(
        "   accepted: agent {:?} acting for {:?}, token {}, proof key {}",
        ok.claims.client_id, ok.claims.sub, ok.claims.jti, ok.proof.jkt
    );
    println!(
        "   the agent said why: {:?}",
        ok.proof.reason.as_deref().unwrap_or("")
    );
    if ok.proof.jkt != agent.thumbprint() {
        return Err("the verified proof key is not the agent's".into());
    }

    println!("\n6. The API checks the scopes this endpoint needs.");
    let granted = ScopeSet::parse(&ok.claims.scope).map_err(fail)?;
    granted.require("travel:book").map_err(fail)?;
    println!("   travel:book       -> allowed");
    match granted.require("calendar:read") {
        Err(e) if e.code() == "insufficient_scope" => {
            println!(
                "   calendar:read     -> refused: HTTP {} {}",
                status_for(&e),
                e.code()
            );
        }
        other => return Err(format!("calendar:read must be refused, got {other:?}")),
    }

    println!("\n7. And the amount of a payment against payment:execute:under-100.");
    for (amount, expected) in [
        (Decimal::new(4250, 2), true),
        (Decimal::new(9999, 2), true),
        (Decimal::new(100, 0), false),
        (Decimal::new(250, 0), false),
    ] {
        let allowed = granted.allows_amount("payment:execute", amount);
        println!(
            "   pay {amount:>6} -> {}",
            if allowed { "allowed" } else { "refused" }
        );
        if allowed != expected {
            return Err(format!(
                "amount {amount}: got {allowed}, expected {expected}"
            ));
        }
    }

    println!("\n8. An attacker replays the same request (token and proof) captured on the wire.");
    let replay = check(&auth, std::slice::from_ref(&proof), now);
    expect_refusal("replay", replay, "invalid_dpop_proof", Some(Reason::Replay))?;

    println!("\n9. The attacker edits the token's payload to widen its scope.");
    let tampered = widen_scope(&token)?;
    let result = check(
        &[format!("DPoP {tampered}")],
        &[sign(&agent, &tampered, now)?],
        now,
    );
    expect_refusal(
        "tampered token",
        result,
        "invalid_token",
        Some(Reason::Signature),
    )?;

    println!("\n10. The attacker stole the token and signs proofs with a key of its own.");
    let thief = AgentKey::generate(&rng).map_err(fail)?;
    let stolen_proof = sign(&thief, &token, now)?;
    let result = check(&auth, &[stolen_proof], now);
    expect_refusal(
        "stolen token",
        result,
        "invalid_dpop_proof",
        Some(Reason::KeyBinding),
    )?;

    println!("\n11. The attacker sends the token as a plain bearer token, with no proof.");
    let result = check(&[format!("Bearer {token}")], &[] as &[String], now);
    expect_refusal("bearer", result, "invalid_token", Some(Reason::Scheme))?;

    println!("\n12. The agent's own proof, sent an hour later, once the token has expired.");
    let later = now + 3600 + 60;
    let late_proof = sign(&agent, &token, later)?;
    let result = check(&auth, &[late_proof], later);
    expect_refusal("expired", result, "invalid_token", Some(Reason::Expired))?;
    Ok(())
}

/// Re-encode the token's payload with a wider scope, keeping the header and the
/// original signature, as an attacker without the broker's key would.
fn widen_scope(token: &str) -> std::result::Result<String, String> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("the token is not a compact JWS".into());
    };
    let payload = protonpass_agent::b64::decode(p).ok_or("payload is not base64url")?;
    let mut claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
    claims.insert(
        "scope".into(),
        "travel:search travel:book payment:execute".into(),
    );
    let payload = serde_json::to_vec(&claims).map_err(|e| e.to_string())?;
    println!("   new scope: \"travel:search travel:book payment:execute\" (no limit)");
    Ok(format!(
        "{h}.{}.{s}",
        protonpass_agent::b64::encode(payload)
    ))
}
