//! Members and invitations. Every change that touches seats, owners or membership writes the
//! organization's counters in the same transaction, with the rule as a condition, so concurrent
//! requests cannot break it (two admins demoting the last two owners: one of them fails).

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem, Update,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::audit::{AuditActor, events};
use super::{
    Item, OrganizationRecord, PlanStatus, Store, StoreError, TenantId, UserRecord, from_item,
    key_map, keys, new_id, now_rfc3339, sdk_error, to_item,
};
use crate::rbac::Role;

/// How long a deleted organization's items are kept before DynamoDB's TTL removes them.
pub const DELETED_ORGANIZATION_RETENTION_DAYS: i64 = 30;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberRecord {
    pub user_id: String,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub role: Role,
    pub joined_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvitationRecord {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub invited_by: String,
    pub created_at: String,
    /// Unix seconds from which the invitation can no longer be accepted; an item without one
    /// reads as 0, expired.
    #[serde(default)]
    pub expires_at: i64,
}

/// The invitation look-up item under `INVITEE#<email>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InviteeRecord {
    organization_id: String,
    invitation_id: String,
    role: Role,
    created_at: String,
    #[serde(default)]
    expires_at: i64,
    /// The inviting member's name or email when they invited, shown to the invitee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inviter_name: Option<String>,
}

/// An invitation as its addressee sees it: found under their email, never by tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressedInvitation {
    pub id: String,
    pub tenant: TenantId,
    pub role: Role,
    pub inviter_name: Option<String>,
    pub expires_at: i64,
}

