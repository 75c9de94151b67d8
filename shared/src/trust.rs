//! The root certificates every outbound HTTPS client trusts: Mozilla's, compiled into the binary.
//!
//! The default clients read the operating system's trust store when they are built, at cold start:
//! the SDK's (once per SDK client) and reqwest's platform verifier. On a Debian host that was a
//! ~140-certificate bundle plus 292 files of `/etc/ssl/certs` per client, most of a function's
//! init time (docs/BENCHMARKS.md). Compiled in, init reads no file and behaves the same on every
//! host. The AWS SDK clients trust only the Amazon Trust Services roots, taken from Mozilla's set
//! as DER certificates (`webpki-root-certs`) and handed to the SDK as PEM; the reqwest client for
//! the JWKS and Stripe (public CAs) trusts the whole set as pre-parsed trust anchors
//! (`webpki-roots`). `cargo update -p webpki-root-certs -p webpki-roots` refreshes both.

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;

/// Mozilla's root certificates (DER).
pub fn mozilla_roots() -> impl Iterator<Item = &'static [u8]> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|certificate| certificate.as_ref())
}

/// The roots AWS documents for its endpoints (Amazon Trust Services): Amazon Root CA 1-4 and the
/// Starfield Services root that cross-signs them.
const AWS_ROOT_NAMES: [&[u8]; 2] = [
    b"Amazon Root CA ",
    b"Starfield Services Root Certificate Authority - G2",
];

/// The roots the AWS SDK clients trust: [`AWS_ROOT_NAMES`] out of Mozilla's set, as one PEM bundle
/// (the SDK's trust store takes PEM), encoded once per process. The SDK decodes the bundle when it
/// builds a client, with constant-time base64: all ~150 roots cost about a millisecond per client
/// at cold start, five cost nothing. DynamoDB and Secrets Manager endpoints, VPC endpoints
/// included, present Amazon-issued certificates.
pub fn aws_roots_pem() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(|| pem_bundle(aws_roots()))
}

fn aws_roots() -> impl Iterator<Item = &'static [u8]> {
    let finders = AWS_ROOT_NAMES.map(memchr::memmem::Finder::new);
    mozilla_roots().filter(move |der| {
        // A root is self-signed: its issuer, within the first bytes, is its subject.
        let head = &der[..der.len().min(ISSUER_WITHIN)];
        finders.iter().any(|finder| finder.find(head).is_some())
    })
}

/// How far into a root certificate its issuer name is sure to lie (after the version, serial and
/// signature algorithm); the test checks that all five AWS roots are found.
const ISSUER_WITHIN: usize = 384;

/// DER certificates → a PEM bundle (`CERTIFICATE` blocks, 64-character base64 lines).
fn pem_bundle<'a>(certificates: impl Iterator<Item = &'a [u8]>) -> String {
    let mut pem = String::new();
    for der in certificates {
        let encoded = base64::engine::general_purpose::STANDARD.encode(der);
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in encoded.as_bytes().chunks(64) {
            // base64 output is ASCII, so every 64-byte chunk is valid UTF-8.
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem
}

/// Makes ring the process-wide default crypto provider of rustls. reqwest is built without a
/// provider of its own: a client built without [`reqwest_client`]'s preconfigured TLS (the tests'
/// plain-HTTP clients) panics in `build` unless one is installed. Idempotent.
pub fn install_ring_defaults() {
    // Err: already installed, and ring is the only provider in this build.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTPS client could not be built (it never fails with ring's provider and these roots; the
/// error exists so that a future change fails at init with a reason rather than panicking).
#[derive(Debug, thiserror::Error)]
#[error("the HTTPS client could not be built: {0}")]
pub struct HttpClientError(String);

/// The HTTPS client for the identity provider's JWKS and for Stripe: reqwest over rustls (ring),
/// trusting Mozilla's roots as pre-parsed trust anchors (`webpki-roots`: no certificate is parsed
/// at cold start, no file read). HTTP/1.1.
pub fn reqwest_client(timeout: Duration) -> Result<reqwest::Client, HttpClientError> {
    reqwest_client_with(timeout, |builder| builder)
}

/// [`reqwest_client`] with more settings of the caller's (the webhook notifier's: no redirects,
/// its own resolver).
pub fn reqwest_client_with(
    timeout: Duration,
    customize: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> Result<reqwest::Client, HttpClientError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| HttpClientError(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    customize(reqwest::Client::builder())
        .timeout(timeout)
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|error| HttpClientError(error.to_string()))
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::pem::PemObject as _;

    use super::*;

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        memchr::memmem::find(haystack, needle).is_some()
    }

    #[test]
    fn a_pem_bundle_parses_back_to_the_same_certificates() {
        let roots: Vec<&[u8]> = mozilla_roots().collect();
        assert!(roots.len() > 100, "Mozilla's set has well over 100 roots");
        let pem = pem_bundle(roots.iter().copied());
        let parsed: Vec<Vec<u8>> = pem_blocks(&pem);
        assert_eq!(parsed.len(), roots.len());
        for (parsed, root) in parsed.iter().zip(roots) {
            assert_eq!(parsed.as_slice(), root);
        }
        assert!(pem.lines().all(|line| line.len() <= 64));
    }

    #[test]
    fn the_sdk_trusts_exactly_the_five_amazon_trust_services_roots() {
        let pem = pem_blocks(aws_roots_pem());
        assert_eq!(
            pem.len(),
            5,
            "Amazon Root CA 1-4 and Starfield Services Root G2"
        );
        for name in [
            "Amazon Root CA 1",
            "Amazon Root CA 2",
            "Amazon Root CA 3",
            "Amazon Root CA 4",
        ] {
            let holding = pem
                .iter()
                .filter(|der| contains(der, name.as_bytes()))
                .count();
            assert_eq!(holding, 1, "{name}");
        }
        let starfield = pem
            .iter()
            .filter(|der| contains(der, AWS_ROOT_NAMES[1]))
            .count();
        assert_eq!(starfield, 1);
        // A public root the JWKS client trusts is not trusted for AWS endpoints.
        assert!(mozilla_roots().any(|der| contains(der, b"DigiCert Global Root G2")));
        assert!(!pem.iter().any(|der| contains(der, b"DigiCert")));
    }

    /// Decodes the bundle independently of the encoder, with rustls's PEM reader.
    fn pem_blocks(pem: &str) -> Vec<Vec<u8>> {
        rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
            .map(|certificate| certificate.expect("a PEM certificate").to_vec())
            .collect()
    }
}
