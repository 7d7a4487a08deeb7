//! The owner's second factor on the dashboard: TOTP enrollment, sign-in that
//! asks for a code after the password, codes used once, recovery codes, the
//! sign-in budget, and the operator's reset.

use totp_rs::{Algorithm, Builder, Secret};

use crate::dashboard::{PASSWORD, Web, field, set_password, signed_in};
use protonpass_e2e::Broker;

pub(crate) fn now() -> u64 {
    use protonpass_agent::Clock as _;
    u64::try_from(protonpass_agent::SystemClock.now()).unwrap()
}

/// The code an authenticator app shows for `key` (base32) at `t`.
pub(crate) fn code(key: &str, t: u64) -> String {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(Secret::try_from_base32(key).unwrap())
        .build()
        .unwrap()
        .generate(t)
        .to_string()
}

/// The setup key shown on the enrollment page.
fn setup_key(html: &str) -> String {
    let start = html.find("<code class=\"secret\">").unwrap() + "<code class=\"secret\">".len();
    html[start..][..html[start..].find('<').unwrap()].to_owned()
}

/// Enroll `default` with TOTP; returns the setup key and the recovery codes.
async fn enroll(b: &Broker) -> (String, Vec<String>) {
    let (mut w, csrf) = signed_in(b).await;
    enroll_in(&mut w, &csrf).await
}

/// Enroll from the signed-in browser `w`.
pub(crate) async fn enroll_in(w: &mut Web, csrf: &str) -> (String, Vec<String>) {
    let account = w.get("/account").await;
    assert!(
        account.body.contains("Two-step sign-in is off"),
        "{}",
        account.body
    );
    // A session alone does not turn it on: the password is asked again.
    let bare = w.post("/account/mfa/start", &[("csrf", csrf)]).await;
    assert_eq!(bare.status, 401, "{}", bare.body);
    let start = w
        .post(
            "/account/mfa/start",
            &[("csrf", csrf), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(start.status, 200, "{}", start.body);
    let key = setup_key(&start.body);
    assert!(start.body.contains("otpauth://totp/"), "{}", start.body);
    // A wrong code does not turn it on.
    let wrong = w
        .post(
            "/account/mfa/confirm",
            &[("csrf", csrf), ("code", "000000")],
        )
        .await;
    assert_eq!(wrong.status, 400);
    let done = w
        .post(
            "/account/mfa/confirm",
            &[("csrf", csrf), ("code", &code(&key, now()))],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let codes: Vec<String> = done
        .body
        .split("<li><code>")
        .skip(1)
        .map(|s| s[..s.find('<').unwrap()].to_owned())
        .collect();
    assert_eq!(codes.len(), 10, "{}", done.body);
    (key, codes)
}

/// Password step: returns the browser, which now holds the pending cookie.
pub(crate) async fn password_step(b: &Broker) -> (Web, String) {
    let mut w = Web::new(b);
    let p = w.login("default", PASSWORD).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(p.location().starts_with("/login/code"), "{}", p.location());
    // No session yet: the dashboard still sends the browser to sign in.
    assert_eq!(w.get("/agents").await.status, 303);
    let form = w.get(p.location()).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = form.csrf();
    (w, csrf)
}

#[tokio::test]
async fn sign_in_asks_for_a_code_once_enrolled_and_each_code_works_once() {
    if protonpass_e2e::on_postgres() {
        return; // looks into SQLite's files or the data directory
    }
    let b = Broker::start(&[]);
    let (key, recovery) = enroll(&b).await;
    // The secret is sealed: the database does not hold the setup key.
    let db = std::fs::read(b.data.join("broker.db")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains(&key));

    // A wrong code: refused, no session.
    let (mut w, csrf) = password_step(&b).await;
    let bad = w
        .post(
            "/login/code",
            &[("csrf", &csrf), ("code", "123456"), ("next", "/agents")],
        )
        .await;
    assert_eq!(bad.status, 401, "{}", bad.body);
    assert_eq!(w.get("/agents").await.status, 303);
    // The right code: signed in. (The code of the enrollment's time step was
    // spent by the enrollment; the next step's is within the allowed skew.)
    let c = code(&key, now() + 30);
    let csrf = field(&bad.body, "csrf");
    let ok = w
        .post(
            "/login/code",
            &[("csrf", &csrf), ("code", &c), ("next", "/agents")],
        )
        .await;
    assert_eq!((ok.status, ok.location()), (303, "/agents"), "{}", ok.body);
    assert_eq!(w.get("/agents").await.status, 200);

    // The same code again (a shoulder-surfer, a replay): refused.
    let (mut w2, csrf2) = password_step(&b).await;
    let again = w2
        .post(
            "/login/code",
            &[("csrf", &csrf2), ("code", &c), ("next", "/agents")],
        )
        .await;
    assert_eq!(again.status, 401, "{}", again.body);
    // A recovery code signs in once.
    let csrf2 = field(&again.body, "csrf");
    let rec = w2
        .post(
            "/login/code",
            &[
                ("csrf", &csrf2),
                ("code", &recovery[0].to_uppercase()),
                ("next", "/agents"),
            ],
        )
        .await;
    assert_eq!(rec.status, 303, "{}", rec.body);
    let (mut w3, csrf3) = password_step(&b).await;
    let spent = w3
        .post(
            "/login/code",
            &[
                ("csrf", &csrf3),
                ("code", &recovery[0]),
                ("next", "/agents"),
            ],
        )
        .await;
    assert_eq!(spent.status, 401);

    // The password alone, without the pending step, never reaches a page;
    // a forged pending cookie neither.
    let mut forged = Web::new(&b);
    let f = forged.get("/login/code").await;
    assert_eq!(f.status, 303);

    // The audit says what happened, without the codes.
    let audit = b.cli_ok(&["audit", "export"]).to_string();
    assert!(
        audit.contains("mfa_enrolled") && audit.contains("login_second_factor"),
        "{audit}"
    );
    assert!(!audit.contains(&c) && !audit.contains(&recovery[0]));
}

#[tokio::test]
async fn wrong_codes_spend_the_sign_in_budget() {
    let b = Broker::start(&[]);
    let _ = enroll(&b).await;
    let (mut w, mut csrf) = password_step(&b).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let p = w
            .post(
                "/login/code",
                &[("csrf", &csrf), ("code", "000000"), ("next", "/agents")],
            )
            .await;
        statuses.push(p.status);
        csrf = field(&p.body, "csrf");
    }
    // Five wrong codes (the password step's attempt was refunded), then paused.
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429], "{statuses:?}");
}

