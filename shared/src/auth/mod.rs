//! Authentication: user JWTs from the identity provider and service keys.

pub mod jwt;
pub mod profile;
pub mod service_key;
