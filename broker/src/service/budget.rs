//! Spend budgets (`spec/12-budgets.md`): the owner sets a limit per grant and
//! scope over a UTC calendar period; resource servers spend and refund against
//! it through the broker. Each spend runs as one write transaction on the
//! store's single writer (and under SQLite's write lock across processes), so
//! checking what remains and recording the spend cannot interleave.

use std::sync::{Arc, OnceLock};

use protonpass_agent::budget::{
    Period, RefundRequest, SpendRequest, SpendResponse, check_idempotency_key, format_amount,
    parse_amount,
};
use protonpass_agent::{Error, Qualifier, Result, Scope, ScopeSet};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Value, json};

use super::resource::{ClientCreds, resource_by_creds};
use super::{Broker, grant_live, owner_grant};
use crate::model::{Budget, Grant, GrantStatus, Resource, SpendRec, TokenKind, TokenStatus};
use crate::store::{self, Tx};

/// A budget as the owner sees it: its limit, what the current period spent,
/// and what remains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetView {
    /// `resource:action`.
    pub scope: String,
    /// The limit per period, decimal string.
    pub limit: String,
    /// ISO 4217 code.
    pub currency: String,
    /// `hour`, `day`, `week`, `month` or `total` (UTC calendar periods).
    pub period: Period,
    /// Spent in the current period (refunds deducted).
    pub spent: String,
    /// What remains in the current period.
    pub remaining: String,
    /// When the current period ends (Unix seconds); `None` for `total`.
    pub period_ends_at: Option<i64>,
}

/// A budget as set on the command line or at approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetSpec {
    /// `resource:action`.
    pub scope: String,
    /// Decimal string.
    pub limit: String,
    /// ISO 4217 code.
    pub currency: String,
    /// The period.
    pub period: Period,
}

impl BudgetSpec {
    /// Parse `SCOPE=LIMIT/CURRENCY/PERIOD` (`payment:execute=500/EUR/day`).
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidRequest(
                "a budget is SCOPE=LIMIT/CURRENCY/PERIOD, e.g. payment:execute=500/EUR/day".into(),
            )
        };
        let (scope, rest) = text.split_once('=').ok_or_else(bad)?;
        let mut parts = rest.split('/');
        let (Some(limit), Some(currency), Some(period), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        Ok(BudgetSpec {
            scope: scope.to_owned(),
            limit: limit.to_owned(),
            currency: currency.to_owned(),
            period: Period::parse(period)?,
        })
    }

    /// Check it against the scopes a grant has (or will have): its scope
    /// and limit in minor units.
    pub fn check(&self, granted: &str) -> Result<(String, i64)> {
        let scope = budget_scope(&self.scope)?;
        let limit = parse_amount(&self.limit, &self.currency)?;
        if !ScopeSet::parse(granted)?.allows_amount(&scope, Decimal::ZERO) {
            return Err(Error::InvalidScope(format!(
                "the grant does not allow {scope}: a budget can only limit a granted scope"
            )));
        }
        Ok((scope, limit))
    }

    /// Check it against a grant and make the record.
    pub fn to_budget(&self, g: &Grant, now: i64) -> Result<Budget> {
        let (scope, limit) = self.check(&g.scope)?;
        Ok(Budget {
            gid: g.gid.clone(),
            scope,
            limit,
            currency: self.currency.clone(),
            period: self.period,
            updated_at: now,
        })
    }
}

impl std::fmt::Display for BudgetSpec {
    /// The form [`BudgetSpec::parse`] reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}={}/{}/{}",
            self.scope, self.limit, self.currency, self.period
        )
    }
}

/// A budget's scope: `resource:action`, without a qualifier.
fn budget_scope(s: &str) -> Result<String> {
    let parsed = Scope::parse(s)?;
    if !matches!(parsed.qualifier(), Qualifier::None) {
        return Err(Error::InvalidScope(
            "a budget names resource:action, without a qualifier".into(),
        ));
    }
    Ok(parsed.to_string())
}

