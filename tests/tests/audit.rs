//! The audit log (issue 19, first part): every audited change writes exactly one event in the
//! same transaction as the change, a failed change writes none, concurrent changes write one
//! each, `GET /api/audit` is tenant-isolated, newest first, paginated and filtered, and no event
//! holds a secret.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use tollgate::pricing::Plan;
use tollgate::rbac::Role;
use tollgate::store::audit::AuditActor;
use tollgate::store::{PlanStatus, StoreError, TenantId};
use tollgate_tests::{TestApp, assert_error, tenant_of};

const ENCRYPTION_KEY: &str = "7777777777777777777777777777777777777777777777777777777777777777";

async fn app() -> TestApp {
    TestApp::start_with(|config| {
        config.encryption_keys = Some(format!("k1:{ENCRYPTION_KEY}"));
        config.encryption_active_key = Some("k1".into());
    })
    .await
}

/// Every audit item of `tenant` as stored, read straight from the table.
async fn audit_items(app: &TestApp, tenant: &TenantId) -> Vec<HashMap<String, AttributeValue>> {
    app.raw_items()
        .await
        .into_iter()
        .filter(|item| {
            item.get("PK")
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                == Some(&format!("ORG#{}", tenant.as_str()))
                && item
                    .get("SK")
                    .and_then(|v| v.as_s().ok())
                    .is_some_and(|sk| sk.starts_with("AUDIT#"))
        })
        .collect()
}

fn types_of(items: &[HashMap<String, AttributeValue>]) -> Vec<String> {
    let mut types: Vec<String> = items
        .iter()
        .filter_map(|item| item.get("type").and_then(|v| v.as_s().ok()).cloned())
        .collect();
    types.sort();
    types
}

/// Every event `token` can list, following `nextCursor` with pages of `limit`.
async fn list_all(app: &TestApp, token: &str, query: &str, limit: u32) -> (Vec<Value>, usize) {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/api/audit?limit={limit}{query}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let reply = app.get(&path, token).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        pages += 1;
        events.extend(reply.body["events"].as_array().cloned().unwrap_or_default());
        match reply.body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (events, pages),
        }
        assert!(pages < 100, "pagination does not end");
    }
}

