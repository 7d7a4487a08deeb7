//! Passkeys (WebAuthn Level 2) as a second factor beside the authenticator
//! app: added on /account once two-step sign-in is on (so the recovery codes
//! exist), used after the password at sign-in and to confirm a high-risk
//! approval.
//!
//! The relying party is this module: ES256 (P-256) and EdDSA (Ed25519) only,
//! `none` attestation, verified with the workspace's `p256` and
//! `ed25519-dalek` (see broker/README.md for why no relying-party crate).
//! rpId is the issuer's host, the origin the issuer's origin. A challenge is
//! 32 random bytes kept in the owner's second-factor record with its purpose,
//! the hash of the session or pending sign-in it was issued to (one per
//! binding, so two tabs or a second sign-in do not disturb each other), and a
//! two-minute expiry; the first answer from that binding takes it out of the
//! record, right or wrong. The signature counter must grow when the authenticator
//! keeps one (a counter that does not is refused as a possible clone).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use protonpass_agent::{Error, Result, b64};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::mfa::{Matched, Record};
use super::{Form, token_matches};
use crate::service::Broker;
use crate::store;

/// How long a challenge may be answered, seconds.
const CHALLENGE_TTL: i64 = 120;
/// Most outstanding challenges per owner (one per session or pending sign-in).
const MAX_CHALLENGES: usize = 8;
/// Most passkeys per owner.
pub(super) const MAX_PASSKEYS: usize = 10;
/// COSE algorithm identifiers (RFC 9053): ES256 and EdDSA.
const ES256: i64 = -7;
const EDDSA: i64 = -8;
/// DER SubjectPublicKeyInfo prefixes of the two key types (DER is canonical,
/// so the whole prefix is fixed): an uncompressed P-256 point follows the
/// first, a 32-byte Ed25519 key the second.
const P256_SPKI: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const ED25519_SPKI: &[u8] = &[
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

const SCRIPT: &str = include_str!("passkey.js");

/// `GET /static/passkey.js`: the dashboard's only script.
pub(super) async fn script() -> Response {
    let mut r = (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

/// A registered passkey, in the owner's second-factor record.
#[derive(Serialize, Deserialize, Clone)]
pub(super) struct Passkey {
    /// The credential id, base64url.
    pub(super) id: String,
    /// COSE algorithm: -7 (ES256) or -8 (EdDSA).
    pub(super) alg: i64,
    /// The public key, base64url: a SEC1 uncompressed point or 32 Ed25519 bytes.
    pub(super) key: String,
    /// The last signature counter seen.
    pub(super) counter: u32,
    /// The owner's name for it.
    pub(super) name: String,
    /// When it was added (Unix seconds).
    pub(super) added: i64,
}

/// An outstanding challenge (one per session or pending sign-in).
#[derive(Serialize, Deserialize, Clone)]
pub(super) struct Challenge {
    /// 32 random bytes, base64url.
    value: String,
    /// `create` (adding a passkey) or `get` (using one).
    purpose: String,
    /// Hash of the session or pending sign-in it was issued to.
    bound: String,
    /// Unix seconds.
    expires: i64,
}

/// The relying party's identity: rpId (the issuer's host) and origin. `None`
/// when the issuer's host is an IP address, which WebAuthn does not accept.
pub(super) fn relying_party(b: &Broker) -> Option<(String, String)> {
    let u = url::Url::parse(&b.issuer).ok()?;
    match u.host()? {
        url::Host::Domain(d) => Some((d.to_owned(), u.origin().ascii_serialization())),
        _ => None,
    }
}

/// Issue a challenge to the owner's record for `purpose`, bound to `bound`:
/// it replaces an earlier one for the same binding; expired ones are dropped,
/// and at most [`MAX_CHALLENGES`] are kept (the oldest goes).
pub(super) async fn issue(b: &Broker, owner: &str, purpose: &str, bound: &str) -> Result<String> {
    let mut raw = [0u8; 32];
    b.rng.fill(&mut raw)?;
    let value = b64::encode(raw);
    let now = b.clock.now();
    let c = Challenge {
        value: value.clone(),
        purpose: purpose.to_owned(),
        bound: bound.to_owned(),
        expires: now.saturating_add(CHALLENGE_TTL),
    };
    let o = owner.to_owned();
    store::write(&b.store, move |tx| {
        let mut r = read(tx.mfa_get(&o)?)?
            .ok_or_else(|| Error::InvalidRequest("two-step sign-in is off".into()))?;
        r.challenges
            .retain(|x| x.expires > now && !token_matches(&x.bound, Some(&c.bound)));
        r.challenges.push(c);
        let excess = r.challenges.len().saturating_sub(MAX_CHALLENGES);
        r.challenges.drain(..excess);
        tx.mfa_put(&o, &write(&r)?, now)
    })
    .await?;
    Ok(value)
}

fn read(raw: Option<String>) -> Result<Option<Record>> {
    raw.map(|r| {
        serde_json::from_str(&r)
            .map_err(|_| Error::Storage("an unreadable second-factor record".into()))
    })
    .transpose()
}

fn write(r: &Record) -> Result<String> {
    serde_json::to_string(r).map_err(|e| Error::Server(e.to_string()))
}

/// Take the challenge issued to `bound` out of the owner's record (single
/// use, whatever the answer) and return it with the record as it is now, if
/// it was issued for `purpose` and has not expired.
async fn take(
    b: &Broker,
    owner: &str,
    purpose: &'static str,
    bound: &str,
    now: i64,
) -> Result<Option<(String, Record)>> {
    let (o, bound) = (owner.to_owned(), bound.to_owned());
    let taken = store::write(&b.store, move |tx| {
        let Some(mut r) = read(tx.mfa_get(&o)?)? else {
            return Ok(None);
        };
        let Some(i) = r
            .challenges
            .iter()
            .position(|c| token_matches(&c.bound, Some(&bound)))
        else {
            return Ok(None);
        };
        let c = r.challenges.remove(i);
        tx.mfa_put(&o, &write(&r)?, now)?;
        Ok(Some((c, r)))
    })
    .await?;
    Ok(taken.and_then(|(c, r)| (c.purpose == purpose && c.expires > now).then_some((c.value, r))))
}

/// What the browser sends back, base64url fields of the form.
pub(super) struct Answer {
    id: String,
    client_data: Vec<u8>,
    auth_data: Vec<u8>,
    /// The assertion's signature, or the new credential's SPKI public key.
    proof: Vec<u8>,
    alg: i64,
}

impl Answer {
    /// The form's passkey fields (`pk_*`), if it carries them.
    pub(super) fn from_form(f: &Form) -> Option<Answer> {
        let field = |n: &str| f.text(n).and_then(b64::decode);
        let id = f.text("pk_id")?.to_owned();
        b64::decode(&id)?;
        Some(Answer {
            id,
            client_data: field("pk_client_data")?,
            auth_data: field("pk_auth_data")?,
            proof: field("pk_signature").or_else(|| field("pk_public_key"))?,
            alg: f.text("pk_alg").and_then(|a| a.parse().ok()).unwrap_or(0),
        })
    }
}

#[derive(Deserialize)]
struct ClientData {
    #[serde(rename = "type")]
    kind: String,
    challenge: String,
    origin: String,
    #[serde(default, rename = "crossOrigin")]
    cross_origin: bool,
}

/// Check clientDataJSON and the authenticator data's rpIdHash and
/// user-present flag; the signature counter.
fn check_common(b: &Broker, a: &Answer, kind: &str, challenge: &str) -> Option<u32> {
    let (rp_id, origin) = relying_party(b)?;
    let c: ClientData = serde_json::from_slice(&a.client_data).ok()?;
    let ok = c.kind == kind
        && token_matches(challenge, Some(&c.challenge))
        && c.origin == origin
        && !c.cross_origin;
    let ad = &a.auth_data;
    if !ok || ad.len() < 37 || ad[..32] != Sha256::digest(rp_id.as_bytes())[..] {
        return None;
    }
    // Flags: bit 0 user present (required).
    if ad[32] & 0x01 == 0 {
        return None;
    }
    Some(u32::from_be_bytes([ad[33], ad[34], ad[35], ad[36]]))
}

fn verify(alg: i64, key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    match alg {
        ES256 => {
            use p256::ecdsa::signature::Verifier as _;
            let (Ok(k), Ok(s)) = (
                p256::ecdsa::VerifyingKey::from_sec1_bytes(key),
                p256::ecdsa::Signature::from_der(signature),
            ) else {
                return false;
            };
            k.verify(message, &s).is_ok()
        }
        EDDSA => {
            let (Ok(k), Ok(s)) = (
                <[u8; 32]>::try_from(key),
                ed25519_dalek::Signature::from_slice(signature),
            ) else {
                return false;
            };
            ed25519_dalek::VerifyingKey::from_bytes(&k)
                .is_ok_and(|k| k.verify_strict(message, &s).is_ok())
        }
        _ => false,
    }
}

/// Whether a counter may follow `stored`: authenticators without a counter
/// always send 0; one that has one must go up.
pub(super) fn counter_ok(stored: u32, new: u32) -> bool {
    (stored == 0 && new == 0) || new > stored
}

/// Check an assertion against the challenge issued to `bound`: which passkey
/// signed it, and its counter.
pub(super) async fn check(
    b: &Broker,
    owner: &str,
    bound: &str,
    a: &Answer,
    now: i64,
) -> Result<Option<Matched>> {
    let Some((challenge, r)) = take(b, owner, "get", bound, now).await? else {
        return Ok(None);
    };
    let Some(counter) = check_common(b, a, "webauthn.get", &challenge) else {
        return Ok(None);
    };
    let Some(pk) = r.passkeys.iter().find(|p| p.id == a.id) else {
        return Ok(None);
    };
    let Some(key) = b64::decode(&pk.key) else {
        return Ok(None);
    };
    let mut message = a.auth_data.clone();
    message.extend_from_slice(&Sha256::digest(&a.client_data));
    if !verify(pk.alg, &key, &message, &a.proof) || !counter_ok(pk.counter, counter) {
        return Ok(None);
    }
    Ok(Some(Matched::Passkey(pk.id.clone(), counter)))
}

/// Check a new credential against the `create` challenge issued to `bound`:
/// the passkey to store (named `name`), or why not.
pub(super) async fn check_new(
    b: &Broker,
    owner: &str,
    bound: &str,
    a: &Answer,
    name: &str,
    now: i64,
) -> Result<std::result::Result<(Record, Passkey), &'static str>> {
    let Some((challenge, r)) = take(b, owner, "create", bound, now).await? else {
        return Ok(Err(
            "The request to add a passkey expired or was used; start again.",
        ));
    };
    let Some(counter) = check_common(b, a, "webauthn.create", &challenge) else {
        return Ok(Err("The browser's answer was not for this dashboard."));
    };
    let ad = &a.auth_data;
    // Flags: bit 6 attested credential data present; then AAGUID (16 bytes),
    // the id's length (2) and the id.
    let id_len = ad
        .get(53..55)
        .map_or(0, |l| usize::from(u16::from_be_bytes([l[0], l[1]])));
    let cred_id = ad.get(55..55 + id_len);
    if ad[32] & 0x40 == 0 || id_len == 0 || cred_id != b64::decode(&a.id).as_deref() {
        return Ok(Err("The browser's answer was not for this dashboard."));
    }
    let cose = &ad[55 + id_len..];
    let key = match a.alg {
        ES256 => a.proof.strip_prefix(P256_SPKI).filter(|k| {
            k.len() == 65 && k[0] == 4 && contains(cose, &k[1..33]) && contains(cose, &k[33..])
        }),
        EDDSA => a
            .proof
            .strip_prefix(ED25519_SPKI)
            .filter(|k| k.len() == 32 && contains(cose, k)),
        _ => None,
    };
    let Some(key) = key else {
        return Ok(Err(
            "Only ES256 (P-256) and EdDSA (Ed25519) passkeys are accepted.",
        ));
    };
    if r.passkeys.iter().any(|p| p.id == a.id) {
        return Ok(Err("This passkey is added already."));
    }
    if r.passkeys.len() >= MAX_PASSKEYS {
        return Ok(Err("You have as many passkeys as the dashboard keeps."));
    }
    let name: String = name.trim().chars().take(64).collect();
    let pk = Passkey {
        id: a.id.clone(),
        alg: a.alg,
        key: b64::encode(key),
        counter,
        name: if name.is_empty() {
            "Passkey".into()
        } else {
            name
        },
        added: now,
    };
    Ok(Ok((r, pk)))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The fields a form needs to carry a passkey's answer, the button that asks
/// the browser for it (shown by the script), and the script. `data` are the
/// WebAuthn options the script reads.
pub(super) fn fields(data: &[(&str, &str)], button: &str, create: bool) -> Markup {
    html! {
        div.passkey data-passkey=(if create { "create" } else { "get" })
            data-challenge=(attr(data, "challenge")) data-rp-id=(attr(data, "rp-id"))
            data-user-id=(attr(data, "user-id")) data-user-name=(attr(data, "user-name"))
            data-credentials=(attr(data, "credentials")) data-submitter=(attr(data, "submitter")) {
            input type="hidden" name="pk_id";
            input type="hidden" name="pk_client_data";
            input type="hidden" name="pk_auth_data";
            @if create {
                input type="hidden" name="pk_public_key";
                input type="hidden" name="pk_alg";
            } @else {
                input type="hidden" name="pk_signature";
            }
            button type="button" data-passkey-go hidden { (button) }
            p.notice.error data-passkey-error hidden role="alert" {}
            noscript { p.hint { "Passkeys need JavaScript in this browser." } }
        }
        script src="/static/passkey.js" {}
    }
}

fn attr<'a>(data: &[(&str, &'a str)], k: &str) -> &'a str {
    data.iter().find(|(n, _)| *n == k).map_or("", |(_, v)| v)
}

