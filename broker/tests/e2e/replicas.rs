//! PostgreSQL only (`PROTONPASS_TEST_STORE`): two broker replicas on one
//! database behind nginx alternating between them (round robin, the
//! configuration in deploy/nginx-replicas-loopback.conf) act as one broker:
//! one issuer and one set of signing keys, nonces, refresh rotation and reuse
//! detection, device-code single use and `slow_down`, token-exchange bounds,
//! one audit chain. Faults are in `replicas_faults.rs`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protonpass_agent::AgentKey;
use protonpass_agent::wire::{TOKEN_TYPE_ACCESS, TOKEN_TYPE_REFRESH};
use serde_json::Value;

use protonpass_e2e::{API, Broker, Reply, audit_records, claims, free_port, key, test_store};

pub(crate) const DEVICE: &str = "urn:ietf:params:oauth:grant-type:device_code";
const NGINX_CONF: &str = include_str!("../../../deploy/nginx-replicas-loopback.conf");

/// nginx, stopped (SIGTERM to its master, which stops its workers) on drop.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two replicas behind nginx. `a.url` and `b.url` are both the proxy's URL
/// (the replicas' issuer): the kit's requests go through the proxy;
/// `direct` reaches one replica.
pub(crate) struct Replicas {
    _nginx: Nginx,
    pub b: Broker,
    pub a: Broker,
    _dir: tempfile::TempDir,
}

/// nginx: `PROTONPASS_NGINX`, else on the PATH, else /usr/sbin/nginx.
fn nginx_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PROTONPASS_NGINX")
        && !p.is_empty()
    {
        return p.into();
    }
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "THE REPLICA TESTS NEED NGINX, which is not installed. Install it with \
                 `sudo apt-get install -y nginx` (`bash scripts/setup-tools.sh postgres` does it \
                 as root; `make test-postgres` runs that first), or set PROTONPASS_NGINX"
            )
        })
}

impl Replicas {
    /// Two replicas on a fresh database of the suite's server behind nginx;
    /// `None` when the suite runs on SQLite.
    pub fn start(env: &[(&str, &str)]) -> Option<Replicas> {
        test_store().map(|base| Self::start_on(&base, env))
    }

