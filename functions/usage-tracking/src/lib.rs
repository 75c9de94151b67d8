//! The usage-tracking function: `POST /api/usage/calls` (service key) records call minutes,
//! idempotently per `(organizationId, callId)`; `GET /api/billing/usage` reads the open period's
//! counter — one item, whatever the number of calls.

use http::StatusCode;
use lambda_http::{Body, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use tollgate::http::{ApiError, json_response, parse_json_body};
use tollgate::pipeline::{
    AppState, Caller, FunctionHandlers, entitlement_of, organization_of, store_error, tenant_of,
};
use tollgate::pricing::Plan;
use tollgate::routes::{Function, Operation};
use tollgate::store::usage::{CallRecord, RecordOutcome, UsageCounter};
use tollgate::store::{OrganizationRecord, TenantId, conflict_backoff};
use tollgate::usage::{self, Period, Threshold};

/// The usage-tracking function's routes and handlers.
pub static HANDLERS: FunctionHandlers = FunctionHandlers {
    function: Function::UsageTracking,
    handlers: &[
        (Operation::RecordCall, |call| {
            Box::pin(async move { record_call(call.state, call.body()).await })
        }),
        (Operation::GetUsage, |call| {
            Box::pin(async move { get_usage(call.state, call.caller()?).await })
        }),
    ],
};

/// Transaction conflicts on a hot counter are retried this often before answering 503.
const RECORD_ATTEMPTS: u32 = 10;

/// `t` as RFC 3339; `None` outside what RFC 3339 can write (years 0000–9999).
fn rfc3339(t: OffsetDateTime) -> Option<String> {
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// The 400 for an `endedAt` (or a period derived from it) that RFC 3339 cannot write.
fn unwritable_ended_at() -> ApiError {
    ApiError::bad_request(
        "invalid_field",
        "`endedAt` must lie between the years 0000 and 9999 in UTC.",
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CallBody {
    organization_id: Option<String>,
    call_id: Option<String>,
    duration_seconds: Option<i64>,
    ended_at: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RecordedResponse<'a> {
    #[serde(flatten)]
    call: &'a CallRecord,
    /// Thresholds this call fired (each fires once per period, for exactly one call).
    alerts_fired: Vec<Threshold>,
}

pub async fn record_call(state: &AppState, body: &Body) -> Result<Response<Body>, ApiError> {
    let request: CallBody = parse_json_body(body)?;
    let now = OffsetDateTime::now_utc();
    let duration = request
        .duration_seconds
        .ok_or_else(|| missing("durationSeconds"))?;
    let ended_at = request
        .ended_at
        .as_deref()
        .ok_or_else(|| missing("endedAt"))?;
    let valid = usage::validate_call(
        request.organization_id.as_deref().unwrap_or_default(),
        request.call_id.as_deref().unwrap_or_default(),
        duration,
        ended_at,
        now,
    )
    .map_err(|error| {
        ApiError::bad_request("invalid_field", format!("`{}`: {error}", error.field()))
    })?;
    let ended_at_text = rfc3339(valid.ended_at).ok_or_else(unwritable_ended_at)?;
    let organization_id = request.organization_id.unwrap_or_default();
    let call_id = request.call_id.unwrap_or_default();
    let unknown =
        || ApiError::not_found("organization_not_found", "There is no such organization.");
    if !tollgate::routes::is_plausible_id(&organization_id) {
        return Err(unknown());
    }
    let (tenant, mut organization) = state
        .store
        .organization_by_id(&organization_id)
        .await
        .map_err(store_error)?
        .ok_or_else(unknown)?;
    tracing::Span::current().record("organization_id", tenant.as_str());
    // Checked once, against the organization as first read: a period billed while this request
    // runs carries the call into the open period instead (`PeriodBilled` below).
    let oldest_open = usage::oldest_open_period(organization.billing.as_ref(), now);
    if usage::check_ended_at_is_open(valid.ended_at, &oldest_open).is_err() {
        return Err(ApiError::bad_request(
            "invalid_field",
            format!(
                "`endedAt` ({ended_at_text}) is before {}, the start of the oldest billing period still open; usage that old can no longer be billed.",
                rfc3339(oldest_open.start).unwrap_or_else(|| oldest_open.key())
            ),
        ));
    }

    for attempt in 0..RECORD_ATTEMPTS {
        if attempt > 0 {
            organization = state
                .store
                .get_organization(&tenant)
                .await
                .map_err(store_error)?
                .ok_or_else(unknown)?;
        }
        let own = usage::organization_period(organization.billing.as_ref(), valid.ended_at);
        let billed_through = organization
            .overage_billed_through
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok());
        let current = usage::organization_period(organization.billing.as_ref(), now);
        let period = usage::billing_period_for_late_usage(&own, billed_through, &current);
        let record = CallRecord {
            organization_id: organization_id.clone(),
            call_id: call_id.clone(),
            duration_seconds: valid.duration_seconds,
            minutes: valid.minutes,
            ended_at: ended_at_text.clone(),
            period_start: rfc3339(period.start).ok_or_else(unwritable_ended_at)?,
            period_end: rfc3339(period.end).ok_or_else(unwritable_ended_at)?,
            recorded_at: rfc3339(now).ok_or_else(ApiError::internal)?,
        };
        match state
            .store
            .record_call(&tenant, &record, &period)
            .await
            .map_err(store_error)?
        {
            RecordOutcome::Recorded(record) => {
                if period != own {
                    tracing::info!(call_id = %call_id, own_period = %own.key(), counted_in = %period.key(), "late call carried into the open period");
                }
                let alerts = fire_alerts(state, &tenant, &organization, &period).await?;
                return Ok(json_response(
                    StatusCode::CREATED,
                    &RecordedResponse {
                        call: &record,
                        alerts_fired: alerts,
                    },
                ));
            }
            RecordOutcome::Repeated(original) => {
                let same = original.duration_seconds == record.duration_seconds
                    && original.ended_at == record.ended_at;
                if !same {
                    return Err(ApiError::conflict(
                        "call_conflict",
                        format!(
                            "Call {call_id} was already recorded with different figures ({} s ending {}).",
                            original.duration_seconds, original.ended_at
                        ),
                    ));
                }
                return Ok(json_response(
                    StatusCode::OK,
                    &RecordedResponse {
                        call: &original,
                        alerts_fired: Vec::new(),
                    },
                ));
            }
            RecordOutcome::OrganizationMissing => return Err(unknown()),
            // The period was billed between our read and our write: recompute as late usage.
            RecordOutcome::PeriodBilled => {}
            RecordOutcome::Conflict => conflict_backoff(attempt).await,
        }
    }
    Err(ApiError::unavailable(
        "busy",
        "The usage counter is busy; retry the same request (it is idempotent).",
    ))
}

fn missing(field: &str) -> ApiError {
    ApiError::bad_request("invalid_field", format!("`{field}` is required."))
}

/// Reads the counter after the call is in and fires every threshold at or below it that has not
/// fired yet; the conditional write lets exactly one call fire each, and carries its
/// `usage.threshold_crossed` audit event.
async fn fire_alerts(
    state: &AppState,
    tenant: &TenantId,
    organization: &OrganizationRecord,
    period: &Period,
) -> Result<Vec<Threshold>, ApiError> {
    let included = usage::included_minutes(entitled_plan(state, organization));
    if included == 0 {
        return Ok(Vec::new());
    }
    let counter = state
        .store
        .usage_counter(tenant, period)
        .await
        .map_err(store_error)?;
    let mut fired = Vec::new();
    for threshold in Threshold::ALL {
        if counter.minutes >= threshold.boundary(included)
            && counter.alert_at(threshold).is_none()
            && state
                .store
                .fire_alert(tenant, period, threshold, counter.minutes, included)
                .await
                .map_err(store_error)?
        {
            // One structured event per threshold per period: route it to email with a log
            // subscription or an EventBridge rule on `alert = "usage_threshold"`.
            tracing::warn!(
                alert = "usage_threshold",
                organization_id = %tenant.as_str(),
                threshold = threshold.as_str(),
                minutes = counter.minutes,
                minutes_included = included,
                period_start = %rfc3339(period.start).unwrap_or_else(|| period.key()),
                period_end = %rfc3339(period.end).unwrap_or_else(|| period.key()),
                "usage threshold reached"
            );
            fired.push(threshold);
        }
    }
    Ok(fired)
}

/// The plan whose minutes are included: the entitlement's (status and grace considered), so a
/// lapsed subscription has no allowance. Calls are recorded whatever it is.
fn entitled_plan(state: &AppState, organization: &OrganizationRecord) -> Option<Plan> {
    entitlement_of(state, organization).plan_granted
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertView {
    threshold: Threshold,
    fired_at: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct UsageResponse {
    #[serde(flatten)]
    summary: usage::UsageSummary,
    plan: Option<Plan>,
    alerts: Vec<AlertView>,
}

pub async fn get_usage(state: &AppState, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let tenant = tenant_of(caller)?;
    let organization = organization_of(state, caller).await?;
    let period =
        usage::organization_period(organization.billing.as_ref(), OffsetDateTime::now_utc());
    let counter: UsageCounter = state
        .store
        .usage_counter(tenant, &period)
        .await
        .map_err(store_error)?;
    let plan = entitled_plan(state, &organization);
    let summary = usage::summarize(
        counter.minutes,
        counter.calls,
        usage::included_minutes(plan),
        &period,
    );
    let alerts = Threshold::ALL
        .iter()
        .filter_map(|&t| {
            counter.alert_at(t).map(|at| AlertView {
                threshold: t,
                fired_at: at.to_owned(),
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &UsageResponse {
            summary,
            plan,
            alerts,
        },
    ))
}
