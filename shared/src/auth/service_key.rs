//! Service keys: random secrets that machine callers (e.g. `POST /api/usage/calls`) present.
//! Only their SHA-256 digests are configured (`SERVICE_KEY_HASHES`), so the configuration never
//! holds a usable key; a presented key is hashed and compared in constant time with every digest.
//!
//! A service key is [`PREFIX`] (`tgsk_`) followed by at least 256 random bits written in hex (64+
//! characters) or base64url (43+ characters): [`generate`] makes one (`tollgate-dev service-key`
//! prints it with its hash). A presented key of any other shape is refused by
//! [`is_well_formed`] before it is hashed, so guessing is bounded by 256 bits of entropy.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// Every service key starts with this.
pub const PREFIX: &str = "tgsk_";
/// The random bits a key must be able to carry.
pub const MIN_BITS: usize = 256;
/// Longest key accepted (prefix included): well above any generated key, and bounds the hashing.
pub const MAX_LEN: usize = 512;

/// Whether `presented` has the shape of a service key: [`PREFIX`], then only base64url
/// characters (`A-Z a-z 0-9 - _`, hex being a subset), enough of them for [`MIN_BITS`]: 64 when
/// every one is a hex digit (4 bits each), else 43 (6 bits each); at most [`MAX_LEN`] in all.
pub fn is_well_formed(presented: &str) -> bool {
    let Some(body) = presented.strip_prefix(PREFIX) else {
        return false;
    };
    if presented.len() > MAX_LEN
        || !body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return false;
    }
    let bits_per_char = if body.bytes().all(|b| b.is_ascii_hexdigit()) {
        4
    } else {
        6
    };
    body.len() * bits_per_char >= MIN_BITS
}

/// The system's random number generator could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the system random number generator failed; no service key was made")]
pub struct RandomUnavailable;

/// A new service key: [`PREFIX`] and 32 bytes (256 bits) from the system's CSPRNG, in hex.
pub fn generate() -> Result<String, RandomUnavailable> {
    let mut bytes = [0u8; MIN_BITS / 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| RandomUnavailable)?;
    Ok(format!("{PREFIX}{}", hex::encode(bytes)))
}

/// The accepted service keys, as SHA-256 digests.
#[derive(Clone, Default)]
pub struct ServiceKeys {
    digests: Vec<[u8; 32]>,
}

/// A `SERVICE_KEY_HASHES` entry that is not a hex SHA-256 digest. Names the entry's position
/// (1-based, counting comma-separated items), never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceKeyConfigError {
    #[error(
        "SERVICE_KEY_HASHES entry {position} is not a SHA-256 digest (64 hex characters); put the output of `sha256sum` of the key there, not the key"
    )]
    InvalidDigest { position: usize },
}

impl ServiceKeys {
    /// Parses a comma-separated list of hex SHA-256 digests (either case; whitespace around items
    /// and empty items ignored). An empty string means no service keys.
    pub fn from_hex_list(list: &str) -> Result<Self, ServiceKeyConfigError> {
        let mut digests = Vec::new();
        for (index, item) in list.split(',').enumerate() {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let mut digest = [0u8; 32];
            hex::decode_to_slice(item, &mut digest).map_err(|_| {
                ServiceKeyConfigError::InvalidDigest {
                    position: index + 1,
                }
            })?;
            digests.push(digest);
        }
        Ok(Self { digests })
    }

    /// No service key is configured: every presented key is rejected.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// How many digests are configured.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// Whether `presented` is one of the configured keys. The SHA-256 of `presented` is compared in
    /// constant time with every configured digest (no early exit). An empty key never matches.
    pub fn verify(&self, presented: &str) -> bool {
        if presented.is_empty() {
            return false;
        }
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let matched = self
            .digests
            .iter()
            .fold(Choice::from(0), |acc, configured| {
                acc | configured.ct_eq(&digest)
            });
        bool::from(matched)
    }

    /// The lowercase hex SHA-256 of `key`: what to put in `SERVICE_KEY_HASHES` for it.
    pub fn hash_hex(key: &str) -> String {
        hex::encode(Sha256::digest(key.as_bytes()))
    }
}

