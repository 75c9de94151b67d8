//! Configuration, read once per cold start from the environment (the names in DESIGN.md).

use std::time::Duration;

use crate::auth::jwt::JwtConfig;
use crate::billing::prices::{PriceTable, TrialDays};

/// Default table name when `TABLE_NAME` is unset (local development).
pub const DEFAULT_TABLE_NAME: &str = "tollgate";

#[derive(Debug, Clone)]
pub struct Config {
    pub table_name: String,
    /// Local endpoint override (DynamoDB Local); `None` in AWS.
    pub dynamodb_endpoint: Option<String>,
    /// `None` when `JWT_ISSUER` is unset: user routes then answer 503 `auth_not_configured`.
    pub jwt: Option<JwtConfig>,
    /// Comma-separated hex SHA-256 digests of accepted service keys (`SERVICE_KEY_HASHES`).
    pub service_key_hashes: String,
    /// `None`: checkout and portal answer 503 `billing_not_configured`.
    pub stripe_secret_key: Option<String>,
    /// Comma-separated webhook signing secrets (several during a rotation).
    pub stripe_webhook_secrets: String,
    pub stripe_api_base: String,
    /// Base of checkout success/cancel and portal return URLs (the frontend).
    pub app_url: String,
    pub prices: PriceTable,
    /// Trial days per plan (`TRIAL_DAYS_<PLAN>`, 0 to 730, default 0: no trial).
    pub trial_days: TrialDays,
    /// Checkout accepts promotion codes (`STRIPE_ALLOW_PROMOTION_CODES`, `true`/`false`,
    /// default false).
    pub allow_promotion_codes: bool,
    pub rate_limits: crate::ratelimit::RateLimits,
    /// `kid:hex64,kid2:hex64` and the kid new writes use; unset: integrations answer 503.
    pub encryption_keys: Option<String>,
    pub encryption_active_key: Option<String>,
    /// In AWS: the JSON secret holding the values above (see `tollgate::secrets`); when set, the
    /// environment's secret values are not used.
    pub secrets_arn: Option<String>,
    /// How long secret values are cached before they are read again (`SECRETS_TTL_SECONDS`).
    pub secrets_ttl: Duration,
    /// How long values read earlier are served while refreshing the secret fails
    /// (`SECRETS_MAX_STALENESS_SECONDS`); `None`: 3 × `secrets_ttl`. Past it: 503.
    pub secrets_max_staleness: Option<Duration>,
    /// Local/test endpoint for Secrets Manager (`SECRETS_MANAGER_ENDPOINT`).
    pub secrets_manager_endpoint: Option<String>,
    /// Days a new or resent invitation stays acceptable (`INVITATION_TTL_DAYS`, 1 to 365).
    pub invitation_ttl_days: u32,
    /// Days a `past_due` subscription keeps its plan after its first failed payment
    /// (`PAST_DUE_GRACE_DAYS`, 0 to 90; see `tollgate::entitlements`).
    pub past_due_grace_days: u32,
    /// Days an audit event is kept (`AUDIT_RETENTION_DAYS`, 1 to 3650, default 400).
    pub audit_retention_days: u32,
    /// Clerk Backend API secret key (`CLERK_SECRET_KEY`), for profiles when tokens carry no
    /// email; from the secret (`clerkSecretKey`) when `SECRETS_ARN` is set.
    pub clerk_secret_key: Option<String>,
    /// The HMAC key organization API keys are hashed under (`API_KEY_PEPPER`, at least 32
    /// bytes); from the secret (`apiKeyPepper`) when `SECRETS_ARN` is set. Unset: API keys are
    /// refused with 503 `api_keys_not_configured`.
    pub api_key_pepper: Option<String>,
    /// `CLERK_API_BASE`, default [`crate::auth::profile::DEFAULT_CLERK_API_BASE`].
    pub clerk_api_base: String,
    /// Outbound webhook endpoints may be plain `http` to a loopback host (`localhost`,
    /// `127.0.0.0/8`, `::1`) (`WEBHOOK_ALLOW_LOOPBACK`, `true`/`false`, default false). Only for a
    /// local deployment: `tollgate-dev serve` and the tests turn it on (see
    /// [`crate::webhook_url`]).
    pub webhook_allow_loopback: bool,
}

