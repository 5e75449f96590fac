//! The bounds on accepted connections, for the HTTP API and the gRPC server alike: a cap on how many
//! are open at once ([`Admission`]), an idle timeout on each ([`IdleIo`]), an accept loop that
//! survives running out of file descriptors ([`accept`]), and raising the process's open-file limit
//! at start ([`raise_open_file_limit`]).
//!
//! A connection over the cap is accepted and closed at once (the client sees the connection reset
//! or closed before any answer), counted in `baton_connections_refused_total{listener}`, and logged
//! at most once per [`REFUSAL_LOG_INTERVAL`]; `baton_connections{listener}` is the number open.

use std::{
    future::Future as _,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};

/// At most one "connection cap reached" log line per listener in this interval.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How long the accept loop pauses after `accept` failed (out of file descriptors, mostly), so
/// that it does not spin while the process has none left.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// File descriptors kept free of the connection caps for Redis, RabbitMQ, the metrics listener,
/// definition files and the like (see [`fit_caps`]).
pub const RESERVED_FDS: u64 = 256;

/// The cap on the connections open at once on one listener.
#[derive(Debug)]
pub struct Admission {
    /// `http` or `grpc`: the `listener` label of the metrics.
    listener: &'static str,
    permits: Arc<Semaphore>,
    max: usize,
    /// Refusals since the last log line, and when that was.
    refused: AtomicU64,
    last_log: Mutex<Option<Instant>>,
}

/// One admitted connection: holds its place under the cap until dropped.
#[derive(Debug)]
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    listener: &'static str,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        metrics::gauge!("baton_connections", "listener" => self.listener).decrement(1.0);
    }
}

impl Admission {
    /// A cap of `max` connections (at least 1) on the listener named `listener` (`http`, `grpc`).
    pub fn new(listener: &'static str, max: usize) -> Arc<Self> {
        let max = max.max(1);
        Arc::new(Self {
            listener,
            permits: Arc::new(Semaphore::new(max)),
            max,
            refused: AtomicU64::new(0),
            last_log: Mutex::new(None),
        })
    }

    /// A place for one more connection, or `None` (counted and, rate-limited, logged) when `max`
    /// are open.
    pub fn admit(&self) -> Option<Admitted> {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                metrics::gauge!("baton_connections", "listener" => self.listener).increment(1.0);
                Some(Admitted {
                    _permit: permit,
                    listener: self.listener,
                })
            }
            Err(_) => {
                metrics::counter!("baton_connections_refused_total", "listener" => self.listener).increment(1);
                let refused = self.refused.fetch_add(1, Ordering::Relaxed).saturating_add(1);
                let now = Instant::now();
                if let Ok(mut last) = self.last_log.lock()
                    && last.is_none_or(|t| now.saturating_duration_since(t) >= REFUSAL_LOG_INTERVAL)
                {
                    *last = Some(now);
                    self.refused.store(0, Ordering::Relaxed);
                    tracing::warn!(
                        listener = self.listener,
                        max = self.max,
                        refused,
                        "connection cap reached: new {} connections are closed at once until some close ({refused} refused \
                         since the last such line; raise {}_max_connections if these are legitimate clients)",
                        self.listener,
                        self.listener
                    );
                }
                None
            }
        }
    }
}

