//! The secret values (Stripe keys, service-key hashes, the encryption key ring): from one JSON
//! secret in AWS Secrets Manager (`SECRETS_ARN` set), or from the environment locally.
//!
//! # The secret (AWS)
//!
//! One Secrets Manager secret whose `SecretString` is a JSON object:
//!
//! ```json
//! {
//!   "stripeSecretKey": "sk_live_...",
//!   "apiKeyPepper": "<64 hex chars>",
//!   "stripeWebhookSecret": ["whsec_new...", "whsec_old..."],
//!   "serviceKeyHashes": ["<sha256 hex of service key 1>", "<sha256 hex of service key 2>"],
//!   "encryptionKeys": {
//!     "active": "k2026",
//!     "keys": { "k2025": "<64 hex chars>", "k2026": "<64 hex chars>" }
//!   }
//! }
//! ```
//!
//! | field | type | environment (local) |
//! |---|---|---|
//! | `stripeSecretKey` | string | `STRIPE_SECRET_KEY` |
//! | `clerkSecretKey` | string: Clerk Backend API key, for profiles when tokens carry no email | `CLERK_SECRET_KEY` |
//! | `stripeWebhookSecret` | string (comma-separated allowed) or array of strings | `STRIPE_WEBHOOK_SECRET` (comma-separated) |
//! | `serviceKeyHashes` | string (comma-separated allowed) or array of strings: hex SHA-256 of each service key | `SERVICE_KEY_HASHES` (comma-separated) |
//! | `apiKeyPepper` | string of at least 32 bytes (e.g. 64 hex characters): the HMAC key organization API keys are hashed under ([`crate::auth::api_key`]) | `API_KEY_PEPPER` |
//! | `encryptionKeys` | `{"active": kid, "keys": {kid: hex64}}` ([`KeyRing::from_secret_json`]) | `ENCRYPTION_KEYS` (`kid:hex64,kid2:hex64`) and `ENCRYPTION_ACTIVE_KEY` ([`KeyRing::from_env_strings`]) |
//!
//! * Every field is optional; a missing field, `null` and an empty string mean "not configured"
//!   (checkout and portal answer 503 without a Stripe key, integrations without a key ring, every
//!   service key is refused without hashes).
//! * Lists: entries are trimmed and empty entries dropped; several webhook secrets are accepted
//!   during a rotation. Error messages count entries from 1 after empty ones are dropped.
//! * Fields not listed here are ignored, so the secret may carry other values.
//! * Everything is validated when the secret is read (JSON types, service-key digests, the whole key
//!   ring): a malformed secret is a failed read, so a bad rotation never replaces good values (see
//!   below).
//! * In the environment the kid `legacy` of the key ring has the same meaning as in the secret (see
//!   [`crate::crypto`]). Setting only one of `ENCRYPTION_KEYS` / `ENCRYPTION_ACTIVE_KEY` is an
//!   error; setting neither means no key ring.
//!
//! # Caching and rotation
//!
//! [`SecretSource::secrets_manager`] does no I/O: the first [`SecretSource::current`] reads the
//! secret (`GetSecretValue`, the version `AWSCURRENT`), later calls answer from memory until the
//! values are older than the TTL ([`DEFAULT_TTL`], 5 minutes), and then the next call reads again.
//! So a new secret version is picked up within one TTL, without a redeploy. Only one read runs at a
//! time: concurrent callers wait for it and share its outcome.
//!
//! When a read fails (network, permissions, a malformed secret):
//! * with values from an earlier read, those keep being served and a warning is logged; the next
//!   read is tried after `min(TTL, 30 s)`. Only up to the maximum staleness, though (by default
//!   3 × the TTL, `SECRETS_MAX_STALENESS_SECONDS`, counted from the last good read): past it the
//!   values may have been revoked, so [`SecretSource::current`] returns [`SecretsError::Stale`]
//!   (the caller answers 503) and an error is logged, until a read succeeds again;
//! * without, [`SecretSource::current`] returns the error (the caller answers 503); callers in the
//!   next `min(TTL, 1 s)` get the same error without another read.
//!
//! The client from [`secrets_manager_client`] bounds a read to [`OPERATION_TIMEOUT`] (retries
//! included), so a request never waits long on an unreachable Secrets Manager.
//!
//! # Secrecy
//!
//! No error, log line or `Debug` output of this module contains a secret value: errors name the
//! field and the problem (JSON errors only their position), `Debug` says which values are present,
//! and failed reads are logged with their kind (e.g. `AccessDeniedException`, `connection
//! failed`) only.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::error::{DisplayErrorContext, SdkError};
use serde_json::Value;

use crate::auth::api_key::{Pepper, PepperTooShort};
use crate::auth::service_key::{ServiceKeyConfigError, ServiceKeys};
use crate::crypto::{CryptoConfigError, KeyRing};

/// How long values read from Secrets Manager are served before the secret is read again.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);
/// After a failed read with earlier values at hand: the next read is tried after `min(ttl, this)`.
const STALE_RETRY_AFTER: Duration = Duration::from_secs(30);

/// How long values may be served while refreshing fails, by default: 3 × the TTL.
pub fn default_max_staleness(ttl: Duration) -> Duration {
    ttl.saturating_mul(3)
}
/// After a failed read with nothing at hand: the error is repeated for `min(ttl, this)`.
const COLD_RETRY_AFTER: Duration = Duration::from_secs(1);

/// [`secrets_manager_client`]: time to establish a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// [`secrets_manager_client`]: one HTTP attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// [`secrets_manager_client`]: one read, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// The environment variable names of the local fallback.
const ENV_STRIPE_SECRET_KEY: &str = "STRIPE_SECRET_KEY";
const ENV_CLERK_SECRET_KEY: &str = "CLERK_SECRET_KEY";
const ENV_API_KEY_PEPPER: &str = "API_KEY_PEPPER";
const ENV_STRIPE_WEBHOOK_SECRET: &str = "STRIPE_WEBHOOK_SECRET";
const ENV_SERVICE_KEY_HASHES: &str = "SERVICE_KEY_HASHES";
const ENV_ENCRYPTION_KEYS: &str = "ENCRYPTION_KEYS";
const ENV_ENCRYPTION_ACTIVE_KEY: &str = "ENCRYPTION_ACTIVE_KEY";

/// The JSON field names of the secret.
const JSON_STRIPE_SECRET_KEY: &str = "stripeSecretKey";
const JSON_CLERK_SECRET_KEY: &str = "clerkSecretKey";
const JSON_API_KEY_PEPPER: &str = "apiKeyPepper";
const JSON_STRIPE_WEBHOOK_SECRET: &str = "stripeWebhookSecret";
const JSON_SERVICE_KEY_HASHES: &str = "serviceKeyHashes";
const JSON_ENCRYPTION_KEYS: &str = "encryptionKeys";

