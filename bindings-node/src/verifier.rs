//! The resource-server `Verifier`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use napi::Env;
use napi::bindgen_prelude::{Either, PromiseRaw, ToNapiValue};
use napi_derive::napi;
use protonpass_agent as core;
use rust_decimal::Decimal;

use crate::error::map;

/// A registered resource server's credentials (`protonpass-broker resource add`).
#[napi(object)]
pub struct ClientCredentials {
    /// The resource server's client id.
    pub client_id: String,
    /// Its client secret.
    pub client_secret: String,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// Settings of a `Verifier`.
#[napi(object)]
#[derive(Debug)]
pub struct VerifierConfig {
    /// The broker's issuer URL (compared verbatim with the tokens' `iss`).
    pub issuer: String,
    /// This API's audience, as the broker knows it.
    pub audience: String,
    /// Require server-provided DPoP nonces (default false).
    pub require_nonce: Option<bool>,
    /// Follow the broker's revocation feed (default true).
    pub follow_feed: Option<bool>,
    /// Seconds the feed may be unreachable before requests are refused (or,
    /// with `introspection`, checked with the broker one by one). Default 60.
    pub max_staleness: Option<f64>,
    /// Ask the broker's introspection endpoint while the feed is stale,
    /// instead of refusing every request with 503.
    pub introspection: Option<ClientCredentials>,
    /// Report each request to the broker's audit log with these credentials:
    /// allowed ones, and refused ones with their code and finer reason
    /// (`insufficient_scope` refusals of `check`, `verify` and the middleware
    /// included).
    pub usage_reports: Option<ClientCredentials>,
    /// This API's credentials for `spend` and `refund` (when absent, those of
    /// `usageReports` or `introspection`).
    pub credentials: Option<ClientCredentials>,
    /// The owner this API serves: a token acting for anyone else is refused
    /// (`invalid_token`, reason `owner`). Set it whenever more than one owner
    /// uses the broker.
    pub owner: Option<String>,
    /// The public URL clients address this API by, e.g. `https://api.example`
    /// (plus the path prefix a proxy strips, if any). The middleware checks
    /// each proof's `htu` against it and the request's path, never against
    /// the `Host` header; it refuses to run without it.
    pub base_url: Option<String>,
    /// The URL of this API's RFC 9728 metadata (`resourceMetadataUrl(audience)`):
    /// every `401` then carries `resource_metadata="..."` in `WWW-Authenticate`.
    pub resource_metadata_url: Option<String>,
    /// Also accept bearer tokens (no `cnf`, `Authorization: Bearer`), which
    /// the broker issues to MCP clients that cannot do DPoP for resources
    /// whose owner allows them (default false: DPoP only).
    pub accept_bearer: Option<bool>,
}

/// One HTTP request as the API received it.
#[napi(object)]
#[derive(Debug)]
pub struct VerifyRequest {
    /// The request method, e.g. `GET`.
    pub method: String,
    /// The full URL as the client addressed it (scheme, host, path, query).
    pub url: String,
    /// The request headers as `[name, value]` pairs (names in any case).
    #[napi(ts_type = "Array<[string, string]>")]
    pub headers: Vec<Vec<String>>,
}

/// A scope the request must carry, with an amount for limited scopes.
#[napi(object)]
#[derive(Debug)]
pub struct Requirement {
    /// The scope, e.g. `travel:book`, or `payment:execute` with `amount`.
    pub scope: String,
    /// An amount the scope's limit must allow (e.g. `payment:execute:under-100`
    /// allows `99.99`), as a decimal string: never a number, which cannot
    /// hold money exactly (`check` and `verify` refuse one with a `TypeError`).
    pub amount: Option<String>,
}

/// Who is calling: what a verified request tells the API.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct Identity {
    /// The owner the agent acts for (the token's `sub`).
    pub owner: String,
    /// The agent's name (`client_id`).
    pub agent: String,
    /// The token's scopes.
    pub scopes: Vec<String>,
    /// The token id (`jti`).
    pub token_id: String,
    /// The grant id (`gid`).
    pub grant_id: String,
    /// The agent's stated reason for this request, signed in its proof.
    pub reason: Option<String>,
    /// The thumbprint of the agent's key.
    pub jkt: String,
    /// When the token expires, in seconds since the epoch.
    pub expires_at: i64,
}

