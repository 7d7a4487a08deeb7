//! DPoP proofs (RFC 9449): creation by agents, verification by the broker and
//! resource servers.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::b64;
use crate::clock::Random;
use crate::error::{Error, Reason, Result};
use crate::json;
use crate::jws::{self, Alg};
use crate::keys::{AgentKey, KeyVerifier, PublicJwk};
use crate::replay::ReplayCache;

/// The `typ` of a DPoP proof.
pub const DPOP_TYP: &str = "dpop+jwt";
/// Longest `reason` claim, in characters.
pub const MAX_REASON_CHARS: usize = 300;
/// Algorithms accepted for proofs, as advertised in metadata
/// (`dpop_signing_alg_values_supported`) and `WWW-Authenticate`.
pub const PROOF_ALGS: &[&str] = &["EdDSA", "Ed25519", "ES256"];

/// The SHA-256 hash of an access token, base64url: the `ath` claim.
pub fn access_token_hash(token: &str) -> String {
    b64::encode(Sha256::digest(token.as_bytes()))
}

/// Normalize a URL for `htu` comparison (RFC 9449 section 4.3 check 9): RFC 3986
/// syntax- and scheme-based normalization (case of scheme and host, default
/// port, dot segments, empty path, percent-encoding case and unreserved
/// characters), with query and fragment removed. `None` for anything that is not
/// an absolute `http` or `https` URL with a host and no user information.
pub fn normalize_htu(input: &str) -> Option<String> {
    let mut url = url::Url::parse(input).ok()?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return None;
    }
    if !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    url.set_query(None);
    url.set_fragment(None);
    let path = normalize_percent(url.path());
    if path != url.path() {
        url.set_path(&path);
    }
    Some(url.into())
}

/// Upper-case percent-encoding hex digits and decode percent-encoded unreserved
/// characters (RFC 3986 section 6.2.2.2).
fn normalize_percent(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                let c = (h * 16 + l) as u8;
                if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                    out.push(c as char);
                } else {
                    out.push('%');
                    out.push(b[i + 1].to_ascii_uppercase() as char);
                    out.push(b[i + 2].to_ascii_uppercase() as char);
                }
                i += 3;
                continue;
            }
        }
        // The url crate already percent-encodes everything non-ASCII.
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// What an agent puts in a proof besides the key.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProofInput<'a> {
    /// HTTP method, upper-case as sent (`GET`, `POST`).
    pub method: &'a str,
    /// The full request URL; query and fragment are left out of `htu`.
    pub url: &'a str,
    /// The access token sent with the request, hashed into `ath`.
    pub access_token: Option<&'a str>,
    /// The server-provided nonce, when the server asked for one.
    pub nonce: Option<&'a str>,
    /// Why the agent acts (at most 300 characters), signed into the proof.
    pub reason: Option<&'a str>,
}

/// Create a DPoP proof signed with `key` at time `now`.
pub fn create_proof(
    key: &AgentKey,
    input: &ProofInput<'_>,
    now: i64,
    rng: &dyn Random,
) -> Result<String> {
    let htu = normalize_htu(input.url)
        .ok_or_else(|| Error::InvalidRequest(format!("not an http(s) URL: {:?}", input.url)))?;
    if input.method.is_empty() || !input.method.bytes().all(|c| c.is_ascii_alphabetic()) {
        return Err(Error::InvalidRequest(
            "the HTTP method must be a token like GET".into(),
        ));
    }
    let mut jti = [0u8; 16];
    rng.fill(&mut jti)?;
    let mut header = Map::new();
    header.insert("typ".into(), DPOP_TYP.into());
    header.insert("alg".into(), "EdDSA".into());
    header.insert("jwk".into(), Value::Object(key.public_jwk().to_json()));
    let mut claims = Map::new();
    claims.insert("jti".into(), b64::encode(jti).into());
    claims.insert("htm".into(), input.method.into());
    claims.insert("htu".into(), htu.into());
    claims.insert("iat".into(), now.into());
    if let Some(t) = input.access_token {
        claims.insert("ath".into(), access_token_hash(t).into());
    }
    if let Some(n) = input.nonce {
        claims.insert("nonce".into(), n.into());
    }
    if let Some(r) = input.reason {
        if r.chars().count() > MAX_REASON_CHARS {
            return Err(Error::InvalidRequest(format!(
                "the reason is longer than {MAX_REASON_CHARS} characters"
            )));
        }
        claims.insert("reason".into(), r.into());
    }
    Ok(jws::sign(&header, &claims, |m| key.sign(m)))
}

