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

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha1::{Digest, Sha1};

use crate::handshake::Request;

/// The `[auth]` section of the config.
///
/// `Debug` is written by hand: it never prints `jwt_hs256_secret` nor an
/// API key.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// HMAC secret for HS256 tokens; `""` turns HS256 off. At least 32
    /// bytes (RFC 7518 section 3.2) when set.
    pub jwt_hs256_secret: String,
    /// PEM file with the public key (SPKI `PUBLIC KEY`, or PKCS#1
    /// `RSA PUBLIC KEY`) for `jwt_public_key_alg`; `""` turns it off.
    pub jwt_public_key_file: String,
    /// `"RS256"` or `"ES256"` (default `"RS256"`).
    pub jwt_public_key_alg: String,
    /// Required `iss`; `""` = not checked.
    pub jwt_issuer: String,
    /// Required member of `aud`; `""` = not checked.
    pub jwt_audience: String,
    /// Clock skew allowed on `exp` and `nbf`, in seconds (default 30).
    pub leeway_s: u64,
    /// Query parameter carrying a credential (default `token`); `""` = none.
    pub query_param: String,
    /// Cookie carrying a credential (default `wsedge_token`); `""` = none.
    pub cookie: String,
    /// Route paths that admit requests without credentials when `required`
    /// (default `["/echo"]`).
    pub anonymous_routes: Vec<String>,
    /// Patterns anonymous users may subscribe to when `required` (default
    /// none).
    pub anonymous_subscribe: Vec<String>,
    /// Patterns anonymous users may publish to when `required` (default
    /// none).
    pub anonymous_publish: Vec<String>,
    /// `[[auth.api_keys]]`.
    pub api_keys: Vec<ApiKeyConfig>,
    /// When false (the default) requests without credentials may do
    /// anything; when true only `anonymous_routes` admit them.
    pub required: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwt_hs256_secret: String::new(),
            jwt_public_key_file: String::new(),
            jwt_public_key_alg: "RS256".to_owned(),
            jwt_issuer: String::new(),
            jwt_audience: String::new(),
            leeway_s: 30,
            query_param: "token".to_owned(),
            cookie: "wsedge_token".to_owned(),
            anonymous_routes: vec!["/echo".to_owned()],
            anonymous_subscribe: Vec::new(),
            anonymous_publish: Vec::new(),
            api_keys: Vec::new(),
            required: false,
        }
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("jwt_hs256_secret", &Redacted(&self.jwt_hs256_secret))
            .field("jwt_public_key_file", &self.jwt_public_key_file)
            .field("jwt_public_key_alg", &self.jwt_public_key_alg)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("leeway_s", &self.leeway_s)
            .field("query_param", &self.query_param)
            .field("cookie", &self.cookie)
            .field("anonymous_routes", &self.anonymous_routes)
            .field("anonymous_subscribe", &self.anonymous_subscribe)
            .field("anonymous_publish", &self.anonymous_publish)
            .field("api_keys", &self.api_keys)
            .field("required", &self.required)
            .finish()
    }
}

/// One `[[auth.api_keys]]` entry.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Name, unique; the identity's subject is `apikey:NAME`.
    pub name: String,
    /// The secret, unique, visible ASCII without spaces, not of the form
    /// `a.b.c` (that would be taken for a JWT).
    pub key: String,
    /// Patterns this key may subscribe to.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Patterns this key may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// May use `POST /api/publish` (when auth is required).
    #[serde(default)]
    pub publish_api: bool,
}

impl fmt::Debug for ApiKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyConfig")
            .field("name", &self.name)
            .field("key", &Redacted(&self.key))
            .field("subscribe", &self.subscribe)
            .field("publish", &self.publish)
            .field("publish_api", &self.publish_api)
            .finish()
    }
}

/// Prints `""` for an empty secret, `"<redacted>"` otherwise.
struct Redacted<'a>(&'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"<redacted>\"")
        }
    }
}

/// What kind of credential made an [`Identity`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityKind {
    /// No credential.
    Anonymous,
    /// A verified JWT.
    Jwt,
    /// A configured API key.
    ApiKey,
}

/// One resolved pattern: `{sub}` already substituted.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pattern {
    /// The exact name, or the prefix without its final `*`.
    text: Box<str>,
    /// Matches every room starting with `text`.
    prefix: bool,
}

impl Pattern {
    /// Resolves `raw` for `subject`; `None` when it can match nothing
    /// (`{sub}` without a subject).
    fn resolve(raw: &str, subject: Option<&str>) -> Option<Pattern> {
        let (body, prefix) = match raw.strip_suffix('*') {
            Some(body) => (body, true),
            None => (raw, false),
        };
        let text = if body.contains(SUB) { body.replace(SUB, subject?) } else { body.to_owned() };
        Some(Pattern { text: text.into_boxed_str(), prefix })
    }

    fn matches(&self, room: &str) -> bool {
        if self.prefix {
            room.starts_with(&*self.text)
        } else {
            *room == *self.text
        }
    }
}

const SUB: &str = "{sub}";

/// What an identity may do, when it may not do everything.
#[derive(Debug, PartialEq, Eq)]
struct Permissions {
    subscribe: Box<[Pattern]>,
    publish: Box<[Pattern]>,
}

impl Permissions {
    fn resolve(subscribe: &[String], publish: &[String], subject: Option<&str>) -> Permissions {
        let list = |raws: &[String]| -> Box<[Pattern]> {
            raws.iter().filter_map(|r| Pattern::resolve(r, subject)).collect()
        };
        Permissions { subscribe: list(subscribe), publish: list(publish) }
    }
}

fn any_match(patterns: &[Pattern], room: &str) -> bool {
    patterns.iter().any(|p| p.matches(room))
}

/// Who the connection is, and what it may do.
///
/// 32 bytes on 64-bit targets; the permission lists are shared (`Arc`),
/// built once per API key and for anonymous users, once per JWT that carries
/// a `channels` claim.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The JWT's `sub`, or `apikey:NAME`; `None` for anonymous users and
    /// JWTs without `sub`.
    pub subject: Option<Box<str>>,
    /// Which credential made it.
    pub kind: IdentityKind,
    /// May use `POST /api/publish`.
    publish_api: bool,
    /// `None` = may subscribe and publish anything.
    perms: Option<Arc<Permissions>>,
}

impl Identity {
    /// No credential, auth not required: may do anything.
    pub fn anonymous_all() -> Identity {
        Identity { subject: None, kind: IdentityKind::Anonymous, publish_api: true, perms: None }
    }

    /// May this identity subscribe to `room`?
    pub fn can_subscribe(&self, room: &str) -> bool {
        match &self.perms {
            None => true,
            Some(p) => any_match(&p.subscribe, room),
        }
    }

    /// May this identity publish to `room`?
    pub fn can_publish(&self, room: &str) -> bool {
        match &self.perms {
            None => true,
            Some(p) => any_match(&p.publish, room),
        }
    }

