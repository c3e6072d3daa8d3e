//! Authentication at the handshake and authorization of channel actions,
//! sans I/O.
//!
//! [`Authenticator::new`] is built once at start-up from [`AuthConfig`]
//! (it reads the public key file, if any). [`Authenticator::authenticate`]
//! runs once per upgrade (and per `POST /api/publish`) on the parsed request
//! head and returns the connection's [`Identity`], or an [`AuthError`] that
//! becomes a `401` with a `WWW-Authenticate` header before the upgrade. The
//! identity then answers [`Identity::can_subscribe`] and
//! [`Identity::can_publish`] for every channel action. Time is passed in;
//! nothing here reads a clock, touches a socket or logs.
//!
//! # Credentials
//!
//! Looked for in this order, the first one present is used:
//! 1. `Authorization: Bearer <credential>` (scheme case-insensitive; an
//!    `Authorization` header with another scheme is ignored);
//! 2. the query parameter `query_param` (default `token`), percent-decoded
//!    (`+` stays `+`, so base64 API keys survive unencoded);
//! 3. the cookie `cookie` (default `wsedge_token`), raw (surrounding double
//!    quotes removed).
//!
//! An empty credential counts as absent. When no JWT key and no API key is
//! configured, credentials are not looked at all (a default config behaves
//! as before auth existed).
//!
//! A credential with exactly two dots is a JWT; anything else is an API key.
//! A credential that is present but fails is always refused, even when
//! `required` is false: a client that sends a bad token learns it.
//!
//! # JWT
//!
//! Signature checked by `jsonwebtoken`. The token header's `alg` must be one
//! this server is configured for: `HS256` when `jwt_hs256_secret` is set,
//! `jwt_public_key_alg` (`RS256` or `ES256`) when `jwt_public_key_file` is
//! set. Each algorithm has its own key, so `alg: none` and algorithm
//! confusion (an `HS256` token whose HMAC key is the public key's PEM) are
//! refused as [`AuthErrorKind::BadAlgorithm`]. A header with `crit` is
//! refused (no extension is understood). Claims are validated here, after
//! the signature, against the `now_unix` passed in:
//! - `exp` (a number) is required; the token is expired once
//!   `now >= exp + leeway_s`;
//! - `nbf`, when present, must be a number; not yet valid while
//!   `now + leeway_s < nbf`;
//! - `iss` must equal `jwt_issuer` when that is set;
//! - `aud` (a string or an array of strings) must contain `jwt_audience`
//!   when that is set;
//! - `sub` (a string) becomes [`Identity::subject`]; an empty `sub` counts as
//!   none;
//! - `channels`: `{"subscribe": [patterns], "publish": [patterns]}`. When the
//!   claim is absent (or `null`) the token may subscribe and publish
//!   anything. When it is present, it is the whole grant: a list left out of
//!   it grants nothing (`{"subscribe": ["news:*"]}` may publish nowhere).
//!
//! A claim of the wrong JSON type refuses the token (`Invalid`): a string
//! `exp` or `nbf` never skips the check.
//!
//! # API keys
//!
//! Compared in constant time (SHA-1 digests of the candidate and of every
//! configured key are compared without early exit, so the timing depends on
//! neither the keys' contents nor their lengths). The identity's subject is
//! `apikey:NAME`; its permissions are the key's `subscribe` / `publish`
//! lists; only a key with `publish_api = true` may use the backend publish
//! API when auth is required.
//!
//! # Patterns
//!
//! A pattern is an exact room name, or a prefix followed by a final `*`
//! (`chat:*` matches `chat:` + anything, `*` alone matches every room).
//! `{sub}` anywhere in a pattern is replaced by the identity's subject when
//! the identity is made (`user:{sub}` becomes `user:alice`; for an API key
//! the subject is `apikey:NAME`). Whether a pattern is a prefix is decided
//! before the substitution, so a subject containing `*` never widens a
//! grant. A pattern with `{sub}` grants nothing to an identity without a
//! subject (anonymous users, JWTs without `sub`). In the config a `*`
//! anywhere but at the end is refused at start-up; in a token such a
//! pattern is taken literally (and so matches no valid room name).
//!
//! # Anonymous users
//!
//! With `required = false` (the default) a request without credentials gets
//! [`Identity::anonymous_all`]: any route, any room, the publish API. With
//! `required = true` only paths in `anonymous_routes` admit a request
//! without credentials, and that identity may subscribe to
//! `anonymous_subscribe` and publish to `anonymous_publish`; elsewhere it is
//! refused with [`AuthErrorKind::Missing`].

mod config;
mod credentials;
mod errors;
mod identity;
mod jwt;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use sha1::{Digest, Sha1};

use crate::handshake::Request;
use config::check_patterns;
use credentials::looks_like_jwt;
use errors::{MISSING, UNKNOWN_KEY};
use identity::Permissions;
use jwt::JwtVerifier;

pub use config::{ApiKeyConfig, AuthConfig};
pub use errors::{AuthConfigError, AuthError, AuthErrorKind};
pub use identity::{Identity, IdentityKind};
pub use jwt::MIN_HS256_SECRET_BYTES;

/// A configured API key, ready to compare.
struct ApiKey {
    digest: [u8; 20],
    identity: Identity,
}

