//! What users are made of and log in with: [`Email`], [`UserName`] and [`Password`], each
//! parsed by the one rule the CLI and the API share, a login's [`Credentials`], and the
//! [`ClientId`] a token is issued to.

use crate::InvalidField;

/// A normalised email: trimmed, lower-case, a bare address. The one rule for the CLI and
/// for `/token`'s `username`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        let email = normalise_email(raw);
        let invalid = |message: &str| Err(InvalidField::new("email", message));
        if email.is_empty() || email.len() > 254 {
            return invalid("must be 1 to 254 characters");
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return invalid("must not contain spaces or control characters");
        }
        if email.contains(['<', '>', '"', '(', ')', ',', ';', ':', '[', ']', '\\']) {
            return invalid(
                "must be a bare address such as ada@example.com (no display name, brackets or quotes)",
            );
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return invalid("must contain @");
        };
        if local.is_empty()
            || local.contains('@')
            || domain.len() < 3
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return invalid("is not a valid email address");
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Trimmed and lower-case: how an email is stored, looked up and throttled.
pub(super) fn normalise_email(raw: &str) -> String {
    raw.trim().to_lowercase()
}

/// A display name: trimmed, 1 to 200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(pub(super) String);

impl UserName {
    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        let name = raw.trim();
        let invalid = |message: &str| Err(InvalidField::new("name", message));
        if name.is_empty() || name.chars().count() > 200 {
            return invalid("must be 1 to 200 characters");
        }
        if name.chars().any(char::is_control) {
            return invalid("must not contain control characters");
        }
        Ok(Self(name.to_owned()))
    }
}

/// A password within the configured length bounds (in characters), without NUL (which
/// PostgreSQL cannot store and C-string tools cut short).
pub struct Password(pub(super) String);

impl Password {
    pub fn parse(raw: String, min_chars: usize, max_chars: usize) -> Result<Self, InvalidField> {
        let chars = raw.chars().count();
        let invalid = |message: String| Err(InvalidField::new("password", message));
        if chars < min_chars || chars > max_chars {
            return invalid(format!("must be {min_chars} to {max_chars} characters"));
        }
        if raw.contains('\0') {
            return invalid("must not contain NUL".into());
        }
        Ok(Self(raw))
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// What a client sent to log in: the OAuth2 `username` (an email) and `password`.
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// The `scope` parameter as sent, if any.
    pub scope: Option<String>,
    /// The `client_id` parameter as sent, if any.
    pub client_id: Option<String>,
}

/// The OAuth client a token is issued to (its RFC 9068 `client_id`): 1 to 64 of `A-Z a-z 0-9
/// . _ -`. Clients are public: nothing authenticates them, so the id says which application
/// asked, for the resource servers that read it, not who may ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId(String);

impl ClientId {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let valid = (1..=64).contains(&raw.len())
            && raw
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err("client_id must be 1 to 64 of A-Z a-z 0-9 . _ -")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which clients `/token` issues to: those of `auth.client_ids`, or any well-formed id when
/// it is empty; a request naming none gets `auth.default_client_id`.
#[derive(Debug, Clone)]
pub struct Clients {
    allowed: Vec<ClientId>,
    default: ClientId,
}

/// Why `/token` refused a `client_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRefusal {
    Malformed(&'static str),
    /// Well-formed, but not one of `auth.client_ids`.
    Unlisted,
}

impl Clients {
    /// The clients of `auth.client_ids` and `auth.default_client_id`; the error names the
    /// setting at fault.
    pub fn new(client_ids: &[String], default: &str) -> Result<Self, (&'static str, String)> {
        let default =
            ClientId::parse(default).map_err(|e| ("auth.default_client_id", e.to_owned()))?;
        let allowed = client_ids
            .iter()
            .map(|id| ClientId::parse(id))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ("auth.client_ids", format!("each {e}")))?;
        if !allowed.is_empty() && !allowed.contains(&default) {
            return Err((
                "auth.default_client_id",
                "must be one of auth.client_ids".to_owned(),
            ));
        }
        Ok(Self { allowed, default })
    }

