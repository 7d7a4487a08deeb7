//! JWT access tokens (RFC 9068) signed by the broker, and their verification
//! against a key set (RFC 8725 best practices).

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::error::{Error, Reason, Result};
use crate::json;
use crate::jws::{self, Alg};
use crate::keys::{AgentKey, KeyVerifier, PublicJwk};

/// The `typ` of an access token.
pub const AT_TYP: &str = "at+jwt";
/// Largest access token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 8192;

/// The claims of an access token (specification: `spec/01-tokens.md`).
#[derive(Clone, PartialEq, Eq)]
pub struct AccessTokenClaims {
    /// Issuer: the broker's configured URL.
    pub iss: String,
    /// Subject: the owner.
    pub sub: String,
    /// The one audience (resource server) this token is for.
    pub aud: String,
    /// The agent's self-chosen client id.
    pub client_id: String,
    /// Issued at.
    pub iat: i64,
    /// Expiry.
    pub exp: i64,
    /// Token id, for revocation and audit.
    pub jti: String,
    /// Space-separated scopes.
    pub scope: String,
    /// `cnf.jkt`: the RFC 7638 thumbprint of the agent's key.
    pub jkt: String,
    /// Grant id: revoking it revokes every token of the grant.
    pub gid: String,
    /// `act.sub`: the agent acting for the owner (RFC 8693).
    pub act_sub: String,
}

impl fmt::Debug for AccessTokenClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Claims are not secret (the token's signature is what matters), but keep
        // the output one line and readable.
        f.debug_struct("AccessTokenClaims")
            .field("jti", &self.jti)
            .field("sub", &self.sub)
            .field("client_id", &self.client_id)
            .field("aud", &self.aud)
            .field("scope", &self.scope)
            .field("exp", &self.exp)
            .field("gid", &self.gid)
            .finish()
    }
}

impl AccessTokenClaims {
    /// The claims as a JSON object.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("iss".into(), self.iss.clone().into());
        m.insert("sub".into(), self.sub.clone().into());
        m.insert("aud".into(), self.aud.clone().into());
        m.insert("client_id".into(), self.client_id.clone().into());
        m.insert("iat".into(), self.iat.into());
        m.insert("exp".into(), self.exp.into());
        m.insert("jti".into(), self.jti.clone().into());
        m.insert("scope".into(), self.scope.clone().into());
        // A bearer token (no key, `jkt` empty) carries no `cnf` at all.
        if !self.jkt.is_empty() {
            let mut cnf = Map::new();
            cnf.insert("jkt".into(), self.jkt.clone().into());
            m.insert("cnf".into(), Value::Object(cnf));
        }
        m.insert("gid".into(), self.gid.clone().into());
        let mut act = Map::new();
        act.insert("sub".into(), self.act_sub.clone().into());
        m.insert("act".into(), Value::Object(act));
        m
    }

    fn from_json(m: &Map<String, Value>, expected_aud: &str, binding: Binding) -> Result<Self> {
        let miss = |e: String| Error::token(Reason::MissingClaim, e);
        let s = |name: &str| json::req_str(m, name).map(str::to_owned).map_err(miss);
        let nested = |outer: &str, inner: &str| -> Result<String> {
            match m.get(outer) {
                Some(Value::Object(o)) => json::req_str(o, inner).map(str::to_owned).map_err(miss),
                _ => Err(miss(format!("`{outer}.{inner}` is missing"))),
            }
        };
        let time = |name: &str| {
            json::req_time(m, name).map_err(|e| {
                // A malformed `iat` is an `iat` problem, as in proofs; only a
                // malformed `exp` is reported as an expiry problem.
                let r = if !m.contains_key(name) {
                    Reason::MissingClaim
                } else if name == "iat" {
                    Reason::Iat
                } else {
                    Reason::Expired
                };
                Error::token(r, e)
            })
        };
        let aud = match m.get("aud") {
            Some(Value::String(a)) => (a == expected_aud).then(|| a.clone()),
            Some(Value::Array(list)) => list
                .iter()
                .any(|v| v.as_str() == Some(expected_aud))
                .then(|| expected_aud.to_owned()),
            Some(_) => return Err(miss("`aud` must be a string or an array".into())),
            None => return Err(miss("`aud` is missing".into())),
        }
        .ok_or_else(|| Error::token(Reason::Audience, "the token is for another audience"))?;
        Ok(AccessTokenClaims {
            iss: s("iss")?,
            sub: s("sub")?,
            aud,
            client_id: s("client_id")?,
            iat: time("iat")?,
            exp: time("exp")?,
            jti: s("jti")?,
            scope: s("scope")?,
            jkt: match binding {
                Binding::Dpop => nested("cnf", "jkt")?,
                Binding::Bearer if m.contains_key("cnf") => {
                    return Err(Error::token(
                        Reason::Scheme,
                        "this token is DPoP-bound: use the DPoP scheme with a proof",
                    ));
                }
                Binding::Bearer => String::new(),
            },
            gid: s("gid")?,
            act_sub: nested("act", "sub")?,
        })
    }
}