/// Checks credentials; built once at start-up, shared by all workers
/// (`Send + Sync`).
pub struct Authenticator {
    required: bool,
    jwt: JwtVerifier,
    query_param: Box<str>,
    cookie: Box<str>,
    anonymous_routes: Box<[Box<str>]>,
    anonymous: Identity,
    api_keys: Box<[ApiKey]>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Authenticator");
        d.field("required", &self.required);
        self.jwt.describe(&mut d);
        d.field("api_keys", &self.api_keys.len()).finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Validates `cfg` and reads the public key file. An error displays as
    /// one line naming the field (and the file), e.g.
    /// `auth.jwt_public_key_file: /etc/k.pem: cannot read: No such file or directory (os error 2)`.
    pub fn new(cfg: &AuthConfig) -> Result<Authenticator, AuthConfigError> {
        let jwt = JwtVerifier::new(cfg)?;

        for (field, list) in [
            ("auth.anonymous_subscribe", &cfg.anonymous_subscribe),
            ("auth.anonymous_publish", &cfg.anonymous_publish),
        ] {
            check_patterns(field, list)?;
        }
        for route in &cfg.anonymous_routes {
            if !route.starts_with('/') {
                return Err(AuthConfigError::RelativeAnonymousRoute { route: route.clone() });
            }
        }

        let mut api_keys: Vec<ApiKey> = Vec::with_capacity(cfg.api_keys.len());
        for (index, k) in cfg.api_keys.iter().enumerate() {
            let name = || k.name.clone();
            let earlier = &cfg.api_keys[..index];
            if k.name.is_empty() {
                return Err(AuthConfigError::ApiKeyNameEmpty { index });
            }
            if earlier.iter().any(|o| o.name == k.name) {
                return Err(AuthConfigError::ApiKeyNameReused { index, name: name() });
            }
            if k.key.is_empty() {
                return Err(AuthConfigError::ApiKeyEmpty { index, name: name() });
            }
            if !k.key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(AuthConfigError::ApiKeyNotVisibleAscii { index, name: name() });
            }
            if looks_like_jwt(k.key.as_bytes()) {
                return Err(AuthConfigError::ApiKeyLooksLikeJwt { index, name: name() });
            }
            if earlier.iter().any(|o| o.key == k.key) {
                return Err(AuthConfigError::ApiKeyReused { index, name: name() });
            }
            let field = format!("auth.api_keys[{index}]");
            check_patterns(&format!("{field}.subscribe"), &k.subscribe)?;
            check_patterns(&format!("{field}.publish"), &k.publish)?;
            let subject = format!("apikey:{}", k.name);
            let perms = Permissions::resolve(&k.subscribe, &k.publish, Some(&subject));
            api_keys.push(ApiKey {
                digest: Sha1::digest(k.key.as_bytes()).into(),
                identity: Identity {
                    subject: Some(subject.into_boxed_str()),
                    kind: IdentityKind::ApiKey,
                    publish_api: k.publish_api || !cfg.required,
                    admin: k.admin || !cfg.required,
                    perms: Some(Arc::new(perms)),
                },
            });
        }

        let anonymous = if cfg.required {
            Identity {
                subject: None,
                kind: IdentityKind::Anonymous,
                publish_api: false,
                admin: false,
                perms: Some(Arc::new(Permissions::resolve(
                    &cfg.anonymous_subscribe,
                    &cfg.anonymous_publish,
                    None,
                ))),
            }
        } else {
            Identity::anonymous_all()
        };

        Ok(Authenticator {
            required: cfg.required,
            jwt,
            query_param: cfg.query_param.as_str().into(),
            cookie: cfg.cookie.as_str().into(),
            anonymous_routes: cfg.anonymous_routes.iter().map(|r| r.as_str().into()).collect(),
            anonymous,
            api_keys: api_keys.into_boxed_slice(),
        })
    }

    /// True when some credential can be accepted (a JWT key or an API key).
    pub fn has_credentials(&self) -> bool {
        self.jwt.is_configured() || !self.api_keys.is_empty()
    }

    /// Who sent `req` (the upgrade request, or `POST /api/publish`) for the
    /// route `path`, at `now_unix` seconds since the epoch.
    pub fn authenticate(
        &self,
        req: &Request,
        path: &str,
        now_unix: u64,
    ) -> Result<Identity, AuthError> {
        let credential = if self.has_credentials() {
            credentials::find(req, &self.query_param, &self.cookie)
        } else {
            None
        };
        match credential {
            Some(c) if looks_like_jwt(&c) => self.jwt.verify(&c, now_unix, !self.required),
            Some(c) => self.check_api_key(&c),
            None if !self.required => Ok(Identity::anonymous_all()),
            None if self.anonymous_routes.iter().any(|r| **r == *path) => {
                Ok(self.anonymous.clone())
            }
            None => Err(MISSING),
        }
    }

    fn check_api_key(&self, candidate: &[u8]) -> Result<Identity, AuthError> {
        let digest: [u8; 20] = Sha1::digest(candidate).into();
        let mut found: Option<&ApiKey> = None;
        for key in self.api_keys.iter() {
            // Every key is compared, whatever matched before.
            if ct_eq(&digest, &key.digest) {
                found = Some(key);
            }
        }
        found.map(|k| k.identity.clone()).ok_or(UNKNOWN_KEY)
    }
}

/// Equality of two digests without an early exit.
fn ct_eq(a: &[u8; 20], b: &[u8; 20]) -> bool {
    let mut diff = 0u8;
    for i in 0..20 {
        diff |= a[i] ^ b[i];
    }
    std::hint::black_box(diff) == 0
}
