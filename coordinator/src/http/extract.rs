//! Request extractors that check what enters: a JSON body (at most the gRPC message limit; a parse
//! error names the JSON path and position) and query parameters (each at most
//! [`MAX_QUERY_VALUE_BYTES`]; an error names the parameter).

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{FromRequest, FromRequestParts, Request},
    http::request::Parts,
};
use baton_shared::limits::echo;
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::{HttpState, error::ApiError};

/// Longest query parameter value, in bytes.
pub const MAX_QUERY_VALUE_BYTES: usize = 1024;

/// Longest query string, in bytes.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

/// Path parameters deserialized into `T`, like axum's `Path`, but a segment that does not decode
/// (bad percent-encoding, not UTF-8) is INVALID_ARGUMENT with field `path` in the JSON error body,
/// like every other error, instead of axum's plain-text answer.
pub struct PathParams<T>(pub T);

impl<T, S> FromRequestParts<S> for PathParams<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(PathParams(value)),
            Err(e) => Err(ApiError::invalid(format!("path: {}", echo(&e.body_text())))),
        }
    }
}

/// A JSON request body deserialized into `T`. An empty body reads as `{}`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<HttpState>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<HttpState>) -> Result<Self, ApiError> {
        let limit = state.max_body_bytes;
        // `len`: the declared length, if the body has one (not chunked).
        let too_large = |len: Option<u64>| {
            let what = len.map_or_else(String::new, |n| format!("{n} bytes is "));
            ApiError::edge(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                tonic::Code::InvalidArgument,
                "body",
                &format!(
                    "{what}over the limit of {limit} bytes (the coordinator's max_payload_bytes plus 1 MiB for the \
                     rest of the request)"
                ),
            )
        };
        // A client that asked `Expect: 100-continue` has not sent the body: refusing it unread costs
        // nothing and is what the client waits for.
        let expects_continue = req
            .headers()
            .get(axum::http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if let Some(len) = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            && len > limit as u64
        {
            if !expects_continue && len <= LINGER_MAX_BYTES {
                linger(req.into_body()).await;
            }
            return Err(too_large(Some(len)));
        }
        let mut body = req.into_body().into_data_stream();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ApiError::invalid(format!("body: {}", echo(&e.to_string()))))?;
            if bytes.len().saturating_add(chunk.len()) > limit {
                // Reading the body sent `100 Continue`, if asked: the client is sending.
                linger_stream(body).await;
                return Err(too_large(None));
            }
            bytes.extend_from_slice(&chunk);
        }
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        parse_json(text).map(JsonBody)
    }
}

/// Most bytes of a refused body read and thrown away before the 413 answer ([`linger`]).
pub const LINGER_MAX_BYTES: u64 = 8 * 1024 * 1024;

/// Longest time spent reading a refused body before the 413 answer ([`linger`]).
pub const LINGER_MAX: Duration = Duration::from_secs(5);

/// Reads and throws away what is left of a refused body, at most [`LINGER_MAX_BYTES`] within
/// [`LINGER_MAX`], before the 413 answer is written (nginx's lingering close). Without it the
/// server closes a socket that still holds the client's unread bytes, the kernel answers with a
/// reset, and a client still writing its body loses the 413 with it: it sees "connection reset"
/// instead of the error that names the field.
async fn linger(body: axum::body::Body) {
    linger_stream(body.into_data_stream()).await;
}

async fn linger_stream(mut body: axum::body::BodyDataStream) {
    let drain = async {
        let mut read: u64 = 0;
        while let Some(Ok(chunk)) = body.next().await {
            read = read.saturating_add(chunk.len() as u64);
            if read > LINGER_MAX_BYTES {
                break;
            }
        }
    };
    // Past the deadline the answer goes out anyway, and the connection closes.
    let _ = tokio::time::timeout(LINGER_MAX, drain).await;
}

/// `text` as `T`, or INVALID_ARGUMENT naming the JSON path where it failed.
pub fn parse_json<T: DeserializeOwned>(text: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner().to_string();
        let field = field_path(&e.path().to_string(), &inner);
        ApiError::invalid_field(&field, &cut(&inner))
    })?;
    de.end()
        .map_err(|e| ApiError::invalid(format!("body: trailing characters after the JSON value: {e}")))?;
    Ok(value)
}

/// The field a deserialization error is about: the path serde reached, the missing field it names,
/// or `body` for the document as a whole.
fn field_path(path: &str, message: &str) -> String {
    // serde says "missing field `x`" at the struct that lacks it.
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|r| r.split_once('`'))
        .map(|(f, _)| f.to_string());
    // (An unknown field is in the path already.)
    // serde_path_to_error writes `?` for a segment it could not name: then it is the whole body.
    let base = if path == "." || path.contains('?') {
        String::new()
    } else {
        path.to_string()
    };
    match missing {
        Some(f) if base.is_empty() => f,
        Some(f) => format!("{base}.{f}"),
        None if base.is_empty() => "body".into(),
        None => base,
    }
}

fn cut(s: &str) -> String {
    echo(s).trim_matches('"').to_string()
}

/// Query parameters deserialized into `T` (unknown parameters are refused).
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        parse_query(q).map(Query)
    }
}

/// `q` (a query string) as `T`, or INVALID_ARGUMENT naming the parameter.
pub fn parse_query<T: DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    if q.len() > MAX_QUERY_BYTES {
        return Err(ApiError::invalid(format!(
            "query: {} bytes is over the limit of {MAX_QUERY_BYTES} bytes",
            q.len()
        )));
    }
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        if v.len() > MAX_QUERY_VALUE_BYTES {
            return Err(ApiError::invalid_field(
                &k,
                &format!(
                    "must be at most {MAX_QUERY_VALUE_BYTES} bytes (got {} bytes: {})",
                    v.len(),
                    echo(&v)
                ),
            ));
        }
    }
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.inner().to_string();
        let field = field_path(&e.path().to_string(), &inner);
        let field = if field == "body" { "query".to_string() } else { field };
        ApiError::invalid_field(&field, &cut(&inner))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        workflow: String,
        #[serde(default)]
        limit: u32,
    }

    fn field(e: ApiError) -> Option<String> {
        e.body().field
    }

    #[test]
    fn a_body_error_names_the_field() {
        let e = parse_json::<Body>(br#"{"workflow": 5}"#).err().map(field);
        assert_eq!(e, Some(Some("workflow".into())));
        let e = parse_json::<Body>(br#"{}"#).err().map(field);
        assert_eq!(e, Some(Some("workflow".into())));
        let e = parse_json::<Body>(br#"{"workflow": "a", "extra": 1}"#).err().map(field);
        assert_eq!(e, Some(Some("extra".into())));
        let e = parse_json::<Body>(br#"{"workflow": "a""#).err().map(|e| e.body());
        let e = e.map(|b| (b.field, b.message.contains("line 1")));
        assert_eq!(e, Some((Some("body".into()), true)));
    }

    #[test]
    fn a_query_error_names_the_parameter() {
        let e = parse_query::<Body>("workflow=a&limit=x").err().map(field);
        assert_eq!(e, Some(Some("limit".into())));
        let long = "a".repeat(MAX_QUERY_VALUE_BYTES + 1);
        let e = parse_query::<Body>(&format!("workflow={long}")).err().map(field);
        assert_eq!(e, Some(Some("workflow".into())));
        let ok = parse_query::<Body>("workflow=a%20b&limit=3")
            .ok()
            .map(|b| (b.workflow, b.limit));
        assert_eq!(ok, Some(("a b".into(), 3)));
    }
}
