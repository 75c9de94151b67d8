//! The seed's Node encryption (legacy `ivhex:taghex:cthex`) decrypts in Rust.
//!
//! Runs `tests/fixtures/legacy_encrypt.js` — the seed's algorithm, verbatim — with the machine's
//! `node` to produce fresh ciphertexts, then decrypts them with `tollgate::crypto::KeyRing`.
//! Node is required: without it this test fails (it does not skip), because the legacy path would
//! otherwise go unproven.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use tollgate::crypto::{CryptoError, KeyRing};

/// The legacy key the "seed" encrypted with (a throwaway test key).
const LEGACY_KEY_HEX: &str = "9f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
/// The current v1 key.
const V1_KEY_HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn ring() -> KeyRing {
    // The documented configuration route: the kid `legacy` is the legacy key.
    KeyRing::from_env_strings(
        &format!("legacy:{LEGACY_KEY_HEX},k2026:{V1_KEY_HEX}"),
        "k2026",
    )
    .expect("valid key ring")
}

/// Encrypts `plaintexts` with the seed's algorithm in Node.
fn node_encrypt(key_hex: &str, plaintexts: &[String]) -> Vec<String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy_encrypt.js");
    let mut child = Command::new("node")
        .arg(&script)
        .arg(key_hex)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "could not run `node` ({error}). This test needs Node.js on PATH to prove that \
                 values written by the seed's Node service (legacy format) still decrypt; install \
                 Node.js, it does not skip."
            )
        });
    let input = serde_json::to_vec(plaintexts).expect("plaintexts serialize");
    // The script reads all of stdin before it writes anything, so this cannot deadlock.
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(&input)
        .expect("write plaintexts to node");
    let output = child.wait_with_output().expect("wait for node");
    assert!(
        output.status.success(),
        "{} failed ({}): {}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let ciphertexts: Vec<String> =
        serde_json::from_slice(&output.stdout).expect("node prints a JSON array of strings");
    assert_eq!(ciphertexts.len(), plaintexts.len());
    ciphertexts
}

fn plaintexts() -> Vec<String> {
    let ten_kb: String = "Tollgate legacy credential 0123456789 — ünïcödé "
        .chars()
        .cycle()
        .take(10 * 1024)
        .collect();
    vec![
        String::new(),
        "hello".to_owned(),
        "The quick brown fox jumps over the lazy dog.".to_owned(),
        "Салом дунё".to_owned(),
        "Салом, дунё! Oʻzbekiston — Ўзбекистон 🇺🇿".to_owned(),
        ten_kb,
        serde_json::json!({
            "api_key": "sk_live_51HxYzAbCdEf",
            "webhook_secret": "whsec_abc123",
            "account": {"id": "acct_1", "region": "eu-central-1"},
        })
        .to_string(),
        "a".repeat(15),
        "b".repeat(16),
        "c".repeat(17),
    ]
}

/// Flips the lowest bit of the hex digit at `index` of `part` (0 = IV, 1 = tag, 2 = ciphertext).
fn flip_hex_digit(stored: &str, part: usize, index: usize) -> String {
    let mut parts: Vec<String> = stored.split(':').map(str::to_owned).collect();
    let mut digits: Vec<char> = parts[part].chars().collect();
    let value = digits[index].to_digit(16).expect("hex digit") ^ 1;
    digits[index] = char::from_digit(value, 16).expect("hex digit");
    parts[part] = digits.into_iter().collect();
    parts.join(":")
}

#[test]
fn node_ciphertexts_decrypt_exactly() {
    let ring = ring();
    let plaintexts = plaintexts();
    let ciphertexts = node_encrypt(LEGACY_KEY_HEX, &plaintexts);
    for (plaintext, stored) in plaintexts.iter().zip(&ciphertexts) {
        let parts: Vec<&str> = stored.split(':').collect();
        assert_eq!(parts.len(), 3, "legacy format is ivhex:taghex:cthex");
        assert_eq!(parts[0].len(), 32, "16-byte IV");
        assert_eq!(parts[1].len(), 32, "16-byte tag");
        assert_eq!(
            parts[2].len(),
            plaintext.len() * 2,
            "ciphertext as long as the UTF-8 plaintext"
        );

        // No associated data in the legacy format: the organization id plays no part.
        for organization_id in ["org_1", "org_other", ""] {
            let decrypted = ring
                .decrypt(organization_id, stored)
                .unwrap_or_else(|error| panic!("{} bytes: {error}", plaintext.len()));
            assert_eq!(decrypted, plaintext.as_bytes(), "{} bytes", plaintext.len());
        }
        assert!(ring.needs_reencryption(stored));
    }
    // Fresh random IVs: the same plaintext twice gives two different values.
    let twice = node_encrypt(LEGACY_KEY_HEX, &["same".to_owned(), "same".to_owned()]);
    assert_ne!(twice[0], twice[1]);
}