/// Stripe's API, unless `STRIPE_API_BASE` points elsewhere (tests: a local stand-in).
pub const DEFAULT_STRIPE_API_BASE: &str = "https://api.stripe.com";
pub const DEFAULT_APP_URL: &str = "http://localhost:5173";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name} is not valid: {reason}")]
    Invalid { name: &'static str, reason: String },

    /// `JWT_ISSUER` without an audience or authorized party: every application of the identity
    /// provider's tenant could sign in here.
    #[error(
        "JWT_ISSUER is set but JWT_AUDIENCE and JWT_AUTHORIZED_PARTIES are both empty; set at least one \
         (Auth0: JWT_AUDIENCE=<your API identifier>; Clerk: JWT_AUTHORIZED_PARTIES=<your frontend \
         origins>) so that tokens minted for other applications of the same identity provider are refused"
    )]
    AudienceRequired,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let list = |name: &str| {
            get(name)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };

        let jwt = match get("JWT_ISSUER") {
            None => None,
            Some(issuer) => {
                let mut jwt = JwtConfig::new(issuer);
                jwt.jwks_url = get("JWT_JWKS_URL").or(jwt.jwks_url);
                jwt.inline_jwks = get("JWT_JWKS");
                jwt.audience = list("JWT_AUDIENCE");
                jwt.authorized_parties = list("JWT_AUTHORIZED_PARTIES");
                if jwt.audience.is_empty() && jwt.authorized_parties.is_empty() {
                    return Err(ConfigError::AudienceRequired);
                }
                if let Some(name) = get("JWT_CLAIM_EMAIL") {
                    jwt.claim_email = name;
                }
                if let Some(name) = get("JWT_CLAIM_EMAIL_VERIFIED") {
                    jwt.claim_email_verified = name;
                }
                if let Some(name) = get("JWT_CLAIM_NAME") {
                    jwt.claim_name = name;
                }
                if let Some(url) = get("JWT_USERINFO_URL") {
                    jwt.userinfo_url = url;
                }
                if let Some(seconds) = get("JWT_LEEWAY_SECONDS") {
                    let seconds = seconds.parse::<u64>().map_err(|_| ConfigError::Invalid {
                        name: "JWT_LEEWAY_SECONDS",
                        reason: "expected a whole number of seconds".into(),
                    })?;
                    jwt.leeway = Duration::from_secs(seconds);
                }
                Some(jwt)
            }
        };

        Ok(Self {
            table_name: get("TABLE_NAME").unwrap_or_else(|| DEFAULT_TABLE_NAME.to_owned()),
            dynamodb_endpoint: get("DYNAMODB_ENDPOINT"),
            jwt,
            service_key_hashes: get("SERVICE_KEY_HASHES").unwrap_or_default(),
            stripe_secret_key: get("STRIPE_SECRET_KEY"),
            stripe_webhook_secrets: get("STRIPE_WEBHOOK_SECRET").unwrap_or_default(),
            stripe_api_base: get("STRIPE_API_BASE")
                .unwrap_or_else(|| DEFAULT_STRIPE_API_BASE.to_owned()),
            app_url: get("APP_URL")
                .map(|url| url.trim_end_matches('/').to_owned())
                .unwrap_or_else(|| DEFAULT_APP_URL.to_owned()),
            secrets_arn: get("SECRETS_ARN"),
            secrets_ttl: match get("SECRETS_TTL_SECONDS") {
                Some(raw) => {
                    Duration::from_secs(raw.parse().map_err(|_| ConfigError::Invalid {
                        name: "SECRETS_TTL_SECONDS",
                        reason: "expected a whole number of seconds".into(),
                    })?)
                }
                None => crate::secrets::DEFAULT_TTL,
            },
            secrets_max_staleness: match get("SECRETS_MAX_STALENESS_SECONDS") {
                Some(raw) => Some(Duration::from_secs(raw.parse().map_err(|_| {
                    ConfigError::Invalid {
                        name: "SECRETS_MAX_STALENESS_SECONDS",
                        reason: "expected a whole number of seconds".into(),
                    }
                })?)),
                None => None,
            },
            secrets_manager_endpoint: get("SECRETS_MANAGER_ENDPOINT"),
            invitation_ttl_days: match get("INVITATION_TTL_DAYS") {
                Some(raw) => raw
                    .parse::<u32>()
                    .ok()
                    .filter(|days| (1..=365).contains(days))
                    .ok_or_else(|| ConfigError::Invalid {
                        name: "INVITATION_TTL_DAYS",
                        reason: "expected a whole number of days from 1 to 365".into(),
                    })?,
                None => crate::team::DEFAULT_INVITATION_TTL_DAYS,
            },
            past_due_grace_days: match get("PAST_DUE_GRACE_DAYS") {
                Some(raw) => parse_grace_days(&raw)?,
                None => crate::entitlements::DEFAULT_PAST_DUE_GRACE_DAYS,
            },
            audit_retention_days: match get("AUDIT_RETENTION_DAYS") {
                Some(raw) => raw
                    .parse::<u32>()
                    .ok()
                    .filter(|days| crate::store::audit::AUDIT_RETENTION_DAYS_RANGE.contains(days))
                    .ok_or_else(|| ConfigError::Invalid {
                        name: "AUDIT_RETENTION_DAYS",
                        reason: "expected a whole number of days from 1 to 3650".into(),
                    })?,
                None => crate::store::audit::DEFAULT_AUDIT_RETENTION_DAYS,
            },
            clerk_secret_key: get("CLERK_SECRET_KEY"),
            api_key_pepper: get("API_KEY_PEPPER"),
            clerk_api_base: get("CLERK_API_BASE")
                .unwrap_or_else(|| crate::auth::profile::DEFAULT_CLERK_API_BASE.to_owned()),
            encryption_keys: get("ENCRYPTION_KEYS"),
            encryption_active_key: get("ENCRYPTION_ACTIVE_KEY"),
            rate_limits: crate::ratelimit::RateLimits::from_lookup(get).map_err(|reason| {
                ConfigError::Invalid {
                    name: "RATE_LIMIT_*",
                    reason,
                }
            })?,
            prices: PriceTable::from_lookup(get),
            trial_days: TrialDays::from_lookup(get)
                .map_err(|(name, reason)| ConfigError::Invalid { name, reason })?,
            allow_promotion_codes: match get("STRIPE_ALLOW_PROMOTION_CODES") {
                Some(raw) => parse_bool(&raw).ok_or_else(|| ConfigError::Invalid {
                    name: "STRIPE_ALLOW_PROMOTION_CODES",
                    reason: format!("expected true or false (got \"{raw}\")"),
                })?,
                None => false,
            },
            webhook_allow_loopback: match get("WEBHOOK_ALLOW_LOOPBACK") {
                Some(raw) => parse_bool(&raw).ok_or_else(|| ConfigError::Invalid {
                    name: "WEBHOOK_ALLOW_LOOPBACK",
                    reason: format!("expected true or false (got \"{raw}\")"),
                })?,
                None => false,
            },
        })
    }
}

