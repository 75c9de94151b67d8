//! Team guard rails, as pure decisions: who may invite, change a role, remove a member or leave;
//! which token email an invitation counts for; when an invitation expires.
//!
//! The store enforces the one rule that depends on concurrent state (at least one OWNER remains)
//! again inside its transaction, with a condition on the organization's owner count; these
//! functions decide everything that depends only on the two people involved.

use crate::http::ApiError;
use crate::pricing::{self, Plan};
use crate::rbac::Role;

/// Why a team change is refused. Each maps to a 403 or 409 with its own code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("You cannot change your own role or remove yourself; ask another owner or admin.")]
    SelfChange,
    #[error("Only an OWNER can grant, change or remove the OWNER role.")]
    OwnerOnly,
    #[error("An organization must keep at least one OWNER; make someone else OWNER first.")]
    LastOwner,
    #[error("The member already has that role.")]
    Unchanged,
}

impl GuardError {
    pub fn code(self) -> &'static str {
        match self {
            GuardError::SelfChange => "cannot_change_self",
            GuardError::OwnerOnly => "owner_required",
            GuardError::LastOwner => "last_owner",
            GuardError::Unchanged => "role_unchanged",
        }
    }

    /// 403 for rules about who may act, 409 for rules about the organization's state.
    pub fn is_conflict(self) -> bool {
        matches!(self, GuardError::LastOwner | GuardError::Unchanged)
    }
}

/// Someone in the organization: their user id and role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor<'a> {
    pub user_id: &'a str,
    pub role: Role,
}

/// May `actor` invite someone as `role`, or resend or revoke an invitation for `role`? Only an
/// OWNER invites an OWNER, renews an OWNER invitation or withdraws one.
pub fn check_invite(actor: Actor<'_>, role: Role) -> Result<(), GuardError> {
    if role == Role::Owner && actor.role != Role::Owner {
        return Err(GuardError::OwnerOnly);
    }
    Ok(())
}

/// May `actor` change `target` from its current role to `new_role`, given `owner_count` owners?
pub fn check_role_change(
    actor: Actor<'_>,
    target: Actor<'_>,
    new_role: Role,
    owner_count: u64,
) -> Result<(), GuardError> {
    if actor.user_id == target.user_id {
        return Err(GuardError::SelfChange);
    }
    let touches_owner = target.role == Role::Owner || new_role == Role::Owner;
    if touches_owner && actor.role != Role::Owner {
        return Err(GuardError::OwnerOnly);
    }
    if target.role == new_role {
        return Err(GuardError::Unchanged);
    }
    if target.role == Role::Owner && owner_count <= 1 {
        return Err(GuardError::LastOwner);
    }
    Ok(())
}

/// May `actor` remove `target` from the organization, given `owner_count` owners?
pub fn check_removal(
    actor: Actor<'_>,
    target: Actor<'_>,
    owner_count: u64,
) -> Result<(), GuardError> {
    if actor.user_id == target.user_id {
        return Err(GuardError::SelfChange);
    }
    if target.role == Role::Owner && actor.role != Role::Owner {
        return Err(GuardError::OwnerOnly);
    }
    if target.role == Role::Owner && owner_count <= 1 {
        return Err(GuardError::LastOwner);
    }
    Ok(())
}

/// May a member holding `role` leave, given `owner_count` owners? The last OWNER stays.
pub fn check_leave(role: Role, owner_count: u64) -> Result<(), GuardError> {
    if role == Role::Owner && owner_count <= 1 {
        return Err(GuardError::LastOwner);
    }
    Ok(())
}

/// Days an invitation stays acceptable unless `INVITATION_TTL_DAYS` says otherwise.
pub const DEFAULT_INVITATION_TTL_DAYS: u32 = 7;

/// When an invitation made or renewed at `now` (Unix seconds) expires.
pub fn invitation_expires_at(now: i64, ttl_days: u32) -> i64 {
    now.saturating_add(i64::from(ttl_days) * 86_400)
}

/// An invitation is expired from its `expires_at` second on.
pub fn is_expired(expires_at: i64, now: i64) -> bool {
    expires_at <= now
}