/// Settings of proof verification.
#[derive(Debug, Clone)]
pub struct ProofOptions {
    /// Accept proofs whose `iat` is at most this many seconds in the past.
    pub max_age: i64,
    /// Accept proofs whose `iat` is at most this many seconds in the future.
    pub max_skew: i64,
    /// Largest proof accepted, in bytes.
    pub max_len: usize,
    /// Accept ES256 proofs (third-party clients).
    pub allow_es256: bool,
}

impl Default for ProofOptions {
    fn default() -> Self {
        ProofOptions {
            max_age: 10,
            max_skew: 10,
            max_len: 4096,
            allow_es256: true,
        }
    }
}

/// What the request around a proof says, to check the proof against.
#[derive(Clone, Copy, Default)]
pub struct ProofCheck<'a> {
    /// The request's method.
    pub method: &'a str,
    /// The request's full URL as the server sees it (issuer-based behind proxies).
    pub url: &'a str,
    /// The access token that came with the request: `ath` must hash it.
    pub access_token: Option<&'a str>,
    /// The thumbprint the token is bound to (`cnf.jkt`).
    pub expected_jkt: Option<&'a str>,
    /// When the server requires a nonce: true for a nonce it accepts. A missing or
    /// refused nonce is `use_dpop_nonce`.
    pub nonce: Option<&'a dyn Fn(&str) -> bool>,
}

impl std::fmt::Debug for ProofCheck<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofCheck")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("access_token", &self.access_token.map(|_| "<redacted>"))
            .field("expected_jkt", &self.expected_jkt)
            .field("nonce_required", &self.nonce.is_some())
            .finish()
    }
}

/// A proof that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedProof {
    /// The proof's public key.
    pub jwk: PublicJwk,
    /// Its RFC 7638 thumbprint.
    pub jkt: String,
    /// The proof's `jti`.
    pub jti: String,
    /// `htm`.
    pub htm: String,
    /// `htu`, normalized.
    pub htu: String,
    /// `iat`.
    pub iat: i64,
    /// The nonce it carried.
    pub nonce: Option<String>,
    /// The agent's stated reason, if any.
    pub reason: Option<String>,
    /// The algorithm.
    pub alg: Alg,
}

impl VerifiedProof {
    /// The proof as a JSON object, one member a field (`jwk` as an object,
    /// `alg` by its JWS name); `nonce` and `reason` only when it carried them.
    pub fn to_json(&self) -> Map<String, Value> {
        let members: [(&str, Value); 9] = [
            ("jwk", Value::Object(self.jwk.to_json())),
            ("jkt", self.jkt.as_str().into()),
            ("alg", self.alg.as_str().into()),
            ("jti", self.jti.as_str().into()),
            ("htm", self.htm.as_str().into()),
            ("htu", self.htu.as_str().into()),
            ("iat", self.iat.into()),
            ("nonce", self.nonce.as_deref().into()),
            ("reason", self.reason.as_deref().into()),
        ];
        let present = members.into_iter().filter(|(_, v)| !v.is_null());
        present.map(|(k, v)| (k.to_owned(), v)).collect()
    }
}

fn perr(reason: Reason, msg: impl Into<String>) -> Error {
    Error::proof(reason, msg)
}

/// Every check of RFC 9449 section 4.3 except the single-header rule and replay,
/// which need the request and the cache ([`ProofVerifier::verify`] does both).
pub fn verify_proof(
    proof: &str,
    check: &ProofCheck<'_>,
    opts: &ProofOptions,
    now: i64,
) -> Result<VerifiedProof> {
    verify_proof_with(proof, check, opts, now, None)
}

