//! HTTP plumbing shared by the client and the verifier.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::clock::Random;
use crate::error::{Error, Result};
use crate::wire::{ErrorBody, ServerMetadata};

/// Timeout for connecting to the broker or an API.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout for one whole request.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest response body read from the broker.
pub(crate) const MAX_BODY: usize = 1 << 20;

/// The process-wide HTTP client (connection pool shared by every session).
pub(crate) fn client() -> Result<reqwest::Client> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c.clone());
    }
    let c = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("protonpass-agent/", env!("CARGO_PKG_VERSION")))
        // Never follow redirects: a 307/308 would re-send a form holding a
        // refresh token or code (or an access token) to wherever it points.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::BrokerUnavailable(format!("cannot build the HTTP client: {e}")))?;
    Ok(CLIENT.get_or_init(|| c).clone())
}

/// The `WWW-Authenticate` challenge of a response, if it has a readable one.
pub(crate) fn www_authenticate(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub(crate) fn unreachable(what: &str, e: &reqwest::Error) -> Error {
    // The innermost cause says what really failed: reqwest's own message is
    // the same ("error sending request") for a refused connection, a failed
    // name lookup and a TLS handshake.
    let mut chain = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        chain.push(err.to_string());
        cur = err.source();
    }
    let cause = chain.last().cloned().unwrap_or_default();
    let all = chain.join(": ").to_ascii_lowercase();
    let tls = [
        "certificate",
        "tls",
        "handshake",
        "invalidcontenttype",
        "corrupt message",
    ];
    let (kind, fix) = if tls.iter().any(|w| all.contains(w)) {
        (
            format!("TLS failed ({cause})"),
            "check that the URL's scheme and port are right (https on a plain-http port fails this way) and that the broker's certificate is valid and trusted",
        )
    } else if e.is_timeout() {
        (
            "timed out".to_owned(),
            "check that the broker is running and reachable from here",
        )
    } else if all.contains("dns")
        || all.contains("lookup address")
        || all.contains("name or service")
    {
        (
            format!("the host name could not be resolved ({cause})"),
            "check the host name in PROTONPASS_BROKER_URL",
        )
    } else if all.contains("refused") {
        (
            "connection refused".to_owned(),
            "nothing listens at this address: check that the broker is running and PROTONPASS_BROKER_URL's host and port",
        )
    } else if e.is_connect() {
        (
            format!("cannot connect ({cause})"),
            "check that the broker is running and PROTONPASS_BROKER_URL is right",
        )
    } else {
        (
            format!("request failed ({cause})"),
            "check that the broker is running and PROTONPASS_BROKER_URL is right",
        )
    };
    Error::BrokerUnavailable(format!("{what}: {kind}; {fix}"))
}

/// Read a response body with a size cap, chunk by chunk: a body past
/// [`MAX_BODY`] is refused as soon as it gets there, with or without a
/// `Content-Length`, and the rest is never read (dropping the response closes
/// the connection).
pub(crate) async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>> {
    let too_large = || Error::InvalidResponse(format!("response body over {MAX_BODY} bytes"));
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| unreachable("reading the response", &e))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Turn an error response into the typed error its body names.
pub(crate) fn error_from_body(status: u16, body: &[u8]) -> Error {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => Error::from_wire(&b.error, b.error_description.as_deref()),
        Err(_) if status == 503 => {
            Error::TemporarilyUnavailable("the broker is unavailable".into())
        }
        Err(_) if status >= 500 => {
            Error::BrokerUnavailable(format!("the broker answered {status}"))
        }
        Err(_) => Error::InvalidResponse(format!("HTTP {status} without an OAuth error body")),
    }
}

/// Backoff before retry `attempt` (0-based): 200 ms doubling, capped at 3 s,
/// with up to 50 % random jitter so that many clients do not retry in step.
pub(crate) fn backoff(attempt: u32, rng: &dyn Random) -> Duration {
    let base = 200u64.saturating_mul(1 << attempt.min(4)).min(3000);
    let mut b = [0u8; 2];
    let jitter = match rng.fill(&mut b) {
        Ok(()) => u64::from(u16::from_le_bytes(b)) % (base / 2 + 1),
        Err(_) => 0,
    };
    Duration::from_millis(base + jitter)
}

/// How long a discovered document is kept when its response says nothing.
pub(crate) const DISCOVERY_TTL_DEFAULT: Duration = Duration::from_secs(3600);
/// The longest a discovered document is kept, whatever its response says.
pub(crate) const DISCOVERY_TTL_MAX: Duration = Duration::from_secs(86_400);

