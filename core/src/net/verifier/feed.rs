//! Following the broker's revocation feed: a catch-up poll page by page, then
//! the SSE stream, resumed from the last position; the revoked ids held until
//! their expiry.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::{Inner, http, stopped};
use crate::error::{Error, Result};
use crate::wire::{RevocationEvent, RevocationFeed};

/// Revoked token and grant ids until their expiry, stored as 16-byte digests
/// so that each entry costs the same few dozen bytes whatever the id.
#[derive(Default)]
pub(super) struct Revoked(RwLock<HashMap<[u8; 16], i64>>);

fn rev_key(kind: u8, id: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update([kind]);
    h.update(id.as_bytes());
    let d = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

impl Revoked {
    pub(super) fn add(&self, e: &RevocationEvent) {
        let Ok(mut m) = self.0.write() else { return };
        if let Some(j) = &e.jti {
            m.insert(rev_key(b'j', j), e.exp);
        }
        if let Some(g) = &e.gid {
            m.insert(rev_key(b'g', g), e.exp);
        }
    }
    pub(super) fn is_revoked(&self, jti: &str, gid: &str) -> bool {
        let Ok(m) = self.0.read() else { return true };
        m.contains_key(&rev_key(b'j', jti)) || m.contains_key(&rev_key(b'g', gid))
    }
    pub(super) fn purge(&self, now: i64) {
        if let Ok(mut m) = self.0.write() {
            m.retain(|_, exp| *exp > now);
        }
    }
    pub(super) fn len(&self) -> usize {
        self.0.read().map(|m| m.len()).unwrap_or(0)
    }
}

fn feed_url(inner: &Inner) -> String {
    inner.meta.revocation_feed_endpoint.clone()
}

fn mark_contact(inner: &Inner) {
    if let Ok(mut t) = inner.feed_contact.lock() {
        *t = Instant::now();
    }
}

fn apply(inner: &Inner, e: &RevocationEvent) {
    inner.revoked.add(e);
    inner.feed_seq.fetch_max(e.seq, Ordering::SeqCst);
}

/// One page-by-page catch-up through `GET /revocations?after=SEQ`.
pub(super) async fn poll_feed(inner: &Arc<Inner>) -> Result<()> {
    let http = http::client()?;
    loop {
        let after = inner.feed_seq.load(Ordering::SeqCst);
        let url = format!("{}?after={after}", feed_url(inner));
        let resp = http
            .get(&url)
            .send()
            .await
            .map_err(|e| http::unreachable("reading the revocation feed", &e))?;
        let status = resp.status().as_u16();
        let body = http::read_body(resp).await?;
        if status != 200 {
            return Err(http::error_from_body(status, &body));
        }
        let page: RevocationFeed = serde_json::from_slice(&body)
            .map_err(|e| Error::InvalidResponse(format!("revocation feed: {e}")))?;
        mark_contact(inner);
        let empty = page.revocations.is_empty();
        for e in &page.revocations {
            apply(inner, e);
        }
        if empty || page.next <= after {
            return Ok(());
        }
    }
}

/// Follow the SSE stream, resuming from the last sequence number; between
/// connection attempts, catch up by polling. Holds the verifier only weakly
/// (between events), and ends as soon as it is stopped or dropped.
pub(super) async fn feed_loop(weak: Weak<Inner>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut failures = 0u32;
    let mut last_purge = Instant::now();
    loop {
        let (stream_url, after) = {
            let Some(inner) = weak.upgrade() else { return };
            let url = inner
                .meta
                .revocation_stream_endpoint
                .clone()
                .unwrap_or_else(|| format!("{}/stream", feed_url(&inner)));
            (url, inner.feed_seq.load(Ordering::SeqCst))
        };
        let connected = tokio::select! {
            c = follow_stream(&weak, &stream_url, after) => c,
            () = stopped(&mut stop) => return,
        };
        let wait = {
            let Some(inner) = weak.upgrade() else { return };
            inner.feed_connected.store(false, Ordering::SeqCst);
            if connected {
                failures = 0;
            } else {
                failures = failures.saturating_add(1);
            }
            let _ = poll_feed(&inner).await;
            if last_purge.elapsed() > Duration::from_secs(60) {
                inner.revoked.purge(inner.opts.clock.now());
                last_purge = Instant::now();
            }
            if failures == 0 {
                Duration::from_millis(100)
            } else {
                http::backoff(failures.min(4), inner.opts.rng.as_ref())
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stopped(&mut stop) => return,
        }
    }
}

/// Returns whether the stream was connected at all.
async fn follow_stream(weak: &Weak<Inner>, url: &str, after: i64) -> bool {
    let Ok(http) = http::client() else {
        return false;
    };
    // A stream has no overall timeout: liveness comes from the server's
    // keep-alive comments, checked by the staleness window.
    let resp = http
        .get(format!("{url}?after={after}"))
        .header("accept", "text/event-stream")
        .header("last-event-id", after.to_string())
        .timeout(Duration::from_secs(365 * 24 * 3600))
        .send()
        .await;
    let Ok(resp) = resp else { return false };
    if resp.status().as_u16() != 200 {
        return false;
    }
    let idle = {
        let Some(inner) = weak.upgrade() else {
            return true;
        };
        inner.feed_connected.store(true, Ordering::SeqCst);
        mark_contact(&inner);
        // Reconnect well before the staleness bound when the stream is quiet
        // (the broker's keep-alive may come less often than the bound): a
        // healthy feed is never stale.
        inner.opts.max_staleness / 2
    };
    let contact = weak.clone();
    let bytes = resp.bytes_stream().map(move |chunk| {
        // Any bytes, keep-alive comments included, prove the feed is alive.
        if let Some(i) = contact.upgrade() {
            mark_contact(&i);
        }
        chunk
    });
    let mut events = eventsource_stream::EventStream::new(bytes);
    loop {
        let next = tokio::time::timeout(idle, events.next()).await;
        let Ok(Some(Ok(ev))) = next else { return true };
        let Some(inner) = weak.upgrade() else {
            return true;
        };
        if ev.data.is_empty() {
            continue;
        }
        match serde_json::from_str::<RevocationEvent>(&ev.data) {
            Ok(e) => apply(&inner, &e),
            // Never skip an event: a later one would move the position past it.
            // Reconnect, and let the poll catch up from the last applied entry.
            Err(_) => return true,
        }
    }
}
