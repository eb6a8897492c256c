//! `myapi-cli`: the admin command line — migrations, users, movie import, the audit trail.
//!
//! It reads the same configuration as the server (`config/`, `.env`, `MYAPI_*`), so it
//! works on whichever database `MYAPI_DATABASE__DSN` names. Secrets are never taken from
//! flags unless asked (`--password` shows in `ps`; prefer the prompt or `--password-stdin`).

use std::io::{BufRead, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use myapi_services::auth::Role;
use myapi_services::movies::OnExisting;
use myapi_services::{Database, ServiceError, Services, Settings, error_chain};

/// Exit codes scripts can rely on.
mod exit {
    /// The operation failed: invalid input, not found, conflict.
    pub const FAILED: u8 = 1;
    /// Bad usage or configuration.
    pub const USAGE: u8 = 2;
    /// The database could not be reached.
    pub const UNAVAILABLE: u8 = 3;
}

#[derive(Debug, Parser)]
#[command(name = "myapi-cli", version, about = "Administer a myapi database")]
#[command(
    after_help = "Exit status: 0 success, 1 operation failed (invalid input, not found, conflict), \
2 bad usage or configuration, 3 database unavailable.\n\
The database comes from MYAPI_DATABASE__DSN (or config/, .env); default: SQLite file myapi.db."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending database migrations.
    Migrate,
    /// Create a user who can log in at /token.
    CreateUser {
        /// Display name.
        #[arg(long)]
        name: String,
        /// Email, the login name (stored lower-case).
        #[arg(long)]
        email: String,
        #[command(flatten)]
        password: PasswordSource,
        /// What the user may do.
        #[arg(long, value_enum, default_value_t = RoleArg::Reader)]
        role: RoleArg,
    },
    /// List users (id, name, email, role), tab-separated.
    ListUsers,
    /// Give a user another role; their tokens follow within seconds.
    SetRole {
        /// Email of the user.
        #[arg(long)]
        email: String,
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// Delete a user; their tokens stop working within seconds.
    DeleteUser {
        /// Email of the user.
        #[arg(long)]
        email: String,
    },
    /// Set a user's password; their existing tokens are revoked.
    SetPassword {
        /// Email of the user.
        #[arg(long)]
        email: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Revoke every refresh token of a user (their sessions end when their access tokens
    /// expire).
    RevokeSessions {
        /// Email of the user.
        #[arg(long)]
        email: String,
    },
    /// Delete the refresh-token families that can no longer refresh (all expired, or
    /// revoked). Safe to run from cron at any time.
    PurgeSessions,
    /// Print the audit trail, oldest first, one event a line, tab-separated: id, time (RFC
    /// 3339, UTC), event, actor, subject user id, subject, client, request id, count, detail
    /// (`-` for none).
    Audit {
        /// Events from this time on: RFC 3339 (2026-12-06T00:00:00Z), Unix seconds, or a
        /// duration before now (24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Only events about this user: a user id, or an email (which also finds a deleted
        /// user's events).
        #[arg(long)]
        user: Option<String>,
        /// Only events of this kind, such as login_failed.
        #[arg(long)]
        event: Option<String>,
    },
    /// Delete audit events older than `audit.retention_days` (MYAPI_AUDIT__RETENTION_DAYS).
    /// Safe to run from cron at any time.
    PurgeAudit,
    /// Delete the stored answers to `Idempotency-Key` requests older than
    /// `idempotency.retention_hours` (MYAPI_IDEMPOTENCY__RETENTION_HOURS), which no repeat
    /// gets any more. Safe to run from cron at any time.
    PurgeIdempotencyKeys,
    /// Write a new Ed25519 token signing key to PATH (PKCS#8 PEM, mode 0600) and its public
    /// key to PATH.pub, and print its kid. Neither file may exist. List the key in
    /// MYAPI_TOKEN_KEY_FILES (see the README's key rotation).
    GenerateKey {
        /// Where to write the private key.
        path: PathBuf,
    },
    /// Import movies from a CSV file with header `movie_id,title,released,rating`,
    /// all or nothing.
    ImportMovies {
        /// The CSV file.
        file: PathBuf,
        /// What to do with rows whose movie_id already exists.
        #[arg(long, value_enum, default_value_t = ExistingRows::Fail)]
        on_existing: ExistingRows,
    },
}

/// Where the password comes from; with neither flag, a hidden prompt on a terminal.
#[derive(Debug, Args)]
struct PasswordSource {
    /// The password (visible to other local users in `ps`; prefer the prompt).
    #[arg(long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    /// Reads movies.
    Reader,
    /// Also creates, changes and deletes movies.
    Editor,
    /// Everything, including listing users.
    Admin,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Reader => Self::Reader,
            RoleArg::Editor => Self::Editor,
            RoleArg::Admin => Self::Admin,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExistingRows {
    /// Abort the import, writing nothing.
    Fail,
    /// Keep the stored movie.
    Skip,
    /// Overwrite the stored movie.
    Update,
}

impl From<ExistingRows> for OnExisting {
    fn from(value: ExistingRows) -> Self {
        match value {
            ExistingRows::Fail => Self::Fail,
            ExistingRows::Skip => Self::Skip,
            ExistingRows::Update => Self::Update,
        }
    }
}

/// A failed command: what to print and how to exit.
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: exit::USAGE,
        }
    }
}

impl From<ServiceError> for Failure {
    fn from(error: ServiceError) -> Self {
        let code = match error {
            ServiceError::Unavailable(_) => exit::UNAVAILABLE,
            _ => exit::FAILED,
        };
        let message = match &error {
            // One line per bad field (for an import: per bad CSV line).
            ServiceError::Invalid(fields) if fields.len() > 1 => {
                let lines: Vec<String> = fields.iter().map(ToString::to_string).collect();
                format!("{} problems:\n  {}", fields.len(), lines.join("\n  "))
            }
            other => error_chain(other),
        };
        Self { message, code }
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error")).init();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("myapi-cli: error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

fn run(command: Command) -> Result<(), Failure> {
    // Needs no configuration: it may run before there is any.
    if let Command::GenerateKey { path } = &command {
        return generate_key(path);
    }
    let settings =
        Settings::load().map_err(|e| Failure::usage(format!("configuration error: {e}")))?;
    match command {
        Command::Migrate => migrate(&settings),
        Command::CreateUser {
            name,
            email,
            password,
            role,
        } => create_user(&settings, &name, &email, &password, role.into()),
        Command::ListUsers => list_users(&settings),
        Command::SetRole { email, role } => set_role(&settings, &email, role.into()),
        Command::DeleteUser { email } => delete_user(&settings, &email),
        Command::SetPassword { email, password } => set_password(&settings, &email, &password),
        Command::RevokeSessions { email } => revoke_sessions(&settings, &email),
        Command::PurgeSessions => purge_sessions(&settings),
        Command::Audit { since, user, event } => audit(
            &settings,
            since.as_deref(),
            user.as_deref(),
            event.as_deref(),
        ),
        Command::PurgeAudit => purge_audit(&settings),
        Command::PurgeIdempotencyKeys => purge_idempotency_keys(&settings),
        Command::ImportMovies { file, on_existing } => {
            import_movies(&settings, &file, on_existing.into())
        }
        Command::GenerateKey { path } => generate_key(&path),
    }
}

fn generate_key(path: &Path) -> Result<(), Failure> {
    let kid = myapi_services::auth::keys::write_new_key(path).map_err(|e| Failure {
        message: format!("{}: {}", path.display(), error_chain(&e)),
        code: exit::FAILED,
    })?;
    println!("{kid}");
    Ok(())
}

/// Connects and builds the services, migrating first when the settings say so.
fn connect(settings: &Settings) -> Result<Services, Failure> {
    Ok(Services::build(settings, settings.database.run_migrations)?)
}

fn migrate(settings: &Settings) -> Result<(), Failure> {
    let applied = Database::connect(&settings.database)?.migrate()?;
    if applied.is_empty() {
        println!("database is up to date");
    } else {
        println!(
            "applied {} migration(s): {}",
            applied.len(),
            applied.join(", ")
        );
    }
    Ok(())
}

fn create_user(
    settings: &Settings,
    name: &str,
    email: &str,
    source: &PasswordSource,
    role: Role,
) -> Result<(), Failure> {
    // Read the password before connecting, so a prompt is not delayed by the database.
    let password = read_password(source)?;
    let user = connect(settings)?
        .auth
        .create_user(name, email, password, role)?;
    println!(
        "created user {} <{}> with id {} ({})",
        user.name, user.email, user.user_id, user.role
    );
    Ok(())
}

fn set_role(settings: &Settings, email: &str, role: Role) -> Result<(), Failure> {
    let email = connect(settings)?.auth.set_role(email, role)?;
    println!("{} is now {role}", email.as_str());
    Ok(())
}

fn list_users(settings: &Settings) -> Result<(), Failure> {
    for user in connect(settings)?.auth.list_users()? {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            user.user_id,
            user.name,
            user.email,
            user.role,
            if user.email_verified {
                "verified"
            } else {
                "unverified"
            }
        );
    }
    Ok(())
}

fn delete_user(settings: &Settings, email: &str) -> Result<(), Failure> {
    let email = connect(settings)?.auth.delete_user(email)?;
    println!("deleted user {email}");
    Ok(())
}

fn set_password(settings: &Settings, email: &str, source: &PasswordSource) -> Result<(), Failure> {
    let password = read_password(source)?;
    let email = connect(settings)?.auth.set_password(email, password)?;
    println!(
        "password changed; existing tokens of {} are revoked",
        email.as_str()
    );
    Ok(())
}

fn revoke_sessions(settings: &Settings, email: &str) -> Result<(), Failure> {
    let email = connect(settings)?.auth.revoke_sessions(email)?;
    println!("revoked every refresh token of {email}");
    Ok(())
}

fn purge_sessions(settings: &Settings) -> Result<(), Failure> {
    let purged = connect(settings)?.auth.purge_sessions()?;
    println!("purged {purged} finished session(s)");
    Ok(())
}

fn audit(
    settings: &Settings,
    since: Option<&str>,
    user: Option<&str>,
    event: Option<&str>,
) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    connect(settings)?.audit.list(since, user, event, |event| {
        let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".into());
        let line = [
            event.id.to_string(),
            event.at,
            event.event,
            event.actor,
            or_dash(event.subject_user_id.map(|id| id.to_string())),
            or_dash(event.subject),
            or_dash(event.client),
            or_dash(event.request_id),
            event.count.to_string(),
            or_dash(event.detail),
        ]
        .map(|field| field.replace(['\t', '\n', '\r'], " "))
        .join("\t");
        // A closed pipe (`| head`): nothing more to print.
        match writeln!(out, "{line}") {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    })?;
    Ok(())
}

fn purge_audit(settings: &Settings) -> Result<(), Failure> {
    match connect(settings)?.audit.purge()? {
        Some(purged) => println!(
            "purged {purged} audit event(s) older than {} days",
            settings.audit.retention_days
        ),
        None => println!("kept every audit event: audit.retention_days is 0"),
    }
    Ok(())
}

fn purge_idempotency_keys(settings: &Settings) -> Result<(), Failure> {
    let purged = connect(settings)?.idempotency.purge()?;
    println!(
        "purged {purged} idempotency key(s) older than {} hours",
        settings.idempotency.retention_hours
    );
    Ok(())
}

fn import_movies(settings: &Settings, file: &Path, on_existing: OnExisting) -> Result<(), Failure> {
    let input = std::fs::File::open(file).map_err(|e| Failure {
        message: format!("cannot read {}: {e}", file.display()),
        code: exit::FAILED,
    })?;
    let counts = connect(settings)?
        .movies
        .import_csv(std::io::BufReader::new(input), on_existing)?;
    println!(
        "imported {}: {} inserted, {} updated, {} skipped",
        file.display(),
        counts.inserted,
        counts.updated,
        counts.skipped
    );
    Ok(())
}

/// The password from the flag, standard input, or a hidden prompt.
fn read_password(source: &PasswordSource) -> Result<String, Failure> {
    let usage = |message: &str| Failure::usage(message);
    if let Some(password) = &source.password {
        return Ok(password.clone());
    }
    if source.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| usage(&format!("cannot read standard input: {e}")))?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    if !std::io::stdin().is_terminal() {
        return Err(usage(
            "no password given: use --password-stdin, --password, or run on a terminal",
        ));
    }
    let password = rpassword::prompt_password("Password: ")
        .map_err(|e| usage(&format!("cannot read password: {e}")))?;
    let again = rpassword::prompt_password("Repeat password: ")
        .map_err(|e| usage(&format!("cannot read password: {e}")))?;
    if password == again {
        Ok(password)
    } else {
        Err(usage("passwords do not match"))
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn password_flags_conflict() {
        let parsed = Cli::try_parse_from([
            "myapi-cli",
            "create-user",
            "--name",
            "A",
            "--email",
            "a@b.co",
            "--password",
            "x",
            "--password-stdin",
        ]);
        assert!(parsed.is_err());
    }

    #[test]
    fn import_mode_defaults_to_fail() {
        let Cli {
            command: Command::ImportMovies { on_existing, .. },
        } = Cli::try_parse_from(["myapi-cli", "import-movies", "movies.csv"]).unwrap()
        else {
            panic!("expected import-movies");
        };
        assert_eq!(OnExisting::from(on_existing), OnExisting::Fail);
    }
}
