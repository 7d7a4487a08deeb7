//! Third-party OAuth clients (MCP clients that do not use this project's SDK):
//! RFC 7591 dynamic client registration, the authorization request the owner
//! approves on the dashboard's consent page, and the token endpoint's
//! `authorization_code` grant with PKCE (RFC 7636, S256 only) and a resource
//! indicator (RFC 8707). See `spec/15-authorization-code.md`.
//!
//! A code is single-use, lives [`CODE_TTL`] seconds, and is bound to its
//! client, its exact redirect URI, its PKCE challenge and its resource; the
//! token's audience is exactly that resource. A code presented twice revokes
//! the grant the first presentation made (RFC 6749 section 4.1.2). The
//! tokens are DPoP-bound like every other token of this broker.

use protonpass_agent::wire::TokenResponse;
use protonpass_agent::{Error, Result, ScopeSet, VerifiedProof, random_id};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::issue::{Mint, negotiate};
use super::token::{eq_ct, first_tokens};
use super::{Broker, audience_status, catalog, revoke_grant};
use crate::audit::secret_hash;
use crate::config::{MAX_TTL, MIN_GRANT_TTL};
use crate::model::{AuthCode, ClientRec, Grant, GrantStatus};
use crate::protocol::client_metadata::{ClientMetadata, MAX_URI, is_document_id};
use crate::protocol::token_request::Secret;
use crate::store;

/// Lifetime of an authorization code, seconds.
pub const CODE_TTL: i64 = 60;
/// Prefix of authorization codes.
pub const CODE_PREFIX: &str = "ac_";
/// Prefix of the client ids the broker assigns at registration.
pub const CLIENT_PREFIX: &str = "mcp_";
/// Registrations accepted from one source per hour.
pub const REGISTRATIONS_PER_SOURCE: i64 = 20;
/// Registrations accepted from everyone per hour (bounds the table).
pub const REGISTRATIONS_PER_HOUR: i64 = 1000;
/// Longest `state`, bytes.
const MAX_STATE: usize = 512;
/// The `origin` of grants made by this flow.
pub const ORIGIN: &str = "authorization_code";
/// Longest life of a bearer access token (a client without DPoP), seconds.
pub const BEARER_TTL: i64 = 600;

/// Whether the owner of a registered resource for `aud` lets clients without
/// DPoP get bearer tokens for it (off for unregistered audiences).
pub fn bearer_allowed(tx: &mut dyn crate::store::Tx, aud: &str) -> Result<bool> {
    Ok(tx
        .resources_for_audience(aud)?
        .iter()
        .any(|r| r.accept_bearer))
}

/// Refused: a bearer token asked for a resource that takes DPoP only.
pub fn dpop_only(aud: &str) -> Error {
    Error::InvalidRequest(format!(
        "{aud} accepts only DPoP-bound tokens: send a DPoP proof (RFC 9449)"
    ))
}

/// An authorization request that passed every check needing no owner.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    /// The registered client.
    pub client: ClientRec,
    /// One of its registered redirect URIs, exactly.
    pub redirect_uri: String,
    /// The client's `state`, returned as sent.
    pub state: Option<String>,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
    /// The requested scope (the resource's whole catalog when none was named).
    pub scope: String,
    /// The resource (RFC 8707): the audience of the tokens.
    pub resource: String,
}

/// A refused authorization request.
#[derive(Debug, Clone)]
pub enum AuthorizeError {
    /// Shown to the owner, never sent to the redirect URI: the client or the
    /// redirect URI could not be trusted (RFC 6749 section 4.1.2.1).
    Page(String),
    /// Sent back to the client: the `Location` to redirect to.
    Redirect(String),
}

/// `redirect_uri` with `params` added to its query.
fn with_query(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let mut out = redirect_uri.to_owned();
    let extra = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    out.push(if redirect_uri.contains('?') { '&' } else { '?' });
    out.push_str(&extra);
    out
}

impl AuthRequest {
    /// The `Location` that answers this request with `error` (RFC 6749
    /// section 4.1.2.1, with `iss` as RFC 9207 asks).
    pub fn error_location(&self, issuer: &str, code: &str, desc: &str) -> String {
        error_location(
            &self.redirect_uri,
            self.state.as_deref(),
            issuer,
            code,
            desc,
        )
    }
}

fn error_location(
    redirect_uri: &str,
    state: Option<&str>,
    issuer: &str,
    code: &str,
    desc: &str,
) -> String {
    let mut p = vec![("error", code), ("error_description", desc)];
    if let Some(s) = state {
        p.push(("state", s));
    }
    p.push(("iss", issuer));
    with_query(redirect_uri, &p)
}

