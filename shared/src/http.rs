//! JSON responses, the error envelope and request-body parsing.
//!
//! Every answer Tollgate gives is JSON; every failure is `{"error": "<code>", "message": "<sentence>"}`
//! so a frontend can branch on `error` and show `message` to a person.

use http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest request body any route accepts; larger bodies get 413 before parsing.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A failure that becomes an HTTP answer with the error envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong on our side; the request changed nothing. Try again.",
        )
    }

    pub fn into_response(self) -> Response<Body> {
        #[derive(Serialize)]
        struct Envelope<'a> {
            error: &'a str,
            message: &'a str,
        }
        json_response(
            self.status,
            &Envelope {
                error: self.code,
                message: &self.message,
            },
        )
    }
}

/// Serializes `value` as the JSON body of a response with `status`.
///
/// Responses carry account data, so nothing may be cached by browsers or proxies.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    let (status, body) = match serde_json::to_string(value) {
        Ok(body) => (status, body),
        Err(error) => {
            tracing::error!(%error, "response serialization failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"error":"internal_error","message":"Something went wrong on our side; the request changed nothing. Try again."}"#.to_owned(),
            )
        }
    };
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `limit` (1..=`max`, default `default`) and `cursor` query parameters of a list route.
pub fn page_params(
    request: &lambda_http::Request,
    default: i32,
    max: i32,
) -> Result<(i32, Option<String>), ApiError> {
    use lambda_http::RequestExt;
    let query = request.query_string_parameters_ref();
    let limit = match query.and_then(|q| q.first("limit")) {
        None => default,
        Some(raw) => raw
            .parse::<i32>()
            .ok()
            .filter(|l| (1..=max).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_limit",
                    format!("`limit` must be a whole number from 1 to {max}."),
                )
            })?,
    };
    let cursor = query
        .and_then(|q| q.first("cursor"))
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    Ok((limit, cursor))
}

/// The 400 for a `cursor` this API did not hand out.
pub fn invalid_cursor() -> ApiError {
    ApiError::bad_request(
        "invalid_cursor",
        "`cursor` is not one this API returned; start again without it.",
    )
}

/// The raw bytes of a request body, whatever form `lambda_http` handed it in.
pub fn body_bytes(body: &Body) -> &[u8] {
    match body {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    }
}

/// Parses a JSON request body into `T`, answering 413 / 400 with a message naming the problem.
///
/// Unknown fields are rejected (`deny_unknown_fields` on request types) so a typo such as
/// `"permision"` is reported instead of silently ignored.
pub fn parse_json_body<T: DeserializeOwned>(body: &Body) -> Result<T, ApiError> {
    let bytes = body_bytes(body);
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("The request body may be at most {MAX_BODY_BYTES} bytes."),
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "invalid_body",
            "The request needs a JSON body.",
        ));
    }
    serde_json::from_slice(bytes).map_err(|error| {
        ApiError::bad_request(
            "invalid_body",
            format!("The request body is not valid: {error}."),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[allow(dead_code)]
        name: String,
    }

    fn envelope(response: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(body_bytes(response.body())).unwrap()
    }

    #[test]
    fn error_envelope_has_code_and_message_and_no_store() {
        let response = ApiError::forbidden("forbidden", "You may not.").into_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            envelope(&response),
            serde_json::json!({"error": "forbidden", "message": "You may not."})
        );
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn body_parsing_rejects_empty_malformed_unknown_and_oversized() {
        let empty = parse_json_body::<Sample>(&Body::Empty).unwrap_err();
        assert_eq!(
            (empty.status, empty.code),
            (StatusCode::BAD_REQUEST, "invalid_body")
        );

        let malformed = parse_json_body::<Sample>(&Body::Text("{".into())).unwrap_err();
        assert_eq!(malformed.code, "invalid_body");

        let unknown = parse_json_body::<Sample>(&Body::Text(r#"{"name":"a","nmae":"b"}"#.into()))
            .unwrap_err();
        assert!(unknown.message.contains("nmae"), "{}", unknown.message);

        let huge = Body::Text(format!(r#"{{"name":"{}"}}"#, "a".repeat(MAX_BODY_BYTES)));
        let too_large = parse_json_body::<Sample>(&huge).unwrap_err();
        assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);

        assert!(parse_json_body::<Sample>(&Body::Binary(br#"{"name":"a"}"#.to_vec())).is_ok());
    }
}
