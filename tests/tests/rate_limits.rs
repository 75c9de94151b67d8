//! Rate limits through the pipeline: 429 with the envelope, `Retry-After` and `RateLimit-*`
//! headers, per user, per sensitive action, per organization for invitations, and per source IP
//! (IPv6 by /64) for anonymous and failed attempts, which never touch valid or expired credentials.

use serde_json::json;
use tollgate::pricing::Plan;
use tollgate::store::PlanStatus;
use tollgate_tests::{TestApp, assert_error};

async fn app(user: u64, sensitive: u64, anonymous: u64, failed: u64) -> TestApp {
    TestApp::start_with(move |config| {
        config.rate_limits.user.max = user;
        config.rate_limits.sensitive.max = sensitive;
        config.rate_limits.anonymous.max = anonymous;
        config.rate_limits.failed_auth.max = failed;
    })
    .await
}

#[tokio::test]
async fn a_user_over_the_limit_gets_429_with_headers_and_others_do_not() {
    let app = app(5, 100, 100, 100).await;
    let alice = app.token("auth0|alice", None, None);
    for i in 1..=5u64 {
        let reply = app.get("/api/me", &alice).await;
        assert!(reply.status < 300, "{}", reply.body);
        assert_eq!(reply.headers["ratelimit-limit"], "5");
        assert_eq!(
            reply.headers["ratelimit-remaining"],
            (5 - i).to_string().as_str()
        );
        let reset: u64 = reply.headers["ratelimit-reset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=3600).contains(&reset));
        assert!(!reply.headers.contains_key("retry-after"));
    }
    let limited = app.get("/api/me", &alice).await;
    assert_error(&limited, 429, "rate_limited");
    assert_eq!(limited.headers["ratelimit-remaining"], "0");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry));

    let bob = app.token("auth0|bob", None, None);
    assert_eq!(
        app.get("/api/me", &bob).await.status,
        201,
        "limits are per user"
    );
}

#[tokio::test]
async fn checkout_and_portal_keep_a_tighter_per_user_limit() {
    let app = app(1000, 2, 100, 100).await;
    let (owner, _) = app
        .organization_on_plan("auth0|buyer", Plan::Business, PlanStatus::Active)
        .await;
    let checkout = json!({"plan": "BUSINESS", "interval": "monthly"});
    // Billing is not configured here (503): counted all the same, before the handler runs.
    for _ in 0..2 {
        let reply = app
            .post("/api/billing/checkout", &owner, checkout.clone())
            .await;
        assert_error(&reply, 503, "billing_not_configured");
    }
    let third = app.post("/api/billing/checkout", &owner, checkout).await;
    assert_error(&third, 429, "rate_limited");
    assert_eq!(third.headers["ratelimit-limit"], "2");
    assert!(third.headers.contains_key("retry-after"));
    let portal = app.post("/api/billing/portal", &owner, json!({})).await;
    assert_error(&portal, 429, "rate_limited");
    // Invitations are not in this bucket, and ordinary reads go on.
    let invited = app
        .post(
            "/api/users",
            &owner,
            json!({"email": "after-checkout@example.com", "role": "VIEWER"}),
        )
        .await;
    assert_eq!(invited.status, 201, "{}", invited.body);
    assert_eq!(app.get("/api/users", &owner).await.status, 200);
    // Per user: another owner's checkout is not limited.
    let (other, _) = app
        .organization_on_plan("auth0|other-buyer", Plan::Business, PlanStatus::Active)
        .await;
    let reply = app
        .post(
            "/api/billing/checkout",
            &other,
            json!({"plan": "BUSINESS", "interval": "monthly"}),
        )
        .await;
    assert_error(&reply, 503, "billing_not_configured");
}

