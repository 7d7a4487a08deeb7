//! OAuth 2.0 Protected Resource Metadata (RFC 9728): the document a resource
//! serves at `/.well-known/oauth-protected-resource` (with the resource's path
//! appended, section 3.1) so that a client that knows only the resource's URL
//! finds the broker, the scopes and the proof requirements; and the
//! `resource_metadata` parameter of a `401` challenge (section 5.1).
//!
//! Built here once; the axum helper, the Python and Node bindings and the
//! broker's gateway only serve what this returns. Pure: no I/O.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::dpop::PROOF_ALGS;
use crate::error::{Error, Result};

/// The well-known path prefix (RFC 9728 section 3).
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";
/// Largest metadata document a client accepts, bytes.
pub const MAX_DOCUMENT: usize = 64 * 1024;

/// A protected-resource metadata document (the members this project uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceMetadata {
    /// The resource identifier: the audience of its tokens.
    pub resource: String,
    /// Issuer URLs of the authorization servers (the broker).
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// Scope names clients may ask for (RECOMMENDED by RFC 9728).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    /// How the token is sent: `header` only (RFC 6750 section 2.1 / RFC 9449).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bearer_methods_supported: Vec<String>,
    /// DPoP proof algorithms accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dpop_signing_alg_values_supported: Vec<String>,
    /// Whether only DPoP-bound tokens are accepted.
    #[serde(default)]
    pub dpop_bound_access_tokens_required: bool,
    /// Documentation for developers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_documentation: Option<String>,
}

/// Whether `host` is a loopback name or address (plain HTTP is allowed there).
pub fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(a) => a.is_loopback(),
        url::Host::Ipv6(a) => a.is_loopback(),
    }
}

