//! Test harness for whole flows: a dev gateway on 127.0.0.1 (the same router `tollgate-dev serve`
//! runs) over a fresh table in DynamoDB Local, with a test issuer whose JWKS is given inline.

pub mod aws_recorder;
pub mod identity_standin;
pub mod moto;
pub mod runtime_api;
pub mod stripe_standin;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use tollgate::auth::jwt::JwtConfig;
use tollgate::config::Config;
use tollgate::pipeline::AppState;
use tollgate::store::{Store, UserRecord, schema};
use tollgate_dev::issuer::LocalIssuer;

/// The issuer the test app trusts.
pub const TEST_ISSUER: &str = "https://issuer.tollgate.test/";

/// The API key pepper of every test app (`config.api_key_pepper`; a test may clear it).
pub const TEST_API_KEY_PEPPER: &str = "test-api-key-pepper-0123456789abcdef0123456789abcdef";

/// DynamoDB Local's endpoint, started by `make test` (infra/scripts/test.sh).
pub fn dynamodb_endpoint() -> String {
    match std::env::var("DYNAMODB_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => endpoint,
        _ => panic!(
            "DYNAMODB_ENDPOINT is not set: these tests need DynamoDB Local; run them with `make test`"
        ),
    }
}

/// Counts the DynamoDB requests a client sends, by operation (`GetItem`, `Query`, ...), to check
/// what a route costs without timing anything.
#[derive(Debug, Default, Clone)]
pub struct RequestCounter(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl RequestCounter {
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("counter lock"))
    }
}

impl aws_sdk_dynamodb::config::Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &aws_sdk_dynamodb::config::RuntimeComponents,
        _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or("?");
        let operation = target.rsplit('.').next().unwrap_or(target).to_owned();
        self.0.lock().expect("counter lock").push(operation);
        Ok(())
    }
}

