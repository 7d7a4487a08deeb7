//! Request signing: which audience a URL belongs to, where it is routed,
//! the `Authorization` and `DPoP` headers, and the retry rules of a response.

use std::sync::atomic::Ordering;

use super::Challenge;
use super::renewal::renew;
use super::session::Session;
use crate::error::{Error, Result};
use crate::net::{audience, discovery, http};

impl Session {
    /// them is refused, so the token never goes anywhere else.
    pub(super) fn audience_for(&self, url: &str) -> Result<String> {
        let m = self
            .inner
            .tokens
            .read()
            .map_err(|_| Error::Server("session state poisoned".into()))?;
        let refused = match audience::pick(m.keys(), url) {
            Ok(a) => {
                self.inner.routes.check_direct(a)?;
                return Ok(a.clone());
            }
            Err(e) => e,
        };
        let held: Vec<&String> = m.keys().collect();
        if let Some(a) = self.inner.routes.audience_of_gateway_url(&held, url) {
            return Ok(a.clone());
        }
        // The broker's own gateway (`{issuer}/gateway/...`) is not "another
        // place": the token goes back to the broker that issued it, which
        // checks its audience against the upstream's. With one audience the
        // token to attach is clear; with several, the caller must say which
        // (a session per upstream).
        let gateway = format!(
            "{}/gateway/",
            self.inner.calls.meta.issuer.trim_end_matches('/')
        );
        if audience::covers(&gateway, url)
            && m.len() == 1
            && let Some(a) = m.keys().next()
        {
            return Ok(a.clone());
        }
        Err(refused)
    }

    /// Where a request for `url` goes: for a URL under an audience the broker
    /// serves through its gateway, the same path and query under the gateway
    /// URL (`spec/10-gateway-rules.md`); any other URL unchanged. Sign and
    /// send the routed URL ([`Session::send`] does both).
    pub fn route(&self, url: &str) -> Result<String> {
        let m = self
            .inner
            .tokens
            .read()
            .map_err(|_| Error::Server("session state poisoned".into()))?;
        let held: Vec<&String> = m.keys().collect();
        self.inner.routes.route(&held, url)
    }

    /// The headers for one request: `Authorization: DPoP <token>` and a fresh
    /// `DPoP` proof bound to the token (`ath`), with the origin's nonce and the
    /// reason when there is one. The URL must lie under one of the session's
    /// audiences (same scheme, host and port, path under the audience's path);
    /// anything else is [`Error::InvalidRequest`].
    pub fn headers(&self, method: &str, url: &str) -> Result<Vec<(String, String)>> {
        self.headers_with_reason(method, url, None)
    }

    /// [`Session::headers`] with a per-request reason (overrides the session's).
    pub fn headers_with_reason(
        &self,
        method: &str,
        url: &str,
        reason: Option<&str>,
    ) -> Result<Vec<(String, String)>> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(Error::InvalidGrant("the session is closed".into()));
        }
        let aud = self.audience_for(url)?;
        let token = self
            .with_token(&aud, |a| a.token.clone())
            .ok_or_else(|| Error::InvalidRequest(format!("no token for {aud}")))?;
        self.inner.calls.dpop_headers(&token, method, url, reason)
    }

    /// Send a request with DPoP headers. Answers a `use_dpop_nonce` challenge
    /// (caching the nonce per origin) and an expired-token 401 with one
    /// transparent retry each. A URL outside the session's audiences is
    /// refused with [`Error::InvalidRequest`] before anything is sent; one
    /// under an audience the broker serves through its gateway goes to the
    /// gateway ([`Session::route`]).
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Option<Vec<u8>>,
        reason: Option<&str>,
    ) -> Result<reqwest::Response> {
        let routed = self.route(url)?;
        let url = routed.as_str();
        let http = http::client()?;
        let m = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| Error::InvalidRequest(format!("bad HTTP method {method:?}")))?;
        let mut renewed = false;
        let mut nonce_retried = false;
        loop {
            let mut req = http.request(m.clone(), url);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            for (k, v) in self.headers_with_reason(method, url, reason)? {
                req = req.header(k, v);
            }
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            let resp = req.send().await.map_err(|e| http::unreachable(url, &e))?;
            self.inner.calls.nonces.remember(url, resp.headers());
            if resp.status().as_u16() != 401 {
                return Ok(resp);
            }
            let challenge = http::www_authenticate(&resp).unwrap_or_default();
            self.note_challenge(url, &challenge);
            if challenge.contains("use_dpop_nonce") && !nonce_retried {
                nonce_retried = true;
                continue;
            }
            if challenge.contains("invalid_token") && !renewed {
                renewed = true;
                renew(&self.inner, true).await?;
                continue;
            }
            return Ok(resp);
        }
    }

    /// For HTTP stacks other than [`Session::send`] (the Python and Node
    /// bindings): record what a response to a request signed by this session
    /// says (its `DPoP-Nonce`) and tell whether to sign again and retry once,
    /// by the same rules as [`Session::send`].
    pub fn observe_response(
        &self,
        url: &str,
        status: u16,
        www_authenticate: Option<&str>,
        dpop_nonce: Option<&str>,
    ) -> Challenge {
        if let Some(n) = dpop_nonce {
            self.inner.calls.nonces.insert(url, n);
        }
        let challenge = www_authenticate.unwrap_or_default();
        if status == 401 {
            self.note_challenge(url, challenge);
        }
        if status != 401 {
            Challenge::None
        } else if challenge.contains("use_dpop_nonce") && dpop_nonce.is_some() {
            Challenge::Nonce
        } else if challenge.contains("invalid_token") {
            Challenge::Renew
        } else {
            Challenge::None
        }
    }

    /// A `401` naming other protected-resource metadata than the API was
    /// discovered from: forget the discovery, so that the next
    /// [`authenticate_with_proton`](super::authenticate_with_proton) for it
    /// discovers again (RFC 9728 section 5.1).
    fn note_challenge(&self, url: &str, www_authenticate: &str) {
        if let Ok(aud) = self.audience_for(url) {
            discovery::note_challenge(&aud, www_authenticate);
        }
    }
}