impl From<&core::Identity> for Identity {
    fn from(i: &core::Identity) -> Self {
        Identity {
            owner: i.owner.clone(),
            agent: i.agent.clone(),
            scopes: i.scopes.iter().map(ToString::to_string).collect(),
            token_id: i.token_id.clone(),
            grant_id: i.grant_id.clone(),
            reason: i.reason.clone(),
            jkt: i.jkt.clone(),
            expires_at: i.expires_at,
        }
    }
}

/// A refused request: what to answer.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The error code (`invalid_token`, `invalid_dpop_proof`, `use_dpop_nonce`,
    /// `insufficient_scope`, ...).
    pub code: String,
    /// A finer, stable reason for token and proof failures (`expired`, `replay`,
    /// `revoked`, ...).
    pub reason: Option<String>,
    /// What was wrong, for people.
    pub message: String,
    /// The HTTP status to answer with (401, 403, 400 or 503).
    pub status: u16,
    /// The exact `WWW-Authenticate` value to send.
    pub www_authenticate: Option<String>,
    /// A fresh `DPoP-Nonce` to send, when the error asks for one.
    pub dpop_nonce: Option<String>,
    /// The JSON body to send (`{"error": ..., "error_description": ...}`).
    pub body: String,
}

impl From<&core::Rejection> for Rejection {
    fn from(r: &core::Rejection) -> Self {
        Rejection {
            code: r.error.code().to_owned(),
            reason: r.error.reason().map(|x| x.as_str().to_owned()),
            message: r.error.to_string(),
            status: r.status,
            www_authenticate: r.www_authenticate.clone(),
            dpop_nonce: r.dpop_nonce.clone(),
            body: r.body(),
        }
    }
}

/// The result of `check`: exactly one of `identity` and `rejection`.
#[napi(object)]
#[derive(Debug)]
pub struct Verdict {
    /// The caller, when the request is allowed.
    pub identity: Option<Identity>,
    /// Why not, when it is refused.
    pub rejection: Option<Rejection>,
}

/// The broker's answer to a spend or a refund; amounts are decimal strings.
#[napi(object)]
#[derive(Debug)]
pub struct SpendResult {
    /// The grant.
    pub grant_id: String,
    /// The scope spent against (`resource:action`).
    pub scope: String,
    /// The amount spent or given back.
    pub amount: String,
    /// Its ISO 4217 currency.
    pub currency: String,
    /// The spend's idempotency key.
    pub idempotency_key: String,
    /// Whether the spend was refunded.
    pub refunded: bool,
    /// The budget's limit per period (absent without a budget).
    pub limit: Option<String>,
    /// What remains in the period (absent without a budget).
    pub remaining: Option<String>,
    /// `hour`, `day`, `week`, `month` or `total`.
    pub period: Option<String>,
    /// When the period ends, seconds since the epoch (absent for `total`).
    pub period_ends_at: Option<i64>,
}

impl From<core::SpendResponse> for SpendResult {
    fn from(r: core::SpendResponse) -> Self {
        SpendResult {
            grant_id: r.grant_id,
            scope: r.scope,
            amount: r.amount,
            currency: r.currency,
            idempotency_key: r.idempotency_key,
            refunded: r.refunded,
            limit: r.limit,
            remaining: r.remaining,
            period: r.period.map(|p| p.as_str().to_owned()),
            period_ends_at: r.period_ends_at,
        }
    }
}

/// The result of `spendRaw` / `refundRaw`: exactly one of `result` and `rejection`.
#[napi(object)]
#[derive(Debug)]
pub struct SpendOutcome {
    /// The broker's answer, when the spend or refund went through.
    pub result: Option<SpendResult>,
    /// Why not (`budget_exceeded`, `insufficient_scope`, `invalid_token`, ...).
    pub rejection: Option<Rejection>,
}

fn outcome(r: std::result::Result<core::SpendResponse, core::Rejection>) -> SpendOutcome {
    match r {
        Ok(x) => SpendOutcome {
            result: Some(x.into()),
            rejection: None,
        },
        Err(r) => SpendOutcome {
            result: None,
            rejection: Some(Rejection::from(&r)),
        },
    }
}

/// Verifies DPoP-bound requests for one API (audience): token signature and
/// claims against the broker's keys, the proof, the binding, replays, and
/// revocations from the broker's feed. Connects to the broker on first use (or
/// `ready()`).
#[napi]
#[derive(Debug)]
pub struct Verifier {
    opts: core::VerifierOptions,
    base_url: Option<String>,
    inner: Arc<tokio::sync::OnceCell<core::Verifier>>,
}

