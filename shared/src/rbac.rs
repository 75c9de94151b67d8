//! Role-based access control: the seed's role table as typed data, and a three-way check so
//! "own-only" grants can never be mistaken for full access by a string compare.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use Permission as P;

/// A string that is not a role, permission or grant; keeps the input so logs show what was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RbacParseError {
    #[error("unknown role {0:?}")]
    UnknownRole(String),
    #[error("unknown permission {0:?}")]
    UnknownPermission(String),
    #[error("invalid grant {0:?}")]
    InvalidGrant(String),
}

/// An organization member's role; stored and sent as the seed's upper-case names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    Owner,
    Admin,
    Manager,
    Operator,
    Viewer,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Owner,
        Role::Admin,
        Role::Manager,
        Role::Operator,
        Role::Viewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "OWNER",
            Role::Admin => "ADMIN",
            Role::Manager => "MANAGER",
            Role::Operator => "OPERATOR",
            Role::Viewer => "VIEWER",
        }
    }
}

impl FromStr for Role {
    type Err = RbacParseError;

    /// Exact names only: a lenient parse would let "owner " slip past equality checks elsewhere.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| RbacParseError::UnknownRole(s.to_owned()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every permission in the role table, typed so a typo is a compile error rather than a denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    OrgRead,
    OrgUpdate,
    OrgDelete,
    UsersRead,
    UsersCreate,
    UsersUpdate,
    UsersDelete,
    CallsRead,
    CallsUpdate,
    CallsDelete,
    AiRead,
    AiUpdate,
    AnalyticsRead,
    BillingRead,
    BillingUpdate,
    IntegrationsRead,
    IntegrationsCreate,
    IntegrationsDelete,
    ApiKeysManage,
    AuditRead,
    WebhooksManage,
}

impl Permission {
    pub const ALL: [Permission; 21] = [
        Permission::OrgRead,
        Permission::OrgUpdate,
        Permission::OrgDelete,
        Permission::UsersRead,
        Permission::UsersCreate,
        Permission::UsersUpdate,
        Permission::UsersDelete,
        Permission::CallsRead,
        Permission::CallsUpdate,
        Permission::CallsDelete,
        Permission::AiRead,
        Permission::AiUpdate,
        Permission::AnalyticsRead,
        Permission::BillingRead,
        Permission::BillingUpdate,
        Permission::IntegrationsRead,
        Permission::IntegrationsCreate,
        Permission::IntegrationsDelete,
        Permission::ApiKeysManage,
        Permission::AuditRead,
        Permission::WebhooksManage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::OrgRead => "org:read",
            Permission::OrgUpdate => "org:update",
            Permission::OrgDelete => "org:delete",
            Permission::UsersRead => "users:read",
            Permission::UsersCreate => "users:create",
            Permission::UsersUpdate => "users:update",
            Permission::UsersDelete => "users:delete",
            Permission::CallsRead => "calls:read",
            Permission::CallsUpdate => "calls:update",
            Permission::CallsDelete => "calls:delete",
            Permission::AiRead => "ai:read",
            Permission::AiUpdate => "ai:update",
            Permission::AnalyticsRead => "analytics:read",
            Permission::BillingRead => "billing:read",
            Permission::BillingUpdate => "billing:update",
            Permission::IntegrationsRead => "integrations:read",
            Permission::IntegrationsCreate => "integrations:create",
            Permission::IntegrationsDelete => "integrations:delete",
            Permission::ApiKeysManage => "apikeys:manage",
            Permission::AuditRead => "audit:read",
            Permission::WebhooksManage => "webhooks:manage",
        }
    }
}

impl FromStr for Permission {
    type Err = RbacParseError;

    /// Exact strings only; a scoped form ("calls:read:own") is a [`Grant`], not a permission.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| RbacParseError::UnknownPermission(s.to_owned()))
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Serialized as the wire string ("users:delete") so JSON matches the seed's API.
impl Serialize for Permission {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How far a grant reaches: every resource in the organization, or only the caller's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    All,
    Own,
}

/// One row of the role table: a permission and its scope ("calls:read:own").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Grant {
    pub permission: Permission,
    pub scope: Scope,
}

impl Grant {
    const fn all(permission: Permission) -> Grant {
        Grant {
            permission,
            scope: Scope::All,
        }
    }

    const fn own(permission: Permission) -> Grant {
        Grant {
            permission,
            scope: Scope::Own,
        }
    }
}

impl FromStr for Grant {
    type Err = RbacParseError;