/// The broker's signing key with its key id.
#[derive(Clone)]
pub struct SigningKey {
    /// The `kid`.
    pub kid: String,
    key: AgentKey,
    header_b64: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl SigningKey {
    /// Wrap an Ed25519 key under a key id.
    pub fn new(kid: impl Into<String>, key: AgentKey) -> Self {
        let kid = kid.into();
        let mut h = Map::new();
        h.insert("typ".into(), AT_TYP.into());
        h.insert("alg".into(), "EdDSA".into());
        h.insert("kid".into(), kid.clone().into());
        let header_b64 = crate::b64::encode(serde_json::to_vec(&h).unwrap_or_default());
        SigningKey {
            kid,
            key,
            header_b64,
        }
    }

    /// The underlying key (for storage).
    pub fn key(&self) -> &AgentKey {
        &self.key
    }

    /// The public JWK as published in the JWKS: with `kid`, `use: sig`, `alg: EdDSA`.
    pub fn public_jwk_json(&self) -> Map<String, Value> {
        let mut m = self.key.public_jwk().to_json();
        m.insert("kid".into(), self.kid.clone().into());
        m.insert("use".into(), "sig".into());
        m.insert("alg".into(), "EdDSA".into());
        m
    }

    /// Sign an access token.
    pub fn sign(&self, claims: &AccessTokenClaims) -> String {
        self.sign_with(claims, Map::new())
    }

    /// Sign an access token with claims beyond the standard ones (a step-up
    /// token's `authorization_details` and `one_time`); a standard claim
    /// is never replaced by an extra one.
    pub fn sign_with(&self, claims: &AccessTokenClaims, extra: Map<String, Value>) -> String {
        let mut m = claims.to_json();
        for (k, v) in extra {
            m.entry(k).or_insert(v);
        }
        let payload = serde_json::to_vec(&m).unwrap_or_default();
        let mut out = self.header_b64.clone();
        out.push('.');
        out.push_str(&crate::b64::encode(payload));
        let sig = self.key.sign(out.as_bytes());
        out.push('.');
        out.push_str(&crate::b64::encode(sig));
        out
    }
}

/// Public keys to verify access tokens with, by `kid` (a JWKS).
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, KeyVerifier>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys.keys()).finish()
    }
}

