//! The one place where a gRPC `Status` becomes an HTTP answer: the status code from
//! grpc-gateway's table, and the JSON body `{"code", "message", "field"}` (see `docs/http-api.md`).

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use tonic::{Code, Status};

use baton_shared::limits::{MAX_ECHO_BYTES, MAX_ERROR_MESSAGE_BYTES, cut};

use super::model::ErrorBody;

/// An error answer of the HTTP API: a gRPC status, shown as JSON; for the errors of the HTTP edge
/// itself (415, 431, 405, 403 for a foreign origin) with the HTTP status gRPC has no code for, and
/// with the field it is about when the message cannot say it (a key too long to echo).
#[derive(Debug)]
pub struct ApiError {
    status: Status,
    field: Option<String>,
    http: Option<StatusCode>,
}

impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        Self {
            status,
            field: None,
            http: None,
        }
    }
}

impl ApiError {
    /// `INVALID_ARGUMENT` with `message` (which should start with `<field>: `).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::from(Status::invalid_argument(message))
    }

    /// `INVALID_ARGUMENT` about `field` (cut to [`MAX_ECHO_BYTES`] bytes): the message is
    /// `<field>: <message>`.
    pub fn invalid_field(field: &str, message: &str) -> Self {
        let field = cut(field, MAX_ECHO_BYTES).into_owned();
        Self {
            status: Status::invalid_argument(format!("{field}: {message}")),
            field: Some(field),
            http: None,
        }
    }

    /// An error of the HTTP edge: answered with `http` (not the gRPC code's mapping), about `field`.
    pub fn edge(http: StatusCode, code: Code, field: &str, message: &str) -> Self {
        Self {
            status: Status::new(code, format!("{field}: {message}")),
            field: Some(field.to_string()),
            http: Some(http),
        }
    }

    /// The gRPC status of this error.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// The HTTP status of this error.
    pub fn http_status(&self) -> StatusCode {
        self.http.unwrap_or_else(|| http_status(self.status.code()))
    }

    /// The JSON body of this error: its field cut to [`MAX_ECHO_BYTES`], its message cut so that the
    /// whole body, as JSON, is under [`MAX_ERROR_MESSAGE_BYTES`].
    pub fn body(&self) -> ErrorBody {
        let message = self.status.message();
        let field = self.field.clone().or_else(|| field_of(message));
        let mut body = ErrorBody {
            code: code_name(self.status.code()).to_string(),
            message: message.to_string(),
            field: field.map(|f| cut(&f, MAX_ECHO_BYTES).into_owned()),
        };
        // The whole JSON body (escapes included) under MAX_ERROR_MESSAGE_BYTES: cut the message by
        // what is over, until it fits (at most a few rounds: each cut removes at least the excess).
        let mut budget = body.message.len();
        while serde_json::to_vec(&body).map_or(0, |v| v.len()) >= MAX_ERROR_MESSAGE_BYTES && budget > 0 {
            let over = serde_json::to_vec(&body)
                .map_or(0, |v| v.len())
                .saturating_sub(MAX_ERROR_MESSAGE_BYTES)
                .saturating_add(16);
            budget = budget.saturating_sub(over.max(16));
            body.message = cut(message, budget).into_owned();
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.http_status();
        let mut response = (status, Json(self.body())).into_response();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // A refused body may be left partly unread (the extractor reads at most 8 MiB more, for
            // at most 5 s), so the server closes the connection after this answer: say so, and a
            // client does not send its next request on it (it would race the close and fail
            // without an answer).
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

/// The HTTP status for a gRPC code, as grpc-gateway maps them
/// (`runtime.HTTPStatusFromCode`; `CANCELLED` is nginx's 499 "client closed request").
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

pub use baton_shared::status::code_name;

/// The field an error message names: the coordinator's messages about one field start with
/// `<path>: ` (`steps[2].retry.max_interval: ...`, `data/amount: ...`). gRPC's `*_json` names
/// become the HTTP names (`data_json` -> `data`, `input_json/x` -> `input/x`).
pub fn field_of(message: &str) -> Option<String> {
    let (head, _) = message.split_once(": ")?;
    let is_path = !head.is_empty()
        && head.len() <= 256
        && head
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.[]/-~".contains(&b))
        && head
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if !is_path {
        return None;
    }
    let split = head.find(['/', '.', '[']).unwrap_or(head.len());
    let (root, rest) = head.split_at(split);
    let root = root.strip_suffix("_json").unwrap_or(root);
    Some(format!("{root}{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_as_grpc_gateway_does() {
        assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::FailedPrecondition), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(http_status(Code::AlreadyExists), StatusCode::CONFLICT);
        assert_eq!(http_status(Code::PermissionDenied), StatusCode::FORBIDDEN);
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(Code::Unavailable), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(http_status(Code::Cancelled).as_u16(), 499);
        assert_eq!(http_status(Code::ResourceExhausted), StatusCode::TOO_MANY_REQUESTS);
    }

    #[test]
    fn the_field_is_the_path_a_message_starts_with() {
        assert_eq!(field_of("workflow: required").as_deref(), Some("workflow"));
        assert_eq!(
            field_of("steps[2].retry.max_interval: too long").as_deref(),
            Some("steps[2].retry.max_interval")
        );
        assert_eq!(
            field_of("data/amount: -5 is less than 0").as_deref(),
            Some("data/amount")
        );
        assert_eq!(field_of("data_json: not valid JSON: x").as_deref(), Some("data"));
        assert_eq!(field_of("input_json/a: bad").as_deref(), Some("input/a"));
        assert_eq!(field_of("the bearer token is not valid"), None);
        assert_eq!(field_of("role viewer may not call /x: no"), None);
        assert_eq!(field_of("no colon here"), None);
    }

    #[test]
    fn the_body_names_the_code_message_and_field() {
        let body = ApiError::from(Status::not_found("run_id: no run x")).body();
        assert_eq!(body.code, "NOT_FOUND");
        assert_eq!(body.field.as_deref(), Some("run_id"));
        assert_eq!(body.message, "run_id: no run x");
    }

    #[test]
    fn a_long_message_and_field_are_cut() {
        let key = "k".repeat(1 << 20);
        let body = ApiError::invalid_field(&key, &"m".repeat(1 << 20)).body();
        let text = serde_json::to_string(&body).unwrap_or_default();
        assert!(text.len() < MAX_ERROR_MESSAGE_BYTES, "{}", text.len());
        let nul = ApiError::invalid_field("f", &"\u{0}".repeat(4000)).body();
        let text = serde_json::to_string(&nul).unwrap_or_default();
        assert!(text.len() < MAX_ERROR_MESSAGE_BYTES, "{}", text.len());
        assert!(body.field.is_some_and(|f| f.len() <= MAX_ECHO_BYTES + 3));
    }
}
