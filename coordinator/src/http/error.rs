//! The one place where a gRPC `Status` becomes an HTTP answer: the status code from
//! grpc-gateway's table, and the JSON body `{"code", "message", "field"}` (see `docs/http-api.md`).

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use tonic::{Code, Status};

use super::model::ErrorBody;

/// An error answer of the HTTP API: a gRPC status, shown as JSON.
#[derive(Debug)]
pub struct ApiError(pub Status);

impl From<Status> for ApiError {
    fn from(s: Status) -> Self {
        Self(s)
    }
}

impl ApiError {
    /// `INVALID_ARGUMENT` with `message` (which should start with `<field>: `).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self(Status::invalid_argument(message))
    }

    /// The HTTP status of this error.
    pub fn http_status(&self) -> StatusCode {
        http_status(self.0.code())
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: code_name(self.0.code()).to_string(),
            message: self.0.message().to_string(),
            field: field_of(self.0.message()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.http_status(), Json(self.body())).into_response()
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
        let body = ApiError(Status::not_found("run_id: no run x")).body();
        assert_eq!(body.code, "NOT_FOUND");
        assert_eq!(body.field.as_deref(), Some("run_id"));
        assert_eq!(body.message, "run_id: no run x");
    }
}
