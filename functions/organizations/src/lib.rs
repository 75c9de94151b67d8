//! The organizations function: onboarding (`POST /api/organizations`) and the caller's
//! organization (`GET/PATCH/DELETE /api/organization`).

use http::StatusCode;
use lambda_http::{Body, Response};
use serde::{Deserialize, Serialize};

use tollgate::http::{ApiError, json_response, parse_json_body};
use tollgate::pipeline::{
    AppState, Caller, FunctionHandlers, organization_required, store_error, tenant_of,
};
use tollgate::pipeline::{audit_actor, entitlement_of, gone_tenant, organization_of};
use tollgate::pricing::{self, Plan, PlanFeatures, PlanLimits};
use tollgate::routes::{Function, Operation};
use tollgate::store::deletion::{DeletionJob, DeletionPhase};
use tollgate::store::{OrganizationRecord, PlanStatus, StoreError};
use tollgate::team::{normalize_email, normalize_organization_name, seat_limit};

/// The organizations function's routes and handlers.
pub static HANDLERS: FunctionHandlers = FunctionHandlers {
    function: Function::Organizations,
    handlers: &[
        (Operation::CreateOrganization, |call| {
            Box::pin(async move { create(call.state, call.caller()?, call.body()).await })
        }),
        (Operation::GetOrganization, |call| {
            Box::pin(async move { get(call.state, call.caller()?).await })
        }),
        (Operation::UpdateOrganization, |call| {
            Box::pin(async move { update(call.state, call.caller()?, call.body()).await })
        }),
        (Operation::DeleteOrganization, |call| {
            Box::pin(async move { delete(call.state, call.caller()?).await })
        }),
    ],
};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationView {
    id: String,
    name: String,
    billing_email: Option<String>,
    plan: Option<Plan>,
    plan_status: PlanStatus,
    limits: Option<&'static PlanLimits>,
    features: Option<&'static PlanFeatures>,
    member_count: u64,
    pending_invitations: u64,
    seat_limit: u64,
    created_at: String,
}

impl OrganizationView {
    /// The organization with the limits and features of its entitlement (status and grace
    /// considered), not of its stored plan alone.
    fn new(state: &AppState, o: OrganizationRecord) -> Self {
        let granted = entitlement_of(state, &o).plan_granted;
        let plan = granted.map(pricing::definition);
        Self {
            seat_limit: seat_limit(granted),
            id: o.id,
            name: o.name,
            billing_email: o.billing_email,
            plan: o.plan,
            plan_status: o.plan_status,
            limits: plan.map(|p| &p.limits),
            features: plan.map(|p| &p.features),
            member_count: o.member_count,
            pending_invitations: o.invitation_count,
            created_at: o.created_at,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateRequest {
    name: String,
    billing_email: Option<String>,
}

/// `billingEmail: null` clears it; leaving it out keeps it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateRequest {
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    billing_email: Option<serde_json::Value>,
}

/// Keeps an explicit `null` as `Some(Value::Null)`; only an absent field is `None`.
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

fn valid_name(raw: &str) -> Result<String, ApiError> {
    let name = normalize_organization_name(raw)
        .map_err(|message| ApiError::bad_request("invalid_name", message))?;
    if name.chars().any(tollgate::text::is_hidden_character) {
        return Err(ApiError::bad_request(
            "invalid_name",
            "The organization name may not contain invisible formatting characters (such as bidi overrides or zero-width spaces); type it again as plain text.",
        ));
    }
    Ok(name)
}

fn valid_billing_email(raw: &str) -> Result<String, ApiError> {
    normalize_email(raw).map_err(|_| {
        ApiError::bad_request(
            "invalid_billing_email",
            "`billingEmail` must be an email address such as billing@example.com.",
        )
    })
}

pub async fn create(
    state: &AppState,
    caller: &Caller,
    body: &Body,
) -> Result<Response<Body>, ApiError> {
    let request: CreateRequest = parse_json_body(body)?;
    let name = valid_name(&request.name)?;
    let billing_email = request
        .billing_email
        .as_deref()
        .map(valid_billing_email)
        .transpose()?;
    let user = caller.user.as_ref().ok_or_else(ApiError::internal)?;
    // A user still naming a deleted organization is free to found another at once.
    let gone = gone_tenant(state, caller, already_member).await?;
    match state
        .store
        .create_organization(user, &name, billing_email, gone)
        .await
    {
        Ok((tenant, organization)) => {
            tracing::Span::current().record("organization_id", tenant.as_str());
            tracing::info!(user_id = %user.id, "organization created");
            Ok(json_response(
                StatusCode::CREATED,
                &OrganizationView::new(state, organization),
            ))
        }
        Err(StoreError::AlreadyInOrganization) => Err(already_member()),
        Err(error) => Err(store_error(error)),
    }
}

fn already_member() -> ApiError {
    ApiError::conflict(
        "already_in_organization",
        "You already belong to an organization; leave it before creating another.",
    )
}

pub async fn get(state: &AppState, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let organization = organization_of(state, caller).await?;
    Ok(json_response(
        StatusCode::OK,
        &OrganizationView::new(state, organization),
    ))
}

pub async fn update(
    state: &AppState,
    caller: &Caller,
    body: &Body,
) -> Result<Response<Body>, ApiError> {
    let tenant = tenant_of(caller)?;
    let request: UpdateRequest = parse_json_body(body)?;
    let name = request.name.as_deref().map(valid_name).transpose()?;
    let billing_email = match &request.billing_email {
        None => None,
        Some(serde_json::Value::Null) => Some(None),
        Some(serde_json::Value::String(email)) => Some(Some(valid_billing_email(email)?)),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_billing_email",
                "`billingEmail` must be a string or null.",
            ));
        }
    };
    if name.is_none() && billing_email.is_none() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "Send `name` and/or `billingEmail` to change.",
        ));
    }
    let billing_email = billing_email.as_ref().map(|e| e.as_deref());
    match state
        .store
        .update_organization(
            tenant,
            &audit_actor(caller)?,
            name.as_deref(),
            billing_email,
        )
        .await
    {
        Ok(organization) => Ok(json_response(
            StatusCode::OK,
            &OrganizationView::new(state, organization),
        )),
        Err(StoreError::NotFound) => Err(organization_required()),
        Err(error) => Err(store_error(error)),
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Deleted<'a> {
    id: &'a str,
    deleted: bool,
    retained_until: Option<String>,
    deletion: DeletionView,
}

