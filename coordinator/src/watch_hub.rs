//! The watch hub: every live `WatchRun` stream of this coordinator (gRPC, and the HTTP API's
//! Server-Sent Events, which call it) follows its run's events through one shared reader, not a
//! Redis connection of its own.
//!
//! One task holds one dedicated Redis connection and reads the event streams of every watched run
//! with one `XREAD BLOCK` at a time; what it reads goes to the run's watchers through a tokio
//! broadcast channel, one per watched run, shared by all watchers of that run. So a coordinator
//! holds one Redis connection for watching however many streams are open, and each stream costs a
//! task and a channel receiver. A new run's subscription wakes the reader at once with `CLIENT
//! UNBLOCK` (and the block is short, [`BLOCK`], should that be refused).
//!
//! A watcher's subscription starts after the stream's last event as read in the same pipeline as,
//! and before, the history it sends first ([`Store::watch_open`], one round trip), so nothing
//! falls between the history and the live events;
//! the watcher drops what it has already sent by comparing sequences. A watcher that falls behind
//! its channel ([`CHANNEL_CAPACITY`]) reads what it missed from Redis again.
//!
//! The reader also follows each watched run's live log tail (`Keys::log_tail`, the lines handlers
//! log), whose entries go to the watchers as [`Notice::Logs`]: they are live only (a watcher that
//! lags past them, or resumes, does not get them again; GetStepLogs reads the kept lines).
//!
//! Streams are capped per coordinator and per caller ([`WatchLimits`]); past a cap `WatchRun`
//! answers `RESOURCE_EXHAUSTED` naming the setting. Counted in `baton_watch_streams`,
//! `baton_watch_runs` and `baton_watch_streams_refused_total{limit}`.

