//! Publishing step tasks to RabbitMQ: one long-lived connection and confirm-mode channel shared by
//! every publish (many confirms in flight at once), rebuilt when it breaks; `mandatory` publishes so an
//! unroutable task is noticed (its queue is declared and the publish retried); and a batcher that
//! clears confirmed dispatches from the Redis outbox.
//!
//! **Holding the outbox.** A dispatch is committed with its outbox entry due one `timer_lease`
//! later. The coordinator that committed it holds the entry while it publishes ([`Dispatcher::hold`]):
//! every quarter lease it moves the due time of the entries it still publishes one lease ahead, for
//! at most `dispatch_grace` after the commit. So a live coordinator's slow publish is not sent a
//! second time by another coordinator's sweeper (within the grace), while the dispatches of a
//! coordinator that died between commit and publish come due within one lease and are re-sent by
//! any live one. A publish that fails gives its entry the rest of the grace (the sweeper, or the
//! expedite when the fault ends, sends it again).

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use baton_shared::{amqp::Topology, proto::StepTask};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, options::BasicPublishOptions, options::ConfirmSelectOptions,
    types::FieldTable,
};
use prost::Message;
use tokio::sync::{Mutex, mpsc};

use crate::{
    error::{CoordinatorError, Result},
    store::{Store, outbox_member},
};

/// Publishes step tasks with publisher confirms.
pub struct Dispatcher {
    url: String,
    topology: Topology,
    publish_timeout: Duration,
    link: Mutex<Option<(Connection, Channel)>>,
    declared: std::sync::Mutex<HashSet<String>>,
    confirmed: mpsc::UnboundedSender<String>,
    store: Store,
    /// A publish failed since the last confirmed one (or the last reconnect): the next confirm or
    /// reconnect re-sends the outbox's backlog at once ([`Dispatcher::expedite`]).
    failing: AtomicBool,
    /// A connection was made before: the next one is a reconnect.
    connected_before: AtomicBool,
    /// How long one hold of an outbox entry lasts (`timer_lease`).
    lease: Duration,
    /// How long after its commit an entry is held at most (`dispatch_grace`).
    grace: Duration,
    /// Held entries whose publish failed: held until the grace ends or the fault does.
    failed_holds: std::sync::Mutex<HashSet<String>>,
    /// Test seam: every step-task publish waits this long first ([`crate::Hooks::publish_delay`]).
    publish_delay: std::sync::OnceLock<Duration>,
    /// The outbox entries this coordinator holds (see the module doc), by member.
    holds: std::sync::Mutex<HashMap<String, Held>>,
}

/// One held outbox entry.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// Holders of the member (a step's member may be held by two launches for a moment).
    count: u32,
    /// When the first of them started holding it (Unix ms): the hold ends a grace after.
    since_ms: i64,
}

impl Dispatcher {
    /// Connects, declares the base topology and starts the outbox batcher and the holder of this
    /// coordinator's outbox entries on `store` (holds of `lease` at a time, for at most `grace`
    /// after a commit; see the module doc).
    ///
    /// # Errors
    /// `Amqp` when RabbitMQ cannot be reached.
    pub async fn connect(
        url: &str,
        topology: Topology,
        publish_timeout: Duration,
        (lease, grace): (Duration, Duration),
        store: Store,
    ) -> Result<Arc<Self>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let d = Arc::new(Self {
            url: url.to_string(),
            topology,
            publish_timeout,
            link: Mutex::new(None),
            declared: std::sync::Mutex::new(HashSet::new()),
            confirmed: tx,
            store: store.clone(),
            failing: AtomicBool::new(false),
            connected_before: AtomicBool::new(false),
            lease,
            grace,
            holds: std::sync::Mutex::new(HashMap::new()),
            failed_holds: std::sync::Mutex::new(HashSet::new()),
            publish_delay: std::sync::OnceLock::new(),
        });
        d.channel().await?;
        tokio::spawn(clear_outbox(store, rx));
        tokio::spawn(keep_holds(Arc::downgrade(&d)));
        Ok(d)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.holds.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts holding the outbox entries `members` (`<run>|<step>`) this coordinator has just
    /// committed and is about to publish (see the module doc). Each hold ends with
    /// [`Dispatcher::unhold`]; one left over lapses a grace after it began.
    pub fn hold(&self, members: impl IntoIterator<Item = String>) {
        let now = baton_shared::time::now_ms();
        let mut held = self.held();
        for m in members {
            held.entry(m)
                .and_modify(|h| h.count = h.count.saturating_add(1))
                .or_insert(Held {
                    count: 1,
                    since_ms: now,
                });
        }
    }