impl KeySet {
    /// Read a JWKS document (`{"keys":[...]}`). Keys that are not Ed25519
    /// signing keys for `EdDSA` are skipped (a JWKS may hold keys for others);
    /// a key that claims to be one but is malformed or weak is an error.
    pub fn from_jwks_json(text: &str) -> Result<Self> {
        let m = json::parse_object(text.as_bytes()).map_err(Error::InvalidKey)?;
        let Some(Value::Array(keys)) = m.get("keys") else {
            return Err(Error::InvalidKey("a JWKS has a `keys` array".into()));
        };
        let mut set = KeySet::default();
        for k in keys {
            let Value::Object(k) = k else {
                return Err(Error::InvalidKey("a JWKS key must be an object".into()));
            };
            let kty = json::opt_str(k, "kty").map_err(Error::InvalidKey)?;
            let alg = json::opt_str(k, "alg").map_err(Error::InvalidKey)?;
            let usage = json::opt_str(k, "use").map_err(Error::InvalidKey)?;
            if kty != Some("OKP")
                || !matches!(alg, None | Some("EdDSA"))
                || !matches!(usage, None | Some("sig"))
            {
                continue;
            }
            let kid = json::req_str(k, "kid").map_err(Error::InvalidKey)?;
            let jwk = PublicJwk::from_json(k)?;
            set.insert(kid, &jwk)?;
        }
        Ok(set)
    }

    /// Add a key under `kid`.
    pub fn insert(&mut self, kid: &str, jwk: &PublicJwk) -> Result<()> {
        match jwk.verifier()? {
            v @ KeyVerifier::Ed25519(_) => {
                self.keys.insert(kid.to_owned(), v);
                Ok(())
            }
            KeyVerifier::P256(_) => Err(Error::InvalidKey("token keys are Ed25519".into())),
        }
    }

    /// Whether `kid` is known.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// What an access token is checked against.
#[derive(Debug, Clone)]
pub struct TokenValidation {
    /// The expected issuer, compared verbatim.
    pub issuer: String,
    /// The audience this server is, which `aud` must contain.
    pub audience: String,
    /// Seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: i64,
    /// Accept a step-up's one-time token (`one_time: true`). Off by default:
    /// such a token must be redeemed at the broker on first use, which a
    /// local check cannot do, so only a caller that redeems it (the `net`
    /// feature's `Verifier`, the broker) turns this on.
    pub accept_one_time: bool,
}

impl TokenValidation {
    /// Validation for `issuer` and `audience` with a 10-second leeway.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        TokenValidation {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: 10,
            accept_one_time: false,
        }
    }
}

/// The `kid` of a token, read without verifying anything (to decide whether
/// the key set must be refreshed).
pub fn peek_kid(token: &str) -> Option<String> {
    let jws = jws::parse(token, MAX_TOKEN_LEN).ok()?;
    json::opt_str(&jws.header, "kid")
        .ok()
        .flatten()
        .map(str::to_owned)
}

/// The `jti` and `gid` of a token, read without verifying anything: for a
/// server that fetches their revocation state together with its other reads.
/// The caller must compare them with the verified claims before relying on
/// that state.
pub fn peek_ids(token: &str) -> Option<(String, String)> {
    let jws = jws::parse(token, MAX_TOKEN_LEN).ok()?;
    let jti = json::opt_str(&jws.claims, "jti").ok().flatten()?;
    let gid = json::opt_str(&jws.claims, "gid").ok().flatten()?;
    Some((jti.to_owned(), gid.to_owned()))
}

/// Whether a token says `one_time: true` (a step-up's one-time token, to
/// be redeemed at the broker on first use), read without verifying anything:
/// call it only on a token already verified.
pub fn is_one_time(token: &str) -> bool {
    jws::parse(token, MAX_TOKEN_LEN)
        .is_ok_and(|j| j.claims.get("one_time") == Some(&Value::Bool(true)))
}

/// Verify an access token's signature and claims at time `now`.
pub fn verify_access_token(
    token: &str,
    keys: &KeySet,
    v: &TokenValidation,
    now: i64,
) -> Result<AccessTokenClaims> {
    verify_access_token_reporting(token, keys, v, now, &mut None)
}

/// How the token presented is bound: to a key (`cnf.jkt`, the DPoP scheme),
/// or to nothing (the Bearer scheme, for resources whose owner accepts
/// bearer tokens from clients that cannot do DPoP; such tokens carry no
/// `cnf`, and their `jkt` is empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// `cnf.jkt` is required.
    Dpop,
    /// `cnf` must be absent.
    Bearer,
}