/// [`verify_proof`], looking the proof's key up in `keys` (when given) instead
/// of decompressing and checking its point again.
fn verify_proof_with(
    proof: &str,
    check: &ProofCheck<'_>,
    opts: &ProofOptions,
    now: i64,
    keys: Option<&ProofKeyCache>,
) -> Result<VerifiedProof> {
    let jws = jws::parse(proof, opts.max_len)?;
    if jws.alg == Alg::Es256 && !opts.allow_es256 {
        return Err(perr(Reason::Alg, "ES256 proofs are not accepted here"));
    }
    match json::opt_str(&jws.header, "typ").map_err(|e| perr(Reason::Typ, e))? {
        Some(DPOP_TYP) => {}
        Some(other) => {
            return Err(perr(
                Reason::Typ,
                format!("typ must be dpop+jwt, not {other:?}"),
            ));
        }
        None => return Err(perr(Reason::MissingClaim, "the header has no typ")),
    }
    for forbidden in ["jku", "x5u", "x5c", "kid"] {
        if jws.header.contains_key(forbidden) {
            return Err(perr(
                Reason::ForbiddenHeader,
                format!("a proof carries its key in `jwk`, never in `{forbidden}`"),
            ));
        }
    }
    let jwk_json = match jws.header.get("jwk") {
        Some(Value::Object(m)) => m,
        Some(_) => return Err(perr(Reason::Key, "`jwk` must be an object")),
        None => return Err(perr(Reason::MissingClaim, "the header has no jwk")),
    };
    let resolved = match keys {
        Some(cache) => cache.resolve(jwk_json),
        None => PublicJwk::from_json_with_verifier(jwk_json),
    };
    let (jwk, verifier) = resolved.map_err(|e| {
        let reason = if jwk_json.keys().any(|k| {
            matches!(
                k.as_str(),
                "d" | "p" | "q" | "dp" | "dq" | "qi" | "oth" | "k"
            )
        }) {
            Reason::ForbiddenHeader
        } else {
            Reason::Key
        };
        perr(reason, e.to_string())
    })?;
    let key_fits = matches!(
        (jws.alg, &jwk),
        (Alg::EdDsa | Alg::Ed25519, PublicJwk::Ed25519(_)) | (Alg::Es256, PublicJwk::P256 { .. })
    );
    if !key_fits {
        return Err(perr(Reason::Alg, "the algorithm does not fit the key type"));
    }

    let c = &jws.claims;
    let req = |name: &str| json::req_str(c, name).map_err(|e| perr(Reason::MissingClaim, e));
    let jti = req("jti")?;
    let htm = req("htm")?;
    let htu = req("htu")?;
    let iat = json::req_time(c, "iat").map_err(|e| {
        let r = if c.contains_key("iat") {
            Reason::Iat
        } else {
            Reason::MissingClaim
        };
        perr(r, e)
    })?;

    if jti.len() < 16 || jti.len() > 256 || !jti.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(perr(
            Reason::Jti,
            "jti must be 16 to 256 printable characters",
        ));
    }
    if htm != check.method {
        return Err(perr(Reason::Htm, "htm does not match the request method"));
    }
    // A URI is printable ASCII (RFC 3986 section 2). URL parsers strip or
    // re-encode anything else (leading and trailing controls and spaces, tabs,
    // newlines, non-ASCII), which would make two different strings match.
    if !htu.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(perr(
            Reason::Htu,
            "htu holds characters a URI cannot (controls, spaces or non-ASCII)",
        ));
    }
    let htu_norm = normalize_htu(htu)
        .ok_or_else(|| perr(Reason::Htu, "htu is not an absolute http(s) URL"))?;
    let target = normalize_htu(check.url).ok_or_else(|| {
        perr(
            Reason::Htu,
            "the request URL is not an absolute http(s) URL",
        )
    })?;
    if htu_norm != target {
        return Err(perr(Reason::Htu, "htu does not match the request URL"));
    }
    if iat < now.saturating_sub(opts.max_age) || iat > now.saturating_add(opts.max_skew) {
        return Err(perr(
            Reason::Iat,
            "the proof's iat is outside the accepted window: check the clock",
        ));
    }
    if let Some(exp) = json::opt_time(c, "exp").map_err(|e| perr(Reason::Expired, e))?
        && now >= exp
    {
        return Err(perr(Reason::Expired, "the proof has expired"));
    }
    if let Some(nbf) = json::opt_time(c, "nbf").map_err(|e| perr(Reason::NotYetValid, e))?
        && nbf > now.saturating_add(opts.max_skew)
    {
        return Err(perr(Reason::NotYetValid, "the proof is not valid yet"));
    }
    let reason = match c.get("reason") {
        None => None,
        Some(Value::String(r)) if r.chars().count() <= MAX_REASON_CHARS => Some(r.clone()),
        Some(_) => {
            return Err(perr(
                Reason::ReasonClaim,
                "reason must be a string of at most 300 characters",
            ));
        }
    };
    let nonce = json::opt_str(c, "nonce").map_err(|e| perr(Reason::Nonce, e))?;

    verifier
        .verify(jws.alg, jws.signing_input.as_bytes(), &jws.signature)
        .map_err(|_| perr(Reason::Signature, "the proof's signature does not verify"))?;

    match (
        check.access_token,
        json::opt_str(c, "ath").map_err(|e| perr(Reason::Ath, e))?,
    ) {
        (Some(token), Some(ath)) => {
            let expected = access_token_hash(token);
            if !bool::from(expected.as_bytes().ct_eq(ath.as_bytes())) {
                return Err(perr(Reason::Ath, "ath does not match the access token"));
            }
        }
        (Some(_), None) => return Err(perr(Reason::Ath, "the proof has no ath for the token")),
        (None, _) => {}
    }
    let jkt = jwk.thumbprint();
    if let Some(expected) = check.expected_jkt
        && !bool::from(expected.as_bytes().ct_eq(jkt.as_bytes()))
    {
        return Err(perr(
            Reason::KeyBinding,
            "the proof is signed by another key than the token is bound to",
        ));
    }
    if let Some(accepts) = check.nonce {
        match nonce {
            Some(n) if accepts(n) => {}
            _ => return Err(Error::UseDpopNonce),
        }
    }
    Ok(VerifiedProof {
        jwk,
        jkt,
        jti: jti.to_owned(),
        htm: htm.to_owned(),
        htu: htu_norm,
        iat,
        nonce: nonce.map(str::to_owned),
        reason,
        alg: jws.alg,
    })
}

