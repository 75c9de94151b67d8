//! Hot paths, measured with criterion (docs/BENCHMARKS.md):
//!
//! * `jwt/*`: verifying a valid user token, JWKS already cached (inline: no network);
//! * `rbac/*`: one role × permission decision, and the whole 5 × 19 matrix;
//! * `webhook/*`: `Stripe-Signature` verification of a 10 KB payload;
//! * `crypto/*`: encrypting and decrypting a credential bound to its organization;
//! * `api_key/*`: what verifying an organization API key costs in memory (its shape, then the
//!   HMAC-SHA-256 under the pepper compared in constant time with the stored digest), for the
//!   right key and for a wrong secret; the one `GetItem` by id is in the DynamoDB cost table.
//!
//! A binary of the tests crate rather than a `cargo bench` target: `make bench` builds it in the
//! same release build as `tollgate-bench`. Run:
//! `cargo build --release -p tollgate-tests --bin tollgate-hot-paths`,
//! `CRITERION_HOME=target/criterion target/release/tollgate-hot-paths --bench`, then
//! `python3 infra/scripts/criterion-table.py target/criterion` for the Markdown table.
//! Without `--bench` it runs every benchmark once as a test (`make test` does, in
//! tests/tests/hot_paths.rs).

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject as _;
use serde_json::{Value, json};
use tollgate::auth::api_key::{self, Pepper};
use tollgate::auth::jwt::{JwtConfig, JwtVerifier};
use tollgate::billing::signature::{self, DEFAULT_TOLERANCE, WebhookSecrets};
use tollgate::crypto::KeyRing;
use tollgate::rbac::{self, Decision, Permission, Role};

const ISSUER: &str = "https://clerk.tollgate.test";
const WEBHOOK_SECRET: &str = "whsec_bench_0123456789abcdefghijklmnopqrstuv";
const WEBHOOK_PAYLOAD_BYTES: usize = 10_240;
const ORGANIZATION_ID: &str = "org_01J9Z3K7QW8E5R2T6Y4U1I0OPA";

/// Modest timings so the whole run stays well under a minute.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
}

fn unix_now() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("system clock is after 1970");
    i64::try_from(since_epoch.as_secs()).expect("Unix time fits in i64")
}

/// Polls a future once. `JwtVerifier::verify` with the token's `kid` cached takes an uncontended
/// read lock and never waits, so this measures the verification itself with no executor around it.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("verify with a cached JWKS must complete without waiting"),
    }
}

// ---- JWT ----

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh P-256 key: its signing key and its public JWK.
fn ec_key(kid: &str) -> (EncodingKey, Value) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .expect("P-256 key generation");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .expect("P-256 PKCS#8 parses");
    let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
    // Uncompressed SEC1 point: 0x04 || x || y.
    let point = pair.public_key().as_ref();
    assert_eq!((point.len(), point[0]), (65, 4), "uncompressed P-256 point");
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": b64url(&point[1..33]), "y": b64url(&point[33..65]),
    });
    (encoding, jwk)
}

/// The RSA-2048 test key of shared/testdata (ring does not generate RSA keys): its signing key
/// and its public JWK.
fn rsa_key(kid: &str) -> (EncodingKey, Value) {
    let private_pem = include_str!("../../../shared/testdata/jwt-rsa-1.key.pem");
    let pkcs8 = PrivatePkcs8KeyDer::from_pem_slice(private_pem.as_bytes())
        .expect("the test key is a PKCS#8 PEM");
    let pair = RsaKeyPair::from_pkcs8(pkcs8.secret_pkcs8_der()).expect("RSA PKCS#8 parses");
    let encoding = EncodingKey::from_rsa_pem(private_pem.as_bytes())
        .expect("RSA PKCS#8 PEM is accepted by jsonwebtoken");
    let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
    let jwk = json!({
        "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
        "n": b64url(&public.n), "e": b64url(&public.e),
    });
    (encoding, jwk)
}

