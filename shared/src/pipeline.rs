//! The request pipeline every function, the dev gateway and the tests run:
//! route → authenticate → load user → tenant → permission → handler → JSON.

use std::sync::Arc;

use http::{HeaderValue, Method, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use tracing::Instrument;

use crate::auth::api_key::{self, Pepper};
use crate::auth::jwt::{AuthError, Claims, JwtVerifier};
use crate::auth::service_key::ServiceKeys;
use crate::billing::signature::WebhookSecrets;
use crate::config::Config;
use crate::http::ApiError;
use crate::ratelimit::{Bucket, LimiterFailure, RateStatus};
use crate::rbac::{self, Decision};
use crate::routes::{self, Access, Function, Operation, PathParams, Route, RouteMatch};
use crate::secrets::{SecretSource, SecretValues};
use crate::store::api_keys::ApiKeyLookup;
use crate::store::{Store, StoreError, TenantId, UserRecord};

/// Everything a request needs, built once per cold start and shared by warm invocations.
pub struct AppState {
    pub config: Config,
    pub store: Store,
    /// `None` when no issuer is configured: user routes answer 503 `auth_not_configured`.
    pub verifier: Option<JwtVerifier>,
    /// HTTPS client for profile fetches from the identity provider (shared with the verifier's).
    pub http: reqwest::Client,
    /// The secret values: the JSON secret of `SECRETS_ARN` (refreshed after a TTL) or the
    /// environment.
    secret_source: SecretSource,
    /// What was built from the current secret values, rebuilt when they change.
    derived: tokio::sync::RwLock<Option<(Arc<SecretValues>, Arc<Secrets>)>>,
}

/// Clients and checkers built from the secret values.
pub struct Secrets {
    /// `None` without a Stripe key: checkout and portal answer 503 `billing_not_configured`.
    /// Never printed or logged; the functions that call Stripe build their client from it.
    pub stripe_secret_key: Option<String>,
    pub webhook_secrets: WebhookSecrets,
    pub service_keys: ServiceKeys,
    /// Integration credentials' key ring; `None` without one: integrations answer 503.
    pub keyring: Option<crate::crypto::KeyRing>,
    /// Clerk Backend API key, for profiles of tokens without an email.
    pub clerk_secret_key: Option<String>,
    /// The HMAC key of organization API keys; `None`: keys are refused with 503
    /// `api_keys_not_configured` and none can be created.
    pub api_key_pepper: Option<Pepper>,
    /// A client the function built from these values (Stripe's), kept until the values change.
    client: std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>,
}

impl Secrets {
    fn build(values: &SecretValues) -> Result<Self, StartupError> {
        Ok(Self {
            stripe_secret_key: values.stripe_secret_key.clone(),
            webhook_secrets: WebhookSecrets::parse(&values.stripe_webhook_secrets),
            service_keys: ServiceKeys::from_hex_list(&values.service_key_hashes)?,
            keyring: values.encryption_keys.clone(),
            clerk_secret_key: values.clerk_secret_key.clone(),
            api_key_pepper: values.api_key_pepper.clone(),
            client: std::sync::OnceLock::new(),
        })
    }

    /// The client of type `T` built from these values: built by `build` on the first call (the
    /// functions that never call for one never pay for it), then shared by every request until
    /// the secret values change. A function keeps one client type here.
    pub fn client<T, E>(&self, build: impl FnOnce(&Self) -> Result<T, E>) -> Result<T, E>
    where
        T: Clone + Send + Sync + 'static,
    {
        if let Some(client) = self.client.get().and_then(|c| c.downcast_ref::<T>()) {
            return Ok(client.clone());
        }
        let built = build(self)?;
        // Two first requests at once may both build; either client works, one is kept.
        let kept = self.client.get_or_init(|| Box::new(built.clone()));
        Ok(kept.downcast_ref::<T>().cloned().unwrap_or(built))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("JWT configuration is not valid: {0}")]
    Jwks(#[from] crate::auth::jwt::JwksError),
    #[error("SERVICE_KEY_HASHES is not valid: {0}")]
    ServiceKeys(#[from] crate::auth::service_key::ServiceKeyConfigError),
    #[error("ENCRYPTION_KEYS / ENCRYPTION_ACTIVE_KEY are not valid: {0}")]
    Encryption(#[from] crate::crypto::CryptoConfigError),
    #[error("API_KEY_PEPPER is not valid: {0}")]
    ApiKeyPepper(#[from] crate::auth::api_key::PepperTooShort),
    #[error(transparent)]
    HttpClient(#[from] crate::trust::HttpClientError),
    /// A setting only one function reads (the notifier's), named by that function's own error.
    #[error("{0}")]
    Function(String),
}

impl AppState {
    /// Reads the environment and builds clients. Does no network I/O, so a cold start never
    /// waits on an unreachable dependency (the secret is read on the first request that needs
    /// it); a wrong setting fails here, at init, with its name.
    pub async fn from_env() -> Result<Arc<Self>, StartupError> {
        let config = Config::from_env()?;
        let store = Store::connect(&config).await;
        Self::from_config(config, store).await
    }

    /// The state for `config`: secrets from `SECRETS_ARN` when set, else from `config` itself.
    pub async fn from_config(config: Config, store: Store) -> Result<Arc<Self>, StartupError> {
        match config.secrets_arn.clone() {
            Some(arn) => {
                let client = crate::secrets::secrets_manager_client(
                    config.secrets_manager_endpoint.as_deref(),
                )
                .await;
                let ttl = config.secrets_ttl;
                let max_staleness = config
                    .secrets_max_staleness
                    .unwrap_or_else(|| crate::secrets::default_max_staleness(ttl));
                Self::with_source(
                    config,
                    store,
                    SecretSource::secrets_manager(client, arn, ttl)
                        .with_max_staleness(max_staleness),
                )
            }
            None => Self::new(config, store),
        }
    }

    /// The state with secret values from `config` (the environment): checked here, at init.
    pub fn new(config: Config, store: Store) -> Result<Arc<Self>, StartupError> {
        let values = SecretValues {
            stripe_secret_key: config.stripe_secret_key.clone(),
            clerk_secret_key: config.clerk_secret_key.clone(),
            api_key_pepper: config
                .api_key_pepper
                .as_deref()
                .map(Pepper::new)
                .transpose()?,
            stripe_webhook_secrets: config.stripe_webhook_secrets.clone(),
            service_key_hashes: config.service_key_hashes.clone(),
            encryption_keys: match &config.encryption_keys {
                Some(keys) => Some(crate::crypto::KeyRing::from_env_strings(
                    keys,
                    config.encryption_active_key.as_deref().unwrap_or_default(),
                )?),
                None => None,
            },
        };
        let secrets = Secrets::build(&values)?;
        let values = Arc::new(values);
        let state = Self::with_source(config, store, SecretSource::fixed((*values).clone()))?;
        // Fixed values never change: build what depends on them once, now.
        if let Ok(mut derived) = state.derived.try_write() {
            *derived = Some((values, Arc::new(secrets)));
        }
        Ok(state)
    }

    pub fn with_source(
        config: Config,
        store: Store,
        secret_source: SecretSource,
    ) -> Result<Arc<Self>, StartupError> {
        crate::trust::install_ring_defaults();
        let http = crate::trust::reqwest_client(crate::auth::jwt::JWKS_FETCH_TIMEOUT)?;
        let verifier = match &config.jwt {
            Some(jwt) => Some(JwtVerifier::new(jwt.clone(), http.clone())?),
            None => None,
        };
        Ok(Arc::new(Self {
            config,
            store,
            verifier,
            http,
            secret_source,
            derived: tokio::sync::RwLock::new(None),
        }))
    }

    /// The current secrets (re-read after the TTL when they come from Secrets Manager); 503 when
    /// they cannot be read and none were read before.
    pub async fn secrets(&self) -> Result<Arc<Secrets>, ApiError> {
        let values = self.secret_source.current().await.map_err(|error| {
            tracing::error!(kind = error.kind(), "secrets could not be read");
            ApiError::unavailable(
                "secrets_unavailable",
                "Configuration secrets could not be read; try again shortly.",
            )
        })?;
        if let Some((seen, secrets)) = self.derived.read().await.as_ref()
            && Arc::ptr_eq(seen, &values)
        {
            return Ok(secrets.clone());
        }
        let secrets = Arc::new(Secrets::build(&values).map_err(|error| {
            tracing::error!(%error, "secret values are not usable");
            ApiError::unavailable(
                "secrets_unavailable",
                "Configuration secrets are not usable; the operators have been told.",
            )
        })?);
        *self.derived.write().await = Some((values, secrets.clone()));
        Ok(secrets)
    }
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A person signed in with the identity provider.
    User(Box<Claims>),
    /// A back-end service holding one of the configured service keys.
    Service,
    /// An organization API key that verified and has not expired.
    ApiKey(Box<ApiKeyLookup>),
}

/// An organization API key calling, as a handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyCaller {
    pub id: String,
    pub role: crate::rbac::Role,
}

/// The `iss` of the claims an organization API key's caller carries (no token was verified).
pub const API_KEY_ISSUER: &str = "tollgate:api-key";

/// What a handler knows about its caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// A person's verified token claims; for an organization API key, `sub` is
    /// `apikey:<id>` and `iss` is [`API_KEY_ISSUER`], nothing else.
    pub claims: Claims,
    /// The stored user; `None` on `GET /api/me` (which creates it) and for API keys.
    pub user: Option<UserRecord>,
    /// The caller's organization: from their stored user record, or the organization the API
    /// key was created in (never from the request).
    pub tenant: Option<TenantId>,
    /// `Some` when an organization API key is calling.
    pub api_key: Option<ApiKeyCaller>,
    /// The caller's organization as the pipeline read it during this request (strongly
    /// consistent; for an API key, to check its entitlement), so [`organization_of`] needs no
    /// second read. For people on tenant routes too (a deleted organization is refused there), but
    /// `None` on `DELETE /api/organization` and on routes for any signed-in person.
    pub organization: Option<crate::store::OrganizationRecord>,
}

/// What a handler returns: its response, or the error the pipeline turns into a JSON answer.
pub type HandlerResult = Result<Response<Body>, ApiError>;

/// A handler's future, boxed so that every handler has the one [`Handler`] type.
pub type HandlerFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = HandlerResult> + Send + 'a>>;

/// A route's handler: a plain function pointer, so the pipeline is compiled once, here, and a
/// function's crate adds only its own handlers.
pub type Handler = for<'a> fn(&'a Invocation<'a>) -> HandlerFuture<'a>;

/// One request as a handler sees it, once the pipeline has authenticated and authorized it.
pub struct Invocation<'a> {
    pub state: &'a AppState,
    pub request: &'a Request,
    /// `None` on routes without a signed-in user (Stripe's webhook, service-key routes).
    pub caller: Option<Caller>,
    /// The route template's `{name}` captures.
    pub params: PathParams,
}

impl Invocation<'_> {
    /// The signed-in caller; a route without one never reaches a handler that asks.
    pub fn caller(&self) -> Result<&Caller, ApiError> {
        self.caller.as_ref().ok_or_else(ApiError::internal)
    }

    pub fn body(&self) -> &Body {
        self.request.body()
    }
}

/// The routes one function serves and their handlers: each function crate's `HANDLERS`. A Lambda
/// binary serves its own; the dev gateway and the tests serve every function's.
pub struct FunctionHandlers {
    pub function: Function,
    pub handlers: &'static [(Operation, Handler)],
}

impl FunctionHandlers {
    pub fn handler(&self, operation: Operation) -> Option<Handler> {
        self.handlers
            .iter()
            .find(|(op, _)| *op == operation)
            .map(|(_, handler)| *handler)
    }

    /// Routes of this function in the route table with no handler here, and handlers here for
    /// operations the route table gives this function no route for. Both empty when complete.
    pub fn mismatches(&self) -> (Vec<Operation>, Vec<Operation>) {
        let routed: Vec<Operation> = routes::routes_of(self.function)
            .map(|route| route.operation)
            .collect();
        let missing = routed
            .iter()
            .copied()
            .filter(|op| self.handler(*op).is_none())
            .collect();
        let extra = self
            .handlers
            .iter()
            .map(|(op, _)| *op)
            .filter(|op| !routed.contains(op))
            .collect();
        (missing, extra)
    }
}

/// Handles one request with the routes and handlers of `served`: one function's (a Lambda binary)
/// or every function's (the dev gateway, the tests).
pub async fn handle(
    state: &AppState,
    served: &[&FunctionHandlers],
    request: Request,
) -> Response<Body> {
    let request_id = request_id(&request);
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        function = match served {
            [one] => one.function.name(),
            _ => "dev-gateway",
        },
        method = %request.method(),
        route = tracing::field::Empty,
        organization_id = tracing::field::Empty,
        api_key_id = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    async move {
        let mut rate: Option<RateStatus> = None;
        let mut response = match route_and_run(state, served, &request, &mut rate).await {
            Ok(response) => response,
            Err(error) => {
                if error.status.is_server_error() {
                    tracing::error!(code = error.code, "request failed");
                } else {
                    tracing::info!(code = error.code, "request refused");
                }
                error.into_response()
            }
        };
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-request-id", value);
        }
        if let Some(rate) = rate {
            rate_headers(&mut response, rate);
        }
        tracing::Span::current().record("status", response.status().as_u16());
        tracing::info!("request done");
        response
    }
    .instrument(span)
    .await
}

async fn route_and_run(
    state: &AppState,
    served: &[&FunctionHandlers],
    request: &Request,
    rate: &mut Option<RateStatus>,
) -> Result<Response<Body>, ApiError> {
    let path = request.uri().path();
    let candidates = routes::routes()
        .iter()
        .filter(|route| served.iter().any(|f| f.function == route.function));
    let found = routes::match_route(candidates, request.method(), path);
    let (route, params) = match found {
        RouteMatch::Found(route, params) => (route, params),
        RouteMatch::MethodNotAllowed(allowed) => {
            let allow = allowed
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            let mut response = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} is not allowed here; use {allow}.", request.method()),
            )
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            return Ok(response);
        }
        RouteMatch::NotFound => {
            return Err(ApiError::not_found(
                "route_not_found",
                format!("There is no route {path}."),
            ));
        }
    };
    tracing::Span::current().record("route", route.path);

    // Stripe authenticates by signature, checked by the webhook handler on the raw body.
    if route.access == Access::Stripe {
        return run(state, served, route, request, None, params).await;
    }

    let principal = match authenticate(state, request).await {
        Ok(principal) => principal,
        Err(error) if error.status == StatusCode::UNAUTHORIZED => {
            // Only a failed credential is counted against its source, so a valid one is never
            // answered 429 because of other requests from its IP.
            if let Some(bucket) = unauthorized_bucket(error.code) {
                count(
                    state,
                    bucket,
                    &crate::ratelimit::ip_subject(&source_ip(request)),
                    rate,
                )
                .await?;
            }
            return Err(error);
        }
        Err(error) => return Err(error),
    };
    let principal = match principal {
        Principal::ApiKey(key) => {
            return run_with_api_key(state, served, route, request, params, *key, rate).await;
        }
        other => other,
    };
    if route.access == Access::Service {
        return match principal {
            Principal::Service => run(state, served, route, request, None, params).await,
            Principal::User(_) | Principal::ApiKey(_) => Err(ApiError::forbidden(
                "service_key_required",
                "This route is for Tollgate's back-end services and needs a service key, not a user token.",
            )),
        };
    }
    let Principal::User(claims) = principal else {
        return Err(ApiError::forbidden(
            "user_token_required",
            "This route needs a signed-in user's token, not a service key.",
        ));
    };
    let claims = *claims;
    count(state, Bucket::User, &claims.sub, rate).await?;
    if matches!(
        route.operation,
        Operation::Checkout
            | Operation::BillingPortal
            | Operation::CreateIntegration
            | Operation::CreateApiKey
            | Operation::CreateWebhookEndpoint
    ) {
        count(state, Bucket::Sensitive, &claims.sub, rate).await?;
    }

    let user = match route.operation {
        // GET /api/me creates the user on first sign-in, so it loads the user itself.
        Operation::GetMe => None,
        _ => Some(load_user(&state.store, &claims.sub).await?),
    };
    let tenant = user.as_ref().and_then(UserRecord::tenant);
    if let Some(tenant) = &tenant {
        tracing::Span::current().record("organization_id", tenant.as_str());
    }

    let required: &[rbac::Permission] = match &route.access {
        Access::Permission(permission) => std::slice::from_ref(permission),
        Access::AnyOf(permissions) => permissions,
        _ => &[],
    };
    if !required.is_empty() {
        let user = user.as_ref().ok_or_else(ApiError::internal)?;
        let role = match (&tenant, user.role) {
            (Some(_), Some(role)) => role,
            _ => return Err(organization_required()),
        };
        if !required
            .iter()
            .any(|p| rbac::check(role, *p) == Decision::Allowed)
        {
            let names = required
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(" or ");
            return Err(ApiError::forbidden(
                "forbidden",
                format!("Your role {role} does not have the permission {names}."),
            ));
        }
    }

    // A member of a deleted organization (its job has not detached them yet) reads and changes
    // nothing of it: to them it is gone, as to everyone else. Only `DELETE /api/organization`
    // goes on, so that sending it again nudges a stalled job.
    let organization = match &tenant {
        Some(tenant)
            if !required.is_empty()
                && !matches!(route.operation, Operation::DeleteOrganization) =>
        {
            let organization = state
                .store
                .get_organization(tenant)
                .await
                .map_err(store_error)?;
            Some(organization.ok_or_else(organization_required)?)
        }
        _ => None,
    };

    // Invitations are limited per organization, and only once the inviter's role allows them (a
    // member without the permission cannot use up the organization's allowance).
    if matches!(
        route.operation,
        Operation::InviteMember | Operation::ResendInvitation
    ) && let Some(tenant) = &tenant
    {
        count(state, Bucket::Invitations, tenant.as_str(), rate).await?;
    }

    let caller = Caller {
        claims,
        user,
        tenant,
        api_key: None,
        organization,
    };
    run(state, served, route, request, Some(caller), params).await
}