/// At the production defaults (5 sensitive actions per 15 minutes per user, 50 invitations per
/// hour per organization) a team lead invites a team of ten in a row.
#[tokio::test]
async fn ten_invitations_in_a_row_all_answer_201() {
    let app = TestApp::start_with(|config| {
        config.rate_limits = tollgate::ratelimit::RateLimits::default()
    })
    .await;
    let (owner, _) = app
        .organization_on_plan("auth0|team-lead", Plan::Business, PlanStatus::Active)
        .await;
    for i in 1..=10 {
        let reply = app
            .post(
                "/api/users",
                &owner,
                json!({"email": format!("teammate{i}@example.com"), "role": "OPERATOR"}),
            )
            .await;
        assert_eq!(reply.status, 201, "invitation {i}: {}", reply.body);
        assert_eq!(reply.headers["ratelimit-limit"], "50", "invitation {i}");
    }
}

#[tokio::test]
async fn invitations_have_a_per_organization_limit() {
    let app = TestApp::start_with(|config| config.rate_limits.invitations.max = 2).await;
    let (owner, user) = app
        .organization_on_plan("auth0|inviter", Plan::Business, PlanStatus::Active)
        .await;
    let invite = |token: String, email: &'static str| {
        let app = &app;
        async move {
            app.post(
                "/api/users",
                &token,
                json!({"email": email, "role": "VIEWER"}),
            )
            .await
        }
    };
    let first = invite(owner.clone(), "p1@example.com").await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(invite(owner.clone(), "p2@example.com").await.status, 201);
    let third = invite(owner.clone(), "p3@example.com").await;
    assert_error(&third, 429, "rate_limited");
    assert_eq!(third.headers["ratelimit-limit"], "2");
    assert!(third.headers.contains_key("retry-after"));
    // A resend is an invitation sent again: the same allowance.
    let first_id = first.body["id"].as_str().expect("invitation id");
    let resend = app
        .post(
            &format!("/api/users/invitations/{first_id}/resend"),
            &owner,
            json!({}),
        )
        .await;
    assert_error(&resend, 429, "rate_limited");
    // Nothing but the limiter's own counter changed: no third invitation was written.
    let invitations = app
        .all_items()
        .await
        .iter()
        .filter(|i| {
            i.get("entity")
                .and_then(|e| e.as_s().ok())
                .is_some_and(|e| e == "INVITE")
        })
        .count();
    assert_eq!(invitations, 2);
    // The window belongs to the organization, not to the inviting user.
    let organization = user.tenant().unwrap();
    let windows: Vec<String> = app
        .raw_items()
        .await
        .iter()
        .filter_map(|i| i["PK"].as_s().ok().cloned())
        .filter(|pk| pk.starts_with("RATE#invitations#"))
        .collect();
    assert_eq!(
        windows,
        vec![format!("RATE#invitations#{}", organization.as_str())]
    );
    // Another organization invites on.
    let (other, _) = app
        .organization_on_plan("auth0|other-inviter", Plan::Business, PlanStatus::Active)
        .await;
    assert_eq!(invite(other, "p1@example.com").await.status, 201);
}

#[tokio::test]
async fn failed_and_anonymous_attempts_are_limited_per_source_ip() {
    let app = app(1000, 100, 3, 2).await;
    for _ in 0..2 {
        assert_error(
            &app.get("/api/me", "not-a-valid-key").await,
            401,
            "invalid_token",
        );
    }
    let limited = app.get("/api/me", "another-guess").await;
    assert_error(&limited, 429, "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));

    for _ in 0..3 {
        let reply = app
            .request(reqwest::Method::GET, "/api/me", None, None)
            .await;
        assert_error(&reply, 401, "missing_token");
    }
    let anonymous = app
        .request(reqwest::Method::GET, "/api/me", None, None)
        .await;
    assert_error(&anonymous, 429, "rate_limited");

    // A valid token still works: limits on failures do not lock out real users' tokens.
    assert_eq!(
        app.get("/api/me", &app.token("auth0|real", None, None))
            .await
            .status,
        201
    );
}

/// A token signed by the trusted issuer that expired ten minutes ago (a stale browser tab).
fn expired_token(app: &TestApp, sub: &str) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    app.sign(json!({
        "sub": sub, "iss": tollgate_tests::TEST_ISSUER,
        "iat": now - 4200, "nbf": now - 4200, "exp": now - 600,
    }))
}

