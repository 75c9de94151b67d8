//! Organization API keys: `tg_live_<id>_<secret>`, where `<id>` is `ak_` and 32 hex digits (128
//! random bits, not secret: it names the key in listings and is how it is looked up) and
//! `<secret>` is 64 hex digits (256 bits from the system's CSPRNG).
//!
//! Only an HMAC-SHA-256 of the whole key under a pepper from the secrets (`apiKeyPepper`,
//! locally `API_KEY_PEPPER`) is stored. A stolen table dump therefore gives neither keys nor a
//! way to test guesses offline without the pepper, which lives in Secrets Manager, not in the
//! table. The key's id is part of the MAC input, so a digest copied onto another key's item does
//! not verify there.
//!
//! Verifying a presented key: [`parse`] (shape only, no I/O), one `GetItem` of the key's look-up
//! item by id, then [`Pepper::verify`]: the MAC of the presented key compared with the stored
//! digest in constant time ([`subtle::ConstantTimeEq`]).

use std::fmt;

use subtle::ConstantTimeEq;

/// Every organization API key starts with this.
pub const PREFIX: &str = "tg_live_";
/// Every key id starts with this.
pub const ID_PREFIX: &str = "ak_";
/// Random bytes in a key id (written as twice as many hex digits).
const ID_BYTES: usize = 16;
/// Random bytes in a key's secret part: 256 bits.
pub const SECRET_BYTES: usize = 32;
/// Shortest pepper accepted, in bytes: as long as the HMAC-SHA-256 key it becomes.
pub const MIN_PEPPER_BYTES: usize = 32;

/// Length of a key id: `ak_` and 32 hex digits.
pub const ID_LEN: usize = ID_PREFIX.len() + 2 * ID_BYTES;
/// Length of a whole key.
pub const KEY_LEN: usize = PREFIX.len() + ID_LEN + 1 + 2 * SECRET_BYTES;

fn is_lower_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `id` has the shape of a key id (`ak_` and 32 lowercase hex digits).
pub fn is_key_id(id: &str) -> bool {
    id.len() == ID_LEN && id.strip_prefix(ID_PREFIX).is_some_and(is_lower_hex)
}

/// Whether a bearer credential claims to be an organization API key (starts with [`PREFIX`]);
/// such a credential is never tried as a user token or service key.
pub fn looks_like_api_key(credential: &str) -> bool {
    credential.starts_with(PREFIX)
}

/// The key id of `presented` when it has exactly the shape [`generate`] makes, else `None`.
/// Looks at the shape only: whether the key exists is the store's question.
pub fn parse(presented: &str) -> Option<&str> {
    if presented.len() != KEY_LEN {
        return None;
    }
    let rest = presented.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_at_checked(ID_LEN)?;
    let secret = secret.strip_prefix('_')?;
    (is_key_id(id) && secret.len() == 2 * SECRET_BYTES && is_lower_hex(secret)).then_some(id)
}

/// The part of a key that may be shown again after creation: `tg_live_<id>`.
pub fn display_prefix(id: &str) -> String {
    format!("{PREFIX}{id}")
}

/// The system's random number generator could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the system random number generator failed; no API key was made")]
pub struct RandomUnavailable;

/// A key just made: its id and the whole key (shown to its creator once, never stored).
pub struct NewKey {
    pub id: String,
    pub key: String,
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A new key: a random id and 256 random bits, both from the system's CSPRNG (ring's
/// `SystemRandom`, the generator the rest of Tollgate uses).
pub fn generate() -> Result<NewKey, RandomUnavailable> {
    let rng = ring::rand::SystemRandom::new();
    let mut id = [0u8; ID_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    ring::rand::SecureRandom::fill(&rng, &mut id).map_err(|_| RandomUnavailable)?;
    ring::rand::SecureRandom::fill(&rng, &mut secret).map_err(|_| RandomUnavailable)?;
    let id = format!("{ID_PREFIX}{}", hex::encode(id));
    let key = format!("{PREFIX}{id}_{}", hex::encode(secret));
    Ok(NewKey { id, key })
}

/// The pepper is shorter than [`MIN_PEPPER_BYTES`]. Never contains the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the API key pepper must be at least {MIN_PEPPER_BYTES} bytes (e.g. `openssl rand -hex 32`)"
)]
pub struct PepperTooShort;

/// The HMAC-SHA-256 key API keys are hashed under. `Debug` never shows it.
#[derive(Clone)]
pub struct Pepper(ring::hmac::Key);

