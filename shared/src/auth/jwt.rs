//! JWT verification: RS256/ES256 user tokens from the identity provider (Clerk, Auth0), checked
//! against the issuer's JWKS.
//!
//! The JWKS is given inline (`JWT_JWKS`, no network at cold start) or fetched lazily from
//! `jwks_url` on the first verification, and cached for the life of the process so warm invocations
//! never fetch again. A token whose `kid` is not cached triggers one refetch (how key rotation is
//! picked up), at most once per `min_refetch_interval`, one fetch at a time.
//!
//! Logging: only `sub`, `iss` and `kid` ever appear in logs; never a token, a key or another claim.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tokio::sync::{Mutex, RwLock};

/// Default clock-skew allowance for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// Default minimum time between two JWKS fetches caused by unknown `kid`s.
pub const DEFAULT_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// Whole-request timeout of a JWKS fetch (connect, headers and body).
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest JWKS document accepted from the network.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Largest accepted leeway: more is a misconfiguration (and would let long-expired tokens in).
pub const MAX_LEEWAY: Duration = Duration::from_secs(3600);
/// Largest token looked at; real ID/session tokens are a few kB.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Longest `kid` accepted in a token header.
const MAX_KID_BYTES: usize = 256;
/// While no key at all is cached (the first fetch failed), a fetch is retried after at most this
/// long instead of the full `min_refetch_interval`, so one network blip at cold start does not
/// lock every user out for a minute.
const EMPTY_CACHE_RETRY: Duration = Duration::from_secs(5);

/// Where user tokens come from and what they must contain.
#[derive(Clone)]
pub struct JwtConfig {
    /// Exact `iss` every token must carry.
    pub issuer: String,
    /// JWKS endpoint; `None` means `<issuer>/.well-known/jwks.json`.
    pub jwks_url: Option<String>,
    /// JWKS JSON given inline (`JWT_JWKS`): no network at cold start.
    pub inline_jwks: Option<String>,
    /// Empty: `aud` is not checked. Otherwise `aud` (string or array) must contain one of these.
    /// [`crate::config::Config`] requires this or `authorized_parties` to be non-empty.
    pub audience: Vec<String>,
    /// Empty: `azp` is not checked. Otherwise `azp` must be present and one of these.
    pub authorized_parties: Vec<String>,
    /// Clock-skew allowance for `exp` / `nbf` (whole seconds are used).
    pub leeway: Duration,
    /// An unknown `kid` refetches the JWKS at most this often.
    pub min_refetch_interval: Duration,
    /// Claim holding the email (`JWT_CLAIM_EMAIL`); a namespaced URI such as
    /// `https://example.com/email` for an Auth0 Action. Default `email`.
    pub claim_email: String,
    /// Claim holding the email's verification (`JWT_CLAIM_EMAIL_VERIFIED`). Default `email_verified`.
    pub claim_email_verified: String,
    /// Claim holding the display name (`JWT_CLAIM_NAME`). Default `name`.
    pub claim_name: String,
    /// Auth0's `/userinfo` (`JWT_USERINFO_URL`); default `<issuer>userinfo`. Asked for the
    /// profile, with the caller's own token, only when that token carries no email and its `aud`
    /// includes this URL.
    pub userinfo_url: String,
}

/// Standard claim names ([`JwtConfig::new`]'s defaults).
pub const DEFAULT_CLAIM_EMAIL: &str = "email";
pub const DEFAULT_CLAIM_EMAIL_VERIFIED: &str = "email_verified";
pub const DEFAULT_CLAIM_NAME: &str = "name";

impl JwtConfig {
    /// Defaults: JWKS at `<issuer>/.well-known/jwks.json`, no inline JWKS, no `aud`/`azp` check,
    /// 60 s leeway, 60 s minimum refetch interval.
    pub fn new(issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        let jwks_url = Some(default_jwks_url(&issuer));
        let userinfo_url = format!("{}/userinfo", issuer.trim_end_matches('/'));
        Self {
            userinfo_url,
            issuer,
            jwks_url,
            inline_jwks: None,
            audience: Vec::new(),
            authorized_parties: Vec::new(),
            leeway: DEFAULT_LEEWAY,
            min_refetch_interval: DEFAULT_MIN_REFETCH_INTERVAL,
            claim_email: DEFAULT_CLAIM_EMAIL.to_owned(),
            claim_email_verified: DEFAULT_CLAIM_EMAIL_VERIFIED.to_owned(),
            claim_name: DEFAULT_CLAIM_NAME.to_owned(),
        }
    }
}

impl fmt::Debug for JwtConfig {
    // The inline JWKS is public key material but still not something to print in full.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtConfig")
            .field("issuer", &self.issuer)
            .field("jwks_url", &self.jwks_url)
            .field(
                "inline_jwks",
                &self
                    .inline_jwks
                    .as_ref()
                    .map(|j| format!("<{} bytes>", j.len())),
            )
            .field("audience", &self.audience)
            .field("authorized_parties", &self.authorized_parties)
            .field("leeway", &self.leeway)
            .field("min_refetch_interval", &self.min_refetch_interval)
            .field("claim_email", &self.claim_email)
            .field("claim_email_verified", &self.claim_email_verified)
            .field("claim_name", &self.claim_name)
            .field("userinfo_url", &self.userinfo_url)
            .finish()
    }
}

fn default_jwks_url(issuer: &str) -> String {
    format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/'))
}

/// What handlers need from a verified user token.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: Option<bool>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub family_name: Option<String>,
    /// Clerk session-token templates.
    #[serde(default)]
    pub first_name: Option<String>,
    /// Clerk session-token templates.
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub exp: Option<i64>,
    #[serde(default)]
    pub nbf: Option<i64>,
    #[serde(default)]
    pub azp: Option<String>,
    /// The token's audiences (`aud`, a string or an array); empty when absent.
    #[serde(skip)]
    pub aud: Vec<String>,
}

impl Claims {
    /// `name` when it has text; else the first and last name (OIDC `given_name`/`family_name`, or
    /// Clerk's `first_name`/`last_name`) joined from the parts that have text; else `None`.
    /// Never `""`, never `"null null"`; always acceptable display text
    /// ([`crate::text::person_name`]: no control or format character, at most 200 characters).
    pub fn display_name(&self) -> Option<String> {
        fn text(value: &Option<String>) -> Option<String> {
            value.as_deref().and_then(crate::text::person_name)
        }
        if let Some(name) = text(&self.name) {
            return Some(name);
        }
        let first = text(&self.given_name).or_else(|| text(&self.first_name));
        let last = text(&self.family_name).or_else(|| text(&self.last_name));
        match (first, last) {
            (Some(first), Some(last)) => crate::text::person_name(&format!("{first} {last}")),
            (Some(one), None) | (None, Some(one)) => Some(one),
            (None, None) => None,
        }
    }

    /// The identity claims as the service keeps them: an `email` that is not a plausible address
    /// ([`crate::text::is_plausible_email`]) is dropped (treated as absent), a kept one is
    /// trimmed; a name claim that is not acceptable display text (a control or format character
    /// such as a bidi override or zero-width space, or more than 200 characters) is dropped.
    /// Dropped rather than cleaned: removing characters or cutting a name changes what it says,
    /// and the identity provider is where it gets fixed.
    pub fn with_checked_identity(mut self) -> Self {
        self.email = self
            .email
            .as_deref()
            .map(str::trim)
            .filter(|email| crate::text::is_plausible_email(email))
            .map(str::to_owned);
        for name in [
            &mut self.name,
            &mut self.given_name,
            &mut self.family_name,
            &mut self.first_name,
            &mut self.last_name,
        ] {
            if name.as_deref().and_then(crate::text::person_name).is_none() {
                *name = None;
            }
        }
        self
    }
}

/// Why a user token was rejected. `Display` is a sentence safe to show to the caller (it never
/// contains token contents); [`AuthError::code`] is the short reason for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Sign in first: the request has no bearer token in its Authorization header.")]
    MissingToken,
    #[error("The bearer token is malformed; send `Authorization: Bearer <token>` with a JWT.")]
    Malformed,
    #[error("The token is signed with an algorithm this service does not accept.")]
    UnsupportedAlgorithm,
    #[error("The token is signed with a key this service does not know; sign in again.")]
    UnknownKey,
    #[error("The token signature is not valid.")]
    BadSignature,
    #[error("The token has expired; sign in again.")]
    Expired,
    #[error("The token is not valid yet; check the device clock and try again.")]
    NotYetValid,
    #[error("The token was issued by an identity provider this service does not trust.")]
    WrongIssuer,
    #[error("The token was issued for another audience.")]
    WrongAudience,
    #[error("The token was issued to an application this service does not accept.")]
    WrongAuthorizedParty,
    #[error("The token is missing the required `{0}` claim.")]
    MissingClaim(&'static str),
    /// The signing keys could not be fetched (the last fetch failed) and no cached key matches.
    #[error(
        "Sign-in cannot be checked right now because the identity provider's keys are unavailable; try again shortly."
    )]
    JwksUnavailable,
}

