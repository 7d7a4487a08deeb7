//! The owner's dashboard against the real binary: setup link, sign-in and its
//! limit, form tokens, security headers, escaping of what agents assert, and an
//! approval through the page that the agent's token reflects.

use std::io::Write as _;
use std::process::{Command, Stdio};

use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;

use protonpass_e2e::{API, Broker, broker_bin, claims, key};

pub(crate) const PASSWORD: &str = "correct horse battery";

/// A browser-like client: no redirects followed, cookies kept by hand.
pub(crate) struct Web {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

pub(crate) struct Page {
    pub(crate) status: u16,
    headers: HeaderMap,
    pub(crate) body: String,
}

impl Page {
    /// The value of the first hidden `csrf` field.
    pub(crate) fn csrf(&self) -> String {
        field(&self.body, "csrf")
    }
    pub(crate) fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .map_or("", |v| v.to_str().unwrap())
    }
    /// Assert that the page holds `text` (the page is the failure's message).
    #[track_caller]
    pub(crate) fn assert_shows(&self, text: &str) {
        assert!(self.body.contains(text), "{}", self.body);
    }
    /// Assert that the answer is a redirect (303) to `to`.
    #[track_caller]
    pub(crate) fn assert_redirect(&self, to: &str) {
        assert_eq!((self.status, self.location()), (303, to), "{}", self.body);
    }
    /// Assert that the page does not hold `text`.
    #[track_caller]
    pub(crate) fn assert_hides(&self, text: &str) {
        assert!(!self.body.contains(text), "{}", self.body);
    }
}

pub(crate) fn field(html: &str, name: &str) -> String {
    let pat = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&pat)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + pat.len();
    html[start..][..html[start..].find('"').unwrap()].to_owned()
}

