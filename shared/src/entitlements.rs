//! What an organization is entitled to, from its plan, its subscription's status and the dates:
//! one pure function, [`entitlement`], that every reader uses (`GET /api/me`, the permission
//! check, the seat checks on invite and accept, the usage allowance).
//!
//! | status | entitlement |
//! |---|---|
//! | `active` | the plan (`active`) |
//! | `trialing` | the plan (`trialing`) |
//! | `past_due` | the plan until `PAST_DUE_GRACE_DAYS` after the first failed payment (`grace_period`); after it, nothing (`inactive`) |
//! | `unpaid`, `paused`, `incomplete`, `incomplete_expired`, `canceled` | nothing (`inactive`) |
//! | `none` (never subscribed), or a status that would grant the plan with no known plan | nothing (`none`) |
//!
//! "Nothing" is no paid feature, no included minutes, and the free seat limit ([`FREE_SEATS`]).

use serde::Serialize;

use crate::pricing::Plan;
use crate::store::{OrganizationRecord, PlanStatus};

/// Days a `past_due` subscription keeps its plan unless `PAST_DUE_GRACE_DAYS` says otherwise.
pub const DEFAULT_PAST_DUE_GRACE_DAYS: u32 = 7;
/// The largest `PAST_DUE_GRACE_DAYS` accepted.
pub const MAX_PAST_DUE_GRACE_DAYS: u32 = 90;
/// Seats (members plus pending invitations) of an organization entitled to no plan: the owner.
pub const FREE_SEATS: u64 = 1;

const DAY: i64 = 86_400;

/// How the organization stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntitlementStatus {
    /// A paid-up subscription: its plan.
    Active,
    /// A trial: its plan.
    Trialing,
    /// A failed payment within the grace period: its plan until `grace_ends_at`.
    GracePeriod,
    /// A subscription that lapsed: no paid feature, the free seat limit; new members refused.
    Inactive,
    /// No subscription (or none with a known plan): no paid feature, the free seat limit.
    None,
}

/// Why the organization stands where it does (shown in `GET /api/me`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntitlementReason {
    SubscriptionActive,
    SubscriptionTrialing,
    PaymentPastDue,
    GracePeriodEnded,
    SubscriptionUnpaid,
    SubscriptionPaused,
    SubscriptionIncomplete,
    SubscriptionIncompleteExpired,
    SubscriptionCanceled,
    NoSubscription,
    NoKnownPlan,
}

impl EntitlementReason {
    /// A sentence for a person: what happened and what to do.
    pub fn message(self) -> &'static str {
        match self {
            Self::SubscriptionActive => "The subscription is active.",
            Self::SubscriptionTrialing => "The subscription is in its trial.",
            Self::PaymentPastDue => {
                "A payment failed; the plan stays available until the grace period ends. Update the payment method in the billing portal."
            }
            Self::GracePeriodEnded => {
                "A payment failed and the grace period has ended; update the payment method in the billing portal to restore the plan."
            }
            Self::SubscriptionUnpaid => {
                "The subscription is unpaid after every payment retry; pay the open invoice in the billing portal to restore the plan."
            }
            Self::SubscriptionPaused => {
                "The subscription is paused (a trial ended without a payment method); add a payment method in the billing portal to resume it."
            }
            Self::SubscriptionIncomplete => {
                "The subscription's first payment has not succeeded; complete it to start the plan."
            }
            Self::SubscriptionIncompleteExpired => {
                "The subscription's first payment never succeeded; subscribe again to get a plan."
            }
            Self::SubscriptionCanceled => {
                "The subscription was canceled; subscribe again to get a plan."
            }
            Self::NoSubscription => "The organization has no subscription.",
            Self::NoKnownPlan => "The subscription's price is not one of the plans.",
        }
    }
}