/// The secret values, from the JSON secret (AWS) or the environment (local).
/// See the [module docs](self) for the shape.
#[derive(Clone)]
pub struct SecretValues {
    /// `None`: checkout and portal answer 503.
    pub stripe_secret_key: Option<String>,
    /// Comma-separated webhook signing secrets (several during a rotation); may be empty.
    pub stripe_webhook_secrets: String,
    /// Comma-separated hex SHA-256 digests of accepted service keys; may be empty.
    pub service_key_hashes: String,
    /// `None`: integrations answer 503.
    pub encryption_keys: Option<KeyRing>,
    /// Clerk Backend API key; `None`: Clerk profiles are not fetched.
    pub clerk_secret_key: Option<String>,
    /// The HMAC key of organization API keys; `None`: API keys are refused (503
    /// `api_keys_not_configured`) and none can be created.
    pub api_key_pepper: Option<Pepper>,
}

/// Why the secret values could not be read. Never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    /// `GetSecretValue` failed. `kind` is the service's error code (e.g.
    /// `ResourceNotFoundException`, `AccessDeniedException`) or the transport problem (`timeout`,
    /// `connection failed`, ...); `detail` explains a failure that happened before any response
    /// arrived (so it cannot contain the secret), and is empty otherwise.
    #[error("reading the secret from Secrets Manager failed: {kind}{detail}")]
    Fetch { kind: String, detail: String },
    /// The secret has no `SecretString` (a binary secret).
    #[error("the secret has no SecretString; store the JSON object as a string secret")]
    NotAString,
    /// The secret is not JSON. Only the position is reported.
    #[error("the secret is not valid JSON ({problem} at line {line}, column {column})")]
    Json {
        problem: &'static str,
        line: usize,
        column: usize,
    },
    /// The secret is JSON but not an object.
    #[error("the secret must be a JSON object")]
    NotAnObject,
    /// A field has the wrong JSON type.
    #[error("the secret field `{field}` must be {expected}")]
    FieldType {
        field: &'static str,
        expected: &'static str,
    },
    /// The encryption key ring (`encryptionKeys` / `ENCRYPTION_KEYS` + `ENCRYPTION_ACTIVE_KEY`).
    #[error("the encryption key ring is not valid: {0}")]
    KeyRing(#[from] CryptoConfigError),
    /// An entry of `serviceKeyHashes` / `SERVICE_KEY_HASHES` is not a hex SHA-256 digest.
    #[error("the service key hashes are not valid: {0}")]
    ServiceKeyHashes(#[from] ServiceKeyConfigError),
    /// `apiKeyPepper` / `API_KEY_PEPPER` is too short.
    #[error("the API key pepper is not valid: {0}")]
    ApiKeyPepper(#[from] PepperTooShort),
    /// Refreshing failed and the last good values are older than the maximum staleness: they
    /// may have been revoked since, so they are no longer served.
    #[error(
        "the secret values were last read {age_seconds} s ago, past the maximum staleness of {max_seconds} s, and refreshing them failed ({cause})"
    )]
    Stale {
        age_seconds: u64,
        max_seconds: u64,
        /// The failed refresh's [`SecretsError::kind`].
        cause: String,
    },
}

impl SecretsError {
    /// A short label for logs and metrics: the service error code or transport problem for a
    /// failed read, otherwise the kind of configuration error.
    pub fn kind(&self) -> &str {
        match self {
            SecretsError::Fetch { kind, .. } => kind,
            SecretsError::NotAString => "not_a_string_secret",
            SecretsError::Json { .. } => "invalid_json",
            SecretsError::NotAnObject => "not_a_json_object",
            SecretsError::FieldType { .. } => "invalid_field",
            SecretsError::KeyRing(_) => "invalid_key_ring",
            SecretsError::ServiceKeyHashes(_) => "invalid_service_key_hashes",
            SecretsError::ApiKeyPepper(_) => "invalid_api_key_pepper",
            SecretsError::Stale { .. } => "stale",
        }
    }
}

/// Trims list entries, drops empty ones and joins them with commas.
fn normalize_list<'a>(entries: impl IntoIterator<Item = &'a str>) -> String {
    entries
        .into_iter()
        .flat_map(|entry| entry.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

/// A trimmed, non-empty string.
fn non_empty(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// `serde_json`'s own messages may quote the input; only its category is reported.
fn json_problem(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Io => "read error",
    }
}

/// A list field: a (comma-separated) string or an array of strings; missing or `null`: empty.
fn list_field(
    object: &serde_json::Map<String, Value>,
    field: &'static str,
) -> Result<String, SecretsError> {
    let wrong_type = SecretsError::FieldType {
        field,
        expected: "a string or an array of strings",
    };
    match object.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(list)) => Ok(normalize_list([list.as_str()])),
        Some(Value::Array(items)) => {
            let entries = items
                .iter()
                .map(|item| item.as_str().ok_or(wrong_type.clone()))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(normalize_list(entries))
        }
        Some(_) => Err(wrong_type),
    }
}

impl SecretValues {
    /// Reads the local fallback through `lookup` (the process environment in the functions and
    /// the dev gateway): `STRIPE_SECRET_KEY`, `STRIPE_WEBHOOK_SECRET`, `SERVICE_KEY_HASHES`,
    /// `ENCRYPTION_KEYS` and `ENCRYPTION_ACTIVE_KEY`. Unset and empty are the same.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SecretsError> {
        let get = |name: &str| lookup(name).as_deref().and_then(non_empty);
        let service_key_hashes = normalize_list(get(ENV_SERVICE_KEY_HASHES).as_deref());
        ServiceKeys::from_hex_list(&service_key_hashes)?;
        let encryption_keys = match (get(ENV_ENCRYPTION_KEYS), get(ENV_ENCRYPTION_ACTIVE_KEY)) {
            (None, None) => None,
            (keys, active) => Some(KeyRing::from_env_strings(
                keys.as_deref().unwrap_or_default(),
                active.as_deref().unwrap_or_default(),
            )?),
        };
        Ok(Self {
            stripe_secret_key: get(ENV_STRIPE_SECRET_KEY),
            clerk_secret_key: get(ENV_CLERK_SECRET_KEY),
            api_key_pepper: get(ENV_API_KEY_PEPPER)
                .map(|pepper| Pepper::new(&pepper))
                .transpose()?,
            stripe_webhook_secrets: normalize_list(get(ENV_STRIPE_WEBHOOK_SECRET).as_deref()),
            service_key_hashes,
            encryption_keys,
        })
    }

    /// Parses the JSON secret (the shape is in the [module docs](self)). Unknown fields are
    /// ignored; every known field is validated.
    pub fn from_secret_json(json: &str) -> Result<Self, SecretsError> {
        let value: Value = serde_json::from_str(json).map_err(|error| SecretsError::Json {
            problem: json_problem(&error),
            line: error.line(),
            column: error.column(),
        })?;
        let object = value.as_object().ok_or(SecretsError::NotAnObject)?;
        let stripe_secret_key = match object.get(JSON_STRIPE_SECRET_KEY) {
            None | Some(Value::Null) => None,
            Some(Value::String(key)) => non_empty(key),
            Some(_) => {
                return Err(SecretsError::FieldType {
                    field: JSON_STRIPE_SECRET_KEY,
                    expected: "a string",
                });
            }
        };
        let clerk_secret_key = match object.get(JSON_CLERK_SECRET_KEY) {
            None | Some(Value::Null) => None,
            Some(Value::String(key)) => non_empty(key),
            Some(_) => {
                return Err(SecretsError::FieldType {
                    field: JSON_CLERK_SECRET_KEY,
                    expected: "a string",
                });
            }
        };
        let api_key_pepper = match object.get(JSON_API_KEY_PEPPER) {
            None | Some(Value::Null) => None,
            Some(Value::String(pepper)) => non_empty(pepper)
                .map(|pepper| Pepper::new(&pepper))
                .transpose()?,
            Some(_) => {
                return Err(SecretsError::FieldType {
                    field: JSON_API_KEY_PEPPER,
                    expected: "a string",
                });
            }
        };
        let stripe_webhook_secrets = list_field(object, JSON_STRIPE_WEBHOOK_SECRET)?;
        let service_key_hashes = list_field(object, JSON_SERVICE_KEY_HASHES)?;
        ServiceKeys::from_hex_list(&service_key_hashes)?;
        let encryption_keys = match object.get(JSON_ENCRYPTION_KEYS) {
            None | Some(Value::Null) => None,
            Some(ring) => Some(KeyRing::from_secret_json(ring)?),
        };
        Ok(Self {
            stripe_secret_key,
            clerk_secret_key,
            api_key_pepper,
            stripe_webhook_secrets,
            service_key_hashes,
            encryption_keys,
        })
    }
}