/// The rest of the pipeline for an organization API key: counted against its own limit; refused
/// on routes for people and for services; its organization must exist and be entitled to
/// `apiAccess` (else 403 `plan_required`, the key kept); the role check of a member with the
/// key's role, minus what keys may never do; then its use recorded, at most once a minute.
async fn run_with_api_key(
    state: &AppState,
    served: &[&FunctionHandlers],
    route: &Route,
    request: &Request,
    params: PathParams,
    key: ApiKeyLookup,
    rate: &mut Option<RateStatus>,
) -> HandlerResult {
    let span = tracing::Span::current();
    span.record("api_key_id", key.id.as_str());
    // Every authenticated request of the key counts, refused ones included.
    count(state, Bucket::ApiKey, &key.id, rate).await?;
    let required: &[rbac::Permission] = match &route.access {
        Access::Permission(permission) => std::slice::from_ref(permission),
        Access::AnyOf(permissions) => permissions,
        Access::Service => {
            return Err(ApiError::forbidden(
                "service_key_required",
                "This route is for Tollgate's back-end services and needs a service key, not an organization API key.",
            ));
        }
        Access::SignedIn | Access::Stripe => {
            return Err(ApiError::forbidden(
                "user_token_required",
                "This route is for a signed-in person and needs their token; an organization API key cannot call it.",
            ));
        }
    };
    if matches!(
        route.operation,
        Operation::Checkout | Operation::BillingPortal | Operation::CreateIntegration
    ) {
        count(
            state,
            Bucket::Sensitive,
            &format!("apikey:{}", key.id),
            rate,
        )
        .await?;
    }

    let tenant = key.tenant();
    let Some(organization) = state
        .store
        .get_organization(&tenant)
        .await
        .map_err(store_error)?
    else {
        tracing::info!(reason = "organization_gone", "credential rejected");
        return Err(ApiError::unauthorized(
            "invalid_token",
            "This API key's organization no longer exists.",
        ));
    };
    span.record("organization_id", tenant.as_str());
    let entitlement = entitlement_of(state, &organization);
    if !entitlement.plan_granted.is_some_and(|plan| {
        crate::pricing::plan_has_feature(plan, crate::pricing::Feature::ApiAccess)
    }) {
        return Err(plan_required(&entitlement));
    }

    if !required
        .iter()
        .any(|p| rbac::check_api_key(key.role, *p) == Decision::Allowed)
    {
        let names = required
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(" or ");
        let message = if required.iter().all(|p| !rbac::key_may_use(*p)) {
            format!(
                "Organization API keys cannot use {names} (keys, members, billing, webhook endpoints and deleting the organization are left to signed-in people)."
            )
        } else {
            format!(
                "This API key's role {} does not have the permission {names}.",
                key.role
            )
        };
        return Err(ApiError::forbidden("forbidden", message));
    }

    // Only a use that passed every check is recorded, so a refused request writes nothing.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if let Err(error) = state.store.record_api_key_use(&key, now).await {
        // Only the `lastUsedAt` bookkeeping failed; the request itself is authentic.
        tracing::warn!(%error, "the API key's last use could not be recorded");
    }

    let caller = Caller {
        claims: Claims {
            sub: format!("apikey:{}", key.id),
            iss: API_KEY_ISSUER.to_owned(),
            ..Claims::default()
        },
        user: None,
        tenant: Some(tenant),
        api_key: Some(ApiKeyCaller {
            id: key.id.clone(),
            role: key.role,
        }),
        organization: Some(organization),
    };
    run(state, served, route, request, Some(caller), params).await
}

