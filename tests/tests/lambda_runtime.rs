//! Every function's real binary under the Lambda Runtime API, as Lambda runs it: started with
//! `AWS_LAMBDA_RUNTIME_API` pointing at a local Runtime API (`tollgate_tests::runtime_api`), only
//! the environment `template.yaml` gives it (plus the local endpoints of DynamoDB Local, moto's
//! Secrets Manager and the Stripe stand-in), fed API Gateway HTTP API (payload 2.0) events for
//! each of its routes with a real token, a signed Stripe payload or a service key.
//!
//! The binaries are the workspace's debug builds (x86_64); `make test` builds them before the
//! suite (`cargo build --bins`). A missing binary fails the test with how to build it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tollgate_tests::TestApp;
use tollgate_tests::moto::Moto;
use tollgate_tests::runtime_api::{
    self, FunctionProcess, HttpApiResponse, Outcome, RuntimeApi, function_binary_dir,
    lambda_environment, serve_jwks, template_environment,
};
use tollgate_tests::stripe_standin::{StripeStandIn, signed_event, subscription_object};

const SERVICE_KEY: &str = "tgsk_runtime_api_SECRET_service_key_0123456789ab";
const WEBHOOK_SECRET: &str = "whsec_runtime_api_SECRET";
const STRIPE_KEY: &str = "sk_test_runtime_api_SECRET";
const ENCRYPTION_KEY: &str = "4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a";
/// The API identifier the binaries require in `aud` (the template's JwtAudience).
const AUDIENCE: &str = "https://api.tollgate.test";
/// The template's function timeout: an answer later than this is a timeout in AWS.
const FUNCTION_TIMEOUT: Duration = Duration::from_secs(10);
/// A generous bound on init of a debug binary; the real check is that init touches no network.
const INIT_LIMIT: Duration = Duration::from_secs(5);

/// A stack as deployed, locally: the table in DynamoDB Local, the secret in moto, Stripe stood
/// in, an identity provider serving its JWKS over HTTP. `app` is the in-process gateway over the
/// same table, for fixtures and for reading what the binaries wrote.
struct Stack {
    app: TestApp,
    stripe: StripeStandIn,
    _moto: Moto,
    secret_arn: String,
    secrets_endpoint: String,
    issuer_url: String,
    jwks_server: tokio::task::JoinHandle<()>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.jwks_server.abort();
    }
}

impl Stack {
    async fn start() -> Stack {
        let stripe = StripeStandIn::start().await;
        let app = TestApp::start_billing(&stripe, WEBHOOK_SECRET).await;
        let (issuer_url, jwks_server) = serve_jwks(app.issuer.jwks().to_string())
            .await
            .expect("JWKS server");
        let moto = tokio::task::spawn_blocking(Moto::start)
            .await
            .expect("moto starts");
        let client = tollgate::secrets::secrets_manager_client(Some(&moto.endpoint)).await;
        let service_key_hash = hex_sha256(SERVICE_KEY);
        let secret = json!({
            "stripeSecretKey": STRIPE_KEY,
            "stripeWebhookSecret": [WEBHOOK_SECRET],
            "serviceKeyHashes": service_key_hash,
            "encryptionKeys": {"active": "k1", "keys": {"k1": ENCRYPTION_KEY}},
        });
        let created = client
            .create_secret()
            .name("tollgate/runtime-api-test")
            .secret_string(secret.to_string())
            .send()
            .await
            .expect("create the secret in moto");
        Stack {
            secrets_endpoint: moto.endpoint.clone(),
            secret_arn: created.arn().expect("secret ARN").to_owned(),
            app,
            stripe,
            _moto: moto,
            issuer_url,
            jwks_server,
        }
    }