/// Parse a resource identifier: an absolute `https` URL (or `http` on a
/// loopback host) without query, fragment or user information.
pub fn parse_resource(resource: &str) -> Result<Url> {
    let bad = |why: &str| Error::InvalidTarget(format!("the resource {resource:?} {why}"));
    if resource.len() > 2048 {
        return Err(bad("is too long"));
    }
    let u = Url::parse(resource).map_err(|_| bad("is not an absolute URL"))?;
    let host = u.host().ok_or_else(|| bad("names no host"))?;
    match u.scheme() {
        "https" => {}
        "http" if is_loopback_host(&host) => {}
        _ => return Err(bad("must be https (http only on a loopback address)")),
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(bad("must have no query and no fragment"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad("must carry no user information"));
    }
    Ok(u)
}

/// The path the metadata of `resource` is served at: the well-known prefix,
/// then the resource's path without its terminating slash (RFC 9728 section
/// 3.1): `https://api.example/mcp` → `/.well-known/oauth-protected-resource/mcp`,
/// `https://api.example` → `/.well-known/oauth-protected-resource`.
pub fn metadata_path(resource: &str) -> Result<String> {
    let u = parse_resource(resource)?;
    let path = u.path().trim_end_matches('/');
    Ok(format!("{WELL_KNOWN}{path}"))
}

/// The absolute URL of `resource`'s metadata.
pub fn metadata_url(resource: &str) -> Result<String> {
    let u = parse_resource(resource)?;
    let path = u.path().trim_end_matches('/');
    Ok(format!(
        "{}{WELL_KNOWN}{path}",
        u.origin().ascii_serialization()
    ))
}

impl ResourceMetadata {
    /// The document for `resource` protected by the broker at `issuer`:
    /// DPoP-bound tokens required, the header method, this project's proof
    /// algorithms. `scopes` are the names clients may ask for (templates and
    /// protocol scopes left out by the caller).
    pub fn new(resource: &str, issuer: &str, scopes: &[String]) -> Result<Self> {
        parse_resource(resource)?;
        let issuer_ok = Url::parse(issuer)
            .ok()
            .is_some_and(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some());
        if !issuer_ok {
            return Err(Error::InvalidRequest(format!(
                "the authorization server {issuer:?} is not an http(s) URL"
            )));
        }
        for s in scopes {
            crate::scope::Scope::parse(s)?;
        }
        Ok(ResourceMetadata {
            resource: resource.to_owned(),
            authorization_servers: vec![issuer.trim_end_matches('/').to_owned()],
            scopes_supported: scopes.to_vec(),
            bearer_methods_supported: vec!["header".into()],
            dpop_signing_alg_values_supported: PROOF_ALGS.iter().map(|s| (*s).to_owned()).collect(),
            dpop_bound_access_tokens_required: true,
            resource_documentation: None,
        })
    }

    /// The same with a documentation URL.
    pub fn with_documentation(mut self, url: Option<&str>) -> Self {
        self.resource_documentation = url.map(str::to_owned);
        self
    }

    /// The JSON document.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Read a document a resource served, checking it is for `asked` (RFC
    /// 9728 section 3.3: `resource` must equal the URL the client used) and
    /// names an authorization server.
    pub fn parse_for(body: &[u8], asked: &str) -> Result<Self> {
        if body.len() > MAX_DOCUMENT {
            return Err(Error::InvalidRequest(
                "the protected-resource metadata is too large".into(),
            ));
        }
        let m: ResourceMetadata = serde_json::from_slice(body).map_err(|e| {
            Error::InvalidRequest(format!("unreadable protected-resource metadata: {e}"))
        })?;
        if m.resource.trim_end_matches('/') != asked.trim_end_matches('/') {
            return Err(Error::InvalidTarget(format!(
                "the metadata is for {:?}, not for {asked:?}",
                m.resource
            )));
        }
        if m.authorization_servers.is_empty() {
            return Err(Error::InvalidRequest(
                "the protected-resource metadata names no authorization server".into(),
            ));
        }
        Ok(m)
    }
}

/// `challenge` (a `WWW-Authenticate` value) with `resource_metadata="url"`
/// added (RFC 9728 section 5.1).
pub fn with_resource_metadata(challenge: &str, url: &str) -> String {
    let url: String = url
        .chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\'))
        .collect();
    if challenge.contains(' ') {
        format!("{challenge}, resource_metadata=\"{url}\"")
    } else {
        // A bare scheme (`DPoP`) takes parameters after one space.
        format!("{challenge} resource_metadata=\"{url}\"")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_insert_the_well_known_prefix() {
        assert_eq!(
            metadata_path("https://api.example/mcp").unwrap(),
            "/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            metadata_path("https://api.example/").unwrap(),
            "/.well-known/oauth-protected-resource"
        );
        assert_eq!(
            metadata_url("https://api.example:8443/a/b/").unwrap(),
            "https://api.example:8443/.well-known/oauth-protected-resource/a/b"
        );
        assert_eq!(
            metadata_url("http://127.0.0.1:9000/mcp").unwrap(),
            "http://127.0.0.1:9000/.well-known/oauth-protected-resource/mcp"
        );
        for bad in [
            "http://api.example/mcp",
            "https://api.example/?q=1",
            "https://u:p@api.example/",
            "ftp://api.example",
            "/mcp",
        ] {
            assert!(metadata_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_document_round_trips_and_is_checked() {
        let m = ResourceMetadata::new(
            "https://api.example/mcp",
            "https://auth.example/",
            &["travel:search".into()],
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(v["authorization_servers"][0], "https://auth.example");
        assert_eq!(v["dpop_bound_access_tokens_required"], true);
        assert_eq!(v["scopes_supported"][0], "travel:search");
        assert!(v.get("resource_documentation").is_none());
        let back = ResourceMetadata::parse_for(m.to_json().as_bytes(), "https://api.example/mcp");
        assert_eq!(back.unwrap(), m);
        let other = ResourceMetadata::parse_for(m.to_json().as_bytes(), "https://evil.example/mcp");
        assert_eq!(other.unwrap_err().code(), "invalid_target");
        assert!(
            ResourceMetadata::new("https://a.example", "https://b", &["bad scope".into()]).is_err()
        );
        assert!(ResourceMetadata::parse_for(&vec![b' '; MAX_DOCUMENT + 1], "x").is_err());
    }

    #[test]
    fn challenges_gain_the_metadata_url() {
        assert_eq!(
            with_resource_metadata("DPoP algs=\"EdDSA\"", "https://a/.well-known/x\"y"),
            "DPoP algs=\"EdDSA\", resource_metadata=\"https://a/.well-known/xy\""
        );
        assert_eq!(
            with_resource_metadata("DPoP", "https://a/m"),
            "DPoP resource_metadata=\"https://a/m\""
        );
    }
}
