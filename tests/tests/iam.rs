//! Each function's IAM policy in `template.yaml` is exactly what its code uses.
//!
//! Every function's real binary runs under the Runtime API harness with only its template
//! environment, its `DYNAMODB_ENDPOINT` and `SECRETS_MANAGER_ENDPOINT` pointing at a recording
//! proxy ([`AwsRecorder`]) in front of DynamoDB Local and moto. Scenarios drive each of its routes
//! through success and write paths (set-up data goes straight into the table through
//! `tollgate::store` or the in-process gateway, so it is not attributed to a function). Each
//! recorded request is mapped to its IAM actions and resources by IAM's own rules, and the test
//! fails on a request the policy does not grant and on a grant no request uses.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use tollgate::pricing::{Interval, Plan};
use tollgate::store::PlanStatus;
use tollgate_tests::TestApp;
use tollgate_tests::aws_recorder::{
    ACCOUNT, Access, AwsRecorder, REGION, accesses_of, compare, event_source_mapping_accesses,
    template_policy,
};
use tollgate_tests::moto::Moto;
use tollgate_tests::runtime_api::{
    Booted, HttpApiResponse, Outcome, serve_jwks, template, template_environment,
};
use tollgate_tests::stripe_standin::{
    StripeStandIn, fixture, invoice_object, signed_event, subscription_object,
};

const SERVICE_KEY: &str = "tgsk_iam_test_SECRET_service_key_0123456789abcde";
const WEBHOOK_SECRET: &str = "whsec_iam_test_SECRET";
const STRIPE_KEY: &str = "sk_test_iam_SECRET";
const OLD_KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const API_KEY_PEPPER: &str = "iam_test_SECRET_api_key_pepper_0123456789abcdef";
const NEW_KEY: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const LIMIT: Duration = Duration::from_secs(10);
const INIT_LIMIT: Duration = Duration::from_secs(5);
const JSON: (&str, &str) = ("content-type", "application/json");
/// The API identifier the binaries require in `aud` (the template's JwtAudience).
const AUDIENCE: &str = "https://api.tollgate.test";

/// The deployed stack, locally: the table in DynamoDB Local, the secret in moto, Stripe stood
/// in, an identity provider serving its JWKS. `app` is the in-process gateway over the same table,
/// for set-up. Key rotation gets its own secret, whose active key is newer than the one the
/// integrations were written with.
struct Stack {
    app: TestApp,
    stripe: StripeStandIn,
    moto: Moto,
    secret_arn: String,
    rotation_secret_arn: String,
    issuer_url: String,
    jwks_server: tokio::task::JoinHandle<()>,
    /// The table's stream (DynamoDB Local's `LatestStreamArn`).
    stream_arn: String,
    /// The webhook delivery queue and its dead-letter queue, in moto.
    queues: tollgate_dev::notify::LocalQueues,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.jwks_server.abort();
    }
}

