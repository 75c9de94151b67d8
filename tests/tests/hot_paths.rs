//! The criterion hot-path benchmarks (`tollgate-hot-paths`, run by `make bench`) still run: in
//! criterion's test mode every benchmark executes its routine once, so a broken setup (a token
//! that no longer verifies, a signature that no longer matches) fails here and not in the bench.

use std::process::Command;

const BENCHMARKS: [&str; 10] = [
    "jwt/verify_es256_cached_jwks",
    "jwt/verify_rs256_cached_jwks",
    "rbac/decision",
    "rbac/full_matrix_95",
    "webhook/verify_signature_10kb",
    "webhook/verify_signature_10kb_3_secrets",
    "crypto/encrypt_credential",
    "crypto/decrypt_credential",
    "api_key/verify",
    "api_key/verify_wrong_secret",
];

#[test]
fn every_hot_path_benchmark_runs_once_in_test_mode() {
    let output = Command::new(env!("CARGO_BIN_EXE_tollgate-hot-paths"))
        .output()
        .expect("the tollgate-hot-paths binary starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        output.status
    );
    for benchmark in BENCHMARKS {
        assert!(
            stdout.contains(&format!("Testing {benchmark}\nSuccess")),
            "{benchmark} did not run successfully:\n{stdout}"
        );
    }
}
