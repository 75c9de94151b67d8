//! `tollgate-dev stripe pay <checkoutSessionId>`: completes a checkout as a paying customer would,
//! against the local Stripe stand-in. The session is read from the stand-in, paid there (which
//! creates the subscription and its paid invoice, served by `GET` from then on), and the events
//! Stripe sends for a paid subscription checkout (`checkout.session.completed`,
//! `customer.subscription.created`, `invoice.paid`) are signed with the gateway's webhook secret,
//! as Stripe signs them, and delivered to its `POST /api/webhooks/stripe`.
//!
//! Paying a session twice sends the same events (same ids) again, so the gateway answers
//! `duplicate` and nothing changes: a replay is harmless.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where a payment is made and delivered.
#[derive(Clone)]
pub struct PayTarget {
    /// The gateway's base URL, e.g. `http://127.0.0.1:3000`.
    pub gateway_url: String,
    /// The stand-in's base URL (`STRIPE_API_BASE`).
    pub stripe_api_base: String,
    /// Any key for the stand-in; never printed.
    pub stripe_secret_key: String,
    /// The gateway's `STRIPE_WEBHOOK_SECRET` (the first, when several); never printed.
    pub webhook_secret: String,
}

impl std::fmt::Debug for PayTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayTarget")
            .field("gateway_url", &self.gateway_url)
            .field("stripe_api_base", &self.stripe_api_base)
            .finish_non_exhaustive()
    }
}

/// One event delivered to the gateway and its answer.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event as sent (the body that was signed).
    pub event: Value,
    pub status: u16,
    /// The gateway's JSON answer (a string when it was not JSON).
    pub answer: Value,
}

impl Delivery {
    pub fn event_type(&self) -> &str {
        self.event["type"].as_str().unwrap_or_default()
    }

    pub fn event_id(&self) -> &str {
        self.event["id"].as_str().unwrap_or_default()
    }

