//! Profiles from the identity provider, for tokens that carry no email (Clerk's and Auth0's
//! defaults): the Clerk Backend API (`GET /v1/users/{user_id}` with the secret key) or Auth0's
//! `/userinfo` (with the caller's own token). Read once per user and stored with the time it was
//! read (the user-load function).
//!
//! Logging: never the secret key, the token or the answer's contents.

use std::time::Duration;

use serde_json::Value;

/// Clerk's Backend API, unless `CLERK_API_BASE` points elsewhere (tests: a local stand-in).
pub const DEFAULT_CLERK_API_BASE: &str = "https://api.clerk.com";
/// Whole-request timeout of a profile fetch, well inside the functions' 10 s budget.
pub const PROFILE_FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest profile answer read.
const MAX_PROFILE_BYTES: usize = 256 * 1024;

/// What the provider says about the user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Profile {
    pub email: Option<String>,
    /// `true` only when the provider says the email is verified.
    pub email_verified: bool,
    pub name: Option<String>,
}

/// Why a profile could not be read. Never contains a key, a token or profile data.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("the profile request failed: {0}")]
    Request(#[source] reqwest::Error),
    #[error("the identity provider answered HTTP {0}")]
    Status(u16),
    #[error("the profile answer is larger than {MAX_PROFILE_BYTES} bytes")]
    TooLarge,
    #[error("the profile answer is not the JSON object expected")]
    Shape,
    #[error("the profile URL is not valid")]
    InvalidUrl,
    /// The answer is about another user than the token's (OIDC Core 5.3.2 for `/userinfo`;
    /// Clerk's user object `id`): its values are never used.
    #[error("the profile answer is not for the token's subject")]
    Subject,
}

/// The answer's `field` must be exactly `subject`, else it is not used.
fn same_subject(value: &Value, field: &str, subject: &str) -> Result<(), ProfileError> {
    if value.get(field).and_then(Value::as_str) == Some(subject) {
        Ok(())
    } else {
        Err(ProfileError::Subject)
    }
}