/// Runs the handler `served` has for `route`.
async fn run(
    state: &AppState,
    served: &[&FunctionHandlers],
    route: &Route,
    request: &Request,
    caller: Option<Caller>,
    params: PathParams,
) -> HandlerResult {
    let Some(handler) = served
        .iter()
        .find(|f| f.function == route.function)
        .and_then(|f| f.handler(route.operation))
    else {
        tracing::error!(operation = ?route.operation, "no handler for a served route");
        return Err(ApiError::internal());
    };
    let invocation = Invocation {
        state,
        request,
        caller,
        params,
    };
    handler(&invocation).await
}

/// Who the caller is in an audit event: their API key's id, else their stored user's id. A route
/// with neither (a service key) never reaches an audited user route; it answers 500 rather than
/// write an event without an actor.
pub fn audit_actor(caller: &Caller) -> Result<crate::store::audit::AuditActor, ApiError> {
    use crate::store::audit::AuditActor;
    match (&caller.api_key, &caller.user) {
        (Some(key), _) => Ok(AuditActor::api_key(&key.id)),
        (None, Some(user)) => Ok(AuditActor::user(&user.id)),
        (None, None) => Err(ApiError::internal()),
    }
}

/// The caller's tenant: tenant routes only run for members (the pipeline checked it).
pub fn tenant_of(caller: &Caller) -> Result<&TenantId, ApiError> {
    caller.tenant.as_ref().ok_or_else(organization_required)
}

