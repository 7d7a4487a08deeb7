//! What the gateway sends upstream and returns to the agent: the upstream URL
//! (fixed host, normalised path, the agent's query with the credential's
//! parameter replaced), the headers both ways (the agent's credentials, cookies
//! and hop-by-hop headers never go upstream; hop-by-hop headers and anything
//! holding the secret never come back), and the resolver that keeps requests
//! off private networks.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine as _;
use protonpass_agent::Error;
use zeroize::Zeroizing;

use super::rules::Credential;
// The address rule lives in `public_net` (webhooks and client metadata
// documents use it too); the gateway's callers name it here.
pub use crate::public_net::{PublicResolver, is_public};

/// Hop-by-hop headers (RFC 9110 section 7.6.1) and proxy headers.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Request headers that never go upstream besides the hop-by-hop ones: the
/// agent's own credentials, its cookies, and anything that names a host or
/// client address (the upstream's host comes from the rules alone).
const NOT_FORWARDED: &[&str] = &[
    "authorization",
    "dpop",
    "cookie",
    "host",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
];

fn encode_component(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &c in bytes {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

fn decoded_name(pair: &str) -> String {
    let name = pair.split('=').next().unwrap_or_default();
    url::form_urlencoded::parse(name.as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default()
}

/// The upstream URL: `base` (scheme, host, port, prefix) + the normalised
/// `path` + the agent's `query`, less any parameter named like the credential's
/// (the upstream might read the agent's first), plus the credential's.
pub fn upstream_url(
    base: &url::Url,
    path: &str,
    query: Option<&str>,
    cred: &Credential,
    secret: &[u8],
) -> Result<Zeroizing<String>, Error> {
    let mut out = Zeroizing::new(String::with_capacity(256));
    out.push_str(base.as_str().trim_end_matches('/'));
    out.push_str(path);
    let mut pairs: Vec<&str> = query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .collect();
    let injected = match cred {
        Credential::Query { param } => {
            pairs.retain(|p| decoded_name(p) != *param);
            Some(Zeroizing::new(format!(
                "{param}={}",
                encode_component(secret)
            )))
        }
        _ => None,
    };
    let mut first = true;
    for p in pairs
        .iter()
        .copied()
        .chain(injected.as_deref().map(String::as_str))
    {
        out.push(if first { '?' } else { '&' });
        out.push_str(p);
        first = false;
    }
    // The host is the rules' alone, whatever the path or query hold.
    let parsed = url::Url::parse(&out)
        .map_err(|_| Error::InvalidRequest("the request cannot be forwarded".into()))?;
    if parsed.host() != base.host()
        || parsed.port_or_known_default() != base.port_or_known_default()
    {
        return Err(Error::InvalidRequest(
            "the request cannot be forwarded".into(),
        ));
    }
    Ok(out)
}

fn connection_listed(h: &HeaderMap) -> Vec<String> {
    h.get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The headers sent upstream: the agent's, less its credentials, cookies,
/// host and hop-by-hop headers, plus the injected credential (marked sensitive).
pub fn request_headers(
    agent: &HeaderMap,
    cred: &Credential,
    secret: &[u8],
) -> Result<HeaderMap, Error> {
    let listed = connection_listed(agent);
    let own = match cred {
        Credential::Header { name, .. } => Some(name.as_str()),
        _ => None,
    };
    let mut out = HeaderMap::with_capacity(agent.len() + 1);
    for (k, v) in agent {
        let n = k.as_str();
        if HOP_BY_HOP.contains(&n)
            || NOT_FORWARDED.contains(&n)
            || listed.iter().any(|l| l == n)
            || own == Some(n)
        {
            continue;
        }
        out.append(k.clone(), v.clone());
    }
    let bad = || Error::Server("the credential does not make a valid header".into());
    let text = Zeroizing::new(String::from_utf8(secret.to_vec()).map_err(|_| bad())?);
    let (name, value) = match cred {
        Credential::Header { name, template } => (
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?,
            Zeroizing::new(template.replace("{secret}", &text)),
        ),
        Credential::Basic { template } => {
            let pair = Zeroizing::new(template.replace("{secret}", &text));
            let b64 =
                Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()));
            (
                axum::http::header::AUTHORIZATION,
                Zeroizing::new(format!("Basic {}", b64.as_str())),
            )
        }
        Credential::Query { .. } => return Ok(out),
    };
    let mut hv = HeaderValue::from_str(&value).map_err(|_| bad())?;
    hv.set_sensitive(true);
    out.insert(name, hv);
    Ok(out)
}

/// The headers returned to the agent: the upstream's, less hop-by-hop headers
/// and any header that holds the secret (an upstream that echoes it).
pub fn response_headers(upstream: &HeaderMap, secret: &[u8]) -> HeaderMap {
    let listed = connection_listed(upstream);
    let mut out = HeaderMap::with_capacity(upstream.len());
    for (k, v) in upstream {
        let n = k.as_str();
        if HOP_BY_HOP.contains(&n) || listed.iter().any(|l| l == n) {
            continue;
        }
        if !secret.is_empty() && v.as_bytes().windows(secret.len()).any(|w| w == secret) {
            continue;
        }
        out.append(k.clone(), v.clone());
    }
    out
}

#[cfg(test)]
#[path = "forward_tests.rs"]
mod tests;
