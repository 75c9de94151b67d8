//! Deleting an organization: a job whose state lives on the organization's item.
//!
//! [`Store::start_deletion`] marks the organization deleted (callers read it as gone at once) and
//! starts the job; that is the whole synchronous part, two requests whatever the organization's
//! size. [`Store::deletion_step`] then does one bounded batch and records how far it got, in three
//! phases: members are detached first (their user records stop naming the organization), then
//! pending invitations are withdrawn (their look-up items under `INVITEE#` go), then every item of
//! the partition gets the organization's `ttl` (and each API key's look-up item under `APIKEY#`
//! goes).
//!
//! A step is idempotent: detaching is conditional on the user still naming the organization, and
//! a `ttl` is written only where none as early is set, so a batch redone after a failure changes
//! nothing twice; its counts are of items handled and are recorded with the step, so each item is
//! counted once. A step records its progress conditional on the step
//! number it read, so two workers given the same job cannot both advance it; the loser's writes
//! were the same writes. Each recorded step changes the organization's item, and that change on
//! the table's stream is what runs the next step (the `org-cleanup` function in AWS, the dev
//! gateway's stream worker locally). The step that finishes the job writes the
//! `organization.deleted` audit event in the same transaction as the `finished` mark, expiring
//! with the organization's items.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::team::{DELETED_ORGANIZATION_RETENTION_DAYS, is_live};
use super::{
    Item, PlanStatus, Store, StoreError, TenantId, from_item, key_map, keys, now_rfc3339, sdk_error,
};

/// Items one step handles at most: a step stays within a few seconds on a cold table.
pub const DELETION_BATCH: i32 = 200;

/// Writes of one step in flight at once.
const STEP_CONCURRENCY: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletionStatus {
    Running,
    Finished,
}

/// The job's phases, in the order it runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletionPhase {
    /// Members' user records stop naming the organization.
    Members,
    /// Pending invitations' look-up items go, so nobody can accept them.
    Invitations,
    /// Every item of the partition gets the organization's `ttl`.
    Items,
}

impl DeletionPhase {
    fn next(self) -> Option<DeletionPhase> {
        match self {
            DeletionPhase::Members => Some(DeletionPhase::Invitations),
            DeletionPhase::Invitations => Some(DeletionPhase::Items),
            DeletionPhase::Items => None,
        }
    }

    /// The sort-key prefix of the items this phase visits (`None`: the whole partition).
    fn prefix(self) -> Option<&'static str> {
        match self {
            DeletionPhase::Members => Some("MEMBER#"),
            DeletionPhase::Invitations => Some("INVITE#"),
            DeletionPhase::Items => None,
        }
    }

    /// Its name as stored and answered (`members`, `invitations`, `items`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeletionPhase::Members => "members",
            DeletionPhase::Invitations => "invitations",
            DeletionPhase::Items => "items",
        }
    }
}

/// The deletion job as the organization's item holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletionJob {
    #[serde(rename = "id")]
    pub organization_id: String,
    pub plan_status: PlanStatus,
    #[serde(default)]
    pub stripe_customer_id: Option<String>,
    /// When the organization was deleted; `None`: it is not.
    #[serde(default)]
    pub deleted_at: Option<String>,
    /// Unix seconds at which DynamoDB removes the organization's items.
    #[serde(default, rename = "ttl")]
    pub expires_at: Option<i64>,
    /// `None` on an organization not deleted, or deleted before deletion was a job.
    #[serde(default)]
    pub deletion_status: Option<DeletionStatus>,
    #[serde(default)]
    pub deletion_phase: Option<DeletionPhase>,
    /// The sort key of the last item the current phase handled.
    #[serde(default)]
    pub deletion_cursor: Option<String>,
    /// Steps recorded so far; a step is recorded only if this is still the number it read.
    #[serde(default)]
    pub deletion_step: u64,
    /// Memberships the job ended: each member's user detached, or found already naming another
    /// organization (or none).
    #[serde(default)]
    pub deletion_members_detached: u64,
    /// Items of the partition the job gave the organization's `ttl` (or found with one as early),
    /// the organization's own item aside.
    #[serde(default)]
    pub deletion_items_expired: u64,
    #[serde(default)]
    pub deletion_finished_at: Option<String>,
}