#[tokio::test]
async fn the_operator_resets_a_lost_second_factor() {
    let b = Broker::start(&[]);
    let _ = enroll(&b).await;
    let (code, v) = b.cli(&["owner", "mfa-reset", "nobody"]);
    assert_eq!(code, 1, "{v}");
    let v = b.cli_ok(&["owner", "mfa-reset", "default"]);
    assert_eq!(v["removed"], true, "{v}");
    // The password alone signs in again.
    set_password(&b, "default", PASSWORD);
    let mut w = Web::new(&b);
    let p = w.login("default", PASSWORD).await;
    assert_eq!((p.status, p.location()), (303, "/agents"), "{}", p.body);
}

#[tokio::test]
async fn turning_it_on_ends_other_sessions_and_turning_it_off_needs_password_and_code() {
    let b = Broker::start(&[]);
    // Two browsers signed in with the password alone; one turns the second
    // factor on, and the other's session ends.
    let (mut first, csrf) = signed_in(&b).await;
    let mut other = Web::new(&b);
    assert_eq!(other.login("default", PASSWORD).await.status, 303);
    assert_eq!(other.get("/agents").await.status, 200);
    let (key, recovery) = enroll_in(&mut first, &csrf).await;
    assert_eq!(other.get("/agents").await.status, 303);
    assert_eq!(first.get("/agents").await.status, 200);

    // Signed in with both factors.
    let (mut w, csrf) = password_step(&b).await;
    let c = code(&key, now() + 30);
    let ok = w
        .post(
            "/login/code",
            &[("csrf", &csrf), ("code", &c), ("next", "/agents")],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let page = w.get("/account").await;
    let csrf = field(&page.body, "csrf");
    // A code without the password, or the password with a wrong code: refused.
    let r = w
        .post(
            "/account/mfa/disable",
            &[("csrf", &csrf), ("code", &code(&key, now()))],
        )
        .await;
    assert_eq!(r.status, 401);
    let r = w
        .post(
            "/account/mfa/disable",
            &[("csrf", &csrf), ("password", PASSWORD), ("code", "000000")],
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(
        w.get("/account")
            .await
            .body
            .contains("Two-step sign-in is on")
    );
    // Both (this minute's codes were spent signing in; a recovery code does
    // it): off.
    let r = w
        .post(
            "/account/mfa/disable",
            &[
                ("csrf", &csrf),
                ("password", PASSWORD),
                ("code", &recovery[1]),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(
        w.get("/account")
            .await
            .body
            .contains("Two-step sign-in is off")
    );
}

/// Approving a permission the resource's catalog marks high-risk asks for the
/// second factor again; a low-risk approval does not, and a code works once.
#[tokio::test]
async fn approving_a_high_risk_permission_asks_for_the_code_again() {
    const SHOP: &str = "https://shop.example";
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    let path = b.data.join("shop-scopes.toml");
    std::fs::write(
        &path,
        "[[scope]]\nname = \"shop:browse\"\ndescription = \"Browse the shop\"\nrisk = \"low\"\n\
         [[scope]]\nname = \"payment:execute\"\ndescription = \"Pay for orders\"\nrisk = \"high\"\n",
    )
    .unwrap();
    b.cli_ok(&["resource", "add", SHOP, "--scopes", path.to_str().unwrap()]);
    let (mut w, csrf) = signed_in(&b).await;
    let (key, _) = enroll_in(&mut w, &csrf).await;
    let csrf = field(&w.get("/account").await.body, "csrf");

    let d = crate::device::start_device(&b, "shop:browse payment:execute", Some(SHOP)).await;
    let uc = d.s("user_code");
    let page = w.lookup(&csrf, &uc).await;
    assert!(page.body.contains("name=\"code\""), "{}", page.body);
    let decide = |code: Option<String>, scopes: Vec<&'static str>| {
        let mut f: Vec<(&str, String)> = vec![
            ("csrf", csrf.clone()),
            ("step", "decide".into()),
            ("user_code", uc.clone()),
            ("ttl", "3600".into()),
            ("action", "approve".into()),
        ];
        f.extend(scopes.into_iter().map(|s| ("scope", s.to_owned())));
        if let Some(c) = code {
            f.push(("code", c));
        }
        f
    };
    // No code, then a wrong one: refused, the request stays pending.
    let r = post(
        &mut w,
        &decide(None, vec!["shop:browse", "payment:execute"]),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("high-risk permission"), "{}", r.body);
    let r = post(
        &mut w,
        &decide(
            Some("000000".into()),
            vec!["shop:browse", "payment:execute"],
        ),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(b.cli_ok(&["pending"]).as_array().unwrap().len(), 1);
    // The right code approves.
    let c = code(&key, now() + 30);
    let r = post(
        &mut w,
        &decide(Some(c.clone()), vec!["shop:browse", "payment:execute"]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("may now act for you"), "{}", r.body);
    let audit = protonpass_e2e::audit_records(&b);
    let confirmed = audit
        .iter()
        .filter(|a| a["event"] == "second_factor_confirmed")
        .count();
    assert_eq!(confirmed, 1, "{audit:?}");

    // A second request: the same code again is refused (used once) ...
    let d2 = crate::device::start_device(&b, "shop:browse payment:execute", Some(SHOP)).await;
    let uc2 = d2.s("user_code");
    let mut f = decide(Some(c), vec!["shop:browse", "payment:execute"]);
    f[2].1 = uc2.clone();
    let r = post(&mut w, &f).await;
    assert_eq!(r.status, 401, "{}", r.body);
    // ... and with the high-risk permission unticked no code is needed.
    let mut f = decide(None, vec!["shop:browse"]);
    f[2].1 = uc2;
    let r = post(&mut w, &f).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

async fn post(w: &mut Web, f: &[(&str, String)]) -> crate::dashboard::Page {
    let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    w.post("/device", &refs).await
}