impl AuthError {
    /// Short snake_case reason for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken => "token_missing",
            Self::Malformed => "token_malformed",
            Self::UnsupportedAlgorithm => "token_algorithm_unsupported",
            Self::UnknownKey => "token_key_unknown",
            Self::BadSignature => "token_signature_invalid",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::WrongIssuer => "token_issuer_invalid",
            Self::WrongAudience => "token_audience_invalid",
            Self::WrongAuthorizedParty => "token_authorized_party_invalid",
            Self::MissingClaim(_) => "token_claim_missing",
            Self::JwksUnavailable => "jwks_unavailable",
        }
    }
}

/// A JWKS that cannot be used (bad configuration, or a failed fetch).
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("the JWT issuer is empty")]
    EmptyIssuer,
    #[error("the JWKS URL is not a valid URL")]
    InvalidUrl,
    #[error("the JWT leeway must be at most {} seconds", MAX_LEEWAY.as_secs())]
    LeewayTooLarge,
    /// A build with both or neither of jsonwebtoken's `rust_crypto` and `aws_lc_rs` features:
    /// refused here rather than by a panic on the first token.
    #[error(
        "jsonwebtoken has no crypto provider (a build with both or neither of its provider features)"
    )]
    NoCryptoProvider,
    #[error("the JWKS is not valid JSON with a `keys` array (line {line}, column {column})", line = .0.line(), column = .0.column())]
    InvalidJson(#[source] serde_json::Error),
    #[error("the JWKS has no usable RS256 or ES256 (P-256) signing key with a `kid`")]
    NoUsableKeys,
    #[error("fetching the JWKS failed: {0}")]
    Fetch(#[source] reqwest::Error),
    #[error("the JWKS endpoint answered HTTP {0}")]
    Status(u16),
    #[error("the JWKS response is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
}

/// One JWKS entry, by `kid`.
enum KeySlot {
    /// A key that verifies exactly one accepted algorithm.
    Usable { alg: Algorithm, key: DecodingKey },
    /// A key this service never verifies with (symmetric, encryption-only, other curve or
    /// algorithm, unparsable). Kept so that its `kid` is "known": no pointless refetch.
    Unusable,
}

type KeyMap = HashMap<String, Arc<KeySlot>>;

struct KeyCache {
    keys: KeyMap,
    /// When the JWKS was last fetched (successfully or not); `None`: never.
    last_fetch: Option<Instant>,
    /// Whether that last fetch failed.
    last_fetch_failed: bool,
}

impl KeyCache {
    fn has_usable_key(&self) -> bool {
        self.keys
            .values()
            .any(|slot| matches!(**slot, KeySlot::Usable { .. }))
    }

    fn may_fetch(&self, min_interval: Duration) -> bool {
        let Some(at) = self.last_fetch else {
            return true;
        };
        let interval = if self.has_usable_key() {
            min_interval
        } else {
            min_interval.min(EMPTY_CACHE_RETRY)
        };
        at.elapsed() >= interval
    }

    /// The answer for a `kid` that is not cached and cannot be fetched now. With the issuer's keys
    /// in hand a foreign `kid` is the token's fault (401); with none, the outage is ours (503).
    fn miss(&self) -> AuthError {
        if self.last_fetch_failed && !self.has_usable_key() {
            AuthError::JwksUnavailable
        } else {
            AuthError::UnknownKey
        }
    }
}

/// Verifies user tokens. Build once per cold start and share (`Send + Sync`).
pub struct JwtVerifier {
    config: JwtConfig,
    jwks_url: String,
    http: reqwest::Client,
    cache: RwLock<KeyCache>,
    /// Held for the whole of a fetch: one fetch at a time, no stampede.
    fetch_lock: Mutex<()>,
    rs256: Validation,
    es256: Validation,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.config.issuer)
            .field("jwks_url", &self.jwks_url)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Checks the configuration and parses the inline JWKS, if any. Does no network I/O: without
    /// an inline JWKS the keys are fetched on the first [`JwtVerifier::verify`].
    pub fn new(config: JwtConfig, http: reqwest::Client) -> Result<Self, JwksError> {
        if CryptoProvider::try_get_default().is_none() {
            return Err(JwksError::NoCryptoProvider);
        }
        if config.issuer.trim().is_empty() {
            return Err(JwksError::EmptyIssuer);
        }
        let jwks_url = config
            .jwks_url
            .clone()
            .unwrap_or_else(|| default_jwks_url(&config.issuer));
        if reqwest::Url::parse(&jwks_url).is_err() {
            return Err(JwksError::InvalidUrl);
        }
        if config.leeway > MAX_LEEWAY {
            return Err(JwksError::LeewayTooLarge);
        }
        let keys = match &config.inline_jwks {
            Some(json) => parse_jwks(json.as_bytes())?,
            None => KeyMap::new(),
        };
        let rs256 = validation(&config, Algorithm::RS256);
        let es256 = validation(&config, Algorithm::ES256);
        Ok(Self {
            config,
            jwks_url,
            http,
            cache: RwLock::new(KeyCache {
                keys,
                last_fetch: None,
                last_fetch_failed: false,
            }),
            fetch_lock: Mutex::new(()),
            rs256,
            es256,
        })
    }

    /// The issuer this verifier trusts.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Extracts the token from an `Authorization` header value: `Bearer <token>`, the scheme in any
    /// case, one space, a non-empty token of token68 characters. Absent or blank: `MissingToken`;
    /// anything else: `Malformed`.
    pub fn bearer_token(authorization_header: Option<&str>) -> Result<&str, AuthError> {
        let value = authorization_header.map(str::trim).unwrap_or_default();
        if value.is_empty() {
            return Err(AuthError::MissingToken);
        }
        let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer")
            || token.is_empty()
            || !token.bytes().all(is_token68_byte)
        {
            return Err(AuthError::Malformed);
        }
        Ok(token)
    }

    /// Verifies a raw token (without `Bearer `): algorithm, key, signature, `exp`/`nbf` (with
    /// leeway), `iss`, and `aud`/`azp` when configured.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let result = self.verify_inner(token).await;
        match &result {
            Ok(claims) => tracing::debug!(sub = %claims.sub, iss = %claims.iss, "token verified"),
            Err(error) => tracing::debug!(reason = error.code(), "token rejected"),
        }
        result
    }

    async fn verify_inner(&self, token: &str) -> Result<Claims, AuthError> {
        if token.is_empty() {
            return Err(AuthError::MissingToken);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        let kid = header_kid(token)?;
        let slot = self.key_for(&kid).await?;
        let KeySlot::Usable { alg, key } = &*slot else {
            tracing::debug!(kid = %kid, "token names a key that is not an RS256/ES256 signing key");
            return Err(AuthError::UnsupportedAlgorithm);
        };
        // The `Validation` allows only the key's own algorithm: a header `alg` that does not
        // match its key is `InvalidAlgorithm`.
        let validation = match alg {
            Algorithm::ES256 => &self.es256,
            _ => &self.rs256,
        };
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, validation).map_err(
            |error| {
                let mapped = map_jwt_error(error.kind());
                if mapped == AuthError::BadSignature
                    && !matches!(error.kind(), ErrorKind::InvalidSignature)
                {
                    tracing::warn!(kid = %kid, "JWKS key could not be used to verify");
                }
                mapped
            },
        )?;
        self.claims(&data.claims).map(Claims::with_checked_identity)
    }

    /// Checks what jsonwebtoken's `Validation` does not, and builds [`Claims`] leniently (an odd
    /// type in an optional profile claim is ignored rather than failing the sign-in).
    fn claims(&self, map: &Map<String, Value>) -> Result<Claims, AuthError> {
        // By hand: `Validation`'s `iss` check also accepts an array that contains the issuer.
        let iss = match map.get("iss") {
            None | Some(Value::Null) => return Err(AuthError::MissingClaim("iss")),
            Some(Value::String(iss)) if *iss == self.config.issuer => iss.clone(),
            Some(_) => return Err(AuthError::WrongIssuer),
        };
        // By hand: `Validation` has no "non-empty string" check for `sub`, and no `azp` at all.
        let sub = match map.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
            None | Some(Value::Null) => return Err(AuthError::MissingClaim("sub")),
            Some(Value::String(_)) => return Err(AuthError::MissingClaim("sub")),
            Some(_) => return Err(AuthError::Malformed),
        };
        let azp = string_claim(map, "azp");
        if !self.config.authorized_parties.is_empty() {
            match map.get("azp") {
                None | Some(Value::Null) => return Err(AuthError::MissingClaim("azp")),
                Some(Value::String(party))
                    if self.config.authorized_parties.iter().any(|p| p == party) => {}
                Some(_) => return Err(AuthError::WrongAuthorizedParty),
            }
        }
        Ok(Claims {
            sub,
            iss,
            email: string_claim(map, &self.config.claim_email),
            email_verified: match map.get(&self.config.claim_email_verified) {
                Some(Value::Bool(b)) => Some(*b),
                // Some providers (Cognito) send "true"/"false".
                Some(Value::String(s)) if s == "true" => Some(true),
                Some(Value::String(s)) if s == "false" => Some(false),
                _ => None,
            },
            name: string_claim(map, &self.config.claim_name),
            given_name: string_claim(map, "given_name"),
            family_name: string_claim(map, "family_name"),
            first_name: string_claim(map, "first_name"),
            last_name: string_claim(map, "last_name"),
            exp: int_claim(map, "exp"),
            nbf: int_claim(map, "nbf"),
            azp,
            aud: match map.get("aud") {
                Some(Value::String(aud)) => vec![aud.clone()],
                Some(Value::Array(auds)) => auds
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                _ => Vec::new(),
            },
        })
    }

    /// The cached key for `kid`, refetching the JWKS when it is unknown and a fetch is allowed.
    async fn key_for(&self, kid: &str) -> Result<Arc<KeySlot>, AuthError> {
        if let Some(slot) = self.cache.read().await.keys.get(kid) {
            return Ok(Arc::clone(slot));
        }
        // One fetch at a time: whoever waited here finds the fetched keys (or the fresh
        // `last_fetch`) when it gets the lock.
        let _fetching = self.fetch_lock.lock().await;
        {
            let cache = self.cache.read().await;
            if let Some(slot) = cache.keys.get(kid) {
                return Ok(Arc::clone(slot));
            }
            if !cache.may_fetch(self.config.min_refetch_interval) {
                tracing::debug!(kid = %kid, "unknown kid; JWKS refetch not allowed yet");
                return Err(cache.miss());
            }
        }
        tracing::info!(kid = %kid, url = %self.jwks_url, "fetching JWKS");
        let fetched = self.fetch_jwks().await;
        let mut cache = self.cache.write().await;
        cache.last_fetch = Some(Instant::now());
        match fetched {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "JWKS fetched");
                cache.keys = keys;
                cache.last_fetch_failed = false;
            }
            Err(error) => {
                tracing::warn!(url = %self.jwks_url, error = %error, "JWKS fetch failed; keeping cached keys");
                cache.last_fetch_failed = true;
            }
        }
        match cache.keys.get(kid) {
            Some(slot) => Ok(Arc::clone(slot)),
            None => {
                tracing::debug!(kid = %kid, "kid not in the JWKS");
                Err(cache.miss())
            }
        }
    }

    async fn fetch_jwks(&self) -> Result<KeyMap, JwksError> {
        let mut response = self
            .http
            .get(&self.jwks_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(JWKS_FETCH_TIMEOUT)
            .send()
            .await
            .map_err(JwksError::Fetch)?;
        let status = response.status();
        if !status.is_success() {
            return Err(JwksError::Status(status.as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|length| length > MAX_JWKS_BYTES as u64)
        {
            return Err(JwksError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(JwksError::Fetch)? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(JwksError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwks(&body)
    }
}

fn validation(config: &JwtConfig, alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.leeway = config.leeway.as_secs();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp"]);
    // `iss`, `sub` and `azp` are checked in `JwtVerifier::claims`.
    if config.audience.is_empty() {
        validation.validate_aud = false;
    } else {
        validation.set_audience(&config.audience);
        validation.required_spec_claims.insert("aud".to_owned());
    }
    validation
}

fn map_jwt_error(kind: &ErrorKind) -> AuthError {
    match kind {
        // Not three parts, or a header `decode` refuses: a `crit` extension it does not
        // understand (RFC 7515 §4.1.11; only `b64` is), or `"b64": false`.
        ErrorKind::InvalidToken => AuthError::Malformed,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(match claim.as_str() {
            "exp" => "exp",
            "nbf" => "nbf",
            "aud" => "aud",
            "iss" => "iss",
            "sub" => "sub",
            _ => "unknown",
        }),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::MissingAlgorithm => AuthError::UnsupportedAlgorithm,
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => AuthError::BadSignature,
        _ => AuthError::Malformed,
    }
}

/// Reads the header without trusting it and returns its `kid`: exactly three parts, `alg` one of
/// the two accepted (checked before the key is looked up, so `none`/`HS256` never cause a JWKS
/// fetch), a `kid`. `crit` is refused later, by `jsonwebtoken::decode` (`decode_header` does not
/// look at it).
fn header_kid(token: &str) -> Result<String, AuthError> {
    // By hand: `decode_header` splits from the right and would read "a.b.c.d"'s header as "a.b".
    if token.split('.').count() != 3 {
        return Err(AuthError::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| unreadable_header(token))?;
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
        return Err(AuthError::UnsupportedAlgorithm);
    }
    header
        .kid
        .filter(|kid| !kid.is_empty() && kid.len() <= MAX_KID_BYTES)
        .ok_or(AuthError::Malformed)
}

/// Why `decode_header` refused a header. By hand: jsonwebtoken's `Header` cannot hold an `alg` it
/// has no name for (`none`), so such a token is answered like one naming a refused algorithm;
/// anything else (not base64url JSON, no string `alg`, an ill-typed parameter) is malformed.
fn unreadable_header(token: &str) -> AuthError {
    let alg = token
        .split('.')
        .next()
        .and_then(|header| URL_SAFE_NO_PAD.decode(header).ok())
        .and_then(|json| serde_json::from_slice::<Map<String, Value>>(&json).ok())
        .and_then(|header| match header.get("alg") {
            Some(Value::String(alg)) => Some(alg.clone()),
            _ => None,
        });
    match alg {
        Some(alg) if alg != "RS256" && alg != "ES256" => AuthError::UnsupportedAlgorithm,
        _ => AuthError::Malformed,
    }
}

/// Parses a JWKS document. Entries without a `kid` are skipped; entries this service cannot verify
/// with are kept as unusable (their `kid` is known, so they cause no refetch). Errors when the
/// document is not JSON or has no usable key at all.
fn parse_jwks(json: &[u8]) -> Result<KeyMap, JwksError> {
    #[derive(serde::Deserialize)]
    struct RawSet {
        keys: Vec<Value>,
    }
    let set: RawSet = serde_json::from_slice(json).map_err(JwksError::InvalidJson)?;
    let mut keys = KeyMap::new();
    for raw in set.keys {
        let Some(kid) = raw
            .get("kid")
            .and_then(Value::as_str)
            .filter(|kid| !kid.is_empty())
            .map(str::to_owned)
        else {
            tracing::debug!("skipping a JWK without a kid");
            continue;
        };
        if keys.contains_key(&kid) {
            tracing::warn!(kid = %kid, "duplicate kid in the JWKS; keeping the first");
            continue;
        }
        let slot = match serde_json::from_value::<Jwk>(raw) {
            Ok(jwk) => key_slot(&jwk),
            Err(_) => KeySlot::Unusable,
        };
        if matches!(slot, KeySlot::Unusable) {
            tracing::debug!(kid = %kid, "JWK is not an RS256/ES256 signing key; it will not verify tokens");
        }
        keys.insert(kid, Arc::new(slot));
    }
    if !keys
        .values()
        .any(|slot| matches!(**slot, KeySlot::Usable { .. }))
    {
        return Err(JwksError::NoUsableKeys);
    }
    Ok(keys)
}

/// The one algorithm a JWK may verify, from its `kty`/`crv`, cross-checked against its own
/// `alg`, `use` and `key_ops` when present.
fn key_slot(jwk: &Jwk) -> KeySlot {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|usage| *usage != PublicKeyUse::Signature)
    {
        return KeySlot::Unusable;
    }
    if jwk
        .common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return KeySlot::Unusable;
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            // RSA-2048 to RSA-8192. By hand: the rsa crate also verifies with RSA-1024.
            let modulus_len = URL_SAFE_NO_PAD
                .decode(&rsa.n)
                .map(|n| n.iter().skip_while(|b| **b == 0).count())
                .unwrap_or(0);
            if !(256..=1024).contains(&modulus_len) {
                return KeySlot::Unusable;
            }
            Algorithm::RS256
        }
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            let coordinate_ok = |c: &str| URL_SAFE_NO_PAD.decode(c).is_ok_and(|c| c.len() == 32);
            if !coordinate_ok(&ec.x) || !coordinate_ok(&ec.y) {
                return KeySlot::Unusable;
            }
            Algorithm::ES256
        }
        _ => return KeySlot::Unusable,
    };
    if jwk
        .common
        .key_algorithm
        .is_some_and(|declared| declared != KeyAlgorithm::from(alg))
    {
        return KeySlot::Unusable;
    }
    match DecodingKey::from_jwk(jwk) {
        Ok(key) => KeySlot::Usable { alg, key },
        Err(_) => KeySlot::Unusable,
    }
}

fn is_token68_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

fn string_claim(map: &Map<String, Value>, name: &str) -> Option<String> {
    map.get(name).and_then(Value::as_str).map(str::to_owned)
}

fn int_claim(map: &Map<String, Value>, name: &str) -> Option<i64> {
    let value = map.get(name)?;
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.is_finite() && *f >= i64::MIN as f64 && *f <= i64::MAX as f64)
            .map(|f| f as i64)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

    use axum::extract::State;
    use axum::http::{StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use jsonwebtoken::{EncodingKey, Header};
    use ring::rand::SystemRandom;
    use ring::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RsaKeyPair,
    };
    use rustls::pki_types::PrivatePkcs8KeyDer;
    use rustls::pki_types::pem::PemObject as _;
    use serde_json::json;

    use super::*;

    const ISSUER: &str = "https://clerk.tollgate.test";
    const AUDIENCE: &str = "https://api.tollgate.test";
    const APP: &str = "https://app.tollgate.test";

    struct RsaTestKey {
        encoding: EncodingKey,
        jwk: Value,
        /// PKCS#1 `RSAPublicKey` DER, what an attacker would use as an HMAC secret.
        public_pkcs1_der: Vec<u8>,
        /// The same key as a PEM SubjectPublicKeyInfo ("PUBLIC KEY").
        public_pem: String,
    }

    struct EcTestKey {
        encoding: EncodingKey,
        jwk: Value,
    }

    struct TestKeys {
        rsa: RsaTestKey,
        rsa2: RsaTestKey,
        ec: EcTestKey,
    }

    /// RSA keys from shared/testdata (ring does not generate RSA keys); the EC key is fresh.
    fn keys() -> &'static TestKeys {
        static KEYS: OnceLock<TestKeys> = OnceLock::new();
        KEYS.get_or_init(|| TestKeys {
            rsa: rsa_key(
                "rsa-1",
                include_str!("../../testdata/jwt-rsa-1.key.pem"),
                include_str!("../../testdata/jwt-rsa-1.pub.pem"),
            ),
            rsa2: rsa_key(
                "rsa-2",
                include_str!("../../testdata/jwt-rsa-2.key.pem"),
                include_str!("../../testdata/jwt-rsa-2.pub.pem"),
            ),
            ec: ec_key("ec-1"),
        })
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn rsa_key(kid: &str, private_pem: &str, public_pem: &str) -> RsaTestKey {
        let pkcs8 = PrivatePkcs8KeyDer::from_pem_slice(private_pem.as_bytes()).unwrap();
        let pair = RsaKeyPair::from_pkcs8(pkcs8.secret_pkcs8_der()).unwrap();
        let encoding = EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap();
        let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
        let jwk = json!({
            "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": b64(&public.n), "e": b64(&public.e),
        });
        RsaTestKey {
            encoding,
            jwk,
            public_pkcs1_der: pair.public_key().as_ref().to_vec(),
            public_pem: public_pem.to_owned(),
        }
    }

    fn ec_key(kid: &str) -> EcTestKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
        // Uncompressed SEC1 point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        assert_eq!((point.len(), point[0]), (65, 4));
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        });
        EcTestKey { encoding, jwk }
    }

    fn jwks(keys: &[&Value]) -> String {
        json!({ "keys": keys }).to_string()
    }

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    fn claims() -> Value {
        json!({
            "sub": "user_2abc",
            "iss": ISSUER,
            "iat": now(),
            "exp": now() + 600,
            "email": "ann@example.com",
            "email_verified": true,
            "name": "Ann Lee",
        })
    }

    fn with(mut claims: Value, name: &str, value: Value) -> Value {
        claims[name] = value;
        claims
    }

    fn without(mut claims: Value, name: &str) -> Value {
        claims.as_object_mut().unwrap().remove(name);
        claims
    }

    fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn rs256(claims: &Value) -> String {
        sign(
            Algorithm::RS256,
            Some("rsa-1"),
            claims,
            &keys().rsa.encoding,
        )
    }

    fn rs256_kid(kid: &str, claims: &Value) -> String {
        sign(Algorithm::RS256, Some(kid), claims, &keys().rsa.encoding)
    }

    fn es256(claims: &Value) -> String {
        sign(Algorithm::ES256, Some("ec-1"), claims, &keys().ec.encoding)
    }

    fn http() -> reqwest::Client {
        crate::trust::install_ring_defaults();
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    /// A URL on a port nothing listens on: connecting is refused at once.
    async fn closed_url() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}/.well-known/jwks.json")
    }

    /// Inline RSA + EC keys, and a JWKS URL that refuses connections.
    async fn inline_config() -> JwtConfig {
        let mut config = JwtConfig::new(ISSUER);
        config.jwks_url = Some(closed_url().await);
        config.inline_jwks = Some(jwks(&[&keys().rsa.jwk, &keys().ec.jwk]));
        config
    }

    async fn inline_verifier() -> JwtVerifier {
        JwtVerifier::new(inline_config().await, http()).unwrap()
    }

    async fn verify_with(config: JwtConfig, token: &str) -> Result<Claims, AuthError> {
        JwtVerifier::new(config, http())
            .unwrap()
            .verify(token)
            .await
    }

    // ---- a JWKS endpoint that counts its requests ----

    struct ServerState {
        body: std::sync::Mutex<String>,
        hits: AtomicUsize,
        failing: AtomicBool,
        delay_ms: AtomicU64,
    }

    struct JwksServer {
        url: String,
        state: Arc<ServerState>,
    }

    impl JwksServer {
        fn hits(&self) -> usize {
            self.state.hits.load(Ordering::SeqCst)
        }
        fn serve(&self, body: String) {
            *self.state.body.lock().unwrap() = body;
        }
        fn fail(&self, failing: bool) {
            self.state.failing.store(failing, Ordering::SeqCst);
        }
        fn delay(&self, delay: Duration) {
            self.state
                .delay_ms
                .store(delay.as_millis() as u64, Ordering::SeqCst);
        }
        fn config(&self) -> JwtConfig {
            let mut config = JwtConfig::new(ISSUER);
            config.jwks_url = Some(self.url.clone());
            config
        }
    }

    async fn jwks_endpoint(State(state): State<Arc<ServerState>>) -> Response {
        state.hits.fetch_add(1, Ordering::SeqCst);
        let delay = state.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if state.failing.load(Ordering::SeqCst) {
            return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
        }
        let body = state.body.lock().unwrap().clone();
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    }

    async fn serve_jwks(body: String) -> JwksServer {
        let state = Arc::new(ServerState {
            body: std::sync::Mutex::new(body),
            hits: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .route("/.well-known/jwks.json", axum::routing::get(jwks_endpoint))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        JwksServer {
            url: format!("http://{addr}/.well-known/jwks.json"),
            state,
        }
    }

    // ---- configuration and construction ----

    #[test]
    fn config_defaults() {
        let config = JwtConfig::new("https://tenant.auth0.com/");
        assert_eq!(config.issuer, "https://tenant.auth0.com/");
        assert_eq!(
            config.jwks_url.as_deref(),
            Some("https://tenant.auth0.com/.well-known/jwks.json")
        );
        assert_eq!(config.inline_jwks, None);
        assert!(config.audience.is_empty() && config.authorized_parties.is_empty());
        assert_eq!(config.leeway, Duration::from_secs(60));
        assert_eq!(config.min_refetch_interval, Duration::from_secs(60));
    }

    #[test]
    fn verifier_is_send_and_sync_and_its_future_is_send() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>(_: &T) {}
        send_sync::<JwtVerifier>();
        let verifier = JwtVerifier::new(JwtConfig::new(ISSUER), http()).unwrap();
        send(&verifier.verify("x"));
    }

    #[tokio::test]
    async fn new_rejects_bad_inline_jwks_without_echoing_it() {
        let mut config = JwtConfig::new(ISSUER);
        config.inline_jwks = Some(r#"{"keys": [ {"kty": "RSA", "n": "secret-ish"#.to_owned());
        let error = JwtVerifier::new(config.clone(), http()).unwrap_err();
        assert!(matches!(error, JwksError::InvalidJson(_)), "{error:?}");
        assert!(!error.to_string().contains("secret-ish"), "{error}");

        config.inline_jwks = Some(r#"{"keys": []}"#.to_owned());
        let error = JwtVerifier::new(config.clone(), http()).unwrap_err();
        assert!(matches!(error, JwksError::NoUsableKeys), "{error:?}");

        // Only keys this service never verifies with: symmetric, encryption, other curve, no kid.
        config.inline_jwks = Some(
            json!({"keys": [
                {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
                with(keys().rsa.jwk.clone(), "use", json!("enc")),
                with(keys().rsa.jwk.clone(), "alg", json!("RS384")),
                without(keys().rsa.jwk.clone(), "kid"),
                with(keys().ec.jwk.clone(), "crv", json!("P-384")),
            ]})
            .to_string(),
        );
        let error = JwtVerifier::new(config, http()).unwrap_err();
        assert!(matches!(error, JwksError::NoUsableKeys), "{error:?}");
    }

    #[test]
    fn new_rejects_empty_issuer_bad_url_and_huge_leeway() {
        let error = JwtVerifier::new(JwtConfig::new(""), http()).unwrap_err();
        assert!(matches!(error, JwksError::EmptyIssuer), "{error:?}");
        let mut config = JwtConfig::new(ISSUER);
        config.jwks_url = Some("not a url".to_owned());
        let error = JwtVerifier::new(config, http()).unwrap_err();
        assert!(matches!(error, JwksError::InvalidUrl), "{error:?}");
        let mut config = JwtConfig::new(ISSUER);
        config.leeway = Duration::from_secs(u64::MAX / 2);
        let error = JwtVerifier::new(config, http()).unwrap_err();
        assert!(matches!(error, JwksError::LeewayTooLarge), "{error:?}");
        let mut config = JwtConfig::new(ISSUER);
        config.leeway = MAX_LEEWAY;
        JwtVerifier::new(config, http()).unwrap();
    }

    #[tokio::test]
    async fn jwks_url_defaults_to_the_issuer_well_known_path() {
        let server = serve_jwks(jwks(&[&keys().rsa.jwk])).await;
        let issuer = server
            .url
            .trim_end_matches("/.well-known/jwks.json")
            .to_owned()
            + "/";
        let mut config = JwtConfig::new(issuer.clone());
        config.jwks_url = None;
        let verifier = JwtVerifier::new(config, http()).unwrap();
        let claims = verifier
            .verify(&rs256(&with(claims(), "iss", json!(issuer))))
            .await
            .unwrap();
        assert_eq!(claims.iss, issuer);
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn inline_jwks_needs_no_network() {
        let server = serve_jwks(jwks(&[&keys().rsa.jwk])).await;
        let mut config = server.config();
        config.inline_jwks = Some(jwks(&[&keys().rsa.jwk, &keys().ec.jwk]));
        let verifier = JwtVerifier::new(config, http()).unwrap();
        assert_eq!(server.hits(), 0);
        verifier.verify(&rs256(&claims())).await.unwrap();
        verifier.verify(&es256(&claims())).await.unwrap();
        assert_eq!(server.hits(), 0);
    }

    // ---- the Authorization header ----

    #[test]
    fn bearer_missing_header() {
        for header in [None, Some(""), Some("   ")] {
            assert_eq!(
                JwtVerifier::bearer_token(header),
                Err(AuthError::MissingToken),
                "{header:?}"
            );
        }
    }

    #[test]
    fn bearer_malformed_header() {
        for header in [
            "Basic x",
            "Bearer",
            "Bearer  a b",
            "Bearer a b",
            "Bearer\tabc",
            "Bearerabc",
            "Token abc",
            "Bearer abc\"",
            "Bearer ab,c",
        ] {
            assert_eq!(
                JwtVerifier::bearer_token(Some(header)),
                Err(AuthError::Malformed),
                "{header:?}"
            );
        }
    }

    #[test]
    fn bearer_token_extracted_case_insensitively() {
        for header in [
            "Bearer a.b.c",
            "bearer a.b.c",
            "BEARER a.b.c",
            " Bearer a.b.c ",
        ] {
            assert_eq!(JwtVerifier::bearer_token(Some(header)), Ok("a.b.c"));
        }
        assert_eq!(
            JwtVerifier::bearer_token(Some("Bearer svc_live_Ab-9~+/x==")),
            Ok("svc_live_Ab-9~+/x==")
        );
    }

    // ---- accepted tokens ----

    #[tokio::test]
    async fn accepts_valid_rs256() {
        let verifier = inline_verifier().await;
        let claims = verifier.verify(&rs256(&claims())).await.unwrap();
        assert_eq!(claims.sub, "user_2abc");
        assert_eq!(claims.iss, ISSUER);
        assert_eq!(claims.email.as_deref(), Some("ann@example.com"));
        assert_eq!(claims.email_verified, Some(true));
        assert_eq!(claims.display_name().as_deref(), Some("Ann Lee"));
        assert!(claims.exp.is_some_and(|exp| exp > now()));
        assert_eq!(claims.nbf, None);
        assert_eq!(claims.azp, None);
    }

    #[tokio::test]
    async fn accepts_valid_es256() {
        let verifier = inline_verifier().await;
        let token = es256(&with(claims(), "nbf", json!(now() - 5)));
        let claims = verifier.verify(&token).await.unwrap();
        assert_eq!(claims.sub, "user_2abc");
        assert!(claims.nbf.is_some());
    }

    #[tokio::test]
    async fn optional_claims_are_read_leniently() {
        let token = rs256(&json!({
            "sub": "user_1", "iss": ISSUER, "exp": (now() + 600) as f64 + 0.5,
            "email_verified": "true", "name": 42, "first_name": "Bo", "last_name": null,
        }));
        let claims = inline_verifier().await.verify(&token).await.unwrap();
        assert_eq!(claims.email_verified, Some(true));
        assert_eq!(claims.name, None);
        assert_eq!(claims.display_name().as_deref(), Some("Bo"));
        assert!(claims.exp.is_some());
    }

    // ---- rejections ----

    #[tokio::test]
    async fn empty_token_is_missing() {
        let verifier = inline_verifier().await;
        assert_eq!(verifier.verify("").await, Err(AuthError::MissingToken));
    }

    #[tokio::test]
    async fn rejects_garbage_token() {
        let verifier = inline_verifier().await;
        let not_json = b64(b"not json");
        let array = b64(br#"["RS256"]"#);
        let alg_number = b64(br#"{"alg": 256, "kid": "rsa-1"}"#);
        let array_none = b64(br#"["none"]"#);
        let kid_number = b64(br#"{"alg": "RS256", "kid": 5}"#);
        let typ_number = b64(br#"{"alg": "RS256", "kid": "rsa-1", "typ": 5}"#);
        let valid = rs256(&claims());
        let four_parts = format!("{valid}.x");
        let huge = format!("{}.{}.{}", "a".repeat(10_000), "b".repeat(10_000), "c");
        for token in [
            "garbage",
            "a.b",
            "a.b.c",
            "...",
            "€.x.y",
            &format!("{not_json}.e30.sig"),
            &format!("{array}.e30.sig"),
            &format!("{alg_number}.e30.sig"),
            &format!("{array_none}.e30.sig"),
            &format!("{kid_number}.e30.sig"),
            &format!("{typ_number}.e30.sig"),
            &four_parts,
            &huge,
        ] {
            assert_eq!(
                verifier.verify(token).await,
                Err(AuthError::Malformed),
                "{token:.40}"
            );
        }
    }

    #[tokio::test]
    async fn rejects_token_without_kid() {
        let token = sign(Algorithm::RS256, None, &claims(), &keys().rsa.encoding);
        assert_eq!(
            inline_verifier().await.verify(&token).await,
            Err(AuthError::Malformed)
        );
        let token = sign(Algorithm::RS256, Some(""), &claims(), &keys().rsa.encoding);
        assert_eq!(
            inline_verifier().await.verify(&token).await,
            Err(AuthError::Malformed)
        );
    }

    #[tokio::test]
    async fn rejects_critical_header_extensions() {
        let verifier = inline_verifier().await;
        let header = b64(br#"{"alg":"RS256","kid":"rsa-1","crit":["exp"],"exp":1}"#);
        let valid = rs256(&claims());
        let rest = valid.split_once('.').unwrap().1;
        let token = format!("{header}.{rest}");
        assert_eq!(verifier.verify(&token).await, Err(AuthError::Malformed));

        // Signed with the extension in its header, so the signature is good: refused for `crit`
        // alone (jsonwebtoken understands no extension but `b64`); an empty `crit` too.
        let signed = |crit: Option<Vec<String>>| {
            let mut header = Header::new(Algorithm::RS256);
            header.kid = Some("rsa-1".to_owned());
            header.crit = crit;
            header.extras.insert("x", true);
            jsonwebtoken::encode(&header, &claims(), &keys().rsa.encoding).unwrap()
        };
        for crit in [vec!["x".to_owned()], Vec::new()] {
            assert_eq!(
                verifier.verify(&signed(Some(crit.clone()))).await,
                Err(AuthError::Malformed),
                "{crit:?}"
            );
        }
        // The same header without `crit` is accepted: the extension was refused for being critical.
        verifier.verify(&signed(None)).await.unwrap();
    }

    #[tokio::test]
    async fn a_refused_algorithm_never_fetches_the_jwks() {
        let server = serve_jwks(jwks(&[&keys().rsa.jwk])).await;
        let verifier = JwtVerifier::new(server.config(), http()).unwrap();
        let payload = b64(claims().to_string().as_bytes());
        for header in [
            r#"{"alg":"none","kid":"unknown"}"#,
            r#"{"alg":"HS256","kid":"unknown"}"#,
        ] {
            let token = format!("{}.{payload}.c2ln", b64(header.as_bytes()));
            assert_eq!(
                verifier.verify(&token).await,
                Err(AuthError::UnsupportedAlgorithm),
                "{header}"
            );
        }
        assert_eq!(server.hits(), 0);
    }

    #[tokio::test]
    async fn rejects_alg_none() {
        let verifier = inline_verifier().await;
        let payload = b64(claims().to_string().as_bytes());
        for header in [
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"none","kid":"rsa-1"}"#,
            r#"{"alg":"None","kid":"rsa-1"}"#,
            r#"{"alg":"","kid":"rsa-1"}"#,
            r#"{"alg":"none","kid":5}"#,
            r#"{"alg":"HS256","kid":"rsa-1"}"#,
        ] {
            let token = format!("{}.{payload}.", b64(header.as_bytes()));
            assert_eq!(
                verifier.verify(&token).await,
                Err(AuthError::UnsupportedAlgorithm),
                "{header}"
            );
        }
    }

    #[tokio::test]
    async fn rejects_hs256_signed_with_the_rsa_public_key() {
        let verifier = inline_verifier().await;
        let rsa = &keys().rsa;
        for secret in [rsa.public_pkcs1_der.as_slice(), rsa.public_pem.as_bytes()] {
            let key = EncodingKey::from_secret(secret).unwrap();
            let token = sign(Algorithm::HS256, Some("rsa-1"), &claims(), &key);
            assert_eq!(
                verifier.verify(&token).await,
                Err(AuthError::UnsupportedAlgorithm)
            );
        }
    }

    #[tokio::test]
    async fn rejects_rs384() {
        let token = sign(
            Algorithm::RS384,
            Some("rsa-1"),
            &claims(),
            &keys().rsa.encoding,
        );
        assert_eq!(
            inline_verifier().await.verify(&token).await,
            Err(AuthError::UnsupportedAlgorithm)
        );
    }

    #[tokio::test]
    async fn rejects_alg_that_does_not_match_the_key() {
        let verifier = inline_verifier().await;
        // ES256 header naming the RSA key, RS256 header naming the EC key.
        let token = sign(
            Algorithm::ES256,
            Some("rsa-1"),
            &claims(),
            &keys().ec.encoding,
        );
        assert_eq!(
            verifier.verify(&token).await,
            Err(AuthError::UnsupportedAlgorithm)
        );
        let token = sign(
            Algorithm::RS256,
            Some("ec-1"),
            &claims(),
            &keys().rsa.encoding,
        );
        assert_eq!(
            verifier.verify(&token).await,
            Err(AuthError::UnsupportedAlgorithm)
        );
    }

    #[tokio::test]
    async fn rejects_kid_of_a_symmetric_or_encryption_key() {
        let mut config = inline_config().await;
        config.inline_jwks = Some(
            json!({"keys": [
                keys().rsa.jwk,
                {"kty": "oct", "kid": "hmac-1", "k": b64(b"shared secret")},
                with(with(keys().rsa.jwk.clone(), "use", json!("enc")), "kid", json!("rsa-enc")),
            ]})
            .to_string(),
        );
        let verifier = JwtVerifier::new(config, http()).unwrap();
        for kid in ["hmac-1", "rsa-enc"] {
            assert_eq!(
                verifier.verify(&rs256_kid(kid, &claims())).await,
                Err(AuthError::UnsupportedAlgorithm),
                "{kid}"
            );
        }
        verifier.verify(&rs256(&claims())).await.unwrap();
    }

    #[test]
    fn rsa_keys_outside_2048_to_8192_bits_are_unusable() {
        let slot = |modulus: &[u8]| {
            let jwk: Jwk = serde_json::from_value(json!({
                "kty": "RSA", "kid": "k", "use": "sig", "alg": "RS256",
                "n": b64(modulus), "e": "AQAB",
            }))
            .unwrap();
            matches!(key_slot(&jwk), KeySlot::Usable { .. })
        };
        for (bytes, usable) in [
            (128, false),
            (255, false),
            (256, true),
            (1024, true),
            (1025, false),
        ] {
            assert_eq!(slot(&vec![0xC5; bytes]), usable, "{bytes} bytes");
        }
        // Leading zero bytes do not count.
        let mut padded = vec![0; 8];
        padded.extend([0xC5; 255]);
        assert!(!slot(&padded));
    }

    #[tokio::test]
    async fn rejects_expired_beyond_leeway() {
        let token = rs256(&with(claims(), "exp", json!(now() - 120)));
        assert_eq!(
            inline_verifier().await.verify(&token).await,
            Err(AuthError::Expired)
        );
    }

    #[tokio::test]
    async fn accepts_expired_within_leeway() {
        let token = rs256(&with(claims(), "exp", json!(now() - 30)));
        inline_verifier().await.verify(&token).await.unwrap();
    }

    #[tokio::test]
    async fn leeway_is_configurable() {
        let mut config = inline_config().await;
        config.leeway = Duration::ZERO;
        let token = rs256(&with(claims(), "exp", json!(now() - 30)));
        assert_eq!(verify_with(config, &token).await, Err(AuthError::Expired));
    }

    #[tokio::test]
    async fn rejects_missing_exp() {
        let token = rs256(&without(claims(), "exp"));
        assert_eq!(
            inline_verifier().await.verify(&token).await,
            Err(AuthError::MissingClaim("exp"))
        );
    }

    #[tokio::test]
    async fn rejects_nbf_beyond_leeway() {
        let token = rs256(&with(claims(), "nbf", json!(now() + 120)));
        assert_eq!(
            inline_verifier().await.verify(&token).await,
            Err(AuthError::NotYetValid)
        );
    }

    #[tokio::test]
    async fn accepts_nbf_within_leeway() {
        let token = rs256(&with(claims(), "nbf", json!(now() + 30)));
        inline_verifier().await.verify(&token).await.unwrap();
    }

    #[tokio::test]
    async fn rejects_wrong_issuer() {
        let verifier = inline_verifier().await;
        for iss in [
            json!("https://evil.test"),
            json!(format!("{ISSUER}/")),
            json!([ISSUER]),
        ] {
            let token = rs256(&with(claims(), "iss", iss.clone()));
            assert_eq!(
                verifier.verify(&token).await,
                Err(AuthError::WrongIssuer),
                "{iss}"
            );
        }
        let token = rs256(&without(claims(), "iss"));
        assert_eq!(
            verifier.verify(&token).await,
            Err(AuthError::MissingClaim("iss"))
        );
    }

    #[tokio::test]
    async fn rejects_missing_sub() {
        let verifier = inline_verifier().await;
        for claims in [without(claims(), "sub"), with(claims(), "sub", json!(""))] {
            assert_eq!(
                verifier.verify(&rs256(&claims)).await,
                Err(AuthError::MissingClaim("sub"))
            );
        }
    }

    #[tokio::test]
    async fn rejects_wrong_audience() {
        let mut config = inline_config().await;
        config.audience = vec![AUDIENCE.to_owned()];
        let verifier = JwtVerifier::new(config, http()).unwrap();
        for aud in [json!("https://other.test"), json!(["https://other.test"])] {
            let token = rs256(&with(claims(), "aud", aud));
            assert_eq!(verifier.verify(&token).await, Err(AuthError::WrongAudience));
        }
        let token = rs256(&claims());
        assert_eq!(
            verifier.verify(&token).await,
            Err(AuthError::MissingClaim("aud"))
        );
    }

    #[tokio::test]
    async fn accepts_audience_array_containing_the_configured_one() {
        let mut config = inline_config().await;
        config.audience = vec![AUDIENCE.to_owned()];
        let verifier = JwtVerifier::new(config, http()).unwrap();
        let token = rs256(&with(
            claims(),
            "aud",
            json!(["https://other.test", AUDIENCE]),
        ));
        verifier.verify(&token).await.unwrap();
        let token = rs256(&with(claims(), "aud", json!(AUDIENCE)));
        verifier.verify(&token).await.unwrap();
    }

    #[tokio::test]
    async fn audience_is_not_checked_when_not_configured() {
        let token = rs256(&with(claims(), "aud", json!("https://anything.test")));
        inline_verifier().await.verify(&token).await.unwrap();
    }

    #[tokio::test]
    async fn rejects_azp_not_in_list() {
        let mut config = inline_config().await;
        config.authorized_parties = vec![APP.to_owned()];
        let verifier = JwtVerifier::new(config, http()).unwrap();
        for azp in [json!("https://evil.test"), json!([APP])] {
            let token = rs256(&with(claims(), "azp", azp));
            assert_eq!(
                verifier.verify(&token).await,
                Err(AuthError::WrongAuthorizedParty)
            );
        }
        let claims = verifier
            .verify(&rs256(&with(claims(), "azp", json!(APP))))
            .await
            .unwrap();
        assert_eq!(claims.azp.as_deref(), Some(APP));
    }

    #[tokio::test]
    async fn rejects_missing_azp_when_list_configured() {
        let mut config = inline_config().await;
        config.authorized_parties = vec![APP.to_owned()];
        let token = rs256(&claims());
        assert_eq!(
            verify_with(config, &token).await,
            Err(AuthError::MissingClaim("azp"))
        );
    }

    #[tokio::test]
    async fn rejects_tampered_signature() {
        let verifier = inline_verifier().await;
        for token in [rs256(&claims()), es256(&claims())] {
            let (message, signature) = token.rsplit_once('.').unwrap();
            let mut signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
            signature[10] ^= 0x01;
            let tampered = format!("{message}.{}", b64(&signature));
            assert_eq!(
                verifier.verify(&tampered).await,
                Err(AuthError::BadSignature)
            );
        }
    }

    #[tokio::test]
    async fn rejects_tampered_claims() {
        let verifier = inline_verifier().await;
        let token = rs256(&claims());
        let parts: Vec<&str> = token.split('.').collect();
        let forged = b64(with(claims(), "sub", json!("user_admin"))
            .to_string()
            .as_bytes());
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(
            verifier.verify(&tampered).await,
            Err(AuthError::BadSignature)
        );
    }

    #[tokio::test]
    async fn rejects_token_signed_by_another_key_under_a_known_kid() {
        let token = sign(
            Algorithm::RS256,
            Some("rsa-1"),
            &claims(),
            &keys().rsa2.encoding,
        );
        assert_eq!(
            inline_verifier().await.verify(&token).await,
            Err(AuthError::BadSignature)
        );
    }

    // ---- JWKS fetching and caching ----

    #[tokio::test]
    async fn first_verify_fetches_then_cache_is_used() {
        let server = serve_jwks(jwks(&[&keys().rsa.jwk, &keys().ec.jwk])).await;
        let verifier = JwtVerifier::new(server.config(), http()).unwrap();
        assert_eq!(server.hits(), 0, "new() must not fetch");
        verifier.verify(&rs256(&claims())).await.unwrap();
        assert_eq!(server.hits(), 1);
        verifier.verify(&rs256(&claims())).await.unwrap();
        verifier.verify(&es256(&claims())).await.unwrap();
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn unknown_kid_with_no_refetch_allowed() {
        let server = serve_jwks(jwks(&[&keys().rsa.jwk])).await;
        let verifier = JwtVerifier::new(server.config(), http()).unwrap();
        verifier.verify(&rs256(&claims())).await.unwrap();
        assert_eq!(server.hits(), 1);
        assert_eq!(
            verifier.verify(&rs256_kid("rsa-9", &claims())).await,
            Err(AuthError::UnknownKey)
        );
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn unknown_kid_refetches_only_after_the_interval() {
        let server = serve_jwks(jwks(&[&keys().rsa.jwk])).await;
        let mut config = server.config();
        config.min_refetch_interval = Duration::from_millis(100);
        let verifier = JwtVerifier::new(config, http()).unwrap();
        verifier.verify(&rs256(&claims())).await.unwrap();
        assert_eq!(server.hits(), 1);

        let unknown = rs256_kid("rsa-9", &claims());
        assert_eq!(verifier.verify(&unknown).await, Err(AuthError::UnknownKey));
        assert_eq!(server.hits(), 1, "interval not elapsed: no refetch");

        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(verifier.verify(&unknown).await, Err(AuthError::UnknownKey));
        assert_eq!(server.hits(), 2, "interval elapsed: one refetch");
        assert_eq!(verifier.verify(&unknown).await, Err(AuthError::UnknownKey));
        assert_eq!(server.hits(), 2);
    }

    #[tokio::test]
    async fn rotated_key_is_picked_up_by_refetch() {
        let server = serve_jwks(jwks(&[&keys().rsa.jwk])).await;
        let mut config = server.config();
        config.min_refetch_interval = Duration::from_millis(20);
        let verifier = JwtVerifier::new(config, http()).unwrap();
        verifier.verify(&rs256(&claims())).await.unwrap();
        assert_eq!(server.hits(), 1);

        // The provider rotates: rsa-2 in, rsa-1 out.
        server.serve(jwks(&[&keys().rsa2.jwk]));
        tokio::time::sleep(Duration::from_millis(40)).await;
        let rotated = sign(
            Algorithm::RS256,
            Some("rsa-2"),
            &claims(),
            &keys().rsa2.encoding,
        );
        verifier.verify(&rotated).await.unwrap();
        assert_eq!(server.hits(), 2);
        verifier.verify(&rotated).await.unwrap();
        assert_eq!(server.hits(), 2);

        // The retired key no longer verifies once the JWKS that dropped it was fetched.
        assert_eq!(
            verifier.verify(&rs256(&claims())).await,
            Err(AuthError::UnknownKey)
        );
    }

    #[tokio::test]
    async fn inline_jwks_still_picks_up_rotation_from_the_url() {
        let server = serve_jwks(jwks(&[&keys().rsa.jwk, &keys().rsa2.jwk])).await;
        let mut config = server.config();
        config.inline_jwks = Some(jwks(&[&keys().rsa.jwk]));
        let verifier = JwtVerifier::new(config, http()).unwrap();
        verifier.verify(&rs256(&claims())).await.unwrap();
        assert_eq!(server.hits(), 0);
        let rotated = sign(
            Algorithm::RS256,
            Some("rsa-2"),
            &claims(),
            &keys().rsa2.encoding,
        );
        verifier.verify(&rotated).await.unwrap();
        assert_eq!(server.hits(), 1);
        // Rate limit applies from then on (default 60 s).
        assert_eq!(
            verifier.verify(&rs256_kid("rsa-9", &claims())).await,
            Err(AuthError::UnknownKey)
        );
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_unknown_kids_cause_at_most_one_fetch() {
        let server = serve_jwks(jwks(&[&keys().rsa.jwk])).await;
        server.delay(Duration::from_millis(200));
        let verifier = Arc::new(JwtVerifier::new(server.config(), http()).unwrap());
        let token = rs256_kid("rsa-unknown", &claims());
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let verifier = Arc::clone(&verifier);
                let token = token.clone();
                tokio::spawn(async move { verifier.verify(&token).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), Err(AuthError::UnknownKey));
        }
        assert!(server.hits() <= 1, "{} fetches", server.hits());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_cold_verifications_fetch_once() {
        let server = serve_jwks(jwks(&[&keys().rsa.jwk])).await;
        server.delay(Duration::from_millis(200));
        let verifier = Arc::new(JwtVerifier::new(server.config(), http()).unwrap());
        let token = rs256(&claims());
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let verifier = Arc::clone(&verifier);
                let token = token.clone();
                tokio::spawn(async move { verifier.verify(&token).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn server_down_cached_key_still_verifies() {
        let server = serve_jwks(jwks(&[&keys().rsa.jwk])).await;
        let mut config = server.config();
        config.min_refetch_interval = Duration::from_millis(10);
        let verifier = JwtVerifier::new(config, http()).unwrap();
        verifier.verify(&rs256(&claims())).await.unwrap();
        assert_eq!(server.hits(), 1);

        server.fail(true);
        tokio::time::sleep(Duration::from_millis(20)).await;
        verifier.verify(&rs256(&claims())).await.unwrap();
        assert_eq!(server.hits(), 1, "a cached kid never fetches");

        // An unknown kid is refused (401, not 503) while the provider is down: the issuer's
        // keys are in hand, so a foreign kid is the token's fault...
        assert_eq!(
            verifier.verify(&rs256_kid("rsa-9", &claims())).await,
            Err(AuthError::UnknownKey)
        );
        assert_eq!(server.hits(), 2);
        // ...and the failed fetch did not drop the cached keys.
        verifier.verify(&rs256(&claims())).await.unwrap();
    }

    #[tokio::test]
    async fn server_down_and_no_key_is_jwks_unavailable() {
        let mut config = JwtConfig::new(ISSUER);
        config.jwks_url = Some(closed_url().await);
        let verifier = JwtVerifier::new(config, http()).unwrap();
        assert_eq!(
            verifier.verify(&rs256(&claims())).await,
            Err(AuthError::JwksUnavailable)
        );

        // An HTTP error counts as down too, and the retry is rate limited.
        let server = serve_jwks(jwks(&[&keys().rsa.jwk])).await;
        server.fail(true);
        let verifier = JwtVerifier::new(server.config(), http()).unwrap();
        for _ in 0..3 {
            assert_eq!(
                verifier.verify(&rs256(&claims())).await,
                Err(AuthError::JwksUnavailable)
            );
        }
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn first_fetch_failure_is_retried_soon() {
        let server = serve_jwks(jwks(&[&keys().rsa.jwk])).await;
        server.fail(true);
        let mut config = server.config();
        config.min_refetch_interval = Duration::from_millis(50);
        let verifier = JwtVerifier::new(config, http()).unwrap();
        assert_eq!(
            verifier.verify(&rs256(&claims())).await,
            Err(AuthError::JwksUnavailable)
        );
        server.fail(false);
        tokio::time::sleep(Duration::from_millis(80)).await;
        verifier.verify(&rs256(&claims())).await.unwrap();
        assert_eq!(server.hits(), 2);
    }

    #[tokio::test]
    async fn bad_jwks_from_the_server_is_a_failed_fetch() {
        let server = serve_jwks("<html>oops</html>".to_owned()).await;
        let verifier = JwtVerifier::new(server.config(), http()).unwrap();
        assert_eq!(
            verifier.verify(&rs256(&claims())).await,
            Err(AuthError::JwksUnavailable)
        );
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn slow_jwks_endpoint_times_out() {
        let server = serve_jwks(jwks(&[&keys().rsa.jwk])).await;
        server.delay(Duration::from_secs(10));
        let verifier = JwtVerifier::new(server.config(), http()).unwrap();
        let started = Instant::now();
        assert_eq!(
            verifier.verify(&rs256(&claims())).await,
            Err(AuthError::JwksUnavailable)
        );
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(2900), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
    }

    // ---- errors and claims ----

    #[test]
    fn error_codes_are_distinct_snake_case_and_messages_are_sentences() {
        let all = [
            AuthError::MissingToken,
            AuthError::Malformed,
            AuthError::UnsupportedAlgorithm,
            AuthError::UnknownKey,
            AuthError::BadSignature,
            AuthError::Expired,
            AuthError::NotYetValid,
            AuthError::WrongIssuer,
            AuthError::WrongAudience,
            AuthError::WrongAuthorizedParty,
            AuthError::MissingClaim("sub"),
            AuthError::JwksUnavailable,
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(AuthError::code).collect();
        assert_eq!(codes.len(), all.len());
        assert_eq!(AuthError::Expired.code(), "token_expired");
        for error in &all {
            let code = error.code();
            assert!(
                code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code}"
            );
            let message = error.to_string();
            assert!(message.ends_with('.'), "{message}");
            assert!(
                message.chars().next().is_some_and(char::is_uppercase),
                "{message}"
            );
        }
        assert_eq!(
            AuthError::MissingClaim("azp").to_string(),
            "The token is missing the required `azp` claim."
        );
    }

    fn names(
        name: Option<&str>,
        given: Option<&str>,
        family: Option<&str>,
        first: Option<&str>,
        last: Option<&str>,
    ) -> Claims {
        Claims {
            sub: "user_1".to_owned(),
            iss: ISSUER.to_owned(),
            email: None,
            email_verified: None,
            name: name.map(str::to_owned),
            given_name: given.map(str::to_owned),
            family_name: family.map(str::to_owned),
            first_name: first.map(str::to_owned),
            last_name: last.map(str::to_owned),
            exp: None,
            nbf: None,
            azp: None,
            aud: Vec::new(),
        }
    }

    #[test]
    fn display_name_cases() {
        let cases = [
            (
                names(Some("Ann Lee"), Some("X"), Some("Y"), None, None),
                Some("Ann Lee"),
            ),
            (
                names(Some("  Ann Lee "), None, None, None, None),
                Some("Ann Lee"),
            ),
            (
                names(None, Some("Ann"), Some("Lee"), None, None),
                Some("Ann Lee"),
            ),
            (
                names(Some(""), Some(" Ann "), Some("Lee"), None, None),
                Some("Ann Lee"),
            ),
            (names(None, None, Some("Lee"), None, None), Some("Lee")),
            (names(None, Some("Ann"), None, None, None), Some("Ann")),
            (
                names(None, None, None, Some("Bo"), Some("Kim")),
                Some("Bo Kim"),
            ),
            (names(None, None, None, None, Some("Kim")), Some("Kim")),
            (names(None, None, None, Some("Bo"), Some("")), Some("Bo")),
            (names(None, None, None, None, None), None),
            (
                names(Some("   "), Some(""), Some("\t"), Some(" "), Some("\n")),
                None,
            ),
        ];
        for (claims, expected) in cases {
            assert_eq!(claims.display_name().as_deref(), expected, "{claims:?}");
        }
    }

    #[test]
    fn claims_deserialize_with_optional_fields_absent() {
        let claims: Claims =
            serde_json::from_value(json!({"sub": "user_1", "iss": ISSUER})).unwrap();
        assert_eq!(claims, names(None, None, None, None, None));
        // JSON null in Clerk templates ("{{user.last_name}}" for a user without one).
        let claims: Claims = serde_json::from_value(json!({
            "sub": "user_1", "iss": ISSUER, "first_name": "Bo", "last_name": null,
        }))
        .unwrap();
        assert_eq!(claims.display_name().as_deref(), Some("Bo"));
    }

    // ---- identity data ----

    #[tokio::test]
    async fn identity_claims_that_are_not_what_they_claim_are_dropped() {
        let verifier = inline_verifier().await;
        let token = rs256(&with(
            with(
                with(claims(), "name", json!("Ann\u{202E}eeL")),
                "given_name",
                json!("Ann"),
            ),
            "family_name",
            json!("Lee\u{200B}"),
        ));
        let verified = verifier.verify(&token).await.unwrap();
        assert_eq!(verified.name, None);
        assert_eq!(verified.family_name, None);
        assert_eq!(verified.display_name().as_deref(), Some("Ann"));

        let long = "x".repeat(201);
        let token = rs256(&with(
            with(claims(), "name", json!(long)),
            "first_name",
            json!("Bo"),
        ));
        let verified = verifier.verify(&token).await.unwrap();
        assert_eq!(verified.name, None);
        assert_eq!(verified.display_name().as_deref(), Some("Bo"));

        for email in [
            "not an address",
            "ann@localhost",
            "ann\u{202E}@example.com",
            "",
        ] {
            let verified = verifier
                .verify(&rs256(&with(claims(), "email", json!(email))))
                .await
                .unwrap();
            assert_eq!(verified.email, None, "{email:?}");
        }
        let verified = verifier
            .verify(&rs256(&with(claims(), "email", json!(" Ann@Example.com "))))
            .await
            .unwrap();
        assert_eq!(verified.email.as_deref(), Some("Ann@Example.com"));
    }

    #[tokio::test]
    async fn configured_claim_names_are_read_and_the_standard_ones_then_ignored() {
        let mut config = inline_config().await;
        config.claim_email = "https://example.com/email".to_owned();
        config.claim_email_verified = "https://example.com/email_verified".to_owned();
        config.claim_name = "https://example.com/name".to_owned();
        let verifier = JwtVerifier::new(config, http()).unwrap();
        // Standard claims (present in claims()) are not what was configured: ignored.
        let plain = verifier.verify(&rs256(&claims())).await.unwrap();
        assert_eq!(
            (plain.email, plain.email_verified, plain.name),
            (None, None, None)
        );
        let namespaced = with(
            with(
                with(
                    without(
                        without(without(claims(), "email"), "email_verified"),
                        "name",
                    ),
                    "https://example.com/email",
                    json!("Bo@Example.com"),
                ),
                "https://example.com/email_verified",
                json!(true),
            ),
            "https://example.com/name",
            json!("Bo Kim"),
        );
        let verified = verifier.verify(&rs256(&namespaced)).await.unwrap();
        assert_eq!(verified.email.as_deref(), Some("Bo@Example.com"));
        assert_eq!(verified.email_verified, Some(true));
        assert_eq!(verified.name.as_deref(), Some("Bo Kim"));
    }

    #[test]
    fn joined_names_are_display_text_too() {
        let first = "a".repeat(150);
        let last = "b".repeat(150);
        let claims = names(None, Some(&first), Some(&last), None, None);
        assert_eq!(claims.display_name(), None);
        let claims = names(None, Some(" Ann  Marie "), Some("Lee"), None, None);
        assert_eq!(claims.display_name().as_deref(), Some("Ann Marie Lee"));
    }

    #[tokio::test]
    async fn auth0_array_audience_is_accepted_and_another_api_is_refused() {
        let mut config = inline_config().await;
        config.audience = vec![AUDIENCE.to_owned()];
        let verifier = JwtVerifier::new(config, http()).unwrap();
        let auth0 = with(
            claims(),
            "aud",
            json!([AUDIENCE, "https://tenant.auth0.com/userinfo"]),
        );
        let verified = verifier.verify(&rs256(&auth0)).await.unwrap();
        // Kept for the profile fetch: `/userinfo` is asked only when `aud` names it.
        assert_eq!(
            verified.aud,
            vec![
                AUDIENCE.to_owned(),
                "https://tenant.auth0.com/userinfo".to_owned()
            ]
        );
        let single = verifier
            .verify(&rs256(&with(claims(), "aud", json!(AUDIENCE))))
            .await
            .unwrap();
        assert_eq!(single.aud, vec![AUDIENCE.to_owned()]);
        let other = with(
            claims(),
            "aud",
            json!([
                "https://other-api.tollgate.test",
                "https://tenant.auth0.com/userinfo"
            ]),
        );
        assert_eq!(
            verifier.verify(&rs256(&other)).await,
            Err(AuthError::WrongAudience)
        );
        assert_eq!(
            verifier.verify(&rs256(&claims())).await,
            Err(AuthError::MissingClaim("aud"))
        );
    }
}