    /// Two replicas on a fresh database of the PostgreSQL server `base`.
    pub fn start_on(base: &str, env: &[(&str, &str)]) -> Replicas {
        let bin = nginx_bin();
        let dir = tempfile::tempdir().unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let issuer = format!("http://{listen}");
        // Every request comes from 127.0.0.1 (nginx): no per-source limit.
        let mut env = env.to_vec();
        env.push(("PROTONPASS_BROKER_RATE_LIMIT", "off"));
        let args = ["--issuer", &issuer, "--trusted-proxy", "127.0.0.1"];
        let a = Broker::launch_fresh(Some(base), &args, &env);
        let b = Broker::launch(&a.data, "127.0.0.1:0", &args, &env);
        let d = dir.path().display().to_string();
        let mut conf = NGINX_CONF
            .replace("@DIR@", &d)
            .replace("@LISTEN@", &listen)
            .replace("@REPLICA_A@", &a.bound)
            .replace("@REPLICA_B@", &b.bound);
        if nix_root() {
            // The workers write their temporary files in `dir`, owned by root.
            conf = format!("user root;\n{conf}");
        }
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new(&bin)
            .args(["-p", &d, "-c", &path.display().to_string()])
            .args(["-e", &dir.path().join("error.log").display().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("nginx ({}) did not start: {e}", bin.display()));
        let nginx = Nginx(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&listen).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {listen}: {}",
                std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Replicas {
            _nginx: nginx,
            b,
            a,
            _dir: dir,
        }
    }

    /// The proxy's URL: the issuer.
    pub fn url(&self) -> &str {
        &self.a.url
    }

    /// How many requests nginx sent to each replica so far (its access log):
    /// (to `a`, to `b`).
    pub fn served(&self) -> (usize, usize) {
        self.counter().get()
    }

    /// `served`, without borrowing the replicas.
    pub fn counter(&self) -> Counter {
        Counter {
            log: self._dir.path().join("access.log"),
            a: self.a.bound.clone(),
            b: self.b.bound.clone(),
        }
    }
}

/// Requests nginx sent to each replica.
pub(crate) struct Counter {
    log: PathBuf,
    a: String,
    b: String,
}

impl Counter {
    pub fn get(&self) -> (usize, usize) {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let to = |addr: &str| {
            log.lines()
                .filter(|l| l.split([' ', ',']).any(|w| w == addr))
                .count()
        };
        (to(&self.a), to(&self.b))
    }
}

fn nix_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// The replica's own URL (not through the proxy).
pub(crate) fn direct(b: &Broker) -> String {
    format!("http://{}", b.bound)
}

/// A token request sent to one replica directly, with a proof for the issuer's
/// token URL carrying `nonce`.
pub(crate) async fn token_at(
    b: &Broker,
    k: &AgentKey,
    params: &[(&str, &str)],
    nonce: Option<&str>,
) -> Reply {
    let proof = b.proof(k, &b.token_url(), nonce);
    b.post_form_to(&direct(b), "/oauth/token", params, &[("DPoP", proof)])
        .await
}

/// A fresh nonce, asked of replica `b`.
pub(crate) async fn nonce_from(b: &Broker, k: &AgentKey) -> String {
    let r = token_at(b, k, &[("grant_type", "refresh_token")], None).await;
    assert_eq!(r.error(), "use_dpop_nonce", "{}", r.body);
    r.headers["dpop-nonce"].to_str().unwrap().to_owned()
}

pub(crate) async fn get_at(b: &Broker, path: &str) -> Value {
    let r = b
        .http
        .get(format!("{}{path}", direct(b)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// `audit verify` passes, and the exported chain has no gap and no fork:
/// sequence numbers 1..=n, each record's `prev` the hash of the one before.
/// Returns the records.
pub(crate) fn one_chain(b: &Broker) -> Vec<Value> {
    let v = b.cli_ok(&["audit", "verify"]);
    assert_eq!(v["ok"], true, "{v}");
    let recs = audit_records(b);
    assert_eq!(v["records"].as_u64().unwrap(), recs.len() as u64, "{v}");
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["seq"].as_u64().unwrap(), i as u64 + 1, "gap at {r}");
        if i > 0 {
            assert_eq!(r["prev"], recs[i - 1]["hash"], "fork at {r}");
        }
    }
    recs
}

/// Concurrent token requests through the proxy, each with a fresh proof and
/// the nonce `nonce` (valid on every replica).
async fn all_at_once(r: &Replicas, k: &AgentKey, params: &[(&str, &str)], n: usize) -> Vec<Reply> {
    let nonce = nonce_from(&r.a, k).await;
    let jobs = (0..n).map(|_| {
        let proof = r.a.proof(k, &r.a.token_url(), Some(&nonce));
        async move {
            r.a.post_form("/oauth/token", params, &[("DPoP", proof)])
                .await
        }
    });
    futures_util::future::join_all(jobs).await
}

#[tokio::test]
async fn replicas_share_one_issuer_keys_and_nonces() {
    let Some(r) = Replicas::start(&[]) else {
        return;
    };
    // One issuer: the proxy's URL, in discovery from both replicas.
    let meta = "/.well-known/oauth-authorization-server";
    assert_eq!(get_at(&r.a, meta).await["issuer"], r.url());
    assert_eq!(get_at(&r.b, meta).await["issuer"], r.url());
    let jwks_a = get_at(&r.a, "/jwks.json").await;
    assert_eq!(jwks_a, get_at(&r.b, "/jwks.json").await);

    // A nonce issued by one replica is accepted by the other, both ways.
    let k = key();
    let t = r.a.enroll(&k, "agent", "x:y", &[]).await;
    let mut rt = t.s("refresh_token");
    for (from, to) in [(&r.a, &r.b), (&r.b, &r.a)] {
        let nonce = nonce_from(from, &k).await;
        let ok = token_at(
            to,
            &k,
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
            Some(&nonce),
        )
        .await;
        assert_eq!(ok.status, 200, "{}", ok.body);
        rt = ok.s("refresh_token");
    }

    // A key rotation (the CLI, on the shared database) reaches both replicas:
    // both publish the new key and every token through the proxy carries it.
    let before: Vec<Value> = jwks_a["keys"].as_array().unwrap().clone();
    r.a.cli_ok(&["keys", "rotate"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let new_kid = loop {
        let (ja, jb) = (
            get_at(&r.a, "/jwks.json").await,
            get_at(&r.b, "/jwks.json").await,
        );
        let fresh: Vec<&Value> = ja["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| !before.contains(k))
            .collect();
        if ja == jb && fresh.len() == 1 {
            break fresh[0]["kid"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "rotation not seen: {ja} / {jb}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A replica publishes and signs with one key list (reloaded at once):
    // every token through the proxy now carries the new key.
    for _ in 0..4 {
        let ok = r.a.refresh(&k, &rt).await;
        assert_eq!(ok.status, 200, "{}", ok.body);
        rt = ok.s("refresh_token");
        let at = ok.s("access_token");
        let header: Value = serde_json::from_slice(
            &protonpass_agent::b64::decode(at.split('.').next().unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(header["kid"], new_kid.as_str());
        assert_eq!(claims(&at)["iss"], r.url());
    }
}

#[tokio::test]
async fn refresh_rotation_and_reuse_detection_hold_across_replicas() {
    let Some(r) = Replicas::start(&[]) else {
        return;
    };
    let k = key();
    let t = r.a.enroll(&k, "agent", "x:y", &[]).await;
    let gid = t.s("grant_id");
    let mut rt = t.s("refresh_token");
    // Sequential rotation, alternating replicas.
    let mut spent = Vec::new();
    for _ in 0..4 {
        let ok = r.a.refresh(&k, &rt).await;
        assert_eq!(ok.status, 200, "{}", ok.body);
        spent.push(std::mem::replace(&mut rt, ok.s("refresh_token")));
    }
    // The same refresh token eight times at once through both replicas: one
    // success; the others are reuse, which revokes the whole family.
    let p = [("grant_type", "refresh_token"), ("refresh_token", &rt)];
    let answers = all_at_once(&r, &k, &p, 8).await;
    let ok: Vec<&Reply> = answers.iter().filter(|a| a.status == 200).collect();
    assert_eq!(
        ok.len(),
        1,
        "{:?}",
        answers.iter().map(|a| &a.body).collect::<Vec<_>>()
    );
    for a in answers.iter().filter(|a| a.status != 200) {
        assert_eq!((a.status, a.error()), (400, "invalid_grant"), "{}", a.body);
    }
    let newest = ok[0].s("refresh_token");
    let refused = r.b.refresh(&k, &newest).await;
    assert_eq!(refused.error(), "invalid_grant", "{}", refused.body);
    // Seen by both replicas: the grant is in the feed each one serves.
    for b in [&r.a, &r.b] {
        let feed = get_at(b, "/revocations?after=0").await;
        assert!(
            feed["revocations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["gid"] == gid.as_str()),
            "{feed}"
        );
    }
    let recs = one_chain(&r.a);
    assert!(
        recs.iter()
            .any(|x| x["event"] == "revoke" && x["detail"]["by"] == "refresh_token_reuse")
    );
    // An older spent token is refused too (the family is gone).
    let old =
        r.a.token(
            &k,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &spent[0]),
            ],
        )
        .await;
    assert_eq!(old.error(), "invalid_grant");
}

/// A device-code poll at replica `b` directly.
async fn poll(b: &Broker, k: &AgentKey, dc: &str, nonce: &str) -> Reply {
    let p = [
        ("grant_type", DEVICE),
        ("device_code", dc),
        ("client_id", "travel-bot"),
    ];
    token_at(b, k, &p, Some(nonce)).await
}

#[tokio::test]
async fn device_code_single_use_and_slow_down_hold_across_replicas() {
    let Some(r) = Replicas::start(&[]) else {
        return;
    };
    let k = key();
    let a = &r.a;
    let start =
        |scope: &'static str| async move { a.device_authorization("travel-bot", scope, API).await };
    let nonce = nonce_from(&r.a, &k).await;
    // Polling one replica then the other too fast: `slow_down`, and the
    // interval it raised holds at the first replica as well.
    let d = start("travel:search").await;
    assert_eq!(d.status, 200, "{}", d.body);
    let dc = d.s("device_code");
    let first = poll(&r.a, &k, &dc, &nonce).await;
    assert_eq!(first.error(), "authorization_pending", "{}", first.body);
    let fast = poll(&r.b, &k, &dc, &nonce).await;
    assert_eq!(
        (fast.status, fast.error()),
        (400, "slow_down"),
        "{}",
        fast.body
    );
    let again = poll(&r.a, &k, &dc, &nonce).await;
    assert_eq!(again.error(), "slow_down", "{}", again.body);

    // An approved code polled eight times at once through both replicas:
    // one grant, the other polls refused.
    let d = start("travel:book").await;
    let dc = d.s("device_code");
    r.a.cli_ok(&["approve", &d.s("user_code")]);
    let polls = (0..8).map(|i| {
        let b = if i % 2 == 0 { &r.a } else { &r.b };
        poll(b, &k, &dc, &nonce)
    });
    let answers = futures_util::future::join_all(polls).await;
    let ok = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!(
        ok,
        1,
        "{:?}",
        answers.iter().map(|a| &a.body).collect::<Vec<_>>()
    );
    for a in answers.iter().filter(|a| a.status != 200) {
        assert_eq!(a.error(), "invalid_grant", "{}", a.body);
    }
    let grants = r.a.cli_ok(&["grant", "list"]);
    let n = grants
        .as_array()
        .map(|g| g.iter().filter(|g| g["agent"] == "travel-bot").count());
    assert_eq!(n, Some(1), "{grants}");
    one_chain(&r.a);
}

#[tokio::test]
async fn token_exchange_bounds_hold_across_replicas() {
    let Some(r) = Replicas::start(&[]) else {
        return;
    };
    let k = key();
    let t =
        r.a.enroll(&k, "bot", "calendar:read calendar:write", &["--ttl", "2h"])
            .await;
    let grant_exp = t.body["grant_expires_at"].as_i64().unwrap();
    let at = t.s("access_token");
    // Through either replica: never wider than the grant, never another
    // audience, never past the grant.
    for _ in 0..2 {
        let x =
            r.a.exchange(
                &k,
                &at,
                TOKEN_TYPE_ACCESS,
                &[
                    ("scope", "calendar:read admin:all"),
                    ("expires_in", "864000"),
                ],
            )
            .await;
        assert_eq!(x.status, 200, "{}", x.body);
        assert_eq!(x.s("scope"), "calendar:read");
        let c = claims(&x.s("access_token"));
        assert!(c["exp"].as_i64().unwrap() <= grant_exp, "{c}");
        let wrong =
            r.a.exchange(
                &k,
                &at,
                TOKEN_TYPE_ACCESS,
                &[("audience", "https://other.example")],
            )
            .await;
        assert_eq!(wrong.error(), "invalid_target", "{}", wrong.body);
        let thief = r.a.exchange(&key(), &at, TOKEN_TYPE_ACCESS, &[]).await;
        assert_eq!(thief.error(), "invalid_grant", "{}", thief.body);
    }
    // A refresh-token subject exchanged eight times at once: spent once.
    let rt = t.s("refresh_token");
    let p = [
        ("grant_type", protonpass_agent::wire::GRANT_TOKEN_EXCHANGE),
        ("subject_token", rt.as_str()),
        ("subject_token_type", TOKEN_TYPE_REFRESH),
    ];
    let answers = all_at_once(&r, &k, &p, 8).await;
    let ok = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!(
        ok,
        1,
        "{:?}",
        answers.iter().map(|a| &a.body).collect::<Vec<_>>()
    );
    // An access token revoked at one replica is no subject at the other.
    let k2 = key();
    let t2 = r.a.enroll(&k2, "bot2", "calendar:read", &[]).await;
    let at2 = t2.s("access_token");
    let revoked =
        r.a.post_form_to(
            &direct(&r.a),
            "/oauth/revoke",
            &[("token", &at2), ("client_id", "bot2")],
            &[],
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let nonce = nonce_from(&r.b, &k2).await;
    let x = token_at(
        &r.b,
        &k2,
        &[
            ("grant_type", protonpass_agent::wire::GRANT_TOKEN_EXCHANGE),
            ("subject_token", &at2),
            ("subject_token_type", TOKEN_TYPE_ACCESS),
        ],
        Some(&nonce),
    )
    .await;
    assert_eq!(x.error(), "invalid_grant", "{}", x.body);
    one_chain(&r.a);
}

#[tokio::test]
async fn one_audit_chain_after_a_concurrent_run_through_both_replicas() {
    let Some(r) = Replicas::start(&[]) else {
        return;
    };
    // Sixteen agents at once, each enrolling (its CLI grant and the
    // redemption), refreshing twice and revoking its access token.
    let jobs = (0..16).map(|i| {
        let r = &r;
        async move {
            let k = key();
            let name = format!("agent{i}");
            let t = r.a.enroll(&k, &name, "x:y", &[]).await;
            let mut rt = t.s("refresh_token");
            let mut jtis = vec![claims(&t.s("access_token"))["jti"].clone()];
            let mut last = String::new();
            for _ in 0..2 {
                let ok = r.a.refresh(&k, &rt).await;
                assert_eq!(ok.status, 200, "{}", ok.body);
                rt = ok.s("refresh_token");
                last = ok.s("access_token");
                jtis.push(claims(&last)["jti"].clone());
            }
            let rev = r.a.revoke_token(&last, &name).await;
            assert_eq!(rev.status, 200, "{}", rev.body);
            (jtis, claims(&last)["jti"].clone())
        }
    });
    let done = futures_util::future::join_all(jobs).await;
    // The run went through both replicas, about half each.
    let (to_a, to_b) = r.served();
    assert!(to_a.min(to_b) * 3 > to_a.max(to_b), "{to_a} / {to_b}");
    let recs = one_chain(&r.b);
    let feed = r.a.whole_feed().await;
    for (jtis, revoked) in &done {
        for j in jtis {
            assert_eq!(
                recs.iter()
                    .filter(
                        |x| ["enroll", "refresh"].contains(&x["event"].as_str().unwrap())
                            && x["detail"]["jti"] == *j
                    )
                    .count(),
                1,
                "issuance of {j}"
            );
        }
        assert!(
            recs.iter()
                .any(|x| x["event"] == "revoke" && x["detail"]["jti"] == *revoked)
        );
        assert!(feed.iter().any(|e| e["jti"] == *revoked));
    }
}