    /// Test seam: makes every step-task publish wait `delay` before it is sent, as a publish
    /// stuck between commit and broker would ([`crate::Hooks::publish_delay`]). Set once.
    pub fn delay_publishes(&self, delay: Duration) {
        let _ = self.publish_delay.set(delay);
    }

    /// Ends one hold of `member`.
    pub fn unhold(&self, member: &str) {
        let mut held = self.held();
        if let Some(h) = held.get_mut(member) {
            h.count = h.count.saturating_sub(1);
            if h.count == 0 {
                held.remove(member);
            }
        }
    }

    fn failed(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.failed_holds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The members to hold one more lease now; drops those held for a grace already.
    fn due_holds(&self, now: i64) -> Vec<String> {
        let grace = baton_shared::time::duration_ms(self.grace);
        let mut failed = self.failed();
        let mut held = self.held();
        held.retain(|member, h| {
            let keep = h.since_ms.saturating_add(grace) > now;
            if !keep && !failed.remove(member) {
                tracing::warn!(
                    member,
                    "a publish took longer than dispatch_grace; the sweeper may send it again"
                );
            }
            keep
        });
        held.keys().cloned().collect()
    }

    /// A live confirm-mode channel, reconnecting if the last one broke.
    async fn channel(&self) -> Result<Channel> {
        let mut link = self.link.lock().await;
        if let Some((conn, ch)) = link.as_ref()
            && conn.status().connected()
            && ch.status().connected()
        {
            return Ok(ch.clone());
        }
        if let Some((conn, _)) = link.take() {
            let _ = conn.close(0, "reconnecting".into()).await;
        }
        let conn = baton_shared::amqp::connect(&self.url, "baton-coordinator").await?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        self.topology.declare_base(&ch).await?;
        self.declared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        *link = Some((conn, ch.clone()));
        tracing::info!("connected to RabbitMQ");
        if self.connected_before.swap(true, Ordering::SeqCst) {
            self.failing.store(false, Ordering::SeqCst);
            self.expedite("reconnected to RabbitMQ");
        }
        Ok(ch)
    }

    /// A new channel on the shared connection (not in confirm mode), for reads such as the queue
    /// sampler's passive declares, which close their channel when a queue is missing. Close it
    /// when done.
    ///
    /// # Errors
    /// `Amqp` when RabbitMQ cannot be reached.
    pub async fn sample_channel(&self) -> Result<Channel> {
        self.channel().await?;
        let link = self.link.lock().await;
        let (conn, _) = link
            .as_ref()
            .ok_or_else(|| CoordinatorError::Internal("no RabbitMQ connection".into()))?;
        Ok(conn.create_channel().await?)
    }

    /// The topology tasks are published to.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Checks that RabbitMQ is reachable: the shared connection is up, or can be made again now
    /// (the health probe calls this, so a broken connection is also rebuilt between publishes).
    ///
    /// # Errors
    /// `Amqp` when RabbitMQ cannot be reached.
    pub async fn probe(&self) -> Result<()> {
        self.channel().await.map(|_| ())
    }

    /// Declares the queues of these handlers (once per connection).
    ///
    /// # Errors
    /// `Amqp`.
    pub async fn ensure_queues(&self, handlers: &[String]) -> Result<()> {
        let ch = self.channel().await?;
        for h in handlers {
            if self
                .declared
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(h.as_str())
            {
                continue;
            }
            self.topology.declare_handler_queue(&ch, h).await?;
            self.declared
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(h.clone());
        }
        Ok(())
    }

    /// Publishes one task and waits for the broker's confirm; then clears its outbox entry.
    ///
    /// # Errors
    /// `Publish` on a nack, a timeout or an unroutable task; `Amqp` on connection trouble.
    pub async fn publish(&self, task: &StepTask) -> Result<()> {
        let sent = crate::traces::dispatch(&self.store, task, |headers| self.publish_with(task, headers)).await;
        match &sent {
            Ok(()) if self.failing.swap(false, Ordering::SeqCst) => self.expedite("publishes are confirmed again"),
            Ok(()) => {}
            Err(_) => self.failing.store(true, Ordering::SeqCst),
        }
        sent
    }

    /// Makes the outbox's pending dispatches due now, in the background, so the sweeper re-sends
    /// what failed to publish during a fault as soon as it ends (instead of after the rest of its
    /// dispatch grace). `why` is logged.
    pub fn expedite(&self, why: &'static str) {
        // This coordinator's failed publishes are no longer held, so the sweeper takes them now.
        let failed: Vec<String> = self.failed().drain().collect();
        for m in &failed {
            self.unhold(m);
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            match store.expedite_outbox(baton_shared::time::now_ms()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(dispatches = n, "{why}: re-sending the dispatches that waited"),
                Err(e) => {
                    tracing::warn!(error = %e, "{why}, but the outbox could not be read; the sweeper re-sends after the dispatch grace")
                }
            }
        });
    }

