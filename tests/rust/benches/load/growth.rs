//! Part 2 of the load bench: token-exchange throughput with a large store
//! (a fixture written straight into the broker's SQLite file) against an
//! empty one.

use super::*;

/// The tokens of one fixture grant.
struct Grant<'a> {
    gid: &'a str,
    agent: &'a str,
    jkt: &'a str,
}

impl Grant<'_> {
    /// Inserts one token row, field for field what the broker stores
    /// (broker/src/model.rs TokenRec): an access token is active and names
    /// the audience, a refresh token is spent and has its hash.
    fn insert(
        &self,
        ins: &mut rusqlite::Statement<'_>,
        (jti, kind, scope): (&str, &str, &str),
        (iat, exp): (i64, i64),
        hash: Option<&str>,
    ) {
        let (aud, status) = match kind {
            "access" => (Some(AUD), "active"),
            _ => (None, "used"),
        };
        let data = serde_json::json!({
            "jti": jti, "gid": self.gid, "owner": "default", "kind": kind,
            "client_id": self.agent, "scope": scope, "aud": aud, "iat": iat, "exp": exp,
            "jkt": self.jkt, "hash": hash, "status": status,
        });
        ins.execute(rusqlite::params![jti, self.gid, hash, data.to_string()])
            .unwrap();
    }
}

/// The growth fixture: `tokens` token rows, with their grants and audit
/// records, written straight into the stopped broker's SQLite file in one
/// transaction. Issuing a million tokens through HTTP would take longer than
/// the whole bench (and measure the issuing, not the store's size); the rows
/// are what the broker itself writes (the schema of broker/src/store/sqlite/schema.rs,
/// the JSON of its records, unique random ids and hashes, an intact audit
/// chain), so the broker restarted on this directory cannot tell them apart.
/// History repeats one agent cycle: a refresh (spent refresh token, new access
/// token, one audit record) and four exchanges (an access token and an audit
/// record each); 100 tokens per grant.
pub(super) fn build_fixture(db: &std::path::Path, tokens: usize) -> (usize, usize, usize) {
    let mut conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA cache_size=-262144;")
        .unwrap();
    let now = SystemClock.now();
    let rng = OsRandom;
    let tx = conn.transaction().unwrap();
    let (mut seq, mut prev): (i64, String) = tx
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap_or((0, "0".repeat(64)));
    let (mut n_tok, mut n_grant, mut n_audit) = (0usize, 0usize, 0usize);
    {
        let mut ins_tok = tx
            .prepare("INSERT INTO tokens(jti, gid, hash, data) VALUES (?1,?2,?3,?4)")
            .unwrap();
        let mut ins_grant = tx
            .prepare("INSERT INTO grants(gid, owner, agent, enroll_hash, data) VALUES (?1,'default',?2,NULL,?3)")
            .unwrap();
        let mut ins_audit = tx
            .prepare("INSERT INTO audit(seq, ts, owner, event, detail, prev, hash) VALUES (?1,?2,'default',?3,?4,?5,?6)")
            .unwrap();
        let mut audit = |ts: i64, event: &str, detail: String| {
            seq += 1;
            let h = record_hash(seq, ts, "default", event, &detail, &prev);
            ins_audit
                .execute(rusqlite::params![seq, ts, event, detail, prev, h])
                .unwrap();
            prev = h;
            n_audit += 1;
        };
        // History spread over the last 30 days, oldest first.
        let span = 30 * 86_400;
        let grants = tokens.div_ceil(100);
        let mut g = 0;
        while n_tok < tokens {
            let gid = random_id(&rng, 16).unwrap();
            let agent = format!("fixture-{g}");
            let jkt = random_id(&rng, 32).unwrap();
            let created = now - span + (g as i64 * span) / grants as i64;
            let grant_exp = created + 30 * 86_400;
            let rec = serde_json::json!({
                "gid": gid, "owner": "default", "agent": agent, "scope": GRANT_SCOPE,
                "audiences": [AUD], "jkt": jkt, "status": "active", "origin": "pre-authorized",
                "created_at": created, "ttl": 30 * 86_400, "expires_at": grant_exp,
                "enroll_hash": null, "revoked_at": null,
            });
            ins_grant
                .execute(rusqlite::params![gid, agent, rec.to_string()])
                .unwrap();
            n_grant += 1;
            let grant = Grant {
                gid: &gid,
                agent: &agent,
                jkt: &jkt,
            };
            let mut t = created;
            let mut in_grant = 0;
            while in_grant < 100 && n_tok < tokens {
                // Refresh: the spent refresh token and a new access token.
                let rjti = random_id(&rng, 16).unwrap();
                let secret = format!("rt_{}", random_id(&rng, 32).unwrap());
                let rhash = secret_hash(&secret);
                let row = (rjti.as_str(), "refresh", GRANT_SCOPE);
                grant.insert(&mut ins_tok, row, (t, grant_exp), Some(&rhash));
                let ajti = random_id(&rng, 16).unwrap();
                let row = (ajti.as_str(), "access", GRANT_SCOPE);
                grant.insert(&mut ins_tok, row, (t, t + 3600), None);
                n_tok += 2;
                in_grant += 2;
                audit(
                    t,
                    "refresh",
                    serde_json::json!({"gid": gid, "agent": agent, "spent_jti": rjti,
                        "refresh_jti": random_id(&rng, 16).unwrap(), "jti": ajti,
                        "scope": GRANT_SCOPE, "aud": AUD, "exp": t + 3600, "reason": null})
                    .to_string(),
                );
                for _ in 0..EXCHANGES_PER_REFRESH {
                    if n_tok >= tokens {
                        break;
                    }
                    t += 1;
                    let xjti = random_id(&rng, 16).unwrap();
                    let row = (xjti.as_str(), "access", NARROW);
                    grant.insert(&mut ins_tok, row, (t, t + 3600), None);
                    n_tok += 1;
                    in_grant += 1;
                    audit(
                        t,
                        "exchange",
                        serde_json::json!({"gid": gid, "agent": agent, "subject_jti": rjti,
                            "jti": xjti, "requested_scope": NARROW, "scope": NARROW, "aud": AUD,
                            "exp": t + 3600, "reason": null})
                        .to_string(),
                    );
                }
                t += 60;
            }
            g += 1;
        }
    }
    tx.commit().unwrap();
    // A running broker checkpoints its WAL as it goes; start from that state.
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    (n_tok, n_grant, n_audit)
}