#[napi]
impl Verifier {
    /// A verifier for `audience` trusting the broker at `issuer`.
    #[napi(constructor)]
    pub fn new(config: VerifierConfig) -> napi::Result<Self> {
        let mut opts = core::VerifierOptions::new(config.issuer, config.audience);
        if let Some(n) = config.require_nonce {
            opts.require_nonce = n;
        }
        if let Some(f) = config.follow_feed {
            opts.follow_feed = f;
        }
        if let Some(s) = config.max_staleness {
            opts.max_staleness = Duration::try_from_secs_f64(s).map_err(|_| {
                crate::error::to_napi(&core::Error::InvalidRequest(
                    "maxStaleness must be a non-negative number of seconds".into(),
                ))
            })?;
        }
        if let Some(c) = config.introspection {
            opts.stale_policy = core::StalePolicy::Introspect {
                client_id: c.client_id,
                client_secret: c.client_secret.into(),
            };
        }
        if let Some(c) = config.usage_reports {
            opts.usage_reports = Some((c.client_id, c.client_secret.into()));
        }
        if let Some(c) = config.credentials {
            opts.credentials = Some((c.client_id, c.client_secret.into()));
        }
        opts.owner = config.owner;
        opts.resource_metadata = config.resource_metadata_url;
        opts.accept_bearer = config.accept_bearer.unwrap_or(false);
        let base_url = match config.base_url {
            None => None,
            Some(u) => Some(base_url(&u).ok_or_else(|| {
                crate::error::to_napi(&core::Error::InvalidRequest(format!(
                    "baseUrl must be an http(s) origin with an optional path prefix, not {u:?}"
                )))
            })?),
        };
        Ok(Verifier {
            opts,
            base_url,
            inner: Arc::new(tokio::sync::OnceCell::new()),
        })
    }

    /// The connected core verifier, as a future that owns what it needs (so
    /// that it can outlive this call): settings are cloned only while the
    /// verifier is not connected yet.
    fn connected(&self) -> impl Future<Output = napi::Result<core::Verifier>> + Send + 'static {
        let cell = self.inner.clone();
        let opts = cell.get().is_none().then(|| self.opts.clone());
        async move {
            if let Some(v) = cell.get() {
                return Ok(v.clone());
            }
            let v = cell
                .get_or_try_init(|| async move {
                    match opts {
                        Some(opts) => map(core::Verifier::new(opts).await),
                        None => Err(napi::Error::from_reason("the verifier lost its settings")),
                    }
                })
                .await?;
            Ok(v.clone())
        }
    }

    /// The public URL clients address this API by (`baseUrl`), without a
    /// trailing slash.
    #[napi(getter)]
    pub fn base_url(&self) -> Option<String> {
        self.base_url.clone()
    }

    /// Connect to the broker now: fetch its metadata, keys and revocations.
    #[napi]
    pub async fn ready(&self) -> napi::Result<()> {
        self.connected().await.map(|_| ())
    }

    /// Verify one request and, when given, the scope it needs (`lib/verifier.js`
    /// wraps this as `check` and `verify`). The arguments are flat so that a
    /// request crosses into the addon in one call: `headers` alternates names
    /// and values, as Node's `rawHeaders` does. Never throws for a refused
    /// request: returns the rejection to answer with.
    ///
    /// Returns the verdict itself when it is known at once (the common case:
    /// the verifier is connected and the check needs no network), else a
    /// Promise of it (connecting first, fetching a new signing key, or asking
    /// the broker while the revocation feed is stale). The first case skips
    /// the round trip through the runtime's threads that dominates a promise.
    #[napi(skip_typescript)]
    pub fn check_flat<'env>(
        &self,
        env: &'env Env,
        method: String,
        url: String,
        headers: Vec<String>,
        scope: Option<String>,
        amount: Option<String>,
    ) -> napi::Result<Either<Verdict, PromiseRaw<'env, Verdict>>> {
        let amount = amount.map(|a| parse_amount(Either::A(a))).transpose()?;
        let connected = self.connected();
        now_or_promise(env, async move {
            let v = connected.await?;
            let headers: Vec<(String, String)> = pairs(headers);
            let result = v.verify(&method, &url, &headers).await;
            let result = match (result, scope) {
                (Ok(id), Some(scope)) => match amount {
                    None => id.require(&scope),
                    Some(a) => id.require_amount(&scope, a),
                }
                .map(|()| id),
                (r, _) => r,
            };
            Ok(match result {
                Ok(id) => Verdict {
                    identity: Some(Identity::from(&id)),
                    rejection: None,
                },
                Err(r) => Verdict {
                    identity: None,
                    rejection: Some(Rejection::from(&r)),
                },
            })
        })
    }

    /// Spend `amount` (a decimal string) from the owner's budget of `scope` on
    /// the grant of a verified token (`grantId`, `tokenId` of its identity).
    /// Never throws for a refusal: returns it (`lib/verifier.js` wraps this as
    /// `spend`).
    #[napi]
    pub async fn spend_raw(
        &self,
        grant_id: String,
        token_id: String,
        scope: String,
        amount: String,
        currency: String,
        idempotency_key: String,
    ) -> napi::Result<SpendOutcome> {
        let v = self.connected().await?;
        Ok(outcome(
            v.spend_grant(
                &grant_id,
                &token_id,
                &scope,
                &amount,
                &currency,
                &idempotency_key,
            )
            .await,
        ))
    }

    /// Give back the spend made under `idempotency_key` for the grant
    /// (`lib/verifier.js` wraps this as `refund`).
    #[napi]
    pub async fn refund_raw(
        &self,
        grant_id: String,
        idempotency_key: String,
    ) -> napi::Result<SpendOutcome> {
        let v = self.connected().await?;
        Ok(outcome(v.refund_grant(&grant_id, &idempotency_key).await))
    }

    /// Stop following the revocation feed.
    #[napi]
    pub fn stop(&self) {
        if let Some(v) = self.inner.get() {
            v.stop();
        }
    }
}

