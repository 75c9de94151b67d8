//! DynamoDB single-table repository.
//!
//! Every tenant-owned item lives under `PK = ORG#<orgId>` and every tenant-owned read or write takes
//! a [`TenantId`], which only this module can make (from a stored user or a new organization): a
//! query without tenant scope does not compile outside it. Look-ups that arrive without a tenant
//! (the user by identity subject) are their own small items.

pub mod api_keys;
pub mod audit;
mod billing;
pub mod deletion;
pub mod integrations;
mod ratelimit;
pub mod schema;
mod team;
pub mod usage;
pub mod webhook_endpoints;

pub use billing::{InvoiceRecord, WebhookCommit, WebhookOutcome};
pub use team::{AddressedInvitation, InvitationRecord, MemberRecord, TeamEntry, TeamPage, is_live};

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::pricing::Plan;
use crate::rbac::Role;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// DynamoDB could not be reached or refused the request (throttling, outage, permissions).
    #[error("DynamoDB {operation} failed: {detail}")]
    Unavailable {
        operation: &'static str,
        detail: String,
    },
    /// An item in the table does not have the shape this code writes.
    #[error("stored item is malformed: {0}")]
    Corrupt(String),
    /// A request could not be built (a bug, not bad input).
    #[error("DynamoDB request could not be built: {0}")]
    Build(String),
    #[error("the user already belongs to an organization")]
    AlreadyInOrganization,
    #[error("no user record exists for this identity")]
    UserMissing,
    #[error("the organization has no free seat")]
    SeatLimitReached,
    #[error("that email already has a pending invitation")]
    AlreadyInvited,
    #[error("the item does not exist in this organization")]
    NotFound,
    #[error("the item changed concurrently")]
    ConcurrentUpdate,
    #[error("the organization must keep at least one owner")]
    LastOwner,
    #[error("the organization has a live subscription")]
    SubscriptionActive,
    #[error("the organization has as many webhook endpoints as it may have")]
    WebhookEndpointLimitReached,
}

impl StoreError {
    pub(crate) fn build(error: impl std::fmt::Display) -> Self {
        Self::Build(error.to_string())
    }
}

pub(crate) fn sdk_error<E, R>(operation: &'static str, error: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Unavailable {
        operation,
        detail: DisplayErrorContext(&error).to_string(),
    }
}

pub(crate) type Item = HashMap<String, AttributeValue>;

/// An organization id that came from a trusted place: the caller's stored user record, the
/// organization this code just created, or the table's own stream. Never built from a request
/// body, path or query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantId(pub(crate) String);

impl TenantId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tenant of an organization's partition key (`ORG#<id>`) read from the table itself
    /// (its stream), the one other trusted place an organization id comes from.
    pub fn from_partition_key(partition_key: &str) -> Option<TenantId> {
        partition_key
            .strip_prefix("ORG#")
            .filter(|id| !id.is_empty())
            .map(|id| TenantId(id.to_owned()))
    }
}

/// Primary keys by item type. Tenant-owned keys require a [`TenantId`].
pub mod keys {
    use super::TenantId;

    pub fn user(subject: &str) -> (String, String) {
        (format!("USER#{subject}"), "PROFILE".to_owned())
    }

    pub fn organization(tenant: &TenantId) -> (String, String) {
        (format!("ORG#{}", tenant.0), "ORG".to_owned())
    }

    pub fn member(tenant: &TenantId, user_id: &str) -> (String, String) {
        (format!("ORG#{}", tenant.0), format!("MEMBER#{user_id}"))
    }

    pub fn invitation(tenant: &TenantId, invitation_id: &str) -> (String, String) {
        (
            format!("ORG#{}", tenant.0),
            format!("INVITE#{invitation_id}"),
        )
    }

    /// The look-up of pending invitations by email, one per inviting organization: an
    /// organization cannot invite the same address twice, and `/api/me` finds them with one query.
    pub fn invitee(email: &str, tenant: &TenantId) -> (String, String) {
        (invitee_partition(email), format!("ORG#{}", tenant.0))
    }

    pub fn invitee_partition(email: &str) -> String {
        format!("INVITEE#{email}")
    }

