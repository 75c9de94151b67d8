//! Stripe-Signature verification.
//!
//! Stripe signs every webhook delivery with each of the endpoint's active signing secrets and sends
//! `Stripe-Signature: t=<unix seconds>,v1=<hex>,v1=<hex>,v0=<hex>`, where each `v1` is the lower-case
//! hex HMAC-SHA256 of `"<t>.<raw body>"`. The key is the signing secret exactly as the dashboard
//! shows it, the whole `whsec_...` string taken as bytes (not base64-decoded): that is what Stripe's
//! own libraries do (`stripe-go`: `hmac.New(sha256.New, []byte(secret))`).
//!
//! [`verify`] accepts a delivery when, for some configured secret and some `v1` value, the HMAC
//! matches (compared in constant time, every pair compared, no early exit), and the timestamp lies
//! within the tolerance on either side of now. `v0` (test-mode legacy scheme) and unknown schemes
//! are ignored. The signature is checked before the timestamp, so
//! [`SignatureError::TimestampOutOfTolerance`] only ever reports an authentic but late (replayed)
//! or future-dated delivery; any forgery reports [`SignatureError::NoMatch`].
//!
//! Nothing here logs; the error's `Display` names only the failure class and is safe to return to
//! the caller (the webhook answers 400 with it). Secrets never appear in `Debug` output.
//!
//! # Why Tollgate checks signatures itself (and not async-stripe's `Webhook::construct_event`)
//! Events are parsed with async-stripe (`tollgate_stripe::parse_event`), but only after this check,
//! because Tollgate's rule is not async-stripe's:
//! - It accepts every `v1` signature in the header, each against **several secrets**: during a
//!   secret rotation `STRIPE_WEBHOOK_SECRET` lists the old and the new secret, and Stripe signs
//!   with each of the endpoint's active secrets. async-stripe 1.0's `construct_event` takes one
//!   secret (it too accepts any `v1` of the header), so a rotation would mean one verification and
//!   one full parse per secret.
//! - Its tolerance is a parameter ([`DEFAULT_TOLERANCE`], Stripe's 5 minutes); async-stripe's is
//!   fixed, against its own clock (chrono), and its `insecure` entry point (no check) warns on every
//!   call in a release build.
//! - It reports which check failed ([`SignatureError`]: no header, malformed, no `v1`, no match,
//!   late, no secret configured: 503 rather than 400), computes with ring (the one crypto
//!   library) and compares every candidate in constant time.

use std::fmt;
use std::time::Duration;

use ring::hmac;
use subtle::{Choice, ConstantTimeEq};

/// Stripe's default: a delivery whose timestamp is more than 5 minutes away from now is rejected.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// The only signature scheme Stripe signs live webhooks with.
const SCHEME_V1: &str = "v1";
/// Length of an HMAC-SHA256 tag in bytes (64 hex characters in the header).
const TAG_LEN: usize = 32;
/// The prefix Stripe gives every webhook signing secret.
const SECRET_PREFIX: &str = "whsec_";

/// Why a webhook delivery was rejected. `Display` is safe to send back to the caller: it never
/// includes the header, the payload, a signature or a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing Stripe-Signature header")]
    MissingHeader,
    #[error("malformed Stripe-Signature header")]
    MalformedHeader,
    #[error("Stripe-Signature header has no v1 signature")]
    NoV1Signature,
    #[error("webhook timestamp is outside the tolerance window")]
    TimestampOutOfTolerance,
    #[error("no webhook signature matches the payload")]
    NoMatch,
    /// A configuration problem on our side, not the sender's: callers should treat it as a server
    /// error (Stripe retries) rather than a 400.
    #[error("no webhook signing secret is configured")]
    NoSecretsConfigured,
}

/// The timestamp (`t=`) of a delivery whose signature checked out, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VerifiedTimestamp(i64);

impl VerifiedTimestamp {
    /// The signed `t=` value, in Unix seconds.
    pub fn unix(self) -> i64 {
        self.0
    }
}

