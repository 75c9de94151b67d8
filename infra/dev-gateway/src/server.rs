//! The HTTP side of the dev gateway: each request is converted the way `lambda_http` hands an API
//! Gateway HTTP API (payload 2.0) event to a function, then given to [`pipeline::handle`].

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request as AxumRequest, State};
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
    /// The frontend origin CORS allows (`FRONTEND_ORIGIN`), as the HttpApi's CorsConfiguration.
    cors_origin: Arc<str>,
}

/// The template's default `FrontendOrigin`.
pub const DEFAULT_FRONTEND_ORIGIN: &str = "http://localhost:5173";

/// The router: every API route through the pipeline, plus the local issuer's JWKS when given.
pub fn router(app: Arc<AppState>, local_jwks: Option<serde_json::Value>) -> Router {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/api/openapi.yaml", get(openapi))
        .fallback(dispatch)
        .with_state(GatewayState {
            app,
            jwks: local_jwks.map(Arc::new),
            cors_origin: std::env::var("FRONTEND_ORIGIN")
                .unwrap_or_else(|_| DEFAULT_FRONTEND_ORIGIN.to_owned())
                .into(),
        })
}

/// Serves `router` on `listener` until the process is stopped.
pub async fn serve(listener: TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await
}

/// The API description (`docs/openapi.yaml`), as built into this binary.
async fn openapi() -> AxumResponse {
    (
        [(http::header::CONTENT_TYPE, "application/yaml")],
        include_str!("../../../docs/openapi.yaml"),
    )
        .into_response()
}

async fn jwks(State(state): State<GatewayState>) -> AxumResponse {
    match state.jwks {
        Some(jwks) => axum::Json(jwks.as_ref().clone()).into_response(),
        None => http::StatusCode::NOT_FOUND.into_response(),
    }
}

async fn dispatch(
    State(state): State<GatewayState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    request: AxumRequest,
) -> AxumResponse {
    let (parts, body) = request.into_parts();
    let origin_allowed = parts
        .headers
        .get(http::header::ORIGIN)
        .is_some_and(|o| o.as_bytes() == state.cors_origin.as_bytes());
    // CORS preflight, answered by API Gateway itself in AWS.
    if parts.method == http::Method::OPTIONS
        && parts.headers.contains_key("access-control-request-method")
    {
        let mut response = http::StatusCode::NO_CONTENT.into_response();
        if origin_allowed {
            cors_headers(response.headers_mut(), &state.cors_origin);
            let headers = response.headers_mut();
            headers.insert(
                "access-control-allow-methods",
                http::HeaderValue::from_static("GET, POST, PATCH, DELETE, OPTIONS"),
            );
            headers.insert(
                "access-control-allow-headers",
                http::HeaderValue::from_static("authorization, content-type"),
            );
            headers.insert(
                "access-control-max-age",
                http::HeaderValue::from_static("600"),
            );
        }
        return response;
    }
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
    let request = to_lambda_request(parts, bytes, peer.ip());
    let mut response =
        into_axum(pipeline::handle(&state.app, &crate::ALL_FUNCTIONS, request).await);
    if origin_allowed {
        cors_headers(response.headers_mut(), &state.cors_origin);
    }
    response
}

fn cors_headers(headers: &mut http::HeaderMap, origin: &str) {
    if let Ok(value) = http::HeaderValue::from_str(origin) {
        headers.insert("access-control-allow-origin", value);
        headers.insert(http::header::VARY, http::HeaderValue::from_static("origin"));
    }
}

/// Builds the request a function sees under Lambda: text body unless it is not UTF-8 (API Gateway
/// base64-encodes those), query parameters and an HTTP API request context with a request id.
pub fn to_lambda_request(
    parts: http::request::Parts,
    bytes: Bytes,
    source_ip: std::net::IpAddr,
) -> lambda_http::Request {
    let body = if bytes.is_empty() {
        Body::Empty
    } else {
        match String::from_utf8(bytes.to_vec()) {
            Ok(text) => Body::Text(text),
            Err(error) => Body::Binary(error.into_bytes()),
        }
    };
    // API Gateway hands functions percent-decoded query parameters.
    let mut query: std::collections::HashMap<String, Vec<String>> = Default::default();
    for (key, value) in form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()) {
        query
            .entry(key.into_owned())
            .or_default()
            .push(value.into_owned());
    }
    let mut context = ApiGatewayV2httpRequestContext::default();
    context.request_id = Some(uuid::Uuid::new_v4().to_string());
    context.stage = Some("$default".to_owned());
    context.http.source_ip = Some(source_ip.to_string());
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