/// Part 2. Returns the number of errors.
pub(super) async fn growth() -> u64 {
    let agents_n: usize = env_or("GROWTH_AGENTS", 64);
    // Short rounds, alternated: other work on the shared machine comes and
    // goes within seconds, and should weigh on both stores alike.
    let seconds: f64 = env_or("GROWTH_SECONDS", 3.0);
    let rounds: usize = env_or("GROWTH_ROUNDS", 6);
    let tokens: usize = env_or("GROWTH_TOKENS", 1_000_000);
    println!(
        "growth: token exchange, {agents_n} agents, {rounds} rounds of {seconds} s per store, alternated, after a warm-up; empty store vs {tokens} stored tokens"
    );
    let empty = Arc::new(Broker::with_args(&["--rate-limit", "off"]));
    let mut full = Broker::with_args(&["--rate-limit", "off"]);
    full.kill();
    let db = full.data.join("broker.db");
    let t0 = Instant::now();
    let (n_tok, n_grant, n_audit) = tokio::task::block_in_place(|| build_fixture(&db, tokens));
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    println!(
        "  fixture: {n_tok} tokens, {n_grant} grants, {n_audit} audit records written into SQLite in {:.1} s ({:.0} MB file)",
        t0.elapsed().as_secs_f64(),
        size as f64 / 1e6
    );
    full.restart();
    let full = Arc::new(full);
    let mut a_agents = enroll(&empty, agents_n, "growth-empty").await;
    let mut b_agents = enroll(&full, agents_n, "growth-full").await;
    let (mut a_t, mut b_t) = (Tally::default(), Tally::default());
    let (mut a_s, mut b_s) = (0.0, 0.0);
    let mut ratios = Vec::new();
    // Warm up both (connections, caches: a running broker's are warm); not
    // counted. Long enough for the first upkeep of the grown store to end:
    // at start the broker verifies the audit chain from its newest signed
    // checkpoint, and the fixture has none (833,333 records to verify, a few
    // seconds of a core), then signs one; a running broker did that long ago.
    let warmup: f64 = env_or("GROWTH_WARMUP", 10.0);
    // Its errors and nonce retries count all the same.
    let (ag, w, _) = drive(&empty, a_agents, warmup, true).await;
    a_agents = ag;
    a_t.nonce_retries += w.nonce_retries;
    a_t.errors = w.errors;
    let (ag, w, _) = drive(&full, b_agents, warmup, true).await;
    b_agents = ag;
    b_t.nonce_retries += w.nonce_retries;
    b_t.errors = w.errors;
    for round in 0..rounds {
        let (ag, t, s) = drive(&empty, a_agents, seconds, true).await;
        let a_ok = t.exchange_ms.len();
        (a_agents, a_s) = (ag, a_s + s);
        a_t.merge(t);
        let (ag, t, s) = drive(&full, b_agents, seconds, true).await;
        let b_ok = t.exchange_ms.len();
        (b_agents, b_s) = (ag, b_s + s);
        b_t.merge(t);
        ratios.push(b_ok as f64 / a_ok as f64);
        println!(
            "  round {}: empty {:.0} exchanges/s, {tokens} tokens {:.0} exchanges/s",
            round + 1,
            a_ok as f64 / seconds,
            b_ok as f64 / seconds
        );
    }
    let a_rate = a_t.exchange_ms.len() as f64 / a_s;
    let b_rate = b_t.exchange_ms.len() as f64 / b_s;
    let a_cpu = a_t.broker_cpu * 1e6 / a_t.exchange_ms.len() as f64;
    let b_cpu = b_t.broker_cpu * 1e6 / b_t.exchange_ms.len() as f64;
    println!(
        "  empty store:       {a_rate:>6.0} exchanges/s, broker CPU {a_cpu:.0} us per exchange   ({} nonce retries, {} errors)",
        a_t.nonce_retries,
        a_t.error_count()
    );
    println!("    {}", latency_line("exchange", &mut a_t.exchange_ms));
    println!(
        "  {tokens} tokens:  {b_rate:>6.0} exchanges/s, broker CPU {b_cpu:.0} us per exchange   ({} nonce retries, {} errors)",
        b_t.nonce_retries,
        b_t.error_count()
    );
    println!("    {}", latency_line("exchange", &mut b_t.exchange_ms));
    println!(
        "  ratio: {:.1} % of the empty store's throughput (target >= 80 %); median of the rounds' ratios {:.1} %; CPU per exchange {:.1} % of the empty store's",
        100.0 * b_rate / a_rate,
        100.0 * percentile(&mut ratios, 0.5),
        100.0 * b_cpu / a_cpu
    );
    print_errors(&a_t);
    print_errors(&b_t);
    // The fixture chains like real records: the broker's own check agrees.
    let (_, out) = full.cli(&["audit", "verify"]);
    println!("  audit verify on the grown store: {out}");
    a_t.error_count() + b_t.error_count()
}
