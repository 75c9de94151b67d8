//! The signed-in user's own routes: `GET /api/me` (the user, created on first sign-in, with their
//! organization, expanded permissions, plan entitlements and pending invitations), accepting or
//! declining an invitation, and leaving the organization.
//!
//! Nobody joins an organization without accepting an invitation, and an invitation counts only for
//! a token whose `email_verified` is true ([`team::verified_email`]).

use http::StatusCode;
use lambda_http::{Body, Response};
use serde::Serialize;

use tollgate::auth::jwt::{Claims, JwtVerifier};
use tollgate::auth::profile::{self, Profile};
use tollgate::entitlements::{Entitlement, EntitlementReason, EntitlementStatus};
use tollgate::http::{ApiError, json_response};
use tollgate::pipeline::{
    AppState, Caller, FunctionHandlers, entitlement_of, gone_tenant, organization_required,
    path_id, plan_inactive, store_error, tenant_of,
};
use tollgate::pricing::{self, Plan, PlanFeatures, PlanLimits};
use tollgate::rbac::{self, Role};
use tollgate::routes::{Function, Operation, PathParams};
use tollgate::store::{
    AddressedInvitation, NewUser, OrganizationRecord, PlanStatus, StoreError, UserRecord,
};
use tollgate::team::{self, GuardError, is_expired, seat_limit};
use tollgate::team::{concurrent, guard_error};

/// The user-load function's routes and handlers.
pub static HANDLERS: FunctionHandlers = FunctionHandlers {
    function: Function::UserLoad,
    handlers: &[
        (Operation::GetMe, |call| {
            Box::pin(async move { get_me(call.state, call.caller()?, call.request).await })
        }),
        (Operation::AcceptInvitation, |call| {
            Box::pin(
                async move { accept_invitation(call.state, call.caller()?, &call.params).await },
            )
        }),
        (Operation::DeclineInvitation, |call| {
            Box::pin(
                async move { decline_invitation(call.state, call.caller()?, &call.params).await },
            )
        }),
        (Operation::LeaveOrganization, |call| {
            Box::pin(async move { leave_organization(call.state, call.caller()?).await })
        }),
    ],
};

