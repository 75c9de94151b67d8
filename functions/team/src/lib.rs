//! The team function: members and invitations of the caller's organization.

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};

use tollgate::http::{ApiError, invalid_cursor, json_response, page_params, parse_json_body};
use tollgate::pipeline::{
    AppState, Caller, FunctionHandlers, organization_required, path_id, store_error, tenant_of,
};
use tollgate::pipeline::{entitlement_of, organization_of, plan_inactive};
use tollgate::rbac::Role;
use tollgate::routes::{Function, Operation, PathParams};
use tollgate::store::{InvitationRecord, MemberRecord, StoreError, TeamEntry};
use tollgate::team::{self, Actor, GuardError, guard_error, normalize_email, seat_limit};

/// The team function's routes and handlers.
pub static HANDLERS: FunctionHandlers = FunctionHandlers {
    function: Function::Team,
    handlers: &[
        (Operation::ListTeam, |call| {
            Box::pin(async move { list(call.state, call.caller()?, call.request).await })
        }),
        (Operation::InviteMember, |call| {
            Box::pin(async move { invite(call.state, call.caller()?, call.body()).await })
        }),
        (Operation::ChangeRole, |call| {
            Box::pin(async move {
                change_role(call.state, call.caller()?, call.body(), &call.params).await
            })
        }),
        (Operation::RemoveMember, |call| {
            Box::pin(async move { remove(call.state, call.caller()?, &call.params).await })
        }),
        (Operation::RevokeInvitation, |call| {
            Box::pin(async move { revoke(call.state, call.caller()?, &call.params).await })
        }),
        (Operation::ResendInvitation, |call| {
            Box::pin(async move { resend(call.state, call.caller()?, &call.params).await })
        }),
    ],
};

const DEFAULT_PAGE_SIZE: i32 = 50;
const MAX_PAGE_SIZE: i32 = 100;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MemberView {
    id: String,
    email: Option<String>,
    name: Option<String>,
    role: Role,
    joined_at: String,
}

