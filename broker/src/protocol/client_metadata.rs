//! Client metadata of third-party OAuth clients (MCP clients): the body of an
//! RFC 7591 dynamic client registration or of a Client ID Metadata Document
//! (draft-ietf-oauth-client-id-metadata-document), read by strict, pure
//! functions that fuzzing and tests call directly, and the redirect URI rule
//! every authorization request is held to.
//!
//! Only public clients are registered (`token_endpoint_auth_method` `none`),
//! for the authorization code grant with PKCE. A redirect URI is `https`, or
//! `http` on a loopback address (RFC 8252 section 7.3); never a fragment,
//! user information or another scheme (RFC 9700 section 4.1).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where clients register (`POST`, RFC 7591).
pub const REGISTRATION_PATH: &str = "/oauth/register";
/// Largest registration body, bytes.
pub const MAX_BODY: usize = 8 * 1024;
/// Most redirect URIs of one client.
pub const MAX_REDIRECT_URIS: usize = 8;
/// Longest redirect URI (or `client_uri`), bytes.
pub const MAX_URI: usize = 512;
/// Longest `client_name`, characters.
pub const MAX_NAME: usize = 100;
/// Largest Client ID Metadata Document, bytes (the draft suggests 5 KB).
pub const MAX_DOCUMENT: usize = 5 * 1024;

/// A refused registration: the RFC 7591 section 3.2.2 error codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataError {
    /// A redirect URI is not acceptable.
    InvalidRedirectUri(String),
    /// Any other field is not acceptable.
    InvalidClientMetadata(String),
}

impl MetadataError {
    /// The wire error code.
    pub fn code(&self) -> &'static str {
        match self {
            MetadataError::InvalidRedirectUri(_) => "invalid_redirect_uri",
            MetadataError::InvalidClientMetadata(_) => "invalid_client_metadata",
        }
    }

    /// The human description.
    pub fn description(&self) -> &str {
        match self {
            MetadataError::InvalidRedirectUri(m) | MetadataError::InvalidClientMetadata(m) => m,
        }
    }
}

/// What a registered client declared (and what the broker answers back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMetadata {
    /// Where authorization responses may go: exact strings.
    pub redirect_uris: Vec<String>,
    /// A display name, self-asserted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// The client's home page, self-asserted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    /// Always `authorization_code`, and `refresh_token` when asked.
    pub grant_types: Vec<String>,
    /// Always `code`.
    pub response_types: Vec<String>,
    /// Always `none`: a public client.
    pub token_endpoint_auth_method: String,
}

fn meta(m: impl Into<String>) -> MetadataError {
    MetadataError::InvalidClientMetadata(m.into())
}

fn redirect(m: impl Into<String>) -> MetadataError {
    MetadataError::InvalidRedirectUri(m.into())
}

/// Whether `host` names the local machine's loopback interface.
fn loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Ipv4(a) => a.is_loopback(),
        url::Host::Ipv6(a) => a.is_loopback(),
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
    }
}

/// Check one redirect URI: an absolute `https` URI, or `http` on loopback;
/// no fragment, no user information, no control or space characters, at
/// most [`MAX_URI`] bytes. The string is compared exactly at authorization
/// time, so it must already be in the form a URL parser would write.
pub fn check_redirect_uri(s: &str) -> Result<(), MetadataError> {
    if s.is_empty() || s.len() > MAX_URI {
        return Err(redirect(format!(
            "a redirect URI is 1 to {MAX_URI} bytes long"
        )));
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(redirect(
            "a redirect URI holds no spaces or control characters",
        ));
    }
    let u = url::Url::parse(s).map_err(|_| redirect("a redirect URI must be an absolute URI"))?;
    if u.fragment().is_some() || s.contains('#') {
        return Err(redirect("a redirect URI must not hold a fragment"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(redirect("a redirect URI must not hold user information"));
    }
    let Some(host) = u.host() else {
        return Err(redirect("a redirect URI must name a host"));
    };
    match u.scheme() {
        "https" => {}
        "http" if loopback(&host) => {}
        "http" => {
            return Err(redirect(
                "an http redirect URI must be on a loopback address (127.0.0.1, [::1] or localhost); use https",
            ));
        }
        _ => {
            return Err(redirect(
                "a redirect URI must use https (or http on loopback)",
            ));
        }
    }
    // The parser's form (lower-case scheme and host, default port dropped)
    // must be the string itself: two spellings of one URI would defeat the
    // exact comparison.
    let written = u.as_str();
    let same = written == s || (u.path() == "/" && written.strip_suffix('/') == Some(s));
    if !same {
        return Err(redirect(format!(
            "write the redirect URI in its normal form: {written}"
        )));
    }
    Ok(())
}

fn opt_str<'a>(
    o: &'a serde_json::Map<String, Value>,
    k: &str,
) -> Result<Option<&'a str>, MetadataError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(meta(format!("{k} must be a string"))),
    }
}

