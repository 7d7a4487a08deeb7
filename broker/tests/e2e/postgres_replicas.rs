//! PostgreSQL only (`PROTONPASS_TEST_STORE`): what replicas on one database
//! share beyond the data. A DPoP proof is accepted by one replica only (at
//! the broker's endpoints and at its gateway alike); a
//! revocation made through one replica reaches the feed of another at once
//! (`NOTIFY`); the pool's figures are in `/metrics`; `/readyz` follows the
//! database going away and coming back (on a cluster of the test's own).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use protonpass_e2e::{Broker, Reply, claims, free_port, key, on_postgres};

/// A second replica on `a`'s database (and data directory, for the CLI's
/// settings) with `a`'s issuer, so that a proof made for one is good at
/// both; its own address, as `http://127.0.0.1:PORT`.
fn twin(a: &Broker) -> (Broker, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let b = Broker::launch(&a.data, &addr, &["--issuer", &a.url], &[]);
    (b, format!("http://{addr}"))
}

#[tokio::test]
async fn a_proof_sent_to_two_replicas_at_once_is_accepted_once() {
    if !on_postgres() {
        return;
    }
    let a = Broker::start(&[]);
    let (_b, b_url) = twin(&a);
    let k = key();
    let mut rt = a.enroll(&k, "agent", "x:y", &[]).await.s("refresh_token");
    // A nonce (the replicas share them), then several rounds of one proof
    // sent to both at once: one success each round.
    let nonce = a
        .post_form(
            "/oauth/token",
            &[("grant_type", "refresh_token"), ("refresh_token", "x")],
            &[("DPoP", a.proof(&k, &a.token_url(), None))],
        )
        .await
        .headers["dpop-nonce"]
        .to_str()
        .unwrap()
        .to_owned();
    for _ in 0..5 {
        let proof = a.proof(&k, &a.token_url(), Some(&nonce));
        let form = [("grant_type", "refresh_token"), ("refresh_token", &rt)];
        let dpop = [("DPoP", proof)];
        let (ra, rb) = tokio::join!(
            a.post_form("/oauth/token", &form, &dpop),
            a.post_form_to(&b_url, "/oauth/token", &form, &dpop),
        );
        let ok: Vec<&Reply> = [&ra, &rb].into_iter().filter(|r| r.status == 200).collect();
        assert_eq!(ok.len(), 1, "{} / {}", ra.body, rb.body);
        let refused = if ra.status == 200 { &rb } else { &ra };
        assert_eq!(refused.status, 400, "{}", refused.body);
        assert_eq!(refused.error(), "invalid_dpop_proof", "{}", refused.body);
        rt = ok[0].s("refresh_token");
    }
    // The grant is unharmed (no reuse detection tripped): it refreshes on.
    let r = a.refresh(&k, &rt).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Recorded proofs are pruned once their time has passed, not before.
    let n = a.cli_ok(&["prune"]);
    assert_eq!(n["removed"]["proofs"], 0, "{n}");
    let later = (protonpass_agent::Clock::now(&protonpass_agent::SystemClock) + 3600).to_string();
    let n = a.cli_ok(&["prune", "--now", &later]);
    // The enrollment's proof, one of each round's, the last refresh's.
    assert!(n["removed"]["proofs"].as_i64().unwrap() >= 7, "{n}");
}

