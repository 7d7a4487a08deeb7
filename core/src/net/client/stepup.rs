//! Step-up (`spec/14-step-up.md`): when an API answers `403` with
//! `insufficient_scope` or `budget_exceeded`, ask the owner for a one-time
//! authorization of exactly that call (OpenID CIBA, poll mode, with RFC 9396
//! authorization details), wait for it with the same prompt callback as the
//! device flow, and retry the call once with the one-time token. Off unless
//! [`super::AuthOptions::allow_step_up`] is set.

use std::fmt;
use std::time::Duration;

use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::http;
use super::{DevicePrompt, PromptFn, Session};
use crate::error::{Error, Result};
use crate::wire::TokenResponse;

const GT_CIBA: &str = "urn:openid:params:grant-type:ciba";

/// The default step-up prompt: one line on stderr.
pub fn stderr_step_up_prompt() -> PromptFn {
    std::sync::Arc::new(|p: &DevicePrompt| {
        eprintln!(
            "This call needs the owner's approval: approve it at {} (valid {} min). Waiting for approval...",
            p.verification_uri,
            p.expires_in.div_ceil(60)
        );
    })
}

/// What a step-up asks the owner for: RFC 9396 `authorization_details` and
/// the agent's reason (`binding_message`, shown to the owner verbatim).
#[derive(Debug, Clone, PartialEq)]
pub struct StepUpAsk {
    /// A JSON array of `payment` or `scope` details (`spec/14-step-up.md`).
    pub authorization_details: Value,
    /// The agent's reason, at most 200 characters.
    pub binding_message: Option<String>,
}

/// A payment the agent wants to make: what a step-up for a payment names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// A decimal string (`"250.00"`).
    pub amount: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Who is paid.
    pub payee: String,
}

/// The `key="value"` parameters of a `WWW-Authenticate` challenge.
fn challenge_params(header: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = header.split_once(' ').map_or("", |(_, r)| r);
    while let Some((k, v)) = rest.split_once("=\"") {
        let Some((value, tail)) = v.split_once('"') else {
            break;
        };
        out.push((
            k.trim_start_matches([',', ' ']).trim().to_owned(),
            value.to_owned(),
        ));
        rest = tail;
    }
    out
}

impl StepUpAsk {
    /// The step-up a `403` challenge calls for: `error` `insufficient_scope`
    /// or `budget_exceeded` with the `scope` it needs. For a payment, the
    /// amount and currency come from the challenge (`budget_exceeded` names
    /// them) or from `payment`, and the payee from `payment`; without a
    /// payment it asks for the scope. `None` for any other challenge.
    pub fn from_challenge(
        www_authenticate: &str,
        payment: Option<&Payment>,
        binding_message: Option<&str>,
    ) -> Option<Self> {
        let params = challenge_params(www_authenticate);
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if !matches!(get("error"), Some("insufficient_scope" | "budget_exceeded")) {
            return None;
        }
        let scope = get("scope")?;
        let detail = match payment {
            Some(p) => {
                // The payment's scope is resource:action: a qualifier the
                // challenge names (under-N) is what the token lacked.
                let base: Vec<&str> = scope.split(':').take(2).collect();
                json!({"type": "payment", "scope": base.join(":"),
                       "amount": get("amount").unwrap_or(&p.amount),
                       "currency": get("currency").unwrap_or(&p.currency),
                       "payee": p.payee})
            }
            None => json!({"type": "scope", "scope": scope}),
        };
        Some(StepUpAsk {
            authorization_details: Value::Array(vec![detail]),
            binding_message: binding_message.map(str::to_owned),
        })
    }
}

/// A one-time token: bound to the agent's key, carrying exactly the approved
/// details, valid for one call within at most 5 minutes.
pub struct OneTimeToken {
    token: Zeroizing<String>,
    /// The audience it is for.
    pub audience: String,
    /// Seconds it lives from issue.
    pub expires_in: i64,
    /// The scope it carries.
    pub scope: String,
    /// The approved details, as the broker returned them.
    pub authorization_details: Value,
}

impl fmt::Debug for OneTimeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneTimeToken")
            .field("audience", &self.audience)
            .field("scope", &self.scope)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

impl OneTimeToken {
    /// The token itself (send it only with [`Session::one_time_headers`]).
    pub fn expose(&self) -> &str {
        &self.token
    }
}

