//! Passkeys on the dashboard against the real binary, with a software
//! authenticator (Ed25519, as a security key would sign): adding one needs the
//! password and a fresh challenge from this origin; at sign-in a passkey
//! stands in for the code; an answer works once, only for the sign-in its
//! challenge was issued to, and only with a growing counter; removing one
//! needs the password. The broker is reached as http://localhost:PORT
//! (WebAuthn accepts no IP address as relying party id).

use ed25519_dalek::{Signer as _, SigningKey};
use protonpass_agent::b64;
use sha2::{Digest as _, Sha256};

use crate::dashboard::{PASSWORD, Page, Web, set_password};
use crate::mfa::{enroll_in, password_step};
use protonpass_e2e::{Broker, audit_records};

/// A broker whose issuer is `http://localhost:PORT`.
fn start() -> (Broker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer = format!("http://localhost:{port}");
    let b = Broker::launch(
        dir.path(),
        &format!("127.0.0.1:{port}"),
        &["--issuer", &issuer],
        &[],
    );
    assert_eq!(b.url, issuer);
    (b, dir)
}

fn attr(html: &str, name: &str) -> String {
    let pat = format!("{name}=\"");
    let start = html
        .find(&pat)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + pat.len();
    html[start..][..html[start..].find('"').unwrap()].to_owned()
}

/// A security key holding one Ed25519 credential.
struct Key {
    sk: SigningKey,
    id: Vec<u8>,
    counter: u32,
}

impl Key {
    fn new(seed: u8) -> Key {
        Key {
            sk: SigningKey::from_bytes(&[seed; 32]),
            id: vec![seed; 16],
            counter: 0,
        }
    }

    fn client_data(kind: &str, challenge: &str, origin: &str) -> Vec<u8> {
        serde_json::json!({"type": kind, "challenge": challenge, "origin": origin})
            .to_string()
            .into_bytes()
    }

    /// `navigator.credentials.create` for `page` (the "Add a passkey" page).
    fn create(&self, page: &Page, origin: &str, csrf: &str) -> Vec<(String, String)> {
        let cd = Self::client_data(
            "webauthn.create",
            &attr(&page.body, "data-challenge"),
            origin,
        );
        let x = self.sk.verifying_key().to_bytes();
        let mut ad = Sha256::digest(b"localhost").to_vec();
        ad.push(0x41); // user present, attested credential data
        ad.extend(0u32.to_be_bytes());
        ad.extend([0u8; 16]);
        ad.extend(u16::try_from(self.id.len()).unwrap().to_be_bytes());
        ad.extend(&self.id);
        // COSE_Key {1: 1 (OKP), 3: -8 (EdDSA), -1: 6 (Ed25519), -2: x}.
        ad.extend([0xa4, 0x01, 0x01, 0x03, 0x27, 0x20, 0x06, 0x21, 0x58, 0x20]);
        ad.extend(x);
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend(x);
        vec![
            ("csrf".into(), csrf.into()),
            ("name".into(), "Test key".into()),
            ("pk_id".into(), b64::encode(&self.id)),
            ("pk_client_data".into(), b64::encode(&cd)),
            ("pk_auth_data".into(), b64::encode(&ad)),
            ("pk_public_key".into(), b64::encode(&spki)),
            ("pk_alg".into(), "-8".into()),
        ]
    }

    /// `navigator.credentials.get` answering the challenge on `page`.
    fn get(&mut self, page: &Page, origin: &str) -> Vec<(String, String)> {
        self.counter += 1;
        let cd = Self::client_data("webauthn.get", &attr(&page.body, "data-challenge"), origin);
        let mut ad = Sha256::digest(b"localhost").to_vec();
        ad.push(0x01);
        ad.extend(self.counter.to_be_bytes());
        let mut signed = ad.clone();
        signed.extend(Sha256::digest(&cd));
        vec![
            ("csrf".into(), page.csrf()),
            ("next".into(), "/agents".into()),
            ("pk_id".into(), b64::encode(&self.id)),
            ("pk_client_data".into(), b64::encode(&cd)),
            ("pk_auth_data".into(), b64::encode(&ad)),
            (
                "pk_signature".into(),
                b64::encode(self.sk.sign(&signed).to_bytes()),
            ),
        ]
    }
}

async fn post(w: &mut Web, path: &str, f: &[(String, String)]) -> Page {
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    w.post(path, &f).await
}