/// At most this many pending invitations are listed (newest first).
const MAX_LISTED_INVITATIONS: usize = 50;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MeResponse {
    user: UserView,
    organization: Option<OrganizationView>,
    permissions: Vec<String>,
    features: Option<&'static PlanFeatures>,
    limits: Option<&'static PlanLimits>,
    /// How the organization's subscription entitles it (`null` without an organization).
    entitlement_status: Option<EntitlementView>,
    /// Pending, unexpired invitations to the token's verified email; empty for a member of an
    /// organization (they leave before accepting another) and for an unverified email.
    invitations: Vec<InvitationView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EntitlementView {
    status: EntitlementStatus,
    reason: EntitlementReason,
    message: &'static str,
    /// RFC 3339; only for a `past_due` subscription.
    #[serde(skip_serializing_if = "Option::is_none")]
    grace_ends_at: Option<String>,
}

impl From<&Entitlement> for EntitlementView {
    fn from(e: &Entitlement) -> Self {
        Self {
            status: e.status,
            reason: e.reason,
            message: e.reason.message(),
            grace_ends_at: e.grace_ends_at.and_then(team::rfc3339),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InvitationView {
    id: String,
    organization_id: String,
    organization_name: String,
    role: Role,
    /// The inviting member's name or email when they invited.
    invited_by: Option<String>,
    expires_at: String,
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

pub async fn get_me(
    state: &AppState,
    caller: &Caller,
    request: &lambda_http::Request,
) -> Result<Response<Body>, ApiError> {
    let claims = &caller.claims;
    let token_email = claims.email.clone().filter(|e| !e.trim().is_empty());
    let (user, created) = if token_email.is_some() {
        let new_user = NewUser {
            subject: claims.sub.clone(),
            email: token_email,
            name: claims.display_name(),
            email_verified: None,
            profile_read_at: None,
        };
        state
            .store
            .get_or_create_user(new_user)
            .await
            .map_err(store_error)?
    } else {
        user_with_profile(state, caller, request).await?
    };
    if created {
        tracing::info!(user_id = %user.id, "user created on first sign-in");
    }
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
    let invitations = match (&organization, verified_email(claims, Some(&user))) {
        (None, Some(email)) => pending_invitations(state, &email).await?,
        _ => Vec::new(),
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let organization = organization.map(|o| {
        let entitlement = entitlement_of(state, &o);
        (o, entitlement)
    });
    Ok(json_response(
        status,
        &me_response(user, organization, invitations),
    ))
}

/// The user of a token without an email: their profile is read from the identity provider once,
/// when they are created or, for a user stored without one, when their invitations are looked
/// up (no organization yet), and stored with the time it was read. A failed read answers 503
/// before anything is written.
async fn user_with_profile(
    state: &AppState,
    caller: &Caller,
    request: &lambda_http::Request,
) -> Result<(UserRecord, bool), ApiError> {
    let claims = &caller.claims;
    match state
        .store
        .get_user(&claims.sub)
        .await
        .map_err(store_error)?
    {
        Some(user) if user.profile_read_at.is_some() || user.organization_id.is_some() => {
            Ok((user, false))
        }
        Some(user) => match fetch_profile(state, claims, request).await? {
            None => Ok((user, false)),
            Some(profile) => {
                let name = profile.name.or_else(|| claims.display_name());
                let stored = state
                    .store
                    .record_profile(
                        &claims.sub,
                        profile.email.as_deref(),
                        profile.email_verified,
                        name.as_deref(),
                        &tollgate::store::now_rfc3339(),
                    )
                    .await
                    .map_err(store_error)?;
                Ok((stored, false))
            }
        },
        None => {
            let new_user = match fetch_profile(state, claims, request).await? {
                Some(profile) => NewUser {
                    subject: claims.sub.clone(),
                    email: profile.email,
                    name: profile.name.or_else(|| claims.display_name()),
                    email_verified: Some(profile.email_verified),
                    profile_read_at: Some(tollgate::store::now_rfc3339()),
                },
                None => NewUser {
                    subject: claims.sub.clone(),
                    email: None,
                    name: claims.display_name(),
                    email_verified: None,
                    profile_read_at: None,
                },
            };
            state
                .store
                .get_or_create_user(new_user)
                .await
                .map_err(store_error)
        }
    }
}

/// The caller's profile from the identity provider: Auth0's `/userinfo` with the caller's own
/// token when its `aud` includes that URL, else Clerk's Backend API when a Clerk secret key is
/// configured; `None` when neither applies.
async fn fetch_profile(
    state: &AppState,
    claims: &Claims,
    request: &lambda_http::Request,
) -> Result<Option<Profile>, ApiError> {
    let Some(jwt) = &state.config.jwt else {
        return Ok(None);
    };
    let fetched = if claims.aud.contains(&jwt.userinfo_url) {
        let header = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        let token = JwtVerifier::bearer_token(header).map_err(|_| ApiError::internal())?;
        profile::fetch_userinfo(&state.http, &jwt.userinfo_url, token, &claims.sub).await
    } else {
        let secrets = state.secrets().await?;
        let Some(key) = secrets.clerk_secret_key.as_deref() else {
            return Ok(None);
        };
        profile::fetch_clerk(&state.http, &state.config.clerk_api_base, key, &claims.sub).await
    };
    match fetched {
        Ok(profile) => {
            tracing::info!(sub = %claims.sub, "profile read from the identity provider");
            Ok(Some(profile))
        }
        Err(error) => {
            tracing::warn!(sub = %claims.sub, error = %error, "profile could not be read from the identity provider");
            Err(ApiError::unavailable(
                "identity_provider_unavailable",
                "Your profile could not be read from the identity provider; try again shortly.",
            ))
        }
    }
}

/// The verified email invitations count for: the token's, when it carries an email; else the
/// one read from the identity provider and stored on the user.
fn verified_email(claims: &Claims, user: Option<&UserRecord>) -> Option<String> {
    if claims.email.is_some() {
        return team::verified_email(claims.email.as_deref(), claims.email_verified);
    }
    let user = user?;
    user.profile_read_at.as_ref()?;
    team::verified_email(user.email.as_deref(), user.email_verified)
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The unexpired invitations addressed to `email` from organizations that still exist.
async fn pending_invitations(
    state: &AppState,
    email: &str,
) -> Result<Vec<InvitationView>, ApiError> {
    let now = unix_now();
    let mut addressed = state
        .store
        .invitations_addressed_to(email)
        .await
        .map_err(store_error)?;
    addressed.retain(|invitation| !is_expired(invitation.expires_at, now));
    addressed.reverse();
    addressed.truncate(MAX_LISTED_INVITATIONS);
    let mut views = Vec::new();
    for invitation in addressed {
        let Some(organization) = state
            .store
            .get_organization(&invitation.tenant)
            .await
            .map_err(store_error)?
        else {
            continue;
        };
        views.push(InvitationView {
            expires_at: team::rfc3339(invitation.expires_at).ok_or_else(ApiError::internal)?,
            id: invitation.id,
            organization_id: organization.id,
            organization_name: organization.name,
            role: invitation.role,
            invited_by: invitation.inviter_name,
        });
    }
    Ok(views)
}

fn invitation_not_found() -> ApiError {
    ApiError::not_found(
        "invitation_not_found",
        "There is no such pending invitation for your verified email address.",
    )
}

fn invitation_expired() -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "invitation_expired",
        "This invitation has expired; ask the organization to resend it.",
    )
}

/// The invitation named in the path if it is addressed to the caller's verified email; anything
/// else (another address's, an unverified email, a missing one) is 404 alike.
async fn addressed_invitation(
    state: &AppState,
    caller: &Caller,
    params: &PathParams,
) -> Result<(String, AddressedInvitation), ApiError> {
    let id = path_id(params)?;
    let email =
        verified_email(&caller.claims, caller.user.as_ref()).ok_or_else(invitation_not_found)?;
    let invitation = state
        .store
        .invitation_addressed_to(&email, id)
        .await
        .map_err(store_error)?
        .ok_or_else(invitation_not_found)?;
    Ok((email, invitation))
}

/// `POST /api/me/invitations/{id}/accept`: joins the inviting organization with the invited role.
pub async fn accept_invitation(
    state: &AppState,
    caller: &Caller,
    params: &PathParams,
) -> Result<Response<Body>, ApiError> {
    let user = caller.user.as_ref().ok_or_else(ApiError::internal)?;
    let (email, invitation) = addressed_invitation(state, caller, params).await?;
    // A user still naming a deleted organization is free to join another at once.
    let gone = gone_tenant(state, caller, already_member).await?;
    let now = unix_now();
    if is_expired(invitation.expires_at, now) {
        return Err(invitation_expired());
    }
    let organization = state
        .store
        .get_organization(&invitation.tenant)
        .await
        .map_err(store_error)?
        .ok_or_else(invitation_not_found)?;
    // A lapsed subscription keeps its members but takes no new ones.
    let entitlement = entitlement_of(state, &organization);
    if entitlement.is_inactive() {
        return Err(plan_inactive(&entitlement));
    }
    let limit = seat_limit(entitlement.plan_granted);
    let seats_full = || {
        ApiError::conflict(
            "seat_limit_reached",
            format!(
                "{} has no free seat on its plan ({limit}); ask them to upgrade or free a seat.",
                organization.name
            ),
        )
    };
    if organization.member_count >= limit {
        return Err(seats_full());
    }
    match state
        .store
        .accept_invitation(user, &email, &invitation, limit, now, gone)
        .await
    {
        Ok(joined) => {
            tracing::Span::current().record("organization_id", invitation.tenant.as_str());
            Ok(json_response(
                StatusCode::OK,
                &me_response(
                    joined,
                    Some((organization.clone(), entitlement)),
                    Vec::new(),
                ),
            ))
        }
        Err(StoreError::NotFound) if is_expired(invitation.expires_at, unix_now()) => {
            Err(invitation_expired())
        }
        Err(StoreError::NotFound) => Err(invitation_not_found()),
        Err(StoreError::AlreadyInOrganization) => Err(already_member()),
        Err(StoreError::SeatLimitReached) => Err(seats_full()),
        Err(error) => Err(store_error(error)),
    }
}

fn already_member() -> ApiError {
    ApiError::conflict(
        "already_in_organization",
        "You already belong to an organization; leave it (DELETE /api/me/organization) before accepting another invitation.",
    )
}

#[derive(Debug, Serialize)]
struct Declined<'a> {
    id: &'a str,
    declined: bool,
}

/// `POST /api/me/invitations/{id}/decline`: refuses the invitation and frees its seat.
pub async fn decline_invitation(
    state: &AppState,
    caller: &Caller,
    params: &PathParams,
) -> Result<Response<Body>, ApiError> {
    let user = caller.user.as_ref().ok_or_else(ApiError::internal)?;
    let (email, invitation) = addressed_invitation(state, caller, params).await?;
    match state
        .store
        .decline_invitation(&user.id, &email, &invitation)
        .await
    {
        Ok(()) => Ok(json_response(
            StatusCode::OK,
            &Declined {
                id: &invitation.id,
                declined: true,
            },
        )),
        Err(StoreError::NotFound) => Err(invitation_not_found()),
        Err(error) => Err(store_error(error)),
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Left<'a> {
    organization_id: &'a str,
    left: bool,
}

/// `DELETE /api/me/organization`: the caller leaves their organization and belongs nowhere; the
/// last OWNER stays (409 `last_owner`). A caller still naming an organization that is gone (its
/// deletion was cut short before detaching them) is detached from it.
pub async fn leave_organization(
    state: &AppState,
    caller: &Caller,
) -> Result<Response<Body>, ApiError> {
    let tenant = tenant_of(caller)?;
    let user = caller.user.as_ref().ok_or_else(ApiError::internal)?;
    let Some(organization) = state
        .store
        .get_organization(tenant)
        .await
        .map_err(store_error)?
    else {
        // The user still names an organization that is gone (its deletion job has not reached
        // them yet): leaving detaches them now.
        return match state
            .store
            .detach_from_gone_organization(tenant, user)
            .await
        {
            Ok(()) => Ok(json_response(
                StatusCode::OK,
                &Left {
                    organization_id: tenant.as_str(),
                    left: true,
                },
            )),
            Err(StoreError::NotFound) => Err(organization_required()),
            Err(error) => Err(store_error(error)),
        };
    };
    let member = state
        .store
        .get_member(tenant, &user.id)
        .await
        .map_err(store_error)?
        .ok_or_else(concurrent)?;
    team::check_leave(member.role, organization.owner_count).map_err(guard_error)?;
    match state.store.remove_member(tenant, None, &member).await {
        Ok(()) => {
            tracing::info!(member_id = %member.user_id, "member left");
            Ok(json_response(
                StatusCode::OK,
                &Left {
                    organization_id: tenant.as_str(),
                    left: true,
                },
            ))
        }
        Err(StoreError::LastOwner) => Err(guard_error(GuardError::LastOwner)),
        Err(error) => Err(store_error(error)),
    }
}

/// The `/api/me` body; `features` and `limits` are those of the organization's entitlement.
fn me_response(
    user: UserRecord,
    organization: Option<(OrganizationRecord, Entitlement)>,
    invitations: Vec<InvitationView>,
) -> MeResponse {
    // A role only means something inside an organization.
    let role = organization.as_ref().and(user.role);
    let plan = organization
        .as_ref()
        .and_then(|(_, e)| e.plan_granted)
        .map(pricing::definition);
    MeResponse {
        invitations,
        permissions: role.map(rbac::expanded_permissions).unwrap_or_default(),
        features: plan.map(|p| &p.features),
        limits: plan.map(|p| &p.limits),
        entitlement_status: organization.as_ref().map(|(_, e)| EntitlementView::from(e)),
        organization: organization.map(|(o, _)| OrganizationView {
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
