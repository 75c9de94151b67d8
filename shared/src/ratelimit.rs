//! Rate limits: fixed windows counted in DynamoDB, one conditional update per limit per request.
//!
//! | bucket | key | default |
//! |---|---|---|
//! | `user` | the signed-in user (`sub`) | 1,000 requests per hour |
//! | `anonymous` | source IP, requests without credentials | 100 per hour |
//! | `sensitive` | the user (or API key), on checkout/portal sessions, integration and API key creation | 5 per 15 minutes |
//! | `invitations` | the organization, on invitations (counted once the inviter's role allows it) | 50 per hour |
//! | `api_key` | the organization API key (its id), on every request it authenticates | 1,000 per hour |
//! | `failed_auth` | source IP ([`ip_subject`]), forged or invalid tokens and service keys | 5 per 15 minutes |
//!
//! Source IPs are keyed by [`ip_subject`]: an IPv4 address as it is, an IPv6 address by its /64
//! (one subscriber's allocation), an IPv4-mapped IPv6 address as its IPv4 address.
//!
//! Only credentials that fail count against `failed_auth`: an authentic token that has expired
//! answers 401 `token_expired` uncounted (a stale browser tab behind a shared NAT must not turn
//! everyone's 401 into 429), and a valid credential is never answered 429 because of its IP's
//! failures. Service keys are `tgsk_` plus at least 256 random bits
//! ([`crate::auth::service_key`]), so the per-IP limit is not what bounds guessing them.
//!
//! A subject longer than 256 bytes is keyed by its SHA-256 (`store::ratelimit::window_partition`),
//! so no `sub` claim can make the window key too long for DynamoDB.
//!
//! The Stripe webhook is not limited (Stripe is verified by signature and retries on 429 would only
//! delay billing). Service keys are not limited per key (the call-handling service posts every
//! call); the stage throttle in `template.yaml` bounds them.
//!
//! When the window update fails, [`classify`] decides: throttling, a timeout, a connection that
//! could not be made or a DynamoDB server fault lets the request through uncounted (logged at warn
//! with [`count_fail_open`]'s running count; the stage throttle still bounds traffic); anything
//! else (missing table, no permission, an invalid request, a client that cannot sign or send) is a
//! deployment error that answers 503, so a broken deploy shows on its first request instead of
//! silently running without limits.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;

/// Which limit a request is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    User,
    Anonymous,
    Sensitive,
    Invitations,
    FailedAuth,
    ApiKey,
}

impl Bucket {
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::User => "user",
            Bucket::Anonymous => "anonymous",
            Bucket::Sensitive => "sensitive",
            Bucket::Invitations => "invitations",
            Bucket::FailedAuth => "failed_auth",
            Bucket::ApiKey => "api_key",
        }
    }
}

/// A limit: at most `max` requests per `window`. `max == 0` switches the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u64,
    pub window: Duration,
}

/// The configured limits (`RATE_LIMIT_*` variables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub user: Limit,
    pub anonymous: Limit,
    pub sensitive: Limit,
    pub invitations: Limit,
    pub failed_auth: Limit,
    pub api_key: Limit,
}

impl Default for RateLimits {
    fn default() -> Self {
        let hour = Duration::from_secs(3600);
        let quarter = Duration::from_secs(900);
        Self {
            user: Limit {
                max: 1000,
                window: hour,
            },
            anonymous: Limit {
                max: 100,
                window: hour,
            },
            sensitive: Limit {
                max: 5,
                window: quarter,
            },
            invitations: Limit {
                max: 50,
                window: hour,
            },
            failed_auth: Limit {
                max: 5,
                window: quarter,
            },
            api_key: Limit {
                max: 1000,
                window: hour,
            },
        }
    }
}

impl RateLimits {
    pub fn limit(&self, bucket: Bucket) -> Limit {
        match bucket {
            Bucket::User => self.user,
            Bucket::Anonymous => self.anonymous,
            Bucket::Sensitive => self.sensitive,
            Bucket::Invitations => self.invitations,
            Bucket::FailedAuth => self.failed_auth,
            Bucket::ApiKey => self.api_key,
        }
    }

