//! `Verifier` and `Identity`: thin wrappers over the core verifier.

use std::str::FromStr;
use std::time::Duration;

use protonpass_agent::{
    Error, Identity as CoreIdentity, StalePolicy, Verifier as CoreVerifier, VerifierOptions,
};
use pyo3::prelude::*;
use rust_decimal::Decimal;

use crate::errors::{rejection_to_py, to_py};

/// Who is calling: what a verified request tells the API.
#[pyclass(frozen, module = "protonpass_agent._native", name = "Identity")]
#[derive(Debug)]
pub struct Identity {
    /// The owner the agent acts for (`sub`).
    #[pyo3(get)]
    owner: String,
    /// The agent (`client_id`).
    #[pyo3(get)]
    agent: String,
    /// The token's scopes.
    #[pyo3(get)]
    scopes: Vec<String>,
    /// The token id (`jti`).
    #[pyo3(get)]
    token_id: String,
    /// The grant id (`gid`).
    #[pyo3(get)]
    grant_id: String,
    /// The agent's stated reason for this request, signed in its proof.
    #[pyo3(get)]
    reason: Option<String>,
    /// The agent key's thumbprint.
    #[pyo3(get)]
    jkt: String,
    /// When the token expires (seconds since the epoch).
    #[pyo3(get)]
    expires_at: i64,
    core: CoreIdentity,
}

impl From<CoreIdentity> for Identity {
    fn from(c: CoreIdentity) -> Self {
        Identity {
            owner: c.owner.clone(),
            agent: c.agent.clone(),
            scopes: c.scopes.iter().map(|s| s.to_string()).collect(),
            token_id: c.token_id.clone(),
            grant_id: c.grant_id.clone(),
            reason: c.reason.clone(),
            jkt: c.jkt.clone(),
            expires_at: c.expires_at,
            core: c,
        }
    }
}

#[pymethods]
impl Identity {
    /// Raise `InsufficientScope` (status 403, with its `WWW-Authenticate`)
    /// unless the token allows `scope`.
    fn require(&self, scope: &str) -> PyResult<()> {
        self.core.require(scope).map_err(rejection_to_py)
    }

    /// Raise `InsufficientScope` unless the token allows `resource_action`
    /// for `amount` (a decimal string, e.g. "42.50").
    fn require_amount(&self, resource_action: &str, amount: &str) -> PyResult<()> {
        let amount = Decimal::from_str(amount.trim()).map_err(|_| {
            to_py(Error::InvalidRequest(format!(
                "amount {amount:?} is not a decimal number"
            )))
        })?;
        self.core
            .require_amount(resource_action, amount)
            .map_err(rejection_to_py)
    }

    fn __repr__(&self) -> String {
        format!(
            "Identity(owner={:?}, agent={:?}, scopes={:?}, token_id={:?})",
            self.owner, self.agent, self.scopes, self.token_id
        )
    }
}

/// Verifies DPoP-bound requests for one API (see `protonpass_agent.Verifier`).
#[pyclass(frozen, module = "protonpass_agent._native", name = "Verifier")]
#[derive(Debug)]
pub struct Verifier {
    inner: CoreVerifier,
}

/// `max_staleness`, checked: a positive number of seconds.
fn staleness(max_staleness: f64) -> PyResult<Duration> {
    if !(max_staleness.is_finite() && max_staleness > 0.0) {
        return Err(to_py(Error::InvalidRequest(
            "max_staleness is a positive number of seconds".into(),
        )));
    }
    Ok(Duration::from_secs_f64(max_staleness))
}

/// The resource server's credentials, and what uses them, into `o`.
fn credentials(
    o: &mut VerifierOptions,
    client_id: Option<String>,
    client_secret: Option<String>,
    introspect_when_stale: bool,
    report_usage: bool,
) -> PyResult<()> {
    let creds = match (client_id, client_secret) {
        (Some(id), Some(secret)) => Some((id, secret)),
        (None, None) => None,
        _ => {
            return Err(to_py(Error::InvalidRequest(
                "client_id and client_secret go together".into(),
            )));
        }
    };
    o.credentials = creds
        .as_ref()
        .map(|(id, secret)| (id.clone(), secret.clone().into()));
    if introspect_when_stale || report_usage {
        let Some((id, secret)) = &creds else {
            return Err(to_py(Error::InvalidRequest(
                "introspection and usage reports need client_id and client_secret (`protonpass-broker resource add`)".into(),
            )));
        };
        if introspect_when_stale {
            o.stale_policy = StalePolicy::Introspect {
                client_id: id.clone(),
                client_secret: secret.clone().into(),
            };
        }
        if report_usage {
            o.usage_reports = Some((id.clone(), secret.clone().into()));
        }
    }
    Ok(())
}

async fn connect_flow(o: VerifierOptions) -> PyResult<Verifier> {
    let inner = CoreVerifier::new(o).await.map_err(to_py)?;
    Ok(Verifier { inner })
}

