//! PostgreSQL only: faults under load with two replicas behind nginx
//! (`replicas.rs`). A replica killed with SIGKILL loses no token, revocation
//! or audit record a client was told about, and the other keeps serving; a
//! PostgreSQL restart gets `503` (never a 500 or a dropped connection)
//! meanwhile, both replicas recover by themselves, and nothing acknowledged
//! is lost.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use protonpass_agent::AgentKey;

use crate::replicas::{Replicas, nonce_from, one_chain, token_at};
use protonpass_e2e::{API, Broker, claims, key, on_postgres};

/// What the clients were told.
#[derive(Default)]
struct Seen {
    /// (jti, access token, gid) of every access token received in a 200.
    issued: Vec<(String, String, String)>,
    /// Token ids whose revocation was answered 200.
    revoked: HashSet<String>,
    /// Token ids whose revocation was sent.
    revoke_sent: HashSet<String>,
    /// Answers by status.
    status: HashMap<u16, usize>,
    /// Grants whose refresh, cut off by the kill, had committed: sent again,
    /// it was reuse, which revoked the grant.
    cut_committed: Vec<String>,
    /// Refreshes cut off by the kill that had not committed: sent again, they
    /// succeeded.
    cut_undone: usize,
}

struct Load<'a> {
    via: &'a Broker,
    seen: Mutex<Seen>,
    answers: AtomicUsize,
    stop: AtomicBool,
    /// A status the clients may get besides 200 (retried).
    retry_on: u16,
}

