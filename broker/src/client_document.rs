//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document,
//! the MCP authorization specification's preferred client identification): a
//! `client_id` that is an `https` URL names a JSON document the client hosts;
//! the broker fetches it, reads it with `client_metadata::parse_document`
//! (the rules of an RFC 7591 registration, and its `client_id` must be the
//! URL), and treats the client as if it had registered.
//!
//! The fetch is held to strict limits, since anyone can make the broker ask
//! for any URL this way: `https` only, public addresses only (every address a
//! name resolves to is checked, `public_net`), no redirects followed,
//! no proxy, [`FETCH_TIMEOUT`] in all, at most [`MAX_DOCUMENT`] bytes read,
//! a JSON content type. Documents are cached for their `Cache-Control`
//! `max-age` within [`MIN_CACHE`]..=[`MAX_CACHE`] seconds, failures for
//! [`FAILURE_CACHE`] seconds, at most [`MAX_ENTRIES`] URLs. The test-only
//! setting `insecure_client_documents` allows `http` and private addresses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::protocol::client_metadata::{
    ClientMetadata, MAX_DOCUMENT, MetadataError, check_document_url, parse_document,
};
use crate::public_net::{PublicResolver, is_public};

/// The whole fetch (connect, TLS, headers, body), at most.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Shortest time a fetched document is kept, seconds.
pub const MIN_CACHE: i64 = 60;
/// Longest time a fetched document is kept, seconds.
pub const MAX_CACHE: i64 = 3600;
/// Time a fetched document is kept when it names no `max-age`, seconds.
pub const DEFAULT_CACHE: i64 = 300;
/// Time a failed fetch is remembered (so that a flood of authorization
/// requests does not become a flood of fetches), seconds.
pub const FAILURE_CACHE: i64 = 30;
/// Most URLs cached at once.
pub const MAX_ENTRIES: usize = 1024;

type Outcome = Result<ClientMetadata, MetadataError>;

struct Entry {
    outcome: Outcome,
    expires_at: i64,
}

/// The documents fetched lately, and the HTTP client that fetches them.
#[derive(Default)]
pub struct DocumentCache {
    entries: Mutex<HashMap<String, Entry>>,
    client: OnceLock<reqwest::Client>,
}

impl std::fmt::Debug for DocumentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DocumentCache(..)")
    }
}

fn refused(m: impl Into<String>) -> MetadataError {
    MetadataError::InvalidClientMetadata(m.into())
}

/// `max-age` of a `Cache-Control` value (`no-store` and `no-cache` count as 0).
fn max_age(v: &str) -> Option<i64> {
    let mut age = None;
    for d in v.split(',').map(str::trim) {
        let d = d.to_ascii_lowercase();
        if d == "no-store" || d == "no-cache" {
            return Some(0);
        }
        if let Some(n) = d.strip_prefix("max-age=") {
            age = n.trim_matches('"').parse::<i64>().ok();
        }
    }
    age
}

/// How long to keep a document whose answer said `cache_control`.
pub fn lifetime(cache_control: Option<&str>) -> i64 {
    cache_control
        .and_then(max_age)
        .unwrap_or(DEFAULT_CACHE)
        .clamp(MIN_CACHE, MAX_CACHE)
}

fn json_type(v: &str) -> bool {
    let t = v
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
}

impl DocumentCache {
    fn http(&self, insecure: bool) -> Result<&reqwest::Client, MetadataError> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(FETCH_TIMEOUT)
            .timeout(FETCH_TIMEOUT)
            .user_agent(concat!("protonpass-broker/", env!("CARGO_PKG_VERSION")));
        if !insecure {
            b = b.dns_resolver(Arc::new(PublicResolver));
        }
        let c = b
            .build()
            .map_err(|_| refused("the broker cannot fetch client metadata documents now"))?;
        Ok(self.client.get_or_init(|| c))
    }

    /// The metadata of the client whose `client_id` is the document URL
    /// `url`: from the cache, or fetched and read now. `now` is the broker
    /// clock's time, in seconds.
    pub async fn get(&self, url: &str, now: i64, insecure: bool) -> Outcome {
        if let Ok(m) = self.entries.lock()
            && let Some(e) = m.get(url)
            && e.expires_at > now
        {
            return e.outcome.clone();
        }
        let (outcome, keep) = match self.fetch(url, insecure).await {
            Ok((m, keep)) => (Ok(m), keep),
            Err(e) => (Err(e), FAILURE_CACHE),
        };
        if let Ok(mut m) = self.entries.lock() {
            if m.len() >= MAX_ENTRIES {
                m.retain(|_, e| e.expires_at > now);
            }
            if m.len() >= MAX_ENTRIES {
                // Still full of live entries: start over rather than grow.
                m.clear();
            }
            m.insert(
                url.to_owned(),
                Entry {
                    outcome: outcome.clone(),
                    expires_at: now + keep,
                },
            );
        }
        outcome
    }

    async fn fetch(
        &self,
        url: &str,
        insecure: bool,
    ) -> Result<(ClientMetadata, i64), MetadataError> {
        let u = check_document_url(url, insecure)?;
        let literal = match u.host() {
            Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
            Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
            _ => None,
        };
        if !insecure && literal.is_some_and(|ip| !is_public(ip)) {
            return Err(refused(
                "the client_id URL names a private or loopback address",
            ));
        }
        let unreachable = || {
            refused(
                "the client's metadata document could not be fetched (unreachable, too slow, or a private address)",
            )
        };
        let mut r = self
            .http(insecure)?
            .get(u)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|_| unreachable())?;
        if r.status().is_redirection() {
            return Err(refused(
                "the client's metadata document URL answered with a redirect: redirects are not followed",
            ));
        }
        if r.status() != reqwest::StatusCode::OK {
            return Err(refused(format!(
                "the client's metadata document URL answered {}",
                r.status().as_u16()
            )));
        }
        let headers = r.headers();
        if !headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(json_type)
        {
            return Err(refused(
                "the client's metadata document must be served as application/json",
            ));
        }
        let keep = lifetime(
            headers
                .get(reqwest::header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
        );
        let too_big = || {
            refused(format!(
                "the client's metadata document is larger than {MAX_DOCUMENT} bytes"
            ))
        };
        if r.content_length().is_some_and(|n| n > MAX_DOCUMENT as u64) {
            return Err(too_big());
        }
        let mut body = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(|_| unreachable())? {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((parse_document(url, &body)?, keep))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_lifetimes_are_bounded() {
        assert_eq!(lifetime(None), DEFAULT_CACHE);
        assert_eq!(lifetime(Some("max-age=120")), 120);
        assert_eq!(lifetime(Some("public, max-age=999999999")), MAX_CACHE);
        assert_eq!(lifetime(Some("max-age=1")), MIN_CACHE);
        assert_eq!(lifetime(Some("no-store")), MIN_CACHE);
        assert_eq!(lifetime(Some("max-age=-5")), MIN_CACHE);
        assert_eq!(lifetime(Some("max-age=x")), DEFAULT_CACHE);
    }

    #[test]
    fn only_json_is_read() {
        assert!(json_type("application/json"));
        assert!(json_type("application/json; charset=utf-8"));
        assert!(json_type("application/client-metadata+json"));
        assert!(!json_type("text/html"));
        assert!(!json_type("application/jsonp"));
        assert!(!json_type(""));
    }
}