/// GET `path` with `token` as if from `ip` (the pipeline the gateway runs, with API Gateway's
/// source IP set): a socket on this machine can only come from loopback.
async fn get_from(app: &TestApp, ip: &str, path: &str, token: &str) -> (u16, serde_json::Value) {
    let (parts, ()) = http::Request::builder()
        .method("GET")
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
        .into_parts();
    let request = tollgate_dev::server::to_lambda_request(
        parts,
        axum::body::Bytes::new(),
        ip.parse().unwrap(),
    );
    let response =
        tollgate::pipeline::handle(&app.state, &tollgate_dev::ALL_FUNCTIONS, request).await;
    let status = response.status().as_u16();
    let body = match response.into_body() {
        lambda_http::Body::Text(text) => serde_json::from_str(&text).unwrap(),
        other => panic!("not a JSON text body: {other:?}"),
    };
    (status, body)
}

/// A stale tab behind an office NAT: its expired tokens answer 401 `token_expired` however many
/// arrive, and never use up the IP's failed-credential allowance.
#[tokio::test]
async fn expired_tokens_from_one_ip_always_answer_token_expired_and_are_not_counted() {
    let app = app(1000, 100, 100, 5).await;
    let stale = expired_token(&app, "auth0|stale-tab");
    for i in 1..=12 {
        let reply = app.get("/api/me", &stale).await;
        assert_eq!(reply.status, 401, "expired token {i}: {}", reply.body);
        assert_error(&reply, 401, "token_expired");
        assert!(
            !reply.headers.contains_key("ratelimit-limit"),
            "not counted"
        );
    }
    // The whole failed-credential allowance is still there: 5 forged tokens answer 401, the 6th 429.
    for i in 1..=5 {
        let reply = app.get("/api/me", "forged-token").await;
        assert_error(&reply, 401, "invalid_token");
        assert_eq!(
            reply.headers["ratelimit-remaining"],
            (5 - i).to_string().as_str()
        );
    }
    assert_error(
        &app.get("/api/me", "forged-token").await,
        429,
        "rate_limited",
    );
}

/// An IP over its failed-credential limit: its forged credentials answer 429, but every other
/// client's credentials behind it get the answer they would get anyway.
#[tokio::test]
async fn a_limited_ip_does_not_change_the_answer_to_other_clients_valid_credentials() {
    let key = "tgsk_0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let hash = tollgate::auth::service_key::ServiceKeys::hash_hex(key);
    let app = TestApp::start_with(move |config| {
        config.rate_limits.failed_auth.max = 2;
        config.service_key_hashes = hash;
    })
    .await;
    for _ in 0..2 {
        assert_error(&app.get("/api/me", "forged").await, 401, "invalid_token");
    }
    assert_error(&app.get("/api/me", "forged").await, 429, "rate_limited");

    // A valid user token.
    let valid = app.token("auth0|colleague", None, None);
    assert_eq!(app.get("/api/me", &valid).await.status, 201);
    // A colleague's authentic but expired token: told to refresh, not to wait.
    let expired = expired_token(&app, "auth0|colleague");
    assert_error(&app.get("/api/me", &expired).await, 401, "token_expired");
    // A valid service key (the organization does not exist: 404, not 429).
    let call = json!({
        "organizationId": "org_00000000000000000000000000", "callId": "c1",
        "durationSeconds": 1, "endedAt": "2026-01-01T00:00:00Z",
    });
    let reply = app.post("/api/usage/calls", key, call).await;
    assert_error(&reply, 404, "organization_not_found");
    // The IP's forged credentials are still refused with 429.
    assert_error(&app.get("/api/me", "forged").await, 429, "rate_limited");
}

