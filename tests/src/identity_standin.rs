//! Stand-ins for the identity providers' profile APIs on 127.0.0.1, speaking their documented
//! JSON and status codes: Clerk's Backend API `GET /v1/users/{user_id}` (Bearer secret key; 401
//! `authentication_invalid` for a bad key, 404 `resource_not_found` for an unknown user) and
//! Auth0's `GET /userinfo` (Bearer access token; 401 without one).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use serde_json::{Value, json};

/// The secret key the Clerk stand-in accepts.
pub const CLERK_TEST_SECRET_KEY: &str = "sk_test_tollgate_clerk_standin";

#[derive(Default)]
struct Shared {
    clerk_users: Mutex<HashMap<String, Value>>,
    userinfo: Mutex<HashMap<String, Value>>,
    hits: AtomicUsize,
    down: AtomicBool,
}

pub struct IdentityStandIn {
    pub base_url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for IdentityStandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn clerk_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({
            "errors": [{"message": message, "long_message": message, "code": code}],
            "clerk_trace_id": "trace_standin",
        })),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

async fn clerk_user(
    State(shared): State<Arc<Shared>>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    shared.hits.fetch_add(1, Ordering::SeqCst);
    if shared.down.load(Ordering::SeqCst) {
        return clerk_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "Service unavailable",
        );
    }
    if bearer(&headers).as_deref() != Some(CLERK_TEST_SECRET_KEY) {
        return clerk_error(
            StatusCode::UNAUTHORIZED,
            "authentication_invalid",
            "The provided Clerk Secret Key is invalid.",
        );
    }
    match shared.clerk_users.lock().expect("lock").get(&user_id) {
        Some(user) => Json(user.clone()).into_response(),
        None => clerk_error(
            StatusCode::NOT_FOUND,
            "resource_not_found",
            "Resource not found",
        ),
    }
}

/// The token's `sub`, read without verification (the stand-in's own business).
fn token_subject(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("sub")?.as_str().map(str::to_owned)
}

async fn userinfo(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    shared.hits.fetch_add(1, Ordering::SeqCst);
    if shared.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
    }
    let Some(subject) = bearer(&headers).as_deref().and_then(token_subject) else {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    };
    match shared.userinfo.lock().expect("lock").get(&subject) {
        Some(info) => Json(info.clone()).into_response(),
        None => (StatusCode::UNAUTHORIZED, "Unauthorized").into_response(),
    }
}

impl IdentityStandIn {
    pub async fn start() -> IdentityStandIn {
        let shared = Arc::new(Shared::default());
        let router = axum::Router::new()
            .route("/v1/users/{user_id}", get(clerk_user))
            .route("/userinfo", get(userinfo))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        IdentityStandIn {
            base_url,
            shared,
            server,
        }
    }

    /// A Clerk user object as `GET /v1/users/{id}` returns it (the fields Tollgate reads, and a
    /// few it does not).
    pub fn add_clerk_user(
        &self,
        id: &str,
        email: &str,
        status: &str,
        first_name: Option<&str>,
        last_name: Option<&str>,
    ) {
        let user = json!({
            "object": "user",
            "id": id,
            "username": null,
            "first_name": first_name,
            "last_name": last_name,
            "image_url": "https://img.clerk.com/x",
            "primary_email_address_id": "idn_primary",
            "email_addresses": [
                {"id": "idn_secondary", "object": "email_address",
                 "email_address": "secondary@example.com",
                 "verification": {"status": "verified", "strategy": "email_code", "attempts": 1}},
                {"id": "idn_primary", "object": "email_address", "email_address": email,
                 "verification": {"status": status, "strategy": "email_code", "attempts": 1}},
            ],
            "created_at": 1_700_000_000_000_i64,
            "updated_at": 1_700_000_000_000_i64,
        });
        self.shared
            .clerk_users
            .lock()
            .expect("lock")
            .insert(id.to_owned(), user);
    }

    /// Makes `GET /v1/users/{alias}` answer with the user object of `id` (a misbehaving or
    /// misrouted API: the object's `id` is not the one asked for).
    pub fn alias_clerk_user(&self, alias: &str, id: &str) {
        let mut users = self.shared.clerk_users.lock().expect("lock");
        let user = users.get(id).expect("known Clerk user").clone();
        users.insert(alias.to_owned(), user);
    }

    /// The `/userinfo` answer for tokens whose `sub` is `sub`.
    pub fn add_userinfo(&self, sub: &str, info: Value) {
        self.shared
            .userinfo
            .lock()
            .expect("lock")
            .insert(sub.to_owned(), info);
    }

    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }
}