/// `[name, value, name, value, ...]` as pairs (an odd last item is dropped).
fn pairs(flat: Vec<String>) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(name), Some(value)) = (it.next(), it.next()) {
        out.push((name, value));
    }
    out
}

/// Poll `fut` once on this (the JavaScript) thread: its value when it is
/// ready, else a Promise of it, the future finishing on the runtime. Polling
/// inside the runtime's context lets a future that starts I/O register it
/// there; the runtime's task then polls it with a real waker.
fn now_or_promise<'env, T>(
    env: &'env Env,
    fut: impl Future<Output = napi::Result<T>> + Send + 'static,
) -> napi::Result<Either<T, PromiseRaw<'env, T>>>
where
    T: ToNapiValue + Send + 'static,
{
    let mut fut = Box::pin(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match napi::bindgen_prelude::within_runtime_if_available(|| fut.as_mut().poll(&mut cx)) {
        Poll::Ready(r) => r.map(Either::A),
        Poll::Pending => env.spawn_future(fut).map(Either::B),
    }
}

fn parse_amount(a: Either<String, f64>) -> napi::Result<Decimal> {
    match a {
        Either::A(s) => Decimal::from_str(s.trim()),
        Either::B(n) => Decimal::from_str(&n.to_string()),
    }
    .map_err(|_| {
        crate::error::to_napi(&core::Error::InvalidRequest(
            "the amount is not a decimal number".into(),
        ))
    })
}

/// Why a verified caller's `scopes` do not allow `scope` (and `amount` within
/// its limit, for a `resource:action`): `null` when they do, else the
/// `insufficient_scope` description. For checks after verification, such as
/// one MCP tool of a verified request; throws `invalid_request` for a scope or
/// amount that does not parse.
#[napi]
pub fn scope_refusal(
    scopes: Vec<String>,
    scope: String,
    amount: Option<Either<String, f64>>,
) -> napi::Result<Option<String>> {
    let held = crate::error::map(core::ScopeSet::parse(&scopes.join(" ")))?;
    let r = match amount {
        None => held.require(&scope),
        Some(a) => held.require_amount(&scope, parse_amount(a)?),
    };
    match r {
        Ok(()) => Ok(None),
        Err(core::Error::InsufficientScope(why)) => Ok(Some(why)),
        Err(e) => Err(crate::error::to_napi(&e)),
    }
}

/// `u` without its trailing slashes, if it is an http(s) URL with a host and
/// without query or fragment.
fn base_url(u: &str) -> Option<String> {
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))?;
    let host = rest.split('/').next().unwrap_or_default();
    let ok = !host.is_empty() && !u.contains(['?', '#', ' ']);
    ok.then(|| u.trim_end_matches('/').to_owned())
}