#[tokio::test]
async fn a_passkey_is_added_with_the_password_and_signs_in_once_per_challenge() {
    let (b, _dir) = start();
    let origin = b.url.clone();
    set_password(&b, "default", PASSWORD);
    let mut w = Web::new(&b);
    let p = w.login("default", PASSWORD).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let csrf = w.get("/agents").await.csrf();
    let (totp_key, _) = enroll_in(&mut w, &csrf).await;
    let csrf = w.get("/account").await.csrf();
    // The next time step's code (the enrollment spent the current one).
    let c = crate::mfa::code(&totp_key, crate::mfa::now() + 30);

    // Adding one needs the password and a current code again.
    let bare = w.post("/account/passkey/new", &[("csrf", &csrf)]).await;
    assert_eq!(bare.status, 401, "{}", bare.body);
    let no_code = w
        .post(
            "/account/passkey/new",
            &[("csrf", &csrf), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(no_code.status, 401, "{}", no_code.body);
    let mut key = Key::new(7);
    // An answer made for another origin is refused, and spends the challenge.
    let page = w
        .post(
            "/account/passkey/new",
            &[("csrf", &csrf), ("password", PASSWORD), ("code", &c)],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let evil = key.create(&page, "http://localhost.evil.example", &csrf);
    assert_eq!(
        post(&mut w, "/account/passkey/add", &evil).await.status,
        400
    );
    let good = key.create(&page, &origin, &csrf);
    assert_eq!(
        post(&mut w, "/account/passkey/add", &good).await.status,
        400
    );
    // With a fresh challenge it is added.
    let page = w
        .post(
            "/account/passkey/new",
            &[("csrf", &csrf), ("password", PASSWORD), ("code", &c)],
        )
        .await;
    let added = post(
        &mut w,
        "/account/passkey/add",
        &key.create(&page, &origin, &csrf),
    )
    .await;
    assert_eq!(
        (added.status, added.location()),
        (303, "/account"),
        "{}",
        added.body
    );
    assert!(w.get("/account").await.body.contains("Test key"));

    // Sign-in: the passkey stands in for the code.
    let (mut a, _) = password_step(&b).await;
    let page_a = a.get("/login/code?next=%2Fagents").await;
    assert!(page_a.body.contains("Use a passkey"), "{}", page_a.body);
    // An answer to another pending sign-in's challenge is refused here (and
    // spends nothing of that sign-in's).
    let (mut other, _) = password_step(&b).await;
    let page_o = other.get("/login/code?next=%2Fagents").await;
    let mut foreign = key.get(&page_o, &origin);
    foreign[0].1 = page_a.csrf();
    assert_eq!(post(&mut a, "/login/code", &foreign).await.status, 401);
    let page_a = a.get("/login/code?next=%2Fagents").await;
    let answer = key.get(&page_a, &origin);
    let ok = post(&mut a, "/login/code", &answer).await;
    assert_eq!((ok.status, ok.location()), (303, "/agents"), "{}", ok.body);
    assert_eq!(a.get("/agents").await.status, 200);
    // The other sign-in's own challenge is still there.
    let ok = post(&mut other, "/login/code", &key.get(&page_o, &origin)).await;
    assert_eq!(ok.status, 303, "{}", ok.body);

    // The same answer again (a replay) is refused: its challenge is spent.
    let (mut c, _) = password_step(&b).await;
    let page_c = c.get("/login/code?next=%2Fagents").await;
    let mut replay = answer.clone();
    replay[0].1 = page_c.csrf();
    assert_eq!(post(&mut c, "/login/code", &replay).await.status, 401);
    // A clone whose counter did not move on is refused.
    let page_c = c.get("/login/code?next=%2Fagents").await;
    key.counter -= 1;
    assert_eq!(
        post(&mut c, "/login/code", &key.get(&page_c, &origin))
            .await
            .status,
        401
    );
    // Another key under the same credential id is refused.
    let page_c = c.get("/login/code?next=%2Fagents").await;
    let mut forged = Key::new(9);
    forged.id = key.id.clone();
    forged.counter = key.counter + 5;
    assert_eq!(
        post(&mut c, "/login/code", &forged.get(&page_c, &origin))
            .await
            .status,
        401
    );
    // The real key, counter moving on, signs in.
    let page_c = c.get("/login/code?next=%2Fagents").await;
    key.counter += 1;
    let ok = post(&mut c, "/login/code", &key.get(&page_c, &origin)).await;
    assert_eq!(ok.status, 303, "{}", ok.body);

    // Removing it needs the password.
    let csrf = w.get("/account").await.csrf();
    let id = b64::encode(&key.id);
    let wrong = w
        .post(
            "/account/passkey/remove",
            &[("csrf", &csrf), ("id", &id), ("password", "nope")],
        )
        .await;
    assert_eq!(wrong.status, 401);
    let gone = w
        .post(
            "/account/passkey/remove",
            &[("csrf", &csrf), ("id", &id), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(gone.status, 303);
    assert!(!w.get("/account").await.body.contains("Test key"));

    let audit = audit_records(&b);
    let events: Vec<&str> = audit.iter().filter_map(|r| r["event"].as_str()).collect();
    assert!(
        events.contains(&"passkey_enrolled") && events.contains(&"passkey_removed"),
        "{events:?}"
    );
    let used: Vec<_> = audit
        .iter()
        .filter(|r| r["event"] == "login_second_factor" && r["detail"]["factor"] == "passkey")
        .collect();
    assert_eq!(used.len(), 3, "{audit:?}");
}