/// What an organization is entitled to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entitlement {
    /// The plan whose features, limits and minutes apply; `None`: none of a paid plan.
    pub plan_granted: Option<Plan>,
    pub status: EntitlementStatus,
    pub reason: EntitlementReason,
    /// For a `past_due` subscription: when the grace period ends (or ended), Unix seconds.
    pub grace_ends_at: Option<i64>,
}

impl Entitlement {
    /// Seats (members plus pending invitations) the organization may fill: the granted plan's
    /// `maxTeamMembers`, else [`FREE_SEATS`].
    pub fn seat_limit(&self) -> u64 {
        crate::team::seat_limit(self.plan_granted)
    }

    /// A subscription that lapsed: new invitations and joins are refused (402 `plan_inactive`);
    /// existing members stay.
    pub fn is_inactive(&self) -> bool {
        self.status == EntitlementStatus::Inactive
    }
}

/// The entitlement of an organization on `plan` whose subscription is in `status`, whose current
/// stretch of failed payments began at `past_due_since` (Unix seconds; `None`: unknown), at
/// `now` (Unix seconds), with a grace period of `grace_days` for `past_due`.
///
/// A `past_due` subscription whose first failure is unknown has no grace left.
pub fn entitlement(
    plan: Option<Plan>,
    status: PlanStatus,
    past_due_since: Option<i64>,
    now: i64,
    grace_days: u32,
) -> Entitlement {
    let nothing = |status, reason| Entitlement {
        plan_granted: None,
        status,
        reason,
        grace_ends_at: None,
    };
    let (granted_status, reason, grace_ends_at) = match status {
        PlanStatus::Active => (
            EntitlementStatus::Active,
            EntitlementReason::SubscriptionActive,
            None,
        ),
        PlanStatus::Trialing => (
            EntitlementStatus::Trialing,
            EntitlementReason::SubscriptionTrialing,
            None,
        ),
        PlanStatus::PastDue => {
            let ends = past_due_since.map(|since| grace_end(since, grace_days));
            match ends {
                Some(ends) if now < ends => (
                    EntitlementStatus::GracePeriod,
                    EntitlementReason::PaymentPastDue,
                    Some(ends),
                ),
                _ => {
                    return Entitlement {
                        grace_ends_at: ends,
                        ..nothing(
                            EntitlementStatus::Inactive,
                            EntitlementReason::GracePeriodEnded,
                        )
                    };
                }
            }
        }
        PlanStatus::Unpaid => {
            return nothing(
                EntitlementStatus::Inactive,
                EntitlementReason::SubscriptionUnpaid,
            );
        }
        PlanStatus::Paused => {
            return nothing(
                EntitlementStatus::Inactive,
                EntitlementReason::SubscriptionPaused,
            );
        }
        PlanStatus::Incomplete => {
            return nothing(
                EntitlementStatus::Inactive,
                EntitlementReason::SubscriptionIncomplete,
            );
        }
        PlanStatus::IncompleteExpired => {
            return nothing(
                EntitlementStatus::Inactive,
                EntitlementReason::SubscriptionIncompleteExpired,
            );
        }
        PlanStatus::Canceled => {
            return nothing(
                EntitlementStatus::Inactive,
                EntitlementReason::SubscriptionCanceled,
            );
        }
        PlanStatus::None => {
            return nothing(EntitlementStatus::None, EntitlementReason::NoSubscription);
        }
    };
    match plan {
        Some(plan) => Entitlement {
            plan_granted: Some(plan),
            status: granted_status,
            reason,
            grace_ends_at,
        },
        None => Entitlement {
            grace_ends_at,
            ..nothing(EntitlementStatus::None, EntitlementReason::NoKnownPlan)
        },
    }
}

/// `since` plus `grace_days` days, saturating.
pub fn grace_end(since: i64, grace_days: u32) -> i64 {
    since.saturating_add(i64::from(grace_days).saturating_mul(DAY))
}