/// One client commonly holds a whole IPv6 /64: all its addresses share one failed-credential
/// bucket, another /64 has its own, and an IPv4-mapped address counts as its IPv4 address.
#[tokio::test]
async fn ipv6_sources_share_one_bucket_per_64() {
    let app = app(1000, 100, 100, 2).await;
    let forged = "forged";
    assert_eq!(
        get_from(&app, "2001:db8:1:2::1", "/api/me", forged).await.0,
        401
    );
    assert_eq!(
        get_from(&app, "2001:db8:1:2:ffff:ffff:ffff:fffe", "/api/me", forged)
            .await
            .0,
        401
    );
    let (status, body) = get_from(&app, "2001:db8:1:2:a:b:c:d", "/api/me", forged).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("rate_limited"))
    );
    // The neighbouring /64 is another client.
    assert_eq!(
        get_from(&app, "2001:db8:1:3::1", "/api/me", forged).await.0,
        401
    );

    assert_eq!(get_from(&app, "192.0.2.7", "/api/me", forged).await.0, 401);
    assert_eq!(
        get_from(&app, "::ffff:192.0.2.7", "/api/me", forged)
            .await
            .0,
        401
    );
    assert_eq!(get_from(&app, "192.0.2.7", "/api/me", forged).await.0, 429);
    assert_eq!(get_from(&app, "192.0.2.8", "/api/me", forged).await.0, 401);
}

/// A `sub` claim is the issuer's to choose, and DynamoDB refuses a partition key over 2,048 bytes:
/// a subject whose own user record fits (`USER#<sub>`) but whose window key (`RATE#user#<sub>`,
/// `RATE#sensitive#<sub>`) would not must still be counted and limited, never answered 503 as if
/// the limiter's table were misconfigured (nor let through uncounted, as before).
#[tokio::test]
async fn a_subject_too_long_for_a_plain_window_key_is_still_counted_and_limited() {
    let app = app(2, 100, 100, 100).await;
    let sub = format!("auth0|{}", "x".repeat(2040 - 6));
    let long = app.token(&sub, None, None);
    let first = app.get("/api/me", &long).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.headers["ratelimit-remaining"], "1");
    assert_eq!(app.get("/api/me", &long).await.status, 200);
    assert_error(&app.get("/api/me", &long).await, 429, "rate_limited");
    // Another subject sharing the long one's first 2,000 bytes has its own window.
    let other = format!("auth0|{}y", "x".repeat(2040 - 7));
    let reply = app.get("/api/me", &app.token(&other, None, None)).await;
    assert_eq!(reply.status, 201, "{}", reply.body);

    // The sensitive bucket's longer prefix too: a checkout by an owner whose sub fits
    // `RATE#user#` but not `RATE#sensitive#`.
    let app = self::app(1000, 1, 100, 100).await;
    let sub = format!("auth0|{}", "z".repeat(2036 - 6));
    let (owner, _) = app
        .organization_on_plan(&sub, Plan::Business, PlanStatus::Active)
        .await;
    let checkout = json!({"plan": "BUSINESS", "interval": "monthly"});
    let first = app
        .post("/api/billing/checkout", &owner, checkout.clone())
        .await;
    assert_error(&first, 503, "billing_not_configured");
    let again = app.post("/api/billing/checkout", &owner, checkout).await;
    assert_error(&again, 429, "rate_limited");
}

#[tokio::test]
async fn limit_windows_expire_by_ttl() {
    let app = app(3, 100, 100, 100).await;
    let token = app.token("auth0|ttl", None, None);
    app.get("/api/me", &token).await;
    let windows: Vec<_> = app
        .raw_items()
        .await
        .into_iter()
        .filter(|i| i["PK"].as_s().is_ok_and(|pk| pk.starts_with("RATE#user#")))
        .collect();
    assert_eq!(windows.len(), 1);
    let ttl: i64 = windows[0]["ttl"].as_n().unwrap().parse().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        ttl > now && ttl <= now + 3600 + 60,
        "expires after its window"
    );
}

