//! Prometheus text metrics: requests by route and status, latency histograms,
//! tokens issued by grant type, errors by code.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug, Default)]
struct Hist {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, Hist>,
    issued: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    audit_dropped: u64,
}

/// The broker's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    /// Count one request.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        if let Ok(mut m) = self.inner.lock() {
            *m.requests.entry((route.to_owned(), status)).or_default() += 1;
            let h = m.latency.entry(route.to_owned()).or_default();
            if h.counts.is_empty() {
                h.counts = vec![0; BUCKETS.len()];
            }
            for (i, b) in BUCKETS.iter().enumerate() {
                if seconds <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += seconds;
            h.count += 1;
        }
    }

    /// Count tokens issued through a grant type.
    pub fn issued(&self, kind: &str) {
        if let Ok(mut m) = self.inner.lock() {
            *m.issued.entry(kind.to_owned()).or_default() += 1;
        }
    }

    /// Count an error answered.
    pub fn error(&self, code: &str) {
        if let Ok(mut m) = self.inner.lock() {
            *m.errors.entry(code.to_owned()).or_default() += 1;
        }
    }

    /// Count an audit record of a rejected request that was dropped (queue full).
    pub fn audit_dropped(&self) {
        if let Ok(mut m) = self.inner.lock() {
            m.audit_dropped += 1;
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self, extra: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        let Ok(m) = self.inner.lock() else {
            return out;
        };
        out.push_str("# HELP protonpass_http_requests_total HTTP requests by route and status.\n# TYPE protonpass_http_requests_total counter\n");
        for ((route, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "protonpass_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP protonpass_http_request_duration_seconds Request latency.\n# TYPE protonpass_http_request_duration_seconds histogram\n");
        for (route, h) in &m.latency {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "protonpass_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {}",
                    h.counts.get(i).copied().unwrap_or(0)
                );
            }
            let _ = writeln!(
                out,
                "protonpass_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "protonpass_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "protonpass_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        out.push_str("# HELP protonpass_tokens_issued_total Token responses by grant type.\n# TYPE protonpass_tokens_issued_total counter\n");
        for (k, n) in &m.issued {
            let _ = writeln!(
                out,
                "protonpass_tokens_issued_total{{grant_type=\"{k}\"}} {n}"
            );
        }
        out.push_str("# HELP protonpass_errors_total Error responses by code.\n# TYPE protonpass_errors_total counter\n");
        for (k, n) in &m.errors {
            let _ = writeln!(out, "protonpass_errors_total{{error=\"{k}\"}} {n}");
        }
        out.push_str("# HELP protonpass_audit_dropped_total Audit records of rejected requests dropped because the queue was full.\n# TYPE protonpass_audit_dropped_total counter\n");
        let _ = writeln!(out, "protonpass_audit_dropped_total {}", m.audit_dropped);
        for (name, help, v) in extra {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}