/// `seconds` (Unix) as RFC 3339 UTC, e.g. an invitation's `expiresAt`; `None` out of range.
pub fn rfc3339(seconds: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// The email an invitation may be addressed to for this token: its `email`, normalized, only when
/// `email_verified` is `true` (the boolean, or the string "true", as the token parser reads both).
/// Any other value, or none, means unverified: no invitation counts for the token.
pub fn verified_email(email: Option<&str>, email_verified: Option<bool>) -> Option<String> {
    if email_verified != Some(true) {
        return None;
    }
    normalize_email(email?).ok()
}

/// Seats an organization may fill with members plus pending invitations: the granted plan's
/// `maxTeamMembers`, or [`crate::entitlements::FREE_SEATS`] (the owner) without one. Callers pass
/// [`crate::entitlements::Entitlement::plan_granted`], not the stored plan.
pub fn seat_limit(plan: Option<Plan>) -> u64 {
    plan.map(|plan| u64::from(pricing::definition(plan).limits.max_team_members))
        .unwrap_or(crate::entitlements::FREE_SEATS)
}

/// Organization names: trimmed, inner whitespace runs collapsed, 2 to 100 characters, no control
/// characters.
pub fn normalize_organization_name(raw: &str) -> Result<String, &'static str> {
    let name = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    let length = name.chars().count();
    if length < 2 {
        return Err("The organization name must have at least 2 characters.");
    }
    if length > 100 {
        return Err("The organization name may have at most 100 characters.");
    }
    if name.chars().any(char::is_control) {
        return Err("The organization name may not contain control characters.");
    }
    Ok(name)
}

/// Email addresses as stored and matched: trimmed and ASCII lower-cased only (a Kelvin sign is
/// not a `k`); refused unless plausible (see [`crate::text::is_plausible_email`]: one `@`, a
/// non-empty local part, a dotted domain, no spaces, control or format characters, at most 254
/// bytes).
pub fn normalize_email(raw: &str) -> Result<String, &'static str> {
    crate::text::normalize_email(raw)
        .ok_or("`email` must be an email address such as name@example.com.")
}

/// The 403 or 409 a refused team change answers.
pub fn guard_error(error: GuardError) -> ApiError {
    if error.is_conflict() {
        ApiError::conflict(error.code(), error.to_string())
    } else {
        ApiError::forbidden(error.code(), error.to_string())
    }
}