/// At the production default (1,000 per hour per user): the 1,000th request passes, the 1,001st is
/// refused, and the next window starts afresh.
#[tokio::test]
async fn the_default_user_limit_is_exact_at_the_boundary_and_resets() {
    use tollgate::ratelimit::{Bucket, RateLimits};
    let app = TestApp::start().await;
    let limit = RateLimits::default().user;
    assert_eq!(limit.max, 1000);
    let now = 1_800_000_000i64; // a window start: 1_800_000_000 = 500_000 h
    for i in 1..=1000u64 {
        let status = app
            .store
            .hit_rate_limit(Bucket::User, "auth0|boundary", limit, now + 10)
            .await
            .unwrap();
        assert!(!status.limited, "request {i}");
        assert_eq!(status.remaining, 1000 - i);
    }
    let refused = app
        .store
        .hit_rate_limit(Bucket::User, "auth0|boundary", limit, now + 3599)
        .await
        .unwrap();
    assert!(refused.limited, "the 1,001st request");
    assert_eq!(refused.reset, 1);
    let next_window = app
        .store
        .hit_rate_limit(Bucket::User, "auth0|boundary", limit, now + 3600)
        .await
        .unwrap();
    assert!(!next_window.limited);
    assert_eq!(next_window.remaining, 999);
}

