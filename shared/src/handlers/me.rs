//! `GET /api/me`: the signed-in user, created on first sign-in, with their organization, expanded
//! permissions and plan entitlements.

use http::StatusCode;
use lambda_http::{Body, Response};
use serde::Serialize;

use crate::http::{ApiError, json_response};
use crate::pipeline::{AppState, Caller, store_error};
use crate::pricing::{self, Plan, PlanFeatures, PlanLimits};
use crate::rbac::{self, Role};
use crate::store::{NewUser, OrganizationRecord, PlanStatus, UserRecord};
use crate::team::normalize_email;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MeResponse {
    user: UserView,
    organization: Option<OrganizationView>,
    permissions: Vec<String>,
    features: Option<&'static PlanFeatures>,
    limits: Option<&'static PlanLimits>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct UserView {
    id: String,
    email: Option<String>,
    name: Option<String>,
    role: Option<Role>,
    organization_id: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct OrganizationView {
    id: String,
    name: String,
    plan: Option<Plan>,
    plan_status: PlanStatus,
}

pub async fn get_me(state: &AppState, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let claims = &caller.claims;
    let new_user = NewUser {
        subject: claims.sub.clone(),
        email: claims.email.clone().filter(|e| !e.trim().is_empty()),
        name: claims.display_name(),
    };
    let (user, created) = state
        .store
        .get_or_create_user(new_user)
        .await
        .map_err(store_error)?;
    if created {
        tracing::info!(user_id = %user.id, "user created on first sign-in");
    }
    let user = join_pending_invitation(state, caller, user).await?;
    let organization = match user.tenant() {
        Some(tenant) => {
            tracing::Span::current().record("organization_id", tenant.as_str());
            state
                .store
                .get_organization(&tenant)
                .await
                .map_err(store_error)?
        }
        None => None,
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(status, &me_response(user, organization)))
}

/// A user outside any organization whose token carries a verified email joins the oldest
/// organization that invited that address, with the invited role.
async fn join_pending_invitation(
    state: &AppState,
    caller: &Caller,
    user: UserRecord,
) -> Result<UserRecord, ApiError> {
    if user.organization_id.is_some() || caller.claims.email_verified == Some(false) {
        return Ok(user);
    }
    let Some(email) = caller
        .claims
        .email
        .as_deref()
        .and_then(|e| normalize_email(e).ok())
    else {
        return Ok(user);
    };
    let joined = state
        .store
        .accept_invitation(&user, &email)
        .await
        .map_err(store_error)?;
    Ok(joined.unwrap_or(user))
}

fn me_response(user: UserRecord, organization: Option<OrganizationRecord>) -> MeResponse {
    // A role only means something inside an organization.
    let role = organization.as_ref().and(user.role);
    let plan = organization
        .as_ref()
        .and_then(|o| o.plan)
        .map(pricing::definition);
    MeResponse {
        permissions: role.map(rbac::expanded_permissions).unwrap_or_default(),
        features: plan.map(|p| &p.features),
        limits: plan.map(|p| &p.limits),
        organization: organization.map(|o| OrganizationView {
            id: o.id,
            name: o.name,
            plan: o.plan,
            plan_status: o.plan_status,
        }),
        user: UserView {
            id: user.id,
            email: user.email,
            name: user.name,
            role,
            // A deleted organization is gone for its former members too.
            organization_id: role.and(user.organization_id),
        },
    }
}