/// How long a discovered document (RFC 8414 or RFC 9728 metadata) may be
/// kept: its `Cache-Control` `max-age` (capped at [`DISCOVERY_TTL_MAX`]),
/// nothing with `no-store` or `no-cache`, else [`DISCOVERY_TTL_DEFAULT`].
pub(crate) fn cache_lifetime(headers: &reqwest::header::HeaderMap) -> Duration {
    let mut max_age = None;
    for v in headers.get_all("cache-control") {
        let Ok(v) = v.to_str() else { continue };
        for d in v.split(',').map(str::trim) {
            let (name, value) = d.split_once('=').unwrap_or((d, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "no-store" | "no-cache" => return Duration::ZERO,
                "max-age" => {
                    max_age = value
                        .trim()
                        .trim_matches('"')
                        .parse::<u64>()
                        .ok()
                        .or(max_age);
                }
                _ => {}
            }
        }
    }
    max_age.map_or(DISCOVERY_TTL_DEFAULT, |s| {
        Duration::from_secs(s).min(DISCOVERY_TTL_MAX)
    })
}

/// A process-wide cache of discovered documents, each kept until the
/// lifetime its response allowed ([`cache_lifetime`]).
pub(crate) struct Expiring<V>(Mutex<HashMap<String, (V, Instant)>>);

impl<V: Clone> Expiring<V> {
    pub(crate) fn new() -> Self {
        Expiring(Mutex::new(HashMap::new()))
    }

    /// The entry for `key` if it has not expired (an expired one is dropped).
    pub(crate) fn get(&self, key: &str) -> Option<V> {
        let mut m = self.0.lock().ok()?;
        match m.get(key) {
            Some((v, until)) if Instant::now() < *until => Some(v.clone()),
            Some(_) => {
                m.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keep `value` for `ttl` (not at all when `ttl` is zero).
    pub(crate) fn insert(&self, key: String, value: V, ttl: Duration) {
        let Some(until) = Instant::now().checked_add(ttl).filter(|_| !ttl.is_zero()) else {
            return;
        };
        if let Ok(mut m) = self.0.lock() {
            m.retain(|_, (_, u)| Instant::now() < *u);
            m.insert(key, (value, until));
        }
    }

    /// Forget `key`.
    pub(crate) fn remove(&self, key: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(key);
        }
    }
}

/// GET a JSON document, retrying transient failures (idempotent), with how
/// long it may be kept ([`cache_lifetime`]) and the `DPoP-Nonce` the
/// response carried, if any.
pub(crate) async fn get_json<T: for<'de> Deserialize<'de>>(
    url: &str,
    rng: &dyn Random,
) -> Result<(T, Duration, Option<String>)> {
    let http = client()?;
    let mut last = Error::BrokerUnavailable(format!("{url}: no attempt made"));
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(backoff(attempt - 1, rng)).await;
        }
        match http.get(url).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let ttl = cache_lifetime(resp.headers());
                let nonce = resp
                    .headers()
                    .get("dpop-nonce")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = read_body(resp).await?;
                if status == 200 {
                    return serde_json::from_slice(&body).map(|v| (v, ttl, nonce)).map_err(|e| {
                        Error::InvalidResponse(format!(
                            "{url} answered 200 with something else than the expected JSON ({e})"
                        ))
                    });
                }
                last = match error_from_body(status, &body) {
                    // Not an answer of the protocol: say which URL answered what.
                    Error::InvalidResponse(m) => {
                        Error::InvalidResponse(format!("{url} answered HTTP {status} ({m})"))
                    }
                    other => other,
                };
                if status < 500 {
                    return Err(last);
                }
            }
            Err(e) => last = unreachable(url, &e),
        }
    }
    Err(last)
}

/// Fetch the broker's RFC 8414 metadata, checked as RFC 8414 section 3.3
/// asks ([`check_metadata`]); kept per broker URL for as long as its
/// response allows ([`cache_lifetime`]: `max-age`, default 1 hour, at most a
/// day).
pub async fn discover(broker: &str, rng: &dyn Random) -> Result<Arc<ServerMetadata>> {
    Ok(fetch_metadata(broker, rng, false).await?.0)
}

/// [`discover`], also saying whether the metadata was fetched just now
/// (`true`) or taken from the cache.
pub(crate) async fn discover_noting_fetch(
    broker: &str,
    rng: &dyn Random,
) -> Result<(Arc<ServerMetadata>, bool)> {
    fetch_metadata(broker, rng, false).await
}

/// [`discover`], fetching the metadata again even when it is cached (the
/// gateway's list of upstreams changes while the broker runs).
pub(crate) async fn rediscover(broker: &str, rng: &dyn Random) -> Result<Arc<ServerMetadata>> {
    Ok(fetch_metadata(broker, rng, true).await?.0)
}

