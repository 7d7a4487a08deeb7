//! OAuth 2.0 connections of upstreams (specification: `spec/11-templates.md`
//! section 11.4): the owner connects their account at the provider with the
//! authorization code grant, PKCE S256 and a single-use `state` bound to the
//! owner and the upstream; the callback is served by the broker on its own
//! origin (`{issuer}/upstreams/callback`). The tokens are sealed in the vault;
//! the access token is refreshed before it expires, once per connection in
//! this process however many agent requests need it at the same time; a
//! refused refresh marks the connection broken until the owner reconnects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use protonpass_agent::{Error, Random, Result, b64};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::oauth_client::{Failed, Tokens, http_client, revoke, token_request, verifier_name};
use super::rules::{OAuth2, Upstream};
use super::upstreams::{Ctx, parse_rules};
use super::vault::Vault;
use crate::audit::secret_hash;
use crate::service::Broker;
use crate::store::{self, ConnectionRec, PendingAuth, UpstreamRec};

/// How long an authorization may take, seconds.
pub const PENDING_TTL: i64 = 600;
/// An access token this close to its expiry is refreshed first, seconds.
pub const REFRESH_SKEW: i64 = 30;
/// The callback's path on the broker's origin.
pub const CALLBACK_PATH: &str = "/upstreams/callback";

/// The redirect URI registered at the provider: `{issuer}/upstreams/callback`.
pub fn redirect_uri(issuer: &str) -> String {
    format!("{issuer}{CALLBACK_PATH}")
}

fn not_found(name: &str) -> Error {
    Error::InvalidRequest(format!("you have no upstream named {name:?}"))
}

/// The owner's OAuth upstream `name`: its record, rules and OAuth client.
pub fn oauth_upstream(
    store: &Arc<dyn store::Store>,
    owner: &str,
    name: &str,
) -> Result<(UpstreamRec, Upstream, OAuth2)> {
    let rec = store::read_blocking(store, |tx| tx.upstream_get(name))?
        .filter(|r| r.owner == owner)
        .ok_or_else(|| not_found(name))?;
    let up = parse_rules(&rec.rules)?;
    let o = up.oauth2.clone().ok_or_else(|| {
        Error::InvalidRequest(format!(
            "upstream {name} uses a static secret, not OAuth: nothing to connect"
        ))
    })?;
    Ok((rec, up, o))
}

/// An authorization the owner is to complete in a browser.
#[derive(Clone, Serialize)]
pub struct Started {
    /// The upstream.
    pub name: String,
    /// Where to send the owner's browser.
    pub authorize_url: String,
    /// The redirect URI the provider must know.
    pub redirect_uri: String,
    /// When the authorization stops being accepted.
    pub expires_at: i64,
}

impl std::fmt::Debug for Started {
    /// Without the URL: its `state` is a single-use secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("name", &self.name)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Start connecting upstream `name`: a fresh `state` and PKCE verifier,
/// remembered (hashed, sealed) for [`PENDING_TTL`] seconds.
pub fn start(
    c: &Ctx<'_>,
    vault: &Vault,
    rng: &dyn Random,
    name: &str,
    by: &str,
    browser: Option<String>,
) -> Result<Started> {
    let (_, _, o) = oauth_upstream(c.store, c.owner, name)?;
    let mut raw = Zeroizing::new([0u8; 32]);
    rng.fill(raw.as_mut())?;
    let state = Zeroizing::new(b64::encode(raw.as_ref()));
    rng.fill(raw.as_mut())?;
    // 43 characters of base64url: an RFC 7636 verifier.
    let verifier = Zeroizing::new(b64::encode(raw.as_ref()));
    let challenge = b64::encode(Sha256::digest(verifier.as_bytes()));
    let redirect = redirect_uri(c.issuer);
    let mut url = o.authorization_url.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &o.client_id)
            .append_pair("redirect_uri", &redirect);
        if !o.scopes.is_empty() {
            q.append_pair("scope", &o.scopes.join(" "));
        }
        q.append_pair("state", &state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        for (k, v) in &o.authorize_params {
            q.append_pair(k, v);
        }
    }
    let pending = PendingAuth {
        state_hash: secret_hash(&state),
        owner: c.owner.to_owned(),
        upstream: name.to_owned(),
        sealed: vault.seal(c.owner, &verifier_name(name), verifier.as_bytes(), rng)?,
        created_at: c.now,
        expires_at: c.now + PENDING_TTL,
        browser,
    };
    let (owner, now) = (c.owner.to_owned(), c.now);
    let detail = json!({"upstream": name, "by": by}).to_string();
    store::write_blocking(c.store, move |tx| {
        tx.oauth_pending_put(&pending)?;
        tx.audit_append(now, &owner, "upstream_connect_start", &detail)?;
        Ok(())
    })?;
    Ok(Started {
        name: name.to_owned(),
        authorize_url: url.into(),
        redirect_uri: redirect,
        expires_at: c.now + PENDING_TTL,
    })
}

