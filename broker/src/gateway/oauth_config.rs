//! `[credential.oauth2]` of a rules file: the owner's OAuth 2.0 client at a
//! provider (RFC 6749 authorization code with PKCE, RFC 7636), whose access
//! token the gateway injects instead of a static secret.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Most provider scopes or extra authorization parameters.
const MAX_ITEMS: usize = 32;

/// How the broker authenticates its OAuth client at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic` (RFC 6749 section 2.3.1), the default.
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form.
    Post,
}

/// The OAuth client configuration of an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2 {
    /// The provider's authorization endpoint.
    pub authorization_url: url::Url,
    /// The provider's token endpoint.
    pub token_url: url::Url,
    /// The provider's RFC 7009 revocation endpoint, if it has one.
    pub revocation_url: Option<url::Url>,
    /// The provider's issuer identifier: when set, the callback's `iss`
    /// (RFC 9207) must be present and equal to it.
    pub issuer: Option<String>,
    /// Refuse a callback without `iss` (a provider whose metadata says
    /// `authorization_response_iss_parameter_supported`, RFC 9207 section 2.4).
    pub require_iss: bool,
    /// The owner's client at the provider.
    pub client_id: String,
    /// Provider scopes asked for.
    pub scopes: Vec<String>,
    /// Client authentication at the token endpoint.
    pub client_auth: ClientAuth,
    /// Extra authorization request parameters (`access_type = "offline"`).
    pub authorize_params: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOAuth2 {
    authorization_url: String,
    token_url: String,
    revocation_url: Option<String>,
    issuer: Option<String>,
    #[serde(default)]
    require_iss: bool,
    client_id: String,
    #[serde(default)]
    scopes: Vec<String>,
    header: Option<String>,
    value: Option<String>,
    client_auth: Option<String>,
    #[serde(default)]
    authorize_params: BTreeMap<String, String>,
}

/// Parameters the broker sets itself, never from the file.
const OWN_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

fn endpoint(what: &str, s: &str, allow_private: bool) -> Result<url::Url, String> {
    let u = url::Url::parse(s).map_err(|e| format!("{what}: {e}"))?;
    let ok = u.scheme() == "https" || (u.scheme() == "http" && allow_private);
    if !ok || !u.has_host() || !u.username().is_empty() || u.fragment().is_some() {
        return Err(format!(
            "{what} must be an https URL without user or fragment (http only with allow_private_network = true)"
        ));
    }
    let literal = match u.host() {
        Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
        _ => None,
    };
    if literal.is_some_and(|ip| !super::forward::is_public(ip)) && !allow_private {
        return Err(format!(
            "{what} is a private or loopback address: set allow_private_network = true if you mean it"
        ));
    }
    Ok(u)
}

fn printable(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|c| c.is_ascii_graphic())
}

