//! The audit log, written as a transactional outbox: every audited change appends one
//! [`AuditEvent`] item to the same `TransactWriteItems` as the change itself, as its last item and
//! conditioned on `attribute_not_exists(PK)`. The event therefore exists exactly when the change
//! happened: a cancelled transaction writes neither (docs/decisions/audit-outbox.md).
//!
//! | item | `PK` | `SK` | holds |
//! |---|---|---|---|
//! | an event | `ORG#<org>` | `AUDIT#<id>` | [`AuditEvent`] and `ttl` (`AUDIT_RETENTION_DAYS` after it happened) |
//!
//! Event ids are `evt_` and a UUID v7 in hex: its first 12 hex digits are the Unix milliseconds of
//! the event, so the sort key orders events by time and a date range is a key condition on it.
//! Summaries (`before`/`after`) hold roles, names, types and ids, never a key, a token, a credential
//! or an email address.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::usage::OverageRecord;
use super::{
    Item, OrganizationRecord, PlanStatus, Store, StoreError, TenantId, from_item, key_map, keys,
    sdk_error, to_item,
};
use crate::entitlements::Entitlement;
use crate::pricing::{Feature, Plan, plan_has_feature};
use crate::rbac::Role;
use crate::usage::{Period, Threshold};

/// Days an audit event is kept when `AUDIT_RETENTION_DAYS` is unset.
pub const DEFAULT_AUDIT_RETENTION_DAYS: u32 = 400;
/// The range `AUDIT_RETENTION_DAYS` accepts.
pub const AUDIT_RETENTION_DAYS_RANGE: std::ops::RangeInclusive<u32> = 1..=3650;

const SORT_PREFIX: &str = "AUDIT#";
const ID_PREFIX: &str = "evt_";

/// Every audited change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "member.invited")]
    MemberInvited,
    #[serde(rename = "member.joined")]
    MemberJoined,
    #[serde(rename = "member.declined")]
    MemberDeclined,
    #[serde(rename = "member.left")]
    MemberLeft,
    #[serde(rename = "member.role_changed")]
    MemberRoleChanged,
    #[serde(rename = "member.removed")]
    MemberRemoved,
    #[serde(rename = "invitation.revoked")]
    InvitationRevoked,
    #[serde(rename = "organization.created")]
    OrganizationCreated,
    #[serde(rename = "organization.updated")]
    OrganizationUpdated,
    #[serde(rename = "organization.deletion_started")]
    OrganizationDeletionStarted,
    #[serde(rename = "integration.created")]
    IntegrationCreated,
    #[serde(rename = "integration.deleted")]
    IntegrationDeleted,
    #[serde(rename = "api_key.created")]
    ApiKeyCreated,
    #[serde(rename = "api_key.revoked")]
    ApiKeyRevoked,
    #[serde(rename = "webhook_endpoint.created")]
    WebhookEndpointCreated,
    #[serde(rename = "webhook_endpoint.deleted")]
    WebhookEndpointDeleted,
    #[serde(rename = "invitation.expired")]
    InvitationExpired,
    #[serde(rename = "organization.deleted")]
    OrganizationDeleted,
    #[serde(rename = "key_ring.rotated")]
    KeyRingRotated,
    #[serde(rename = "plan.changed")]
    PlanChanged,
    #[serde(rename = "usage.threshold_crossed")]
    UsageThresholdCrossed,
    #[serde(rename = "overage.billed")]
    OverageBilled,
}

impl EventType {
    pub const ALL: [EventType; 22] = [
        EventType::MemberInvited,
        EventType::MemberJoined,
        EventType::MemberDeclined,
        EventType::MemberLeft,
        EventType::MemberRoleChanged,
        EventType::MemberRemoved,
        EventType::InvitationRevoked,
        EventType::OrganizationCreated,
        EventType::OrganizationUpdated,
        EventType::OrganizationDeletionStarted,
        EventType::IntegrationCreated,
        EventType::IntegrationDeleted,
        EventType::ApiKeyCreated,
        EventType::ApiKeyRevoked,
        EventType::WebhookEndpointCreated,
        EventType::WebhookEndpointDeleted,
        EventType::InvitationExpired,
        EventType::OrganizationDeleted,
        EventType::KeyRingRotated,
        EventType::PlanChanged,
        EventType::UsageThresholdCrossed,
        EventType::OverageBilled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::MemberInvited => "member.invited",
            EventType::MemberJoined => "member.joined",
            EventType::MemberDeclined => "member.declined",
            EventType::MemberLeft => "member.left",
            EventType::MemberRoleChanged => "member.role_changed",
            EventType::MemberRemoved => "member.removed",
            EventType::InvitationRevoked => "invitation.revoked",
            EventType::OrganizationCreated => "organization.created",
            EventType::OrganizationUpdated => "organization.updated",
            EventType::OrganizationDeletionStarted => "organization.deletion_started",
            EventType::IntegrationCreated => "integration.created",
            EventType::IntegrationDeleted => "integration.deleted",
            EventType::ApiKeyCreated => "api_key.created",
            EventType::ApiKeyRevoked => "api_key.revoked",
            EventType::WebhookEndpointCreated => "webhook_endpoint.created",
            EventType::WebhookEndpointDeleted => "webhook_endpoint.deleted",
            EventType::InvitationExpired => "invitation.expired",
            EventType::OrganizationDeleted => "organization.deleted",
            EventType::KeyRingRotated => "key_ring.rotated",
            EventType::PlanChanged => "plan.changed",
            EventType::UsageThresholdCrossed => "usage.threshold_crossed",
            EventType::OverageBilled => "overage.billed",
        }
    }

    /// The type named `name`, if it is one.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// What kind of principal made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorType {
    User,
    ApiKey,
    Stripe,
    System,
    Service,
}

