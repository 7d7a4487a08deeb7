//! The `credential` of a rules file: where the secret goes in each forwarded
//! request, and the checks that keep it from steering the request (no
//! connection or body headers, one `{secret}` in a template of visible ASCII).

use serde::Deserialize;

/// How the secret is put into each forwarded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A header whose value is `template` with `{secret}` replaced.
    Header {
        /// Header name, lower-case.
        name: String,
        /// The value, with one `{secret}`.
        template: String,
    },
    /// A query parameter holding the secret.
    Query {
        /// The parameter's name.
        param: String,
    },
    /// HTTP Basic authentication of `template` (`user:{secret}` or `{secret}`).
    Basic {
        /// `user:password` with one `{secret}`.
        template: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCredential {
    header: Option<String>,
    value: Option<String>,
    query: Option<String>,
    basic: Option<String>,
    oauth2: Option<super::oauth_config::RawOAuth2>,
}

pub(super) fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

/// Headers the credential may not be: they steer the connection or the body.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
    "cookie",
    "dpop",
];

/// A template holds `{secret}` exactly once and otherwise visible ASCII or spaces.
fn check_template(t: &str) -> Result<(), String> {
    if t.matches("{secret}").count() != 1 {
        return Err("the credential template must contain {secret} exactly once".into());
    }
    if !t.bytes().all(|c| c.is_ascii_graphic() || c == b' ') || t.len() > 256 {
        return Err("the credential template must be visible ASCII, at most 256 bytes".into());
    }
    Ok(())
}

/// The credential and, for `[credential.oauth2]`, the OAuth client
/// configuration (its access token is then the `{secret}` of a header).
pub(super) fn credential(
    mut c: RawCredential,
    allow_private: bool,
) -> Result<(Credential, Option<super::oauth_config::OAuth2>), String> {
    if let Some(o) = c.oauth2.take() {
        if c.header.is_some() || c.value.is_some() || c.query.is_some() || c.basic.is_some() {
            return Err("[credential.oauth2] stands alone: header and value go inside it".into());
        }
        let (o, header, template) = super::oauth_config::oauth2(o, allow_private)?;
        let name = header.to_ascii_lowercase();
        if !valid_token(&header) || RESERVED_HEADERS.contains(&name.as_str()) {
            return Err(format!("{header:?} cannot carry the credential"));
        }
        check_template(&template)?;
        return Ok((Credential::Header { name, template }, Some(o)));
    }
    static_credential(c).map(|c| (c, None))
}

fn static_credential(c: RawCredential) -> Result<Credential, String> {
    match c {
        RawCredential {
            header: Some(h),
            value: Some(v),
            query: None,
            basic: None,
            oauth2: None,
        } => {
            let name = h.to_ascii_lowercase();
            if !valid_token(&h) || RESERVED_HEADERS.contains(&name.as_str()) {
                return Err(format!("{h:?} cannot carry the credential"));
            }
            check_template(&v)?;
            Ok(Credential::Header { name, template: v })
        }
        RawCredential {
            query: Some(q),
            header: None,
            value: None,
            basic: None,
            oauth2: None,
        } => {
            let ok = !q.is_empty()
                && q.len() <= 64
                && q.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-._~".contains(&c));
            if !ok {
                return Err("a query parameter name is letters, digits, '-', '.', '_', '~'".into());
            }
            Ok(Credential::Query { param: q })
        }
        RawCredential {
            basic: Some(b),
            header: None,
            value: None,
            query: None,
            oauth2: None,
        } => {
            check_template(&b)?;
            Ok(Credential::Basic { template: b })
        }
        _ => Err(
            "credential is { header, value }, { query }, { basic } or [credential.oauth2], exactly one of them".into(),
        ),
    }
}