    /// Reads `RATE_LIMIT_USER_PER_HOUR`, `RATE_LIMIT_ANONYMOUS_PER_HOUR`,
    /// `RATE_LIMIT_SENSITIVE_PER_15_MINUTES`, `RATE_LIMIT_INVITATIONS_PER_HOUR`,
    /// `RATE_LIMIT_FAILED_AUTH_PER_15_MINUTES`, `RATE_LIMIT_API_KEY_PER_HOUR` (0 = off).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut limits = Self::default();
        for (name, slot) in [
            ("RATE_LIMIT_USER_PER_HOUR", &mut limits.user.max),
            ("RATE_LIMIT_ANONYMOUS_PER_HOUR", &mut limits.anonymous.max),
            (
                "RATE_LIMIT_SENSITIVE_PER_15_MINUTES",
                &mut limits.sensitive.max,
            ),
            (
                "RATE_LIMIT_INVITATIONS_PER_HOUR",
                &mut limits.invitations.max,
            ),
            (
                "RATE_LIMIT_FAILED_AUTH_PER_15_MINUTES",
                &mut limits.failed_auth.max,
            ),
            ("RATE_LIMIT_API_KEY_PER_HOUR", &mut limits.api_key.max),
        ] {
            if let Some(raw) = lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
            {
                *slot = raw
                    .parse()
                    .map_err(|_| format!("{name} must be a whole number (0 switches it off)"))?;
            }
        }
        Ok(limits)
    }
}

/// The fixed window containing `now` (Unix seconds): `(start, end)`.
pub fn window(now: i64, length: Duration) -> (i64, i64) {
    let length = i64::try_from(length.as_secs()).unwrap_or(i64::MAX).max(1);
    let start = now - now.rem_euclid(length);
    (start, start.saturating_add(length))
}

/// The subject a source IP is counted under: an IPv4 address as it is; an IPv6 address by its
/// /64 network (`2001:db8:1:2::/64`), since one client commonly holds a whole /64 and would
/// otherwise have 2^64 buckets; an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) as its IPv4
/// address. Anything that is not an IP address is kept as given (the window key hashes long ones).
pub fn ip_subject(source: &str) -> String {
    match source.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let network = u128::from(v6) & !(u128::MAX >> 64);
                format!("{}/64", Ipv6Addr::from(network))
            }
        },
        Err(_) => source.to_owned(),
    }
}

/// What a request's count says, for the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateStatus {
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the window resets.
    pub reset: u64,
    pub limited: bool,
}

impl RateStatus {
    /// The status after counting a request as number `count` of a window ending at `end`.
    pub fn after(limit: u64, count: u64, now: i64, end: i64) -> Self {
        Self {
            limit,
            remaining: limit.saturating_sub(count),
            reset: u64::try_from(end.saturating_sub(now)).unwrap_or(0).max(1),
            limited: count > limit,
        }
    }

    /// The stricter of two statuses (fewer remaining), for the headers of a response that was
    /// counted against two limits.
    pub fn stricter(self, other: RateStatus) -> RateStatus {
        if other.limited && !self.limited {
            return other;
        }
        if self.limited && !other.limited {
            return self;
        }
        if other.remaining < self.remaining {
            other
        } else {
            self
        }
    }
}

/// What a failed window update means for the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimiterFailure {
    /// A passing problem (throttled, timed out, not reached, a server fault): let the request
    /// through uncounted.
    Transient,
    /// A refusal no retry fixes (missing table, no permission, an invalid request): a deployment
    /// error, answered 503.
    Misconfigured,
}

/// A window update that failed, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limiter window update failed ({code}): {detail}")]
pub struct LimiterError {
    pub failure: LimiterFailure,
    /// The service's error code (`AccessDeniedException`, ...) or the transport problem.
    pub code: String,
    pub detail: String,
}

impl LimiterError {
    pub fn from_sdk(error: SdkError<UpdateItemError, HttpResponse>) -> Self {
        let (failure, code) = classify(&error);
        Self {
            failure,
            code,
            detail: DisplayErrorContext(&error).to_string(),
        }
    }
}

/// DynamoDB's throttling error codes: the table is there and allowed, just busy.
const THROTTLING_CODES: [&str; 3] = [
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
];

