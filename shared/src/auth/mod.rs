//! Authentication: user JWTs from the identity provider, service keys and organization API keys.

pub mod api_key;
pub mod jwt;
pub mod profile;
pub mod service_key;