    pub fn tenant_partition(tenant: &TenantId) -> String {
        format!("ORG#{}", tenant.0)
    }
}

/// A user as stored, keyed by the identity provider's `sub`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    pub id: String,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    pub created_at: String,
    pub updated_at: String,
    /// Whether the identity provider says `email` is verified, when the profile was read from
    /// the provider (tokens without an email); `None`: the email came from a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// When the profile was read from the identity provider (RFC 3339); `None`: never. Read once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_read_at: Option<String>,
}

impl UserRecord {
    /// The tenant this user acts in, if they belong to an organization.
    pub fn tenant(&self) -> Option<TenantId> {
        self.organization_id.clone().map(TenantId)
    }
}

/// The subscription state of an organization's plan as Tollgate last recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    None,
    Trialing,
    Active,
    PastDue,
    Unpaid,
    Incomplete,
    IncompleteExpired,
    Canceled,
    Paused,
}

impl PlanStatus {
    /// Its name as stored and answered (`active`, `past_due` ...), Stripe's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::None => "none",
            PlanStatus::Trialing => "trialing",
            PlanStatus::Active => "active",
            PlanStatus::PastDue => "past_due",
            PlanStatus::Unpaid => "unpaid",
            PlanStatus::Incomplete => "incomplete",
            PlanStatus::IncompleteExpired => "incomplete_expired",
            PlanStatus::Canceled => "canceled",
            PlanStatus::Paused => "paused",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationRecord {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    pub plan_status: PlanStatus,
    /// Members, pending invitations, and their sum (the seat counter invitations are checked
    /// against in the same conditional write that takes a seat).
    #[serde(default)]
    pub member_count: u64,
    #[serde(default)]
    pub invitation_count: u64,
    #[serde(default)]
    pub seats_used: u64,
    /// Kept in step with role changes so "at least one OWNER" is a condition on one item.
    #[serde(default)]
    pub owner_count: u64,
    /// The organization's one Stripe customer, created at its first checkout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_customer_id: Option<String>,
    /// What Stripe's webhooks have told us about the subscription (see `billing::state`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing: Option<crate::billing::state::BillingState>,
    /// Bumped on every billing write: webhook commits are conditional on the version they read.
    #[serde(default)]
    pub billing_version: u64,
    /// End (Unix seconds) of the last usage period frozen for overage billing: calls of earlier
    /// periods are counted in the open period instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overage_billed_through: Option<i64>,
    /// Its outbound webhook endpoints: the counter their creation is conditioned on (at most
    /// [`webhook_endpoints::MAX_WEBHOOK_ENDPOINTS`]), kept in step in the same transactions.
    #[serde(default)]
    pub webhook_endpoint_count: u64,
    /// Set when the organization was deleted; its items then carry `ttl` and expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// The stored form: keys, an entity tag (for reading the table by eye), and the record.
#[derive(Serialize, Deserialize)]
struct Stored<T> {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    #[serde(flatten)]
    record: T,
}

pub(crate) fn to_item<T: Serialize>(
    entity: &str,
    (pk, sk): (String, String),
    record: &T,
) -> Result<Item, StoreError> {
    serde_dynamo::to_item(Stored {
        pk,
        sk,
        entity: entity.to_owned(),
        record,
    })
    .map_err(|e| StoreError::Build(e.to_string()))
}

/// An item of some organization found by a table-wide scan (key rotation), with its organization
/// and its `ttl` (Unix seconds; set when the organization was deleted).
pub struct Scanned<T> {
    pub tenant: TenantId,
    pub record: T,
    pub expires_at: Option<i64>,
}

impl Store {
    /// One page of every organization's items whose sort key starts with `sort_prefix`,
    /// strongly consistent (key rotation walks the whole table with it).
    pub(crate) async fn scan_tenant_items<T: for<'de> Deserialize<'de>>(
        &self,
        sort_prefix: &str,
        start: Option<Item>,
    ) -> Result<(Vec<Scanned<T>>, Option<Item>), StoreError> {
        let output = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(SK, :prefix)")
            .expression_attribute_values(":prefix", AttributeValue::S(sort_prefix.to_owned()))
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| sdk_error("Scan", e))?;
        let mut found = Vec::new();
        for item in output.items.unwrap_or_default() {
            let Some(tenant) = item
                .get("PK")
                .and_then(|pk| pk.as_s().ok())
                .and_then(|pk| TenantId::from_partition_key(pk))
            else {
                continue;
            };
            let expires_at = item
                .get(schema::TABLE.ttl_attribute)
                .and_then(|ttl| ttl.as_n().ok())
                .and_then(|ttl| ttl.parse().ok());
            found.push(Scanned {
                tenant,
                record: from_item(item)?,
                expires_at,
            });
        }
        Ok((found, output.last_evaluated_key))
    }
}

pub(crate) fn from_item<T: for<'de> Deserialize<'de>>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item::<_, Stored<T>>(item)
        .map(|stored| stored.record)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn key_map((pk, sk): (String, String)) -> Item {
    HashMap::from([
        (
            schema::TABLE.partition_key.to_owned(),
            AttributeValue::S(pk),
        ),
        (schema::TABLE.sort_key.to_owned(), AttributeValue::S(sk)),
    ])
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// What the identity provider told us about a user signing in for the first time.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// Set with `profile_read_at` when the profile came from the identity provider.
    pub email_verified: Option<bool>,
    pub profile_read_at: Option<String>,
}

/// The repository: one DynamoDB client and the table name.
#[derive(Debug, Clone)]
pub struct Store {
    client: Client,
    table: String,
    /// Days an audit event is kept before DynamoDB's TTL removes it (`AUDIT_RETENTION_DAYS`).
    audit_retention_days: u32,
}

impl Store {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            audit_retention_days: audit::DEFAULT_AUDIT_RETENTION_DAYS,
        }
    }

    /// The same store, writing audit events that expire after `days`.
    pub fn with_audit_retention_days(mut self, days: u32) -> Self {
        self.audit_retention_days = days;
        self
    }

    /// Builds the DynamoDB client from configuration. No network I/O happens here: credentials and
    /// endpoints resolve lazily on the first request, so a cold start never waits on the network.
    pub async fn connect(config: &Config) -> Self {
        Self::new(
            dynamodb_client(config.dynamodb_endpoint.as_deref()).await,
            &config.table_name,
        )
        .with_audit_retention_days(config.audit_retention_days)
    }

    /// The item at `key`, read strongly consistent, as `T`.
    pub(crate) async fn get_record<T: for<'de> Deserialize<'de>>(
        &self,
        key: (String, String),
    ) -> Result<Option<T>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_map(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        output.item.map(from_item).transpose()
    }

    /// Every item of `tenant`'s partition whose sort key starts with `prefix` (all pages), as `T`.
    pub(crate) async fn query_tenant<T: for<'de> Deserialize<'de>>(
        &self,
        tenant: &TenantId,
        prefix: &str,
    ) -> Result<Vec<T>, StoreError> {
        let mut records = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
                .expression_attribute_values(
                    ":pk",
                    AttributeValue::S(keys::tenant_partition(tenant)),
                )
                .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_owned()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            for item in output.items.unwrap_or_default() {
                records.push(from_item(item)?);
            }
            match output.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(records),
            }
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// The user signed in as `subject`, read strongly consistent: a role change or removal must
    /// take effect on the very next request.
    pub async fn get_user(&self, subject: &str) -> Result<Option<UserRecord>, StoreError> {
        self.get_record(keys::user(subject)).await
    }

    /// Returns the user for `new.subject`, creating it on first sign-in. The create is a
    /// conditional put, so concurrent first sign-ins create exactly one record; the `bool` says
    /// whether this call created it.
    pub async fn get_or_create_user(&self, new: NewUser) -> Result<(UserRecord, bool), StoreError> {
        if let Some(existing) = self.get_user(&new.subject).await? {
            return Ok((existing, false));
        }
        let now = now_rfc3339();
        let record = UserRecord {
            id: new_id("usr"),
            subject: new.subject.clone(),
            email: new.email,
            name: new.name,
            organization_id: None,
            role: None,
            created_at: now.clone(),
            updated_at: now,
            email_verified: new.email_verified,
            profile_read_at: new.profile_read_at,
        };
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item("USER", keys::user(&record.subject), &record)?))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await;
        match put {
            Ok(_) => Ok((record, true)),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                // Another request created it between our read and our write: theirs stands.
                let existing = self
                    .get_user(&new.subject)
                    .await?
                    .ok_or(StoreError::UserMissing)?;
                Ok((existing, false))
            }
            Err(error) => Err(sdk_error("PutItem", error)),
        }
    }

    /// Stores a profile read from the identity provider on an existing user that has none yet
    /// (one UpdateItem, only if `profileReadAt` is absent); the email and name are replaced only
    /// by values the provider gave. Returns the user as stored afterwards (another request's
    /// profile if it stored one first).
    pub async fn record_profile(
        &self,
        subject: &str,
        email: Option<&str>,
        email_verified: bool,
        name: Option<&str>,
        read_at: &str,
    ) -> Result<UserRecord, StoreError> {
        let mut sets = vec![
            "emailVerified = :verified",
            "profileReadAt = :read",
            "updatedAt = :read",
        ];
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_map(keys::user(subject))))
            .condition_expression("attribute_exists(PK) AND attribute_not_exists(profileReadAt)")
            .expression_attribute_values(":verified", AttributeValue::Bool(email_verified))
            .expression_attribute_values(":read", AttributeValue::S(read_at.to_owned()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew);
        if let Some(email) = email {
            sets.push("email = :email");
            request =
                request.expression_attribute_values(":email", AttributeValue::S(email.to_owned()));
        }
        if let Some(name) = name {
            sets.push("#name = :name");
            request = request
                .expression_attribute_names("#name", "name")
                .expression_attribute_values(":name", AttributeValue::S(name.to_owned()));
        }
        match request
            .update_expression(format!("SET {}", sets.join(", ")))
            .send()
            .await
        {
            Ok(output) => from_item(output.attributes.ok_or(StoreError::UserMissing)?),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                self.get_user(subject).await?.ok_or(StoreError::UserMissing)
            }
            Err(error) => Err(sdk_error("UpdateItem", error)),
        }
    }

    pub async fn get_organization(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<OrganizationRecord>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_map(keys::organization(tenant))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        let organization: Option<OrganizationRecord> = output.item.map(from_item).transpose()?;
        // A deleted organization is kept only for its retention period; to callers it is gone.
        Ok(organization.filter(|o| o.deleted_at.is_none()))
    }

    /// Creates an organization with `owner` as its OWNER in one transaction: the organization,
    /// the owner's membership, and the owner's user record pointing at it. Fails with
    /// [`StoreError::AlreadyInOrganization`] when the user already belongs to one. `gone` is the
    /// organization the owner still names although it was read as gone (deleted, its job not yet
    /// at them): the write then replaces that one instead of requiring none.
    pub async fn create_organization(
        &self,
        owner: &UserRecord,
        name: &str,
        billing_email: Option<String>,
        gone: Option<&TenantId>,
    ) -> Result<(TenantId, OrganizationRecord), StoreError> {
        let tenant = TenantId(new_id("org"));
        let now = now_rfc3339();
        let organization = OrganizationRecord {
            id: tenant.0.clone(),
            name: name.to_owned(),
            billing_email,
            plan: None,
            plan_status: PlanStatus::None,
            member_count: 1,
            invitation_count: 0,
            seats_used: 1,
            owner_count: 1,
            stripe_customer_id: None,
            billing: None,
            billing_version: 0,
            overage_billed_through: None,
            webhook_endpoint_count: 0,
            deleted_at: None,
            created_at: now.clone(),
            updated_at: now.clone(),
        };
        let member = MemberRecord {
            user_id: owner.id.clone(),
            subject: owner.subject.clone(),
            email: owner.email.clone(),
            name: owner.name.clone(),
            role: Role::Owner,
            joined_at: now.clone(),
        };
        let put = |item: Item| {
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(PK)")
                .build()
                .map_err(StoreError::build)
        };
        let join = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key_map(keys::user(&owner.subject))))
            .update_expression("SET organizationId = :org, #role = :role, updatedAt = :now")
            .condition_expression(match gone {
                Some(_) => "attribute_exists(PK) AND organizationId = :gone",
                None => "attribute_exists(PK) AND attribute_not_exists(organizationId)",
            })
            .set_expression_attribute_values(gone.map(|gone| {
                HashMap::from([(":gone".to_owned(), AttributeValue::S(gone.0.clone()))])
            }))
            .expression_attribute_names("#role", "role")
            .expression_attribute_values(":org", AttributeValue::S(tenant.0.clone()))
            .expression_attribute_values(
                ":role",
                AttributeValue::S(Role::Owner.as_str().to_owned()),
            )
            .expression_attribute_values(":now", AttributeValue::S(now))
            .build()
            .map_err(StoreError::build)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .put(put(to_item(
                        "ORG",
                        keys::organization(&tenant),
                        &organization,
                    )?)?)
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .put(put(to_item(
                        "MEMBER",
                        keys::member(&tenant, &owner.id),
                        &member,
                    )?)?)
                    .build(),
            )
            .transact_items(TransactWriteItem::builder().update(join).build())
            .transact_items(self.audit_put(
                &tenant,
                &audit::events::organization_created(&tenant, &owner.id, name),
            )?)
            .send()
            .await;
        match result {
            Ok(_) => Ok((tenant, organization)),
            Err(error) => {
                use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
                let joined_elsewhere = matches!(
                    error.as_service_error(),
                    Some(TransactWriteItemsError::TransactionCanceledException(cancelled))
                        if cancelled
                            .cancellation_reasons()
                            .get(2)
                            .and_then(|r| r.code())
                            .is_some_and(|code| code == "ConditionalCheckFailed")
                );
                if joined_elsewhere {
                    Err(StoreError::AlreadyInOrganization)
                } else {
                    Err(sdk_error("TransactWriteItems", error))
                }
            }
        }
    }

    /// The tenant of an existing organization id named by a trusted principal: a service key
    /// (`POST /api/usage/calls`) or operator tooling (`tollgate-dev set-plan`). User requests never
    /// call this: their tenant comes from their stored user record.
    pub async fn existing_tenant(
        &self,
        organization_id: &str,
    ) -> Result<Option<TenantId>, StoreError> {
        Ok(self
            .organization_by_id(organization_id)
            .await?
            .map(|(tenant, _)| tenant))
    }

    /// As [`Store::existing_tenant`], with the organization it read.
    pub async fn organization_by_id(
        &self,
        organization_id: &str,
    ) -> Result<Option<(TenantId, OrganizationRecord)>, StoreError> {
        let tenant = TenantId(organization_id.to_owned());
        Ok(self
            .get_organization(&tenant)
            .await?
            .map(|organization| (tenant, organization)))
    }

    /// Records the plan an organization is on (written by billing; used here by tests and tools).
    pub async fn set_organization_plan(
        &self,
        tenant: &TenantId,
        plan: Option<Plan>,
        status: PlanStatus,
    ) -> Result<(), StoreError> {
        let status_value: AttributeValue =
            serde_dynamo::to_attribute_value(status).map_err(StoreError::build)?;
        // Absent attributes, never NULL ones: conditions test `attribute_not_exists`.
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_map(keys::organization(tenant))))
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_names("#plan", "plan");
        update = match plan {
            Some(plan) => update
                .update_expression("SET #plan = :plan, planStatus = :status, updatedAt = :now")
                .expression_attribute_values(":plan", AttributeValue::S(plan.as_str().to_owned())),
            None => {
                update.update_expression("SET planStatus = :status, updatedAt = :now REMOVE #plan")
            }
        };
        update
            .expression_attribute_values(":status", status_value)
            .expression_attribute_values(":now", AttributeValue::S(now_rfc3339()))
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem", e))?;
        Ok(())
    }
}

