//! Several coordinators behind one gRPC channel: a worker given `--coordinator
//! "http://a:7450,http://b:7450"` sends every call to one of them and moves on to the next when a
//! call cannot reach it (a transport error: refused, reset, timed out) or when its health probe
//! says it cannot serve. A name that resolves to several addresses is tried address by address at
//! each connection (hyper's connector does that), so a DNS name over several coordinators also
//! fails over; a load balancer's address works as a single coordinator.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use tonic::{
    body::Body,
    codegen::{BoxFuture, Service, http},
    transport::Channel,
};

/// Most coordinator addresses one worker takes.
pub const MAX_COORDINATORS: usize = 16;

/// One lazily connected channel per coordinator address and the one in use; cloning shares both.
#[derive(Clone)]
pub struct Coordinators {
    channels: Arc<[(String, Channel)]>,
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
            channels: channels.into(),
            current: Arc::new(AtomicUsize::new(0)),
        })
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
            let next = (from + 1) % n;
            if self
                .current
                .compare_exchange(from, next, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                tracing::warn!(
                    from = %self.channels.get(from).map_or("", |(a, _)| a.as_str()),
                    to = %self.channels.get(next).map_or("", |(a, _)| a.as_str()),
                    "coordinator unreachable; failing over"
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
    type Error = tonic::transport::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    /// Always ready: readiness is awaited on the chosen channel inside the call.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            // Never empty ([`Coordinators::new`]), and `current` stays below the length.
            let i = this.current.load(Ordering::SeqCst) % this.channels.len();
            let mut channel = this.channels[i].1.clone();
            let ready = std::future::poll_fn(|cx| channel.poll_ready(cx)).await;
            let answered = match ready {
                Ok(()) => channel.call(request).await,
                Err(e) => Err(e),
            };
            if answered.is_err() {
                this.fail_over(i);
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
