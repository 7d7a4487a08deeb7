//! Client ID Metadata Documents against the real binary: a client whose
//! `client_id` is the URL of its metadata document completes the
//! authorization code flow without registering, its document is fetched once
//! and cached, and hostile documents and URLs get the owner an error page
//! (never a fetch through a redirect, never a private address by default).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::authcode::{CB, approve, authorize_query, param, redeem};
use crate::dashboard::signed_in;
use protonpass_e2e::{Broker, claims, key};

const INSECURE: (&str, &str) = ("PROTONPASS_BROKER_INSECURE_CLIENT_DOCUMENTS", "true");

/// A client's web site, serving good and hostile metadata documents.
struct Site {
    url: String,
    hits: Arc<AtomicUsize>,
}

async fn site() -> Site {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
    let hits = Arc::new(AtomicUsize::new(0));
    let doc = |id: String| {
        json!({"client_id": id, "client_name": "Editor", "redirect_uris": [CB],
                                  "token_endpoint_auth_method": "none"})
    };
    let (good, other, h) = (
        doc(format!("{url}/good.json")),
        doc(format!("{url}/x.json")),
        hits.clone(),
    );
    let big = json!({"client_id": format!("{url}/big.json"), "redirect_uris": [CB], "pad": "a".repeat(6000)});
    let wrong_cb = json!({"client_id": format!("{url}/wrong-cb.json"), "redirect_uris": ["http://127.0.0.1:1/elsewhere"]});
    let app = axum::Router::new()
        .route(
            "/good.json",
            get(move || {
                h.fetch_add(1, Ordering::SeqCst);
                let g = good.clone();
                async move { ([(header::CACHE_CONTROL, "max-age=600")], axum::Json(g)) }
            }),
        )
        .route(
            "/mismatch.json",
            get(move || async move { axum::Json(other) }),
        )
        .route("/big.json", get(move || async move { axum::Json(big) }))
        .route(
            "/wrong-cb.json",
            get(move || async move { axum::Json(wrong_cb) }),
        )
        .route(
            "/redirect.json",
            get(|| async {
                (StatusCode::FOUND, [(header::LOCATION, "/good.json")]).into_response()
            }),
        )
        .route(
            "/html.json",
            get(|| async { ([(header::CONTENT_TYPE, "text/html")], "<html></html>") }),
        )
        .route("/missing.json", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/slow.json",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(20)).await;
                "{}"
            }),
        );
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    Site { url, hits }
}

#[tokio::test]
async fn a_client_named_by_its_metadata_document_gets_a_token_without_registering() {
    let s = site().await;
    let b = Broker::start(&[INSECURE]);
    let meta = b.get("/.well-known/oauth-authorization-server").await.body;
    assert_eq!(meta["client_id_metadata_document_supported"], json!(true));

    let cid = format!("{}/good.json", s.url);
    let (mut w, _) = signed_in(&b).await;
    let q = authorize_query(&cid, &[]);
    let p = w.get(&format!("/oauth/authorize?{q}")).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        p.body.contains(&cid),
        "the consent page names the document URL"
    );
    assert!(p.body.contains("Editor"));

    let loc = approve(&mut w, &q, &["travel:search"]).await;
    assert!(loc.starts_with(&format!("{CB}?code=ac_")), "{loc}");
    let k = key();
    let t = redeem(&b, &k, &cid, &param(&loc, "code"), &[]).await;
    assert_eq!(t.status, 200, "{}", t.body);
    assert_eq!(claims(&t.s("access_token"))["client_id"], json!(cid));
    // Three authorization requests (page, approval, and the approval's check)
    // and one fetch: the document is cached.
    assert_eq!(s.hits.load(Ordering::SeqCst), 1);

    // Another client's URL cannot redeem the code.
    let loc = approve(&mut w, &q, &["travel:search"]).await;
    let t = redeem(
        &b,
        &k,
        "https://other.example/c.json",
        &param(&loc, "code"),
        &[],
    )
    .await;
    assert_eq!((t.status, t.s("error").as_str()), (400, "invalid_grant"));
}

#[tokio::test]
async fn hostile_metadata_documents_get_the_owner_an_error_page() {
    let s = site().await;
    let b = Broker::start(&[INSECURE]);
    let (mut w, _) = signed_in(&b).await;
    for (path, why) in [
        ("/mismatch.json", "client_id must be the URL"),
        ("/big.json", "larger than"),
        ("/wrong-cb.json", "redirect URI"),
        ("/redirect.json", "redirect"),
        ("/html.json", "application/json"),
        ("/missing.json", "404"),
        ("/slow.json", "could not be fetched"),
        ("/a/../good.json", "normal form"),
        ("/good.json?x=1", "query"),
        ("/good.json#f", "fragment"),
    ] {
        let cid = format!("{}{path}", s.url);
        let p = w
            .get(&format!("/oauth/authorize?{}", authorize_query(&cid, &[])))
            .await;
        assert_eq!(p.status, 400, "{path}: {}", p.body);
        assert!(p.location().is_empty(), "{path}");
        assert!(p.body.contains(why), "{path}: {}", p.body);
    }
    // The redirect was not followed.
    assert_eq!(s.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn without_the_test_setting_only_public_https_documents_are_fetched() {
    let s = site().await;
    let b = Broker::start(&[]);
    let (mut w, _) = signed_in(&b).await;
    // http is no document URL at all; https on loopback is a private address.
    let http = format!("{}/good.json", s.url);
    let p = w
        .get(&format!("/oauth/authorize?{}", authorize_query(&http, &[])))
        .await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(p.body.contains("not registered"), "{}", p.body);
    for cid in [
        http.replace("http://", "https://"),
        "https://localhost/client.json".to_owned(),
        "https://10.1.2.3/client.json".to_owned(),
        "https://[::1]/client.json".to_owned(),
    ] {
        let p = w
            .get(&format!("/oauth/authorize?{}", authorize_query(&cid, &[])))
            .await;
        assert_eq!(p.status, 400, "{cid}: {}", p.body);
        assert!(p.location().is_empty());
        assert!(
            p.body.contains("private") || p.body.contains("could not be fetched"),
            "{cid}: {}",
            p.body
        );
    }
    assert_eq!(s.hits.load(Ordering::SeqCst), 0);
}
