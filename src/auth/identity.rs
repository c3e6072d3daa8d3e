//! Who a connection is ([`Identity`]) and what it may do: channel patterns
//! resolved once per identity, answered per action by
//! [`Identity::can_subscribe`] and [`Identity::can_publish`].
//!
//! Pure and allocation-free per check; identities are built by the
//! authenticator (API keys, anonymous users) and by JWT verification.

use std::sync::Arc;

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
pub(super) struct Permissions {
    subscribe: Box<[Pattern]>,
    publish: Box<[Pattern]>,
}

impl Permissions {
    pub(super) fn resolve(
        subscribe: &[String],
        publish: &[String],
        subject: Option<&str>,
    ) -> Permissions {
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
    pub(super) publish_api: bool,
    /// May open the node dashboard.
    pub(super) admin: bool,
    /// `None` = may subscribe and publish anything.
    pub(super) perms: Option<Arc<Permissions>>,
}

impl Identity {
    /// No credential, auth not required: may do anything.
    pub fn anonymous_all() -> Identity {
        Identity {
            subject: None,
            kind: IdentityKind::Anonymous,
            publish_api: true,
            admin: true,
            perms: None,
        }
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

    /// May this identity open the node dashboard? When auth is required:
    /// API keys with `admin = true` only. When not: always.
    pub fn can_admin(&self) -> bool {
        self.admin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size() {
        let size = std::mem::size_of::<Identity>();
        println!("size_of::<Identity>() = {size} bytes");
        assert!(size <= 32, "{size}");
    }
}
