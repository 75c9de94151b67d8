//! One delivery: an audit event to one endpoint, as the delivery queue holds it, and what sending
//! it once came to.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use tollgate::store::audit::AuditEvent;
use tollgate::webhook_url::is_internal_ip;

/// A queued delivery: the event (whole, so sending it reads nothing but the endpoint) and the
/// endpoint it goes to. `partitionKey` is the event item's own `PK` as the table's stream gave it,
/// the trusted source of the organization (`TenantId::from_partition_key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub endpoint_id: String,
    pub partition_key: String,
    pub event: AuditEvent,
}

/// The body every endpoint receives, the envelope the Standard Webhooks specification suggests:
/// the event's type, when it happened, and the event itself.
#[derive(Debug, Serialize)]
pub struct Payload<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub timestamp: &'a str,
    pub data: &'a AuditEvent,
}

impl<'a> Payload<'a> {
    pub fn of(event: &'a AuditEvent) -> Self {
        Self {
            kind: event.kind.as_str(),
            timestamp: &event.occurred_at,
            data: event,
        }
    }
}

/// Why one attempt did not deliver. Holds no URL (a customer's URL may carry a token of theirs),
/// no response body and no secret, so it can be logged and kept in a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttemptError {
    #[error("the endpoint answered {0}")]
    Status(u16),
    #[error("the endpoint did not answer within the delivery timeout")]
    Timeout,
    #[error("the endpoint could not be reached")]
    Unreachable,
    #[error("the endpoint's address is not a public one")]
    AddressRefused,
}

/// How long a delivery that failed `attempt` times waits before the next: `base` doubled per
/// attempt after the first, never more than `cap`.
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    base.checked_mul(1u32 << doublings).unwrap_or(cap).min(cap)
}

/// Whether deliveries may go to `ip`: not an internal address
/// ([`tollgate::webhook_url::is_internal_ip`], the rule endpoints are created by), except loopback
/// where the configuration allows it (local development).
pub fn address_allowed(ip: IpAddr, allow_loopback: bool) -> bool {
    !is_internal_ip(ip) || (allow_loopback && ip.to_canonical().is_loopback())
}

/// The resolver of the delivery client: the system's, keeping only the addresses deliveries may
/// go to, so a public name pointing at a private address reaches nothing.
#[derive(Debug, Clone, Copy)]
pub struct PublicResolver {
    pub allow_loopback: bool,
}

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|address| address_allowed(address.ip(), allow_loopback))
                .collect();
            if found.is_empty() {
                return Err(Box::new(AttemptError::AddressRefused) as _);
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The delivery HTTP client: HTTPS over rustls (ring) with Mozilla's roots, `timeout` per
/// request, no redirects (a 3xx is a failed attempt), no proxy, and [`PublicResolver`].
pub fn client(
    timeout: Duration,
    allow_loopback: bool,
) -> Result<reqwest::Client, tollgate::trust::HttpClientError> {
    tollgate::trust::reqwest_client_with(timeout, |builder| {
        builder
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(PublicResolver { allow_loopback })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap() {
        let base = Duration::from_secs(30);
        let cap = Duration::from_secs(3600);
        let waits: Vec<u64> = (1..=9).map(|a| backoff(a, base, cap).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(backoff(0, base, cap), base);
        assert_eq!(backoff(u32::MAX, base, cap), cap);
    }

    proptest! {
        #[test]
        fn backoff_never_shrinks_and_never_passes_the_cap(
            attempt in 0u32..200, base_ms in 0u64..100_000, cap_ms in 0u64..100_000_000,
        ) {
            let base = Duration::from_millis(base_ms);
            let cap = Duration::from_millis(cap_ms);
            let now = backoff(attempt, base, cap);
            prop_assert!(now <= cap);
            prop_assert!(backoff(attempt + 1, base, cap) >= now);
            prop_assert_eq!(backoff(1, base, cap), base.min(cap));
        }
    }

    #[test]
    fn public_addresses_are_allowed_and_loopback_only_when_allowed() {
        for (address, production, dev) in [
            ("93.184.215.14", true, true),
            ("2606:4700::6810:85e5", true, true),
            ("127.0.0.1", false, true),
            ("::1", false, true),
            ("::ffff:127.0.0.1", false, true),
            ("10.1.2.3", false, false),
            ("169.254.169.254", false, false),
            ("::ffff:169.254.169.254", false, false),
            ("fd00::1", false, false),
        ] {
            let ip: IpAddr = address.parse().expect("address");
            assert_eq!(address_allowed(ip, false), production, "{address}");
            assert_eq!(address_allowed(ip, true), dev, "{address}");
        }
    }

    #[tokio::test]
    async fn the_resolver_keeps_no_loopback_address_in_production() {
        use reqwest::dns::Resolve as _;
        let name: reqwest::dns::Name = "localhost".parse().expect("name");
        assert!(
            PublicResolver {
                allow_loopback: false
            }
            .resolve(name)
            .await
            .is_err()
        );
        let name: reqwest::dns::Name = "localhost".parse().expect("name");
        let found: Vec<SocketAddr> = PublicResolver {
            allow_loopback: true,
        }
        .resolve(name)
        .await
        .expect("localhost resolves")
        .collect();
        assert!(!found.is_empty() && found.iter().all(|a| a.ip().is_loopback()));
    }

    #[test]
    fn a_delivery_round_trips_through_its_queue_body() {
        let event: AuditEvent = serde_json::from_value(serde_json::json!({
            "id": "evt_019ad6f1c2a87b3e9d1f0a4c5b6e7d8f",
            "type": "member.role_changed",
            "occurredAt": "2026-11-30T22:30:00.123456Z",
            "actor": {"type": "user", "id": "usr_1"},
            "organizationId": "org_1",
            "target": {"type": "member", "id": "usr_2"},
            "before": {"role": "MANAGER"},
            "after": {"role": "VIEWER"}
        }))
        .expect("event");
        let delivery = Delivery {
            endpoint_id: "we_1".to_owned(),
            partition_key: "ORG#org_1".to_owned(),
            event,
        };
        let body = serde_json::to_string(&delivery).expect("body");
        assert_eq!(
            serde_json::from_str::<Delivery>(&body).expect("parse"),
            delivery
        );
        let payload = serde_json::to_value(Payload::of(&delivery.event)).expect("payload");
        assert_eq!(payload["type"], "member.role_changed");
        assert_eq!(payload["timestamp"], "2026-11-30T22:30:00.123456Z");
        assert_eq!(
            payload["data"]["id"],
            "evt_019ad6f1c2a87b3e9d1f0a4c5b6e7d8f"
        );
    }
}