/// The stream of admitted connections of `listener`, each wrapped in an [`IdleIo`] of `idle`,
/// with TCP_NODELAY set. A connection over `admission`'s cap is closed at once; a failed `accept`
/// (out of file descriptors) is logged and retried after [`ACCEPT_ERROR_PAUSE`], never ends the
/// stream.
pub fn accept(
    listener: TcpListener,
    admission: Arc<Admission>,
    idle: Duration,
) -> impl futures::Stream<Item = io::Result<IdleIo<TcpStream>>> + Send + 'static {
    futures::stream::unfold((listener, admission), move |(listener, admission)| async move {
        loop {
            match listener.accept().await {
                Ok((tcp, _)) => {
                    let Some(admitted) = admission.admit() else {
                        drop(tcp);
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let io = IdleIo::new(tcp, idle, admitted);
                    return Some((Ok(io), (listener, admission)));
                }
                Err(e) => {
                    tracing::warn!(listener = admission.listener, error = %e, "accept failed; pausing");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            }
        }
    })
}

/// A connection that fails with `TimedOut` once no byte was read or written on it for `idle` (a
/// client that went silent, or stopped reading an answer), and that holds its place under the
/// connection cap while open.
#[derive(Debug)]
pub struct IdleIo<T> {
    io: T,
    idle: Duration,
    last: Instant,
    sleep: Pin<Box<Sleep>>,
    _admitted: Admitted,
}

impl<T> IdleIo<T> {
    fn new(io: T, idle: Duration, admitted: Admitted) -> Self {
        let last = Instant::now();
        Self {
            io,
            idle,
            last,
            sleep: Box::pin(tokio::time::sleep_until(deadline(last, idle))),
            _admitted: admitted,
        }
    }

    /// The connection made progress.
    fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// `Err(TimedOut)` when the connection has been idle for `idle`; otherwise arms the timer
    /// for the rest of the idle time (the caller returns `Pending`).
    fn check_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            let due = deadline(self.last, self.idle);
            if self.sleep.deadline() != due {
                self.sleep.as_mut().reset(due);
            }
            match self.sleep.as_mut().poll(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(()) if Instant::now() >= deadline(self.last, self.idle) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connection idle for {:?}", self.idle),
                    ));
                }
                Poll::Ready(()) => {}
            }
        }
    }
}

/// `last + idle`, saturating far in the future.
fn deadline(last: Instant, idle: Duration) -> Instant {
    last.checked_add(idle)
        .unwrap_or_else(|| last + Duration::from_secs(86_400 * 365))
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.check_idle(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, data) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.check_idle(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.check_idle(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected for IdleIo<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// Raises the soft limit on open files (RLIMIT_NOFILE) to the hard limit, where the system allows,
/// and returns the soft limit in force afterwards (`None` where it cannot be read).
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        let (soft, hard) = (limit.current, limit.maximum);
        if soft.is_some() && soft != hard {
            let raised = rustix::process::Rlimit {
                current: hard,
                maximum: hard,
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => {
                    tracing::info!(from = ?soft, to = ?hard, "raised the open-file limit (RLIMIT_NOFILE) to the hard limit")
                }
                Err(e) => tracing::warn!(soft = ?soft, hard = ?hard, error = %e, "cannot raise the open-file limit"),
            }
        }
        getrlimit(Resource::Nofile).current.or(Some(u64::MAX))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The connection caps `(grpc, http)` that fit `open_files` (the soft open-file limit) with
/// [`RESERVED_FDS`] kept free: unchanged when they fit, otherwise both scaled down in proportion
/// (each at least 1).
pub fn fit_caps(grpc: usize, http: usize, open_files: Option<u64>) -> (usize, usize) {
    let Some(limit) = open_files else {
        return (grpc, http);
    };
    let room = limit.saturating_sub(RESERVED_FDS).max(2);
    let want = (grpc as u64).saturating_add(http as u64);
    if want <= room {
        return (grpc, http);
    }
    let scale = |n: usize| -> usize {
        let scaled = (n as u128).saturating_mul(u128::from(room)) / u128::from(want.max(1));
        usize::try_from(scaled).unwrap_or(usize::MAX).max(1)
    };
    (scale(grpc), scale(http))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_that_fit_are_kept_and_others_scaled_below_the_file_limit() {
        assert_eq!(fit_caps(4096, 1024, Some(1_048_576)), (4096, 1024));
        assert_eq!(fit_caps(4096, 1024, None), (4096, 1024));
        let (g, h) = fit_caps(4096, 1024, Some(1024));
        assert!(g + h <= 1024 - RESERVED_FDS as usize, "{g} {h}");
        assert!(g > h && h >= 1, "{g} {h}");
        assert_eq!(fit_caps(10, 10, Some(0)), (1, 1));
    }

    #[tokio::test]
    async fn a_connection_over_the_cap_is_refused_until_one_closes() {
        let a = Admission::new("test", 2);
        let one = a.admit();
        let two = a.admit();
        assert!(one.is_some() && two.is_some());
        assert!(a.admit().is_none());
        drop(one);
        assert!(a.admit().is_some());
    }
}
