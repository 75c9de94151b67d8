//! The client: validated settings, async-stripe's client behind [`StripeApi`], the calls Tollgate
//! makes, their retries within the budget, and the mapping of failures to [`StripeError`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use stripe::{ClientBuilder, IdempotencyKey, RequestStrategy, StripeRequest};
use stripe_client_core::{CustomizedStripeRequest, Outcome, StripeClient, StripeClientErr};
use tokio::time::Instant;

use crate::{
    DEFAULT_API_BASE, MAX_ATTEMPTS, ORGANIZATION_METADATA_KEY, PINNED_API_VERSION, REQUEST_TIMEOUT,
    StripeError,
};

/// Another attempt is made only if at least this much of the budget is left for it.
const MIN_ATTEMPT: Duration = Duration::from_secs(1);

/// A validated Stripe secret key and API base: what [`StripeApi::build`] needs. Building the client
/// can be left to the first Stripe call, so that a cold start that never calls Stripe does not pay
/// for it.
#[derive(Clone)]
pub struct StripeSettings {
    api_base: String,
    /// Never printed (see the `Debug` impl).
    secret_key: Arc<str>,
}

impl fmt::Debug for StripeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeSettings")
            .field("api_base", &self.api_base)
            .field("secret_key", &"[redacted]")
            .finish()
    }
}

impl StripeSettings {
    /// `api_base` is `STRIPE_API_BASE`: [`DEFAULT_API_BASE`], or a local stand-in such as
    /// `http://127.0.0.1:PORT` in tests.
    ///
    /// Fails with [`StripeError::Unavailable`] when the key is empty or not a valid header value,
    /// or the base is not an `http(s)` URL: billing cannot work with this configuration.
    pub fn new(secret_key: &str, api_base: &str) -> Result<StripeSettings, StripeError> {
        let secret_key = secret_key.trim();
        if secret_key.is_empty() {
            return Err(StripeError::Unavailable(
                "no Stripe secret key is configured".to_owned(),
            ));
        }
        if !secret_key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(StripeError::Unavailable(
                "the Stripe secret key contains characters a key never has".to_owned(),
            ));
        }
        let base = api_base.trim().trim_end_matches('/');
        let base = if base.is_empty() {
            DEFAULT_API_BASE
        } else {
            base
        };
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(StripeError::Unavailable(format!(
                "STRIPE_API_BASE must be an http(s) URL, got {base:?}"
            )));
        }
        Ok(StripeSettings {
            api_base: base.to_owned(),
            secret_key: Arc::from(secret_key),
        })
    }

    /// The API base requests go to (without a trailing slash).
    pub fn api_base(&self) -> &str {
        &self.api_base
    }
}

/// The Stripe API as Tollgate uses it. Cheap to clone (one `Arc`); build it once per cold start:
/// [`StripeApi::new`] does no I/O. async-stripe's client opens a connection per request (it keeps
/// no idle connection), HTTPS through rustls on ring with Mozilla's roots compiled in, or plain
/// HTTP to an `http://` base (a local stand-in).
#[derive(Clone)]
pub struct StripeApi {
    inner: Arc<Inner>,
}

struct Inner {
    wire: Wire,
    api_base: String,
    /// Kept only to scrub it from error messages; never printed.
    secret_key: Arc<str>,
}

impl fmt::Debug for StripeApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeApi")
            .field("api_base", &self.inner.api_base)
            .field("api_version", &PINNED_API_VERSION.as_str())
            .field("secret_key", &"[redacted]")
            .finish()
    }
}

/// async-stripe's client, whose `StripeClient` error tells a failed request
/// ([`WireError::Failed`]: no answer, or an error status) from a 2xx answer that does not
/// deserialize into the pinned type ([`WireError::Unparsable`]), which async-stripe's own error
/// does not distinguish by type.
struct Wire(stripe::Client);

enum WireError {
    Failed(stripe::StripeError),
    Unparsable,
}

impl StripeClientErr for WireError {
    fn deserialize_err(_message: impl fmt::Display) -> Self {
        // async-stripe's message is a constant ("error deserializing request data").
        WireError::Unparsable
    }
}

impl StripeClient for Wire {
    type Err = WireError;