/// The options to use one of `r`'s passkeys, for a challenge bound to `bound`,
/// as fields of a form; empty when the owner has none or the issuer is an IP
/// address. `submitter` selects the button the script submits with.
pub(super) async fn use_fields(
    b: &Broker,
    owner: &str,
    r: &Record,
    bound: &str,
    button: &str,
    submitter: &str,
) -> Markup {
    let Some((rp_id, _)) = relying_party(b) else {
        return html! {};
    };
    if r.passkeys.is_empty() {
        return html! {};
    }
    let Ok(challenge) = issue(b, owner, "get", bound).await else {
        return html! {};
    };
    let ids = credential_ids(r);
    fields(
        &[
            ("challenge", &challenge),
            ("rp-id", &rp_id),
            ("credentials", &ids),
            ("submitter", submitter),
        ],
        button,
        false,
    )
}

/// The owner's passkeys' credential ids, comma-separated, as the helper
/// script takes them (the credentials a ceremony allows, or excludes).
pub(super) fn credential_ids(r: &Record) -> String {
    r.passkeys
        .iter()
        .map(|p| p.id.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The WebAuthn user handle for `owner`: not the name itself.
pub(super) fn user_handle(b: &Broker, owner: &str) -> String {
    b64::encode(&Sha256::digest(format!("{}\n{owner}", b.issuer).as_bytes())[..16])
}

/// The status of a refused new passkey.
pub(super) const REFUSED: StatusCode = StatusCode::BAD_REQUEST;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn records_written_before_passkeys_still_read() {
        let old = r#"{"totp":"c2VhbGVk","confirmed":true,"last_step":7,"recovery":["h"]}"#;
        let r: Record = serde_json::from_str(old).unwrap();
        assert!(r.confirmed && r.passkeys.is_empty() && r.challenges.is_empty());
        // ... and are written back without an empty challenge list.
        assert!(!serde_json::to_string(&r).unwrap().contains("challenges"));
    }

    #[test]
    fn only_the_two_key_types_are_taken_from_spki() {
        let mut es = P256_SPKI.to_vec();
        es.push(4);
        es.extend([1u8; 64]);
        assert_eq!(es.len(), 91);
        assert!(es.strip_prefix(ED25519_SPKI).is_none());
        let mut ed = ED25519_SPKI.to_vec();
        ed.extend([2u8; 32]);
        assert_eq!(ed.len(), 44);
        assert!(ed.strip_prefix(P256_SPKI).is_none());
    }

    #[test]
    fn counters_must_grow_unless_never_kept() {
        assert!(counter_ok(0, 0));
        assert!(counter_ok(0, 1));
        assert!(counter_ok(5, 6));
        assert!(!counter_ok(5, 5));
        assert!(!counter_ok(5, 0));
        assert!(!counter_ok(5, 4));
    }

    #[test]
    fn ed25519_signatures_verify_and_others_do_not() {
        use ed25519_dalek::Signer as _;
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let pk = sk.verifying_key().to_bytes();
        let sig = sk.sign(b"message").to_bytes();
        assert!(verify(EDDSA, &pk, b"message", &sig));
        assert!(!verify(EDDSA, &pk, b"massage", &sig));
        assert!(!verify(ES256, &pk, b"message", &sig));
        assert!(!verify(-257, &pk, b"message", &sig));
    }
}
