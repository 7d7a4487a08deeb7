//! The owner's dashboard against the real binary: the browser-like client the
//! dashboard tests share, form tokens, security headers, escaping of what
//! agents assert, another owner's ids, and an approval through the page that
//! the agent's token reflects (signing in: `dashboard_signin.rs`).

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

#[path = "dashboard_signin.rs"]
mod signin;

#[path = "dashboard_upstreams.rs"]
mod upstreams;