/// Counts the entries of a comma-separated list without showing them.
fn entry_count(list: &str) -> usize {
    list.split(',')
        .filter(|entry| !entry.trim().is_empty())
        .count()
}

impl fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let presence = |present: bool| if present { "present" } else { "absent" };
        f.debug_struct("SecretValues")
            .field(
                "stripe_secret_key",
                &format_args!("{}", presence(self.stripe_secret_key.is_some())),
            )
            .field(
                "stripe_webhook_secrets",
                &format_args!("{} entries", entry_count(&self.stripe_webhook_secrets)),
            )
            .field(
                "service_key_hashes",
                &format_args!("{} entries", entry_count(&self.service_key_hashes)),
            )
            // KeyRing's Debug shows the key ids and the active one, never key material.
            .field("encryption_keys", &self.encryption_keys)
            .field(
                "clerk_secret_key",
                &format_args!("{}", presence(self.clerk_secret_key.is_some())),
            )
            .field(
                "api_key_pepper",
                &format_args!("{}", presence(self.api_key_pepper.is_some())),
            )
            .finish()
    }
}

/// A read of the secret's JSON string.
type FetchFuture = Pin<Box<dyn Future<Output = Result<String, SecretsError>> + Send>>;
type Fetcher = Box<dyn Fn() -> FetchFuture + Send + Sync>;

/// Where secrets come from; refreshes after the TTL (rotation without redeploy).
/// See the [module docs](self#caching-and-rotation).
pub struct SecretSource {
    inner: Inner,
}

enum Inner {
    Fixed(Arc<SecretValues>),
    Remote(Box<Remote>),
}

/// A refreshing source: the cache, and a lock held while one read runs.
struct Remote {
    /// The secret id, for logs.
    secret_id: String,
    ttl: Duration,
    /// How old (since their read) values may be served while refreshing fails.
    max_staleness: Duration,
    /// After a failed read with values at hand.
    stale_retry_after: Duration,
    /// After a failed read without.
    cold_retry_after: Duration,
    fetch: Fetcher,
    /// Held (across the read) by the one caller that reads; never taken while `state` is held.
    fetching: tokio::sync::Mutex<()>,
    /// Only held briefly, never across an await.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The last values read successfully, and when.
    values: Option<(Arc<SecretValues>, Instant)>,
    /// The last read failed (since the last success): why, and when.
    failure: Option<(SecretsError, Instant)>,
    /// Reads finished so far; a waiter that sees it move knows a read happened meanwhile.
    reads: u64,
}

/// Whether values read at `read_at` may still be served at `now` while refreshing fails.
fn within_staleness(read_at: Instant, now: Instant, max_staleness: Duration) -> bool {
    now.saturating_duration_since(read_at) <= max_staleness
}

impl State {
    /// The outcome of the last read: its values, or on failure the earlier values (while within
    /// `max_staleness` at `now`) or the error.
    fn last_outcome(
        &self,
        now: Instant,
        max_staleness: Duration,
    ) -> Option<Result<Arc<SecretValues>, SecretsError>> {
        match (&self.values, &self.failure) {
            (Some((values, _)), None) => Some(Ok(Arc::clone(values))),
            (Some((values, read_at)), Some((error, _))) => {
                if within_staleness(*read_at, now, max_staleness) {
                    Some(Ok(Arc::clone(values)))
                } else {
                    Some(Err(SecretsError::Stale {
                        age_seconds: now.saturating_duration_since(*read_at).as_secs(),
                        max_seconds: max_staleness.as_secs(),
                        cause: error.kind().to_owned(),
                    }))
                }
            }
            (None, Some((error, _))) => Some(Err(error.clone())),
            (None, None) => None,
        }
    }

    /// An answer without a read, if there is one: fresh values, or the outcome of a failed read
    /// that is too recent to retry.
    fn settled(
        &self,
        now: Instant,
        remote: &Remote,
    ) -> Option<Result<Arc<SecretValues>, SecretsError>> {
        if let Some((_, failed_at)) = &self.failure {
            let retry_after = if self.values.is_some() {
                remote.stale_retry_after
            } else {
                remote.cold_retry_after
            };
            return (now.saturating_duration_since(*failed_at) < retry_after)
                .then(|| self.last_outcome(now, remote.max_staleness))
                .flatten();
        }
        match &self.values {
            Some((values, read_at)) if now.saturating_duration_since(*read_at) < remote.ttl => {
                Some(Ok(Arc::clone(values)))
            }
            _ => None,
        }
    }
}