/// The entitlement of a stored organization at `now`: [`entitlement`] over its plan, status and
/// the first failed payment its billing state recorded (items written before that was recorded:
/// the current period's start, when the renewal payment failed).
pub fn of_organization(
    organization: &OrganizationRecord,
    now: i64,
    grace_days: u32,
) -> Entitlement {
    let past_due_since = organization
        .billing
        .as_ref()
        .and_then(|b| b.past_due_since.or(b.current_period_start));
    entitlement(
        organization.plan,
        organization.plan_status,
        past_due_since,
        now,
        grace_days,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL_STATUSES: [PlanStatus; 9] = [
        PlanStatus::None,
        PlanStatus::Trialing,
        PlanStatus::Active,
        PlanStatus::PastDue,
        PlanStatus::Unpaid,
        PlanStatus::Incomplete,
        PlanStatus::IncompleteExpired,
        PlanStatus::Canceled,
        PlanStatus::Paused,
    ];
    const ALL_PLANS: [Option<Plan>; 4] = [
        None,
        Some(Plan::Starter),
        Some(Plan::Professional),
        Some(Plan::Business),
    ];
    const NOW: i64 = 1_790_000_000;

    #[test]
    fn the_table() {
        use EntitlementStatus as E;
        let business = Some(Plan::Business);
        for (status, expected, granted) in [
            (PlanStatus::Active, E::Active, business),
            (PlanStatus::Trialing, E::Trialing, business),
            (PlanStatus::Unpaid, E::Inactive, None),
            (PlanStatus::Paused, E::Inactive, None),
            (PlanStatus::Incomplete, E::Inactive, None),
            (PlanStatus::IncompleteExpired, E::Inactive, None),
            (PlanStatus::Canceled, E::Inactive, None),
            (PlanStatus::None, E::None, None),
        ] {
            let e = entitlement(business, status, None, NOW, 7);
            assert_eq!(e.status, expected, "{status:?}");
            assert_eq!(e.plan_granted, granted, "{status:?}");
            assert_eq!(e.grace_ends_at, None);
        }
    }

    #[test]
    fn past_due_keeps_the_plan_for_the_grace_period_from_the_first_failure() {
        let since = NOW - 3 * DAY;
        let e = entitlement(
            Some(Plan::Business),
            PlanStatus::PastDue,
            Some(since),
            NOW,
            7,
        );
        assert_eq!(e.status, EntitlementStatus::GracePeriod);
        assert_eq!(e.reason, EntitlementReason::PaymentPastDue);
        assert_eq!(e.plan_granted, Some(Plan::Business));
        assert_eq!(e.grace_ends_at, Some(since + 7 * DAY));
        assert_eq!(e.seat_limit(), 999);
        // The last second of grace, and the first after it.
        let ends = since + 7 * DAY;
        let last = entitlement(
            Some(Plan::Business),
            PlanStatus::PastDue,
            Some(since),
            ends - 1,
            7,
        );
        assert_eq!(last.status, EntitlementStatus::GracePeriod);
        let after = entitlement(
            Some(Plan::Business),
            PlanStatus::PastDue,
            Some(since),
            ends,
            7,
        );
        assert_eq!(after.status, EntitlementStatus::Inactive);
        assert_eq!(after.reason, EntitlementReason::GracePeriodEnded);
        assert_eq!(after.plan_granted, None);
        assert_eq!(after.grace_ends_at, Some(ends));
        assert_eq!(after.seat_limit(), FREE_SEATS);
        // No grace days, or no known first failure: no grace.
        let none = entitlement(Some(Plan::Business), PlanStatus::PastDue, Some(NOW), NOW, 0);
        assert_eq!(none.status, EntitlementStatus::Inactive);
        let unknown = entitlement(Some(Plan::Business), PlanStatus::PastDue, None, NOW, 7);
        assert_eq!(unknown.status, EntitlementStatus::Inactive);
        assert_eq!(unknown.grace_ends_at, None);
    }

    #[test]
    fn a_granting_status_without_a_plan_grants_nothing() {
        for status in [PlanStatus::Active, PlanStatus::Trialing] {
            let e = entitlement(None, status, None, NOW, 7);
            assert_eq!(e.status, EntitlementStatus::None);
            assert_eq!(e.reason, EntitlementReason::NoKnownPlan);
            assert!(!e.is_inactive());
        }
    }

    #[test]
    fn seat_limits_follow_the_granted_plan() {
        let seats = |plan| entitlement(plan, PlanStatus::Active, None, NOW, 7).seat_limit();
        assert_eq!(seats(None), 1);
        assert_eq!(seats(Some(Plan::Starter)), 1);
        assert_eq!(seats(Some(Plan::Professional)), 5);
        assert_eq!(seats(Some(Plan::Business)), 999);
    }

    #[test]
    fn statuses_and_reasons_serialize_as_snake_case() {
        let e = entitlement(Some(Plan::Starter), PlanStatus::PastDue, Some(NOW), NOW, 7);
        assert_eq!(
            serde_json::to_value(e.status).ok(),
            Some(serde_json::json!("grace_period"))
        );
        assert_eq!(
            serde_json::to_value(e.reason).ok(),
            Some(serde_json::json!("payment_past_due"))
        );
    }

    fn arb_status() -> impl Strategy<Value = PlanStatus> {
        proptest::sample::select(ALL_STATUSES.to_vec())
    }

    fn arb_plan() -> impl Strategy<Value = Option<Plan>> {
        proptest::sample::select(ALL_PLANS.to_vec())
    }

    proptest! {
        /// Every status × plan × date: the plan is granted exactly when the table says so, and
        /// never a plan other than the organization's.
        #[test]
        fn every_status_plan_and_date(
            status in arb_status(),
            plan in arb_plan(),
            since in proptest::option::of(-4_000_000_000i64..4_000_000_000),
            now in -4_000_000_000i64..4_000_000_000,
            grace in 0u32..=MAX_PAST_DUE_GRACE_DAYS,
        ) {
            let e = entitlement(plan, status, since, now, grace);
            let in_grace = since.is_some_and(|s| now < s + i64::from(grace) * DAY);
            let grants = plan.is_some() && match status {
                PlanStatus::Active | PlanStatus::Trialing => true,
                PlanStatus::PastDue => in_grace,
                _ => false,
            };
            prop_assert_eq!(e.plan_granted.is_some(), grants);
            prop_assert!(e.plan_granted.is_none() || e.plan_granted == plan);
            let expected = match status {
                _ if grants && status == PlanStatus::PastDue => EntitlementStatus::GracePeriod,
                PlanStatus::Active if grants => EntitlementStatus::Active,
                PlanStatus::Trialing if grants => EntitlementStatus::Trialing,
                // A status that would grant the plan, without a known plan.
                PlanStatus::None | PlanStatus::Active | PlanStatus::Trialing => EntitlementStatus::None,
                PlanStatus::PastDue if in_grace => EntitlementStatus::None,
                _ => EntitlementStatus::Inactive,
            };
            prop_assert_eq!(e.status, expected);
            if e.plan_granted.is_none() {
                prop_assert_eq!(e.seat_limit(), FREE_SEATS);
            }
            prop_assert_eq!(
                e.grace_ends_at,
                since.filter(|_| status == PlanStatus::PastDue).map(|s| s + i64::from(grace) * DAY)
            );
            prop_assert!(!e.reason.message().is_empty());
        }

        /// Grace is monotone in time: once lost it is not regained by waiting.
        #[test]
        fn grace_never_returns(
            plan in arb_plan(),
            since in -4_000_000_000i64..4_000_000_000,
            now in -4_000_000_000i64..4_000_000_000,
            later in 0i64..100_000_000,
            grace in 0u32..=MAX_PAST_DUE_GRACE_DAYS,
        ) {
            let before = entitlement(plan, PlanStatus::PastDue, Some(since), now, grace);
            let after = entitlement(plan, PlanStatus::PastDue, Some(since), now + later, grace);
            prop_assert!(before.plan_granted.is_some() || after.plan_granted.is_none());
        }
    }
}
