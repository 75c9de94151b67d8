//! jsonwebtoken's cryptography over ring ([`PROVIDER`]), the crypto library the TLS stack already
//! uses: jsonwebtoken is built without a provider of its own, so there is one crypto library in
//! every binary. [`install`] makes it the process default; [`super::jwt::JwtVerifier::new`] calls
//! it, and so must anything that signs a token first (tests, the dev gateway's token command).
//!
//! Verification covers HS256/384/512, RS256/384/512 (RSA-2048 to 8192), PS256/384/512 and
//! ES256/384; Tollgate itself accepts only RS256 and ES256 tokens (`jwt::key_slot`). Signing covers
//! the same algorithms and serves only tests and the dev gateway. EdDSA is refused.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair as _};
use ring::{digest, hmac};

/// jsonwebtoken's crypto provider over ring.
pub static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: rsa_components_from_private_key,
        rsa_pub_components_from_public_key: |_| Err(ErrorKind::UnsupportedAlgorithm.into()),
        ec_pub_components_from_private_key: ec_components_from_private_key,
        ed_pub_components_from_private_key: |_, _| Err(ErrorKind::UnsupportedAlgorithm.into()),
        compute_digest,
    },
};

/// Makes [`PROVIDER`] jsonwebtoken's process default. Idempotent; cheap after the first call.
pub fn install() {
    // Err means a provider is already installed: ours, since no other exists in this build.
    let _ = PROVIDER.install_default();
}

