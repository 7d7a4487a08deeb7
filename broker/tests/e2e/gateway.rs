//! The credential-injecting gateway end to end: a real upstream started here
//! (it checks the credential and records what it received), the real broker,
//! upstreams added with the CLI, agents enrolled with pre-authorized grants,
//! and requests signed with DPoP proofs for the gateway URL.

use std::io::Read as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use protonpass_agent::AgentKey;
use serde_json::Value;

use protonpass_e2e::{Broker, dpop, dpop_why, key};

pub const SECRET: &str = "sk_live_9f8e7d6c5b4a3210-gateway-secret";
pub const AUD: &str = "https://api.code-host.example";
pub const SCOPES: &str = "repo:read:proj repo:write:proj misc:read data:transfer";
pub const MIB: usize = 1024 * 1024;

/// What the upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A local upstream API that accepts only `x-api-key: Key <SECRET>`.
pub struct Upstream {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub count: Arc<AtomicUsize>,
}

async fn upstream_handler(req: Request, seen: Arc<Mutex<Vec<Seen>>>) -> Response {
    let s = Seen {
        method: req.method().to_string(),
        target: req.uri().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
            .collect(),
    };
    seen.lock().unwrap().push(s.clone());
    let by_query = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == format!("api_key={SECRET}")));
    if s.header("x-api-key") != Some(&format!("Key {SECRET}")) && !by_query {
        return (StatusCode::UNAUTHORIZED, "bad key").into_response();
    }
    let path = req.uri().path().to_owned();
    match path.as_str() {
        "/declined" => (StatusCode::PAYMENT_REQUIRED, "declined").into_response(),
        "/redirect" => Response::builder()
            .status(302)
            .header("location", "http://127.0.0.1:9/elsewhere")
            .body(Body::empty())
            .unwrap(),
        "/slow" => {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            "late".into_response()
        }
        "/late" => {
            // Within the upstream's 2 s timeout, late enough to be revoked meanwhile.
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            "late".into_response()
        }
        "/big" => {
            let chunk = bytes_chunk();
            let stream = futures_util::stream::iter(
                (0..64).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
            );
            Body::from_stream(stream).into_response()
        }
        // 1 KiB every 100 ms for 10 s.
        "/drip" => Body::from_stream(drip(100)).into_response(),
        "/drip-sized" => {
            // A small answer of stated size (40 KiB), 1 KiB every 100 ms.
            let mut r = Body::from_stream(drip(40)).into_response();
            r.headers_mut().insert(
                axum::http::header::CONTENT_LENGTH,
                axum::http::HeaderValue::from(40 * 1024),
            );
            r
        }
        "/upload" => {
            let mut n = 0usize;
            let mut body = req.into_body().into_data_stream();
            while let Some(c) = body.next().await {
                n += c.unwrap().len();
            }
            n.to_string().into_response()
        }
        _ => axum::Json(serde_json::json!({"ok": true, "path": path})).into_response(),
    }
}

fn bytes_chunk() -> axum::body::Bytes {
    axum::body::Bytes::from(vec![b'x'; MIB])
}

impl Upstream {
    pub async fn start() -> Upstream {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let (s2, c2) = (seen.clone(), count.clone());
        let app = axum::Router::new().fallback(move |req: Request| {
            let (s, c) = (s2.clone(), c2.clone());
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                upstream_handler(req, s).await
            }
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        Upstream { port, seen, count }
    }

    pub fn calls(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    pub fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().unwrap().clone()
    }
}

/// The code host's repository rules, which the gateway's unit tests share.
const REPO_RULES: &str = include_str!("../fixtures/gateway/repo-rules.toml");

/// The rules file of upstream `name` at `base` (private addresses allowed
/// or not): the code host's repository rules and the end-to-end tests' others.
pub fn rules(name: &str, base: &str, private: bool) -> String {
    let settings = format!(
        r#"name = "{name}"
base_url = "{base}"
audience = "{AUD}"
description = "A code host for the tests"
credential = {{ header = "X-Api-Key", value = "Key {{secret}}" }}
allow_private_network = {private}
timeout_secs = 2
"#
    );
    let others = include_str!("../fixtures/gateway/e2e-rules.toml");
    format!("{settings}\n{REPO_RULES}\n{others}")
}

/// `upstream add` with the secret on standard input: (exit code, JSON).
pub fn add_upstream(b: &Broker, rules: &str, owner: &str) -> (i32, Value) {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), rules).unwrap();
    let path = f.path().to_str().unwrap();
    let args = ["--owner", owner, "upstream", "add", path, "--secret-stdin"];
    b.cli_with_stdin(&args, &format!("{SECRET}\n"))
}