/// Who made a change: a user id, an API key id, or `stripe`/`system`/`service`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditActor {
    #[serde(rename = "type")]
    pub kind: ActorType,
    pub id: String,
}

impl AuditActor {
    pub fn user(user_id: &str) -> Self {
        Self {
            kind: ActorType::User,
            id: user_id.to_owned(),
        }
    }

    pub fn api_key(key_id: &str) -> Self {
        Self {
            kind: ActorType::ApiKey,
            id: key_id.to_owned(),
        }
    }

    pub fn stripe() -> Self {
        Self {
            kind: ActorType::Stripe,
            id: "stripe".to_owned(),
        }
    }

    pub fn system() -> Self {
        Self {
            kind: ActorType::System,
            id: "system".to_owned(),
        }
    }

    pub fn service() -> Self {
        Self {
            kind: ActorType::Service,
            id: "service".to_owned(),
        }
    }
}

/// What a change was made to: `member`, `invitation`, `organization`, `integration`, `api_key`
/// or `webhook_endpoint`, and its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditTarget {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

impl AuditTarget {
    fn new(kind: &str, id: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            id: id.to_owned(),
        }
    }
}

/// A state summary: field name to value, for roles, names, types and ids only.
pub type Summary = BTreeMap<String, String>;

fn summary<const N: usize>(fields: [(&str, &str); N]) -> Option<Summary> {
    Some(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

/// One audited change, as stored and as `GET /api/audit` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// `evt_` and a UUID v7: sorts by the time it was made.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// RFC 3339.
    pub occurred_at: String,
    pub actor: AuditActor,
    pub organization_id: String,
    pub target: AuditTarget,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Summary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Summary>,
}

impl AuditEvent {
    fn new(
        kind: EventType,
        tenant: &TenantId,
        actor: &AuditActor,
        target: AuditTarget,
        before: Option<Summary>,
        after: Option<Summary>,
    ) -> Self {
        Self {
            id: new_event_id(),
            kind,
            occurred_at: super::now_rfc3339(),
            actor: actor.clone(),
            organization_id: tenant.as_str().to_owned(),
            target,
            before,
            after,
        }
    }
}

/// `t` as RFC 3339 in UTC, as [`Period::key`] writes a period's start.
fn rfc3339(t: time::OffsetDateTime) -> String {
    Period { start: t, end: t }.key()
}

fn new_event_id() -> String {
    format!("{ID_PREFIX}{}", uuid::Uuid::now_v7().simple())
}

/// What a billing change is audited by: the subscription's plan and status, and what they entitle
/// the organization to (its seat limit, API access). `plan.changed` is written only when this
/// differs before and after a webhook's change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanSummary {
    /// The subscription's plan (kept after it lapses); `None`: none, or a price of no plan.
    pub plan: Option<Plan>,
    pub status: PlanStatus,
    /// Members plus pending invitations allowed (999: unlimited).
    pub seats: u64,
    pub api_access: bool,
}

impl PlanSummary {
    /// `plan` in `status`, granting what `entitlement` (of that plan and status) grants.
    pub fn new(plan: Option<Plan>, status: PlanStatus, entitlement: &Entitlement) -> Self {
        Self {
            plan,
            status,
            seats: entitlement.seat_limit(),
            api_access: entitlement
                .plan_granted
                .is_some_and(|granted| plan_has_feature(granted, Feature::ApiAccess)),
        }
    }

    /// How `organization` stands at `now` (Unix seconds) with a `past_due` grace period of
    /// `grace_days`: its subscription's plan (the stored plan before any subscription) and status.
    pub fn of_organization(organization: &OrganizationRecord, now: i64, grace_days: u32) -> Self {
        let plan = organization
            .billing
            .as_ref()
            .map_or(organization.plan, |billing| billing.plan);
        Self::new(
            plan,
            organization.plan_status,
            &crate::entitlements::of_organization(organization, now, grace_days),
        )
    }

    fn summary(&self) -> Option<Summary> {
        summary([
            ("plan", self.plan.map_or("none", Plan::as_str)),
            ("status", self.status.as_str()),
            ("seats", &self.seats.to_string()),
            ("apiAccess", if self.api_access { "true" } else { "false" }),
        ])
    }
}

