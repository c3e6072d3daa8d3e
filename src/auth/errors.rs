//! What can go wrong in authentication: [`AuthConfigError`], why an
//! `[auth]` section cannot be used (at start-up), and [`AuthError`], why a
//! request is refused at the handshake (what the client is told in the
//! `401`, and the metric label it is counted under), with the fixed set of
//! refusals the checks return.
//!
//! Neither ever contains a secret, an API key or a client's credential.

use std::fmt;

use super::jwt::MIN_HS256_SECRET_BYTES;

/// Why [`super::Authenticator::new`] refused an `[auth]` section. Displayed
/// as one line that starts with the field (`auth.api_keys[1].key: ...`);
/// [`AuthConfigError::field`] gives the field alone.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// `jwt_hs256_secret` is set but shorter than 256 bits (RFC 7518
    /// section 3.2).
    #[error("auth.jwt_hs256_secret: must be at least {MIN_HS256_SECRET_BYTES} bytes, has {len}")]
    Hs256SecretTooShort {
        /// The secret's length in bytes.
        len: usize,
    },
    /// `jwt_public_key_alg` is neither `RS256` nor `ES256`.
    #[error("auth.jwt_public_key_alg: must be \"RS256\" or \"ES256\", not {alg:?}")]
    UnsupportedPublicKeyAlg {
        /// The configured value.
        alg: String,
    },
    /// `jwt_public_key_file` cannot be read.
    #[error("auth.jwt_public_key_file: {file}: cannot read: {source}")]
    PublicKeyUnreadable {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// `jwt_public_key_file` is not a PEM public key of the kind
    /// `jwt_public_key_alg` needs.
    #[error("auth.jwt_public_key_file: {file}: not a PEM {kind} public key for {alg}: {source}")]
    PublicKeyInvalid {
        /// The file.
        file: String,
        /// The key kind expected: `RSA` or `P-256 EC`.
        kind: &'static str,
        /// The configured algorithm.
        alg: &'static str,
        /// What `jsonwebtoken` said.
        source: jsonwebtoken::errors::Error,
    },
    /// A pattern list holds an empty pattern.
    #[error("{field}: empty pattern")]
    EmptyPattern {
        /// The list, e.g. `auth.api_keys[0].subscribe`.
        field: String,
    },
    /// A pattern has a `*` other than as its last character.
    #[error("{field}: {pattern:?}: '*' is allowed only as the last character")]
    MisplacedWildcard {
        /// The list, e.g. `auth.anonymous_publish`.
        field: String,
        /// The pattern.
        pattern: String,
    },
    /// An `anonymous_routes` entry does not start with `/`.
    #[error("auth.anonymous_routes: {route:?} must start with '/'")]
    RelativeAnonymousRoute {
        /// The route.
        route: String,
    },
    /// An API key entry has an empty `name`.
    #[error("auth.api_keys[{index}].name: must not be empty")]
    ApiKeyNameEmpty {
        /// The entry's index.
        index: usize,
    },
    /// Two API key entries have the same `name`.
    #[error("auth.api_keys[{index}].name: {name:?} is used twice")]
    ApiKeyNameReused {
        /// The later entry's index.
        index: usize,
        /// The name.
        name: String,
    },
    /// An API key entry has an empty `key`.
    #[error("auth.api_keys[{index}].key: must not be empty (key {name:?})")]
    ApiKeyEmpty {
        /// The entry's index.
        index: usize,
        /// The entry's name.
        name: String,
    },
    /// An API key has a byte that is not visible ASCII (a space, a control
    /// character, non-ASCII).
    #[error("auth.api_keys[{index}].key: must be visible ASCII without spaces (key {name:?})")]
    ApiKeyNotVisibleAscii {
        /// The entry's index.
        index: usize,
        /// The entry's name.
        name: String,
    },
    /// An API key has exactly two dots, so it would be taken for a JWT.
    #[error(
        "auth.api_keys[{index}].key: must not have exactly two dots, it would be taken for a JWT (key {name:?})"
    )]
    ApiKeyLooksLikeJwt {
        /// The entry's index.
        index: usize,
        /// The entry's name.
        name: String,
    },
    /// Two API key entries have the same `key`.
    #[error("auth.api_keys[{index}].key: same key as another entry (key {name:?})")]
    ApiKeyReused {
        /// The later entry's index.
        index: usize,
        /// The later entry's name.
        name: String,
    },
}

impl AuthConfigError {
    /// The field at fault, dotted, with the entry index for API keys:
    /// `auth.jwt_hs256_secret`, `auth.api_keys[1].key`.
    pub fn field(&self) -> String {
        use AuthConfigError as E;
        match self {
            E::Hs256SecretTooShort { .. } => "auth.jwt_hs256_secret".into(),
            E::UnsupportedPublicKeyAlg { .. } => "auth.jwt_public_key_alg".into(),
            E::PublicKeyUnreadable { .. } | E::PublicKeyInvalid { .. } => {
                "auth.jwt_public_key_file".into()
            }
            E::EmptyPattern { field } | E::MisplacedWildcard { field, .. } => field.clone(),
            E::RelativeAnonymousRoute { .. } => "auth.anonymous_routes".into(),
            E::ApiKeyNameEmpty { index } | E::ApiKeyNameReused { index, .. } => {
                format!("auth.api_keys[{index}].name")
            }
            E::ApiKeyEmpty { index, .. }
            | E::ApiKeyNotVisibleAscii { index, .. }
            | E::ApiKeyLooksLikeJwt { index, .. }
            | E::ApiKeyReused { index, .. } => format!("auth.api_keys[{index}].key"),
        }
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

pub(super) const MISSING: AuthError =
    AuthError::new(AuthErrorKind::Missing, "credentials required");
pub(super) const MALFORMED: AuthError = AuthError::new(AuthErrorKind::Invalid, "malformed token");
pub(super) const BAD_CLAIMS: AuthError =
    AuthError::new(AuthErrorKind::Invalid, "malformed token claims");
pub(super) const NO_EXP: AuthError =
    AuthError::new(AuthErrorKind::Invalid, "token has no exp claim");
pub(super) const CRIT: AuthError =
    AuthError::new(AuthErrorKind::Invalid, "unsupported critical header");
pub(super) const EXPIRED: AuthError = AuthError::new(AuthErrorKind::Expired, "token expired");
pub(super) const NOT_YET: AuthError =
    AuthError::new(AuthErrorKind::NotYetValid, "token not yet valid");
pub(super) const BAD_SIG: AuthError =
    AuthError::new(AuthErrorKind::BadSignature, "bad token signature");
pub(super) const BAD_ALG: AuthError =
    AuthError::new(AuthErrorKind::BadAlgorithm, "token algorithm not allowed");
pub(super) const WRONG_ISS: AuthError =
    AuthError::new(AuthErrorKind::WrongIssuer, "wrong token issuer");
pub(super) const WRONG_AUD: AuthError =
    AuthError::new(AuthErrorKind::WrongAudience, "wrong token audience");
pub(super) const UNKNOWN_KEY: AuthError =
    AuthError::new(AuthErrorKind::UnknownKey, "unknown API key");

#[cfg(test)]
mod tests {
    use super::*;

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
}