    /// Only ":own" is a valid suffix; anything else (":all", ":own:x") is rejected, not ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || RbacParseError::InvalidGrant(s.to_owned());
        match s.strip_suffix(":own") {
            Some(base) => base
                .parse()
                .map(Grant::own)
                .map_err(|_: RbacParseError| invalid()),
            None => s
                .parse()
                .map(Grant::all)
                .map_err(|_: RbacParseError| invalid()),
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scope {
            Scope::All => f.write_str(self.permission.as_str()),
            Scope::Own => write!(f, "{}:own", self.permission.as_str()),
        }
    }
}

/// Serialized as the seed's string form so stored/returned grants keep their shape.
impl Serialize for Grant {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Grant {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Outcome of a check; three-way so own-only access has to be handled explicitly by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allowed,
    AllowedOwnOnly,
    Denied,
}

impl Decision {
    /// True only for unconditional access; own-only must be resolved against a resource first.
    pub fn is_allowed(self) -> bool {
        self == Decision::Allowed
    }
}

static OWNER_GRANTS: [Grant; 21] = [
    Grant::all(P::OrgRead),
    Grant::all(P::OrgUpdate),
    Grant::all(P::OrgDelete),
    Grant::all(P::UsersRead),
    Grant::all(P::UsersCreate),
    Grant::all(P::UsersUpdate),
    Grant::all(P::UsersDelete),
    Grant::all(P::CallsRead),
    Grant::all(P::CallsUpdate),
    Grant::all(P::CallsDelete),
    Grant::all(P::AiRead),
    Grant::all(P::AiUpdate),
    Grant::all(P::AnalyticsRead),
    Grant::all(P::BillingRead),
    Grant::all(P::BillingUpdate),
    Grant::all(P::IntegrationsRead),
    Grant::all(P::IntegrationsCreate),
    Grant::all(P::IntegrationsDelete),
    Grant::all(P::ApiKeysManage),
    Grant::all(P::AuditRead),
    Grant::all(P::WebhooksManage),
];

static ADMIN_GRANTS: [Grant; 17] = [
    Grant::all(P::OrgRead),
    Grant::all(P::OrgUpdate),
    Grant::all(P::UsersRead),
    Grant::all(P::UsersCreate),
    Grant::all(P::UsersUpdate),
    Grant::all(P::UsersDelete),
    Grant::all(P::CallsRead),
    Grant::all(P::CallsUpdate),
    Grant::all(P::AiRead),
    Grant::all(P::AiUpdate),
    Grant::all(P::AnalyticsRead),
    Grant::all(P::IntegrationsRead),
    Grant::all(P::IntegrationsCreate),
    Grant::all(P::IntegrationsDelete),
    Grant::all(P::ApiKeysManage),
    Grant::all(P::AuditRead),
    Grant::all(P::WebhooksManage),
];

static MANAGER_GRANTS: [Grant; 6] = [
    Grant::all(P::OrgRead),
    Grant::all(P::UsersRead),
    Grant::all(P::CallsRead),
    Grant::all(P::CallsUpdate),
    Grant::all(P::AiRead),
    Grant::all(P::AnalyticsRead),
];

static OPERATOR_GRANTS: [Grant; 2] = [Grant::own(P::CallsRead), Grant::own(P::CallsUpdate)];

static VIEWER_GRANTS: [Grant; 3] = [
    Grant::all(P::OrgRead),
    Grant::all(P::CallsRead),
    Grant::all(P::AnalyticsRead),
];

/// The seed's role table (DESIGN.md, "Identity and authorization"), in its order.
pub fn grants(role: Role) -> &'static [Grant] {
    match role {
        Role::Owner => &OWNER_GRANTS,
        Role::Admin => &ADMIN_GRANTS,
        Role::Manager => &MANAGER_GRANTS,
        Role::Operator => &OPERATOR_GRANTS,
        Role::Viewer => &VIEWER_GRANTS,
    }
}

/// Whether `role` may use `permission`; an all-scope grant wins over an own-only one.
pub fn check(role: Role, permission: Permission) -> Decision {
    let mut decision = Decision::Denied;
    for grant in grants(role).iter().filter(|g| g.permission == permission) {
        match grant.scope {
            Scope::All => return Decision::Allowed,
            Scope::Own => decision = Decision::AllowedOwnOnly,
        }
    }
    decision
}

