//! Keys: the agent's Ed25519 key pair, public JWKs and RFC 7638 thumbprints.

use std::fmt;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::b64;
use crate::clock::Random;
use crate::error::{Error, Result};
use crate::json;

/// Members that only a private JWK has (RFC 7517, 7518, 8037). A proof whose
/// `jwk` carries any of them is refused (RFC 9449 section 4.3, check 7).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// An agent's Ed25519 key pair. The secret never prints and is zeroized on drop
/// (`SigningKey` zeroizes itself).
#[derive(Clone)]
pub struct AgentKey {
    signing: SigningKey,
    thumbprint: String,
    /// The same key in aws-lc, which signs about twice as fast; with the `net`
    /// feature, which builds aws-lc anyway. Signatures are identical (RFC 8032
    /// is deterministic).
    #[cfg(feature = "net")]
    fast: Option<std::sync::Arc<aws_lc_rs::signature::Ed25519KeyPair>>,
}

impl AgentKey {
    /// Generate a fresh key from `rng` (the OS by default at the edges).
    pub fn generate(rng: &dyn Random) -> Result<Self> {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill(seed.as_mut())?;
        Ok(Self::from_signing(SigningKey::from_bytes(&seed)))
    }

    /// Build from a 32-byte Ed25519 seed (RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::from_signing(SigningKey::from_bytes(seed))
    }

    fn from_signing(signing: SigningKey) -> Self {
        let thumbprint = PublicJwk::Ed25519(signing.verifying_key().to_bytes()).thumbprint();
        #[cfg(feature = "net")]
        let fast = {
            let seed = Zeroizing::new(signing.to_bytes());
            aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(seed.as_ref())
                .ok()
                .map(std::sync::Arc::new)
        };
        AgentKey {
            signing,
            thumbprint,
            #[cfg(feature = "net")]
            fast,
        }
    }

    /// Import a private JWK (`{"kty":"OKP","crv":"Ed25519","d":..,"x":..}`).
    /// `x`, when present, must match `d`.
    pub fn from_private_jwk(text: &str) -> Result<Self> {
        let m = parse_jwk_json(text)?;
        if json::opt_str(&m, "kty").map_err(Error::InvalidKey)? != Some("OKP")
            || json::opt_str(&m, "crv").map_err(Error::InvalidKey)? != Some("Ed25519")
        {
            return Err(Error::InvalidKey("expected an OKP Ed25519 JWK".into()));
        }
        let d = json::req_str(&m, "d").map_err(Error::InvalidKey)?;
        let seed = Zeroizing::new(
            b64::decode_array::<32>(d)
                .ok_or_else(|| Error::InvalidKey("`d` is not 32 bytes of base64url".into()))?,
        );
        let key = Self::from_seed(&seed);
        if let Some(x) = json::opt_str(&m, "x").map_err(Error::InvalidKey)?
            && b64::decode_array::<32>(x) != Some(key.signing.verifying_key().to_bytes())
        {
            return Err(Error::InvalidKey("`x` does not match `d`".into()));
        }
        Ok(key)
    }

    /// Export as a private JWK. The string is zeroized when dropped.
    pub fn to_private_jwk(&self) -> Zeroizing<String> {
        let seed = Zeroizing::new(self.signing.to_bytes());
        Zeroizing::new(format!(
            r#"{{"kty":"OKP","crv":"Ed25519","d":"{}","x":"{}"}}"#,
            Zeroizing::new(b64::encode(seed.as_ref())).as_str(),
            b64::encode(self.signing.verifying_key().as_bytes())
        ))
    }

    /// Import a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self> {
        SigningKey::from_pkcs8_pem(pem)
            .map(Self::from_signing)
            .map_err(|_| Error::InvalidKey("not an Ed25519 PKCS#8 PEM private key".into()))
    }

    /// Export as PKCS#8 PEM. The string is zeroized when dropped.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        self.signing
            .to_pkcs8_pem(LineEnding::LF)
            .map(|s| Zeroizing::new(s.to_string()))
            .map_err(|e| Error::InvalidKey(format!("PKCS#8 encoding failed: {e}")))
    }

    /// The public JWK.
    pub fn public_jwk(&self) -> PublicJwk {
        PublicJwk::Ed25519(self.signing.verifying_key().to_bytes())
    }

    /// The RFC 7638 SHA-256 thumbprint of the public JWK (what `cnf.jkt` holds).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// Sign `msg` (Ed25519, deterministic).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        #[cfg(feature = "net")]
        if let Some(Ok(sig)) = self.fast.as_ref().map(|k| k.try_sign(msg))
            && let Ok(out) = <[u8; 64]>::try_from(sig.as_ref())
        {
            return out;
        }
        self.signing.sign(msg).to_bytes()
    }

    /// The raw 32-byte public key.
    pub fn public_bytes(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }
}