pub struct TestApp {
    /// Every DynamoDB request the app's store sent (the harness's own table set-up excluded).
    pub dynamodb_requests: RequestCounter,
    pub base_url: String,
    pub issuer: LocalIssuer,
    pub store: Store,
    /// The gateway's state, for requests a socket cannot make (another source IP).
    pub state: std::sync::Arc<AppState>,
    pub http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl TestApp {
    /// A gateway over its own new table, so tests run in parallel without sharing state.
    pub async fn start() -> TestApp {
        Self::start_with(|_| {}).await
    }

    /// As [`TestApp::start`], with a chance to change the configuration first.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let issuer = LocalIssuer::generate().expect("test issuer key");
        let table = format!("test-{}", uuid::Uuid::new_v4().simple());
        let mut jwt = JwtConfig::new(TEST_ISSUER);
        jwt.inline_jwks = Some(issuer.jwks().to_string());
        // Nothing listens here: an unknown kid must be refused without reaching any network.
        jwt.jwks_url = Some("http://127.0.0.1:9/jwks.json".to_owned());
        let mut config = Config::from_lookup(|_| None).expect("empty config");
        config.table_name = table.clone();
        config.dynamodb_endpoint = Some(dynamodb_endpoint());
        config.jwt = Some(jwt);
        // Feature tests make more sensitive calls per user than the production limits allow;
        // tests/tests/rate_limits.rs sets its own small limits.
        config.rate_limits.sensitive.max = 10_000;
        config.rate_limits.invitations.max = 10_000;
        config.rate_limits.failed_auth.max = 10_000;
        config.rate_limits.anonymous.max = 10_000;
        config.rate_limits.user.max = 100_000;
        config.api_key_pepper = Some(TEST_API_KEY_PEPPER.to_owned());
        // As `tollgate-dev serve`: webhook receivers on this machine are accepted.
        config.webhook_allow_loopback = true;
        let table_client = tollgate::store::dynamodb_client(Some(&dynamodb_endpoint())).await;
        schema::create_table(&table_client, &table)
            .await
            .expect("create test table");
        adjust(&mut config);
        let dynamodb_requests = RequestCounter::default();
        let client = tollgate::store::dynamodb_client(config.dynamodb_endpoint.as_deref()).await;
        let client = aws_sdk_dynamodb::Client::from_conf(
            client
                .config()
                .to_builder()
                .interceptor(dynamodb_requests.clone())
                .build(),
        );
        let store = Store::new(client, &config.table_name);
        let state = AppState::from_config(config, store.clone())
            .await
            .expect("app state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let router = tollgate_dev::server::router(state.clone(), None);
        let server = tokio::spawn(async move {
            let _ = tollgate_dev::server::serve(listener, router).await;
        });
        tollgate::trust::install_ring_defaults();
        TestApp {
            dynamodb_requests,
            base_url,
            issuer,
            store,
            state,
            http: reqwest::Client::new(),
            server,
        }
    }

    /// A gateway whose Stripe is `standin`, with `webhook_secret` as the signing secret.
    pub async fn start_billing(
        standin: &stripe_standin::StripeStandIn,
        webhook_secret: &str,
    ) -> TestApp {
        Self::start_billing_with(standin, webhook_secret, |_| {}).await
    }

    /// [`TestApp::start_billing`], then `adjust` (trial days, promotion codes ...).
    pub async fn start_billing_with(
        standin: &stripe_standin::StripeStandIn,
        webhook_secret: &str,
        adjust: impl FnOnce(&mut Config),
    ) -> TestApp {
        let base = standin.base_url.clone();
        let secret = webhook_secret.to_owned();
        Self::start_with(move |config| {
            config.stripe_secret_key = Some("sk_test_tollgate_standin".to_owned());
            config.stripe_api_base = base;
            config.stripe_webhook_secrets = secret;
            config.app_url = "https://app.tollgate.test".to_owned();
            adjust(config);
        })
        .await
    }

    /// Delivers a raw webhook body with `signature` to `POST /api/webhooks/stripe`.
    pub async fn deliver(&self, body: &str, signature: Option<&str>) -> Reply {
        let mut request = self
            .http
            .post(format!("{}/api/webhooks/stripe", self.base_url))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(signature) = signature {
            request = request.header("stripe-signature", signature);
        }
        let response = request.send().await.expect("request reaches the gateway");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        Reply {
            status,
            headers,
            body,
        }
    }

    /// A valid token from the trusted test issuer.
    pub fn token(&self, sub: &str, email: Option<&str>, name: Option<&str>) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.sign(serde_json::json!({
            "sub": sub, "iss": TEST_ISSUER, "iat": now, "nbf": now, "exp": now + 600,
            "email": email, "name": name,
        }))
    }

    /// Signs arbitrary claims with the trusted key (for expired, wrong-issuer ... tokens).
    pub fn sign(&self, claims: Value) -> String {
        self.issuer.sign(&claims).expect("sign")
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        authorization: Option<&str>,
        body: Option<String>,
    ) -> Reply {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.expect("request reaches the gateway");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.request(
            reqwest::Method::GET,
            path,
            Some(&format!("Bearer {token}")),
            None,
        )
        .await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.request(
            reqwest::Method::POST,
            path,
            Some(&format!("Bearer {token}")),
            Some(body.to_string()),
        )
        .await
    }

    /// Signs in `sub` (creating the user) and makes them OWNER of a new organization.
    pub async fn owner_with_organization(&self, sub: &str) -> (String, UserRecord) {
        let token = self.token(
            sub,
            Some(&format!("{sub}@example.com")),
            Some("Owner Person"),
        );
        let me = self.get("/api/me", &token).await;
        assert!(me.status == 200 || me.status == 201, "{}", me.body);
        let user = self
            .store
            .get_user(sub)
            .await
            .expect("read")
            .expect("user exists");
        self.store
            .create_organization(&user, &format!("Org of {sub}"), None, None)
            .await
            .expect("create organization");
        let user = self
            .store
            .get_user(sub)
            .await
            .expect("read")
            .expect("user exists");
        (token, user)
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.request(
            reqwest::Method::PATCH,
            path,
            Some(&format!("Bearer {token}")),
            Some(body.to_string()),
        )
        .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.request(
            reqwest::Method::DELETE,
            path,
            Some(&format!("Bearer {token}")),
            None,
        )
        .await
    }