impl From<InviteeRecord> for AddressedInvitation {
    fn from(record: InviteeRecord) -> Self {
        Self {
            id: record.invitation_id,
            tenant: TenantId(record.organization_id),
            role: record.role,
            inviter_name: record.inviter_name,
            expires_at: record.expires_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeamEntry {
    Member(MemberRecord),
    Invitation(InvitationRecord),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamPage {
    pub entries: Vec<TeamEntry>,
    /// Opaque: pass back as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

const LIVE_PLAN_STATUSES: [PlanStatus; 5] = [
    PlanStatus::Trialing,
    PlanStatus::Active,
    PlanStatus::PastDue,
    PlanStatus::Unpaid,
    PlanStatus::Paused,
];

/// Whether a subscription in this state still bills (or may bill) the customer.
pub fn is_live(status: PlanStatus) -> bool {
    LIVE_PLAN_STATUSES.contains(&status)
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn int(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The cancellation reason codes of a cancelled transaction, in item order.
fn cancellation_codes(
    error: &SdkError<TransactWriteItemsError, impl std::fmt::Debug>,
) -> Option<Vec<String>> {
    match error.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => Some(
            cancelled
                .cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None").to_owned())
                .collect(),
        ),
        _ => None,
    }
}

/// What went wrong in a transaction: the first failed condition by position, a conflict with a
/// concurrent transaction, or an outage.
pub(super) enum TransactionFailure {
    Condition(usize),
    Conflict,
    Other(StoreError),
}

pub(super) fn classify(
    error: SdkError<TransactWriteItemsError, impl std::fmt::Debug>,
) -> TransactionFailure {
    match cancellation_codes(&error) {
        Some(codes) => {
            if let Some(index) = codes.iter().position(|c| c == "ConditionalCheckFailed") {
                TransactionFailure::Condition(index)
            } else if codes.iter().any(|c| c == "TransactionConflict") {
                TransactionFailure::Conflict
            } else {
                TransactionFailure::Other(sdk_error("TransactWriteItems", error))
            }
        }
        None => TransactionFailure::Other(sdk_error("TransactWriteItems", error)),
    }
}

impl Store {
    pub(super) fn put(&self, item: Item, condition: &str) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .build()
            .map_err(StoreError::build)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn delete(
        &self,
        key: (String, String),
        condition: &str,
        names: Vec<(&str, &str)>,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key_map(key)))
            .condition_expression(condition);
        for (name, value) in names {
            delete = delete.expression_attribute_names(name, value);
        }
        for (name, value) in values {
            delete = delete.expression_attribute_values(name, value);
        }
        Ok(TransactWriteItem::builder()
            .delete(delete.build().map_err(StoreError::build)?)
            .build())
    }

    pub(super) fn update(
        &self,
        key: (String, String),
        expression: &str,
        condition: &str,
        names: Vec<(&str, &str)>,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key_map(key)))
            .update_expression(expression);
        if !condition.is_empty() {
            update = update.condition_expression(condition);
        }
        for (name, value) in names {
            update = update.expression_attribute_names(name, value);
        }
        for (name, value) in values {
            update = update.expression_attribute_values(name, value);
        }
        Ok(TransactWriteItem::builder()
            .update(update.build().map_err(StoreError::build)?)
            .build())
    }

    /// The acting member still holds `role`: a decision made on a role read earlier in the request
    /// does not outlive a concurrent demotion of the actor.
    fn actor_still(
        &self,
        tenant: &TenantId,
        actor_user_id: &str,
        role: Role,
    ) -> Result<TransactWriteItem, StoreError> {
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key_map(keys::member(tenant, actor_user_id))))
            .condition_expression("#role = :actor_role")
            .expression_attribute_names("#role", "role")
            .expression_attribute_values(":actor_role", s(role.as_str()))
            .build()
            .map_err(StoreError::build)?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    pub(super) async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<(), SdkError<TransactWriteItemsError, aws_sdk_dynamodb::config::http::HttpResponse>>
    {
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map(|_| ())
    }

    /// The member `user_id` of `tenant`, if there is one.
    pub async fn get_member(
        &self,
        tenant: &TenantId,
        user_id: &str,
    ) -> Result<Option<MemberRecord>, StoreError> {
        self.get_record(keys::member(tenant, user_id)).await
    }

    pub async fn get_invitation(
        &self,
        tenant: &TenantId,
        invitation_id: &str,
    ) -> Result<Option<InvitationRecord>, StoreError> {
        self.get_record(keys::invitation(tenant, invitation_id))
            .await
    }

    /// One page of the team: pending invitations first, then members (key order). Two prefix
    /// queries, not one key range: other items of the partition sort between `INVITE#` and
    /// `MEMBER#` (`INVOICE#...`), and a range would read them as invitations.
    pub async fn list_team(
        &self,
        tenant: &TenantId,
        cursor: Option<&str>,
        limit: i32,
    ) -> Result<TeamPage, StoreError> {
        let start = match cursor {
            Some(cursor) => Some(decode_cursor(cursor).ok_or(StoreError::NotFound)?),
            None => None,
        };
        let mut entries = Vec::new();
        let past_invitations = start.as_deref().is_some_and(|sk| sk.starts_with("MEMBER#"));
        if !past_invitations {
            let (items, last) = self
                .team_query(tenant, "INVITE#", start.clone(), limit)
                .await?;
            for item in items {
                entries.push(TeamEntry::Invitation(from_item(item)?));
            }
            if let Some(last) = last {
                return Ok(TeamPage {
                    entries,
                    next_cursor: Some(encode_cursor(&last)),
                });
            }
        }
        let remaining = limit.saturating_sub(i32::try_from(entries.len()).unwrap_or(limit));
        if remaining <= 0 {
            return Ok(TeamPage {
                entries,
                next_cursor: None,
            });
        }
        let member_start = start.filter(|_| past_invitations);
        let (items, last) = self
            .team_query(tenant, "MEMBER#", member_start, remaining)
            .await?;
        for item in items {
            entries.push(TeamEntry::Member(from_item(item)?));
        }
        Ok(TeamPage {
            entries,
            next_cursor: last.map(|sk| encode_cursor(&sk)),
        })
    }

    /// Up to `limit` items of the tenant's partition whose sort key starts with `prefix`, after
    /// `start`; and the sort key to continue from when there may be more.
    async fn team_query(
        &self,
        tenant: &TenantId,
        prefix: &str,
        start: Option<String>,
        limit: i32,
    ) -> Result<(Vec<Item>, Option<String>), StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
            .expression_attribute_values(":pk", s(keys::tenant_partition(tenant)))
            .expression_attribute_values(":prefix", s(prefix))
            .consistent_read(true)
            .limit(limit);
        if let Some(sort_key) = start {
            query = query
                .set_exclusive_start_key(Some(key_map((keys::tenant_partition(tenant), sort_key))));
        }
        let output = query.send().await.map_err(|e| sdk_error("Query", e))?;
        let last = output
            .last_evaluated_key
            .and_then(|key| match key.get("SK") {
                Some(AttributeValue::S(sk)) => Some(sk.clone()),
                _ => None,
            });
        Ok((output.items.unwrap_or_default(), last))
    }