/// Classifies a failed window update (`ConditionalCheckFailedException`, "over the limit", is not
/// a failure and never reaches here) and names it for the log.
pub fn classify(error: &SdkError<UpdateItemError, HttpResponse>) -> (LimiterFailure, String) {
    match error {
        SdkError::TimeoutError(_) => (LimiterFailure::Transient, "timeout".to_owned()),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => {
            (LimiterFailure::Transient, "connect timeout".to_owned())
        }
        SdkError::DispatchFailure(failure) if failure.is_io() => {
            (LimiterFailure::Transient, "connection failed".to_owned())
        }
        // Neither the network nor a timeout: no credentials, a bad endpoint setting, a client
        // that cannot send at all. No retry fixes that.
        SdkError::DispatchFailure(_) => {
            (LimiterFailure::Misconfigured, "dispatch failure".to_owned())
        }
        // The answer was cut off or garbled on its way: the network, not the deployment.
        SdkError::ResponseError(_) => (LimiterFailure::Transient, "response error".to_owned()),
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("unknown service error");
            // A 5xx is DynamoDB's own fault (InternalServerError), which its retries are for.
            let transient =
                THROTTLING_CODES.contains(&code) || service.raw().status().is_server_error();
            let failure = if transient {
                LimiterFailure::Transient
            } else {
                LimiterFailure::Misconfigured
            };
            (failure, code.to_owned())
        }
        // The request could not be built: a bug or a bad setting, not an outage.
        _ => (
            LimiterFailure::Misconfigured,
            "construction failure".to_owned(),
        ),
    }
}

static FAIL_OPENS: AtomicU64 = AtomicU64::new(0);