impl Remote {
    fn new(secret_id: String, ttl: Duration, fetch: Fetcher) -> Self {
        Self {
            secret_id,
            ttl,
            max_staleness: default_max_staleness(ttl),
            stale_retry_after: ttl.min(STALE_RETRY_AFTER),
            cold_retry_after: ttl.min(COLD_RETRY_AFTER),
            fetch,
            fetching: tokio::sync::Mutex::new(()),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is always consistent (plain assignments), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn current(&self) -> Result<Arc<SecretValues>, SecretsError> {
        let reads_seen = {
            let state = self.state();
            if let Some(answer) = state.settled(Instant::now(), self) {
                return answer;
            }
            state.reads
        };
        // One read at a time. Cancel-safe: a caller dropped here or during the read leaves the
        // state untouched, and the next caller reads.
        let _reading = self.fetching.lock().await;
        {
            let state = self.state();
            if state.reads != reads_seen
                && let Some(answer) = state.last_outcome(Instant::now(), self.max_staleness)
            {
                // Someone read while this caller waited: share that outcome.
                return answer;
            }
        }
        let outcome = match (self.fetch)().await {
            Ok(json) => SecretValues::from_secret_json(&json),
            Err(error) => Err(error),
        };
        let now = Instant::now();
        let mut state = self.state();
        state.reads += 1;
        match outcome {
            Ok(values) => {
                let values = Arc::new(values);
                state.values = Some((Arc::clone(&values), now));
                state.failure = None;
                tracing::debug!(secret_id = %self.secret_id, "secrets read");
                Ok(values)
            }
            Err(error) => {
                let answer = match &state.values {
                    Some((_, read_at)) if !within_staleness(*read_at, now, self.max_staleness) => {
                        let stale = SecretsError::Stale {
                            age_seconds: now.saturating_duration_since(*read_at).as_secs(),
                            max_seconds: self.max_staleness.as_secs(),
                            cause: error.kind().to_owned(),
                        };
                        tracing::error!(
                            secret_id = %self.secret_id,
                            kind = error.kind(),
                            error = %error,
                            age_seconds = now.saturating_duration_since(*read_at).as_secs(),
                            max_staleness_seconds = self.max_staleness.as_secs(),
                            "refreshing the secrets failed and the values read earlier are past their maximum staleness; refusing them"
                        );
                        Err(stale)
                    }
                    Some((values, read_at)) => {
                        tracing::warn!(
                            secret_id = %self.secret_id,
                            kind = error.kind(),
                            error = %error,
                            age_seconds = now.saturating_duration_since(*read_at).as_secs(),
                            "refreshing the secrets failed; serving the values read earlier"
                        );
                        Ok(Arc::clone(values))
                    }
                    None => {
                        tracing::warn!(
                            secret_id = %self.secret_id,
                            kind = error.kind(),
                            error = %error,
                            "reading the secrets failed and no earlier values are cached"
                        );
                        Err(error.clone())
                    }
                };
                state.failure = Some((error, now));
                answer
            }
        }
    }
}

impl SecretSource {
    /// Values that never change: locally, the environment ([`SecretValues::from_lookup`]).
    pub fn fixed(values: SecretValues) -> SecretSource {
        SecretSource {
            inner: Inner::Fixed(Arc::new(values)),
        }
    }

    /// The JSON secret `secret_id` (name or ARN, i.e. `SECRETS_ARN`), read on the first
    /// [`current`](Self::current) and again when older than `ttl`. Does no I/O (a cold start does
    /// not wait for Secrets Manager).
    pub fn secrets_manager(
        client: aws_sdk_secretsmanager::Client,
        secret_id: String,
        ttl: Duration,
    ) -> SecretSource {
        let id = secret_id.clone();
        let fetch: Fetcher = Box::new(move || {
            let client = client.clone();
            let id = id.clone();
            Box::pin(async move { read_secret_string(&client, &id).await })
        });
        SecretSource {
            inner: Inner::Remote(Box::new(Remote::new(secret_id, ttl, fetch))),
        }
    }

    /// Serves values read earlier for at most `max_staleness` (since their read) while
    /// refreshing fails; [`default_max_staleness`] unless set. No effect on fixed values.
    pub fn with_max_staleness(mut self, max_staleness: Duration) -> SecretSource {
        if let Inner::Remote(remote) = &mut self.inner {
            remote.max_staleness = max_staleness;
        }
        self
    }

    /// The current values: cached, read again when older than the TTL, only one read at a time.
    /// A failed refresh keeps serving the earlier values (and logs a warning without them); with
    /// nothing cached the error is returned (the caller answers 503).
    pub async fn current(&self) -> Result<Arc<SecretValues>, SecretsError> {
        match &self.inner {
            Inner::Fixed(values) => Ok(Arc::clone(values)),
            Inner::Remote(remote) => remote.current().await,
        }
    }
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Fixed(values) => f.debug_tuple("SecretSource::Fixed").field(values).finish(),
            Inner::Remote(remote) => f
                .debug_struct("SecretSource::SecretsManager")
                .field("secret_id", &remote.secret_id)
                .field("ttl", &remote.ttl)
                .field("max_staleness", &remote.max_staleness)
                .finish_non_exhaustive(),
        }
    }
}

/// `GetSecretValue` (version `AWSCURRENT`): the secret's JSON string.
async fn read_secret_string(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> Result<String, SecretsError> {
    let output = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|error| fetch_error(&error))?;
    output
        .secret_string()
        .map(str::to_owned)
        .ok_or(SecretsError::NotAString)
}

/// Classifies a failed read without looking at any response body.
fn fetch_error<E, R>(error: &SdkError<E, R>) -> SecretsError
where
    E: std::error::Error + aws_sdk_secretsmanager::error::ProvideErrorMetadata + 'static,
    R: fmt::Debug,
{
    // No response was received for these, so their description cannot contain the secret.
    let before_response = || format!(": {}", DisplayErrorContext(error));
    let (kind, detail) = match error {
        SdkError::ServiceError(service) => (
            service
                .err()
                .code()
                .unwrap_or("unrecognized service error")
                .to_owned(),
            String::new(),
        ),
        SdkError::TimeoutError(_) => ("timeout".to_owned(), String::new()),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => {
            ("timeout".to_owned(), before_response())
        }
        SdkError::DispatchFailure(failure) if failure.is_io() => {
            ("connection failed".to_owned(), before_response())
        }
        SdkError::DispatchFailure(_) => ("dispatch failure".to_owned(), before_response()),
        SdkError::ConstructionFailure(_) => {
            ("request not constructed".to_owned(), before_response())
        }
        SdkError::ResponseError(_) => ("unreadable response".to_owned(), String::new()),
        _ => ("unknown".to_owned(), String::new()),
    };
    SecretsError::Fetch { kind, detail }
}

