//! The checks every HTTP request passes before a route sees it, against oversized heads and
//! cross-site use (docs/security.md):
//!
//! - a head of more than [`MAX_HTTP_HEADERS`] headers or [`MAX_HTTP_HEADER_BYTES`] bytes: 431;
//! - when the server is bound to a loopback address, a `Host` that is not a loopback name or
//!   address (`localhost`, `*.localhost`, `127.0.0.0/8`, `[::1]`): 403, so that a DNS-rebinding page
//!   cannot read the API;
//! - an `Origin` that is not allowed (the console's own origin, its loopback equivalents, the
//!   configured `http_allowed_origins`, and on a non-loopback bind the origin the `Host` names): 403,
//!   so that a page elsewhere cannot start runs on a developer's coordinator;
//! - a request body whose `Content-Type` is not `application/json`: 415, so that a cross-site form
//!   or a "simple" `fetch` (which need no CORS preflight) cannot send one.
//!
//! The server sends no CORS headers at all: a browser lets no other origin read an answer.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use baton_shared::limits::{MAX_HTTP_HEADER_BYTES, MAX_HTTP_HEADERS, echo};
use tonic::Code;

use super::error::ApiError;

/// What the checks compare with.
#[derive(Debug, Clone)]
pub struct Guard {
    /// The server listens on a loopback address: `Host` must name one.
    loopback: bool,
    /// Allowed origins, lower case, without a trailing `/`.
    origins: Vec<String>,
}

impl Guard {
    /// The guard of a server bound to `addr` (the bound address: its real port), allowing
    /// `extra_origins` besides the console's own.
    pub fn new(addr: SocketAddr, extra_origins: &[String]) -> Arc<Self> {
        let port = addr.port();
        let own = match addr {
            SocketAddr::V4(a) => format!("http://{}:{port}", a.ip()),
            SocketAddr::V6(a) => format!("http://[{}]:{port}", a.ip()),
        };
        let mut origins = vec![
            own,
            format!("http://localhost:{port}"),
            format!("http://127.0.0.1:{port}"),
            format!("http://[::1]:{port}"),
        ];
        origins.extend(extra_origins.iter().map(|o| normalize(o)));
        Arc::new(Self {
            loopback: addr.ip().is_loopback(),
            origins,
        })
    }

    /// The first check `req` fails, as the error to answer.
    fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
        let bytes: usize = headers
            .iter()
            .map(|(k, v)| k.as_str().len().saturating_add(v.len()).saturating_add(4))
            .fold(0usize, usize::saturating_add);
        if headers.len() > MAX_HTTP_HEADERS || bytes > MAX_HTTP_HEADER_BYTES {
            return Err(ApiError::edge(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                Code::InvalidArgument,
                "headers",
                &format!(
                    "{} headers of {bytes} bytes; at most {MAX_HTTP_HEADERS} headers and {MAX_HTTP_HEADER_BYTES} bytes",
                    headers.len()
                ),
            ));
        }
        let host = headers
            .get(header::HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned());
        if self.loopback
            && let Some(host) = &host
            && !is_loopback_host(host)
        {
            return Err(ApiError::edge(
                StatusCode::FORBIDDEN,
                Code::PermissionDenied,
                "host",
                &format!(
                    "{} is not a loopback name or address; this server listens on loopback only and answers only \
                     requests for localhost, 127.0.0.1 or [::1] (a page on another host name may not reach it)",
                    echo(host)
                ),
            ));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = normalize(&String::from_utf8_lossy(origin.as_bytes()));
            let same_host = !self.loopback
                && host.as_deref().is_some_and(|h| {
                    origin == format!("http://{}", h.to_ascii_lowercase())
                        || origin == format!("https://{}", h.to_ascii_lowercase())
                });
            if !same_host && !self.origins.contains(&origin) {
                return Err(ApiError::edge(
                    StatusCode::FORBIDDEN,
                    Code::PermissionDenied,
                    "origin",
                    &format!(
                        "{} may not call this API (a page of another site); allowed: the console's own origin and \
                         http_allowed_origins",
                        echo(&origin)
                    ),
                ));
            }
        }
        if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            let has_body = headers.contains_key(header::TRANSFER_ENCODING)
                || headers
                    .get(header::CONTENT_LENGTH)
                    .is_some_and(|v| v.as_bytes() != b"0");
            let content_type = headers.get(header::CONTENT_TYPE);
            if has_body || content_type.is_some() {
                let media = content_type
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .unwrap_or_default();
                let essence = media.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
                if essence != "application/json" {
                    return Err(ApiError::edge(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        Code::InvalidArgument,
                        "content-type",
                        &format!(
                            "a request body must be JSON with `Content-Type: application/json` (got {})",
                            if media.is_empty() {
                                "none".to_string()
                            } else {
                                echo(&media)
                            }
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// An origin as compared: lower case, without a trailing `/`.
fn normalize(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Whether `host` (a `Host` header: name or address, optional port) names this machine's loopback.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || port.starts_with(':') => ip.to_string(),
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, _port)) => name.to_string(),
            None => host.clone(),
        }
    };
    let name = name.trim_end_matches('.');
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The middleware: answers the first failed check, or passes `req` on.
pub async fn check(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    match guard.check(req.method(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_told_apart() {
        for h in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:1",
            "127.9.9.9",
            "[::1]:80",
            "[::1]",
            "a.localhost:3",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:8080",
            "10.0.0.1:80",
            "[::2]:80",
            "localhost.evil.example",
            "[::1]x",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_console_origin_passes_and_others_do_not() {
        let g = Guard::new(SocketAddr::from(([127, 0, 0, 1], 8080)), &[]);
        let ok = headers(&[("host", "127.0.0.1:8080"), ("origin", "http://localhost:8080")]);
        assert!(g.check(&Method::GET, &ok).is_ok());
        let evil = headers(&[("host", "127.0.0.1:8080"), ("origin", "http://evil.example")]);
        let e = g.check(&Method::GET, &evil).err().map(|e| e.http_status());
        assert_eq!(e, Some(StatusCode::FORBIDDEN));
        let text = headers(&[
            ("host", "127.0.0.1:8080"),
            ("content-type", "text/plain"),
            ("content-length", "2"),
        ]);
        let e = g.check(&Method::POST, &text).err().map(|e| e.http_status());
        assert_eq!(e, Some(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        let json = headers(&[
            ("host", "localhost"),
            ("content-type", "application/json; charset=utf-8"),
        ]);
        assert!(g.check(&Method::POST, &json).is_ok());
    }
}
