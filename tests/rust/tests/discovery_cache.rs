//! How long what resource discovery found (RFC 9728 metadata, and through it
//! the broker) is kept: as long as the metadata's `Cache-Control` allows, and
//! no longer once the resource's `401` names other metadata. Two real brokers;
//! the resource moves from one to the other.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use protonpass_agent::net::discovery::discover_resource;
use protonpass_agent::resource_metadata::ResourceMetadata;
use protonpass_agent::{AuthOptions, DevicePrompt, StoreKind, authenticate_with_proton};
use protonpass_e2e::Broker;

/// Which broker the resource names, at which metadata path, kept how long.
struct Now {
    broker: String,
    path: &'static str,
    cache_control: &'static str,
}

type Shared = Arc<Mutex<Now>>;

/// An API at `{base}/mcp` that answers every request with a `401` naming its
/// current metadata, and serves that metadata at both paths.
async fn serve(now: Shared) -> (String, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let resource = format!("{base}/mcp");
    let (b, r) = (base.clone(), resource.clone());
    let challenge = move |State(s): State<Shared>| {
        let b = b.clone();
        async move {
            let path = s.lock().unwrap().path;
            let www = format!("DPoP error=\"invalid_token\", resource_metadata=\"{b}{path}\"");
            (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, www)])
        }
    };
    let metadata = move |State(s): State<Shared>| {
        let r = r.clone();
        async move {
            let n = s.lock().unwrap();
            let m = ResourceMetadata::new(&r, &n.broker, &["travel:book".into()]).unwrap();
            ([(header::CACHE_CONTROL, n.cache_control)], m.to_json()).into_response()
        }
    };
    let app = Router::new()
        .route("/mcp", get(challenge))
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(metadata.clone()),
        )
        .route("/moved/metadata", get(metadata))
        .with_state(now);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, resource)
}

const FIRST: &str = "/.well-known/oauth-protected-resource/mcp";

fn enrollment(broker: &Broker, resource: &str) -> String {
    let g = broker.create_grant_on("mcp-bot", "travel:book", resource, &[]);
    g["enrollment_code"].as_str().unwrap().to_owned()
}

/// An agent that knows only the resource (no broker URL).
fn discovering(home: &std::path::Path, code: String) -> AuthOptions {
    AuthOptions {
        agent_name: Some("mcp-bot".into()),
        enrollment_code: Some(code),
        store: Some(StoreKind::File(home.to_path_buf())),
        prompt: Some(Arc::new(|_: &DevicePrompt| panic!("no prompt expected"))),
        background_renewal: false,
        ..AuthOptions::default()
    }
}

#[tokio::test]
async fn discovery_is_kept_for_the_metadata_max_age_and_no_longer() {
    let (a, b) = (Broker::start(&[]), Broker::start(&[]));
    let now = Arc::new(Mutex::new(Now {
        broker: a.url.clone(),
        path: FIRST,
        cache_control: "max-age=2",
    }));
    let (_, resource) = serve(now.clone()).await;
    assert_eq!(discover_resource(&resource).await.unwrap().issuer, a.url);
    // The resource moves to broker B: within max-age, A is still what the
    // agent knows; once it has passed, the agent asks again and finds B.
    now.lock().unwrap().broker = b.url.clone();
    assert_eq!(discover_resource(&resource).await.unwrap().issuer, a.url);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // From now on the metadata says `no-store`: nothing is kept, every
    // discovery asks again.
    now.lock().unwrap().cache_control = "no-store";
    assert_eq!(discover_resource(&resource).await.unwrap().issuer, b.url);
    // An enrollment code of B works through discovery alone.
    let home = tempfile::tempdir().unwrap();
    let code = enrollment(&b, &resource);
    let s = authenticate_with_proton::<&str>(&[], &resource, discovering(home.path(), code))
        .await
        .unwrap();
    assert_eq!(s.scopes().to_string(), "travel:book");
    now.lock().unwrap().broker = a.url.clone();
    assert_eq!(discover_resource(&resource).await.unwrap().issuer, a.url);
}

#[tokio::test]
async fn a_401_naming_other_metadata_makes_the_agent_discover_again() {
    let (a, b) = (Broker::start(&[]), Broker::start(&[]));
    // Without max-age the discovery is kept for an hour.
    let now = Arc::new(Mutex::new(Now {
        broker: a.url.clone(),
        path: FIRST,
        cache_control: "public",
    }));
    let (base, resource) = serve(now.clone()).await;
    let home = tempfile::tempdir().unwrap();
    let s = authenticate_with_proton::<&str>(
        &[],
        &resource,
        discovering(home.path(), enrollment(&a, &resource)),
    )
    .await
    .unwrap();
    // A 401 that names the same metadata changes nothing.
    let r = s
        .send("GET", &format!("{base}/mcp"), &[], None, None)
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    now.lock().unwrap().broker = b.url.clone();
    assert_eq!(discover_resource(&resource).await.unwrap().issuer, a.url);
    // The resource moves to B and its challenges name new metadata: the
    // session's next 401 makes the agent forget A.
    now.lock().unwrap().path = "/moved/metadata";
    let r = s
        .send("GET", &format!("{base}/mcp"), &[], None, None)
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let home_b = tempfile::tempdir().unwrap();
    let s = authenticate_with_proton::<&str>(
        &[],
        &resource,
        discovering(home_b.path(), enrollment(&b, &resource)),
    )
    .await
    .unwrap();
    assert_eq!(s.scopes().to_string(), "travel:book");
    // The same holds for a response the caller's own HTTP stack received.
    now.lock().unwrap().path = FIRST;
    now.lock().unwrap().broker = a.url.clone();
    let www = format!("DPoP error=\"invalid_token\", resource_metadata=\"{base}{FIRST}\"");
    s.observe_response(&format!("{base}/mcp"), 401, Some(&www), None);
    assert_eq!(discover_resource(&resource).await.unwrap().issuer, a.url);
}
