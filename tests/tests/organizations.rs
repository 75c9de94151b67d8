//! The organizations function: onboarding, reading, renaming and deleting an organization.

use serde_json::json;
use tollgate::pricing::Plan;
use tollgate::store::PlanStatus;
use tollgate_tests::{TestApp, assert_error};

#[tokio::test]
async fn onboarding_creates_the_organization_with_the_caller_as_owner() {
    let app = TestApp::start().await;
    let token = app.token(
        "auth0|founder",
        Some("founder@example.com"),
        Some("Founder"),
    );
    assert_eq!(app.get("/api/me", &token).await.status, 201);

    let created = app
        .post(
            "/api/organizations",
            &token,
            json!({"name": "  Acme   Calls ", "billingEmail": "Billing@Acme.test"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["name"], "Acme Calls");
    assert_eq!(created.body["billingEmail"], "billing@acme.test");
    assert_eq!(created.body["plan"], serde_json::Value::Null);
    assert_eq!(created.body["planStatus"], "none");
    assert_eq!(created.body["memberCount"], 1);
    assert_eq!(created.body["pendingInvitations"], 0);
    assert_eq!(created.body["seatLimit"], 1);

    let me = app.get("/api/me", &token).await;
    assert_eq!(me.body["user"]["role"], "OWNER");
    assert_eq!(me.body["organization"]["id"], created.body["id"]);

    let again = app
        .post("/api/organizations", &token, json!({"name": "Second"}))
        .await;
    assert_error(&again, 409, "already_in_organization");
}

#[tokio::test]
async fn concurrent_onboarding_creates_one_organization() {
    let app = TestApp::start().await;
    let token = app.token("auth0|eager", None, None);
    app.get("/api/me", &token).await;
    let replies = futures::future::join_all((0..8).map(|i| {
        app.post(
            "/api/organizations",
            &token,
            json!({"name": format!("Org {i}")}),
        )
    }))
    .await;
    assert_eq!(replies.iter().filter(|r| r.status == 201).count(), 1);
    assert!(replies.iter().all(|r| r.status == 201 || r.status == 409));
    let organizations = app
        .all_items()
        .await
        .into_iter()
        .filter(|i| {
            i.get("entity")
                .and_then(|e| e.as_s().ok())
                .is_some_and(|e| e == "ORG")
        })
        .count();
    assert_eq!(organizations, 1);
}

#[tokio::test]
async fn bad_names_and_emails_are_400s_that_write_nothing() {
    let app = TestApp::start().await;
    let token = app.token("auth0|picky", None, None);
    app.get("/api/me", &token).await;
    let before = app.all_items().await;
    for (body, code) in [
        (json!({"name": " "}), "invalid_name"),
        (json!({"name": "x"}), "invalid_name"),
        (json!({"name": "x".repeat(101)}), "invalid_name"),
        (
            json!({"name": "Good", "billingEmail": "nope"}),
            "invalid_billing_email",
        ),
        (
            json!({"name": "Good", "organizationId": "org_evil"}),
            "invalid_body",
        ),
        (json!({}), "invalid_body"),
    ] {
        let reply = app.post("/api/organizations", &token, body).await;
        assert_error(&reply, 400, code);
    }
    assert_eq!(app.all_items().await, before);
}

#[tokio::test]
async fn tenant_routes_need_an_organization() {
    let app = TestApp::start().await;
    let token = app.token("auth0|solo", None, None);
    app.get("/api/me", &token).await;
    for (method, path) in [
        (reqwest::Method::GET, "/api/organization"),
        (reqwest::Method::PATCH, "/api/organization"),
        (reqwest::Method::DELETE, "/api/organization"),
        (reqwest::Method::GET, "/api/users"),
        (reqwest::Method::POST, "/api/users"),
        (reqwest::Method::PATCH, "/api/users/usr_x"),
        (reqwest::Method::DELETE, "/api/users/usr_x"),
        (reqwest::Method::DELETE, "/api/users/invitations/inv_x"),
    ] {
        let reply = app
            .request(
                method,
                path,
                Some(&format!("Bearer {token}")),
                Some("{}".into()),
            )
            .await;
        assert_error(&reply, 400, "organization_required");
    }
}

#[tokio::test]
async fn reading_and_updating_the_organization() {
    let app = TestApp::start().await;
    let (token, _) = app
        .organization_on_plan("auth0|boss", Plan::Professional, PlanStatus::Active)
        .await;
    let org = app.get("/api/organization", &token).await;
    assert_eq!(org.status, 200);
    assert_eq!(org.body["plan"], "PROFESSIONAL");
    assert_eq!(org.body["limits"]["maxTeamMembers"], 5);
    assert_eq!(org.body["features"]["customAI"], true);
    assert_eq!(org.body["seatLimit"], 5);

    let renamed = app
        .patch(
            "/api/organization",
            &token,
            json!({"name": "New Name", "billingEmail": "a@b.co"}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(renamed.body["name"], "New Name");
    assert_eq!(renamed.body["billingEmail"], "a@b.co");
    let cleared = app
        .patch("/api/organization", &token, json!({"billingEmail": null}))
        .await;
    assert_eq!(cleared.body["billingEmail"], serde_json::Value::Null);
    assert_eq!(cleared.body["name"], "New Name");

    let before = app.all_items().await;
    assert_error(
        &app.patch("/api/organization", &token, json!({})).await,
        400,
        "invalid_body",
    );
    assert_error(
        &app.patch("/api/organization", &token, json!({"name": ""}))
            .await,
        400,
        "invalid_name",
    );
    assert_error(
        &app.patch("/api/organization", &token, json!({"billingEmail": 5}))
            .await,
        400,
        "invalid_billing_email",
    );
    assert_eq!(app.all_items().await, before);
}

#[tokio::test]
async fn deletion_is_refused_while_subscribed_and_then_members_lose_access_at_once() {
    let app = TestApp::start().await;
    let (owner, user) = app
        .organization_on_plan("auth0|leaving", Plan::Business, PlanStatus::Active)
        .await;
    let (member, _) = app.add_member(&owner, "auth0|staff", "MANAGER").await;
    let invited = app
        .post(
            "/api/users",
            &owner,
            json!({"email": "pending@example.com", "role": "VIEWER"}),
        )
        .await;
    assert_eq!(invited.status, 201);

    assert_error(
        &app.delete("/api/organization", &owner).await,
        409,
        "subscription_active",
    );
    assert_eq!(app.get("/api/organization", &member).await.status, 200);

    let tenant = user.tenant().unwrap();
    app.store
        .set_organization_plan(&tenant, Some(Plan::Business), PlanStatus::Canceled)
        .await
        .unwrap();
    let deleted = app.delete("/api/organization", &owner).await;
    assert_eq!(deleted.status, 202, "{}", deleted.body);
    assert_eq!(deleted.body["deleted"], true);

    for token in [&owner, &member] {
        assert_error(
            &app.get("/api/organization", token).await,
            400,
            "organization_required",
        );
        let me = app.get("/api/me", token).await;
        assert_eq!(me.body["organization"], serde_json::Value::Null);
        assert_eq!(me.body["user"]["organizationId"], serde_json::Value::Null);
        assert_eq!(me.body["permissions"], json!([]));
    }
    // The deletion job (the org-cleanup Lambda, fed by the table's stream) runs.
    let job = org_cleanup::run_job(
        &app.store,
        &tenant,
        std::time::Instant::now() + std::time::Duration::from_secs(60),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(job.is_finished(), "{job:?}");
    // The pending invitation is withdrawn: its addressee joins nothing.
    let invitee = app.token("auth0|pending", Some("pending@example.com"), None);
    assert_eq!(
        app.get("/api/me", &invitee).await.body["organization"],
        serde_json::Value::Null
    );

    // The data is kept, with a TTL, for the retention period.
    let partition = format!("ORG#{}", tenant.as_str());
    let kept: Vec<_> = app
        .all_items()
        .await
        .into_iter()
        .filter(|i| i.get("PK").and_then(|p| p.as_s().ok()) == Some(&partition))
        .collect();
    assert!(kept.len() >= 3, "organization, members and invitation kept");
    let thirty_days = 30 * 24 * 3600;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for item in kept {
        let ttl: i64 = item["ttl"].as_n().unwrap().parse().unwrap();
        assert!((ttl - now - thirty_days).abs() < 120, "ttl ~30 days ahead");
    }
    // The former owner can start again.
    assert_eq!(
        app.post("/api/organizations", &owner, json!({"name": "Fresh Start"}))
            .await
            .status,
        201
    );
}

/// Organization names and the billing email refuse bidi controls and zero-width characters
/// (Unicode format characters), on creation and on update, and write nothing.
#[tokio::test]
async fn bidi_and_zero_width_characters_in_organization_name_and_billing_email_are_400s() {
    let app = TestApp::start().await;
    let (token, _) = app
        .organization_on_plan("auth0|bidi", Plan::Professional, PlanStatus::Active)
        .await;
    let newcomer = app.token("auth0|bidi-newcomer", None, None);
    app.get("/api/me", &newcomer).await;
    let hidden = [
        "\u{202E}", "\u{202A}", "\u{2066}", "\u{2069}", "\u{200B}", "\u{200D}", "\u{200F}",
        "\u{FEFF}", "\u{2060}", "\u{AD}",
    ];
    let before = app.all_items().await;
    for c in hidden {
        let name = format!("Acme{c} Calls");
        let email = format!("billing{c}@acme.test");
        let domain = format!("billing@ac{c}me.test");
        for (body, code) in [
            (json!({"name": name}), "invalid_name"),
            (
                json!({"name": "Acme", "billingEmail": email}),
                "invalid_billing_email",
            ),
            (
                json!({"name": "Acme", "billingEmail": domain}),
                "invalid_billing_email",
            ),
        ] {
            let created = app
                .post("/api/organizations", &newcomer, body.clone())
                .await;
            assert_error(&created, 400, code);
            let updated = app.patch("/api/organization", &token, body).await;
            assert_error(&updated, 400, code);
        }
    }
    assert_eq!(app.all_items().await, before);
    // Plain names and addresses in any script are still fine.
    let updated = app
        .patch(
            "/api/organization",
            &token,
            json!({"name": "Ташкент Колл", "billingEmail": "Billing@Acme.test"}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.body["name"], "Ташкент Колл");
    assert_eq!(updated.body["billingEmail"], "billing@acme.test");
}

/// Found by the notifier benchmark: renames of one organization at once answered 500 for those
/// that lost the race. Each answers 200 or 409 `concurrent_update`, and the organization ends
/// with one of the names.
#[tokio::test]
async fn concurrent_renames_answer_200_or_409_never_500() {
    let app = TestApp::start().await;
    let (token, _) = app.owner_with_organization("auth0|renamer").await;
    let replies = futures::future::join_all((0..12).map(|n| {
        let app = &app;
        let token = &token;
        async move {
            app.patch(
                "/api/organization",
                token,
                json!({"name": format!("Name {n}")}),
            )
            .await
        }
    }))
    .await;
    let mut renamed = 0;
    for reply in &replies {
        match reply.status {
            200 => renamed += 1,
            409 => assert_error(reply, 409, "concurrent_update"),
            other => panic!("{other}: {}", reply.body),
        }
    }
    assert!(renamed >= 1);
    let name = app.get("/api/organization", &token).await.body["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(name.starts_with("Name "), "{name}");
}
