//! The gRPC server's edge: one service in front of every route that
//! - answers health and reflection from the first moment the coordinator listens, and every other
//!   call with UNAVAILABLE ("starting up") until start-up is done ([`Edge::open`]), and at once
//!   while the coordinator cannot reach Redis ([`Edge::gated_by`]);
//! - turns the codec's answers about a bad request into the caller's fault: a malformed protobuf
//!   request is INVALID_ARGUMENT (tonic says INTERNAL), and a request over the message limit is
//!   INVALID_ARGUMENT naming `max_payload_bytes` (tonic says OUT_OF_RANGE without a field).
//!
//! Only the server's answers are rewritten, and only those the server's own decoder produced for
//! the request: a client still sees a malformed *server* answer as INTERNAL.

use std::{
    convert::Infallible,
    sync::{Arc, OnceLock},
};

use crate::health::Health;
use tonic::{
    Code, Status,
    body::Body,
    codegen::{BoxFuture, Context, Poll, Service, http},
    service::Routes,
};

/// Bytes a request may carry beyond `max_payload_bytes` for the rest of the message (ids, error
/// text, metadata of a report): 1 MiB. A `ReportResult` whose output is over `max_payload_bytes`
/// by less than this still reaches the handler, which fails the step with `OutputTooLarge`.
pub const MESSAGE_MARGIN_BYTES: usize = 1024 * 1024;

/// The largest gRPC message the server decodes: `max_payload_bytes` + [`MESSAGE_MARGIN_BYTES`].
pub fn max_message_bytes(max_payload_bytes: usize) -> usize {
    max_payload_bytes.saturating_add(MESSAGE_MARGIN_BYTES)
}

/// What tonic-prost's decoder says about bytes that are not the request message.
const DECODE_ERROR: &str = "failed to decode Protobuf message";
/// What tonic's decoder says about a message over the limit.
const TOO_LARGE: &str = "decoded message length too large";

/// The service in front of every route (see the module doc). Cheap to clone.
#[derive(Clone)]
pub struct Edge {
    /// Health and reflection: served from the start.
    always: Routes,
    /// The API: set once start-up is done.
    api: Arc<OnceLock<Routes>>,
    max_payload_bytes: usize,
    /// Refuses API calls at once while Redis is unreachable ([`Health::gate`]).
    health: Option<Arc<Health>>,
}

impl Edge {
    /// An edge serving `always` at once and nothing else yet.
    pub fn new(always: Routes, max_payload_bytes: usize) -> Self {
        Self {
            always,
            api: Arc::new(OnceLock::new()),
            max_payload_bytes,
            health: None,
        }
    }

    /// Puts [`Health::gate`] in front of the API: while Redis is unreachable every API call is
    /// answered `UNAVAILABLE` at once (health and reflection still answer).
    #[must_use]
    pub fn gated_by(mut self, health: Arc<Health>) -> Self {
        self.health = Some(health);
        self
    }

    /// Start-up is done: serve `api` from now on. A second call changes nothing.
    pub fn open(&self, api: Routes) {
        let _ = self.api.set(api);
    }

    /// The caller's-fault version of an error the server's decoder answered, if it is one.
    fn rewrite(&self, status: &Status) -> Option<Status> {
        let msg = status.message();
        match status.code() {
            Code::Internal if msg.contains(DECODE_ERROR) => Some(Status::invalid_argument(format!(
                "request: not a valid protobuf message of this method's request type ({msg})"
            ))),
            Code::OutOfRange if msg.contains(TOO_LARGE) => Some(Status::invalid_argument(format!(
                "request: message too large ({msg}): the server accepts max_payload_bytes ({}) plus {} bytes for the \
                 rest of the message",
                self.max_payload_bytes, MESSAGE_MARGIN_BYTES
            ))),
            _ => None,
        }
    }
}

/// `resp` with its trailers-only error rewritten by `edge`, when it is one the decoder produced.
fn rewritten(edge: &Edge, mut resp: http::Response<Body>) -> http::Response<Body> {
    let Some(status) = Status::from_header_map(resp.headers()) else {
        return resp;
    };
    let Some(new) = edge.rewrite(&status) else { return resp };
    let headers = resp.headers_mut();
    for h in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        headers.remove(h);
    }
    if new.add_header(headers).is_err() {
        // Could not encode the new status: keep the original answer rather than none.
        let _ = status.add_header(headers);
    }
    resp
}

fn starting_up() -> http::Response<Body> {
    let (parts, ()) = Status::unavailable(
        "the coordinator is starting up (registering definitions, declaring queues); try again shortly",
    )
    .into_http::<()>()
    .into_parts();
    http::Response::from_parts(parts, Body::empty())
}

impl Service<http::Request<Body>> for Edge {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let path = req.uri().path();
        let always = path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.");
        let mut routes = if always {
            self.always.clone()
        } else {
            match self.api.get() {
                Some(api) => {
                    if let Some(Err(e)) = self.health.as_ref().map(|h| h.gate()) {
                        let (parts, ()) = Status::from(e).into_http::<()>().into_parts();
                        return Box::pin(async { Ok(http::Response::from_parts(parts, Body::empty())) });
                    }
                    api.clone()
                }
                None => return Box::pin(async { Ok(starting_up()) }),
            }
        };
        let edge = self.clone();
        Box::pin(async move {
            std::future::poll_fn(|cx| Service::<http::Request<Body>>::poll_ready(&mut routes, cx)).await?;
            let resp = routes.call(req).await?;
            Ok(if always { resp } else { rewritten(&edge, resp) })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge() -> Edge {
        Edge::new(Routes::default(), 100)
    }

    #[test]
    fn a_malformed_request_is_the_callers_fault() {
        let s = edge()
            .rewrite(&Status::internal(
                "failed to decode Protobuf message: invalid wire type",
            ))
            .map(|s| s.code());
        assert_eq!(s, Some(Code::InvalidArgument));
    }

    #[test]
    fn a_message_over_the_limit_names_the_setting() {
        let s = edge()
            .rewrite(&Status::out_of_range(
                "Error, decoded message length too large: found 9 bytes, the limit is: 5 bytes",
            ))
            .unwrap_or_else(|| Status::ok(""));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("max_payload_bytes (100)"), "{}", s.message());
    }

    #[test]
    fn other_errors_pass_unchanged() {
        assert!(edge().rewrite(&Status::internal("a bug")).is_none());
        assert!(edge().rewrite(&Status::not_found("no run")).is_none());
    }

    #[test]
    fn the_limit_saturates() {
        assert_eq!(max_message_bytes(usize::MAX), usize::MAX);
        assert_eq!(max_message_bytes(10), 10 + MESSAGE_MARGIN_BYTES);
    }
}