/// A connection as the owner sees it (never a token).
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionView {
    /// The upstream.
    pub name: String,
    /// `connected`, `broken` or `not_connected`.
    pub status: String,
    /// The connection's id, as in the audit records of the calls it served.
    pub connection: Option<String>,
    /// Connected at.
    pub connected_at: Option<i64>,
    /// Last refresh or status change.
    pub updated_at: Option<i64>,
}

/// The connection of the owner's upstream `name`.
pub fn status(store: &Arc<dyn store::Store>, owner: &str, name: &str) -> Result<ConnectionView> {
    oauth_upstream(store, owner, name)?;
    let n = name.to_owned();
    let c = store::read_blocking(store, |tx| tx.connection_get(&n))?.filter(|c| c.owner == owner);
    Ok(ConnectionView {
        name: name.to_owned(),
        status: c
            .as_ref()
            .map_or("not_connected".into(), |c| c.status.clone()),
        connection: c.as_ref().map(|c| c.id.clone()),
        connected_at: c.as_ref().map(|c| c.connected_at),
        updated_at: c.as_ref().map(|c| c.updated_at),
    })
}

/// Disconnect: revoke at the provider (RFC 7009, when it has a revocation
/// endpoint) and forget the tokens whatever the provider answers. Returns
/// whether the provider confirmed the revocation.
pub async fn disconnect(
    b: &Broker,
    vault: &Vault,
    owner: &str,
    name: &str,
    by: &str,
) -> Result<bool> {
    let (store, o2, n2) = (b.store.clone(), owner.to_owned(), name.to_owned());
    let (rec, up, o) = tokio::task::spawn_blocking(move || oauth_upstream(&store, &o2, &n2))
        .await
        .map_err(|_| Error::TemporarilyUnavailable("busy".into()))??;
    let n = name.to_owned();
    let conn = store::read(&b.store, move |tx| tx.connection_get(&n))
        .await?
        .filter(|c| c.owner == owner)
        .ok_or_else(|| Error::InvalidRequest(format!("upstream {name} is not connected")))?;
    let mut revoked = false;
    if let Ok(tokens) = Tokens::open(vault, owner, name, &conn.sealed) {
        let secret = vault.open(owner, name, &rec.sealed)?;
        let client = http_client(up.allow_private_network)?;
        revoked = revoke(&client, &o, &secret, &tokens).await;
    }
    let (owner, now, name, id) = (owner.to_owned(), b.clock.now(), name.to_owned(), conn.id);
    let detail =
        json!({"upstream": name, "connection": id, "revoked": revoked, "by": by}).to_string();
    store::write(&b.store, move |tx| {
        tx.connection_delete(&name)?;
        tx.audit_append(now, &owner, "upstream_disconnect", &detail)?;
        Ok(())
    })
    .await?;
    Ok(revoked)
}

/// Why no access token could be had for a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoToken {
    /// The owner has not connected the upstream (or disconnected it).
    NotConnected,
    /// The provider refused a refresh: the owner must reconnect.
    Broken(String),
    /// The provider's token endpoint could not be reached.
    Unreachable,
    /// The store or the vault failed.
    Unavailable,
}