/// The caller's organization record (the one the pipeline read during this request, if it did);
/// 400 `organization_required` when it is gone.
pub async fn organization_of(
    state: &AppState,
    caller: &Caller,
) -> Result<crate::store::OrganizationRecord, ApiError> {
    if let Some(organization) = &caller.organization {
        return Ok(organization.clone());
    }
    state
        .store
        .get_organization(tenant_of(caller)?)
        .await
        .map_err(store_error)?
        .ok_or_else(organization_required)
}

/// For a write that moves the caller into another organization (founding one, accepting an
/// invitation): the organization they still name although it is gone (deleted, its deletion job
/// not yet at them), which that write may replace; `None` when they name none. While the one they
/// name exists, `already_member()`.
pub async fn gone_tenant<'a>(
    state: &AppState,
    caller: &'a Caller,
    already_member: impl FnOnce() -> ApiError,
) -> Result<Option<&'a TenantId>, ApiError> {
    let Some(current) = &caller.tenant else {
        return Ok(None);
    };
    match state
        .store
        .get_organization(current)
        .await
        .map_err(store_error)?
    {
        Some(_) => Err(already_member()),
        None => Ok(Some(current)),
    }
}

/// What `organization` is entitled to now, with this deployment's `PAST_DUE_GRACE_DAYS`.
pub fn entitlement_of(
    state: &AppState,
    organization: &crate::store::OrganizationRecord,
) -> crate::entitlements::Entitlement {
    crate::entitlements::of_organization(
        organization,
        time::OffsetDateTime::now_utc().unix_timestamp(),
        state.config.past_due_grace_days,
    )
}