async fn get_json(request: reqwest::RequestBuilder) -> Result<Value, ProfileError> {
    let mut response = request
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(PROFILE_FETCH_TIMEOUT)
        .send()
        .await
        .map_err(ProfileError::Request)?;
    let status = response.status();
    if !status.is_success() {
        return Err(ProfileError::Status(status.as_u16()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ProfileError::Request)? {
        if body.len() + chunk.len() > MAX_PROFILE_BYTES {
            return Err(ProfileError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    let value: Value = serde_json::from_slice(&body).map_err(|_| ProfileError::Shape)?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(ProfileError::Shape)
    }
}

fn text(value: &Value, name: &str) -> Option<String> {
    value
        .get(name)
        .and_then(Value::as_str)
        .and_then(crate::text::person_name)
}

fn checked_email(email: Option<&str>) -> Option<String> {
    email
        .map(str::trim)
        .filter(|email| crate::text::is_plausible_email(email))
        .map(str::to_owned)
}

fn joined(first: Option<String>, last: Option<String>) -> Option<String> {
    match (first, last) {
        (Some(first), Some(last)) => crate::text::person_name(&format!("{first} {last}")),
        (Some(one), None) | (None, Some(one)) => Some(one),
        (None, None) => None,
    }
}

/// Clerk's user object → profile: the `email_addresses` entry whose `id` is
/// `primary_email_address_id`, verified only when its `verification.status` is `verified`; the
/// name from `first_name`/`last_name` (either may be null).
pub fn clerk_profile(user: &Value) -> Profile {
    let primary = user
        .get("primary_email_address_id")
        .and_then(Value::as_str)
        .and_then(|id| {
            user.get("email_addresses")
                .and_then(Value::as_array)?
                .iter()
                .find(|address| address.get("id").and_then(Value::as_str) == Some(id))
        });
    let email = primary.and_then(|a| checked_email(a.get("email_address").and_then(Value::as_str)));
    let verified = primary
        .and_then(|a| a.get("verification"))
        .and_then(|v| v.get("status"))
        .and_then(Value::as_str)
        == Some("verified");
    Profile {
        email_verified: email.is_some() && verified,
        email,
        name: joined(text(user, "first_name"), text(user, "last_name")),
    }
}

/// OIDC `/userinfo` answer → profile: `email`, `email_verified` (`true` only), `name` or the
/// given and family names.
pub fn userinfo_profile(info: &Value) -> Profile {
    let email = checked_email(info.get("email").and_then(Value::as_str));
    let verified = info.get("email_verified").and_then(Value::as_bool) == Some(true);
    Profile {
        email_verified: email.is_some() && verified,
        email,
        name: text(info, "name")
            .or_else(|| joined(text(info, "given_name"), text(info, "family_name"))),
    }
}

/// `GET {base}/v1/users/{user_id}` with `Authorization: Bearer <secret key>`.
pub async fn fetch_clerk(
    http: &reqwest::Client,
    base: &str,
    secret_key: &str,
    user_id: &str,
) -> Result<Profile, ProfileError> {
    let mut url = reqwest::Url::parse(base).map_err(|_| ProfileError::InvalidUrl)?;
    url.path_segments_mut()
        .map_err(|_| ProfileError::InvalidUrl)?
        .pop_if_empty()
        .extend(["v1", "users", user_id]);
    let user = get_json(http.get(url).bearer_auth(secret_key)).await?;
    same_subject(&user, "id", user_id)?;
    Ok(clerk_profile(&user))
}

/// `GET <userinfo>` with the caller's own access token; the answer's `sub` must be `subject`
/// (the token's).
pub async fn fetch_userinfo(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    subject: &str,
) -> Result<Profile, ProfileError> {
    let url = reqwest::Url::parse(url).map_err(|_| ProfileError::InvalidUrl)?;
    let info = get_json(http.get(url).bearer_auth(token)).await?;
    same_subject(&info, "sub", subject)?;
    Ok(userinfo_profile(&info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn clerk_user(status: &str, first: Value, last: Value) -> Value {
        json!({
            "object": "user", "id": "user_2abc",
            "primary_email_address_id": "idn_primary",
            "email_addresses": [
                {"id": "idn_other", "email_address": "other@example.com",
                 "verification": {"status": "verified", "strategy": "email_code"}},
                {"id": "idn_primary", "email_address": "Ann@Example.com",
                 "verification": {"status": status, "strategy": "email_code"}},
            ],
            "first_name": first, "last_name": last,
        })
    }

    #[test]
    fn clerk_primary_email_and_its_verification() {
        let profile = clerk_profile(&clerk_user("verified", json!("Ann"), json!("Lee")));
        assert_eq!(
            profile,
            Profile {
                email: Some("Ann@Example.com".to_owned()),
                email_verified: true,
                name: Some("Ann Lee".to_owned()),
            }
        );
        for status in ["unverified", "expired", "failed", "transferable"] {
            let profile = clerk_profile(&clerk_user(status, json!("Ann"), Value::Null));
            assert_eq!(profile.email.as_deref(), Some("Ann@Example.com"));
            assert!(!profile.email_verified, "{status}");
            assert_eq!(profile.name.as_deref(), Some("Ann"));
        }
        let nameless = clerk_profile(&clerk_user("verified", Value::Null, Value::Null));
        assert_eq!(nameless.name, None, "never \"null null\"");
        // No primary address: no email, not verified (another verified address does not count).
        let mut user = clerk_user("verified", json!("Ann"), json!("Lee"));
        user["primary_email_address_id"] = Value::Null;
        let profile = clerk_profile(&user);
        assert_eq!((profile.email, profile.email_verified), (None, false));
    }

    #[test]
    fn userinfo_verification_is_true_only() {
        let info = json!({"sub": "auth0|1", "email": "bo@example.com", "email_verified": true,
                          "given_name": "Bo", "family_name": "Kim"});
        let profile = userinfo_profile(&info);
        assert_eq!(profile.email.as_deref(), Some("bo@example.com"));
        assert!(profile.email_verified);
        assert_eq!(profile.name.as_deref(), Some("Bo Kim"));
        for verified in [json!(false), json!("true"), Value::Null] {
            let mut info = info.clone();
            info["email_verified"] = verified.clone();
            assert!(!userinfo_profile(&info).email_verified, "{verified}");
        }
    }
}
