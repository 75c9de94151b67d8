//! Organization API keys, two items per key:
//!
//! | item | `PK` | `SK` | holds |
//! |---|---|---|---|
//! | the key | `ORG#<org>` | `APIKEY#<id>` | what the listing shows ([`ApiKeyRecord`]); tenant-scoped like every item of the organization |
//! | its look-up | `APIKEY#<id>` | `APIKEY` | what authentication needs ([`ApiKeyLookup`]): the organization, the role, the expiry, the HMAC of the key, when it was last used |
//!
//! A presented key costs one `GetItem` of its look-up item (strongly consistent, so a revoked key
//! is refused by the very next request). Both items are written and deleted together in one
//! transaction; the delete is conditioned on the key item of the caller's organization, so a key
//! id of another organization deletes nothing and answers "not found".
//!
//! `lastUsedAt` is written at most once per [`LAST_USED_INTERVAL_SECONDS`] per key: the look-up
//! item read for authentication says when it was last written, and only when that is older is it
//! updated (conditionally, so concurrent requests write it once), then copied to the key item.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use serde::{Deserialize, Serialize};

use super::audit::{AuditActor, events};
use super::{Item, Store, StoreError, TenantId, key_map, keys, sdk_error, to_item};
use crate::rbac::Role;

/// `lastUsedAt` is written at most this often per key.
pub const LAST_USED_INTERVAL_SECONDS: i64 = 60;

/// A key as its organization's listing shows it. Never holds the key or its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// `tg_live_<id>`: the part of the key that may be shown again.
    pub prefix: String,
    pub created_at: String,
    /// The user id of the member who created it.
    pub created_by: String,
    /// RFC 3339; `None`: never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// RFC 3339, to the minute ([`LAST_USED_INTERVAL_SECONDS`]); `None`: never used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
}

/// What authenticating a key reads: one item, by the key's id.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyLookup {
    pub id: String,
    pub organization_id: String,
    pub role: Role,
    /// Lowercase hex HMAC-SHA-256 of the whole key under the pepper
    /// ([`crate::auth::api_key::Pepper::digest_hex`]).
    pub key_hash: String,
    /// Unix seconds; `None`: never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Unix seconds of the last recorded use; `None`: never used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<i64>,
}

impl std::fmt::Debug for ApiKeyLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyLookup")
            .field("id", &self.id)
            .field("organization_id", &self.organization_id)
            .field("role", &self.role)
            .field("expires_at", &self.expires_at)
            .field("last_used_at", &self.last_used_at)
            .finish_non_exhaustive()
    }
}

impl ApiKeyLookup {
    /// The organization the key belongs to: written by this code with the organization of the
    /// member who created the key, never taken from a request.
    pub fn tenant(&self) -> TenantId {
        TenantId(self.organization_id.clone())
    }

    /// Whether the key has expired at `now` (Unix seconds).
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|expires| now >= expires)
    }

    /// Whether a use at `now` should be recorded: never recorded, or last recorded at least
    /// [`LAST_USED_INTERVAL_SECONDS`] ago.
    pub fn use_due(&self, now: i64) -> bool {
        self.last_used_at
            .is_none_or(|last| now - last >= LAST_USED_INTERVAL_SECONDS)
    }
}

pub fn api_key_key(tenant: &TenantId, id: &str) -> (String, String) {
    (keys::tenant_partition(tenant), format!("APIKEY#{id}"))
}

pub fn api_key_lookup_key(id: &str) -> (String, String) {
    (format!("APIKEY#{id}"), "APIKEY".to_owned())
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

fn is_condition_failure(
    error: &aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError, impl std::fmt::Debug>,
) -> bool {
    matches!(
        error.as_service_error(),
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled))
            if cancelled
                .cancellation_reasons()
                .iter()
                .any(|r| r.code() == Some("ConditionalCheckFailed"))
    )
}

