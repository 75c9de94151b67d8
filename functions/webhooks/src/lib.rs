//! The webhooks function: an organization's outbound webhook endpoints
//! (`GET/POST /api/webhooks/endpoints`, `DELETE /api/webhooks/endpoints/{id}`), managed by its
//! OWNERs and ADMINs (`webhooks:manage`; never by an API key). An endpoint receives the
//! organization's audit events of the types it names, signed as Standard Webhooks with its own
//! secret (`whsec_`), which is answered once, when the endpoint is created, and stored only
//! encrypted under the key ring. The `notifier` delivers them
//! (`tollgate::store::webhook_endpoints`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};
use serde::{Deserialize, Serialize};

use tollgate::http::{ApiError, json_response, parse_json_body};
use tollgate::pipeline::{
    AppState, Caller, FunctionHandlers, audit_actor, organization_required, path_id, store_error,
    tenant_of,
};
use tollgate::routes::{Function, Operation, PathParams};
use tollgate::store::audit::EventType;
use tollgate::store::webhook_endpoints::{
    MAX_WEBHOOK_ENDPOINTS, WebhookEndpointRecord, is_webhook_endpoint_id, new_webhook_endpoint_id,
};
use tollgate::store::{StoreError, now_rfc3339};
use tollgate::webhook_url::validate_endpoint_url;

/// The webhooks function's routes and handlers.
pub static HANDLERS: FunctionHandlers = FunctionHandlers {
    function: Function::Webhooks,
    handlers: &[
        (Operation::ListWebhookEndpoints, |call| {
            Box::pin(async move { list(call.state, call.caller()?).await })
        }),
        (Operation::CreateWebhookEndpoint, |call| {
            Box::pin(async move { create(call.state, call.caller()?, call.body()).await })
        }),
        (Operation::DeleteWebhookEndpoint, |call| {
            Box::pin(async move { delete(call.state, call.caller()?, &call.params).await })
        }),
    ],
};

/// Prefix of a signing secret (Standard Webhooks); standard base64 of [`SECRET_BYTES`] follows.
pub use tollgate::store::webhook_endpoints::SIGNING_SECRET_PREFIX as SECRET_PREFIX;
/// Random bytes of a signing secret.
pub const SECRET_BYTES: usize = 32;

/// An endpoint as listed: never its secret, plain or encrypted.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EndpointView<'a> {
    id: &'a str,
    url: &'a str,
    event_types: &'a [String],
    created_at: &'a str,
    created_by: &'a str,
}

impl<'a> From<&'a WebhookEndpointRecord> for EndpointView<'a> {
    fn from(r: &'a WebhookEndpointRecord) -> Self {
        Self {
            id: &r.id,
            url: &r.url,
            event_types: &r.event_types,
            created_at: &r.created_at,
            created_by: &r.created_by,
        }
    }
}

#[derive(Serialize)]
struct ListResponse<'a> {
    endpoints: Vec<EndpointView<'a>>,
}

/// The endpoint just made, answered once: the listing's fields and `secret`.
#[derive(Serialize)]
struct CreatedView<'a> {
    #[serde(flatten)]
    view: EndpointView<'a>,
    secret: &'a str,
}

pub async fn list(state: &AppState, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let records = state
        .store
        .list_webhook_endpoints(tenant_of(caller)?)
        .await
        .map_err(store_error)?;
    Ok(json_response(
        StatusCode::OK,
        &ListResponse {
            endpoints: records.iter().map(EndpointView::from).collect(),
        },
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateBody {
    url: String,
    event_types: serde_json::Value,
}

/// `eventTypes`: a non-empty array of audit event type names, each known; deduplicated in the
/// order given. An unknown name is named in the answer.
pub fn parse_event_types(value: &serde_json::Value) -> Result<Vec<String>, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_event_types",
            format!(
                "`eventTypes` must be a non-empty array of at most {} audit event types, e.g. [\"member.invited\", \"api_key.created\"].",
                EventType::ALL.len()
            ),
        )
    };
    let names = value.as_array().ok_or_else(invalid)?;
    if names.is_empty() || names.len() > EventType::ALL.len() {
        return Err(invalid());
    }
    let mut types: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let name = name.as_str().ok_or_else(invalid)?;
        let Some(kind) = EventType::parse(name) else {
            let shown: String = name.chars().take(64).collect();
            return Err(ApiError::bad_request(
                "unknown_event_type",
                format!(
                    "Unknown event type {shown:?} in `eventTypes`; the types are: {}.",
                    EventType::ALL.map(EventType::as_str).join(", ")
                ),
            ));
        };
        if !types.iter().any(|t| t == kind.as_str()) {
            types.push(kind.as_str().to_owned());
        }
    }
    Ok(types)
}

/// A new signing secret: `whsec_` and the standard base64 of 32 bytes from the system's CSPRNG.
pub fn new_signing_secret() -> Result<String, ApiError> {
    let mut bytes = [0u8; SECRET_BYTES];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).map_err(|_| {
        tracing::error!("no random bytes for a webhook signing secret");
        ApiError::internal()
    })?;
    Ok(format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes)))
}