/// The backchannel answer; `Debug` never shows the `auth_req_id`.
#[derive(serde::Deserialize)]
struct BcResponse {
    auth_req_id: String,
    expires_in: i64,
    #[serde(default)]
    interval: Option<i64>,
}

impl Drop for BcResponse {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.auth_req_id);
    }
}

impl Session {
    /// Ask the owner for a one-time authorization for a call to `url`, wait
    /// for the decision (the prompt callback is told once), and return the
    /// one-time token. Refused unless the session was made with
    /// `allow_step_up`. Denial is [`Error::AccessDenied`], expiry
    /// [`Error::ExpiredToken`], a revoked grant [`Error::InvalidGrant`].
    pub async fn step_up(&self, url: &str, ask: &StepUpAsk) -> Result<OneTimeToken> {
        let Some(prompt) = self.inner.step_up.clone() else {
            return Err(Error::InvalidRequest(
                "step-up is off: authenticate with allow_step_up to ask the owner".into(),
            ));
        };
        let calls = &self.inner.calls;
        let endpoint = calls
            .meta
            .backchannel_authentication_endpoint
            .clone()
            .ok_or_else(|| {
                Error::InvalidResponse("the broker offers no step-up (backchannel) endpoint".into())
            })?;
        let routed = self.route(url)?;
        let aud = self.audience_for(&routed)?;
        let details = ask.authorization_details.to_string();
        let mut form = vec![
            ("authorization_details", details.as_str()),
            ("resource", aud.as_str()),
        ];
        if let Some(m) = &ask.binding_message {
            form.push(("binding_message", m.as_str()));
        }
        let body = serde_urlencoded::to_string(&form)
            .map_err(|e| Error::InvalidRequest(format!("cannot encode the form: {e}")))?;
        let client = http::client()?;
        let mut answer = None;
        for _ in 0..2 {
            let token = self
                .with_token(&aud, |a| a.token.clone())
                .ok_or_else(|| Error::InvalidRequest(format!("no token for {aud}")))?;
            let proof = calls.proof("POST", &endpoint, Some(token.as_str()), None)?;
            let resp = client
                .post(&endpoint)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("authorization", format!("DPoP {}", token.as_str()))
                .header("DPoP", proof)
                .body(body.clone())
                .send()
                .await
                .map_err(|e| http::unreachable(&endpoint, &e))?;
            calls.nonces.remember(&endpoint, resp.headers());
            let status = resp.status().as_u16();
            let bytes = http::read_body(resp).await?;
            if status == 200 {
                answer = Some(bytes);
                break;
            }
            match http::error_from_body(status, &bytes) {
                Error::UseDpopNonce => {}
                e => return Err(e),
            }
        }
        let bytes = answer.ok_or_else(|| {
            Error::InvalidResponse("the broker kept asking for a new DPoP nonce".into())
        })?;
        let r: BcResponse = serde_json::from_slice(&bytes)
            .map_err(|e| Error::InvalidResponse(format!("backchannel response: {e}")))?;
        prompt(&DevicePrompt {
            verification_uri: format!("{}/stepup", calls.meta.issuer.trim_end_matches('/')),
            verification_uri_complete: None,
            user_code: String::new(),
            expires_in: u64::try_from(r.expires_in).unwrap_or(0),
        });
        let wait = self.poll_step_up(&r);
        let t = match &self.inner.cancel {
            Some(c) => tokio::select! {
                t = wait => t?,
                () = c.cancelled() => {
                    return Err(Error::Cancelled("stopped waiting for the owner's step-up approval".into()));
                }
            },
            None => wait.await?,
        };
        Ok(OneTimeToken {
            token: Zeroizing::new(t.0.access_token.clone()),
            audience: t.0.audience.clone().unwrap_or(aud),
            expires_in: t.0.expires_in,
            scope: t.0.scope.clone(),
            authorization_details: t.1,
        })
    }

