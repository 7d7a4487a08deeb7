//! Usage reports: each request's outcome queued and sent to the broker in
//! batches every second; a refusal the application decides after the check
//! ([`Identity::require`]) turns the request's `allow` into a `deny`.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{Identity, Inner, Rejection, Verifier, http, stopped};
use crate::error::Error;
use crate::wire::{UsageEvent, UsageReport};

/// Most uses waiting to be reported; beyond, new ones are dropped.
const USAGE_MAX: usize = 10_000;
/// Most uses in one report (the broker's `MAX_USES`).
const USAGE_REPORT_MAX: usize = 1000;
/// Most bytes of uses in one report (the broker takes bodies up to 64 KiB;
/// one use is at most about 4 KiB).
const USAGE_REPORT_BYTES: usize = 56 * 1024;

/// Where a verified request's use waits to be reported, so that a refusal the
/// application decides afterwards ([`Identity::require`]) turns its `allow`
/// into a `deny` instead of counting the request twice.
#[derive(Clone, Default)]
pub(super) struct UseTicket(pub(super) Option<(Weak<Inner>, u64)>);

impl fmt::Debug for UseTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "reported" } else { "-" })
    }
}

// Two identities are equal whatever their report entries.
impl PartialEq for UseTicket {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for UseTicket {}

impl UseTicket {
    pub(super) fn refused(&self, error: &Error, scope: &str) {
        let Some((weak, id)) = &self.0 else { return };
        let Some(inner) = weak.upgrade() else { return };
        let Ok(mut u) = inner.usage.lock() else {
            return;
        };
        let set = |e: &mut UsageEvent| {
            e.decision = "deny".into();
            e.code = Some(error.code().to_owned());
            e.reason = error.reason().map(|r| r.as_str().to_owned());
            e.scope = Some(scope.to_owned());
        };
        if let Some((_, e)) = u.iter_mut().rev().find(|(n, _)| n == id) {
            set(e);
        } else if let Some(mut e) = inner.last_sent(*id)
            && u.len() < USAGE_MAX
        {
            // Already sent as allowed (the batch left in between): the refusal
            // follows as its own entry.
            set(&mut e);
            u.push((*id, e));
        }
    }
}

impl Verifier {
    /// Queue the report of one request: allowed, or refused with its code
    /// and finer reason (and the token id when the token was verified). A
    /// nonce challenge is the protocol's normal course, not a refusal.
    pub(super) fn record_use(
        &self,
        method: &str,
        url: &str,
        r: std::result::Result<Identity, Rejection>,
        jti: Option<String>,
    ) -> std::result::Result<Identity, Rejection> {
        if matches!(&r, Err(rej) if rej.error == Error::UseDpopNonce) {
            return r;
        }
        let path = url::Url::parse(url)
            .map(|u| u.path().to_owned())
            .unwrap_or_default();
        // Within the broker's limits: one oversized entry would cost the
        // whole batch, and anyone can send a long path.
        let mut event = UsageEvent {
            jti,
            method: truncated(method, 16),
            path: truncated(&path, 2048),
            decision: "allow".into(),
            reason: None,
            code: None,
            scope: None,
            at: Some(self.inner.opts.clock.now()),
        };
        match &r {
            Ok(id) => {
                event.jti = Some(id.token_id.clone());
                event.reason = id.reason.clone();
            }
            Err(rej) => {
                event.decision = "deny".into();
                event.code = Some(rej.error.code().to_owned());
                event.reason = rej.error.reason().map(|x| x.as_str().to_owned());
            }
        }
        let id = self.inner.use_seq.fetch_add(1, Ordering::Relaxed);
        let queued = match self.inner.usage.lock() {
            Ok(mut u) if u.len() < USAGE_MAX => {
                u.push((id, event));
                true
            }
            _ => false,
        };
        r.map(|mut identity| {
            if queued {
                identity.use_ticket = UseTicket(Some((Arc::downgrade(&self.inner), id)));
            }
            identity
        })
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncated(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

impl Inner {
    /// The entry of use `id` if it left with the last report as allowed.
    fn last_sent(&self, id: u64) -> Option<UsageEvent> {
        let sent = self.usage_sent.lock().ok()?;
        sent.iter()
            .find(|(n, e)| *n == id && e.decision == "allow")
            .map(|(_, e)| e.clone())
    }
}

pub(super) async fn usage_loop(weak: Weak<Inner>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = stopped(&mut stop) => return,
        }
        let Some(inner) = weak.upgrade() else { return };
        // Both locks at once (in the order `UseTicket::refused` takes them):
        // a refusal finds its use either still queued or among those sent.
        let uses: Vec<UsageEvent> = match (inner.usage.lock(), inner.usage_sent.lock()) {
            (Ok(mut u), Ok(mut sent)) => {
                *sent = std::mem::take(&mut *u);
                sent.iter().map(|(_, e)| e.clone()).collect()
            }
            _ => continue,
        };
        if uses.is_empty() {
            continue;
        }
        let (Some((id, secret)), Some(endpoint)) = (
            &inner.opts.usage_reports,
            inner.meta.usage_endpoint.as_deref(),
        ) else {
            continue;
        };
        let Ok(http) = http::client() else { continue };
        for report in reports(uses) {
            let _ = http
                .post(endpoint)
                .basic_auth(id, Some(secret.as_str()))
                .json(&report)
                .send()
                .await;
        }
    }
}

/// `uses` split into reports the broker accepts: it refuses a report whole
/// beyond [`USAGE_REPORT_MAX`] uses or [`USAGE_REPORT_BYTES`] of body.
fn reports(uses: Vec<UsageEvent>) -> Vec<UsageReport> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = 0;
    for u in uses {
        let size = serde_json::to_vec(&u).map_or(0, |v| v.len()) + 1;
        if !cur.is_empty() && (cur.len() == USAGE_REPORT_MAX || bytes + size > USAGE_REPORT_BYTES) {
            out.push(UsageReport {
                uses: std::mem::take(&mut cur),
            });
            bytes = 0;
        }
        bytes += size;
        cur.push(u);
    }
    if !cur.is_empty() {
        out.push(UsageReport { uses: cur });
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::truncated;

    #[test]
    fn large_batches_are_split_into_reports_the_broker_takes() {
        let use_of = |path: String| crate::wire::UsageEvent {
            jti: None,
            method: "GET".into(),
            path,
            decision: "deny".into(),
            reason: None,
            code: Some("invalid_token".into()),
            scope: None,
            at: Some(1),
        };
        for (n, path) in [(2500, "/a".to_owned()), (100, "/".repeat(2048))] {
            let uses: Vec<_> = (0..n).map(|i| use_of(format!("{path}{i}"))).collect();
            let r = super::reports(uses.clone());
            assert!(r.len() > 1, "{n} uses in one report");
            for report in &r {
                assert!(report.uses.len() <= 1000);
                assert!(serde_json::to_vec(report).unwrap().len() <= 64 * 1024);
            }
            let again: Vec<_> = r.into_iter().flat_map(|r| r.uses).collect();
            assert_eq!(again, uses);
        }
    }

    #[test]
    fn reported_fields_are_cut_on_a_character_boundary() {
        assert_eq!(truncated("GET", 16), "GET");
        assert_eq!(truncated(&"a".repeat(3000), 2048).len(), 2048);
        // 'é' is two bytes: cutting at 3 bytes would split the second one.
        assert_eq!(truncated("éé", 3), "é");
    }
}