/// The endpoint's signing secrets (`STRIPE_WEBHOOK_SECRET`, comma-separated: during a secret roll
/// both the old and the new one are configured). Only the derived HMAC keys are kept; `Debug`
/// shows the count, never a secret.
#[derive(Clone, Default)]
pub struct WebhookSecrets {
    keys: Vec<hmac::Key>,
    unprefixed: usize,
}

impl WebhookSecrets {
    /// Parses a comma-separated list. Each entry is trimmed; empty entries are skipped; the rest
    /// of each entry (including its `whsec_` prefix) is the HMAC key, byte for byte.
    pub fn parse(list: &str) -> Self {
        Self::from_secrets(list.split(','))
    }

    /// Builds the set from individual secrets (trimmed; empty ones skipped).
    pub fn from_secrets<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut keys = Vec::new();
        let mut unprefixed = 0;
        for secret in secrets {
            let secret = secret.as_ref().trim();
            if secret.is_empty() {
                continue;
            }
            if !secret.starts_with(SECRET_PREFIX) {
                unprefixed += 1;
            }
            keys.push(hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()));
        }
        Self { keys, unprefixed }
    }

    /// True when no secret is configured: every delivery is then rejected with
    /// [`SignatureError::NoSecretsConfigured`].
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many secrets are configured.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// How many configured secrets do not start with `whsec_`. They are still used as given, but a
    /// non-zero count usually means a misconfiguration (e.g. the API key pasted instead) and is
    /// worth a startup warning (which must not include the value).
    pub fn unprefixed_count(&self) -> usize {
        self.unprefixed
    }
}

impl fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSecrets")
            .field("count", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// Verifies a webhook delivery: `header` is the `Stripe-Signature` value (`None` when absent),
/// `payload` the raw, unparsed request body, `now_unix` the current time in Unix seconds, and
/// `tolerance` the accepted distance (whole seconds) between the signed timestamp and now, in
/// either direction ([`DEFAULT_TOLERANCE`] in production).
///
/// Checks, in order: a secret is configured; the header is present and well-formed (exactly one
/// decimal `t`, every `v1` exactly 64 hex characters, items `key=value` separated by commas,
/// whitespace around items, keys and values ignored); at least one `v1` is present; some secret
/// signs the payload to some `v1`; the timestamp is within tolerance.
pub fn verify(
    secrets: &WebhookSecrets,
    header: Option<&str>,
    payload: &[u8],
    now_unix: i64,
    tolerance: Duration,
) -> Result<VerifiedTimestamp, SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NoSecretsConfigured);
    }
    let header = header.ok_or(SignatureError::MissingHeader)?;
    let parsed = parse_header(header)?;

    // Every (secret, signature) pair is compared, whatever the earlier results: the time taken
    // depends only on the number of secrets and signatures, never on their contents.
    let mut matched = Choice::from(0u8);
    for key in &secrets.keys {
        let expected = compute_tag(key, parsed.timestamp, payload);
        for candidate in &parsed.signatures {
            matched |= expected.as_ref().ct_eq(candidate.as_slice());
        }
    }
    if !bool::from(matched) {
        return Err(SignatureError::NoMatch);
    }

    if now_unix.abs_diff(parsed.timestamp) > tolerance.as_secs() {
        return Err(SignatureError::TimestampOutOfTolerance);
    }
    Ok(VerifiedTimestamp(parsed.timestamp))
}

/// Builds a `Stripe-Signature` header value (`t=<timestamp>,v1=<hex>`) exactly as Stripe signs a
/// delivery of `payload` with `secret` (used as given, byte for byte, like Stripe does).
///
/// For tests and local tooling only (signed fixtures, replaying an event against the dev
/// gateway): production code never needs to sign anything.
pub fn sign_for_test(secret: &str, payload: &[u8], timestamp: i64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = compute_tag(&key, timestamp, payload);
    format!("t={timestamp},{SCHEME_V1}={}", hex::encode(tag.as_ref()))
}

