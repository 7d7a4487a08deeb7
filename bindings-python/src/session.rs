//! `authenticate` and `Session`: thin wrappers over the core client.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use protonpass_agent::{
    AuthOptions, CancelHandle, Challenge, DevicePrompt as CoreDevicePrompt, Error,
    OneTimeToken as CoreOneTimeToken, Payment, PromptFn, Session as CoreSession, StepUpAsk,
    StoreKind, authenticate_with_proton,
};
use pyo3::prelude::*;

use crate::errors::to_py;
use crate::runtime;

/// What the owner must be shown to approve a device request.
#[pyclass(
    frozen,
    get_all,
    module = "protonpass_agent._native",
    name = "DevicePrompt"
)]
#[derive(Debug, Clone)]
pub struct DevicePrompt {
    /// Where the owner approves.
    verification_uri: String,
    /// The same, with the code filled in.
    verification_uri_complete: Option<String>,
    /// The code the owner confirms.
    user_code: String,
    /// Seconds until the request expires.
    expires_in: u64,
}

#[pymethods]
impl DevicePrompt {
    fn __repr__(&self) -> String {
        format!(
            "DevicePrompt(verification_uri={:?}, user_code={:?}, expires_in={})",
            self.verification_uri, self.user_code, self.expires_in
        )
    }
}

impl From<&CoreDevicePrompt> for DevicePrompt {
    fn from(p: &CoreDevicePrompt) -> Self {
        DevicePrompt {
            verification_uri: p.verification_uri.clone(),
            verification_uri_complete: p.verification_uri_complete.clone(),
            user_code: p.user_code.clone(),
            expires_in: p.expires_in,
        }
    }
}

/// The exception a prompt callback raised, kept until the wait it ended
/// returns, so that the caller sees that very exception.
#[derive(Clone, Default)]
struct PromptFailure(Arc<Mutex<Option<PyErr>>>);

impl PromptFailure {
    /// The error to raise for `e`: the callback's own exception when the
    /// wait was cancelled because of it.
    fn raise(&self, e: Error) -> PyErr {
        if matches!(e, Error::Cancelled(_))
            && let Some(err) = self.0.lock().ok().and_then(|mut f| f.take())
        {
            return err;
        }
        to_py(e)
    }
}

/// Calls a Python callable with the prompt. An exception it raises ends the
/// wait: the request is withdrawn at the broker and the exception propagates.
fn python_prompt(cb: Py<PyAny>, cancel: CancelHandle, failure: PromptFailure) -> PromptFn {
    Arc::new(move |p: &CoreDevicePrompt| {
        Python::attach(|py| {
            if let Err(e) = cb.call1(py, (DevicePrompt::from(p),)) {
                if let Ok(mut f) = failure.0.lock() {
                    *f = Some(e);
                }
                cancel.cancel();
            }
        });
    })
}

/// An authenticated agent session (see `protonpass_agent.Session`).
#[pyclass(frozen, module = "protonpass_agent._native", name = "Session")]
#[derive(Debug)]
pub struct Session {
    // An Option only so that Drop can release it inside the runtime.
    inner: Option<Arc<CoreSession>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        // The core revokes on drop when a runtime is current: give it ours.
        let _guard = runtime().enter();
        self.inner.take();
    }
}

impl Session {
    fn core(&self) -> PyResult<Arc<CoreSession>> {
        self.inner.clone().ok_or_else(|| {
            to_py(protonpass_agent::Error::InvalidGrant(
                "the session is closed".into(),
            ))
        })
    }
}

/// A step-up's one-time token (see `Session.step_up`): bound to the agent's
/// key, carrying exactly the approved details, valid for one call.
#[pyclass(frozen, module = "protonpass_agent._native", name = "OneTimeToken")]
#[derive(Debug)]
pub struct OneTimeToken {
    inner: Arc<CoreOneTimeToken>,
}

#[pymethods]
impl OneTimeToken {
    /// The audience it is for.
    #[getter]
    fn audience(&self) -> String {
        self.inner.audience.clone()
    }
    /// The scope it carries.
    #[getter]
    fn scope(&self) -> String {
        self.inner.scope.clone()
    }
    /// Seconds it lives from issue (at most 300).
    #[getter]
    fn expires_in(&self) -> i64 {
        self.inner.expires_in
    }
    /// The approved authorization details, as JSON text.
    #[getter]
    fn authorization_details(&self) -> String {
        self.inner.authorization_details.to_string()
    }
    fn __repr__(&self) -> String {
        format!("{:?}", self.inner)
    }
}