/// What a key rotation re-encrypted: an integration's credentials or a webhook endpoint's
/// signing secret (the target of its `key_ring.rotated` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotatedSecret {
    IntegrationCredentials,
    WebhookSigningSecret,
}

impl RotatedSecret {
    pub fn kind(self) -> &'static str {
        match self {
            RotatedSecret::IntegrationCredentials => "integration",
            RotatedSecret::WebhookSigningSecret => "webhook_endpoint",
        }
    }
}

/// The events of each change: one pure function per change, so what an event says is tested
/// without a table.
pub mod events {
    use super::*;

    /// `invitation_id` invited as `role`. The address is not recorded.
    pub fn member_invited(
        tenant: &TenantId,
        actor: &AuditActor,
        invitation_id: &str,
        role: Role,
    ) -> AuditEvent {
        AuditEvent::new(
            EventType::MemberInvited,
            tenant,
            actor,
            AuditTarget::new("invitation", invitation_id),
            None,
            summary([("role", role.as_str())]),
        )
    }

    /// `user_id` accepted `invitation_id` and joined as `role`.
    pub fn member_joined(
        tenant: &TenantId,
        user_id: &str,
        invitation_id: &str,
        role: Role,
    ) -> AuditEvent {
        AuditEvent::new(
            EventType::MemberJoined,
            tenant,
            &AuditActor::user(user_id),
            AuditTarget::new("member", user_id),
            summary([("invitationId", invitation_id)]),
            summary([("role", role.as_str())]),
        )
    }

    /// The addressee (`user_id`) declined `invitation_id` for `role`.
    pub fn member_declined(
        tenant: &TenantId,
        user_id: &str,
        invitation_id: &str,
        role: Role,
    ) -> AuditEvent {
        AuditEvent::new(
            EventType::MemberDeclined,
            tenant,
            &AuditActor::user(user_id),
            AuditTarget::new("invitation", invitation_id),
            summary([("role", role.as_str())]),
            None,
        )
    }

    /// `user_id` left, holding `role`.
    pub fn member_left(tenant: &TenantId, user_id: &str, role: Role) -> AuditEvent {
        AuditEvent::new(
            EventType::MemberLeft,
            tenant,
            &AuditActor::user(user_id),
            AuditTarget::new("member", user_id),
            summary([("role", role.as_str())]),
            None,
        )
    }

    /// `actor` removed `user_id`, who held `role`.
    pub fn member_removed(
        tenant: &TenantId,
        actor: &AuditActor,
        user_id: &str,
        role: Role,
    ) -> AuditEvent {
        AuditEvent::new(
            EventType::MemberRemoved,
            tenant,
            actor,
            AuditTarget::new("member", user_id),
            summary([("role", role.as_str())]),
            None,
        )
    }

    /// `actor` changed `user_id`'s role from `before` to `after`.
    pub fn member_role_changed(
        tenant: &TenantId,
        actor: &AuditActor,
        user_id: &str,
        before: Role,
        after: Role,
    ) -> AuditEvent {
        AuditEvent::new(
            EventType::MemberRoleChanged,
            tenant,
            actor,
            AuditTarget::new("member", user_id),
            summary([("role", before.as_str())]),
            summary([("role", after.as_str())]),
        )
    }

    /// `actor` revoked the pending `invitation_id` for `role`.
    pub fn invitation_revoked(
        tenant: &TenantId,
        actor: &AuditActor,
        invitation_id: &str,
        role: Role,
    ) -> AuditEvent {
        AuditEvent::new(
            EventType::InvitationRevoked,
            tenant,
            actor,
            AuditTarget::new("invitation", invitation_id),
            summary([("role", role.as_str())]),
            None,
        )
    }

    /// `owner_id` created the organization named `name`.
    pub fn organization_created(tenant: &TenantId, owner_id: &str, name: &str) -> AuditEvent {
        AuditEvent::new(
            EventType::OrganizationCreated,
            tenant,
            &AuditActor::user(owner_id),
            AuditTarget::new("organization", tenant.as_str()),
            None,
            summary([("name", name)]),
        )
    }

    /// `actor` renamed the organization and/or changed its billing email. The summaries name
    /// what changed: the name's old and new value, and `billingEmail` only as `set` or `cleared`
    /// (an address is personal data, not an audit detail).
    pub fn organization_updated(
        tenant: &TenantId,
        actor: &AuditActor,
        name: Option<(&str, &str)>,
        billing_email: Option<bool>,
    ) -> AuditEvent {
        let mut before = Summary::new();
        let mut after = Summary::new();
        if let Some((old, new)) = name {
            before.insert("name".to_owned(), old.to_owned());
            after.insert("name".to_owned(), new.to_owned());
        }
        if let Some(set) = billing_email {
            after.insert(
                "billingEmail".to_owned(),
                if set { "set" } else { "cleared" }.to_owned(),
            );
        }
        AuditEvent::new(
            EventType::OrganizationUpdated,
            tenant,
            actor,
            AuditTarget::new("organization", tenant.as_str()),
            (!before.is_empty()).then_some(before),
            (!after.is_empty()).then_some(after),
        )
    }

