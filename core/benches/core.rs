//! What one DPoP-bound request costs a resource server, next to the raw
//! Ed25519 verifications it cannot avoid.
//!
//! `cargo bench -p protonpass-agent --bench core` (about a minute). Criterion
//! prints its own estimates; at the end this prints the median per operation
//! and the ratio `whole request / (2 x raw verify)`: a request carries two
//! signatures (token and proof), so 1.0 would mean everything else is free.
//!
//! - The whole-request figure is honest about replay: the cache refuses a
//!   proof seen before, so every timed iteration checks a fresh proof. The
//!   proofs of one sample are signed before its clock starts; one verifier and
//!   its cache serve the whole run, and each sample runs one (simulated) second
//!   after the last, so entries expire as they would on a server.
//! - Every benchmark cycles through 256 tokens and proofs (and the raw
//!   reference through the same signatures), so no figure rests on one scalar.
//! - Times are the benchmark thread's CPU time (`BENCH_WALL_CLOCK=1` for wall
//!   time): on a small shared machine, other processes would otherwise weigh on
//!   whichever benchmark happens to run while they do.
//! - The ratio comes from a separate interleaved run, where blocks of whole
//!   requests alternate with blocks of raw verifications (the raw reference is
//!   `verify_strict`, which the core must use; plain `verify` is shown too).

#![allow(clippy::print_stdout)] // a benchmark reports figures

use std::collections::HashMap;
use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::Criterion;
use ed25519_dalek::{Signature, VerifyingKey};
use protonpass_agent::*;

const ISSUER: &str = "https://broker.example";
const AUDIENCE: &str = "https://api.example";
const URL: &str = "https://api.example/bookings?trip=42";
const NOW: i64 = 1_700_000_000;
const SAMPLES: usize = 50;

