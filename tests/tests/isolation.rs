//! Tenant isolation: a member of organization A calls every tenant route with organization B's
//! ids (in paths, queries, bodies and cursors). Every answer is 404/403/400 or A's own data, no
//! field of B appears in any response, and B is unchanged.

use serde_json::{Value, json};
use tollgate::pricing::Plan;
use tollgate::store::PlanStatus;
use tollgate_tests::{Reply, TestApp};

struct Tenant {
    owner: String,
    org_id: String,
    owner_id: String,
    member_id: String,
    invitation_id: String,
    secrets: Vec<String>,
}

async fn tenant(app: &TestApp, name: &str) -> Tenant {
    let (owner, user) = app
        .organization_on_plan(
            &format!("auth0|{name}-owner"),
            Plan::Business,
            PlanStatus::Active,
        )
        .await;
    app.patch(
        "/api/organization",
        &owner,
        json!({"name": format!("{name} Corp"), "billingEmail": format!("billing@{name}.test")}),
    )
    .await;
    let (_, member_id) = app
        .add_member(&owner, &format!("auth0|{name}-member"), "MANAGER")
        .await;
    let invited = app
        .post(
            "/api/users",
            &owner,
            json!({"email": format!("invitee@{name}.test"), "role": "VIEWER"}),
        )
        .await;
    let invitation_id = invited.body["id"].as_str().unwrap().to_owned();
    let org_id = user.organization_id.clone().unwrap();
    let secrets = vec![
        org_id.clone(),
        user.id.clone(),
        member_id.clone(),
        invitation_id.clone(),
        format!("{name} Corp"),
        format!("billing@{name}.test"),
        format!("invitee@{name}.test"),
        format!("auth0-{name}-member@example.com"),
    ];
    Tenant {
        owner,
        org_id,
        owner_id: user.id,
        member_id,
        invitation_id,
        secrets,
    }
}

fn assert_no_leak(reply: &Reply, other: &Tenant, what: &str) {
    let text = reply.body.to_string();
    for secret in &other.secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{what}: response leaks {secret}: {text}"
        );
    }
}

async fn snapshot_of(app: &TestApp, org: &Tenant) -> Vec<Value> {
    let mut replies = Vec::new();
    replies.push(app.get("/api/organization", &org.owner).await.body);
    replies.push(app.get("/api/users", &org.owner).await.body);
    replies
}