impl fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentKey")
            .field("thumbprint", &self.thumbprint)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A public key as it appears in a `jwk` header or a JWKS.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum PublicJwk {
    /// `{"kty":"OKP","crv":"Ed25519","x":..}`
    Ed25519([u8; 32]),
    /// `{"kty":"EC","crv":"P-256","x":..,"y":..}` (third-party DPoP clients only)
    P256 {
        /// The x coordinate, 32 bytes big-endian.
        x: [u8; 32],
        /// The y coordinate, 32 bytes big-endian.
        y: [u8; 32],
    },
}

impl fmt::Debug for PublicJwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicJwk({})", self.thumbprint())
    }
}

impl PublicJwk {
    /// Read a public JWK from a JSON object. Refuses private members, unknown key
    /// types and curves, malformed coordinates, points off the curve, and weak
    /// (small-order) Ed25519 keys.
    pub fn from_json(m: &Map<String, Value>) -> Result<Self> {
        Self::from_json_with_verifier(m).map(|(jwk, _)| jwk)
    }

    /// [`PublicJwk::from_json`], also returning the ready-to-use verifier so that
    /// the point is decompressed once per proof.
    pub fn from_json_with_verifier(m: &Map<String, Value>) -> Result<(Self, KeyVerifier)> {
        let jwk = Self::from_json_unchecked(m)?;
        let verifier = jwk.verifier()?;
        Ok((jwk, verifier))
    }

    /// The members of a public JWK, without the point checks that
    /// [`PublicJwk::verifier`] makes: only for callers that go on to get (or
    /// look up) its verifier.
    pub(crate) fn from_json_unchecked(m: &Map<String, Value>) -> Result<Self> {
        let bad = |msg: &str| Error::InvalidKey(msg.to_owned());
        if PRIVATE_MEMBERS.iter().any(|k| m.contains_key(*k)) {
            return Err(bad("the JWK contains private key material"));
        }
        let kty = json::req_str(m, "kty").map_err(Error::InvalidKey)?;
        let crv = json::req_str(m, "crv").map_err(Error::InvalidKey)?;
        let coord = |name: &str| -> Result<[u8; 32]> {
            let v = json::req_str(m, name).map_err(Error::InvalidKey)?;
            b64::decode_array::<32>(v)
                .ok_or_else(|| Error::InvalidKey(format!("`{name}` is not 32 bytes of base64url")))
        };
        let jwk = match (kty, crv) {
            ("OKP", "Ed25519") => PublicJwk::Ed25519(coord("x")?),
            ("EC", "P-256") => PublicJwk::P256 {
                x: coord("x")?,
                y: coord("y")?,
            },
            _ => return Err(bad("only OKP/Ed25519 and EC/P-256 keys are accepted")),
        };
        Ok(jwk)
    }

    /// The verifier for this key; refuses small-order Ed25519 points and points
    /// off P-256.
    pub fn verifier(&self) -> Result<KeyVerifier> {
        match self {
            PublicJwk::Ed25519(x) => {
                let vk = VerifyingKey::from_bytes(x)
                    .map_err(|_| Error::InvalidKey("not a valid Ed25519 point".into()))?;
                if vk.is_weak() {
                    return Err(Error::InvalidKey(
                        "weak (small-order) Ed25519 key refused".into(),
                    ));
                }
                Ok(KeyVerifier::Ed25519(vk))
            }
            PublicJwk::P256 { x, y } => {
                let mut sec1 = [0u8; 65];
                sec1[0] = 4;
                sec1[1..33].copy_from_slice(x);
                sec1[33..].copy_from_slice(y);
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                    .map(KeyVerifier::P256)
                    .map_err(|_| Error::InvalidKey("not a point on P-256".into()))
            }
        }
    }