/// The step-up a challenge asks for, with the caller's payment.
fn ask_of(
    www_authenticate: &str,
    amount: Option<String>,
    currency: Option<String>,
    payee: Option<String>,
    binding_message: Option<&str>,
) -> PyResult<StepUpAsk> {
    let payment = payee.map(|payee| Payment {
        amount: amount.unwrap_or_default(),
        currency: currency.unwrap_or_default(),
        payee,
    });
    StepUpAsk::from_challenge(www_authenticate, payment.as_ref(), binding_message).ok_or_else(|| {
        to_py(Error::InvalidRequest(
            "the challenge asks for no step-up: expected a 403 insufficient_scope or budget_exceeded with a scope".into(),
        ))
    })
}

fn challenge_name(c: Challenge) -> &'static str {
    match c {
        Challenge::Nonce => "nonce",
        Challenge::Renew => "renew",
        _ => "none",
    }
}

pymethods_with_faces! {
    impl Session {
        /// Ask the owner for a one-time authorization of the call to `url`
        /// that was refused with `www_authenticate` (a 403
        /// `insufficient_scope` or `budget_exceeded`); for a payment, name the
        /// payee (and the amount and currency when the challenge does not).
        /// Waits for the decision (the prompt callback is told once).
        #[pyo3(signature = (url, www_authenticate, amount=None, currency=None, payee=None, binding_message=None))]
        #[allow(clippy::too_many_arguments)]
        fn step_up / step_up_async(
            &self,
            url: String,
            www_authenticate: &str,
            amount: Option<String>,
            currency: Option<String>,
            payee: Option<String>,
            binding_message: Option<&str>,
        ) -> OneTimeToken = {
            let s = self.core()?;
            let ask = ask_of(www_authenticate, amount, currency, payee, binding_message)?;
            async move {
                let t = s.step_up(&url, &ask).await.map_err(to_py)?;
                Ok(OneTimeToken { inner: Arc::new(t) })
            }
        };

        /// Renew every access token now.
        fn renew / renew_async(&self) -> () = {
            let s = self.core()?;
            async move { s.renew().await.map_err(to_py) }
        };

        /// Get a token for another audience too; returns its granted scopes.
        fn add_audience / add_audience_async(&self, audience: String) -> Vec<String> = {
            let s = self.core()?;
            async move {
                let set = s.add_audience(&audience).await.map_err(to_py)?;
                Ok(set.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            }
        };

        /// Revoke the session's access tokens (and the grant when asked).
        #[pyo3(signature = (revoke_grant=false))]
        fn close / close_async(&self, revoke_grant: bool) -> () = {
            let s = self.core()?;
            async move { s.close(revoke_grant).await.map_err(to_py) }
        };

        ---

        /// The scopes granted for the session's first audience.
        #[getter]
        fn scopes(&self) -> PyResult<Vec<String>> {
            Ok(self
                .core()?
                .scopes()
                .iter()
                .map(|s| s.to_string())
                .collect())
        }

        /// When the current access token expires (seconds since the epoch).
        #[getter]
        fn expires_at(&self) -> PyResult<i64> {
            Ok(self.core()?.expires_at())
        }

        /// The agent key's RFC 7638 thumbprint (what tokens are bound to).
        #[getter]
        fn thumbprint(&self) -> PyResult<String> {
            Ok(self.core()?.thumbprint().to_owned())
        }

        /// The audiences this session holds tokens for.
        #[getter]
        fn audiences(&self) -> PyResult<Vec<String>> {
            Ok(self.core()?.audiences())
        }

        /// Whether `close` ran.
        #[getter]
        fn closed(&self) -> PyResult<bool> {
            Ok(self.core()?.is_closed())
        }

        /// The headers for one request: `Authorization` and a fresh `DPoP` proof.
        /// A URL outside the session's audiences raises `InvalidRequest`.
        #[pyo3(signature = (method, url, reason=None))]
        fn headers(
            &self,
            py: Python<'_>,
            method: &str,
            url: &str,
            reason: Option<&str>,
        ) -> PyResult<Vec<(String, String)>> {
            let s = self.core()?;
            py.detach(|| s.headers_with_reason(method, url, reason))
                .map_err(to_py)
        }

        /// Where a request for `url` goes: the gateway URL for a URL under an
        /// audience the broker serves through its gateway, else `url` itself.
        fn route(&self, url: &str) -> PyResult<String> {
            self.core()?.route(url).map_err(to_py)
        }

        /// Record what a response says (its `DPoP-Nonce`) and tell whether to
        /// retry: "nonce" (sign again with the new nonce), "renew" (renew, then
        /// sign again) or "none".
        #[pyo3(signature = (url, status, www_authenticate=None, dpop_nonce=None))]
        fn observe_response(
            &self,
            url: &str,
            status: u16,
            www_authenticate: Option<&str>,
            dpop_nonce: Option<&str>,
        ) -> PyResult<&'static str> {
            let c = self
                .core()?
                .observe_response(url, status, www_authenticate, dpop_nonce);
            Ok(challenge_name(c))
        }

        /// The headers for one call with a one-time token.
        fn one_time_headers(
            &self,
            token: &OneTimeToken,
            method: &str,
            url: &str,
        ) -> PyResult<Vec<(String, String)>> {
            self.core()?
                .one_time_headers(&token.inner, method, url)
                .map_err(to_py)
        }

        fn __repr__(&self) -> String {
            match &self.inner {
                Some(s) => format!("{s:?}"),
                None => "Session(<released>)".into(),
            }
        }
    }
}