pymethods_with_faces! {
    impl Verifier {
        new / connect:
        /// Discover the broker, fetch its keys and revocations, and follow
        /// its revocation feed (the constructor blocks with the GIL released;
        /// `connect` is the same, awaitable).
        #[pyo3(signature = (issuer, audience, *, require_nonce=false, follow_feed=true,
            max_staleness=60.0, client_id=None, client_secret=None, introspect_when_stale=false,
            report_usage=false, owner=None, resource_metadata_url=None, accept_bearer=false))]
        #[allow(clippy::too_many_arguments)]
        fn (
            issuer: String,
            audience: String,
            require_nonce: bool,
            follow_feed: bool,
            max_staleness: f64,
            client_id: Option<String>,
            client_secret: Option<String>,
            introspect_when_stale: bool,
            report_usage: bool,
            owner: Option<String>,
            resource_metadata_url: Option<String>,
            accept_bearer: bool,
        ) = {
            let mut o = VerifierOptions::new(issuer, audience);
            o.accept_bearer = accept_bearer;
            o.require_nonce = require_nonce;
            o.owner = owner;
            o.resource_metadata = resource_metadata_url;
            o.follow_feed = follow_feed;
            o.max_staleness = staleness(max_staleness)?;
            credentials(&mut o, client_id, client_secret, introspect_when_stale, report_usage)?;
            connect_flow(o)
        };
        /// Verify one request: method, the full URL as the client addressed
        /// it, and its headers as (name, value) pairs. Returns the caller's
        /// identity or raises a `ProtonPassError` carrying `status`,
        /// `www_authenticate`, `dpop_nonce` and `body`.
        fn verify / verify_async(&self, method: String, url: String, headers: Vec<(String, String)>)
            -> Identity = {
            let v = self.inner.clone();
            async move {
                v.verify(&method, &url, &headers)
                    .await
                    .map(Identity::from)
                    .map_err(rejection_to_py)
            }
        };

        /// Spend `amount` (a decimal string) of `currency` from the owner's
        /// budget of `scope` on `agent`'s grant; the broker's answer as JSON.
        /// Raises `BudgetExceeded` (status 403, with `www_authenticate`)
        /// beyond the budget.
        fn spend / spend_async(
            &self,
            agent: &Identity,
            scope: String,
            amount: String,
            currency: String,
            idempotency_key: String,
        ) -> String = {
            let (v, who) = (self.inner.clone(), agent.core.clone());
            async move {
                v.spend(&who, &scope, &amount, &currency, &idempotency_key)
                    .await
                    .map_err(rejection_to_py)
                    .and_then(json)
            }
        };

        /// Give back the spend made under `idempotency_key`; the answer as JSON.
        fn refund / refund_async(&self, agent: &Identity, idempotency_key: String) -> String = {
            let (v, who) = (self.inner.clone(), agent.core.clone());
            async move {
                v.refund(&who, &idempotency_key)
                    .await
                    .map_err(rejection_to_py)
                    .and_then(json)
            }
        };

        ---

    /// The last revocation-feed position seen and whether the stream is up.
    fn feed_status(&self) -> (i64, bool) {
        self.inner.feed_status()
    }

    /// Stop following the feed.
    fn stop(&self) {
        self.inner.stop();
    }

    fn __repr__(&self) -> String {
        format!("{:?}", self.inner)
    }
    }
}

fn json(r: protonpass_agent::SpendResponse) -> PyResult<String> {
    serde_json::to_string(&r).map_err(|e| to_py(Error::Server(format!("encoding: {e}"))))
}

/// The RFC 9728 protected-resource metadata of `resource`, protected by the
/// broker at `authorization_server`, as JSON.
#[pyfunction]
#[pyo3(signature = (resource, authorization_server, *, scopes_supported=Vec::new(), resource_documentation=None))]
fn resource_metadata(
    resource: &str,
    authorization_server: &str,
    scopes_supported: Vec<String>,
    resource_documentation: Option<String>,
) -> PyResult<String> {
    let m =
        protonpass_agent::ResourceMetadata::new(resource, authorization_server, &scopes_supported)
            .map_err(to_py)?
            .with_documentation(resource_documentation.as_deref());
    Ok(m.to_json())
}

/// The path `resource`'s metadata is served at (RFC 9728 section 3.1).
#[pyfunction]
fn resource_metadata_path(resource: &str) -> PyResult<String> {
    protonpass_agent::resource_metadata_path(resource).map_err(to_py)
}

/// The absolute URL of `resource`'s metadata.
#[pyfunction]
fn resource_metadata_url(resource: &str) -> PyResult<String> {
    protonpass_agent::resource_metadata_url(resource).map_err(to_py)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Identity>()?;
    m.add_class::<Verifier>()?;
    m.add_function(wrap_pyfunction!(resource_metadata, m)?)?;
    m.add_function(wrap_pyfunction!(resource_metadata_path, m)?)?;
    m.add_function(wrap_pyfunction!(resource_metadata_url, m)?)?;
    Ok(())
}