    /// May this identity use the backend publish API? When auth is
    /// required: API keys with `publish_api = true` only. When not: always.
    pub fn can_use_publish_api(&self) -> bool {
        self.publish_api
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthErrorKind {
    /// No credential on a route that needs one.
    Missing,
    /// Malformed token, or a claim missing or of the wrong type.
    Invalid,
    /// `exp` passed.
    Expired,
    /// `nbf` not reached.
    NotYetValid,
    /// The signature does not verify.
    BadSignature,
    /// `alg` is not one this server accepts (`none`, confusion, not
    /// configured).
    BadAlgorithm,
    /// `iss` is not the configured issuer.
    WrongIssuer,
    /// `aud` does not contain the configured audience.
    WrongAudience,
    /// Not a configured API key.
    UnknownKey,
}

/// A refusal at the handshake: becomes `401` with
/// [`AuthError::www_authenticate`] and `reason` as the body. Never contains
/// the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    /// One line, e.g. `token expired`.
    pub reason: &'static str,
    /// The class of refusal.
    pub kind: AuthErrorKind,
}

impl AuthError {
    const fn new(kind: AuthErrorKind, reason: &'static str) -> AuthError {
        AuthError { reason, kind }
    }

    /// The `WWW-Authenticate` header value (RFC 6750 section 3):
    /// `Bearer realm="wsedge"` when credentials were missing, else
    /// `Bearer realm="wsedge", error="invalid_token", error_description="REASON"`.
    pub fn www_authenticate(&self) -> String {
        match self.kind {
            AuthErrorKind::Missing => "Bearer realm=\"wsedge\"".to_owned(),
            _ => format!(
                "Bearer realm=\"wsedge\", error=\"invalid_token\", error_description=\"{}\"",
                self.reason
            ),
        }
    }

    /// A stable label for the refusal counter, e.g. `expired`.
    pub fn metric_label(&self) -> &'static str {
        match self.kind {
            AuthErrorKind::Missing => "missing",
            AuthErrorKind::Invalid => "invalid",
            AuthErrorKind::Expired => "expired",
            AuthErrorKind::NotYetValid => "not_yet_valid",
            AuthErrorKind::BadSignature => "bad_signature",
            AuthErrorKind::BadAlgorithm => "bad_algorithm",
            AuthErrorKind::WrongIssuer => "wrong_issuer",
            AuthErrorKind::WrongAudience => "wrong_audience",
            AuthErrorKind::UnknownKey => "unknown_key",
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for AuthError {}

const MISSING: AuthError = AuthError::new(AuthErrorKind::Missing, "credentials required");
const MALFORMED: AuthError = AuthError::new(AuthErrorKind::Invalid, "malformed token");
const BAD_CLAIMS: AuthError = AuthError::new(AuthErrorKind::Invalid, "malformed token claims");
const NO_EXP: AuthError = AuthError::new(AuthErrorKind::Invalid, "token has no exp claim");
const CRIT: AuthError = AuthError::new(AuthErrorKind::Invalid, "unsupported critical header");
const EXPIRED: AuthError = AuthError::new(AuthErrorKind::Expired, "token expired");
const NOT_YET: AuthError = AuthError::new(AuthErrorKind::NotYetValid, "token not yet valid");
const BAD_SIG: AuthError = AuthError::new(AuthErrorKind::BadSignature, "bad token signature");
const BAD_ALG: AuthError =
    AuthError::new(AuthErrorKind::BadAlgorithm, "token algorithm not allowed");
const WRONG_ISS: AuthError = AuthError::new(AuthErrorKind::WrongIssuer, "wrong token issuer");
const WRONG_AUD: AuthError = AuthError::new(AuthErrorKind::WrongAudience, "wrong token audience");
const UNKNOWN_KEY: AuthError = AuthError::new(AuthErrorKind::UnknownKey, "unknown API key");

/// A configured API key, ready to compare.
struct ApiKey {
    digest: [u8; 20],
    identity: Identity,
}

/// Checks credentials; built once at start-up, shared by all workers
/// (`Send + Sync`).
pub struct Authenticator {
    required: bool,
    hs256: Option<DecodingKey>,
    public: Option<(Algorithm, DecodingKey)>,
    issuer: Option<Box<str>>,
    audience: Option<Box<str>>,
    leeway_s: u64,
    query_param: Box<str>,
    cookie: Box<str>,
    anonymous_routes: Box<[Box<str>]>,
    anonymous: Identity,
    api_keys: Box<[ApiKey]>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("required", &self.required)
            .field("hs256", &self.hs256.is_some())
            .field("public", &self.public.as_ref().map(|(alg, _)| alg))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_s", &self.leeway_s)
            .field("api_keys", &self.api_keys.len())
            .finish_non_exhaustive()
    }
}

/// Smallest HS256 secret accepted: 256 bits (RFC 7518 section 3.2).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

impl Authenticator {
    /// Validates `cfg` and reads the public key file. Errors are one line
    /// naming the field (and the file), e.g.
    /// `auth.jwt_public_key_file: /etc/k.pem: cannot read: No such file or directory (os error 2)`.
    pub fn new(cfg: &AuthConfig) -> Result<Authenticator, String> {
        let secret = cfg.jwt_hs256_secret.as_bytes();
        if !secret.is_empty() && secret.len() < MIN_HS256_SECRET_BYTES {
            let len = secret.len();
            return Err(format!(
                "auth.jwt_hs256_secret: must be at least {MIN_HS256_SECRET_BYTES} bytes, has {len}"
            ));
        }
        let hs256 = (!secret.is_empty()).then(|| DecodingKey::from_secret(secret));

        let alg = match cfg.jwt_public_key_alg.as_str() {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => {
                return Err(format!(
                    "auth.jwt_public_key_alg: must be \"RS256\" or \"ES256\", not {other:?}"
                ))
            }
        };
        let public = match cfg.jwt_public_key_file.as_str() {
            "" => None,
            file => {
                let pem = std::fs::read(file)
                    .map_err(|e| format!("auth.jwt_public_key_file: {file}: cannot read: {e}"))?;
                let key = match alg {
                    Algorithm::ES256 => DecodingKey::from_ec_pem(&pem),
                    _ => DecodingKey::from_rsa_pem(&pem),
                }
                .map_err(|e| {
                    format!(
                        "auth.jwt_public_key_file: {file}: not a PEM {} public key for {}: {e}",
                        if alg == Algorithm::ES256 { "P-256 EC" } else { "RSA" },
                        cfg.jwt_public_key_alg
                    )
                })?;
                Some((alg, key))
            }
        };

        for (field, list) in [
            ("auth.anonymous_subscribe", &cfg.anonymous_subscribe),
            ("auth.anonymous_publish", &cfg.anonymous_publish),
        ] {
            check_patterns(field, list)?;
        }
        for route in &cfg.anonymous_routes {
            if !route.starts_with('/') {
                return Err(format!("auth.anonymous_routes: {route:?} must start with '/'"));
            }
        }

        let mut api_keys: Vec<ApiKey> = Vec::with_capacity(cfg.api_keys.len());
        for (i, k) in cfg.api_keys.iter().enumerate() {
            let field = format!("auth.api_keys[{i}]");
            if k.name.is_empty() {
                return Err(format!("{field}.name: must not be empty"));
            }
            if cfg.api_keys[..i].iter().any(|o| o.name == k.name) {
                return Err(format!("{field}.name: {:?} is used twice", k.name));
            }
            if k.key.is_empty() {
                return Err(format!("{field}.key: must not be empty (key {:?})", k.name));
            }
            if !k.key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "{field}.key: must be visible ASCII without spaces (key {:?})",
                    k.name
                ));
            }
            if looks_like_jwt(k.key.as_bytes()) {
                return Err(format!(
                    "{field}.key: must not have exactly two dots, it would be taken for a JWT (key {:?})",
                    k.name
                ));
            }
            if cfg.api_keys[..i].iter().any(|o| o.key == k.key) {
                return Err(format!("{field}.key: same key as another entry (key {:?})", k.name));
            }
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
                    perms: Some(Arc::new(perms)),
                },
            });
        }

        let anonymous = if cfg.required {
            Identity {
                subject: None,
                kind: IdentityKind::Anonymous,
                publish_api: false,
                perms: Some(Arc::new(Permissions::resolve(
                    &cfg.anonymous_subscribe,
                    &cfg.anonymous_publish,
                    None,
                ))),
            }
        } else {
            Identity::anonymous_all()
        };

        let non_empty = |s: &str| (!s.is_empty()).then(|| s.into());
        Ok(Authenticator {
            required: cfg.required,
            hs256,
            public,
            issuer: non_empty(&cfg.jwt_issuer),
            audience: non_empty(&cfg.jwt_audience),
            leeway_s: cfg.leeway_s,
            query_param: cfg.query_param.as_str().into(),
            cookie: cfg.cookie.as_str().into(),
            anonymous_routes: cfg.anonymous_routes.iter().map(|r| r.as_str().into()).collect(),
            anonymous,
            api_keys: api_keys.into_boxed_slice(),
        })
    }

    /// True when some credential can be accepted (a JWT key or an API key).
    pub fn has_credentials(&self) -> bool {
        self.hs256.is_some() || self.public.is_some() || !self.api_keys.is_empty()
    }

    /// Who sent `req` (the upgrade request, or `POST /api/publish`) for the
    /// route `path`, at `now_unix` seconds since the epoch.
    pub fn authenticate(
        &self,
        req: &Request,
        path: &str,
        now_unix: u64,
    ) -> Result<Identity, AuthError> {
        let credential = if self.has_credentials() { self.find_credential(req) } else { None };
        match credential {
            Some(c) if looks_like_jwt(&c) => self.verify_jwt(&c, now_unix),
            Some(c) => self.check_api_key(&c),
            None if !self.required => Ok(Identity::anonymous_all()),
            None if self.anonymous_routes.iter().any(|r| **r == *path) => {
                Ok(self.anonymous.clone())
            }
            None => Err(MISSING),
        }
    }

    /// The first non-empty credential: bearer header, query, cookie.
    fn find_credential(&self, req: &Request) -> Option<Vec<u8>> {
        if let Some(c) = bearer(req) {
            return Some(c.to_vec());
        }
        if !self.query_param.is_empty() {
            if let Some(c) = req.query.as_deref().and_then(|q| query_value(q, &self.query_param)) {
                return Some(c);
            }
        }
        if !self.cookie.is_empty() {
            if let Some(c) = cookie_value(req, &self.cookie) {
                return Some(c.to_vec());
            }
        }
        None
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

    fn verify_jwt(&self, token: &[u8], now_unix: u64) -> Result<Identity, AuthError> {
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
            publish_api: !self.required,
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

/// Config patterns: non-empty, `*` only as the last character.
fn check_patterns(field: &str, patterns: &[String]) -> Result<(), String> {
    for p in patterns {
        if p.is_empty() {
            return Err(format!("{field}: empty pattern"));
        }
        if p.trim_end_matches('*').contains('*') || p.ends_with("**") {
            return Err(format!("{field}: {p:?}: '*' is allowed only as the last character"));
        }
    }
    Ok(())
}

/// Exactly two dots: a JWT in compact serialization.
fn looks_like_jwt(c: &[u8]) -> bool {
    c.iter().filter(|&&b| b == b'.').count() == 2
}

/// Equality of two digests without an early exit.
fn ct_eq(a: &[u8; 20], b: &[u8; 20]) -> bool {
    let mut diff = 0u8;
    for i in 0..20 {
        diff |= a[i] ^ b[i];
    }
    std::hint::black_box(diff) == 0
}

/// The token of the first `Authorization` header, if it uses the `Bearer`
/// scheme and has a non-empty token.
fn bearer(req: &Request) -> Option<&[u8]> {
    let value = trim(req.header("authorization")?);
    let (scheme, rest) = value.split_at(value.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = trim(rest);
    (!token.is_empty()).then_some(token)
}

/// The percent-decoded value of the first parameter named `name` in the raw
/// query string `query`, if non-empty.
fn query_value(query: &str, name: &str) -> Option<Vec<u8>> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(k.as_bytes()) != name.as_bytes() {
            return None;
        }
        let v = percent_decode(v.as_bytes());
        (!v.is_empty()).then_some(v)
    })
}

