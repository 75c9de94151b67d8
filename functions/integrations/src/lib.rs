//! The integrations function: third-party credentials of the organization, encrypted at rest
//! (AES-256-GCM, organization id as associated data) and never returned.

use http::StatusCode;
use lambda_http::{Body, Response};
use serde::{Deserialize, Serialize};

use tollgate::http::{ApiError, json_response, parse_json_body};
use tollgate::pipeline::{AppState, Caller, FunctionHandlers, audit_actor, store_error, tenant_of};
use tollgate::routes::{Function, Operation, PathParams};
use tollgate::store::integrations::IntegrationRecord;
use tollgate::store::now_rfc3339;

/// The integrations function's routes and handlers.
pub static HANDLERS: FunctionHandlers = FunctionHandlers {
    function: Function::Integrations,
    handlers: &[
        (Operation::ListIntegrations, |call| {
            Box::pin(async move { list(call.state, call.caller()?).await })
        }),
        (Operation::CreateIntegration, |call| {
            Box::pin(async move { create(call.state, call.caller()?, call.body()).await })
        }),
        (Operation::DeleteIntegration, |call| {
            Box::pin(async move { delete(call.state, call.caller()?, &call.params).await })
        }),
    ],
};

/// Largest credentials object accepted, serialized.
pub const MAX_CREDENTIALS_BYTES: usize = 8 * 1024;
/// Longest integration name, in characters.
const MAX_NAME_CHARS: usize = 100;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct IntegrationView<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    name: &'a str,
    created_at: &'a str,
    key_id: &'a str,
}

impl<'a> From<&'a IntegrationRecord> for IntegrationView<'a> {
    fn from(r: &'a IntegrationRecord) -> Self {
        Self {
            id: &r.id,
            kind: &r.kind,
            name: &r.name,
            created_at: &r.created_at,
            key_id: r.key_id(),
        }
    }
}

#[derive(Debug, Serialize)]
struct ListResponse<'a> {
    integrations: Vec<IntegrationView<'a>>,
}

pub async fn list(state: &AppState, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let records = state
        .store
        .list_integrations(tenant_of(caller)?)
        .await
        .map_err(store_error)?;
    Ok(json_response(
        StatusCode::OK,
        &ListResponse {
            integrations: records.iter().map(IntegrationView::from).collect(),
        },
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateBody {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    credentials: serde_json::Map<String, serde_json::Value>,
}

pub async fn create(
    state: &AppState,
    caller: &Caller,
    body: &Body,
) -> Result<Response<Body>, ApiError> {
    let tenant = tenant_of(caller)?;
    let request: CreateBody = parse_json_body(body)?;
    let kind = request.kind.trim();
    if kind.is_empty()
        || kind.len() > 32
        || !kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(ApiError::bad_request(
            "invalid_type",
            "`type` must be 1–32 characters of a-z, 0-9, '_' or '-', e.g. \"twilio\".",
        ));
    }
    // Display text, like organization and people's names: no control character, and no format
    // or invisible character (a bidi override, a zero-width space) that changes how it shows.
    let name = tollgate::text::display_text(&request.name, MAX_NAME_CHARS).map_err(|error| {
        ApiError::bad_request(
            "invalid_name",
            match error {
                tollgate::text::TextError::HiddenCharacter => "`name` may not contain control or invisible formatting characters (such as bidi overrides or zero-width spaces); type it again as plain text.",
                _ => "`name` must have 1 to 100 characters.",
            },
        )
    })?;
    if request.credentials.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_credentials",
            "`credentials` must be a non-empty JSON object.",
        ));
    }
    let plaintext = serde_json::to_vec(&request.credentials).map_err(|_| ApiError::internal())?;
    if plaintext.len() > MAX_CREDENTIALS_BYTES {
        return Err(ApiError::bad_request(
            "invalid_credentials",
            format!("`credentials` may be at most {MAX_CREDENTIALS_BYTES} bytes."),
        ));
    }
    let secrets = state.secrets().await?;
    let ring = secrets.keyring.as_ref().ok_or_else(|| {
        ApiError::unavailable(
            "encryption_not_configured",
            "Credential encryption is not configured (ENCRYPTION_KEYS is unset).",
        )
    })?;
    let credentials = ring.encrypt(tenant.as_str(), &plaintext).map_err(|error| {
        tracing::error!(%error, "credential encryption failed");
        ApiError::internal()
    })?;
    let record = IntegrationRecord {
        id: format!("int_{}", uuid::Uuid::now_v7().simple()),
        kind: kind.to_owned(),
        name,
        created_at: now_rfc3339(),
        credentials,
    };
    state
        .store
        .put_integration(tenant, &audit_actor(caller)?, &record)
        .await
        .map_err(store_error)?;
    tracing::info!(integration_id = %record.id, kind = %record.kind, key_id = record.key_id(), "integration created");
    Ok(json_response(
        StatusCode::CREATED,
        &IntegrationView::from(&record),
    ))
}

pub async fn delete(
    state: &AppState,
    caller: &Caller,
    params: &PathParams,
) -> Result<Response<Body>, ApiError> {
    let tenant = tenant_of(caller)?;
    let id = params
        .iter()
        .find(|(n, _)| *n == "id")
        .map(|(_, v)| v.as_str())
        .ok_or_else(ApiError::internal)?;
    if !state
        .store
        .delete_integration(tenant, &audit_actor(caller)?, id)
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::not_found(
            "integration_not_found",
            "There is no such integration in your organization.",
        ));
    }
    tracing::info!(integration_id = %id, "integration deleted");
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({"id": id, "deleted": true}),
    ))
}
