//! The team function: invitations, joining, seats, role changes, removal and the guard rails.

use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashSet;

use serde_json::json;
use tollgate::pricing::Plan;
use tollgate::store::PlanStatus;
use tollgate_tests::{TestApp, assert_error};

#[tokio::test]
async fn invite_join_change_role_and_remove() {
    let app = TestApp::start().await;
    let (owner, _) = app
        .organization_on_plan("auth0|owner", Plan::Professional, PlanStatus::Active)
        .await;

    let invited = app
        .post(
            "/api/users",
            &owner,
            json!({"email": " Bob@Example.com ", "role": "MANAGER"}),
        )
        .await;
    assert_eq!(invited.status, 201, "{}", invited.body);
    assert_eq!(invited.body["email"], "bob@example.com");
    assert_eq!(invited.body["role"], "MANAGER");
    let listed = app.get("/api/users", &owner).await;
    assert_eq!(listed.body["invitations"].as_array().unwrap().len(), 1);
    assert_eq!(listed.body["members"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.get("/api/organization", &owner).await.body["pendingInvitations"],
        1
    );

    // An unverified email sees no invitation; a verified one accepts it.
    let unverified = app.sign(
        json!({"sub": "auth0|bob", "iss": tollgate_tests::TEST_ISSUER,
        "exp": time::OffsetDateTime::now_utc().unix_timestamp() + 600,
        "email": "bob@example.com", "email_verified": false}),
    );
    let me = app.get("/api/me", &unverified).await;
    assert_eq!(me.body["organization"], serde_json::Value::Null);
    assert_eq!(me.body["invitations"], json!([]));

    let bob = app.verified_token("auth0|bob", "BOB@example.com", Some("Bob"));
    let invitation = invited.body["id"].as_str().unwrap();
    let me = app
        .post(
            &format!("/api/me/invitations/{invitation}/accept"),
            &bob,
            json!({}),
        )
        .await;
    assert_eq!(me.body["user"]["role"], "MANAGER", "{}", me.body);
    let bob_id = me.body["user"]["id"].as_str().unwrap().to_owned();
    let org = app.get("/api/organization", &owner).await;
    assert_eq!(
        (
            org.body["memberCount"].as_u64(),
            org.body["pendingInvitations"].as_u64()
        ),
        (Some(2), Some(0))
    );

    let changed = app
        .patch(
            &format!("/api/users/{bob_id}"),
            &owner,
            json!({"role": "VIEWER"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(changed.body["role"], "VIEWER");
    assert_eq!(
        app.get("/api/me", &bob).await.body["user"]["role"],
        "VIEWER"
    );
    // The new role applies on the very next request: a VIEWER may not list users.
    assert_error(&app.get("/api/users", &bob).await, 403, "forbidden");

    let removed = app.delete(&format!("/api/users/{bob_id}"), &owner).await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_error(
        &app.get("/api/organization", &bob).await,
        400,
        "organization_required",
    );
    assert_eq!(
        app.get("/api/organization", &owner).await.body["memberCount"],
        1
    );
    assert_error(
        &app.delete(&format!("/api/users/{bob_id}"), &owner).await,
        404,
        "member_not_found",
    );
}

#[tokio::test]
async fn seats_count_members_and_pending_invitations() {
    let app = TestApp::start().await;
    let (owner, user) = app.owner_with_organization("auth0|seats").await;
    // No plan: one seat, the owner's.
    let reply = app
        .post(
            "/api/users",
            &owner,
            json!({"email": "a@example.com", "role": "VIEWER"}),
        )
        .await;
    assert_error(&reply, 409, "seat_limit_reached");
    assert!(
        reply.body["message"]
            .as_str()
            .unwrap()
            .contains("allows 1 seat")
    );

    app.store
        .set_organization_plan(
            &user.tenant().unwrap(),
            Some(Plan::Professional),
            PlanStatus::Active,
        )
        .await
        .unwrap();
    for i in 0..4 {
        let reply = app
            .post(
                "/api/users",
                &owner,
                json!({"email": format!("p{i}@example.com"), "role": "VIEWER"}),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let fifth = app
        .post(
            "/api/users",
            &owner,
            json!({"email": "p5@example.com", "role": "VIEWER"}),
        )
        .await;
    assert_error(&fifth, 409, "seat_limit_reached");
    assert!(
        fifth.body["message"]
            .as_str()
            .unwrap()
            .contains("allows 5 seats")
    );

    // Revoking frees a seat.
    let list = app.get("/api/users", &owner).await;
    let invitation = list.body["invitations"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = app
        .delete(&format!("/api/users/invitations/{invitation}"), &owner)
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_error(
        &app.delete(&format!("/api/users/invitations/{invitation}"), &owner)
            .await,
        404,
        "invitation_not_found",
    );
    assert_eq!(
        app.post(
            "/api/users",
            &owner,
            json!({"email": "p5@example.com", "role": "VIEWER"})
        )
        .await
        .status,
        201
    );
}

#[tokio::test]
async fn concurrent_invitations_never_exceed_the_seat_limit() {
    let app = TestApp::start().await;
    let (owner, _) = app
        .organization_on_plan("auth0|rush", Plan::Professional, PlanStatus::Active)
        .await;
    let replies = futures::future::join_all((0..12).map(|i| {
        app.post(
            "/api/users",
            &owner,
            json!({"email": format!("c{i}@example.com"), "role": "VIEWER"}),
        )
    }))
    .await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    assert!(created <= 4, "at most 4 free seats, {created} invitations");
    assert!(
        replies.iter().all(|r| r.status == 201 || r.status == 409),
        "only 201/409"
    );
    let org = app.get("/api/organization", &owner).await;
    assert_eq!(
        org.body["pendingInvitations"].as_u64(),
        Some(created as u64)
    );
}

#[tokio::test]
async fn duplicate_invitations_and_existing_members_are_conflicts() {
    let app = TestApp::start().await;
    let (owner, _) = app
        .organization_on_plan("auth0|dup", Plan::Business, PlanStatus::Active)
        .await;
    app.add_member(&owner, "auth0|carol", "VIEWER").await;
    let member = app
        .post(
            "/api/users",
            &owner,
            json!({"email": "auth0-carol@example.com", "role": "ADMIN"}),
        )
        .await;
    assert_error(&member, 409, "already_member");
    assert_eq!(
        app.post(
            "/api/users",
            &owner,
            json!({"email": "dan@example.com", "role": "VIEWER"})
        )
        .await
        .status,
        201
    );
    assert_error(
        &app.post(
            "/api/users",
            &owner,
            json!({"email": "DAN@example.com", "role": "ADMIN"}),
        )
        .await,
        409,
        "already_invited",
    );
    let before = app.all_items().await;
    assert_error(
        &app.post(
            "/api/users",
            &owner,
            json!({"email": "x", "role": "VIEWER"}),
        )
        .await,
        400,
        "invalid_email",
    );
    assert_error(
        &app.post(
            "/api/users",
            &owner,
            json!({"email": "e@example.com", "role": "KING"}),
        )
        .await,
        400,
        "invalid_role",
    );
    assert_error(
        &app.post("/api/users", &owner, json!({"email": "e@example.com"}))
            .await,
        400,
        "invalid_body",
    );
    assert_eq!(app.all_items().await, before);
}

#[tokio::test]
async fn guard_rails_through_the_api() {
    let app = TestApp::start().await;
    let (owner, owner_user) = app
        .organization_on_plan("auth0|g-owner", Plan::Business, PlanStatus::Active)
        .await;
    let (admin, admin_id) = app.add_member(&owner, "auth0|g-admin", "ADMIN").await;
    let (_, viewer_id) = app.add_member(&owner, "auth0|g-viewer", "VIEWER").await;

    // Nobody changes their own role.
    assert_error(
        &app.patch(
            &format!("/api/users/{}", owner_user.id),
            &owner,
            json!({"role": "ADMIN"}),
        )
        .await,
        403,
        "cannot_change_self",
    );
    assert_error(
        &app.patch(
            &format!("/api/users/{admin_id}"),
            &admin,
            json!({"role": "OWNER"}),
        )
        .await,
        403,
        "cannot_change_self",
    );
    // Only an owner grants or removes OWNER; admins cannot invite owners.
    assert_error(
        &app.patch(
            &format!("/api/users/{viewer_id}"),
            &admin,
            json!({"role": "OWNER"}),
        )
        .await,
        403,
        "owner_required",
    );
    assert_error(
        &app.patch(
            &format!("/api/users/{}", owner_user.id),
            &admin,
            json!({"role": "VIEWER"}),
        )
        .await,
        403,
        "owner_required",
    );
    assert_error(
        &app.delete(&format!("/api/users/{}", owner_user.id), &admin)
            .await,
        403,
        "owner_required",
    );
    assert_error(
        &app.post(
            "/api/users",
            &admin,
            json!({"email": "boss2@example.com", "role": "OWNER"}),
        )
        .await,
        403,
        "owner_required",
    );
    // Admins manage non-owners.
    assert_eq!(
        app.patch(
            &format!("/api/users/{viewer_id}"),
            &admin,
            json!({"role": "MANAGER"})
        )
        .await
        .status,
        200
    );
    assert_error(
        &app.patch(
            &format!("/api/users/{viewer_id}"),
            &admin,
            json!({"role": "MANAGER"}),
        )
        .await,
        409,
        "role_unchanged",
    );
    // The last owner cannot be demoted or removed, even by another... there is no other owner.
    let (second_owner, second_id) = app.add_member(&owner, "auth0|g-owner2", "OWNER").await;
    assert_eq!(
        app.patch(
            &format!("/api/users/{}", owner_user.id),
            &second_owner,
            json!({"role": "ADMIN"})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        app.get("/api/organization", &second_owner).await.status,
        200
    );
    let demoted_owner_token = owner;
    assert_error(
        &app.patch(
            &format!("/api/users/{second_id}"),
            &demoted_owner_token,
            json!({"role": "ADMIN"}),
        )
        .await,
        403,
        "owner_required",
    );
    assert_error(
        &app.delete("/api/organization", &demoted_owner_token).await,
        403,
        "forbidden",
    );
}

/// Two owners demote each other at the same moment, many times over: never zero owners.
#[tokio::test]
async fn concurrent_demotion_of_the_last_two_owners_leaves_one() {
    let app = TestApp::start().await;
    for round in 0..10 {
        let (first, first_user) = app
            .organization_on_plan(
                &format!("auth0|r{round}-a"),
                Plan::Business,
                PlanStatus::Active,
            )
            .await;
        let (second, second_id) = app
            .add_member(&first, &format!("auth0|r{round}-b"), "OWNER")
            .await;
        let (second_path, first_path) = (
            format!("/api/users/{second_id}"),
            format!("/api/users/{}", first_user.id),
        );
        let (one, two) = tokio::join!(
            app.patch(&second_path, &first, json!({"role": "ADMIN"})),
            app.patch(&first_path, &second, json!({"role": "ADMIN"})),
        );
        let successes = [one.status, two.status]
            .iter()
            .filter(|s| **s == 200)
            .count();
        assert!(
            successes <= 1,
            "round {round}: both demotions succeeded: {} / {}",
            one.body,
            two.body
        );
        for reply in [&one, &two] {
            assert!(
                [200, 403, 409].contains(&reply.status),
                "round {round}: {}",
                reply.body
            );
        }
        let members = app.get("/api/users", &first).await;
        let members = if members.status == 200 {
            members
        } else {
            app.get("/api/users", &second).await
        };
        let owners = members.body["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "OWNER")
            .count();
        assert!(owners >= 1, "round {round}: no owner left");
        // Whoever was not demoted is still an owner and can read the organization.
        let token = if two.status == 200 { &second } else { &first };
        let org = app.get("/api/organization", token).await;
        assert_eq!(org.status, 200, "round {round}: {}", org.body);
    }
}

#[tokio::test]
async fn team_pages_cover_everyone_once_and_bad_cursors_are_400() {
    let app = TestApp::start().await;
    let (owner, owner_user) = app
        .organization_on_plan("auth0|pager", Plan::Business, PlanStatus::Active)
        .await;
    // An invoice sorts between INVITE# and MEMBER# in the partition: it is not a team entry.
    let organization = owner_user.organization_id.clone().unwrap();
    app.store
        .client()
        .put_item()
        .table_name(app.store.table_name())
        .item("PK", AttributeValue::S(format!("ORG#{organization}")))
        .item(
            "SK",
            AttributeValue::S("INVOICE#001764000000#in_team_test".into()),
        )
        .item("entity", AttributeValue::S("INVOICE".into()))
        .item("id", AttributeValue::S("in_team_test".into()))
        .send()
        .await
        .unwrap();
    for i in 0..3 {
        app.add_member(&owner, &format!("auth0|m{i}"), "VIEWER")
            .await;
    }
    for i in 0..4 {
        app.post(
            "/api/users",
            &owner,
            json!({"email": format!("i{i}@example.com"), "role": "VIEWER"}),
        )
        .await;
    }
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/users?limit=3&cursor={c}"),
            None => "/api/users?limit=3".to_owned(),
        };
        let page = app.get(&path, &owner).await;
        assert_eq!(page.status, 200, "{}", page.body);
        for entry in page.body["members"]
            .as_array()
            .unwrap()
            .iter()
            .chain(page.body["invitations"].as_array().unwrap())
        {
            assert!(
                seen.insert(entry["id"].as_str().unwrap().to_owned()),
                "duplicate {entry}"
            );
        }
        pages += 1;
        match page.body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 10);
    }
    assert_eq!(seen.len(), 8, "4 members + 4 invitations");
    assert!(pages >= 3);
    assert_error(
        &app.get("/api/users?cursor=%%%", &owner).await,
        400,
        "invalid_cursor",
    );
    assert_error(
        &app.get("/api/users?limit=0", &owner).await,
        400,
        "invalid_limit",
    );
    assert_error(
        &app.get("/api/users?limit=101", &owner).await,
        400,
        "invalid_limit",
    );
}
