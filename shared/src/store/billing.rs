//! Stripe customers, the subscription state written by webhooks, invoices, and the processed-event
//! markers that make each webhook event take effect exactly once.

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use serde::{Deserialize, Serialize};

use super::audit::{PlanSummary, events};
use super::team::{TransactionFailure, classify};
use super::{
    OrganizationRecord, Store, StoreError, TenantId, from_item, key_map, keys, now_rfc3339,
    sdk_error, to_item,
};
use crate::billing::state::BillingState;

/// Processed-event markers outlive Stripe's retry window (3 days) by far.
const EVENT_MARKER_DAYS: i64 = 90;

/// An invoice as the billing page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceRecord {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    pub amount_due: u64,
    pub amount_paid: u64,
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosted_invoice_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_pdf: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_start: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_end: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paid_at: Option<i64>,
    pub created: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// `created:rank:event` of the event this was written from; an older event never overwrites it.
    pub event_order: String,
    /// Overage of the closed period billed on this (renewal) invoice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overage_minutes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overage_cost_cents: Option<u64>,
}

/// The customer look-up item: webhooks arrive with a customer id and no tenant.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CustomerRecord {
    organization_id: String,
    customer_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventMarker {
    event_id: String,
    event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    organization_id: Option<String>,
    processed_at: String,
    ttl: i64,
}

pub(super) mod billing_keys {
    use super::TenantId;

    pub fn customer(customer_id: &str) -> (String, String) {
        (format!("STRIPE_CUSTOMER#{customer_id}"), "ORG".to_owned())
    }

    pub fn event(event_id: &str) -> (String, String) {
        (format!("STRIPE_EVENT#{event_id}"), "EVENT".to_owned())
    }

    /// Newest first by `created` when queried backwards.
    pub fn invoice(tenant: &TenantId, created: i64, invoice_id: &str) -> (String, String) {
        (
            format!("ORG#{}", tenant.0),
            format!("INVOICE#{created:012}#{invoice_id}"),
        )
    }
}

/// Everything one webhook event changes, committed together with its processed-event marker.
#[derive(Debug, Clone)]
pub struct WebhookCommit {
    pub event_id: String,
    pub event_type: String,
    pub tenant: Option<TenantId>,
    /// The new billing state and the `billingVersion` it was computed from.
    pub billing: Option<(BillingState, u64)>,
    pub invoice: Option<InvoiceRecord>,
    /// A frozen usage period whose overage is now billed: its marker, with the invoice item's id
    /// (`None` when there was no overage to bill). Recorded only while the marker is not yet
    /// `billed`; with an invoice item it writes the `overage.billed` audit event.
    pub overage_billed: Option<(crate::usage::Period, super::usage::OverageRecord)>,
    /// The organization's plan, status and entitlements before and after `billing`: a
    /// `plan.changed` audit event is written with the billing state when they differ.
    pub plan_change: Option<(PlanSummary, PlanSummary)>,
}

impl OrganizationRecord {
    /// The organization as [`Store::commit_webhook`] leaves it with the billing state `state`:
    /// its status, and its plan while the subscription is live (entitlements follow a live
    /// subscription only; the billing state keeps the last plan for the billing page either way).
    pub fn with_billing(&self, state: &BillingState) -> OrganizationRecord {
        OrganizationRecord {
            plan: entitled_plan(state),
            plan_status: state.status,
            billing: Some(state.clone()),
            ..self.clone()
        }
    }
}