    /// [`Dispatcher::publish`] with these message headers (the trace context).
    async fn publish_with(&self, task: &StepTask, headers: FieldTable) -> Result<()> {
        let body = task.encode_to_vec();
        let member = outbox_member(&task.run_id, &task.step_id);
        let message_id = format!("{member}|{}", task.attempt);
        if let Some(delay) = self.publish_delay.get() {
            tokio::time::sleep(*delay).await;
        }
        for tried in 0..2 {
            let ch = self.channel().await?;
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/x-protobuf".into())
                .with_message_id(message_id.as_str().into())
                .with_type("baton.v1.StepTask".into())
                .with_headers(headers.clone());
            let publish = ch.basic_publish(
                self.topology.exchange().as_str().into(),
                task.handler.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &body,
                props,
            );
            let sent = tokio::time::Instant::now();
            let confirm = tokio::time::timeout(self.publish_timeout, async { publish.await?.await })
                .await
                .map_err(|_| {
                    crate::metrics::publish_confirm("timeout", sent.elapsed());
                    CoordinatorError::Publish(format!("no confirm for {member} within {:?}", self.publish_timeout))
                })?;
            crate::metrics::publish_confirm(crate::metrics::confirm_word(&confirm), sent.elapsed());
            let confirm = match confirm {
                Ok(c) => c,
                Err(e) => {
                    // Drop the broken link so the next call reconnects.
                    self.link.lock().await.take();
                    return Err(e.into());
                }
            };
            match confirm {
                Confirmation::Ack(None) => {
                    let _ = self.confirmed.send(member);
                    return Ok(());
                }
                Confirmation::Ack(Some(returned)) if tried == 0 => {
                    tracing::warn!(handler = %task.handler, reply = %returned.reply_text, "step task returned unroutable; declaring its queue");
                    self.declared
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&task.handler);
                    self.ensure_queues(std::slice::from_ref(&task.handler)).await?;
                }
                Confirmation::Ack(Some(returned)) => {
                    return Err(CoordinatorError::Publish(format!(
                        "{member} unroutable: {}",
                        returned.reply_text
                    )));
                }
                Confirmation::Nack(_) => {
                    return Err(CoordinatorError::Publish(format!("{member} nacked by the broker")));
                }
                Confirmation::NotRequested => {
                    return Err(CoordinatorError::Internal("publisher confirms are off".into()));
                }
            }
        }
        Err(CoordinatorError::Publish(format!("{member} unroutable")))
    }

    /// Tells every worker that the steps of `run_id` are cancelled (best effort: a worker that misses
    /// it learns at its next heartbeat or report, whose answers are fenced anyway).
    ///
    /// # Errors
    /// `Publish` or `Amqp`.
    pub async fn publish_cancel(&self, run_id: &str) -> Result<()> {
        let ch = self.channel().await?;
        let publish = ch.basic_publish(
            self.topology.control_exchange().as_str().into(),
            "".into(),
            BasicPublishOptions::default(),
            run_id.as_bytes(),
            BasicProperties::default().with_type("baton.cancel-run".into()),
        );
        match tokio::time::timeout(self.publish_timeout, async { publish.await?.await }).await {
            Ok(Ok(Confirmation::Ack(_))) => Ok(()),
            Ok(Ok(_)) => Err(CoordinatorError::Publish(format!(
                "cancel notice for {run_id} not confirmed"
            ))),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(CoordinatorError::Publish(format!(
                "cancel notice for {run_id} timed out"
            ))),
        }
    }

    /// Publishes tasks in the background, concurrently, each under a hold of its outbox entry
    /// ([`Dispatcher::hold`]: the caller holds it; the hold ends here). A failed publish stays in
    /// the outbox with the rest of its grace; the sweeper re-sends it as soon as RabbitMQ is back
    /// ([`Dispatcher::expedite`]), at the latest after the dispatch grace.
    pub fn publish_detached(self: &Arc<Self>, tasks: Vec<StepTask>) {
        for task in tasks {
            let d = self.clone();
            tokio::spawn(async move {
                let member = outbox_member(&task.run_id, &task.step_id);
                match d.publish(&task).await {
                    Ok(()) => {
                        d.unhold(&member);
                    }
                    Err(e) => {
                        // Held on until the grace ends or the fault does ([`Dispatcher::expedite`]),
                        // so a live coordinator's failed publishes are not re-sent in a loop
                        // meanwhile, and a dead one's come due within a lease.
                        tracing::warn!(run = %task.run_id, step = %task.step_id, attempt = task.attempt, error = %e, "publish failed; re-sent when RabbitMQ is back");
                        d.failed().insert(member);
                    }
                }
            });
        }
    }

    /// Closes the connection after the publishes in flight.
    pub async fn close(&self) {
        if let Some((conn, ch)) = self.link.lock().await.take() {
            let _ = tokio::time::timeout(self.publish_timeout, ch.wait_for_confirms()).await;
            let _ = conn.close(200, "shutdown".into()).await;
        }
    }
}

