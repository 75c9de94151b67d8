//! Credential encryption: AES-256-GCM under a ring of keys identified by key id, bound to the
//! organization that owns the value.
//!
//! # Stored format (v1)
//!
//! ```text
//! v1:<kid>:<nonce>:<ciphertext+tag>
//! ```
//!
//! * `v1` — the format version, literally.
//! * `<kid>` — the id of the key that encrypted the value: 1–32 characters of `[A-Za-z0-9_-]`.
//! * `<nonce>` — the 96-bit (12-byte) nonce, fresh from the system CSPRNG (ring) for every
//!   encryption, encoded as **base64url without padding** (RFC 4648 §5, alphabet `A-Z a-z 0-9 - _`,
//!   no `=`): always 16 characters.
//! * `<ciphertext+tag>` — the AES-256-GCM ciphertext followed by its 16-byte tag, also base64url
//!   without padding (at least 22 characters; an empty plaintext still has its tag).
//!
//! The associated data is the organization id's UTF-8 bytes, exactly as passed to
//! [`KeyRing::encrypt`] (no prefix, no normalization), so a value copied into another tenant's
//! record fails to decrypt. Decoding is strict: padding, the standard alphabet (`+`, `/`),
//! non-canonical trailing bits, a nonce that is not 12 bytes or a body shorter than the tag are
//! [`CryptoError::Malformed`].
//!
//! # Legacy format (the seed's Node service)
//!
//! ```text
//! <iv hex, 16 bytes>:<tag hex, 16 bytes>:<ciphertext hex, possibly empty>
//! ```
//!
//! AES-256-GCM with a 16-byte IV and **no** associated data, so legacy values are not bound to a
//! tenant. [`KeyRing::decrypt`] still reads them with the ring's *legacy key*
//! ([`KeyRing::with_legacy_key`], or the key id `legacy` in the configuration, see below);
//! nothing writes this format any more. [`KeyRing::reencrypt`] turns a legacy value into a v1
//! value under the active key (and so binds it to its organization).
//!
//! # Configuration
//!
//! * Environment: `ENCRYPTION_KEYS=kid1:<64 hex chars>,kid2:<64 hex chars>` and
//!   `ENCRYPTION_ACTIVE_KEY=kid2` ([`KeyRing::from_env_strings`]). Whitespace around entries is
//!   ignored, and so are empty entries (a trailing comma).
//! * Secrets Manager: `{"active": "kid2", "keys": {"kid1": "<64 hex>", "kid2": "<64 hex>"}}`
//!   ([`KeyRing::from_secret_json`]; other fields of the object are ignored).
//!
//! In both (and in [`KeyRing::new`]) the key id **`legacy` is reserved**: its key becomes the
//! legacy key used only to read the seed's Node format; it cannot be the active key and never
//! encrypts. A ring needs at least one other key.
//!
//! # Rotation
//!
//! Add the new key to the ring and make it active: new writes use it, old values still decrypt
//! under their own kid. [`KeyRing::needs_reencryption`] finds values not yet under the active key
//! and [`KeyRing::reencrypt`] moves one (idempotent). Once nothing needs re-encryption, the old
//! key (and `legacy`) can leave the ring.
//!
//! # Secrecy
//!
//! Nothing in this module logs, and no error or `Debug` output contains key material, plaintext
//! or ciphertext: configuration errors name the key id or entry number and the problem, and
//! decryption failures are one opaque [`CryptoError::Decrypt`]. Raw keys are wiped (volatile
//! writes) when the ring is dropped; the AES key schedule lives only for the duration of one call
//! (aes-gcm's own `zeroize` feature is not enabled, so that copy is not wiped).

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::consts::U16;
use aes_gcm::aes::Aes256;
use aes_gcm::{AeadInOut, Aes256Gcm, AesGcm, KeyInit};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The version prefix of the current stored format.
const V1_PREFIX: &str = "v1";
/// The reserved key id whose key reads the seed's Node format.
pub const LEGACY_KID: &str = "legacy";
/// Longest key id.
const MAX_KID_LEN: usize = 32;
const KEY_LEN: usize = 32;
const V1_NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const LEGACY_IV_LEN: usize = 16;

/// The seed's cipher: AES-256-GCM with a 16-byte IV (GHASH-derived counter block, as in OpenSSL).
type LegacyAes256Gcm = AesGcm<Aes256, U16>;

/// Why a key ring could not be built. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoConfigError {
    #[error(
        "no encryption keys configured: the ring needs at least one key besides `{LEGACY_KID}`"
    )]
    Empty,
    #[error("no active encryption key id configured")]
    NoActiveKey,
    #[error("entry {entry} of the encryption key list is not `kid:hex`")]
    MalformedEntry { entry: usize },
    #[error(
        "entry {entry} of the encryption key list has an invalid key id (1-32 characters of A-Z a-z 0-9 _ -)"
    )]
    InvalidKid { entry: usize },
    #[error("the encryption key `{kid}` is not a hex string")]
    BadHex { kid: String },
    #[error(
        "the encryption key `{kid}` has {hex_chars} hex characters; AES-256 needs 64 (32 bytes)"
    )]
    WrongLength { kid: String, hex_chars: usize },
    #[error("the encryption key id `{0}` appears more than once")]
    DuplicateKid(String),
    #[error("the active encryption key id `{0}` is not in the key ring")]
    ActiveNotInRing(String),
    #[error(
        "the active encryption key setting is not a key id (1-32 characters of A-Z a-z 0-9 _ -); it names a key, it is not the key"
    )]
    InvalidActiveKid,
    #[error("the `{LEGACY_KID}` key only reads old values; choose another active key id")]
    ActiveIsLegacy,
    #[error("the encryption key ring secret is not valid: {0}")]
    BadSecretShape(&'static str),
}