/// 402 `plan_inactive`: the organization's subscription lapsed, so nobody new may join it.
pub fn plan_inactive(entitlement: &crate::entitlements::Entitlement) -> ApiError {
    ApiError::new(
        StatusCode::PAYMENT_REQUIRED,
        "plan_inactive",
        format!(
            "The organization's plan is inactive, so nobody new can join it; existing members stay. {}",
            entitlement.reason.message()
        ),
    )
}

/// 403 `plan_required`: the organization's entitlement does not include `apiAccess` (its plan
/// lacks it, or the subscription lapsed). Its API keys are kept and work again once it does.
pub fn plan_required(entitlement: &crate::entitlements::Entitlement) -> ApiError {
    ApiError::forbidden(
        "plan_required",
        format!(
            "The organization's plan does not include API access (apiAccess, on BUSINESS); its API keys are kept and work again once it does. {}",
            entitlement.reason.message()
        ),
    )
}

/// 503 `api_keys_not_configured`: no pepper (`API_KEY_PEPPER`, the secret's `apiKeyPepper`), so
/// no API key can be verified or made.
pub fn api_keys_not_configured() -> ApiError {
    ApiError::unavailable(
        "api_keys_not_configured",
        "Organization API keys are not configured on this deployment (the API key pepper, apiKeyPepper / API_KEY_PEPPER, is unset).",
    )
}