    fn execute(
        &self,
        request: CustomizedStripeRequest,
    ) -> impl Future<Output = Result<bytes::Bytes, WireError>> + Send {
        let sent = StripeClient::execute(&self.0, request);
        async move { sent.await.map_err(WireError::Failed) }
    }
}

impl StripeApi {
    /// A client for `api_base` with the secret key `secret_key` ([`StripeSettings::new`], then
    /// [`StripeApi::build`]). No network I/O.
    pub fn new(secret_key: &str, api_base: &str) -> Result<StripeApi, StripeError> {
        StripeApi::build(&StripeSettings::new(secret_key, api_base)?)
    }

    /// The client for validated settings. No network I/O.
    pub fn build(settings: &StripeSettings) -> Result<StripeApi, StripeError> {
        // async-stripe's connector asks rustls for the process's provider; ring is the only one
        // compiled in, and installing it first keeps that true however the binary is linked.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = ClientBuilder::new(settings.secret_key.to_string())
            // async-stripe appends `v1/...` to the base as given.
            .url(format!("{}/", settings.api_base))
            .app_info("tollgate", Some(env!("CARGO_PKG_VERSION").to_owned()), None)
            .build()
            .map_err(|error| {
                StripeError::Unavailable(format!(
                    "the Stripe client cannot be built: {}",
                    error
                        .to_string()
                        .replace(&*settings.secret_key, "[redacted]")
                ))
            })?;
        Ok(StripeApi {
            inner: Arc::new(Inner {
                wire: Wire(client),
                api_base: settings.api_base.clone(),
                secret_key: settings.secret_key.clone(),
            }),
        })
    }

    /// The API base requests go to (without a trailing slash).
    pub fn api_base(&self) -> &str {
        &self.inner.api_base
    }

