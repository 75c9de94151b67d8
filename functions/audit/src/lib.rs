//! The audit function: `GET /api/audit`, the organization's audit log, newest first.
//!
//! One DynamoDB Query per page, in the caller's partition only: the date range (`from`, `to`) is
//! a key condition on the events' time-ordered sort key; `type` and `actor` are a filter
//! expression, so a filtered page may hold fewer than `limit` events while `nextCursor` is set.

use http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;

use tollgate::http::{ApiError, invalid_cursor, json_response, page_params};
use tollgate::pipeline::{AppState, Caller, FunctionHandlers, store_error, tenant_of};
use tollgate::routes::{Function, Operation};
use tollgate::store::StoreError;
use tollgate::store::audit::{AuditEvent, AuditQuery, EventType};

/// The audit function's routes and handlers.
pub static HANDLERS: FunctionHandlers = FunctionHandlers {
    function: Function::Audit,
    handlers: &[(Operation::ListAuditEvents, |call| {
        Box::pin(async move { list(call.state, call.caller()?, call.request).await })
    })],
};

const DEFAULT_PAGE_SIZE: i32 = 50;
const MAX_PAGE_SIZE: i32 = 100;
/// Longest `actor` filter accepted (ids are far shorter).
const MAX_ACTOR_LEN: usize = 128;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ListResponse {
    events: Vec<AuditEvent>,
    next_cursor: Option<String>,
}

/// `from`/`to` as Unix milliseconds; a value that is not RFC 3339 is a 400 naming the parameter.
fn parse_time(name: &'static str, raw: &str) -> Result<u64, ApiError> {
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!("`{name}` must be an RFC 3339 date-time at or after 1970, e.g. 2026-01-31T00:00:00Z."),
            )
        })
}

/// The filters of a listing request, validated.
pub fn audit_query(
    kind: Option<&str>,
    actor: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<AuditQuery, ApiError> {
    let kind = match kind {
        Some(name) => Some(EventType::parse(name).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                "`type` must be one of the event types listed in docs/events.md.",
            )
        })?),
        None => None,
    };
    let actor = match actor {
        Some(id)
            if !id.is_empty()
                && id.len() <= MAX_ACTOR_LEN
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            Some(id.to_owned())
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "`actor` must be a user id, an API key id, `stripe`, `system` or `service`.",
            ));
        }
        None => None,
    };
    let from_ms = from.map(|raw| parse_time("from", raw)).transpose()?;
    let to_ms = to.map(|raw| parse_time("to", raw)).transpose()?;
    if let (Some(from), Some(to)) = (from_ms, to_ms)
        && from > to
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "`from` must not be after `to`.",
        ));
    }
    Ok(AuditQuery {
        kind,
        actor,
        from_ms,
        to_ms,
    })
}

pub async fn list(
    state: &AppState,
    caller: &Caller,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let tenant = tenant_of(caller)?;
    let (limit, cursor) = page_params(request, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let params = request.query_string_parameters_ref();
    let get = |name| params.and_then(|q| q.first(name));
    let query = audit_query(get("type"), get("actor"), get("from"), get("to"))?;
    match state
        .store
        .list_audit(tenant, &query, cursor.as_deref(), limit)
        .await
    {
        Ok(page) => Ok(json_response(
            StatusCode::OK,
            &ListResponse {
                events: page.events,
                next_cursor: page.next_cursor,
            },
        )),
        Err(StoreError::NotFound) => Err(invalid_cursor()),
        Err(error) => Err(store_error(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_validated_and_named() {
        let query = audit_query(
            Some("member.role_changed"),
            Some("usr_1"),
            Some("2026-01-01T00:00:00Z"),
            Some("2026-01-01T00:00:01.5Z"),
        )
        .unwrap();
        assert_eq!(query.kind, Some(EventType::MemberRoleChanged));
        assert_eq!(query.actor.as_deref(), Some("usr_1"));
        assert_eq!(query.from_ms, Some(1_767_225_600_000));
        assert_eq!(query.to_ms, Some(1_767_225_601_500));
        assert_eq!(
            audit_query(None, None, None, None).unwrap(),
            AuditQuery::default()
        );
        for (kind, actor, from, to) in [
            (Some("member.eaten"), None, None, None),
            (None, Some(""), None, None),
            (None, Some("a b"), None, None),
            (None, None, Some("yesterday"), None),
            (None, None, None, Some("2026-13-01T00:00:00Z")),
            (None, None, Some("1969-12-31T00:00:00Z"), None),
            (
                None,
                None,
                Some("2026-01-02T00:00:00Z"),
                Some("2026-01-01T00:00:00Z"),
            ),
        ] {
            let error = audit_query(kind, actor, from, to).unwrap_err();
            assert_eq!(
                error.status,
                StatusCode::BAD_REQUEST,
                "{kind:?} {actor:?} {from:?} {to:?}"
            );
        }
    }
}