    /// The canonical JSON of RFC 7638 (required members, lexicographic order).
    pub fn canonical_json(&self) -> String {
        match self {
            PublicJwk::Ed25519(x) => {
                format!(
                    r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                    b64::encode(x)
                )
            }
            PublicJwk::P256 { x, y } => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                b64::encode(x),
                b64::encode(y)
            ),
        }
    }

    /// The RFC 7638 SHA-256 thumbprint, base64url.
    pub fn thumbprint(&self) -> String {
        b64::encode(Sha256::digest(self.canonical_json().as_bytes()))
    }

    /// The public JWK as a JSON object (no `alg`, `kid` or `use`).
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        match self {
            PublicJwk::Ed25519(x) => {
                m.insert("kty".into(), "OKP".into());
                m.insert("crv".into(), "Ed25519".into());
                m.insert("x".into(), b64::encode(x).into());
            }
            PublicJwk::P256 { x, y } => {
                m.insert("kty".into(), "EC".into());
                m.insert("crv".into(), "P-256".into());
                m.insert("x".into(), b64::encode(x).into());
                m.insert("y".into(), b64::encode(y).into());
            }
        }
        m
    }
}

/// A validated public key, ready to verify signatures.
#[derive(Clone, Debug)]
pub enum KeyVerifier {
    /// Ed25519 (not small-order).
    Ed25519(VerifyingKey),
    /// P-256 ECDSA.
    P256(p256::ecdsa::VerifyingKey),
}

impl KeyVerifier {
    /// Verify `sig` over `msg` under `alg`, which must fit the key type.
    pub fn verify(&self, alg: crate::jws::Alg, msg: &[u8], sig: &[u8]) -> Result<()> {
        use crate::jws::Alg;
        match (alg, self) {
            (Alg::EdDsa | Alg::Ed25519, KeyVerifier::Ed25519(vk)) => verify_ed25519(vk, msg, sig),
            (Alg::Es256, KeyVerifier::P256(vk)) => {
                use p256::ecdsa::signature::Verifier as _;
                let sig = p256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| Error::InvalidKey("malformed ES256 signature".into()))?;
                vk.verify(msg, &sig)
                    .map_err(|_| Error::InvalidKey("signature does not verify".into()))
            }
            _ => Err(Error::InvalidKey(
                "the algorithm does not match the key type".into(),
            )),
        }
    }
}

/// A JWK given as JSON text (what the bindings receive), read as one strict
/// JSON object, for [`jwk_thumbprint`] or [`PublicJwk::from_json`]. Fails
/// with `invalid_key` when the text is not one JSON object.
pub fn parse_jwk_json(text: &str) -> Result<Map<String, Value>> {
    json::parse_object(text.as_bytes()).map_err(Error::InvalidKey)
}

/// RFC 7638 thumbprint of any JWK given as JSON (RSA, EC, OKP, oct), computed
/// from its required members only. Used for keys this crate does not verify with.
pub fn jwk_thumbprint(m: &Map<String, Value>) -> Result<String> {
    let kty = json::req_str(m, "kty").map_err(Error::InvalidKey)?;
    let members: &[&str] = match kty {
        "RSA" => &["e", "kty", "n"],
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "oct" => &["k", "kty"],
        _ => return Err(Error::InvalidKey(format!("unknown kty {kty:?}"))),
    };
    let mut canon = Map::new();
    for name in members {
        let v = json::req_str(m, name).map_err(Error::InvalidKey)?;
        canon.insert((*name).to_owned(), Value::String(v.to_owned()));
    }
    // serde_json's Map is a BTreeMap (no `preserve_order`): keys serialize sorted.
    let text = serde_json::to_string(&canon).map_err(|e| Error::InvalidKey(e.to_string()))?;
    Ok(b64::encode(Sha256::digest(text.as_bytes())))
}

/// Verify an Ed25519 signature.
///
/// `verify_strict` is used: it refuses non-canonical `S` (malleability),
/// small-order `R` and small-order public keys, and agrees with every `valid`
/// and `invalid` case of both Wycheproof Ed25519 files (checked by the tests).
/// Plain `verify` agrees with Wycheproof too, but is not documented to refuse
/// weak keys, which is exactly what a forged-proof attack on DPoP uses.
pub fn verify_ed25519(vk: &VerifyingKey, msg: &[u8], sig: &[u8]) -> Result<()> {
    let sig: [u8; 64] = sig
        .try_into()
        .map_err(|_| Error::InvalidKey("an Ed25519 signature is 64 bytes".into()))?;
    vk.verify_strict(msg, &Signature::from_bytes(&sig))
        .map_err(|_| Error::InvalidKey("signature does not verify".into()))
}

/// A raw Ed25519 verification with a 32-byte public key, for tests and benchmarks.
pub fn verify_ed25519_raw(public: &[u8; 32], msg: &[u8], sig: &[u8]) -> Result<()> {
    let vk = VerifyingKey::from_bytes(public)
        .map_err(|_| Error::InvalidKey("not a valid Ed25519 point".into()))?;
    verify_ed25519(&vk, msg, sig)
}