/// Counts one request let through uncounted by this process; returns the running total.
pub fn count_fail_open() -> u64 {
    FAIL_OPENS.fetch_add(1, Ordering::Relaxed) + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn windows_are_aligned_and_half_open() {
        let hour = Duration::from_secs(3600);
        assert_eq!(window(7200, hour), (7200, 10800));
        assert_eq!(window(10799, hour), (7200, 10800));
        assert_eq!(window(10800, hour), (10800, 14400));
        assert_eq!(window(-1, hour), (-3600, 0));
    }

    #[test]
    fn status_counts_down_and_limits_past_the_maximum() {
        assert_eq!(
            RateStatus::after(5, 1, 100, 900),
            RateStatus {
                limit: 5,
                remaining: 4,
                reset: 800,
                limited: false
            }
        );
        assert_eq!(RateStatus::after(5, 5, 100, 900).remaining, 0);
        assert!(!RateStatus::after(5, 5, 100, 900).limited);
        assert!(RateStatus::after(5, 6, 100, 900).limited);
        assert_eq!(RateStatus::after(5, 6, 900, 900).reset, 1, "never 0");
    }

    #[test]
    fn stricter_prefers_limited_then_fewer_remaining() {
        let open = RateStatus::after(1000, 10, 0, 3600);
        let tight = RateStatus::after(5, 4, 0, 900);
        assert_eq!(open.stricter(tight), tight);
        let limited = RateStatus::after(5, 6, 0, 900);
        assert_eq!(limited.stricter(open), limited);
    }

    #[test]
    fn limits_parse_with_names_in_errors() {
        let limits =
            RateLimits::from_lookup(|n| (n == "RATE_LIMIT_USER_PER_HOUR").then(|| "20".to_owned()))
                .unwrap();
        assert_eq!(limits.user.max, 20);
        assert_eq!(limits.sensitive.max, 5);
        let error = RateLimits::from_lookup(|n| {
            (n == "RATE_LIMIT_SENSITIVE_PER_15_MINUTES").then(|| "many".to_owned())
        })
        .unwrap_err();
        assert!(error.contains("RATE_LIMIT_SENSITIVE_PER_15_MINUTES"));
    }

    #[test]
    fn api_key_limit_defaults_to_1000_per_hour_and_is_configurable() {
        let limits = RateLimits::default();
        assert_eq!(limits.api_key.max, 1000);
        assert_eq!(limits.api_key.window, Duration::from_secs(3600));
        assert_eq!(limits.limit(Bucket::ApiKey), limits.api_key);
        assert_eq!(Bucket::ApiKey.as_str(), "api_key");
        let limits = RateLimits::from_lookup(|n| {
            (n == "RATE_LIMIT_API_KEY_PER_HOUR").then(|| "250".to_owned())
        })
        .unwrap();
        assert_eq!(limits.api_key.max, 250);
        assert_eq!(limits.user.max, 1000, "the user limit is its own");
        let error = RateLimits::from_lookup(|n| {
            (n == "RATE_LIMIT_API_KEY_PER_HOUR").then(|| "lots".to_owned())
        })
        .unwrap_err();
        assert!(error.contains("RATE_LIMIT_API_KEY_PER_HOUR"), "{error}");
    }

    #[test]
    fn invitation_limit_defaults_to_50_per_hour_and_is_configurable() {
        let limits = RateLimits::default();
        assert_eq!(limits.invitations.max, 50);
        assert_eq!(limits.invitations.window, Duration::from_secs(3600));
        assert_eq!(limits.limit(Bucket::Invitations), limits.invitations);
        let limits = RateLimits::from_lookup(|n| {
            (n == "RATE_LIMIT_INVITATIONS_PER_HOUR").then(|| " 120 ".to_owned())
        })
        .unwrap();
        assert_eq!(limits.invitations.max, 120);
        let error = RateLimits::from_lookup(|n| {
            (n == "RATE_LIMIT_INVITATIONS_PER_HOUR").then(|| "-1".to_owned())
        })
        .unwrap_err();
        assert!(error.contains("RATE_LIMIT_INVITATIONS_PER_HOUR"), "{error}");
    }

    #[test]
    fn ipv6_sources_are_keyed_on_their_64() {
        assert_eq!(ip_subject("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(
            ip_subject("2001:db8:1:2:ffff:ffff:ffff:ffff"),
            "2001:db8:1:2::/64"
        );
        assert_eq!(ip_subject("2001:DB8:1:2:a:b:c:d"), "2001:db8:1:2::/64");
        assert_ne!(ip_subject("2001:db8:1:3::1"), ip_subject("2001:db8:1:2::1"));
        assert_eq!(ip_subject("::1"), "::/64");
        assert_eq!(ip_subject("fe80::1:2:3:4"), "fe80::/64");
    }

    #[test]
    fn ipv4_and_ipv4_mapped_sources_are_keyed_on_the_ipv4_address() {
        assert_eq!(ip_subject("192.0.2.1"), "192.0.2.1");
        assert_eq!(ip_subject("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(ip_subject("::ffff:c000:0201"), "192.0.2.1");
        assert_ne!(ip_subject("192.0.2.2"), ip_subject("192.0.2.1"));
        // Not an address: kept as given.
        assert_eq!(ip_subject("unknown"), "unknown");
    }

    proptest! {
        #[test]
        fn every_address_of_a_64_shares_its_bucket_and_no_other_does(
            network in any::<u64>(), a in any::<u64>(), b in any::<u64>(), other in any::<u64>()
        ) {
            let address = |net: u64, host: u64| {
                Ipv6Addr::from((u128::from(net) << 64) | u128::from(host)).to_string()
            };
            // IPv4-mapped addresses live in ::ffff:0:0/96, inside the /64 `0`; keep clear of it.
            prop_assume!(network != 0 && other != 0);
            let subject = ip_subject(&address(network, a));
            prop_assert_eq!(&subject, &ip_subject(&address(network, b)));
            prop_assert!(subject.ends_with("/64"));
            prop_assert_eq!(subject.parse::<Ipv6Addr>().is_err(), true);
            if other != network {
                prop_assert_ne!(subject, ip_subject(&address(other, a)));
            }
        }

        #[test]
        fn ipv4_addresses_keep_their_own_bucket_mapped_or_not(v4 in any::<u32>()) {
            let v4 = std::net::Ipv4Addr::from(v4);
            prop_assert_eq!(ip_subject(&v4.to_string()), v4.to_string());
            prop_assert_eq!(ip_subject(&v4.to_ipv6_mapped().to_string()), v4.to_string());
        }

        #[test]
        fn every_moment_is_in_exactly_its_window(now in -10_000_000_000i64..10_000_000_000, secs in 1u64..100_000) {
            let (start, end) = window(now, Duration::from_secs(secs));
            prop_assert!(start <= now && now < end);
            prop_assert_eq!(end - start, secs as i64);
            prop_assert_eq!(start.rem_euclid(secs as i64), 0);
        }
    }
}
