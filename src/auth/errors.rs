//! Refusals at the handshake: [`AuthError`] (what the client is told in the
//! `401`, and the metric label it is counted under) and the fixed set of
//! refusals the checks return.

use std::fmt;

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