    /// A token from the identity provider the binaries trust (the in-process gateway trusts
    /// the same key under the test issuer name, for fixtures).
    fn token(&self, sub: &str, email: &str) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.app.sign(json!({
            "sub": sub, "iss": self.issuer_url, "aud": AUDIENCE, "iat": now, "nbf": now,
            "exp": now + 600, "email": email, "email_verified": true, "name": "Runtime Tester",
        }))
    }

    fn environment(&self, binary: &str) -> Vec<(String, String)> {
        let table = self.app.store.table_name().to_owned();
        let mut environment = template_environment(binary, &|target| match target {
            "TollgateTable" => Some(table.clone()),
            "TollgateSecret" => Some(self.secret_arn.clone()),
            "JwtIssuer" => Some(self.issuer_url.clone()),
            "JwtAudience" => Some(AUDIENCE.to_owned()),
            "AppUrl" => Some("https://app.tollgate.test".to_owned()),
            _ => None,
        });
        // The local endpoints of what AWS and Stripe would provide.
        environment.extend([
            (
                "DYNAMODB_ENDPOINT".to_owned(),
                tollgate_tests::dynamodb_endpoint(),
            ),
            (
                "SECRETS_MANAGER_ENDPOINT".to_owned(),
                self.secrets_endpoint.clone(),
            ),
            ("STRIPE_API_BASE".to_owned(), self.stripe.base_url.clone()),
        ]);
        environment
    }

    async fn boot(&self, binary: &str) -> Booted {
        boot(binary, self.environment(binary)).await
    }
}