/// [`dynamodb_client`]: time to establish a connection (in-region DynamoDB connects in ms).
pub const DYNAMODB_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// [`dynamodb_client`]: one HTTP attempt.
pub const DYNAMODB_ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// [`dynamodb_client`]: one call, retries included. A request makes at most one call whose failure
/// it survives (the rate limiter's) before one it does not, so an unreachable DynamoDB answers 503
/// after at most twice this: well inside the template's 10 s function timeout, never a timeout.
pub const DYNAMODB_OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// A DynamoDB client for AWS, or for DynamoDB Local when `endpoint` is set (with placeholder
/// credentials and region unless the environment gives real ones). Calls are bounded by
/// [`DYNAMODB_CONNECT_TIMEOUT`], [`DYNAMODB_ATTEMPT_TIMEOUT`] and [`DYNAMODB_OPERATION_TIMEOUT`].
pub async fn dynamodb_client(endpoint: Option<&str>) -> Client {
    let timeouts = crate::aws::Timeouts {
        connect: DYNAMODB_CONNECT_TIMEOUT,
        attempt: DYNAMODB_ATTEMPT_TIMEOUT,
        operation: DYNAMODB_OPERATION_TIMEOUT,
    };
    Client::new(&crate::aws::sdk_config(endpoint, timeouts, "dynamodb-local").await)
}

