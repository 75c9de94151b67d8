//! A local identity provider: an ES256 key kept in `.tollgate/`, its JWKS, and tokens minted with
//! it. Used only when `JWT_ISSUER` is unset; it never signs anything a deployed function trusts.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde::Serialize;

/// The `iss` of every locally minted token.
pub const LOCAL_ISSUER: &str = "tollgate-dev";
/// The `aud` of every locally minted token, and the audience the gateway (and `sam local`,
/// through env.example.json's `JWT_AUDIENCE`) requires of the local issuer's tokens.
pub const LOCAL_AUDIENCE: &str = "tollgate-dev-api";

#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("could not read or write the local issuer key at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the local issuer key at {0} is not a valid P-256 PKCS#8 key; delete it to make a new one"
    )]
    BadKey(PathBuf),
    #[error("could not generate a key")]
    KeyGeneration,
    #[error("could not sign a token: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

/// Claims of a locally minted token, shaped like an Auth0/Clerk session token.
#[derive(Debug, Clone, Serialize)]
pub struct TokenClaims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

pub struct LocalIssuer {
    pkcs8: Vec<u8>,
    kid: String,
    public_point: Vec<u8>,
}

impl LocalIssuer {
    /// A fresh in-memory key (tests).
    pub fn generate() -> Result<Self, IssuerError> {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| IssuerError::KeyGeneration)?;
        Self::from_pkcs8(pkcs8.as_ref().to_vec()).ok_or(IssuerError::KeyGeneration)
    }

    /// The key kept at `path`, made on first use (file mode 0600) so tokens survive restarts.
    pub fn load_or_create(path: &Path) -> Result<Self, IssuerError> {
        let io = |source| IssuerError::Io {
            path: path.to_owned(),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                Self::from_pkcs8(bytes).ok_or_else(|| IssuerError::BadKey(path.to_owned()))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let issuer = Self::generate()?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                write_private(path, &issuer.pkcs8).map_err(io)?;
                Ok(issuer)
            }
            Err(error) => Err(io(error)),
        }
    }

    fn from_pkcs8(pkcs8: Vec<u8>) -> Option<Self> {
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &pkcs8,
            &SystemRandom::new(),
        )
        .ok()?;
        let public_point = pair.public_key().as_ref().to_vec();
        // The kid names the key, so a new key is told apart from the old one by verifiers.
        let digest = ring::digest::digest(&ring::digest::SHA256, &public_point);
        let kid = format!("dev-{}", &URL_SAFE_NO_PAD.encode(digest.as_ref())[..16]);
        Some(Self {
            pkcs8,
            kid,
            public_point,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key set, as `/.well-known/jwks.json` serves it.
    pub fn jwks(&self) -> serde_json::Value {
        // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
        let coordinates = self.public_point.get(1..).unwrap_or_default();
        let (x, y) = coordinates.split_at(coordinates.len() / 2);
        serde_json::json!({
            "keys": [{
                "kty": "EC",
                "crv": "P-256",
                "alg": "ES256",
                "use": "sig",
                "kid": self.kid,
                "x": URL_SAFE_NO_PAD.encode(x),
                "y": URL_SAFE_NO_PAD.encode(y),
            }]
        })
    }

    /// The signing key, for callers that build their own claims (tests).
    pub fn encoding_key(&self) -> EncodingKey {
        EncodingKey::from_ec_der(&self.pkcs8)
    }

    /// Signs `claims` with the local key.
    pub fn sign(&self, claims: &impl Serialize) -> Result<String, IssuerError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding_key())?)
    }

    /// A token for `sub`, valid for `ttl_seconds` from now.
    pub fn mint(
        &self,
        sub: &str,
        email: Option<&str>,
        name: Option<&str>,
        ttl_seconds: i64,
    ) -> Result<String, IssuerError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.sign(&TokenClaims {
            sub: sub.to_owned(),
            iss: LOCAL_ISSUER.to_owned(),
            aud: LOCAL_AUDIENCE.to_owned(),
            iat: now,
            nbf: now,
            exp: now + ttl_seconds,
            email: email.map(str::to_owned),
            email_verified: email.map(|_| true),
            name: name.map(str::to_owned),
        })
    }
}

/// Creates `path` readable by its owner only; fails when it exists.
#[cfg(unix)]
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

#[cfg(not(unix))]
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}