fn hmac_algorithm(alg: Algorithm) -> Option<hmac::Algorithm> {
    match alg {
        Algorithm::HS256 => Some(hmac::HMAC_SHA256),
        Algorithm::HS384 => Some(hmac::HMAC_SHA384),
        Algorithm::HS512 => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

fn rsa_verification(alg: Algorithm) -> Option<&'static sig::RsaParameters> {
    match alg {
        Algorithm::RS256 => Some(&sig::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Some(&sig::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Some(&sig::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Some(&sig::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Some(&sig::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Some(&sig::RSA_PSS_2048_8192_SHA512),
        _ => None,
    }
}

fn rsa_signing(alg: Algorithm) -> Option<&'static dyn sig::RsaEncoding> {
    match alg {
        Algorithm::RS256 => Some(&sig::RSA_PKCS1_SHA256),
        Algorithm::RS384 => Some(&sig::RSA_PKCS1_SHA384),
        Algorithm::RS512 => Some(&sig::RSA_PKCS1_SHA512),
        Algorithm::PS256 => Some(&sig::RSA_PSS_SHA256),
        Algorithm::PS384 => Some(&sig::RSA_PSS_SHA384),
        Algorithm::PS512 => Some(&sig::RSA_PSS_SHA512),
        _ => None,
    }
}

fn ecdsa_verification(alg: Algorithm) -> Option<&'static sig::EcdsaVerificationAlgorithm> {
    match alg {
        Algorithm::ES256 => Some(&sig::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Some(&sig::ECDSA_P384_SHA384_FIXED),
        _ => None,
    }
}

fn ecdsa_signing(alg: Algorithm) -> Option<&'static sig::EcdsaSigningAlgorithm> {
    match alg {
        Algorithm::ES256 => Some(&sig::ECDSA_P256_SHA256_FIXED_SIGNING),
        Algorithm::ES384 => Some(&sig::ECDSA_P384_SHA384_FIXED_SIGNING),
        _ => None,
    }
}

/// A key of the algorithm's own family, and an algorithm this provider implements.
fn check_family(alg: Algorithm, family: AlgorithmFamily) -> Result<(), Error> {
    if alg.family() == AlgorithmFamily::Ed {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    if alg.family() != family {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    Ok(())
}

struct RingVerifier {
    alg: Algorithm,
    key: DecodingKey,
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    check_family(*alg, key.family())?;
    Ok(Box::new(RingVerifier {
        alg: *alg,
        key: key.clone(),
    }))
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let verified = match self.key.kind() {
            DecodingKeyKind::SecretOrDer(bytes) => {
                if let Some(alg) = hmac_algorithm(self.alg) {
                    // Constant-time comparison of the tag.
                    hmac::verify(&hmac::Key::new(alg, bytes), message, signature)
                } else if let Some(params) = rsa_verification(self.alg) {
                    // PKCS#1 RSAPublicKey DER (a PEM public key).
                    sig::UnparsedPublicKey::new(params, bytes).verify(message, signature)
                } else if let Some(alg) = ecdsa_verification(self.alg) {
                    // The uncompressed point 0x04 || x || y (a JWK's or a PEM's).
                    sig::UnparsedPublicKey::new(alg, bytes).verify(message, signature)
                } else {
                    Err(ring::error::Unspecified)
                }
            }
            DecodingKeyKind::RsaModulusExponent { n, e } => match rsa_verification(self.alg) {
                Some(params) => {
                    sig::RsaPublicKeyComponents { n, e }.verify(params, message, signature)
                }
                None => Err(ring::error::Unspecified),
            },
        };
        verified.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

enum SigningKey {
    Hmac(hmac::Key),
    Rsa(sig::RsaKeyPair, &'static dyn sig::RsaEncoding),
    Ecdsa(sig::EcdsaKeyPair),
}

struct RingSigner {
    alg: Algorithm,
    key: SigningKey,
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    check_family(*alg, key.family())?;
    let bytes = key.as_bytes();
    let signing = if let Some(hmac_alg) = hmac_algorithm(*alg) {
        SigningKey::Hmac(hmac::Key::new(hmac_alg, bytes))
    } else if let Some(padding) = rsa_signing(*alg) {
        // jsonwebtoken keeps an RSA private key as PKCS#1 (a PKCS#8 PEM is unwrapped).
        let pair = sig::RsaKeyPair::from_der(bytes)
            .or_else(|_| sig::RsaKeyPair::from_pkcs8(bytes))
            .map_err(|err| ErrorKind::InvalidRsaKey(err.to_string()))?;
        SigningKey::Rsa(pair, padding)
    } else if let Some(ecdsa_alg) = ecdsa_signing(*alg) {
        let pair = sig::EcdsaKeyPair::from_pkcs8(ecdsa_alg, bytes, &SystemRandom::new())
            .map_err(|_| ErrorKind::InvalidEcdsaKey)?;
        SigningKey::Ecdsa(pair)
    } else {
        return Err(ErrorKind::InvalidAlgorithm.into());
    };
    Ok(Box::new(RingSigner {
        alg: *alg,
        key: signing,
    }))
}

impl Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let rng = SystemRandom::new();
        match &self.key {
            SigningKey::Hmac(key) => Ok(hmac::sign(key, message).as_ref().to_vec()),
            SigningKey::Rsa(pair, padding) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(*padding, &rng, message, &mut signature)
                    .map_err(|_| signature::Error::new())?;
                Ok(signature)
            }
            SigningKey::Ecdsa(pair) => pair
                .sign(&rng, message)
                .map(|signature| signature.as_ref().to_vec())
                .map_err(|_| signature::Error::new()),
        }
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn rsa_components_from_private_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let pair =
        sig::RsaKeyPair::from_der(der).map_err(|err| ErrorKind::InvalidRsaKey(err.to_string()))?;
    let public = sig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    Ok((public.n, public.e))
}

fn ec_components_from_private_key(
    pkcs8: &[u8],
    alg: Algorithm,
) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>), Error> {
    let (signing, curve, coordinate_len) = match alg {
        Algorithm::ES256 => (
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            EllipticCurve::P256,
            32,
        ),
        Algorithm::ES384 => (
            &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
            EllipticCurve::P384,
            48,
        ),
        _ => return Err(ErrorKind::InvalidEcdsaKey.into()),
    };
    let pair = sig::EcdsaKeyPair::from_pkcs8(signing, pkcs8, &SystemRandom::new())
        .map_err(|_| ErrorKind::InvalidEcdsaKey)?;
    match pair.public_key().as_ref().split_first() {
        Some((4, point)) if point.len() == 2 * coordinate_len => {
            let (x, y) = point.split_at(coordinate_len);
            Ok((curve, x.to_vec(), y.to_vec()))
        }
        _ => Err(ErrorKind::InvalidEcdsaKey.into()),
    }
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>, Error> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
    };
    Ok(digest::digest(algorithm, data).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::PrivatePkcs8KeyDer;
    use rustls::pki_types::pem::PemObject as _;

    use super::*;

    const RSA_PRIVATE: &str = include_str!("../../testdata/jwt-rsa-1.key.pem");
    const RSA_PUBLIC: &str = include_str!("../../testdata/jwt-rsa-1.pub.pem");
    const OTHER_RSA_PUBLIC: &str = include_str!("../../testdata/jwt-rsa-2.pub.pem");
    const MESSAGE: &[u8] = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyXzEifQ";

    fn rsa_pair() -> sig::RsaKeyPair {
        let pkcs8 = PrivatePkcs8KeyDer::from_pem_slice(RSA_PRIVATE.as_bytes()).unwrap();
        sig::RsaKeyPair::from_pkcs8(pkcs8.secret_pkcs8_der()).unwrap()
    }

    fn sign(alg: Algorithm, key: &EncodingKey) -> Vec<u8> {
        (PROVIDER.signer_factory)(&alg, key)
            .unwrap()
            .try_sign(MESSAGE)
            .unwrap()
    }

    fn verifies(alg: Algorithm, key: &DecodingKey, message: &[u8], signature: &[u8]) -> bool {
        (PROVIDER.verifier_factory)(&alg, key)
            .unwrap()
            .verify(message, &signature.to_vec())
            .is_ok()
    }

    /// A fresh EC key for `alg`: PKCS#8 signing key and the public point as a decoding key.
    fn ec_keys(alg: Algorithm) -> (EncodingKey, DecodingKey) {
        let signing = ecdsa_signing(alg).unwrap();
        let rng = SystemRandom::new();
        let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
        let pair = sig::EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng).unwrap();
        (
            EncodingKey::from_ec_der(pkcs8.as_ref()),
            DecodingKey::from_ec_der(pair.public_key().as_ref()),
        )
    }

    fn rsa_keys() -> (EncodingKey, DecodingKey, DecodingKey) {
        let encoding = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        let pem = DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).unwrap();
        let pair = rsa_pair();
        let public = sig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
        let components = DecodingKey::from_rsa_raw_components(&public.n, &public.e);
        (encoding, pem, components)
    }

    #[test]
    fn rsa_signatures_verify_with_the_pem_and_the_jwk_form_and_only_for_this_message() {
        let (encoding, pem, components) = rsa_keys();
        let other = DecodingKey::from_rsa_pem(OTHER_RSA_PUBLIC.as_bytes()).unwrap();
        for alg in [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ] {
            let signature = sign(alg, &encoding);
            assert_eq!(signature.len(), 256, "{alg:?}");
            assert!(verifies(alg, &pem, MESSAGE, &signature), "{alg:?}");
            assert!(verifies(alg, &components, MESSAGE, &signature), "{alg:?}");
            assert!(
                !verifies(alg, &components, b"tampered", &signature),
                "{alg:?}"
            );
            assert!(!verifies(alg, &other, MESSAGE, &signature), "{alg:?}");
        }
        // A PKCS#1 v1.5 signature is not a PSS one, nor one over another hash.
        let rs256 = sign(Algorithm::RS256, &encoding);
        assert!(!verifies(Algorithm::PS256, &components, MESSAGE, &rs256));
        assert!(!verifies(Algorithm::RS384, &components, MESSAGE, &rs256));
    }

    #[test]
    fn ecdsa_signatures_verify_only_with_their_key_and_message() {
        for alg in [Algorithm::ES256, Algorithm::ES384] {
            let (encoding, decoding) = ec_keys(alg);
            let (_, stranger) = ec_keys(alg);
            let signature = sign(alg, &encoding);
            assert!(verifies(alg, &decoding, MESSAGE, &signature), "{alg:?}");
            assert!(
                !verifies(alg, &decoding, b"tampered", &signature),
                "{alg:?}"
            );
            assert!(!verifies(alg, &stranger, MESSAGE, &signature), "{alg:?}");
            let mut flipped = signature.clone();
            flipped[0] ^= 1;
            assert!(!verifies(alg, &decoding, MESSAGE, &flipped), "{alg:?}");
        }
    }

    #[test]
    fn hmac_tags_verify_only_with_their_secret() {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let signature = sign(alg, &EncodingKey::from_secret(b"secret"));
            let right = DecodingKey::from_secret(b"secret");
            let wrong = DecodingKey::from_secret(b"secreT");
            assert!(verifies(alg, &right, MESSAGE, &signature), "{alg:?}");
            assert!(!verifies(alg, &wrong, MESSAGE, &signature), "{alg:?}");
            assert!(!verifies(alg, &right, MESSAGE, &signature[1..]), "{alg:?}");
        }
    }

    #[test]
    fn a_key_of_another_family_or_eddsa_is_refused() {
        let (_, rsa_pem, _) = rsa_keys();
        let (ec_encoding, ec_decoding) = ec_keys(Algorithm::ES256);
        let hmac = DecodingKey::from_secret(RSA_PUBLIC.as_bytes());
        // The classic confusions: an RSA public key as an HMAC secret, an EC key for RS256.
        assert!((PROVIDER.verifier_factory)(&Algorithm::HS256, &rsa_pem).is_err());
        assert!((PROVIDER.verifier_factory)(&Algorithm::RS256, &hmac).is_err());
        assert!((PROVIDER.verifier_factory)(&Algorithm::RS256, &ec_decoding).is_err());
        assert!((PROVIDER.verifier_factory)(&Algorithm::EdDSA, &ec_decoding).is_err());
        assert!((PROVIDER.signer_factory)(&Algorithm::RS256, &ec_encoding).is_err());
        assert!((PROVIDER.signer_factory)(&Algorithm::EdDSA, &ec_encoding).is_err());
        // An EC key of the wrong curve does not parse as a signing key.
        assert!((PROVIDER.signer_factory)(&Algorithm::ES384, &ec_encoding).is_err());
    }

    #[test]
    fn installed_it_serves_jsonwebtoken_encode_and_decode() {
        install();
        install();
        let (encoding, _, components) = rsa_keys();
        let claims = serde_json::json!({"sub": "user_1", "exp": 4_000_000_000_u64});
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::RS256),
            &claims,
            &encoding,
        )
        .unwrap();
        let validation = jsonwebtoken::Validation::new(Algorithm::RS256);
        let decoded =
            jsonwebtoken::decode::<serde_json::Value>(&token, &components, &validation).unwrap();
        assert_eq!(decoded.claims, claims);
        let mut forged = token.clone();
        forged.push('A');
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(&forged, &components, &validation).is_err()
        );
    }

    #[test]
    fn key_utilities_give_public_components_and_digests() {
        let pair = rsa_pair();
        let encoding = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        let (n, e) = rsa_components_from_private_key(encoding.as_bytes()).unwrap();
        assert_eq!(
            n,
            sig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public()).n
        );
        assert_eq!(n.len(), 256);
        assert_eq!(e, [1, 0, 1]);
        let (encoding, _) = ec_keys(Algorithm::ES256);
        let (curve, x, y) =
            ec_components_from_private_key(encoding.as_bytes(), Algorithm::ES256).unwrap();
        assert_eq!((curve, x.len(), y.len()), (EllipticCurve::P256, 32, 32));
        assert_eq!(
            hex::encode(compute_digest(b"abc", ThumbprintHash::SHA256).unwrap()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