/// The `{id}` path parameter of `params`.
pub fn path_id(params: &PathParams) -> Result<&str, ApiError> {
    params
        .iter()
        .find(|(name, _)| *name == "id")
        .map(|(_, value)| value.as_str())
        .ok_or_else(ApiError::internal)
}

/// Counts the request against `bucket` for `subject`; over the limit → 429. A passing limiter
/// failure lets the request through (warned, with a count): the stage throttle still bounds
/// traffic. A limiter table that refuses the update (missing, not permitted) is a deployment
/// error: 503, logged at error.
async fn count(
    state: &AppState,
    bucket: Bucket,
    subject: &str,
    rate: &mut Option<RateStatus>,
) -> Result<(), ApiError> {
    let limit = state.config.rate_limits.limit(bucket);
    if limit.max == 0 {
        return Ok(());
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let status = match state
        .store
        .hit_rate_limit(bucket, subject, limit, now)
        .await
    {
        Ok(status) => status,
        Err(error) if error.failure == LimiterFailure::Transient => {
            let fail_opens = crate::ratelimit::count_fail_open();
            tracing::warn!(bucket = bucket.as_str(), fail_opens, %error, "rate limiter unavailable; request let through");
            return Ok(());
        }
        Err(error) => {
            tracing::error!(bucket = bucket.as_str(), %error, "rate limiter table refused the update: a deployment error");
            return Err(ApiError::unavailable(
                "store_unavailable",
                "Storage is unavailable right now; nothing was changed. Try again shortly.",
            ));
        }
    };
    *rate = Some(match *rate {
        Some(previous) => previous.stricter(status),
        None => status,
    });
    if status.limited {
        tracing::info!(bucket = bucket.as_str(), "rate limited");
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "Too many requests ({} per {} s for this kind of request); retry in {} s.",
                status.limit,
                limit.window.as_secs(),
                status.reset
            ),
        ));
    }
    Ok(())
}