/// One lock per connection: refreshes of one connection in this process
/// happen one at a time, and the ones waiting reuse the fresh token.
#[derive(Debug, Default)]
pub struct Flights(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl Flights {
    fn lock_for(&self, upstream: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = match self.0.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if m.len() > 4096 {
            m.retain(|_, l| Arc::strong_count(l) > 1);
        }
        m.entry(upstream.to_owned()).or_default().clone()
    }
}

fn fresh(c: &ConnectionRec, now: i64) -> bool {
    c.access_expires_at > now + REFRESH_SKEW
}

async fn connection(b: &Broker, rec: &UpstreamRec) -> std::result::Result<ConnectionRec, NoToken> {
    let n = rec.name.clone();
    let c = store::read(&b.store, move |tx| tx.connection_get(&n))
        .await
        .map_err(|_| NoToken::Unavailable)?
        .filter(|c| c.owner == rec.owner)
        .ok_or(NoToken::NotConnected)?;
    if c.status != "connected" {
        return Err(NoToken::Broken(c.id));
    }
    Ok(c)
}

/// The access token for a call to OAuth upstream `rec`, refreshed first when
/// it is about to expire; with the id of the connection that served it.
pub async fn access_token(
    b: &Broker,
    vault: &Vault,
    client: &reqwest::Client,
    flights: &Flights,
    rec: &UpstreamRec,
    o: &OAuth2,
) -> std::result::Result<(Zeroizing<Vec<u8>>, String), NoToken> {
    let unavailable = |_| NoToken::Unavailable;
    let c = connection(b, rec).await?;
    if fresh(&c, b.clock.now()) {
        let t = Tokens::open(vault, &rec.owner, &rec.name, &c.sealed).map_err(unavailable)?;
        return Ok((Zeroizing::new(t.access_token.as_bytes().to_vec()), c.id));
    }
    let lock = flights.lock_for(&rec.name);
    let _held = lock.lock().await;
    // Another request may have refreshed while this one waited.
    let c = connection(b, rec).await?;
    let now = b.clock.now();
    let tokens = Tokens::open(vault, &rec.owner, &rec.name, &c.sealed).map_err(unavailable)?;
    if fresh(&c, now) {
        return Ok((
            Zeroizing::new(tokens.access_token.as_bytes().to_vec()),
            c.id,
        ));
    }
    let Some(refresh) = tokens.refresh_token.as_deref() else {
        return Err(mark_broken(b, &c, "no_refresh_token").await);
    };
    let secret = vault
        .open(&rec.owner, &rec.name, &rec.sealed)
        .map_err(unavailable)?;
    let granted = match token_request(
        client,
        o,
        &secret,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await
    {
        Ok(g) => g,
        Err(Failed::Refused(code)) => return Err(mark_broken(b, &c, &code).await),
        Err(Failed::Unreachable) => return Err(NoToken::Unreachable),
    };
    // A provider that does not rotate keeps the refresh token as it was.
    let next = Tokens {
        access_token: granted.tokens.access_token.clone(),
        refresh_token: granted
            .tokens
            .refresh_token
            .clone()
            .or_else(|| tokens.refresh_token.clone()),
    };
    let sealed = next
        .seal(vault, b.rng.as_ref(), &rec.owner, &rec.name)
        .map_err(unavailable)?;
    let mut updated = c.clone();
    updated.sealed = sealed;
    updated.access_expires_at = now + granted.expires_in;
    updated.updated_at = now;
    let (u2, id) = (updated.clone(), c.id.clone());
    // Stored in one transaction, and only if the connection is still this one
    // (not disconnected or reconnected meanwhile).
    let stored = store::write(&b.store, move |tx| {
        match tx.connection_get(&u2.upstream)? {
            Some(cur) if cur.id == id && cur.status == "connected" => {}
            _ => return Ok(false),
        }
        tx.connection_put(&u2)?;
        Ok(true)
    })
    .await
    .map_err(unavailable)?;
    if !stored {
        return Err(NoToken::NotConnected);
    }
    Ok((Zeroizing::new(next.access_token.as_bytes().to_vec()), c.id))
}

async fn mark_broken(b: &Broker, c: &ConnectionRec, why: &str) -> NoToken {
    let now = b.clock.now();
    let detail = json!({"upstream": c.upstream, "connection": c.id, "error": why}).to_string();
    let c2 = c.clone();
    let r = store::write(&b.store, move |tx| {
        match tx.connection_get(&c2.upstream)? {
            Some(cur) if cur.id == c2.id && cur.status == "connected" => {}
            _ => return Ok(()),
        }
        let mut broken = c2.clone();
        broken.status = "broken".into();
        broken.updated_at = now;
        tx.connection_put(&broken)?;
        tx.audit_append(now, &c2.owner, "upstream_connection_broken", &detail)?;
        Ok(())
    })
    .await;
    if r.is_err() {
        return NoToken::Unavailable;
    }
    tracing::warn!(upstream = %c.upstream, connection = %c.id, error = why, "the provider refused a refresh: connection broken");
    NoToken::Broken(c.id.clone())
}
