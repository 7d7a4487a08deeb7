//! RFC 9728 protected-resource metadata served by the axum helper, and the
//! `resource_metadata` parameter of the verifier's `401` challenges, with a
//! real broker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::Router;
use axum::routing::get;
use common::enrolled;
use protonpass_agent::net::axum_layer::{Agent, Protected, resource_metadata_router};
use protonpass_agent::resource_metadata::{ResourceMetadata, metadata_url};
use protonpass_agent::{Rejection, Verifier, VerifierOptions};
use protonpass_e2e::Broker;

/// An MCP-like API whose resource is `{base}/mcp`: GET /mcp needs travel:book.
async fn serve(broker: &Broker) -> (String, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let resource = format!("{base}/mcp");
    let mut o = VerifierOptions::new(broker.url.clone(), resource.clone());
    o.resource_metadata = Some(metadata_url(&resource).unwrap());
    let v = Verifier::new(o).await.unwrap();
    let meta = ResourceMetadata::new(
        &resource,
        &broker.url,
        &["travel:search".into(), "travel:book".into()],
    )
    .unwrap()
    .with_documentation(Some("https://docs.example/travel"));
    async fn book(agent: Agent) -> Result<String, Rejection> {
        agent.require("travel:book")?;
        Ok("booked".into())
    }
    let app = Router::new()
        .route("/mcp", get(book))
        .with_state(Protected::new(v, base.clone()))
        .merge(resource_metadata_router(&meta).unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, resource)
}

#[tokio::test]
async fn the_api_names_its_broker_and_its_scopes() {
    let broker = Broker::start(&[]);
    let (base, resource) = serve(&broker).await;
    let http = reqwest::Client::new();
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["resource"], resource.as_str());
        assert_eq!(v["authorization_servers"][0], broker.url.as_str());
        assert_eq!(v["scopes_supported"][1], "travel:book");
        assert_eq!(v["dpop_bound_access_tokens_required"], true);
        assert!(
            v["dpop_signing_alg_values_supported"]
                .as_array()
                .unwrap()
                .contains(&"EdDSA".into())
        );
        assert_eq!(v["resource_documentation"], "https://docs.example/travel");
    }
    // A 401 points at the metadata (RFC 9728 section 5.1).
    let r = http.get(format!("{base}/mcp")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let www = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        www.contains(&format!(
            "resource_metadata=\"{base}/.well-known/oauth-protected-resource/mcp\""
        )),
        "{www}"
    );
    // A 403 names the scope needed (RFC 6750 section 3).
    let home = tempfile::tempdir().unwrap();
    let s = enrolled(&broker, home.path(), &resource).await;
    let r = s
        .send("GET", &format!("{base}/mcp"), &[], None, None)
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let www = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(www.contains("error=\"insufficient_scope\""), "{www}");
    assert!(www.contains("scope=\"travel:book\""), "{www}");
}

/// Options for an agent that knows only the resource: no broker URL.
fn discovering(home: &std::path::Path, code: String) -> protonpass_agent::AuthOptions {
    protonpass_agent::AuthOptions {
        broker: None,
        agent_name: Some("mcp-bot".into()),
        enrollment_code: Some(code),
        store: Some(protonpass_agent::StoreKind::File(home.to_path_buf())),
        prompt: Some(std::sync::Arc::new(|_: &protonpass_agent::DevicePrompt| {
            panic!("no prompt expected")
        })),
        ..protonpass_agent::AuthOptions::default()
    }
}

#[tokio::test]
async fn an_agent_finds_the_broker_and_the_scopes_from_the_resource() {
    // SAFETY of the test: no other test of this binary reads the variable.
    assert!(std::env::var("PROTONPASS_BROKER_URL").is_err());
    let broker = Broker::start(&[]);
    let (base, resource) = serve(&broker).await;
    let g = broker.create_grant_on("mcp-bot", "travel:search travel:book", &resource, &[]);
    let home = tempfile::tempdir().unwrap();
    let code = g["enrollment_code"].as_str().unwrap().to_owned();
    // No broker, no scopes: both come from the resource's metadata.
    let s = protonpass_agent::authenticate_with_proton::<&str>(
        &[],
        &resource,
        discovering(home.path(), code),
    )
    .await
    .unwrap();
    assert_eq!(s.scopes().to_string(), "travel:search travel:book");
    let r = s
        .send("GET", &format!("{base}/mcp"), &[], None, None)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The stored grant is found again the same way.
    let again = protonpass_agent::authenticate_with_proton(
        &["travel:book"],
        &resource,
        discovering(home.path(), String::new()),
    )
    .await
    .unwrap();
    assert_eq!(again.scopes().to_string(), "travel:book");
}

#[tokio::test]
async fn metadata_for_another_resource_is_refused() {
    let broker = Broker::start(&[]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    // An API that claims to be someone else.
    let meta = ResourceMetadata::new("https://bank.example/api", &broker.url, &[]).unwrap();
    let body = meta.to_json();
    let app = Router::new().route(
        "/.well-known/oauth-protected-resource/mcp",
        get(move || async move { body }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let home = tempfile::tempdir().unwrap();
    let e = protonpass_agent::authenticate_with_proton(
        &["travel:book"],
        &format!("{base}/mcp"),
        discovering(home.path(), "x".into()),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "invalid_request", "{e}");
    assert!(e.to_string().contains("bank.example"), "{e}");
    // A plain-http resource off loopback is refused before any request.
    let e = protonpass_agent::net::discovery::discover_resource("http://api.example/mcp")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("https"), "{e}");
}