fn rate_headers(response: &mut Response<Body>, rate: RateStatus) {
    let headers = response.headers_mut();
    for (name, value) in [
        ("ratelimit-limit", rate.limit),
        ("ratelimit-remaining", rate.remaining),
        ("ratelimit-reset", rate.reset),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
    if rate.limited {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(rate.reset));
    }
}

/// The per-IP limit a 401 with `code` is counted against: no credentials at all → the anonymous
/// limit; an authentic token that has expired → none (its holder only needs a fresh token, and
/// counting it would let one stale tab behind a shared NAT lock out everyone behind it);
/// anything else (forged, malformed, an unknown service key) → the failed-credential limit.
pub fn unauthorized_bucket(code: &str) -> Option<Bucket> {
    match code {
        "missing_token" => Some(Bucket::Anonymous),
        "token_expired" => None,
        _ => Some(Bucket::FailedAuth),
    }
}

/// The caller's IP as API Gateway saw it (the dev gateway fills in the same field).
fn source_ip(request: &Request) -> String {
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.http.source_ip.clone(),
        _ => None,
    }
    .unwrap_or_else(|| "unknown".to_owned())
}

/// The 400 a tenant route answers to a user who has not finished onboarding.
pub fn organization_required() -> ApiError {
    ApiError::bad_request(
        "organization_required",
        "Please complete onboarding: create or join an organization first.",
    )
}

/// Authenticates the `Authorization: Bearer` credential: a JWT (three dot-separated parts) is a
/// user token, anything else is tried as a service key.
pub async fn authenticate(state: &AppState, request: &Request) -> Result<Principal, ApiError> {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|value| value.to_str().map_err(|_| rejected(&AuthError::Malformed)))
        .transpose()?;
    let token = JwtVerifier::bearer_token(header).map_err(|e| rejected(&e))?;
    if api_key::looks_like_api_key(token) {
        return authenticate_api_key(state, token).await;
    }
    if token.split('.').count() != 3 {
        // A key that cannot be a service key (no `tgsk_` prefix, too short to hold 256 random
        // bits) is refused before any secret is read or hashed.
        if !crate::auth::service_key::is_well_formed(token) {
            tracing::info!(reason = "malformed_service_key", "credential rejected");
            return Err(ApiError::unauthorized(
                "invalid_token",
                "The bearer credential is neither a valid token nor a service key (tgsk_ followed by at least 256 random bits).",
            ));
        }
        let secrets = state.secrets().await?;
        if !secrets.service_keys.is_empty() && secrets.service_keys.verify(token) {
            return Ok(Principal::Service);
        }
        tracing::info!(reason = "unknown_service_key", "credential rejected");
        return Err(ApiError::unauthorized(
            "invalid_token",
            "The bearer credential is neither a valid token nor a known service key.",
        ));
    }
    let verifier = state.verifier.as_ref().ok_or_else(|| {
        ApiError::unavailable(
            "auth_not_configured",
            "Sign-in is not configured on this deployment (JWT_ISSUER is unset).",
        )
    })?;
    match verifier.verify(token).await {
        Ok(claims) => Ok(Principal::User(Box::new(claims))),
        Err(AuthError::JwksUnavailable) => Err(ApiError::unavailable(
            "identity_provider_unavailable",
            "The identity provider's signing keys could not be fetched; try again shortly.",
        )),
        Err(error) => Err(rejected(&error)),
    }
}