/// `PAST_DUE_GRACE_DAYS`: a whole number of days from 0 to
/// [`crate::entitlements::MAX_PAST_DUE_GRACE_DAYS`].
fn parse_grace_days(raw: &str) -> Result<u32, ConfigError> {
    let max = crate::entitlements::MAX_PAST_DUE_GRACE_DAYS;
    raw.parse::<u32>()
        .ok()
        .filter(|days| *days <= max)
        .ok_or_else(|| ConfigError::Invalid {
            name: "PAST_DUE_GRACE_DAYS",
            reason: format!(
                "expected a whole number of days from 0 to {max} (got \"{raw}\"); it is how long a past_due subscription keeps its plan"
            ),
        })
}

/// `true` or `false` (any case).
fn parse_bool(raw: &str) -> Option<bool> {
    if raw.eq_ignore_ascii_case("true") {
        Some(true)
    } else if raw.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn trials_and_promotion_codes_default_off_and_bad_values_are_named() {
        let defaults = config(&[]).unwrap();
        assert!(!defaults.allow_promotion_codes);
        assert_eq!(defaults.trial_days.of(crate::pricing::Plan::Starter), 0);
        let set = config(&[
            ("STRIPE_ALLOW_PROMOTION_CODES", "true"),
            ("TRIAL_DAYS_PROFESSIONAL", "14"),
        ])
        .unwrap();
        assert!(set.allow_promotion_codes);
        assert_eq!(set.trial_days.of(crate::pricing::Plan::Professional), 14);
        assert!(
            !config(&[("STRIPE_ALLOW_PROMOTION_CODES", "false")])
                .unwrap()
                .allow_promotion_codes
        );
        for bad in ["yes", "1", "on"] {
            let error = config(&[("STRIPE_ALLOW_PROMOTION_CODES", bad)]).unwrap_err();
            assert!(
                error.to_string().contains("STRIPE_ALLOW_PROMOTION_CODES"),
                "{bad}: {error}"
            );
        }
        let error = config(&[("TRIAL_DAYS_BUSINESS", "731")]).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("TRIAL_DAYS_BUSINESS"), "{text}");
        assert!(text.contains("0 to 730"), "{text}");
    }

    #[test]
    fn loopback_webhooks_default_off_and_bad_values_are_named() {
        assert!(!config(&[]).unwrap().webhook_allow_loopback);
        assert!(
            config(&[("WEBHOOK_ALLOW_LOOPBACK", "true")])
                .unwrap()
                .webhook_allow_loopback
        );
        assert!(
            !config(&[("WEBHOOK_ALLOW_LOOPBACK", "FALSE")])
                .unwrap()
                .webhook_allow_loopback
        );
        let error = config(&[("WEBHOOK_ALLOW_LOOPBACK", "yes")]).unwrap_err();
        assert!(
            error.to_string().contains("WEBHOOK_ALLOW_LOOPBACK"),
            "{error}"
        );
    }

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let config = config(&[]).unwrap();
        assert_eq!(config.table_name, "tollgate");
        assert_eq!(config.dynamodb_endpoint, None);
        assert!(config.jwt.is_none());
    }

    #[test]
    fn jwt_settings_are_read_and_lists_split() {
        let config = config(&[
            ("JWT_ISSUER", "https://clerk.example.com/"),
            ("JWT_AUDIENCE", ""),
            (
                "JWT_AUTHORIZED_PARTIES",
                " https://app.example.com , https://admin.example.com,",
            ),
            ("TABLE_NAME", "prod-table"),
        ])
        .unwrap();
        let jwt = config.jwt.unwrap();
        assert_eq!(jwt.issuer, "https://clerk.example.com/");
        assert_eq!(
            jwt.jwks_url.as_deref(),
            Some("https://clerk.example.com/.well-known/jwks.json")
        );
        assert!(jwt.audience.is_empty());
        assert_eq!(
            jwt.authorized_parties,
            vec!["https://app.example.com", "https://admin.example.com"]
        );
        assert_eq!(config.table_name, "prod-table");
    }

    #[test]
    fn secrets_max_staleness_is_read_and_named_when_bad() {
        assert_eq!(config(&[]).unwrap().secrets_max_staleness, None);
        let config_with = |value: &str| config(&[("SECRETS_MAX_STALENESS_SECONDS", value)]);
        assert_eq!(
            config_with("600").unwrap().secrets_max_staleness,
            Some(Duration::from_secs(600))
        );
        let error = config_with("10m").unwrap_err();
        assert!(error.to_string().contains("SECRETS_MAX_STALENESS_SECONDS"));
    }

    #[test]
    fn explicit_jwks_url_wins_and_bad_leeway_is_named() {
        let config = config(&[
            ("JWT_ISSUER", "https://t.auth0.com/"),
            ("JWT_AUDIENCE", "https://api.example.com"),
            ("JWT_JWKS_URL", "http://127.0.0.1:9/jwks"),
        ])
        .unwrap();
        assert_eq!(
            config.jwt.unwrap().jwks_url.as_deref(),
            Some("http://127.0.0.1:9/jwks")
        );
        let error = super::tests::config(&[
            ("JWT_ISSUER", "x"),
            ("JWT_AUDIENCE", "api"),
            ("JWT_LEEWAY_SECONDS", "soon"),
        ])
        .unwrap_err();
        assert!(error.to_string().contains("JWT_LEEWAY_SECONDS"));
    }

    #[test]
    fn an_issuer_needs_an_audience_or_authorized_parties() {
        for blank in [
            &[][..],
            &[("JWT_AUDIENCE", " "), ("JWT_AUTHORIZED_PARTIES", ", ,")][..],
        ] {
            let mut vars = vec![("JWT_ISSUER", "https://t.auth0.com/")];
            vars.extend_from_slice(blank);
            let error = config(&vars).unwrap_err();
            assert_eq!(error, ConfigError::AudienceRequired);
            let message = error.to_string();
            assert!(
                message.contains("JWT_AUDIENCE") && message.contains("JWT_AUTHORIZED_PARTIES"),
                "{message}"
            );
        }
        let auth0 = config(&[
            ("JWT_ISSUER", "https://t.auth0.com/"),
            ("JWT_AUDIENCE", "https://api.example.com"),
        ])
        .unwrap();
        assert_eq!(auth0.jwt.unwrap().audience, vec!["https://api.example.com"]);
        let clerk = config(&[
            ("JWT_ISSUER", "https://x.clerk.accounts.dev"),
            ("JWT_AUTHORIZED_PARTIES", "https://app.example.com"),
        ])
        .unwrap();
        assert!(clerk.jwt.unwrap().audience.is_empty());
        // Without an issuer nothing is required (user routes answer 503).
        assert!(config(&[("JWT_AUDIENCE", "")]).unwrap().jwt.is_none());
    }

    #[test]
    fn claim_names_default_to_the_standard_ones_and_accept_namespaced_uris() {
        let base = [
            ("JWT_ISSUER", "https://t.auth0.com/"),
            ("JWT_AUDIENCE", "https://api.example.com"),
        ];
        let jwt = config(&base).unwrap().jwt.unwrap();
        assert_eq!(
            (
                jwt.claim_email.as_str(),
                jwt.claim_email_verified.as_str(),
                jwt.claim_name.as_str()
            ),
            ("email", "email_verified", "name")
        );
        let mut vars = base.to_vec();
        vars.extend([
            ("JWT_CLAIM_EMAIL", " https://example.com/email "),
            (
                "JWT_CLAIM_EMAIL_VERIFIED",
                "https://example.com/email_verified",
            ),
            ("JWT_CLAIM_NAME", "https://example.com/name"),
        ]);
        let jwt = config(&vars).unwrap().jwt.unwrap();
        assert_eq!(jwt.claim_email, "https://example.com/email");
        assert_eq!(
            jwt.claim_email_verified,
            "https://example.com/email_verified"
        );
        assert_eq!(jwt.claim_name, "https://example.com/name");
        // Empty (the template's "") means the default.
        let mut vars = base.to_vec();
        vars.push(("JWT_CLAIM_EMAIL", ""));
        assert_eq!(config(&vars).unwrap().jwt.unwrap().claim_email, "email");
    }

    #[test]
    fn profile_sources_default_to_the_providers() {
        let base = [
            ("JWT_ISSUER", "https://tenant.auth0.com/"),
            ("JWT_AUDIENCE", "https://api.example.com"),
        ];
        let defaults = config(&base).unwrap();
        assert_eq!(
            defaults.jwt.unwrap().userinfo_url,
            "https://tenant.auth0.com/userinfo"
        );
        assert_eq!(defaults.clerk_api_base, "https://api.clerk.com");
        assert_eq!(defaults.clerk_secret_key, None);
        let mut vars = base.to_vec();
        vars.extend([
            ("JWT_USERINFO_URL", "http://127.0.0.1:9/userinfo"),
            ("CLERK_API_BASE", "http://127.0.0.1:9"),
            ("CLERK_SECRET_KEY", "sk_test_x"),
        ]);
        let set = config(&vars).unwrap();
        assert_eq!(set.jwt.unwrap().userinfo_url, "http://127.0.0.1:9/userinfo");
        assert_eq!(set.clerk_api_base, "http://127.0.0.1:9");
        assert_eq!(set.clerk_secret_key.as_deref(), Some("sk_test_x"));
    }

    #[test]
    fn invitation_ttl_defaults_to_seven_days_and_bad_values_are_named() {
        assert_eq!(config(&[]).unwrap().invitation_ttl_days, 7);
        assert_eq!(
            config(&[("INVITATION_TTL_DAYS", "30")])
                .unwrap()
                .invitation_ttl_days,
            30
        );
        for bad in ["0", "366", "-1", "a week"] {
            let error = config(&[("INVITATION_TTL_DAYS", bad)]).unwrap_err();
            assert!(error.to_string().contains("INVITATION_TTL_DAYS"), "{bad}");
        }
    }

    #[test]
    fn audit_retention_defaults_to_400_days_and_bad_values_are_named() {
        assert_eq!(config(&[]).unwrap().audit_retention_days, 400);
        assert_eq!(
            config(&[("AUDIT_RETENTION_DAYS", "90")])
                .unwrap()
                .audit_retention_days,
            90
        );
        for bad in ["0", "3651", "-1", "a year"] {
            let error = config(&[("AUDIT_RETENTION_DAYS", bad)]).unwrap_err();
            assert!(error.to_string().contains("AUDIT_RETENTION_DAYS"), "{bad}");
        }
    }

    #[test]
    fn past_due_grace_defaults_to_seven_days_and_bad_values_are_named() {
        assert_eq!(config(&[]).unwrap().past_due_grace_days, 7);
        for (raw, days) in [("0", 0), ("14", 14), ("90", 90)] {
            assert_eq!(
                config(&[("PAST_DUE_GRACE_DAYS", raw)])
                    .unwrap()
                    .past_due_grace_days,
                days
            );
        }
        for bad in ["-1", "91", "7.5", "seven", "1e3"] {
            let error = config(&[("PAST_DUE_GRACE_DAYS", bad)]).unwrap_err();
            let text = error.to_string();
            assert!(text.contains("PAST_DUE_GRACE_DAYS"), "{bad}: {text}");
            assert!(text.contains("0 to 90"), "{bad}: {text}");
        }
    }
}