impl DeletionJob {
    pub fn is_running(&self) -> bool {
        self.deletion_status == Some(DeletionStatus::Running)
    }

    pub fn is_finished(&self) -> bool {
        self.deletion_status == Some(DeletionStatus::Finished)
    }

    /// When the organization's items are removed, RFC 3339.
    pub fn retained_until(&self) -> Option<String> {
        let at = time::OffsetDateTime::from_unix_timestamp(self.expires_at?).ok()?;
        at.format(&time::format_description::well_known::Rfc3339)
            .ok()
    }
}

/// What [`Store::start_deletion`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionStart {
    pub job: DeletionJob,
    /// `false`: the organization was already deleted; a running job was nudged to go on.
    pub started: bool,
}

/// What one [`Store::deletion_step`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// One batch done and recorded; the job goes on.
    Advanced(DeletionJob),
    /// The last batch done: every member detached and every item expiring.
    Finished(DeletionJob),
    /// Another worker recorded this step first; this one's writes were the same writes.
    Superseded,
    /// No deletion of this organization is running (finished, never started, or no such item).
    NotRunning,
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn condition_failed<E>(error: &aws_sdk_dynamodb::error::SdkError<E>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    error
        .as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

/// One page of a partition: its items and the sort key to go on from (`None`: the last page).
struct Page {
    items: Vec<Item>,
    last_sort_key: Option<String>,
}

impl Store {
    /// The organization's deletion state, whether or not it is deleted; `None`: no such item.
    pub async fn deletion_job(&self, tenant: &TenantId) -> Result<Option<DeletionJob>, StoreError> {
        self.get_record(keys::organization(tenant)).await
    }

    /// Deletes `tenant`: marks it deleted and starts the job that detaches its members and expires
    /// its items. Refused while its subscription is live ([`StoreError::SubscriptionActive`]).
    /// On an organization already deleted it changes nothing but nudges a running job (a fresh
    /// change on the stream), so repeating a `DELETE` resumes a job that stalled. Starting a job
    /// writes the `organization.deletion_started` audit event (by `actor`) in the same
    /// transaction as the mark; resuming one writes none.
    pub async fn start_deletion(
        &self,
        tenant: &TenantId,
        actor: &super::audit::AuditActor,
    ) -> Result<DeletionStart, StoreError> {
        let job = self
            .deletion_job(tenant)
            .await?
            .ok_or(StoreError::NotFound)?;
        if job.deleted_at.is_some() {
            return self.resume_deletion(tenant, job).await;
        }
        if is_live(job.plan_status) {
            return Err(StoreError::SubscriptionActive);
        }
        let now = time::OffsetDateTime::now_utc();
        let expires = now + time::Duration::days(DELETED_ORGANIZATION_RETENTION_DAYS);
        let status = serde_dynamo::to_attribute_value::<_, AttributeValue>(job.plan_status)
            .map_err(StoreError::build)?;
        let deleted_at = now_rfc3339();
        let mark = aws_sdk_dynamodb::types::Update::builder()
            .table_name(&self.table)
            .set_key(Some(key_map(keys::organization(tenant))))
            .update_expression(
                "SET deletedAt = :now, #ttl = :ttl, updatedAt = :now, deletionStatus = :running, \
                 deletionPhase = :phase, deletionStep = :zero, deletionMembersDetached = :zero, \
                 deletionItemsExpired = :zero",
            )
            // The plan status we checked is still the stored one (no subscription started since).
            .condition_expression(
                "attribute_exists(PK) AND attribute_not_exists(deletedAt) AND planStatus = :status",
            )
            .expression_attribute_names("#ttl", super::schema::TABLE.ttl_attribute)
            .expression_attribute_values(":now", s(&deleted_at))
            .expression_attribute_values(":ttl", n(expires.unix_timestamp()))
            .expression_attribute_values(":running", s("running"))
            .expression_attribute_values(":phase", s(DeletionPhase::Members.as_str()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":status", status)
            .build()
            .map_err(StoreError::build)?;
        let items = vec![
            aws_sdk_dynamodb::types::TransactWriteItem::builder()
                .update(mark)
                .build(),
            self.audit_put(
                tenant,
                &super::audit::events::organization_deletion_started(tenant, actor),
            )?,
        ];
        match self.transact(items).await.map_err(super::team::classify) {
            Ok(()) => {
                // The item as the mark left it: the job read before, with the fields just set.
                let started = DeletionJob {
                    deleted_at: Some(deleted_at.clone()),
                    expires_at: Some(expires.unix_timestamp()),
                    deletion_status: Some(DeletionStatus::Running),
                    deletion_phase: Some(DeletionPhase::Members),
                    deletion_step: 0,
                    deletion_members_detached: 0,
                    deletion_items_expired: 0,
                    ..job
                };
                tracing::info!(organization_id = %tenant.0, "organization deleted; deletion job started");
                Ok(DeletionStart {
                    job: started,
                    started: true,
                })
            }
            Err(super::team::TransactionFailure::Condition(_))
            | Err(super::team::TransactionFailure::Conflict) => Err(StoreError::ConcurrentUpdate),
            Err(super::team::TransactionFailure::Other(error)) => Err(error),
        }
    }

    /// An organization already deleted: a finished job is answered as it is; a running one (or
    /// one deleted before deletion was a job) is nudged, with the fields a job needs set if absent.
    async fn resume_deletion(
        &self,
        tenant: &TenantId,
        job: DeletionJob,
    ) -> Result<DeletionStart, StoreError> {
        if job.is_finished() {
            return Ok(DeletionStart {
                job,
                started: false,
            });
        }
        let expires = time::OffsetDateTime::now_utc()
            + time::Duration::days(DELETED_ORGANIZATION_RETENTION_DAYS);
        let nudged = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_map(keys::organization(tenant))))
            .update_expression(
                "SET deletionNudgedAt = :now, deletionStatus = :running, \
                 #ttl = if_not_exists(#ttl, :ttl), \
                 deletionPhase = if_not_exists(deletionPhase, :phase), \
                 deletionStep = if_not_exists(deletionStep, :zero), \
                 deletionMembersDetached = if_not_exists(deletionMembersDetached, :zero), \
                 deletionItemsExpired = if_not_exists(deletionItemsExpired, :zero)",
            )
            .condition_expression(
                "attribute_exists(deletedAt) AND (attribute_not_exists(deletionStatus) OR deletionStatus = :running)",
            )
            .expression_attribute_names("#ttl", super::schema::TABLE.ttl_attribute)
            .expression_attribute_values(":now", s(now_rfc3339()))
            .expression_attribute_values(":running", s("running"))
            .expression_attribute_values(":ttl", n(expires.unix_timestamp()))
            .expression_attribute_values(":phase", s(DeletionPhase::Members.as_str()))
            .expression_attribute_values(":zero", n(0))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let job = match nudged {
            Ok(output) => from_item(output.attributes.unwrap_or_default())?,
            // It finished between our read and our write.
            Err(error) if condition_failed(&error) => self
                .deletion_job(tenant)
                .await?
                .ok_or(StoreError::NotFound)?,
            Err(error) => return Err(sdk_error("UpdateItem", error)),
        };
        tracing::info!(organization_id = %tenant.0, "deletion job nudged");
        Ok(DeletionStart {
            job,
            started: false,
        })
    }

    /// Runs one batch of `tenant`'s deletion job (at most `batch` items) and records it.
    pub async fn deletion_step(
        &self,
        tenant: &TenantId,
        batch: i32,
    ) -> Result<StepOutcome, StoreError> {
        let Some(job) = self.deletion_job(tenant).await? else {
            return Ok(StepOutcome::NotRunning);
        };
        // Only an organization marked deleted is ever wound up, whatever its item or a stream
        // record says about a job: a live organization's members and items are never touched.
        if !job.is_running() || job.deleted_at.is_none() {
            return Ok(StepOutcome::NotRunning);
        }
        let expires_at = job.expires_at.unwrap_or_else(|| {
            (time::OffsetDateTime::now_utc()
                + time::Duration::days(DELETED_ORGANIZATION_RETENTION_DAYS))
            .unix_timestamp()
        });
        let phase = job.deletion_phase.unwrap_or(DeletionPhase::Members);
        let page = self
            .partition_page(
                tenant,
                phase.prefix(),
                job.deletion_cursor.as_deref(),
                batch,
            )
            .await?;
        let results: Vec<Result<(u64, u64), StoreError>> = futures::stream::iter(page.items)
            .map(|item| self.wind_up_item(tenant, phase, item, expires_at))
            .buffer_unordered(STEP_CONCURRENCY)
            .collect()
            .await;
        let (mut detached, mut expired) = (0, 0);
        for result in results {
            let (d, e) = result?;
            detached += d;
            expired += e;
        }
        let (next_phase, cursor, finished) = match page.last_sort_key {
            Some(sort_key) => (phase, Some(sort_key), false),
            None => match phase.next() {
                Some(next) => (next, None, false),
                None => (phase, None, true),
            },
        };
        if finished {
            // The look-up webhooks find the organization by: kept as long as its items.
            if let Some(customer) = &job.stripe_customer_id {
                self.expire(super::billing::billing_keys::customer(customer), expires_at)
                    .await?;
            }
        }
        self.record_step(
            tenant, &job, next_phase, cursor, finished, detached, expired, expires_at,
        )
        .await
    }

    /// Records a step: progress and counts, conditional on the step number the step read. The
    /// step that finishes the job writes the `organization.deleted` audit event in the same
    /// transaction, expiring at `expires_at` with the organization's items: the condition lets
    /// only one worker record that step, so the event is written once however often the last
    /// step is retried or raced.
    #[allow(clippy::too_many_arguments)]
    async fn record_step(
        &self,
        tenant: &TenantId,
        job: &DeletionJob,
        phase: DeletionPhase,
        cursor: Option<String>,
        finished: bool,
        detached: u64,
        expired: u64,
        expires_at: i64,
    ) -> Result<StepOutcome, StoreError> {
        let now = now_rfc3339();
        let mut set = vec![
            "deletionStep = deletionStep + :one",
            "deletionPhase = :phase",
            "deletionMembersDetached = deletionMembersDetached + :detached",
            "deletionItemsExpired = deletionItemsExpired + :expired",
            "updatedAt = :now",
        ];
        let mut values = vec![
            (":one", n(1)),
            (":step", n(job.deletion_step)),
            (":running", s("running")),
            (":phase", s(phase.as_str())),
            (":detached", n(detached)),
            (":expired", n(expired)),
            (":now", s(&now)),
        ];
        if let Some(cursor) = cursor.clone() {
            set.push("deletionCursor = :cursor");
            values.push((":cursor", s(cursor)));
        }
        if finished {
            set.push("deletionStatus = :finished");
            set.push("deletionFinishedAt = :now");
            values.push((":finished", s("finished")));
        }
        let mut expression = format!("SET {}", set.join(", "));
        if cursor.is_none() {
            expression.push_str(" REMOVE deletionCursor");
        }
        let condition =
            "attribute_exists(deletedAt) AND deletionStep = :step AND deletionStatus = :running";
        if finished {
            let update = self.update(
                keys::organization(tenant),
                &expression,
                condition,
                vec![],
                values,
            )?;
            let counts = (detached, expired);
            return self
                .record_last_step(tenant, job, phase, counts, expires_at, update, now)
                .await;
        }
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_map(keys::organization(tenant))))
            .condition_expression(condition)
            .update_expression(expression)
            .return_values(ReturnValue::AllNew);
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        match request.send().await {
            Ok(output) => Ok(StepOutcome::Advanced(from_item(
                output.attributes.unwrap_or_default(),
            )?)),
            Err(error) if condition_failed(&error) => Ok(StepOutcome::Superseded),
            Err(error) => Err(sdk_error("UpdateItem", error)),
        }
    }

    /// The finishing step's write (`update`: the job's) with the `organization.deleted` event
    /// appended last, in one transaction; answers the job as that write left it.
    #[allow(clippy::too_many_arguments)]
    async fn record_last_step(
        &self,
        tenant: &TenantId,
        job: &DeletionJob,
        phase: DeletionPhase,
        (detached, expired): (u64, u64),
        expires_at: i64,
        update: aws_sdk_dynamodb::types::TransactWriteItem,
        now: String,
    ) -> Result<StepOutcome, StoreError> {
        let finished = DeletionJob {
            deletion_step: job.deletion_step + 1,
            deletion_phase: Some(phase),
            deletion_cursor: None,
            deletion_members_detached: job.deletion_members_detached + detached,
            deletion_items_expired: job.deletion_items_expired + expired,
            deletion_status: Some(DeletionStatus::Finished),
            deletion_finished_at: Some(now),
            ..job.clone()
        };
        let event = super::audit::events::organization_deleted(
            tenant,
            finished.deletion_members_detached,
            finished.deletion_items_expired,
        );
        let items = vec![
            update,
            self.audit_put_expiring(tenant, &event, Some(expires_at))?,
        ];
        match self.transact(items).await.map_err(super::team::classify) {
            Ok(()) => {
                tracing::info!(
                    organization_id = %tenant.0,
                    members_detached = finished.deletion_members_detached,
                    items_expired = finished.deletion_items_expired,
                    "organization deletion finished"
                );
                Ok(StepOutcome::Finished(finished))
            }
            // Another worker recorded this step first (its own event with it).
            Err(super::team::TransactionFailure::Condition(_)) => Ok(StepOutcome::Superseded),
            // A concurrent write to the organization's item: not recorded; the stream retries the
            // step (idempotent), whose condition then says whether it is still to be recorded.
            Err(super::team::TransactionFailure::Conflict) => Err(StoreError::ConcurrentUpdate),
            Err(super::team::TransactionFailure::Other(error)) => Err(error),
        }
    }

    /// Up to `limit` items of `tenant`'s partition after `cursor`, those under `prefix` only if
    /// given. Read consistently: a write acknowledged before the deletion is seen.
    async fn partition_page(
        &self,
        tenant: &TenantId,
        prefix: Option<&str>,
        cursor: Option<&str>,
        limit: i32,
    ) -> Result<Page, StoreError> {
        let partition = keys::tenant_partition(tenant);
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .limit(limit)
            .expression_attribute_values(":pk", s(&partition));
        query = match prefix {
            Some(prefix) => query
                .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
                .expression_attribute_values(":prefix", s(prefix)),
            None => query.key_condition_expression("PK = :pk"),
        };
        if let Some(cursor) = cursor {
            query = query.set_exclusive_start_key(Some(key_map((partition, cursor.to_owned()))));
        }
        let output = query.send().await.map_err(|e| sdk_error("Query", e))?;
        let last_sort_key = output
            .last_evaluated_key
            .as_ref()
            .and_then(|key| key.get(super::schema::TABLE.sort_key))
            .and_then(|value| value.as_s().ok())
            .cloned();
        Ok(Page {
            items: output.items.unwrap_or_default(),
            last_sort_key,
        })
    }

    /// What `phase` does to one item; answers what it handled: (members, items), each 0 or 1.
    /// Counted by item handled, not by write made, so a batch redone after a failure (whose writes
    /// then change nothing) counts each item once, in the step that records it.
    async fn wind_up_item(
        &self,
        tenant: &TenantId,
        phase: DeletionPhase,
        item: Item,
        expires_at: i64,
    ) -> Result<(u64, u64), StoreError> {
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let Some(sort_key) = text(super::schema::TABLE.sort_key) else {
            return Ok((0, 0));
        };
        // The organization's own item carries the job and its `ttl` already; members and
        // invitations were handled by their own phases.
        let handled_before = [DeletionPhase::Members, DeletionPhase::Invitations]
            .into_iter()
            .filter_map(DeletionPhase::prefix)
            .any(|prefix| sort_key.starts_with(prefix));
        if sort_key == "ORG" || (phase == DeletionPhase::Items && handled_before) {
            return Ok((0, 0));
        }
        let mut members = 0;
        match phase {
            DeletionPhase::Members => {
                if let Some(subject) = text("subject") {
                    self.detach_user(tenant, &subject).await?;
                }
                members = 1;
            }
            DeletionPhase::Invitations => {
                if let Some(email) = text("email") {
                    self.client
                        .delete_item()
                        .table_name(&self.table)
                        .set_key(Some(key_map(keys::invitee(&email, tenant))))
                        .send()
                        .await
                        .map_err(|e| sdk_error("DeleteItem", e))?;
                }
            }
            DeletionPhase::Items => {
                // An API key's look-up item lives outside the partition: it goes, so the key
                // cannot even be looked up again.
                if let Some(id) = sort_key.strip_prefix("APIKEY#") {
                    self.client
                        .delete_item()
                        .table_name(&self.table)
                        .set_key(Some(key_map(super::api_keys::api_key_lookup_key(id))))
                        .send()
                        .await
                        .map_err(|e| sdk_error("DeleteItem", e))?;
                }
            }
        }
        self.expire((keys::tenant_partition(tenant), sort_key), expires_at)
            .await?;
        Ok((members, 1))
    }

    /// The user signed in as `subject` stops naming `tenant`; `false`: it already did not (a
    /// redone batch, or they left or joined elsewhere since).
    async fn detach_user(&self, tenant: &TenantId, subject: &str) -> Result<bool, StoreError> {
        let detached = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_map(keys::user(subject))))
            .update_expression("REMOVE organizationId, #role SET updatedAt = :now")
            .condition_expression("organizationId = :org")
            .expression_attribute_names("#role", "role")
            .expression_attribute_values(":org", s(&tenant.0))
            .expression_attribute_values(":now", s(now_rfc3339()))
            .send()
            .await;
        match detached {
            Ok(_) => Ok(true),
            Err(error) if condition_failed(&error) => Ok(false),
            Err(error) => Err(sdk_error("UpdateItem", error)),
        }
    }

    /// Gives the item at `key` the `ttl` `expires_at` unless it has one as early already (or is
    /// gone); `true`: it was written.
    async fn expire(&self, key: (String, String), expires_at: i64) -> Result<bool, StoreError> {
        let written = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_map(key)))
            .update_expression("SET #ttl = :ttl")
            .condition_expression(
                "attribute_exists(PK) AND (attribute_not_exists(#ttl) OR #ttl > :ttl)",
            )
            .expression_attribute_names("#ttl", super::schema::TABLE.ttl_attribute)
            .expression_attribute_values(":ttl", n(expires_at))
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(error) if condition_failed(&error) => Ok(false),
            Err(error) => Err(sdk_error("UpdateItem", error)),
        }
    }
}