/// Proof verification with the single-header rule and a replay cache.
#[derive(Debug, Default)]
pub struct ProofVerifier {
    /// The settings.
    pub options: ProofOptions,
    replay: ReplayCache,
    keys: ProofKeyCache,
}

impl ProofVerifier {
    /// A verifier with these settings and a replay cache of `replay_capacity`.
    pub fn new(options: ProofOptions, replay_capacity: usize) -> Self {
        ProofVerifier {
            options,
            replay: ReplayCache::new(replay_capacity),
            keys: ProofKeyCache::default(),
        }
    }

    /// Verify the request's `DPoP` header values (there must be exactly one),
    /// then record the proof so that it cannot be used again.
    pub fn verify<S: AsRef<str>>(
        &self,
        dpop_headers: &[S],
        check: &ProofCheck<'_>,
        now: i64,
    ) -> Result<VerifiedProof> {
        self.verify_from(dpop_headers, check, now, None)
    }

    /// [`verify`](Self::verify) for a request from `source` (a tag of the
    /// client's address): one source holds at most its share of the replay
    /// cache, so a flood from it cannot fill the cache for everyone.
    pub fn verify_from<S: AsRef<str>>(
        &self,
        dpop_headers: &[S],
        check: &ProofCheck<'_>,
        now: i64,
        source: Option<u64>,
    ) -> Result<VerifiedProof> {
        let [proof] = dpop_headers else {
            return Err(perr(
                Reason::HeaderCount,
                "a request carries exactly one DPoP header",
            ));
        };
        let p = verify_proof_with(proof.as_ref(), check, &self.options, now, Some(&self.keys))?;
        let key = ReplayCache::key(&p.jti, &p.htm, &p.htu);
        // Remember the proof until its iat leaves the window, plus a second for
        // the inclusive edge.
        let forget_at = p.iat.saturating_add(self.options.max_age).saturating_add(1);
        self.replay
            .check_and_insert_from(key, source, now, forget_at)?;
        Ok(p)
    }