fn str_list<'a>(
    o: &'a serde_json::Map<String, Value>,
    k: &str,
    max: usize,
) -> Result<Option<Vec<&'a str>>, MetadataError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) if a.len() <= max => a
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| meta(format!("{k} must be a list of strings")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(Value::Array(_)) => Err(meta(format!("{k} holds more than {max} values"))),
        Some(_) => Err(meta(format!("{k} must be a list of strings"))),
    }
}

/// Read an RFC 7591 registration request body (JSON). Unknown fields are
/// ignored (RFC 7591 section 2); the known ones are held to this broker's
/// rules, and anything it would not honour is refused rather than dropped.
pub fn parse_registration(body: &[u8]) -> Result<ClientMetadata, MetadataError> {
    if body.len() > MAX_BODY {
        return Err(meta(format!(
            "the registration is larger than {MAX_BODY} bytes"
        )));
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|_| meta("the registration must be a JSON object"))?;
    let Value::Object(o) = v else {
        return Err(meta("the registration must be a JSON object"));
    };
    parse_object(&o)
}

/// Whether `client_id` names a Client ID Metadata Document (a URL) rather
/// than a client registered here (`mcp_...`). `insecure` (tests only) lets
/// `http` URLs through.
pub fn is_document_id(client_id: &str, insecure: bool) -> bool {
    client_id.starts_with("https://") || (insecure && client_id.starts_with("http://"))
}

/// Check a `client_id` that is a Client ID Metadata Document URL: `https`
/// (or `http` when `insecure`, for tests), a host, a path other than `/`, no
/// dot segments, no fragment, query or user information, at most
/// [`MAX_URI`] bytes, and written in the parser's normal form (the document's
/// own `client_id` is compared to it as a plain string).
pub fn check_document_url(s: &str, insecure: bool) -> Result<url::Url, MetadataError> {
    let bad = |m: &str| meta(format!("the client_id URL {m}"));
    if s.is_empty() || s.len() > MAX_URI {
        return Err(bad(&format!("is 1 to {MAX_URI} bytes long")));
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("holds no spaces or control characters"));
    }
    let u = url::Url::parse(s).map_err(|_| bad("is not an absolute URL"))?;
    match u.scheme() {
        "https" => {}
        "http" if insecure => {}
        _ => return Err(bad("must use https")),
    }
    if u.host().is_none() {
        return Err(bad("must name a host"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad("must not hold user information"));
    }
    if s.contains('#') || s.contains('?') {
        return Err(bad("must not hold a fragment or a query"));
    }
    if u.path() == "/" {
        return Err(bad("must have a path (it names a document)"));
    }
    // The parser removes dot segments: a raw one shows up as a difference
    // below, and an encoded one is refused here.
    let lower = s.to_ascii_lowercase();
    if lower.contains("/%2e") || lower.contains("%2f") || lower.contains("%5c") {
        return Err(bad("must not hold encoded dots or slashes"));
    }
    if u.as_str() != s {
        return Err(bad(&format!("must be written in its normal form: {u}")));
    }
    Ok(u)
}