    /// `actor` deleted the organization: its deletion job starts (the organization reads as gone at
    /// once; its items, this event included, expire after the deleted organization's retention).
    pub fn organization_deletion_started(tenant: &TenantId, actor: &AuditActor) -> AuditEvent {
        AuditEvent::new(
            EventType::OrganizationDeletionStarted,
            tenant,
            actor,
            AuditTarget::new("organization", tenant.as_str()),
            None,
            None,
        )
    }

    /// `actor` created integration `id` of `kind` named `name`. Its credentials are not recorded.
    pub fn integration_created(
        tenant: &TenantId,
        actor: &AuditActor,
        id: &str,
        kind: &str,
        name: &str,
    ) -> AuditEvent {
        AuditEvent::new(
            EventType::IntegrationCreated,
            tenant,
            actor,
            AuditTarget::new("integration", id),
            None,
            summary([("type", kind), ("name", name)]),
        )
    }

    /// `actor` deleted integration `id`.
    pub fn integration_deleted(tenant: &TenantId, actor: &AuditActor, id: &str) -> AuditEvent {
        AuditEvent::new(
            EventType::IntegrationDeleted,
            tenant,
            actor,
            AuditTarget::new("integration", id),
            None,
            None,
        )
    }

    /// `actor` created API key `id` named `name` with `role`. The key and its digest are not
    /// recorded.
    pub fn api_key_created(
        tenant: &TenantId,
        actor: &AuditActor,
        id: &str,
        name: &str,
        role: Role,
    ) -> AuditEvent {
        AuditEvent::new(
            EventType::ApiKeyCreated,
            tenant,
            actor,
            AuditTarget::new("api_key", id),
            None,
            summary([("name", name), ("role", role.as_str())]),
        )
    }

    /// `actor` revoked API key `id`.
    pub fn api_key_revoked(tenant: &TenantId, actor: &AuditActor, id: &str) -> AuditEvent {
        AuditEvent::new(
            EventType::ApiKeyRevoked,
            tenant,
            actor,
            AuditTarget::new("api_key", id),
            None,
            None,
        )
    }

    /// `actor` registered webhook endpoint `id` at `url` for `event_types` (recorded joined by
    /// `,`). Only the URL's origin (`https://host[:port]`) is recorded: its path and query may
    /// carry the receiver's own token (`https://hooks.example.com/in/T0KEN`), and the audit log is
    /// read by OWNER and ADMIN API keys (which may not see or manage endpoints) and delivered to
    /// every endpoint that wants this type. Its signing secret is not recorded, plain or
    /// encrypted.
    pub fn webhook_endpoint_created(
        tenant: &TenantId,
        actor: &AuditActor,
        id: &str,
        url: &str,
        event_types: &[String],
    ) -> AuditEvent {
        let origin = url::Url::parse(url)
            .map(|url| url.origin().ascii_serialization())
            .unwrap_or_else(|_| "null".to_owned());
        AuditEvent::new(
            EventType::WebhookEndpointCreated,
            tenant,
            actor,
            AuditTarget::new("webhook_endpoint", id),
            None,
            summary([("origin", &origin), ("eventTypes", &event_types.join(","))]),
        )
    }

    /// `actor` deleted webhook endpoint `id`.
    pub fn webhook_endpoint_deleted(tenant: &TenantId, actor: &AuditActor, id: &str) -> AuditEvent {
        AuditEvent::new(
            EventType::WebhookEndpointDeleted,
            tenant,
            actor,
            AuditTarget::new("webhook_endpoint", id),
            None,
            None,
        )
    }

    /// The invitation `invitation_id` for `role` expired unaccepted and was released (its seat
    /// freed) by the system.
    pub fn invitation_expired(tenant: &TenantId, invitation_id: &str, role: Role) -> AuditEvent {
        AuditEvent::new(
            EventType::InvitationExpired,
            tenant,
            &AuditActor::system(),
            AuditTarget::new("invitation", invitation_id),
            summary([("role", role.as_str())]),
            None,
        )
    }

    /// The organization's deletion job finished: `members_detached` memberships ended and
    /// `items_expired` items given the deleted organization's `ttl` (this event expires with them).
    pub fn organization_deleted(
        tenant: &TenantId,
        members_detached: u64,
        items_expired: u64,
    ) -> AuditEvent {
        AuditEvent::new(
            EventType::OrganizationDeleted,
            tenant,
            &AuditActor::system(),
            AuditTarget::new("organization", tenant.as_str()),
            None,
            summary([
                ("membersDetached", &members_detached.to_string()),
                ("itemsExpired", &items_expired.to_string()),
            ]),
        )
    }