#[tokio::test]
async fn each_successful_change_writes_exactly_one_event() {
    let app = app().await;
    let (owner, owner_user) = app
        .organization_on_plan("auth0|audit-owner", Plan::Business, PlanStatus::Active)
        .await;
    let tenant = owner_user.tenant().unwrap();
    let mut expected = vec!["organization.created"];
    assert_eq!(types_of(&audit_items(&app, &tenant).await), expected);

    // Invited and joined.
    let (bob, bob_id) = app.add_member(&owner, "auth0|bob", "MANAGER").await;
    expected.extend(["member.invited", "member.joined"]);
    // Role changed, then removed.
    let changed = app
        .patch(
            &format!("/api/users/{bob_id}"),
            &owner,
            json!({"role": "VIEWER"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    expected.push("member.role_changed");
    let removed = app.delete(&format!("/api/users/{bob_id}"), &owner).await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    expected.push("member.removed");
    // Invited, then revoked.
    let invited = app
        .post(
            "/api/users",
            &owner,
            json!({"email": "carol@example.com", "role": "VIEWER"}),
        )
        .await;
    let carol_invitation = invited.body["id"].as_str().unwrap().to_owned();
    let revoked = app
        .delete(
            &format!("/api/users/invitations/{carol_invitation}"),
            &owner,
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    expected.extend(["member.invited", "invitation.revoked"]);
    // Invited, then declined by the addressee.
    let invited = app
        .post(
            "/api/users",
            &owner,
            json!({"email": "dan@example.com", "role": "ADMIN"}),
        )
        .await;
    let dan_invitation = invited.body["id"].as_str().unwrap().to_owned();
    let dan = app.verified_token("auth0|dan", "dan@example.com", None);
    assert!(app.get("/api/me", &dan).await.status < 300);
    let declined = app
        .post(
            &format!("/api/me/invitations/{dan_invitation}/decline"),
            &dan,
            json!({}),
        )
        .await;
    assert_eq!(declined.status, 200, "{}", declined.body);
    expected.extend(["member.invited", "member.declined"]);
    // Joined, then left by themselves.
    let (eve, eve_id) = app.add_member(&owner, "auth0|eve", "VIEWER").await;
    let left = app.delete("/api/me/organization", &eve).await;
    assert_eq!(left.status, 200, "{}", left.body);
    expected.extend(["member.invited", "member.joined", "member.left"]);
    // The organization renamed.
    let renamed = app
        .patch("/api/organization", &owner, json!({"name": "Renamed"}))
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(renamed.body["name"], "Renamed");
    expected.push("organization.updated");
    // An integration created and deleted.
    let integration = app
        .post(
            "/api/integrations",
            &owner,
            json!({"type": "twilio", "name": "Line", "credentials": {"authToken": "t"}}),
        )
        .await;
    assert_eq!(integration.status, 201, "{}", integration.body);
    let integration_id = integration.body["id"].as_str().unwrap().to_owned();
    let deleted = app
        .delete(&format!("/api/integrations/{integration_id}"), &owner)
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    expected.extend(["integration.created", "integration.deleted"]);
    // An API key created and revoked.
    let (key_id, _) = app.create_api_key(&owner, "CI", "ADMIN").await;
    let revoked = app.delete(&format!("/api/api-keys/{key_id}"), &owner).await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    expected.extend(["api_key.created", "api_key.revoked"]);
    // A webhook endpoint created and deleted.
    let endpoint = app
        .post(
            "/api/webhooks/endpoints",
            &owner,
            json!({"url": "https://hooks.example.com/audit", "eventTypes": ["member.joined"]}),
        )
        .await;
    assert_eq!(endpoint.status, 201, "{}", endpoint.body);
    let endpoint_id = endpoint.body["id"].as_str().unwrap().to_owned();
    let removed = app
        .delete(&format!("/api/webhooks/endpoints/{endpoint_id}"), &owner)
        .await;
    assert_eq!(removed.status, 204, "{}", removed.body);
    expected.extend(["webhook_endpoint.created", "webhook_endpoint.deleted"]);

    let items = audit_items(&app, &tenant).await;
    let mut expected_sorted: Vec<String> = expected.iter().map(|t| t.to_string()).collect();
    expected_sorted.sort();
    assert_eq!(types_of(&items), expected_sorted);
    // Every event expires: `ttl` is set, about AUDIT_RETENTION_DAYS (400) ahead.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for item in &items {
        let ttl: i64 = item["ttl"].as_n().unwrap().parse().unwrap();
        assert!((ttl - now - 400 * 86_400).abs() < 600, "{ttl}");
    }

    // The listing: newest first, in the order the changes happened, with actor and target.
    let (events, _) = list_all(&app, &owner, "", 100).await;
    let listed: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let mut newest_first = expected.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);
    let by_type =
        |kind: &str| -> Vec<&Value> { events.iter().filter(|e| e["type"] == kind).collect() };
    let role_changed = by_type("member.role_changed")[0];
    assert_eq!(
        role_changed["actor"],
        json!({"type": "user", "id": owner_user.id})
    );
    assert_eq!(
        role_changed["target"],
        json!({"type": "member", "id": bob_id})
    );
    assert_eq!(role_changed["before"], json!({"role": "MANAGER"}));
    assert_eq!(role_changed["after"], json!({"role": "VIEWER"}));
    assert_eq!(role_changed["organizationId"], tenant.as_str());
    let left = by_type("member.left")[0];
    assert_eq!(left["actor"], json!({"type": "user", "id": eve_id}));
    let joined = by_type("member.joined");
    assert_eq!(joined[1]["actor"], json!({"type": "user", "id": bob_id}));
    assert_eq!(joined[1]["after"], json!({"role": "MANAGER"}));
    let declined = by_type("member.declined")[0];
    assert_eq!(
        declined["target"],
        json!({"type": "invitation", "id": dan_invitation})
    );
    assert_eq!(
        by_type("organization.updated")[0]["before"],
        json!({"name": "Org of auth0|audit-owner"})
    );
    assert_eq!(
        by_type("api_key.created")[0]["after"],
        json!({"name": "CI", "role": "ADMIN"})
    );
    // The removed member and the one who left read nothing any more.
    assert_error(
        &app.get("/api/audit", &bob).await,
        400,
        "organization_required",
    );
    assert_error(
        &app.get("/api/audit", &eve).await,
        400,
        "organization_required",
    );
}

#[tokio::test]
async fn a_failed_change_writes_no_event() {
    let app = app().await;
    let (owner, owner_user) = app.owner_with_organization("auth0|fail-owner").await;
    let tenant = owner_user.tenant().unwrap();
    let before = audit_items(&app, &tenant).await.len();
    assert_eq!(before, 1, "organization.created");

    // Seat limit reached (no plan: one seat, the owner's), through the store and the route.
    let full = app
        .store
        .invite(
            &tenant,
            (&owner_user.id, Role::Owner),
            None,
            "x@example.com",
            Role::Viewer,
            1,
            i64::MAX,
        )
        .await;
    assert!(
        matches!(full, Err(StoreError::SeatLimitReached)),
        "{full:?}"
    );
    let reply = app
        .post(
            "/api/users",
            &owner,
            json!({"email": "y@example.com", "role": "VIEWER"}),
        )
        .await;
    assert_error(&reply, 409, "seat_limit_reached");
    // The last owner cannot be demoted, nor leave.
    let member = app
        .store
        .get_member(&tenant, &owner_user.id)
        .await
        .unwrap()
        .unwrap();
    let demoted = app
        .store
        .change_role(&tenant, (&owner_user.id, Role::Owner), &member, Role::Admin)
        .await;
    assert!(matches!(demoted, Err(StoreError::LastOwner)), "{demoted:?}");
    let leave = app.store.remove_member(&tenant, None, &member).await;
    assert!(matches!(leave, Err(StoreError::LastOwner)), "{leave:?}");
    // A condition failure: the member read as ADMIN is in fact OWNER.
    let stale = tollgate::store::MemberRecord {
        role: Role::Admin,
        ..member.clone()
    };
    let changed = app
        .store
        .change_role(&tenant, (&owner_user.id, Role::Owner), &stale, Role::Viewer)
        .await;
    assert!(
        matches!(changed, Err(StoreError::ConcurrentUpdate)),
        "{changed:?}"
    );
    // Nothing to revoke or delete.
    assert_eq!(
        app.delete("/api/users/invitations/inv_missing", &owner)
            .await
            .status,
        404
    );
    let actor = AuditActor::user(&owner_user.id);
    assert!(
        !app.store
            .delete_integration(&tenant, &actor, "int_missing")
            .await
            .unwrap()
    );
    assert!(
        !app.store
            .revoke_api_key(&tenant, &actor, &format!("ak_{}", "0".repeat(32)))
            .await
            .unwrap()
    );

    assert_eq!(
        audit_items(&app, &tenant).await.len(),
        before,
        "no event for a failed change"
    );
}

#[tokio::test]
async fn deleting_writes_one_event_only_when_the_job_starts() {
    let app = app().await;
    let (owner, owner_user) = app
        .organization_on_plan("auth0|del-owner", Plan::Business, PlanStatus::Active)
        .await;
    let tenant = owner_user.tenant().unwrap();
    let started = |items: &[HashMap<String, AttributeValue>]| {
        types_of(items)
            .into_iter()
            .filter(|t| t == "organization.deletion_started")
            .count()
    };
    // A live subscription refuses the deletion: no event.
    assert_error(
        &app.delete("/api/organization", &owner).await,
        409,
        "subscription_active",
    );
    assert_eq!(started(&audit_items(&app, &tenant).await), 0);
    app.store
        .set_organization_plan(&tenant, Some(Plan::Business), PlanStatus::Canceled)
        .await
        .unwrap();
    let deleted = app.delete("/api/organization", &owner).await;
    assert_eq!(deleted.status, 202, "{}", deleted.body);
    assert_eq!(
        deleted.body["deletion"]["status"], "running",
        "{}",
        deleted.body
    );
    // Sent again, it resumes the job: still one event.
    let again = app
        .store
        .start_deletion(&tenant, &AuditActor::user(&owner_user.id))
        .await
        .unwrap();
    assert!(!again.started);
    let items = audit_items(&app, &tenant).await;
    assert_eq!(started(&items), 1);
    let event = items
        .iter()
        .find(|i| {
            i["type"]
                .as_s()
                .is_ok_and(|t| t == "organization.deletion_started")
        })
        .unwrap();
    assert_eq!(
        event["actor"].as_m().unwrap()["id"].as_s().unwrap(),
        &owner_user.id
    );
}

#[tokio::test]
async fn concurrent_changes_write_one_event_each() {
    let app = app().await;
    let (owner, owner_user) = app
        .organization_on_plan("auth0|rush-owner", Plan::Professional, PlanStatus::Active)
        .await;
    let tenant = owner_user.tenant().unwrap();
    // Twelve invitations race for four free seats: one event per invitation made, none for the
    // refused.
    let replies = futures::future::join_all((0..12).map(|i| {
        app.post(
            "/api/users",
            &owner,
            json!({"email": format!("r{i}@example.com"), "role": "VIEWER"}),
        )
    }))
    .await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    assert!((1..=4).contains(&created), "{created}");
    let invited = types_of(&audit_items(&app, &tenant).await)
        .into_iter()
        .filter(|t| t == "member.invited")
        .count();
    assert_eq!(invited, created);

    // Concurrent role changes of the same member from VIEWER: the store's condition on the role
    // read lets one of each racing pair win; each win writes one event.
    let app = self::app().await;
    let (owner, owner_user) = app
        .organization_on_plan("auth0|roles-owner", Plan::Business, PlanStatus::Active)
        .await;
    let tenant = owner_user.tenant().unwrap();
    let mut members = Vec::new();
    for i in 0..4 {
        members.push(
            app.add_member(&owner, &format!("auth0|m{i}"), "VIEWER")
                .await
                .1,
        );
    }
    let replies = futures::future::join_all(members.iter().flat_map(|id| {
        ["MANAGER", "ADMIN"].map(|role| {
            let path = format!("/api/users/{id}");
            let app = &app;
            let owner = &owner;
            async move { app.patch(&path, owner, json!({"role": role})).await }
        })
    }))
    .await;
    let succeeded = replies.iter().filter(|r| r.status == 200).count();
    assert!(
        replies.iter().all(|r| r.status == 200 || r.status == 409),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let changed = types_of(&audit_items(&app, &tenant).await)
        .into_iter()
        .filter(|t| t == "member.role_changed")
        .count();
    assert_eq!(changed, succeeded);
    assert!(succeeded >= 1, "some change wins");
}

#[tokio::test]
async fn listing_is_tenant_isolated_and_paginates() {
    let app = app().await;
    let (owner_a, user_a) = app
        .organization_on_plan("auth0|iso-a", Plan::Business, PlanStatus::Active)
        .await;
    let (owner_b, user_b) = app
        .organization_on_plan("auth0|iso-b", Plan::Business, PlanStatus::Active)
        .await;
    for i in 0..6 {
        let reply = app
            .post(
                "/api/users",
                &owner_a,
                json!({"email": format!("a{i}@example.com"), "role": "VIEWER"}),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    for i in 0..3 {
        let reply = app
            .post(
                "/api/users",
                &owner_b,
                json!({"email": format!("b{i}@example.com"), "role": "VIEWER"}),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let tenant_a = tenant_of(&app, "auth0|iso-a").await;

    // A reads its own 7 events in pages of 2 (4 pages), never one of B's, each once.
    let (events, pages) = list_all(&app, &owner_a, "", 2).await;
    assert_eq!(events.len(), 7);
    assert_eq!(pages, 4);
    assert!(
        events
            .iter()
            .all(|e| e["organizationId"] == tenant_a.as_str())
    );
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(ids, sorted, "newest first, no repeats");
    let (events_b, _) = list_all(&app, &owner_b, "", 100).await;
    assert_eq!(events_b.len(), 4);
    assert!(
        events_b
            .iter()
            .all(|e| e["organizationId"] == user_b.organization_id.as_deref().unwrap())
    );
    assert_ne!(user_a.organization_id, user_b.organization_id);

    // B's cursor is no key into A's partition: A gets only A's events with it.
    let page_b = app.get("/api/audit?limit=1", &owner_b).await;
    let cursor_b = page_b.body["nextCursor"].as_str().unwrap();
    let with_b_cursor = app
        .get(&format!("/api/audit?cursor={cursor_b}"), &owner_a)
        .await;
    assert_eq!(with_b_cursor.status, 200, "{}", with_b_cursor.body);
    let seen = with_b_cursor.body["events"].as_array().unwrap();
    assert!(
        seen.iter()
            .all(|e| e["organizationId"] == tenant_a.as_str()),
        "{}",
        with_b_cursor.body
    );
    // A cursor this API did not make, and bad limits, are 400.
    assert_error(
        &app.get("/api/audit?cursor=TUVNQkVSI3Vzcl8x", &owner_a)
            .await,
        400,
        "invalid_cursor",
    );
    assert_error(
        &app.get("/api/audit?limit=0", &owner_a).await,
        400,
        "invalid_limit",
    );
    assert_error(
        &app.get("/api/audit?limit=101", &owner_a).await,
        400,
        "invalid_limit",
    );
}

#[tokio::test]
async fn filters_by_type_actor_and_date_range() {
    let app = app().await;
    let (owner, owner_user) = app
        .organization_on_plan("auth0|filter-owner", Plan::Business, PlanStatus::Active)
        .await;
    let (admin, admin_id) = app.add_member(&owner, "auth0|filter-admin", "ADMIN").await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let start = time::OffsetDateTime::now_utc();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    for i in 0..3 {
        let reply = app
            .post(
                "/api/users",
                &admin,
                json!({"email": format!("f{i}@example.com"), "role": "VIEWER"}),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };

    // By type: the admin's three invitations and the owner's one.
    let (invited, _) = list_all(&app, &owner, "&type=member.invited", 100).await;
    assert_eq!(invited.len(), 4);
    assert!(invited.iter().all(|e| e["type"] == "member.invited"));
    // By actor.
    let (by_admin, _) = list_all(&app, &owner, &format!("&actor={admin_id}"), 100).await;
    assert_eq!(by_admin.len(), 4, "3 invitations and joining");
    assert!(
        by_admin
            .iter()
            .all(|e| e["actor"]["id"] == admin_id.as_str())
    );
    let (by_owner, _) = list_all(
        &app,
        &owner,
        &format!("&actor={}&type=member.invited", owner_user.id),
        100,
    )
    .await;
    assert_eq!(by_owner.len(), 1);
    // A filtered listing with small pages still finds every match across pages.
    let (paged, pages) = list_all(&app, &owner, "&type=member.invited", 1).await;
    assert_eq!(paged.len(), 4);
    assert!(pages >= 4);
    // By date: from `start` only the admin's invitations; up to `start` the rest.
    let from = rfc(start).replace('+', "%2B");
    let (recent, _) = list_all(&app, &owner, &format!("&from={from}"), 100).await;
    assert_eq!(recent.len(), 3, "{recent:?}");
    let (earlier, _) = list_all(&app, &owner, &format!("&to={from}"), 100).await;
    assert_eq!(earlier.len(), 3, "created, invited, joined: {earlier:?}");
    let future = rfc(start + time::Duration::days(1));
    let (none, _) = list_all(&app, &owner, &format!("&from={future}"), 100).await;
    assert!(none.is_empty());
    // A cursor outside the date range asked for is refused, not misread.
    let page = app.get("/api/audit?limit=1", &owner).await;
    let cursor = page.body["nextCursor"].as_str().unwrap();
    assert_error(
        &app.get(
            &format!("/api/audit?cursor={cursor}&to=2000-01-01T00:00:00Z"),
            &owner,
        )
        .await,
        400,
        "invalid_cursor",
    );
    // Bad filters name themselves.
    for query in [
        "type=member.eaten",
        "from=yesterday",
        "actor=a%20b",
        "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
    ] {
        assert_error(
            &app.get(&format!("/api/audit?{query}"), &owner).await,
            400,
            "invalid_query",
        );
    }
}

#[tokio::test]
async fn no_secret_appears_in_any_event() {
    let app = app().await;
    let (owner, owner_user) = app
        .organization_on_plan("auth0|secret-owner", Plan::Business, PlanStatus::Active)
        .await;
    let tenant = owner_user.tenant().unwrap();
    let credential = "tw_SECRET_auth_token_9f8e7d";
    let integration = app
        .post(
            "/api/integrations",
            &owner,
            json!({"type": "twilio", "name": "Main", "credentials": {"authToken": credential}}),
        )
        .await;
    assert_eq!(integration.status, 201, "{}", integration.body);
    let (key_id, key) = app.create_api_key(&owner, "Export", "ADMIN").await;
    let secret_part = key.rsplit('_').next().unwrap().to_owned();
    let invited_email = "private.person@example.com";
    let reply = app
        .post(
            "/api/users",
            &owner,
            json!({"email": invited_email, "role": "VIEWER"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let renamed = app
        .patch(
            "/api/organization",
            &owner,
            json!({"billingEmail": "billing.secret@example.com"}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    let stored_hash = app
        .store
        .get_api_key_lookup(&key_id)
        .await
        .unwrap()
        .unwrap()
        .key_hash;
    let integration_item = app
        .raw_items()
        .await
        .into_iter()
        .find(|item| {
            item["SK"]
                .as_s()
                .is_ok_and(|sk| sk.starts_with("INTEGRATION#"))
        })
        .unwrap();
    let ciphertext = integration_item["credentials"].as_s().unwrap().clone();
    let endpoint = app
        .post(
            "/api/webhooks/endpoints",
            &owner,
            json!({"url": "https://hooks.example.com/siem", "eventTypes": ["api_key.created"]}),
        )
        .await;
    assert_eq!(endpoint.status, 201, "{}", endpoint.body);
    let signing_secret = endpoint.body["secret"].as_str().unwrap().to_owned();
    let signing_secret_base64 = signing_secret["whsec_".len()..].to_owned();
    let endpoint_item = app
        .raw_items()
        .await
        .into_iter()
        .find(|item| item["SK"].as_s().is_ok_and(|sk| sk.starts_with("WEBHOOK#")))
        .unwrap();
    let signing_ciphertext = endpoint_item["signingSecret"].as_s().unwrap().clone();

    // The ADMIN key reads the log (its role has audit:read) and is recorded by its id.
    let read_by_key = app.get("/api/audit", &key).await;
    assert_eq!(read_by_key.status, 200, "{}", read_by_key.body);
    let renamed_by_key = app
        .patch("/api/organization", &key, json!({"name": "Renamed by key"}))
        .await;
    assert_eq!(renamed_by_key.status, 200, "{}", renamed_by_key.body);
    let (events, _) = list_all(&app, &owner, "&type=organization.updated", 100).await;
    assert_eq!(events[0]["actor"], json!({"type": "api_key", "id": key_id}));
    assert_eq!(events[1]["after"], json!({"billingEmail": "set"}));

    let items = audit_items(&app, &tenant).await;
    assert_eq!(items.len(), 7, "{}", types_of(&items).join(", "));
    let stored = format!("{items:?}");
    let listed = list_all(&app, &owner, "", 100).await.0;
    let listed = serde_json::to_string(&listed).unwrap();
    for secret in [
        credential,
        &ciphertext,
        &key,
        &secret_part,
        &stored_hash,
        invited_email,
        "billing.secret@example.com",
        ENCRYPTION_KEY,
        &signing_secret,
        &signing_secret_base64,
        &signing_ciphertext,
    ] {
        assert!(!stored.contains(secret), "stored event holds {secret}");
        assert!(!listed.contains(secret), "listed event holds {secret}");
    }
}