    /// The replay cache (for metrics).
    pub fn replay_cache(&self) -> &ReplayCache {
        &self.replay
    }
}

/// Verifiers of recently seen proof keys. An agent signs every proof with the
/// same key, so most proofs name a key already checked: looking it up by its
/// coordinates saves decompressing and checking the point for each request (a
/// sizeable part of the cost beyond the two signatures). The verifier depends on
/// the coordinates alone, so a hit is exactly what a fresh check would give.
/// Bounded: when full, it starts over.
#[derive(Default)]
struct ProofKeyCache(std::sync::Mutex<std::collections::HashMap<PublicJwk, KeyVerifier>>);

/// Distinct proof keys remembered at most.
const PROOF_KEY_CACHE: usize = 4096;

impl ProofKeyCache {
    fn resolve(&self, m: &Map<String, Value>) -> Result<(PublicJwk, KeyVerifier)> {
        let jwk = PublicJwk::from_json_unchecked(m)?;
        if let Some(v) = self.lock().get(&jwk) {
            return Ok((jwk, v.clone()));
        }
        // Check the point outside the lock; a key that fails is not remembered.
        let v = jwk.verifier()?;
        let mut map = self.lock();
        if map.len() >= PROOF_KEY_CACHE {
            map.clear();
        }
        map.insert(jwk.clone(), v.clone());
        Ok((jwk, v))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<PublicJwk, KeyVerifier>> {
        // A poisoned lock only means another thread panicked mid-insert; the
        // map itself is still consistent.
        match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl std::fmt::Debug for ProofKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofKeyCache")
            .field("len", &self.lock().len())
            .finish()
    }
}

#[cfg(test)]
mod key_cache_tests {
    use super::*;
    use crate::clock::OsRandom;

    const URL: &str = "https://api.example/r";

    fn proof(key: &AgentKey, now: i64) -> String {
        let input = ProofInput {
            method: "GET",
            url: URL,
            ..Default::default()
        };
        create_proof(key, &input, now, &OsRandom).unwrap()
    }

    fn check() -> ProofCheck<'static> {
        ProofCheck {
            method: "GET",
            url: URL,
            ..Default::default()
        }
    }

    #[test]
    fn a_remembered_key_still_checks_every_signature() {
        let v = ProofVerifier::default();
        let key = AgentKey::generate(&OsRandom).unwrap();
        v.verify(&[proof(&key, 100)], &check(), 100).unwrap();
        v.verify(&[proof(&key, 100)], &check(), 100).unwrap();
        assert_eq!(v.keys.lock().len(), 1);
        // Same key, so a cache hit, but a payload the key never signed.
        let good = proof(&key, 100);
        let (h, rest) = good.split_once('.').unwrap();
        let (_, s) = rest.split_once('.').unwrap();
        let claims = format!(
            r#"{{"jti":"{}","htm":"GET","htu":"{URL}","iat":100}}"#,
            "a".repeat(22)
        );
        let forged = format!("{h}.{}.{s}", b64::encode(claims));
        let e = v.verify(&[forged], &check(), 100).unwrap_err();
        assert_eq!(e.reason(), Some(Reason::Signature));
    }

    #[test]
    fn weak_keys_are_refused_and_not_remembered() {
        let cache = ProofKeyCache::default();
        // The identity point: small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let jwk = PublicJwk::Ed25519(identity).to_json();
        assert!(cache.resolve(&jwk).is_err());
        assert!(cache.resolve(&jwk).is_err());
        assert_eq!(cache.lock().len(), 0);
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = ProofKeyCache::default();
        for _ in 0..=PROOF_KEY_CACHE {
            let key = AgentKey::generate(&OsRandom).unwrap();
            cache.resolve(&key.public_jwk().to_json()).unwrap();
        }
        assert!(cache.lock().len() <= PROOF_KEY_CACHE);
    }
}
