//! `serve`: listen, build the broker, follow what other processes write.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt as _;
use protonpass_agent::{Error, Result};
use serde_json::json;

use super::{key_place, make_broker, runtime};
use crate::config::Config;
use crate::service::{Broker, upkeep};
use crate::store;

/// Raise the open-file soft limit to the hard one: every client connection
/// and SQLite's files take a descriptor, and the common default soft limit
/// (1,024) is below what a busy broker holds. Returns the limit in force.
fn raise_open_files() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let l = getrlimit(Resource::Nofile);
    // An unlimited hard limit is not a value the kernel takes for the soft one.
    if let (Some(cur), Some(max)) = (l.current, l.maximum)
        && cur < max
    {
        let raised = Rlimit {
            current: Some(max),
            maximum: Some(max),
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// Nagle off on every accepted connection: a response hyper writes in more
/// than one send (a streamed body, each event of the revocation feed) would
/// otherwise wait for the peer's delayed ACK, up to 40 ms on Linux.
fn no_delay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
}

pub(super) fn serve(cfg: Config) -> Result<ExitCode> {
    let open_files = raise_open_files();
    tracing::info!(
        open_files = open_files.unwrap_or(u64::MAX),
        "open-file limit"
    );
    // One server per data directory: a second one would share the database
    // but not its in-memory state (replay cache, nonces, feed subscribers).
    // A PostgreSQL store has no data directory: replicas share it.
    let mut lock = match cfg.store {
        None => {
            crate::files::check_data_dir(&cfg.data, true)?;
            let mut lock = crate::files::lock_serve(&cfg.data)?;
            lock.record(None)?;
            Some(lock)
        }
        Some(_) => None,
    };
    let rt = runtime()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&cfg.addr)
            .await
            .map_err(|e| Error::Server(format!("cannot listen on {}: {e}", cfg.addr)))?;
        let local = listener.local_addr().map_err(|e| Error::Server(e.to_string()))?;
        let listener = listener.tap_io(no_delay);
        if let Some(lock) = lock.as_mut() {
            lock.record(Some(&local.to_string()))?;
        }
        let metrics_listener = match &cfg.metrics_addr {
            Some(a) => Some(tokio::net::TcpListener::bind(a).await.map_err(|e| {
                Error::Server(format!("cannot listen on {a} (--metrics-addr): {e}"))
            })?),
            None => None,
        };
        let metrics_local = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
        let issuer = cfg.issuer.clone().unwrap_or_else(|| format!("http://{local}"));
        if cfg.store.is_none() {
            crate::files::write_issuer(&cfg.data, &issuer)?;
        } else if crate::files::check_data_dir(&cfg.data, true).is_ok() {
            // A convenience for commands run with the same --data on this
            // machine (links they print); replicas should set --issuer.
            let _ = crate::files::write_issuer(&cfg.data, &issuer);
        }
        let b = make_broker(&cfg, issuer.clone())?;
        let signals = stop_signals()?;
        {
            let stdout = std::io::stdout();
            let mut w = stdout.lock();
            let mut line = json!({"event": "listening", "addr": local.to_string(), "issuer": issuer});
            if let Some(m) = metrics_local {
                line["metrics_addr"] = json!(m.to_string());
            }
            let _ = writeln!(w, "{line}");
            let place = match &cfg.store {
                Some(url) => format!("--store {}", url.describe()),
                None => format!("--data {}", cfg.data.display()),
            };
            let _ = writeln!(
                w,
                "protonpass-broker is listening on {local}; issuer {issuer}\n  metadata: {issuer}/.well-known/oauth-authorization-server\n  approve agents: protonpass-broker {place} approve XXXX-XXXX"
            );
            let _ = w.flush();
        }
        match &cfg.store {
            Some(url) => tracing::info!(addr = %local, issuer = %issuer, store = %url.describe(), "listening"),
            None => tracing::info!(addr = %local, issuer = %issuer, data = %cfg.data.display(), "listening"),
        }
        if let Ok(Some(link)) = crate::dashboard::first_run_link(&b).await {
            // With a shared store the data directory holds no state, only
            // this replica's setup-link file when stdout is not a terminal.
            if cfg.store.is_none() || crate::files::check_data_dir(&cfg.data, true).is_ok() {
                show_setup_link(&cfg.data, &link);
            }
        }
        tokio::spawn(watch_store(b.clone()));
        tokio::spawn(upkeep(b.clone()));
        if let Some(l) = metrics_listener {
            let app = crate::http::metrics_router(b.clone());
            tracing::info!(addr = %metrics_local.map(|a| a.to_string()).unwrap_or_default(), "metrics listening");
            tokio::spawn(async move {
                if let Err(e) = axum::serve(l.tap_io(no_delay), app).await {
                    tracing::error!(error = %e, "the metrics listener failed");
                }
            });
        }
        let b_ready = b.clone();
        let app = crate::http::router(
            b.clone(),
            crate::dashboard::router()
                .merge(crate::gateway::router(b)?)
                .merge(crate::http::budget::routes())
                .merge(crate::http::clients::routes()),
        );
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let b_stop = b_ready.clone();
        let server = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                shutdown(signals).await;
                // Not ready any more: load balancers move away while
                // the requests in flight finish.
                b_stop.draining.store(true, std::sync::atomic::Ordering::Release);
                tracing::info!("shutting down: finishing the requests in flight");
                let _ = stop_tx.send(true);
            })
            .into_future();
        // Requests in flight finish; long-lived streams (the revocation feed)
        // never do, so they get a short grace period.
        let grace = async move {
            let _ = stop_rx.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        tokio::select! {
            r = server => r.map_err(|e| Error::Server(format!("server failed: {e}")))?,
            () = grace => tracing::info!("closed the remaining streams"),
        }
        tracing::info!("stopped");
        drop(lock);
        Ok(ExitCode::SUCCESS)
    })
}

