//! Usage metering: call records, per-period counters, threshold alerts and the overage marker.
//!
//! A call is recorded with its period counter in one transaction, conditional on the period not
//! having been billed yet; billing a period's overage first freezes it (marker + `overageBilledThrough`
//! on the organization, conditional on the counter being the one read). Either the call lands before
//! the freeze and is in the bill, or its transaction fails and it is counted in the open period:
//! never lost, never billed twice.

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem};
use serde::{Deserialize, Serialize};

use super::audit::events;
use super::team::{TransactionFailure, classify};
use super::{Store, StoreError, TenantId, key_map, keys, now_rfc3339, sdk_error, to_item};
use crate::usage::{Period, Threshold};

/// [`OverageRecord::state`] once its overage is billed (`pending` before).
pub const OVERAGE_BILLED: &str = "billed";

/// Attempts of an alert claim that conflicts with concurrent usage transactions on its counter.
const ALERT_ATTEMPTS: u32 = 4;

/// One call as recorded (the idempotency record of `(organizationId, callId)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    pub organization_id: String,
    pub call_id: String,
    pub duration_seconds: u64,
    pub minutes: u64,
    pub ended_at: String,
    /// The period the call was counted in (its own, or the open one when its own was billed).
    pub period_start: String,
    pub period_end: String,
    pub recorded_at: String,
}

/// A period's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageCounter {
    #[serde(default)]
    pub minutes: u64,
    #[serde(default)]
    pub calls: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert80_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert100_at: Option<String>,
}

impl UsageCounter {
    pub fn alert_at(&self, threshold: Threshold) -> Option<&str> {
        match threshold {
            Threshold::Warning80 => self.alert80_at.as_deref(),
            Threshold::Exhausted100 => self.alert100_at.as_deref(),
        }
    }
}

/// The freeze of a closed period for overage billing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OverageRecord {
    pub period_key: String,
    pub minutes: u64,
    pub overage_minutes: u64,
    pub amount_cents: u64,
    pub invoice_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_item_id: Option<String>,
    /// `pending` until the invoice item exists, then `billed`.
    pub state: String,
    pub frozen_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    Recorded(CallRecord),
    /// The same call was recorded before: the original record.
    Repeated(CallRecord),
    /// The period was billed meanwhile: count the call in the open period instead.
    PeriodBilled,
    /// The organization is gone.
    OrganizationMissing,
    /// Another transaction touched the same items: try again.
    Conflict,
}

pub fn call_key(tenant: &TenantId, call_id: &str) -> (String, String) {
    (keys::tenant_partition(tenant), format!("CALL#{call_id}"))
}

pub fn counter_key(tenant: &TenantId, period: &Period) -> (String, String) {
    (
        keys::tenant_partition(tenant),
        format!("USAGE#{}", period.key()),
    )
}