/// What a budget stands at, at `now`: (spent, remaining, period end).
pub(super) fn standing(tx: &mut dyn Tx, b: &Budget, now: i64) -> Result<(i64, i64, Option<i64>)> {
    let (start, end) = b.period.bounds(now);
    let spent = tx.spent_since(&b.gid, &b.scope, &b.currency, start)?;
    Ok((spent, (b.limit - spent).max(0), end))
}

fn view(tx: &mut dyn Tx, b: &Budget, now: i64) -> Result<BudgetView> {
    let (spent, remaining, end) = standing(tx, b, now)?;
    Ok(BudgetView {
        scope: b.scope.clone(),
        limit: format_amount(b.limit, &b.currency),
        currency: b.currency.clone(),
        period: b.period,
        spent: format_amount(spent, &b.currency),
        remaining: format_amount(remaining, &b.currency),
        period_ends_at: end,
    })
}

/// A grant's budgets as the owner sees them.
pub fn budget_views(tx: &mut dyn Tx, gid: &str, now: i64) -> Result<Vec<BudgetView>> {
    let list = tx.budgets_of(gid)?;
    list.iter().map(|b| view(tx, b, now)).collect()
}

/// Record a budget and its audit record (in the caller's transaction).
pub fn put_budget(tx: &mut dyn Tx, owner: &str, b: &Budget, now: i64) -> Result<()> {
    tx.budget_put(b)?;
    tx.audit_append(
        now,
        owner,
        "budget_set",
        &json!({"gid": b.gid, "scope": b.scope, "limit": format_amount(b.limit, &b.currency),
                "currency": b.currency, "period": b.period})
        .to_string(),
    )?;
    Ok(())
}

/// The answer for a spend record at `now`.
fn answer(tx: &mut dyn Tx, s: &SpendRec, now: i64) -> Result<SpendResponse> {
    let budget = tx
        .budgets_of(&s.gid)?
        .into_iter()
        .find(|b| b.scope == s.scope);
    let mut out = SpendResponse {
        grant_id: s.gid.clone(),
        scope: s.scope.clone(),
        amount: format_amount(s.amount, &s.currency),
        currency: s.currency.clone(),
        idempotency_key: s.key.clone(),
        refunded: s.refunded_at.is_some(),
        limit: None,
        remaining: None,
        period: None,
        period_ends_at: None,
    };
    if let Some(b) = budget.filter(|b| b.currency == s.currency) {
        let (_, remaining, end) = standing(tx, &b, now)?;
        out.limit = Some(format_amount(b.limit, &b.currency));
        out.remaining = Some(format_amount(remaining, &b.currency));
        out.period = Some(b.period);
        out.period_ends_at = end;
    }
    Ok(out)
}

fn to_json(v: &SpendResponse) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Server(format!("encoding failed: {e}")))
}

