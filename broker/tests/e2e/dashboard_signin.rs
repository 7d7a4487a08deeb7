//! Signing in to the dashboard: the first run's setup link (to an owner-only
//! file, used once), and the limit on wrong passwords (one budget shared by
//! parallel guesses, not used up by a success, and no lock-out of a browser
//! that signed in before).

use super::*;

#[tokio::test]
async fn first_run_setup_link_goes_to_an_owner_only_file_when_stdout_is_not_a_terminal() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut b = Broker::start(&[]);
    // The default owner has no password: stdout (a pipe here) names the file,
    // not the link.
    let said = (0..5)
        .map(|_| b.stdout_line())
        .find(|l| l.contains("one-time link"))
        .unwrap();
    let file = b.data.join("setup-link");
    assert!(
        said.contains(file.to_str().unwrap()) && !said.contains("token="),
        "{said}"
    );
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let link = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(
        link.starts_with(&format!("{}/setup?token=", b.url)),
        "{link}"
    );
    let token = link.split("token=").nth(1).unwrap().to_owned();
    // The link works; once spent, the file is gone.
    let mut w = Web::new(&b);
    let form = w.get(&link[link.find("/setup?").unwrap()..]).await;
    assert_eq!(form.status, 200);
    let csrf = form.csrf();
    let staple = "correct horse battery staple";
    let done = w.set_up(&csrf, &token, staple, staple).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(!file.exists());
    // (Written before the link was served.) The log names the file and never holds the link.
    let log = std::fs::read_to_string(b.data.join("broker.log")).unwrap();
    assert!(log.contains("setup-link"), "{log}");
    assert!(!log.contains(&token));
}

#[tokio::test]
async fn setup_link_works_once_and_sets_a_session_cookie() {
    let b = Broker::start(&[]);
    let v = b.cli_ok(&["owner", "add", "alice"]);
    let url = v["setup_url"].as_str().unwrap();
    let path = &url[url.find("/setup?").unwrap()..];
    let mut w = Web::new(&b);
    let form = w.get(path).await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("alice"));
    let token = field(&form.body, "token");
    let csrf = form.csrf();
    // Two different passwords: refused, link still usable.
    let p = w.set_up(&csrf, &token, PASSWORD, "other password").await;
    assert_eq!(p.status, 400);
    let csrf = p.csrf();
    let p = w.set_up(&csrf, &token, PASSWORD, PASSWORD).await;
    p.assert_redirect("/agents");
    let cookie = p
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("pp_session="))
        .unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert_eq!(w.get("/agents").await.status, 200);
    // The link is spent.
    let mut other = Web::new(&b);
    assert_eq!(other.get(path).await.status, 404);
    // The new password signs in.
    assert_eq!(other.login("alice", PASSWORD).await.status, 303);
    assert_eq!(other.get("/agents").await.status, 200);
    // A password reset ends every session signed in before it.
    set_password(&b, "alice", "another long passphrase");
    for web in [&mut w, &mut other] {
        let p = web.get("/agents").await;
        p.assert_redirect("/login?next=%2Fagents");
    }
    // A password set from the CLI also voids setup links still out.
    let v = b.cli_ok(&["owner", "add", "alice"]);
    let url = v["setup_url"].as_str().unwrap();
    let path = &url[url.find("/setup?").unwrap()..];
    assert_eq!(Web::new(&b).get(path).await.status, 200);
    set_password(&b, "alice", "yet another long passphrase");
    assert_eq!(Web::new(&b).get(path).await.status, 404);
}

#[tokio::test]
async fn failed_sign_ins_are_limited() {
    let b = Broker::start(&[]);
    set_password(&b, "default", PASSWORD);
    let mut w = Web::new(&b);
    for _ in 0..5 {
        assert_eq!(w.login("default", "wrong password!").await.status, 401);
    }
    // Now even the right password waits.
    let p = w.login("default", PASSWORD).await;
    assert_eq!(p.status, 429);
    assert!(p.body.contains("paused"));
    let audit = b.cli_ok(&["audit", "tail", "-n", "3"]);
    assert!(audit.to_string().contains("login_locked"), "{audit}");
}

#[tokio::test]
async fn parallel_guesses_share_one_budget() {
    let b = Broker::start(&[]);
    set_password(&b, "default", PASSWORD);
    // Twelve guesses at once: the budget is charged before each password is
    // checked, so at most five are even considered.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let mut w = Web::new(&b);
        tasks.push(async move {
            w.login("default", &format!("wrong guess {i}!"))
                .await
                .status
        });
    }
    let statuses = futures_util::future::join_all(tasks).await;
    let considered = statuses.iter().filter(|s| **s == 401).count();
    assert!(considered <= 5, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    // The right password now waits too.
    assert_eq!(Web::new(&b).login("default", PASSWORD).await.status, 429);
}

#[tokio::test]
async fn a_successful_sign_in_does_not_use_up_the_budget() {
    let b = Broker::start(&[]);
    set_password(&b, "default", PASSWORD);
    for _ in 0..7 {
        let p = Web::new(&b).login("default", PASSWORD).await;
        assert!(p.status == 303 || p.status == 200, "{}", p.status);
    }
}

#[tokio::test]
async fn a_flood_of_wrong_passwords_does_not_lock_the_owner_out_of_a_known_browser() {
    let b = Broker::start(&[]);
    set_password(&b, "default", PASSWORD);
    // The owner's browser signed in before: it holds a known-device cookie.
    let mut owner = Web::new(&b);
    assert_eq!(owner.login("default", PASSWORD).await.status, 303);
    assert!(
        owner.cookies.iter().any(|(k, _)| k == "pp_device"),
        "{:?}",
        owner.cookies
    );
    // An attacker who knows the name floods the form from other browsers.
    for _ in 0..3 {
        let mut attacker = Web::new(&b);
        for _ in 0..5 {
            attacker.login("default", "wrong password!").await;
        }
    }
    let mut unknown = Web::new(&b);
    assert_eq!(
        unknown.login("default", PASSWORD).await.status,
        429,
        "unknown browsers share the locked budget"
    );
    // The owner's own browser (signed out since, its known-device cookie
    // kept) still gets in.
    let mut again = Web::new(&b);
    again.cookies = owner
        .cookies
        .iter()
        .filter(|(k, _)| k == "pp_device")
        .cloned()
        .collect();
    let p = again.login("default", PASSWORD).await;
    p.assert_redirect("/agents");
    // Fifteen wrong passwords left a bounded trail: one failure and one lock
    // record per window, however long the flood.
    let audit = protonpass_e2e::audit_records(&b);
    let failed = audit
        .iter()
        .filter(|r| r["event"] == "login_failed")
        .count();
    let locked = audit
        .iter()
        .filter(|r| r["event"] == "login_locked")
        .count();
    assert_eq!((failed, locked), (1, 1), "{audit:?}");
}