    /// Every member of `tenant` (all pages).
    pub async fn all_members(&self, tenant: &TenantId) -> Result<Vec<MemberRecord>, StoreError> {
        self.query_tenant(tenant, "MEMBER#").await
    }

    /// Invites `email` as `role` until `expires_at`, taking a seat, if the inviter (`inviter`: user
    /// id and the role the request read) still holds that role when the write happens. Fails with
    /// [`StoreError::SeatLimitReached`] when members plus pending invitations already fill
    /// `seat_limit`, [`StoreError::AlreadyInvited`] when the address has a pending invitation
    /// here, [`StoreError::ConcurrentUpdate`] when the inviter's role changed meanwhile.
    #[allow(clippy::too_many_arguments)]
    pub async fn invite(
        &self,
        tenant: &TenantId,
        inviter: (&str, Role),
        inviter_name: Option<&str>,
        email: &str,
        role: Role,
        seat_limit: u64,
        expires_at: i64,
    ) -> Result<InvitationRecord, StoreError> {
        let invitation = InvitationRecord {
            id: new_id("inv"),
            email: email.to_owned(),
            role,
            invited_by: inviter.0.to_owned(),
            created_at: now_rfc3339(),
            expires_at,
        };
        let invitee = InviteeRecord {
            organization_id: tenant.0.clone(),
            invitation_id: invitation.id.clone(),
            role,
            created_at: invitation.created_at.clone(),
            expires_at,
            inviter_name: inviter_name.map(str::to_owned),
        };
        let items = vec![
            self.update(
                keys::organization(tenant),
                "SET seatsUsed = seatsUsed + :one, invitationCount = invitationCount + :one",
                "attribute_exists(PK) AND attribute_not_exists(deletedAt) AND seatsUsed < :limit",
                vec![],
                vec![(":one", n(1)), (":limit", n(seat_limit))],
            )?,
            self.put(
                to_item(
                    "INVITE",
                    keys::invitation(tenant, &invitation.id),
                    &invitation,
                )?,
                "attribute_not_exists(PK)",
            )?,
            self.put(
                to_item("INVITEE", keys::invitee(email, tenant), &invitee)?,
                "attribute_not_exists(PK)",
            )?,
            self.actor_still(tenant, inviter.0, inviter.1)?,
            self.audit_put(
                tenant,
                &events::member_invited(tenant, &AuditActor::user(inviter.0), &invitation.id, role),
            )?,
        ];
        match self.transact(items).await.map_err(classify) {
            Ok(()) => Ok(invitation),
            Err(TransactionFailure::Condition(0)) => Err(StoreError::SeatLimitReached),
            Err(TransactionFailure::Condition(1 | 2)) => Err(StoreError::AlreadyInvited),
            Err(TransactionFailure::Condition(_)) | Err(TransactionFailure::Conflict) => {
                Err(StoreError::ConcurrentUpdate)
            }
            Err(TransactionFailure::Other(error)) => Err(error),
        }
    }

