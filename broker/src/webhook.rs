//! The owner's step-up webhook (`spec/14-step-up.md`, "Owner notifications"):
//! when a step-up request waits for the owner, the broker POSTs a JSON event
//! to the owner's URL, signed as Standard Webhooks sign (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA-256>`), in
//! the background, retried with exponential backoff a bounded number of
//! times. The secret is shown once when the webhook is set and kept sealed
//! by the vault key. Requests go to public addresses only unless the owner
//! allowed private ones (a home server, tests), redirects are not followed
//! and no proxy is taken from the environment.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac as _};
use protonpass_agent::{Error, Result, random_id};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::gateway::forward::{PublicResolver, is_public};
use crate::gateway::vault::Vault;
use crate::service::Broker;
use crate::service::stepup::StepUpView;
use crate::store;

/// Deliveries of one event, at most (the first and its retries).
pub const MAX_ATTEMPTS: u32 = 5;
/// Wait before the first retry; doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Time for one delivery.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Prefix of the secret as shown (Standard Webhooks).
const SECRET_PREFIX: &str = "whsec_";
/// The name the secret is sealed under (the vault binds it to the owner too).
const SEAL_NAME: &str = "\0stepup-webhook";

/// The stored form (the owner's record): the secret sealed, base64.
#[derive(Serialize, Deserialize)]
struct Stored {
    url: String,
    allow_private: bool,
    sealed: String,
    created_at: i64,
}

/// A webhook as `owner webhook show` prints it (no secret).
#[derive(Debug, Clone, Serialize)]
pub struct WebhookInfo {
    /// Where events go.
    pub url: String,
    /// Whether private and loopback addresses are allowed.
    pub allow_private_network: bool,
    /// When it was set.
    pub created_at: i64,
}

/// An https URL without user or fragment; http and private or loopback
/// literal addresses only with `allow_private`.
fn check_url(s: &str, allow_private: bool) -> Result<url::Url> {
    let u = url::Url::parse(s).map_err(|e| Error::InvalidRequest(format!("webhook URL: {e}")))?;
    let ok = u.scheme() == "https" || (u.scheme() == "http" && allow_private);
    if !ok || !u.has_host() || !u.username().is_empty() || u.fragment().is_some() {
        return Err(Error::InvalidRequest(
            "the webhook URL must be https, without user or fragment (http only with --allow-private-network)"
                .into(),
        ));
    }
    let literal = match u.host() {
        Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
        _ => None,
    };
    if literal.is_some_and(|ip| !is_public(ip)) && !allow_private {
        return Err(Error::InvalidRequest(
            "the webhook URL is a private or loopback address: add --allow-private-network if you mean it"
                .into(),
        ));
    }
    Ok(u)
}

/// Set the owner's webhook; returns the new signing secret (shown once).
pub async fn set(b: &Broker, owner: &str, url: &str, allow_private: bool) -> Result<String> {
    let u = check_url(url, allow_private)?;
    let mut raw = Zeroizing::new([0u8; 32]);
    b.rng.fill(raw.as_mut())?;
    let vault = Vault::load(&b.cfg.data, b.rng.as_ref())?;
    let sealed = vault.seal(owner, SEAL_NAME, raw.as_ref(), b.rng.as_ref())?;
    let doc = serde_json::to_string(&Stored {
        url: u.to_string(),
        allow_private,
        sealed: STANDARD.encode(sealed),
        created_at: b.clock.now(),
    })
    .map_err(|e| Error::Server(format!("webhook: {e}")))?;
    let o = owner.to_owned();
    let now = b.clock.now();
    let detail = json!({"url": u.as_str(), "allow_private_network": allow_private}).to_string();
    let known = store::write(&b.store, move |tx| {
        let known = tx.owner_webhook_set(&o, Some(&doc))?;
        if known {
            tx.audit_append(now, &o, "webhook_set", &detail)?;
        }
        Ok(known)
    })
    .await?;
    if !known {
        return Err(Error::InvalidRequest(format!(
            "no owner named {owner:?} (`owner list` shows them)"
        )));
    }
    Ok(format!("{SECRET_PREFIX}{}", STANDARD.encode(raw.as_ref())))
}

/// The owner's webhook, if set.
pub async fn show(b: &Broker, owner: &str) -> Result<Option<WebhookInfo>> {
    Ok(load(b, owner).await?.map(|s| WebhookInfo {
        url: s.url,
        allow_private_network: s.allow_private,
        created_at: s.created_at,
    }))
}