/// How far the deletion job got.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DeletionView {
    /// `running` or `finished`.
    status: &'static str,
    /// `members`, `invitations` or `items`: what the job is doing or did last.
    phase: &'static str,
    members_detached: u64,
    items_expired: u64,
    started_at: Option<String>,
    finished_at: Option<String>,
}

impl DeletionView {
    fn new(job: &DeletionJob) -> Self {
        DeletionView {
            status: if job.is_finished() {
                "finished"
            } else {
                "running"
            },
            phase: job
                .deletion_phase
                .unwrap_or(DeletionPhase::Members)
                .as_str(),
            members_detached: job.deletion_members_detached,
            items_expired: job.deletion_items_expired,
            started_at: job.deleted_at.clone(),
            finished_at: job.deletion_finished_at.clone(),
        }
    }
}

/// `DELETE /api/organization`: marks the organization deleted (gone to every caller at once) and
/// starts the job that detaches its members and expires its items; 202 with the job's state.
/// Sent again by a member the job has not detached yet, it answers the job's state and nudges it
/// on, so a stalled job resumes.
pub async fn delete(state: &AppState, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let tenant = tenant_of(caller)?;
    match state
        .store
        .start_deletion(tenant, &audit_actor(caller)?)
        .await
    {
        Ok(start) => {
            let status = if start.job.is_finished() {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            Ok(json_response(
                status,
                &Deleted {
                    id: tenant.as_str(),
                    deleted: true,
                    retained_until: start.job.retained_until(),
                    deletion: DeletionView::new(&start.job),
                },
            ))
        }
        Err(StoreError::SubscriptionActive) => Err(ApiError::conflict(
            "subscription_active",
            "The organization has a live subscription; cancel it in the billing portal before deleting the organization.",
        )),
        Err(StoreError::NotFound) => Err(organization_required()),
        Err(StoreError::ConcurrentUpdate) => Err(ApiError::conflict(
            "concurrent_update",
            "The organization's subscription changed while it was being deleted; nothing was deleted. Reload and try again.",
        )),
        Err(StoreError::Unavailable { operation, detail }) => {
            tracing::error!(operation, %detail, "DynamoDB request failed");
            Err(ApiError::unavailable(
                "store_unavailable",
                "Storage did not answer, so the organization may or may not be marked deleted. Send the DELETE again: it starts the deletion, or continues the one that started.",
            ))
        }
        Err(error) => Err(store_error(error)),
    }
}
