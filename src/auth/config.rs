//! The `[auth]` section of the config: [`AuthConfig`] and its
//! `[[auth.api_keys]]` entries, as deserialized, with `Debug` that never
//! prints a secret, and the pattern checks done at start-up.
//!
//! Plain data: nothing here reads a file or checks a credential; turning a
//! config into keys is [`super::Authenticator::new`]'s job.

use std::fmt;

use serde::Deserialize;

use super::AuthConfigError;

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
    /// May open the node dashboard (`/dashboard/ws`) when auth is required.
    #[serde(default)]
    pub admin: bool,
}

impl fmt::Debug for ApiKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyConfig")
            .field("name", &self.name)
            .field("key", &Redacted(&self.key))
            .field("subscribe", &self.subscribe)
            .field("publish", &self.publish)
            .field("publish_api", &self.publish_api)
            .field("admin", &self.admin)
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

/// Config patterns: non-empty, `*` only as the last character.
pub(super) fn check_patterns(field: &str, patterns: &[String]) -> Result<(), AuthConfigError> {
    for p in patterns {
        if p.is_empty() {
            return Err(AuthConfigError::EmptyPattern { field: field.to_owned() });
        }
        if p.trim_end_matches('*').contains('*') || p.ends_with("**") {
            return Err(AuthConfigError::MisplacedWildcard {
                field: field.to_owned(),
                pattern: p.clone(),
            });
        }
    }
    Ok(())
}