use std::{
    collections::{HashMap, hash_map::Entry as MapEntry},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use baton_shared::limits::echo;
use tokio::sync::{Notify, broadcast};

use crate::{
    error::{CoordinatorError, Result},
    store::{Store, StreamEntry},
};

/// Longest one `XREAD` of the reader blocks, so a subscription whose wake-up was missed (or
/// refused by the server's ACL) waits at most this long for its first live event.
pub const BLOCK: Duration = Duration::from_secs(1);

/// Most events the reader takes from one run's stream per read.
const READ_COUNT: usize = 500;

/// Messages (each a batch of events of one run) a run's channel keeps for a slow watcher before
/// it lags (and reads the missed events from Redis).
pub const CHANNEL_CAPACITY: usize = 64;

/// How often the reader checks that the watched runs' streams still exist (a run that expired
/// ends its watchers' streams).
const EXISTS_EVERY: Duration = Duration::from_secs(5);

/// Longest pause of the reader between attempts to reach Redis again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The caps on watch streams (settings `max_watch_streams`, `max_watch_streams_per_identity`).
#[derive(Debug, Clone, Copy)]
pub struct WatchLimits {
    /// Most streams open at once on this coordinator.
    pub max_streams: usize,
    /// Most streams open at once per caller: the token's identity (its user, else its name), or
    /// with auth off the client's IP address when the transport tells it.
    pub max_streams_per_identity: usize,
}

/// What a watched run's channel carries.
#[derive(Debug, Clone)]
pub enum Notice {
    /// New events of the run, in order.
    Events(Arc<[StreamEntry]>),
    /// New entries of the run's live log tail, in order (fields `step`, `attempt`, `line`).
    Logs(Arc<[StreamEntry]>),
    /// The run's event stream is gone (the run expired): its streams end.
    Gone,
    /// The reader lost Redis: the run's streams end with `UNAVAILABLE` (this text), as a watcher
    /// with its own connection would, so clients learn of it and resume elsewhere or later
    /// (`after_sequence` / `Last-Event-ID`) instead of waiting on a silent stream.
    Unavailable(Arc<str>),
}

/// The hub: cheap to clone (shared state).
#[derive(Clone)]
pub struct WatchHub {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    limits: WatchLimits,
    state: Mutex<State>,
    /// Wakes the idle reader when the first run is watched.
    wake: Notify,
    /// Whether the reader task runs.
    started: AtomicBool,
    /// The reader connection's `CLIENT ID` (0 while it has none).
    reader_client: AtomicI64,
    /// Source of subscription ids.
    next_id: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Open streams.
    streams: usize,
    /// Open streams per caller.
    by_identity: HashMap<String, usize>,
    /// Watched runs by run id.
    runs: HashMap<String, Sub>,
}

/// One watched run.
struct Sub {
    /// Tells this subscription from a later one of the same run.
    id: u64,
    /// The run's event stream key.
    key: String,
    /// The last event id the reader has read (it reads after this).
    cursor: String,
    /// The run's live log tail key.
    log_key: String,
    /// The last log tail entry the reader has read.
    log_cursor: String,
    tx: broadcast::Sender<Notice>,
    /// Live [`Subscription`]s.
    watchers: usize,
}

/// A watch stream's place under the caps; given back when dropped.
pub struct Permit {
    inner: Arc<Inner>,
    identity: Option<String>,
}

/// A watcher's receiver of one run's events; unsubscribes when dropped.
pub struct Subscription {
    inner: Arc<Inner>,
    run_id: String,
    id: u64,
    /// Events the reader read after the subscription started.
    pub rx: broadcast::Receiver<Notice>,
}

impl WatchHub {
    /// A hub over `store` with `limits`; its reader starts with the first subscription.
    pub fn new(store: Store, limits: WatchLimits) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                limits,
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                started: AtomicBool::new(false),
                reader_client: AtomicI64::new(0),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// Takes a place for one more stream of `identity` (`None`: a caller without one, under the
    /// coordinator's cap only).
    ///
    /// # Errors
    /// `ResourceExhausted` naming `max_watch_streams` or `max_watch_streams_per_identity`.
    pub fn admit(&self, identity: Option<String>) -> Result<Permit> {
        let limits = self.inner.limits;
        let mut state = self.inner.lock();
        if state.streams >= limits.max_streams {
            drop(state);
            metrics::counter!("baton_watch_streams_refused_total", "limit" => "max_watch_streams").increment(1);
            return Err(CoordinatorError::ResourceExhausted(format!(
                "max_watch_streams: this coordinator has its most watch streams open ({}); close one, try again \
                 later or watch through another coordinator",
                limits.max_streams
            )));
        }
        if let Some(id) = &identity {
            let open = state.by_identity.get(id).copied().unwrap_or(0);
            if open >= limits.max_streams_per_identity {
                drop(state);
                metrics::counter!("baton_watch_streams_refused_total", "limit" => "max_watch_streams_per_identity")
                    .increment(1);
                return Err(CoordinatorError::ResourceExhausted(format!(
                    "max_watch_streams_per_identity: {} has its most watch streams open on this coordinator ({}); \
                     close one first",
                    echo(id),
                    limits.max_streams_per_identity
                )));
            }
            state.by_identity.insert(id.clone(), open.saturating_add(1));
        }
        state.streams = state.streams.saturating_add(1);
        metrics::gauge!("baton_watch_streams").set(state.streams as f64);
        Ok(Permit {
            inner: self.inner.clone(),
            identity,
        })
    }

    /// Subscribes to the live events of `run_id` after the cursors (the ids of the run's last
    /// event and last live log line, `None` when it has none), read by the caller in the same
    /// [`Store::watch_open`] round trip as the history it sends first (a run already followed is
    /// joined as it is: compare sequences to skip what was sent).
    pub async fn subscribe_from(
        &self,
        run_id: &str,
        cursor: Option<String>,
        log_cursor: Option<String>,
    ) -> Subscription {
        if let Some(sub) = self.join(run_id) {
            return sub;
        }
        let cursor = cursor.unwrap_or_else(|| "0-0".to_string());
        let log_cursor = log_cursor.unwrap_or_else(|| "0-0".to_string());
        let (sub, added) = {
            let mut state = self.inner.lock();
            match state.runs.entry(run_id.to_string()) {
                MapEntry::Occupied(mut o) => {
                    let s = o.get_mut();
                    s.watchers = s.watchers.saturating_add(1);
                    (self.subscription(run_id, s.id, s.tx.subscribe()), false)
                }
                MapEntry::Vacant(v) => {
                    let (tx, rx) = broadcast::channel(CHANNEL_CAPACITY);
                    let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                    v.insert(Sub {
                        id,
                        key: self.inner.store.keys().events(run_id),
                        cursor,
                        log_key: self.inner.store.keys().log_tail(run_id),
                        log_cursor,
                        tx,
                        watchers: 1,
                    });
                    metrics::gauge!("baton_watch_runs").set(state.runs.len() as f64);
                    (self.subscription(run_id, id, rx), true)
                }
            }
        };
        if added {
            self.wake_reader().await;
        }
        sub
    }

    /// Joins the run's subscription when there is one.
    fn join(&self, run_id: &str) -> Option<Subscription> {
        let mut state = self.inner.lock();
        let s = state.runs.get_mut(run_id)?;
        s.watchers = s.watchers.saturating_add(1);
        let (id, rx) = (s.id, s.tx.subscribe());
        drop(state);
        Some(self.subscription(run_id, id, rx))
    }

    fn subscription(&self, run_id: &str, id: u64, rx: broadcast::Receiver<Notice>) -> Subscription {
        Subscription {
            inner: self.inner.clone(),
            run_id: run_id.to_string(),
            id,
            rx,
        }
    }

    /// Starts the reader if need be and makes it read the new set of runs now.
    async fn wake_reader(&self) {
        if !self.inner.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(read_loop(self.inner.clone()));
        }
        self.inner.wake.notify_one();
        let client = self.inner.reader_client.load(Ordering::Acquire);
        if client != 0
            && let Err(e) = self.inner.store.unblock_client(client).await
        {
            tracing::debug!(error = %e, "could not wake the watch reader; it wakes within {BLOCK:?}");
        }
    }

    /// Open streams and watched runs.
    pub fn counts(&self) -> (usize, usize) {
        let state = self.inner.lock();
        (state.streams, state.runs.len())
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        state.streams = state.streams.saturating_sub(1);
        if let Some(id) = &self.identity
            && let Some(n) = state.by_identity.get_mut(id)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.by_identity.remove(id);
            }
        }
        metrics::gauge!("baton_watch_streams").set(state.streams as f64);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        if let Some(s) = state.runs.get_mut(&self.run_id)
            && s.id == self.id
        {
            s.watchers = s.watchers.saturating_sub(1);
            if s.watchers == 0 {
                state.runs.remove(&self.run_id);
                metrics::gauge!("baton_watch_runs").set(state.runs.len() as f64);
            }
        }
    }
}

