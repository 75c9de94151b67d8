//! Rate limits through the pipeline: 429 with the envelope, `Retry-After` and `RateLimit-*`
//! headers, per user, per sensitive action, and per source IP for anonymous and failed attempts.

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
async fn sensitive_actions_have_their_own_tighter_limit() {
    let app = app(1000, 2, 100, 100).await;
    let (owner, _) = app
        .organization_on_plan("auth0|inviter", Plan::Business, PlanStatus::Active)
        .await;
    for i in 0..2 {
        let reply = app
            .post(
                "/api/users",
                &owner,
                json!({"email": format!("p{i}@example.com"), "role": "VIEWER"}),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let third = app
        .post(
            "/api/users",
            &owner,
            json!({"email": "p3@example.com", "role": "VIEWER"}),
        )
        .await;
    assert_error(&third, 429, "rate_limited");
    assert_eq!(third.headers["ratelimit-limit"], "2");
    assert!(third.headers.contains_key("retry-after"));
    // Nothing but the limiter's own counter changed: no invitation was written.
    let after = app.all_items().await;
    let invitations = after
        .iter()
        .filter(|i| {
            i.get("entity")
                .and_then(|e| e.as_s().ok())
                .is_some_and(|e| e == "INVITE")
        })
        .count();
    assert_eq!(invitations, 2);
    // Ordinary reads go on.
    assert_eq!(app.get("/api/users", &owner).await.status, 200);
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