/// The spend, checked and recorded in one transaction.
fn spend_tx(
    tx: &mut dyn Tx,
    rs: &Resource,
    req: &SpendRequest,
    prev: Option<SpendRec>,
    amount: i64,
    now: i64,
) -> Result<SpendResponse> {
    if let Some(prev) = prev {
        // The same request again gets the same answer; another request under
        // a used key is a caller's bug, refused rather than guessed at.
        if prev.gid != req.grant_id
            || prev.scope != req.scope
            || prev.amount != amount
            || prev.currency != req.currency
        {
            return Err(Error::InvalidRequest(
                "this idempotency key was used for another spend".into(),
            ));
        }
        return serde_json::from_str(&prev.answer)
            .map_err(|e| Error::Server(format!("stored answer unreadable: {e}")));
    }
    let unknown = || Error::InvalidGrant("no such token of this grant for this resource".into());
    let token = tx.token_get(&req.token_id)?.ok_or_else(unknown)?;
    if token.kind != TokenKind::Access
        || token.gid != req.grant_id
        || token.aud.as_deref() != Some(rs.audience.as_str())
        || (token.owner != rs.owner && !rs.shared)
    {
        return Err(unknown());
    }
    let g = tx.grant_get(&req.grant_id)?.ok_or_else(unknown)?;
    if token.status == TokenStatus::Revoked || !grant_live(&g, now) {
        return Err(Error::InvalidGrant(
            if g.status == GrantStatus::Revoked || token.status == TokenStatus::Revoked {
                "the grant or token was revoked"
            } else {
                "the grant has expired"
            }
            .into(),
        ));
    }
    let decimal = Decimal::new(
        amount,
        protonpass_agent::budget::currency_exponent(&req.currency)?,
    );
    ScopeSet::parse(&token.scope)?.require_amount(&req.scope, decimal)?;
    // A step-up's one-time token spends once, within the approved payment.
    // When the owner approved that exact payment the budget does not stop it
    // (it is still recorded against the budget); one approved by the grant's
    // policy ("automatic while the budget lasts") stays within the budget.
    let owner_approved = super::stepup::redeem_one_time(
        tx,
        &token.jti,
        super::stepup::Redeem::Spend(&req.scope, amount, &req.currency),
        &rs.client_id,
        now,
    )? == Some(true);
    let budget = tx
        .budgets_of(&g.gid)?
        .into_iter()
        .find(|b| b.scope == req.scope);
    // What remains is read once: the check and the answer use the same figure.
    let mut left = None;
    if let Some(b) = &budget {
        if b.currency != req.currency {
            return Err(Error::InvalidRequest(format!(
                "the budget of {} is in {}",
                b.scope, b.currency
            )));
        }
        let (_, remaining, end) = standing(tx, b, now)?;
        if amount > remaining && !owner_approved {
            return Err(Error::BudgetExceeded(format!(
                "{} {} of {} would go over the {} budget: {} remain",
                format_amount(amount, &b.currency),
                b.currency,
                b.scope,
                b.period,
                format_amount(remaining, &b.currency)
            )));
        }
        left = Some((b, (remaining - amount).max(0), end));
    }
    let mut rec = SpendRec {
        resource: rs.client_id.clone(),
        key: req.idempotency_key.clone(),
        gid: g.gid.clone(),
        scope: req.scope.clone(),
        amount,
        currency: req.currency.clone(),
        at: now,
        refunded_at: None,
        answer: String::new(),
    };
    let out = SpendResponse {
        grant_id: rec.gid.clone(),
        scope: rec.scope.clone(),
        amount: format_amount(amount, &rec.currency),
        currency: rec.currency.clone(),
        idempotency_key: rec.key.clone(),
        refunded: false,
        limit: left.map(|(b, _, _)| format_amount(b.limit, &b.currency)),
        remaining: left.map(|(b, r, _)| format_amount(r, &b.currency)),
        period: left.map(|(b, _, _)| b.period),
        period_ends_at: left.and_then(|(_, _, e)| e),
    };
    rec.answer = to_json(&out)?;
    let since = left.map(|(b, _, _)| b.period.bounds(now).0);
    tx.spend_add(&rec, since)?;
    tx.audit_append(
        now,
        &g.owner,
        "spend",
        &json!({"resource": rs.client_id, "gid": g.gid, "agent": g.agent, "jti": token.jti,
                "scope": rec.scope, "amount": out.amount, "currency": rec.currency,
                "key": rec.key, "remaining": out.remaining})
        .to_string(),
    )?;
    Ok(out)
}

impl Broker {
    /// `grant budget`: set or replace the budget of one scope of an owner's grant.
    pub async fn budget_set(&self, owner: &str, gid: &str, spec: BudgetSpec) -> Result<BudgetView> {
        let now = self.clock.now();
        let (owner, gid) = (owner.to_owned(), gid.to_owned());
        store::write(&self.store, move |tx| {
            let g = owner_grant(tx, &owner, &gid, true)?;
            let b = spec.to_budget(&g, now)?;
            put_budget(tx, &owner, &b, now)?;
            view(tx, &b, now)
        })
        .await
    }

