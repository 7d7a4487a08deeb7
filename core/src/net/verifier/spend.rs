//! Spending against the owner's budgets (`spec/12-budgets.md`): the
//! resource server asks the broker to take an amount from the grant's budget
//! of a scope, or to give a spend back, by its idempotency key.

use zeroize::Zeroizing;

use super::{Identity, Rejection, StalePolicy, Verifier, http};
use crate::budget::{
    RefundRequest, SpendRequest, SpendResponse, check_idempotency_key, parse_amount,
};
use crate::error::{Error, Reason, Result};

impl Verifier {
    /// This API's credentials at the broker, as [`VerifierOptions::credentials`](super::VerifierOptions::credentials) says.
    pub(super) fn credentials(&self) -> Result<(String, Zeroizing<String>)> {
        let o = &self.inner.opts;
        if let Some(c) = o.credentials.as_ref().or(o.usage_reports.as_ref()) {
            return Ok(c.clone());
        }
        if let StalePolicy::Introspect {
            client_id,
            client_secret,
        } = &o.stale_policy
        {
            return Ok((client_id.clone(), client_secret.clone()));
        }
        Err(Error::InvalidRequest(
            "spending needs this API's client id and secret (`protonpass-broker resource add`)"
                .into(),
        ))
    }

    async fn budget_call<T: serde::Serialize>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<SpendResponse> {
        let (id, secret) = self.credentials()?;
        let url = format!(
            "{}/budget/{path}",
            self.inner.opts.issuer.trim_end_matches('/')
        );
        let resp = http::client()?
            .post(&url)
            .basic_auth(&id, Some(secret.as_str()))
            .json(body)
            .send()
            .await
            .map_err(|e| http::unreachable("spending against the budget", &e))?;
        let status = resp.status().as_u16();
        let body = http::read_body(resp).await?;
        if status != 200 {
            return Err(http::error_from_body(status, &body));
        }
        serde_json::from_slice(&body)
            .map_err(|e| Error::InvalidResponse(format!("spend answer: {e}")))
    }

    /// Take `amount` (a decimal string, e.g. `"12.50"`) of `currency` from the
    /// budget the owner set on `agent`'s grant for `scope` (`resource:action`),
    /// at once and for all instances of this API. The same `idempotency_key`
    /// never spends twice: a retry gets the first answer. `Ok` carries what
    /// remains; `Err` is the rejection to send: `budget_exceeded` (403, with
    /// the needed `amount` and `currency` in its challenge), `insufficient_scope`
    /// (403, the token's per-call limit, with the same parameters), `invalid_token` (401, the grant was
    /// revoked or expired), or 503 when the broker cannot answer.
    pub async fn spend(
        &self,
        agent: &Identity,
        scope: &str,
        amount: &str,
        currency: &str,
        idempotency_key: &str,
    ) -> std::result::Result<SpendResponse, Rejection> {
        let r = self
            .spend_grant(
                &agent.grant_id,
                &agent.token_id,
                scope,
                amount,
                currency,
                idempotency_key,
            )
            .await;
        if let Err(rej) = &r {
            agent.use_ticket.refused(&rej.error, scope);
        }
        r
    }

    /// [`Verifier::spend`] for a verified token named by its grant id and
    /// token id (the fields of an [`Identity`]), for bindings that keep the
    /// identity as plain data. A refusal is not reported as the request's.
    pub async fn spend_grant(
        &self,
        grant_id: &str,
        token_id: &str,
        scope: &str,
        amount: &str,
        currency: &str,
        idempotency_key: &str,
    ) -> std::result::Result<SpendResponse, Rejection> {
        let checked = parse_amount(amount, currency)
            .and_then(|_| check_idempotency_key(idempotency_key))
            .map_err(|e| Rejection::new(e, None, None));
        checked?;
        let req = SpendRequest {
            grant_id: grant_id.to_owned(),
            token_id: token_id.to_owned(),
            scope: scope.to_owned(),
            amount: amount.to_owned(),
            currency: currency.to_owned(),
            idempotency_key: idempotency_key.to_owned(),
        };
        // A refusal for want of budget or of per-call limit names the amount
        // and currency the call needs, for the client's step-up.
        self.budget_call("spend", &req)
            .await
            .map_err(|e| Rejection::needing(for_api(e), scope, amount, Some(currency)))
    }

    /// Give back the spend made under `idempotency_key` for `agent`'s grant.
    /// Refunding twice answers the same; a revoked grant can be refunded.
    pub async fn refund(
        &self,
        agent: &Identity,
        idempotency_key: &str,
    ) -> std::result::Result<SpendResponse, Rejection> {
        self.refund_grant(&agent.grant_id, idempotency_key).await
    }

    /// [`Verifier::refund`] for a grant named by its id.
    pub async fn refund_grant(
        &self,
        grant_id: &str,
        idempotency_key: &str,
    ) -> std::result::Result<SpendResponse, Rejection> {
        check_idempotency_key(idempotency_key).map_err(|e| Rejection::new(e, None, None))?;
        let req = RefundRequest {
            grant_id: grant_id.to_owned(),
            idempotency_key: idempotency_key.to_owned(),
        };
        self.budget_call("refund", &req)
            .await
            .map_err(|e| Rejection::new(for_api(e), None, None))
    }
}

/// The broker's answer as this API's refusal: a revoked or expired grant is
/// the token's failure (401); a broker that cannot answer is 503; a refused
/// credential is this API's misconfiguration (500, never shown as the
/// agent's fault).
fn for_api(e: Error) -> Error {
    match e {
        Error::InvalidGrant(m) => Error::InvalidToken {
            reason: Reason::Revoked,
            message: m,
        },
        Error::BrokerUnavailable(m) => Error::TemporarilyUnavailable(m),
        Error::InvalidClient(m) => {
            Error::Server(format!("the broker refused this API's credentials: {m}"))
        }
        other => other,
    }
}