impl Load<'_> {
    fn count(&self, status: u16) {
        *self.seen.lock().unwrap().status.entry(status).or_default() += 1;
        if status == 200 {
            self.answers.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn n(&self, status: u16) -> usize {
        self.seen
            .lock()
            .unwrap()
            .status
            .get(&status)
            .copied()
            .unwrap_or(0)
    }

    /// Wait until `more` answers arrived after `from`, or fail after `secs`.
    async fn wait_answers(&self, from: usize, more: usize, secs: u64, what: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let now = self.answers.load(Ordering::Relaxed);
            if now >= from + more {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {} answers in {secs} s, statuses {:?}",
                now - from,
                self.seen.lock().unwrap().status
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One agent: refresh, and revoke every other access token (RFC 7009),
    /// through the proxy until told to stop. A request without an answer
    /// (502: its replica was killed) is sent again, as a client would: a
    /// refresh cut off either committed entirely (the same refresh token is
    /// then reuse, which revokes the grant: the agent stops) or not at all
    /// (it succeeds now).
    async fn agent(&self, k: AgentKey, name: String, gid: String, mut rt: String) {
        let mut step = 0;
        let mut cut = false;
        while !self.stop.load(Ordering::Relaxed) {
            let r = self.via.refresh(&k, &rt).await;
            self.count(r.status);
            if r.status == 502 || r.status == self.retry_on {
                cut |= r.status == 502;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            if cut && r.error() == "invalid_grant" {
                self.seen.lock().unwrap().cut_committed.push(gid);
                return;
            }
            assert_eq!(r.status, 200, "refresh: {}", r.body);
            if std::mem::take(&mut cut) {
                self.seen.lock().unwrap().cut_undone += 1;
            }
            rt = r.s("refresh_token");
            let at = r.s("access_token");
            let jti = claims(&at)["jti"].as_str().unwrap().to_owned();
            self.seen
                .lock()
                .unwrap()
                .issued
                .push((jti.clone(), at.clone(), r.s("grant_id")));
            step += 1;
            if step % 2 == 1 {
                continue;
            }
            self.seen.lock().unwrap().revoke_sent.insert(jti.clone());
            loop {
                let v = self.via.revoke_token(&at, &name).await;
                self.count(v.status);
                if v.status == 502 || v.status == self.retry_on {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                assert_eq!(v.status, 200, "revocation: {}", v.body);
                self.seen.lock().unwrap().revoked.insert(jti);
                break;
            }
        }
    }
}

/// Enroll `n` agents through the proxy: (key, name, grant id, refresh token).
async fn agents(r: &Replicas, n: usize) -> Vec<(AgentKey, String, String, String)> {
    let mut out = Vec::new();
    for i in 0..n {
        let k = key();
        let name = format!("bot{i}");
        let t = r.a.enroll(&k, &name, "x:y", &[]).await;
        out.push((k, name, t.s("grant_id"), t.s("refresh_token")));
    }
    out
}

/// Every access token a client received has its issuance record and is in the
/// store (introspection: active exactly when it is not in the feed); every
/// acknowledged revocation is in the feed and the audit log; nothing is
/// revoked that nobody asked for; the audit chain is one, verified.
async fn nothing_acknowledged_lost(via: &Broker, seen: &Seen) {
    let audit = one_chain(via);
    let issued: HashSet<&str> = audit
        .iter()
        .filter(|r| r["event"] == "refresh")
        .filter_map(|r| r["detail"]["jti"].as_str())
        .collect();
    let revoked: HashSet<&str> = audit
        .iter()
        .filter(|r| r["event"] == "revoke")
        .filter_map(|r| r["detail"]["jti"].as_str())
        .collect();
    let feed = via.whole_feed().await;
    let in_feed: HashSet<&str> = feed.iter().filter_map(|e| e["jti"].as_str()).collect();
    let gids: HashSet<&str> = feed.iter().filter_map(|e| e["gid"].as_str()).collect();
    for gid in &seen.cut_committed {
        assert!(gids.contains(gid.as_str()), "reuse did not revoke {gid}");
    }
    let rs = via.resource(API, None);
    assert!(!seen.issued.is_empty());
    for (jti, at, gid) in &seen.issued {
        assert!(
            issued.contains(jti.as_str()),
            "token {jti}: no issuance record"
        );
        if seen.revoked.contains(jti) {
            assert!(in_feed.contains(jti.as_str()), "revocation of {jti} lost");
            assert!(
                revoked.contains(jti.as_str()),
                "revocation of {jti}: no record"
            );
        }
        if !seen.revoke_sent.contains(jti) {
            assert!(!in_feed.contains(jti.as_str()), "{jti} revoked unasked");
        }
        let i = via.introspect(&rs, at).await;
        assert_eq!(i.status, 200, "{}", i.body);
        let gone = in_feed.contains(jti.as_str()) || gids.contains(gid.as_str());
        assert_eq!(i.body["active"], !gone, "{jti}: {}", i.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_loses_nothing_and_the_other_serves() {
    let Some(mut r) = Replicas::start(&[]) else {
        return;
    };
    let enrolled = agents(&r, 8).await;
    let load = Load {
        via: &r.a,
        seen: Mutex::default(),
        answers: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        retry_on: 0,
    };
    let served = r.counter();
    let victim = &mut r.b;
    let run = enrolled
        .into_iter()
        .map(|(k, name, gid, rt)| load.agent(k, name, gid, rt));
    let control = async {
        load.wait_answers(0, 150, 60, "before the kill").await;
        let (to_a, to_b) = served.get();
        assert!(to_a > 50 && to_b > 50, "{to_a} / {to_b}");
        // SIGKILL, while requests are in flight at both replicas.
        victim.kill();
        let at_kill = load.answers.load(Ordering::Relaxed);
        load.wait_answers(at_kill, 150, 60, "after the kill").await;
        load.stop.store(true, Ordering::Relaxed);
    };
    let (_, ()) = tokio::join!(futures_util::future::join_all(run), control);
    let seen = load.seen.into_inner().unwrap();
    eprintln!(
        "replica killed: statuses {:?}, {} tokens issued, {} revocations acknowledged, \
         refreshes cut off: {} committed, {} not",
        seen.status,
        seen.issued.len(),
        seen.revoked.len(),
        seen.cut_committed.len(),
        seen.cut_undone
    );
    // Only requests cut off by the kill went unanswered.
    assert!(
        seen.status.get(&502).copied().unwrap_or(0) <= 8,
        "{:?}",
        seen.status
    );
    for s in seen.status.keys() {
        assert!([200, 400, 502].contains(s), "{:?}", seen.status);
    }
    // A 400 only for a refresh token sent again after it committed.
    assert_eq!(
        seen.status.get(&400).copied().unwrap_or(0),
        seen.cut_committed.len()
    );
    nothing_acknowledged_lost(&r.a, &seen).await;
}

/// A throwaway PostgreSQL cluster of this test's own (scripts/pg-cluster.sh),
/// stopped and removed on drop: restarting it leaves the suite's alone.
struct OwnCluster {
    state: tempfile::TempDir,
}

/// Run `scripts/pg-cluster.sh CMD` on the cluster kept under `state`; its output.
pub(crate) fn pg_cluster(state: &Path, cmd: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/pg-cluster.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(cmd)
        .env("PG_CLUSTER_STATE", state.join("state"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg-cluster.sh {cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| pg_cluster(self.state.path(), "stop"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_load_answers_503_then_every_replica_recovers() {
    if !on_postgres() {
        return;
    }
    let pg = OwnCluster {
        state: tempfile::tempdir().unwrap(),
    };
    let url = pg_cluster(pg.state.path(), "start");
    let r = Replicas::start_on(&url, &[]);
    let enrolled = agents(&r, 6).await;
    let probe = key();
    let mut probe_rt =
        r.a.enroll(&probe, "probe", "x:y", &[])
            .await
            .s("refresh_token");
    let load = Load {
        via: &r.a,
        seen: Mutex::default(),
        answers: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        retry_on: 503,
    };
    let run = enrolled
        .into_iter()
        .map(|(k, name, gid, rt)| load.agent(k, name, gid, rt));
    let state = pg.state.path().to_owned();
    let control = async {
        load.wait_answers(0, 60, 60, "before the restart").await;
        let s = state.clone();
        tokio::task::spawn_blocking(move || pg_cluster(&s, "halt"))
            .await
            .unwrap();
        // The server is down: answers are 503, and keep coming.
        let down = load.n(503);
        let deadline = Instant::now() + Duration::from_secs(20);
        while load.n(503) < down + 20 {
            assert!(
                Instant::now() < deadline,
                "{:?}",
                load.seen.lock().unwrap().status
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let s = state.clone();
        tokio::task::spawn_blocking(move || pg_cluster(&s, "resume"))
            .await
            .unwrap();
        // Every replica, asked directly, serves again by itself.
        for replica in [&r.a, &r.b] {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let nonce = nonce_from(replica, &probe).await;
                let p = [
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &probe_rt),
                ];
                let a = token_at(replica, &probe, &p, Some(&nonce)).await;
                assert!([200, 503].contains(&a.status), "{}: {}", a.status, a.body);
                if a.status == 200 {
                    probe_rt = a.s("refresh_token");
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} did not recover",
                    replica.bound
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let now = load.answers.load(Ordering::Relaxed);
        load.wait_answers(now, 60, 60, "after the restart").await;
        load.stop.store(true, Ordering::Relaxed);
    };
    let (_, ()) = tokio::join!(futures_util::future::join_all(run), control);
    let seen = load.seen.into_inner().unwrap();
    eprintln!(
        "PostgreSQL restarted: statuses {:?}, {} tokens issued, {} revocations acknowledged",
        seen.status,
        seen.issued.len(),
        seen.revoked.len()
    );
    for s in seen.status.keys() {
        assert!([200, 503].contains(s), "{:?}", seen.status);
    }
    nothing_acknowledged_lost(&r.a, &seen).await;
    drop(r);
}
