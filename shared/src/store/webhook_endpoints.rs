//! TEMPORARY interface shim for the notifier; replaced by the endpoints branch.
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, TenantId, from_item, key_map, keys, sdk_error, to_item};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpointRecord {
    pub id: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub created_at: String,
    pub created_by: String,
    pub signing_secret: String,
}

impl WebhookEndpointRecord {
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types.iter().any(|t| t == event_type)
    }
}

pub fn webhook_endpoint_key(tenant: &TenantId, id: &str) -> (String, String) {
    (keys::tenant_partition(tenant), format!("WEBHOOK#{id}"))
}

impl Store {
    pub async fn put_webhook_endpoint(
        &self,
        tenant: &TenantId,
        record: &WebhookEndpointRecord,
    ) -> Result<(), StoreError> {
        let item = to_item("WebhookEndpoint", webhook_endpoint_key(tenant, &record.id), record)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem", e))?;
        Ok(())
    }

    pub async fn list_webhook_endpoints(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<WebhookEndpointRecord>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND begins_with(SK, :sk)")
            .expression_attribute_values(":pk", aws_sdk_dynamodb::types::AttributeValue::S(keys::tenant_partition(tenant)))
            .expression_attribute_values(":sk", aws_sdk_dynamodb::types::AttributeValue::S("WEBHOOK#".to_owned()))
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        output.items.unwrap_or_default().into_iter().map(from_item).collect()
    }

    pub async fn get_webhook_endpoint(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<WebhookEndpointRecord>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_map(webhook_endpoint_key(tenant, id))))
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        output.item.map(from_item).transpose()
    }
}