/// Check the table; returns it with the header name and the value template
/// (`{access_token}` turned into the gateway's `{secret}`).
pub(super) fn oauth2(
    r: RawOAuth2,
    allow_private: bool,
) -> Result<(OAuth2, String, String), String> {
    let authorization_url = endpoint("authorization_url", &r.authorization_url, allow_private)?;
    let token_url = endpoint("token_url", &r.token_url, allow_private)?;
    let revocation_url = match r.revocation_url {
        Some(u) => Some(endpoint("revocation_url", &u, allow_private)?),
        None => None,
    };
    if !printable(&r.client_id, 256) {
        return Err("client_id is 1 to 256 visible ASCII characters".into());
    }
    if r.require_iss && r.issuer.is_none() {
        return Err("require_iss needs the provider's issuer".into());
    }
    if let Some(i) = &r.issuer
        && (!printable(i, 256) || url::Url::parse(i).is_err())
    {
        return Err("issuer is the provider's issuer identifier, a URL".into());
    }
    if r.scopes.len() > MAX_ITEMS || !r.scopes.iter().all(|s| printable(s, 256)) {
        return Err(format!(
            "scopes are at most {MAX_ITEMS} provider scopes, each visible ASCII without spaces"
        ));
    }
    if r.authorize_params.len() > MAX_ITEMS
        || r.authorize_params.iter().any(|(k, v)| {
            !printable(k, 64) || !printable(v, 256) || OWN_PARAMS.contains(&k.as_str())
        })
    {
        return Err(
            "authorize_params are plain name = \"value\" pairs, not the parameters the broker sets"
                .into(),
        );
    }
    let client_auth = match r.client_auth.as_deref() {
        None | Some("basic") => ClientAuth::Basic,
        Some("post") => ClientAuth::Post,
        Some(_) => return Err("client_auth is \"basic\" or \"post\"".into()),
    };
    let header = r.header.unwrap_or_else(|| "Authorization".into());
    let value = r.value.unwrap_or_else(|| "Bearer {access_token}".into());
    if value.matches("{access_token}").count() != 1 || value.contains("{secret}") {
        return Err("the oauth2 value must contain {access_token} exactly once".into());
    }
    let template = value.replace("{access_token}", "{secret}");
    Ok((
        OAuth2 {
            authorization_url,
            token_url,
            revocation_url,
            issuer: r.issuer,
            require_iss: r.require_iss,
            client_id: r.client_id,
            scopes: r.scopes,
            client_auth,
            authorize_params: r.authorize_params,
        },
        header,
        template,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::rules::parse;

    const HEAD: &str = "name = \"mail\"\nbase_url = \"https://mail.example\"\n\
                        [[rule]]\nmethods = [\"GET\"]\npath = \"/m/**\"\nscope = \"mail:read\"\n";

    fn with(oauth: &str) -> String {
        format!("{HEAD}[credential.oauth2]\n{oauth}")
    }

    const GOOD: &str = "authorization_url = \"https://id.example/authorize\"\n\
                        token_url = \"https://id.example/token\"\nclient_id = \"c1\"\n";

    #[test]
    fn defaults_and_the_injected_header() {
        let u = parse(&with(GOOD)).unwrap();
        let o = u.oauth2.unwrap();
        assert_eq!(o.client_auth, super::ClientAuth::Basic);
        assert!(o.revocation_url.is_none() && o.issuer.is_none() && o.scopes.is_empty());
        assert_eq!(
            u.credential,
            super::super::rules::Credential::Header {
                name: "authorization".into(),
                template: "Bearer {secret}".into()
            }
        );
        let custom = parse(&with(&format!(
            "{GOOD}header = \"X-Token\"\nvalue = \"Token {{access_token}}\"\nclient_auth = \"post\"\n"
        )))
        .unwrap();
        assert_eq!(
            custom.credential,
            super::super::rules::Credential::Header {
                name: "x-token".into(),
                template: "Token {secret}".into()
            }
        );
    }

    #[test]
    fn bad_oauth_tables_are_refused_with_their_line() {
        let cases = [
            GOOD.replace("https://id.example/token", "http://id.example/token"),
            GOOD.replace("https://id.example/token", "https://127.0.0.1/token"),
            format!("{GOOD}value = \"Bearer {{secret}}\"\n"),
            format!("{GOOD}value = \"Bearer\"\n"),
            format!("{GOOD}client_auth = \"jwt\"\n"),
            format!("{GOOD}authorize_params = {{ state = \"x\" }}\n"),
            format!("{GOOD}header = \"Cookie\"\n"),
            format!("{GOOD}scopes = [\"two words\"]\n"),
            format!("{GOOD}issuer = \"not a url\"\n"),
            format!("{GOOD}unknown = 1\n"),
            format!("{GOOD}require_iss = true\n"),
            GOOD.replace("client_id = \"c1\"", "client_id = \"\""),
        ];
        for c in cases {
            let e = parse(&with(&c)).unwrap_err();
            assert!(e.line >= 7, "{c}: {e}");
        }
        // Static keys and oauth2 do not mix.
        let mixed = format!(
            "{HEAD}[credential]\nheader = \"A\"\nvalue = \"{{secret}}\"\n[credential.oauth2]\n{GOOD}"
        );
        assert!(parse(&mixed).is_err());
        // Private endpoints are for private upstreams only.
        let private = with(&GOOD.replace("https://id.example", "http://127.0.0.1:9")).replace(
            "base_url = \"https://mail.example\"",
            "base_url = \"http://127.0.0.1:8\"\nallow_private_network = true",
        );
        assert!(parse(&private).unwrap().oauth2.is_some());
    }

    #[test]
    fn with_a_catalog_every_rule_scope_is_described() {
        let scope = "[[scope]]\nname = \"mail:send\"\ndescription = \"Send\"\nrisk = \"high\"\n";
        let e = parse(&format!("{}{scope}", with(GOOD))).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("mail:read"), "{e}");
        let ok = scope.replace("mail:send", "mail:read");
        assert_eq!(
            parse(&format!("{}{ok}", with(GOOD)))
                .unwrap()
                .scopes
                .scopes
                .len(),
            1
        );
    }
}
