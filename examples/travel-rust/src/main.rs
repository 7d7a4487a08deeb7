//! The travel-booking case study, end to end, on the embedded defaults.
//!
//! A person runs the broker; a travel API trusts it; a travel agent asks for
//! `travel:search`, `travel:book` and `payment:execute:under-500`; the person
//! approves (here, through the broker's `approve` command, as a script would);
//! the agent searches, books and pays; a payment above its limit is refused by
//! the API; the person revokes the grant and the agent is cut off at once;
//! finally the audit log is printed and its hash chain verified.
//!
//! Run with `make demo` (or `cargo run -p protonpass-travel-demo`).

#![allow(clippy::print_stdout, clippy::print_stderr)] // a demo narrates

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::routing::{get, post};
use protonpass_agent::net::axum_layer::{Agent, Protected};
use protonpass_agent::*;
use rust_decimal::Decimal;

#[path = "../../demo-kit/broker.rs"]
mod demo_kit;

use demo_kit::{
    Fallible, approving_prompt, authenticate_agent, call, cli, close_and_audit, expect, finish,
    setup, start_broker, step,
};

const DONE: &str =
    "The travel demo completed: approved, used, refused above its limit, revoked, audited.";

/// The travel API's port, bound first: its URL names the audience (a session
/// sends its token only to URLs under its audience).
async fn bind_travel_api() -> Fallible<(tokio::net::TcpListener, String)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let base = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    Ok((listener, base))
}

/// The travel API: every route verifies the DPoP-bound token and its scope.
async fn start_travel_api(
    verifier: Verifier,
    listener: tokio::net::TcpListener,
    base: String,
) -> Fallible<String> {
    type Reply = std::result::Result<String, Rejection>;
    async fn flights(agent: Agent) -> Reply {
        agent.require("travel:search")?;
        Ok(r#"[{"flight":"TP 1234","from":"LIS","to":"CDG","price":180}]"#.into())
    }
    async fn hotels(agent: Agent) -> Reply {
        agent.require("travel:search")?;
        Ok(r#"[{"hotel":"Le Petit","city":"Paris","price_per_night":95}]"#.into())
    }
    async fn bookings(agent: Agent) -> Reply {
        agent.require("travel:book")?;
        Ok(r#"{"booking":"BK-0001","status":"held"}"#.into())
    }
    // readme:begin rust-api
    async fn payments(agent: Agent, Query(q): Query<HashMap<String, String>>) -> Reply {
        let amount: Decimal = q
            .get("amount")
            .and_then(|a| a.parse().ok())
            .unwrap_or(Decimal::MAX);
        agent.require_amount("payment:execute", amount)?;
        Ok(format!(r#"{{"paid":{amount}}}"#))
    }
    let app = Router::new()
        .route("/travel/flights", get(flights))
        .route("/travel/hotels", get(hotels))
        .route("/travel/bookings", post(bookings))
        .route("/travel/payments", post(payments))
        .with_state(Protected::new(verifier, base.clone()));
    // readme:end rust-api
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(base)
}

async fn run() -> Fallible<()> {
    let (bin, data, home) = setup()?;

    step(
        1,
        "The person starts their broker (embedded SQLite, loopback only).",
    );
    let (broker, issuer) = start_broker(&bin, data.path())?;
    println!("   broker at {}", issuer);

    step(
        2,
        "The travel API starts and trusts the broker's keys and revocation feed.",
    );
    let (listener, base) = bind_travel_api().await?;
    let audience = format!("{base}/travel");
    let verifier = Verifier::new(VerifierOptions::new(issuer.clone(), &audience))
        .await
        .map_err(|e| e.to_string())?;
    let base = start_travel_api(verifier, listener, base).await?;
    println!("   travel API at {base}/travel (audience {audience})");

    step(
        3,
        "The agent asks for access; the broker shows the person a code.",
    );
    let prompt = approving_prompt(&bin, data.path(), "1d", |p: &DevicePrompt| {
        println!(
            "   agent says: open {} and confirm the code {}",
            p.verification_uri_complete
                .as_deref()
                .unwrap_or(&p.verification_uri),
            p.user_code
        );
        println!("   the person approves, with a 1-day lifetime:");
    });
    let scopes = ["travel:search", "travel:book", "payment:execute:under-500"];
    let session = authenticate_agent(
        &scopes,
        &audience,
        "travel-bot",
        "plan the trip to Paris",
        &issuer,
        home.path(),
        prompt,
    )
    .await?;
    println!(
        "   granted: {} (key {}...)",
        session.scopes(),
        &session.thumbprint()[..8]
    );

    step(4, "The agent searches flights and hotels.");
    let api = format!("{base}/travel");
    expect(
        &session,
        "GET",
        &api,
        "/flights",
        "find flights to Paris",
        200,
    )
    .await?;
    expect(&session, "GET", &api, "/hotels", "find a hotel", 200).await?;

    step(
        5,
        "It proposes the itinerary; the person confirms the booking (answered automatically here).",
    );
    println!("   agent: book TP 1234 and Le Petit, total 465? person: yes");
    let why = "book the confirmed itinerary";
    expect(&session, "POST", &api, "/bookings", why, 200).await?;
    let (path, why) = ("/payments?amount=465", "pay the booking");
    expect(&session, "POST", &api, path, why, 200).await?;

    step(
        6,
        "A payment above the agent's limit is refused by the API.",
    );
    let (path, why) = ("/payments?amount=800", "upgrade to first class");
    expect(&session, "POST", &api, path, why, 403).await?;
    println!("   agent reports: \"I may not pay 800: my limit is under 500.\"");

    step(7, "The person cuts the agent off.");
    println!("   $ protonpass-broker revoke --agent travel-bot");
    cli(
        &bin,
        data.path(),
        &["revoke", "--agent", "travel-bot"],
        None,
    )?;
    let mut cut = None;
    for _ in 0..50 {
        match call(&session, "GET", &api, "/flights", "search again").await {
            Ok((200, _)) => tokio::time::sleep(Duration::from_millis(20)).await,
            Ok((s, www)) => {
                cut = Some(format!("{s} {www}"));
                break;
            }
            Err(e) => {
                cut = Some(e);
                break;
            }
        }
    }
    let cut = cut.ok_or("the revoked agent was not cut off")?;
    println!("   the agent's next call fails: {cut}");
    close_and_audit(8, &session, &bin, data.path(), broker).await
}

#[tokio::main]
async fn main() -> ExitCode {
    finish(run().await, DONE)
}
