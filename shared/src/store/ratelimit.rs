//! Rate-limit windows: one item per bucket, subject and window, counted with one conditional
//! update and expired by TTL.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::{Store, key_map};
use crate::ratelimit::{Bucket, Limit, LimiterError, RateStatus, window};

impl Store {
    /// Counts one request of `subject` against `limit`. The update only succeeds while the count
    /// is below the limit, so a limited caller adds nothing more to the table. A failure comes
    /// classified ([`crate::ratelimit::classify`]).
    pub async fn hit_rate_limit(
        &self,
        bucket: Bucket,
        subject: &str,
        limit: Limit,
        now: i64,
    ) -> Result<RateStatus, LimiterError> {
        let (start, end) = window(now, limit.window);
        let key = (
            format!("RATE#{}#{subject}", bucket.as_str()),
            format!("W#{start}"),
        );
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_map(key)))
            .update_expression("ADD #count :one SET #ttl = if_not_exists(#ttl, :ttl)")
            .condition_expression("attribute_not_exists(#count) OR #count < :max")
            .expression_attribute_names("#count", "count")
            .expression_attribute_names("#ttl", super::schema::TABLE.ttl_attribute)
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":max", AttributeValue::N(limit.max.to_string()))
            // Kept a minute past the window, then DynamoDB's TTL removes it.
            .expression_attribute_values(":ttl", AttributeValue::N((end + 60).to_string()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        match result {
            Ok(output) => {
                let count = output
                    .attributes
                    .and_then(|a| {
                        a.get("count")
                            .and_then(|c| c.as_n().ok())
                            .and_then(|n| n.parse().ok())
                    })
                    .unwrap_or(1);
                Ok(RateStatus::after(limit.max, count, now, end))
            }
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(RateStatus::after(limit.max, limit.max + 1, now, end))
            }
            Err(error) => Err(LimiterError::from_sdk(error)),
        }
    }
}