/// The 409 for a team change that lost a race with another.
pub fn concurrent() -> ApiError {
    ApiError::conflict(
        "concurrent_update",
        "The organization or its team changed at the same moment; nothing was changed. Reload and try again.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn actor(user_id: &str, role: Role) -> Actor<'_> {
        Actor { user_id, role }
    }

    #[test]
    fn only_owners_invite_owners() {
        for role in Role::ALL {
            assert_eq!(check_invite(actor("a", Role::Owner), role), Ok(()));
            let by_admin = check_invite(actor("a", Role::Admin), role);
            if role == Role::Owner {
                assert_eq!(by_admin, Err(GuardError::OwnerOnly));
            } else {
                assert_eq!(by_admin, Ok(()));
            }
        }
    }

    #[test]
    fn nobody_changes_their_own_role_or_removes_themselves() {
        for role in Role::ALL {
            for new_role in Role::ALL {
                assert_eq!(
                    check_role_change(actor("a", role), actor("a", role), new_role, 5),
                    Err(GuardError::SelfChange)
                );
            }
            assert_eq!(
                check_removal(actor("a", role), actor("a", role), 5),
                Err(GuardError::SelfChange)
            );
        }
    }

    #[test]
    fn admins_cannot_touch_owners_or_grant_owner() {
        let admin = actor("admin", Role::Admin);
        assert_eq!(
            check_role_change(admin, actor("o", Role::Owner), Role::Admin, 3),
            Err(GuardError::OwnerOnly)
        );
        assert_eq!(
            check_role_change(admin, actor("v", Role::Viewer), Role::Owner, 3),
            Err(GuardError::OwnerOnly)
        );
        assert_eq!(
            check_removal(admin, actor("o", Role::Owner), 3),
            Err(GuardError::OwnerOnly)
        );
        assert_eq!(
            check_role_change(admin, actor("v", Role::Viewer), Role::Manager, 1),
            Ok(())
        );
        assert_eq!(check_removal(admin, actor("v", Role::Viewer), 1), Ok(()));
    }

    #[test]
    fn the_last_owner_stays() {
        let owner = actor("o1", Role::Owner);
        let other_owner = actor("o2", Role::Owner);
        assert_eq!(
            check_role_change(owner, other_owner, Role::Admin, 1),
            Err(GuardError::LastOwner)
        );
        assert_eq!(
            check_removal(owner, other_owner, 1),
            Err(GuardError::LastOwner)
        );
        assert_eq!(
            check_role_change(owner, other_owner, Role::Admin, 2),
            Ok(())
        );
        assert_eq!(check_removal(owner, other_owner, 2), Ok(()));
        assert_eq!(
            check_role_change(owner, actor("m", Role::Manager), Role::Manager, 2),
            Err(GuardError::Unchanged)
        );
    }

    /// The decision table over every actor role × target role × new role, for two owner counts.
    #[test]
    fn role_change_table_is_exhaustive() {
        for actor_role in Role::ALL {
            for target_role in Role::ALL {
                for new_role in Role::ALL {
                    for owners in [1u64, 2] {
                        let got = check_role_change(
                            actor("a", actor_role),
                            actor("t", target_role),
                            new_role,
                            owners,
                        );
                        let expected = if (target_role == Role::Owner || new_role == Role::Owner)
                            && actor_role != Role::Owner
                        {
                            Err(GuardError::OwnerOnly)
                        } else if target_role == new_role {
                            Err(GuardError::Unchanged)
                        } else if target_role == Role::Owner && owners == 1 {
                            Err(GuardError::LastOwner)
                        } else {
                            Ok(())
                        };
                        assert_eq!(
                            got, expected,
                            "{actor_role} changes {target_role}→{new_role} with {owners} owners"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn seat_limits_follow_the_plan() {
        assert_eq!(seat_limit(None), 1);
        assert_eq!(seat_limit(Some(Plan::Starter)), 1);
        assert_eq!(seat_limit(Some(Plan::Professional)), 5);
        assert_eq!(seat_limit(Some(Plan::Business)), 999);
    }

    #[test]
    fn organization_names_are_trimmed_and_bounded() {
        assert_eq!(
            normalize_organization_name("  Acme   Calls  "),
            Ok("Acme Calls".to_owned())
        );
        assert_eq!(
            normalize_organization_name("Ташкент Колл"),
            Ok("Ташкент Колл".to_owned())
        );
        assert!(normalize_organization_name(" a ").is_err());
        assert!(normalize_organization_name("").is_err());
        assert!(normalize_organization_name(&"x".repeat(101)).is_err());
        assert!(normalize_organization_name(&"я".repeat(100)).is_ok());
        assert!(normalize_organization_name("ab\u{7}c").is_err());
    }

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(
            normalize_email("  Bob@Example.COM "),
            Ok("bob@example.com".to_owned())
        );
        for bad in [
            "",
            "bob",
            "bob@",
            "@example.com",
            "bob@example",
            "bob@@example.com",
            "b ob@example.com",
            "bob@.com",
            "bob@example.",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_last_owner_cannot_leave() {
        assert_eq!(check_leave(Role::Owner, 1), Err(GuardError::LastOwner));
        assert_eq!(check_leave(Role::Owner, 2), Ok(()));
        for role in Role::ALL.into_iter().filter(|r| *r != Role::Owner) {
            assert_eq!(check_leave(role, 1), Ok(()));
        }
    }

    #[test]
    fn invitations_expire_after_their_ttl() {
        let now = 1_800_000_000;
        let expires = invitation_expires_at(now, DEFAULT_INVITATION_TTL_DAYS);
        assert_eq!(expires - now, 7 * 86_400);
        assert!(!is_expired(expires, now));
        assert!(!is_expired(expires, expires - 1));
        assert!(is_expired(expires, expires));
        // An invitation without a stored expiry reads as 0: expired.
        assert!(is_expired(0, now));
        assert_eq!(rfc3339(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(rfc3339(i64::MAX), None);
    }

    #[test]
    fn only_a_verified_email_counts() {
        assert_eq!(
            verified_email(Some(" Kim@Example.com"), Some(true)),
            Some("kim@example.com".to_owned())
        );
        assert_eq!(verified_email(Some("kim@example.com"), Some(false)), None);
        assert_eq!(verified_email(Some("kim@example.com"), None), None);
        assert_eq!(verified_email(None, Some(true)), None);
        assert_eq!(verified_email(Some("not an address"), Some(true)), None);
    }

    proptest! {
        #[test]
        fn unverified_tokens_never_get_an_email(email in ".{0,40}", verified in proptest::option::of(Just(false))) {
            prop_assert_eq!(verified_email(Some(&email), verified), None);
        }

        #[test]
        fn expiry_is_monotonic(now in 0i64..4_000_000_000, days in 1u32..=365, later in 0i64..40_000_000) {
            let expires = invitation_expires_at(now, days);
            prop_assert!(!is_expired(expires, now));
            prop_assert_eq!(is_expired(expires, now + later), later >= i64::from(days) * 86_400);
        }

        #[test]
        fn no_decision_ever_allows_removing_the_last_owner(actor_role in 0usize..5, new_role in 0usize..5) {
            let actor_role = Role::ALL[actor_role];
            let new_role = Role::ALL[new_role];
            let target = actor("t", Role::Owner);
            prop_assert!(check_role_change(actor("a", actor_role), target, new_role, 1).is_err());
            prop_assert!(check_removal(actor("a", actor_role), target, 1).is_err());
        }
    }
}