impl From<MemberRecord> for MemberView {
    fn from(m: MemberRecord) -> Self {
        Self {
            id: m.user_id,
            email: m.email,
            name: m.name,
            role: m.role,
            joined_at: m.joined_at,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InvitationView {
    id: String,
    email: String,
    role: Role,
    invited_by: String,
    invited_at: String,
    /// From this moment the invitation can no longer be accepted and its seat is free.
    expires_at: String,
}

impl TryFrom<InvitationRecord> for InvitationView {
    type Error = ApiError;

    fn try_from(i: InvitationRecord) -> Result<Self, ApiError> {
        Ok(Self {
            expires_at: team::rfc3339(i.expires_at).ok_or_else(ApiError::internal)?,
            id: i.id,
            email: i.email,
            role: i.role,
            invited_by: i.invited_by,
            invited_at: i.created_at,
        })
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TeamResponse {
    members: Vec<MemberView>,
    invitations: Vec<InvitationView>,
    next_cursor: Option<String>,
}

pub async fn list(
    state: &AppState,
    caller: &Caller,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let tenant = tenant_of(caller)?;
    let (limit, cursor) = page_params(request, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let cursor = cursor.as_deref();
    let page = match state.store.list_team(tenant, cursor, limit).await {
        Ok(page) => page,
        Err(StoreError::NotFound) => {
            return Err(invalid_cursor());
        }
        Err(error) => return Err(store_error(error)),
    };
    let mut response = TeamResponse {
        members: Vec::new(),
        invitations: Vec::new(),
        next_cursor: page.next_cursor,
    };
    for entry in page.entries {
        match entry {
            TeamEntry::Member(member) => response.members.push(member.into()),
            TeamEntry::Invitation(invitation) => response.invitations.push(invitation.try_into()?),
        }
    }
    Ok(json_response(StatusCode::OK, &response))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InviteRequest {
    email: String,
    role: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RoleRequest {
    role: String,
}

fn parse_role(raw: &str) -> Result<Role, ApiError> {
    raw.parse::<Role>().map_err(|_| {
        ApiError::bad_request(
            "invalid_role",
            format!("Unknown role \"{raw}\"; use one of OWNER, ADMIN, MANAGER, OPERATOR, VIEWER."),
        )
    })
}

/// The caller as an actor in their organization.
fn actor(caller: &Caller) -> Result<Actor<'_>, ApiError> {
    let user = caller.user.as_ref().ok_or_else(ApiError::internal)?;
    let role = user.role.ok_or_else(organization_required)?;
    Ok(Actor {
        user_id: &user.id,
        role,
    })
}

pub async fn invite(
    state: &AppState,
    caller: &Caller,
    body: &Body,
) -> Result<Response<Body>, ApiError> {
    let tenant = tenant_of(caller)?;
    let request: InviteRequest = parse_json_body(body)?;
    let email = normalize_email(&request.email)
        .map_err(|message| ApiError::bad_request("invalid_email", message))?;
    let role = parse_role(&request.role)?;
    let actor = actor(caller)?;
    team::check_invite(actor, role).map_err(guard_error)?;

    let organization = organization_of(state, caller).await?;
    let members = state.store.all_members(tenant).await.map_err(store_error)?;
    if members.iter().any(|m| {
        m.email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(&email))
    }) {
        return Err(ApiError::conflict(
            "already_member",
            format!("{email} is already a member of this organization."),
        ));
    }
    // A lapsed subscription keeps its members but takes no new ones.
    let entitlement = entitlement_of(state, &organization);
    if entitlement.is_inactive() {
        return Err(plan_inactive(&entitlement));
    }
    let limit = seat_limit(entitlement.plan_granted);
    // Expired invitations give their seats back before this one takes a seat.
    let now = unix_now();
    state
        .store
        .release_expired_invitations(tenant, now)
        .await
        .map_err(store_error)?;
    let inviter = caller.user.as_ref().ok_or_else(ApiError::internal)?;
    let inviter_name = inviter.name.as_deref().or(inviter.email.as_deref());
    let expires_at = team::invitation_expires_at(now, state.config.invitation_ttl_days);
    match state
        .store
        .invite(
            tenant,
            (actor.user_id, actor.role),
            inviter_name,
            &email,
            role,
            limit,
            expires_at,
        )
        .await
    {
        Ok(invitation) => {
            tracing::info!(invitation_id = %invitation.id, role = %role, "invitation created");
            Ok(json_response(
                StatusCode::CREATED,
                &InvitationView::try_from(invitation)?,
            ))
        }
        Err(StoreError::SeatLimitReached) => Err(ApiError::conflict(
            "seat_limit_reached",
            format!(
                "Your plan allows {limit} seat{} (members plus pending invitations); upgrade the plan or revoke an invitation first.",
                if limit == 1 { "" } else { "s" }
            ),
        )),
        Err(StoreError::AlreadyInvited) => Err(ApiError::conflict(
            "already_invited",
            format!("{email} already has a pending invitation."),
        )),
        Err(error) => Err(store_error(error)),
    }
}

fn member_not_found() -> ApiError {
    ApiError::not_found(
        "member_not_found",
        "There is no such member in your organization.",
    )
}

async fn target_member(
    state: &AppState,
    caller: &Caller,
    params: &PathParams,
) -> Result<MemberRecord, ApiError> {
    let tenant = tenant_of(caller)?;
    let id = path_id(params)?;
    state
        .store
        .get_member(tenant, id)
        .await
        .map_err(store_error)?
        .ok_or_else(member_not_found)
}

async fn owner_count(state: &AppState, caller: &Caller) -> Result<u64, ApiError> {
    let organization = organization_of(state, caller).await?;
    Ok(organization.owner_count)
}

pub async fn change_role(
    state: &AppState,
    caller: &Caller,
    body: &Body,
    params: &PathParams,
) -> Result<Response<Body>, ApiError> {
    let request: RoleRequest = parse_json_body(body)?;
    let new_role = parse_role(&request.role)?;
    let member = target_member(state, caller, params).await?;
    let actor = actor(caller)?;
    let owners = owner_count(state, caller).await?;
    team::check_role_change(
        actor,
        Actor {
            user_id: &member.user_id,
            role: member.role,
        },
        new_role,
        owners,
    )
    .map_err(guard_error)?;
    match state
        .store
        .change_role(
            tenant_of(caller)?,
            (actor.user_id, actor.role),
            &member,
            new_role,
        )
        .await
    {
        Ok(()) => {
            tracing::info!(member_id = %member.user_id, from = %member.role, to = %new_role, "role changed");
            let mut updated = member;
            updated.role = new_role;
            Ok(json_response(StatusCode::OK, &MemberView::from(updated)))
        }
        Err(StoreError::LastOwner) => Err(guard_error(GuardError::LastOwner)),
        Err(error) => Err(store_error(error)),
    }
}

#[derive(Debug, Serialize)]
struct Removed<'a> {
    id: &'a str,
    removed: bool,
}

pub async fn remove(
    state: &AppState,
    caller: &Caller,
    params: &PathParams,
) -> Result<Response<Body>, ApiError> {
    let member = target_member(state, caller, params).await?;
    let actor = actor(caller)?;
    let owners = owner_count(state, caller).await?;
    team::check_removal(
        actor,
        Actor {
            user_id: &member.user_id,
            role: member.role,
        },
        owners,
    )
    .map_err(guard_error)?;
    match state
        .store
        .remove_member(
            tenant_of(caller)?,
            Some((actor.user_id, actor.role)),
            &member,
        )
        .await
    {
        Ok(()) => {
            tracing::info!(member_id = %member.user_id, "member removed");
            Ok(json_response(
                StatusCode::OK,
                &Removed {
                    id: &member.user_id,
                    removed: true,
                },
            ))
        }
        Err(StoreError::LastOwner) => Err(guard_error(GuardError::LastOwner)),
        Err(error) => Err(store_error(error)),
    }
}

#[derive(Debug, Serialize)]
struct Revoked<'a> {
    id: &'a str,
    revoked: bool,
}

fn invitation_not_found() -> ApiError {
    ApiError::not_found(
        "invitation_not_found",
        "There is no such pending invitation in your organization.",
    )
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The invitation named in the path, in the caller's organization, if the caller may act on it
/// (only an OWNER acts on an OWNER invitation).
async fn target_invitation<'a>(
    state: &AppState,
    caller: &'a Caller,
    params: &PathParams,
) -> Result<(Actor<'a>, InvitationRecord), ApiError> {
    let tenant = tenant_of(caller)?;
    let id = path_id(params)?;
    let invitation = state
        .store
        .get_invitation(tenant, id)
        .await
        .map_err(store_error)?
        .ok_or_else(invitation_not_found)?;
    let actor = actor(caller)?;
    team::check_invite(actor, invitation.role).map_err(guard_error)?;
    Ok((actor, invitation))
}

pub async fn revoke(
    state: &AppState,
    caller: &Caller,
    params: &PathParams,
) -> Result<Response<Body>, ApiError> {
    let (actor, invitation) = target_invitation(state, caller, params).await?;
    match state
        .store
        .revoke_invitation(tenant_of(caller)?, (actor.user_id, actor.role), &invitation)
        .await
    {
        Ok(()) => {
            tracing::info!(invitation_id = %invitation.id, "invitation revoked");
            Ok(json_response(
                StatusCode::OK,
                &Revoked {
                    id: &invitation.id,
                    revoked: true,
                },
            ))
        }
        Err(StoreError::NotFound) => Err(invitation_not_found()),
        Err(error) => Err(store_error(error)),
    }
}

/// `POST /api/users/invitations/{id}/resend`: the invitation is acceptable for another
/// `INVITATION_TTL_DAYS` from now (an expired one not yet released included).
pub async fn resend(
    state: &AppState,
    caller: &Caller,
    params: &PathParams,
) -> Result<Response<Body>, ApiError> {
    let (actor, invitation) = target_invitation(state, caller, params).await?;
    // Renewing an invitation invites again: a lapsed subscription takes nobody new.
    let entitlement = entitlement_of(state, &organization_of(state, caller).await?);
    if entitlement.is_inactive() {
        return Err(plan_inactive(&entitlement));
    }
    let expires_at = team::invitation_expires_at(unix_now(), state.config.invitation_ttl_days);
    match state
        .store
        .resend_invitation(
            tenant_of(caller)?,
            (actor.user_id, actor.role),
            &invitation,
            expires_at,
        )
        .await
    {
        Ok(renewed) => {
            tracing::info!(invitation_id = %renewed.id, "invitation resent");
            Ok(json_response(
                StatusCode::OK,
                &InvitationView::try_from(renewed)?,
            ))
        }
        Err(StoreError::NotFound) => Err(invitation_not_found()),
        Err(error) => Err(store_error(error)),
    }
}
