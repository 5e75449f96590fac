//! The durable-time loops: due timers (retries, timeouts, heartbeats) and the dispatch sweeper.
//! Both claim entries from a Redis sorted set with a lease, so any number of coordinators can run them
//! and an entry is handled by one at a time; a coordinator that dies mid-way leaves its entries to
//! come due again when the lease ends. Every entry is handled under the [`Supervisor`]: a panic or an
//! error that cannot mend parks the entry instead of stopping the loop.

use std::{sync::Arc, time::Duration};

use baton_shared::time::{duration_ms, now_ms};
use futures::StreamExt;
use tokio::sync::watch;

use crate::{
    engine::Engine,
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
}

/// Runs one loop until `shutdown` turns true.
pub async fn run(engine: Arc<Engine>, supervisor: Arc<Supervisor>, which: Loop, mut shutdown: watch::Receiver<bool>) {
    let outbox = matches!(which, Loop::Outbox);
    let set = if outbox { ItemSet::Outbox } else { ItemSet::Timers };
    let poll = engine.config.timer_poll_interval;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let claimed = match engine
            .store
            .claim(outbox, now_ms(), engine.config.timer_lease, BATCH)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, ?which, "could not claim due entries");
                Vec::new()
            }
        };
        let full = claimed.len() == BATCH;
        futures::stream::iter(claimed)
            .for_each_concurrent(CONCURRENCY, |c| {
                let engine = engine.clone();
                let supervisor = supervisor.clone();
                async move {
                    let work = async {
                        if outbox {
                            engine.redispatch(&c).await
                        } else {
                            engine.fire_timer(&c).await
                        }
                    };
                    supervisor.item(&engine, set, &c.member, work).await;
                }
            })
            .await;
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