/// The gateway too: the same call, one proof, sent through two replicas at
/// once reaches the upstream once; the other is refused before it.
#[tokio::test]
async fn a_gateway_call_sent_to_two_replicas_at_once_reaches_the_upstream_once() {
    if !on_postgres() {
        return;
    }
    let (a, up, agent) = crate::gateway::setup_agent().await;
    let (_b, b_url) = twin(&a);
    let path = "/gateway/code-host/repos/me/proj";
    // The proofs name the issuer's URL, whichever replica they are sent to.
    let url = format!("{}{path}", a.url);
    let send = async |base: &str, proof: &str| {
        let r = a
            .http
            .get(format!("{base}{path}"))
            .header("authorization", format!("DPoP {}", agent.1))
            .header("dpop", proof)
            .send()
            .await
            .unwrap();
        crate::gateway::json(r).await
    };
    // A nonce (the replicas share them): the answer to a proof without one.
    let probe = protonpass_e2e::dpop(&agent.0, "GET", &url, Some(&agent.1), None);
    let r = a
        .http
        .get(&url)
        .header("authorization", format!("DPoP {}", agent.1))
        .header("dpop", probe)
        .send()
        .await
        .unwrap();
    let nonce = r
        .headers()
        .get("dpop-nonce")
        .map(|v| v.to_str().unwrap().to_owned());
    let before = up.calls();
    for _ in 0..5 {
        let proof = protonpass_e2e::dpop(&agent.0, "GET", &url, Some(&agent.1), nonce.as_deref());
        let (ra, rb) = tokio::join!(send(&a.url, &proof), send(&b_url, &proof));
        let ok = [&ra, &rb].iter().filter(|r| r.0 == 200).count();
        assert_eq!(ok, 1, "{ra:?} / {rb:?}");
        let refused = if ra.0 == 200 { &rb } else { &ra };
        assert_eq!(refused.0, 401, "{refused:?}");
        assert_eq!(refused.1["error"], "invalid_dpop_proof", "{refused:?}");
    }
    assert_eq!(up.calls() - before, 5);
}

/// Withdrawing a device request too: one proof, sent through two replicas
/// at once, is accepted by one of them; the other refuses it as a replay.
#[tokio::test]
async fn a_device_withdrawal_sent_to_two_replicas_at_once_is_accepted_once() {
    if !on_postgres() {
        return;
    }
    let a = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    let (_b, b_url) = twin(&a);
    let k = key();
    let path = "/oauth/device_authorization/cancel";
    for _ in 0..3 {
        let d = crate::device::signed(&a, &k).await;
        let dc = d.s("device_code");
        let form = [("device_code", dc.as_str()), ("client_id", "travel-bot")];
        let proof = [("DPoP", a.proof(&k, &format!("{}{path}", a.url), None))];
        let (ra, rb) = tokio::join!(
            a.post_form(path, &form, &proof),
            a.post_form_to(&b_url, path, &form, &proof)
        );
        let ok = [&ra, &rb].iter().filter(|r| r.status == 200).count();
        assert_eq!(ok, 1, "{} / {}", ra.body, rb.body);
        let refused = if ra.status == 200 { &rb } else { &ra };
        assert_eq!(refused.error(), "invalid_dpop_proof", "{}", refused.body);
    }
}

#[tokio::test]
async fn a_revocation_through_one_replica_reaches_another_replicas_feed_promptly() {
    if !on_postgres() {
        return;
    }
    const N: usize = 60;
    let a = Broker::start(&[]);
    let b = Broker::start_in(&a.data, &[]);
    let k = key();
    let t = a.enroll(&k, "bot", "x:y", &[]).await;
    let mut tokens = vec![t.s("access_token")];
    let mut rt = t.s("refresh_token");
    while tokens.len() < N {
        let r = a.refresh(&k, &rt).await;
        assert_eq!(r.status, 200, "{}", r.body);
        rt = r.s("refresh_token");
        tokens.push(r.s("access_token"));
    }
    // A follower of replica B's stream: each revoked jti, as it arrives.
    let mut stream = b.revocation_stream(None).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    tokio::spawn(async move {
        let mut text = String::new();
        while let Ok(Some(chunk)) = stream.chunk().await {
            let at = Instant::now();
            text.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = text.find("\n\n") {
                let event: String = text.drain(..end + 2).collect();
                for data in event.lines().filter_map(|l| l.strip_prefix("data:")) {
                    let v: serde_json::Value = serde_json::from_str(data.trim()).unwrap();
                    if let Some(j) = v["jti"].as_str() {
                        let _ = tx.send((j.to_owned(), at));
                    }
                }
            }
        }
    });
    // Let B's notices connection settle before the clock starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut arrived: HashMap<String, Instant> = HashMap::new();
    let mut delays = Vec::with_capacity(N);
    let mut after = Vec::with_capacity(N);
    for token in &tokens {
        let jti = claims(token)["jti"].as_str().unwrap().to_owned();
        let start = Instant::now();
        let r = a.revoke_token(token, "bot").await;
        assert_eq!(r.status, 200, "{}", r.body);
        let answered = Instant::now();
        let at = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(at) = arrived.get(&jti) {
                    return *at;
                }
                let (j, at) = rx.recv().await.unwrap();
                arrived.insert(j, at);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("revocation {jti} did not reach replica B's feed"));
        delays.push(at.saturating_duration_since(start));
        after.push(at.saturating_duration_since(answered));
    }
    let ms = |d: &mut Vec<Duration>| {
        d.sort();
        let pct = |p: usize| d[(d.len() * p / 100).min(d.len() - 1)].as_secs_f64() * 1e3;
        format!("p50 {:.1} ms, p99 {:.1} ms", pct(50), pct(99))
    };
    println!(
        "revocations through replica A seen on replica B's feed, {N} revocations: \
         from the request sent {}; from replica A's answer {}",
        ms(&mut delays),
        ms(&mut after)
    );
}