    /// An owner's grant with its budgets (`grant show`).
    pub async fn grant_show(&self, owner: &str, gid: &str) -> Result<(Grant, Vec<BudgetView>)> {
        let now = self.clock.now();
        let (owner, gid) = (owner.to_owned(), gid.to_owned());
        store::read(&self.store, move |tx| {
            let g = owner_grant(tx, &owner, &gid, false)?;
            let views = budget_views(tx, &g.gid, now)?;
            Ok((g, views))
        })
        .await
    }

    /// `POST /budget/spend` by the resource server these credentials name,
    /// authenticated in the spend's own transaction.
    pub async fn spend(&self, c: ClientCreds, req: SpendRequest) -> Result<SpendResponse> {
        self.spend_inner(Payer::Creds(c), req).await.map(|(r, _)| r)
    }

    /// A spend for a call the broker itself forwards (the gateway): also
    /// whether this call made it (`false`: a retry under the same key, which
    /// spends nothing and must not be given back). As for every spend, a key
    /// whose spend was given back is refused: a call that did not go through
    /// cannot be retried under it without paying.
    pub async fn spend_once(
        &self,
        rs: &Resource,
        req: SpendRequest,
    ) -> Result<(SpendResponse, bool)> {
        self.spend_inner(Payer::Known(rs.clone()), req).await
    }

    async fn spend_inner(&self, payer: Payer, req: SpendRequest) -> Result<(SpendResponse, bool)> {
        let now = self.clock.now();
        let amount = match spend_checks(&req) {
            Ok(a) => a,
            Err(e) => {
                self.check_payer(&payer, "spend").await?;
                return Err(e);
            }
        };
        let owner = Arc::new(OnceLock::new());
        let (req2, payer2, owner2) = (req.clone(), payer.clone(), owner.clone());
        let r = store::write(&self.store, move |tx| {
            let rs = payer2.resolve(tx)?;
            let _ = owner2.set(rs.owner.clone());
            let prev = tx.spend_get(&rs.client_id, &req2.idempotency_key)?;
            // A spend given back stays spent under its key: answering the
            // first time's answer again would let the caller deliver unpaid.
            if prev.as_ref().is_some_and(|p| p.refunded_at.is_some()) {
                return Err(Error::InvalidRequest(
                    "the spend under this idempotency key was given back: a new call needs a new key"
                        .into(),
                ));
            }
            let fresh = prev.is_none();
            spend_tx(tx, &rs, &req2, prev, amount, now).map(|r| (r, fresh))
        })
        .await;
        if let Err(e) = &r {
            let owner = owner.get().map_or("-", String::as_str);
            self.audit_refused(&payer, owner, "spend", e, || {
                json!({"gid": req.grant_id, "scope": req.scope, "amount": req.amount,
                       "currency": req.currency, "key": req.idempotency_key})
            });
        }
        r
    }

    /// For a request refused before its transaction: credentials that fail
    /// are what the caller hears first, as for any authenticated endpoint.
    async fn check_payer(&self, payer: &Payer, what: &str) -> Result<()> {
        if let Payer::Creds(c) = payer
            && let Err(e) = self.authenticate_resource(c).await
        {
            self.audit_refused(payer, "-", what, &e, || json!({}));
            return Err(e);
        }
        Ok(())
    }