/// Why an encryption or decryption failed. Never contains key material, plaintext or ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Not a v1 envelope nor a legacy value.
    #[error("the encrypted value is malformed")]
    Malformed,
    /// A v1 value under a key id that is not in the ring.
    #[error("the encryption key `{0}` is not in the key ring")]
    UnknownKey(String),
    /// A legacy value, but the ring has no legacy key.
    #[error("the value is in the legacy format and no legacy key is configured")]
    NoLegacyKey,
    /// Authentication failed: wrong key, wrong organization, or altered data. Deliberately opaque.
    #[error("the value could not be decrypted")]
    Decrypt,
    /// The random number generator or the cipher refused (e.g. an absurdly long plaintext).
    #[error("the value could not be encrypted")]
    Encrypt,
}

/// A raw AES-256 key, wiped on drop.
#[derive(Clone)]
struct SecretKey([u8; KEY_LEN]);

impl Drop for SecretKey {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Overwrites `bytes` with zeros in a way the optimizer may not remove.
fn wipe(bytes: &mut [u8]) {
    for byte in bytes.iter_mut() {
        // SAFETY: `byte` is a valid, aligned, exclusive reference to an initialized `u8`.
        unsafe { std::ptr::write_volatile(byte, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// Several AES-256 keys by key id, one of them active (used for every new encryption), plus an
/// optional legacy key that only reads the seed's Node format. See the [module docs](self).
#[derive(Clone)]
pub struct KeyRing {
    keys: BTreeMap<String, SecretKey>,
    active: String,
    legacy: Option<SecretKey>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("active", &self.active)
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field("legacy_key", &self.legacy.is_some())
            .finish()
    }
}

/// Whether `kid` is 1–32 characters of `[A-Za-z0-9_-]`.
fn is_valid_kid(kid: &str) -> bool {
    (1..=MAX_KID_LEN).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Decodes a 64-character hex key without ever echoing it.
fn parse_hex_key(kid: &str, hex_key: &str) -> Result<SecretKey, CryptoConfigError> {
    let hex_key = hex_key.trim();
    if hex_key.len() != KEY_LEN * 2 {
        return Err(CryptoConfigError::WrongLength {
            kid: kid.to_owned(),
            hex_chars: hex_key.chars().count(),
        });
    }
    let mut key = SecretKey([0; KEY_LEN]);
    // The hex error names the offending character, which is key material: drop it.
    hex::decode_to_slice(hex_key, &mut key.0).map_err(|_| CryptoConfigError::BadHex {
        kid: kid.to_owned(),
    })?;
    Ok(key)
}

/// Collects keys from any source, applying the same rules (valid kid, no duplicates, `legacy`
/// reserved, a valid active kid in the ring).
#[derive(Default)]
struct RingBuilder {
    keys: BTreeMap<String, SecretKey>,
    legacy: Option<SecretKey>,
}

impl RingBuilder {
    /// Checks an entry's kid before its key is looked at (so a bad kid is reported by number).
    fn check_kid(entry: usize, kid: &str) -> Result<(), CryptoConfigError> {
        if is_valid_kid(kid) {
            Ok(())
        } else {
            Err(CryptoConfigError::InvalidKid { entry })
        }
    }

    fn add(&mut self, entry: usize, kid: &str, key: SecretKey) -> Result<(), CryptoConfigError> {
        Self::check_kid(entry, kid)?;
        if kid == LEGACY_KID {
            if self.legacy.is_some() {
                return Err(CryptoConfigError::DuplicateKid(kid.to_owned()));
            }
            self.legacy = Some(key);
        } else {
            if self.keys.contains_key(kid) {
                return Err(CryptoConfigError::DuplicateKid(kid.to_owned()));
            }
            self.keys.insert(kid.to_owned(), key);
        }
        Ok(())
    }

    fn finish(self, active: &str) -> Result<KeyRing, CryptoConfigError> {
        if self.keys.is_empty() {
            return Err(CryptoConfigError::Empty);
        }
        if active.is_empty() {
            return Err(CryptoConfigError::NoActiveKey);
        }
        if !is_valid_kid(active) {
            // Possibly a key pasted into the wrong variable: do not echo it.
            return Err(CryptoConfigError::InvalidActiveKid);
        }
        if active == LEGACY_KID {
            return Err(CryptoConfigError::ActiveIsLegacy);
        }
        if !self.keys.contains_key(active) {
            return Err(CryptoConfigError::ActiveNotInRing(active.to_owned()));
        }
        Ok(KeyRing {
            keys: self.keys,
            active: active.to_owned(),
            legacy: self.legacy,
        })
    }
}

/// A stored value, parsed but not yet decrypted.
enum Stored<'a> {
    V1 {
        kid: &'a str,
        nonce: [u8; V1_NONCE_LEN],
        /// Ciphertext followed by the tag.
        sealed: Vec<u8>,
    },
    Legacy {
        iv: [u8; LEGACY_IV_LEN],
        /// Ciphertext followed by the tag (reassembled in the order the cipher expects).
        sealed: Vec<u8>,
    },
}

impl<'a> Stored<'a> {
    fn parse(stored: &'a str) -> Result<Self, CryptoError> {
        let parts: Vec<&str> = stored.split(':').collect();
        match parts.as_slice() {
            [V1_PREFIX, kid, nonce, sealed] => {
                if !is_valid_kid(kid) {
                    return Err(CryptoError::Malformed);
                }
                let nonce: [u8; V1_NONCE_LEN] = URL_SAFE_NO_PAD
                    .decode(nonce)
                    .map_err(|_| CryptoError::Malformed)?
                    .try_into()
                    .map_err(|_| CryptoError::Malformed)?;
                let sealed = URL_SAFE_NO_PAD
                    .decode(sealed)
                    .map_err(|_| CryptoError::Malformed)?;
                if sealed.len() < TAG_LEN {
                    return Err(CryptoError::Malformed);
                }
                Ok(Stored::V1 { kid, nonce, sealed })
            }
            [iv, tag, ciphertext] => {
                let mut iv_bytes = [0u8; LEGACY_IV_LEN];
                hex::decode_to_slice(iv, &mut iv_bytes).map_err(|_| CryptoError::Malformed)?;
                let mut tag_bytes = [0u8; TAG_LEN];
                hex::decode_to_slice(tag, &mut tag_bytes).map_err(|_| CryptoError::Malformed)?;
                let mut sealed = hex::decode(ciphertext).map_err(|_| CryptoError::Malformed)?;
                sealed.extend_from_slice(&tag_bytes);
                Ok(Stored::Legacy {
                    iv: iv_bytes,
                    sealed,
                })
            }
            _ => Err(CryptoError::Malformed),
        }
    }
}

impl KeyRing {
    /// A ring from `(kid, key)` pairs and the active kid. A pair with the kid `legacy` sets the
    /// legacy key instead (see the [module docs](self)).
    pub fn new(keys: Vec<(String, [u8; 32])>, active: &str) -> Result<KeyRing, CryptoConfigError> {
        let mut builder = RingBuilder::default();
        for (index, (kid, key)) in keys.into_iter().enumerate() {
            builder.add(index + 1, &kid, SecretKey(key))?;
        }
        builder.finish(active)
    }

    /// A ring from `ENCRYPTION_KEYS` (`kid:hex64,kid2:hex64`) and `ENCRYPTION_ACTIVE_KEY` (a kid
    /// in the list). The kid `legacy` names the key that reads the seed's Node format.
    pub fn from_env_strings(keys: &str, active: &str) -> Result<KeyRing, CryptoConfigError> {
        let mut builder = RingBuilder::default();
        let entries = keys
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty());
        for (index, entry) in entries.enumerate() {
            let entry_no = index + 1;
            let Some((kid, hex_key)) = entry.split_once(':') else {
                return Err(CryptoConfigError::MalformedEntry { entry: entry_no });
            };
            let kid = kid.trim();
            RingBuilder::check_kid(entry_no, kid)?;
            let key = parse_hex_key(kid, hex_key)?;
            builder.add(entry_no, kid, key)?;
        }
        builder.finish(active.trim())
    }

    /// A ring from the Secrets Manager shape `{"active": "kid", "keys": {"kid": "hex64"}}`. The
    /// kid `legacy` names the key that reads the seed's Node format; other fields are ignored.
    pub fn from_secret_json(value: &serde_json::Value) -> Result<KeyRing, CryptoConfigError> {
        let object = value.as_object().ok_or(CryptoConfigError::BadSecretShape(
            "the key ring must be a JSON object",
        ))?;
        let keys = match object.get("keys") {
            None | Some(serde_json::Value::Null) => return Err(CryptoConfigError::Empty),
            Some(keys) => keys.as_object().ok_or(CryptoConfigError::BadSecretShape(
                "`keys` must be an object of key id to hex key",
            ))?,
        };
        let mut builder = RingBuilder::default();
        for (index, (kid, hex_key)) in keys.iter().enumerate() {
            let entry_no = index + 1;
            RingBuilder::check_kid(entry_no, kid)?;
            let hex_key = hex_key
                .as_str()
                .ok_or_else(|| CryptoConfigError::BadHex { kid: kid.clone() })?;
            let key = parse_hex_key(kid, hex_key)?;
            builder.add(entry_no, kid, key)?;
        }
        let active = match object.get("active") {
            None | Some(serde_json::Value::Null) => "",
            Some(active) => active.as_str().ok_or(CryptoConfigError::BadSecretShape(
                "`active` must be a string",
            ))?,
        };
        builder.finish(active)
    }

    /// Sets (or replaces) the key that reads the seed's legacy Node format.
    #[must_use]
    pub fn with_legacy_key(mut self, key: [u8; 32]) -> Self {
        self.legacy = Some(SecretKey(key));
        self
    }

    /// The kid every new encryption uses.
    pub fn active_kid(&self) -> &str {
        &self.active
    }

    /// Encrypts `plaintext` under the active key, bound to `organization_id`, as
    /// `v1:<kid>:<nonce>:<ciphertext+tag>` (see the [module docs](self)).
    pub fn encrypt(&self, organization_id: &str, plaintext: &[u8]) -> Result<String, CryptoError> {
        let key = self
            .keys
            .get(&self.active)
            .ok_or_else(|| CryptoError::UnknownKey(self.active.clone()))?;
        let mut nonce = [0u8; V1_NONCE_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| CryptoError::Encrypt)?;
        let cipher = Aes256Gcm::new(&key.0.into());
        let mut buffer = Vec::with_capacity(plaintext.len() + TAG_LEN);
        buffer.extend_from_slice(plaintext);
        if cipher
            .encrypt_in_place(&nonce.into(), organization_id.as_bytes(), &mut buffer)
            .is_err()
        {
            wipe(&mut buffer);
            return Err(CryptoError::Encrypt);
        }
        Ok(format!(
            "{V1_PREFIX}:{}:{}:{}",
            self.active,
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(&buffer)
        ))
    }

    /// Decrypts a v1 value (with the key its kid names, checking it belongs to
    /// `organization_id`) or a legacy Node value (with the legacy key; not tenant-bound).
    pub fn decrypt(&self, organization_id: &str, stored: &str) -> Result<Vec<u8>, CryptoError> {
        match Stored::parse(stored)? {
            Stored::V1 {
                kid,
                nonce,
                mut sealed,
            } => {
                let key = self
                    .keys
                    .get(kid)
                    .ok_or_else(|| CryptoError::UnknownKey(kid.to_owned()))?;
                let cipher = Aes256Gcm::new(&key.0.into());
                cipher
                    .decrypt_in_place(&nonce.into(), organization_id.as_bytes(), &mut sealed)
                    .map_err(|_| CryptoError::Decrypt)?;
                Ok(sealed)
            }
            Stored::Legacy { iv, mut sealed } => {
                let key = self.legacy.as_ref().ok_or(CryptoError::NoLegacyKey)?;
                let cipher = LegacyAes256Gcm::new(&key.0.into());
                cipher
                    .decrypt_in_place(&iv.into(), b"", &mut sealed)
                    .map_err(|_| CryptoError::Decrypt)?;
                Ok(sealed)
            }
        }
    }

    /// Whether `stored` is not (yet) a v1 value under the active key: true for legacy values and
    /// v1 values under another kid — and for unparseable values, so that a rotation pass visits
    /// them and [`KeyRing::reencrypt`] reports the problem instead of skipping it silently.
    /// Looks at the format only; it does not decrypt.
    pub fn needs_reencryption(&self, stored: &str) -> bool {
        !matches!(Stored::parse(stored), Ok(Stored::V1 { kid, .. }) if kid == self.active)
    }

    /// Decrypts `stored` and encrypts it again under the active key, bound to `organization_id`.
    /// A value already under the active key is checked (it must decrypt for this organization)
    /// and returned unchanged, so a rotation run twice does nothing the second time.
    pub fn reencrypt(&self, organization_id: &str, stored: &str) -> Result<String, CryptoError> {
        let mut plaintext = self.decrypt(organization_id, stored)?;
        let result = if self.needs_reencryption(stored) {
            self.encrypt(organization_id, &plaintext)
        } else {
            Ok(stored.to_owned())
        };
        wipe(&mut plaintext);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    const K1_HEX: &str = "6b31a5c0ffee00112233445566778899aabbccddeeff0123456789abcdef0101";
    const K2_HEX: &str = "6b32d00dfeed99887766554433221100ffeeddccbbaa9876543210fedcba0202";
    /// The key the fixed Node vectors below were made with (bytes 0x00..=0x1f).
    const NODE_KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn key(hex_key: &str) -> [u8; 32] {
        let mut key = [0u8; 32];
        hex::decode_to_slice(hex_key, &mut key).expect("test key is hex");
        key
    }

    fn ring_k1() -> KeyRing {
        KeyRing::new(vec![("k1".to_owned(), key(K1_HEX))], "k1").expect("valid ring")
    }

    fn ring_k1_k2() -> KeyRing {
        KeyRing::new(
            vec![
                ("k1".to_owned(), key(K1_HEX)),
                ("k2".to_owned(), key(K2_HEX)),
            ],
            "k2",
        )
        .expect("valid ring")
    }

    fn parts(stored: &str) -> Vec<String> {
        stored.split(':').map(str::to_owned).collect()
    }

    /// Decodes part `index` of a v1 envelope, lets `change` alter the bytes, re-encodes it.
    fn tamper_v1(stored: &str, index: usize, change: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut parts = parts(stored);
        let mut bytes = URL_SAFE_NO_PAD.decode(&parts[index]).expect("base64url");
        change(&mut bytes);
        parts[index] = URL_SAFE_NO_PAD.encode(&bytes);
        parts.join(":")
    }

    #[test]
    fn round_trip_and_stored_format() {
        let ring = ring_k1();
        for plaintext in [
            &b""[..],
            b"x",
            b"{\"api_key\":\"sk_live_abc\"}",
            "Салом дунё".as_bytes(),
            &[0u8, 255, 1, 254],
            &[7u8; 5000],
        ] {
            let stored = ring.encrypt("org_1", plaintext).expect("encrypts");
            let p = parts(&stored);
            assert_eq!(p.len(), 4, "{stored}");
            assert_eq!(p[0], "v1");
            assert_eq!(p[1], "k1");
            assert_eq!(p[2].len(), 16, "12-byte nonce is 16 base64url chars");
            assert_eq!(URL_SAFE_NO_PAD.decode(&p[2]).expect("nonce").len(), 12);
            assert_eq!(
                URL_SAFE_NO_PAD.decode(&p[3]).expect("body").len(),
                plaintext.len() + 16
            );
            assert!(
                stored
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_:".contains(&b)),
                "base64url alphabet, no padding: {stored}"
            );
            assert_eq!(ring.decrypt("org_1", &stored).expect("decrypts"), plaintext);
            assert!(!ring.needs_reencryption(&stored));
        }
    }

    #[test]
    fn matches_an_independent_aes_gcm_computation() {
        // Rebuild the envelope's body with the nonce it carries and check it is plain
        // AES-256-GCM with the organization id as associated data.
        let ring = ring_k1();
        let stored = ring.encrypt("org_42", b"hello").expect("encrypts");
        let p = parts(&stored);
        let nonce: [u8; 12] = URL_SAFE_NO_PAD
            .decode(&p[2])
            .expect("nonce")
            .try_into()
            .expect("12 bytes");
        let mut expected = b"hello".to_vec();
        Aes256Gcm::new(&key(K1_HEX).into())
            .encrypt_in_place(&nonce.into(), b"org_42", &mut expected)
            .expect("encrypts");
        assert_eq!(URL_SAFE_NO_PAD.decode(&p[3]).expect("body"), expected);
    }

    #[test]
    fn nonces_are_unique() {
        let ring = ring_k1();
        let mut envelopes = HashSet::new();
        let mut nonces = HashSet::new();
        for _ in 0..2000 {
            let stored = ring.encrypt("org_1", b"same plaintext").expect("encrypts");
            nonces.insert(parts(&stored)[2].clone());
            envelopes.insert(stored);
        }
        assert_eq!(envelopes.len(), 2000);
        assert_eq!(nonces.len(), 2000);
    }

    #[test]
    fn a_ciphertext_moved_to_another_organization_fails() {
        let ring = ring_k1();
        let stored = ring.encrypt("org_a", b"secret").expect("encrypts");
        assert_eq!(ring.decrypt("org_b", &stored), Err(CryptoError::Decrypt));
        assert_eq!(ring.decrypt("", &stored), Err(CryptoError::Decrypt));
        assert_eq!(ring.decrypt("org_a ", &stored), Err(CryptoError::Decrypt));
        assert_eq!(ring.reencrypt("org_b", &stored), Err(CryptoError::Decrypt));
        assert_eq!(
            ring.decrypt("org_a", &stored).as_deref(),
            Ok(&b"secret"[..])
        );
    }

    #[test]
    fn tampered_nonce_ciphertext_or_tag_fails() {
        let ring = ring_k1();
        let stored = ring
            .encrypt("org_1", b"a credential of some length")
            .expect("encrypts");
        let body_len = URL_SAFE_NO_PAD
            .decode(&parts(&stored)[3])
            .expect("body")
            .len();
        for byte in 0..12 {
            let t = tamper_v1(&stored, 2, |n| n[byte] ^= 0x01);
            assert_eq!(
                ring.decrypt("org_1", &t),
                Err(CryptoError::Decrypt),
                "nonce {byte}"
            );
        }
        for byte in 0..body_len {
            // The last 16 bytes are the tag, the rest the ciphertext.
            let t = tamper_v1(&stored, 3, |b| b[byte] ^= 0x80);
            assert_eq!(
                ring.decrypt("org_1", &t),
                Err(CryptoError::Decrypt),
                "body {byte}"
            );
        }
        // Truncated tag, dropped ciphertext byte, appended byte.
        for change in [
            (|b: &mut Vec<u8>| {
                b.pop();
            }) as fn(&mut Vec<u8>),
            |b| {
                b.remove(0);
            },
            |b| b.push(0),
        ] {
            let t = tamper_v1(&stored, 3, change);
            assert_eq!(ring.decrypt("org_1", &t), Err(CryptoError::Decrypt));
        }
    }

    #[test]
    fn tampered_or_unknown_kid_fails() {
        let ring = ring_k1_k2();
        let stored = ring.encrypt("org_1", b"secret").expect("encrypts");
        assert!(stored.starts_with("v1:k2:"));
        // Another key of the ring: authentication fails.
        let swapped = stored.replacen("v1:k2:", "v1:k1:", 1);
        assert_eq!(ring.decrypt("org_1", &swapped), Err(CryptoError::Decrypt));
        // A key the ring does not have.
        let unknown = stored.replacen("v1:k2:", "v1:k9:", 1);
        assert_eq!(
            ring.decrypt("org_1", &unknown),
            Err(CryptoError::UnknownKey("k9".to_owned()))
        );
        // Not a kid at all.
        for bad in [
            "v1::",
            "v1:k 2:",
            "v1:k.2:",
            &format!("v1:{}:", "k".repeat(33)),
        ] {
            let t = stored.replacen("v1:k2:", bad, 1);
            assert_eq!(
                ring.decrypt("org_1", &t),
                Err(CryptoError::Malformed),
                "{bad}"
            );
        }
        // A ring that only knows k1 cannot read k2 values.
        assert_eq!(
            ring_k1().decrypt("org_1", &stored),
            Err(CryptoError::UnknownKey("k2".to_owned()))
        );
    }

    #[test]
    fn malformed_values_are_refused() {
        let ring = ring_k1().with_legacy_key(key(NODE_KEY_HEX));
        let good = ring.encrypt("org_1", b"secret").expect("encrypts");
        let p = parts(&good);
        let padded = format!("{}:{}:{}=:{}", p[0], p[1], p[2], p[3]);
        let standard_alphabet = format!("{}:{}:{}:{}+", p[0], p[1], p[2], p[3]);
        let short_nonce = format!("v1:k1:{}:{}", URL_SAFE_NO_PAD.encode([0u8; 11]), p[3]);
        let long_nonce = format!("v1:k1:{}:{}", URL_SAFE_NO_PAD.encode([0u8; 16]), p[3]);
        let short_body = format!("v1:k1:{}:{}", p[2], URL_SAFE_NO_PAD.encode([0u8; 15]));
        let empty_body = format!("v1:k1:{}:", p[2]);
        let v2 = good.replacen("v1:", "v2:", 1);
        let extra = format!("{good}:x");
        let iv = "00".repeat(16);
        let tag = "11".repeat(16);
        for bad in [
            "",
            "v1",
            "v1:k1",
            "v1:k1:abc",
            "garbage",
            "a:b",
            &padded,
            &standard_alphabet,
            &short_nonce,
            &long_nonce,
            &short_body,
            &empty_body,
            &v2,
            &extra,
            // Legacy shape with a bad part.
            &format!("{}:{tag}:abcd", "00".repeat(12)),
            &format!("{iv}:{}:abcd", "11".repeat(12)),
            &format!("{iv}:{tag}:abc"),
            &format!("{iv}:{tag}:zz"),
            &format!("{}:{tag}:", "zz".repeat(16)),
            &format!("{iv}:{tag}:ab:cd"),
        ] {
            assert_eq!(
                ring.decrypt("org_1", bad),
                Err(CryptoError::Malformed),
                "{bad:?}"
            );
            assert_eq!(
                ring.reencrypt("org_1", bad),
                Err(CryptoError::Malformed),
                "{bad:?}"
            );
            assert!(ring.needs_reencryption(bad), "{bad:?}");
        }
    }

    #[test]
    fn rotation() {
        let old_ring = ring_k1();
        let old = old_ring.encrypt("org_1", b"old secret").expect("encrypts");
        assert!(old.starts_with("v1:k1:"));

        let ring = ring_k1_k2();
        assert_eq!(ring.active_kid(), "k2");
        let new = ring.encrypt("org_1", b"new secret").expect("encrypts");
        assert!(new.starts_with("v1:k2:"));
        assert_eq!(
            ring.decrypt("org_1", &old).as_deref(),
            Ok(&b"old secret"[..])
        );
        assert_eq!(
            ring.decrypt("org_1", &new).as_deref(),
            Ok(&b"new secret"[..])
        );

        assert!(ring.needs_reencryption(&old));
        assert!(!ring.needs_reencryption(&new));
        let moved = ring.reencrypt("org_1", &old).expect("re-encrypts");
        assert!(moved.starts_with("v1:k2:"));
        assert!(!ring.needs_reencryption(&moved));
        assert_eq!(
            ring.decrypt("org_1", &moved).as_deref(),
            Ok(&b"old secret"[..])
        );
        // Second run: nothing changes.
        assert_eq!(
            ring.reencrypt("org_1", &moved).as_deref(),
            Ok(moved.as_str())
        );
        assert_eq!(ring.reencrypt("org_1", &new).as_deref(), Ok(new.as_str()));

        // After the rotation k1 can leave the ring and everything still reads.
        let k2_only = KeyRing::new(vec![("k2".to_owned(), key(K2_HEX))], "k2").expect("ring");
        assert_eq!(
            k2_only.decrypt("org_1", &moved).as_deref(),
            Ok(&b"old secret"[..])
        );
        assert_eq!(
            k2_only.decrypt("org_1", &old),
            Err(CryptoError::UnknownKey("k1".to_owned()))
        );
    }

    #[test]
    fn fixed_node_vectors_decrypt() {
        // Made once with tests/fixtures/legacy_encrypt.js (the seed's algorithm) and NODE_KEY_HEX;
        // tests/legacy_node_crypto.rs runs Node itself for fresh ones.
        let ring = ring_k1().with_legacy_key(key(NODE_KEY_HEX));
        let vectors = [
            (
                "acd389a52751717ce030e466f4418e5e:a0bd33b7321b1f9a07811e0eee170ef6:835a4c5af9a515179343a0a9dd289f99257009",
                "Салом дунё",
            ),
            (
                "add25386714f139bcc1d87e9adcaeba5:65e140e0819fb0d009b4e1661cc18ffa:",
                "",
            ),
            (
                "65ae5b8147d423e4593444a3795e08a8:e8b437af66241053604abc0d6e9be265:37c6220a91282045677f924a31a33326f588d76dcfd743bc1f",
                "{\"api_key\":\"sk_test_123\"}",
            ),
        ];
        for (stored, plaintext) in vectors {
            // Legacy values carry no associated data: any organization id reads them.
            for org in ["org_1", "org_2"] {
                assert_eq!(
                    ring.decrypt(org, stored).as_deref(),
                    Ok(plaintext.as_bytes())
                );
            }
            assert_eq!(
                ring.decrypt("org_1", &stored.to_uppercase()).as_deref(),
                Ok(plaintext.as_bytes()),
                "hex is case-insensitive"
            );
            assert!(ring.needs_reencryption(stored));
            let moved = ring.reencrypt("org_1", stored).expect("re-encrypts");
            assert!(moved.starts_with("v1:k1:"));
            assert!(!ring.needs_reencryption(&moved));
            assert_eq!(
                ring.decrypt("org_1", &moved).as_deref(),
                Ok(plaintext.as_bytes())
            );
            // Now bound to its organization.
            assert_eq!(ring.decrypt("org_2", &moved), Err(CryptoError::Decrypt));
            // Without the legacy key the value cannot be read.
            assert_eq!(
                ring_k1().decrypt("org_1", stored),
                Err(CryptoError::NoLegacyKey)
            );
            // With the wrong legacy key it fails opaquely.
            let wrong = ring_k1().with_legacy_key(key(K2_HEX));
            assert_eq!(wrong.decrypt("org_1", stored), Err(CryptoError::Decrypt));
        }
    }

    #[test]
    fn env_strings_parse() {
        let ring = KeyRing::from_env_strings(&format!(" k1:{K1_HEX} , k2 : {K2_HEX} ,"), " k2 ")
            .expect("ring");
        assert_eq!(ring.active_kid(), "k2");
        let stored = ring_k1().encrypt("org_1", b"x").expect("encrypts");
        assert_eq!(ring.decrypt("org_1", &stored).as_deref(), Ok(&b"x"[..]));

        // Upper-case hex is the same key.
        let upper = KeyRing::from_env_strings(&format!("k1:{}", K1_HEX.to_uppercase()), "k1")
            .expect("ring");
        assert_eq!(upper.decrypt("org_1", &stored).as_deref(), Ok(&b"x"[..]));

        // `legacy` is the legacy key, not a ring key.
        let with_legacy =
            KeyRing::from_env_strings(&format!("legacy:{NODE_KEY_HEX},k1:{K1_HEX}"), "k1")
                .expect("ring");
        assert_eq!(
            format!("{with_legacy:?}"),
            r#"KeyRing { active: "k1", kids: ["k1"], legacy_key: true }"#
        );
        let node = "add25386714f139bcc1d87e9adcaeba5:65e140e0819fb0d009b4e1661cc18ffa:";
        assert_eq!(with_legacy.decrypt("org_1", node).as_deref(), Ok(&b""[..]));
    }

    #[test]
    fn secret_json_parses() {
        let value = serde_json::json!({
            "active": "k2",
            "keys": {"k1": K1_HEX, "k2": K2_HEX, "legacy": NODE_KEY_HEX},
            "stripe_secret_key": "ignored here",
        });
        let ring = KeyRing::from_secret_json(&value).expect("ring");
        assert_eq!(
            format!("{ring:?}"),
            r#"KeyRing { active: "k2", kids: ["k1", "k2"], legacy_key: true }"#
        );
        let old = ring_k1().encrypt("org_1", b"x").expect("encrypts");
        assert_eq!(ring.decrypt("org_1", &old).as_deref(), Ok(&b"x"[..]));
    }

    /// Every configuration error, with key material that must not show up in any message.
    fn config_errors() -> Vec<(Result<KeyRing, CryptoConfigError>, CryptoConfigError)> {
        use CryptoConfigError as E;
        let short = &K1_HEX[..62];
        let long = format!("{K1_HEX}00");
        let not_hex = format!("{}zz", &K1_HEX[..62]);
        let json = |v: serde_json::Value| KeyRing::from_secret_json(&v);
        vec![
            (KeyRing::from_env_strings("", "k1"), E::Empty),
            (KeyRing::from_env_strings(" , ", "k1"), E::Empty),
            (
                KeyRing::from_env_strings(&format!("legacy:{K1_HEX}"), "legacy"),
                E::Empty,
            ),
            (
                KeyRing::from_env_strings(&format!("k1:{K1_HEX}"), ""),
                E::NoActiveKey,
            ),
            (
                KeyRing::from_env_strings(&format!("k1:{K1_HEX}"), "  "),
                E::NoActiveKey,
            ),
            (
                KeyRing::from_env_strings(&format!("k1:{K1_HEX},{K2_HEX}"), "k1"),
                E::MalformedEntry { entry: 2 },
            ),
            (
                KeyRing::from_env_strings(&format!("{K2_HEX}:k1"), "k1"),
                E::InvalidKid { entry: 1 },
            ),
            (
                KeyRing::from_env_strings(&format!("k1:{K1_HEX},k.2:{K2_HEX}"), "k1"),
                E::InvalidKid { entry: 2 },
            ),
            (
                KeyRing::from_env_strings(&format!(":{K1_HEX}"), "k1"),
                E::InvalidKid { entry: 1 },
            ),
            (
                KeyRing::from_env_strings(&format!("{}:{K1_HEX}", "k".repeat(33)), "k1"),
                E::InvalidKid { entry: 1 },
            ),
            (
                KeyRing::from_env_strings(&format!("k1:{not_hex}"), "k1"),
                E::BadHex {
                    kid: "k1".to_owned(),
                },
            ),
            (
                KeyRing::from_env_strings(&format!("k1:{short}"), "k1"),
                E::WrongLength {
                    kid: "k1".to_owned(),
                    hex_chars: 62,
                },
            ),
            (
                KeyRing::from_env_strings(&format!("k1:{long}"), "k1"),
                E::WrongLength {
                    kid: "k1".to_owned(),
                    hex_chars: 66,
                },
            ),
            (
                KeyRing::from_env_strings("k1:", "k1"),
                E::WrongLength {
                    kid: "k1".to_owned(),
                    hex_chars: 0,
                },
            ),
            (
                KeyRing::from_env_strings(&format!("k1:{K1_HEX},k1:{K2_HEX}"), "k1"),
                E::DuplicateKid("k1".to_owned()),
            ),
            (
                KeyRing::from_env_strings(
                    &format!("legacy:{K1_HEX},legacy:{K2_HEX},k1:{K1_HEX}"),
                    "k1",
                ),
                E::DuplicateKid("legacy".to_owned()),
            ),
            (
                KeyRing::from_env_strings(&format!("k1:{K1_HEX}"), "k2"),
                E::ActiveNotInRing("k2".to_owned()),
            ),
            // The key pasted into ENCRYPTION_ACTIVE_KEY by mistake.
            (
                KeyRing::from_env_strings(&format!("k1:{K1_HEX}"), K2_HEX),
                E::InvalidActiveKid,
            ),
            (
                KeyRing::from_env_strings(&format!("k1:{K1_HEX},legacy:{K2_HEX}"), "legacy"),
                E::ActiveIsLegacy,
            ),
            (KeyRing::new(vec![], "k1"), E::Empty),
            (
                KeyRing::new(
                    vec![
                        ("k1".to_owned(), key(K1_HEX)),
                        ("k1".to_owned(), key(K2_HEX)),
                    ],
                    "k1",
                ),
                E::DuplicateKid("k1".to_owned()),
            ),
            (
                KeyRing::new(vec![("k 1".to_owned(), key(K1_HEX))], "k 1"),
                E::InvalidKid { entry: 1 },
            ),
            (
                KeyRing::new(vec![("k1".to_owned(), key(K1_HEX))], "k2"),
                E::ActiveNotInRing("k2".to_owned()),
            ),
            (
                json(serde_json::json!([K1_HEX])),
                E::BadSecretShape("the key ring must be a JSON object"),
            ),
            (json(serde_json::json!({"active": "k1"})), E::Empty),
            (
                json(serde_json::json!({"active": "k1", "keys": {}})),
                E::Empty,
            ),
            (
                json(serde_json::json!({"active": "k1", "keys": [K1_HEX]})),
                E::BadSecretShape("`keys` must be an object of key id to hex key"),
            ),
            (
                json(serde_json::json!({"keys": {"k1": K1_HEX}})),
                E::NoActiveKey,
            ),
            (
                json(serde_json::json!({"active": 1, "keys": {"k1": K1_HEX}})),
                E::BadSecretShape("`active` must be a string"),
            ),
            (
                json(serde_json::json!({"active": "k1", "keys": {"k1": 5}})),
                E::BadHex {
                    kid: "k1".to_owned(),
                },
            ),
            (
                json(serde_json::json!({"active": "k1", "keys": {"k1": not_hex}})),
                E::BadHex {
                    kid: "k1".to_owned(),
                },
            ),
            (
                json(serde_json::json!({"active": "k1", "keys": {"k1": short}})),
                E::WrongLength {
                    kid: "k1".to_owned(),
                    hex_chars: 62,
                },
            ),
            (
                json(serde_json::json!({"active": "k1", "keys": {K2_HEX: K1_HEX}})),
                E::InvalidKid { entry: 1 },
            ),
            (
                json(serde_json::json!({"active": "k3", "keys": {"k1": K1_HEX}})),
                E::ActiveNotInRing("k3".to_owned()),
            ),
            (
                json(serde_json::json!({"active": K1_HEX, "keys": {"k1": K1_HEX}})),
                E::InvalidActiveKid,
            ),
        ]
    }

    #[test]
    fn config_errors_name_the_problem_and_never_the_key() {
        let secrets = [
            K1_HEX.to_owned(),
            K2_HEX.to_owned(),
            K1_HEX.to_uppercase(),
            // Fragments too: the short, long and non-hex variants above.
            K1_HEX[..62].to_owned(),
            K1_HEX[..16].to_owned(),
            K2_HEX[..16].to_owned(),
        ];
        for (result, expected) in config_errors() {
            let error = result.expect_err("configuration must be refused");
            assert_eq!(error, expected);
            for text in [error.to_string(), format!("{error:?}")] {
                for secret in &secrets {
                    assert!(!text.contains(secret.as_str()), "{text}");
                }
            }
        }
    }

    #[test]
    fn debug_and_errors_never_show_keys_or_data() {
        let ring = ring_k1_k2().with_legacy_key(key(NODE_KEY_HEX));
        let debug = format!("{ring:?} {ring:#?}");
        assert_eq!(
            format!("{ring:?}"),
            r#"KeyRing { active: "k2", kids: ["k1", "k2"], legacy_key: true }"#
        );
        let stored = ring
            .encrypt("org_1", b"super secret password")
            .expect("encrypts");
        let body = parts(&stored)[3].clone();
        let errors = [
            ring.decrypt("org_2", &stored).expect_err("wrong org"),
            ring.decrypt("org_1", &stored.replacen(":k2:", ":k9:", 1))
                .expect_err("unknown kid"),
            ring.decrypt("org_1", &format!("{stored}x"))
                .expect_err("malformed"),
        ];
        let mut text = debug;
        for error in &errors {
            text.push_str(&format!("{error} {error:?}"));
        }
        for secret in [K1_HEX, K2_HEX, NODE_KEY_HEX, "super secret", &body] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[test]
    fn wipe_zeroes() {
        let mut bytes = [0xAAu8; 40];
        wipe(&mut bytes);
        assert_eq!(bytes, [0u8; 40]);
    }

    proptest! {
        #[test]
        fn round_trips_arbitrary_bytes_and_organizations(
            plaintext in proptest::collection::vec(any::<u8>(), 0..2048),
            organization_id in any::<String>(),
            other in any::<String>(),
        ) {
            let ring = ring_k1_k2();
            let stored = ring.encrypt(&organization_id, &plaintext).expect("encrypts");
            prop_assert_eq!(ring.decrypt(&organization_id, &stored), Ok(plaintext.clone()));
            prop_assert!(!ring.needs_reencryption(&stored));
            if other != organization_id {
                prop_assert_eq!(ring.decrypt(&other, &stored), Err(CryptoError::Decrypt));
            }
        }
    }
}