/// Claims shaped like a Clerk session token, valid for an hour.
fn claims() -> Value {
    let now = unix_now();
    json!({
        "sub": "user_2abcDEFghiJKLmnoPQRstuVWX",
        "iss": ISSUER,
        "iat": now,
        "nbf": now - 5,
        "exp": now + 3600,
        "azp": "https://app.tollgate.test",
        "email": "ann@example.com",
        "email_verified": true,
        "name": "Ann Lee",
    })
}

fn sign(alg: Algorithm, kid: &str, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, &claims(), key).expect("signing the benchmark token")
}

fn bench_jwt(c: &mut Criterion) {
    let (ec_encoding, ec_jwk) = ec_key("ec-1");
    let (rsa_encoding, rsa_jwk) = rsa_key("rsa-1");
    let mut config = JwtConfig::new(ISSUER);
    // The JWKS is inline, so every kid below is cached from construction: no fetch, ever.
    config.inline_jwks = Some(json!({ "keys": [ec_jwk, rsa_jwk] }).to_string());
    tollgate::trust::install_ring_defaults();
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("building the (unused) JWKS HTTP client");
    let verifier = JwtVerifier::new(config, http).expect("the inline JWKS is valid");

    let es256 = sign(Algorithm::ES256, "ec-1", &ec_encoding);
    let rs256 = sign(Algorithm::RS256, "rsa-1", &rsa_encoding);
    for token in [&es256, &rs256] {
        let claims = ready(verifier.verify(token)).expect("the benchmark token verifies");
        assert_eq!(claims.iss, ISSUER);
    }

    let mut group = c.benchmark_group("jwt");
    configure(&mut group);
    group.bench_function("verify_es256_cached_jwks", |b| {
        b.iter(|| ready(verifier.verify(black_box(&es256))))
    });
    group.bench_function("verify_rs256_cached_jwks", |b| {
        b.iter(|| ready(verifier.verify(black_box(&rs256))))
    });
    group.finish();
}

// ---- RBAC ----

fn bench_rbac(c: &mut Criterion) {
    // Admin's last grant: the longest scan that ends in an allow.
    assert_eq!(
        rbac::check(Role::Admin, Permission::IntegrationsDelete),
        Decision::Allowed
    );
    let mut group = c.benchmark_group("rbac");
    configure(&mut group);
    group.bench_function("decision", |b| {
        b.iter(|| {
            rbac::check(
                black_box(Role::Admin),
                black_box(Permission::IntegrationsDelete),
            )
        })
    });
    group.throughput(Throughput::Elements(
        (Role::ALL.len() * Permission::ALL.len()) as u64,
    ));
    group.bench_function("full_matrix_95", |b| {
        b.iter(|| {
            let mut allowed = 0usize;
            for role in black_box(Role::ALL) {
                for permission in black_box(Permission::ALL) {
                    allowed += usize::from(rbac::check(role, permission).is_allowed());
                }
            }
            allowed
        })
    });
    group.finish();
}

// ---- Webhook signature ----

/// An `invoice.paid` event with line items, padded to exactly `WEBHOOK_PAYLOAD_BYTES`.
fn webhook_payload() -> Vec<u8> {
    let line = |i: usize| {
        json!({
            "id": format!("il_1PbenchLine{i:04}"),
            "object": "line_item",
            "amount": 4900 + i,
            "currency": "usd",
            "description": format!("1 × Tollgate Pro seat {i} (at $49.00 / month)"),
            "period": { "start": 1_767_225_600, "end": 1_769_904_000 },
            "price": { "id": "price_1PbenchPro", "product": "prod_benchPro", "unit_amount": 4900 },
            "quantity": 1,
        })
    };
    let event = |lines: &[Value], memo: &str| {
        json!({
            "id": "evt_1PbenchEvent0001",
            "object": "event",
            "api_version": "2026-09-30.endive",
            "created": 1_767_225_600,
            "type": "invoice.paid",
            "livemode": false,
            "data": { "object": {
                "id": "in_1PbenchInvoice01",
                "object": "invoice",
                "customer": "cus_benchCustomer",
                "subscription": "sub_benchSubscription",
                "status": "paid",
                "lines": { "object": "list", "data": lines, "has_more": false },
                "metadata": { "organization_id": ORGANIZATION_ID, "memo": memo },
            }},
        })
        .to_string()
    };
    let mut lines = Vec::new();
    while event(&lines, "").len() < WEBHOOK_PAYLOAD_BYTES - 400 {
        lines.push(line(lines.len()));
    }
    let padding = WEBHOOK_PAYLOAD_BYTES - event(&lines, "").len();
    let payload = event(&lines, &"x".repeat(padding)).into_bytes();
    assert_eq!(payload.len(), WEBHOOK_PAYLOAD_BYTES);
    payload
}

