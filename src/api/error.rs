//! The API's errors: `{"error": "...", "status": N}`, with the status decided in one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::mitigation::Refusal;

/// An API error: status and message.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.0,
            axum::Json(json!({"error": self.1, "status": self.0.as_u16()})),
        )
            .into_response();
        // Clients that back off (the probe) wait a second, not their own guess.
        if self.0 == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        r
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        let status = match &r {
            Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
            Refusal::Guardrail(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::NotFound(_) => StatusCode::NOT_FOUND,
            Refusal::Conflict(_) | Refusal::NotMade { .. } => StatusCode::CONFLICT,
            Refusal::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, r.to_string())
    }
}