    /// Sends `request` and deserializes a 2xx answer into its pinned type, retrying as
    /// async-stripe's `ExponentialBackoff(MAX_ATTEMPTS)` strategy decides, with the same
    /// idempotency key, while [`REQUEST_TIMEOUT`] lasts (each attempt gets what is left of it).
    ///
    /// Each attempt is sent with `RequestStrategy::Idempotent(key)` (or `Once` without a key): a
    /// strategy that retries by itself would send a key of its own, not the caller's.
    pub async fn send<R>(
        &self,
        op: &'static str,
        request: &R,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> Result<R::Output, StripeError>
    where
        R: StripeRequest,
        R::Output: miniserde::Deserialize,
    {
        let started = Instant::now();
        let policy = RequestStrategy::ExponentialBackoff(MAX_ATTEMPTS);
        let mut tries = 0;
        let mut last_status = None;
        let mut last_error = None;
        loop {
            let pause = match policy.test(last_status, None, tries) {
                Outcome::Stop => break,
                Outcome::Continue(pause) => pause.unwrap_or_default(),
            };
            // What the attempt would have left after the pause; a retry needs at least MIN_ATTEMPT.
            let Some(remaining) = REQUEST_TIMEOUT
                .checked_sub(started.elapsed() + pause)
                .filter(|remaining| tries == 0 || *remaining >= MIN_ATTEMPT)
            else {
                break;
            };
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            let strategy = match idempotency_key {
                Some(key) => RequestStrategy::Idempotent(key.clone()),
                None => RequestStrategy::Once,
            };
            let answer = request
                .customize()
                .request_strategy(strategy)
                .timeout(remaining)
                .send(&self.inner.wire)
                .await;
            tries += 1;
            match answer {
                Ok(output) => return Ok(output),
                Err(WireError::Unparsable) => {
                    return Err(StripeError::UnexpectedShape(format!(
                        "{op}: the response does not match API version {PINNED_API_VERSION}"
                    )));
                }
                Err(WireError::Failed(error)) => {
                    let (error, status) = self.failure(op, error);
                    if !error.is_transient() {
                        return Err(error);
                    }
                    last_status = status;
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            StripeError::Unavailable(format!(
                "{op}: no attempt fitted in {} s",
                REQUEST_TIMEOUT.as_secs()
            ))
        }))
    }

    /// Maps a failed attempt, scrubbing the secret key from anything quoted; the HTTP status when
    /// Stripe answered with its error body.
    fn failure(&self, op: &'static str, error: stripe::StripeError) -> (StripeError, Option<u16>) {
        match error {
            stripe::StripeError::Stripe(error, status) => {
                let message = error
                    .message
                    .as_deref()
                    .map(|message| self.scrub(message))
                    .unwrap_or_else(|| {
                        format!("Stripe {} without a message", error.type_.as_str())
                    });
                let code = error.code.as_ref().map(|code| code.as_str().to_owned());
                // 409: the request raced another with the same idempotency key (or on the same
                // object); like 424, 429 and 5xx, the same request is expected to succeed later.
                let transient = status >= 500
                    || retryable_status(status)
                    || matches!(code.as_deref(), Some("lock_timeout" | "rate_limit"));
                let error = if transient {
                    StripeError::Unavailable(format!("{op}: Stripe answered {status}: {message}"))
                } else {
                    StripeError::Rejected {
                        status,
                        code,
                        message,
                    }
                };
                (error, Some(status))
            }
            // async-stripe's only source of this error is an error status whose body is not
            // Stripe's error JSON (a proxy's 502 page, say): not a refusal by Stripe, so transient
            // rather than lose the request.
            stripe::StripeError::JSONDeserialize(_) => (
                StripeError::Unavailable(format!(
                    "{op}: Stripe answered an error status without its error body"
                )),
                None,
            ),
            stripe::StripeError::Timeout => (
                StripeError::Unavailable(format!(
                    "{op}: no answer within the {} s budget",
                    REQUEST_TIMEOUT.as_secs()
                )),
                None,
            ),
            // No answer: Stripe out of reach, a reset connection, a TLS failure.
            stripe::StripeError::ClientError(detail) | stripe::StripeError::ConfigError(detail) => {
                (
                    StripeError::Unavailable(format!("{op}: {}", self.scrub(&detail))),
                    None,
                )
            }
        }
    }

    fn scrub(&self, text: &str) -> String {
        text.replace(&*self.inner.secret_key, "[redacted]")
    }
}

/// Whether async-stripe's strategies retry an answer with `status` (409, 424, 429, 500–504).
fn retryable_status(status: u16) -> bool {
    matches!(
        RequestStrategy::Retry(2).test(Some(status), None, 0),
        Outcome::Continue(_)
    )
}

/// `{"organizationId": organization_id}`.
pub fn organization_metadata(organization_id: &str) -> HashMap<String, String> {
    HashMap::from([(
        ORGANIZATION_METADATA_KEY.to_owned(),
        organization_id.to_owned(),
    )])
}

/// Stripe's rule for `Idempotency-Key`: 1–255 characters; visible ASCII so it is a header value.
pub fn idempotency_key_of(key: &str) -> Result<IdempotencyKey, StripeError> {
    let invalid = |reason: &str| StripeError::Rejected {
        status: 400,
        code: Some("idempotency_key_invalid".to_owned()),
        message: format!("invalid idempotency key: {reason}"),
    };
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("only visible ASCII characters are allowed"));
    }
    IdempotencyKey::new(key).map_err(|error| match error {
        stripe::IdempotentKeyError::EmptyKey => invalid("it is empty"),
        stripe::IdempotentKeyError::KeyTooLong(_) => invalid("it is longer than 255 characters"),
    })
}

