//! The gateway endpoint, `ANY {issuer}/gateway/{name}/{path}`: the request is
//! verified like a native API's (DPoP-bound token for the upstream's audience,
//! proof for the gateway URL, replay, nonce), checked against the store as it
//! is when the request arrives (token and grant not revoked, see `live.rs`;
//! the token's owner owns the upstream), its
//! normalised path matched against the rules and the scope required; then it
//! is forwarded with the owner's credential, and the answer streamed back.
//! Every call, refusals included, is audited without waiting.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use axum::routing::any;
use futures_util::StreamExt as _;
use protonpass_agent::{Error, ProofCheck, Reason, ScopeSet, TokenValidation, dpop_token};
use serde_json::json;

use super::forward::{PublicResolver, request_headers, response_headers, upstream_url};
use super::path::normalise;
use super::rules::{self, Upstream};
use super::spend_call::{Spender, charge, failed, give_back};
use super::vault::Vault;
use super::watch::until_revoked;
use crate::model::TokenStatus;
use crate::service::{Broker, grant_live};
use crate::store::{self, UpstreamRec};

mod answer;
mod authorize;
mod metadata;
mod refusal;

use authorize::{Allowed, authorize, for_agent};
use metadata::{announce_metadata, resource_metadata};
use refusal::{
    header_values, json_error, no_token, not_sent, refuse, refuse_needing, upstream_failed,
};

/// The gateway's state.
#[derive(Debug)]
pub struct Gateway {
    b: Arc<Broker>,
    vault: Vault,
    /// Parsed rules by upstream name, with the text they were parsed from.
    parsed: Mutex<HashMap<String, (String, Arc<Upstream>)>>,
    /// For upstreams on public addresses only.
    public: reqwest::Client,
    /// For upstreams that allow private networks.
    private: reqwest::Client,
    /// OAuth upstreams: one refresh at a time per connection.
    flights: super::oauth::Flights,
    /// Tokens already verified (the proof is still checked on every request).
    tokens: super::token_cache::TokenCache,
    /// The store reads shared by concurrent requests, and the tokens found live.
    live: Arc<super::live::Live>,
}

fn client(public_only: bool) -> Result<reqwest::Client, Error> {
    let mut c = reqwest::Client::builder()
        // A redirect goes back to the agent, never followed with the credential.
        .redirect(reqwest::redirect::Policy::none())
        // No proxy from the environment: the address checks must hold.
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(120))
        .pool_idle_timeout(Duration::from_secs(60));
    if public_only {
        c = c.dns_resolver(Arc::new(PublicResolver));
    }
    c.build()
        .map_err(|_| Error::Server("cannot build the gateway's HTTP client".into()))
}

/// The gateway's routes; the vault key is loaded (or created) here.
pub fn router(b: Arc<Broker>) -> Result<Router<Arc<Broker>>, Error> {
    let vault = Vault::load(&b.cfg.data, b.rng.as_ref())?;
    let callback = super::oauth_callback::router(b.clone())?;
    let gw = Arc::new(Gateway {
        flights: super::oauth::Flights::default(),
        tokens: super::token_cache::TokenCache::default(),
        live: Arc::default(),
        b,
        vault,
        parsed: Mutex::default(),
        public: client(true)?,
        private: client(false)?,
    });
    Ok(Router::new()
        .route("/gateway/{name}", any(handle))
        .route("/gateway/{name}/", any(handle))
        .route("/gateway/{name}/{*rest}", any(handle))
        .route(
            "/.well-known/oauth-protected-resource/gateway/{name}",
            axum::routing::get(resource_metadata),
        )
        .layer(DefaultBodyLimit::disable())
        .with_state(gw)
        .merge(callback))
}

/// What the audit record of one call says.
struct Call {
    b: Arc<Broker>,
    owner: String,
    upstream: String,
    agent: String,
    gid: String,
    method: String,
    path: String,
    reason: Option<String>,
    error: Option<&'static str>,
    error_reason: Option<&'static str>,
    /// The OAuth connection that served the call, if the upstream uses one.
    connection: Option<String>,
    status: u16,
    start: Instant,
    bytes_in: Arc<AtomicU64>,
    bytes_out: Arc<AtomicU64>,
    /// Set when the response was cut off by a revocation.
    cut: Arc<AtomicBool>,
}

