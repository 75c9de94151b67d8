//! Every role × every route of the organizations and team functions, through the real handlers:
//! allowed → 2xx, denied → 403 with the envelope and nothing written.

use serde_json::json;
use tollgate::pricing::Plan;
use tollgate::rbac::{self, Decision, Permission, Role};
use tollgate::store::PlanStatus;
use tollgate_tests::{TestApp, assert_error};

#[tokio::test]
async fn role_by_route_matrix() {
    let app = TestApp::start().await;
    for role in Role::ALL {
        let prefix = role.as_str().to_lowercase();
        let (owner, owner_user) = app
            .organization_on_plan(
                &format!("auth0|{prefix}-owner"),
                Plan::Business,
                PlanStatus::Active,
            )
            .await;
        // The caller holds `role`; OWNER is tested as a second owner so the first remains.
        let (caller, _) = app
            .add_member(&owner, &format!("auth0|{prefix}-caller"), role.as_str())
            .await;
        let (_, target_id) = app
            .add_member(&owner, &format!("auth0|{prefix}-target"), "VIEWER")
            .await;
        let invitation = app
            .post(
                "/api/users",
                &owner,
                json!({"email": format!("{prefix}-pending@example.com"), "role": "VIEWER"}),
            )
            .await;
        let invitation_id = invitation.body["id"].as_str().unwrap().to_owned();

        // In an order where each allowed call leaves the next one something to act on.
        let routes: Vec<(
            reqwest::Method,
            String,
            Option<serde_json::Value>,
            Permission,
        )> = vec![
            (
                reqwest::Method::GET,
                "/api/organization".into(),
                None,
                Permission::OrgRead,
            ),
            (
                reqwest::Method::PATCH,
                "/api/organization".into(),
                Some(json!({"name": format!("{prefix} renamed")})),
                Permission::OrgUpdate,
            ),
            (
                reqwest::Method::GET,
                "/api/users".into(),
                None,
                Permission::UsersRead,
            ),
            (
                reqwest::Method::POST,
                "/api/users".into(),
                Some(json!({"email": format!("{prefix}-new@example.com"), "role": "VIEWER"})),
                Permission::UsersCreate,
            ),
            (
                reqwest::Method::PATCH,
                format!("/api/users/{target_id}"),
                Some(json!({"role": "MANAGER"})),
                Permission::UsersUpdate,
            ),
            (
                reqwest::Method::POST,
                format!("/api/users/invitations/{invitation_id}/resend"),
                Some(json!({})),
                Permission::UsersCreate,
            ),
            (
                reqwest::Method::DELETE,
                format!("/api/users/invitations/{invitation_id}"),
                None,
                Permission::UsersDelete,
            ),
            (
                reqwest::Method::DELETE,
                format!("/api/users/{target_id}"),
                None,
                Permission::UsersDelete,
            ),
            (
                reqwest::Method::DELETE,
                "/api/organization".into(),
                None,
                Permission::OrgDelete,
            ),
        ];
        for (method, path, body, permission) in routes {
            if method == reqwest::Method::DELETE && path == "/api/organization" {
                // A live subscription blocks deletion; a canceled one takes no new members, so
                // the plan is canceled only now.
                app.store
                    .set_organization_plan(
                        &owner_user.tenant().unwrap(),
                        Some(Plan::Business),
                        PlanStatus::Canceled,
                    )
                    .await
                    .unwrap();
            }
            let before = app.all_items().await;
            let reply = app
                .request(
                    method.clone(),
                    &path,
                    Some(&format!("Bearer {caller}")),
                    body.map(|b| b.to_string()),
                )
                .await;
            match rbac::check(role, permission) {
                Decision::Allowed => {
                    assert!(
                        (200..300).contains(&reply.status),
                        "{role} {method} {path}: {}",
                        reply.body
                    )
                }
                _ => {
                    assert_error(&reply, 403, "forbidden");
                    assert_eq!(
                        app.all_items().await,
                        before,
                        "{role} {method} {path} wrote on 403"
                    );
                }
            }
        }
        // Onboarding again is refused for every member, whatever the role.
        let again = app
            .post("/api/organizations", &caller, json!({"name": "Another"}))
            .await;
        if role == Role::Owner {
            // The organization was just deleted by this owner: they may start a new one.
            assert_eq!(again.status, 201, "{}", again.body);
        } else {
            assert_error(&again, 409, "already_in_organization");
        }
    }
}
