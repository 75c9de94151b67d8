//! Integrations: third-party credentials of an organization, stored only encrypted.

use aws_sdk_dynamodb::types::{AttributeValue, Delete, TransactWriteItem};
use serde::{Deserialize, Serialize};

use super::audit::{AuditActor, events};
use super::team::{TransactionFailure, classify};
use super::{Item, Store, StoreError, TenantId, from_item, key_map, keys, sdk_error, to_item};

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
        match self.credentials.split(':').collect::<Vec<_>>().as_slice() {
            ["v1", kid, _, _] => kid,
            _ => crate::crypto::LEGACY_KID,
        }
    }
}

pub fn integration_key(tenant: &TenantId, id: &str) -> (String, String) {
    (keys::tenant_partition(tenant), format!("INTEGRATION#{id}"))
}

/// An integration found by a table-wide scan (key rotation), with its organization.
pub struct StoredIntegration {
    pub tenant: TenantId,
    pub record: IntegrationRecord,
}

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
        let output = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(SK, :prefix)")
            .expression_attribute_values(":prefix", AttributeValue::S("INTEGRATION#".into()))
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| sdk_error("Scan", e))?;
        let mut found = Vec::new();
        for item in output.items.unwrap_or_default() {
            let tenant = match item
                .get("PK")
                .and_then(|pk| pk.as_s().ok())
                .and_then(|pk| pk.strip_prefix("ORG#"))
            {
                Some(org) => TenantId(org.to_owned()),
                None => continue,
            };
            found.push(StoredIntegration {
                tenant,
                record: from_item(item)?,
            });
        }
        Ok((found, output.last_evaluated_key))
    }

    /// Replaces the credentials ciphertext, only if it is still `old` (a concurrent rotation or
    /// deletion wins). `false` when it changed meanwhile.
    pub async fn replace_credentials(
        &self,
        tenant: &TenantId,
        id: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_map(integration_key(tenant, id))))
            .update_expression("SET credentials = :new")
            .condition_expression("credentials = :old")
            .expression_attribute_values(":new", AttributeValue::S(new.to_owned()))
            .expression_attribute_values(":old", AttributeValue::S(old.to_owned()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }
}