impl Web {
    pub(crate) fn new(b: &Broker) -> Web {
        Web {
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            base: b.url.clone(),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn take(&mut self, r: reqwest::Response) -> Page {
        for c in r.headers().get_all(SET_COOKIE) {
            let c = c.to_str().unwrap();
            let (kv, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = kv.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != k);
            if !v.is_empty() {
                self.cookies.push((k.to_owned(), v.to_owned()));
            }
        }
        Page {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.text().await.unwrap(),
        }
    }

    pub(crate) async fn get(&mut self, path: &str) -> Page {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.take(r).await
    }

    pub(crate) async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        self.take(r).await
    }

    /// Post a form of the signed-in dashboard: its token `csrf`, then `fields`.
    pub(crate) async fn submit(&mut self, path: &str, csrf: &str, fields: &[(&str, &str)]) -> Page {
        let form = [&[("csrf", csrf)][..], fields].concat();
        self.post(path, &form).await
    }

    /// Enter an agent's user code on `/device` (the form's first step).
    pub(crate) async fn lookup(&mut self, csrf: &str, user_code: &str) -> Page {
        self.submit(
            "/device",
            csrf,
            &[("step", "lookup"), ("user_code", user_code)],
        )
        .await
    }

    /// Approve the agent's request `user_code` on `/device` for `scopes` and
    /// the lifetime `ttl` (seconds), with the form's `extra` fields.
    pub(crate) async fn approve(
        &mut self,
        csrf: &str,
        user_code: &str,
        scopes: &[&str],
        ttl: &str,
        extra: &[(&str, &str)],
    ) -> Page {
        let mut form = vec![("csrf", csrf), ("step", "decide"), ("user_code", user_code)];
        form.extend(scopes.iter().map(|s| ("scope", *s)));
        form.push(("ttl", ttl));
        form.extend_from_slice(extra);
        form.push(("action", "approve"));
        self.post("/device", &form).await
    }

    /// Sign in; returns the session's form token.
    pub(crate) async fn login(&mut self, owner: &str, password: &str) -> Page {
        let p = self.get("/login").await;
        assert_eq!(p.status, 200);
        let csrf = p.csrf();
        self.submit(
            "/login",
            &csrf,
            &[
                ("owner", owner),
                ("password", password),
                ("next", "/agents"),
            ],
        )
        .await
    }

    /// Post the setup link's form: the password, and it again.
    pub(crate) async fn set_up(
        &mut self,
        csrf: &str,
        token: &str,
        password: &str,
        again: &str,
    ) -> Page {
        let form = [("token", token), ("password", password), ("again", again)];
        self.submit("/setup", csrf, &form).await
    }
}

/// `owner add NAME --password-stdin`.
pub(crate) fn set_password(b: &Broker, owner: &str, password: &str) {
    let mut child = Command::new(broker_bin())
        .args([
            "--data",
            b.data.to_str().unwrap(),
            "owner",
            "add",
            owner,
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    assert!(child.wait().unwrap().success());
}

/// Signed in as `default`: the browser and its form token.
pub(crate) async fn signed_in(b: &Broker) -> (Web, String) {
    set_password(b, "default", PASSWORD);
    let mut w = Web::new(b);
    let p = w.login("default", PASSWORD).await;
    p.assert_redirect("/agents");
    let agents = w.get("/agents").await;
    assert_eq!(agents.status, 200);
    let csrf = agents.csrf();
    (w, csrf)
}

/// The token id (`jti`) of a fresh agent enrolled for `calendar:read` (with
/// more `grant create` options `extra`).
pub(crate) async fn enrolled_jti(b: &Broker, agent: &str, extra: &[&str]) -> serde_json::Value {
    let r = b.enroll(&key(), agent, "calendar:read", extra).await;
    claims(&r.s("access_token"))["jti"].clone()
}

/// A resource server's report of `uses` (`POST /audit/usage`), accepted.
pub(crate) async fn report_usage(b: &Broker, rs: &(String, String), uses: serde_json::Value) {
    let u = reqwest::Client::new()
        .post(format!("{}/audit/usage", b.url))
        .basic_auth(&rs.0, Some(&rs.1))
        .json(&uses)
        .send()
        .await
        .unwrap();
    assert_eq!(u.status(), 200);
}

fn assert_protected(p: &Page) {
    let h = |n: &str| {
        p.headers
            .get(n)
            .unwrap_or_else(|| panic!("missing {n}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let csp = h("content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    // Script only from the broker itself (the passkey helper), never inline or eval.
    assert!(
        csp.contains("script-src 'self';")
            && !csp.contains("unsafe-inline")
            && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(h("x-frame-options"), "DENY");
    assert_eq!(h("x-content-type-options"), "nosniff");
    assert_eq!(h("cache-control"), "no-store");
}

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
async fn pages_carry_security_headers_and_refuse_framing() {
    let b = Broker::start(&[]);
    let (mut w, _) = signed_in(&b).await;
    for path in [
        "/agents",
        "/usage",
        "/audit",
        "/device",
        "/device?user_code=BCDF-GHJK",
    ] {
        let p = w.get(path).await;
        assert_eq!(p.status, 200, "{path}");
        assert_protected(&p);
        assert!(!p.body.contains("<script"), "{path}");
    }
    let mut anon = Web::new(&b);
    let login = anon.get("/login").await;
    assert_protected(&login);
    // Signed out: pages send to the sign-in page and keep where to return.
    let p = anon.get("/device?user_code=BCDF-GHJK").await;
    assert_eq!(p.status, 303);
    assert_eq!(
        p.location(),
        "/login?next=%2Fdevice%3Fuser_code%3DBCDF-GHJK"
    );
    // An off-site `next` is ignored.
    let p = anon.get("/login?next=//evil.example/").await;
    assert!(p.body.contains("name=\"next\" value=\"/agents\""));
}

#[tokio::test]
async fn forms_without_the_token_are_refused() {
    let b = Broker::start(&[]);
    let k = key();
    b.enroll(&k, "bot", "calendar:read", &[]).await;
    let (mut w, csrf) = signed_in(&b).await;
    let before = b.cli_ok(&["grant", "list"]);
    let gid = before[0]["grant_id"].as_str().unwrap().to_owned();
    for form in [
        vec![("agent", "bot")],
        vec![
            ("agent", "bot"),
            ("csrf", "wrong-token-wrong-token-wrong-tok"),
        ],
        vec![("agent", "bot"), ("csrf", "")],
    ] {
        let p = w.post("/agents/revoke-agent", &form).await;
        assert_eq!(p.status, 403, "{form:?}");
    }
    assert_eq!(w.post("/agents/revoke", &[("id", &gid)]).await.status, 403);
    assert_eq!(w.post("/logout", &[]).await.status, 403);
    let after = b.cli_ok(&["grant", "list"]);
    assert_eq!(after[0]["status"], "active");
    // Sign-in without the form cookie's token is refused too.
    let mut anon = Web::new(&b);
    let p = anon
        .post("/login", &[("owner", "default"), ("password", PASSWORD)])
        .await;
    assert_eq!(p.status, 403);
    // With the token it works, and the feed has the grant at once.
    let p = w.submit("/agents/revoke", &csrf, &[("id", &gid)]).await;
    p.assert_redirect("/agents?done=grant");
    let feed = b.feed(0).await;
    assert!(feed.iter().any(|e| e["gid"] == gid.as_str()));
}

#[tokio::test]
async fn what_agents_assert_is_shown_inert() {
    let b = Broker::start(&[]);
    let evil = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    let d = b
        .post_form(
            "/oauth/device_authorization",
            &[
                ("client_id", evil),
                ("scope", "travel:book"),
                ("resource", "javascript:alert(3)"),
            ],
            &[],
        )
        .await;
    assert_eq!(d.status, 200, "{}", d.body);
    let (mut w, csrf) = signed_in(&b).await;
    let p = w.lookup(&csrf, &d.s("user_code")).await;
    assert_eq!(p.status, 200, "{}", p.body);
    p.assert_hides("<script>alert");
    assert!(!p.body.contains("<img src=x"));
    assert!(p.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(p.body.contains("not verified"));
    assert!(!p.body.contains("href=\"javascript:"));
    assert!(p.body.contains("<code>javascript:alert(3)</code>"));
    // Approved, the same name on the agents page is inert as well.
    let p = w
        .approve(&csrf, &d.s("user_code"), &["travel:book"], "3600", &[])
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(!p.body.contains("<script>alert"));
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
async fn approval_in_the_page_narrows_the_agents_token() {
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    // The agent signs its request: the page can show which key asks.
    let k = key();
    let proof = b.proof(&k, &format!("{}/oauth/device_authorization", b.url), None);
    let d = b
        .post_form(
            "/oauth/device_authorization",
            &[
                ("client_id", "travel-bot"),
                (
                    "scope",
                    "travel:book travel:search payment:execute:under-100",
                ),
                ("resource", API),
            ],
            &[("DPoP", proof)],
        )
        .await;
    let (mut w, csrf) = signed_in(&b).await;
    // The complete URI pre-fills the code.
    let uc = d.s("user_code");
    let p = w.get(&format!("/device?user_code={uc}")).await;
    assert!(p.body.contains(&format!("value=\"{uc}\"")));
    let p = w.lookup(&csrf, &uc.to_lowercase()).await;
    p.assert_shows("Book travel on api.example");
    assert!(
        p.body.contains(&k.thumbprint()[..12]),
        "the key's short fingerprint is shown"
    );
    assert!(p.body.contains("Pay under 100"));
    let p = w
        .approve(
            &csrf,
            &uc,
            &["travel:book", "payment:execute:under-100"],
            "86400",
            &[],
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let t = b
        .token(
            &k,
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", &d.s("device_code")),
                ("client_id", "travel-bot"),
            ],
        )
        .await;
    assert_eq!(t.status, 200, "{}", t.body);
    let mut granted: Vec<String> = t.s("scope").split(' ').map(str::to_owned).collect();
    granted.sort();
    assert_eq!(granted, ["payment:execute:under-100", "travel:book"]);
    let c = claims(&t.s("access_token"));
    let iat = c["iat"].as_i64().unwrap();
    assert_eq!(t.body["grant_expires_at"].as_i64().unwrap() - iat, 86400);
    // The agents page lists the grant with its key and its live token.
    let page = w.get("/agents").await;
    assert!(page.body.contains(c["jti"].as_str().unwrap()));
    assert!(page.body.contains(&c["cnf"]["jkt"].as_str().unwrap()[..12]));
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
async fn another_owners_ids_answer_as_unknown_ones() {
    let b = Broker::start(&[]);
    b.add_owners(&["alice", "bob"]);
    let bobs = b.create_grant("bobs-bot", "mail:read", &["--owner", "bob"]);
    let gid = bobs["grant_id"].as_str().unwrap().to_owned();
    let (mut w, csrf) = signed_in(&b).await;
    let mut answers = Vec::new();
    for id in [
        gid.as_str(),
        "AAAAAAAAAAAAAAAAAAAAAA",
        "' OR '1'='1",
        "x'; DELETE FROM grants; --",
        "%",
    ] {
        let p = w.submit("/agents/revoke", &csrf, &[("id", id)]).await;
        // The page echoes nothing of the id: one answer for all of them.
        assert!(!p.body.contains(id), "{id}: {}", p.body);
        answers.push((p.status, p.body.replace(&csrf, "")));
    }
    assert_eq!(answers[0].0, 404, "{}", answers[0].1);
    assert!(
        answers.iter().all(|a| a == &answers[0]),
        "another owner's id must answer as an unknown one: {answers:?}"
    );
    let p = w
        .submit("/agents/revoke-agent", &csrf, &[("agent", "bobs-bot")])
        .await;
    p.assert_redirect("/agents?done=none");
    // Bob's grant is untouched and his agent is not listed to this owner.
    let list = b.cli_ok(&["grant", "list", "--owner", "bob"]);
    assert_eq!(list[0]["status"], "enrolling");
    assert!(!w.get("/agents").await.body.contains("bobs-bot"));
}

#[tokio::test]
async fn an_owner_cannot_approve_another_owners_audience_in_the_page() {
    let b = Broker::start(&[]);
    b.add_owners(&["alice"]);
    b.resource(API, Some("alice"));
    let ask = |resource: &'static str| {
        let b = &b;
        async move {
            b.device_authorization("bot", "travel:book", resource)
                .await
                .s("user_code")
        }
    };
    let (mut w, csrf) = signed_in(&b).await;
    // The page says whose audience it is before the owner decides.
    let uc = ask(API).await;
    let p = w.lookup(&csrf, &uc).await;
    p.assert_shows("registered by another owner");
    let p = w.approve(&csrf, &uc, &["travel:book"], "3600", &[]).await;
    assert_eq!(p.status, 400, "{}", p.body);
    p.assert_shows("another owner");
    // Nothing was approved: the request is still pending, the owner has no grant.
    let list = b.cli_ok(&["grant", "list"]);
    assert_eq!(list.as_array().map_or(0, Vec::len), 0, "{list}");
    let (code, v) = b.cli(&["approve", &uc, "--owner", "alice"]);
    assert_eq!(code, 0, "{v}");
    // An audience nobody registered is shown as such.
    let uc = ask("https://unregistered.example").await;
    let p = w.lookup(&csrf, &uc).await;
    p.assert_shows("not registered on this broker");
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

#[tokio::test]
async fn the_usage_page_counts_each_agents_allowed_and_refused_calls() {
    let b = Broker::start(&[]);
    let mine = enrolled_jti(&b, "trip-bot", &[]).await;
    b.cli_ok(&["owner", "add", "mallory"]);
    let theirs = enrolled_jti(&b, "spy-bot", &["--owner", "mallory"]).await;
    // Registered once mallory holds a token for it (no other owner can be
    // granted a registered audience).
    let rs = b.resource(API, None);
    report_usage(
        &b,
        &rs,
        serde_json::json!({"uses": [
            {"jti": mine, "method": "GET", "path": "/events", "decision": "allow", "reason": "plan"},
            {"jti": mine, "method": "GET", "path": "/events", "decision": "deny", "code": "invalid_dpop_proof", "reason": "replay"},
            // A reporter older than `code`: the code in `reason`.
            {"jti": mine, "method": "DELETE", "path": "/events/1", "decision": "deny", "reason": "insufficient_scope"},
            {"method": "GET", "path": "/events", "decision": "deny", "code": "invalid_token", "reason": "missing_claim"},
            // Another owner's token at this owner's service: not attributed.
            {"jti": theirs, "method": "GET", "path": "/events", "decision": "deny", "code": "invalid_token", "reason": "owner"}
        ]}),
    )
    .await;
    let (mut w, _) = signed_in(&b).await;
    let p = w.get("/usage").await;
    assert_eq!(p.status, 200);
    assert_protected(&p);
    let cards: Vec<&str> = p.body.split("<section").skip(1).collect();
    let card = |name: &str| {
        *cards
            .iter()
            .find(|c| c.contains(name))
            .unwrap_or_else(|| panic!("no {name} in {}", p.body))
    };
    let bot = card("trip-bot");
    assert!(bot.contains("<dd class=\"allowed\">1</dd>"), "{bot}");
    assert!(bot.contains("<dd class=\"refused\">2</dd>"), "{bot}");
    assert!(
        bot.contains("invalid_dpop_proof") && bot.contains("replay"),
        "{bot}"
    );
    assert!(bot.contains("insufficient_scope"), "{bot}");
    let unattributed = card("Unattributed");
    assert!(
        unattributed.contains("<dd class=\"refused\">2</dd>"),
        "{unattributed}"
    );
    assert!(
        unattributed.contains("missing_claim") && unattributed.contains(">owner<"),
        "{unattributed}"
    );
    assert!(
        !p.body.contains("spy-bot"),
        "another owner's agent is named"
    );
}

#[path = "dashboard_upstreams.rs"]
mod upstreams;