    /// An owner whose organization is on `plan` with `status` (seats come from the plan).
    pub async fn organization_on_plan(
        &self,
        sub: &str,
        plan: tollgate::pricing::Plan,
        status: tollgate::store::PlanStatus,
    ) -> (String, UserRecord) {
        let (token, user) = self.owner_with_organization(sub).await;
        let tenant = user.tenant().expect("tenant");
        self.store
            .set_organization_plan(&tenant, Some(plan), status)
            .await
            .expect("set plan");
        (token, user)
    }

    /// Creates an organization API key with `role` as the member holding `token` (201 expected):
    /// its id and the key.
    pub async fn create_api_key(&self, token: &str, name: &str, role: &str) -> (String, String) {
        let created = self
            .post(
                "/api/api-keys",
                token,
                serde_json::json!({"name": name, "role": role}),
            )
            .await;
        assert_eq!(created.status, 201, "create {role} key: {}", created.body);
        let id = created.body["id"].as_str().expect("key id").to_owned();
        let key = created.body["key"].as_str().expect("key").to_owned();
        (id, key)
    }

    /// Invites `sub`'s email as `role` with `inviter_token`, then signs `sub` in with that email
    /// verified and accepts the invitation. Returns the member's token and user id.
    pub async fn add_member(&self, inviter_token: &str, sub: &str, role: &str) -> (String, String) {
        let email = format!("{}@example.com", sub.replace(['|', ':'], "-"));
        let invited = self
            .post(
                "/api/users",
                inviter_token,
                serde_json::json!({"email": email, "role": role}),
            )
            .await;
        assert_eq!(invited.status, 201, "invite {sub}: {}", invited.body);
        let invitation = invited.body["id"].as_str().expect("invitation id");
        let token = self.verified_token(sub, &email, Some(&format!("Member {sub}")));
        let me = self.get("/api/me", &token).await;
        assert!(me.status == 200 || me.status == 201, "{sub}: {}", me.body);
        let accepted = self
            .post(
                &format!("/api/me/invitations/{invitation}/accept"),
                &token,
                serde_json::json!({}),
            )
            .await;
        assert_eq!(accepted.status, 200, "{sub} accepts: {}", accepted.body);
        assert_eq!(
            accepted.body["user"]["role"], role,
            "{sub} joined: {}",
            accepted.body
        );
        let id = accepted.body["user"]["id"].as_str().expect("id").to_owned();
        (token, id)
    }

    /// A valid token whose `email` is verified (`email_verified: true`).
    pub fn verified_token(&self, sub: &str, email: &str, name: Option<&str>) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.sign(serde_json::json!({
            "sub": sub, "iss": TEST_ISSUER, "iat": now, "nbf": now, "exp": now + 600,
            "email": email, "email_verified": true, "name": name,
        }))
    }

    /// Sets a user's role directly in the table (fixture for role matrices).
    pub async fn set_role(&self, sub: &str, role: &str) {
        let (pk, sk) = tollgate::store::keys::user(sub);
        self.store
            .client()
            .update_item()
            .table_name(self.store.table_name())
            .key("PK", AttributeValue::S(pk))
            .key("SK", AttributeValue::S(sk))
            .update_expression("SET #r = :r")
            .expression_attribute_names("#r", "role")
            .expression_attribute_values(":r", AttributeValue::S(role.to_owned()))
            .send()
            .await
            .expect("set role");
    }

    /// Every item of the test's table except the rate limiter's window counters, which every
    /// request (even a refused one) updates: "nothing written" means no domain data changed.
    pub async fn all_items(&self) -> Vec<std::collections::HashMap<String, AttributeValue>> {
        self.raw_items()
            .await
            .into_iter()
            .filter(|item| {
                !item
                    .get("PK")
                    .and_then(|pk| pk.as_s().ok())
                    .is_some_and(|pk| pk.starts_with("RATE#"))
            })
            .collect()
    }

    /// Every item in the test's table (tests use small tables).
    pub async fn raw_items(&self) -> Vec<std::collections::HashMap<String, AttributeValue>> {
        let output = self
            .store
            .client()
            .scan()
            .table_name(self.store.table_name())
            .consistent_read(true)
            .send()
            .await
            .expect("scan");
        output.items.unwrap_or_default()
    }
}