/// A metric's value in `/metrics` text.
fn figure(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn the_connection_pool_figures_are_in_metrics() {
    if !on_postgres() {
        return;
    }
    let b = Broker::start(&[]);
    let k = key();
    assert_eq!(b.enroll(&k, "bot", "x:y", &[]).await.status, 200);
    let mut text = String::new();
    for _ in 0..50 {
        let r = b.get("/metrics").await;
        assert_eq!(r.status, 200);
        text = r.body.as_str().unwrap().to_owned();
        if figure(&text, "protonpass_store_feed_listening") == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        figure(&text, "protonpass_store_feed_listening"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        figure(&text, "protonpass_store_pool_max"),
        Some(16.0),
        "{text}"
    );
    let size = figure(&text, "protonpass_store_pool_connections").unwrap();
    let idle = figure(&text, "protonpass_store_pool_idle").unwrap();
    // The broker has used the pool: connections were made, and kept.
    assert!((1.0..=16.0).contains(&size), "{text}");
    assert!(idle <= size, "{text}");
    assert_eq!(
        figure(&text, "protonpass_store_pool_waiting"),
        Some(0.0),
        "{text}"
    );
    assert!(
        text.contains("# HELP protonpass_store_pool_idle "),
        "{text}"
    );
}

/// A throwaway cluster of the test's own (`scripts/pg-cluster.sh`), stopped
/// and removed when dropped.
struct Cluster {
    state: tempfile::TempDir,
}

impl Cluster {
    fn run(&self, cmd: &str) -> String {
        crate::replicas_faults::pg_cluster(self.state.path(), cmd)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run("stop")));
    }
}

async fn ready_status(b: &Broker) -> u16 {
    b.get("/readyz").await.status
}

async fn until(b: &Broker, what: &str, secs: u64, ok: impl AsyncFn(&Broker) -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !ok(b).await {
        assert!(Instant::now() < end, "{what} within {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn readyz_follows_the_database_going_away_and_coming_back() {
    if !on_postgres() {
        return;
    }
    let cluster = Cluster {
        state: tempfile::tempdir().unwrap(),
    };
    let url = cluster.run("start");
    // A data directory whose settings name this cluster (the kit's own
    // store preparation is skipped: `test-store` exists).
    let dir = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .unwrap();
    let data = dir.path();
    let key_file = data.join("vault.key");
    std::fs::write(&key_file, protonpass_agent::b64::encode([7u8; 32])).unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(
        data.join("broker.toml"),
        format!(
            "store = {url:?}\nvault_key_file = {:?}\n",
            key_file.display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(data.join("test-store"), "").unwrap();
    let b = Broker::start_in(data, &[]);
    assert_eq!(ready_status(&b).await, 200);
    let k = key();
    assert_eq!(b.enroll(&k, "bot", "x:y", &[]).await.status, 200);

    cluster.run("pause");
    until(&b, "503 once the database is gone", 10, async |b| {
        ready_status(b).await == 503
    })
    .await;
    let r = b.get("/readyz").await;
    assert_eq!(r.body["why"], "database unreachable", "{}", r.body);
    // Alive all the while.
    assert_eq!(b.get("/healthz").await.status, 200);

    cluster.run("resume");
    until(&b, "200 once the database is back", 20, async |b| {
        ready_status(b).await == 200
    })
    .await;
    // It serves again, and its revocation notices came back too.
    assert_eq!(b.enroll(&k, "bot", "x:y", &[]).await.status, 200);
    until(&b, "revocation notices again", 10, async |b| {
        let t = b
            .get("/metrics")
            .await
            .body
            .as_str()
            .unwrap_or_default()
            .to_owned();
        figure(&t, "protonpass_store_feed_listening") == Some(1.0)
    })
    .await;
}