/// Read a Client ID Metadata Document fetched from `client_id`: the same
/// rules as a registration, plus the document's `client_id` must be the URL
/// it was fetched from, exactly, and it holds no client secret (a public
/// client; `token_endpoint_auth_method` `none`).
pub fn parse_document(client_id: &str, body: &[u8]) -> Result<ClientMetadata, MetadataError> {
    if body.len() > MAX_DOCUMENT {
        return Err(meta(format!(
            "the client's metadata document is larger than {MAX_DOCUMENT} bytes"
        )));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| meta("the client's metadata document must be a JSON object"))?;
    let Value::Object(o) = v else {
        return Err(meta("the client's metadata document must be a JSON object"));
    };
    if opt_str(&o, "client_id")? != Some(client_id) {
        return Err(meta(
            "the document's client_id must be the URL it was fetched from, exactly",
        ));
    }
    if o.contains_key("client_secret") || o.contains_key("client_secret_expires_at") {
        return Err(meta(
            "a client metadata document must not hold a client secret",
        ));
    }
    parse_object(&o)
}

/// The rules shared by registrations and metadata documents.
fn parse_object(o: &serde_json::Map<String, Value>) -> Result<ClientMetadata, MetadataError> {
    let uris = str_list(o, "redirect_uris", MAX_REDIRECT_URIS)
        .map_err(|e| redirect(e.description().to_owned()))?
        .unwrap_or_default();
    if uris.is_empty() {
        return Err(redirect(
            "redirect_uris must list at least one redirect URI",
        ));
    }
    let mut redirect_uris: Vec<String> = Vec::with_capacity(uris.len());
    for u in uris {
        check_redirect_uri(u)?;
        if !redirect_uris.iter().any(|x| x == u) {
            redirect_uris.push(u.to_owned());
        }
    }
    match opt_str(o, "token_endpoint_auth_method")? {
        None | Some("none") => {}
        Some(other) => {
            return Err(meta(format!(
                "token_endpoint_auth_method {other:?} is not supported: only public clients (none) register here"
            )));
        }
    }
    let grant_types = match str_list(o, "grant_types", 4)? {
        None => vec!["authorization_code".to_owned(), "refresh_token".to_owned()],
        Some(g) => {
            if let Some(bad) = g
                .iter()
                .find(|g| !matches!(**g, "authorization_code" | "refresh_token"))
            {
                return Err(meta(format!("the grant type {bad:?} is not supported")));
            }
            if !g.contains(&"authorization_code") {
                return Err(meta("grant_types must include authorization_code"));
            }
            let mut out = vec!["authorization_code".to_owned()];
            if g.contains(&"refresh_token") {
                out.push("refresh_token".to_owned());
            }
            out
        }
    };
    if let Some(r) = str_list(o, "response_types", 4)?
        && r.iter().any(|r| *r != "code")
    {
        return Err(meta("only the response type code is supported"));
    }
    let client_name = match opt_str(o, "client_name")? {
        None => None,
        Some(n) => {
            let n = n.trim();
            if n.is_empty() || n.chars().count() > MAX_NAME || n.chars().any(char::is_control) {
                return Err(meta(format!(
                    "client_name is 1 to {MAX_NAME} characters without control characters"
                )));
            }
            Some(n.to_owned())
        }
    };
    let client_uri = match opt_str(o, "client_uri")? {
        None => None,
        Some(u) => {
            let ok = u.len() <= MAX_URI
                && url::Url::parse(u).is_ok_and(|p| p.scheme() == "https" && p.host().is_some());
            if !ok {
                return Err(meta("client_uri must be an https URL"));
            }
            Some(u.to_owned())
        }
    };
    Ok(ClientMetadata {
        redirect_uris,
        client_name,
        client_uri,
        grant_types,
        response_types: vec!["code".to_owned()],
        token_endpoint_auth_method: "none".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> &'static str {
        match parse_registration(body.as_bytes()) {
            Ok(m) => panic!("accepted {body}: {m:?}"),
            Err(e) => e.code(),
        }
    }

    #[test]
    fn a_typical_mcp_client_registers() {
        let m = parse_registration(
            br#"{"redirect_uris":["http://localhost:3030/callback"],"client_name":"MCP Inspector",
                "grant_types":["authorization_code","refresh_token"],"response_types":["code"],
                "token_endpoint_auth_method":"none","scope":"travel:search","extra":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(m.redirect_uris, ["http://localhost:3030/callback"]);
        assert_eq!(m.client_name.as_deref(), Some("MCP Inspector"));
        assert_eq!(m.grant_types, ["authorization_code", "refresh_token"]);
        assert_eq!(m.token_endpoint_auth_method, "none");
        let m = parse_registration(br#"{"redirect_uris":["https://app.example/cb"]}"#).unwrap();
        assert_eq!(m.grant_types, ["authorization_code", "refresh_token"]);
    }

    #[test]
    fn redirect_uris_are_https_or_loopback_http_in_normal_form() {
        for ok in [
            "https://app.example/cb",
            "https://app.example",
            "http://127.0.0.1:8123/callback",
            "http://[::1]:9/cb?x=1",
            "http://localhost/cb",
        ] {
            check_redirect_uri(ok).unwrap_or_else(|e| panic!("{ok}: {e:?}"));
        }
        for bad in [
            "",
            "/relative",
            "http://app.example/cb",
            "http://10.0.0.1/cb",
            "https://app.example/cb#frag",
            "https://app.example/cb#",
            "https://user:pw@app.example/cb",
            "https://user@app.example/cb",
            "javascript:alert(1)",
            "data:text/html,x",
            "file:///etc/passwd",
            "cursor://callback",
            "HTTPS://APP.EXAMPLE/cb",
            "https://app.example:443/cb",
            "https://app.example/a b",
            "https://app.example/\ncb",
            "http://localhost.evil.example/cb",
            "http://127.0.0.1.nip.io/cb",
        ] {
            assert_eq!(
                check_redirect_uri(bad).map_err(|e| e.code()),
                Err("invalid_redirect_uri"),
                "{bad:?}"
            );
        }
        let long = format!("https://app.example/{}", "a".repeat(MAX_URI));
        assert!(check_redirect_uri(&long).is_err());
    }

    #[test]
    fn hostile_registrations_get_typed_errors() {
        let nine: Vec<String> = (0..9)
            .map(|i| format!("\"https://a.example/{i}\""))
            .collect();
        let cases = [
            ("", "invalid_client_metadata"),
            ("[]", "invalid_client_metadata"),
            ("null", "invalid_client_metadata"),
            ("{", "invalid_client_metadata"),
            ("{}", "invalid_redirect_uri"),
            (r#"{"redirect_uris":[]}"#, "invalid_redirect_uri"),
            (
                r#"{"redirect_uris":"https://a.example/cb"}"#,
                "invalid_redirect_uri",
            ),
            (r#"{"redirect_uris":[1]}"#, "invalid_redirect_uri"),
            (
                r#"{"redirect_uris":["http://a.example/cb"]}"#,
                "invalid_redirect_uri",
            ),
            (
                r#"{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"client_secret_basic"}"#,
                "invalid_client_metadata",
            ),
            (
                r#"{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":7}"#,
                "invalid_client_metadata",
            ),
            (
                r#"{"redirect_uris":["https://a.example/cb"],"grant_types":["implicit"]}"#,
                "invalid_client_metadata",
            ),
            (
                r#"{"redirect_uris":["https://a.example/cb"],"grant_types":["refresh_token"]}"#,
                "invalid_client_metadata",
            ),
            (
                r#"{"redirect_uris":["https://a.example/cb"],"response_types":["token"]}"#,
                "invalid_client_metadata",
            ),
            (
                r#"{"redirect_uris":["https://a.example/cb"],"client_name":"a\u0007b"}"#,
                "invalid_client_metadata",
            ),
            (
                r#"{"redirect_uris":["https://a.example/cb"],"client_name":"   "}"#,
                "invalid_client_metadata",
            ),
            (
                r#"{"redirect_uris":["https://a.example/cb"],"client_uri":"javascript:x"}"#,
                "invalid_client_metadata",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(code(body), want, "{body}");
        }
        assert_eq!(
            code(&format!("{{\"redirect_uris\":[{}]}}", nine.join(","))),
            "invalid_redirect_uri"
        );
        let name = "n".repeat(MAX_NAME + 1);
        assert_eq!(
            code(&format!(
                "{{\"redirect_uris\":[\"https://a.example/cb\"],\"client_name\":\"{name}\"}}"
            )),
            "invalid_client_metadata"
        );
        let big = format!(
            "{{\"redirect_uris\":[\"https://a.example/cb\"],\"x\":\"{}\"}}",
            "a".repeat(MAX_BODY)
        );
        assert_eq!(code(&big), "invalid_client_metadata");
        // Deep nesting in an ignored field is refused by the JSON reader's
        // own recursion limit, not a crash.
        let deep = format!(
            "{{\"redirect_uris\":[\"https://a.example/cb\"],\"x\":{}{}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(code(&deep), "invalid_client_metadata");
    }

    #[test]
    fn duplicate_redirect_uris_are_kept_once() {
        let m = parse_registration(
            br#"{"redirect_uris":["https://a.example/cb","https://a.example/cb"]}"#,
        )
        .unwrap();
        assert_eq!(m.redirect_uris.len(), 1);
    }

    const DOC: &str = "https://app.example/oauth/client.json";

    #[test]
    fn a_metadata_document_names_itself() {
        let m = parse_document(
            DOC,
            br#"{"client_id":"https://app.example/oauth/client.json","client_name":"Editor",
                "redirect_uris":["http://127.0.0.1:3000/cb"],"token_endpoint_auth_method":"none",
                "logo_uri":"https://app.example/logo.png"}"#,
        )
        .unwrap();
        assert_eq!(m.redirect_uris, ["http://127.0.0.1:3000/cb"]);
        assert_eq!(m.client_name.as_deref(), Some("Editor"));
    }

    #[test]
    fn hostile_metadata_documents_are_refused() {
        let doc = |extra: &str| {
            format!(r#"{{"client_id":"{DOC}","redirect_uris":["https://app.example/cb"]{extra}}}"#)
        };
        for body in [
            String::new(),
            "[]".to_owned(),
            r#"{"redirect_uris":["https://app.example/cb"]}"#.to_owned(),
            r#"{"client_id":"https://app.example/oauth/client.json/","redirect_uris":["https://app.example/cb"]}"#.to_owned(),
            r#"{"client_id":"https://APP.example/oauth/client.json","redirect_uris":["https://app.example/cb"]}"#.to_owned(),
            r#"{"client_id":["https://app.example/oauth/client.json"],"redirect_uris":["https://app.example/cb"]}"#.to_owned(),
            doc(r#","client_secret":"s""#),
            doc(r#","client_secret_expires_at":0"#),
            doc(r#","token_endpoint_auth_method":"client_secret_basic""#),
            doc(r#","token_endpoint_auth_method":"private_key_jwt""#),
            doc(r#","grant_types":["client_credentials"]"#),
            doc(&format!(r#","x":"{}""#, "a".repeat(MAX_DOCUMENT))),
            format!(r#"{{"client_id":"{DOC}","redirect_uris":["http://evil.example/cb"]}}"#),
            format!(r#"{{"client_id":"{DOC}","redirect_uris":["javascript:alert(1)"]}}"#),
            format!(r#"{{"client_id":"{DOC}","redirect_uris":[]}}"#),
        ] {
            assert!(parse_document(DOC, body.as_bytes()).is_err(), "{body}");
        }
    }

    #[test]
    fn metadata_document_urls_are_https_with_a_path_in_normal_form() {
        check_document_url(DOC, false).unwrap();
        check_document_url("http://127.0.0.1:9/client.json", true).unwrap();
        for bad in [
            "",
            "http://app.example/client.json",
            "http://127.0.0.1:9/client.json",
            "https://app.example",
            "https://app.example/",
            "https://app.example/a/../client.json",
            "https://app.example/a/./client.json",
            "https://app.example/a/%2e%2e/client.json",
            "https://app.example/a%2fb",
            "https://app.example/client.json?x=1",
            "https://app.example/client.json#x",
            "https://u:p@app.example/client.json",
            "https://APP.example/client.json",
            "https://app.example:443/client.json",
            "https://app.example/a b",
            "ftp://app.example/client.json",
            "mcp_abc",
        ] {
            assert!(check_document_url(bad, false).is_err(), "{bad:?}");
        }
        assert!(is_document_id(DOC, false));
        assert!(!is_document_id("http://127.0.0.1/c.json", false));
        assert!(is_document_id("http://127.0.0.1/c.json", true));
        assert!(!is_document_id("mcp_abc", true));
        let long = format!("https://app.example/{}", "a".repeat(MAX_URI));
        assert!(check_document_url(&long, false).is_err());
    }
}