    /// Every invitation of `tenant`, expired ones included.
    pub async fn all_invitations(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<InvitationRecord>, StoreError> {
        self.query_tenant(tenant, "INVITE#").await
    }

    /// Releases every invitation of `tenant` that expired by `now`: each is deleted with its
    /// look-up item and its seat is freed, with its `invitation.expired` audit event, in one
    /// transaction conditional on it still being expired (a concurrent resend wins, and a release
    /// that lost writes no event). Returns how many were released.
    pub async fn release_expired_invitations(
        &self,
        tenant: &TenantId,
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut released = 0;
        for invitation in self.all_invitations(tenant).await? {
            if !crate::team::is_expired(invitation.expires_at, now) {
                continue;
            }
            let items = vec![
                self.delete(
                    keys::invitation(tenant, &invitation.id),
                    "attribute_exists(PK) AND (attribute_not_exists(expiresAt) OR expiresAt <= :now)",
                    vec![],
                    vec![(":now", int(now))],
                )?,
                self.delete(
                    keys::invitee(&invitation.email, tenant),
                    "attribute_not_exists(PK) OR invitationId = :id",
                    vec![],
                    vec![(":id", s(&invitation.id))],
                )?,
                self.release_seat(tenant)?,
                self.audit_put(
                    tenant,
                    &events::invitation_expired(tenant, &invitation.id, invitation.role),
                )?,
            ];
            match self.transact(items).await.map_err(classify) {
                Ok(()) => {
                    released += 1;
                    tracing::info!(organization_id = %tenant.0, invitation_id = %invitation.id, "expired invitation released");
                }
                // Renewed, revoked, accepted or released by someone else meanwhile.
                Err(TransactionFailure::Condition(_)) | Err(TransactionFailure::Conflict) => {}
                Err(TransactionFailure::Other(error)) => return Err(error),
            }
        }
        Ok(released)
    }

    /// The organization's counters with one pending invitation fewer (its seat freed).
    fn release_seat(&self, tenant: &TenantId) -> Result<TransactWriteItem, StoreError> {
        self.update(
            keys::organization(tenant),
            "SET seatsUsed = seatsUsed - :one, invitationCount = invitationCount - :one",
            "attribute_exists(PK)",
            vec![],
            vec![(":one", n(1))],
        )
    }

    /// Withdraws `invitation` (as read before) and frees its seat, if the actor still holds the
    /// role the request read.
    pub async fn revoke_invitation(
        &self,
        tenant: &TenantId,
        actor: (&str, Role),
        invitation: &InvitationRecord,
    ) -> Result<(), StoreError> {
        let items = vec![
            self.delete(
                keys::invitation(tenant, &invitation.id),
                "attribute_exists(PK)",
                vec![],
                vec![],
            )?,
            self.delete(
                keys::invitee(&invitation.email, tenant),
                "attribute_exists(PK)",
                vec![],
                vec![],
            )?,
            self.release_seat(tenant)?,
            self.actor_still(tenant, actor.0, actor.1)?,
            self.audit_put(
                tenant,
                &events::invitation_revoked(
                    tenant,
                    &AuditActor::user(actor.0),
                    &invitation.id,
                    invitation.role,
                ),
            )?,
        ];
        match self.transact(items).await.map_err(classify) {
            Ok(()) => Ok(()),
            Err(TransactionFailure::Condition(0 | 1)) => Err(StoreError::NotFound),
            Err(TransactionFailure::Condition(_)) | Err(TransactionFailure::Conflict) => {
                Err(StoreError::ConcurrentUpdate)
            }
            Err(TransactionFailure::Other(error)) => Err(error),
        }
    }

    /// Renews `invitation` (as read before) until `expires_at`, if it is still there (an expired
    /// one not yet released included) and the actor still holds the role the request read.
    pub async fn resend_invitation(
        &self,
        tenant: &TenantId,
        actor: (&str, Role),
        invitation: &InvitationRecord,
        expires_at: i64,
    ) -> Result<InvitationRecord, StoreError> {
        let items = vec![
            self.update(
                keys::invitation(tenant, &invitation.id),
                "SET expiresAt = :expires",
                "attribute_exists(PK)",
                vec![],
                vec![(":expires", int(expires_at))],
            )?,
            self.update(
                keys::invitee(&invitation.email, tenant),
                "SET expiresAt = :expires",
                "invitationId = :id",
                vec![],
                vec![(":expires", int(expires_at)), (":id", s(&invitation.id))],
            )?,
            self.actor_still(tenant, actor.0, actor.1)?,
        ];
        match self.transact(items).await.map_err(classify) {
            Ok(()) => Ok(InvitationRecord {
                expires_at,
                ..invitation.clone()
            }),
            Err(TransactionFailure::Condition(0 | 1)) => Err(StoreError::NotFound),
            Err(TransactionFailure::Condition(_)) | Err(TransactionFailure::Conflict) => {
                Err(StoreError::ConcurrentUpdate)
            }
            Err(TransactionFailure::Other(error)) => Err(error),
        }
    }

    /// The invitations addressed to `email` (normalized), expired ones included.
    pub async fn invitations_addressed_to(
        &self,
        email: &str,
    ) -> Result<Vec<AddressedInvitation>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(":pk", s(keys::invitee_partition(email)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        let mut invitations: Vec<AddressedInvitation> = output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| from_item::<InviteeRecord>(item).map(AddressedInvitation::from))
            .collect::<Result<_, _>>()?;
        invitations.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(invitations)
    }

    /// The invitation `invitation_id` if it is addressed to `email`; another address's (or a
    /// missing) one is `None` alike.
    pub async fn invitation_addressed_to(
        &self,
        email: &str,
        invitation_id: &str,
    ) -> Result<Option<AddressedInvitation>, StoreError> {
        Ok(self
            .invitations_addressed_to(email)
            .await?
            .into_iter()
            .find(|invitation| invitation.id == invitation_id))
    }

    /// `user` (in no organization) accepts `invitation`, addressed to their verified `email`: in
    /// one transaction the invitation and its look-up item go, the membership is written, the user
    /// points at the organization and its counters move (the invitation's seat becomes the
    /// member's), conditional on the invitation being unexpired at `now`, the user still belonging
    /// nowhere (or still naming `gone`, an organization read as gone) and the organization having
    /// fewer than `member_limit` members.
    pub async fn accept_invitation(
        &self,
        user: &UserRecord,
        email: &str,
        invitation: &AddressedInvitation,
        member_limit: u64,
        now: i64,
        gone: Option<&TenantId>,
    ) -> Result<UserRecord, StoreError> {
        let tenant = &invitation.tenant;
        let joined_at = now_rfc3339();
        let member = MemberRecord {
            user_id: user.id.clone(),
            subject: user.subject.clone(),
            email: Some(email.to_owned()),
            name: user.name.clone(),
            role: invitation.role,
            joined_at: joined_at.clone(),
        };
        let owners = u64::from(invitation.role == Role::Owner);
        let items = vec![
            self.delete(
                keys::invitee(email, tenant),
                "invitationId = :id",
                vec![],
                vec![(":id", s(&invitation.id))],
            )?,
            self.delete(
                keys::invitation(tenant, &invitation.id),
                "attribute_exists(PK) AND expiresAt > :now",
                vec![],
                vec![(":now", int(now))],
            )?,
            self.put(
                to_item("MEMBER", keys::member(tenant, &user.id), &member)?,
                "attribute_not_exists(PK)",
            )?,
            self.update(
                keys::user(&user.subject),
                "SET organizationId = :org, #role = :role, updatedAt = :now",
                match gone {
                    Some(_) => "attribute_exists(PK) AND organizationId = :gone",
                    None => "attribute_exists(PK) AND attribute_not_exists(organizationId)",
                },
                vec![("#role", "role")],
                [
                    (":org", s(&tenant.0)),
                    (":role", s(invitation.role.as_str())),
                    (":now", s(&joined_at)),
                ]
                .into_iter()
                .chain(gone.map(|gone| (":gone", s(&gone.0))))
                .collect(),
            )?,
            self.update(
                keys::organization(tenant),
                "SET memberCount = memberCount + :one, invitationCount = invitationCount - :one, ownerCount = ownerCount + :owners",
                "attribute_exists(PK) AND attribute_not_exists(deletedAt) AND memberCount < :limit",
                vec![],
                vec![
                    (":one", n(1)),
                    (":owners", n(owners)),
                    (":limit", n(member_limit)),
                ],
            )?,
            self.audit_put(
                tenant,
                &events::member_joined(tenant, &user.id, &invitation.id, invitation.role),
            )?,
        ];
        match self.transact(items).await.map_err(classify) {
            Ok(()) => {
                tracing::info!(organization_id = %tenant.0, user_id = %user.id, role = %invitation.role, "invitation accepted");
                let mut joined = user.clone();
                joined.organization_id = Some(tenant.0.clone());
                joined.role = Some(invitation.role);
                joined.updated_at = joined_at;
                Ok(joined)
            }
            Err(TransactionFailure::Condition(0 | 1)) => Err(StoreError::NotFound),
            Err(TransactionFailure::Condition(3)) => Err(StoreError::AlreadyInOrganization),
            Err(TransactionFailure::Condition(4)) => match self.get_organization(tenant).await? {
                Some(_) => Err(StoreError::SeatLimitReached),
                None => Err(StoreError::NotFound),
            },
            Err(TransactionFailure::Condition(_)) | Err(TransactionFailure::Conflict) => {
                Err(StoreError::ConcurrentUpdate)
            }
            Err(TransactionFailure::Other(error)) => Err(error),
        }
    }

    /// The addressee (`user_id`) refuses `invitation` (addressed to `email`): it is withdrawn and
    /// its seat freed, expired or not.
    pub async fn decline_invitation(
        &self,
        user_id: &str,
        email: &str,
        invitation: &AddressedInvitation,
    ) -> Result<(), StoreError> {
        let tenant = &invitation.tenant;
        let items = vec![
            self.delete(
                keys::invitee(email, tenant),
                "invitationId = :id",
                vec![],
                vec![(":id", s(&invitation.id))],
            )?,
            self.delete(
                keys::invitation(tenant, &invitation.id),
                "attribute_exists(PK)",
                vec![],
                vec![],
            )?,
            self.release_seat(tenant)?,
            self.audit_put(
                tenant,
                &events::member_declined(tenant, user_id, &invitation.id, invitation.role),
            )?,
        ];
        match self.transact(items).await.map_err(classify) {
            Ok(()) => {
                tracing::info!(organization_id = %tenant.0, invitation_id = %invitation.id, "invitation declined");
                Ok(())
            }
            Err(TransactionFailure::Condition(_)) => Err(StoreError::NotFound),
            Err(TransactionFailure::Conflict) => Err(StoreError::ConcurrentUpdate),
            Err(TransactionFailure::Other(error)) => Err(error),
        }
    }

    /// Changes `member`'s role (as read before) to `new_role`. The organization's owner count moves
    /// with it; demoting an owner requires another owner to remain, checked in the transaction.
    pub async fn change_role(
        &self,
        tenant: &TenantId,
        actor: (&str, Role),
        member: &MemberRecord,
        new_role: Role,
    ) -> Result<(), StoreError> {
        let was_owner = member.role == Role::Owner;
        let becomes_owner = new_role == Role::Owner;
        let now = now_rfc3339();
        let (org_expression, org_condition) = match (was_owner, becomes_owner) {
            (true, false) => (
                "SET ownerCount = ownerCount - :one",
                "attribute_not_exists(deletedAt) AND ownerCount > :one",
            ),
            (false, true) => (
                "SET ownerCount = ownerCount + :one",
                "attribute_not_exists(deletedAt) AND attribute_exists(PK)",
            ),
            _ => (
                "SET updatedAt = updatedAt",
                "attribute_not_exists(deletedAt) AND attribute_exists(PK)",
            ),
        };
        let org_values = if was_owner != becomes_owner {
            vec![(":one", n(1))]
        } else {
            vec![]
        };
        let items = vec![
            self.update(
                keys::member(tenant, &member.user_id),
                "SET #role = :new",
                "#role = :old",
                vec![("#role", "role")],
                vec![
                    (":new", s(new_role.as_str())),
                    (":old", s(member.role.as_str())),
                ],
            )?,
            self.update(
                keys::user(&member.subject),
                "SET #role = :new, updatedAt = :now",
                "organizationId = :org",
                vec![("#role", "role")],
                vec![
                    (":new", s(new_role.as_str())),
                    (":org", s(&tenant.0)),
                    (":now", s(now)),
                ],
            )?,
            self.update(
                keys::organization(tenant),
                org_expression,
                org_condition,
                vec![],
                org_values,
            )?,
            self.actor_still(tenant, actor.0, actor.1)?,
            self.audit_put(
                tenant,
                &events::member_role_changed(
                    tenant,
                    &AuditActor::user(actor.0),
                    &member.user_id,
                    member.role,
                    new_role,
                ),
            )?,
        ];
        membership_outcome(self.transact(items).await.map_err(classify), was_owner)
    }

    /// Removes `member` (as read before) from the organization: they lose access on their next
    /// request (their user record no longer names it) and belong nowhere. An owner leaves only if
    /// another remains. `actor` is who removes them and the role the request read (checked still
    /// held); `None` when the member leaves by themselves.
    pub async fn remove_member(
        &self,
        tenant: &TenantId,
        actor: Option<(&str, Role)>,
        member: &MemberRecord,
    ) -> Result<(), StoreError> {
        let was_owner = member.role == Role::Owner;
        let org_condition = if was_owner {
            "attribute_exists(PK) AND ownerCount > :one"
        } else {
            "attribute_exists(PK)"
        };
        let mut items = vec![
            self.delete(
                keys::member(tenant, &member.user_id),
                "#role = :role",
                vec![("#role", "role")],
                vec![(":role", s(member.role.as_str()))],
            )?,
            self.update(
                keys::user(&member.subject),
                "REMOVE organizationId, #role SET updatedAt = :now",
                "organizationId = :org",
                vec![("#role", "role")],
                vec![(":org", s(&tenant.0)), (":now", s(now_rfc3339()))],
            )?,
            self.update(
                keys::organization(tenant),
                "SET memberCount = memberCount - :one, seatsUsed = seatsUsed - :one, ownerCount = ownerCount - :owners",
                org_condition,
                vec![],
                vec![(":one", n(1)), (":owners", n(u64::from(was_owner)))],
            )?,
        ];
        let event = match actor {
            Some((actor_id, actor_role)) => {
                items.push(self.actor_still(tenant, actor_id, actor_role)?);
                events::member_removed(
                    tenant,
                    &AuditActor::user(actor_id),
                    &member.user_id,
                    member.role,
                )
            }
            None => events::member_left(tenant, &member.user_id, member.role),
        };
        items.push(self.audit_put(tenant, &event)?);
        membership_outcome(self.transact(items).await.map_err(classify), was_owner)
    }

    /// Detaches `user` from `tenant`, an organization the caller read as gone (deleted, or no
    /// longer there): what the deletion job does for every member, for one it has not reached
    /// yet, so they can leave at once. A deletion is final and organization ids are never reused, so the
    /// read stays true; the write is conditional on the user still naming `tenant`
    /// ([`StoreError::NotFound`] otherwise).
    pub async fn detach_from_gone_organization(
        &self,
        tenant: &TenantId,
        user: &UserRecord,
    ) -> Result<(), StoreError> {
        let items = vec![
            self.update(
                keys::user(&user.subject),
                "REMOVE organizationId, #role SET updatedAt = :now",
                "organizationId = :org",
                vec![("#role", "role")],
                vec![(":org", s(&tenant.0)), (":now", s(now_rfc3339()))],
            )?,
            // Its membership item too, if the cut-short run left one.
            self.delete(
                keys::member(tenant, &user.id),
                "attribute_not_exists(PK) OR attribute_exists(PK)",
                vec![],
                vec![],
            )?,
        ];
        match self.transact(items).await.map_err(classify) {
            Ok(()) => {
                tracing::info!(organization_id = %tenant.0, user_id = %user.id, "user detached from a deleted organization");
                Ok(())
            }
            Err(TransactionFailure::Condition(_)) => Err(StoreError::NotFound),
            Err(TransactionFailure::Conflict) => Err(StoreError::ConcurrentUpdate),
            Err(TransactionFailure::Other(error)) => Err(error),
        }
    }

    /// Sets a new name and/or billing email (`Some(None)` clears it), as `actor`; returns the
    /// organization. The organization is read first for the audit event's former name; the
    /// update is conditioned on that name still being there ([`StoreError::ConcurrentUpdate`] when
    /// a concurrent rename won), and the event is written in the same transaction.
    pub async fn update_organization(
        &self,
        tenant: &TenantId,
        actor: &AuditActor,
        name: Option<&str>,
        billing_email: Option<Option<&str>>,
    ) -> Result<OrganizationRecord, StoreError> {
        let Some(current) = self.get_organization(tenant).await? else {
            return Err(StoreError::NotFound);
        };
        let now = now_rfc3339();
        let mut set = vec!["updatedAt = :now"];
        let mut remove = Vec::new();
        let mut condition = "attribute_exists(PK) AND attribute_not_exists(deletedAt)".to_owned();
        let mut names = Vec::new();
        let mut values = vec![(":now", s(&now))];
        if let Some(name) = name {
            set.push("#name = :name");
            condition.push_str(" AND #name = :old_name");
            names.push(("#name", "name"));
            values.push((":name", s(name)));
            values.push((":old_name", s(&current.name)));
        }
        match billing_email {
            Some(Some(email)) => {
                set.push("billingEmail = :email");
                values.push((":email", s(email)));
            }
            Some(None) => remove.push("billingEmail"),
            None => {}
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let event = events::organization_updated(
            tenant,
            actor,
            name.map(|name| (current.name.as_str(), name)),
            billing_email.map(|email| email.is_some()),
        );
        let items = vec![
            self.update(
                keys::organization(tenant),
                &expression,
                &condition,
                names,
                values,
            )?,
            self.audit_put(tenant, &event)?,
        ];
        match self.transact(items).await.map_err(classify) {
            Ok(()) => {
                let mut updated = current;
                if let Some(name) = name {
                    updated.name = name.to_owned();
                }
                if let Some(email) = billing_email {
                    updated.billing_email = email.map(str::to_owned);
                }
                updated.updated_at = now;
                Ok(updated)
            }
            Err(TransactionFailure::Condition(_)) => match self.get_organization(tenant).await? {
                Some(_) => Err(StoreError::ConcurrentUpdate),
                None => Err(StoreError::NotFound),
            },
            Err(TransactionFailure::Conflict) => Err(StoreError::ConcurrentUpdate),
            Err(TransactionFailure::Other(error)) => Err(error),
        }
    }
}

/// The answer of a role change or removal transaction laid out as [member, user, organization,
/// actor check if any, audit event]: the organization's condition failing for an owner means the last owner.
fn membership_outcome(
    result: Result<(), TransactionFailure>,
    was_owner: bool,
) -> Result<(), StoreError> {
    match result {
        Ok(()) => Ok(()),
        Err(TransactionFailure::Condition(2)) if was_owner => Err(StoreError::LastOwner),
        Err(TransactionFailure::Condition(_)) | Err(TransactionFailure::Conflict) => {
            Err(StoreError::ConcurrentUpdate)
        }
        Err(TransactionFailure::Other(error)) => Err(error),
    }
}

fn encode_cursor(sort_key: &str) -> String {
    URL_SAFE_NO_PAD.encode(sort_key.as_bytes())
}

/// Cursors carry only a sort key: the partition always comes from the caller's tenant, so a cursor
/// from another organization cannot reach into it.
fn decode_cursor(cursor: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let sort_key = String::from_utf8(bytes).ok()?;
    (sort_key.starts_with("INVITE#") || sort_key.starts_with("MEMBER#")).then_some(sort_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_foreign_keys() {
        let cursor = encode_cursor("MEMBER#usr_1");
        assert_eq!(decode_cursor(&cursor).as_deref(), Some("MEMBER#usr_1"));
        assert_eq!(decode_cursor(&encode_cursor("ORG")), None);
        assert_eq!(decode_cursor(&encode_cursor("USAGE#x")), None);
        assert_eq!(decode_cursor("not base64!"), None);
    }

    #[test]
    fn live_statuses_block_deletion() {
        assert!(is_live(PlanStatus::Active));
        assert!(is_live(PlanStatus::PastDue));
        assert!(!is_live(PlanStatus::None));
        assert!(!is_live(PlanStatus::Canceled));
        assert!(!is_live(PlanStatus::IncompleteExpired));
    }
}