    /// Audit a refused spend or refund; a caller whose credentials failed is
    /// recorded as `resource_caller` records one, without owner or detail.
    fn audit_refused(
        &self,
        payer: &Payer,
        owner: &str,
        what: &str,
        e: &Error,
        detail: impl FnOnce() -> Value,
    ) {
        if matches!(e, Error::TemporarilyUnavailable(_)) {
            return;
        }
        let client_id = match payer {
            Payer::Creds(_) if matches!(e, Error::InvalidClient(_)) => {
                self.audit_rejected("-", what, e, json!({}));
                return;
            }
            Payer::Creds(c) => &c.id,
            Payer::Known(rs) => &rs.client_id,
        };
        let mut d = detail();
        if let Value::Object(m) = &mut d {
            m.insert("resource".into(), client_id.as_str().into());
        }
        self.audit_rejected(owner, what, e, d);
    }

    /// `POST /budget/refund`: give back a spend of the resource server these
    /// credentials name, by its idempotency key. Refunding twice answers the
    /// same; a revoked grant can still be refunded.
    pub async fn refund(&self, c: ClientCreds, req: RefundRequest) -> Result<SpendResponse> {
        self.refund_by(Payer::Creds(c), req).await
    }

    /// [`Broker::refund`] for a resource server already known (the gateway).
    pub async fn refund_known(&self, rs: &Resource, req: RefundRequest) -> Result<SpendResponse> {
        self.refund_by(Payer::Known(rs.clone()), req).await
    }

    async fn refund_by(&self, payer: Payer, req: RefundRequest) -> Result<SpendResponse> {
        let now = self.clock.now();
        if let Err(e) = check_idempotency_key(&req.idempotency_key) {
            self.check_payer(&payer, "refund").await?;
            return Err(e);
        }
        let payer2 = payer.clone();
        let r = store::write(&self.store, move |tx| {
            let rs = payer2.resolve(tx)?;
            let rec = tx
                .spend_get(&rs.client_id, &req.idempotency_key)?
                .filter(|s| s.gid == req.grant_id)
                .ok_or_else(|| {
                    Error::InvalidRequest("no spend of this grant under this key".into())
                })?;
            let fresh = rec.refunded_at.is_none();
            if fresh {
                tx.spend_refund(&rs.client_id, &req.idempotency_key, now)?;
            }
            let rec = SpendRec {
                refunded_at: rec.refunded_at.or(Some(now)),
                ..rec
            };
            let out = answer(tx, &rec, now)?;
            if fresh {
                let owner = tx.grant_get(&rec.gid)?.map(|g| g.owner).unwrap_or_default();
                tx.audit_append(
                    now,
                    &owner,
                    "refund",
                    &json!({"resource": rs.client_id, "gid": rec.gid, "scope": rec.scope,
                            "amount": out.amount, "currency": rec.currency, "key": rec.key,
                            "remaining": out.remaining})
                    .to_string(),
                )?;
            }
            Ok(out)
        })
        .await;
        if let Err(e) = &r
            && matches!(payer, Payer::Creds(_))
            && matches!(e, Error::InvalidClient(_))
        {
            self.audit_refused(&payer, "-", "refund", e, || json!({}));
        }
        r
    }
}

/// Who spends or refunds: a resource server the broker already holds (the
/// gateway's upstream), or the credentials of one, checked in the spend's
/// own transaction.
#[derive(Clone)]
enum Payer {
    Known(Resource),
    Creds(ClientCreds),
}

impl Payer {
    fn resolve(&self, tx: &mut dyn Tx) -> Result<Resource> {
        match self {
            Payer::Known(rs) => Ok(rs.clone()),
            Payer::Creds(c) => resource_by_creds(tx, c),
        }
    }
}

/// The checks of a spend request that need no store; its amount in minor units.
fn spend_checks(req: &SpendRequest) -> Result<i64> {
    check_idempotency_key(&req.idempotency_key)?;
    budget_scope(&req.scope)?;
    if req.grant_id.len() > 128 || req.token_id.len() > 256 {
        return Err(Error::InvalidRequest(
            "grant_id or token_id is too long".into(),
        ));
    }
    let amount = parse_amount(&req.amount, &req.currency)?;
    if amount == 0 {
        return Err(Error::InvalidRequest("a spend is more than zero".into()));
    }
    Ok(amount)
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
