//! What users are made of and log in with: [`Email`], [`UserName`] and [`Password`], each
//! parsed by the one rule the CLI and the API share, and a login's [`Credentials`].

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