/// DynamoDB Local behind a proxy that answers the limiter's window updates (`UpdateItem` on a
/// `RATE#` key) as `fault` says, in DynamoDB's wire format (awsJson 1.0 error body), and forwards
/// everything else unchanged. DynamoDB Local ignores IAM, so this is how a denied, throttled or
/// silent table reaches the real SDK.
struct FaultyDynamoDb {
    endpoint: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FaultyDynamoDb {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// What the proxy does with a window update, given its partition key (`RATE#<bucket>#<subject>`).
#[derive(Clone, Copy)]
enum Fault {
    /// Answers with this HTTP status and DynamoDB error code.
    Error(u16, &'static str),
    /// Answers with the error code named by the subject (`RATE#user#ThrottlingException`), 500
    /// for `InternalServerError`, else 400.
    CodeFromSubject,
    /// Never answers.
    Hang,
}

impl FaultyDynamoDb {
    async fn start(fault: Fault) -> FaultyDynamoDb {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, StatusCode, Uri};
        use axum::response::IntoResponse;
        let upstream = tollgate_tests::dynamodb_endpoint();
        // reqwest is built without a TLS provider of its own: ring's, as everywhere.
        tollgate::trust::install_ring_defaults();
        let client = reqwest::Client::new();
        let handler = move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let upstream = upstream.clone();
            let client = client.clone();
            async move {
                let target = headers
                    .get("x-amz-target")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let key = request["Key"]["PK"]["S"].as_str().unwrap_or_default();
                if target.ends_with(".UpdateItem") && key.starts_with("RATE#") {
                    let (status, code) = match fault {
                        Fault::Error(status, code) => (status, code.to_owned()),
                        Fault::CodeFromSubject => {
                            let code = key.rsplit('#').next().unwrap_or_default().to_owned();
                            (
                                if code == "InternalServerError" {
                                    500
                                } else {
                                    400
                                },
                                code,
                            )
                        }
                        Fault::Hang => {
                            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                            (500, "InternalServerError".to_owned())
                        }
                    };
                    let body = json!({
                        "__type": format!("com.amazonaws.dynamodb.v20120810#{code}"),
                        "message": format!("{code} (injected by the test proxy)"),
                    });
                    return (
                        StatusCode::from_u16(status).unwrap(),
                        [("content-type", "application/x-amz-json-1.0")],
                        body.to_string(),
                    )
                        .into_response();
                }
                let mut forwarded = client.post(format!("{upstream}{}", uri.path())).body(body);
                for (name, value) in &headers {
                    if !matches!(name.as_str(), "host" | "content-length") {
                        forwarded = forwarded.header(name, value);
                    }
                }
                let answer = forwarded.send().await.expect("DynamoDB Local answers");
                let status = answer.status();
                let content_type = answer
                    .headers()
                    .get("content-type")
                    .cloned()
                    .unwrap_or_else(|| "application/x-amz-json-1.0".parse().unwrap());
                let bytes = answer.bytes().await.expect("DynamoDB Local's body");
                (status, [("content-type", content_type)], bytes).into_response()
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let router = axum::Router::new().fallback(handler);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FaultyDynamoDb { endpoint, server }
    }
}

/// A gateway whose DynamoDB is `faulty` (the limits are TestApp's generous ones).
async fn app_behind(faulty: &FaultyDynamoDb) -> TestApp {
    let endpoint = faulty.endpoint.clone();
    TestApp::start_with(move |config| config.dynamodb_endpoint = Some(endpoint)).await
}

#[tokio::test]
async fn a_missing_limiter_table_is_a_deployment_error_answered_503_at_once() {
    // The table the functions are configured with does not exist: DynamoDB Local answers the
    // window update with ResourceNotFoundException.
    let app = TestApp::start_with(|config| {
        config.table_name = format!("missing-{}", uuid::Uuid::new_v4().simple());
    })
    .await;
    let token = app.token("auth0|misdeployed", None, None);
    let reply = app.get("/api/me", &token).await;
    assert_error(&reply, 503, "store_unavailable");
    // The limiter's refusal answered the request: nothing else was asked of DynamoDB.
    assert_eq!(app.dynamodb_requests.take(), vec!["UpdateItem"]);
}

#[tokio::test]
async fn access_denied_on_the_limiter_table_answers_503_and_changes_nothing() {
    let faulty = FaultyDynamoDb::start(Fault::Error(400, "AccessDeniedException")).await;
    let app = app_behind(&faulty).await;
    let token = app.token("auth0|denied", None, None);
    let reply = app.get("/api/me", &token).await;
    assert_error(&reply, 503, "store_unavailable");
    assert!(!reply.headers.contains_key("ratelimit-limit"));
    assert_eq!(app.dynamodb_requests.take(), vec!["UpdateItem"]);
    assert!(app.all_items().await.is_empty(), "no user was created");
}

#[tokio::test]
async fn a_throttled_limiter_lets_the_request_through_uncounted() {
    let faulty =
        FaultyDynamoDb::start(Fault::Error(400, "ProvisionedThroughputExceededException")).await;
    let app = app_behind(&faulty).await;
    let token = app.token("auth0|throttled", None, None);
    let reply = app.get("/api/me", &token).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert!(
        !reply.headers.contains_key("ratelimit-limit"),
        "not counted"
    );
    assert!(
        app.store
            .get_user("auth0|throttled")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_limiter_that_never_answers_lets_the_request_through_within_the_timeout() {
    let faulty = FaultyDynamoDb::start(Fault::Hang).await;
    let app = app_behind(&faulty).await;
    let token = app.token("auth0|patient", None, None);
    let started = std::time::Instant::now();
    let reply = app.get("/api/me", &token).await;
    let took = started.elapsed();
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert!(!reply.headers.contains_key("ratelimit-limit"));
    // Bounded by the DynamoDB client's operation timeout, inside the 10 s function timeout.
    assert!(
        took >= tollgate::store::DYNAMODB_OPERATION_TIMEOUT
            && took < std::time::Duration::from_secs(10),
        "{took:?}"
    );
}

/// Each way the window update can fail, as the real SDK reads it off the wire, is classified:
/// throttling, a server fault, a timeout or a refused connection lets requests through; any
/// other refusal is a deployment error.
#[tokio::test]
async fn limiter_failures_are_classified_by_what_a_retry_could_fix() {
    use aws_sdk_dynamodb::config::retry::RetryConfig;
    use tollgate::ratelimit::{Bucket, LimiterFailure, RateLimits};
    use tollgate::store::Store;

    // Retries off: the classification, not the SDK's backoff, is under test.
    async fn store_at(endpoint: &str, table: &str) -> Store {
        let client = tollgate::store::dynamodb_client(Some(endpoint)).await;
        let client = aws_sdk_dynamodb::Client::from_conf(
            client
                .config()
                .to_builder()
                .retry_config(RetryConfig::disabled())
                .build(),
        );
        Store::new(client, table)
    }
    let limit = RateLimits::default().user;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let table = format!("classify-{}", uuid::Uuid::new_v4().simple());
    let direct = tollgate::store::dynamodb_client(Some(&tollgate_tests::dynamodb_endpoint())).await;
    tollgate::store::schema::create_table(&direct, &table)
        .await
        .unwrap();

    let faulty = FaultyDynamoDb::start(Fault::CodeFromSubject).await;
    let store = store_at(&faulty.endpoint, &table).await;
    for (code, expected) in [
        (
            "ProvisionedThroughputExceededException",
            LimiterFailure::Transient,
        ),
        ("ThrottlingException", LimiterFailure::Transient),
        ("RequestLimitExceeded", LimiterFailure::Transient),
        ("InternalServerError", LimiterFailure::Transient),
        ("AccessDeniedException", LimiterFailure::Misconfigured),
        ("ResourceNotFoundException", LimiterFailure::Misconfigured),
        ("ValidationException", LimiterFailure::Misconfigured),
        ("UnrecognizedClientException", LimiterFailure::Misconfigured),
    ] {
        let error = store
            .hit_rate_limit(Bucket::User, code, limit, now)
            .await
            .expect_err(code);
        assert_eq!(
            (error.failure, error.code.as_str()),
            (expected, code),
            "{error}"
        );
    }

    // The same table, reached directly, counts as before.
    let fine = store_at(&tollgate_tests::dynamodb_endpoint(), &table)
        .await
        .hit_rate_limit(Bucket::User, "auth0|fine", limit, now)
        .await
        .unwrap();
    assert_eq!(fine.remaining, limit.max - 1);

    // Nothing listens: a refused connection is a dispatch failure, let through.
    let port = tollgate_tests::moto::free_port();
    let refused = store_at(&format!("http://127.0.0.1:{port}"), &table)
        .await
        .hit_rate_limit(Bucket::User, "auth0|x", limit, now)
        .await
        .unwrap_err();
    assert_eq!(refused.failure, LimiterFailure::Transient, "{refused}");

    // A client that cannot sign (no credentials at all): no retry fixes it, answered 503.
    let unsigned = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .endpoint_url(tollgate_tests::dynamodb_endpoint())
            .build(),
    );
    let no_credentials = Store::new(unsigned, &table)
        .hit_rate_limit(Bucket::User, "auth0|x", limit, now)
        .await
        .unwrap_err();
    assert_eq!(
        no_credentials.failure,
        LimiterFailure::Misconfigured,
        "{no_credentials}"
    );

    // An answer that never comes: the operation timeout, let through.
    let silent = FaultyDynamoDb::start(Fault::Hang).await;
    let timed_out = store_at(&silent.endpoint, &table)
        .await
        .hit_rate_limit(Bucket::User, "auth0|x", limit, now)
        .await
        .unwrap_err();
    assert_eq!(
        (timed_out.failure, timed_out.code.as_str()),
        (LimiterFailure::Transient, "timeout"),
        "{timed_out}"
    );
}
