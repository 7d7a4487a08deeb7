//! Prompt revocations across replicas: a connection of its own (outside the
//! pool) that `LISTEN`s on the channel a new feed entry is announced on
//! (the trigger of schema version 4, `schema.rs`). Each notice names
//! the entry's position, which the server sends once the entry's transaction
//! has committed; the process tells its feed subscribers at once.
//!
//! The connection is made again after a loss (with a growing pause, at most
//! [`RETRY_MAX`]), and checked every [`PING`]; while it is down,
//! [`FeedNotice::listening`] is false and the process polls the feed's head
//! as it does without notices (`cli/serve.rs`).

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_postgres::AsyncMessage;

use crate::store::FeedNotice;

/// The channel new feed entries are announced on.
pub(super) const CHANNEL: &str = "protonpass_feed";
/// First pause before connecting again.
const RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest pause before connecting again.
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How often the listening connection is checked (a server that vanished
/// without closing it is noticed within this, plus the query's timeout).
const PING: Duration = Duration::from_secs(5);

/// Start listening on the store's runtime; the receiver follows the notices.
pub(super) fn start(
    cfg: tokio_postgres::Config,
    rt: &tokio::runtime::Handle,
) -> watch::Receiver<FeedNotice> {
    let (tx, rx) = watch::channel(FeedNotice::default());
    rt.spawn(listen(cfg, tx));
    rx
}

async fn listen(cfg: tokio_postgres::Config, tx: watch::Sender<FeedNotice>) {
    let mut pause = RETRY_MIN;
    loop {
        match session(&cfg, &tx).await {
            // It listened: a loss after that starts the pauses over.
            Ok(()) => pause = RETRY_MIN,
            Err(e) => tracing::debug!(error = %e, "revocation notices: cannot listen"),
        }
        tx.send_if_modified(|n| std::mem::replace(&mut n.listening, false));
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
}

/// One connection: listen until it is lost. `Ok` once it has listened.
async fn session(
    cfg: &tokio_postgres::Config,
    tx: &watch::Sender<FeedNotice>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut conn) = cfg.connect(tokio_postgres::NoTls).await?;
    // The connection's messages (the notices among them) come to whoever
    // drives it: a task of its own, which ends with the connection.
    let (ntx, mut nrx) = mpsc::unbounded_channel::<i64>();
    let driver = tokio::spawn(async move {
        while let Some(m) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            match m {
                Ok(AsyncMessage::Notification(n)) if n.channel() == CHANNEL => {
                    if let Ok(seq) = n.payload().parse::<i64>()
                        && ntx.send(seq).is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "revocation notices: connection lost");
                    return;
                }
            }
        }
    });
    let listening = client.batch_execute(&format!("LISTEN {CHANNEL}")).await;
    if let Err(e) = listening {
        driver.abort();
        return Err(e);
    }
    tracing::debug!("revocation notices: listening");
    tx.send_modify(|n| n.listening = true);
    let mut ping = tokio::time::interval(PING);
    ping.tick().await;
    loop {
        tokio::select! {
            seq = nrx.recv() => match seq {
                Some(seq) => {
                    tx.send_if_modified(|n| {
                        let newer = seq > n.head;
                        n.head = n.head.max(seq);
                        newer
                    });
                }
                None => break,
            },
            _ = ping.tick() => {
                let alive = tokio::time::timeout(PING, client.simple_query("")).await;
                if !matches!(alive, Ok(Ok(_))) {
                    tracing::warn!("revocation notices: the connection stopped answering");
                    break;
                }
            }
        }
        if tx.is_closed() {
            break;
        }
    }
    driver.abort();
    Ok(())
}
