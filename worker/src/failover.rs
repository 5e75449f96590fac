//! Several coordinators behind one gRPC channel: a worker given `--coordinator
//! "http://a:7450,http://b:7450"` sends every call to one of them and moves on to the next when
//! - a call cannot reach it (a transport error: refused, reset) or has no answer within the call
//!   deadline (`BATON_CALL_TIMEOUT`, set on each address's channel);
//! - it answers `UNAVAILABLE` (it cannot reach Redis, or is starting up): the caller's retry goes
//!   to the next one;
//! - its gRPC health, watched all the time on a connection of its own ([`Coordinators::watch_health`]),
//!   turns NOT_SERVING or the watch breaks: calls move on at once, and a call in flight to it is
//!   ended with `UNAVAILABLE` (the caller tries again on the next coordinator; a report sent twice
//!   is harmless, attempts are fenced).
//!
//! The next coordinator is the next one whose health is SERVING (or, when none is, simply the
//! next). A name that resolves to several addresses is tried address by address at each
//! connection (hyper's connector does that), so a DNS name over several coordinators also fails
//! over; a load balancer's address works as a single coordinator.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::sync::watch;
use tonic::{
    Status,
    body::Body,
    codegen::{BoxFuture, Service, StdError, http},
    transport::Channel,
};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// The health service a worker watches on each coordinator.
const WATCHED_SERVICE: &str = "baton.v1.WorkerService";

/// Pause before a broken health watch is opened again.
const REWATCH_AFTER: Duration = Duration::from_secs(1);

/// Most coordinator addresses one worker takes.
pub const MAX_COORDINATORS: usize = 16;

/// One lazily connected channel per coordinator address, whether each serves (its health), and
/// the one in use; cloning shares them.
#[derive(Clone)]
pub struct Coordinators {
    channels: Arc<[(String, Channel)]>,
    /// Per address: SERVING as its health watch last said (true until it says otherwise).
    serving: Arc<[watch::Sender<bool>]>,
    current: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Coordinators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinators")
            .field("current", &self.current_addr())
            .field("count", &self.channels.len())
            .finish()
    }
}

/// Splits a `--coordinator` value into its addresses: separated by commas, trimmed, empty parts
/// dropped.
///
/// # Errors
/// A message for the user when there is no address or more than [`MAX_COORDINATORS`].
pub fn split_addresses(value: &str) -> Result<Vec<String>, String> {
    let addrs: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    match addrs.len() {
        0 => Err("no coordinator address: give one, or several separated by commas".into()),
        n if n > MAX_COORDINATORS => Err(format!(
            "{n} coordinator addresses: at most {MAX_COORDINATORS} (put a load balancer in front of more)"
        )),
        _ => Ok(addrs),
    }
}

impl Coordinators {
    /// The channels, one per address, in the order given; the first is used first. `None` for an
    /// empty list.
    pub fn new(channels: Vec<(String, Channel)>) -> Option<Self> {
        (!channels.is_empty()).then(|| Self {
            serving: channels.iter().map(|_| watch::Sender::new(true)).collect(),
            channels: channels.into(),
            current: Arc::new(AtomicUsize::new(0)),
        })
    }

    fn is_serving(&self, i: usize) -> bool {
        self.serving.get(i).is_some_and(|s| *s.borrow())
    }

    /// Watches the gRPC health of every coordinator (`channels`: one per address, in the order
    /// of [`Coordinators::new`], without a call deadline) until the returned tasks are aborted.
    /// When the one in use turns NOT_SERVING, or its watch breaks, calls move on to the next.
    pub fn watch_health(&self, channels: Vec<Channel>) -> Vec<tokio::task::JoinHandle<()>> {
        channels
            .into_iter()
            .enumerate()
            .map(|(i, ch)| tokio::spawn(self.clone().watch_one(i, ch)))
            .collect()
    }