impl Pepper {
    /// The pepper from its configured text (the bytes of the string, e.g. 64 hex characters).
    pub fn new(secret: &str) -> Result<Self, PepperTooShort> {
        if secret.len() < MIN_PEPPER_BYTES {
            return Err(PepperTooShort);
        }
        Ok(Self(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            secret.as_bytes(),
        )))
    }

    /// HMAC-SHA-256 of the whole key under the pepper: what is stored for it.
    pub fn digest(&self, key: &str) -> [u8; 32] {
        let tag = ring::hmac::sign(&self.0, key.as_bytes());
        let mut digest = [0u8; 32];
        digest.copy_from_slice(tag.as_ref());
        digest
    }

    /// [`Pepper::digest`] in lowercase hex, as stored.
    pub fn digest_hex(&self, key: &str) -> String {
        hex::encode(self.digest(key))
    }

    /// Whether `presented` is the key whose stored digest is `stored_hex`: its MAC is compared
    /// with the stored digest in constant time ([`ConstantTime`]). A stored value that is not a
    /// hex digest matches nothing.
    pub fn verify(&self, presented: &str, stored_hex: &str) -> bool {
        verify_with::<ConstantTime>(self, presented, stored_hex)
    }
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper(..)")
    }
}

/// How two 32-byte digests are compared.
trait DigestEq {
    fn eq(a: &[u8; 32], b: &[u8; 32]) -> bool;
}

/// `subtle`'s constant-time equality: every byte is looked at whatever differs first.
struct ConstantTime;

impl DigestEq for ConstantTime {
    fn eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
        bool::from(a.ct_eq(b))
    }
}