/// An agent of `owner` enrolled for the upstream's audience: (key, token, grant id).
pub async fn agent(b: &Broker, owner: &str, scope: &str) -> (AgentKey, String, String) {
    let g = b.create_grant_on("coder", scope, AUD, &["--owner", owner]);
    let k = key();
    let r = b.redeem(&k, g["enrollment_code"].as_str().unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    (
        k,
        r.s("access_token"),
        g["grant_id"].as_str().unwrap().to_owned(),
    )
}

/// `n` chunks of 1 KiB, one every 100 ms.
fn drip(n: u32) -> impl futures_util::Stream<Item = std::io::Result<axum::body::Bytes>> {
    futures_util::stream::unfold(0u32, move |i| async move {
        if i == n {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        Some((Ok(axum::body::Bytes::from(vec![b'd'; 1024])), i + 1))
    })
}

/// The URL of `path` through the code host's gateway.
fn gateway_url(b: &Broker, path: &str) -> String {
    format!("{}/gateway/code-host{path}", b.url)
}

/// The reason the calls' proofs sign.
const REASON: &str = "testing the gateway";

/// A signed request through the gateway; retries once with the broker's nonce.
pub async fn call(
    b: &Broker,
    agent: &(AgentKey, String, String),
    method: &str,
    path: &str,
    body: Option<reqwest::Body>,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let url = gateway_url(b, path);
    signed(&agent.0, &agent.1, (method, &url), REASON, body, extra)
        .await
        .unwrap()
}

/// A [`call`] without a body or more headers, with a transport failure (no
/// complete answer) returned.
pub async fn try_call(
    b: &Broker,
    agent: &(AgentKey, String, String),
    method: &str,
    path: &str,
) -> reqwest::Result<reqwest::Response> {
    let url = gateway_url(b, path);
    signed(&agent.0, &agent.1, (method, &url), REASON, None, &[]).await
}

/// A request to `url` with the access token `token` and a proof by `key`
/// that signs `reason`; retries once with the broker's nonce.
pub async fn signed(
    key: &AgentKey,
    token: &str,
    (method, url): (&str, &str),
    reason: &str,
    body: Option<reqwest::Body>,
    extra: &[(&str, &str)],
) -> reqwest::Result<reqwest::Response> {
    let mut nonce: Option<String> = None;
    let mut body = body;
    for _ in 0..2 {
        let proof = dpop_why(key, method, url, Some(token), nonce.as_deref(), reason);
        let mut req = no_redirects()
            .request(method.parse().unwrap(), url)
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof);
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        // The body goes with the nonce round's second request (the first is
        // refused before any body is read).
        if nonce.is_some()
            && let Some(bd) = body.take()
        {
            req = req.body(bd);
        }
        let r = req.send().await?;
        let n = r
            .headers()
            .get("dpop-nonce")
            .map(|v| v.to_str().unwrap().to_owned());
        if r.status() == 401 && n.is_some() && nonce.is_none() {
            nonce = n;
            continue;
        }
        return Ok(r);
    }
    panic!("the nonce round did not settle");
}

/// A client that returns redirects instead of following them.
pub fn no_redirects() -> &'static reqwest::Client {
    static C: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    })
}

pub async fn json(r: reqwest::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    let t = r.text().await.unwrap();
    (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
}

/// A broker with one upstream (`code-host`) in front of a fresh local upstream.
pub async fn setup() -> (Broker, Upstream) {
    let up = Upstream::start().await;
    let b = Broker::start(&[]);
    let base = format!("http://127.0.0.1:{}", up.port);
    let (code, v) = add_upstream(&b, &rules("code-host", &base, true), "default");
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["name"], "code-host");
    assert_eq!(v["audience"], AUD);
    assert!(
        v["gateway_url"]
            .as_str()
            .unwrap()
            .ends_with("/gateway/code-host"),
        "{v}"
    );
    (b, up)
}

/// [`setup`], and an agent of the default owner enrolled for [`SCOPES`]:
/// (broker, upstream, agent).
pub async fn setup_agent() -> (Broker, Upstream, (AgentKey, String, String)) {
    let (b, up) = setup().await;
    let a = agent(&b, "default", SCOPES).await;
    (b, up, a)
}

/// No file of the data directory (database, WAL, keys, vault key, the log)
/// holds the secret.
pub fn assert_secret_nowhere(b: &Broker) {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    if protonpass_e2e::on_postgres() {
        return; // the store is not in the data directory
    }
    let mut files = Vec::new();
    walk(&b.data, &mut files);
    assert!(files.iter().any(|f| f.ends_with("broker.db")));
    assert!(files.iter().any(|f| f.ends_with("vault.key")));
    for f in files {
        let mut bytes = Vec::new();
        std::fs::File::open(&f)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        let found = bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes());
        assert!(!found, "the secret is in {}", f.display());
    }
}

#[path = "gateway_flows.rs"]
mod flows;
#[path = "gateway_spend.rs"]
mod spend;

#[path = "gateway_hostile.rs"]
mod hostile;