/// Per-iteration time of each measured sample, by benchmark name. Warm-up
/// calls come first; the last `SAMPLES` entries are the measurement.
static TIMES: Mutex<Vec<(&'static str, f64)>> = Mutex::new(Vec::new());
/// Requests refused inside a timed loop: must stay zero.
static FAILURES: Mutex<u64> = Mutex::new(0);

fn record(name: &'static str, iters: u64, elapsed: Duration) {
    let per_iter = elapsed.as_secs_f64() / iters.max(1) as f64;
    if let Ok(mut t) = TIMES.lock() {
        t.push((name, per_iter));
    }
}

fn fail(n: u64) {
    if n > 0
        && let Ok(mut f) = FAILURES.lock()
    {
        *f += n;
    }
}

/// Different tokens and proofs, cycled through by every benchmark, so that no
/// figure rests on one signature (the verification time varies a little with
/// the scalars).
const VARIANTS: usize = 256;

/// One access token with its proof and its raw signature parts.
struct Variant {
    token: String,
    auth: [String; 1],
    proof: String,
    raw_msg: Vec<u8>,
    raw_sig: Signature,
}

struct Fixture {
    agent: AgentKey,
    keys: KeySet,
    validation: TokenValidation,
    variants: Vec<Variant>,
    /// The broker's key, decompressed once, as the key set holds it.
    raw_key: VerifyingKey,
}

impl Fixture {
    fn new() -> std::result::Result<Self, String> {
        let e = |e: Error| e.to_string();
        let broker = SigningKey::new("k1", AgentKey::from_seed(&[7; 32]));
        let agent = AgentKey::from_seed(&[9; 32]);
        let mut variants = Vec::with_capacity(VARIANTS);
        for i in 0..VARIANTS {
            let token = broker.sign(&AccessTokenClaims {
                iss: ISSUER.into(),
                sub: "owner-alice".into(),
                aud: AUDIENCE.into(),
                client_id: "travel-bot".into(),
                iat: NOW,
                exp: NOW + 30 * 86_400,
                jti: format!("Jx2nQ0a1-6Gq3bQH{i:06}"),
                scope: "travel:search travel:book payment:execute:under-100".into(),
                jkt: agent.thumbprint().into(),
                gid: "grant-1".into(),
                act_sub: "travel-bot".into(),
            });
            let proof = new_proof(&agent, &token, NOW).map_err(e)?;
            let (signing_input, sig) = token.rsplit_once('.').ok_or("token without signature")?;
            let raw_msg = signing_input.as_bytes().to_vec();
            let sig = b64::decode_array::<64>(sig).ok_or("bad token signature encoding")?;
            variants.push(Variant {
                auth: [format!("DPoP {token}")],
                token,
                proof,
                raw_msg,
                raw_sig: Signature::from_bytes(&sig),
            });
        }
        let mut keys = KeySet::default();
        keys.insert("k1", &broker.key().public_jwk()).map_err(e)?;
        let raw_key = VerifyingKey::from_bytes(&broker.key().public_bytes())
            .map_err(|_| "bad broker key".to_owned())?;
        Ok(Fixture {
            agent,
            keys,
            validation: TokenValidation::new(ISSUER, AUDIENCE),
            variants,
            raw_key,
        })
    }

    fn variant(&self, i: usize) -> &Variant {
        &self.variants[i % self.variants.len()]
    }

    fn check<'a>(&'a self, v: &'a Variant) -> ProofCheck<'a> {
        ProofCheck {
            method: "POST",
            url: URL,
            access_token: Some(&v.token),
            expected_jkt: Some(self.agent.thumbprint()),
            nonce: None,
        }
    }

    /// Everything measured below must succeed on the fixture, or the figures
    /// would time an early refusal.
    fn self_test(&self) -> std::result::Result<(), String> {
        let e = |e: Error| e.to_string();
        let proofs = ProofVerifier::default();
        for v in &self.variants {
            verify_proof(&v.proof, &self.check(v), &ProofOptions::default(), NOW).map_err(e)?;
            verify_access_token(&v.token, &self.keys, &self.validation, NOW).map_err(e)?;
            verify_request(
                "POST",
                URL,
                &v.auth,
                std::slice::from_ref(&v.proof),
                &self.keys,
                &self.validation,
                &proofs,
                None,
                NOW,
            )
            .map_err(e)?;
            self.raw_key
                .verify_strict(&v.raw_msg, &v.raw_sig)
                .map_err(|_| "raw verify failed".to_owned())?;
        }
        Ok(())
    }
}

fn new_proof(agent: &AgentKey, token: &str, now: i64) -> Result<String> {
    create_proof(
        agent,
        &ProofInput {
            method: "POST",
            url: URL,
            access_token: Some(token),
            ..Default::default()
        },
        now,
        &OsRandom,
    )
}

/// The benchmark thread's CPU time: what the operations cost, not how long
/// other processes on the machine kept this one waiting. On an idle machine it
/// equals wall time. `BENCH_WALL_CLOCK=1` measures wall time instead.
fn clock() -> Duration {
    #[cfg(target_os = "linux")]
    if std::env::var_os("BENCH_WALL_CLOCK").is_none() {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        return Duration::new(
            u64::try_from(t.tv_sec).unwrap_or(0),
            u32::try_from(t.tv_nsec).unwrap_or(0),
        );
    }
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// Run `op` `iters` times on the benchmark clock; `op` says whether it succeeded.
fn timed(name: &'static str, iters: u64, mut op: impl FnMut() -> bool) -> Duration {
    let mut bad = 0;
    let start = clock();
    for _ in 0..iters {
        bad += u64::from(!op());
    }
    let t = clock().saturating_sub(start);
    fail(bad);
    record(name, iters, t);
    t
}

/// `n` fresh proofs signed at `now`, for the fixture's tokens from `start` on.
fn batch(f: &Fixture, start: usize, n: u64, now: i64) -> Vec<(usize, [String; 1])> {
    (start..start + n as usize)
        .filter_map(|i| {
            let p = new_proof(&f.agent, &f.variant(i).token, now).ok()?;
            Some((i, [p]))
        })
        .collect()
}

fn request(
    f: &Fixture,
    proofs: &ProofVerifier,
    (i, dpop): &(usize, [String; 1]),
    now: i64,
) -> bool {
    verify_request(
        "POST",
        URL,
        &f.variant(*i).auth,
        black_box(dpop),
        &f.keys,
        &f.validation,
        proofs,
        None,
        now,
    )
    .is_ok()
}

fn raw_verify(f: &Fixture, i: usize, strict: bool) -> bool {
    use ed25519_dalek::Verifier as _;
    let v = f.variant(i);
    if strict {
        f.raw_key.verify_strict(black_box(&v.raw_msg), &v.raw_sig)
    } else {
        f.raw_key.verify(black_box(&v.raw_msg), &v.raw_sig)
    }
    .is_ok()
}

fn benches(c: &mut Criterion, f: &Fixture) {
    let mut i = 0usize;
    let mut next = move || {
        i = i.wrapping_add(1);
        i
    };
    c.bench_function("proof/create", |b| {
        b.iter_custom(|n| {
            timed("proof/create", n, || {
                black_box(new_proof(&f.agent, &f.variant(next()).token, NOW)).is_ok()
            })
        });
    });

    let opts = ProofOptions::default();
    c.bench_function("proof/verify", |b| {
        b.iter_custom(|n| {
            timed("proof/verify", n, || {
                let v = f.variant(next());
                verify_proof(black_box(&v.proof), &f.check(v), &opts, NOW).is_ok()
            })
        });
    });

    c.bench_function("token/verify", |b| {
        b.iter_custom(|n| {
            timed("token/verify", n, || {
                let v = f.variant(next());
                verify_access_token(black_box(&v.token), &f.keys, &f.validation, NOW).is_ok()
            })
        });
    });

    // One verifier (and replay cache) for the whole run, as on a server; each
    // sample one second later than the last, with proofs signed for it.
    let proofs = ProofVerifier::default();
    let mut now = NOW;
    c.bench_function("request/verify", |b| {
        b.iter_custom(|n| {
            now += 1;
            let fresh = batch(f, now as usize, n, now);
            fail(n - fresh.len() as u64);
            let mut it = fresh.iter();
            timed("request/verify", n, || {
                it.next().is_some_and(|d| request(f, &proofs, d, now))
            })
        });
    });

    c.bench_function("ed25519/verify_strict", |b| {
        b.iter_custom(|n| timed("ed25519/verify_strict", n, || raw_verify(f, next(), true)));
    });

    c.bench_function("ed25519/verify", |b| {
        b.iter_custom(|n| timed("ed25519/verify", n, || raw_verify(f, next(), false)));
    });
}

/// The ratio, measured interleaved: short blocks of whole requests and of raw
/// verifications alternate, so that whatever else the machine does (a build on
/// the other core) weighs on both alike; each request block is compared with
/// the raw blocks around it.
struct Interleaved {
    /// Median per operation: whole request, verify_strict, verify.
    request: f64,
    strict: f64,
    plain: f64,
    /// Quartiles of the per-block ratio request / (2 x verify_strict).
    ratio: [f64; 3],
    /// The same against plain verify.
    ratio_plain: [f64; 3],
    blocks: usize,
}

fn interleaved(f: &Fixture, blocks: usize) -> Option<Interleaved> {
    const REQS: u64 = 32;
    const RAWS: u64 = 48;
    let proofs = ProofVerifier::default();
    let mut now = NOW + 100_000;
    let (mut req, mut strict, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    let per_op = |t: Duration, n: u64| t.as_secs_f64() / n as f64;
    let mut i = 0usize;
    let mut raw_block = |strict: bool| {
        let mut bad = 0;
        let t = clock();
        for _ in 0..RAWS {
            i = i.wrapping_add(1);
            bad += u64::from(!raw_verify(f, i, strict));
        }
        let t = clock().saturating_sub(t);
        fail(bad);
        per_op(t, RAWS)
    };
    for _ in 0..blocks {
        now += 1;
        let fresh = batch(f, now as usize * REQS as usize, REQS, now);
        fail(REQS - fresh.len() as u64);
        // Symmetric around the request block, so that neither reference gains
        // from running first or last: strict, plain, requests, plain, strict.
        let s1 = raw_block(true);
        let p1 = raw_block(false);
        let mut bad = 0;
        let t = clock();
        for d in &fresh {
            bad += u64::from(!request(f, &proofs, d, now));
        }
        req.push(per_op(clock().saturating_sub(t), REQS));
        fail(bad);
        let p2 = raw_block(false);
        let s2 = raw_block(true);
        strict.push((s1 + s2) / 2.0);
        plain.push((p1 + p2) / 2.0);
    }
    let ratios = |raw: &[f64]| {
        let r: Vec<f64> = req.iter().zip(raw).map(|(q, r)| q / (2.0 * r)).collect();
        quartiles(r)
    };
    Some(Interleaved {
        ratio: ratios(&strict)?,
        ratio_plain: ratios(&plain)?,
        request: median(req)?,
        strict: median(strict)?,
        plain: median(plain)?,
        blocks,
    })
}

fn quartiles(mut v: Vec<f64>) -> Option<[f64; 3]> {
    v.sort_by(f64::total_cmp);
    let at = |q: usize| v.get(v.len() * q / 4).copied();
    Some([at(1)?, at(2)?, at(3)?])
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

fn report(inter: Option<Interleaved>) -> std::result::Result<(), String> {
    let times = TIMES.lock().map_err(|_| "lock")?.clone();
    let mut by_name: HashMap<&str, Vec<f64>> = HashMap::new();
    for (name, t) in times {
        by_name.entry(name).or_default().push(t);
    }
    let figure = |name: &str| {
        by_name.get(name).and_then(|v| {
            let start = v.len().saturating_sub(SAMPLES);
            median(v[start..].to_vec())
        })
    };
    let what_clock = if cfg!(target_os = "linux") && std::env::var_os("BENCH_WALL_CLOCK").is_none()
    {
        "thread CPU time"
    } else {
        "wall time"
    };
    println!(
        "\nprotonpass-agent core, median per operation ({SAMPLES} samples each, {what_clock}):"
    );
    for (name, what) in [
        ("proof/create", "create a DPoP proof"),
        ("proof/verify", "verify a DPoP proof"),
        ("token/verify", "verify an access token"),
        (
            "request/verify",
            "verify a whole request (token + fresh proof + replay cache)",
        ),
        ("ed25519/verify_strict", "raw ed25519-dalek verify_strict"),
        ("ed25519/verify", "raw ed25519-dalek verify"),
    ] {
        if let Some(t) = figure(name) {
            println!("  {what:<62} {:>8.1} µs", t * 1e6);
        }
    }
    if let Some(i) = inter {
        println!(
            "interleaved ({} blocks): whole request {:.1} µs, verify_strict {:.1} µs, verify {:.1} µs",
            i.blocks,
            i.request * 1e6,
            i.strict * 1e6,
            i.plain * 1e6
        );
        let [lo, r, hi] = i.ratio;
        println!(
            "ratio whole request / (2 x raw verify) = {r:.2} (quartiles {lo:.2}-{hi:.2}; raw = verify_strict, target <= 1.30){}",
            if r <= 1.3 { "" } else { "  ABOVE TARGET" }
        );
        let [lo, r, hi] = i.ratio_plain;
        println!(
            "ratio whole request / (2 x raw verify, non-strict) = {r:.2} (quartiles {lo:.2}-{hi:.2})"
        );
    }
    let failures = *FAILURES.lock().map_err(|_| "lock")?;
    if failures > 0 {
        return Err(format!("{failures} measured operations failed"));
    }
    Ok(())
}

fn main() -> ExitCode {
    let fixture = match Fixture::new().and_then(|f| f.self_test().map(|()| f)) {
        Ok(f) => f,
        Err(e) => {
            println!("bench setup failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut c = Criterion::default()
        .sample_size(SAMPLES)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    benches(&mut c, &fixture);
    c.final_summary();
    // `cargo test --benches` runs each benchmark once (`--test`): no figures then.
    // `--profile-time` only runs the code for a profiler: no figures either.
    if std::env::args().any(|a| matches!(a.as_str(), "--test" | "--list" | "--profile-time")) {
        return ExitCode::SUCCESS;
    }
    let inter = interleaved(&fixture, 200);
    match report(inter) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}