    /// The gateway's `outcome` (`processed`, `duplicate`, `ignored`), when it accepted the event.
    pub fn outcome(&self) -> Option<&str> {
        self.answer["outcome"].as_str()
    }

    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// What [`pay`] did.
#[derive(Debug, Clone)]
pub struct Payment {
    /// The session as read before paying.
    pub session: Value,
    /// The subscription and invoice the stand-in created.
    pub subscription: Value,
    pub invoice: Value,
    pub deliveries: Vec<Delivery>,
}

#[derive(Debug, thiserror::Error)]
pub enum PayError {
    #[error("{0:?} is not a Checkout Session id (cs_...)")]
    InvalidSessionId(String),
    #[error("the HTTP client could not be built: {0}")]
    Client(String),
    #[error("{url} could not be reached: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Stripe answered {status} for {what}: {message}")]
    Stripe {
        what: String,
        status: u16,
        message: String,
    },
    #[error(
        "{0} is not the local Stripe stand-in (it does not know /_standin/...): with real Stripe test \
         mode, pay on the session's checkout page (card 4242 4242 4242 4242) and let `stripe listen` \
         forward the events"
    )]
    NotStandIn(String),
    #[error("the stand-in's answer is not what it sends: {0}")]
    UnexpectedAnswer(String),
    #[error(
        "no local webhook secret: start the gateway with the stand-in first (`make dev`, or \
         `tollgate-dev serve --stripe-standin ADDR`) so {} exists, or pass --webhook-secret ({source})", path.display()
    )]
    NoWebhookSecret {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Pays Checkout Session `session_id` at the stand-in and delivers the resulting events to the
/// gateway, in the order Stripe lists them for a subscription checkout. A delivery the gateway
/// refuses is reported in [`Delivery::status`], not as an error.
pub async fn pay(target: &PayTarget, session_id: &str) -> Result<Payment, PayError> {
    let valid = session_id.starts_with("cs_")
        && session_id.len() <= 255
        && session_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(PayError::InvalidSessionId(session_id.to_owned()));
    }
    let http = tollgate::trust::reqwest_client(TIMEOUT)
        .map_err(|error| PayError::Client(error.to_string()))?;
    let stripe = target.stripe_api_base.trim_end_matches('/');
    let authorization = format!("Bearer {}", target.stripe_secret_key);

    let url = format!("{stripe}/v1/checkout/sessions/{session_id}");
    let response = http
        .get(&url)
        .header("authorization", &authorization)
        .send()
        .await
        .map_err(|error| unreachable(&url, error))?;
    let (status, session) = json_answer(response).await;
    if status != 200 {
        return Err(stripe_failure(
            format!("checkout session {session_id}"),
            status,
            &session,
        ));
    }

    let url = format!("{stripe}/_standin/checkout/sessions/{session_id}/pay");
    let response = http
        .post(&url)
        .header("authorization", &authorization)
        .send()
        .await
        .map_err(|error| unreachable(&url, error))?;
    let (status, payment) = json_answer(response).await;
    if status == 404 && payment["error"]["code"].is_null() {
        return Err(PayError::NotStandIn(stripe.to_owned()));
    }
    if status != 200 {
        return Err(stripe_failure(
            format!("paying {session_id}"),
            status,
            &payment,
        ));
    }
    let Some(events) = payment["events"].as_array() else {
        return Err(PayError::UnexpectedAnswer("no events".to_owned()));
    };

    let webhook = format!(
        "{}/api/webhooks/stripe",
        target.gateway_url.trim_end_matches('/')
    );
    let mut deliveries = Vec::with_capacity(events.len());
    for event in events {
        let body = event.to_string();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = tollgate::billing::signature::sign_for_test(
            &target.webhook_secret,
            body.as_bytes(),
            now,
        );
        let response = http
            .post(&webhook)
            .header("content-type", "application/json")
            .header("stripe-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|error| unreachable(&webhook, error))?;
        let (status, answer) = json_answer(response).await;
        deliveries.push(Delivery {
            event: event.clone(),
            status,
            answer,
        });
    }
    Ok(Payment {
        session,
        subscription: payment["subscription"].clone(),
        invoice: payment["invoice"].clone(),
        deliveries,
    })
}

fn unreachable(url: &str, error: reqwest::Error) -> PayError {
    PayError::Unreachable {
        url: url.to_owned(),
        reason: error.without_url().to_string(),
    }
}

/// Status and JSON body; a body that is not JSON becomes a JSON string.
async fn json_answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

fn stripe_failure(what: String, status: u16, body: &Value) -> PayError {
    let message = body["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| body.to_string());
    PayError::Stripe {
        what,
        status,
        message,
    }
}

/// The first of the comma-separated secrets in `STRIPE_WEBHOOK_SECRET`, as the gateway accepts any.
pub fn first_secret(secrets: &str) -> Option<&str> {
    secrets.split(',').map(str::trim).find(|s| !s.is_empty())
}

/// The local webhook signing secret kept at `path` (`whsec_` and 32 random bytes in hex), made on
/// first use with file mode 0600, so the gateway and `stripe pay` agree across restarts.
pub fn load_or_create_webhook_secret(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let secret = text.trim();
            if secret.is_empty() {
                Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is empty; delete it to make a new one", path.display()),
                ))
            } else {
                Ok(secret.to_owned())
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
                .map_err(|_| std::io::Error::other("no randomness for the webhook secret"))?;
            let secret = format!("whsec_{}", hex::encode(bytes));
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            crate::issuer::write_private(path, secret.as_bytes())?;
            Ok(secret)
        }
        Err(error) => Err(error),
    }
}

/// Reads the secret [`load_or_create_webhook_secret`] made.
pub fn read_webhook_secret(path: &Path) -> Result<String, PayError> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        Ok(_) => Err(PayError::NoWebhookSecret {
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is empty"),
        }),
        Err(source) => Err(PayError::NoWebhookSecret {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_file_is_made_once_and_private() {
        let dir = std::env::temp_dir().join(format!("tollgate-whsec-{}", uuid::Uuid::new_v4()));
        let path = dir.join("secret");
        let first = load_or_create_webhook_secret(&path).unwrap();
        assert!(
            first.starts_with("whsec_") && first.len() == 6 + 64,
            "{first}"
        );
        assert_eq!(load_or_create_webhook_secret(&path).unwrap(), first);
        assert_eq!(read_webhook_secret(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
        assert!(matches!(
            read_webhook_secret(&path),
            Err(PayError::NoWebhookSecret { .. })
        ));
    }

    #[test]
    fn first_secret_skips_blanks() {
        assert_eq!(first_secret(" , whsec_a ,whsec_b"), Some("whsec_a"));
        assert_eq!(first_secret(" , "), None);
    }
}