/// The verification of [`Pepper::verify`] with the comparison `E`. The stored digest is decoded
/// first (it is ours, not the caller's); the presented key's MAC is then always compared in full,
/// once, with no early return on its content.
fn verify_with<E: DigestEq>(pepper: &Pepper, presented: &str, stored_hex: &str) -> bool {
    let mut stored = [0u8; 32];
    if hex::decode_to_slice(stored_hex, &mut stored).is_err() {
        return false;
    }
    E::eq(&pepper.digest(presented), &stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    const PEPPER: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn generated_keys_parse_to_their_id_and_carry_256_bits() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_eq!(a.key.len(), KEY_LEN);
        assert_eq!(parse(&a.key), Some(a.id.as_str()));
        assert!(is_key_id(&a.id));
        assert!(a.key.starts_with(&display_prefix(&a.id)));
        assert_ne!(a.key, b.key);
        assert_ne!(a.id, b.id);
        let secret = &a.key[PREFIX.len() + ID_LEN + 1..];
        assert_eq!(secret.len() * 4, 256);
        // The secret never shows in Debug.
        assert!(!format!("{a:?}").contains(secret));
    }

    #[test]
    fn only_the_exact_shape_parses() {
        let key = generate().unwrap().key;
        assert!(parse(&key).is_some());
        let mut bad = vec![
            String::new(),
            PREFIX.to_owned(),
            key[..key.len() - 1].to_owned(),
            format!("{key}0"),
            key.to_uppercase(),
            key.replacen("tg_live_", "tg_test_", 1),
            key.replacen("_ak_", "_ax_", 1),
            format!(" {}", &key[1..]),
        ];
        // A non-hex digit in the secret, and the separator moved.
        let mut chars: Vec<char> = key.chars().collect();
        let last = chars.len() - 1;
        chars[last] = 'g';
        bad.push(chars.iter().collect());
        let sep = PREFIX.len() + ID_LEN;
        let mut moved: Vec<char> = key.chars().collect();
        moved.swap(sep, sep + 1);
        bad.push(moved.iter().collect());
        for candidate in bad {
            assert_eq!(parse(&candidate), None, "{candidate:?}");
        }
        assert!(looks_like_api_key(&key));
        assert!(!looks_like_api_key("tgsk_0123"));
    }

    #[test]
    fn digest_is_hmac_sha256_of_the_whole_key_under_the_pepper() {
        // RFC 4231 test case 2: key "Jefe" is too short for a pepper, so check against ring
        // directly with a long key instead, and that the digest depends on both inputs.
        let pepper = Pepper::new(PEPPER).unwrap();
        let expected = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, PEPPER.as_bytes()),
            b"tg_live_x",
        );
        assert_eq!(pepper.digest("tg_live_x").as_slice(), expected.as_ref());
        let other = Pepper::new(&PEPPER.replace('0', "1")).unwrap();
        assert_ne!(pepper.digest("tg_live_x"), other.digest("tg_live_x"));
        assert_ne!(pepper.digest("tg_live_x"), pepper.digest("tg_live_y"));
        // Not a plain SHA-256 of the key.
        use sha2::Digest;
        let plain: [u8; 32] = sha2::Sha256::digest(b"tg_live_x").into();
        assert_ne!(pepper.digest("tg_live_x"), plain);
    }

    #[test]
    fn verify_accepts_the_key_and_nothing_else() {
        let pepper = Pepper::new(PEPPER).unwrap();
        let key = generate().unwrap();
        let stored = pepper.digest_hex(&key.key);
        assert!(pepper.verify(&key.key, &stored));
        assert!(!pepper.verify(&generate().unwrap().key, &stored));
        assert!(!pepper.verify(&key.key[..key.key.len() - 1], &stored));
        // A stored value that is not a digest matches nothing, not even itself.
        assert!(!pepper.verify(&key.key, "zz"));
        assert!(!pepper.verify(&key.key, ""));
        assert!(!pepper.verify(&stored, &stored));
        // Another pepper (a rotated or wrong secret) does not verify.
        let other = Pepper::new(&PEPPER.replace('a', "b")).unwrap();
        assert!(!other.verify(&key.key, &stored));
    }

    #[test]
    fn short_peppers_are_refused_and_never_shown() {
        assert_eq!(Pepper::new("short").unwrap_err(), PepperTooShort);
        assert!(Pepper::new(&"x".repeat(MIN_PEPPER_BYTES - 1)).is_err());
        assert!(Pepper::new(&"x".repeat(MIN_PEPPER_BYTES)).is_ok());
        let pepper = Pepper::new(PEPPER).unwrap();
        assert_eq!(format!("{pepper:?}"), "Pepper(..)");
        assert!(!PepperTooShort.to_string().contains(PEPPER));
    }

    /// Records every comparison `verify_with` asks for.
    static SEEN: Mutex<Vec<([u8; 32], [u8; 32])>> = Mutex::new(Vec::new());
    struct Recording;
    impl DigestEq for Recording {
        fn eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
            SEEN.lock().unwrap().push((*a, *b));
            ConstantTime::eq(a, b)
        }
    }

    #[test]
    fn verification_always_makes_one_whole_digest_comparison() {
        let pepper = Pepper::new(PEPPER).unwrap();
        let key = generate().unwrap().key;
        let stored = pepper.digest(&key);
        // Stored digests differing from the key's MAC in the first byte, the last byte, or
        // not at all: each time exactly one comparison, of all 32 bytes, through `DigestEq`.
        let mut first = stored;
        first[0] ^= 1;
        let mut last = stored;
        last[31] ^= 1;
        for (candidate, expected) in [(stored, true), (first, false), (last, false)] {
            SEEN.lock().unwrap().clear();
            let verified = verify_with::<Recording>(&pepper, &key, &hex::encode(candidate));
            assert_eq!(verified, expected);
            let seen = SEEN.lock().unwrap().clone();
            assert_eq!(seen, vec![(pepper.digest(&key), candidate)]);
        }
    }

    #[test]
    fn pepper_verify_goes_through_the_constant_time_comparison() {
        // `Pepper::verify` is `verify_with::<ConstantTime>`: the source says so, and
        // `ConstantTime` is subtle's `ct_eq` (a `==` on the digests would fail this test).
        let source = include_str!("api_key.rs");
        let verify = source
            .split("pub fn verify(&self, presented: &str, stored_hex: &str) -> bool {")
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .expect("Pepper::verify");
        assert_eq!(
            verify.trim(),
            "verify_with::<ConstantTime>(self, presented, stored_hex)"
        );
        let eq = source
            .split("impl DigestEq for ConstantTime {")
            .nth(1)
            .and_then(|rest| rest.split("\n}").next())
            .expect("ConstantTime");
        assert!(eq.contains("a.ct_eq(b)"), "{eq}");
        assert!(!eq.contains("=="), "{eq}");
        // And it answers like equality.
        assert!(ConstantTime::eq(&[7; 32], &[7; 32]));
        assert!(!ConstantTime::eq(&[7; 32], &[8; 32]));
    }

    proptest::proptest! {
        #[test]
        fn any_other_secret_of_the_same_shape_is_refused(bytes in proptest::array::uniform32(proptest::num::u8::ANY)) {
            let pepper = Pepper::new(PEPPER).unwrap();
            let key = generate().unwrap();
            let stored = pepper.digest_hex(&key.key);
            let guess = format!("{PREFIX}{}_{}", key.id, hex::encode(bytes));
            proptest::prop_assert_eq!(parse(&guess), Some(key.id.as_str()));
            proptest::prop_assert_eq!(pepper.verify(&guess, &stored), guess == key.key);
        }
    }
}