/// Every [`upkeep::UPKEEP_INTERVAL`] seconds (and once at start): prune what
/// has expired, and sign a checkpoint of the audit chain's head.
async fn upkeep(b: Arc<Broker>) {
    let mut tick = tokio::time::interval(Duration::from_secs(upkeep::UPKEEP_INTERVAL));
    loop {
        tick.tick().await;
        match upkeep::prune(&b, b.clock.now()).await {
            Ok(p) if p.total() > 0 => tracing::info!(
                removed = p.total(),
                tokens = p.tokens,
                devices = p.devices,
                revocations = p.revocations,
                "pruned expired rows"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.description(), "pruning failed"),
        }
        match upkeep::checkpoint(&b).await {
            Ok(Some(c)) => tracing::info!(seq = c.seq, kid = %c.kid, "audit checkpoint signed"),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e.description(), "audit checkpoint not signed"),
        }
    }
}

/// Pick up what other processes (the CLI, other replicas) wrote: new feed
/// entries, rotated keys every second. A store with prompt notices of new
/// entries (PostgreSQL's `LISTEN`) tells at once, and the head is polled
/// every second besides; without them (SQLite), or while they do not arrive,
/// it is polled every 10 ms.
async fn watch_store(b: Arc<Broker>) {
    /// Polling while notices arrive: a safety net only.
    const POLL_LISTENING: Duration = Duration::from_secs(1);
    let mut notices = b.store.feed_notices();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut polled = tokio::time::Instant::now();
    let mut keys = tokio::time::Instant::now();
    let mut listening = false;
    loop {
        let notice = async {
            match notices.as_mut() {
                Some(rx) => rx.changed().await.ok().map(|()| *rx.borrow_and_update()),
                None => std::future::pending().await,
            }
        };
        let mut poll = tokio::select! {
            () = async { tick.tick().await; } => false,
            n = notice => match n {
                Some(n) => {
                    b.feed_advanced(n.head);
                    // Just (re)connected: what was missed meanwhile.
                    let poll = n.listening && !listening;
                    listening = n.listening;
                    poll
                }
                None => {
                    // The notices ended for good: poll.
                    notices = None;
                    listening = false;
                    false
                }
            },
        };
        poll |= !listening || polled.elapsed() >= POLL_LISTENING;
        if poll {
            polled = tokio::time::Instant::now();
            if let Ok(head) = store::read(&b.store, |tx| tx.revocation_head()).await {
                b.feed_advanced(head);
            }
        }
        if keys.elapsed() >= Duration::from_secs(1) {
            keys = tokio::time::Instant::now();
            let b2 = b.clone();
            let now = b.clock.now();
            if let Ok(Ok(k)) = tokio::task::spawn_blocking(move || {
                key_place(&b2.cfg, &b2.store)?.reload(now, b2.cfg.access_ttl)
            })
            .await
            {
                b.set_keyring(k);
            }
        }
    }
}

/// SIGTERM and SIGINT, listened for from before the broker says it is
/// listening: a signal stream installs its handler when made, not when first
/// awaited, so a signal sent right after that line stops the broker
/// gracefully too (not by the signal's default action).
#[cfg(unix)]
type StopSignals = [tokio::signal::unix::Signal; 2];

#[cfg(unix)]
fn stop_signals() -> Result<StopSignals> {
    use tokio::signal::unix::{SignalKind, signal};
    let listen =
        |k| signal(k).map_err(|e| Error::Server(format!("cannot listen for signals: {e}")));
    Ok([
        listen(SignalKind::terminate())?,
        listen(SignalKind::interrupt())?,
    ])
}

#[cfg(unix)]
async fn shutdown(signals: StopSignals) {
    let [mut term, mut int] = signals;
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

#[cfg(not(unix))]
type StopSignals = ();

#[cfg(not(unix))]
fn stop_signals() -> Result<StopSignals> {
    Ok(())
}

#[cfg(not(unix))]
async fn shutdown((): StopSignals) {
    let _ = tokio::signal::ctrl_c().await;
}

/// The first-run setup link is a secret: on a terminal it is shown there;
/// otherwise (a service manager, a pipe, a container log) it goes to an
/// owner-only file in the data directory, and the log names the file, never
/// the link. Never `println!`: a launcher that read the first line and closed
/// the pipe must not bring the broker down (EPIPE would panic).
fn show_setup_link(data: &std::path::Path, link: &str) {
    use std::io::IsTerminal as _;
    let stdout = std::io::stdout();
    if stdout.is_terminal() {
        let _ = writeln!(
            stdout.lock(),
            "  set the owner's dashboard password (one-time link, valid 24 h): {link}"
        );
        tracing::warn!(
            "the owner has no dashboard password: the one-time setup link is on the terminal (`owner add default` makes a new one)"
        );
        return;
    }
    match crate::files::write_setup_link(data, link) {
        Ok(path) => {
            let _ = writeln!(
                stdout.lock(),
                "  set the owner's dashboard password: the one-time link (valid 24 h) is in {}",
                path.display()
            );
            tracing::warn!(
                file = %path.display(),
                "the owner has no dashboard password: the one-time setup link is in an owner-only file (`owner add default` makes a new one)"
            );
        }
        Err(e) => tracing::warn!(
            error = %e,
            "the owner has no dashboard password, and the setup link could not be written: run `owner add default` for one"
        ),
    }
}