fn bench_webhook(c: &mut Criterion) {
    let payload = webhook_payload();
    let now = unix_now();
    let header = signature::sign_for_test(WEBHOOK_SECRET, &payload, now);
    let one = WebhookSecrets::parse(WEBHOOK_SECRET);
    // During a secret roll several are configured; the matching one last is the worst case
    // (though every secret is tried whatever matches).
    let three = WebhookSecrets::from_secrets([
        "whsec_bench_retired_secret_number_one_000000",
        "whsec_bench_retired_secret_number_two_000000",
        WEBHOOK_SECRET,
    ]);
    for secrets in [&one, &three] {
        let verified = signature::verify(secrets, Some(&header), &payload, now, DEFAULT_TOLERANCE)
            .expect("the benchmark delivery verifies");
        assert_eq!(verified.unix(), now);
    }

    let mut group = c.benchmark_group("webhook");
    configure(&mut group);
    group.throughput(Throughput::Bytes(payload.len() as u64));
    for (name, secrets) in [
        ("verify_signature_10kb", &one),
        ("verify_signature_10kb_3_secrets", &three),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                signature::verify(
                    black_box(secrets),
                    black_box(Some(header.as_str())),
                    black_box(&payload),
                    black_box(now),
                    DEFAULT_TOLERANCE,
                )
            })
        });
    }
    group.finish();
}

// ---- Credential encryption ----

fn bench_crypto(c: &mut Criterion) {
    let key: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
    let ring = KeyRing::new(vec![("k1".to_owned(), key)], "k1").expect("a valid key ring");
    // A typical third-party API key: 64 characters.
    let credential = "sk_live_51PbenchAbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefghijkl";
    assert_eq!(credential.len(), 64);
    let stored = ring
        .encrypt(ORGANIZATION_ID, credential.as_bytes())
        .expect("encrypting the credential");
    assert_eq!(
        ring.decrypt(ORGANIZATION_ID, &stored)
            .expect("decrypting the credential"),
        credential.as_bytes()
    );

    let mut group = c.benchmark_group("crypto");
    configure(&mut group);
    group.bench_function("encrypt_credential", |b| {
        b.iter(|| ring.encrypt(black_box(ORGANIZATION_ID), black_box(credential.as_bytes())))
    });
    group.bench_function("decrypt_credential", |b| {
        b.iter(|| ring.decrypt(black_box(ORGANIZATION_ID), black_box(&stored)))
    });
    group.finish();
}

// ---- Organization API keys ----

fn bench_api_key(c: &mut Criterion) {
    let pepper = Pepper::new("bench_api_key_pepper_0123456789abcdef0123456789").expect("pepper");
    let made = api_key::generate().expect("a key from the system's random generator");
    let stored = pepper.digest_hex(&made.key);
    let wrong = format!("{}{}", &made.key[..made.key.len() - 64], "0".repeat(64));
    assert_ne!(wrong, made.key);
    // What the pipeline does in memory with a presented key and the look-up item it read.
    let verify =
        |presented: &str| api_key::parse(presented).is_some() && pepper.verify(presented, &stored);
    assert!(verify(&made.key));
    assert!(!verify(&wrong));

    let mut group = c.benchmark_group("api_key");
    configure(&mut group);
    group.bench_function("verify", |b| b.iter(|| verify(black_box(&made.key))));
    group.bench_function("verify_wrong_secret", |b| {
        b.iter(|| verify(black_box(&wrong)))
    });
    group.finish();
}

criterion_group!(
    hot_paths,
    bench_jwt,
    bench_rbac,
    bench_webhook,
    bench_crypto,
    bench_api_key
);
criterion_main!(hot_paths);