    async fn poll_step_up(&self, r: &BcResponse) -> Result<(TokenResponse, Value)> {
        let lifetime = u64::try_from(r.expires_in).unwrap_or(0).min(3600);
        let mut interval = u64::try_from(r.interval.unwrap_or(5))
            .unwrap_or(5)
            .clamp(1, 60);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(lifetime);
        let calls = &self.inner.calls;
        loop {
            tokio::time::sleep(Duration::from_secs(interval)).await;
            if tokio::time::Instant::now() > deadline {
                return Err(Error::ExpiredToken);
            }
            let form = [
                ("grant_type", GT_CIBA),
                ("auth_req_id", r.auth_req_id.as_str()),
            ];
            let (status, body) = calls
                .post_form(&calls.meta.token_endpoint, &form, true)
                .await?;
            if status == 200 {
                let t: TokenResponse = serde_json::from_slice(&body)
                    .map_err(|e| Error::InvalidResponse(format!("token response: {e}")))?;
                let details = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|mut v| v.get_mut("authorization_details").map(Value::take))
                    .unwrap_or(Value::Null);
                return Ok((t, details));
            }
            match http::error_from_body(status, &body) {
                Error::AuthorizationPending => {}
                Error::SlowDown => interval = (interval + 5).min(60),
                e => return Err(e),
            }
        }
    }

    /// The headers for one call with a one-time token: `Authorization: DPoP`
    /// and a fresh proof bound to it.
    pub fn one_time_headers(
        &self,
        token: &OneTimeToken,
        method: &str,
        url: &str,
    ) -> Result<Vec<(String, String)>> {
        self.inner
            .calls
            .dpop_headers(token.expose(), method, url, None)
    }

    /// [`Session::send`], and when the API answers `403` with
    /// `insufficient_scope` or `budget_exceeded`: ask the owner for exactly
    /// that call ([`StepUpAsk::from_challenge`] with `payment` and
    /// `binding_message`), wait, and retry the call once with the one-time
    /// token. Without `allow_step_up` the 403 is returned as is.
    pub async fn send_with_step_up(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Option<Vec<u8>>,
        payment: Option<&Payment>,
        binding_message: Option<&str>,
    ) -> Result<reqwest::Response> {
        let resp = self.send(method, url, headers, body.clone(), None).await?;
        if resp.status().as_u16() != 403 || self.inner.step_up.is_none() {
            return Ok(resp);
        }
        let challenge = http::www_authenticate(&resp).unwrap_or_default();
        let Some(ask) = StepUpAsk::from_challenge(&challenge, payment, binding_message) else {
            return Ok(resp);
        };
        let token = self.step_up(url, &ask).await?;
        let routed = self.route(url)?;
        let m = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| Error::InvalidRequest(format!("bad HTTP method {method:?}")))?;
        let client = http::client()?;
        let mut req = client.request(m, &routed);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        for (k, v) in self.one_time_headers(&token, method, &routed)? {
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| http::unreachable(&routed, &e))?;
        self.inner.calls.nonces.remember(&routed, resp.headers());
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_challenge_becomes_the_step_up_it_asks_for() {
        let www = "DPoP error=\"budget_exceeded\", error_description=\"80.00 EUR of payment:execute would go over\", algs=\"EdDSA ES256\", scope=\"payment:execute\", amount=\"80\", currency=\"EUR\"";
        let p = Payment {
            amount: "1".into(),
            currency: "USD".into(),
            payee: "Air Example".into(),
        };
        let a = StepUpAsk::from_challenge(www, Some(&p), Some("Paris trip")).unwrap();
        assert_eq!(
            a.authorization_details,
            json!([{"type": "payment", "scope": "payment:execute", "amount": "80",
                    "currency": "EUR", "payee": "Air Example"}])
        );
        let www = "DPoP error=\"insufficient_scope\", error_description=\"x\", algs=\"EdDSA\", scope=\"payment:execute:under-100\"";
        let p = Payment {
            amount: "250".into(),
            currency: "EUR".into(),
            payee: "Hotel".into(),
        };
        let a = StepUpAsk::from_challenge(www, Some(&p), None).unwrap();
        assert_eq!(a.authorization_details[0]["scope"], "payment:execute");
        assert_eq!(a.authorization_details[0]["amount"], "250");
        let a = StepUpAsk::from_challenge(
            www.replace("payment:execute:under-100", "calendar:write")
                .as_str(),
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            a.authorization_details,
            json!([{"type": "scope", "scope": "calendar:write"}])
        );
        assert!(StepUpAsk::from_challenge("DPoP error=\"invalid_token\"", None, None).is_none());
        assert!(
            StepUpAsk::from_challenge("DPoP error=\"insufficient_scope\"", None, None).is_none()
        );
    }
}
