//! Crash safety and fail-closed storage: a SIGKILL in the middle of a burst of
//! issuances and revocations loses nothing any client was told, and when the
//! audit store refuses writes the broker issues and revokes nothing, then
//! recovers by itself once the store accepts writes again (`crash/audit_refusal.rs`).

mod audit_refusal;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protonpass_agent::AgentKey;
use protonpass_agent::wire::TOKEN_TYPE_ACCESS;
use serde_json::Value;

use protonpass_e2e::{
    API, Broker, PRE_AUTHORIZED_CODE, audit_records, broker_bin, claims, dpop, key,
};

const DEVICE: &str = "urn:ietf:params:oauth:grant-type:device_code";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

// ---------------------------------------------------------------------------
// Shared helpers

fn audit_ok(b: &Broker) -> i64 {
    let v = b.cli_ok(&["audit", "verify"]);
    assert_eq!(v["ok"], true, "{v}");
    v["records"].as_i64().unwrap()
}

/// A token's stored record, read from the database file (for failure messages).
fn stored_token(b: &Broker, jti: &str) -> Option<String> {
    let c = rusqlite::Connection::open_with_flags(
        b.data.join("broker.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .ok()?;
    c.query_row("SELECT data FROM tokens WHERE jti = ?1", [jti], |r| {
        r.get(0)
    })
    .ok()
}

/// The token exchange both parts make: the agent's access token for a
/// narrower one (`calendar:read`).
fn exchange_params(subject: &str) -> [(&'static str, &str); 4] {
    [
        ("grant_type", EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", TOKEN_TYPE_ACCESS),
        ("scope", "calendar:read"),
    ]
}

fn jti_of(token: &str) -> String {
    claims(token)["jti"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------
// 1. SIGKILL in the middle of a burst

/// A minimal HTTP client for the burst: unlike the kit, a connection error is
/// an outcome (the broker was killed), not a test failure.
struct Wire {
    url: String,
    http: reqwest::Client,
    nonce: Mutex<Option<String>>,
}

/// What a client got back: a full answer, or nothing (request in flight at the kill).
struct Answer {
    status: u16,
    body: Value,
}

impl Wire {
    async fn post(
        &self,
        path: &str,
        params: &[(&str, &str)],
        dpop: Option<String>,
    ) -> Option<Answer> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(p) = dpop {
            req = req.header("DPoP", p);
        }
        let r = req.send().await.ok()?;
        let status = r.status().as_u16();
        if let Some(n) = r.headers().get("dpop-nonce") {
            *self.nonce.lock().unwrap() = Some(n.to_str().unwrap().to_owned());
        }
        let text = r.text().await.ok()?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Some(Answer { status, body })
    }

    /// A revocation of `token` (RFC 7009) by the agent `client_id`.
    async fn revoke(&self, token: &str, client_id: &str) -> Option<Answer> {
        self.post(
            "/oauth/revoke",
            &[("token", token), ("client_id", client_id)],
            None,
        )
        .await
    }

    /// A token request with a fresh proof, retrying `use_dpop_nonce` as the kit does.
    async fn token(&self, key: &AgentKey, params: &[(&str, &str)]) -> Option<Answer> {
        let url = format!("{}/oauth/token", self.url);
        for _ in 0..4 {
            let nonce = self.nonce.lock().unwrap().clone();
            let proof = dpop(key, "POST", &url, None, nonce.as_deref());
            let a = self.post("/oauth/token", params, Some(proof)).await?;
            if a.body["error"] != "use_dpop_nonce" {
                return Some(a);
            }
        }
        panic!("the nonce round did not settle");
    }
}

/// An access token a client received.
#[derive(Clone)]
struct Got {
    token: String,
    jti: String,
    gid: String,
}

impl Got {
    /// The access token of an answer that must be a 200 (to `what`), counted
    /// in `answers`.
    fn from_answer(a: &Answer, what: &str, answers: &AtomicUsize) -> Got {
        assert_eq!(a.status, 200, "{what}: {}", a.body);
        answers.fetch_add(1, Ordering::Relaxed);
        let token = a.body["access_token"].as_str().unwrap().to_owned();
        Got {
            jti: jti_of(&token),
            gid: a.body["grant_id"].as_str().unwrap().to_owned(),
            token,
        }
    }
}

/// What one agent's tasks saw.
#[derive(Default)]
struct AgentLog {
    gid: String,
    /// Access tokens received in a 200.
    issued: Vec<Got>,
    /// Refresh answers received (200).
    refreshes: usize,
    /// Exchange answers received (200).
    exchanges: usize,
    /// Refresh tokens sent in a refresh that answered 200 (spent).
    spent: Vec<String>,
    /// The newest refresh token received and not yet sent.
    current: Option<String>,
    /// A refresh token sent in a request that got no answer.
    refresh_in_flight: Option<String>,
    /// An exchange that got no answer.
    exchange_in_flight: bool,
    /// The grant was revoked through its refresh token, acknowledged.
    grant_revoked: bool,
    /// A grant revocation was sent (answered or not).
    grant_revoke_sent: bool,
}

/// What every client saw, across tasks.
#[derive(Default)]
struct Seen {
    agents: Vec<AgentLog>,
    /// Token ids whose revocation was acknowledged (RFC 7009 200, or CLI exit 0).
    revoked: HashSet<String>,
    /// Token ids whose revocation was sent (acknowledged or not).
    revoke_sent: HashSet<String>,
    /// Tokens the CLI task may revoke (exchange results).
    pool: Vec<String>,
}

const AGENTS: usize = 8;
/// The agent that revokes its own grant (RFC 7009 with its refresh token) mid-burst.
const GRANT_REVOKER: usize = AGENTS - 1;
/// Answers to wait for before the kill.
const KILL_AFTER: usize = 400;

/// Refresh in a loop; every other new access token is revoked by the agent
/// through RFC 7009. The last agent revokes its whole grant after a few steps.
async fn refresh_chain(
    w: Arc<Wire>,
    seen: Arc<Mutex<Seen>>,
    answers: Arc<AtomicUsize>,
    i: usize,
    k: AgentKey,
) {
    let agent = format!("bot{i}");
    for step in 0.. {
        let rt = seen.lock().unwrap().agents[i].current.clone().unwrap();
        if i == GRANT_REVOKER && step == 6 {
            seen.lock().unwrap().agents[i].grant_revoke_sent = true;
            let Some(a) = w.revoke(&rt, &agent).await else {
                return;
            };
            assert_eq!(a.status, 200, "grant revocation: {}", a.body);
            answers.fetch_add(1, Ordering::Relaxed);
            seen.lock().unwrap().agents[i].grant_revoked = true;
            return;
        }
        seen.lock().unwrap().agents[i].current = None;
        let Some(a) = w
            .token(
                &k,
                &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
            )
            .await
        else {
            seen.lock().unwrap().agents[i].refresh_in_flight = Some(rt);
            return;
        };
        let got = Got::from_answer(&a, "refresh", &answers);
        {
            let mut s = seen.lock().unwrap();
            let log = &mut s.agents[i];
            log.issued.push(got.clone());
            log.refreshes += 1;
            log.spent.push(rt);
            log.current = Some(a.body["refresh_token"].as_str().unwrap().to_owned());
        }
        if step % 2 == 1 {
            seen.lock().unwrap().revoke_sent.insert(got.jti.clone());
            let Some(r) = w.revoke(&got.token, &agent).await else {
                return;
            };
            assert_eq!(r.status, 200, "revocation: {}", r.body);
            answers.fetch_add(1, Ordering::Relaxed);
            seen.lock().unwrap().revoked.insert(got.jti);
        }
    }
}

/// Exchange the agent's enrollment access token for narrower ones, in a loop;
/// the results feed the CLI revoker.
async fn exchange_loop(
    w: Arc<Wire>,
    seen: Arc<Mutex<Seen>>,
    answers: Arc<AtomicUsize>,
    i: usize,
    k: AgentKey,
    subject: String,
) {
    loop {
        let Some(a) = w.token(&k, &exchange_params(&subject)).await else {
            seen.lock().unwrap().agents[i].exchange_in_flight = true;
            return;
        };
        let got = Got::from_answer(&a, "exchange", &answers);
        let mut s = seen.lock().unwrap();
        s.pool.push(got.jti.clone());
        s.agents[i].issued.push(got);
        s.agents[i].exchanges += 1;
    }
}

/// Revoke exchanged tokens with the CLI (another process, the same database)
/// until told to stop. The CLI does not depend on the server, so a revocation
/// it reports is committed whether or not the server still runs.
async fn cli_revoker(
    data: PathBuf,
    env: Vec<(String, String)>,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let next = seen.lock().unwrap().pool.pop();
        let Some(jti) = next else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        seen.lock().unwrap().revoke_sent.insert(jti.clone());
        let (data, env, id) = (data.clone(), env.clone(), jti.clone());
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(broker_bin())
                .args(["--data", data.to_str().unwrap(), "--json", "revoke", &id])
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "CLI revoke: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["tokens"][0], jti.as_str());
        seen.lock().unwrap().revoked.insert(jti);
    }
}

/// Eight agents refresh, exchange and revoke (RFC 7009) concurrently while two
/// CLI processes revoke; the broker gets SIGKILL after 400 answers. Restarted
/// on the same data directory and address: every access token a client
/// received is on record with its issuance audit record, and is active exactly
/// when neither it nor its grant is in the feed; every acknowledged revocation
/// is in the feed and the audit log; spent refresh tokens stay spent and the
/// one each agent holds works; a request cut off by the kill committed
/// entirely (with its audit record) or not at all; the audit chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_burst_loses_nothing_a_client_was_told() {
    if protonpass_e2e::on_postgres() {
        return; // looks into SQLite's files or the data directory
    }
    let mut b = Broker::start(&[]);
    let dir = b.take_dir();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut keys = Vec::new();
    let mut subjects = Vec::new();
    for i in 0..AGENTS {
        let k = key();
        let r = b
            .enroll(&k, &format!("bot{i}"), "calendar:read calendar:write", &[])
            .await;
        let at = r.s("access_token");
        let got = Got {
            jti: jti_of(&at),
            token: at.clone(),
            gid: r.s("grant_id"),
        };
        seen.lock().unwrap().agents.push(AgentLog {
            gid: got.gid.clone(),
            issued: vec![got],
            current: Some(r.s("refresh_token")),
            ..AgentLog::default()
        });
        keys.push(k);
        subjects.push(at);
    }

    let answers = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut http_tasks = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let w = Arc::new(Wire {
            url: b.url.clone(),
            http: reqwest::Client::new(),
            nonce: Mutex::new(None),
        });
        let k = k.clone();
        http_tasks.push(tokio::spawn(refresh_chain(
            w.clone(),
            seen.clone(),
            answers.clone(),
            i,
            k.clone(),
        )));
        if i != GRANT_REVOKER {
            http_tasks.push(tokio::spawn(exchange_loop(
                w,
                seen.clone(),
                answers.clone(),
                i,
                k,
                subjects[i].clone(),
            )));
        }
    }
    let cli_tasks: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(cli_revoker(
                b.data.clone(),
                b.env.clone(),
                seen.clone(),
                stop.clone(),
            ))
        })
        .collect();

    // Kill once enough answers arrived, while every task has a request out.
    while answers.load(Ordering::Relaxed) < KILL_AFTER
        && !http_tasks.iter().all(|t| t.is_finished())
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let addr = b.addr().to_owned();
    b.kill();
    stop.store(true, Ordering::Relaxed);
    for t in http_tasks.into_iter().chain(cli_tasks) {
        t.await.unwrap();
    }
    assert!(answers.load(Ordering::Relaxed) >= KILL_AFTER);

    // The same address: the issuer (and so the tokens' `iss`) is unchanged.
    let b = Broker::start_at(dir.path(), &addr, &[]);
    let rs = b.resource(API, None);
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    let feed = b.whole_feed().await;
    let feed_jtis: HashSet<&str> = feed.iter().filter_map(|e| e["jti"].as_str()).collect();
    let feed_gids: HashSet<&str> = feed.iter().filter_map(|e| e["gid"].as_str()).collect();
    let audit = audit_records(&b);
    let issued_in_audit: HashMap<&str, &str> = audit
        .iter()
        .filter(|r| ["enroll", "refresh", "exchange"].contains(&r["event"].as_str().unwrap()))
        .map(|r| {
            (
                r["detail"]["jti"].as_str().unwrap(),
                r["event"].as_str().unwrap(),
            )
        })
        .collect();
    let revoked_in_audit: HashSet<&str> = audit
        .iter()
        .filter(|r| r["event"] == "revoke")
        .filter_map(|r| r["detail"]["jti"].as_str())
        .collect();
    let count = |event: &str, gid: &str| {
        audit
            .iter()
            .filter(|r| r["event"] == event && r["detail"]["gid"] == gid)
            .count()
    };

    let mut checked = 0;
    let mut committed_unanswered = 0;
    for (log, k) in seen.agents.iter().zip(&keys) {
        let grant_gone = feed_gids.contains(log.gid.as_str());
        // (b) an acknowledged grant revocation holds.
        if log.grant_revoked {
            assert!(grant_gone, "acknowledged grant revocation lost");
        }
        if !log.grant_revoke_sent {
            assert!(!grant_gone, "a grant nobody revoked is in the feed");
        }
        for got in &log.issued {
            // (a) every access token a client received exists, with its audit record.
            assert!(
                issued_in_audit.contains_key(got.jti.as_str()),
                "token {} has no issuance record",
                got.jti
            );
            assert_eq!(got.gid, log.gid);
            let i = b.introspect(&rs, &got.token).await;
            assert_eq!(i.status, 200, "{}", i.body);
            let in_feed = feed_jtis.contains(got.jti.as_str());
            // Active exactly when neither it nor its grant is in the feed.
            assert_eq!(
                i.body["active"],
                !(in_feed || grant_gone),
                "token {} (in feed: {in_feed}, grant revoked: {grant_gone}): {} / stored {:?}",
                got.jti,
                i.body,
                stored_token(&b, &got.jti)
            );
            // (b) an acknowledged revocation holds, in the feed and the audit log.
            if seen.revoked.contains(&got.jti) {
                assert!(in_feed, "acknowledged revocation of {} lost", got.jti);
                assert!(revoked_in_audit.contains(got.jti.as_str()));
            }
            // Nothing is revoked that nobody asked to revoke.
            if !seen.revoke_sent.contains(&got.jti) {
                assert!(!in_feed, "{} was revoked without a request", got.jti);
            }
            checked += 1;
        }
        // Spent refresh tokens stay spent.
        for rt in &log.spent {
            assert_eq!(b.introspect(&rs, rt).await.body["active"], false);
        }
        // Issuance records: those answered, plus at most the one in flight.
        let refreshes = count("refresh", &log.gid);
        let exchanges = count("exchange", &log.gid);
        assert!(
            exchanges >= log.exchanges
                && exchanges <= log.exchanges + usize::from(log.exchange_in_flight),
            "{exchanges} exchange records for {} answers",
            log.exchanges
        );
        // The refresh token the agent holds works once; one sent at the kill
        // was either spent (and its refresh recorded) or still works.
        let held = match (&log.current, &log.refresh_in_flight) {
            (Some(rt), None) => {
                assert_eq!(refreshes, log.refreshes);
                Some(rt.clone())
            }
            (None, Some(rt)) => {
                let active = b.introspect(&rs, rt).await.body["active"] == true;
                assert_eq!(
                    refreshes,
                    log.refreshes + usize::from(!active),
                    "refresh records against answers"
                );
                committed_unanswered += usize::from(!active);
                active.then(|| rt.clone())
            }
            (None, None) => {
                // The grant revoker never refreshed after its revocation.
                assert!(log.grant_revoke_sent);
                None
            }
            (Some(_), Some(_)) => unreachable!(),
        };
        if let Some(rt) = held {
            let r = b.refresh(k, &rt).await;
            if grant_gone {
                assert_eq!(r.error(), "invalid_grant", "{}", r.body);
            } else {
                assert_eq!(r.status, 200, "{}", r.body);
            }
        }
    }
    let in_flight = seen
        .agents
        .iter()
        .map(|l| usize::from(l.refresh_in_flight.is_some()) + usize::from(l.exchange_in_flight))
        .sum::<usize>();
    println!(
        "burst: {} answers before the kill, {checked} access tokens checked, {} revocations acknowledged, {in_flight} issuances in flight at the kill ({committed_unanswered} refreshes committed unanswered), {} feed entries",
        KILL_AFTER,
        seen.revoked.len(),
        feed.len()
    );
    assert!(seen.revoked.len() > 1);
    assert!(checked >= KILL_AFTER / 2, "{checked} tokens checked");
    // (c) the chain is intact.
    audit_ok(&b);
    drop(dir);
}