fn entitled_plan(state: &BillingState) -> Option<crate::pricing::Plan> {
    state.plan.filter(|_| super::team::is_live(state.status))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    Committed,
    /// The event was processed before: nothing changed.
    Duplicate,
    /// Another event changed the billing state since it was read: read again and recompute.
    BillingChanged,
    /// The stored invoice was written from a newer event: commit without it.
    InvoiceNewer,
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

impl Store {
    /// The organization a Stripe customer belongs to.
    pub async fn organization_of_customer(
        &self,
        customer_id: &str,
    ) -> Result<Option<TenantId>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_map(billing_keys::customer(customer_id))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        let record: Option<CustomerRecord> = output.item.map(from_item).transpose()?;
        Ok(record.map(|r| TenantId(r.organization_id)))
    }

    /// Stores `customer_id` as the organization's Stripe customer, unless it already has one:
    /// returns the customer that stands (the earlier one when two checkouts raced).
    pub async fn attach_customer(
        &self,
        tenant: &TenantId,
        customer_id: &str,
    ) -> Result<String, StoreError> {
        let lookup = CustomerRecord {
            organization_id: tenant.0.clone(),
            customer_id: customer_id.to_owned(),
        };
        let items = vec![
            self.update(
                keys::organization(tenant),
                "SET stripeCustomerId = :customer",
                "attribute_exists(PK) AND attribute_not_exists(stripeCustomerId)",
                vec![],
                vec![(":customer", s(customer_id))],
            )?,
            self.put(
                to_item(
                    "STRIPE_CUSTOMER",
                    billing_keys::customer(customer_id),
                    &lookup,
                )?,
                "attribute_not_exists(PK)",
            )?,
        ];
        match self.transact(items).await.map_err(classify) {
            Ok(()) => Ok(customer_id.to_owned()),
            Err(TransactionFailure::Condition(_)) | Err(TransactionFailure::Conflict) => {
                let organization = self
                    .get_organization(tenant)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                organization
                    .stripe_customer_id
                    .ok_or(StoreError::ConcurrentUpdate)
            }
            Err(TransactionFailure::Other(error)) => Err(error),
        }
    }

    /// Whether the event was already processed (a cheap early answer to redeliveries; the
    /// transaction in [`Store::commit_webhook`] is what guarantees exactly once).
    pub async fn event_processed(&self, event_id: &str) -> Result<bool, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_map(billing_keys::event(event_id))))
            .consistent_read(true)
            .projection_expression("PK")
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(output.item.is_some())
    }

    /// Commits one webhook event: the marker (only if new), the billing state (only if the version
    /// is still the one read), the invoice (only if not newer), the overage marker set to billed
    /// (only if not billed yet), and their audit events (`plan.changed` when the plan, status or
    /// entitlements differ; `overage.billed` with an invoice item), in one transaction.
    pub async fn commit_webhook(
        &self,
        commit: &WebhookCommit,
    ) -> Result<WebhookOutcome, StoreError> {
        let ttl = time::OffsetDateTime::now_utc().unix_timestamp() + EVENT_MARKER_DAYS * 86_400;
        let marker = EventMarker {
            event_id: commit.event_id.clone(),
            event_type: commit.event_type.clone(),
            organization_id: commit.tenant.as_ref().map(|t| t.0.clone()),
            processed_at: now_rfc3339(),
            ttl,
        };
        let mut items: Vec<TransactWriteItem> = vec![self.put(
            to_item(
                "STRIPE_EVENT",
                billing_keys::event(&commit.event_id),
                &marker,
            )?,
            "attribute_not_exists(PK)",
        )?];
        let mut billing_index = None;
        let mut invoice_index = None;
        if let (Some(tenant), Some((state, version))) = (&commit.tenant, &commit.billing) {
            let state_value: AttributeValue =
                serde_dynamo::to_attribute_value(state).map_err(StoreError::build)?;
            let status_value: AttributeValue =
                serde_dynamo::to_attribute_value(state.status).map_err(StoreError::build)?;
            // Entitlements (`plan`) follow a live subscription only; the billing state keeps the
            // last plan for the billing page either way.
            let (expression, mut values) = match entitled_plan(state) {
                Some(plan) => (
                    "SET billing = :billing, billingVersion = :next, planStatus = :status, #plan = :plan, updatedAt = :now",
                    vec![(":plan", s(plan.as_str()))],
                ),
                None => (
                    "SET billing = :billing, billingVersion = :next, planStatus = :status, updatedAt = :now REMOVE #plan",
                    vec![],
                ),
            };
            values.extend([
                (":billing", state_value),
                (":status", status_value),
                (":next", AttributeValue::N((version + 1).to_string())),
                (":seen", AttributeValue::N(version.to_string())),
                (":now", s(now_rfc3339())),
            ]);
            billing_index = Some(items.len());
            items.push(self.update(
                keys::organization(tenant),
                expression,
                "attribute_exists(PK) AND (billingVersion = :seen OR (attribute_not_exists(billingVersion) AND :seen = :zero))",
                vec![("#plan", "plan")],
                {
                    values.push((":zero", AttributeValue::N("0".into())));
                    values
                },
            )?);
        }
        if let (Some(tenant), Some(invoice)) = (&commit.tenant, &commit.invoice) {
            invoice_index = Some(items.len());
            let mut put_item = to_item(
                "INVOICE",
                billing_keys::invoice(tenant, invoice.created, &invoice.id),
                invoice,
            )?;
            put_item.insert("organizationId".into(), s(&tenant.0));
            let put = aws_sdk_dynamodb::types::Put::builder()
                .table_name(&self.table)
                .set_item(Some(put_item))
                .condition_expression("attribute_not_exists(PK) OR eventOrder < :order")
                .expression_attribute_values(":order", s(&invoice.event_order))
                .build()
                .map_err(StoreError::build)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        if let (Some(tenant), Some((period, record))) = (&commit.tenant, &commit.overage_billed) {
            items.push(self.overage_billed_item(
                tenant,
                period,
                record.invoice_item_id.as_deref(),
            )?);
        }
        // The audit events, last, so the change's own items keep their positions.
        if let (Some(tenant), Some(_), Some((before, after))) =
            (&commit.tenant, &commit.billing, &commit.plan_change)
            && before != after
        {
            items.push(self.audit_put(tenant, &events::plan_changed(tenant, before, after))?);
        }
        if let (Some(tenant), Some((period, record))) = (&commit.tenant, &commit.overage_billed)
            && let Some(item) = &record.invoice_item_id
        {
            items.push(self.audit_put(
                tenant,
                &events::overage_billed(tenant, period, record, item),
            )?);
        }
        match self.transact(items).await.map_err(classify) {
            Ok(()) => Ok(WebhookOutcome::Committed),
            Err(TransactionFailure::Condition(0)) => Ok(WebhookOutcome::Duplicate),
            Err(TransactionFailure::Condition(index)) if Some(index) == billing_index => {
                Ok(WebhookOutcome::BillingChanged)
            }
            Err(TransactionFailure::Condition(index)) if Some(index) == invoice_index => {
                Ok(WebhookOutcome::InvoiceNewer)
            }
            Err(TransactionFailure::Condition(_)) | Err(TransactionFailure::Conflict) => {
                Ok(WebhookOutcome::BillingChanged)
            }
            Err(TransactionFailure::Other(error)) => Err(error),
        }
    }

    /// One page of the organization's invoices, newest first.
    pub async fn list_invoices(
        &self,
        tenant: &TenantId,
        cursor: Option<&str>,
        limit: i32,
    ) -> Result<(Vec<InvoiceRecord>, Option<String>), StoreError> {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let start = match cursor {
            Some(cursor) => {
                let sort_key = URL_SAFE_NO_PAD
                    .decode(cursor)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .filter(|sk| sk.starts_with("INVOICE#"))
                    .ok_or(StoreError::NotFound)?;
                Some(key_map((keys::tenant_partition(tenant), sort_key)))
            }
            None => None,
        };
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND begins_with(SK, :invoice)")
            .expression_attribute_values(":pk", s(keys::tenant_partition(tenant)))
            .expression_attribute_values(":invoice", s("INVOICE#"))
            .scan_index_forward(false)
            .set_exclusive_start_key(start)
            .limit(limit)
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        let invoices = output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(from_item)
            .collect::<Result<Vec<_>, _>>()?;
        let next = output
            .last_evaluated_key
            .and_then(|key| match key.get("SK") {
                Some(AttributeValue::S(sk)) => Some(URL_SAFE_NO_PAD.encode(sk.as_bytes())),
                _ => None,
            });
        Ok((invoices, next))
    }
}