/// A Secrets Manager client. With `endpoint` (`SECRETS_MANAGER_ENDPOINT`, tests) requests go there,
/// with placeholder credentials and region `us-east-1` unless the environment has its own. Reads
/// are bounded by [`CONNECT_TIMEOUT`], [`ATTEMPT_TIMEOUT`] and [`OPERATION_TIMEOUT`].
pub async fn secrets_manager_client(endpoint: Option<&str>) -> aws_sdk_secretsmanager::Client {
    let timeouts = crate::aws::Timeouts {
        connect: CONNECT_TIMEOUT,
        attempt: ATTEMPT_TIMEOUT,
        operation: OPERATION_TIMEOUT,
    };
    let config = crate::aws::sdk_config(endpoint, timeouts, "secrets-manager-local").await;
    aws_sdk_secretsmanager::Client::new(&config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    const KEY_2025: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const KEY_2026: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
    const HASH_1: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const HASH_2: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";
    const STRIPE_KEY: &str = "sk_test_SECRET_stripe_key_4242";
    const WHSEC_NEW: &str = "whsec_SECRET_new";
    const WHSEC_OLD: &str = "whsec_SECRET_old";

    /// Every secret value used here, to search outputs for.
    const SECRETS: [&str; 7] = [
        KEY_2025, KEY_2026, HASH_1, HASH_2, STRIPE_KEY, WHSEC_NEW, WHSEC_OLD,
    ];

    fn assert_no_secrets(text: &str) {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{text:?} contains a secret value");
        }
        assert!(!text.contains("SECRET"), "{text:?} contains a secret value");
    }

    fn assert_error_hides_secrets(error: &SecretsError) {
        assert_no_secrets(&error.to_string());
        assert_no_secrets(&format!("{error:?}"));
        assert_no_secrets(error.kind());
    }

    #[test]
    fn api_key_pepper_comes_from_the_secret_or_the_environment_and_is_never_shown() {
        let pepper = "f00dfeedf00dfeedf00dfeedf00dfeedf00dfeedf00dfeedf00dfeedf00dfeed";
        let values =
            SecretValues::from_secret_json(&json!({"apiKeyPepper": pepper}).to_string()).unwrap();
        let from_secret = values.api_key_pepper.clone().expect("pepper");
        let shown = format!("{values:?}");
        assert!(shown.contains("api_key_pepper: present"), "{shown}");
        assert!(!shown.contains(pepper), "{shown}");
        let values =
            SecretValues::from_lookup(|name| (name == "API_KEY_PEPPER").then(|| pepper.to_owned()))
                .unwrap();
        let from_env = values.api_key_pepper.expect("pepper");
        assert_eq!(from_secret.digest("k"), from_env.digest("k"));
        for absent in [
            json!({}),
            json!({"apiKeyPepper": null}),
            json!({"apiKeyPepper": ""}),
        ] {
            let values = SecretValues::from_secret_json(&absent.to_string()).unwrap();
            assert!(values.api_key_pepper.is_none(), "{absent}");
        }
        // A short pepper or a wrong type is a failed read, named without the value.
        let short =
            SecretValues::from_secret_json(&json!({"apiKeyPepper": "tooshort"}).to_string())
                .unwrap_err();
        assert_eq!(short.kind(), "invalid_api_key_pepper");
        assert!(!short.to_string().contains("tooshort"));
        assert!(matches!(
            SecretValues::from_secret_json(&json!({"apiKeyPepper": 7}).to_string()),
            Err(SecretsError::FieldType {
                field: "apiKeyPepper",
                ..
            })
        ));
        assert!(
            SecretValues::from_lookup(|name| (name == "API_KEY_PEPPER").then(|| "x".to_owned()))
                .is_err()
        );
    }

    #[test]
    fn clerk_secret_key_comes_from_the_secret_or_the_environment_and_is_never_shown() {
        let key = "sk_test_clerk_value_never_logged";
        let values =
            SecretValues::from_secret_json(&json!({"clerkSecretKey": key}).to_string()).unwrap();
        assert_eq!(values.clerk_secret_key.as_deref(), Some(key));
        let shown = format!("{values:?}");
        assert!(shown.contains("clerk_secret_key: present"), "{shown}");
        assert!(!shown.contains(key), "{shown}");
        for absent in [
            json!({}),
            json!({"clerkSecretKey": null}),
            json!({"clerkSecretKey": ""}),
        ] {
            let values = SecretValues::from_secret_json(&absent.to_string()).unwrap();
            assert_eq!(values.clerk_secret_key, None, "{absent}");
        }
        assert!(matches!(
            SecretValues::from_secret_json(&json!({"clerkSecretKey": 7}).to_string()),
            Err(SecretsError::FieldType {
                field: "clerkSecretKey",
                ..
            })
        ));
        let values =
            SecretValues::from_lookup(|name| (name == "CLERK_SECRET_KEY").then(|| key.to_owned()))
                .unwrap();
        assert_eq!(values.clerk_secret_key.as_deref(), Some(key));
    }

    fn full_secret_json() -> String {
        json!({
            "stripeSecretKey": STRIPE_KEY,
            "stripeWebhookSecret": format!("{WHSEC_NEW}, {WHSEC_OLD}"),
            "serviceKeyHashes": format!("{HASH_1},{HASH_2}"),
            "encryptionKeys": {"active": "k2026", "keys": {"k2025": KEY_2025, "k2026": KEY_2026}},
            "somethingElse": {"ignored": true},
        })
        .to_string()
    }

    fn parse_err(json: &str) -> SecretsError {
        match SecretValues::from_secret_json(json) {
            Ok(values) => panic!("{json} parsed: {values:?}"),
            Err(error) => {
                assert_error_hides_secrets(&error);
                error
            }
        }
    }

    #[test]
    fn secret_json_with_every_field_as_strings() {
        let values = SecretValues::from_secret_json(&full_secret_json()).unwrap();
        assert_eq!(values.stripe_secret_key.as_deref(), Some(STRIPE_KEY));
        assert_eq!(
            values.stripe_webhook_secrets,
            format!("{WHSEC_NEW},{WHSEC_OLD}")
        );
        assert_eq!(values.service_key_hashes, format!("{HASH_1},{HASH_2}"));
        let ring = values.encryption_keys.as_ref().unwrap();
        assert_eq!(ring.active_kid(), "k2026");
        // Both keys are in the ring: a value under the old key still decrypts.
        let old = KeyRing::from_env_strings(&format!("k2025:{KEY_2025}"), "k2025").unwrap();
        let sealed = old.encrypt("org_1", b"credential").unwrap();
        assert_eq!(ring.decrypt("org_1", &sealed).unwrap(), b"credential");
    }

    #[test]
    fn secret_json_lists_as_arrays() {
        let json = json!({
            "stripeWebhookSecret": [WHSEC_NEW, format!(" {WHSEC_OLD} "), ""],
            "serviceKeyHashes": [HASH_1, format!("{HASH_2},")],
        });
        let values = SecretValues::from_secret_json(&json.to_string()).unwrap();
        assert_eq!(
            values.stripe_webhook_secrets,
            format!("{WHSEC_NEW},{WHSEC_OLD}")
        );
        assert_eq!(values.service_key_hashes, format!("{HASH_1},{HASH_2}"));
        assert_eq!(values.stripe_secret_key, None);
        assert!(values.encryption_keys.is_none());
    }

    #[test]
    fn secret_json_optional_fields_missing_null_or_empty() {
        for json in [
            json!({}),
            json!({"stripeSecretKey": null, "stripeWebhookSecret": null, "serviceKeyHashes": null, "encryptionKeys": null}),
            json!({"stripeSecretKey": "  ", "stripeWebhookSecret": "", "serviceKeyHashes": []}),
            json!({"unrelated": "value", "stripeSecretKeyTypo": STRIPE_KEY}),
        ] {
            let values = SecretValues::from_secret_json(&json.to_string()).unwrap();
            assert_eq!(values.stripe_secret_key, None, "{json}");
            assert_eq!(values.stripe_webhook_secrets, "", "{json}");
            assert_eq!(values.service_key_hashes, "", "{json}");
            assert!(values.encryption_keys.is_none(), "{json}");
        }
    }

    #[test]
    fn secret_json_that_is_not_json_reports_only_the_position() {
        let error = parse_err(&format!("{{\"stripeSecretKey\": \"{STRIPE_KEY}\""));
        assert!(
            matches!(
                error,
                SecretsError::Json {
                    problem: "unexpected end of input",
                    line: 1,
                    ..
                }
            ),
            "{error:?}"
        );
        let error = parse_err(&format!("{{\"stripeSecretKey\": {STRIPE_KEY}}}"));
        assert!(
            matches!(
                error,
                SecretsError::Json {
                    problem: "syntax error",
                    line: 1,
                    column: 21
                }
            ),
            "{error:?}"
        );
        assert_eq!(error.kind(), "invalid_json");
        assert!(matches!(parse_err(""), SecretsError::Json { .. }));
    }

    #[test]
    fn secret_json_with_wrong_types_names_the_field_not_the_value() {
        assert_eq!(
            parse_err(&json!(STRIPE_KEY).to_string()),
            SecretsError::NotAnObject
        );
        assert_eq!(
            parse_err(&json!([STRIPE_KEY]).to_string()),
            SecretsError::NotAnObject
        );
        assert_eq!(
            parse_err(&json!({"stripeSecretKey": [STRIPE_KEY]}).to_string()),
            SecretsError::FieldType {
                field: "stripeSecretKey",
                expected: "a string"
            }
        );
        assert_eq!(
            parse_err(&json!({"stripeWebhookSecret": [WHSEC_NEW, 7]}).to_string()),
            SecretsError::FieldType {
                field: "stripeWebhookSecret",
                expected: "a string or an array of strings"
            }
        );
        assert_eq!(
            parse_err(&json!({"serviceKeyHashes": {"a": HASH_1}}).to_string()),
            SecretsError::FieldType {
                field: "serviceKeyHashes",
                expected: "a string or an array of strings"
            }
        );
    }

    #[test]
    fn secret_json_with_a_bad_key_ring_or_hash_is_refused_without_the_value() {
        let short = &KEY_2026[..62];
        let error = parse_err(
            &json!({"encryptionKeys": {"active": "k2026", "keys": {"k2026": short}}}).to_string(),
        );
        assert!(
            matches!(
                error,
                SecretsError::KeyRing(CryptoConfigError::WrongLength { .. })
            ),
            "{error:?}"
        );
        assert_eq!(error.kind(), "invalid_key_ring");
        let error = parse_err(
            &json!({"encryptionKeys": {"active": "k2027", "keys": {"k2026": KEY_2026}}})
                .to_string(),
        );
        assert_eq!(
            error,
            SecretsError::KeyRing(CryptoConfigError::ActiveNotInRing("k2027".into()))
        );
        let error =
            parse_err(&json!({"encryptionKeys": {"keys": {"k2026": KEY_2026}}}).to_string());
        assert_eq!(error, SecretsError::KeyRing(CryptoConfigError::NoActiveKey));
        let error = parse_err(&json!({"encryptionKeys": KEY_2026}).to_string());
        assert!(
            matches!(
                error,
                SecretsError::KeyRing(CryptoConfigError::BadSecretShape(_))
            ),
            "{error:?}"
        );
        // A service key pasted instead of its digest.
        let error = parse_err(&json!({"serviceKeyHashes": [HASH_1, STRIPE_KEY]}).to_string());
        assert_eq!(
            error,
            SecretsError::ServiceKeyHashes(ServiceKeyConfigError::InvalidDigest { position: 2 })
        );
        assert_eq!(error.kind(), "invalid_service_key_hashes");
    }

    #[test]
    fn debug_names_what_is_present_never_the_values() {
        let values = SecretValues::from_secret_json(&full_secret_json()).unwrap();
        for text in [format!("{values:?}"), format!("{values:#?}")] {
            assert_no_secrets(&text);
            assert!(text.contains("stripe_secret_key: present"), "{text}");
            assert!(text.contains("stripe_webhook_secrets: 2 entries"), "{text}");
            assert!(text.contains("service_key_hashes: 2 entries"), "{text}");
            assert!(text.contains("k2026"), "{text}");
        }
        let empty = SecretValues::from_secret_json("{}").unwrap();
        let text = format!("{empty:?}");
        assert!(text.contains("stripe_secret_key: absent"), "{text}");
        assert!(text.contains("stripe_webhook_secrets: 0 entries"), "{text}");
        assert!(text.contains("encryption_keys: None"), "{text}");
        let source = SecretSource::fixed(values);
        assert_no_secrets(&format!("{source:?}"));
    }

    fn from_vars(vars: &[(&str, &str)]) -> Result<SecretValues, SecretsError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        SecretValues::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn lookup_reads_every_variable() {
        let keys = format!("k2025:{KEY_2025}, k2026:{KEY_2026},");
        let webhook = format!(" {WHSEC_NEW},{WHSEC_OLD} ");
        let hashes = format!("{HASH_1},,{HASH_2}");
        let values = from_vars(&[
            ("STRIPE_SECRET_KEY", &format!(" {STRIPE_KEY}\n")),
            ("STRIPE_WEBHOOK_SECRET", &webhook),
            ("SERVICE_KEY_HASHES", &hashes),
            ("ENCRYPTION_KEYS", &keys),
            ("ENCRYPTION_ACTIVE_KEY", "k2026"),
        ])
        .unwrap();
        assert_eq!(values.stripe_secret_key.as_deref(), Some(STRIPE_KEY));
        assert_eq!(
            values.stripe_webhook_secrets,
            format!("{WHSEC_NEW},{WHSEC_OLD}")
        );
        assert_eq!(values.service_key_hashes, format!("{HASH_1},{HASH_2}"));
        assert_eq!(values.encryption_keys.unwrap().active_kid(), "k2026");
    }

    #[test]
    fn lookup_with_nothing_set_configures_nothing() {
        for values in [
            from_vars(&[]),
            from_vars(&[("STRIPE_SECRET_KEY", ""), ("ENCRYPTION_KEYS", " ")]),
        ] {
            let values = values.unwrap();
            assert_eq!(values.stripe_secret_key, None);
            assert_eq!(values.stripe_webhook_secrets, "");
            assert_eq!(values.service_key_hashes, "");
            assert!(values.encryption_keys.is_none());
        }
    }

    #[test]
    fn lookup_refuses_a_half_configured_or_bad_key_ring_and_bad_hashes() {
        let keys = format!("k2026:{KEY_2026}");
        let error = from_vars(&[("ENCRYPTION_KEYS", &keys)]).unwrap_err();
        assert_eq!(error, SecretsError::KeyRing(CryptoConfigError::NoActiveKey));
        let error = from_vars(&[("ENCRYPTION_ACTIVE_KEY", "k2026")]).unwrap_err();
        assert_eq!(error, SecretsError::KeyRing(CryptoConfigError::Empty));
        // The key pasted into the active-key variable is not echoed.
        let error = from_vars(&[
            ("ENCRYPTION_KEYS", &keys),
            ("ENCRYPTION_ACTIVE_KEY", KEY_2026),
        ])
        .unwrap_err();
        assert_error_hides_secrets(&error);
        let error = from_vars(&[("SERVICE_KEY_HASHES", STRIPE_KEY)]).unwrap_err();
        assert_error_hides_secrets(&error);
        assert!(
            matches!(error, SecretsError::ServiceKeyHashes(_)),
            "{error:?}"
        );
    }

    // --- the refreshing source, with a stand-in for Secrets Manager -------------------------

    /// A stand-in secret: counts reads, answers with whatever is set, optionally slowly.
    #[derive(Clone)]
    struct FakeSecret {
        reply: Arc<Mutex<Result<String, SecretsError>>>,
        reads: Arc<AtomicUsize>,
        delay: Duration,
    }

    fn fetch_failure() -> SecretsError {
        SecretsError::Fetch {
            kind: "AccessDeniedException".into(),
            detail: String::new(),
        }
    }

    fn secret_json(stripe_key: &str, active: &str) -> String {
        json!({
            "stripeSecretKey": stripe_key,
            "encryptionKeys": {"active": active, "keys": {"k2025": KEY_2025, "k2026": KEY_2026}},
        })
        .to_string()
    }

    impl FakeSecret {
        fn new(reply: Result<String, SecretsError>) -> Self {
            Self {
                reply: Arc::new(Mutex::new(reply)),
                reads: Arc::default(),
                delay: Duration::ZERO,
            }
        }

        fn set(&self, reply: Result<String, SecretsError>) {
            *self.reply.lock().unwrap() = reply;
        }

        fn reads(&self) -> usize {
            self.reads.load(Ordering::SeqCst)
        }

        fn source(&self, ttl: Duration) -> SecretSource {
            let fake = self.clone();
            let fetch: Fetcher = Box::new(move || {
                let fake = fake.clone();
                Box::pin(async move {
                    fake.reads.fetch_add(1, Ordering::SeqCst);
                    if !fake.delay.is_zero() {
                        tokio::time::sleep(fake.delay).await;
                    }
                    fake.reply.lock().unwrap().clone()
                })
            });
            SecretSource {
                inner: Inner::Remote(Box::new(Remote::new("test-secret".into(), ttl, fetch))),
            }
        }
    }

    /// Moves every timestamp of the source's cache `by` into the past (instead of sleeping).
    fn age(source: &SecretSource, by: Duration) {
        let Inner::Remote(remote) = &source.inner else {
            panic!("not a refreshing source")
        };
        let mut state = remote.state();
        let earlier = |at: Instant| at.checked_sub(by).unwrap();
        if let Some((_, read_at)) = &mut state.values {
            *read_at = earlier(*read_at);
        }
        if let Some((_, failed_at)) = &mut state.failure {
            *failed_at = earlier(*failed_at);
        }
    }

    fn stripe_key(values: &SecretValues) -> &str {
        values.stripe_secret_key.as_deref().unwrap()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    /// Captures this thread's log lines (the tests run on a current-thread runtime).
    fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    #[tokio::test]
    async fn fixed_source_always_answers_the_same_values() {
        let source = SecretSource::fixed(from_vars(&[("STRIPE_SECRET_KEY", STRIPE_KEY)]).unwrap());
        let first = source.current().await.unwrap();
        let second = source.current().await.unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(stripe_key(&first), STRIPE_KEY);
    }

    #[tokio::test]
    async fn values_are_cached_for_the_ttl_and_read_again_after_it() {
        let fake = FakeSecret::new(Ok(secret_json("sk_test_v1", "k2025")));
        let source = fake.source(HOUR);
        assert_eq!(fake.reads(), 0, "building the source reads nothing");
        let first = source.current().await.unwrap();
        assert_eq!(stripe_key(&first), "sk_test_v1");
        fake.set(Ok(secret_json("sk_test_v2", "k2026")));
        for _ in 0..5 {
            let again = source.current().await.unwrap();
            assert!(Arc::ptr_eq(&first, &again));
        }
        assert_eq!(fake.reads(), 1);
        age(&source, HOUR);
        let rotated = source.current().await.unwrap();
        assert_eq!(stripe_key(&rotated), "sk_test_v2");
        assert_eq!(
            rotated.encryption_keys.as_ref().unwrap().active_kid(),
            "k2026"
        );
        assert_eq!(fake.reads(), 2);
        assert!(Arc::ptr_eq(&rotated, &source.current().await.unwrap()));
        assert_eq!(fake.reads(), 2);
    }

    #[tokio::test]
    async fn a_zero_ttl_reads_every_time() {
        let fake = FakeSecret::new(Ok(secret_json("sk_test_v1", "k2025")));
        // A zero TTL also makes the default maximum staleness zero: set one to serve on failure.
        let source = fake.source(Duration::ZERO).with_max_staleness(HOUR);
        source.current().await.unwrap();
        fake.set(Err(fetch_failure()));
        assert_eq!(stripe_key(&source.current().await.unwrap()), "sk_test_v1");
        fake.set(Ok(secret_json("sk_test_v2", "k2025")));
        assert_eq!(stripe_key(&source.current().await.unwrap()), "sk_test_v2");
        assert_eq!(fake.reads(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_callers_share_one_read() {
        let mut fake = FakeSecret::new(Ok(secret_json("sk_test_v1", "k2025")));
        fake.delay = Duration::from_millis(200);
        let source = Arc::new(fake.source(HOUR));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let source = Arc::clone(&source);
            tasks.spawn(async move { source.current().await });
        }
        let results = tasks.join_all().await;
        assert_eq!(fake.reads(), 1);
        let first = results[0].as_ref().unwrap();
        for result in &results {
            assert!(Arc::ptr_eq(first, result.as_ref().unwrap()));
        }
        // The same after the TTL: one refresh for everyone.
        fake.set(Ok(secret_json("sk_test_v2", "k2025")));
        age(&source, HOUR);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let source = Arc::clone(&source);
            tasks.spawn(async move { source.current().await });
        }
        for result in tasks.join_all().await {
            assert_eq!(stripe_key(&result.unwrap()), "sk_test_v2");
        }
        assert_eq!(fake.reads(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_callers_share_one_failed_read() {
        let mut fake = FakeSecret::new(Err(fetch_failure()));
        fake.delay = Duration::from_millis(200);
        let source = Arc::new(fake.source(HOUR));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let source = Arc::clone(&source);
            tasks.spawn(async move { source.current().await });
        }
        for result in tasks.join_all().await {
            assert_eq!(result.unwrap_err(), fetch_failure());
        }
        assert_eq!(fake.reads(), 1);
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_serving_the_cached_values_and_logs_no_secret() {
        let (logs, _guard) = capture_logs();
        let fake = FakeSecret::new(Ok(secret_json(STRIPE_KEY, "k2025")));
        let source = fake.source(HOUR);
        let first = source.current().await.unwrap();

        fake.set(Err(fetch_failure()));
        age(&source, HOUR);
        assert!(Arc::ptr_eq(&first, &source.current().await.unwrap()));
        assert_eq!(fake.reads(), 2);
        // Not retried on every request: after min(ttl, 30 s).
        assert!(Arc::ptr_eq(&first, &source.current().await.unwrap()));
        assert_eq!(fake.reads(), 2);
        age(&source, STALE_RETRY_AFTER);
        assert!(Arc::ptr_eq(&first, &source.current().await.unwrap()));
        assert_eq!(fake.reads(), 3);

        // A malformed new version is a failed refresh too: the good values stay.
        fake.set(Ok(format!("{{\"stripeSecretKey\": \"{WHSEC_NEW}\"")));
        age(&source, STALE_RETRY_AFTER);
        assert!(Arc::ptr_eq(&first, &source.current().await.unwrap()));
        assert_eq!(fake.reads(), 4);

        // Recovery.
        fake.set(Ok(secret_json("sk_test_v2", "k2026")));
        age(&source, STALE_RETRY_AFTER);
        assert_eq!(stripe_key(&source.current().await.unwrap()), "sk_test_v2");
        assert_eq!(fake.reads(), 5);

        let logs = logs.text();
        assert_no_secrets(&logs);
        assert_eq!(logs.matches(" WARN ").count(), 3, "{logs}");
        assert!(logs.contains("kind=\"AccessDeniedException\""), "{logs}");
        assert!(logs.contains("kind=\"invalid_json\""), "{logs}");
        assert!(logs.contains("serving the values read earlier"), "{logs}");
        assert!(logs.contains("secret_id=test-secret"), "{logs}");
    }

    #[tokio::test]
    async fn values_past_the_maximum_staleness_are_refused_until_a_read_succeeds() {
        let (logs, _guard) = capture_logs();
        let fake = FakeSecret::new(Ok(secret_json(STRIPE_KEY, "k2025")));
        // TTL 1 h: served stale for up to 3 h while refreshing fails.
        let source = fake.source(HOUR);
        let first = source.current().await.unwrap();
        fake.set(Err(fetch_failure()));

        age(&source, HOUR);
        assert!(Arc::ptr_eq(&first, &source.current().await.unwrap()));
        // A minute short of 3 h after the read: still within the maximum staleness.
        age(&source, HOUR * 2 - Duration::from_secs(60));
        assert!(Arc::ptr_eq(&first, &source.current().await.unwrap()));
        // A minute past it: refused, also between retries.
        age(&source, Duration::from_secs(120));
        let error = source.current().await.unwrap_err();
        assert!(
            matches!(&error, SecretsError::Stale { max_seconds: 10_800, cause, .. } if cause == "AccessDeniedException"),
            "{error:?}"
        );
        assert_eq!(error.kind(), "stale");
        let reads = fake.reads();
        assert!(matches!(
            source.current().await,
            Err(SecretsError::Stale { .. })
        ));
        assert_eq!(fake.reads(), reads, "no read before the retry delay");

        // A good read serves again.
        fake.set(Ok(secret_json("sk_test_v2", "k2026")));
        age(&source, STALE_RETRY_AFTER);
        assert_eq!(stripe_key(&source.current().await.unwrap()), "sk_test_v2");

        let logs = logs.text();
        assert_no_secrets(&logs);
        assert_eq!(logs.matches(" ERROR ").count(), 1, "{logs}");
        assert!(logs.contains("past their maximum staleness"), "{logs}");
    }

    #[tokio::test]
    async fn the_maximum_staleness_defaults_to_three_ttls_and_can_be_set() {
        assert_eq!(
            default_max_staleness(Duration::from_secs(300)),
            Duration::from_secs(900)
        );
        assert_eq!(default_max_staleness(Duration::MAX), Duration::MAX);
        let fake = FakeSecret::new(Ok(secret_json(STRIPE_KEY, "k2025")));
        let source = fake.source(HOUR).with_max_staleness(HOUR);
        source.current().await.unwrap();
        fake.set(Err(fetch_failure()));
        age(&source, HOUR + Duration::from_secs(1));
        assert!(matches!(
            source.current().await,
            Err(SecretsError::Stale {
                max_seconds: 3600,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn without_cached_values_a_failure_is_returned_and_retried_after_a_second() {
        let (logs, _guard) = capture_logs();
        let fake = FakeSecret::new(Err(fetch_failure()));
        let source = fake.source(HOUR);
        assert_eq!(source.current().await.unwrap_err(), fetch_failure());
        assert_eq!(source.current().await.unwrap_err(), fetch_failure());
        assert_eq!(
            fake.reads(),
            1,
            "the error is repeated for a moment without a read"
        );
        age(&source, COLD_RETRY_AFTER);
        fake.set(Ok(secret_json("sk_test_v1", "k2025")));
        assert_eq!(stripe_key(&source.current().await.unwrap()), "sk_test_v1");
        assert_eq!(fake.reads(), 2);
        let logs = logs.text();
        assert!(logs.contains("no earlier values are cached"), "{logs}");
    }

    #[tokio::test]
    async fn a_caller_dropped_during_the_read_leaves_nothing_behind() {
        let mut fake = FakeSecret::new(Ok(secret_json("sk_test_v1", "k2025")));
        fake.delay = Duration::from_millis(300);
        let source = fake.source(HOUR);
        let abandoned = tokio::time::timeout(Duration::from_millis(20), source.current()).await;
        assert!(abandoned.is_err(), "the read is slower than the timeout");
        assert_eq!(stripe_key(&source.current().await.unwrap()), "sk_test_v1");
        assert_eq!(fake.reads(), 2);
    }

    #[test]
    fn building_a_secrets_manager_source_needs_no_runtime_and_no_network() {
        // Outside any runtime: it would panic if it spawned or awaited anything.
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version_latest()
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let client = aws_sdk_secretsmanager::Client::from_conf(config);
        let source = SecretSource::secrets_manager(client, "arn:test:secret".into(), DEFAULT_TTL);
        let text = format!("{source:?}");
        assert!(
            text.contains("arn:test:secret") && text.contains("300s"),
            "{text}"
        );
    }

    #[test]
    fn secret_source_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SecretSource>();
        assert_send_sync::<SecretValues>();
        assert_send_sync::<SecretsError>();
    }

    #[test]
    fn transport_failures_are_classified() {
        use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
        type Error = SdkError<GetSecretValueError, ()>;
        let error = fetch_error(&Error::timeout_error("too slow"));
        assert_eq!(error.kind(), "timeout");
        let error = fetch_error(&Error::construction_failure("no region"));
        assert_eq!(error.kind(), "request not constructed");
        assert!(error.to_string().contains("no region"), "{error}");
    }

    #[test]
    fn default_ttl_is_five_minutes() {
        assert_eq!(DEFAULT_TTL, Duration::from_secs(300));
    }
}
