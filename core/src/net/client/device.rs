//! The device authorization grant (RFC 8628) as the agent waits for it:
//! show the prompt, poll, and withdraw the request however the wait ends early.

use std::time::Duration;

use zeroize::Zeroizing;

use super::calls::BrokerCalls;
use super::{CancelHandle, DevicePrompt, GT_DEVICE, PromptFn};
use crate::error::{Error, Result};
use crate::net::http;
use crate::wire::{DeviceAuthorizationResponse, TokenResponse};

impl BrokerCalls {
    pub(super) async fn device_grant(
        &self,
        scope: &str,
        audience: &str,
        prompt: &PromptFn,
        cancel: Option<&CancelHandle>,
    ) -> Result<TokenResponse> {
        let endpoint = self.meta.device_authorization_endpoint.as_str();
        let form = [
            ("client_id", self.agent.as_str()),
            ("scope", scope),
            ("resource", audience),
        ];
        // A proof here binds the request to this key: the owner sees the key's
        // fingerprint when approving, and only this key can collect the grant.
        let (status, body) = self.post_form(endpoint, &form, true).await?;
        if status != 200 {
            return Err(http::error_from_body(status, &body));
        }
        let d: DeviceAuthorizationResponse = serde_json::from_slice(&body)
            .map_err(|e| Error::InvalidResponse(format!("device authorization response: {e}")))?;
        // From here on the broker holds a request for this agent: however the
        // wait ends early (cancelled, or this future dropped), it is withdrawn.
        let mut guard = WithdrawOnDrop(Some((self.clone(), Zeroizing::new(d.device_code.clone()))));
        prompt(&DevicePrompt {
            verification_uri: d.verification_uri.clone(),
            verification_uri_complete: d.verification_uri_complete.clone(),
            user_code: d.user_code.clone(),
            expires_in: u64::try_from(d.expires_in).unwrap_or(0),
        });
        let outcome = match cancel {
            Some(c) => tokio::select! {
                r = self.poll_device(&d) => Some(r),
                () = c.cancelled() => None,
            },
            None => Some(self.poll_device(&d).await),
        };
        match outcome {
            Some(r) => {
                guard.0 = None;
                r
            }
            None => {
                // Bounded: the caller is waiting to see its own error.
                let withdraw = self.cancel_device(&d.device_code);
                if let Err(e) = tokio::time::timeout(Duration::from_secs(2), withdraw)
                    .await
                    .unwrap_or_else(|_| Err(Error::BrokerUnavailable("timed out".into())))
                {
                    tracing::warn!(error = e.code(), "could not withdraw the device request");
                }
                // Withdrawn (or tried): dropping this future no longer withdraws.
                guard.0 = None;
                Err(Error::Cancelled(
                    "stopped waiting for the owner's approval; the request was withdrawn".into(),
                ))
            }
        }
    }

    async fn poll_device(&self, d: &DeviceAuthorizationResponse) -> Result<TokenResponse> {
        // Whatever the broker says, wait at most a day and poll at least every
        // five minutes: no answer can overflow the deadline or stall the agent.
        let lifetime = u64::try_from(d.expires_in).unwrap_or(0).min(86_400);
        let mut interval = u64::try_from(d.interval).unwrap_or(5).clamp(1, 300);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(lifetime);
        loop {
            tokio::time::sleep(Duration::from_secs(interval)).await;
            if tokio::time::Instant::now() > deadline {
                return Err(Error::ExpiredToken);
            }
            let form = [
                ("grant_type", GT_DEVICE),
                ("device_code", d.device_code.as_str()),
                ("client_id", self.agent.as_str()),
            ];
            match self.token(&form).await {
                Ok(t) => return Ok(t),
                Err(Error::AuthorizationPending) => {}
                Err(Error::SlowDown) => interval = (interval + 5).min(300),
                Err(e) => return Err(e),
            }
        }
    }

    /// Withdraw a pending device request (spec 4.4.1), signed by this key.
    async fn cancel_device(&self, device_code: &str) -> Result<()> {
        let url = device_cancel_url(&self.meta.device_authorization_endpoint);
        let form = [
            ("device_code", device_code),
            ("client_id", self.agent.as_str()),
        ];
        match self.post_form(&url, &form, true).await? {
            (200, _) => Ok(()),
            (status, body) => Err(http::error_from_body(status, &body)),
        }
    }
}

/// Where a device request is withdrawn: the device authorization endpoint
/// followed by `/cancel` (spec 4.4.1).
fn device_cancel_url(endpoint: &str) -> String {
    format!("{}/cancel", endpoint.trim_end_matches('/'))
}

/// Withdraws the device request when the wait is dropped before it ended
/// (an asyncio task or a Promise cancelled): the request is sent from the
/// runtime, in the background.
struct WithdrawOnDrop(Option<(BrokerCalls, Zeroizing<String>)>);

impl Drop for WithdrawOnDrop {
    fn drop(&mut self) {
        if let Some((calls, code)) = self.0.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let withdraw = calls.cancel_device(&code);
                if tokio::time::timeout(Duration::from_secs(5), withdraw)
                    .await
                    .is_err()
                {
                    tracing::warn!("could not withdraw the device request: timed out");
                }
            });
        }
    }
}