/// Remove the owner's webhook; whether there was one.
pub async fn remove(b: &Broker, owner: &str) -> Result<bool> {
    let o = owner.to_owned();
    let now = b.clock.now();
    store::write(&b.store, move |tx| {
        let had = tx.owner_webhook(&o)?.is_some();
        if had {
            tx.owner_webhook_set(&o, None)?;
            tx.audit_append(now, &o, "webhook_remove", "{}")?;
        }
        Ok(had)
    })
    .await
}

async fn load(b: &Broker, owner: &str) -> Result<Option<Stored>> {
    let o = owner.to_owned();
    let raw = store::read(&b.store, move |tx| tx.owner_webhook(&o)).await?;
    raw.map(|r| {
        serde_json::from_str::<Stored>(&r)
            .map_err(|_| Error::Storage("the owner's webhook record is not readable".into()))
    })
    .transpose()
}

/// The Standard Webhooks signature of `body`: `v1,` + base64 of
/// HMAC-SHA-256(secret, `{id}.{timestamp}.{body}`).
pub fn signature(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut m = match <Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    m.update(id.as_bytes());
    m.update(b".");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    format!("v1,{}", STANDARD.encode(m.finalize().into_bytes()))
}

/// Notify the owner of a step-up request that waits for it, in the
/// background: never delays nor fails the agent's request.
pub fn notify_pending(b: Arc<Broker>, owner: String, v: StepUpView) {
    tokio::spawn(async move {
        if let Err(e) = deliver(&b, &owner, v).await {
            tracing::warn!(owner = %owner, error = %e.description(), "step-up webhook not delivered");
        }
    });
}

async fn deliver(b: &Broker, owner: &str, v: StepUpView) -> Result<()> {
    let Some(s) = load(b, owner).await? else {
        return Ok(());
    };
    let sealed = STANDARD
        .decode(&s.sealed)
        .map_err(|_| Error::Storage("the owner's webhook record is not readable".into()))?;
    let vault = Vault::load(&b.cfg.data, b.rng.as_ref())?;
    let secret = vault.open(owner, SEAL_NAME, &sealed).map_err(|_| {
        Error::Storage(
            "the webhook's secret does not open with this vault key: set the webhook again".into(),
        )
    })?;
    let url = check_url(&s.url, s.allow_private)?;
    let mut c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(TIMEOUT)
        .timeout(TIMEOUT);
    if !s.allow_private {
        c = c.dns_resolver(Arc::new(PublicResolver));
    }
    let client = c
        .build()
        .map_err(|_| Error::Server("cannot build the webhook HTTP client".into()))?;
    let body = event(b, &v).to_string().into_bytes();
    let id = format!("msg_{}", random_id(b.rng.as_ref(), 16)?);
    let mut wait = FIRST_BACKOFF;
    for attempt in 1..=MAX_ATTEMPTS {
        // Each attempt is signed anew: receivers refuse old timestamps.
        let ts = b.clock.now();
        let r = client
            .post(url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature(&secret, &id, ts, &body))
            .body(body.clone())
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => {
                tracing::info!(owner = %owner, attempt, status = r.status().as_u16(), "step-up webhook refused");
            }
            Err(_) => {
                tracing::info!(owner = %owner, attempt, "step-up webhook unreachable");
            }
        }
        if attempt < MAX_ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    Err(Error::TemporarilyUnavailable(format!(
        "no success after {MAX_ATTEMPTS} attempts"
    )))
}

/// The event's body.
fn event(b: &Broker, v: &StepUpView) -> Value {
    let payments: Vec<Value> = v
        .authorization_details
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|d| d["type"] == "payment")
                .map(|d| json!({"amount": d["amount"], "currency": d["currency"], "payee": d["payee"]}))
                .collect()
        })
        .unwrap_or_default();
    let first = payments.first().cloned().unwrap_or(Value::Null);
    json!({
        "type": "stepup.pending",
        "timestamp": b.clock.now(),
        "data": {
            "id": v.id,
            "agent": v.agent,
            "grant_id": v.grant_id,
            "audience": v.audience,
            "amount": first["amount"],
            "currency": first["currency"],
            "payee": first["payee"],
            "payments": payments,
            "authorization_details": v.authorization_details,
            "binding_message": v.binding_message,
            "expires_at": v.expires_at,
            "approve_url": format!("{}/stepup", b.issuer),
        }
    })
}
