//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): each delivery carries
//! `webhook-id` (the event id, the same on every attempt), `webhook-timestamp` (Unix seconds of
//! this attempt) and `webhook-signature`, `v1,` and the standard base64 of HMAC-SHA-256 over
//! `"{id}.{timestamp}.{body}"`, keyed with the base64-decoded part of the endpoint's
//! `whsec_…` secret.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The headers of a signed delivery: the message id, the attempt's timestamp, the signature.
pub const HEADERS: [&str; 3] = ["webhook-id", "webhook-timestamp", "webhook-signature"];

/// What every signing secret starts with.
pub use tollgate::store::webhook_endpoints::SIGNING_SECRET_PREFIX as SECRET_PREFIX;

/// A signing secret that cannot sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a signing secret starts with `whsec_`")]
    Prefix,
    #[error("a signing secret is `whsec_` and standard base64")]
    Encoding,
    #[error("a signing secret holds at least 24 bytes")]
    TooShort,
}

/// The HMAC key of one endpoint. Prints nothing of the key.
pub struct SigningKey(ring::hmac::Key);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// The key of a `whsec_<base64>` secret (the form `POST /api/webhooks/endpoints` shows once).
    pub fn from_secret(secret: &str) -> Result<Self, SecretError> {
        let encoded = secret
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::Prefix)?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::Encoding)?;
        if key.len() < 24 {
            return Err(SecretError::TooShort);
        }
        Ok(Self(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key)))
    }

    /// The `webhook-signature` value of `body` sent as message `id` at `timestamp`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut context = ring::hmac::Context::with_key(&self.0);
        context.update(id.as_bytes());
        context.update(b".");
        context.update(timestamp.to_string().as_bytes());
        context.update(b".");
        context.update(body);
        format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference libraries (their test
    /// suites sign this payload with this secret, id and timestamp).
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_specifications_example() {
        let key = SigningKey::from_secret(SPEC_SECRET).expect("secret");
        assert_eq!(key.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY), SPEC_SIGNATURE);
    }

    #[test]
    fn any_change_of_id_timestamp_or_body_changes_the_signature() {
        let key = SigningKey::from_secret(SPEC_SECRET).expect("secret");
        for signature in [
            key.sign("msg_other", SPEC_TIMESTAMP, SPEC_BODY),
            key.sign(SPEC_ID, SPEC_TIMESTAMP + 1, SPEC_BODY),
            key.sign(SPEC_ID, SPEC_TIMESTAMP, br#"{"test": 2432232315}"#),
        ] {
            assert_ne!(signature, SPEC_SIGNATURE);
            assert!(signature.starts_with("v1,"));
        }
    }

    #[test]
    fn secrets_without_the_prefix_base64_or_length_are_refused() {
        for (secret, error) in [
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", SecretError::Prefix),
            ("whsec_not base64!", SecretError::Encoding),
            ("whsec_c2hvcnQ=", SecretError::TooShort),
        ] {
            assert_eq!(
                SigningKey::from_secret(secret).map(|_| ()),
                Err(error),
                "{secret}"
            );
        }
    }

    #[test]
    fn the_key_is_not_printed() {
        let key = SigningKey::from_secret(SPEC_SECRET).expect("secret");
        assert_eq!(format!("{key:?}"), "SigningKey(..)");
    }
}