/// `(ms, n)` of a stream id `<ms>-<n>`, for ordering; `(0, 0)` for anything else.
pub fn sequence(id: &str) -> (u64, u64) {
    id.split_once('-')
        .and_then(|(ms, n)| Some((ms.parse().ok()?, n.parse().ok()?)))
        .unwrap_or((0, 0))
}

/// The reader: reads every watched run's stream after its cursor, hands what it reads to the
/// run's channel, and ends the subscriptions of streams that are gone. Runs for the process's
/// life; Redis errors are logged and retried with a growing pause (the cursors stay, so no event
/// is lost meanwhile).
async fn read_loop(inner: Arc<Inner>) {
    let mut conn = None;
    let mut backoff = Duration::from_millis(100);
    let mut checked = Instant::now();
    loop {
        // (run, key, cursor) of each watched run's history stream, and of its live log tail.
        type Streams = Vec<(String, String, String)>;
        let (watched, tails): (Streams, Streams) = {
            let state = inner.lock();
            state
                .runs
                .iter()
                .map(|(run, s)| {
                    (
                        (run.clone(), s.key.clone(), s.cursor.clone()),
                        (run.clone(), s.log_key.clone(), s.log_cursor.clone()),
                    )
                })
                .unzip()
        };
        if watched.is_empty() {
            inner.wake.notified().await;
            continue;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match connect(&inner).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tracing::warn!(error = %e, "the watch reader cannot reach Redis; retrying in {backoff:?}");
                    fail_all(&inner, &e.to_string());
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        let keys: Vec<&str> = watched.iter().chain(&tails).map(|(_, k, _)| k.as_str()).collect();
        let cursors: Vec<&str> = watched.iter().chain(&tails).map(|(_, _, c)| c.as_str()).collect();
        match Store::read_streams(c, &keys, &cursors, BLOCK, READ_COUNT).await {
            Ok(read) => {
                backoff = Duration::from_millis(100);
                let run_of: HashMap<&str, &str> = watched.iter().map(|(r, k, _)| (k.as_str(), r.as_str())).collect();
                let tail_of: HashMap<&str, &str> = tails.iter().map(|(r, k, _)| (k.as_str(), r.as_str())).collect();
                let mut state = inner.lock();
                for (key, entries) in read {
                    let Some((last, _)) = entries.last() else { continue };
                    if let Some(s) = run_of.get(key.as_str()).and_then(|run| state.runs.get_mut(*run)) {
                        if sequence(last) > sequence(&s.cursor) {
                            s.cursor = last.clone();
                        }
                        let _ = s.tx.send(Notice::Events(entries.into()));
                    } else if let Some(s) = tail_of.get(key.as_str()).and_then(|run| state.runs.get_mut(*run)) {
                        if sequence(last) > sequence(&s.log_cursor) {
                            s.log_cursor = last.clone();
                        }
                        let _ = s.tx.send(Notice::Logs(entries.into()));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the watch reader lost Redis; reconnecting in {backoff:?}");
                fail_all(&inner, &e.to_string());
                conn = None;
                inner.reader_client.store(0, Ordering::Release);
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
                continue;
            }
        }
        if checked.elapsed() >= EXISTS_EVERY {
            checked = Instant::now();
            end_gone(&inner, &watched).await;
        }
    }
}

/// Ends every subscription with [`Notice::Unavailable`]: the reader cannot read their streams.
fn fail_all(inner: &Inner, why: &str) {
    let why: Arc<str> = format!(
        "the coordinator lost Redis while watching the run ({}); watch again to resume after the last event received",
        baton_shared::limits::echo(why)
    )
    .into();
    let mut state = inner.lock();
    for (_, s) in state.runs.drain() {
        let _ = s.tx.send(Notice::Unavailable(why.clone()));
    }
    metrics::gauge!("baton_watch_runs").set(0.0);
}

/// A dedicated connection for blocking reads, its `CLIENT ID` published for wake-ups.
async fn connect(inner: &Inner) -> Result<crate::store::BlockingConnection> {
    let mut conn = inner.store.blocking_connection().await?;
    match Store::client_id(&mut conn).await {
        Ok(id) => inner.reader_client.store(id, Ordering::Release),
        Err(e) => tracing::debug!(error = %e, "no CLIENT ID for the watch reader; it wakes every {BLOCK:?}"),
    }
    Ok(conn)
}

/// Ends the subscriptions whose run's stream no longer exists.
async fn end_gone(inner: &Inner, watched: &[(String, String, String)]) {
    let keys: Vec<&str> = watched.iter().map(|(_, k, _)| k.as_str()).collect();
    let exists = match inner.store.streams_exist(&keys).await {
        Ok(e) => e,
        Err(e) => {
            tracing::debug!(error = %e, "could not check the watched streams");
            return;
        }
    };
    let mut state = inner.lock();
    for ((run, _, _), there) in watched.iter().zip(exists) {
        if !there && let Some(s) = state.runs.remove(run) {
            let _ = s.tx.send(Notice::Gone);
        }
    }
    metrics::gauge!("baton_watch_runs").set(state.runs.len() as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_order_as_stream_ids_do() {
        assert!(sequence("10-2") > sequence("9-99"));
        assert!(sequence("10-10") > sequence("10-9"));
        assert_eq!(sequence("0-0"), (0, 0));
        assert_eq!(sequence("junk"), (0, 0));
    }
}
