//! Finding the broker from the API (RFC 9728, as the MCP authorization
//! specification does it): an agent given only a resource's URL asks the
//! resource, reads its protected-resource metadata, checks it names that very
//! resource, and takes the broker from `authorization_servers`.
//!
//! Order: one unauthenticated `GET` of the resource, whose `401` challenge may
//! name the metadata (`resource_metadata`) and the scopes it needs (`scope`);
//! then that metadata URL, else the path-suffixed well-known URL, else the
//! root one. The path-suffixed URL is fetched at the same time as the
//! resource (its answer is used only in its place in that order): when the
//! challenge names it, as it usually does, discovery takes one round trip
//! instead of two. Every fetch is bounded (5 s, 64 KiB, no redirects); the
//! resource, the metadata URL and the broker must be `https` except on
//! loopback.
//!
//! What is found is kept per resource for as long as the metadata's response
//! allows (its `Cache-Control` `max-age`; 1 hour without one, at most a day),
//! and forgotten at once when the resource answers a `401` that names other
//! metadata ([`note_challenge`]): the next discovery asks again.

use std::sync::OnceLock;
use std::time::Duration;

use super::http::{self, Expiring};
use crate::error::{Error, Result};
use crate::resource_metadata::{
    MAX_DOCUMENT, ResourceMetadata, WELL_KNOWN, is_loopback_host, parse_resource,
};

/// Time allowed for each discovery request.
const TIMEOUT: Duration = Duration::from_secs(5);

/// What the resource said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// Its checked metadata.
    pub metadata: ResourceMetadata,
    /// The broker: the first authorization server.
    pub issuer: String,
    /// The `scope` of its `401` challenge, if any.
    pub challenge_scope: Option<String>,
}

fn refused(msg: String) -> Error {
    Error::InvalidResponse(format!("resource discovery: {msg}"))
}

/// `https`, or `http` on loopback.
fn check_url(what: &str, u: &str) -> Result<url::Url> {
    let p = url::Url::parse(u).map_err(|_| refused(format!("{what} {u:?} is not a URL")))?;
    let ok = match (p.scheme(), p.host()) {
        ("https", Some(_)) => true,
        ("http", Some(h)) => is_loopback_host(&h),
        _ => false,
    };
    if !ok {
        return Err(refused(format!(
            "{what} {u:?} must be https (http only on a loopback address)"
        )));
    }
    Ok(p)
}

/// The value of parameter `name` in a `WWW-Authenticate` header.
pub fn challenge_param(header: &str, name: &str) -> Option<String> {
    let mut rest = header;
    while let Some(i) = rest.find(name) {
        let before_ok = i == 0
            || rest[..i]
                .chars()
                .last()
                .is_some_and(|c| c == ' ' || c == ',');
        let after = rest[i + name.len()..].trim_start();
        if before_ok && let Some(v) = after.strip_prefix('=') {
            let v = v.trim_start();
            return Some(match v.strip_prefix('"') {
                Some(q) => q.split('"').next().unwrap_or_default().to_owned(),
                None => v.split([',', ' ']).next().unwrap_or_default().to_owned(),
            });
        }
        rest = &rest[i + name.len()..];
    }
    None
}

async fn fetch(url: &str) -> Fetched {
    let r = http::client()?
        .get(url)
        .header("accept", "application/json")
        .timeout(TIMEOUT)
        .send()
        .await
        .map_err(|e| http::unreachable("resource discovery", &e))?;
    let status = r.status().as_u16();
    let www = http::www_authenticate(&r);
    let ttl = http::cache_lifetime(r.headers());
    if r.content_length().is_some_and(|n| n > MAX_DOCUMENT as u64) {
        return Err(refused(format!(
            "{url} answered more than {MAX_DOCUMENT} bytes"
        )));
    }
    let body = http::read_body(r).await?;
    Ok((status, www, body, ttl))
}

type Fetched = Result<(u16, Option<String>, Vec<u8>, Duration)>;

/// A fetch started ahead of its turn, aborted if it is never awaited.
struct Early(tokio::task::JoinHandle<Fetched>);

impl Drop for Early {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What was discovered per resource, with the metadata URL it came from.
fn cache() -> &'static Expiring<(Discovered, String)> {
    static CACHE: OnceLock<Expiring<(Discovered, String)>> = OnceLock::new();
    CACHE.get_or_init(Expiring::new)
}

/// Take note of a `401` from `resource` (its `WWW-Authenticate` value): when
/// it names other protected-resource metadata than the one the resource was
/// discovered from, the resource has moved (another broker, other scopes)
/// and what was discovered is forgotten.
pub fn note_challenge(resource: &str, www_authenticate: &str) {
    let Some(named) = challenge_param(www_authenticate, "resource_metadata") else {
        return;
    };
    if cache().get(resource).is_some_and(|(_, from)| from != named) {
        cache().remove(resource);
    }
}