    async fn watch_one(self, i: usize, channel: Channel) {
        let addr = self.channels.get(i).map_or("", |(a, _)| a.as_str()).to_string();
        loop {
            let mut health = HealthClient::new(channel.clone());
            let req = HealthCheckRequest {
                service: WATCHED_SERVICE.into(),
            };
            match health.watch(req).await {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    while let Ok(Some(answer)) = stream.message().await {
                        // A coordinator that does not know the service (an older one) serves.
                        let serves = answer.status != ServingStatus::NotServing as i32;
                        self.set_serving(i, serves, &addr);
                    }
                    self.set_serving(i, false, &addr);
                }
                // A coordinator without the health service (or its watch): no news is good news.
                Err(s) if s.code() == tonic::Code::Unimplemented => return,
                Err(_) => self.set_serving(i, false, &addr),
            }
            tokio::time::sleep(REWATCH_AFTER).await;
        }
    }

    fn set_serving(&self, i: usize, serves: bool, addr: &str) {
        let Some(s) = self.serving.get(i) else { return };
        if s.send_replace(serves) != serves {
            if serves {
                tracing::info!(coordinator = addr, "coordinator health: SERVING");
            } else {
                tracing::warn!(coordinator = addr, "coordinator health: NOT_SERVING or unreachable");
                if self.current.load(Ordering::SeqCst) == i {
                    self.fail_over(i);
                }
            }
        }
    }

    /// The address of the coordinator in use.
    pub fn current_addr(&self) -> &str {
        let i = self.current.load(Ordering::SeqCst);
        self.channels.get(i).map_or("", |(a, _)| a.as_str())
    }

    /// How many coordinators there are (at least one).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// Moves on from coordinator `from` to the next one (unless another call moved on already).
    /// Returns the address now in use.
    pub fn fail_over(&self, from: usize) -> &str {
        let n = self.channels.len();
        if n > 1 {
            let next = (1..n)
                .map(|k| (from + k) % n)
                .find(|&j| self.is_serving(j))
                .unwrap_or((from + 1) % n);
            if self
                .current
                .compare_exchange(from, next, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                tracing::warn!(
                    from = %self.channels.get(from).map_or("", |(a, _)| a.as_str()),
                    to = %self.channels.get(next).map_or("", |(a, _)| a.as_str()),
                    "coordinator unreachable or not serving; failing over"
                );
            }
        }
        self.current_addr()
    }

    /// Moves on from the coordinator in use to the next one. Returns the address now in use.
    pub fn fail_over_current(&self) -> &str {
        self.fail_over(self.current.load(Ordering::SeqCst))
    }
}

impl Service<http::Request<Body>> for Coordinators {
    type Response = http::Response<Body>;
    type Error = StdError;
    type Future = BoxFuture<Self::Response, Self::Error>;

    /// Always ready: readiness is awaited on the chosen channel inside the call.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let n = this.channels.len();
            // Never empty ([`Coordinators::new`]), and `current` stays below the length.
            let mut i = this.current.load(Ordering::SeqCst) % n;
            if !this.is_serving(i) && (0..n).any(|j| this.is_serving(j)) {
                this.fail_over(i);
                i = this.current.load(Ordering::SeqCst) % n;
            }
            let (addr, channel) = &this.channels[i];
            let mut channel = channel.clone();
            // A call to a coordinator that was serving ends as soon as its health says it is not
            // (its answer would wait for a Redis it cannot reach): the caller tries the next.
            let mut lost = (n > 1 && this.is_serving(i)).then(|| this.serving[i].subscribe());
            let call = async {
                std::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
                channel.call(request).await
            };
            let answered = tokio::select! {
                r = call => r.map_err(StdError::from),
                _ = async {
                    match lost.as_mut() {
                        Some(rx) => { let _ = rx.wait_for(|s| !*s).await; }
                        None => std::future::pending::<()>().await,
                    }
                } => Err(StdError::from(Status::unavailable(format!(
                    "coordinator {addr} stopped serving (health NOT_SERVING) during the call; failing over"
                )))),
            };
            match &answered {
                Err(_) => {
                    this.fail_over(i);
                }
                Ok(resp)
                    if Status::from_header_map(resp.headers())
                        .is_some_and(|s| s.code() == tonic::Code::Unavailable) =>
                {
                    this.fail_over(i);
                }
                Ok(_) => {}
            }
            answered
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_on_commas_and_are_bounded() {
        assert_eq!(
            split_addresses(" http://a:1, http://b:2 ,,").unwrap(),
            vec!["http://a:1".to_string(), "http://b:2".to_string()]
        );
        assert!(split_addresses(" , ").unwrap_err().contains("no coordinator address"));
        let many = vec!["http://a:1"; MAX_COORDINATORS + 1].join(",");
        assert!(split_addresses(&many).unwrap_err().contains("at most 16"));
    }

    #[tokio::test]
    async fn failing_over_moves_to_the_next_address_once_per_failure() {
        let ch = |a: &str| {
            (
                a.to_string(),
                tonic::transport::Endpoint::from_shared(a.to_string())
                    .unwrap()
                    .connect_lazy(),
            )
        };
        let c = Coordinators::new(vec![ch("http://127.0.0.1:1"), ch("http://127.0.0.1:2")]).unwrap();
        assert!(Coordinators::new(Vec::new()).is_none());
        assert_eq!(c.current_addr(), "http://127.0.0.1:1");
        assert_eq!(c.fail_over(0), "http://127.0.0.1:2");
        // A second call that failed on the first coordinator does not move back.
        assert_eq!(c.fail_over(0), "http://127.0.0.1:2");
        assert_eq!(c.fail_over_current(), "http://127.0.0.1:1");
    }
}
