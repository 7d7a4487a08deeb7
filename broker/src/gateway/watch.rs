//! A response cut off when its token or grant is revoked while it streams:
//! each time the revocation feed moves (in this process or, through the
//! store, from the CLI), the call's token and grant are checked again, and a
//! revoked call's body ends with an error, so the agent sees a broken
//! transfer rather than a complete-looking one.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Bytes;
use futures_util::{Stream, StreamExt as _};

use crate::model::TokenStatus;
use crate::service::{Broker, grant_live};
use crate::store;

/// Whether token `jti` and grant `gid` are still live. A store that does not
/// answer counts as live: the check runs again at the feed's next change.
pub(super) async fn live(b: &Broker, jti: &str, gid: &str) -> bool {
    let (j, g) = (jti.to_owned(), gid.to_owned());
    let now = b.clock.now();
    let state = store::read(&b.store, move |tx| {
        Ok((tx.token_get(&j)?, tx.grant_get(&g)?))
    })
    .await;
    match &state {
        Ok((Some(t), Some(g))) => t.status == TokenStatus::Active && grant_live(g, now),
        Ok(_) => false,
        Err(_) => true,
    }
}

/// `body`, ended early with an error once token `jti` or grant `gid` is no
/// longer live; `cut` tells the caller it happened. `feed` was subscribed to
/// before the call's checks read the store, so a revocation made since (while
/// the upstream was working) counts as a change and is checked at once.
pub(super) fn until_revoked<S>(
    b: &Arc<Broker>,
    mut feed: tokio::sync::watch::Receiver<i64>,
    jti: String,
    gid: String,
    cut: Arc<AtomicBool>,
    body: S,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
{
    let (b, flag) = (b.clone(), cut.clone());
    let revoked = async move {
        loop {
            if feed.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            if !live(&b, &jti, &gid).await {
                flag.store(true, Ordering::SeqCst);
                return;
            }
        }
    };
    let tail = futures_util::stream::once(async move { cut.load(Ordering::SeqCst) })
        .filter_map(|c| async move { c.then(|| Err(io::Error::other("the token was revoked"))) });
    body.map(|c| c.map_err(io::Error::other))
        .take_until(revoked)
        .chain(tail)
}