    /// Key rotation re-encrypted integration `integration_id`'s credentials from key `old_kid`
    /// (`legacy` for the seed's format) to `new_kid`. Key ids only: never a key or a ciphertext.
    pub fn key_ring_rotated(
        tenant: &TenantId,
        target: RotatedSecret,
        id: &str,
        old_kid: &str,
        new_kid: &str,
    ) -> AuditEvent {
        AuditEvent::new(
            EventType::KeyRingRotated,
            tenant,
            &AuditActor::system(),
            AuditTarget::new(target.kind(), id),
            summary([("keyId", old_kid)]),
            summary([("keyId", new_kid)]),
        )
    }

    /// A Stripe webhook changed the organization's plan, status or entitlements from `before` to
    /// `after` (the caller writes it only when they differ).
    pub fn plan_changed(
        tenant: &TenantId,
        before: &PlanSummary,
        after: &PlanSummary,
    ) -> AuditEvent {
        AuditEvent::new(
            EventType::PlanChanged,
            tenant,
            &AuditActor::stripe(),
            AuditTarget::new("organization", tenant.as_str()),
            before.summary(),
            after.summary(),
        )
    }

    /// Usage of `period` reached `threshold` (80 or 100 %) of `included` minutes, at `minutes`.
    pub fn usage_threshold_crossed(
        tenant: &TenantId,
        threshold: Threshold,
        period: &Period,
        minutes: u64,
        included: u64,
    ) -> AuditEvent {
        AuditEvent::new(
            EventType::UsageThresholdCrossed,
            tenant,
            &AuditActor::system(),
            AuditTarget::new("organization", tenant.as_str()),
            None,
            summary([
                ("threshold", threshold.as_str()),
                ("periodStart", &period.key()),
                ("periodEnd", &rfc3339(period.end)),
                ("minutes", &minutes.to_string()),
                ("minutesIncluded", &included.to_string()),
            ]),
        )
    }

    /// The overage of the closed `period` was billed: `overage_minutes` (of `minutes` used) for
    /// `amount_cents`, as invoice item `invoice_item_id` on invoice `invoice_id`.
    pub fn overage_billed(
        tenant: &TenantId,
        period: &Period,
        record: &OverageRecord,
        invoice_item_id: &str,
    ) -> AuditEvent {
        AuditEvent::new(
            EventType::OverageBilled,
            tenant,
            &AuditActor::system(),
            AuditTarget::new("organization", tenant.as_str()),
            None,
            summary([
                ("periodStart", &period.key()),
                ("periodEnd", &rfc3339(period.end)),
                ("minutes", &record.minutes.to_string()),
                ("overageMinutes", &record.overage_minutes.to_string()),
                ("amountCents", &record.amount_cents.to_string()),
                ("invoiceId", &record.invoice_id),
                ("invoiceItemId", invoice_item_id),
            ]),
        )
    }
}

/// The stored form: the event and the Unix second DynamoDB's TTL removes it at.
#[derive(Serialize)]
struct StoredEvent<'a> {
    #[serde(flatten)]
    event: &'a AuditEvent,
    ttl: i64,
}

/// The key of `event` in its organization's partition.
pub fn audit_key(tenant: &TenantId, event_id: &str) -> (String, String) {
    (
        keys::tenant_partition(tenant),
        format!("{SORT_PREFIX}{event_id}"),
    )
}

/// What a listing asks for; every filter optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub kind: Option<EventType>,
    /// An actor id (user id, API key id, `stripe`, `system`, `service`).
    pub actor: Option<String>,
    /// Unix milliseconds, inclusive.
    pub from_ms: Option<u64>,
    /// Unix milliseconds, inclusive.
    pub to_ms: Option<u64>,
}

/// One page of events, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    /// Opaque: pass back as `cursor` with the same filters; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// The sort-key range of a date filter: the lowest and highest `SK` an event made from `from_ms`
/// to `to_ms` (inclusive) can have. A UUID v7's first 12 hex digits are its milliseconds, and `g`
/// sorts after every hex digit.
fn sort_key_range(from_ms: Option<u64>, to_ms: Option<u64>) -> (String, String) {
    let low = match from_ms {
        Some(ms) => format!("{SORT_PREFIX}{ID_PREFIX}{:012x}", ms.min(0xffff_ffff_ffff)),
        None => format!("{SORT_PREFIX}{ID_PREFIX}"),
    };
    let high = match to_ms {
        Some(ms) => format!("{SORT_PREFIX}{ID_PREFIX}{:012x}g", ms.min(0xffff_ffff_ffff)),
        None => format!("{SORT_PREFIX}{ID_PREFIX}g"),
    };
    (low, high)
}

fn encode_cursor(sort_key: &str) -> String {
    URL_SAFE_NO_PAD.encode(sort_key.as_bytes())
}

/// A cursor carries only a sort key of an audit event; the partition always comes from the
/// caller's tenant, so another organization's cursor reads nothing of it.
fn decode_cursor(cursor: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let sort_key = String::from_utf8(bytes).ok()?;
    sort_key
        .strip_prefix(SORT_PREFIX)
        .and_then(|id| id.strip_prefix(ID_PREFIX))
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(sort_key)
}

