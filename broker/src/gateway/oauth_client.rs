//! The broker as an OAuth 2.0 client of an upstream's provider: token
//! requests (RFC 6749 sections 4.1.3 and 6), revocation (RFC 7009), and the
//! provider's tokens as they are sealed in the vault. No token, code or secret
//! ever goes into an error, a log line or a `Debug` output.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use protonpass_agent::{Error, Random};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::forward::PublicResolver;
use super::rules::{ClientAuth, OAuth2};
use super::vault::Vault;

/// How long a token or revocation request may take.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest provider answer read, bytes.
const MAX_ANSWER: usize = 64 * 1024;
/// Longest token kept.
const MAX_TOKEN: usize = 4096;
/// Lifetime assumed when the provider gives no `expires_in`, seconds.
const DEFAULT_LIFETIME: i64 = 3600;

/// The provider's tokens of one connection.
#[derive(Serialize, Deserialize)]
pub struct Tokens {
    /// The access token injected into forwarded requests.
    pub access_token: String,
    /// The refresh token, if the provider gave one.
    pub refresh_token: Option<String>,
}

impl Drop for Tokens {
    fn drop(&mut self) {
        self.access_token.zeroize();
        if let Some(r) = self.refresh_token.as_mut() {
            r.zeroize();
        }
    }
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tokens(..)")
    }
}

fn sealed_name(upstream: &str) -> String {
    // '#' is not in upstream names: this never opens as an upstream's secret.
    format!("{upstream}#oauth-tokens")
}

/// The vault name under which a pending authorization's PKCE verifier is sealed.
pub fn verifier_name(upstream: &str) -> String {
    format!("{upstream}#oauth-pkce")
}

impl Tokens {
    /// Seal for the connection of `upstream` of `owner`.
    pub fn seal(
        &self,
        vault: &Vault,
        rng: &dyn Random,
        owner: &str,
        upstream: &str,
    ) -> Result<Vec<u8>, Error> {
        let text = Zeroizing::new(
            serde_json::to_vec(self).map_err(|_| Error::Server("cannot encode tokens".into()))?,
        );
        vault.seal(owner, &sealed_name(upstream), &text, rng)
    }

    /// Open a connection's sealed tokens.
    pub fn open(
        vault: &Vault,
        owner: &str,
        upstream: &str,
        sealed: &[u8],
    ) -> Result<Tokens, Error> {
        let text = vault.open(owner, &sealed_name(upstream), sealed)?;
        serde_json::from_slice(&text).map_err(|_| {
            Error::Storage(format!("the tokens of upstream {upstream} are unreadable"))
        })
    }
}

/// A token endpoint's successful answer.
#[derive(Debug)]
pub struct Granted {
    /// The tokens (the refresh token is `None` when none was sent).
    pub tokens: Tokens,
    /// Seconds the access token is valid.
    pub expires_in: i64,
}

/// Why a token request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failed {
    /// The provider answered with an OAuth error (4xx): the grant is refused.
    Refused(String),
    /// The provider could not be reached, failed (5xx), or answered nonsense.
    Unreachable,
}

