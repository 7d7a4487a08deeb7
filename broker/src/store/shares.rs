//! The shares of a store's writer queue, the same for every store: permits
//! for asynchronous writers, and a count that keeps best-effort jobs (audit
//! records of rejected requests) to their part and drops them beyond it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Job, Tx};

/// The permits and the best-effort count of one store's queue.
#[derive(Debug)]
pub(crate) struct QueueShares {
    admission: Arc<tokio::sync::Semaphore>,
    admitted: usize,
    detached: Arc<AtomicUsize>,
    detached_max: usize,
}

impl QueueShares {
    /// `admitted` asynchronous writers at once, and at most `detached`
    /// best-effort jobs queued.
    pub(crate) fn new(admitted: usize, detached: usize) -> Self {
        QueueShares {
            admission: Arc::new(tokio::sync::Semaphore::new(admitted)),
            admitted,
            detached: Arc::new(AtomicUsize::new(0)),
            detached_max: detached,
        }
    }

    /// The permits for asynchronous writers ([`super::Store::admission`]).
    pub(crate) fn admission(&self) -> Arc<tokio::sync::Semaphore> {
        self.admission.clone()
    }

    /// A best-effort `job`, counted until it has run or been dropped; `None`
    /// (the job dropped) when the best-effort share is full.
    pub(crate) fn best_effort(&self, job: Job) -> Option<Job> {
        /// Counts a best-effort job until it has run or been dropped.
        struct Slot(Arc<AtomicUsize>);
        impl Drop for Slot {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        if self.detached.fetch_add(1, Ordering::AcqRel) >= self.detached_max {
            self.detached.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let slot = Slot(self.detached.clone());
        Some(Box::new(move |tx: &mut dyn Tx| {
            let _slot = slot;
            job(tx)
        }))
    }

    /// The gauges of both shares for `/metrics`: name, help, value.
    pub(crate) fn figures(&self) -> [(&'static str, &'static str, f64); 2] {
        [
            (
                "protonpass_store_writes_in_flight",
                "Asynchronous write jobs admitted and not yet committed.",
                self.admitted
                    .saturating_sub(self.admission.available_permits()) as f64,
            ),
            (
                "protonpass_store_detached_in_flight",
                "Best-effort write jobs (audit of rejected requests) queued.",
                self.detached.load(Ordering::Acquire) as f64,
            ),
        ]
    }
}
