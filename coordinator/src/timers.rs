//! The durable-time loops: due timers (retries, timeouts, heartbeats), the dispatch sweeper and the
//! effects sweeper.
//! Both claim entries from a Redis sorted set with a short lease ([`crate::config::CoordinatorConfig::timer_lease`]),
//! renewed by a `Keeper` while the batch is worked on, so any number of coordinators can run them,
//! an entry is handled by one at a time, and a coordinator that dies mid-way leaves its entries to
//! come due again within one lease. A coordinator that shuts down gives back what it claimed and has
//! not started. Every entry is handled under the [`Supervisor`]: a panic or an error that cannot
//! mend parks the entry instead of stopping the loop.

use std::{sync::Arc, time::Duration};

use baton_shared::time::{duration_ms, now_ms};
use futures::StreamExt;
use tokio::sync::watch;

use crate::{
    engine::Engine,
    store::{Claimed, Store},
    supervise::{ItemSet, Supervisor},
};

/// Entries claimed per round.
const BATCH: usize = 256;
/// Entries handled concurrently.
const CONCURRENCY: usize = 64;

/// Which sorted set a loop serves.
#[derive(Debug, Clone, Copy)]
pub enum Loop {
    /// Retries, timeouts and heartbeats.
    Timers,
    /// Dispatches committed but not confirmed.
    Outbox,
    /// Cross-run effects committed but not applied (their coordinator died, or Redis failed it):
    /// see [`crate::store::Effect`].
    Effects,
}

/// Keeps a claimed batch's lease alive: renews it every quarter of the lease (at least every 50 ms)
/// until dropped, so a batch that takes longer than one lease is not taken by another coordinator
/// meanwhile, while a dead coordinator's claim lapses within one lease.
pub(crate) struct Keeper(tokio::task::JoinHandle<()>);

impl Keeper {
    /// Starts renewing the lease of `claimed` (entries of the sorted set `key`, claimed together) for
    /// `lease` at a time. `None` for an empty batch.
    pub(crate) fn start(store: &Store, key: String, lease: Duration, claimed: &[Claimed]) -> Option<Self> {
        let held = claimed.first()?.lease.clone();
        let members: Vec<String> = claimed.iter().map(|c| c.member.clone()).collect();
        let every = (lease / 4).max(Duration::from_millis(50));
        let store = store.clone();
        Some(Self(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let until = now_ms().saturating_add(duration_ms(lease));
                if let Err(e) = store.renew(&key, &held, &members, until).await {
                    tracing::warn!(error = %e, key, "could not renew a claim; if it lapses another coordinator takes its entries (handled twice, which the attempt fencing makes harmless)");
                }
            }
        })))
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs one loop until `shutdown` turns true.
pub async fn run(engine: Arc<Engine>, supervisor: Arc<Supervisor>, which: Loop, mut shutdown: watch::Receiver<bool>) {
    let set = match which {
        Loop::Timers => ItemSet::Timers,
        Loop::Outbox => ItemSet::Outbox,
        Loop::Effects => ItemSet::Effects,
    };
    let poll = engine.config.timer_poll_interval;
    let lease = engine.config.timer_lease;
    let key = match which {
        Loop::Timers => engine.store.due_set_key(false),
        Loop::Outbox => engine.store.due_set_key(true),
        Loop::Effects => engine.store.keys().effects(),
    };
    loop {
        if *shutdown.borrow() {
            return;
        }
        let claimed = match engine.store.claim_key(&key, now_ms(), lease, BATCH).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, ?which, "could not claim due entries");
                Vec::new()
            }
        };
        let full = claimed.len() == BATCH;
        let keeper = Keeper::start(&engine.store, key.clone(), lease, &claimed);
        futures::stream::iter(claimed)
            .for_each_concurrent(CONCURRENCY, |c| {
                let engine = engine.clone();
                let supervisor = supervisor.clone();
                let (shutdown, key) = (shutdown.clone(), &key);
                async move {
                    if *shutdown.borrow() {
                        // Shutting down: what has not started goes back for another coordinator.
                        if let Err(e) = engine.store.give_back(key, &c, now_ms()).await {
                            tracing::warn!(error = %e, member = %c.member, "could not give back a claimed entry; it comes due when its lease lapses");
                        }
                        return;
                    }
                    let work = async {
                        match which {
                            Loop::Outbox => engine.redispatch(&c).await,
                            Loop::Timers => engine.fire_timer(&c).await,
                            Loop::Effects => engine.store.apply_claimed_effect(&c, now_ms()).await,
                        }
                    };
                    supervisor.item(&engine, set, &c.member, work).await;
                }
            })
            .await;
        drop(keeper);
        if !full {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}
/// Trims the run indexes once an hour.
pub async fn trim_indexes(engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let cutoff = now_ms().saturating_sub(duration_ms(engine.config.index_retention));
        if let Err(e) = engine.store.trim_indexes(cutoff).await {
            tracing::warn!(error = %e, "could not trim run indexes");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
