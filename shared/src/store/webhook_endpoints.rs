//! Outbound webhook endpoints: where an organization's audit events are delivered, signed as
//! Standard Webhooks (the `notifier` delivers them; `functions/webhooks` manages them).
//!
//! | item | `PK` | `SK` | holds |
//! |---|---|---|---|
//! | an endpoint | `ORG#<org>` | `WEBHOOK#<id>` | [`WebhookEndpointRecord`]: the URL, the event types, the signing secret encrypted under the key ring |
//!
//! The organization item counts them (`webhookEndpointCount`): a creation increments it only
//! while it is below [`MAX_WEBHOOK_ENDPOINTS`], a deletion decrements it, each in the same
//! transaction as the endpoint item and its audit event, so concurrent creations never pass the
//! limit. Ids are `we_` and a UUID v7, so the partition lists them oldest first.

use aws_sdk_dynamodb::types::{AttributeValue, Delete, TransactWriteItem};
use serde::{Deserialize, Serialize};

use super::audit::{AuditActor, events};
use super::team::{TransactionFailure, classify};
use super::{Store, StoreError, TenantId, conflict_backoff, key_map, keys, to_item};

/// Most endpoints an organization may have.
pub const MAX_WEBHOOK_ENDPOINTS: u64 = 10;
/// Prefix of an endpoint id; a UUID v7 in simple hex follows.
pub const ID_PREFIX: &str = "we_";
/// What every signing secret starts with (Standard Webhooks): the webhooks function makes them,
/// the notifier signs with them.
pub const SIGNING_SECRET_PREFIX: &str = "whsec_";
const SORT_PREFIX: &str = "WEBHOOK#";
/// Attempts of a transaction that conflicts with a concurrent one on the organization's counter.
const ATTEMPTS: u32 = 8;

/// An endpoint as stored. `Debug` never shows the signing secret (not even encrypted).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpointRecord {
    /// `we_` + UUID v7 simple hex.
    pub id: String,
    /// Normalized `https` URL (`tollgate::webhook_url::validate_endpoint_url`).
    pub url: String,
    /// Audit event type names (`EventType::as_str`), non-empty, deduplicated.
    pub event_types: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// The user id of the member who created it.
    pub created_by: String,
    /// The signing secret `whsec_<base64>` encrypted with `KeyRing::encrypt(organization_id, ..)`
    /// (shared/src/crypto.rs, AES-256-GCM). Never returned by GET, never logged.
    pub signing_secret: String,
}

impl std::fmt::Debug for WebhookEndpointRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookEndpointRecord")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("event_types", &self.event_types)
            .field("created_at", &self.created_at)
            .field("created_by", &self.created_by)
            .finish_non_exhaustive()
    }
}

impl WebhookEndpointRecord {
    /// Whether this endpoint is subscribed to events of `event_type` (an `EventType::as_str`
    /// name; exact match).
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types.iter().any(|t| t == event_type)
    }
}

pub fn webhook_endpoint_key(tenant: &TenantId, id: &str) -> (String, String) {
    (keys::tenant_partition(tenant), format!("{SORT_PREFIX}{id}"))
}

/// A new endpoint id: `we_` and a UUID v7 in simple hex.
pub fn new_webhook_endpoint_id() -> String {
    format!("{ID_PREFIX}{}", uuid::Uuid::now_v7().simple())
}

