//! The one set of error codes every service error maps to.
//!
//! A [`ServiceError`] carries an [`ErrorCode`] and a message that is safe to show to the
//! caller: it never contains secrets or cardholder data. The code maps to exactly one HTTP
//! status, to the protobuf `mpos.common.v1.ErrorCode` used in bus replies, and to a stable
//! lowercase string used in JSON bodies and CLI output.

use std::fmt;
use std::str::FromStr;

use mpos_proto::common;
use serde::{Deserialize, Serialize};

/// The shared error codes (see `proto/mpos/common/v1/error.proto`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or a value is invalid.
    BadRequest,
    /// The resource does not exist or is not visible to the caller.
    NotFound,
    /// No or invalid credentials.
    Unauthenticated,
    /// Valid credentials without the right to do this.
    Forbidden,
    /// The resource to create exists already.
    AlreadyExists,
    /// The request conflicts with the current state.
    Conflict,
    /// A dependency cannot be reached; retry later.
    Unavailable,
    /// The operation did not complete in time.
    Timeout,
    /// A defect on the platform's side.
    Internal,
}

impl ErrorCode {
    /// Every code, in protobuf order.
    pub const ALL: [ErrorCode; 9] = [
        Self::BadRequest,
        Self::NotFound,
        Self::Unauthenticated,
        Self::Forbidden,
        Self::AlreadyExists,
        Self::Conflict,
        Self::Unavailable,
        Self::Timeout,
        Self::Internal,
    ];

    /// The stable lowercase name used in JSON bodies, headers and CLI output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::NotFound => "not_found",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::AlreadyExists => "already_exists",
            Self::Conflict => "conflict",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status an API answers with.
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthenticated => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::AlreadyExists | Self::Conflict => 409,
            Self::Internal => 500,
            Self::Unavailable => 503,
            Self::Timeout => 504,
        }
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Unavailable | Self::Timeout)
    }

    /// The protobuf enum value.
    pub fn to_proto(self) -> common::ErrorCode {
        match self {
            Self::BadRequest => common::ErrorCode::BadRequest,
            Self::NotFound => common::ErrorCode::NotFound,
            Self::Unauthenticated => common::ErrorCode::Unauthenticated,
            Self::Forbidden => common::ErrorCode::Forbidden,
            Self::AlreadyExists => common::ErrorCode::AlreadyExists,
            Self::Conflict => common::ErrorCode::Conflict,
            Self::Unavailable => common::ErrorCode::Unavailable,
            Self::Timeout => common::ErrorCode::Timeout,
            Self::Internal => common::ErrorCode::Internal,
        }
    }

    /// The code of a protobuf enum value; `UNSPECIFIED` and unknown values are `Internal`.
    pub fn from_proto(code: i32) -> Self {
        match common::ErrorCode::try_from(code) {
            Ok(common::ErrorCode::BadRequest) => Self::BadRequest,
            Ok(common::ErrorCode::NotFound) => Self::NotFound,
            Ok(common::ErrorCode::Unauthenticated) => Self::Unauthenticated,
            Ok(common::ErrorCode::Forbidden) => Self::Forbidden,
            Ok(common::ErrorCode::AlreadyExists) => Self::AlreadyExists,
            Ok(common::ErrorCode::Conflict) => Self::Conflict,
            Ok(common::ErrorCode::Unavailable) => Self::Unavailable,
            Ok(common::ErrorCode::Timeout) => Self::Timeout,
            Ok(common::ErrorCode::Internal | common::ErrorCode::Unspecified) | Err(_) => {
                Self::Internal
            }
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown error code name.
#[derive(Debug, thiserror::Error)]
#[error("unknown error code {0:?}")]
pub struct UnknownErrorCode(String);

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|code| code.as_str() == name)
            .ok_or_else(|| UnknownErrorCode(name.to_owned()))
    }
}

/// An error as every service reports it to its callers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ServiceError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// Safe to show: never secrets or cardholder data.
    pub message: String,
}

impl ServiceError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// `unauthenticated`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }

    /// `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// `already_exists`.
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::AlreadyExists, message)
    }

    /// `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    /// `unavailable`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// `timeout`.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Timeout, message)
    }

    /// `internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// The protobuf `mpos.common.v1.Error` for bus replies.
    pub fn to_proto(&self, correlation_id: &str) -> common::Error {
        common::Error {
            code: self.code.to_proto().into(),
            message: self.message.clone(),
            correlation_id: correlation_id.to_owned(),
        }
    }

    /// The error carried in a protobuf `mpos.common.v1.Error`.
    pub fn from_proto(error: &common::Error) -> Self {
        Self::new(ErrorCode::from_proto(error.code), error.message.clone())
    }
}

#[cfg(feature = "axum")]
mod http {
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};

    use super::ServiceError;

    impl IntoResponse for ServiceError {
        fn into_response(self) -> Response {
            let status = StatusCode::from_u16(self.code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, axum::Json(self)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_name_and_proto() {
        for code in ErrorCode::ALL {
            assert_eq!(code.as_str().parse::<ErrorCode>().ok(), Some(code));
            assert_eq!(ErrorCode::from_proto(code.to_proto().into()), code);
            let json = serde_json::to_string(&code).expect("serialize");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn http_statuses_match_the_documented_table() {
        let expected = [400, 404, 401, 403, 409, 409, 503, 504, 500];
        for (code, status) in ErrorCode::ALL.into_iter().zip(expected) {
            assert_eq!(code.http_status(), status, "{code}");
        }
    }

    #[test]
    fn unknown_proto_values_are_internal() {
        assert_eq!(ErrorCode::from_proto(0), ErrorCode::Internal);
        assert_eq!(ErrorCode::from_proto(999), ErrorCode::Internal);
        assert!("teapot".parse::<ErrorCode>().is_err());
    }

    #[test]
    fn json_body_shape() {
        let error = ServiceError::bad_request("name must not be empty");
        let json = serde_json::to_value(&error).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({"code": "bad_request", "message": "name must not be empty"})
        );
    }

    #[cfg(feature = "axum")]
    #[tokio::test]
    async fn http_response_carries_status_and_body() {
        use axum::response::IntoResponse;
        let response = ServiceError::conflict("stale version").into_response();
        assert_eq!(response.status().as_u16(), 409);
    }
}
