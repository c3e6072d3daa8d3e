//! JWT verification: the keys built from the config (HS256 secret, RS256 or
//! ES256 public key), the signature checked by `jsonwebtoken`, and the
//! claims (`exp`, `nbf`, `iss`, `aud`, `sub`, `channels`) checked here
//! against the time passed in.
//!
//! The token header is read before verification only to pick the key; an
//! algorithm without a configured key is refused.

use std::sync::Arc;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::errors::{
    BAD_ALG, BAD_CLAIMS, BAD_SIG, CRIT, EXPIRED, MALFORMED, NOT_YET, NO_EXP, WRONG_AUD, WRONG_ISS,
};
use super::identity::{Identity, IdentityKind, Permissions};
use super::{AuthConfig, AuthConfigError, AuthError};

/// Smallest HS256 secret accepted: 256 bits (RFC 7518 section 3.2).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// The keys and claim requirements for JWTs, built once from the config.
pub(super) struct JwtVerifier {
    hs256: Option<DecodingKey>,
    public: Option<(Algorithm, DecodingKey)>,
    issuer: Option<Box<str>>,
    audience: Option<Box<str>>,
    leeway_s: u64,
}

impl JwtVerifier {
    /// Checks the secret's length and reads the public key file.
    pub(super) fn new(cfg: &AuthConfig) -> Result<JwtVerifier, AuthConfigError> {
        let secret = cfg.jwt_hs256_secret.as_bytes();
        if !secret.is_empty() && secret.len() < MIN_HS256_SECRET_BYTES {
            return Err(AuthConfigError::Hs256SecretTooShort { len: secret.len() });
        }
        let hs256 = (!secret.is_empty()).then(|| DecodingKey::from_secret(secret));

        let (alg, alg_name, kind) = match cfg.jwt_public_key_alg.as_str() {
            "RS256" => (Algorithm::RS256, "RS256", "RSA"),
            "ES256" => (Algorithm::ES256, "ES256", "P-256 EC"),
            other => {
                return Err(AuthConfigError::UnsupportedPublicKeyAlg { alg: other.to_owned() })
            }
        };
        let public = match cfg.jwt_public_key_file.as_str() {
            "" => None,
            file => {
                let pem = std::fs::read(file).map_err(|source| {
                    AuthConfigError::PublicKeyUnreadable { file: file.to_owned(), source }
                })?;
                let key = match alg {
                    Algorithm::ES256 => DecodingKey::from_ec_pem(&pem),
                    _ => DecodingKey::from_rsa_pem(&pem),
                }
                .map_err(|source| AuthConfigError::PublicKeyInvalid {
                    file: file.to_owned(),
                    kind,
                    alg: alg_name,
                    source,
                })?;
                Some((alg, key))
            }
        };
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.into());
        Ok(JwtVerifier {
            hs256,
            public,
            issuer: non_empty(&cfg.jwt_issuer),
            audience: non_empty(&cfg.jwt_audience),
            leeway_s: cfg.leeway_s,
        })
    }

    /// True when some JWT can be accepted (a secret or a public key is set).
    pub(super) fn is_configured(&self) -> bool {
        self.hs256.is_some() || self.public.is_some()
    }

    /// What `Debug` shows: which keys exist (never the keys themselves).
    pub(super) fn describe(&self, f: &mut std::fmt::DebugStruct<'_, '_>) {
        f.field("hs256", &self.hs256.is_some())
            .field("public", &self.public.as_ref().map(|(alg, _)| alg))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_s", &self.leeway_s);
    }

    /// Verifies `token` at `now_unix`; the identity may use the publish API
    /// when `publish_api`.
    pub(super) fn verify(
        &self,
        token: &[u8],
        now_unix: u64,
        publish_api: bool,
    ) -> Result<Identity, AuthError> {
        let header = jwt_header(token)?;
        if header.crit.is_some() {
            return Err(CRIT);
        }
        let (alg, key) = match header.alg.as_deref() {
            Some("HS256") => (Algorithm::HS256, self.hs256.as_ref()),
            Some("RS256") => (Algorithm::RS256, self.public_key_for(Algorithm::RS256)),
            Some("ES256") => (Algorithm::ES256, self.public_key_for(Algorithm::ES256)),
            _ => (Algorithm::HS256, None),
        };
        let key = key.ok_or(BAD_ALG)?;

        let mut validation = Validation::new(alg);
        // Claims are checked below against the time passed in; the crate
        // only verifies the signature.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let verified: serde_json::Value = jsonwebtoken::decode(token, key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::InvalidSignature | K::InvalidEcdsaKey | K::InvalidRsaKey(_) => BAD_SIG,
                    K::InvalidAlgorithm | K::InvalidAlgorithmName | K::MissingAlgorithm => BAD_ALG,
                    _ => MALFORMED,
                }
            })?
            .claims;
        let claims = Claims::deserialize(verified).map_err(|_| BAD_CLAIMS)?;

        let now = now_unix as f64;
        let leeway = self.leeway_s as f64;
        let exp = claims.exp.ok_or(NO_EXP)?;
        if now >= exp + leeway {
            return Err(EXPIRED);
        }
        if let Some(nbf) = claims.nbf {
            if now + leeway < nbf {
                return Err(NOT_YET);
            }
        }
        if let Some(iss) = &self.issuer {
            if claims.iss.as_deref() != Some(&**iss) {
                return Err(WRONG_ISS);
            }
        }
        if let Some(aud) = &self.audience {
            let ok = match &claims.aud {
                Some(Audience::One(a)) => a == &**aud,
                Some(Audience::Many(list)) => list.iter().any(|a| a == &**aud),
                None => false,
            };
            if !ok {
                return Err(WRONG_AUD);
            }
        }

        let subject = claims.sub.filter(|s| !s.is_empty());
        let perms = claims
            .channels
            .map(|c| Arc::new(Permissions::resolve(&c.subscribe, &c.publish, subject.as_deref())));
        Ok(Identity {
            subject: subject.map(String::into_boxed_str),
            kind: IdentityKind::Jwt,
            publish_api,
            // Tokens never open the dashboard when auth is required: that
            // takes an API key with `admin = true`.
            admin: publish_api,
            perms,
        })
    }

    fn public_key_for(&self, alg: Algorithm) -> Option<&DecodingKey> {
        match &self.public {
            Some((a, key)) if *a == alg => Some(key),
            _ => None,
        }
    }
}

/// The parts of a JOSE header looked at before verification.
#[derive(Deserialize)]
struct JoseHeader {
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// Decodes the token's header without trusting it: only to pick the key.
fn jwt_header(token: &[u8]) -> Result<JoseHeader, AuthError> {
    let end = token.iter().position(|&b| b == b'.').ok_or(MALFORMED)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&token[..end])
        .map_err(|_| MALFORMED)?;
    serde_json::from_slice(&json).map_err(|_| MALFORMED)
}

/// The claims read from a verified token. A claim of the wrong type fails
/// deserialization (the token is refused), it is never skipped.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    channels: Option<ChannelsClaim>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct ChannelsClaim {
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
}
