//! Roles and OAuth2 scopes (RFC 6749 §3.3): which scopes exist, which a role allows, and
//! what a `/token` request with a `scope` parameter is granted.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// A scope a route requires, as a type: the web tier's `Authorized<S>` extractor takes one
/// of the [`scope`] markers.
pub trait RequiredScope {
    const SCOPE: &'static str;
}

/// Declares every scope once: its marker type in [`scope`], its `resource:action` name, and
/// the least role granted it (in [`SCOPE_GRANTS`]).
macro_rules! scopes {
    ($($marker:ident = $name:literal for $role:ident,)*) => {
        /// Every scope a token may carry, as `resource:action`, with the least role granted
        /// it: a role is granted the scopes named for it and for the roles below it, and
        /// nothing by the shape of a scope's name (so a new `…:read` scope is an admin's until
        /// it says otherwise).
        pub const SCOPE_GRANTS: &[(&str, Role)] = &[$(($name, Role::$role),)*];

        /// One marker type per scope, for the routes that require it.
        pub mod scope {
            $(
                #[doc = concat!("The `", $name, "` scope.")]
                #[derive(Debug, Clone, Copy)]
                pub struct $marker;

                impl super::RequiredScope for $marker {
                    const SCOPE: &'static str = $name;
                }
            )*
        }
    };
}

scopes! {
    MoviesRead = "movies:read" for Reader,
    MoviesWrite = "movies:write" for Editor,
    UsersRead = "users:read" for Admin,
    AuditRead = "audit:read" for Admin,
    TokensIntrospect = "tokens:introspect" for Admin,
    // [xtask] scopes
}

/// Every scope's name, in the order of [`SCOPE_GRANTS`].
pub const SCOPES: [&str; SCOPE_GRANTS.len()] = scope_names();

const fn scope_names() -> [&'static str; SCOPE_GRANTS.len()] {
    let mut names = [""; SCOPE_GRANTS.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = SCOPE_GRANTS[i].0;
        i += 1;
    }
    names
}

/// What a user may do; stored on the user, so a change reaches their tokens within the
/// revocation window. Ordered by what they may do: each role may do what those before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// `movies:read` (and the read scopes of services that grant readers theirs).
    Reader,
    /// A reader's scopes and `movies:write`.
    Editor,
    /// Every scope: `users:read`, `audit:read` and `tokens:introspect` too.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Reader, Role::Editor, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reader => "reader",
            Self::Editor => "editor",
            Self::Admin => "admin",
        }
    }

    /// Whether [`SCOPE_GRANTS`] grants `scope` to this role; unknown scopes to none.
    pub fn allows(self, scope: &str) -> bool {
        SCOPE_GRANTS
            .iter()
            .any(|(name, least)| *name == scope && self >= *least)
    }

    /// Every scope this role allows.
    pub fn scopes(self) -> Scopes {
        Scopes(
            SCOPES
                .iter()
                .copied()
                .filter(|scope| self.allows(scope))
                .collect(),
        )
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|role| role.as_str() == raw)
            .ok_or_else(|| format!("unknown role `{raw}` (reader, editor or admin)"))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of known scopes; `Display` is the space-separated form tokens and responses carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(BTreeSet<&'static str>);

impl Scopes {
    /// Parses a `scope` parameter: space-separated; a value without a colon belongs to some
    /// other system and is ignored; an unknown `resource:action` is an error naming it. No
    /// known scope at all (including an empty parameter) is `None`: nothing was asked.
    pub fn parse_request(raw: &str) -> Result<Option<Self>, String> {
        let mut scopes = BTreeSet::new();
        for value in raw.split_ascii_whitespace().filter(|v| v.contains(':')) {
            let known = SCOPES
                .iter()
                .find(|scope| **scope == value)
                .ok_or_else(|| format!("unknown scope `{value}`"))?;
            scopes.insert(*known);
        }
        Ok((!scopes.is_empty()).then_some(Self(scopes)))
    }

    /// The known scopes of a token's `scope` claim (unknown ones are dropped: a scope that
    /// no longer exists grants nothing).
    pub fn from_claim(claim: &str) -> Self {
        Self(
            claim
                .split_ascii_whitespace()
                .filter_map(|value| SCOPES.iter().find(|scope| **scope == value).copied())
                .collect(),
        )
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The scopes of `self` that `role` allows.
    pub fn allowed_for(&self, role: Role) -> Self {
        Self(self.0.iter().copied().filter(|s| role.allows(s)).collect())
    }

    pub fn is_subset(&self, other: &Self) -> bool {
        self.0.is_subset(&other.0)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joined: Vec<&str> = self.0.iter().copied().collect();
        f.write_str(&joined.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_allow_what_the_issue_says() {
        // Holds for any scope a scaffolded service adds, too.
        for (scope, least) in SCOPE_GRANTS {
            assert_eq!(Role::Reader.allows(scope), *least == Role::Reader);
            assert_eq!(
                Role::Editor.allows(scope),
                Role::Reader.allows(scope) || *scope == "movies:write"
            );
            assert!(Role::Admin.allows(scope));
        }
        assert_eq!(SCOPES.len(), SCOPE_GRANTS.len());
        for (role, granted, refused) in [
            (
                Role::Reader,
                &["movies:read"][..],
                &["movies:write", "users:read", "audit:read"][..],
            ),
            (
                Role::Editor,
                &["movies:read", "movies:write"],
                &["users:read", "audit:read"],
            ),
            (
                Role::Admin,
                &["movies:read", "movies:write", "users:read", "audit:read"],
                &[],
            ),
        ] {
            let scopes = role.scopes();
            assert!(
                granted.iter().all(|s| scopes.contains(s)),
                "{role}: {scopes}"
            );
            assert!(
                !refused.iter().any(|s| scopes.contains(s)),
                "{role}: {scopes}"
            );
        }
        assert!(!Role::Admin.allows("movies:delete"));
        assert_eq!("editor".parse(), Ok(Role::Editor));
        assert!("owner".parse::<Role>().is_err());
    }

    #[test]
    fn scope_requests_parse_as_rfc_6749_says() {
        assert_eq!(Scopes::parse_request(""), Ok(None));
        assert_eq!(Scopes::parse_request("openid profile"), Ok(None));
        let asked = Scopes::parse_request("openid movies:write  movies:read")
            .unwrap()
            .unwrap();
        assert_eq!(asked.to_string(), "movies:read movies:write");
        assert!(Scopes::parse_request("movies:delete").is_err());
        assert_eq!(asked.allowed_for(Role::Reader).to_string(), "movies:read");
        assert!(Scopes::from_claim("users:read gone:read").contains("users:read"));
    }
}
