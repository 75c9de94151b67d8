//! `POST /api/permissions/check`: RBAC decisions and plan entitlements for the caller, so a
//! frontend asks the same rules the back end enforces instead of copying them.

use http::StatusCode;
use lambda_http::{Body, Response};
use serde::{Deserialize, Serialize};

use tollgate::http::{ApiError, json_response, parse_json_body};
use tollgate::pipeline::{AppState, Caller, FunctionHandlers, entitlement_of, store_error};
use tollgate::pricing::{self, Feature, Plan};
use tollgate::rbac::{self, Decision, Grant, Role, Scope};
use tollgate::routes::{Function, Operation};

/// The permission-check function's routes and handlers.
pub static HANDLERS: FunctionHandlers = FunctionHandlers {
    function: Function::PermissionCheck,
    handlers: &[(Operation::CheckPermissions, |call| {
        Box::pin(async move { check(call.state, call.caller()?, call.body()).await })
    })],
};

/// More names than any screen needs in one call; bounds the work a request can ask for.
pub const MAX_NAMES_PER_CHECK: usize = 50;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CheckRequest {
    permissions: Vec<String>,
    resource_owner_id: Option<String>,
    #[serde(default)]
    features: Vec<String>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CheckResponse {
    /// True only when every permission is `allowed` and every feature is enabled.
    pub allowed: bool,
    pub results: Vec<PermissionResult>,
    pub features: Vec<FeatureResult>,
    /// The permissions not fully allowed and the features not enabled, by name.
    pub missing: Vec<String>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct PermissionResult {
    pub permission: String,
    pub decision: Decision,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct FeatureResult {
    pub feature: Feature,
    pub enabled: bool,
}

pub async fn check(
    state: &AppState,
    caller: &Caller,
    body: &Body,
) -> Result<Response<Body>, ApiError> {
    let request: CheckRequest = parse_json_body(body)?;
    let grants = parse_grants(&request.permissions)?;
    let features = parse_features(&request.features)?;
    let user = caller.user.as_ref().ok_or_else(ApiError::internal)?;

    let (role, plan) = match &caller.tenant {
        Some(tenant) if !features.is_empty() => {
            let organization = state
                .store
                .get_organization(tenant)
                .await
                .map_err(store_error)?;
            // Features follow the entitlement (plan, status, grace), not the stored plan alone.
            let plan = organization.and_then(|o| entitlement_of(state, &o).plan_granted);
            (user.role, plan)
        }
        Some(_) => (user.role, None),
        None => (None, None),
    };
    let response = decide(
        role,
        plan,
        &user.id,
        request.resource_owner_id.as_deref(),
        &grants,
        &features,
    );
    Ok(json_response(StatusCode::OK, &response))
}

fn parse_grants(names: &[String]) -> Result<Vec<Grant>, ApiError> {
    if names.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "List at least one permission in `permissions`, e.g. [\"users:read\"].",
        ));
    }
    if names.len() > MAX_NAMES_PER_CHECK {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("At most {MAX_NAMES_PER_CHECK} permissions can be checked at once."),
        ));
    }
    names
        .iter()
        .map(|name| {
            name.parse::<Grant>().map_err(|_| {
                ApiError::bad_request(
                    "unknown_permission",
                    format!("Unknown permission \"{name}\"."),
                )
            })
        })
        .collect()
}

fn parse_features(names: &[String]) -> Result<Vec<Feature>, ApiError> {
    if names.len() > MAX_NAMES_PER_CHECK {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("At most {MAX_NAMES_PER_CHECK} features can be checked at once."),
        ));
    }
    names
        .iter()
        .map(|name| {
            name.parse::<Feature>().map_err(|_| {
                let known = Feature::ALL.map(|f| f.as_str()).join(", ");
                ApiError::bad_request(
                    "unknown_feature",
                    format!("Unknown feature \"{name}\"; known features: {known}."),
                )
            })
        })
        .collect()
}