/// The metadata, and whether it was fetched now rather than taken from the cache.
async fn fetch_metadata(
    broker: &str,
    rng: &dyn Random,
    fresh: bool,
) -> Result<(Arc<ServerMetadata>, bool)> {
    static CACHE: OnceLock<Expiring<Arc<ServerMetadata>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Expiring::new);
    let key = broker.trim_end_matches('/').to_owned();
    if !fresh && let Some(m) = cache.get(&key) {
        return Ok((m, false));
    }
    let url = format!("{key}/.well-known/oauth-authorization-server");
    let (meta, ttl, nonce): (ServerMetadata, _, _) = get_json(&url, rng).await.map_err(|e| match e {
        Error::InvalidResponse(m) => Error::InvalidResponse(format!(
            "{m}: no broker answers at {key}; the broker URL is the address `protonpass-broker serve` prints (its issuer), without a path after it"
        )),
        other => other,
    })?;
    check_metadata(broker, &meta)?;
    // A broker that requires DPoP nonces gives one with its metadata: the
    // first token request carries it rather than being refused once.
    if let Some(n) = nonce {
        NonceCache::global().insert(&url, &n);
    }
    let meta = Arc::new(meta);
    cache.insert(key, meta.clone(), ttl);
    Ok((meta, true))
}

/// RFC 8414 section 3.3: the `issuer` is the URL the metadata was asked of
/// (one trailing slash aside), and every endpoint the SDK calls lies on that
/// URL's origin (scheme, host and port), so that metadata served by someone
/// else cannot send refresh tokens, proofs or key fetches elsewhere.
fn check_metadata(broker: &str, meta: &ServerMetadata) -> Result<()> {
    let asked = broker.strip_suffix('/').unwrap_or(broker);
    if meta.issuer != asked && meta.issuer != broker {
        return Err(Error::InvalidResponse(format!(
            "the broker's metadata field issuer is {:?}, not the broker URL {asked:?} (RFC 8414 section 3.3)",
            meta.issuer
        )));
    }
    let origin = url::Url::parse(asked)
        .map(|u| u.origin())
        .ok()
        .filter(url::Origin::is_tuple)
        .ok_or_else(|| {
            Error::InvalidRequest(format!("the broker URL {asked:?} is not an http(s) URL"))
        })?;
    let endpoints = [
        ("token_endpoint", Some(&meta.token_endpoint)),
        (
            "device_authorization_endpoint",
            Some(&meta.device_authorization_endpoint),
        ),
        ("revocation_endpoint", Some(&meta.revocation_endpoint)),
        ("introspection_endpoint", Some(&meta.introspection_endpoint)),
        ("jwks_uri", Some(&meta.jwks_uri)),
        (
            "revocation_feed_endpoint",
            Some(&meta.revocation_feed_endpoint),
        ),
        (
            "revocation_stream_endpoint",
            meta.revocation_stream_endpoint.as_ref(),
        ),
        ("usage_endpoint", meta.usage_endpoint.as_ref()),
    ];
    for (field, value) in endpoints {
        let Some(value) = value else { continue };
        let same = url::Url::parse(value).is_ok_and(|u| {
            u.origin() == origin && u.username().is_empty() && u.password().is_none()
        });
        if !same {
            return Err(Error::InvalidResponse(format!(
                "the broker's metadata field {field} is not on the broker's origin {} (RFC 8414 section 3.3)",
                origin.ascii_serialization()
            )));
        }
    }
    Ok(())
}

/// The origin (`scheme://host:port`) of a URL, for per-origin nonce caches.
pub(crate) fn origin(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => String::new(),
    }
}

/// Server-provided DPoP nonces, remembered per origin.
#[derive(Debug, Default)]
pub(crate) struct NonceCache(Mutex<HashMap<String, String>>);

impl NonceCache {
    /// The process-wide cache: a nonce learned by one session saves every other
    /// session of the process the challenge round trip to that origin.
    pub(crate) fn global() -> &'static NonceCache {
        static GLOBAL: OnceLock<NonceCache> = OnceLock::new();
        GLOBAL.get_or_init(NonceCache::default)
    }

    pub(crate) fn get(&self, url: &str) -> Option<String> {
        self.0.lock().ok()?.get(&origin(url)).cloned()
    }
    pub(crate) fn remember(&self, url: &str, resp_headers: &reqwest::header::HeaderMap) {
        if let (Some(n), Ok(mut m)) = (
            resp_headers.get("dpop-nonce").and_then(|v| v.to_str().ok()),
            self.0.lock(),
        ) {
            m.insert(origin(url), n.to_owned());
        }
    }
    /// Remember a nonce a response to `url` carried (bindings that do their own HTTP).
    pub(crate) fn insert(&self, url: &str, nonce: &str) {
        let o = origin(url);
        if let (false, Ok(mut m)) = (o.is_empty() || nonce.is_empty(), self.0.lock()) {
            m.insert(o, nonce.to_owned());
        }
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