fn hex_sha256(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl Stack {
    async fn start() -> Stack {
        let stripe = StripeStandIn::start().await;
        // The in-process gateway shares the functions' key ring, so the webhook endpoint it
        // makes for the notifier's scenario is one the notifier can decrypt.
        let app = TestApp::start_billing_with(&stripe, WEBHOOK_SECRET, |config| {
            config.encryption_keys = Some(format!("k1:{OLD_KEY}"));
            config.encryption_active_key = Some("k1".to_owned());
        })
        .await;
        let (issuer_url, jwks_server) = serve_jwks(app.issuer.jwks().to_string())
            .await
            .expect("JWKS server");
        let moto = tokio::task::spawn_blocking(Moto::start)
            .await
            .expect("moto starts");
        let client = tollgate::secrets::secrets_manager_client(Some(&moto.endpoint)).await;
        let secret = |active: &str| {
            json!({
                "stripeSecretKey": STRIPE_KEY,
                "stripeWebhookSecret": [WEBHOOK_SECRET],
                "serviceKeyHashes": hex_sha256(SERVICE_KEY),
                "encryptionKeys": {"active": active, "keys": {"k1": OLD_KEY, "k2": NEW_KEY}},
                "apiKeyPepper": API_KEY_PEPPER,
            })
            .to_string()
        };
        let mut arns = Vec::new();
        for (name, active) in [("tollgate/iam", "k1"), ("tollgate/iam-rotation", "k2")] {
            let created = client
                .create_secret()
                .name(name)
                .secret_string(secret(active))
                .send()
                .await
                .expect("create the secret in moto");
            arns.push(created.arn().expect("secret ARN").to_owned());
        }
        let stream_arn = tollgate_dev::stream::StreamReader::new(
            Some(&tollgate_tests::dynamodb_endpoint()),
            app.store.table_name(),
        )
        .await
        .stream_arn()
        .await
        .expect("the table has a stream");
        let queues = tollgate_dev::notify::create_queues(
            &tollgate_dev::notify::sqs_client(Some(&moto.endpoint)).await,
            3,
        )
        .await
        .expect("the webhook queues in moto");
        Stack {
            queues,
            stream_arn,
            rotation_secret_arn: arns.pop().expect("two secrets"),
            secret_arn: arns.pop().expect("two secrets"),
            app,
            stripe,
            moto,
            issuer_url,
            jwks_server,
        }
    }

    /// A token the function binaries trust.
    fn token(&self, sub: &str) -> String {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        self.app.sign(json!({
            "sub": sub, "iss": self.issuer_url, "aud": AUDIENCE, "iat": now, "nbf": now,
            "exp": now + 600,
            "email": email(sub), "email_verified": true, "name": "IAM Tester",
        }))
    }

    fn secret_of(&self, binary: &str) -> &str {
        if binary == "rotate-keys" {
            &self.rotation_secret_arn
        } else {
            &self.secret_arn
        }
    }

    /// `!Ref` / `!GetAtt` values of this stack for `binary`, as AWS would resolve them.
    fn resolve(&self, binary: &str, name: &str) -> Option<String> {
        let table = self.app.store.table_name();
        match name {
            "TollgateTable" => Some(table.to_owned()),
            "TollgateTable.Arn" => {
                Some(format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}"))
            }
            "TollgateTable.StreamArn" => Some(self.stream_arn.clone()),
            "OrgCleanupDeadLetterQueue.Arn" => Some(format!(
                "arn:aws:sqs:{REGION}:{ACCOUNT}:tollgate-test-org-cleanup-dlq"
            )),
            "NotifierStreamDeadLetterQueue.Arn" => Some(format!(
                "arn:aws:sqs:{REGION}:{ACCOUNT}:tollgate-test-notifier-stream-dlq"
            )),
            "WebhookDeliveryQueue" => Some(self.queues.delivery_url.clone()),
            "WebhookDeliveryQueue.Arn" => {
                tollgate_tests::aws_recorder::queue_arn(&self.queues.delivery_url).ok()
            }
            "TollgateSecret" => Some(self.secret_of(binary).to_owned()),
            "JwtIssuer" => Some(self.issuer_url.clone()),
            "JwtAudience" => Some(AUDIENCE.to_owned()),
            "AppUrl" => Some("https://app.tollgate.test".to_owned()),
            _ => None,
        }
    }

    /// `binary` started with its template environment, talking to AWS through a recorder.
    async fn start_function(&self, binary: &str) -> Recorded {
        let recorder =
            AwsRecorder::start(&tollgate_tests::dynamodb_endpoint(), &self.moto.endpoint)
                .await
                .expect("recorder starts");
        let mut environment = template_environment(binary, &|name| self.resolve(binary, name));
        environment.extend([
            ("DYNAMODB_ENDPOINT".to_owned(), recorder.endpoint.clone()),
            (
                "SECRETS_MANAGER_ENDPOINT".to_owned(),
                recorder.endpoint.clone(),
            ),
            ("STRIPE_API_BASE".to_owned(), self.stripe.base_url.clone()),
            // moto serves SQS behind the same recorder.
            ("SQS_ENDPOINT".to_owned(), recorder.endpoint.clone()),
        ]);
        if binary == "notifier" {
            // The test's receivers are on loopback; failed attempts come back at once.
            environment.extend([
                ("WEBHOOK_ALLOW_LOOPBACK".to_owned(), "true".to_owned()),
                ("WEBHOOK_RETRY_BASE_SECONDS".to_owned(), "0".to_owned()),
            ]);
        }
        let booted = Booted::start(binary, environment, INIT_LIMIT).await;
        Recorded { recorder, booted }
    }
}

fn email(sub: &str) -> String {
    format!("{}@example.com", sub.replace(['|', ':'], "-"))
}

struct Recorded {
    recorder: AwsRecorder,
    booted: Booted,
}

impl Recorded {
    async fn call(
        &self,
        route_key: &str,
        path: &str,
        credential: &str,
        body: Option<Value>,
    ) -> HttpApiResponse {
        let authorization = format!("Bearer {credential}");
        let body = body.map(|b| b.to_string());
        let mut headers = vec![("authorization", authorization.as_str())];
        if body.is_some() {
            headers.push(JSON);
        }
        self.booted
            .call(route_key, path, &headers, body.as_deref(), LIMIT)
            .await
    }

    /// Invokes the function directly (not through API Gateway) with `event`: its JSON answer.
    async fn invoke(&self, binary: &str, event: &Value) -> Value {
        let outcome = self
            .booted
            .runtime
            .invoke(event, LIMIT)
            .await
            .unwrap_or_else(|error| panic!("{binary} does not answer: {error:?}"));
        let Outcome::Response(payload) = outcome else {
            panic!("{binary} failed: {outcome:?}");
        };
        serde_json::from_slice(&payload).expect("the answer is JSON")
    }

    /// Delivers a Stripe event signed with the webhook secret.
    async fn deliver(&self, event_type: &str, id: &str, created: i64, object: Value) -> Value {
        let (body, signature) = signed_event(WEBHOOK_SECRET, event_type, id, created, object);
        let response = self
            .booted
            .call(
                "POST /api/webhooks/stripe",
                "/api/webhooks/stripe",
                &[("stripe-signature", &signature), JSON],
                Some(&body),
                LIMIT,
            )
            .await;
        assert_eq!(response.status, 200, "{event_type}: {}", response.body);
        response.json()
    }

    /// A service key on a user route: the function reads the secret to check it (403 after).
    async fn service_key_on(&self, route_key: &str, path: &str) {
        let body = route_key.starts_with("POST").then(|| json!({}));
        let response = self.call(route_key, path, SERVICE_KEY, body).await;
        expect(&response, 403, "a service key on a user route");
        assert_eq!(response.json()["error"], "user_token_required");
    }
}

fn expect(response: &HttpApiResponse, status: u16, what: &str) {
    assert_eq!(response.status, status, "{what}: {}", response.body);
}

fn iso(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

/// Signs `sub` in through the in-process gateway and gives them an organization on `plan`.
async fn organization(stack: &Stack, sub: &str, plan: Option<Plan>) -> (String, String) {
    let (app_token, user) = stack.app.owner_with_organization(sub).await;
    let tenant = user.tenant().expect("tenant");
    if let Some(plan) = plan {
        stack
            .app
            .store
            .set_organization_plan(&tenant, Some(plan), PlanStatus::Active)
            .await
            .expect("set plan");
    }
    (app_token, tenant.as_str().to_owned())
}

/// The organization that pays: its owner's token (trusted by the binaries), tenant and Stripe
/// customer, and its subscription's current period.
struct Payer {
    token: String,
    tenant: tollgate::store::TenantId,
    customer: String,
    period: (i64, i64),
}

impl Payer {
    fn subscription(&self, status: &str, price: &str) -> Value {
        subscription_object("sub_iam_payer", &self.customer, status, price, self.period)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_function_is_granted_exactly_the_aws_actions_its_code_uses() {
    let stack = Stack::start().await;
    // An organization on PROFESSIONAL whose owner drives the member and integration routes.
    let (owner_app_token, owner_org) =
        organization(&stack, "iam|owner", Some(Plan::Professional)).await;
    let owner = stack.token("iam|owner");
    let mut functions: BTreeMap<&str, Recorded> = BTreeMap::new();
    functions.insert(
        "user-load",
        user_load(&stack, &owner_app_token, &owner_org).await,
    );
    functions.insert("permission-check", permission_check(&stack, &owner).await);
    let (organizations, org_cleanup) = organizations(&stack).await;
    functions.insert("organizations", organizations);
    functions.insert("org-cleanup", org_cleanup);
    functions.insert("team", team(&stack, &owner).await);
    let (checkout, payer) = checkout(&stack).await;
    functions.insert("checkout", checkout);
    functions.insert("billing-portal", billing_portal(&stack, &payer).await);
    let webhook = stack.start_function("stripe-webhook").await;
    subscription_lifecycle(&stack, &webhook, &payer).await;
    functions.insert("billing", billing(&stack, &payer).await);
    functions.insert("usage-tracking", usage_with_overage(&stack, &webhook).await);
    // The subscription ends.
    let ended = webhook
        .deliver(
            "customer.subscription.deleted",
            "evt_iam_deleted",
            OffsetDateTime::now_utc().unix_timestamp(),
            payer.subscription("canceled", "price_business_monthly"),
        )
        .await;
    assert_eq!(ended["outcome"], "processed", "{ended}");
    functions.insert("stripe-webhook", webhook);
    let (integrations, rotate) = integrations_and_rotation(&stack, &owner).await;
    functions.insert("integrations", integrations);
    functions.insert("rotate-keys", rotate);
    functions.insert("api-keys", api_keys(&stack).await);
    functions.insert("webhooks", webhooks(&stack, &owner).await);
    functions.insert("audit", audit(&stack, &owner).await);
    functions.insert("notifier", notifier(&stack).await);

    // Every function of the template has been driven.
    let template = template();
    let deployed: BTreeSet<&str> = template["Resources"]
        .as_mapping()
        .expect("Resources")
        .values()
        .filter_map(|r| r["Metadata"]["BuildProperties"]["Binary"].as_str())
        .collect();
    assert_eq!(
        deployed,
        functions.keys().cloned().collect::<BTreeSet<_>>(),
        "every function needs its scenarios here"
    );

    let mut findings = Vec::new();
    for (binary, recorded) in &functions {
        let requests = recorded.recorder.requests();
        let mut used: BTreeSet<Access> =
            accesses_of(&requests).unwrap_or_else(|error| panic!("{binary}: {error}"));
        // What Lambda's event source mapping (not the code) does with the role.
        used.extend(
            event_source_mapping_accesses(&template, binary, &|name| stack.resolve(binary, name))
                .unwrap_or_else(|error| panic!("{error}")),
        );
        let policy = template_policy(&template, binary, &|name| stack.resolve(binary, name))
            .unwrap_or_else(|error| panic!("{error}"));
        let actions: BTreeSet<&str> = used.iter().map(|a| a.action.as_str()).collect();
        println!("{binary}: {} requests → {actions:?}", requests.len());
        findings.extend(compare(binary, &used, &policy));
    }
    assert!(
        findings.is_empty(),
        "template.yaml's policies differ from what the code uses:\n{}",
        findings.join("\n")
    );
}

/// An invitation of `inviter`'s organization to `invitee`'s email expiring at `expires_at`, written
/// straight through the store: the inviter's sensitive-action limit (5 per 15 minutes in the
/// template's environment) is kept for the invitations and integrations the binaries create.
async fn store_invitation(app: &TestApp, inviter: &str, invitee: &str, expires_at: i64) -> String {
    let tenant = tollgate_tests::tenant_of(app, inviter).await;
    let user = app
        .store
        .get_user(inviter)
        .await
        .expect("read")
        .expect("inviter");
    let role = user.role.expect("inviter's role");
    app.store
        .invite(
            &tenant,
            (&user.id, role),
            None,
            &email(invitee),
            tollgate::rbac::Role::Viewer,
            999,
            expires_at,
        )
        .await
        .expect("invitation written")
        .id
}

/// The usage alerts recorded for `tenant`'s `period`, read straight from the table.
async fn usage_alerts(
    stack: &Stack,
    tenant: &tollgate::store::TenantId,
    period: &tollgate::usage::Period,
) -> Vec<String> {
    let counter = stack
        .app
        .store
        .usage_counter(tenant, period)
        .await
        .expect("read the counter");
    let mut alerts: Vec<String> = tollgate::usage::Threshold::ALL
        .into_iter()
        .filter(|t| counter.alert_at(*t).is_some())
        .map(|t| t.as_str().to_owned())
        .collect();
    alerts.sort();
    alerts
}

/// user-load: first sign-in, a later one listing a pending invitation, accepting it, leaving the
/// organization, declining another invitation, a service key.
async fn user_load(stack: &Stack, owner_app_token: &str, owner_org: &str) -> Recorded {
    let app = &stack.app;
    let user_load = stack.start_function("user-load").await;
    let newcomer = stack.token("iam|newcomer");
    expect(
        &user_load
            .call("GET /api/me", "/api/me", &newcomer, None)
            .await,
        201,
        "first sign-in",
    );
    expect(
        &user_load
            .call("GET /api/me", "/api/me", &newcomer, None)
            .await,
        200,
        "second sign-in",
    );
    let invited = app
        .post(
            "/api/users",
            owner_app_token,
            json!({"email": email("iam|joiner"), "role": "MANAGER"}),
        )
        .await;
    assert_eq!(invited.status, 201, "{}", invited.body);
    let never = OffsetDateTime::now_utc().unix_timestamp() + 86_400;
    let invitations = [
        invited.body["id"].as_str().expect("id").to_owned(),
        store_invitation(app, "iam|owner", "iam|decliner", never).await,
    ];
    let joiner = stack.token("iam|joiner");
    let listed = user_load
        .call("GET /api/me", "/api/me", &joiner, None)
        .await;
    expect(&listed, 201, "sign-in that lists an invitation");
    assert_eq!(
        listed.json()["invitations"][0]["organizationId"],
        owner_org,
        "{}",
        listed.body
    );
    let joined = user_load
        .call(
            "POST /api/me/invitations/{id}/accept",
            &format!("/api/me/invitations/{}/accept", invitations[0]),
            &joiner,
            Some(json!({})),
        )
        .await;
    expect(&joined, 200, "accept an invitation");
    assert_eq!(joined.json()["user"]["role"], "MANAGER", "{}", joined.body);
    assert_eq!(joined.json()["user"]["organizationId"], owner_org);
    let left = user_load
        .call(
            "DELETE /api/me/organization",
            "/api/me/organization",
            &joiner,
            None,
        )
        .await;
    expect(&left, 200, "leave the organization");
    let decliner = stack.token("iam|decliner");
    expect(
        &user_load
            .call("GET /api/me", "/api/me", &decliner, None)
            .await,
        201,
        "the decliner's first sign-in",
    );
    let declined = user_load
        .call(
            "POST /api/me/invitations/{id}/decline",
            &format!("/api/me/invitations/{}/decline", invitations[1]),
            &decliner,
            Some(json!({})),
        )
        .await;
    expect(&declined, 200, "decline an invitation");
    user_load.service_key_on("GET /api/me", "/api/me").await;
    user_load
}

async fn permission_check(stack: &Stack, owner: &str) -> Recorded {
    let permission_check = stack.start_function("permission-check").await;
    let checked = permission_check
        .call(
            "POST /api/permissions/check",
            "/api/permissions/check",
            owner,
            Some(json!({"permissions": ["org:read", "billing:update"]})),
        )
        .await;
    expect(&checked, 200, "permission check");
    assert_eq!(checked.json()["allowed"], true, "{}", checked.body);
    permission_check
        .service_key_on("POST /api/permissions/check", "/api/permissions/check")
        .await;
    permission_check
}

/// organizations: onboarding, read, rename, and deleting one with a member and an invitation;
/// org-cleanup (fed the table's stream records of the deletion, as the event source mapping's
/// filter passes them) runs the deletion job.
async fn organizations(stack: &Stack) -> (Recorded, Recorded) {
    let app = &stack.app;
    let organizations = stack.start_function("organizations").await;
    let founder_app = app.token("iam|founder", Some(&email("iam|founder")), None);
    assert_eq!(app.get("/api/me", &founder_app).await.status, 201);
    let founder = stack.token("iam|founder");
    let created = organizations
        .call(
            "POST /api/organizations",
            "/api/organizations",
            &founder,
            Some(json!({"name": "Founded"})),
        )
        .await;
    expect(&created, 201, "create organization");
    expect(
        &organizations
            .call("GET /api/organization", "/api/organization", &founder, None)
            .await,
        200,
        "read",
    );
    let renamed = organizations
        .call(
            "PATCH /api/organization",
            "/api/organization",
            &founder,
            Some(json!({"name": "Renamed"})),
        )
        .await;
    expect(&renamed, 200, "rename");
    let founded = tollgate_tests::tenant_of(app, "iam|founder").await;
    app.store
        .set_organization_plan(&founded, Some(Plan::Professional), PlanStatus::Active)
        .await
        .expect("set plan");
    app.add_member(&founder_app, "iam|colleague", "VIEWER")
        .await;
    let pending = app
        .post(
            "/api/users",
            &founder_app,
            json!({"email": email("iam|pending"), "role": "VIEWER"}),
        )
        .await;
    assert_eq!(pending.status, 201, "{}", pending.body);
    app.store
        .set_organization_plan(&founded, Some(Plan::Professional), PlanStatus::Canceled)
        .await
        .expect("cancel plan");
    let deleted = organizations
        .call(
            "DELETE /api/organization",
            "/api/organization",
            &founder,
            None,
        )
        .await;
    expect(&deleted, 202, "delete organization");
    let org_cleanup = stack.start_function("org-cleanup").await;
    let records: Vec<_> = tollgate_dev::stream::StreamReader::new(
        Some(&tollgate_tests::dynamodb_endpoint()),
        app.store.table_name(),
    )
    .await
    .read_all()
    .await
    .expect("read the stream")
    .into_iter()
    .filter(|r| org_cleanup::running_deletion(r).as_ref() == Some(&founded))
    .collect();
    assert!(!records.is_empty(), "the deletion is on the stream");
    let event = tollgate_dev::stream::event_of(records);
    let answer = org_cleanup
        .invoke("org-cleanup", &serde_json::to_value(&event).expect("event"))
        .await;
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let colleague = app
        .store
        .get_user("iam|colleague")
        .await
        .expect("read")
        .expect("user");
    assert_eq!(colleague.organization_id, None, "the member was detached");
    organizations
        .service_key_on("GET /api/organization", "/api/organization")
        .await;
    (organizations, org_cleanup)
}

/// team: invite, list, change a role, remove a member, revoke an invitation, release an expired
/// one, resend one.
async fn team(stack: &Stack, owner: &str) -> Recorded {
    let app = &stack.app;
    let team = stack.start_function("team").await;
    let invited = team
        .call(
            "POST /api/users",
            "/api/users",
            owner,
            Some(json!({"email": email("iam|bob"), "role": "MANAGER"})),
        )
        .await;
    expect(&invited, 201, "invite");
    let bob = app.verified_token("iam|bob", &email("iam|bob"), None);
    app.get("/api/me", &bob).await;
    let invitation = invited.json()["id"].as_str().expect("id").to_owned();
    let bob_id = app
        .post(
            &format!("/api/me/invitations/{invitation}/accept"),
            &bob,
            json!({}),
        )
        .await
        .body["user"]["id"]
        .as_str()
        .expect("bob joined")
        .to_owned();
    let listed = team
        .call("GET /api/users", "/api/users?limit=10", owner, None)
        .await;
    expect(&listed, 200, "list");
    let changed = team
        .call(
            "PATCH /api/users/{id}",
            &format!("/api/users/{bob_id}"),
            owner,
            Some(json!({"role": "VIEWER"})),
        )
        .await;
    expect(&changed, 200, "change role");
    let removed = team
        .call(
            "DELETE /api/users/{id}",
            &format!("/api/users/{bob_id}"),
            owner,
            None,
        )
        .await;
    expect(&removed, 200, "remove member");
    let unexpired = OffsetDateTime::now_utc().unix_timestamp() + 86_400;
    let invitation = store_invitation(app, "iam|owner", "iam|carol", unexpired).await;
    let revoked = team
        .call(
            "DELETE /api/users/invitations/{id}",
            &format!("/api/users/invitations/{invitation}"),
            owner,
            None,
        )
        .await;
    expect(&revoked, 200, "revoke invitation");
    // An expired invitation gives its seat back before the next invitation; resending renews one.
    store_invitation(app, "iam|owner", "iam|dan", 1).await;
    let eve = team
        .call(
            "POST /api/users",
            "/api/users",
            owner,
            Some(json!({"email": email("iam|eve"), "role": "VIEWER"})),
        )
        .await;
    expect(&eve, 201, "invite after an expiry");
    let listed = app
        .get("/api/users", &app.token("iam|owner", None, None))
        .await;
    assert_eq!(
        listed.body["invitations"].as_array().map(Vec::len),
        Some(1),
        "dan's expired invitation was released: {}",
        listed.body
    );
    let eve_id = eve.json()["id"].as_str().expect("id").to_owned();
    let resent = team
        .call(
            "POST /api/users/invitations/{id}/resend",
            &format!("/api/users/invitations/{eve_id}/resend"),
            owner,
            Some(json!({})),
        )
        .await;
    expect(&resent, 200, "resend an invitation");
    team.service_key_on("GET /api/users", "/api/users").await;
    team
}

/// checkout: creates the Stripe customer and links it to the organization, then reuses it.
async fn checkout(stack: &Stack) -> (Recorded, Payer) {
    let app = &stack.app;
    let checkout = stack.start_function("checkout").await;
    organization(stack, "iam|payer", None).await;
    let payer = stack.token("iam|payer");
    let session = checkout
        .call(
            "POST /api/billing/checkout",
            "/api/billing/checkout",
            &payer,
            Some(json!({"plan": "PROFESSIONAL", "interval": "monthly"})),
        )
        .await;
    expect(&session, 200, "checkout");
    let payer_tenant = tollgate_tests::tenant_of(app, "iam|payer").await;
    let customer = app
        .store
        .get_organization(&payer_tenant)
        .await
        .expect("read")
        .expect("organization")
        .stripe_customer_id
        .expect("checkout linked a customer");
    // A second checkout reuses the linked customer.
    let again = checkout
        .call(
            "POST /api/billing/checkout",
            "/api/billing/checkout",
            &payer,
            Some(json!({"plan": "STARTER", "interval": "yearly"})),
        )
        .await;
    expect(&again, 200, "checkout again");
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let payer = Payer {
        token: payer,
        tenant: payer_tenant,
        customer,
        period: (now - 86_400, now + 29 * 86_400),
    };
    (checkout, payer)
}

async fn billing_portal(stack: &Stack, payer: &Payer) -> Recorded {
    let portal = stack.start_function("billing-portal").await;
    let portal_session = portal
        .call(
            "POST /api/billing/portal",
            "/api/billing/portal",
            &payer.token,
            Some(json!({})),
        )
        .await;
    expect(&portal_session, 200, "portal");
    portal
}

/// stripe-webhook: the payer's subscription from checkout to a failed payment, and a redelivery.
async fn subscription_lifecycle(stack: &Stack, webhook: &Recorded, payer: &Payer) {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let customer = payer.customer.as_str();
    stack.stripe.set_subscription(
        "sub_iam_payer",
        payer.subscription("active", "price_pro_monthly"),
    );
    let mut session_object = fixture("checkout.session");
    session_object["customer"] = json!(customer);
    session_object["subscription"] = json!("sub_iam_payer");
    session_object["client_reference_id"] = json!(payer.tenant.as_str());
    session_object["mode"] = json!("subscription");
    session_object["status"] = json!("complete");
    session_object["payment_status"] = json!("paid");
    let lifecycle = [
        ("checkout.session.completed", session_object),
        (
            "customer.subscription.created",
            payer.subscription("active", "price_pro_monthly"),
        ),
        (
            "invoice.paid",
            invoice_object("in_iam_1", customer, "sub_iam_payer", "paid", now - 80_000),
        ),
        (
            "customer.subscription.updated",
            payer.subscription("active", "price_business_monthly"),
        ),
        (
            "invoice.payment_failed",
            invoice_object("in_iam_2", customer, "sub_iam_payer", "open", now - 1000),
        ),
    ];
    for (i, (event_type, object)) in lifecycle.into_iter().enumerate() {
        let answer = webhook
            .deliver(
                event_type,
                &format!("evt_iam_{i}"),
                now - 70_000 + i as i64,
                object,
            )
            .await;
        assert_eq!(answer["outcome"], "processed", "{event_type}: {answer}");
    }
    let duplicate = webhook
        .deliver(
            "invoice.paid",
            "evt_iam_2",
            now,
            invoice_object("in_iam_1", customer, "sub_iam_payer", "paid", now - 80_000),
        )
        .await;
    assert_eq!(duplicate["outcome"], "duplicate", "{duplicate}");
}

/// billing: the subscription and invoices the webhook recorded.
async fn billing(stack: &Stack, payer: &Payer) -> Recorded {
    let billing = stack.start_function("billing").await;
    let read = billing
        .call(
            "GET /api/billing/subscription",
            "/api/billing/subscription",
            &payer.token,
            None,
        )
        .await;
    expect(&read, 200, "subscription");
    assert_eq!(read.json()["plan"], "BUSINESS", "{}", read.body);
    let invoices = billing
        .call(
            "GET /api/billing/invoices",
            "/api/billing/invoices",
            &payer.token,
            None,
        )
        .await;
    expect(&invoices, 200, "invoices");
    assert_eq!(
        invoices.json()["invoices"].as_array().map(Vec::len),
        Some(2),
        "{}",
        invoices.body
    );
    billing
        .service_key_on("GET /api/billing/subscription", "/api/billing/subscription")
        .await;
    billing
}

/// usage-tracking: a STARTER organization (500 minutes) whose first period closed 5 days ago;
/// calls cross 80 % and 100 % and go over, the period's invoice bills the overage (webhook),
/// a late call is carried into the open period.
async fn usage_with_overage(stack: &Stack, webhook: &Recorded) -> Recorded {
    let app = &stack.app;
    let usage = stack.start_function("usage-tracking").await;
    let (meter_app_token, meter_org) = organization(stack, "iam|meter", None).await;
    let started = app
        .post(
            "/api/billing/checkout",
            &meter_app_token,
            json!({"plan": "STARTER", "interval": "monthly"}),
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.body);
    let meter_tenant = tollgate_tests::tenant_of(app, "iam|meter").await;
    let meter_customer = app
        .store
        .get_organization(&meter_tenant)
        .await
        .expect("read")
        .expect("organization")
        .stripe_customer_id
        .expect("customer");
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("whole seconds");
    let anchor = now - time::Duration::days(35);
    let closed = tollgate::usage::subscription_period_containing(anchor, Interval::Monthly, anchor);
    let (start, end) = (closed.start.unix_timestamp(), closed.end.unix_timestamp());
    let created = webhook
        .deliver(
            "customer.subscription.created",
            "evt_iam_meter_sub",
            start,
            subscription_object(
                "sub_iam_meter",
                &meter_customer,
                "active",
                "price_starter_monthly",
                (start, end),
            ),
        )
        .await;
    assert_eq!(created["outcome"], "processed", "{created}");
    let post_call = |id: String, seconds: i64, ended: OffsetDateTime| {
        let body = json!({"organizationId": meter_org, "callId": id, "durationSeconds": seconds, "endedAt": iso(ended)});
        let usage = &usage;
        async move {
            usage
                .call(
                    "POST /api/usage/calls",
                    "/api/usage/calls",
                    SERVICE_KEY,
                    Some(body),
                )
                .await
        }
    };
    for (i, seconds) in [6000, 6000, 6000, 6000, 6000, 1200].into_iter().enumerate() {
        let recorded = post_call(
            format!("closed-{i}"),
            seconds,
            closed.start + time::Duration::days(2),
        )
        .await;
        expect(&recorded, 201, "record a call");
    }
    let repeated = post_call(
        "closed-0".into(),
        6000,
        closed.start + time::Duration::days(2),
    )
    .await;
    assert!(
        repeated.status < 300,
        "a repeat answers the original: {}",
        repeated.body
    );
    let mut renewal = fixture("invoice");
    renewal["id"] = json!("in_iam_renewal");
    renewal["customer"] = json!(meter_customer);
    renewal["status"] = json!("draft");
    renewal["billing_reason"] = json!("subscription_cycle");
    renewal["period_start"] = json!(start);
    renewal["period_end"] = json!(end);
    renewal["created"] = json!(end);
    renewal["parent"] = json!({"type": "subscription_details", "quote_details": null,
        "subscription_details": {"metadata": {}, "subscription": "sub_iam_meter"}});
    let overage = webhook
        .deliver("invoice.created", "evt_iam_renewal", end + 60, renewal)
        .await;
    assert_eq!(overage["outcome"], "processed", "{overage}");
    assert_eq!(
        stack.stripe.requests_to("POST", "/v1/invoiceitems").len(),
        1,
        "the overage was billed"
    );
    let late = post_call("late".into(), 120, closed.end - time::Duration::minutes(2)).await;
    expect(&late, 201, "a late call");
    assert_eq!(
        late.json()["periodStart"],
        iso(closed.end),
        "carried: {}",
        late.body
    );
    let meter = stack.token("iam|meter");
    let read = usage
        .call("GET /api/billing/usage", "/api/billing/usage", &meter, None)
        .await;
    expect(&read, 200, "read usage");
    let alerts = usage_alerts(stack, &meter_tenant, &closed).await;
    assert_eq!(alerts, ["100", "80"], "both thresholds crossed");
    usage
}

/// integrations: create two, list, delete one; rotate-keys (invoked directly) re-encrypts the
/// other under its newer active key.
async fn integrations_and_rotation(stack: &Stack, owner: &str) -> (Recorded, Recorded) {
    let integrations = stack.start_function("integrations").await;
    for name in ["Main line", "Backup line"] {
        let created = integrations
            .call(
                "POST /api/integrations",
                "/api/integrations",
                owner,
                Some(json!({"type": "twilio", "name": name, "credentials": {"accountSid": "AC1", "authToken": "tok_SECRET"}})),
            )
            .await;
        expect(&created, 201, "create integration");
    }
    let listed = integrations
        .call("GET /api/integrations", "/api/integrations", owner, None)
        .await;
    expect(&listed, 200, "list integrations");
    let first = listed.json()["integrations"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let deleted = integrations
        .call(
            "DELETE /api/integrations/{id}",
            &format!("/api/integrations/{first}"),
            owner,
            None,
        )
        .await;
    expect(&deleted, 200, "delete integration");
    let rotate = stack.start_function("rotate-keys").await;
    let report = rotate.invoke("rotate-keys", &json!({})).await;
    assert_eq!(report["reencrypted"], json!(1), "{report}");
    (integrations, rotate)
}

/// api-keys: an OWNER of a BUSINESS organization creates a key, lists the keys and revokes the
/// key; the key itself is refused on the key routes (read and counted first) and, once revoked,
/// refused as unknown.
async fn api_keys(stack: &Stack) -> Recorded {
    organization(stack, "iam|keys-owner", Some(Plan::Business)).await;
    let owner = stack.token("iam|keys-owner");
    let function = stack.start_function("api-keys").await;
    let created = function
        .call(
            "POST /api/api-keys",
            "/api/api-keys",
            &owner,
            Some(json!({"name": "IAM key", "role": "ADMIN"})),
        )
        .await;
    expect(&created, 201, "create an API key");
    let id = created.json()["id"].as_str().expect("id").to_owned();
    let key = created.json()["key"].as_str().expect("key").to_owned();
    let listed = function
        .call("GET /api/api-keys", "/api/api-keys", &owner, None)
        .await;
    expect(&listed, 200, "list API keys");
    let by_key = function
        .call("GET /api/api-keys", "/api/api-keys", &key, None)
        .await;
    expect(&by_key, 403, "a key on the key routes");
    let revoked = function
        .call(
            "DELETE /api/api-keys/{id}",
            &format!("/api/api-keys/{id}"),
            &owner,
            None,
        )
        .await;
    expect(&revoked, 200, "revoke the API key");
    let after = function
        .call("GET /api/api-keys", "/api/api-keys", &key, None)
        .await;
    expect(&after, 401, "a revoked key");
    function
}

/// audit: the owner reads the organization's audit log (the events the scenarios above wrote with
/// their changes, its creation first of all); a service key is refused after the secret is read.
async fn audit(stack: &Stack, owner: &str) -> Recorded {
    let function = stack.start_function("audit").await;
    let listed = function
        .call("GET /api/audit", "/api/audit", owner, None)
        .await;
    expect(&listed, 200, "list audit events");
    let events = listed.json()["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        events.iter().any(|e| e["type"] == "organization.created"),
        "{}",
        listed.body
    );
    function
        .service_key_on("GET /api/audit", "/api/audit")
        .await;
    function
}

/// A webhook receiver on 127.0.0.1 that answers 500 to its first request and 200 after: the
/// number of requests it got, and its URL.
async fn flaky_receiver() -> (
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    String,
    tokio::task::JoinHandle<()>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let router = axum::Router::new().fallback(move || {
        let seen = seen.clone();
        async move {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                axum::http::StatusCode::INTERNAL_SERVER_ERROR
            } else {
                axum::http::StatusCode::OK
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (count, url, server)
}

/// One poll of the delivery queue (as the queue mapping polls it) handed to the notifier
/// binary: its answer.
async fn queue_batch(stack: &Stack, notifier: &Recorded) -> Value {
    let sqs = tollgate_dev::notify::sqs_client(Some(&stack.moto.endpoint)).await;
    let received = sqs
        .receive_message()
        .queue_url(&stack.queues.delivery_url)
        .max_number_of_messages(10)
        .wait_time_seconds(5)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .expect("receive deliveries");
    let messages = received.messages.unwrap_or_default();
    assert!(!messages.is_empty(), "a delivery is queued");
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    event.records = messages
        .iter()
        .map(tollgate_dev::notify::sqs_message)
        .collect();
    notifier
        .invoke("notifier", &serde_json::to_value(&event).expect("event"))
        .await
}

/// notifier: an organization's endpoint (made through the in-process gateway) and an audit event
/// (a rename); the event's stream record queues a delivery; the queued delivery is attempted
/// twice, refused first (its visibility set to its backoff) and delivered after.
async fn notifier(stack: &Stack) -> Recorded {
    let app = &stack.app;
    // An organization of its own: the other scenarios' endpoints want none of its events.
    let (owner_app_token, tenant) = organization(stack, "iam|hooks", Some(Plan::Business)).await;
    let owner_app_token = owner_app_token.as_str();
    let (requests, url, receiver) = flaky_receiver().await;
    let created = app
        .post(
            "/api/webhooks/endpoints",
            owner_app_token,
            json!({"url": url, "eventTypes": ["organization.updated"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let renamed = app
        .patch(
            "/api/organization",
            owner_app_token,
            json!({"name": "IAM Webhooks"}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    let notifier = stack.start_function("notifier").await;
    let records: Vec<_> = tollgate_dev::stream::StreamReader::new(
        Some(&tollgate_tests::dynamodb_endpoint()),
        app.store.table_name(),
    )
    .await
    .read_all()
    .await
    .expect("read the stream")
    .into_iter()
    .filter(|r| notifier::inserted_event(r).is_some_and(|(t, _)| t.as_str() == tenant.as_str()))
    .collect();
    let event = tollgate_dev::stream::event_of(records);
    let answer = notifier
        .invoke("notifier", &serde_json::to_value(&event).expect("event"))
        .await;
    assert_eq!(answer, json!({"batchItemFailures": []}));

    let refused = queue_batch(stack, &notifier).await;
    assert_eq!(
        refused["batchItemFailures"].as_array().map(Vec::len),
        Some(1),
        "the 500 is reported: {refused}"
    );
    let delivered = queue_batch(stack, &notifier).await;
    assert_eq!(delivered, json!({"batchItemFailures": []}));
    assert_eq!(
        requests.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "refused once, then delivered"
    );
    receiver.abort();
    notifier
}

/// webhooks: the owner registers two endpoints (signing secrets encrypted under the secret's key
/// ring), lists them and deletes one; a service key is refused after the secret is read.
async fn webhooks(stack: &Stack, owner: &str) -> Recorded {
    let function = stack.start_function("webhooks").await;
    for host in ["one", "two"] {
        let created = function
            .call(
                "POST /api/webhooks/endpoints",
                "/api/webhooks/endpoints",
                owner,
                Some(json!({"url": format!("https://{host}.hooks.example.com/tollgate"), "eventTypes": ["member.joined", "api_key.created"]})),
            )
            .await;
        expect(&created, 201, "create a webhook endpoint");
    }
    let listed = function
        .call(
            "GET /api/webhooks/endpoints",
            "/api/webhooks/endpoints",
            owner,
            None,
        )
        .await;
    expect(&listed, 200, "list webhook endpoints");
    let first = listed.json()["endpoints"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let deleted = function
        .call(
            "DELETE /api/webhooks/endpoints/{id}",
            &format!("/api/webhooks/endpoints/{first}"),
            owner,
            None,
        )
        .await;
    expect(&deleted, 204, "delete a webhook endpoint");
    function
        .service_key_on("GET /api/webhooks/endpoints", "/api/webhooks/endpoints")
        .await;
    function
}