/// Whether `id` has the shape of an endpoint id (`we_` and 32 lower-case hex digits).
pub fn is_webhook_endpoint_id(id: &str) -> bool {
    id.strip_prefix(ID_PREFIX).is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn number(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

impl Store {
    /// Every endpoint of `tenant`, oldest first: one strongly consistent Query (at most
    /// [`MAX_WEBHOOK_ENDPOINTS`] small items, one page).
    pub async fn list_webhook_endpoints(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<WebhookEndpointRecord>, StoreError> {
        self.query_tenant(tenant, SORT_PREFIX).await
    }

    /// Endpoint `id` of `tenant` (one strongly consistent GetItem); `None` when `tenant` has no
    /// such endpoint (another organization's id included).
    pub async fn get_webhook_endpoint(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<WebhookEndpointRecord>, StoreError> {
        self.get_record(webhook_endpoint_key(tenant, id)).await
    }

    /// Stores a new endpoint of `tenant`, made by `actor`: the organization's counter (only while
    /// it is below [`MAX_WEBHOOK_ENDPOINTS`] and the organization is not deleted), the endpoint and
    /// its audit event, in one transaction, retried when it conflicts with a concurrent one.
    /// [`StoreError::WebhookEndpointLimitReached`] at the limit, [`StoreError::NotFound`] when the
    /// organization is gone; nothing is written then.
    pub async fn create_webhook_endpoint(
        &self,
        tenant: &TenantId,
        actor: &AuditActor,
        record: &WebhookEndpointRecord,
    ) -> Result<(), StoreError> {
        let event = events::webhook_endpoint_created(
            tenant,
            actor,
            &record.id,
            &record.url,
            &record.event_types,
        );
        for attempt in 0..ATTEMPTS {
            let items = vec![
                self.update(
                    keys::organization(tenant),
                    "SET webhookEndpointCount = if_not_exists(webhookEndpointCount, :zero) + :one",
                    "attribute_exists(PK) AND attribute_not_exists(deletedAt) AND \
                     (attribute_not_exists(webhookEndpointCount) OR webhookEndpointCount < :max)",
                    vec![],
                    vec![
                        (":zero", number(0)),
                        (":one", number(1)),
                        (":max", number(MAX_WEBHOOK_ENDPOINTS)),
                    ],
                )?,
                self.put(
                    to_item("WEBHOOK", webhook_endpoint_key(tenant, &record.id), record)?,
                    "attribute_not_exists(PK)",
                )?,
                self.audit_put(tenant, &event)?,
            ];
            match self.transact(items).await.map_err(classify) {
                Ok(()) => return Ok(()),
                Err(TransactionFailure::Condition(0)) => {
                    match self.get_organization(tenant).await? {
                        None => return Err(StoreError::NotFound),
                        Some(organization)
                            if organization.webhook_endpoint_count >= MAX_WEBHOOK_ENDPOINTS =>
                        {
                            return Err(StoreError::WebhookEndpointLimitReached);
                        }
                        // One was deleted between the transaction and the read: try again.
                        Some(_) => conflict_backoff(attempt).await,
                    }
                }
                Err(TransactionFailure::Condition(_)) => return Err(StoreError::ConcurrentUpdate),
                Err(TransactionFailure::Conflict) => conflict_backoff(attempt).await,
                Err(TransactionFailure::Other(error)) => return Err(error),
            }
        }
        Err(StoreError::ConcurrentUpdate)
    }

    /// Deletes endpoint `id` of `tenant` as `actor`: the endpoint, the organization's counter and
    /// the audit event in one transaction (retried on conflicts). `false` (and nothing written)
    /// when `tenant` has no such endpoint; another organization's is left as it is.
    pub async fn delete_webhook_endpoint(
        &self,
        tenant: &TenantId,
        actor: &AuditActor,
        id: &str,
    ) -> Result<bool, StoreError> {
        let event = events::webhook_endpoint_deleted(tenant, actor, id);
        for attempt in 0..ATTEMPTS {
            let delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key_map(webhook_endpoint_key(tenant, id))))
                .condition_expression("attribute_exists(PK)")
                .build()
                .map_err(StoreError::build)?;
            let items = vec![
                TransactWriteItem::builder().delete(delete).build(),
                self.update(
                    keys::organization(tenant),
                    "SET webhookEndpointCount = webhookEndpointCount - :one",
                    "attribute_exists(PK) AND webhookEndpointCount >= :one",
                    vec![],
                    vec![(":one", number(1))],
                )?,
                self.audit_put(tenant, &event)?,
            ];
            match self.transact(items).await.map_err(classify) {
                Ok(()) => return Ok(true),
                Err(TransactionFailure::Condition(0)) => return Ok(false),
                Err(TransactionFailure::Condition(1)) => {
                    return Err(StoreError::Corrupt(
                        "the organization counts no webhook endpoint, yet has one".to_owned(),
                    ));
                }
                Err(TransactionFailure::Condition(_)) => return Err(StoreError::ConcurrentUpdate),
                Err(TransactionFailure::Conflict) => conflict_backoff(attempt).await,
                Err(TransactionFailure::Other(error)) => return Err(error),
            }
        }
        Err(StoreError::ConcurrentUpdate)
    }
}

/// An endpoint found by a table-wide scan (key rotation), with its organization.
pub type StoredWebhookEndpoint = super::Scanned<WebhookEndpointRecord>;

impl Store {
    /// One page of every organization's webhook endpoints (key rotation walks the whole table).
    pub async fn scan_webhook_endpoints(
        &self,
        start: Option<super::Item>,
    ) -> Result<(Vec<StoredWebhookEndpoint>, Option<super::Item>), StoreError> {
        self.scan_tenant_items(SORT_PREFIX, start).await
    }

    /// Replaces the signing secret ciphertext of `stored` (as scanned) with `new`, only if it is
    /// still the one read, with its `key_ring.rotated` audit event (key ids only) in the same
    /// transaction; the event expires no later than the endpoint does. `false` (and no event)
    /// when the endpoint changed or went meanwhile.
    pub async fn replace_signing_secret(
        &self,
        stored: &StoredWebhookEndpoint,
        new: &str,
    ) -> Result<bool, StoreError> {
        self.replace_ciphertext(
            &stored.tenant,
            webhook_endpoint_key(&stored.tenant, &stored.record.id),
            "signingSecret",
            &stored.record.signing_secret,
            new,
            (
                super::audit::RotatedSecret::WebhookSigningSecret,
                &stored.record.id,
            ),
            stored.expires_at,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event_types: &[&str]) -> WebhookEndpointRecord {
        WebhookEndpointRecord {
            id: new_webhook_endpoint_id(),
            url: "https://hooks.example.com/t".into(),
            event_types: event_types.iter().map(|t| t.to_string()).collect(),
            created_at: "2026-11-30T22:00:00Z".into(),
            created_by: "usr_1".into(),
            signing_secret: "v1:k1:bm9uY2U:Y2lwaGVydGV4dA".into(),
        }
    }

    #[test]
    fn wants_exactly_its_event_types() {
        let endpoint = record(&["member.invited", "api_key.created"]);
        assert!(endpoint.wants("member.invited"));
        assert!(endpoint.wants("api_key.created"));
        assert!(!endpoint.wants("api_key.revoked"));
        assert!(!endpoint.wants("member"));
        assert!(!endpoint.wants("member.invited "));
        assert!(!endpoint.wants("MEMBER.INVITED"));
        assert!(!endpoint.wants(""));
        assert!(!endpoint.wants("*"));
        assert!(!record(&[]).wants("member.invited"));
    }

    #[test]
    fn keys_ids_and_debug() {
        let tenant = TenantId("org_1".into());
        assert_eq!(
            webhook_endpoint_key(&tenant, "we_1"),
            ("ORG#org_1".to_owned(), "WEBHOOK#we_1".to_owned())
        );
        let endpoint = record(&["member.invited"]);
        assert!(is_webhook_endpoint_id(&endpoint.id), "{}", endpoint.id);
        for bad in [
            "",
            "we_",
            "we_0123",
            "ak_0123456789abcdef0123456789abcdef",
            "we_0123456789ABCDEF0123456789ABCDEF",
            "we_0123456789abcdef0123456789abcdeg",
            "we_0123456789abcdef0123456789abcdef0",
        ] {
            assert!(!is_webhook_endpoint_id(bad), "{bad}");
        }
        let shown = format!("{endpoint:?}");
        assert!(!shown.contains("v1:k1"), "{shown}");
        assert!(shown.contains(&endpoint.id), "{shown}");
    }

    #[test]
    fn stored_item_shape() {
        let tenant = TenantId("org_1".into());
        let endpoint = record(&["member.invited", "member.left"]);
        let item = to_item(
            "WEBHOOK",
            webhook_endpoint_key(&tenant, &endpoint.id),
            &endpoint,
        )
        .unwrap();
        assert_eq!(item["entity"], AttributeValue::S("WEBHOOK".into()));
        assert_eq!(
            item["eventTypes"],
            AttributeValue::L(vec![
                AttributeValue::S("member.invited".into()),
                AttributeValue::S("member.left".into()),
            ])
        );
        assert!(item.contains_key("signingSecret"));
        assert!(item.contains_key("createdBy"));
        assert_eq!(
            super::super::from_item::<WebhookEndpointRecord>(item).unwrap(),
            endpoint
        );
    }
}