    /// The client of a `/token` request: the `client_id` it sent (empty counts as none),
    /// else the default.
    pub fn resolve(&self, given: Option<&str>) -> Result<ClientId, ClientRefusal> {
        let Some(given) = given.filter(|given| !given.is_empty()) else {
            return Ok(self.default.clone());
        };
        let client = ClientId::parse(given).map_err(ClientRefusal::Malformed)?;
        if self.allowed.is_empty() || self.allowed.contains(&client) {
            Ok(client)
        } else {
            Err(ClientRefusal::Unlisted)
        }
    }

    /// The client a refresh of a family started for `stored` issues to: that client, if
    /// it is still allowed and `named` (the refresh's own `client_id`, resolved) is none or
    /// the same. A family from before clients were kept (`''`) takes the named client, or
    /// the default: its login's client is unknown, so no client the upgrade found is
    /// refused.
    pub(super) fn for_refresh(&self, stored: &str, named: Option<&ClientId>) -> Option<ClientId> {
        if stored.is_empty() {
            return Some(named.unwrap_or(&self.default).clone());
        }
        let client = ClientId::parse(stored).ok()?;
        let allowed = self.allowed.is_empty() || self.allowed.contains(&client);
        (allowed && named.is_none_or(|named| *named == client)).then_some(client)
    }
}

impl Credentials {
    /// Refuses what no database should see: control characters in the username, NUL in
    /// the password. Answered as a malformed request, before any budget is spent.
    pub(super) fn check(&self) -> Result<(), &'static str> {
        if self.username.chars().any(char::is_control) {
            return Err("username must not contain control characters");
        }
        if self.password.contains('\0') {
            return Err("password must not contain NUL");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(allowed: &[&str], default: &str) -> Result<Clients, (&'static str, String)> {
        let allowed: Vec<String> = allowed.iter().map(|id| (*id).to_owned()).collect();
        Clients::new(&allowed, default)
    }

    #[test]
    fn a_client_id_is_1_to_64_of_a_small_alphabet() {
        for good in ["a", "myapi-docs", "web.app_2", &"x".repeat(64)] {
            assert_eq!(ClientId::parse(good).unwrap().as_str(), good);
        }
        for bad in ["", &"x".repeat(65), "a b", "app/1", "é", "a\0", "app:1"] {
            assert!(ClientId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn any_well_formed_client_unless_a_list_is_set() {
        let any = clients(&[], "myapi").unwrap();
        for (given, expected) in [(None, "myapi"), (Some(""), "myapi"), (Some("web"), "web")] {
            assert_eq!(any.resolve(given).unwrap().as_str(), expected);
        }
        assert!(matches!(
            any.resolve(Some("a b")),
            Err(ClientRefusal::Malformed(_))
        ));
        let listed = clients(&["web", "cli"], "web").unwrap();
        assert_eq!(listed.resolve(Some("cli")).unwrap().as_str(), "cli");
        assert_eq!(listed.resolve(None).unwrap().as_str(), "web");
        assert_eq!(listed.resolve(Some("other")), Err(ClientRefusal::Unlisted));
        let id = |id: &str| ClientId::parse(id).unwrap();
        let refresh = |stored, named: Option<&str>| {
            listed
                .for_refresh(stored, named.map(id).as_ref())
                .map(|client| client.0)
        };
        assert_eq!(refresh("cli", None).as_deref(), Some("cli"));
        assert_eq!(refresh("cli", Some("cli")).as_deref(), Some("cli"));
        assert_eq!(refresh("cli", Some("web")), None, "another client");
        assert_eq!(refresh("gone", None), None, "no longer listed");
        assert_eq!(
            refresh("", None).as_deref(),
            Some("web"),
            "from before clients"
        );
        assert_eq!(refresh("", Some("cli")).as_deref(), Some("cli"));
    }

    #[test]
    fn the_default_client_must_be_well_formed_and_listed() {
        assert_eq!(clients(&[], "a b").unwrap_err().0, "auth.default_client_id");
        assert_eq!(
            clients(&["web"], "cli").unwrap_err().0,
            "auth.default_client_id"
        );
        assert_eq!(clients(&["w eb"], "cli").unwrap_err().0, "auth.client_ids");
    }
}
