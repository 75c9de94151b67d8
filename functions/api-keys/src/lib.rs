//! The api-keys function: an organization's API keys (`GET/POST /api/api-keys`,
//! `DELETE /api/api-keys/{id}`), managed by its OWNERs and ADMINs (`apikeys:manage`; never by
//! a key). A key is answered once, when it is created; only its HMAC is stored
//! (`tollgate::auth::api_key`, `tollgate::store::api_keys`).

use http::StatusCode;
use lambda_http::{Body, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use tollgate::auth::api_key;
use tollgate::http::{ApiError, json_response, parse_json_body};
use tollgate::pipeline::{
    AppState, Caller, FunctionHandlers, api_keys_not_configured, audit_actor, entitlement_of,
    organization_of, path_id, plan_required, store_error, tenant_of,
};
use tollgate::pricing::{Feature, plan_has_feature};
use tollgate::rbac::{self, Role};
use tollgate::routes::{Function, Operation, PathParams};
use tollgate::store::api_keys::{ApiKeyLookup, ApiKeyRecord};
use tollgate::store::now_rfc3339;

/// The api-keys function's routes and handlers.
pub static HANDLERS: FunctionHandlers = FunctionHandlers {
    function: Function::ApiKeys,
    handlers: &[
        (Operation::ListApiKeys, |call| {
            Box::pin(async move { list(call.state, call.caller()?).await })
        }),
        (Operation::CreateApiKey, |call| {
            Box::pin(async move { create(call.state, call.caller()?, call.body()).await })
        }),
        (Operation::RevokeApiKey, |call| {
            Box::pin(async move { revoke(call.state, call.caller()?, &call.params).await })
        }),
    ],
};

/// Longest key name, in characters.
const MAX_NAME_CHARS: usize = 100;
/// Latest expiry accepted: ten years ahead.
const MAX_LIFETIME_SECONDS: i64 = 10 * 365 * 86_400;

/// A key as listed: never the key or its digest.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiKeyView<'a> {
    id: &'a str,
    name: &'a str,
    role: Role,
    prefix: &'a str,
    created_at: &'a str,
    created_by: &'a str,
    expires_at: Option<&'a str>,
    last_used_at: Option<&'a str>,
}

impl<'a> From<&'a ApiKeyRecord> for ApiKeyView<'a> {
    fn from(r: &'a ApiKeyRecord) -> Self {
        Self {
            id: &r.id,
            name: &r.name,
            role: r.role,
            prefix: &r.prefix,
            created_at: &r.created_at,
            created_by: &r.created_by,
            expires_at: r.expires_at.as_deref(),
            last_used_at: r.last_used_at.as_deref(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ListResponse<'a> {
    api_keys: Vec<ApiKeyView<'a>>,
}

pub async fn list(state: &AppState, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let records = state
        .store
        .list_api_keys(tenant_of(caller)?)
        .await
        .map_err(store_error)?;
    Ok(json_response(
        StatusCode::OK,
        &ListResponse {
            api_keys: records.iter().map(ApiKeyView::from).collect(),
        },
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateBody {
    name: String,
    role: String,
    #[serde(default)]
    expires_at: Option<String>,
}

/// The key just made, answered once: the listing's fields and `key`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreatedView<'a> {
    #[serde(flatten)]
    view: ApiKeyView<'a>,
    key: &'a str,
}

/// `expiresAt`: an RFC 3339 time in the future, at most ten years ahead; as Unix seconds and
/// normalized to UTC RFC 3339.
fn parse_expiry(raw: &str, now: i64) -> Result<(i64, String), ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_expires_at",
            "`expiresAt` must be an RFC 3339 time in the future and at most ten years ahead, e.g. \"2027-01-31T00:00:00Z\".",
        )
    };
    let at = OffsetDateTime::parse(raw.trim(), &Rfc3339).map_err(|_| invalid())?;
    let unix = at.unix_timestamp();
    if unix <= now || unix - now > MAX_LIFETIME_SECONDS {
        return Err(invalid());
    }
    let normalized = at
        .to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|_| invalid())?;
    Ok((unix, normalized))
}