#[test]
fn node_ciphertexts_migrate_to_v1() {
    let ring = ring();
    let plaintexts = plaintexts();
    let ciphertexts = node_encrypt(LEGACY_KEY_HEX, &plaintexts);
    for (plaintext, stored) in plaintexts.iter().zip(&ciphertexts) {
        let migrated = ring.reencrypt("org_1", stored).expect("re-encrypts");
        assert!(migrated.starts_with("v1:k2026:"));
        assert!(!ring.needs_reencryption(&migrated));
        assert_eq!(
            ring.reencrypt("org_1", &migrated).as_deref(),
            Ok(migrated.as_str())
        );
        assert_eq!(
            ring.decrypt("org_1", &migrated).as_deref(),
            Ok(plaintext.as_bytes())
        );
        // Once migrated the value belongs to its organization.
        assert_eq!(ring.decrypt("org_2", &migrated), Err(CryptoError::Decrypt));
        // And the legacy key is no longer needed to read it.
        let without_legacy =
            KeyRing::from_env_strings(&format!("k2026:{V1_KEY_HEX}"), "k2026").expect("ring");
        assert_eq!(
            without_legacy.decrypt("org_1", &migrated).as_deref(),
            Ok(plaintext.as_bytes())
        );
    }
}

#[test]
fn altered_node_ciphertexts_fail() {
    let ring = ring();
    let plaintexts = vec![
        "Салом дунё".to_owned(),
        "{\"api_key\":\"sk_live_51HxYzAbCdEf\"}".to_owned(),
        String::new(),
    ];
    let ciphertexts = node_encrypt(LEGACY_KEY_HEX, &plaintexts);
    for stored in &ciphertexts {
        let parts: Vec<&str> = stored.split(':').collect();
        for (part, digits) in parts.iter().enumerate() {
            for index in 0..digits.len() {
                let altered = flip_hex_digit(stored, part, index);
                assert_eq!(
                    ring.decrypt("org_1", &altered),
                    Err(CryptoError::Decrypt),
                    "part {part}, hex digit {index}"
                );
                assert_eq!(ring.reencrypt("org_1", &altered), Err(CryptoError::Decrypt));
            }
        }
        // A ciphertext byte dropped or added, or the tag shortened: refused.
        let (iv, tag, ct) = (parts[0], parts[1], parts[2]);
        if ct.len() >= 2 {
            let dropped = format!("{iv}:{tag}:{}", &ct[2..]);
            assert_eq!(ring.decrypt("org_1", &dropped), Err(CryptoError::Decrypt));
        }
        let added = format!("{iv}:{tag}:{ct}00");
        assert_eq!(ring.decrypt("org_1", &added), Err(CryptoError::Decrypt));
        let short_tag = format!("{iv}:{}:{ct}", &tag[2..]);
        assert_eq!(
            ring.decrypt("org_1", &short_tag),
            Err(CryptoError::Malformed)
        );
    }

    // The wrong legacy key, and no legacy key at all.
    let wrong =
        KeyRing::from_env_strings(&format!("legacy:{V1_KEY_HEX},k2026:{V1_KEY_HEX}"), "k2026")
            .expect("ring");
    let none = KeyRing::from_env_strings(&format!("k2026:{V1_KEY_HEX}"), "k2026").expect("ring");
    for stored in &ciphertexts {
        assert_eq!(wrong.decrypt("org_1", stored), Err(CryptoError::Decrypt));
        assert_eq!(none.decrypt("org_1", stored), Err(CryptoError::NoLegacyKey));
        assert!(none.needs_reencryption(stored));
    }
}