/// HMAC-SHA256 of `"<timestamp>.<payload>"`, without copying the payload.
fn compute_tag(key: &hmac::Key, timestamp: i64, payload: &[u8]) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(payload);
    ctx.sign()
}

struct ParsedHeader {
    timestamp: i64,
    signatures: Vec<[u8; TAG_LEN]>,
}

fn parse_header(header: &str) -> Result<ParsedHeader, SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (key, value) = item
            .split_once('=')
            .ok_or(SignatureError::MalformedHeader)?;
        match key.trim() {
            "t" => {
                if timestamp.is_some() {
                    // Two timestamps: which one was signed is ambiguous.
                    return Err(SignatureError::MalformedHeader);
                }
                timestamp = Some(parse_timestamp(value.trim())?);
            }
            SCHEME_V1 => signatures.push(parse_signature(value.trim())?),
            // v0 (legacy test-mode scheme) and anything Stripe may add later.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::MalformedHeader)?;
    if signatures.is_empty() {
        return Err(SignatureError::NoV1Signature);
    }
    Ok(ParsedHeader {
        timestamp,
        signatures,
    })
}

/// Decimal Unix seconds: ASCII digits only (no sign, no spaces inside), fitting an `i64`.
fn parse_timestamp(value: &str) -> Result<i64, SignatureError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::MalformedHeader);
    }
    value
        .parse::<i64>()
        .map_err(|_| SignatureError::MalformedHeader)
}

