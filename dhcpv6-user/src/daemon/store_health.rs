//! Whether the lease store can write, as the stateful service sees it.
//!
//! The first commit that fails because of the store (full disk, I/O error, writer gone:
//! `StoreError::outage`) begins an outage: it is logged once, with the reason, counted by
//! reason (`store_outage_*`), and the gauge `dhcpv6_store_healthy` drops to 0. While it
//! lasts the service decides with `Engine::handle_store_down` and tries no commit; a probe
//! (`LeaseStore::probe`, a real write that leaves nothing) runs with backoff, and the first
//! one that succeeds ends the outage, logged once as well (`store_recovered`).

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use tracing::{debug, info, warn};

use crate::{
    leases::{LeaseStore, Outage, StoreError},
    stats::{Counter, UserStats},
};

/// First wait between probes, doubled after every failed one up to `PROBE_MAX`: a store
/// that comes back is noticed within seconds, one that stays down costs a write every few.
const PROBE_FIRST: Duration = Duration::from_millis(500);
const PROBE_MAX: Duration = Duration::from_secs(4);

pub struct StoreHealth {
    /// Shared with the metrics (`dhcpv6_store_healthy`).
    up: Arc<AtomicBool>,
    stats: Arc<UserStats>,
}

impl StoreHealth {
    pub fn new(stats: Arc<UserStats>) -> Self {
        Self { up: Arc::new(AtomicBool::new(true)), stats }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// The flag the metrics read.
    pub fn gauge(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.up)
    }

    /// A commit failed with `e`. If that begins an outage, says so (once) and starts the
    /// probe that ends it. Errors that are one commit's problem change nothing here.
    pub fn commit_failed(self: &Arc<Self>, e: &StoreError, store: &Arc<dyn LeaseStore>) {
        let Some(outage) = e.outage() else { return };
        if !self.up.swap(false, Ordering::AcqRel) {
            debug!(error = %e, "lease commit failed during a store outage");
            return;
        }
        warn!(
            reason = %outage,
            error = %e,
            "lease store cannot write: no new leases until it can (Solicit and Request get \
             NoAddrsAvail, writes for Renew, Rebind, Release and Decline are dropped); probing"
        );
        self.stats.bump(outage_counter(outage));
        tokio::spawn(probe_until_up(Arc::clone(self), Arc::clone(store)));
    }

    fn recovered(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            info!("lease store writes again: granting leases");
            self.stats.bump(Counter::StoreRecovered);
        }
    }
}

fn outage_counter(o: Outage) -> Counter {
    match o {
        Outage::Full => Counter::StoreOutageFull,
        Outage::Io => Counter::StoreOutageIo,
        Outage::Stopped => Counter::StoreOutageStopped,
        Outage::Lost => Counter::StoreOutageLost,
        Outage::Unreachable => Counter::StoreOutageUnreachable,
        Outage::Other => Counter::StoreOutageOther,
    }
}

/// Probes until a write succeeds, then ends the outage. A writer that is gone for good
/// (`Stopped`) or a database file deleted under us (`Lost`) never answers Ok, so the
/// service stays refusing until restarted: truthful, and the log says why.
async fn probe_until_up(health: Arc<StoreHealth>, store: Arc<dyn LeaseStore>) {
    let mut wait = PROBE_FIRST;
    loop {
        tokio::time::sleep(wait).await;
        match store.probe().wait().await {
            Ok(()) => {
                health.recovered();
                return;
            }
            Err(e) => debug!(error = %e, "lease store probe failed"),
        }
        wait = (wait * 2).min(PROBE_MAX);
    }
}