impl Store {
    /// The transaction item that writes `event` into `tenant`'s partition, expiring after the
    /// store's retention. Appended last to a change's transaction, so the indexes of the change's
    /// own items (and their cancellation reasons) stay as they were.
    pub(crate) fn audit_put(
        &self,
        tenant: &TenantId,
        event: &AuditEvent,
    ) -> Result<TransactWriteItem, StoreError> {
        self.audit_put_expiring(tenant, event, None)
    }

    /// As [`Store::audit_put`], for an event about items that expire at `expires_at` (Unix
    /// seconds; a deleted organization's): the event expires then too, if that is before the
    /// store's retention, so it never outlives what it describes.
    pub(crate) fn audit_put_expiring(
        &self,
        tenant: &TenantId,
        event: &AuditEvent,
        expires_at: Option<i64>,
    ) -> Result<TransactWriteItem, StoreError> {
        if event.organization_id != tenant.as_str() {
            return Err(StoreError::Build(
                "an audit event must name the organization it is written to".to_owned(),
            ));
        }
        let retained = time::OffsetDateTime::now_utc().unix_timestamp()
            + i64::from(self.audit_retention_days) * 86_400;
        let ttl = expires_at.map_or(retained, |at| at.min(retained));
        let item = to_item(
            "AUDIT",
            audit_key(tenant, &event.id),
            &StoredEvent { event, ttl },
        )?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .map_err(StoreError::build)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// One page of `tenant`'s audit events, newest first, with one eventually consistent Query
    /// (half the read capacity; an event committed a moment ago may appear on the next read): the
    /// date range is a key condition on the sort key; type and actor are a filter expression, applied after `limit`
    /// items were read, so a filtered page may hold fewer than `limit` events (and none) while a
    /// `next_cursor` remains. `cursor` not made by this listing: [`StoreError::NotFound`].
    pub async fn list_audit(
        &self,
        tenant: &TenantId,
        query: &AuditQuery,
        cursor: Option<&str>,
        limit: i32,
    ) -> Result<AuditPage, StoreError> {
        let (low, high) = sort_key_range(query.from_ms, query.to_ms);
        let start = match cursor {
            Some(cursor) => {
                let sort_key = decode_cursor(cursor).ok_or(StoreError::NotFound)?;
                // DynamoDB refuses a start key outside the key condition's range.
                if sort_key < low || sort_key > high {
                    return Err(StoreError::NotFound);
                }
                Some(key_map((keys::tenant_partition(tenant), sort_key)))
            }
            None => None,
        };
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND SK BETWEEN :low AND :high")
            .expression_attribute_values(":pk", AttributeValue::S(keys::tenant_partition(tenant)))
            .expression_attribute_values(":low", AttributeValue::S(low))
            .expression_attribute_values(":high", AttributeValue::S(high))
            .scan_index_forward(false)
            .limit(limit)
            .set_exclusive_start_key(start);
        let mut filters = Vec::new();
        if let Some(kind) = query.kind {
            filters.push("#type = :type");
            request = request
                .expression_attribute_names("#type", "type")
                .expression_attribute_values(":type", AttributeValue::S(kind.as_str().to_owned()));
        }
        if let Some(actor) = &query.actor {
            filters.push("actor.#id = :actor");
            request = request
                .expression_attribute_names("#id", "id")
                .expression_attribute_values(":actor", AttributeValue::S(actor.clone()));
        }
        if !filters.is_empty() {
            request = request.filter_expression(filters.join(" AND "));
        }
        let output = request.send().await.map_err(|e| sdk_error("Query", e))?;
        let events = output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(from_item::<AuditEvent>)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor =
            output
                .last_evaluated_key
                .as_ref()
                .and_then(|key: &Item| match key.get("SK") {
                    Some(AttributeValue::S(sk)) => Some(encode_cursor(sk)),
                    _ => None,
                });
        Ok(AuditPage {
            events,
            next_cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        TenantId("org_1".to_owned())
    }

    #[test]
    fn event_types_round_trip_through_their_names() {
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.as_str()), Some(kind));
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, serde_json::json!(kind.as_str()));
        }
        assert_eq!(EventType::parse("member.unknown"), None);
    }

    #[test]
    fn ids_sort_by_time_and_fall_in_their_date_range() {
        let first = events::member_left(&tenant(), "usr_1", Role::Viewer);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = events::member_left(&tenant(), "usr_1", Role::Viewer);
        assert!(first.id < second.id);
        let ms = u64::from_str_radix(&first.id[ID_PREFIX.len()..ID_PREFIX.len() + 12], 16).unwrap();
        let sk = audit_key(&tenant(), &first.id).1;
        let (low, high) = sort_key_range(Some(ms), Some(ms));
        assert!(low <= sk && sk <= high, "{low} {sk} {high}");
        let (low, _) = sort_key_range(Some(ms + 1), None);
        assert!(sk < low);
        let (_, high) = sort_key_range(None, Some(ms - 1));
        assert!(sk > high);
    }

    #[test]
    fn role_change_records_both_roles_and_the_actor() {
        let actor = AuditActor::user("usr_admin");
        let event =
            events::member_role_changed(&tenant(), &actor, "usr_2", Role::Viewer, Role::Admin);
        assert_eq!(event.kind, EventType::MemberRoleChanged);
        assert_eq!(event.actor, actor);
        assert_eq!(event.organization_id, "org_1");
        assert_eq!(event.target, AuditTarget::new("member", "usr_2"));
        assert_eq!(event.before, summary([("role", "VIEWER")]));
        assert_eq!(event.after, summary([("role", "ADMIN")]));
    }

    #[test]
    fn organization_update_names_only_what_changed_and_no_address() {
        let actor = AuditActor::api_key("ak_1");
        let event =
            events::organization_updated(&tenant(), &actor, Some(("Old", "New")), Some(true));
        assert_eq!(event.before, summary([("name", "Old")]));
        assert_eq!(
            event.after,
            summary([("name", "New"), ("billingEmail", "set")])
        );
        let event = events::organization_updated(&tenant(), &actor, None, Some(false));
        assert_eq!(event.before, None);
        assert_eq!(event.after, summary([("billingEmail", "cleared")]));
    }

    #[test]
    fn joining_and_declining_are_the_users_own_acts() {
        let joined = events::member_joined(&tenant(), "usr_3", "inv_1", Role::Manager);
        assert_eq!(joined.actor, AuditActor::user("usr_3"));
        assert_eq!(joined.after, summary([("role", "MANAGER")]));
        let declined = events::member_declined(&tenant(), "usr_3", "inv_1", Role::Manager);
        assert_eq!(declined.target, AuditTarget::new("invitation", "inv_1"));
        assert_eq!(declined.after, None);
    }

    #[test]
    fn system_events_name_the_system_and_what_changed() {
        let expired = events::invitation_expired(&tenant(), "inv_1", Role::Admin);
        assert_eq!(expired.kind, EventType::InvitationExpired);
        assert_eq!(expired.actor, AuditActor::system());
        assert_eq!(expired.target, AuditTarget::new("invitation", "inv_1"));
        assert_eq!(expired.before, summary([("role", "ADMIN")]));
        assert_eq!(expired.after, None);

        let deleted = events::organization_deleted(&tenant(), 3, 41);
        assert_eq!(deleted.kind, EventType::OrganizationDeleted);
        assert_eq!(deleted.actor, AuditActor::system());
        assert_eq!(deleted.target, AuditTarget::new("organization", "org_1"));
        assert_eq!(deleted.before, None);
        assert_eq!(
            deleted.after,
            summary([("membersDetached", "3"), ("itemsExpired", "41")])
        );

        let rotated = events::key_ring_rotated(
            &tenant(),
            RotatedSecret::IntegrationCredentials,
            "int_1",
            "legacy",
            "k2",
        );
        assert_eq!(rotated.kind, EventType::KeyRingRotated);
        assert_eq!(rotated.actor, AuditActor::system());
        assert_eq!(rotated.target, AuditTarget::new("integration", "int_1"));
        assert_eq!(rotated.before, summary([("keyId", "legacy")]));
        assert_eq!(rotated.after, summary([("keyId", "k2")]));
    }

    fn november() -> Period {
        Period {
            start: time::macros::datetime!(2026-11-01 0:00 UTC),
            end: time::macros::datetime!(2026-12-01 0:00 UTC),
        }
    }

    #[test]
    fn a_plan_change_summarizes_plan_status_and_entitlement_on_both_sides() {
        use crate::entitlements::entitlement;
        let none = PlanSummary::new(
            None,
            PlanStatus::None,
            &entitlement(None, PlanStatus::None, None, 0, 7),
        );
        let business = PlanSummary::new(
            Some(Plan::Business),
            PlanStatus::Active,
            &entitlement(Some(Plan::Business), PlanStatus::Active, None, 0, 7),
        );
        let canceled = PlanSummary::new(
            Some(Plan::Business),
            PlanStatus::Canceled,
            &entitlement(None, PlanStatus::Canceled, None, 0, 7),
        );
        let event = events::plan_changed(&tenant(), &none, &business);
        assert_eq!(event.kind, EventType::PlanChanged);
        assert_eq!(event.actor, AuditActor::stripe());
        assert_eq!(event.target, AuditTarget::new("organization", "org_1"));
        assert_eq!(
            event.before,
            summary([
                ("plan", "none"),
                ("status", "none"),
                ("seats", "1"),
                ("apiAccess", "false")
            ])
        );
        assert_eq!(
            event.after,
            summary([
                ("plan", "BUSINESS"),
                ("status", "active"),
                ("seats", "999"),
                ("apiAccess", "true")
            ])
        );
        let event = events::plan_changed(&tenant(), &business, &canceled);
        assert_eq!(
            event.after,
            summary([
                ("plan", "BUSINESS"),
                ("status", "canceled"),
                ("seats", "1"),
                ("apiAccess", "false")
            ])
        );
        assert_ne!(business, canceled);
        assert_eq!(
            business,
            PlanSummary::new(
                Some(Plan::Business),
                PlanStatus::Active,
                &entitlement(Some(Plan::Business), PlanStatus::Active, None, 99, 7),
            ),
            "the same plan and status summarize the same: no event"
        );
    }

    #[test]
    fn usage_events_carry_the_period_and_the_figures() {
        let crossed =
            events::usage_threshold_crossed(&tenant(), Threshold::Warning80, &november(), 400, 500);
        assert_eq!(crossed.kind, EventType::UsageThresholdCrossed);
        assert_eq!(crossed.actor, AuditActor::system());
        assert_eq!(crossed.target, AuditTarget::new("organization", "org_1"));
        assert_eq!(crossed.before, None);
        assert_eq!(
            crossed.after,
            summary([
                ("threshold", "80"),
                ("periodStart", "2026-11-01T00:00:00Z"),
                ("periodEnd", "2026-12-01T00:00:00Z"),
                ("minutes", "400"),
                ("minutesIncluded", "500")
            ])
        );
        let record = OverageRecord {
            period_key: november().key(),
            minutes: 620,
            overage_minutes: 120,
            amount_cents: 1200,
            invoice_id: "in_1".into(),
            invoice_item_id: None,
            state: "pending".into(),
            frozen_at: "2026-12-01T00:00:01Z".into(),
        };
        let billed = events::overage_billed(&tenant(), &november(), &record, "ii_1");
        assert_eq!(billed.kind, EventType::OverageBilled);
        assert_eq!(billed.actor, AuditActor::system());
        assert_eq!(billed.target, AuditTarget::new("organization", "org_1"));
        assert_eq!(
            billed.after,
            summary([
                ("periodStart", "2026-11-01T00:00:00Z"),
                ("periodEnd", "2026-12-01T00:00:00Z"),
                ("minutes", "620"),
                ("overageMinutes", "120"),
                ("amountCents", "1200"),
                ("invoiceId", "in_1"),
                ("invoiceItemId", "ii_1")
            ])
        );
    }

    #[test]
    fn cursors_accept_only_audit_sort_keys() {
        let event = events::api_key_revoked(&tenant(), &AuditActor::user("usr_1"), "ak_1");
        let sk = audit_key(&tenant(), &event.id).1;
        assert_eq!(decode_cursor(&encode_cursor(&sk)), Some(sk));
        assert_eq!(decode_cursor(&encode_cursor("MEMBER#usr_1")), None);
        assert_eq!(decode_cursor(&encode_cursor("AUDIT#evt_zz")), None);
        assert_eq!(decode_cursor("not base64!"), None);
    }

    #[test]
    fn webhook_endpoint_events_name_the_origin_and_types_only() {
        let actor = AuditActor::user("usr_1");
        let types = vec!["member.invited".to_owned(), "api_key.created".to_owned()];
        let event = events::webhook_endpoint_created(
            &tenant(),
            &actor,
            "we_1",
            "https://hooks.example.com:8443/in/T0KEN-PATH?token=T0KEN-QUERY#T0KEN-FRAGMENT",
            &types,
        );
        assert_eq!(event.kind, EventType::WebhookEndpointCreated);
        assert_eq!(event.target, AuditTarget::new("webhook_endpoint", "we_1"));
        assert_eq!(event.before, None);
        assert_eq!(
            event.after,
            summary([
                ("origin", "https://hooks.example.com:8443"),
                ("eventTypes", "member.invited,api_key.created"),
            ])
        );
        assert!(!format!("{event:?}").contains("T0KEN"));
        let plain = events::webhook_endpoint_created(
            &tenant(),
            &actor,
            "we_2",
            "https://hooks.example.com/",
            &types,
        );
        assert_eq!(plain.after.unwrap()["origin"], "https://hooks.example.com");
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "webhook_endpoint.created");
        let deleted = events::webhook_endpoint_deleted(&tenant(), &actor, "we_1");
        assert_eq!(deleted.kind.as_str(), "webhook_endpoint.deleted");
        assert_eq!(deleted.target, AuditTarget::new("webhook_endpoint", "we_1"));
        assert_eq!((deleted.before, deleted.after), (None, None));
    }

    #[test]
    fn serialized_event_has_the_documented_shape() {
        let event = events::api_key_created(
            &tenant(),
            &AuditActor::user("usr_1"),
            "ak_1",
            "ci",
            Role::Viewer,
        );
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "api_key.created");
        assert_eq!(
            json["actor"],
            serde_json::json!({"type": "user", "id": "usr_1"})
        );
        assert_eq!(
            json["target"],
            serde_json::json!({"type": "api_key", "id": "ak_1"})
        );
        assert_eq!(
            json["after"],
            serde_json::json!({"name": "ci", "role": "VIEWER"})
        );
        assert!(json.get("before").is_none());
        assert!(json["occurredAt"].is_string());
        assert_eq!(json["organizationId"], "org_1");
    }
}