/// Verifies an organization API key: its shape (no I/O), one strongly consistent `GetItem` of its
/// look-up item by id, the constant-time comparison of its HMAC with the stored one, its expiry.
/// Unknown, revoked and wrong keys all answer 401 `invalid_token`; an expired one 401
/// `api_key_expired`. Without a pepper nothing can be verified: 503 `api_keys_not_configured`.
async fn authenticate_api_key(state: &AppState, presented: &str) -> Result<Principal, ApiError> {
    let Some(id) = api_key::parse(presented) else {
        tracing::info!(reason = "malformed_api_key", "credential rejected");
        return Err(ApiError::unauthorized(
            "invalid_token",
            "The API key is malformed: an organization API key is tg_live_<id>_<secret>, exactly as it was shown when it was created.",
        ));
    };
    let secrets = state.secrets().await?;
    let Some(pepper) = secrets.api_key_pepper.as_ref() else {
        tracing::error!("an API key was presented but no API key pepper is configured");
        return Err(api_keys_not_configured());
    };
    let lookup = state
        .store
        .get_api_key_lookup(id)
        .await
        .map_err(store_error)?;
    let Some(lookup) = lookup.filter(|l| l.id == id && pepper.verify(presented, &l.key_hash))
    else {
        tracing::info!(
            reason = "unknown_api_key",
            api_key_id = id,
            "credential rejected"
        );
        return Err(ApiError::unauthorized(
            "invalid_token",
            "The API key is not valid: it is unknown or has been revoked.",
        ));
    };
    if lookup.is_expired(time::OffsetDateTime::now_utc().unix_timestamp()) {
        tracing::info!(
            reason = "expired_api_key",
            api_key_id = id,
            "credential rejected"
        );
        return Err(ApiError::unauthorized(
            "api_key_expired",
            "The API key has expired; an owner or admin of the organization can create a new one.",
        ));
    }
    Ok(Principal::ApiKey(Box::new(lookup)))
}

fn rejected(error: &AuthError) -> ApiError {
    tracing::info!(reason = error.code(), "credential rejected");
    let code = match error {
        AuthError::MissingToken => "missing_token",
        AuthError::Expired => "token_expired",
        _ => "invalid_token",
    };
    ApiError::unauthorized(code, error.to_string())
}

async fn load_user(store: &Store, subject: &str) -> Result<UserRecord, ApiError> {
    store.get_user(subject).await.map_err(store_error)?.ok_or_else(|| {
        ApiError::forbidden(
            "user_not_found",
            "There is no Tollgate account for this sign-in yet: call GET /api/me once to create it.",
        )
    })
}

/// Maps a storage failure to the answer a caller gets; the detail goes to the log only.
pub fn store_error(error: StoreError) -> ApiError {
    match error {
        // A transaction that lost to a concurrent one on the same items changed nothing: the
        // caller reads again and retries (409, never a 500).
        StoreError::ConcurrentUpdate => crate::team::concurrent(),
        StoreError::Unavailable { operation, detail } => {
            tracing::error!(operation, %detail, "DynamoDB request failed");
            ApiError::unavailable(
                "store_unavailable",
                "Storage is unavailable right now; nothing was changed. Try again shortly.",
            )
        }
        other => {
            tracing::error!(error = %other, "store error");
            ApiError::internal()
        }
    }
}

/// The id that ties log lines to a request: API Gateway's, else the Lambda invocation's,
/// else the caller's `x-request-id`, else a new one.
fn request_id(request: &Request) -> String {
    if let Some(RequestContext::ApiGatewayV2(context)) = request.request_context_ref()
        && let Some(id) = &context.request_id
    {
        return id.clone();
    }
    if let Some(context) = request.lambda_context_ref()
        && !context.request_id.is_empty()
    {
        return context.request_id.clone();
    }
    request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Secrets {
        let values = SecretValues {
            stripe_secret_key: Some("sk_test_client".to_owned()),
            clerk_secret_key: None,
            stripe_webhook_secrets: String::new(),
            service_key_hashes: String::new(),
            encryption_keys: None,
            api_key_pepper: None,
        };
        Secrets::build(&values).expect("secrets")
    }

    #[test]
    fn a_client_is_built_once_per_secret_values() {
        let secrets = secrets();
        let builds = std::sync::atomic::AtomicUsize::new(0);
        let build = |s: &Secrets| {
            builds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, ()>(Arc::new(s.stripe_secret_key.clone()))
        };
        let first = secrets.client(build).expect("built");
        let second = secrets.client(build).expect("kept");
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(builds.load(std::sync::atomic::Ordering::SeqCst), 1);
        // New secret values (a rotation) are a new `Secrets`: the client is built again.
        let rotated = self::secrets();
        rotated.client(build).expect("rebuilt");
        assert_eq!(builds.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn a_failed_build_is_not_kept() {
        let secrets = secrets();
        assert_eq!(secrets.client(|_| Err::<Arc<u8>, _>("down")), Err("down"));
        assert_eq!(
            *secrets
                .client(|_| Ok::<_, &str>(Arc::new(7u8)))
                .expect("built"),
            7
        );
    }

    #[test]
    fn only_failed_credentials_count_against_their_source() {
        assert_eq!(
            unauthorized_bucket("missing_token"),
            Some(Bucket::Anonymous)
        );
        assert_eq!(unauthorized_bucket("token_expired"), None);
        for code in ["invalid_token", "anything_else"] {
            assert_eq!(
                unauthorized_bucket(code),
                Some(Bucket::FailedAuth),
                "{code}"
            );
        }
    }
}
