//! The HTTP side of the dev gateway: each request is converted the way `lambda_http` hands an API
//! Gateway HTTP API (payload 2.0) event to a function, then given to [`pipeline::handle`].

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request as AxumRequest, State};
use axum::response::{IntoResponse, Response as AxumResponse};
use axum::routing::get;
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
use lambda_http::request::RequestContext;
use lambda_http::{Body, RequestExt};
use tokio::net::TcpListener;
use tollgate::pipeline::{self, AppState};

/// API Gateway's own payload limit; the pipeline applies Tollgate's smaller one (413).
const GATEWAY_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

#[derive(Clone)]
struct GatewayState {
    app: Arc<AppState>,
    jwks: Option<Arc<serde_json::Value>>,
}

/// The router: every API route through the pipeline, plus the local issuer's JWKS when given.
pub fn router(app: Arc<AppState>, local_jwks: Option<serde_json::Value>) -> Router {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .fallback(dispatch)
        .with_state(GatewayState {
            app,
            jwks: local_jwks.map(Arc::new),
        })
}

/// Serves `router` on `listener` until the process is stopped.
pub async fn serve(listener: TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}

async fn jwks(State(state): State<GatewayState>) -> AxumResponse {
    match state.jwks {
        Some(jwks) => axum::Json(jwks.as_ref().clone()).into_response(),
        None => http::StatusCode::NOT_FOUND.into_response(),
    }
}

async fn dispatch(State(state): State<GatewayState>, request: AxumRequest) -> AxumResponse {
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, GATEWAY_MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return into_axum(
                tollgate::http::ApiError::new(
                    http::StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "The request body is larger than API Gateway accepts.",
                )
                .into_response(),
            );
        }
    };
    let request = to_lambda_request(parts, bytes);
    into_axum(pipeline::handle(&state.app, None, request).await)
}

/// Builds the request a function sees under Lambda: text body unless it is not UTF-8 (API Gateway
/// base64-encodes those), query parameters and an HTTP API request context with a request id.
pub fn to_lambda_request(parts: http::request::Parts, bytes: Bytes) -> lambda_http::Request {
    let body = if bytes.is_empty() {
        Body::Empty
    } else {
        match String::from_utf8(bytes.to_vec()) {
            Ok(text) => Body::Text(text),
            Err(error) => Body::Binary(error.into_bytes()),
        }
    };
    let query: std::collections::HashMap<String, Vec<String>> = parts
        .uri
        .query()
        .map(|q| {
            let mut map: std::collections::HashMap<String, Vec<String>> = Default::default();
            for pair in q.split('&').filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                map.entry(key.to_owned())
                    .or_default()
                    .push(value.to_owned());
            }
            map
        })
        .unwrap_or_default();
    let mut context = ApiGatewayV2httpRequestContext::default();
    context.request_id = Some(uuid::Uuid::new_v4().to_string());
    context.stage = Some("$default".to_owned());
    lambda_http::Request::from_parts(parts, body)
        .with_query_string_parameters(query)
        .with_request_context(RequestContext::ApiGatewayV2(context))
}

fn into_axum(response: lambda_http::Response<Body>) -> AxumResponse {
    let (parts, body) = response.into_parts();
    let bytes = match body {
        Body::Empty => Vec::new(),
        Body::Text(text) => text.into_bytes(),
        Body::Binary(bytes) => bytes,
        _ => Vec::new(),
    };
    AxumResponse::from_parts(parts, axum::body::Body::from(bytes))
}