/// Exactly 64 hex characters (an HMAC-SHA256 tag).
fn parse_signature(value: &str) -> Result<[u8; TAG_LEN], SignatureError> {
    let mut tag = [0u8; TAG_LEN];
    hex::decode_to_slice(value, &mut tag).map_err(|_| SignatureError::MalformedHeader)?;
    Ok(tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "whsec_test_secret_one";
    const OTHER: &str = "whsec_test_secret_two";
    const NOW: i64 = 1_767_225_600;
    const BODY: &[u8] = br#"{"id":"evt_1","object":"event","type":"invoice.paid"}"#;

    fn secrets(list: &str) -> WebhookSecrets {
        WebhookSecrets::parse(list)
    }

    fn check(
        list: &str,
        header: &str,
        payload: &[u8],
    ) -> Result<VerifiedTimestamp, SignatureError> {
        verify(
            &secrets(list),
            Some(header),
            payload,
            NOW,
            DEFAULT_TOLERANCE,
        )
    }

    fn v1_of(header: &str) -> &str {
        header
            .split_once(",v1=")
            .map(|(_, v)| v)
            .unwrap_or_default()
    }

    #[test]
    fn valid_signature_verifies() {
        let header = sign_for_test(SECRET, BODY, NOW);
        assert!(header.starts_with(&format!("t={NOW},v1=")));
        assert_eq!(v1_of(&header).len(), 64);
        assert_eq!(check(SECRET, &header, BODY).map(|t| t.unix()), Ok(NOW));
    }

    #[test]
    fn matches_an_independently_computed_hmac() {
        // HMAC-SHA256 keyed with the whole "whsec_..." string, over "<t>.<body>".
        let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
        let mut signed = format!("{NOW}.").into_bytes();
        signed.extend_from_slice(BODY);
        let expected = hex::encode(hmac::sign(&key, &signed).as_ref());
        assert_eq!(
            sign_for_test(SECRET, BODY, NOW),
            format!("t={NOW},v1={expected}")
        );
    }

    #[test]
    fn several_v1_values_only_last_matching() {
        let good = sign_for_test(SECRET, BODY, NOW);
        let bad1 = sign_for_test(OTHER, BODY, NOW);
        let bad2 = sign_for_test("whsec_third", BODY, NOW);
        let header = format!(
            "t={NOW},v1={},v0={},v1={},v1={}",
            v1_of(&bad1),
            "00".repeat(32),
            v1_of(&bad2),
            v1_of(&good)
        );
        assert_eq!(check(SECRET, &header, BODY), Ok(VerifiedTimestamp(NOW)));
    }

    #[test]
    fn whitespace_tolerant() {
        let good = sign_for_test(SECRET, BODY, NOW);
        let header = format!(" t = {NOW} ,  v1= {} , ", v1_of(&good));
        assert!(check(SECRET, &header, BODY).is_ok());
    }

    #[test]
    fn rotation_two_secrets_signed_with_second() {
        let header = sign_for_test(OTHER, BODY, NOW);
        assert!(check(&format!("{SECRET}, {OTHER}"), &header, BODY).is_ok());
        assert!(check(&format!(" {OTHER} ,{SECRET},"), &header, BODY).is_ok());
        assert_eq!(check(SECRET, &header, BODY), Err(SignatureError::NoMatch));
    }

    #[test]
    fn wrong_secret_rejected() {
        let header = sign_for_test(OTHER, BODY, NOW);
        assert_eq!(check(SECRET, &header, BODY), Err(SignatureError::NoMatch));
        // The key is the whole string: the secret without its prefix is a different key.
        let header = sign_for_test("test_secret_one", BODY, NOW);
        assert_eq!(check(SECRET, &header, BODY), Err(SignatureError::NoMatch));
    }

    #[test]
    fn tampered_payload_rejected() {
        let header = sign_for_test(SECRET, BODY, NOW);
        let mut tampered = BODY.to_vec();
        tampered[10] ^= 0x01;
        assert_eq!(
            check(SECRET, &header, &tampered),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn tampered_timestamp_rejected() {
        let good = sign_for_test(SECRET, BODY, NOW);
        let header = format!("t={},v1={}", NOW + 1, v1_of(&good));
        assert_eq!(check(SECRET, &header, BODY), Err(SignatureError::NoMatch));
    }

    #[test]
    fn tolerance_window() {
        for (offset, ok) in [
            (-301, false),
            (-299, true),
            (0, true),
            (299, true),
            (301, false),
        ] {
            let header = sign_for_test(SECRET, BODY, NOW + offset);
            let result = check(SECRET, &header, BODY);
            if ok {
                assert_eq!(
                    result,
                    Ok(VerifiedTimestamp(NOW + offset)),
                    "offset {offset}"
                );
            } else {
                assert_eq!(
                    result,
                    Err(SignatureError::TimestampOutOfTolerance),
                    "offset {offset}"
                );
            }
        }
        // Exactly at the tolerance is still accepted; a custom tolerance is honoured.
        let header = sign_for_test(SECRET, BODY, NOW - 300);
        assert!(check(SECRET, &header, BODY).is_ok());
        let header = sign_for_test(SECRET, BODY, NOW - 61);
        assert_eq!(
            verify(
                &secrets(SECRET),
                Some(&header),
                BODY,
                NOW,
                Duration::from_secs(60)
            ),
            Err(SignatureError::TimestampOutOfTolerance)
        );
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        let header = sign_for_test(SECRET, BODY, i64::MAX);
        assert_eq!(
            verify(
                &secrets(SECRET),
                Some(&header),
                BODY,
                i64::MIN,
                DEFAULT_TOLERANCE
            ),
            Err(SignatureError::TimestampOutOfTolerance)
        );
        let header = format!("t=99999999999999999999,v1={}", "ab".repeat(32));
        assert_eq!(
            check(SECRET, &header, BODY),
            Err(SignatureError::MalformedHeader)
        );
    }

    #[test]
    fn malformed_headers() {
        let sig = v1_of(&sign_for_test(SECRET, BODY, NOW)).to_owned();
        let cases = [
            String::new(),
            "   ".to_owned(),
            "t=".to_owned(),
            "v1=abc".to_owned(),
            format!("t=abc,v1={sig}"),
            format!("t=-5,v1={sig}"),
            format!("t=+{NOW},v1={sig}"),
            format!("v1={sig}"),
            format!("t={NOW},v1={}", "zz".repeat(32)),
            format!("t={NOW},v1={}", &sig[..63]),
            format!("t={NOW},v1={}", &sig[..62]),
            format!("t={NOW},v1={sig}00"),
            format!("t={NOW},v1="),
            format!("t={NOW},t={NOW},v1={sig}"),
            format!("t={NOW};v1={sig}"),
            format!("t={NOW},garbage,v1={sig}"),
        ];
        for header in cases {
            assert_eq!(
                check(SECRET, &header, BODY),
                Err(SignatureError::MalformedHeader),
                "header {header:?}"
            );
        }
    }

    #[test]
    fn missing_header() {
        assert_eq!(
            verify(&secrets(SECRET), None, BODY, NOW, DEFAULT_TOLERANCE),
            Err(SignatureError::MissingHeader)
        );
    }

    #[test]
    fn v0_only_or_unknown_schemes_only_is_no_v1() {
        let v0 = "ab".repeat(32);
        assert_eq!(
            check(SECRET, &format!("t={NOW},v0={v0}"), BODY),
            Err(SignatureError::NoV1Signature)
        );
        assert_eq!(
            check(SECRET, &format!("t={NOW},v2=xyz,v0={v0}"), BODY),
            Err(SignatureError::NoV1Signature)
        );
    }

    #[test]
    fn unknown_schemes_ignored_next_to_v1() {
        let sig = v1_of(&sign_for_test(SECRET, BODY, NOW)).to_owned();
        let header = format!("t={NOW},v2=not-hex-at-all,v1={sig},x=");
        assert!(check(SECRET, &header, BODY).is_ok());
    }

    #[test]
    fn uppercase_hex_accepted() {
        let sig = v1_of(&sign_for_test(SECRET, BODY, NOW)).to_uppercase();
        assert!(check(SECRET, &format!("t={NOW},v1={sig}"), BODY).is_ok());
    }

    #[test]
    fn no_secrets_configured() {
        let header = sign_for_test(SECRET, BODY, NOW);
        for list in ["", " , ,", "  "] {
            let s = secrets(list);
            assert!(s.is_empty());
            assert_eq!(
                verify(&s, Some(&header), BODY, NOW, DEFAULT_TOLERANCE),
                Err(SignatureError::NoSecretsConfigured)
            );
        }
    }

    #[test]
    fn secrets_parse_trim_and_debug_hides_values() {
        let s = secrets(&format!(" {SECRET} ,,{OTHER}\n, sk_test_oops "));
        assert_eq!(s.len(), 3);
        assert!(!s.is_empty());
        assert_eq!(s.unprefixed_count(), 1);
        let debug = format!("{s:?}");
        assert!(debug.contains("count: 3"), "{debug}");
        assert!(!debug.contains("whsec") && !debug.contains("secret_") && !debug.contains("sk_"));
    }

    #[test]
    fn errors_display_nothing_secret() {
        for e in [
            SignatureError::MissingHeader,
            SignatureError::MalformedHeader,
            SignatureError::NoV1Signature,
            SignatureError::TimestampOutOfTolerance,
            SignatureError::NoMatch,
            SignatureError::NoSecretsConfigured,
        ] {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.contains("whsec"));
        }
    }

    proptest! {
        #[test]
        fn signed_payload_verifies_and_any_single_byte_mutation_fails(
            payload in proptest::collection::vec(any::<u8>(), 1..512),
            secret in "whsec_[A-Za-z0-9]{1,40}",
            offset in -300i64..=300,
            index in any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let s = WebhookSecrets::parse(&secret);
            let header = sign_for_test(&secret, &payload, NOW + offset);
            prop_assert_eq!(
                verify(&s, Some(&header), &payload, NOW, DEFAULT_TOLERANCE),
                Ok(VerifiedTimestamp(NOW + offset))
            );
            let mut mutated = payload.clone();
            let i = index.index(mutated.len());
            mutated[i] ^= flip;
            prop_assert_eq!(
                verify(&s, Some(&header), &mutated, NOW, DEFAULT_TOLERANCE),
                Err(SignatureError::NoMatch)
            );
        }
    }
}