/// The S256 PKCE challenge of `verifier` (RFC 7636 section 4.2).
pub fn s256(verifier: &str) -> String {
    protonpass_agent::b64::encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether `c` is an S256 challenge: 43 base64url characters.
fn valid_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Broker {
    /// Register a public client (RFC 7591). `source` is the caller's address,
    /// limited to [`REGISTRATIONS_PER_SOURCE`] an hour.
    pub async fn register_client(
        &self,
        metadata: ClientMetadata,
        source: &str,
    ) -> std::result::Result<ClientRec, Error> {
        let now = self.clock.now();
        let rec = ClientRec {
            client_id: format!("{CLIENT_PREFIX}{}", random_id(self.rng.as_ref(), 16)?),
            metadata,
            created_at: now,
        };
        let source = source.to_owned();
        store::write(&self.store, move |tx| {
            let key = format!("register:{source}");
            if tx.attempt_sum(&key, now - 3600)? >= REGISTRATIONS_PER_SOURCE
                || tx.client_count_since(now - 3600)? >= REGISTRATIONS_PER_HOUR
            {
                return Ok(Err(Error::TemporarilyUnavailable(
                    "too many client registrations: retry in an hour".into(),
                )));
            }
            tx.attempt_add(&key, now, 1)?;
            tx.client_put(&rec)?;
            tx.audit_append(
                now,
                "-",
                "client_register",
                &json!({"client_id": rec.client_id, "client_name": rec.metadata.client_name,
                        "redirect_uris": rec.metadata.redirect_uris, "source": source})
                .to_string(),
            )?;
            Ok(Ok(rec))
        })
        .await?
    }

    /// The client named by `client_id`: one registered here (RFC 7591), or
    /// one whose `client_id` is the URL of its Client ID Metadata Document,
    /// fetched (or taken from the cache) now. The error is for the owner's
    /// eyes, never sent to the client.
    pub async fn client_of(&self, client_id: &str) -> std::result::Result<ClientRec, String> {
        let insecure = self.cfg.insecure_client_documents;
        if is_document_id(client_id, insecure) {
            let now = self.clock.now();
            return match self.client_documents.get(client_id, now, insecure).await {
                Ok(metadata) => Ok(ClientRec {
                    client_id: client_id.to_owned(),
                    metadata,
                    created_at: now,
                }),
                Err(e) => {
                    self.metrics.error(e.code());
                    Err(format!(
                        "This application's metadata document was refused: {}.",
                        e.description()
                    ))
                }
            };
        }
        let id = client_id.to_owned();
        store::read(&self.store, move |tx| tx.client_get(&id))
            .await
            .map_err(|_| "The broker cannot read its clients right now; try again.".to_owned())?
            .ok_or_else(|| "This application is not registered with this broker.".to_owned())
    }

    /// Check an authorization request's parameters (the query of
    /// `GET /oauth/authorize`, or the consent form's copy of it).
    pub async fn authorize_request(
        &self,
        pairs: &[(String, String)],
    ) -> std::result::Result<AuthRequest, AuthorizeError> {
        let one = |k: &str| -> std::result::Result<Option<&str>, ()> {
            let mut it = pairs
                .iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.as_str());
            let first = it.next();
            if it.next().is_some() {
                Err(())
            } else {
                Ok(first)
            }
        };
        let page = |m: &str| AuthorizeError::Page(m.to_owned());
        let client_id = match one("client_id") {
            Ok(Some(c)) if !c.is_empty() && c.len() <= MAX_URI => c.to_owned(),
            _ => {
                return Err(page(
                    "The request names no client (client_id), or names it twice.",
                ));
            }
        };
        let redirect_uri = match one("redirect_uri") {
            Ok(Some(r)) => r.to_owned(),
            _ => {
                return Err(page(
                    "The request names no redirect URI, or names it twice.",
                ));
            }
        };
        let client = self
            .client_of(&client_id)
            .await
            .map_err(AuthorizeError::Page)?;
        if !client
            .metadata
            .redirect_uris
            .iter()
            .any(|u| u == &redirect_uri)
        {
            return Err(page(
                "The redirect URI is not one this application registered: the request is refused, and nothing is sent to it.",
            ));
        }
        let state = match one("state") {
            Ok(s) if s.is_none_or(|s| s.len() <= MAX_STATE && !s.chars().any(char::is_control)) => {
                s.map(str::to_owned)
            }
            _ => {
                return Err(AuthorizeError::Redirect(error_location(
                    &redirect_uri,
                    None,
                    &self.issuer,
                    "invalid_request",
                    "state is sent once, at most 512 bytes",
                )));
            }
        };
        let fail_with = |code: &str, desc: &str| {
            AuthorizeError::Redirect(error_location(
                &redirect_uri,
                state.as_deref(),
                &self.issuer,
                code,
                desc,
            ))
        };
        let fail = |e: Error| {
            let text = e.to_string();
            fail_with(
                e.code(),
                text.split_once(": ").map_or(text.as_str(), |(_, m)| m),
            )
        };
        let dup = || fail(Error::InvalidRequest("a parameter is repeated".into()));
        match one("response_type").map_err(|()| dup())? {
            Some("code") => {}
            Some(_) => {
                return Err(fail_with(
                    "unsupported_response_type",
                    "only the response type code is supported",
                ));
            }
            None => {
                return Err(fail(Error::InvalidRequest(
                    "response_type is missing".into(),
                )));
            }
        }
        if one("code_challenge_method").map_err(|()| dup())? != Some("S256") {
            return Err(fail(Error::InvalidRequest(
                "PKCE is required, with code_challenge_method S256".into(),
            )));
        }
        let code_challenge = match one("code_challenge").map_err(|()| dup())? {
            Some(c) if valid_challenge(c) => c.to_owned(),
            _ => {
                return Err(fail(Error::InvalidRequest(
                    "code_challenge must be an S256 challenge (43 base64url characters)".into(),
                )));
            }
        };
        let resource = match one("resource").map_err(|()| dup())? {
            Some(r)
                if r.len() <= 512 && url::Url::parse(r).is_ok_and(|u| u.fragment().is_none()) =>
            {
                r.to_owned()
            }
            _ => {
                return Err(fail(Error::InvalidTarget(
                    "resource (RFC 8707) must name the protected resource: an absolute URI without a fragment".into(),
                )));
            }
        };
        let asked = one("scope").map_err(|()| dup())?.map(str::to_owned);
        let aud = resource.clone();
        let checked = store::read(&self.store, move |tx| {
            let scope = match asked {
                Some(s) => s,
                None => {
                    // No scope named: the resource's catalog, as MCP clients
                    // take `scopes_supported` (nothing to show otherwise).
                    let names: Vec<String> = catalog::catalogs_for(tx, &aud)?
                        .iter()
                        .flat_map(|c| c.scopes.iter().map(|e| e.name.clone()))
                        .filter(|n| protonpass_agent::Scope::parse(n).is_ok())
                        .collect();
                    names.join(" ")
                }
            };
            if ScopeSet::parse(&scope).is_ok_and(|s| s.is_empty()) || scope.is_empty() {
                return Ok(Err(Error::InvalidScope(
                    "name the scopes to ask for: the resource defines none".into(),
                )));
            }
            Ok(catalog::check(tx, std::slice::from_ref(&aud), &scope).map(|()| scope))
        })
        .await
        .map_err(|_| page("The broker cannot read its catalogs right now; try again."))?;
        let scope = checked.map_err(fail)?;
        Ok(AuthRequest {
            client,
            redirect_uri,
            state,
            code_challenge,
            scope,
            resource,
        })
    }

    /// The owner's answer on the consent page: the `Location` to send the
    /// browser to (a code, or `access_denied`). An approval the owner may not
    /// give (an audience another owner registered) is an error shown on the
    /// page, not sent to the client.
    pub async fn authorize_decide(
        &self,
        owner: &str,
        req: &AuthRequest,
        approve: bool,
        ticked: Option<String>,
        ttl: i64,
    ) -> Result<String> {
        let now = self.clock.now();
        let owner = owner.to_owned();
        let (cid, aud) = (req.client.client_id.clone(), req.resource.clone());
        if !approve {
            let (o, c, a) = (owner.clone(), cid.clone(), aud.clone());
            store::write(&self.store, move |tx| {
                tx.audit_append(
                    now,
                    &o,
                    "authorize_deny",
                    &json!({"client_id": c, "aud": a}).to_string(),
                )
                .map(|_| ())
            })
            .await?;
            return Ok(req.error_location(
                &self.issuer,
                "access_denied",
                "the owner denied the request",
            ));
        }
        if !(MIN_GRANT_TTL..=MAX_TTL).contains(&ttl) {
            return Err(Error::InvalidRequest(
                "a grant lives from 1 hour to 30 days".into(),
            ));
        }
        let scope = negotiate(&req.scope, ticked.as_deref())?;
        let code = format!("{CODE_PREFIX}{}", random_id(self.rng.as_ref(), 32)?);
        let rec = AuthCode {
            hash: secret_hash(&code),
            client_id: cid,
            redirect_uri: req.redirect_uri.clone(),
            code_challenge: req.code_challenge.clone(),
            resource: aud,
            scope,
            owner,
            ttl,
            created_at: now,
            expires_at: now + CODE_TTL,
            gid: None,
        };
        store::write(&self.store, move |tx| {
            tx.owner_ensure(&rec.owner, now)?;
            audience_status(tx, &rec.owner, &rec.resource)?;
            catalog::check(tx, std::slice::from_ref(&rec.resource), &rec.scope)?;
            tx.auth_code_put(&rec)?;
            tx.audit_append(
                now,
                &rec.owner,
                "authorize",
                &json!({"client_id": rec.client_id, "redirect_uri": rec.redirect_uri,
                        "scope": rec.scope, "aud": rec.resource, "ttl": rec.ttl})
                .to_string(),
            )?;
            Ok(())
        })
        .await?;
        let mut p = vec![("code", code.as_str())];
        if let Some(s) = &req.state {
            p.push(("state", s));
        }
        p.push(("iss", &self.issuer));
        Ok(with_query(&req.redirect_uri, &p))
    }

    /// The token endpoint's `authorization_code` grant.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn authorization_code(
        &self,
        code: &Secret,
        client_id: String,
        redirect_uri: String,
        verifier: &Secret,
        aud_req: Option<String>,
        proof: Option<VerifiedProof>,
        mut mint: Mint,
    ) -> Result<std::result::Result<TokenResponse, Error>> {
        let hash = secret_hash(code.expose());
        let bearer = proof.is_none();
        if bearer {
            mint.access_ttl = mint.access_ttl.min(BEARER_TTL);
        }
        let jkt = proof.as_ref().map(|p| p.jkt.clone()).unwrap_or_default();
        let challenge = s256(verifier.expose());
        let now = mint.now;
        let (r, seq) = store::write(&self.store, move |tx| {
            let bad = || Error::InvalidGrant("unknown, expired or spent authorization code".into());
            let Some(c) = tx.auth_code_get(&hash)? else {
                return Err(bad());
            };
            if let Some(gid) = &c.gid {
                // The code came back: whoever presents it now or presented it
                // first is not the client alone. Revoke what it got.
                let mut seq = None;
                if let Some(mut g) = tx.grant_get(gid)?
                    && g.status == GrantStatus::Active
                {
                    seq = Some(revoke_grant(tx, &mut g, now, "authorization_code_reuse")?);
                }
                return Ok((
                    Err(Error::InvalidGrant(
                        "the authorization code was already used: its grant is revoked".into(),
                    )),
                    seq,
                ));
            }
            if now >= c.expires_at {
                return Err(bad());
            }
            if c.client_id != client_id {
                return Err(Error::InvalidGrant(
                    "the authorization code was issued to another client".into(),
                ));
            }
            if c.redirect_uri != redirect_uri {
                return Err(Error::InvalidGrant(
                    "redirect_uri differs from the authorization request's".into(),
                ));
            }
            if !eq_ct(&c.code_challenge, &challenge) {
                return Err(Error::InvalidGrant(
                    "code_verifier does not match the code_challenge (PKCE)".into(),
                ));
            }
            if let Some(a) = &aud_req
                && *a != c.resource
            {
                return Err(Error::InvalidTarget(
                    "the resource differs from the one the owner approved".into(),
                ));
            }
            if bearer && !bearer_allowed(tx, &c.resource)? {
                return Err(dpop_only(&c.resource));
            }
            let g = Grant {
                gid: random_id(mint.rng.as_ref(), 16)?,
                owner: c.owner.clone(),
                agent: c.client_id.clone(),
                scope: c.scope.clone(),
                audiences: vec![c.resource.clone()],
                // A bearer grant is bound to no key: its `jkt` is empty.
                jkt: Some(jkt.clone()),
                status: GrantStatus::Active,
                origin: ORIGIN.into(),
                created_at: now,
                ttl: c.ttl,
                expires_at: now + c.ttl,
                enroll_hash: None,
                revoked_at: None,
            };
            if !tx.auth_code_spend(&c.hash, &g.gid)? {
                return Err(bad());
            }
            tx.grant_put(&g)?;
            let scope = catalog::narrow(tx, &c.resource, &g.scope, None)?;
            let detail = json!({"jkt": jkt, "bearer": bearer});
            Ok((
                Ok(first_tokens(
                    &mint,
                    tx,
                    &g,
                    scope,
                    c.resource.clone(),
                    "code_grant",
                    detail,
                    bearer,
                )?),
                None,
            ))
        })
        .await?;
        self.feed_advanced_if(seq);
        Ok(r)
    }

    /// The owner turns bearer tokens for one of its resources on or off.
    pub async fn resource_accept_bearer(
        &self,
        owner: &str,
        id: &str,
        on: bool,
    ) -> Result<crate::model::Resource> {
        let now = self.clock.now();
        let mut r = self.resource_find(owner, id).await?;
        r.accept_bearer = on;
        let out = r.clone();
        store::write(&self.store, move |tx| {
            tx.resource_replace(&r)?;
            tx.audit_append(
                now,
                &r.owner,
                "resource_bearer",
                &json!({"client_id": r.client_id, "audience": r.audience, "accept_bearer": on})
                    .to_string(),
            )?;
            Ok(())
        })
        .await?;
        Ok(out)
    }
}

#[cfg(test)]
#[path = "authcode_tests.rs"]
mod tests;