pub async fn create(
    state: &AppState,
    caller: &Caller,
    body: &Body,
) -> Result<Response<Body>, ApiError> {
    let tenant = tenant_of(caller)?;
    // Only people manage endpoints: the pipeline refuses `webhooks:manage` to keys, so a creator
    // is a stored member.
    let creator = caller.user.as_ref().ok_or_else(ApiError::internal)?;
    let request: CreateBody = parse_json_body(body)?;
    let url = validate_endpoint_url(&request.url, state.config.webhook_allow_loopback)
        .map_err(|error| ApiError::bad_request(error.code(), error.to_string()))?;
    let event_types = parse_event_types(&request.event_types)?;

    let secrets = state.secrets().await?;
    let ring = secrets.keyring.as_ref().ok_or_else(|| {
        ApiError::unavailable(
            "encryption_not_configured",
            "Webhook signing secrets cannot be stored: encryption is not configured (ENCRYPTION_KEYS is unset).",
        )
    })?;
    let secret = new_signing_secret()?;
    let signing_secret = ring
        .encrypt(tenant.as_str(), secret.as_bytes())
        .map_err(|error| {
            tracing::error!(%error, "signing secret encryption failed");
            ApiError::internal()
        })?;
    let record = WebhookEndpointRecord {
        id: new_webhook_endpoint_id(),
        url: url.to_string(),
        event_types,
        created_at: now_rfc3339(),
        created_by: creator.id.clone(),
        signing_secret,
    };
    match state
        .store
        .create_webhook_endpoint(tenant, &audit_actor(caller)?, &record)
        .await
    {
        Ok(()) => {}
        Err(StoreError::WebhookEndpointLimitReached) => {
            return Err(ApiError::conflict(
                "webhook_endpoint_limit_reached",
                format!(
                    "An organization may have at most {MAX_WEBHOOK_ENDPOINTS} webhook endpoints; delete one first."
                ),
            ));
        }
        Err(StoreError::NotFound) => return Err(organization_required()),
        Err(error) => return Err(store_error(error)),
    }
    tracing::info!(
        webhook_endpoint_id = %record.id,
        event_types = record.event_types.len(),
        "webhook endpoint created"
    );
    Ok(json_response(
        StatusCode::CREATED,
        &CreatedView {
            view: EndpointView::from(&record),
            secret: &secret,
        },
    ))
}

pub async fn delete(
    state: &AppState,
    caller: &Caller,
    params: &PathParams,
) -> Result<Response<Body>, ApiError> {
    let tenant = tenant_of(caller)?;
    let id = path_id(params)?;
    let not_found = || {
        ApiError::not_found(
            "not_found",
            "There is no such webhook endpoint in your organization.",
        )
    };
    if !is_webhook_endpoint_id(id) {
        return Err(not_found());
    }
    match state
        .store
        .delete_webhook_endpoint(tenant, &audit_actor(caller)?, id)
        .await
    {
        Ok(true) => {}
        Ok(false) => return Err(not_found()),
        Err(error) => return Err(store_error(error)),
    }
    tracing::info!(webhook_endpoint_id = %id, "webhook endpoint deleted");
    Ok(no_content())
}

/// 204 with no body (and, like every answer, not cacheable).
fn no_content() -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_types_are_known_non_empty_and_deduplicated() {
        assert_eq!(
            parse_event_types(&json!([
                "member.invited",
                "api_key.created",
                "member.invited"
            ]))
            .unwrap(),
            ["member.invited", "api_key.created"]
        );
        let all: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(parse_event_types(&json!(all)).unwrap(), all);
        for bad in [
            json!([]),
            json!("member.invited"),
            json!(null),
            json!([1]),
            json!([["member.invited"]]),
            json!(vec!["member.invited"; EventType::ALL.len() + 1]),
        ] {
            assert_eq!(
                parse_event_types(&bad).unwrap_err().code,
                "invalid_event_types",
                "{bad}"
            );
        }
        let unknown =
            parse_event_types(&json!(["member.invited", "member.teleported"])).unwrap_err();
        assert_eq!(unknown.code, "unknown_event_type");
        assert!(
            unknown.message.contains("\"member.teleported\""),
            "{}",
            unknown.message
        );
        // Names are exact.
        for near in ["Member.Invited", " member.invited", "member.*", "*"] {
            assert_eq!(
                parse_event_types(&json!([near])).unwrap_err().code,
                "unknown_event_type"
            );
        }
    }

    #[test]
    fn signing_secrets_are_whsec_and_32_random_bytes() {
        let first = new_signing_secret().unwrap();
        let second = new_signing_secret().unwrap();
        assert_ne!(first, second);
        let encoded = first.strip_prefix(SECRET_PREFIX).expect("whsec_ prefix");
        assert_eq!(STANDARD.decode(encoded).unwrap().len(), SECRET_BYTES);
    }
}