/// [`check`] resolved against one resource's owner. With no owner known the answer stays
/// own-only, so a list query must filter to the caller's rows. An empty caller id never owns
/// anything, so a missing owner field defaulting to "" cannot grant access.
pub fn check_on_resource(
    role: Role,
    permission: Permission,
    caller_user_id: &str,
    resource_owner_id: Option<&str>,
) -> Decision {
    match check(role, permission) {
        Decision::AllowedOwnOnly => match resource_owner_id {
            Some(owner) if !caller_user_id.is_empty() && owner == caller_user_id => {
                Decision::Allowed
            }
            Some(_) => Decision::Denied,
            None => Decision::AllowedOwnOnly,
        },
        other => other,
    }
}

/// A check phrased as a grant: asking for ":own" is satisfied by either scope, since the
/// request is already limited to the caller's own resources.
pub fn check_grant(role: Role, grant: Grant) -> Decision {
    match grant.scope {
        Scope::All => check(role, grant.permission),
        Scope::Own => match check(role, grant.permission) {
            Decision::Denied => Decision::Denied,
            Decision::Allowed | Decision::AllowedOwnOnly => Decision::Allowed,
        },
    }
}

/// The role's grants as the seed's strings, for API responses that list permissions.
pub fn expanded_permissions(role: Role) -> Vec<String> {
    grants(role).iter().map(Grant::to_string).collect()
}

/// Whether an organization API key may ever use `permission`, whatever its role: a key never
/// manages keys (`apikeys:manage`), members (`users:*`), billing (`billing:*`) or outbound webhook
/// endpoints (`webhooks:manage`), and never deletes the organization (`org:delete`, which ends
/// every membership at once). Those stay with signed-in people, so a leaked key cannot mint more
/// keys, let someone in or out, move money, or send the organization's audit events elsewhere.
/// `audit:read` is not excluded: an OWNER or ADMIN key reads the audit log (a SIEM export is a
/// machine's job); reading it changes nothing, and a MANAGER, OPERATOR or VIEWER key cannot.
pub fn key_may_use(permission: Permission) -> bool {
    !matches!(
        permission,
        P::ApiKeysManage
            | P::WebhooksManage
            | P::OrgDelete
            | P::UsersRead
            | P::UsersCreate
            | P::UsersUpdate
            | P::UsersDelete
            | P::BillingRead
            | P::BillingUpdate
    )
}

/// [`check`] for an organization API key with `role`: the role's decision, except that what
/// [`key_may_use`] excludes is always denied.
pub fn check_api_key(role: Role, permission: Permission) -> Decision {
    if key_may_use(permission) {
        check(role, permission)
    } else {
        Decision::Denied
    }
}