impl Store {
    /// Stores a new key of `tenant`, made by `actor`: its listing item, its look-up item and the
    /// audit event, in one transaction.
    pub async fn create_api_key(
        &self,
        tenant: &TenantId,
        actor: &AuditActor,
        record: &ApiKeyRecord,
        lookup: &ApiKeyLookup,
    ) -> Result<(), StoreError> {
        let put = |item: Item| -> Result<TransactWriteItem, StoreError> {
            Ok(TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(item))
                        .condition_expression("attribute_not_exists(PK)")
                        .build()
                        .map_err(StoreError::build)?,
                )
                .build())
        };
        if lookup.organization_id != tenant.as_str() || lookup.id != record.id {
            return Err(StoreError::Build(
                "an API key's look-up must name its own organization and id".to_owned(),
            ));
        }
        self.client
            .transact_write_items()
            .transact_items(put(to_item(
                "APIKEY",
                api_key_key(tenant, &record.id),
                record,
            )?)?)
            .transact_items(put(to_item(
                "APIKEY_LOOKUP",
                api_key_lookup_key(&lookup.id),
                lookup,
            )?)?)
            .transact_items(self.audit_put(
                tenant,
                &events::api_key_created(tenant, actor, &record.id, &record.name, record.role),
            )?)
            .send()
            .await
            .map_err(|e| sdk_error("TransactWriteItems", e))?;
        Ok(())
    }

    /// Every key of `tenant`, oldest first (ids are random, so sorted by creation here).
    pub async fn list_api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let mut records: Vec<ApiKeyRecord> = self.query_tenant(tenant, "APIKEY#").await?;
        records.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(records)
    }

    /// The look-up item of key `id`, strongly consistent; `None`: no such key (or revoked).
    pub async fn get_api_key_lookup(&self, id: &str) -> Result<Option<ApiKeyLookup>, StoreError> {
        self.get_record(api_key_lookup_key(id)).await
    }

    /// Revokes key `id` of `tenant` as `actor`: both items and the audit event go in one
    /// transaction. `false` when `tenant` has no key `id` (another organization's key is left as
    /// it is, and no event is written).
    pub async fn revoke_api_key(
        &self,
        tenant: &TenantId,
        actor: &AuditActor,
        id: &str,
    ) -> Result<bool, StoreError> {
        let delete = |key: (String, String), condition: &str, org: bool| {
            let mut builder = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key_map(key)))
                .condition_expression(condition);
            if org {
                builder = builder.expression_attribute_values(
                    ":org",
                    AttributeValue::S(tenant.as_str().to_owned()),
                );
            }
            builder
                .build()
                .map(|delete| TransactWriteItem::builder().delete(delete).build())
                .map_err(StoreError::build)
        };
        let result = self
            .client
            .transact_write_items()
            .transact_items(delete(
                api_key_key(tenant, id),
                "attribute_exists(PK)",
                false,
            )?)
            .transact_items(delete(
                api_key_lookup_key(id),
                "attribute_not_exists(PK) OR organizationId = :org",
                true,
            )?)
            .transact_items(self.audit_put(tenant, &events::api_key_revoked(tenant, actor, id))?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if is_condition_failure(&error) => Ok(false),
            Err(error) => Err(sdk_error("TransactWriteItems", error)),
        }
    }

    /// Records a use of `lookup`'s key at `now` (Unix seconds) when one is due
    /// ([`ApiKeyLookup::use_due`]): the look-up item's `lastUsedAt` only if it is still older
    /// than the interval (so of concurrent requests one writes), then the key item's. `false`:
    /// nothing was due, another request recorded it, or the key was revoked meanwhile.
    pub async fn record_api_key_use(
        &self,
        lookup: &ApiKeyLookup,
        now: i64,
    ) -> Result<bool, StoreError> {
        if !lookup.use_due(now) {
            return Ok(false);
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_map(api_key_lookup_key(&lookup.id))))
            .update_expression("SET lastUsedAt = :now")
            .condition_expression(
                "attribute_exists(PK) AND (attribute_not_exists(lastUsedAt) OR lastUsedAt <= :due)",
            )
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .expression_attribute_values(
                ":due",
                AttributeValue::N((now - LAST_USED_INTERVAL_SECONDS).to_string()),
            )
            .send()
            .await;
        match result {
            Ok(_) => {}
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                return Ok(false);
            }
            Err(error) => return Err(sdk_error("UpdateItem", error)),
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_map(api_key_key(&lookup.tenant(), &lookup.id))))
            .update_expression("SET lastUsedAt = :now")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":now", AttributeValue::S(rfc3339(now)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(error) => Err(sdk_error("UpdateItem", error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(expires_at: Option<i64>, last_used_at: Option<i64>) -> ApiKeyLookup {
        ApiKeyLookup {
            id: "ak_0123".into(),
            organization_id: "org_1".into(),
            role: Role::Viewer,
            key_hash: "ab".repeat(32),
            expires_at,
            last_used_at,
        }
    }

    #[test]
    fn expiry_is_inclusive_of_its_second() {
        let key = lookup(Some(1_000), None);
        assert!(!key.is_expired(999));
        assert!(key.is_expired(1_000));
        assert!(key.is_expired(5_000));
        assert!(!lookup(None, None).is_expired(i64::MAX));
    }

    #[test]
    fn a_use_is_due_once_a_minute() {
        assert!(lookup(None, None).use_due(0));
        let key = lookup(None, Some(1_000));
        assert!(!key.use_due(1_000));
        assert!(!key.use_due(1_059));
        assert!(key.use_due(1_060));
    }

    #[test]
    fn keys_are_scoped_and_debug_hides_the_digest() {
        let tenant = TenantId("org_1".into());
        assert_eq!(
            api_key_key(&tenant, "ak_1"),
            ("ORG#org_1".to_owned(), "APIKEY#ak_1".to_owned())
        );
        assert_eq!(
            api_key_lookup_key("ak_1"),
            ("APIKEY#ak_1".to_owned(), "APIKEY".to_owned())
        );
        let shown = format!("{:?}", lookup(None, None));
        assert!(!shown.contains(&"ab".repeat(32)), "{shown}");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_531_234), "2025-11-30T19:33:54Z");
    }
}
