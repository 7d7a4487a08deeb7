//! Calls to the broker: every request signed with the agent's key (DPoP),
//! answering nonce challenges; the token endpoint, token exchange and revocation.

use std::sync::Arc;

use super::{GT_EXCHANGE, TT_ACCESS, TT_REFRESH};
use crate::clock::{Clock, Random};
use crate::dpop::{ProofInput, create_proof};
use crate::error::{Error, Result};
use crate::keys::AgentKey;
use crate::net::http::{self, NonceCache};
use crate::wire::{ServerMetadata, TokenResponse};

/// Talks to the broker's token endpoint with DPoP, answering nonce challenges.
#[derive(Clone)]
pub(super) struct BrokerCalls {
    pub(super) meta: Arc<ServerMetadata>,
    pub(super) key: AgentKey,
    pub(super) agent: String,
    pub(super) nonces: &'static NonceCache,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) rng: Arc<dyn Random>,
    pub(super) reason: Option<String>,
}

impl BrokerCalls {
    /// A fresh DPoP proof for one request to `url`: with the origin's
    /// remembered nonce, bound (`ath`) to `access_token` when there is one,
    /// and carrying `reason`, else the session's reason.
    pub(super) fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        reason: Option<&str>,
    ) -> Result<String> {
        let nonce = self.nonces.get(url);
        create_proof(
            &self.key,
            &ProofInput {
                method,
                url,
                access_token,
                nonce: nonce.as_deref(),
                reason: reason.or(self.reason.as_deref()),
            },
            self.clock.now(),
            self.rng.as_ref(),
        )
    }

    /// The header pair for a call with `token`: `Authorization: DPoP <token>`
    /// and a fresh `DPoP` proof bound to it ([`BrokerCalls::proof`]).
    pub(super) fn dpop_headers(
        &self,
        token: &str,
        method: &str,
        url: &str,
        reason: Option<&str>,
    ) -> Result<Vec<(String, String)>> {
        let proof = self.proof(method, url, Some(token), reason)?;
        Ok(vec![
            ("Authorization".to_owned(), format!("DPoP {token}")),
            ("DPoP".to_owned(), proof),
        ])
    }

    pub(super) async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        with_proof: bool,
    ) -> Result<(u16, Vec<u8>)> {
        let http = http::client()?;
        let body = serde_urlencoded::to_string(form)
            .map_err(|e| Error::InvalidRequest(format!("cannot encode the form: {e}")))?;
        // At most two tries: the second answers a `use_dpop_nonce` challenge.
        for attempt in 0..2 {
            let mut req = http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.clone());
            if with_proof {
                req = req.header("DPoP", self.proof("POST", url, None, None)?);
            }
            let resp = req.send().await.map_err(|e| http::unreachable(url, &e))?;
            self.nonces.remember(url, resp.headers());
            let status = resp.status().as_u16();
            let bytes = http::read_body(resp).await?;
            if status != 200
                && attempt == 0
                && with_proof
                && matches!(http::error_from_body(status, &bytes), Error::UseDpopNonce)
            {
                continue;
            }
            return Ok((status, bytes));
        }
        Err(Error::InvalidResponse(
            "the broker kept asking for a new DPoP nonce".into(),
        ))
    }

    pub(super) async fn token(&self, form: &[(&str, &str)]) -> Result<TokenResponse> {
        let (status, body) = self
            .post_form(&self.meta.token_endpoint, form, true)
            .await?;
        if status != 200 {
            return Err(http::error_from_body(status, &body));
        }
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| Error::InvalidResponse(format!("token response: {e}")))?;
        if !t.token_type.eq_ignore_ascii_case("dpop") {
            return Err(Error::InvalidResponse(format!(
                "expected a DPoP-bound token, got token_type {:?}",
                t.token_type
            )));
        }
        Ok(t)
    }

    pub(super) async fn exchange(
        &self,
        refresh_token: &str,
        scope: &str,
        audience: &str,
        ttl: Option<u64>,
    ) -> Result<TokenResponse> {
        let ttl_s = ttl.map(|t| t.to_string());
        let mut form = vec![
            ("grant_type", GT_EXCHANGE),
            ("subject_token", refresh_token),
            ("subject_token_type", TT_REFRESH),
            ("requested_token_type", TT_ACCESS),
            ("scope", scope),
            ("audience", audience),
            ("client_id", self.agent.as_str()),
        ];
        if let Some(t) = &ttl_s {
            form.push(("expires_in", t));
        }
        self.token(&form).await
    }

    pub(super) async fn revoke(&self, token: &str, hint: &str) -> Result<()> {
        let endpoint = self.meta.revocation_endpoint.as_str();
        let form = [
            ("token", token),
            ("token_type_hint", hint),
            ("client_id", self.agent.as_str()),
        ];
        let mut last = Error::BrokerUnavailable("revocation not attempted".into());
        // Revocation is idempotent: retry on 503 and network faults, in bounded time.
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(http::backoff(attempt - 1, self.rng.as_ref())).await;
            }
            match self.post_form(endpoint, &form, false).await {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => {
                    last = http::error_from_body(status, &body);
                    if status != 503 {
                        return Err(last);
                    }
                }
                Err(e @ Error::BrokerUnavailable(_)) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }
}
