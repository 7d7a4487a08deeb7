//! Form parameters (`application/x-www-form-urlencoded`), strict: a parameter
//! sent twice is `invalid_request` (RFC 6749 section 3.2), sizes are bounded.

use std::collections::BTreeMap;

use protonpass_agent::{Error, Result};

/// Most parameters in one request.
const MAX_PARAMS: usize = 32;
/// Longest parameter value, bytes.
const MAX_VALUE: usize = 8192;

/// Parsed parameters. Values may hold secrets: `Debug` shows names only.
#[derive(Default, Clone)]
pub struct Params(BTreeMap<String, String>);

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// The only content type the endpoints read (parameters may follow it).
const FORM: &str = "application/x-www-form-urlencoded";

impl Params {
    /// Parse a request body sent with `content_type` (the header's value, if
    /// any): anything but a form is `invalid_request`.
    pub fn from_form(content_type: Option<&str>, body: &[u8]) -> Result<Self> {
        let is_form = content_type
            .and_then(|ct| ct.as_bytes().get(..FORM.len()))
            .is_some_and(|head| head.eq_ignore_ascii_case(FORM.as_bytes()));
        if !is_form {
            return Err(Error::InvalidRequest(format!("send parameters as {FORM}")));
        }
        Self::parse(body)
    }

    /// Parse a form body.
    pub fn parse(body: &[u8]) -> Result<Self> {
        let mut m = BTreeMap::new();
        for (k, v) in url::form_urlencoded::parse(body) {
            if m.len() >= MAX_PARAMS {
                return Err(Error::InvalidRequest("too many parameters".into()));
            }
            if v.len() > MAX_VALUE {
                return Err(Error::InvalidRequest(format!("parameter {k} is too long")));
            }
            if m.insert(k.to_string(), v.to_string()).is_some() {
                return Err(Error::InvalidRequest(format!("parameter {k} is repeated")));
            }
        }
        // `offline_access` is accepted and ignored (agents always get a refresh
        // token): a scope holding nothing else means no scope was requested.
        if m.get("scope").is_some_and(|s| {
            let mut tokens = s.split(' ').filter(|t| !t.is_empty()).peekable();
            tokens.peek().is_some() && tokens.all(|t| t == protonpass_agent::scope::OFFLINE_ACCESS)
        }) {
            m.remove("scope");
        }
        Ok(Params(m))
    }

    /// A parameter; an empty value counts as absent (RFC 6749 section 3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A required parameter.
    pub fn req(&self, name: &str) -> Result<&str> {
        self.get(name)
            .ok_or_else(|| Error::InvalidRequest(format!("missing parameter {name}")))
    }

    /// Whether the parameter was sent at all (even empty).
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}
