//! The web console: static assets embedded in the binary, served at /.
//!
//! `console/build.sh` builds the frontend into `console/dist`; `build.rs` embeds that directory
//! at compile time by its content (also in debug builds) and this module serves it as the HTTP server's
//! fallback: `/`, `/index.html` and the paths of the console's screens ([`SCREENS`]: the console
//! uses hash routes, so `/runs/...` is only a link written without its `#`) get `index.html` with
//! `Cache-Control: no-cache`; any other path that is not a file (`/metrics`, a gRPC method) is a
//! 404 with the HTTP API's JSON error body naming what is served here; `/assets/*` are content-hashed by
//! Vite and served `immutable` for a year. Every file has its content type and a strong ETag
//! (SHA-256), answering `If-None-Match` with 304. When the console was not built, `build.rs`
//! leaves a page saying how to build it, so a clean clone still compiles without Node.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// One file of the built console (`console/dist`), embedded at compile time by `build.rs`.
struct Asset {
    /// Its path under dist, `/`-separated (`index.html`, `assets/index-BsmiZkAE.js`).
    path: &'static str,
    /// Its bytes.
    data: &'static [u8],
    /// The hex SHA-256 of `data` (the strong ETag).
    sha256: &'static str,
    /// Its `Content-Type`.
    mime: &'static str,
}

// `static ASSETS: &[Asset]`, sorted by path.
include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));

/// The embedded file at `path` (under dist, without a leading `/`).
fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS
        .binary_search_by(|a| a.path.cmp(path))
        .ok()
        .and_then(|i| ASSETS.get(i))
}

/// `Cache-Control` of content-hashed files under `/assets/`.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of `index.html` and other unhashed files: revalidate each time (ETag).
const REVALIDATE: &str = "no-cache";

/// The console's routes, for the HTTP server to use as its fallback: `GET`/`HEAD` of any path.
/// No token is needed (the page asks for one when the API answers 401).
pub fn router() -> Router {
    Router::new().fallback(serve)
}

/// Whether the embedded console is the real build (false: the "not built" page of `build.rs`).
pub fn is_built() -> bool {
    asset("index.html").is_some_and(|f| !f.data.windows(NOT_BUILT.len()).any(|w| w == NOT_BUILT))
}

/// The top-level routes of the console's screens (`#/runs/...`, see `console/src/main.tsx`): a path
/// under one of them without the `#` still opens the console.
pub const SCREENS: [&str; 5] = ["runs", "workflows", "tasks", "schedules", "workers"];

/// Whether `path` (without its leading `/`) opens the console's page: the root, `index.html`, or
/// a path under one of its [`SCREENS`].
fn is_page(path: &str) -> bool {
    let first = path.split('/').next().unwrap_or("");
    path.is_empty() || path == "index.html" || SCREENS.contains(&first)
}

/// A path that is neither a file of the console nor one of its screens: 404 with the JSON error
/// body of the HTTP API (`{"code": "NOT_FOUND", "message": "path: ...", "field": "path"}`).
fn not_found(method: &Method, path: &str) -> Response {
    crate::http::error::ApiError::edge(
        StatusCode::NOT_FOUND,
        tonic::Code::NotFound,
        "path",
        &format!(
            "no route {} {} here: this is Baton's HTTP port, serving the web console at / and the HTTP API \
             under /v1 (see /v1/openapi.json); Prometheus metrics are on the coordinator's metrics_addr, \
             and the gRPC API on its own port (default 7450)",
            baton_shared::limits::echo(method.as_str()),
            baton_shared::limits::echo(&format!("/{path}"))
        ),
    )
    .into_response()
}

/// The marker `build.rs` writes into its placeholder page.
const NOT_BUILT: &[u8] = b"the console was not built";

async fn serve(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    let file = asset(path).filter(|_| !path.is_empty());
    if file.is_none() && !path.starts_with("assets/") && !is_page(path) {
        return not_found(&method, path);
    }
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET, HEAD")], "").into_response();
    }
    let (name, file) = match file {
        Some(f) => (path, f),
        // A missing hashed asset is a 404 (an old page asking for a file of an earlier build),
        // not index.html, which a browser would try to run as a script.
        None if path.starts_with("assets/") => {
            return (
                StatusCode::NOT_FOUND,
                [(header::CACHE_CONTROL, REVALIDATE)],
                "no such asset",
            )
                .into_response();
        }
        None => match asset("index.html") {
            Some(f) => ("index.html", f),
            None => return (StatusCode::NOT_FOUND, "the console is not embedded").into_response(),
        },
    };
    let etag = format!("\"{}\"", file.sha256);
    let cache = if name.starts_with("assets/") {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    let mut out = HeaderMap::new();
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, v);
    }
    out.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if fresh {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(file.mime));
    if name == "index.html" {
        // The page loads only its own scripts and styles and talks only to this server.
        out.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            ),
        );
    }
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(file.data)
    };
    (StatusCode::OK, out, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(path: &str, inm: Option<&str>) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(v) = inm.and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(header::IF_NONE_MATCH, v);
        }
        let uri = path.parse::<Uri>().unwrap_or_default();
        serve(Method::GET, uri, headers).await
    }

    #[tokio::test]
    async fn index_html_is_served_at_the_root_and_for_unknown_paths_with_no_cache() {
        for path in ["/", "/runs/abc", "/index.html"] {
            let res = get(path, None).await;
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            assert_eq!(
                res.headers()[header::CONTENT_TYPE],
                "text/html; charset=utf-8",
                "{path}"
            );
            assert_eq!(res.headers()[header::CACHE_CONTROL], REVALIDATE, "{path}");
        }
    }

    #[tokio::test]
    async fn paths_outside_the_console_are_404_with_the_json_error_body() {
        for path in ["/metrics", "/favicon.ico", "/grpc.health.v1.Health/Check", "/runsx"] {
            let res = get(path, None).await;
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json", "{path}");
        }
        let res = serve(
            Method::POST,
            "/baton.v1.RunService/ListRuns".parse().unwrap_or_default(),
            HeaderMap::new(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        for path in ["/runs", "/workflows/expense", "/tasks/r/s", "/schedules", "/workers"] {
            assert_eq!(get(path, None).await.status(), StatusCode::OK, "{path}");
        }
    }

    #[tokio::test]
    async fn a_matching_etag_answers_304_and_a_missing_asset_404() {
        let res = get("/", None).await;
        let etag = res.headers()[header::ETAG]
            .to_str()
            .map(str::to_owned)
            .unwrap_or_default();
        assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
        assert_eq!(get("/", Some(&etag)).await.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(get("/assets/nope-123.js", None).await.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn hashed_assets_are_immutable_with_their_content_type() {
        // Only when the console was built (console/build.sh); the placeholder has no assets.
        let Some(js) = ASSETS
            .iter()
            .map(|a| a.path)
            .find(|p| p.starts_with("assets/") && p.ends_with(".js"))
        else {
            assert!(!is_built(), "a built console has its scripts under assets/");
            return;
        };
        let res = get(&format!("/{js}"), None).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CACHE_CONTROL], IMMUTABLE);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    }
}
