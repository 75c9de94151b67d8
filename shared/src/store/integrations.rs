//! Integrations: third-party credentials of an organization, stored only encrypted.

use aws_sdk_dynamodb::types::{AttributeValue, Delete, TransactWriteItem};
use serde::{Deserialize, Serialize};

use super::audit::{AuditActor, events};
use super::team::{TransactionFailure, classify};
use super::{Item, Store, StoreError, TenantId, key_map, keys, sdk_error, to_item};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationRecord {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub created_at: String,
    /// The envelope `v1:<kid>:<nonce>:<ciphertext+tag>` (or a legacy value awaiting rotation).
    pub credentials: String,
}

impl IntegrationRecord {
    /// The id of the key the credentials are encrypted under (`legacy` for the seed's format).
    pub fn key_id(&self) -> &str {
        credentials_key_id(&self.credentials)
    }
}

/// The id of the key a stored credentials value is encrypted under (`legacy` for the seed's
/// format): the envelope's clear `kid` field, nothing decrypted.
pub fn credentials_key_id(credentials: &str) -> &str {
    match credentials.split(':').collect::<Vec<_>>().as_slice() {
        ["v1", kid, _, _] => kid,
        _ => crate::crypto::LEGACY_KID,
    }
}

pub fn integration_key(tenant: &TenantId, id: &str) -> (String, String) {
    (keys::tenant_partition(tenant), format!("INTEGRATION#{id}"))
}

/// An integration found by a table-wide scan (key rotation), with its organization.
pub type StoredIntegration = super::Scanned<IntegrationRecord>;

impl Store {
    /// Stores a new integration of `tenant`, made by `actor`, with its audit event in one
    /// transaction (the event names its type and name, never its credentials).
    pub async fn put_integration(
        &self,
        tenant: &TenantId,
        actor: &AuditActor,
        record: &IntegrationRecord,
    ) -> Result<(), StoreError> {
        let items = vec![
            self.put(
                to_item("INTEGRATION", integration_key(tenant, &record.id), record)?,
                "attribute_not_exists(PK)",
            )?,
            self.audit_put(
                tenant,
                &events::integration_created(tenant, actor, &record.id, &record.kind, &record.name),
            )?,
        ];
        self.transact(items)
            .await
            .map_err(|e| sdk_error("TransactWriteItems", e))
    }

    pub async fn list_integrations(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<IntegrationRecord>, StoreError> {
        self.query_tenant(tenant, "INTEGRATION#").await
    }

    /// Deletes an integration of `tenant` as `actor`, with its audit event in one transaction;
    /// `false` (and no event) when there is none with that id.
    pub async fn delete_integration(
        &self,
        tenant: &TenantId,
        actor: &AuditActor,
        id: &str,
    ) -> Result<bool, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key_map(integration_key(tenant, id))))
            .condition_expression("attribute_exists(PK)")
            .build()
            .map_err(StoreError::build)?;
        let items = vec![
            TransactWriteItem::builder().delete(delete).build(),
            self.audit_put(tenant, &events::integration_deleted(tenant, actor, id))?,
        ];
        match self.transact(items).await.map_err(classify) {
            Ok(()) => Ok(true),
            Err(TransactionFailure::Condition(0)) => Ok(false),
            Err(TransactionFailure::Condition(_)) | Err(TransactionFailure::Conflict) => {
                Err(StoreError::ConcurrentUpdate)
            }
            Err(TransactionFailure::Other(error)) => Err(error),
        }
    }

    /// One page of every organization's integrations (key rotation walks the whole table).
    pub async fn scan_integrations(
        &self,
        start: Option<Item>,
    ) -> Result<(Vec<StoredIntegration>, Option<Item>), StoreError> {
        self.scan_tenant_items("INTEGRATION#", start).await
    }

    /// Replaces the credentials ciphertext of `stored` (as scanned) with `new`, only if it is
    /// still the one read (a concurrent rotation or deletion wins), with its `key_ring.rotated`
    /// audit event (the old and new key ids, never a ciphertext) in the same transaction; the
    /// event expires no later than the integration does. `false` (and no event) when it changed
    /// meanwhile.
    pub async fn replace_credentials(
        &self,
        stored: &StoredIntegration,
        new: &str,
    ) -> Result<bool, StoreError> {
        self.replace_ciphertext(
            &stored.tenant,
            integration_key(&stored.tenant, &stored.record.id),
            "credentials",
            &stored.record.credentials,
            new,
            (
                super::audit::RotatedSecret::IntegrationCredentials,
                &stored.record.id,
            ),
            stored.expires_at,
        )
        .await
    }

    /// Replaces the ciphertext in `attribute` of the item at `key` with `new`, only if it still
    /// holds `old`, with the `key_ring.rotated` event of `target` (old and new key id) in the same
    /// transaction, expiring no later than `expires_at`. `false` (and no event) when the item
    /// changed or went meanwhile.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn replace_ciphertext(
        &self,
        tenant: &TenantId,
        key: (String, String),
        attribute: &str,
        old: &str,
        new: &str,
        target: (super::audit::RotatedSecret, &str),
        expires_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        let (kind, id) = target;
        let event = events::key_ring_rotated(
            tenant,
            kind,
            id,
            credentials_key_id(old),
            credentials_key_id(new),
        );
        let items = vec![
            self.update(
                key,
                "SET #secret = :new",
                "#secret = :old",
                vec![("#secret", attribute)],
                vec![
                    (":new", AttributeValue::S(new.to_owned())),
                    (":old", AttributeValue::S(old.to_owned())),
                ],
            )?,
            self.audit_put_expiring(tenant, &event, expires_at)?,
        ];
        match self.transact(items).await.map_err(classify) {
            Ok(()) => Ok(true),
            Err(TransactionFailure::Condition(_)) | Err(TransactionFailure::Conflict) => Ok(false),
            Err(TransactionFailure::Other(error)) => Err(error),
        }
    }
}
