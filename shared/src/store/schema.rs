//! The one table definition: `create-table` builds the local table from it, and a test proves
//! `template.yaml` deploys the same keys, billing mode and TTL attribute.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    StreamSpecification, StreamViewType, TimeToLiveSpecification,
};

use super::{StoreError, sdk_error};

/// Key and TTL attribute names of the single table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSchema {
    pub partition_key: &'static str,
    pub sort_key: &'static str,
    pub ttl_attribute: &'static str,
    /// CloudFormation's name for on-demand capacity.
    pub billing_mode: &'static str,
    /// The table's stream: what each change record carries. Deletion jobs (org-cleanup) read the
    /// new image of an organization's item.
    pub stream_view_type: &'static str,
}

pub const TABLE: TableSchema = TableSchema {
    partition_key: "PK",
    sort_key: "SK",
    ttl_attribute: "ttl",
    billing_mode: "PAY_PER_REQUEST",
    stream_view_type: "NEW_AND_OLD_IMAGES",
};

/// Creates the table (if missing) and enables TTL, waiting until it is active.
///
/// Safe to run twice: an existing table is left as it is.
pub async fn create_table(client: &Client, table_name: &str) -> Result<bool, StoreError> {
    let key = |name: &str, key_type: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
    };
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let created = client
        .create_table()
        .table_name(table_name)
        .billing_mode(BillingMode::from(TABLE.billing_mode))
        .key_schema(key(TABLE.partition_key, KeyType::Hash).map_err(StoreError::build)?)
        .key_schema(key(TABLE.sort_key, KeyType::Range).map_err(StoreError::build)?)
        .attribute_definitions(attribute(TABLE.partition_key).map_err(StoreError::build)?)
        .attribute_definitions(attribute(TABLE.sort_key).map_err(StoreError::build)?)
        .stream_specification(stream().map_err(StoreError::build)?)
        .send()
        .await;
    let created = match created {
        Ok(_) => true,
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            false
        }
        Err(error) => return Err(sdk_error("CreateTable", error)),
    };
    // DynamoDB Local creates tables synchronously, AWS does not: wait for ACTIVE before TTL.
    for _ in 0..60 {
        let described = client
            .describe_table()
            .table_name(table_name)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTable", e))?;
        let active = described
            .table()
            .and_then(|t| t.table_status())
            .is_some_and(|s| s.as_str() == "ACTIVE");
        if active {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    if !created {
        enable_stream(client, table_name).await?;
    }
    if created {
        client
            .update_time_to_live()
            .table_name(table_name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(TABLE.ttl_attribute)
                    .enabled(true)
                    .build()
                    .map_err(StoreError::build)?,
            )
            .send()
            .await
            .map_err(|e| sdk_error("UpdateTimeToLive", e))?;
    }
    Ok(created)
}

fn stream() -> Result<StreamSpecification, aws_sdk_dynamodb::error::BuildError> {
    StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::from(TABLE.stream_view_type))
        .build()
}

/// A table created before it had a stream (a kept local table) gets one.
async fn enable_stream(client: &Client, table_name: &str) -> Result<(), StoreError> {
    let described = client
        .describe_table()
        .table_name(table_name)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeTable", e))?;
    let enabled = described
        .table()
        .and_then(|t| t.stream_specification())
        .is_some_and(|s| s.stream_enabled());
    if !enabled {
        client
            .update_table()
            .table_name(table_name)
            .stream_specification(stream().map_err(StoreError::build)?)
            .send()
            .await
            .map_err(|e| sdk_error("UpdateTable", e))?;
    }
    Ok(())
}