impl fmt::Debug for ServiceKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceKeys")
            .field("count", &self.digests.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "svc_live_4f1c2a9be07d43c1a7d0b5e2c9f81a36";
    const KEY_B: &str = "svc_live_0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a";

    #[test]
    fn hash_hex_is_the_sha256_of_the_key() {
        // sha256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            ServiceKeys::hash_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn verify_accepts_configured_keys_and_rejects_others() {
        let list = format!(
            "{},{}",
            ServiceKeys::hash_hex(KEY_A),
            ServiceKeys::hash_hex(KEY_B)
        );
        let keys = ServiceKeys::from_hex_list(&list).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(!keys.is_empty());
        assert!(keys.verify(KEY_A));
        assert!(keys.verify(KEY_B));
        assert!(!keys.verify("svc_live_wrong"));
        assert!(!keys.verify(&KEY_A[..KEY_A.len() - 1]));
        assert!(!keys.verify(&format!("{KEY_A} ")));
        // The digest itself is not a key.
        assert!(!keys.verify(&ServiceKeys::hash_hex(KEY_A)));
    }

    #[test]
    fn empty_presented_key_never_matches() {
        // Even when someone configured the digest of the empty string.
        let keys = ServiceKeys::from_hex_list(&ServiceKeys::hash_hex("")).unwrap();
        assert!(!keys.verify(""));
    }

    #[test]
    fn empty_list_means_no_keys() {
        for list in ["", "   ", ",", " , ,"] {
            let keys = ServiceKeys::from_hex_list(list).unwrap();
            assert!(keys.is_empty(), "{list:?}");
            assert!(!keys.verify(KEY_A));
            assert!(!keys.verify(""));
        }
        assert!(ServiceKeys::default().is_empty());
    }

    #[test]
    fn whitespace_around_items_is_ignored() {
        let list = format!(
            "  {} ,\n\t{}  ,",
            ServiceKeys::hash_hex(KEY_A),
            ServiceKeys::hash_hex(KEY_B)
        );
        let keys = ServiceKeys::from_hex_list(&list).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys.verify(KEY_A) && keys.verify(KEY_B));
    }

    #[test]
    fn hex_is_case_insensitive() {
        let upper = ServiceKeys::hash_hex(KEY_A).to_uppercase();
        let keys = ServiceKeys::from_hex_list(&upper).unwrap();
        assert!(keys.verify(KEY_A));
        let mixed: String = ServiceKeys::hash_hex(KEY_B)
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        assert!(ServiceKeys::from_hex_list(&mixed).unwrap().verify(KEY_B));
    }

    #[test]
    fn bad_entries_are_named_by_position_not_value() {
        let good = ServiceKeys::hash_hex(KEY_A);
        let cases = [
            // Not hex.
            (format!("{good},zz{}", &good[2..]), 2),
            // Too short (a key pasted instead of its digest).
            ("my-secret-service-key".to_owned(), 1),
            // Too long.
            (format!("{good}00"), 1),
            // 63 characters.
            (format!("{good}, {good}, {}", &good[1..]), 3),
        ];
        for (list, position) in cases {
            let error = ServiceKeys::from_hex_list(&list).unwrap_err();
            assert_eq!(error, ServiceKeyConfigError::InvalidDigest { position });
            let message = error.to_string();
            assert!(message.contains(&format!("entry {position}")), "{message}");
            assert!(!message.contains("my-secret"), "{message}");
            assert!(!message.contains(&good[..16]), "{message}");
        }
    }

    #[test]
    fn well_formed_keys_have_the_prefix_and_256_bits() {
        let hex64 = "0123456789abcdef".repeat(4);
        assert!(is_well_formed(&format!("tgsk_{hex64}")));
        assert!(is_well_formed(&format!("tgsk_{}", hex64.to_uppercase())));
        // 43 base64url characters: 258 bits.
        let b64 = "Zm9vYmFyLWJhei1xdXV4LXNlcnZpY2Uta2V5LXRnc2s";
        assert_eq!(b64.len(), 43);
        assert!(is_well_formed(&format!("tgsk_{b64}")));
        assert!(is_well_formed(&format!("tgsk_{}_-", &b64[..41])));
        assert!(!is_well_formed(&format!("tgsk_{}", &b64[..42])), "252 bits");
        assert!(
            !is_well_formed(&format!("tgsk_{}", &hex64[..63])),
            "63 hex digits carry 252 bits"
        );
        // The unprefixed and short keys of the past.
        assert!(!is_well_formed(KEY_A));
        assert!(!is_well_formed(&hex64));
        assert!(!is_well_formed("tgsk_dev_local_only"));
        assert!(!is_well_formed(&format!("TGSK_{hex64}")));
        assert!(!is_well_formed(&format!(" tgsk_{hex64}")));
        assert!(!is_well_formed(&format!("tgsk_{hex64} ")));
        assert!(!is_well_formed(&format!("tgsk_{hex64}.")));
        assert!(!is_well_formed(&format!("tgsk_{}é", &b64[..43])));
        assert!(!is_well_formed(""));
        assert!(!is_well_formed("tgsk_"));
        assert!(!is_well_formed(&format!("tgsk_{}", "a".repeat(MAX_LEN))));
    }

    #[test]
    fn generated_keys_are_well_formed_and_new_each_time() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert!(is_well_formed(&a), "{a}");
        assert_eq!(a.len(), PREFIX.len() + 64);
        assert_ne!(a, b);
        let keys = ServiceKeys::from_hex_list(&ServiceKeys::hash_hex(&a)).unwrap();
        assert!(keys.verify(&a) && !keys.verify(&b));
    }

    proptest::proptest! {
        #[test]
        fn any_prefixed_body_of_enough_random_bits_is_well_formed(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 32..64)
        ) {
            let hex = hex::encode(&bytes);
            let full = format!("{PREFIX}{hex}");
            let short = format!("{PREFIX}{}", &hex[..63]);
            proptest::prop_assert!(is_well_formed(&full));
            proptest::prop_assert!(!is_well_formed(&hex));
            proptest::prop_assert!(!is_well_formed(&short));
        }
    }

    #[test]
    fn debug_does_not_print_digests() {
        let keys = ServiceKeys::from_hex_list(&ServiceKeys::hash_hex(KEY_A)).unwrap();
        let debug = format!("{keys:?}");
        assert_eq!(debug, "ServiceKeys { count: 1 }");
    }
}