/// The pure decision: no role (no organization) is denied everything, no plan enables nothing.
pub fn decide(
    role: Option<Role>,
    plan: Option<Plan>,
    caller_user_id: &str,
    resource_owner_id: Option<&str>,
    grants: &[Grant],
    features: &[Feature],
) -> CheckResponse {
    let mut missing = Vec::new();
    let results: Vec<PermissionResult> = grants
        .iter()
        .map(|grant| {
            let decision = match role {
                None => Decision::Denied,
                Some(role) if grant.scope == Scope::Own => rbac::check_grant(role, *grant),
                Some(role) => rbac::check_on_resource(
                    role,
                    grant.permission,
                    caller_user_id,
                    resource_owner_id,
                ),
            };
            if decision != Decision::Allowed {
                missing.push(grant.to_string());
            }
            PermissionResult {
                permission: grant.to_string(),
                decision,
            }
        })
        .collect();
    let features: Vec<FeatureResult> = features
        .iter()
        .map(|&feature| {
            let enabled = plan.is_some_and(|plan| pricing::plan_has_feature(plan, feature));
            if !enabled {
                missing.push(feature.as_str().to_owned());
            }
            FeatureResult { feature, enabled }
        })
        .collect();
    CheckResponse {
        allowed: missing.is_empty(),
        results,
        features,
        missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate::rbac::Permission;

    fn grants(names: &[&str]) -> Vec<Grant> {
        names.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn no_organization_denies_everything_and_enables_nothing() {
        let response = decide(
            None,
            None,
            "u1",
            None,
            &grants(&["org:read"]),
            &[Feature::ApiAccess],
        );
        assert!(!response.allowed);
        assert_eq!(response.results[0].decision, Decision::Denied);
        assert_eq!(response.missing, vec!["org:read", "apiAccess"]);
    }

    #[test]
    fn operator_own_scope_resolves_with_the_resource_owner() {
        let g = grants(&["calls:read"]);
        let own = decide(Some(Role::Operator), None, "u1", Some("u1"), &g, &[]);
        assert!(own.allowed);
        let other = decide(Some(Role::Operator), None, "u1", Some("u2"), &g, &[]);
        assert_eq!(other.results[0].decision, Decision::Denied);
        let unresolved = decide(Some(Role::Operator), None, "u1", None, &g, &[]);
        assert_eq!(unresolved.results[0].decision, Decision::AllowedOwnOnly);
        assert!(!unresolved.allowed);
        let asked_own = decide(
            Some(Role::Operator),
            None,
            "u1",
            None,
            &grants(&["calls:read:own"]),
            &[],
        );
        assert!(asked_own.allowed);
    }

    #[test]
    fn features_follow_the_plan() {
        let features = [Feature::ApiAccess, Feature::CustomAi];
        let pro = decide(
            Some(Role::Owner),
            Some(Plan::Professional),
            "u",
            None,
            &[],
            &features,
        );
        assert_eq!(pro.missing, vec!["apiAccess"]);
        let business = decide(
            Some(Role::Owner),
            Some(Plan::Business),
            "u",
            None,
            &[],
            &features,
        );
        assert!(business.allowed);
    }

    #[test]
    fn unknown_names_are_rejected_with_400_naming_them() {
        let error = parse_grants(&["users:fly".into()]).unwrap_err();
        assert_eq!(
            (error.status, error.code),
            (StatusCode::BAD_REQUEST, "unknown_permission")
        );
        assert!(error.message.contains("users:fly"));
        let error = parse_features(&["teleport".into()]).unwrap_err();
        assert_eq!(error.code, "unknown_feature");
        assert!(parse_grants(&[]).is_err());
        assert!(parse_grants(&vec!["org:read".to_owned(); MAX_NAMES_PER_CHECK + 1]).is_err());
        assert_eq!(
            parse_grants(&["users:delete".into()]).unwrap()[0].permission,
            Permission::UsersDelete
        );
    }
}