/// Ask `resource` where its broker is (see the module documentation).
/// Results are kept as long as the metadata's response allows (its
/// `Cache-Control` `max-age`, else 1 hour; at most a day).
pub async fn discover_resource(resource: &str) -> Result<Discovered> {
    if let Some((d, _)) = cache().get(resource) {
        return Ok(d);
    }
    let u = parse_resource(resource).map_err(|e| match e {
        Error::InvalidTarget(m) => Error::InvalidRequest(m),
        other => other,
    })?;
    let origin = u.origin().ascii_serialization();
    let path = u.path().trim_end_matches('/');
    let suffixed = format!("{origin}{WELL_KNOWN}{path}");
    // The resource's own challenge comes first: it may name its metadata and
    // scopes. The path-suffixed metadata, where a resource serves it unless
    // its challenge says otherwise, is asked for at the same time rather than
    // one round trip later; its answer is used only where the order below
    // puts it, and goes through the same checks.
    // Not awaited when the challenge names metadata that answers: dropped
    // (and so aborted) then, never waited for.
    let mut early = Some(Early(tokio::spawn({
        let u = suffixed.clone();
        async move { fetch(&u).await }
    })));
    let (status, www, _, _) = fetch(resource).await?;
    let www = www.filter(|_| status == 401);
    let challenge_scope = www.as_deref().and_then(|w| challenge_param(w, "scope"));
    let mut candidates = Vec::new();
    if let Some(m) = www
        .as_deref()
        .and_then(|w| challenge_param(w, "resource_metadata"))
    {
        check_url("the resource_metadata URL", &m)?;
        candidates.push(m);
    }
    candidates.push(suffixed.clone());
    candidates.push(format!("{origin}{WELL_KNOWN}"));
    candidates.dedup();
    let mut last = None;
    for c in candidates {
        let answer = match early.take_if(|_| c == suffixed) {
            Some(mut e) => (&mut e.0)
                .await
                .map_err(|e| refused(format!("{c}: the request failed ({e})")))?,
            None => fetch(&c).await,
        };
        match answer? {
            (200, _, body, ttl) => {
                let metadata = ResourceMetadata::parse_for(&body, resource)
                    .map_err(|e| refused(format!("{c}: {e}")))?;
                let issuer = metadata
                    .authorization_servers
                    .first()
                    .cloned()
                    .unwrap_or_default();
                check_url("the authorization server", &issuer)?;
                let d = Discovered {
                    metadata,
                    issuer: issuer.trim_end_matches('/').to_owned(),
                    challenge_scope,
                };
                cache().insert(resource.to_owned(), (d.clone(), c), ttl);
                return Ok(d);
            }
            (s, _, _, _) => last = Some(format!("{c} answered {s}")),
        }
    }
    Err(refused(format!(
        "{resource} serves no protected-resource metadata ({}); pass the broker URL",
        last.unwrap_or_default()
    )))
}

/// The broker and scopes `authenticate_with_proton` uses: an explicit broker
/// (option or `PROTONPASS_BROKER_URL`) overrides discovery; with no scopes
/// given, the resource's challenge `scope`, else its `scopes_supported`.
pub(crate) async fn resolve<S: AsRef<str>>(
    scopes: &[S],
    audience: &str,
    broker: Option<String>,
) -> Result<(String, Vec<String>)> {
    let given: Vec<String> = scopes.iter().map(|s| s.as_ref().to_owned()).collect();
    if let (Some(b), false) = (&broker, given.is_empty()) {
        return Ok((b.clone(), given));
    }
    let d = discover_resource(audience)
        .await
        .map_err(|e| match broker {
            None => Error::InvalidRequest(format!(
                "no broker URL: pass `broker`, set PROTONPASS_BROKER_URL, or protect the API with \
             RFC 9728 metadata ({e})"
            )),
            Some(_) => e,
        })?;
    let scopes = if !given.is_empty() {
        given
    } else if let Some(s) = &d.challenge_scope {
        s.split(' ')
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    } else {
        d.metadata.scopes_supported.clone()
    };
    if scopes.is_empty() {
        return Err(Error::InvalidScope(format!(
            "no scopes given, and {audience} names none"
        )));
    }
    Ok((broker.unwrap_or(d.issuer), scopes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parameters_are_read() {
        let w = "DPoP error=\"insufficient_scope\", scope=\"travel:book payment:x\", algs=\"EdDSA\", resource_metadata=\"https://a/.well-known/oauth-protected-resource/mcp\"";
        assert_eq!(
            challenge_param(w, "scope").unwrap(),
            "travel:book payment:x"
        );
        assert_eq!(
            challenge_param(w, "resource_metadata").unwrap(),
            "https://a/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(challenge_param("Bearer realm=x", "scope"), None);
        assert_eq!(challenge_param("Bearer xscope=\"a\"", "scope"), None);
        assert_eq!(
            challenge_param("Bearer scope=a:b, x=1", "scope").unwrap(),
            "a:b"
        );
    }

    #[test]
    fn urls_must_be_https_or_loopback() {
        assert!(check_url("x", "https://auth.example").is_ok());
        assert!(check_url("x", "http://127.0.0.1:9").is_ok());
        assert!(check_url("x", "http://localhost:9").is_ok());
        assert!(check_url("x", "http://auth.example").is_err());
        assert!(check_url("x", "file:///etc/passwd").is_err());
    }
}