/// Verify a bearer access token (no `cnf`): signature, `typ`, issuer,
/// audience, expiry, like [`verify_access_token`]. A DPoP-bound token is
/// refused here: it must come with its proof.
pub fn verify_bearer_access_token(
    token: &str,
    keys: &KeySet,
    v: &TokenValidation,
    now: i64,
) -> Result<AccessTokenClaims> {
    verify_token_bound(token, keys, v, now, &mut None, Binding::Bearer)
}

/// [`verify_access_token`], also telling which token failed: once the
/// signature, issuer and audience have been verified, `signed_jti` holds the
/// token's `jti`, so that a refusal for a later reason (expired, not yet
/// valid) can be attributed to it.
pub(crate) fn verify_access_token_reporting(
    token: &str,
    keys: &KeySet,
    v: &TokenValidation,
    now: i64,
    signed_jti: &mut Option<String>,
) -> Result<AccessTokenClaims> {
    verify_token_bound(token, keys, v, now, signed_jti, Binding::Dpop)
}

/// [`verify_access_token_reporting`] for either binding.
pub(crate) fn verify_token_bound(
    token: &str,
    keys: &KeySet,
    v: &TokenValidation,
    now: i64,
    signed_jti: &mut Option<String>,
    binding: Binding,
) -> Result<AccessTokenClaims> {
    fn terr(r: Reason, m: impl Into<String>) -> Error {
        Error::token(r, m)
    }
    let jws = jws::parse(token, MAX_TOKEN_LEN).map_err(Error::into_token_error)?;
    match json::opt_str(&jws.header, "typ").map_err(|e| terr(Reason::Typ, e))? {
        Some(AT_TYP | "application/at+jwt") => {}
        Some(_) => return Err(terr(Reason::Typ, "typ must be at+jwt")),
        None => return Err(terr(Reason::MissingClaim, "the header has no typ")),
    }
    if jws.alg != Alg::EdDsa {
        return Err(terr(Reason::Alg, "access tokens are signed with EdDSA"));
    }
    for forbidden in ["jwk", "jku", "x5u", "x5c"] {
        if jws.header.contains_key(forbidden) {
            return Err(terr(
                Reason::ForbiddenHeader,
                format!("access tokens never carry `{forbidden}`; keys come from the JWKS"),
            ));
        }
    }
    let kid = json::req_str(&jws.header, "kid").map_err(|e| terr(Reason::MissingClaim, e))?;
    let key = keys
        .keys
        .get(kid)
        .ok_or_else(|| terr(Reason::UnknownKid, "the token's kid is not in the key set"))?;
    key.verify(jws.alg, jws.signing_input.as_bytes(), &jws.signature)
        .map_err(|_| terr(Reason::Signature, "the token's signature does not verify"))?;

    let claims = AccessTokenClaims::from_json(&jws.claims, &v.audience, binding)?;
    if claims.iss != v.issuer {
        return Err(terr(Reason::Issuer, "the token is from another issuer"));
    }
    *signed_jti = Some(claims.jti.clone());
    if !v.accept_one_time && jws.claims.get("one_time") == Some(&Value::Bool(true)) {
        return Err(terr(
            Reason::OneTime,
            "a step-up's one-time token is accepted only where it is redeemed at the broker on first use (the Verifier of the `net` feature), never by a local check alone",
        ));
    }
    if now >= claims.exp.saturating_add(v.leeway) {
        return Err(terr(Reason::Expired, "the access token has expired"));
    }
    if claims.iat > now.saturating_add(v.leeway) {
        return Err(terr(
            Reason::NotYetValid,
            "the token's iat is in the future",
        ));
    }
    if let Some(nbf) =
        json::opt_time(&jws.claims, "nbf").map_err(|e| terr(Reason::NotYetValid, e))?
        && nbf > now.saturating_add(v.leeway)
    {
        return Err(terr(Reason::NotYetValid, "the token is not valid yet"));
    }
    Ok(claims)
}