pub fn overage_key(tenant: &TenantId, period: &Period) -> (String, String) {
    (
        keys::tenant_partition(tenant),
        format!("OVERAGE#{}", period.key()),
    )
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Store {
    pub async fn get_call(
        &self,
        tenant: &TenantId,
        call_id: &str,
    ) -> Result<Option<CallRecord>, StoreError> {
        self.get_record(call_key(tenant, call_id)).await
    }

    /// Records `call` and adds it to `period`'s counters in one transaction, unless the call was
    /// recorded before or the period was billed meanwhile.
    pub async fn record_call(
        &self,
        tenant: &TenantId,
        call: &CallRecord,
        period: &Period,
    ) -> Result<RecordOutcome, StoreError> {
        let (org_pk, org_sk) = keys::organization(tenant);
        let org_check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key_map((org_pk, org_sk))))
            .condition_expression(
                "attribute_exists(PK) AND attribute_not_exists(deletedAt) AND (attribute_not_exists(overageBilledThrough) OR overageBilledThrough < :end)",
            )
            .expression_attribute_values(":end", n(period.end.unix_timestamp()))
            .build()
            .map_err(StoreError::build)?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_item(
                "CALL",
                call_key(tenant, &call.call_id),
                call,
            )?))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .map_err(StoreError::build)?;
        let items = vec![
            TransactWriteItem::builder().put(put).build(),
            self.update(
                counter_key(tenant, period),
                "ADD minutes :minutes, calls :one SET periodStart = if_not_exists(periodStart, :start), periodEnd = if_not_exists(periodEnd, :periodEnd), entity = if_not_exists(entity, :entity)",
                "",
                vec![],
                vec![
                    (":minutes", n(call.minutes)),
                    (":one", n(1)),
                    (":start", s(rfc3339(period.start))),
                    (":periodEnd", s(rfc3339(period.end))),
                    (":entity", s("USAGE")),
                ],
            )?,
            TransactWriteItem::builder().condition_check(org_check).build(),
        ];
        match self.transact(items).await.map_err(classify) {
            Ok(()) => Ok(RecordOutcome::Recorded(call.clone())),
            Err(TransactionFailure::Condition(0)) => {
                match self.get_call(tenant, &call.call_id).await? {
                    Some(original) => Ok(RecordOutcome::Repeated(original)),
                    None => Ok(RecordOutcome::Conflict),
                }
            }
            Err(TransactionFailure::Condition(_)) => {
                let organization = self.get_organization(tenant).await?;
                Ok(match organization {
                    None => RecordOutcome::OrganizationMissing,
                    Some(_) => RecordOutcome::PeriodBilled,
                })
            }
            Err(TransactionFailure::Conflict) => Ok(RecordOutcome::Conflict),
            Err(TransactionFailure::Other(error)) => Err(error),
        }
    }

    /// The counters of `period` (zero when nothing was recorded).
    pub async fn usage_counter(
        &self,
        tenant: &TenantId,
        period: &Period,
    ) -> Result<UsageCounter, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_map(counter_key(tenant, period))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(match output.item {
            Some(item) => {
                serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))?
            }
            None => UsageCounter::default(),
        })
    }

    /// Marks `threshold` as fired for `period`, once: `true` only for the one call that fires it.
    /// The claim carries the `usage.threshold_crossed` audit event (the usage `minutes` read and
    /// the `included` minutes) in the same transaction, so the event is written exactly when the
    /// alert fires; a second claim writes neither. A claim that conflicts with a concurrent
    /// transaction on the counter reads it and tries again unless the alert is set meanwhile; one
    /// that keeps conflicting answers `false` too: the next recorded call claims it again.
    pub async fn fire_alert(
        &self,
        tenant: &TenantId,
        period: &Period,
        threshold: Threshold,
        minutes: u64,
        included: u64,
    ) -> Result<bool, StoreError> {
        let attribute = match threshold {
            Threshold::Warning80 => "alert80At",
            Threshold::Exhausted100 => "alert100At",
        };
        for attempt in 0..ALERT_ATTEMPTS {
            if attempt > 0 {
                super::conflict_backoff(attempt).await;
                // The conflict may have been another claim: a read, not another transaction on
                // the busy counter, tells.
                if self
                    .usage_counter(tenant, period)
                    .await?
                    .alert_at(threshold)
                    .is_some()
                {
                    return Ok(false);
                }
            }
            let event =
                events::usage_threshold_crossed(tenant, threshold, period, minutes, included);
            let items = vec![
                self.update(
                    counter_key(tenant, period),
                    "SET #alert = :now",
                    "attribute_exists(PK) AND attribute_not_exists(#alert)",
                    vec![("#alert", attribute)],
                    vec![(":now", s(now_rfc3339()))],
                )?,
                self.audit_put(tenant, &event)?,
            ];
            match self.transact(items).await.map_err(classify) {
                Ok(()) => return Ok(true),
                Err(TransactionFailure::Condition(_)) => return Ok(false),
                Err(TransactionFailure::Conflict) => {}
                Err(TransactionFailure::Other(error)) => return Err(error),
            }
        }
        tracing::warn!(organization_id = %tenant.0, threshold = threshold.as_str(), "usage alert claim kept conflicting; the next call claims it");
        Ok(false)
    }

    pub async fn overage_record(
        &self,
        tenant: &TenantId,
        period: &Period,
    ) -> Result<Option<OverageRecord>, StoreError> {
        self.get_record(overage_key(tenant, period)).await
    }

    /// Freezes `period` for billing with `record` (its minutes as read in `counter_minutes`):
    /// writes the marker, moves `overageBilledThrough` to the period's end, and checks the counter
    /// still holds what was read. `Ok(false)`: something changed; read again and retry.
    pub async fn freeze_period(
        &self,
        tenant: &TenantId,
        period: &Period,
        counter_minutes: u64,
        record: &OverageRecord,
    ) -> Result<bool, StoreError> {
        let counter_check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key_map(counter_key(tenant, period))))
            .set_condition_expression(Some(if counter_minutes == 0 {
                "attribute_not_exists(PK) OR minutes = :zero".to_owned()
            } else {
                "minutes = :minutes".to_owned()
            }))
            .set_expression_attribute_values(Some(if counter_minutes == 0 {
                std::collections::HashMap::from([(":zero".to_owned(), n(0))])
            } else {
                std::collections::HashMap::from([(":minutes".to_owned(), n(counter_minutes))])
            }))
            .build()
            .map_err(StoreError::build)?;
        let items = vec![
            self.put(to_item("OVERAGE", overage_key(tenant, period), record)?, "attribute_not_exists(PK)")?,
            self.update(
                keys::organization(tenant),
                "SET overageBilledThrough = :end",
                "attribute_exists(PK) AND (attribute_not_exists(overageBilledThrough) OR overageBilledThrough < :end)",
                vec![],
                vec![(":end", n(period.end.unix_timestamp()))],
            )?,
            TransactWriteItem::builder().condition_check(counter_check).build(),
        ];
        match self.transact(items).await.map_err(classify) {
            Ok(()) => Ok(true),
            Err(TransactionFailure::Condition(_)) | Err(TransactionFailure::Conflict) => Ok(false),
            Err(TransactionFailure::Other(error)) => Err(error),
        }
    }

    /// The item that marks a frozen period as billed, for the webhook's commit transaction: only
    /// a marker not billed yet, so its overage (and `overage.billed` event) is recorded once.
    pub fn overage_billed_item(
        &self,
        tenant: &TenantId,
        period: &Period,
        invoice_item_id: Option<&str>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut values = vec![(":billed", s(OVERAGE_BILLED))];
        let expression = match invoice_item_id {
            Some(id) => {
                values.push((":item", s(id)));
                "SET #state = :billed, invoiceItemId = :item"
            }
            None => "SET #state = :billed",
        };
        self.update(
            overage_key(tenant, period),
            expression,
            "attribute_exists(PK) AND #state <> :billed",
            vec![("#state", "state")],
            values,
        )
    }
}