/// Whether someone with role `holder` may hand out `granted` (an API key's role): only when every
/// grant of `granted` is one `holder` has (an own-only grant is covered by either scope). OWNER
/// may grant any role, ADMIN every role but OWNER, MANAGER itself, OPERATOR and VIEWER.
pub fn role_within(holder: Role, granted: Role) -> bool {
    grants(granted)
        .iter()
        .all(|grant| check_grant(holder, *grant) == Decision::Allowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: Decision = Decision::Allowed;
    const O: Decision = Decision::AllowedOwnOnly;
    const D: Decision = Decision::Denied;

    /// Written out by hand from DESIGN.md, not derived from `grants`.
    /// Columns: OWNER, ADMIN, MANAGER, OPERATOR, VIEWER.
    const MATRIX: [(Permission, [Decision; 5]); 21] = [
        (P::OrgRead, [A, A, A, D, A]),
        (P::OrgUpdate, [A, A, D, D, D]),
        (P::OrgDelete, [A, D, D, D, D]),
        (P::UsersRead, [A, A, A, D, D]),
        (P::UsersCreate, [A, A, D, D, D]),
        (P::UsersUpdate, [A, A, D, D, D]),
        (P::UsersDelete, [A, A, D, D, D]),
        (P::CallsRead, [A, A, A, O, A]),
        (P::CallsUpdate, [A, A, A, O, D]),
        (P::CallsDelete, [A, D, D, D, D]),
        (P::AiRead, [A, A, A, D, D]),
        (P::AiUpdate, [A, A, D, D, D]),
        (P::AnalyticsRead, [A, A, A, D, A]),
        (P::BillingRead, [A, D, D, D, D]),
        (P::BillingUpdate, [A, D, D, D, D]),
        (P::IntegrationsRead, [A, A, D, D, D]),
        (P::IntegrationsCreate, [A, A, D, D, D]),
        (P::IntegrationsDelete, [A, A, D, D, D]),
        (P::ApiKeysManage, [A, A, D, D, D]),
        (P::AuditRead, [A, A, D, D, D]),
        (P::WebhooksManage, [A, A, D, D, D]),
    ];

    const ROLES: [Role; 5] = [
        Role::Owner,
        Role::Admin,
        Role::Manager,
        Role::Operator,
        Role::Viewer,
    ];

    #[test]
    fn exhaustive_matrix() {
        // Every permission appears exactly once in the literal table.
        assert_eq!(MATRIX.len(), Permission::ALL.len());
        for p in Permission::ALL {
            assert_eq!(MATRIX.iter().filter(|(q, _)| *q == p).count(), 1, "{p}");
        }
        for (permission, row) in MATRIX {
            for (role, expected) in ROLES.into_iter().zip(row) {
                assert_eq!(check(role, permission), expected, "{role} {permission}");
            }
        }
    }

    #[test]
    fn expanded_permissions_are_the_literal_table() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            expanded_permissions(Role::Owner),
            s(&[
                "org:read",
                "org:update",
                "org:delete",
                "users:read",
                "users:create",
                "users:update",
                "users:delete",
                "calls:read",
                "calls:update",
                "calls:delete",
                "ai:read",
                "ai:update",
                "analytics:read",
                "billing:read",
                "billing:update",
                "integrations:read",
                "integrations:create",
                "integrations:delete",
                "apikeys:manage",
                "audit:read",
                "webhooks:manage",
            ])
        );
        assert_eq!(
            expanded_permissions(Role::Admin),
            s(&[
                "org:read",
                "org:update",
                "users:read",
                "users:create",
                "users:update",
                "users:delete",
                "calls:read",
                "calls:update",
                "ai:read",
                "ai:update",
                "analytics:read",
                "integrations:read",
                "integrations:create",
                "integrations:delete",
                "apikeys:manage",
                "audit:read",
                "webhooks:manage",
            ])
        );
        assert_eq!(
            expanded_permissions(Role::Manager),
            s(&[
                "org:read",
                "users:read",
                "calls:read",
                "calls:update",
                "ai:read",
                "analytics:read",
            ])
        );
        assert_eq!(
            expanded_permissions(Role::Operator),
            s(&["calls:read:own", "calls:update:own"])
        );
        assert_eq!(
            expanded_permissions(Role::Viewer),
            s(&["org:read", "calls:read", "analytics:read"])
        );
    }

    #[test]
    fn role_round_trips() {
        assert_eq!(Role::ALL, ROLES);
        for (role, name) in ROLES
            .into_iter()
            .zip(["OWNER", "ADMIN", "MANAGER", "OPERATOR", "VIEWER"])
        {
            assert_eq!(role.as_str(), name);
            assert_eq!(role.to_string(), name);
            assert_eq!(name.parse::<Role>(), Ok(role));
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), role);
        }
        for bad in ["", "owner", "Owner", " OWNER", "OWNER ", "ROOT"] {
            assert_eq!(
                bad.parse::<Role>(),
                Err(RbacParseError::UnknownRole(bad.to_owned()))
            );
            assert!(serde_json::from_str::<Role>(&format!("{bad:?}")).is_err());
        }
    }

    #[test]
    fn permission_and_grant_round_trips() {
        for p in Permission::ALL {
            let s = p.to_string();
            assert_eq!(s, p.as_str());
            assert_eq!(s.parse::<Permission>(), Ok(p));
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<Permission>(&json).unwrap(), p);

            for (scope, text) in [(Scope::All, s.clone()), (Scope::Own, format!("{s}:own"))] {
                let g = Grant {
                    permission: p,
                    scope,
                };
                assert_eq!(g.to_string(), text);
                assert_eq!(text.parse::<Grant>(), Ok(g));
                let json = serde_json::to_string(&g).unwrap();
                assert_eq!(json, format!("\"{text}\""));
                assert_eq!(serde_json::from_str::<Grant>(&json).unwrap(), g);
            }
        }
        assert_eq!(
            "calls:read".parse::<Grant>(),
            Ok(Grant {
                permission: P::CallsRead,
                scope: Scope::All
            })
        );
        assert_eq!(
            "calls:read:own".parse::<Grant>(),
            Ok(Grant {
                permission: P::CallsRead,
                scope: Scope::Own
            })
        );
    }

    #[test]
    fn malformed_strings_are_rejected() {
        let bad = [
            "",
            "users",
            "users:",
            "users:delete:own:x",
            "USERS:DELETE",
            " users:delete",
            "users:delete ",
            "users:fly",
            "calls:read:all",
            "calls:read:own",
            ":own",
            "calls:read:own:own",
            "calls:read:OWN",
        ];
        for s in bad {
            assert_eq!(
                s.parse::<Permission>(),
                Err(RbacParseError::UnknownPermission(s.to_owned())),
                "{s:?}"
            );
            assert!(serde_json::from_str::<Permission>(&format!("{s:?}")).is_err());
        }
        for s in bad.iter().filter(|s| **s != "calls:read:own") {
            assert_eq!(
                s.parse::<Grant>(),
                Err(RbacParseError::InvalidGrant((*s).to_owned())),
                "{s:?}"
            );
            assert!(serde_json::from_str::<Grant>(&format!("{s:?}")).is_err());
        }
        assert!(serde_json::from_str::<Permission>("42").is_err());
    }

    #[test]
    fn error_messages_name_the_input() {
        let e = "users:fly".parse::<Permission>().unwrap_err();
        assert_eq!(e.to_string(), r#"unknown permission "users:fly""#);
        let e = "calls:read:all".parse::<Grant>().unwrap_err();
        assert_eq!(e.to_string(), r#"invalid grant "calls:read:all""#);
        let e = "root".parse::<Role>().unwrap_err();
        assert_eq!(e.to_string(), r#"unknown role "root""#);
    }

    #[test]
    fn decision_serde_and_is_allowed() {
        assert_eq!(serde_json::to_string(&A).unwrap(), r#""allowed""#);
        assert_eq!(serde_json::to_string(&O).unwrap(), r#""allowed_own_only""#);
        assert_eq!(serde_json::to_string(&D).unwrap(), r#""denied""#);
        for d in [A, O, D] {
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(serde_json::from_str::<Decision>(&json).unwrap(), d);
        }
        assert!(A.is_allowed());
        assert!(!O.is_allowed());
        assert!(!D.is_allowed());
    }

    #[test]
    fn check_on_resource_operator() {
        let op = Role::Operator;
        assert_eq!(check_on_resource(op, P::CallsRead, "u1", Some("u1")), A);
        assert_eq!(check_on_resource(op, P::CallsUpdate, "u1", Some("u1")), A);
        assert_eq!(check_on_resource(op, P::CallsRead, "u1", Some("u2")), D);
        assert_eq!(check_on_resource(op, P::CallsUpdate, "u1", Some("u2")), D);
        assert_eq!(check_on_resource(op, P::CallsRead, "u1", None), O);
        assert_eq!(check_on_resource(op, P::CallsUpdate, "u1", None), O);
        // Prefixes and case are different ids.
        assert_eq!(check_on_resource(op, P::CallsRead, "u1", Some("u10")), D);
        assert_eq!(check_on_resource(op, P::CallsRead, "u1", Some("U1")), D);
        // An empty id never matches, even itself.
        assert_eq!(check_on_resource(op, P::CallsRead, "", Some("")), D);
        // Permissions the operator lacks stay denied even on own resources.
        assert_eq!(check_on_resource(op, P::CallsDelete, "u1", Some("u1")), D);
        assert_eq!(check_on_resource(op, P::OrgRead, "u1", None), D);
    }

    #[test]
    fn check_on_resource_full_scope_roles() {
        for role in [Role::Owner, Role::Admin, Role::Manager, Role::Viewer] {
            for owner in [Some("u1"), Some("u2"), None] {
                assert_eq!(check_on_resource(role, P::CallsRead, "u1", owner), A);
            }
        }
        for owner in [Some("u1"), Some("u2"), None] {
            assert_eq!(
                check_on_resource(Role::Viewer, P::CallsUpdate, "u1", owner),
                D
            );
            assert_eq!(
                check_on_resource(Role::Admin, P::CallsDelete, "u1", owner),
                D
            );
            assert_eq!(
                check_on_resource(Role::Owner, P::CallsDelete, "u1", owner),
                A
            );
        }
    }

    #[test]
    fn check_grant_cases() {
        let own = |p| Grant {
            permission: p,
            scope: Scope::Own,
        };
        let all = |p| Grant {
            permission: p,
            scope: Scope::All,
        };
        assert_eq!(check_grant(Role::Operator, own(P::CallsRead)), A);
        assert_eq!(check_grant(Role::Operator, all(P::CallsRead)), O);
        assert_eq!(check_grant(Role::Operator, own(P::CallsDelete)), D);
        assert_eq!(check_grant(Role::Viewer, own(P::CallsRead)), A);
        assert_eq!(check_grant(Role::Viewer, own(P::CallsUpdate)), D);
        for role in ROLES {
            for p in Permission::ALL {
                assert_eq!(check_grant(role, all(p)), check(role, p));
                let expected = if check(role, p) == D { D } else { A };
                assert_eq!(check_grant(role, own(p)), expected);
            }
        }
    }

    #[test]
    fn keys_never_manage_keys_members_or_billing() {
        let excluded = [
            P::ApiKeysManage,
            P::WebhooksManage,
            P::OrgDelete,
            P::UsersRead,
            P::UsersCreate,
            P::UsersUpdate,
            P::UsersDelete,
            P::BillingRead,
            P::BillingUpdate,
        ];
        for role in ROLES {
            for p in Permission::ALL {
                let expected = if excluded.contains(&p) {
                    D
                } else {
                    check(role, p)
                };
                assert_eq!(check_api_key(role, p), expected, "{role} {p}");
            }
        }
        // An OWNER key still reads and changes the organization and its integrations.
        assert_eq!(check_api_key(Role::Owner, P::OrgUpdate), A);
        // But not delete it: that detaches every member, which no key may do one by one.
        assert_eq!(check(Role::Owner, P::OrgDelete), A);
        assert_eq!(check_api_key(Role::Owner, P::OrgDelete), D);
        assert_eq!(check_api_key(Role::Owner, P::IntegrationsCreate), A);
        assert_eq!(check_api_key(Role::Operator, P::CallsRead), O);
        // Keys read the audit log exactly when their role may.
        assert_eq!(check_api_key(Role::Admin, P::AuditRead), A);
        assert_eq!(check_api_key(Role::Manager, P::AuditRead), D);
        // Not even an OWNER key manages webhook endpoints: it could send the events elsewhere.
        assert_eq!(check(Role::Owner, P::WebhooksManage), A);
        assert_eq!(check_api_key(Role::Owner, P::WebhooksManage), D);
    }

    #[test]
    fn role_ceiling_for_keys() {
        // (holder, granted) pairs allowed, written out by hand.
        let allowed = [
            (Role::Owner, Role::Owner),
            (Role::Owner, Role::Admin),
            (Role::Owner, Role::Manager),
            (Role::Owner, Role::Operator),
            (Role::Owner, Role::Viewer),
            (Role::Admin, Role::Admin),
            (Role::Admin, Role::Manager),
            (Role::Admin, Role::Operator),
            (Role::Admin, Role::Viewer),
            (Role::Manager, Role::Manager),
            (Role::Manager, Role::Operator),
            (Role::Manager, Role::Viewer),
            (Role::Operator, Role::Operator),
            (Role::Viewer, Role::Viewer),
        ];
        for holder in ROLES {
            for granted in ROLES {
                assert_eq!(
                    role_within(holder, granted),
                    allowed.contains(&(holder, granted)),
                    "{holder} grants {granted}"
                );
            }
        }
    }

    fn near_valid() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[A-Za-z: ]{0,24}",
            "(org|users|calls|ai|analytics|billing|integrations|apikeys|audit|webhooks|x|)(:(read|update|delete|create|manage|fly|own|all|)){0,3}",
            "(OWNER|ADMIN|MANAGER|OPERATOR|VIEWER|owner|)[ A-Z]{0,2}",
        ]
    }

    proptest! {
        #[test]
        fn parse_fails_or_round_trips(s in near_valid()) {
            if let Ok(p) = s.parse::<Permission>() {
                prop_assert_eq!(p.to_string(), s.clone());
            }
            if let Ok(g) = s.parse::<Grant>() {
                prop_assert_eq!(g.to_string(), s.clone());
            }
            if let Ok(r) = s.parse::<Role>() {
                prop_assert_eq!(r.to_string(), s.clone());
            }
            let json = serde_json::to_string(&s).unwrap();
            if let Ok(p) = serde_json::from_str::<Permission>(&json) {
                prop_assert_eq!(serde_json::to_string(&p).unwrap(), json.clone());
            }
            if let Ok(g) = serde_json::from_str::<Grant>(&json) {
                prop_assert_eq!(serde_json::to_string(&g).unwrap(), json);
            }
        }
    }
}