/// Ids become part of the request path: letters, digits and `_` only.
pub fn check_id(op: &'static str, id: &str) -> Result<(), StripeError> {
    let valid = !id.is_empty()
        && id.len() <= 255
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(StripeError::Rejected {
            status: 400,
            code: Some("invalid_id".to_owned()),
            message: format!("{op}: not a Stripe id"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_can_cross_threads() {
        fn clone_send_sync<T: Clone + Send + Sync>(_: &T) {}
        let api = StripeApi::new("sk_test_x", "http://127.0.0.1:9").unwrap();
        clone_send_sync(&api);
    }

    #[test]
    fn debug_hides_the_key() {
        let api = StripeApi::new("sk_test_do_not_print_me", "http://127.0.0.1:9").unwrap();
        let debug = format!("{api:?}");
        assert!(!debug.contains("do_not_print_me"), "{debug}");
        assert!(debug.contains("http://127.0.0.1:9"), "{debug}");
        assert!(debug.contains(PINNED_API_VERSION.as_str()), "{debug}");
        let settings = StripeSettings::new("sk_test_do_not_print_me", "").unwrap();
        let debug = format!("{settings:?}");
        assert!(!debug.contains("do_not_print_me"), "{debug}");
    }

    #[test]
    fn configuration_errors() {
        assert!(matches!(
            StripeApi::new(" ", DEFAULT_API_BASE),
            Err(StripeError::Unavailable(_))
        ));
        assert!(matches!(
            StripeApi::new("sk_test_x", "ftp://example.com"),
            Err(StripeError::Unavailable(_))
        ));
        assert!(matches!(
            StripeApi::new("sk_test_\u{e9}", DEFAULT_API_BASE),
            Err(StripeError::Unavailable(_))
        ));
        // async-stripe refuses a base that is no URI; the error does not quote the key.
        let err = StripeApi::new("sk_test_secret_123", "http://bad host").unwrap_err();
        assert!(matches!(err, StripeError::Unavailable(_)), "{err:?}");
        assert!(!err.to_string().contains("secret_123"), "{err}");
        let api = StripeApi::new("sk_test_x", "").unwrap();
        assert_eq!(api.api_base(), DEFAULT_API_BASE);
        let api = StripeApi::new("sk_test_x", "http://127.0.0.1:1234/").unwrap();
        assert_eq!(api.api_base(), "http://127.0.0.1:1234");
    }

    #[test]
    fn idempotency_keys_and_ids_are_checked() {
        assert_eq!(
            idempotency_key_of("checkout:org_1:abc").unwrap().as_str(),
            "checkout:org_1:abc"
        );
        assert!(idempotency_key_of(&"k".repeat(255)).is_ok());
        for bad in ["", "a b", "ключ", "k\n"] {
            assert!(
                matches!(idempotency_key_of(bad), Err(StripeError::Rejected { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            idempotency_key_of(&"k".repeat(256)),
            Err(StripeError::Rejected { .. })
        ));
        assert!(check_id("op", "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw").is_ok());
        assert!(check_id("op", "sub_1/../customers").is_err());
        assert!(check_id("op", "").is_err());
    }

    #[test]
    fn rejected_display() {
        let err = StripeError::Rejected {
            status: 402,
            code: Some("card_declined".to_owned()),
            message: "Your card was declined.".to_owned(),
        };
        assert_eq!(
            err.to_string(),
            "Stripe rejected the request (402 card_declined): Your card was declined."
        );
        assert!(!err.is_transient());
        assert!(StripeError::Unavailable("x".to_owned()).is_transient());
    }

    /// An `https://` base is spoken over TLS (rustls on ring, built without a panic for want of a
    /// provider): what the server receives is a TLS ClientHello naming the host. This server
    /// closes the connection instead of answering, so the call ends Unavailable.
    #[tokio::test]
    async fn an_https_base_is_spoken_over_tls() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut connection, _) = listener.accept().await.unwrap();
            let mut hello = vec![0; 4096];
            let read = connection.read(&mut hello).await.unwrap();
            hello.truncate(read);
            hello
        });
        let api = StripeApi::new("sk_test_x", &format!("https://localhost:{port}")).unwrap();
        let retrieve = stripe_core::customer::RetrieveCustomer::new("cus_1");
        let err = api
            .send("retrieve customer", &retrieve, None)
            .await
            .unwrap_err();
        assert!(matches!(err, StripeError::Unavailable(_)), "{err:?}");
        let hello = server.await.unwrap();
        // A TLS handshake record (22) whose first message is a ClientHello (1).
        assert_eq!(hello.first(), Some(&22), "{hello:?}");
        assert_eq!(hello.get(5), Some(&1), "{hello:?}");
        // The server name (SNI) and nothing in clear text of the request.
        assert!(hello.windows(9).any(|w| w == b"localhost"));
        assert!(!hello.windows(5).any(|w| w == b"GET /"));
    }

    #[test]
    fn transient_statuses_are_async_stripes_retryable_ones() {
        for status in [409, 424, 429, 500, 502, 503, 504] {
            assert!(retryable_status(status), "{status}");
        }
        for status in [200, 400, 401, 402, 403, 404] {
            assert!(!retryable_status(status), "{status}");
        }
    }
}