/// Holds the outbox entries of publishes in flight (see the module doc) every quarter lease (at
/// least every 50 ms), until the dispatcher is dropped.
async fn keep_holds(dispatcher: Weak<Dispatcher>) {
    loop {
        let Some(d) = dispatcher.upgrade() else { return };
        let every = (d.lease / 4).max(Duration::from_millis(50));
        let now = baton_shared::time::now_ms();
        let members = d.due_holds(now);
        if !members.is_empty() {
            let until = now.saturating_add(baton_shared::time::duration_ms(d.lease));
            if let Err(e) = d.store.hold_outbox(&members, until).await {
                tracing::warn!(error = %e, count = members.len(), "could not hold the outbox entries of publishes in flight; another coordinator may send them again");
            }
        }
        drop(d);
        tokio::time::sleep(every).await;
    }
}

/// Removes confirmed dispatches from the outbox in batches (one `ZREM` for many confirms).
async fn clear_outbox(store: Store, mut rx: mpsc::UnboundedReceiver<String>) {
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 512).await > 0 {
        if let Err(e) = store.outbox_done(&batch).await {
            // Left in the outbox, they are re-checked by the sweeper: harmless, only slower.
            tracing::warn!(error = %e, count = batch.len(), "could not clear confirmed dispatches from the outbox");
        }
        batch.clear();
    }
}