/// RFC 3986 percent-decoding; a `%` not followed by two hex digits is kept
/// as is; `+` is kept (not a space).
fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    };
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// The value of the first cookie named `name` in any `Cookie` header, with
/// surrounding double quotes removed, if non-empty.
fn cookie_value<'a>(req: &'a Request, name: &str) -> Option<&'a [u8]> {
    req.headers
        .iter()
        .filter(|(n, _)| n == "cookie")
        .flat_map(|(_, v)| v.split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = trim(pair);
            let eq = pair.iter().position(|&b| b == b'=')?;
            if trim(&pair[..eq]) != name.as_bytes() {
                return None;
            }
            let mut v = trim(&pair[eq + 1..]);
            if v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' {
                v = &v[1..v.len() - 1];
            }
            (!v.is_empty()).then_some(v)
        })
}

/// Strips leading and trailing spaces and tabs.
fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
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

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;
    use std::sync::OnceLock;

    const SECRET: &str = "test-only-hs256-secret-0123456789abcdef";
    const NOW: u64 = 1_700_000_000;

    fn req(headers: &[(&str, &str)], query: Option<&str>) -> Request {
        Request {
            method: "GET".into(),
            path: "/ws".into(),
            query: query.map(str::to_owned),
            version: 1,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec()))
                .collect(),
            head_len: 0,
        }
    }

    fn bearer_req(token: &str) -> Request {
        req(&[("Authorization", &format!("Bearer {token}"))], None)
    }

    fn hs_cfg() -> AuthConfig {
        AuthConfig { jwt_hs256_secret: SECRET.into(), required: true, ..AuthConfig::default() }
    }

    fn auth(cfg: &AuthConfig) -> Authenticator {
        Authenticator::new(cfg).unwrap()
    }

    fn sign(alg: Algorithm, key: &EncodingKey, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
    }

    fn hs(claims: serde_json::Value) -> String {
        sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET.as_bytes()), &claims)
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    /// Test-only key pairs, generated once per test run.
    struct Keys {
        rsa_private: String,
        rsa_public: String,
        ec_private: String,
        ec_public: String,
    }

    fn keys() -> &'static Keys {
        static KEYS: OnceLock<Keys> = OnceLock::new();
        KEYS.get_or_init(|| {
            let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
            let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            Keys {
                rsa_private: rsa.serialize_pem(),
                rsa_public: rsa.public_key_pem(),
                ec_private: ec.serialize_pem(),
                ec_public: ec.public_key_pem(),
            }
        })
    }

    /// Writes `contents` to a fresh file in the temp dir (never one another
    /// test may be reading).
    fn temp_file(name: &str, contents: &str) -> String {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir()
            .join(format!("wsedge-auth-test-{}-{n}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// The test public keys as files, written once per run.
    fn key_file(ec: bool) -> String {
        static RSA: OnceLock<String> = OnceLock::new();
        static EC: OnceLock<String> = OnceLock::new();
        if ec {
            EC.get_or_init(|| temp_file("ec.pem", &keys().ec_public)).clone()
        } else {
            RSA.get_or_init(|| temp_file("rsa.pem", &keys().rsa_public)).clone()
        }
    }

    fn rs_cfg() -> AuthConfig {
        AuthConfig {
            jwt_public_key_file: key_file(false),
            jwt_public_key_alg: "RS256".into(),
            required: true,
            ..AuthConfig::default()
        }
    }

    fn es_cfg() -> AuthConfig {
        AuthConfig {
            jwt_public_key_file: key_file(true),
            jwt_public_key_alg: "ES256".into(),
            required: true,
            ..AuthConfig::default()
        }
    }

    fn rs(claims: serde_json::Value) -> String {
        let key = EncodingKey::from_rsa_pem(keys().rsa_private.as_bytes()).unwrap();
        sign(Algorithm::RS256, &key, &claims)
    }

    fn es(claims: serde_json::Value) -> String {
        let key = EncodingKey::from_ec_pem(keys().ec_private.as_bytes()).unwrap();
        sign(Algorithm::ES256, &key, &claims)
    }

    fn err(a: &Authenticator, r: &Request) -> AuthError {
        a.authenticate(r, "/ws", NOW).unwrap_err()
    }

    fn kind(a: &Authenticator, token: &str) -> AuthErrorKind {
        err(a, &bearer_req(token)).kind
    }

    // ---- JWT ----------------------------------------------------------

    #[test]
    fn hs256_valid() {
        let a = auth(&hs_cfg());
        let id = a
            .authenticate(&bearer_req(&hs(json!({"sub": "alice", "exp": NOW + 60}))), "/ws", NOW)
            .unwrap();
        assert_eq!(id.kind, IdentityKind::Jwt);
        assert_eq!(id.subject.as_deref(), Some("alice"));
        // No channels claim: anything.
        assert!(id.can_subscribe("chat:lobby") && id.can_publish("anything"));
        // Auth required: only API keys may use the publish API.
        assert!(!id.can_use_publish_api());
    }

    #[test]
    fn expired_with_leeway() {
        let a = auth(&hs_cfg()); // leeway 30
        let t = |exp: u64| hs(json!({"sub": "a", "exp": exp}));
        assert!(a.authenticate(&bearer_req(&t(NOW - 29)), "/ws", NOW).is_ok());
        let e = err(&a, &bearer_req(&t(NOW - 30)));
        assert_eq!(e, AuthError { kind: AuthErrorKind::Expired, reason: "token expired" });
        assert_eq!(kind(&a, &t(NOW - 3600)), AuthErrorKind::Expired);
        let strict = auth(&AuthConfig { leeway_s: 0, ..hs_cfg() });
        assert_eq!(kind(&strict, &t(NOW)), AuthErrorKind::Expired);
        assert!(strict.authenticate(&bearer_req(&t(NOW + 1)), "/ws", NOW).is_ok());
        // Fractional NumericDate.
        let frac = hs(json!({"exp": NOW as f64 + 0.5}));
        assert!(strict.authenticate(&bearer_req(&frac), "/ws", NOW).is_ok());
    }

    #[test]
    fn not_yet_valid_nbf() {
        let a = auth(&hs_cfg());
        let t = |nbf: u64| hs(json!({"sub": "a", "exp": NOW + 3600, "nbf": nbf}));
        let e = err(&a, &bearer_req(&t(NOW + 31)));
        assert_eq!(
            e,
            AuthError { kind: AuthErrorKind::NotYetValid, reason: "token not yet valid" }
        );
        assert!(a.authenticate(&bearer_req(&t(NOW + 30)), "/ws", NOW).is_ok());
        assert!(a.authenticate(&bearer_req(&t(NOW - 10)), "/ws", NOW).is_ok());
    }

    #[test]
    fn claims_of_the_wrong_type_are_refused_not_skipped() {
        // CVE-2026-25537 shape: a string nbf/exp must not skip the check.
        let a = auth(&hs_cfg());
        for claims in [
            json!({"sub": "a", "exp": NOW + 60, "nbf": "99999999999"}),
            json!({"sub": "a", "exp": "never"}),
            json!({"sub": 42, "exp": NOW + 60}),
            json!({"exp": NOW + 60, "iss": ["x"]}),
            json!({"exp": NOW + 60, "channels": "chat:*"}),
            json!({"exp": NOW + 60, "channels": {"subscribe": "chat:*"}}),
        ] {
            let e = err(&a, &bearer_req(&hs(claims.clone())));
            assert_eq!(e.kind, AuthErrorKind::Invalid, "{claims}");
            assert_eq!(e.reason, "malformed token claims");
        }
        let e = err(&a, &bearer_req(&hs(json!({"sub": "a"}))));
        assert_eq!(e, AuthError { kind: AuthErrorKind::Invalid, reason: "token has no exp claim" });
        // Claims that are not an object.
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let t = sign(Algorithm::HS256, &key, &json!([1, 2]));
        assert_eq!(kind(&a, &t), AuthErrorKind::Invalid);
    }

    #[test]
    fn bad_signature() {
        let a = auth(&hs_cfg());
        let other = EncodingKey::from_secret(b"another-secret-of-enough-length-0123456789");
        let t = sign(Algorithm::HS256, &other, &json!({"sub": "a", "exp": NOW + 60}));
        let e = err(&a, &bearer_req(&t));
        assert_eq!(
            e,
            AuthError { kind: AuthErrorKind::BadSignature, reason: "bad token signature" }
        );

        // A valid token whose payload is swapped for another one.
        let good = hs(json!({"sub": "alice", "exp": NOW + 60}));
        let parts: Vec<&str> = good.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(&json!({"sub": "admin", "exp": NOW + 60}).to_string()),
            parts[2]
        );
        assert_eq!(kind(&a, &forged), AuthErrorKind::BadSignature);
        // Signature stripped.
        assert_eq!(kind(&a, &format!("{}.{}.", parts[0], parts[1])), AuthErrorKind::BadSignature);
    }

    #[test]
    fn alg_none_is_refused() {
        let a = auth(&hs_cfg());
        let payload = b64(&json!({"sub": "admin", "exp": NOW + 60}).to_string());
        for header in [
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"None"}"#,
            r#"{"alg":"NONE"}"#,
            r#"{"alg":"nOnE"}"#,
            r#"{"typ":"JWT"}"#,
            r#"{"alg":null}"#,
            r#"{"alg":"hs256"}"#,
        ] {
            for sig in ["", "c2ln"] {
                let t = format!("{}.{payload}.{sig}", b64(header));
                let e = err(&a, &bearer_req(&t));
                assert_eq!(
                    e,
                    AuthError {
                        kind: AuthErrorKind::BadAlgorithm,
                        reason: "token algorithm not allowed"
                    },
                    "{header}"
                );
            }
        }
    }

    #[test]
    fn algorithm_confusion_is_refused() {
        let claims = json!({"sub": "admin", "exp": NOW + 60});
        // HS256 signed with the RSA public key's PEM as the HMAC secret.
        let confused = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(keys().rsa_public.as_bytes()),
            &claims,
        );
        let rs_only = auth(&rs_cfg());
        assert_eq!(kind(&rs_only, &confused), AuthErrorKind::BadAlgorithm);
        // With HS256 also on, its own secret is used, never the PEM.
        let both = auth(&AuthConfig { jwt_hs256_secret: SECRET.into(), ..rs_cfg() });
        assert_eq!(kind(&both, &confused), AuthErrorKind::BadSignature);
        assert!(both.authenticate(&bearer_req(&rs(claims.clone())), "/ws", NOW).is_ok());
        assert!(both.authenticate(&bearer_req(&hs(claims.clone())), "/ws", NOW).is_ok());
        // Algorithms that are not configured.
        assert_eq!(kind(&auth(&hs_cfg()), &rs(claims.clone())), AuthErrorKind::BadAlgorithm);
        assert_eq!(kind(&rs_only, &es(claims.clone())), AuthErrorKind::BadAlgorithm);
        assert_eq!(kind(&auth(&es_cfg()), &rs(claims.clone())), AuthErrorKind::BadAlgorithm);
        // An RS256 header over an ES256 signature.
        let e = es(claims.clone());
        let parts: Vec<&str> = e.split('.').collect();
        let relabeled = format!("{}.{}.{}", b64(r#"{"alg":"RS256"}"#), parts[1], parts[2]);
        assert_eq!(kind(&rs_only, &relabeled), AuthErrorKind::BadSignature);
        // Other algorithms the crate knows are never accepted.
        let hs512 = sign(Algorithm::HS512, &EncodingKey::from_secret(SECRET.as_bytes()), &claims);
        assert_eq!(kind(&auth(&hs_cfg()), &hs512), AuthErrorKind::BadAlgorithm);
    }

    #[test]
    fn crit_header_is_refused() {
        let a = auth(&hs_cfg());
        let mut h = Header::new(Algorithm::HS256);
        h.crit = Some(vec!["exp".into()]);
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let t = jsonwebtoken::encode(&h, &json!({"exp": NOW + 60}), &key).unwrap();
        let e = err(&a, &bearer_req(&t));
        assert_eq!(
            e,
            AuthError { kind: AuthErrorKind::Invalid, reason: "unsupported critical header" }
        );
    }

    #[test]
    fn malformed_tokens() {
        let a = auth(&hs_cfg());
        for t in [
            "a.b.c",
            "..",
            "!!!.e30.x",
            "e30.e30.e30",
            &format!("{}.%%%.x", b64(r#"{"alg":"HS256"}"#)),
        ] {
            let k = kind(&a, t);
            assert!(
                matches!(
                    k,
                    AuthErrorKind::Invalid
                        | AuthErrorKind::BadAlgorithm
                        | AuthErrorKind::BadSignature
                ),
                "{t}: {k:?}"
            );
        }
        assert_eq!(kind(&a, "a.b.c"), AuthErrorKind::Invalid);
        assert_eq!(kind(&a, "e30.e30.e30"), AuthErrorKind::BadAlgorithm);
    }

    #[test]
    fn wrong_issuer() {
        let a = auth(&AuthConfig { jwt_issuer: "https://id.example".into(), ..hs_cfg() });
        let ok = hs(json!({"exp": NOW + 60, "iss": "https://id.example"}));
        assert!(a.authenticate(&bearer_req(&ok), "/ws", NOW).is_ok());
        let e = err(&a, &bearer_req(&hs(json!({"exp": NOW + 60, "iss": "https://evil"}))));
        assert_eq!(e, AuthError { kind: AuthErrorKind::WrongIssuer, reason: "wrong token issuer" });
        assert_eq!(kind(&a, &hs(json!({"exp": NOW + 60}))), AuthErrorKind::WrongIssuer);
        // Not configured: not checked.
        let b = auth(&hs_cfg());
        assert!(b
            .authenticate(&bearer_req(&hs(json!({"exp": NOW + 60, "iss": "x"}))), "/", NOW)
            .is_ok());
    }

    #[test]
    fn wrong_audience() {
        let a = auth(&AuthConfig { jwt_audience: "wsedge".into(), ..hs_cfg() });
        for aud in [json!("wsedge"), json!(["other", "wsedge"])] {
            let t = hs(json!({"exp": NOW + 60, "aud": aud}));
            assert!(a.authenticate(&bearer_req(&t), "/ws", NOW).is_ok(), "{aud}");
        }
        for claims in [
            json!({"exp": NOW + 60, "aud": "other"}),
            json!({"exp": NOW + 60, "aud": ["other"]}),
            json!({"exp": NOW + 60, "aud": []}),
            json!({"exp": NOW + 60}),
        ] {
            let e = err(&a, &bearer_req(&hs(claims.clone())));
            assert_eq!(
                e,
                AuthError { kind: AuthErrorKind::WrongAudience, reason: "wrong token audience" },
                "{claims}"
            );
        }
        // Not configured: an aud claim is fine.
        let b = auth(&hs_cfg());
        assert!(b
            .authenticate(&bearer_req(&hs(json!({"exp": NOW + 60, "aud": "x"}))), "/", NOW)
            .is_ok());
    }

    #[test]
    fn rs256_valid() {
        let a = auth(&rs_cfg());
        let id = a
            .authenticate(&bearer_req(&rs(json!({"sub": "bob", "exp": NOW + 60}))), "/ws", NOW)
            .unwrap();
        assert_eq!((id.kind, id.subject.as_deref()), (IdentityKind::Jwt, Some("bob")));
        // Expiry applies to RS256 as well.
        assert_eq!(kind(&a, &rs(json!({"exp": NOW - 100}))), AuthErrorKind::Expired);
    }

    #[test]
    fn es256_valid() {
        let a = auth(&es_cfg());
        let id = a
            .authenticate(&bearer_req(&es(json!({"sub": "carol", "exp": NOW + 60}))), "/ws", NOW)
            .unwrap();
        assert_eq!((id.kind, id.subject.as_deref()), (IdentityKind::Jwt, Some("carol")));
        // A token signed by another EC key.
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let key = EncodingKey::from_ec_pem(other.serialize_pem().as_bytes()).unwrap();
        let t = sign(Algorithm::ES256, &key, &json!({"exp": NOW + 60}));
        assert_eq!(kind(&a, &t), AuthErrorKind::BadSignature);
    }

    // ---- credentials and anonymous users ---------------------------------

    #[test]
    fn missing_token_on_protected_route() {
        let a = auth(&hs_cfg());
        let e = a.authenticate(&req(&[], None), "/ws", NOW).unwrap_err();
        assert_eq!(e, AuthError { kind: AuthErrorKind::Missing, reason: "credentials required" });
        assert_eq!(e.www_authenticate(), r#"Bearer realm="wsedge""#);
        assert_eq!(e.metric_label(), "missing");
        // Empty credentials count as absent.
        for r in [
            req(&[("Authorization", "Bearer ")], Some("token=")),
            req(&[("Cookie", "wsedge_token=")], None),
            req(&[("Authorization", "Basic dXNlcjpwYXNz")], None),
        ] {
            assert_eq!(a.authenticate(&r, "/ws", NOW).unwrap_err().kind, AuthErrorKind::Missing);
        }
    }

    #[test]
    fn anonymous_route_ok() {
        let cfg = AuthConfig {
            anonymous_routes: vec!["/echo".into(), "/public".into()],
            anonymous_subscribe: vec!["news:*".into(), "user:{sub}".into()],
            anonymous_publish: vec!["lobby".into()],
            ..hs_cfg()
        };
        let a = auth(&cfg);
        let id = a.authenticate(&req(&[], None), "/public", NOW).unwrap();
        assert_eq!((id.kind, id.subject.as_deref()), (IdentityKind::Anonymous, None));
        assert!(id.can_subscribe("news:today"));
        assert!(!id.can_subscribe("chat:x"));
        assert!(!id.can_subscribe("user:"), "{{sub}} without a subject matches nothing");
        assert!(id.can_publish("lobby") && !id.can_publish("news:today"));
        assert!(!id.can_use_publish_api());
        assert!(a.authenticate(&req(&[], None), "/echo", NOW).is_ok());
        // Exact path only.
        assert_eq!(err(&a, &req(&[], None)).kind, AuthErrorKind::Missing);
        let e = a.authenticate(&req(&[], None), "/echo/", NOW).unwrap_err();
        assert_eq!(e.kind, AuthErrorKind::Missing);
        // A bad credential on an anonymous route is still refused.
        let e = a.authenticate(&bearer_req("nope"), "/echo", NOW).unwrap_err();
        assert_eq!(e.kind, AuthErrorKind::UnknownKey);
    }

    #[test]
    fn not_required_admits_anonymous_users_to_everything() {
        let a = auth(&AuthConfig { required: false, ..hs_cfg() });
        let id = a.authenticate(&req(&[], None), "/anything", NOW).unwrap();
        assert_eq!(id.kind, IdentityKind::Anonymous);
        assert!(id.can_subscribe("x") && id.can_publish("y") && id.can_use_publish_api());
        // A credential that is present is still checked.
        assert_eq!(kind(&a, &hs(json!({"exp": NOW - 100}))), AuthErrorKind::Expired);
        // A JWT's channels still apply; the publish API is open.
        let t = hs(json!({"exp": NOW + 60, "channels": {"subscribe": ["a"]}}));
        let id = a.authenticate(&bearer_req(&t), "/ws", NOW).unwrap();
        assert!(id.can_subscribe("a") && !id.can_subscribe("b") && !id.can_publish("a"));
        assert!(id.can_use_publish_api());
    }

    #[test]
    fn default_config_ignores_credentials() {
        // Nothing configured: behaviour is unchanged, a stray header or
        // cookie is not looked at.
        let a = auth(&AuthConfig::default());
        assert!(!a.has_credentials());
        for r in [
            bearer_req("whatever"),
            bearer_req("a.b.c"),
            req(&[("Cookie", "wsedge_token=x")], Some("token=y")),
        ] {
            let id = a.authenticate(&r, "/ws", NOW).unwrap();
            assert!(id.kind == IdentityKind::Anonymous && id.can_publish("any"));
        }
        // Required with nothing configured: anonymous routes only.
        let b = auth(&AuthConfig { required: true, ..AuthConfig::default() });
        assert!(b.authenticate(&req(&[], None), "/echo", NOW).is_ok());
        assert_eq!(
            b.authenticate(&bearer_req("x"), "/ws", NOW).unwrap_err().kind,
            AuthErrorKind::Missing
        );
    }

    fn key_cfg() -> AuthConfig {
        AuthConfig {
            api_keys: vec![
                ApiKeyConfig {
                    name: "backend".into(),
                    key: "k-backend-0123456789".into(),
                    subscribe: vec![],
                    publish: vec!["*".into()],
                    publish_api: true,
                },
                ApiKeyConfig {
                    name: "thermo".into(),
                    key: "k+thermo/0123456789==".into(),
                    subscribe: vec!["cmd:{sub}".into()],
                    publish: vec!["sensors:*".into()],
                    publish_api: false,
                },
            ],
            required: true,
            ..AuthConfig::default()
        }
    }

    fn subject(a: &Authenticator, r: &Request) -> String {
        a.authenticate(r, "/ws", NOW).unwrap().subject.unwrap().into()
    }

    #[test]
    fn api_key_from_header_query_and_cookie() {
        let a = auth(&key_cfg());
        assert_eq!(subject(&a, &bearer_req("k-backend-0123456789")), "apikey:backend");
        assert_eq!(
            subject(&a, &req(&[("authorization", "bearer   k-backend-0123456789  ")], None)),
            "apikey:backend"
        );
        assert_eq!(subject(&a, &req(&[], Some("token=k-backend-0123456789"))), "apikey:backend");
        assert_eq!(
            subject(&a, &req(&[], Some("a=1&token=k%2Bthermo%2F0123456789%3D%3D&b"))),
            "apikey:thermo"
        );
        // '+' is not a space.
        assert_eq!(subject(&a, &req(&[], Some("token=k+thermo/0123456789=="))), "apikey:thermo");
        assert_eq!(
            subject(&a, &req(&[("Cookie", "a=b; wsedge_token=k-backend-0123456789; c=d")], None)),
            "apikey:backend"
        );
        assert_eq!(
            subject(
                &a,
                &req(
                    &[("Cookie", "x=1"), ("Cookie", "wsedge_token=\"k-backend-0123456789\"")],
                    None
                )
            ),
            "apikey:backend"
        );
        // Names are matched exactly.
        let r = req(
            &[("Cookie", "xwsedge_token=k-backend-0123456789")],
            Some("tokens=k-backend-0123456789"),
        );
        assert_eq!(a.authenticate(&r, "/ws", NOW).unwrap_err().kind, AuthErrorKind::Missing);
        let id = a.authenticate(&bearer_req("k-backend-0123456789"), "/ws", NOW).unwrap();
        assert_eq!(id.kind, IdentityKind::ApiKey);
        assert!(id.can_use_publish_api());
        assert!(id.can_publish("anything") && !id.can_subscribe("anything"));
        // Configurable names.
        let b = auth(&AuthConfig {
            query_param: "access_token".into(),
            cookie: "sess".into(),
            ..key_cfg()
        });
        assert_eq!(
            subject(&b, &req(&[], Some("access_token=k-backend-0123456789"))),
            "apikey:backend"
        );
        assert_eq!(
            subject(&b, &req(&[("Cookie", "sess=k-backend-0123456789")], None)),
            "apikey:backend"
        );
        // "" disables a source.
        let c = auth(&AuthConfig { query_param: "".into(), cookie: "".into(), ..key_cfg() });
        let r = req(
            &[("Cookie", "wsedge_token=k-backend-0123456789")],
            Some("token=k-backend-0123456789"),
        );
        assert_eq!(c.authenticate(&r, "/ws", NOW).unwrap_err().kind, AuthErrorKind::Missing);
    }

    #[test]
    fn precedence_header_then_query_then_cookie() {
        let a = auth(&key_cfg());
        let backend = "k-backend-0123456789";
        let thermo = "k+thermo/0123456789==";
        let all = req(
            &[
                ("Authorization", &format!("Bearer {backend}")),
                ("Cookie", &format!("wsedge_token={thermo}")),
            ],
            Some(&format!("token={thermo}")),
        );
        assert_eq!(subject(&a, &all), "apikey:backend");
        let query_cookie = req(
            &[("Cookie", &format!("wsedge_token={backend}"))],
            Some("token=k%2Bthermo/0123456789=="),
        );
        assert_eq!(subject(&a, &query_cookie), "apikey:thermo");
        // The first present is used even when it fails: no fallback.
        let bad_header =
            req(&[("Authorization", "Bearer wrong")], Some(&format!("token={backend}")));
        assert_eq!(
            a.authenticate(&bad_header, "/ws", NOW).unwrap_err().kind,
            AuthErrorKind::UnknownKey
        );
        // A non-Bearer Authorization header is skipped.
        let basic =
            req(&[("Authorization", "Basic Zm9vOmJhcg==")], Some(&format!("token={backend}")));
        assert_eq!(subject(&a, &basic), "apikey:backend");
    }

    #[test]
    fn unknown_api_key() {
        let a = auth(&key_cfg());
        for k in ["k-backend-012345678", "k-backend-01234567890", "K-BACKEND-0123456789", "x"] {
            let e = err(&a, &bearer_req(k));
            assert_eq!(e, AuthError { kind: AuthErrorKind::UnknownKey, reason: "unknown API key" });
            assert_eq!(
                e.www_authenticate(),
                r#"Bearer realm="wsedge", error="invalid_token", error_description="unknown API key""#
            );
            assert!(!format!("{e:?} {e}").contains(k));
        }
        // A credential with two dots is a JWT, never an API key.
        assert_eq!(kind(&a, "k.backend.0"), AuthErrorKind::Invalid);
    }

    // ---- permissions -----------------------------------------------------

    #[test]
    fn channel_permissions_exact_prefix_and_sub() {
        let a = auth(&hs_cfg());
        let t = hs(json!({
            "sub": "alice",
            "exp": NOW + 60,
            "channels": {
                "subscribe": ["chat:*", "user:{sub}", "room:{sub}:*", "exact"],
                "publish": ["chat:lobby"]
            }
        }));
        let id = a.authenticate(&bearer_req(&t), "/ws", NOW).unwrap();
        assert!(id.can_subscribe("chat:lobby") && id.can_subscribe("chat:"));
        assert!(!id.can_subscribe("chat") && !id.can_subscribe("xchat:lobby"));
        assert!(id.can_subscribe("user:alice"));
        assert!(!id.can_subscribe("user:bob") && !id.can_subscribe("user:alice2"));
        assert!(id.can_subscribe("room:alice:1") && !id.can_subscribe("room:bob:1"));
        assert!(id.can_subscribe("exact") && !id.can_subscribe("exact2"));
        assert!(id.can_publish("chat:lobby") && !id.can_publish("chat:other"));
        assert!(!id.can_publish("user:alice"));

        // A subject with '*' never widens a grant.
        let t = hs(json!({"sub": "*", "exp": NOW + 60, "channels": {"subscribe": ["user:{sub}"]}}));
        let id = a.authenticate(&bearer_req(&t), "/ws", NOW).unwrap();
        assert!(id.can_subscribe("user:*") && !id.can_subscribe("user:bob"));

        // No sub (or an empty one): {sub} patterns match nothing.
        for sub in [json!(null), json!("")] {
            let t = hs(
                json!({"sub": sub, "exp": NOW + 60, "channels": {"subscribe": ["user:{sub}", "pub"]}}),
            );
            let id = a.authenticate(&bearer_req(&t), "/ws", NOW).unwrap();
            assert!(id.subject.is_none());
            assert!(!id.can_subscribe("user:") && !id.can_subscribe("user:{sub}"));
            assert!(id.can_subscribe("pub"));
        }

        // "*" alone: everything; an empty grant: nothing.
        let t = hs(json!({"exp": NOW + 60, "channels": {"subscribe": ["*"], "publish": []}}));
        let id = a.authenticate(&bearer_req(&t), "/ws", NOW).unwrap();
        assert!(id.can_subscribe("any:thing") && !id.can_publish("any:thing"));
        let t = hs(json!({"exp": NOW + 60, "channels": {}}));
        let id = a.authenticate(&bearer_req(&t), "/ws", NOW).unwrap();
        assert!(!id.can_subscribe("a") && !id.can_publish("a"));
        // channels: null is the same as absent.
        let t = hs(json!({"exp": NOW + 60, "channels": null}));
        let id = a.authenticate(&bearer_req(&t), "/ws", NOW).unwrap();
        assert!(id.can_subscribe("a") && id.can_publish("a"));

        // API keys: {sub} is apikey:NAME.
        let k = auth(&key_cfg());
        let id = k.authenticate(&bearer_req("k+thermo/0123456789=="), "/ws", NOW).unwrap();
        assert!(id.can_subscribe("cmd:apikey:thermo") && !id.can_subscribe("cmd:thermo"));
        assert!(id.can_publish("sensors:t1") && !id.can_publish("cmd:apikey:thermo"));
        assert!(!id.can_use_publish_api());
    }

    #[test]
    fn publish_api_rights() {
        let a = auth(&key_cfg());
        let backend =
            a.authenticate(&bearer_req("k-backend-0123456789"), "/api/publish", NOW).unwrap();
        let thermo =
            a.authenticate(&bearer_req("k+thermo/0123456789=="), "/api/publish", NOW).unwrap();
        assert!(backend.can_use_publish_api() && !thermo.can_use_publish_api());
        let open = auth(&AuthConfig { required: false, ..key_cfg() });
        let thermo =
            open.authenticate(&bearer_req("k+thermo/0123456789=="), "/api/publish", NOW).unwrap();
        assert!(thermo.can_use_publish_api());
        assert!(Identity::anonymous_all().can_use_publish_api());
    }

    #[test]
    fn identity_size() {
        let size = std::mem::size_of::<Identity>();
        println!("size_of::<Identity>() = {size} bytes");
        assert!(size <= 32, "{size}");
    }

    // ---- errors and config -------------------------------------------------

    #[test]
    fn www_authenticate_and_labels() {
        let cases = [
            (EXPIRED, "expired"),
            (NOT_YET, "not_yet_valid"),
            (BAD_SIG, "bad_signature"),
            (BAD_ALG, "bad_algorithm"),
            (WRONG_ISS, "wrong_issuer"),
            (WRONG_AUD, "wrong_audience"),
            (UNKNOWN_KEY, "unknown_key"),
            (MALFORMED, "invalid"),
            (MISSING, "missing"),
        ];
        for (e, label) in cases {
            assert_eq!(e.metric_label(), label);
            assert!(!e.reason.contains('"') && !e.reason.contains('\n'));
        }
        assert_eq!(
            EXPIRED.www_authenticate(),
            r#"Bearer realm="wsedge", error="invalid_token", error_description="token expired""#
        );
    }

    #[test]
    fn config_errors_name_the_field_and_file() {
        let e = |cfg: AuthConfig| Authenticator::new(&cfg).unwrap_err();
        assert!(e(AuthConfig { jwt_hs256_secret: "short".into(), ..AuthConfig::default() })
            .starts_with("auth.jwt_hs256_secret: must be at least 32 bytes"));
        assert!(e(AuthConfig { jwt_public_key_alg: "HS256".into(), ..AuthConfig::default() })
            .starts_with("auth.jwt_public_key_alg:"));
        let missing = "/nonexistent/wsedge/key.pem";
        let msg = e(AuthConfig { jwt_public_key_file: missing.into(), ..AuthConfig::default() });
        assert!(
            msg.starts_with(&format!("auth.jwt_public_key_file: {missing}: cannot read")),
            "{msg}"
        );
        let garbage = temp_file("garbage.pem", "not a key");
        let msg = e(AuthConfig { jwt_public_key_file: garbage.clone(), ..AuthConfig::default() });
        assert!(msg.contains(&garbage) && msg.contains("not a PEM RSA public key"), "{msg}");
        // An EC key where RSA is configured, and the reverse.
        let ec = temp_file("ec-as-rsa.pem", &keys().ec_public);
        let msg = e(AuthConfig { jwt_public_key_file: ec.clone(), ..AuthConfig::default() });
        assert!(msg.contains(&ec), "{msg}");
        let rsa = temp_file("rsa-as-ec.pem", &keys().rsa_public);
        let msg = e(AuthConfig {
            jwt_public_key_file: rsa.clone(),
            jwt_public_key_alg: "ES256".into(),
            ..AuthConfig::default()
        });
        assert!(msg.contains(&rsa) && msg.contains("P-256"), "{msg}");
        for f in [garbage, ec, rsa] {
            let _ = std::fs::remove_file(f);
        }

        let with_key = |k: ApiKeyConfig| AuthConfig { api_keys: vec![k], ..AuthConfig::default() };
        let k =
            || ApiKeyConfig { name: "n".into(), key: "secret-key-1".into(), ..Default::default() };
        assert!(
            e(with_key(ApiKeyConfig { name: "".into(), ..k() })).contains("auth.api_keys[0].name")
        );
        assert!(
            e(with_key(ApiKeyConfig { key: "".into(), ..k() })).contains("auth.api_keys[0].key")
        );
        assert!(e(with_key(ApiKeyConfig { key: "a.b.c".into(), ..k() })).contains("two dots"));
        assert!(
            e(with_key(ApiKeyConfig { key: "has space".into(), ..k() })).contains("visible ASCII")
        );
        assert!(e(with_key(ApiKeyConfig { subscribe: vec!["a*b".into()], ..k() }))
            .contains("auth.api_keys[0].subscribe"));
        assert!(
            e(with_key(ApiKeyConfig { publish: vec!["".into()], ..k() })).contains("empty pattern")
        );
        let two = |a: ApiKeyConfig, b: ApiKeyConfig| AuthConfig {
            api_keys: vec![a, b],
            ..AuthConfig::default()
        };
        assert!(e(two(k(), ApiKeyConfig { key: "other-key".into(), ..k() })).contains("used twice"));
        assert!(e(two(k(), ApiKeyConfig { name: "m".into(), ..k() })).contains("same key"));
        assert!(e(AuthConfig { anonymous_publish: vec!["**".into()], ..AuthConfig::default() })
            .starts_with("auth.anonymous_publish"));
        assert!(e(AuthConfig { anonymous_routes: vec!["echo".into()], ..AuthConfig::default() })
            .starts_with("auth.anonymous_routes"));
        // Never the secret in an error.
        let msg = e(AuthConfig { jwt_hs256_secret: "hunter2".into(), ..AuthConfig::default() });
        assert!(!msg.contains("hunter2"));
    }

    #[test]
    fn config_deserializes_with_defaults_and_redacted_debug() {
        let cfg: AuthConfig = serde_json::from_value(json!({
            "required": true,
            "api_keys": [{"name": "b", "key": "the-secret-key", "publish": ["x"]}]
        }))
        .unwrap();
        assert_eq!(cfg.leeway_s, 30);
        assert_eq!(cfg.query_param, "token");
        assert_eq!(cfg.cookie, "wsedge_token");
        assert_eq!(cfg.jwt_public_key_alg, "RS256");
        assert_eq!(cfg.anonymous_routes, vec!["/echo".to_owned()]);
        assert!(!cfg.api_keys[0].publish_api && cfg.api_keys[0].subscribe.is_empty());
        assert!(serde_json::from_value::<AuthConfig>(json!({"requird": true})).is_err());
        assert!(serde_json::from_value::<AuthConfig>(json!({"api_keys": [{"name": "b"}]})).is_err());
        assert!(serde_json::from_value::<AuthConfig>(
            json!({"api_keys": [{"name": "b", "key": "k", "x": 1}]})
        )
        .is_err());
        let cfg = AuthConfig { jwt_hs256_secret: SECRET.into(), ..cfg };
        let dbg = format!("{cfg:?} {:?}", auth(&cfg));
        assert!(!dbg.contains("the-secret-key") && !dbg.contains(SECRET), "{dbg}");
        assert!(dbg.contains("<redacted>"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"a%20b%2B%2b+"), b"a b+++");
        assert_eq!(percent_decode(b"%"), b"%");
        assert_eq!(percent_decode(b"%4"), b"%4");
        assert_eq!(percent_decode(b"%zz%41"), b"%zzA");
        assert_eq!(query_value("token=a&token=b", "token"), Some(b"a".to_vec()));
        assert_eq!(query_value("t%6Fken=a", "token"), Some(b"a".to_vec()));
        assert_eq!(query_value("token", "token"), None);
        assert_eq!(query_value("token=&token=b", "token"), Some(b"b".to_vec()));
    }

    #[test]
    fn authenticator_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Authenticator>();
        check::<Identity>();
    }

    proptest::proptest! {
        #[test]
        fn never_panics(
            auth_header in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
            query in ".{0,60}",
            cookie in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
        ) {
            static A: OnceLock<Authenticator> = OnceLock::new();
            let a = A.get_or_init(|| auth(&AuthConfig { jwt_hs256_secret: SECRET.into(), ..key_cfg() }));
            let mut r = req(&[], Some(&query));
            r.headers.push(("authorization".into(), auth_header.clone()));
            r.headers.push(("cookie".into(), cookie));
            let _ = a.authenticate(&r, "/ws", NOW);
            let mut bearer = b"Bearer ".to_vec();
            bearer.extend_from_slice(&auth_header);
            r.headers[0].1 = bearer;
            let _ = a.authenticate(&r, "/ws", NOW);
        }
    }
}