/// Jittered exponential backoff for transaction conflicts: 5, 10, 20 ... ms, at most 160 ms.
pub async fn conflict_backoff(attempt: u32) {
    let mut byte = [0u8; 1];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut byte);
    let base = 5u64 << attempt.min(5);
    tokio::time::sleep(std::time::Duration::from_millis(
        base + u64::from(byte[0]) % base.max(1),
    ))
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_items_with_keys_and_entity() {
        let user = UserRecord {
            id: "usr_1".into(),
            subject: "auth0|abc".into(),
            email: Some("a@example.com".into()),
            name: None,
            organization_id: Some("org_1".into()),
            role: Some(Role::Admin),
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
            email_verified: Some(true),
            profile_read_at: Some("2026-01-01T00:00:00Z".into()),
        };
        let item = to_item("USER", keys::user(&user.subject), &user).unwrap();
        assert_eq!(item["PK"], AttributeValue::S("USER#auth0|abc".into()));
        assert_eq!(item["SK"], AttributeValue::S("PROFILE".into()));
        assert_eq!(item["entity"], AttributeValue::S("USER".into()));
        assert_eq!(item["role"], AttributeValue::S("ADMIN".into()));
        assert_eq!(item["organizationId"], AttributeValue::S("org_1".into()));
        assert_eq!(from_item::<UserRecord>(item).unwrap(), user);
    }

    #[test]
    fn absent_optionals_are_absent_attributes_not_nulls() {
        // `attribute_not_exists(organizationId)` guards joining an organization.
        let user = UserRecord {
            id: "usr_1".into(),
            subject: "s".into(),
            email: None,
            name: None,
            organization_id: None,
            role: None,
            created_at: "t".into(),
            updated_at: "t".into(),
            email_verified: None,
            profile_read_at: None,
        };
        let item = to_item("USER", keys::user("s"), &user).unwrap();
        for absent in [
            "email",
            "name",
            "organizationId",
            "role",
            "emailVerified",
            "profileReadAt",
        ] {
            assert!(
                !item.contains_key(absent),
                "{absent} stored as {:?}",
                item[absent]
            );
        }
        assert_eq!(from_item::<UserRecord>(item).unwrap(), user);
    }

    #[test]
    fn malformed_items_are_reported_not_panicked() {
        let mut item = key_map(keys::user("x"));
        item.insert("entity".into(), AttributeValue::S("USER".into()));
        item.insert("role".into(), AttributeValue::S("EMPEROR".into()));
        assert!(matches!(
            from_item::<UserRecord>(item),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn plan_status_names_are_their_stored_names() {
        for status in [
            PlanStatus::None,
            PlanStatus::Trialing,
            PlanStatus::Active,
            PlanStatus::PastDue,
            PlanStatus::Unpaid,
            PlanStatus::Incomplete,
            PlanStatus::IncompleteExpired,
            PlanStatus::Canceled,
            PlanStatus::Paused,
        ] {
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
    }

    #[test]
    fn tenant_keys_are_scoped_by_type() {
        let tenant = TenantId("org_9".into());
        assert_eq!(
            keys::organization(&tenant),
            ("ORG#org_9".into(), "ORG".into())
        );
        assert_eq!(
            keys::member(&tenant, "usr_1"),
            ("ORG#org_9".into(), "MEMBER#usr_1".into())
        );
    }
}