#[tokio::test]
async fn organization_a_cannot_see_or_touch_organization_b() {
    let app = TestApp::start().await;
    let a = tenant(&app, "alpha").await;
    let b = tenant(&app, "bravo").await;
    let b_before = snapshot_of(&app, &b).await;
    let token = &a.owner;

    // Routes that name a member or invitation: B's ids are not found in A.
    for (method, path, body) in [
        (
            reqwest::Method::PATCH,
            format!("/api/users/{}", b.member_id),
            Some(json!({"role": "VIEWER"})),
        ),
        (
            reqwest::Method::PATCH,
            format!("/api/users/{}", b.owner_id),
            Some(json!({"role": "VIEWER"})),
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/users/{}", b.member_id),
            None,
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/users/{}", b.owner_id),
            None,
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/users/invitations/{}", b.invitation_id),
            None,
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/users/{}", b.invitation_id),
            None,
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/users/invitations/{}", b.member_id),
            None,
        ),
        (
            reqwest::Method::POST,
            format!("/api/users/invitations/{}/resend", b.invitation_id),
            Some(json!({})),
        ),
        (
            reqwest::Method::POST,
            format!("/api/me/invitations/{}/accept", b.invitation_id),
            Some(json!({})),
        ),
        (
            reqwest::Method::POST,
            format!("/api/me/invitations/{}/decline", b.invitation_id),
            Some(json!({})),
        ),
    ] {
        let reply = app
            .request(
                method.clone(),
                &path,
                Some(&format!("Bearer {token}")),
                body.map(|b| b.to_string()),
            )
            .await;
        assert_eq!(reply.status, 404, "{method} {path}: {}", reply.body);
        assert_no_leak(&reply, &b, &path);
    }

    // B's invitation is not A's to accept or decline, even with a verified email.
    let verified = app.verified_token("auth0|alpha-owner", "owner@alpha.test", None);
    for action in ["accept", "decline"] {
        let path = format!("/api/me/invitations/{}/{action}", b.invitation_id);
        let reply = app.post(&path, &verified, json!({})).await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
        assert_no_leak(&reply, &b, &path);
    }

    // Routes without ids ignore any tenant named in the query or body: the caller's own record rules.
    let org = app
        .get(
            &format!("/api/organization?organizationId={}", b.org_id),
            token,
        )
        .await;
    assert_eq!(org.body["id"], a.org_id.as_str());
    assert_no_leak(&org, &b, "GET /api/organization?organizationId=B");

    let users = app
        .get(
            &format!("/api/users?organizationId={}&limit=100", b.org_id),
            token,
        )
        .await;
    assert_eq!(users.status, 200);
    assert_no_leak(&users, &b, "GET /api/users?organizationId=B");
    let ids: Vec<&str> = users.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&a.owner_id.as_str()) && ids.contains(&a.member_id.as_str()));
    assert_eq!(ids.len(), 2, "only A's members");

    // A cursor made from B's keys still reads A's partition (cursors carry no tenant).
    let b_page = app.get("/api/users?limit=1", &b.owner).await;
    let b_cursor = b_page.body["nextCursor"].as_str().unwrap().to_owned();
    let crossed = app
        .get(&format!("/api/users?cursor={b_cursor}"), token)
        .await;
    assert_no_leak(&crossed, &b, "B's cursor");

    let patched = app
        .patch(
            "/api/organization",
            token,
            json!({"organizationId": b.org_id, "name": "Hijack"}),
        )
        .await;
    assert_eq!(
        patched.status, 400,
        "tenant fields in bodies are refused: {}",
        patched.body
    );
    let invite = app
        .post(
            "/api/users",
            token,
            json!({"email": "x@alpha.test", "role": "VIEWER", "organizationId": b.org_id}),
        )
        .await;
    assert_eq!(invite.status, 400);

    let me = app
        .get(&format!("/api/me?organizationId={}", b.org_id), token)
        .await;
    assert_eq!(me.body["organization"]["id"], a.org_id.as_str());
    assert_no_leak(&me, &b, "GET /api/me");

    let check = app
        .post("/api/permissions/check", token, json!({"permissions": ["calls:read"], "resourceOwnerId": b.member_id, "features": ["apiAccess"]}))
        .await;
    assert_eq!(check.status, 200);
    assert_no_leak(&check, &b, "permission check");

    assert_eq!(snapshot_of(&app, &b).await, b_before, "B unchanged");

    // Deleting "B" deletes the caller's own organization, never B.
    app.store
        .set_organization_plan(
            &tollgate_tests::tenant_of(&app, "auth0|alpha-owner").await,
            Some(Plan::Business),
            PlanStatus::Canceled,
        )
        .await
        .unwrap();
    let deleted = app
        .delete(
            &format!("/api/organization?organizationId={}", b.org_id),
            token,
        )
        .await;
    assert_eq!(deleted.status, 202, "{}", deleted.body);
    assert_eq!(deleted.body["id"], a.org_id.as_str());
    assert_eq!(app.get("/api/organization", &b.owner).await.status, 200);
    assert_eq!(snapshot_of(&app, &b).await, b_before, "B unchanged");
}

/// A member of A who is removed loses A at once, and never gains B.
#[tokio::test]
async fn a_removed_member_sees_nothing_of_either() {
    let app = TestApp::start().await;
    let a = tenant(&app, "charlie").await;
    let b = tenant(&app, "delta").await;
    let member_token = app.token(
        "auth0|charlie-member",
        Some("auth0-charlie-member@example.com"),
        None,
    );
    assert_eq!(
        app.delete(&format!("/api/users/{}", a.member_id), &a.owner)
            .await
            .status,
        200
    );
    for path in ["/api/organization", "/api/users"] {
        let reply = app.get(path, &member_token).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.body);
        assert_no_leak(&reply, &a, path);
        assert_no_leak(&reply, &b, path);
    }
}

/// Integrations are the organization's: A's owner never lists B's, and deleting B's by its id is
/// 404 exactly like a missing one, leaving B's in place.
#[tokio::test]
async fn organization_a_cannot_list_or_delete_organization_bs_integrations() {
    let app = TestApp::start_with(|config| {
        config.encryption_keys = Some(format!("k1:{}", "4".repeat(64)));
        config.encryption_active_key = Some("k1".into());
    })
    .await;
    let (a_owner, _) = app
        .organization_on_plan("auth0|int-a", Plan::Business, PlanStatus::Active)
        .await;
    let (b_owner, _) = app
        .organization_on_plan("auth0|int-b", Plan::Business, PlanStatus::Active)
        .await;
    let created = app
        .post(
            "/api/integrations",
            &b_owner,
            json!({"type": "twilio", "name": "B line", "credentials": {"authToken": "b-secret"}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let b_id = created.body["id"].as_str().unwrap().to_owned();
    let b_before = app.get("/api/integrations", &b_owner).await.body;

    let listed = app.get("/api/integrations", &a_owner).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["integrations"], json!([]), "{}", listed.body);
    let deleted = app
        .delete(&format!("/api/integrations/{b_id}"), &a_owner)
        .await;
    assert_eq!(deleted.status, 404, "{}", deleted.body);
    assert_eq!(deleted.body["error"], "integration_not_found");
    assert!(!deleted.body.to_string().contains("B line"));
    assert_eq!(app.get("/api/integrations", &b_owner).await.body, b_before);
}