fn hex_sha256(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A function process, initialised and waiting for invocations, and how long its init took.
struct Booted {
    inner: runtime_api::Booted,
    init: Duration,
}

impl std::ops::Deref for Booted {
    type Target = runtime_api::Booted;

    fn deref(&self) -> &runtime_api::Booted {
        &self.inner
    }
}

async fn boot(binary: &str, environment: Vec<(String, String)>) -> Booted {
    let inner = runtime_api::Booted::start(binary, environment, INIT_LIMIT).await;
    let init = inner
        .runtime
        .first_next_at()
        .expect("an initialised function asked for an invocation")
        .duration_since(inner.process.started);
    println!("{binary}: process start → first invocation/next: {init:?}");
    Booted { inner, init }
}

impl Booted {
    /// Invokes the function with an HTTP API event and reads the answer as API Gateway does.
    async fn call(
        &self,
        route_key: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (HttpApiResponse, String) {
        self.inner
            .call_traced(route_key, path, headers, body, FUNCTION_TIMEOUT)
            .await
    }

    /// The process's log lines, each parsed as JSON (every line must be JSON under Lambda).
    fn json_logs(&self) -> Vec<Value> {
        self.process
            .output()
            .iter()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|_| panic!("{}: a log line is not JSON: {line}", self.binary))
            })
            .collect()
    }

    /// Every request's closing log line has the request id, the function and (when known) the
    /// organization; no line carries a credential or an email address.
    fn check_logs(&self, request_ids: &[String], organization: Option<&str>, secrets: &[&str]) {
        // The lines arrive through a pipe read by another thread: allow them a moment.
        let mut logs = self.json_logs();
        for _ in 0..100 {
            let all_there = request_ids.iter().all(|id| {
                logs.iter().any(|line| {
                    line["fields"]["message"] == "request done"
                        && line["span"]["request_id"] == id.as_str()
                })
            });
            if all_there {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            logs = self.json_logs();
        }
        for request_id in request_ids {
            let done = logs
                .iter()
                .find(|line| {
                    line["fields"]["message"] == "request done"
                        && line["span"]["request_id"] == request_id.as_str()
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{}: no `request done` line for {request_id}: {logs:#?}",
                        self.binary
                    )
                });
            assert_eq!(done["span"]["function"], self.binary.as_str(), "{done}");
            assert!(done["span"]["status"].is_number(), "{done}");
            assert!(done["level"].is_string(), "{done}");
            if let Some(organization) = organization {
                assert_eq!(done["span"]["organization_id"], organization, "{done}");
            }
        }
        for line in self.process.output() {
            for secret in secrets {
                assert!(
                    !line.contains(secret),
                    "{}: a log line holds a secret: {line}",
                    self.binary
                );
            }
            assert!(
                !line.contains("@example.com"),
                "{}: a log line holds an email: {line}",
                self.binary
            );
        }
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn assert_status(response: &HttpApiResponse, status: u16, what: &str) {
    assert_eq!(response.status, status, "{what}: {}", response.body);
    assert_eq!(
        response.headers.get("content-type").map(String::as_str),
        Some("application/json"),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn user_load_and_permission_check() {
    let stack = Stack::start().await;
    let token = stack.token("rt|alice", "alice@example.com");
    let auth = bearer(&token);

    let user_load = stack.boot("user-load").await;
    let (first, id1) = user_load
        .call("GET /api/me", "/api/me", &[("authorization", &auth)], None)
        .await;
    assert_status(&first, 201, "first sign-in creates the user");
    assert_eq!(first.json()["user"]["email"], "alice@example.com");
    let (again, id2) = user_load
        .call("GET /api/me", "/api/me", &[("authorization", &auth)], None)
        .await;
    assert_status(&again, 200, "second sign-in");
    assert_eq!(again.headers.get("x-request-id"), Some(&id2));
    // A route of another function is not served here.
    let (other, id3) = user_load
        .call(
            "GET /api/users",
            "/api/users",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_status(&other, 404, "another function's route");
    assert_eq!(other.json()["error"], "route_not_found");
    user_load.check_logs(&[id1, id2, id3], None, &[&token, SERVICE_KEY]);

    let permission_check = stack.boot("permission-check").await;
    let (checked, id) = permission_check
        .call(
            "POST /api/permissions/check",
            "/api/permissions/check",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(r#"{"permissions":["org:read"]}"#),
        )
        .await;
    assert_status(&checked, 200, "permission check");
    // Signed in without an organization: no permission is granted.
    assert_eq!(
        checked.json()["results"][0]["permission"],
        "org:read",
        "{}",
        checked.body
    );
    assert_eq!(checked.json()["allowed"], false, "{}", checked.body);
    permission_check.check_logs(&[id], None, &[&token]);
}

#[tokio::test(flavor = "multi_thread")]
async fn organizations_and_team() {
    let stack = Stack::start().await;
    let owner = stack.token("rt|owner", "owner@example.com");
    let auth = bearer(&owner);
    let json_body = ("content-type", "application/json");

    let organizations = stack.boot("organizations").await;
    // The user must exist first (user-load's job); the in-process gateway does it here.
    let me = stack
        .app
        .get(
            "/api/me",
            &stack.app.token("rt|owner", Some("owner@example.com"), None),
        )
        .await;
    assert_eq!(me.status, 201, "{}", me.body);
    let (created, id1) = organizations
        .call(
            "POST /api/organizations",
            "/api/organizations",
            &[("authorization", &auth), json_body],
            Some(r#"{"name":"Runtime Org"}"#),
        )
        .await;
    assert_status(&created, 201, "create organization");
    let org_id = created.json()["id"]
        .as_str()
        .expect("organization id")
        .to_owned();
    let (read, id2) = organizations
        .call(
            "GET /api/organization",
            "/api/organization",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_status(&read, 200, "read organization");
    assert_eq!(read.json()["name"], "Runtime Org");
    let (renamed, id3) = organizations
        .call(
            "PATCH /api/organization",
            "/api/organization",
            &[("authorization", &auth), json_body],
            Some(r#"{"name":"Renamed Org"}"#),
        )
        .await;
    assert_status(&renamed, 200, "rename organization");
    assert_eq!(renamed.json()["name"], "Renamed Org");
    organizations.check_logs(&[id2.clone(), id3.clone()], Some(&org_id), &[&owner]);
    organizations.check_logs(&[id1], None, &[&owner]);

    // Team: a plan with seats, then invite, list, change a role, remove, revoke.
    let tenant = tollgate_tests::tenant_of(&stack.app, "rt|owner").await;
    stack
        .app
        .store
        .set_organization_plan(
            &tenant,
            Some(tollgate::pricing::Plan::Professional),
            tollgate::store::PlanStatus::Active,
        )
        .await
        .expect("set plan");
    let team = stack.boot("team").await;
    let mut ids = Vec::new();
    let (invited, id) = team
        .call(
            "POST /api/users",
            "/api/users",
            &[("authorization", &auth), json_body],
            Some(r#"{"email":"bob@example.com","role":"MANAGER"}"#),
        )
        .await;
    ids.push(id);
    assert_status(&invited, 201, "invite");
    let invitation = invited.json()["id"]
        .as_str()
        .expect("invitation id")
        .to_owned();
    let bob = stack.app.verified_token("rt|bob", "bob@example.com", None);
    assert_eq!(stack.app.get("/api/me", &bob).await.status, 201);
    let joined = stack
        .app
        .post(
            &format!("/api/me/invitations/{invitation}/accept"),
            &bob,
            json!({}),
        )
        .await;
    assert_eq!(joined.body["user"]["role"], "MANAGER", "{}", joined.body);
    let bob_id = joined.body["user"]["id"]
        .as_str()
        .expect("bob's id")
        .to_owned();
    let (listed, id) = team
        .call(
            "GET /api/users",
            "/api/users?limit=10",
            &[("authorization", &auth)],
            None,
        )
        .await;
    ids.push(id);
    assert_status(&listed, 200, "list team");
    assert_eq!(
        listed.json()["members"].as_array().map(Vec::len),
        Some(2),
        "{}",
        listed.body
    );
    let (changed, id) = team
        .call(
            "PATCH /api/users/{id}",
            &format!("/api/users/{bob_id}"),
            &[("authorization", &auth), json_body],
            Some(r#"{"role":"VIEWER"}"#),
        )
        .await;
    ids.push(id);
    assert_status(&changed, 200, "change role");
    assert_eq!(changed.json()["role"], "VIEWER");
    let (removed, id) = team
        .call(
            "DELETE /api/users/{id}",
            &format!("/api/users/{bob_id}"),
            &[("authorization", &auth)],
            None,
        )
        .await;
    ids.push(id);
    assert_status(&removed, 200, "remove member");
    let (invited, id) = team
        .call(
            "POST /api/users",
            "/api/users",
            &[("authorization", &auth), json_body],
            Some(r#"{"email":"carol@example.com","role":"VIEWER"}"#),
        )
        .await;
    ids.push(id);
    let invitation = invited.json()["id"]
        .as_str()
        .expect("invitation id")
        .to_owned();
    let (revoked, id) = team
        .call(
            "DELETE /api/users/invitations/{id}",
            &format!("/api/users/invitations/{invitation}"),
            &[("authorization", &auth)],
            None,
        )
        .await;
    ids.push(id);
    assert_status(&revoked, 200, "revoke invitation");
    team.check_logs(&ids, Some(&org_id), &[&owner]);

    // Delete: the organizations function again; the plan set above is live, so it refuses.
    let (refused, _) = organizations
        .call(
            "DELETE /api/organization",
            "/api/organization",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_status(&refused, 409, "delete organization with a live plan");
    assert_eq!(refused.json()["error"], "subscription_active");
}

#[tokio::test(flavor = "multi_thread")]
async fn billing_checkout_portal_webhook_and_usage() {
    let stack = Stack::start().await;
    let (_, owner) = stack.app.owner_with_organization("rt|payer").await;
    let org_id = owner.organization_id.clone().expect("organization");
    let token = stack.token("rt|payer", "rt|payer@example.com");
    let auth = bearer(&token);
    let json_body = ("content-type", "application/json");

    let checkout = stack.boot("checkout").await;
    let (session, id) = checkout
        .call(
            "POST /api/billing/checkout",
            "/api/billing/checkout",
            &[("authorization", &auth), json_body],
            Some(r#"{"plan":"PROFESSIONAL","interval":"monthly"}"#),
        )
        .await;
    assert_status(&session, 200, "checkout");
    assert!(
        session.json()["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://checkout.stripe.com/")),
        "{}",
        session.body
    );
    // The binary read the Stripe key from the secret in Secrets Manager and sent it to Stripe.
    let sent = stack.stripe.requests_to("POST", "/v1/checkout/sessions");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].header("authorization"),
        Some(format!("Bearer {STRIPE_KEY}").as_str())
    );
    checkout.check_logs(&[id], Some(&org_id), &[&token, STRIPE_KEY]);
    let tenant = tollgate_tests::tenant_of(&stack.app, "rt|payer").await;
    let customer = stack
        .app
        .store
        .get_organization(&tenant)
        .await
        .expect("read")
        .expect("organization")
        .stripe_customer_id
        .expect("customer after checkout");

    let portal = stack.boot("billing-portal").await;
    let (portal_session, id) = portal
        .call(
            "POST /api/billing/portal",
            "/api/billing/portal",
            &[("authorization", &auth), json_body],
            Some("{}"),
        )
        .await;
    assert_status(&portal_session, 200, "portal");
    portal.check_logs(&[id], Some(&org_id), &[&token, STRIPE_KEY]);

    // Stripe's delivery: signed, redelivered, and forged.
    let webhook = stack.boot("stripe-webhook").await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (body, signature) = signed_event(
        WEBHOOK_SECRET,
        "customer.subscription.created",
        "evt_runtime_1",
        now,
        subscription_object(
            "sub_runtime_1",
            &customer,
            "active",
            "price_pro_monthly",
            (now, now + 30 * 86_400),
        ),
    );
    let headers = [("stripe-signature", signature.as_str()), json_body];
    let route = "POST /api/webhooks/stripe";
    let (processed, id1) = webhook
        .call(route, "/api/webhooks/stripe", &headers, Some(&body))
        .await;
    assert_status(&processed, 200, "webhook");
    assert_eq!(processed.json()["outcome"], "processed");
    let (duplicate, id2) = webhook
        .call(route, "/api/webhooks/stripe", &headers, Some(&body))
        .await;
    assert_eq!(
        duplicate.json()["outcome"],
        "duplicate",
        "{}",
        duplicate.body
    );
    let forged = [("stripe-signature", "t=1,v1=00"), json_body];
    let (rejected, _) = webhook
        .call(route, "/api/webhooks/stripe", &forged, Some(&body))
        .await;
    assert_status(&rejected, 400, "forged signature");
    webhook.check_logs(&[id1, id2], None, &[WEBHOOK_SECRET, &signature]);
    let state_changes: Vec<Value> = webhook
        .json_logs()
        .into_iter()
        .filter(|line| line["fields"]["message"] == "billing state changed")
        .collect();
    assert_eq!(
        state_changes.len(),
        1,
        "one log line per billing state change"
    );
    assert_eq!(
        state_changes[0]["fields"]["organization_id"],
        org_id.as_str()
    );

    let billing = stack.boot("billing").await;
    let (subscription, id1) = billing
        .call(
            "GET /api/billing/subscription",
            "/api/billing/subscription",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_status(&subscription, 200, "subscription");
    assert_eq!(subscription.json()["plan"], "PROFESSIONAL");
    assert_eq!(subscription.json()["status"], "active");
    let (invoices, id2) = billing
        .call(
            "GET /api/billing/invoices",
            "/api/billing/invoices",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_status(&invoices, 200, "invoices");
    billing.check_logs(&[id1, id2], Some(&org_id), &[&token]);

    // Usage: a back-end service records a call with its key; the owner reads the period.
    let usage = stack.boot("usage-tracking").await;
    let service = format!("Bearer {SERVICE_KEY}");
    let call = json!({"organizationId": org_id, "callId": "call-runtime-1", "durationSeconds": 125,
        "endedAt": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("format")});
    let (recorded, id1) = usage
        .call(
            "POST /api/usage/calls",
            "/api/usage/calls",
            &[("authorization", &service), json_body],
            Some(&call.to_string()),
        )
        .await;
    assert_status(&recorded, 201, "record call");
    let (read, id2) = usage
        .call(
            "GET /api/billing/usage",
            "/api/billing/usage",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_status(&read, 200, "read usage");
    // 125 s round up to 3 minutes.
    assert_eq!(
        (
            read.json()["minutes"].as_u64(),
            read.json()["calls"].as_u64()
        ),
        (Some(3), Some(1)),
        "{}",
        read.body
    );
    usage.check_logs(&[id1, id2], None, &[SERVICE_KEY, &token]);
}

#[tokio::test(flavor = "multi_thread")]
async fn integrations_and_key_rotation() {
    let stack = Stack::start().await;
    let (_, owner) = stack.app.owner_with_organization("rt|keeper").await;
    let org_id = owner.organization_id.clone().expect("organization");
    let token = stack.token("rt|keeper", "rt|keeper@example.com");
    let auth = bearer(&token);
    let credential = "crm_api_key_SECRET_0123456789";

    let integrations = stack.boot("integrations").await;
    let (created, id1) = integrations
        .call(
            "POST /api/integrations",
            "/api/integrations",
            &[("authorization", &auth), ("content-type", "application/json")],
            Some(&json!({"type": "twilio", "name": "Main line", "credentials": {"accountSid": "AC1", "authToken": credential}}).to_string()),
        )
        .await;
    assert_status(&created, 201, "create integration");
    assert!(
        !created.body.contains(credential),
        "credentials are never returned"
    );
    let integration_id = created.json()["id"].as_str().expect("id").to_owned();
    let (listed, id2) = integrations
        .call(
            "GET /api/integrations",
            "/api/integrations",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_status(&listed, 200, "list integrations");
    assert_eq!(
        listed.json()["integrations"].as_array().map(Vec::len),
        Some(1),
        "{}",
        listed.body
    );

    // The key-rotation function is invoked directly (no HTTP event) and reports what it did.
    let rotate = stack.boot("rotate-keys").await;
    let outcome = rotate
        .runtime
        .invoke(&json!({}), FUNCTION_TIMEOUT)
        .await
        .expect("rotate-keys answers");
    let Outcome::Response(payload) = outcome else {
        panic!(
            "rotate-keys failed: {outcome:?}; output:\n{}",
            rotate.process.output().join("\n")
        );
    };
    let report: Value = serde_json::from_slice(&payload).expect("report is JSON");
    // The one credential is already under the active key: read, left alone.
    assert_eq!(
        (
            &report["scanned"],
            &report["alreadyCurrent"],
            &report["reencrypted"]
        ),
        (&json!(1), &json!(1), &json!(0)),
        "{report}"
    );
    assert_eq!(report["failed"], json!([]), "{report}");
    for line in rotate.process.output() {
        assert!(
            !line.contains(credential) && !line.contains(ENCRYPTION_KEY),
            "{line}"
        );
    }

    let (deleted, id3) = integrations
        .call(
            "DELETE /api/integrations/{id}",
            &format!("/api/integrations/{integration_id}"),
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_status(&deleted, 200, "delete integration");
    integrations.check_logs(
        &[id1, id2, id3],
        Some(&org_id),
        &[&token, credential, ENCRYPTION_KEY],
    );
}

/// Accepts connections and never answers: DynamoDB, Secrets Manager, the identity provider and
/// Stripe all unreachable in the slowest way (a timeout, not a refusal). Counts connections.
async fn black_hole() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (url, connections, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn with_every_dependency_unreachable_init_is_prompt_and_requests_get_503() {
    let (hole, connections, hole_task) = black_hole().await;
    let issuer = LocalIssuerToken::new(&format!("{hole}/"));
    let environment = |binary: &str| {
        let mut environment = template_environment(binary, &|target| match target {
            "TollgateTable" => Some("tollgate-unreachable".to_owned()),
            "TollgateSecret" => Some(
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:tollgate-AbCdEf".to_owned(),
            ),
            "JwtIssuer" => Some(format!("{hole}/")),
            "JwtAudience" => Some(AUDIENCE.to_owned()),
            _ => None,
        });
        environment.extend([
            ("DYNAMODB_ENDPOINT".to_owned(), hole.clone()),
            ("SECRETS_MANAGER_ENDPOINT".to_owned(), hole.clone()),
            ("STRIPE_API_BASE".to_owned(), hole.clone()),
        ]);
        environment
    };
    let service = format!("Bearer {SERVICE_KEY}");
    let user = bearer(&issuer.token);
    let cases: Vec<(&str, &str, &str, &str)> = vec![
        ("user-load", "GET /api/me", "/api/me", &user),
        (
            "permission-check",
            "POST /api/permissions/check",
            "/api/permissions/check",
            &user,
        ),
        (
            "organizations",
            "GET /api/organization",
            "/api/organization",
            &user,
        ),
        ("team", "GET /api/users", "/api/users", &user),
        (
            "checkout",
            "POST /api/billing/checkout",
            "/api/billing/checkout",
            &user,
        ),
        (
            "billing-portal",
            "POST /api/billing/portal",
            "/api/billing/portal",
            &user,
        ),
        (
            "billing",
            "GET /api/billing/subscription",
            "/api/billing/subscription",
            &user,
        ),
        (
            "stripe-webhook",
            "POST /api/webhooks/stripe",
            "/api/webhooks/stripe",
            "t=1,v1=00",
        ),
        (
            "usage-tracking",
            "POST /api/usage/calls",
            "/api/usage/calls",
            &service,
        ),
        (
            "integrations",
            "GET /api/integrations",
            "/api/integrations",
            &user,
        ),
        ("api-keys", "GET /api/api-keys", "/api/api-keys", &user),
    ];
    // Boot every function before any request: none may have opened a connection during init.
    let mut booted = Vec::new();
    for (binary, ..) in &cases {
        booted.push(boot(binary, environment(binary)).await);
    }
    let rotate = boot("rotate-keys", environment("rotate-keys")).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a function opened a connection before its first invocation"
    );
    for function in booted.iter().chain([&rotate]) {
        assert!(
            function.init < INIT_LIMIT,
            "{}: init {:?}",
            function.binary,
            function.init
        );
    }

    // Every request answers 503 with the error envelope inside the function timeout.
    let requests =
        booted
            .iter()
            .zip(&cases)
            .map(|(function, (_, route, path, credential))| async move {
                let header = if *route == "POST /api/webhooks/stripe" {
                    "stripe-signature"
                } else {
                    "authorization"
                };
                let started = std::time::Instant::now();
                let (response, _) = function
                    .call(
                        route,
                        path,
                        &[(header, credential), ("content-type", "application/json")],
                        Some("{}"),
                    )
                    .await;
                (function.binary.clone(), response, started.elapsed())
            });
    for (binary, response, took) in futures::future::join_all(requests).await {
        // The webhook checks its signature against secrets it cannot read: 503 too (Stripe retries).
        assert_eq!(response.status, 503, "{binary}: {}", response.body);
        let code = response.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(!code.is_empty(), "{binary}: {}", response.body);
        assert!(took < FUNCTION_TIMEOUT, "{binary}: {took:?}");
        println!("{binary}: 503 {code} after {took:?}");
    }
    // rotate-keys reports an invocation error (its secrets are unreachable), not a timeout.
    let outcome = rotate
        .runtime
        .invoke(&json!({}), FUNCTION_TIMEOUT)
        .await
        .expect("rotate-keys answers within the function timeout");
    assert!(matches!(outcome, Outcome::Error { .. }), "{outcome:?}");
    hole_task.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn with_only_dynamodb_unreachable_a_signed_in_request_gets_503_within_the_timeout() {
    let (hole, connections, hole_task) = black_hole().await;
    let issuer = tollgate_dev::issuer::LocalIssuer::generate().expect("key");
    let (issuer_url, jwks_server) = serve_jwks(issuer.jwks().to_string())
        .await
        .expect("JWKS server");
    let mut environment = template_environment("team", &|target| match target {
        "TollgateTable" => Some("tollgate-unreachable".to_owned()),
        "TollgateSecret" => {
            Some("arn:aws:secretsmanager:us-east-1:123456789012:secret:tollgate-AbCdEf".to_owned())
        }
        "JwtIssuer" => Some(issuer_url.clone()),
        "JwtAudience" => Some(AUDIENCE.to_owned()),
        _ => None,
    });
    environment.extend([
        ("DYNAMODB_ENDPOINT".to_owned(), hole.clone()),
        ("SECRETS_MANAGER_ENDPOINT".to_owned(), hole.clone()),
    ]);
    let team = boot("team", environment).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = issuer
        .sign(&json!({"sub": "rt|stranded", "iss": issuer_url, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 600}))
        .expect("sign");
    // The token verifies; the rate-limit window update (let through when it fails) and the user
    // read both meet a DynamoDB that never answers: bounded by the client's timeouts.
    let started = std::time::Instant::now();
    let (response, _) = team
        .call(
            "GET /api/users",
            "/api/users",
            &[("authorization", &bearer(&token))],
            None,
        )
        .await;
    let took = started.elapsed();
    assert_eq!(response.status, 503, "{}", response.body);
    assert!(took < FUNCTION_TIMEOUT, "{took:?}");
    assert!(connections.load(Ordering::SeqCst) > 0, "DynamoDB was tried");
    println!(
        "team with DynamoDB unreachable: 503 {} after {took:?}",
        response.json()["error"]
    );
    jwks_server.abort();
    hole_task.abort();
}

/// A token for an issuer whose JWKS is unreachable: signature never checked, the fetch fails.
struct LocalIssuerToken {
    token: String,
}

impl LocalIssuerToken {
    fn new(issuer: &str) -> Self {
        let key = tollgate_dev::issuer::LocalIssuer::generate().expect("key");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let token = key
            .sign(&json!({"sub": "rt|nobody", "iss": issuer, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 600}))
            .expect("sign");
        LocalIssuerToken { token }
    }
}

/// Tokens meant for this API: a binary whose template environment sets JwtIssuer but neither
/// JwtAudience nor JwtAuthorizedParties (their defaults are empty) refuses to start, and the
/// Runtime API receives the reason on `init/error`, naming both variables.
#[tokio::test(flavor = "multi_thread")]
async fn init_refuses_an_issuer_without_audience_or_authorized_parties() {
    let binary = "user-load";
    let path = function_binary_dir().join(binary);
    assert!(
        path.is_file(),
        "{} is not built: `make test` builds the function binaries first (cargo build --bins)",
        path.display()
    );
    let runtime = RuntimeApi::start(binary).await.expect("Runtime API starts");
    let mut environment = lambda_environment(binary, &runtime);
    environment.extend(template_environment(binary, &|target| match target {
        "TollgateTable" => Some("tollgate-init-test".to_owned()),
        "TollgateSecret" => {
            Some("arn:aws:secretsmanager:us-east-1:123456789012:secret:tollgate-AbCdEf".to_owned())
        }
        "JwtIssuer" => Some("https://tenant.auth0.com/".to_owned()),
        _ => None,
    }));
    let mut process = FunctionProcess::spawn(&path, &environment).expect("starts");
    let ready = runtime.wait_for_init(INIT_LIMIT).await;
    assert_eq!(
        ready,
        None,
        "{binary} started without an audience; output:\n{}",
        process.output().join("\n")
    );
    let Some(Outcome::Error { error_type, body }) = runtime.init_error() else {
        panic!(
            "nothing posted to init/error; output:\n{}",
            process.output().join("\n")
        );
    };
    assert_eq!(error_type.as_deref(), Some("Runtime.InitError"));
    let document: Value = serde_json::from_slice(&body).expect("a JSON error document");
    let message = document["errorMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains("JWT_AUDIENCE") && message.contains("JWT_AUTHORIZED_PARTIES"),
        "{document}"
    );
    assert_eq!(document["errorType"], "Runtime.InitError");
    // The process exits instead of serving.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while process.exited().is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(process.exited().is_some_and(|status| !status.success()));
    assert_eq!(runtime.next_requests(), 0);
}