pub async fn create(
    state: &AppState,
    caller: &Caller,
    body: &Body,
) -> Result<Response<Body>, ApiError> {
    let tenant = tenant_of(caller)?;
    // Only people manage keys: the pipeline refuses `apikeys:manage` to keys, so a creator is a
    // stored member.
    let creator = caller.user.as_ref().ok_or_else(ApiError::internal)?;
    let creator_role = creator.role.ok_or_else(ApiError::internal)?;
    let request: CreateBody = parse_json_body(body)?;
    let name = tollgate::text::display_text(&request.name, MAX_NAME_CHARS).map_err(|error| {
        ApiError::bad_request(
            "invalid_name",
            match error {
                tollgate::text::TextError::HiddenCharacter => "`name` may not contain control or invisible formatting characters (such as bidi overrides or zero-width spaces); type it again as plain text.",
                _ => "`name` must have 1 to 100 characters.",
            },
        )
    })?;
    let role: Role = request.role.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_role",
            format!(
                "Unknown role \"{}\"; use one of OWNER, ADMIN, MANAGER, OPERATOR, VIEWER.",
                request.role
            ),
        )
    })?;
    if !rbac::role_within(creator_role, role) {
        return Err(if role == Role::Owner {
            ApiError::forbidden(
                "owner_required",
                "Only an OWNER can create an API key with the role OWNER.",
            )
        } else {
            ApiError::forbidden(
                "role_not_allowed",
                format!("Your role {creator_role} cannot create an API key with the role {role}."),
            )
        });
    }
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let expires = request
        .expires_at
        .as_deref()
        .map(|raw| parse_expiry(raw, now))
        .transpose()?;

    let organization = organization_of(state, caller).await?;
    let entitlement = entitlement_of(state, &organization);
    if !entitlement
        .plan_granted
        .is_some_and(|plan| plan_has_feature(plan, Feature::ApiAccess))
    {
        return Err(plan_required(&entitlement));
    }
    let secrets = state.secrets().await?;
    let pepper = secrets
        .api_key_pepper
        .as_ref()
        .ok_or_else(api_keys_not_configured)?;

    let made = api_key::generate().map_err(|error| {
        tracing::error!(%error, "no API key could be made");
        ApiError::internal()
    })?;
    let record = ApiKeyRecord {
        id: made.id.clone(),
        name,
        role,
        prefix: api_key::display_prefix(&made.id),
        created_at: now_rfc3339(),
        created_by: creator.id.clone(),
        expires_at: expires.as_ref().map(|(_, text)| text.clone()),
        last_used_at: None,
    };
    let lookup = ApiKeyLookup {
        id: made.id.clone(),
        organization_id: tenant.as_str().to_owned(),
        role,
        key_hash: pepper.digest_hex(&made.key),
        expires_at: expires.as_ref().map(|(unix, _)| *unix),
        last_used_at: None,
    };
    state
        .store
        .create_api_key(tenant, &audit_actor(caller)?, &record, &lookup)
        .await
        .map_err(store_error)?;
    tracing::info!(api_key_id = %record.id, role = %role, "API key created");
    Ok(json_response(
        StatusCode::CREATED,
        &CreatedView {
            view: ApiKeyView::from(&record),
            key: &made.key,
        },
    ))
}

pub async fn revoke(
    state: &AppState,
    caller: &Caller,
    params: &PathParams,
) -> Result<Response<Body>, ApiError> {
    let tenant = tenant_of(caller)?;
    let id = path_id(params)?;
    let not_found = || {
        ApiError::not_found(
            "api_key_not_found",
            "There is no such API key in your organization.",
        )
    };
    if !api_key::is_key_id(id) {
        return Err(not_found());
    }
    if !state
        .store
        .revoke_api_key(tenant, &audit_actor(caller)?, id)
        .await
        .map_err(store_error)?
    {
        return Err(not_found());
    }
    tracing::info!(api_key_id = %id, "API key revoked");
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({"id": id, "revoked": true}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_must_be_future_rfc3339_within_ten_years() {
        let now = 1_764_531_234; // 2025-11-30T19:33:54Z
        assert_eq!(
            parse_expiry("2026-01-01T00:00:00+02:00", now).unwrap(),
            (1_767_218_400, "2025-12-31T22:00:00Z".to_owned())
        );
        for bad in [
            "2025-11-30T19:33:54Z",
            "2020-01-01T00:00:00Z",
            "2045-01-01T00:00:00Z",
            "tomorrow",
            "2026-01-01",
            "",
        ] {
            let error = parse_expiry(bad, now).unwrap_err();
            assert_eq!(error.code, "invalid_expires_at", "{bad}");
        }
    }
}