/// Where grants are kept: `"file"` (the default), `"memory"`, or a directory.
fn store_kind(store: Option<String>) -> Option<StoreKind> {
    match store.as_deref() {
        None | Some("file") => None,
        Some("memory") => Some(StoreKind::Memory),
        Some(dir) => Some(StoreKind::File(PathBuf::from(dir))),
    }
}

/// The authentication flow once, with the handle that ends its wait (also
/// when `prompt` raises; that exception is kept and raised);
/// `authenticate` waits for it (interruptibly), `authenticate_async` hands it
/// to asyncio.
fn authenticate_flow(
    scope: Vec<String>,
    audience: String,
    prompt: Option<Py<PyAny>>,
    mut opts: AuthOptions,
) -> (
    impl Future<Output = PyResult<Session>> + Send + 'static,
    CancelHandle,
) {
    let (cancel, failure) = (CancelHandle::new(), PromptFailure::default());
    opts.prompt = prompt.map(|cb| python_prompt(cb, cancel.clone(), failure.clone()));
    opts.cancel = Some(cancel.clone());
    let flow = async move {
        let s = authenticate_with_proton(&scope, &audience, opts)
            .await
            .map_err(|e| failure.raise(e))?;
        Ok(Session {
            inner: Some(Arc::new(s)),
        })
    };
    (flow, cancel)
}

pyfunction_faces! {
    /// Authenticate (the blocking face releases the GIL while waiting, and
    /// Ctrl-C ends the wait with `KeyboardInterrupt`).
    #[pyo3(signature = (scope, audience, broker=None, agent_name=None, profile=None, store=None,
        prompt=None, ttl=None, required=None, reason=None, enrollment_code=None, passphrase=None,
        extend=false, allow_step_up=false))]
    #[allow(clippy::too_many_arguments)]
    fn authenticate / authenticate_async(
        scope: Vec<String>,
        audience: String,
        broker: Option<String>,
        agent_name: Option<String>,
        profile: Option<String>,
        store: Option<String>,
        prompt: Option<Py<PyAny>>,
        ttl: Option<u64>,
        required: Option<Vec<String>>,
        reason: Option<String>,
        enrollment_code: Option<String>,
        passphrase: Option<String>,
        extend: bool,
        allow_step_up: bool,
    ) -> Session = authenticate_flow(
        scope,
        audience,
        prompt,
        AuthOptions {
            broker,
            agent_name,
            profile,
            store: store_kind(store),
            ttl,
            required,
            reason,
            enrollment_code,
            passphrase: passphrase.map(Into::into),
            extend,
            allow_step_up,
            ..AuthOptions::default()
        },
    );
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<DevicePrompt>()?;
    m.add_class::<Session>()?;
    m.add_class::<OneTimeToken>()?;
    m.add_function(wrap_pyfunction!(authenticate, m)?)?;
    m.add_function(wrap_pyfunction!(authenticate_async, m)?)?;
    Ok(())
}