/// An HTTP client for a provider: no redirects followed, no proxy from the
/// environment, and public addresses only unless the upstream allows private ones.
pub fn http_client(allow_private: bool) -> Result<reqwest::Client, Error> {
    let mut c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .timeout(PROVIDER_TIMEOUT);
    if !allow_private {
        c = c.dns_resolver(Arc::new(PublicResolver));
    }
    c.build()
        .map_err(|_| Error::Server("cannot build the OAuth HTTP client".into()))
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A POST of `form` to `url` with the client's authentication.
async fn post(
    client: &reqwest::Client,
    url: &url::Url,
    o: &OAuth2,
    client_secret: &[u8],
    form: &[(&str, &str)],
) -> Result<(u16, Vec<u8>), Failed> {
    let secret = Zeroizing::new(String::from_utf8_lossy(client_secret).into_owned());
    let mut pairs: Vec<(&str, &str)> = form.to_vec();
    let mut req = client
        .post(url.clone())
        .header("accept", "application/json");
    if secret.is_empty() {
        // A public client identifies itself (RFC 6749 section 3.2.1).
        pairs.push(("client_id", &o.client_id));
    } else {
        match o.client_auth {
            ClientAuth::Basic => {
                let pair = Zeroizing::new(format!(
                    "{}:{}",
                    form_encode(&o.client_id),
                    form_encode(&secret)
                ));
                let b64 = Zeroizing::new(
                    base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()),
                );
                let mut v =
                    reqwest::header::HeaderValue::from_str(&format!("Basic {}", b64.as_str()))
                        .map_err(|_| Failed::Unreachable)?;
                v.set_sensitive(true);
                req = req.header(reqwest::header::AUTHORIZATION, v);
            }
            ClientAuth::Post => {
                pairs.push(("client_id", &o.client_id));
                pairs.push(("client_secret", &secret));
            }
        }
    }
    let body = Zeroizing::new(
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter())
            .finish(),
    );
    let resp = req
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.as_bytes().to_vec())
        .send()
        .await
        .map_err(|e| {
            tracing::warn!(
                connect = e.is_connect(),
                timeout = e.is_timeout(),
                "OAuth provider unreachable"
            );
            Failed::Unreachable
        })?;
    let status = resp.status().as_u16();
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    use futures_util::StreamExt as _;
    while let Some(c) = stream.next().await {
        let c = c.map_err(|_| Failed::Unreachable)?;
        if out.len() + c.len() > MAX_ANSWER {
            return Err(Failed::Unreachable);
        }
        out.extend_from_slice(&c);
    }
    Ok((status, out))
}

fn plain_token(v: Option<&serde_json::Value>) -> Option<String> {
    let s = v?.as_str()?;
    (!s.is_empty() && s.len() <= MAX_TOKEN && s.bytes().all(|c| c.is_ascii_graphic()))
        .then(|| s.to_owned())
}

/// A token request (`grant_type` and its parameters in `form`).
pub async fn token_request(
    client: &reqwest::Client,
    o: &OAuth2,
    client_secret: &[u8],
    form: &[(&str, &str)],
) -> Result<Granted, Failed> {
    let (status, body) = post(client, &o.token_url, o, client_secret, form).await?;
    let body = Zeroizing::new(body);
    let json: serde_json::Value = serde_json::from_slice(&body).map_err(|_| Failed::Unreachable)?;
    if !(200..300).contains(&status) {
        if (400..500).contains(&status) {
            // Only the error code (a short word) is kept, never the description.
            let code = json
                .get("error")
                .and_then(|e| e.as_str())
                .filter(|e| {
                    e.len() <= 64 && e.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
                })
                .unwrap_or("invalid_grant");
            return Err(Failed::Refused(code.to_owned()));
        }
        return Err(Failed::Unreachable);
    }
    let bearer = json
        .get("token_type")
        .and_then(|t| t.as_str())
        .is_none_or(|t| t.eq_ignore_ascii_case("bearer"));
    let Some(access_token) = plain_token(json.get("access_token")).filter(|_| bearer) else {
        return Err(Failed::Refused("unsupported_token_type".into()));
    };
    let refresh_token = plain_token(json.get("refresh_token"));
    let expires_in = json
        .get("expires_in")
        .and_then(|e| {
            e.as_i64()
                .or_else(|| e.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(DEFAULT_LIFETIME)
        .clamp(1, 366 * 86_400);
    Ok(Granted {
        tokens: Tokens {
            access_token,
            refresh_token,
        },
        expires_in,
    })
}

/// Revoke `tokens` at the provider (RFC 7009): the refresh token (which
/// revokes the grant at most providers), else the access token. Returns
/// whether the provider confirmed it.
pub async fn revoke(
    client: &reqwest::Client,
    o: &OAuth2,
    client_secret: &[u8],
    tokens: &Tokens,
) -> bool {
    let Some(url) = &o.revocation_url else {
        return false;
    };
    let (token, hint) = match &tokens.refresh_token {
        Some(r) => (r.as_str(), "refresh_token"),
        None => (tokens.access_token.as_str(), "access_token"),
    };
    matches!(
        post(
            client,
            url,
            o,
            client_secret,
            &[("token", token), ("token_type_hint", hint)]
        )
        .await,
        Ok((200, _))
    )
}