/// The end of a call that ended `ago` before now, but not before the current UTC month began: an
/// organization without a live subscription is billed by calendar month, and a test that reads
/// its usage back just after midnight on the 1st would otherwise look in the month after its calls.
pub fn recent_call_end(ago: time::Duration) -> time::OffsetDateTime {
    let now = time::OffsetDateTime::now_utc();
    (now - ago).max(tollgate::usage::calendar_month(now).start)
}

/// Asserts the error envelope: exactly `error` and a non-empty `message`.
pub fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "body: {}", reply.body);
    assert_eq!(reply.body["error"], code, "body: {}", reply.body);
    let message = reply.body["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "message missing: {}", reply.body);
    assert_eq!(
        reply.body.as_object().map(|o| o.len()),
        Some(2),
        "extra fields: {}",
        reply.body
    );
}

/// The tenant of the stored user `sub` (test fixture access).
pub async fn tenant_of(app: &TestApp, sub: &str) -> tollgate::store::TenantId {
    app.store
        .get_user(sub)
        .await
        .expect("read user")
        .and_then(|u| u.tenant())
        .expect("user in an organization")
}

/// Call records `bench-<n>` for each `n` of `numbers` in `tenant`'s partition, in the shape
/// usage-tracking writes them (without their period counter), 25 per `BatchWriteItem`: set-up for
/// organizations with thousands of calls, which recording one by one would take minutes to build.
pub async fn write_call_records(
    store: &Store,
    tenant: &tollgate::store::TenantId,
    numbers: std::ops::Range<usize>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    type Error = Box<dyn std::error::Error + Send + Sync>;
    let count = numbers.end;
    let partition = tollgate::store::keys::tenant_partition(tenant);
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let n = |v: u64| AttributeValue::N(v.to_string());
    let mut written = numbers.start;
    while written < count {
        let batch: Vec<WriteRequest> = (written..count.min(written + 25))
            .map(|i| {
                let call_id = format!("bench-{i:06}");
                let put = PutRequest::builder()
                    .item("PK", s(&partition))
                    .item("SK", s(&format!("CALL#{call_id}")))
                    .item("entity", s("CALL"))
                    .item("organizationId", s(tenant.as_str()))
                    .item("callId", s(&call_id))
                    .item("durationSeconds", n(61))
                    .item("minutes", n(2))
                    .item("endedAt", s("2026-11-30T12:00:00Z"))
                    .item("periodStart", s("2026-11-01T00:00:00Z"))
                    .item("periodEnd", s("2026-12-01T00:00:00Z"))
                    .item("recordedAt", s("2026-11-30T12:00:01Z"))
                    .build()?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<_, Error>>()?;
        written += batch.len();
        let mut pending = Some(batch);
        let mut failures = 0;
        while let Some(requests) = pending.take().filter(|r| !r.is_empty()) {
            let sent = store
                .client()
                .batch_write_item()
                .request_items(store.table_name(), requests.clone())
                .send()
                .await;
            pending = match sent {
                Ok(output) => output
                    .unprocessed_items
                    .and_then(|mut items| items.remove(store.table_name())),
                // A busy DynamoDB Local (a loaded machine) times out now and then, sometimes for
                // several seconds in a row: the same puts again, after a growing pause, are
                // harmless.
                Err(error) if failures < 8 => {
                    failures += 1;
                    tracing::warn!(%error, "batch write failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(250 << failures)).await;
                    Some(requests)
                }
                Err(error) => return Err(error.into()),
            };
        }
    }
    Ok(())
}