impl Call {
    fn sent(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Drop for Call {
    /// The record is written when the call ends: after the response body was
    /// streamed (or dropped), or read whole (a small answer), so that it has
    /// the byte counts.
    fn drop(&mut self) {
        if self.cut.load(Ordering::SeqCst) {
            self.error = Some("invalid_token");
            self.error_reason = Some(Reason::Revoked.as_str());
        }
        let detail = json!({
            "upstream": self.upstream, "agent": self.agent, "gid": self.gid,
            "method": self.method, "path": self.path, "status": self.status,
            "bytes_in": self.bytes_in.load(Ordering::Relaxed),
            "bytes_out": self.bytes_out.load(Ordering::Relaxed),
            "latency_ms": self.start.elapsed().as_millis() as u64,
            "reason": self.reason, "error": self.error, "error_reason": self.error_reason,
            "connection": self.connection,
        })
        .to_string();
        let (now, owner) = (self.b.clock.now(), std::mem::take(&mut self.owner));
        if !store::write_detached(&self.b.store, move |tx| {
            tx.audit_append(now, &owner, "gateway", &detail).map(|_| ())
        }) {
            self.b.metrics.audit_dropped();
        }
    }
}

async fn handle(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let _busy = gw.live.busy();
    let raw = req.uri().path();
    let after = raw.strip_prefix("/gateway/").unwrap_or_default();
    let name = after.split('/').next().unwrap_or_default().to_owned();
    let mut call = Call {
        b: gw.b.clone(),
        owner: "-".into(),
        // Only a well-formed name goes into the record (the path is the caller's).
        upstream: if rules::valid_name(&name) {
            name.clone()
        } else {
            "-".into()
        },
        agent: "-".into(),
        gid: "-".into(),
        method: req.method().as_str().to_owned(),
        path: "-".into(),
        reason: None,
        error: None,
        error_reason: None,
        connection: None,
        status: 0,
        start: Instant::now(),
        bytes_in: Arc::new(AtomicU64::new(0)),
        bytes_out: Arc::new(AtomicU64::new(0)),
        cut: Arc::default(),
    };
    // The body (not `Sync`) stays out of the checks, which await.
    let (parts, body) = req.into_parts();
    let mut a = match authorize(&gw, &name, &parts, &mut call).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Some((rule, scope)) = a.spend.take() else {
        return forward(&gw, a, parts, body, call).await;
    };
    let who = Spender {
        upstream: &a.rec.name,
        audience: &a.up.audience,
        owner: &a.rec.owner,
        gid: &a.gid,
        jti: &a.jti,
        proof_jti: &a.proof_jti,
    };
    let (body, charged) = match charge(&gw.b, &rule, &scope, &who, &parts, body).await {
        Ok(x) => x,
        Err(r) => {
            let need = r.needed.as_ref().map(|(a, c)| (a.as_str(), c.as_str()));
            let e = for_agent(r.error, a.one_time);
            return refuse_needing(&mut call, &e, Some(&scope), need);
        }
    };
    // A one-time token is spent by the spend this call made. A spend already
    // made under the same key (a retry, or another request racing this one)
    // redeemed nothing here: the call is not forwarded again.
    if a.one_time && !charged.created {
        let e = Error::InvalidToken {
            reason: Reason::OneTime,
            message: "this one-time token was already used".into(),
        };
        return refuse(&mut call, &e, None, None);
    }
    let r = forward(&gw, a, parts, body, call).await;
    if failed(&r) {
        give_back(&gw.b, charged).await;
    }
    r
}

impl Gateway {
    /// The parsed rules of a stored upstream, parsed once per rules text.
    fn rules_of(&self, rec: &UpstreamRec) -> Result<Arc<Upstream>, Error> {
        let mut cache = match self.parsed.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if let Some((text, up)) = cache.get(&rec.name)
            && *text == rec.rules
        {
            return Ok(up.clone());
        }
        let up = Arc::new(rules::parse(&rec.rules).map_err(|_| {
            tracing::error!(upstream = %rec.name, "stored rules do not parse");
            Error::Server("stored rules".into())
        })?);
        if cache.len() >= 4096 {
            cache.clear();
        }
        cache.insert(rec.name.clone(), (rec.rules.clone(), up.clone()));
        Ok(up)
    }
}

async fn forward(gw: &Gateway, a: Allowed, parts: Parts, body: Body, mut call: Call) -> Response {
    let Allowed {
        up,
        rec,
        path,
        jti,
        gid,
        mut feed,
        ..
    } = a;
    let opened = match &up.oauth2 {
        Some(o) => {
            let client = if up.allow_private_network {
                &gw.private
            } else {
                &gw.public
            };
            match super::oauth::access_token(&gw.b, &gw.vault, client, &gw.flights, &rec, o).await {
                Ok((token, id)) => {
                    call.connection = Some(id);
                    Ok(token)
                }
                Err(why) => return not_sent(no_token(&mut call, &up.name, why)),
            }
        }
        None => gw.vault.open(&rec.owner, &rec.name, &rec.sealed),
    };
    let secret = match opened {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(upstream = %up.name, "the upstream's secret does not open");
            return not_sent(refuse(
                &mut call,
                &Error::TemporarilyUnavailable(e.code().into()),
                None,
                None,
            ));
        }
    };
    let built = upstream_url(
        &up.base_url,
        &path,
        parts.uri.query(),
        &up.credential,
        &secret,
    )
    .and_then(|u| {
        let url = reqwest::Url::parse(&u).map_err(|_| Error::InvalidRequest("bad URL".into()))?;
        Ok((
            url,
            request_headers(&parts.headers, &up.credential, &secret)?,
        ))
    });
    let (url, headers) = match built {
        Ok(x) => x,
        Err(e) => return not_sent(refuse(&mut call, &e, None, None)),
    };
    let mut out = reqwest::Request::new(parts.method.clone(), url);
    *out.headers_mut() = headers;
    let has_body = parts.headers.contains_key(header::CONTENT_LENGTH)
        || parts.headers.contains_key(header::TRANSFER_ENCODING);
    // The response wait starts once the agent's body is sent: a long upload is
    // not a slow upstream.
    let (sent_tx, mut sent_rx) = tokio::sync::watch::channel(!has_body);
    if has_body {
        let counter = call.bytes_in.clone();
        let end = futures_util::stream::once(async move {
            let _ = sent_tx.send(true);
        })
        .filter_map(|()| async { None });
        let stream = body
            .into_data_stream()
            .map(move |c| {
                if let Ok(c) = &c {
                    counter.fetch_add(c.len() as u64, Ordering::Relaxed);
                }
                c
            })
            .chain(end);
        *out.body_mut() = Some(reqwest::Body::wrap_stream(stream));
    }
    let client = if up.allow_private_network {
        &gw.private
    } else {
        &gw.public
    };
    let wait = Duration::from_secs(up.timeout_secs);
    let deadline = async move {
        let _ = sent_rx.wait_for(|sent| *sent).await;
        tokio::time::sleep(wait).await;
    };
    let resp = tokio::select! {
        r = client.execute(out) => r,
        () = deadline => return upstream_failed(&mut call, true),
    };
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            // Never the error's text: it may hold the URL, and the URL the secret.
            let timeout = e.is_timeout();
            tracing::warn!(upstream = %up.name, connect = e.is_connect(), timeout, "upstream unreachable");
            let r = upstream_failed(&mut call, timeout);
            return if e.is_connect() { not_sent(r) } else { r };
        }
    };
    call.status = resp.status().as_u16();
    let status = resp.status();
    let small = answer::buffered(parts.method == Method::HEAD, status, resp.headers());
    let headers = response_headers(resp.headers(), &secret);
    drop(secret);
    let cut = call.cut.clone();
    // A revocation while the upstream worked on the request: checked before
    // anything of the answer is passed on (the upstream has acted, so the
    // agent's connection ends with nothing, as for a cut while reading).
    if feed.has_changed().unwrap_or(false) {
        feed.mark_unchanged();
        if !super::watch::live(&gw.b, &jti, &gid).await {
            cut.store(true, Ordering::SeqCst);
            let gone = futures_util::stream::iter([Err(std::io::Error::other("revoked"))]);
            return answer::send(&up.name, small, Box::pin(gone), call, status, headers).await;
        }
    }
    let body = Box::pin(until_revoked(
        &gw.b,
        feed,
        jti,
        gid,
        cut,
        resp.bytes_stream(),
    ));
    answer::send(&up.name, small, body, call, status, headers).await
}
