//! Rate-limit windows: one item per bucket, subject and window, counted with one conditional
//! update and expired by TTL.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use sha2::{Digest, Sha256};

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
        let key = (window_partition(bucket, subject), format!("W#{start}"));
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

/// Subjects up to this many bytes key their window as they are (`RATE#<bucket>#<subject>`).
pub const MAX_PLAIN_SUBJECT: usize = 256;

/// The partition key of `subject`'s windows in `bucket`. A `sub` claim is the issuer's to choose
/// and DynamoDB refuses a partition key over 2,048 bytes (a `ValidationException`, which the
/// limiter answers 503 as a deployment error): a subject longer than [`MAX_PLAIN_SUBJECT`] is
/// keyed by its SHA-256 under `RATE#<bucket>~sha256#`, which no plain subject can produce, so no
/// caller can make the window update invalid.
pub fn window_partition(bucket: Bucket, subject: &str) -> String {
    if subject.len() <= MAX_PLAIN_SUBJECT {
        format!("RATE#{}#{subject}", bucket.as_str())
    } else {
        let digest = hex::encode(Sha256::digest(subject.as_bytes()));
        format!("RATE#{}~sha256#{digest}", bucket.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_subjects_are_keyed_by_their_hash_short_ones_as_they_are() {
        assert_eq!(
            window_partition(Bucket::User, "auth0|abc"),
            "RATE#user#auth0|abc"
        );
        let plain = "s".repeat(MAX_PLAIN_SUBJECT);
        assert_eq!(
            window_partition(Bucket::Sensitive, &plain),
            format!("RATE#sensitive#{plain}")
        );
        let long = "s".repeat(MAX_PLAIN_SUBJECT + 1);
        let hashed = window_partition(Bucket::Sensitive, &long);
        assert!(hashed.starts_with("RATE#sensitive~sha256#"), "{hashed}");
        assert_eq!(hashed.len(), "RATE#sensitive~sha256#".len() + 64);
        assert_ne!(
            hashed,
            window_partition(Bucket::Sensitive, &format!("{long}t"))
        );
        let huge = "h".repeat(100_000);
        assert!(window_partition(Bucket::FailedAuth, &huge).len() < 100);
    }
}
