//! Developer tooling for the myapi workspace (the Rust `xtask` convention; not part of the
//! admin CLI):
//!
//! - `cargo xtask new-service NAME [--singular SINGULAR]` adds a service in every tier —
//!   migrations for both backends, table and row struct, schema, service and data manager,
//!   `/NAME` routes requiring the OAuth2 scope `NAME:read` (granted to readers) with OpenAPI
//!   entries, and HTTP tests — and wires it into the workspace around the current directory.
//! - `cargo xtask check-scaffold` proves the recipe still holds: it scaffolds a fresh service
//!   in a temporary copy of the workspace, then checks formatting, lints and runs every test
//!   of the copy.
//! - `cargo xtask deploy-check` runs the deployment kit in `deploy/` on loopback: three
//!   instances on a throwaway PostgreSQL cluster behind nginx with TLS, watched by
//!   Prometheus, and proves what a fleet must do (see `deploy_check`).
//!
//! Wiring points in existing files are marked with `// [xtask] …` comments; the scaffold
//! inserts above each marker, so the markers also show a reader where a service plugs in.

mod deploy_check;
mod templates;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{SystemTime, UNIX_EPOCH};

/// Module names a new service may not take: existing modules, tables and test modules of
/// the tiers (and `roles`, where the scopes are defined), Rust keywords.
const RESERVED: &[&str] = &[
    "audit",
    "audit_events",
    "auth",
    "bounded",
    "movies",
    "users",
    "query",
    "roles",
    "scopes",
    "sessions",
    "refresh_families",
    "refresh_tokens",
    "health",
    "token",
    "docs",
    "openapi",
    "config",
    "database",
    "error",
    "errors",
    "routes",
    "schema",
    "rows",
    "connection",
    "migrations",
    "extract",
    "middleware",
    "startup",
    "web",
    "support",
    "binary",
    "browser",
    "hostile",
    "resilience",
    "fuzz",
    "movie_writes",
    "key_rotation",
    "oauth_clients",
    "proxies",
    "tls",
    "lib",
    "main",
    "mod",
    "tests",
    "test",
    "crate",
    "self",
    "super",
    "type",
    "fn",
    "struct",
    "enum",
    "impl",
    "trait",
    "use",
    "pub",
    "let",
    "match",
    "move",
    "ref",
    "static",
    "const",
    "loop",
    "while",
    "for",
    "in",
    "if",
    "else",
    "return",
    "where",
    "async",
    "await",
    "dyn",
    "box",
    "unsafe",
    "extern",
    "true",
    "false",
    "as",
    "break",
    "continue",
    "abstract",
    "final",
    "macro",
    "override",
    "priv",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "try",
    "gen",
];

/// Plural last words the suffix rules get wrong, with their singulars (a word the same in both
/// numbers maps to itself). Matched against the whole last word of NAME only: `horseshoes`
/// is not `shoes`, and anything missing here needs `--singular`.
const IRREGULAR: &[(&str, &str)] = &[
    ("people", "person"),
    ("children", "child"),
    ("men", "man"),
    ("women", "woman"),
    ("mice", "mouse"),
    ("geese", "goose"),
    ("feet", "foot"),
    ("teeth", "tooth"),
    ("criteria", "criterion"),
    ("indices", "index"),
    ("matrices", "matrix"),
    ("vertices", "vertex"),
    ("analyses", "analysis"),
    ("crises", "crisis"),
    ("hypotheses", "hypothesis"),
    ("diagnoses", "diagnosis"),
    ("axes", "axis"),
    ("aliases", "alias"),
    ("biases", "bias"),
    ("gases", "gas"),
    ("quizzes", "quiz"),
    ("movies", "movie"),
    ("cookies", "cookie"),
    ("zombies", "zombie"),
    ("rookies", "rookie"),
    ("selfies", "selfie"),
    ("calories", "calorie"),
    ("goalies", "goalie"),
    ("hoodies", "hoodie"),
    ("newbies", "newbie"),
    ("brownies", "brownie"),
    ("pies", "pie"),
    ("ties", "tie"),
    ("lies", "lie"),
    ("shoes", "shoe"),
    ("toes", "toe"),
    ("canoes", "canoe"),
    ("uses", "use"),
    ("excuses", "excuse"),
    ("abuses", "abuse"),
    ("caches", "cache"),
    ("niches", "niche"),
    ("headaches", "headache"),
    ("knives", "knife"),
    ("wives", "wife"),
    ("lives", "life"),
    ("leaves", "leaf"),
    ("shelves", "shelf"),
    ("wolves", "wolf"),
    ("halves", "half"),
    ("thieves", "thief"),
    ("selves", "self"),
    ("series", "series"),
    ("species", "species"),
    ("news", "news"),
    ("means", "means"),
    ("analytics", "analytics"),
    ("sheep", "sheep"),
    ("deer", "deer"),
];

/// Suffix rules for the last word of NAME, first match wins; a word none of them fits is
/// taken as it is (`staff`, `data`). Order matters: `ouses` before `uses` before `us`.
const SUFFIX_RULES: &[(&str, &str)] = &[
    ("sses", "ss"),    // classes, addresses
    ("ss", "ss"),      // access: already singular
    ("ouses", "ouse"), // houses, warehouses
    ("auses", "ause"), // causes, clauses
    ("uses", "us"),    // statuses, buses, campuses
    ("us", "us"),      // status
    ("is", "is"),      // analysis
    ("xes", "x"),      // boxes, taxes
    ("ches", "ch"),    // matches, branches
    ("shes", "sh"),    // dishes, hashes
    ("zzes", "zz"),    // buzzes
    ("ies", "y"),      // categories, companies
    ("oes", "o"),      // heroes, potatoes
    ("s", ""),         // users, archives, responses
];

/// The singular of a lower_snake_case plural: only its last word changes.
fn singularise(plural: &str) -> String {
    let (head, word) = match plural.rfind('_') {
        Some(at) => plural.split_at(at + 1),
        None => ("", plural),
    };
    let singular = IRREGULAR
        .iter()
        .find(|(p, _)| *p == word)
        .map(|(_, s)| (*s).to_owned())
        .or_else(|| {
            SUFFIX_RULES.iter().find_map(|(suffix, replacement)| {
                word.strip_suffix(suffix)
                    .filter(|stem| !stem.is_empty())
                    .map(|stem| format!("{stem}{replacement}"))
            })
        })
        .unwrap_or_else(|| word.to_owned());
    format!("{head}{singular}")
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = match parse_args(&args) {
        Ok(task) => task,
        Err(message) => {
            eprintln!("xtask: error: {message} (see `cargo xtask --help`)");
            return ExitCode::from(2);
        }
    };
    let result = match task {
        Task::Help => {
            println!("{USAGE}");
            Ok(())
        }
        Task::NewService(names) => workspace_root().and_then(|root| new_service(&root, &names)),
        Task::CheckScaffold => check_scaffold(),
        Task::DeployCheck { stop_cycles } => deploy_check::deploy_check(stop_cycles),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "\
usage: cargo xtask new-service NAME [--singular SINGULAR]
           Adds the service NAME in every tier. NAME is a lower_snake_case plural (the table,
           module and URL), e.g. directors; SINGULAR (type names, id column) is derived from
           it unless given, e.g. `cargo xtask new-service people --singular person`.
       cargo xtask check-scaffold
           Scaffolds a service in a temporary copy of the workspace, then formats, lints and
           tests the whole copy.
       cargo xtask deploy-check [--stop-cycles N]
           Runs deploy/ on loopback (PostgreSQL, 3 instances, nginx with TLS, Prometheus) and
           checks logins, the shared login budgets, a drained rolling restart, N stops under
           load (default 50) and the metrics.";

enum Task {
    Help,
    NewService(Names),
    CheckScaffold,
    DeployCheck { stop_cycles: usize },
}

/// Reads the command line; an error is one line, a usage error (exit status 2).
fn parse_args(args: &[String]) -> Result<Task, String> {
    let mut args = args.iter().map(String::as_str);
    match args.next() {
        None => Err("missing command".to_owned()),
        Some("-h" | "--help" | "help") => Ok(Task::Help),
        Some("check-scaffold") => match args.next() {
            None => Ok(Task::CheckScaffold),
            Some("-h" | "--help") => Ok(Task::Help),
            Some(extra) => Err(format!("unexpected argument `{extra}` to check-scaffold")),
        },
        Some("deploy-check") => {
            let mut stop_cycles = deploy_check::STOP_CYCLES;
            while let Some(arg) = args.next() {
                match arg {
                    "-h" | "--help" => return Ok(Task::Help),
                    "--stop-cycles" => {
                        stop_cycles = args
                            .next()
                            .and_then(|n| n.parse().ok())
                            .ok_or("`--stop-cycles` needs a whole number")?;
                    }
                    extra => return Err(format!("unexpected argument `{extra}` to deploy-check")),
                }
            }
            Ok(Task::DeployCheck { stop_cycles })
        }
        Some("new-service") => {
            let (mut name, mut singular) = (None, None);
            while let Some(arg) = args.next() {
                let value = match arg {
                    "-h" | "--help" => return Ok(Task::Help),
                    "--singular" => Some(args.next().ok_or("`--singular` needs a value")?),
                    _ => arg.strip_prefix("--singular="),
                };
                if let Some(value) = value {
                    if singular.replace(value).is_some() {
                        return Err("`--singular` given twice".to_owned());
                    }
                } else if arg.starts_with('-') {
                    return Err(format!("unknown option `{arg}` to new-service"));
                } else if name.replace(arg).is_some() {
                    return Err(format!(
                        "unexpected argument `{arg}`: new-service takes one NAME"
                    ));
                }
            }
            let name = name.ok_or("new-service needs a NAME, e.g. `new-service directors`")?;
            Names::parse(name, singular).map(Task::NewService)
        }
        Some(other) => Err(format!("unknown command `{other}`")),
    }
}

/// The workspace containing the current directory, found at run time: with a shared
/// `CARGO_TARGET_DIR` cargo reuses an up-to-date xtask binary built for another checkout, so
/// a path fixed at compile time (`CARGO_MANIFEST_DIR`) can name that other checkout, or one
/// that is gone.
fn workspace_root() -> Result<PathBuf, String> {
    let here =
        std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?;
    find_workspace_root(&here)
}

/// The root of the cargo workspace `dir` is in, as `cargo locate-project --workspace` gives
/// it. Asking cargo rather than walking up to the first `Cargo.toml` with `[workspace]`: it is
/// the very lookup that `cargo xtask` used to pick the workspace it runs in, and it handles
/// what a walk would have to re-implement (`package.workspace`, `workspace.exclude`, nested
/// workspaces, a `[workspace]` table written in any TOML form).
fn find_workspace_root(dir: &Path) -> Result<PathBuf, String> {
    let output = Command::new(cargo_binary())
        .args(["locate-project", "--workspace", "--message-format", "plain"])
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "no cargo workspace at or above {}: {}",
            dir.display(),
            stderr
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
        ));
    }
    let stdout = String::from_utf8(output.stdout)
        .map_err(|_| "`cargo locate-project` printed a path that is not UTF-8".to_owned())?;
    let manifest = Path::new(stdout.strip_suffix('\n').unwrap_or(&stdout));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("`cargo locate-project` printed `{}`", manifest.display()))
}

/// The cargo running us (cargo sets `CARGO` for `cargo run` and `cargo test`), else `cargo`.
fn cargo_binary() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// lower_snake_case, 2-40 characters, starting with a letter.
fn is_snake_case(name: &str) -> bool {
    (2..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.ends_with('_')
        && !name.contains("__")
}

/// `film_review` → `FilmReview`.
fn camel_case(snake: &str) -> String {
    snake
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// The names a service is known by in each tier.
struct Names {
    /// Table, module, scope and URL prefix: `directors`.
    plural: String,
    /// Singular snake case: `director`.
    singular: String,
    /// Type prefix: `Director` (→ `DirectorRow`, `DirectorSchema`, `DirectorService`).
    type_name: String,
    /// Primary key column: `director_id`.
    id: String,
    /// Marker type of the service's read scope `directors:read`: `DirectorsRead`.
    scope_marker: String,
}

impl Names {
    /// Checks NAME and the singular if given, else derives it; every refusal is one line.
    /// The singular may be a keyword (`box`): the templates use it only inside longer
    /// identifiers (`box_id`, `BoxRow`, `get_box`).
    fn parse(name: &str, singular: Option<&str>) -> Result<Self, String> {
        if !is_snake_case(name) {
            return Err(format!(
                "invalid service name `{name}`: use lower_snake_case, 2-40 characters, starting with a letter (e.g. directors)"
            ));
        }
        if RESERVED.contains(&name) {
            return Err(format!(
                "invalid service name `{name}`: it is reserved (an existing module or table, or a Rust keyword)"
            ));
        }
        let singular = match singular {
            Some(given) if is_snake_case(given) => given.to_owned(),
            Some(given) => {
                return Err(format!(
                    "invalid singular `{given}`: use lower_snake_case, 2-40 characters, starting with a letter (e.g. director)"
                ));
            }
            None => singularise(name),
        };
        Ok(Self {
            id: format!("{singular}_id"),
            plural: name.to_owned(),
            type_name: camel_case(&singular),
            scope_marker: format!("{}Read", camel_case(name)),
            singular,
        })
    }

    /// Fills a template's placeholders.
    fn fill(&self, template: &str, migration: &str) -> String {
        template
            .replace("__NAME__", &self.plural)
            .replace("__SINGULAR__", &self.singular)
            .replace("__TYPE__", &self.type_name)
            .replace("__ID__", &self.id)
            .replace("__SCOPE_MARKER__", &self.scope_marker)
            .replace("__MIGRATION__", migration)
    }
}

/// A planned change: a new file, or an insertion above a marker in an existing one.
enum Edit {
    Create {
        path: PathBuf,
        contents: String,
    },
    Insert {
        path: PathBuf,
        marker: &'static str,
        text: String,
    },
}

fn new_service(root: &Path, names: &Names) -> Result<(), String> {
    let migration = migration_version();
    let edits = plan(root, names, &migration);
    let files = check_and_apply(root, names, &edits)?;
    write_all(&files)?;
    println!("xtask: added service `{}`:", names.plural);
    for path in files.keys() {
        println!("  {}", path.strip_prefix(root).unwrap_or(path).display());
    }
    cargo(root, &["fmt", "--all"], &[])?;
    println!(
        "xtask: building and refreshing tests/snapshots/openapi.json (the new paths are in it)"
    );
    cargo(
        root,
        &[
            "test",
            "-q",
            "-p",
            "myapi-web",
            "--test",
            "http",
            "openapi::document_matches_the_committed_snapshot",
        ],
        &[("UPDATE_SNAPSHOTS", "1")],
    )?;
    println!(
        "xtask: done. Next: add columns in the migrations, {}Row and {}Schema; run `cargo test --workspace`.",
        names.type_name, names.type_name
    );
    Ok(())
}

/// Every change the scaffold makes, relative to `root`.
fn plan(root: &Path, names: &Names, migration: &str) -> Vec<Edit> {
    use templates as t;
    let n = &names.plural;
    let create = |path: String, template: &str| Edit::Create {
        path: root.join(path),
        contents: names.fill(template, migration),
    };
    let insert = |path: &str, marker: &'static str, template: &str| Edit::Insert {
        path: root.join(path),
        marker,
        text: names.fill(template, migration),
    };
    vec![
        create(
            format!("migrations/postgres/{migration}_create_{n}/up.sql"),
            t::PG_UP,
        ),
        create(
            format!("migrations/postgres/{migration}_create_{n}/down.sql"),
            t::PG_DOWN,
        ),
        create(
            format!("migrations/sqlite/{migration}_create_{n}/up.sql"),
            t::SQLITE_UP,
        ),
        create(
            format!("migrations/sqlite/{migration}_create_{n}/down.sql"),
            t::SQLITE_DOWN,
        ),
        insert(
            "crates/myapi-models/src/schema.rs",
            "// [xtask] tables",
            t::TABLE,
        ),
        insert(
            "crates/myapi-models/src/schema.rs",
            "// [xtask] joinable tables",
            "    __NAME__,\n",
        ),
        insert(
            "crates/myapi-models/src/rows.rs",
            "// [xtask] row structs",
            t::ROW,
        ),
        create(format!("crates/myapi-schemas/src/{n}.rs"), t::SCHEMA),
        insert(
            "crates/myapi-schemas/src/lib.rs",
            "// [xtask] schema modules",
            "mod __NAME__;\n",
        ),
        insert(
            "crates/myapi-schemas/src/lib.rs",
            "// [xtask] schema exports",
            "pub use __NAME__::__TYPE__Schema;\n",
        ),
        create(format!("crates/myapi-services/src/{n}/mod.rs"), t::SERVICE),
        create(
            format!("crates/myapi-services/src/{n}/data.rs"),
            t::DATA_MANAGER,
        ),
        insert(
            "crates/myapi-services/src/lib.rs",
            "// [xtask] service modules",
            "pub mod __NAME__;\n",
        ),
        insert(
            "crates/myapi-services/src/lib.rs",
            "// [xtask] service fields",
            t::SERVICES_FIELD,
        ),
        insert(
            "crates/myapi-services/src/lib.rs",
            "// [xtask] service constructors",
            t::SERVICES_INIT,
        ),
        insert(
            "crates/myapi-services/src/auth/roles.rs",
            "// [xtask] scopes",
            "    (\"__NAME__:read\", Role::Reader),\n",
        ),
        insert(
            "crates/myapi-web/src/extract.rs",
            "// [xtask] scope markers",
            "    __SCOPE_MARKER__ = \"__NAME__:read\",\n",
        ),
        create(format!("crates/myapi-web/src/routes/{n}.rs"), t::ROUTES),
        insert(
            "crates/myapi-web/src/routes/mod.rs",
            "// [xtask] route modules",
            "pub mod __NAME__;\n",
        ),
        insert(
            "crates/myapi-web/src/routes/mod.rs",
            "// [xtask] route scopes",
            "    __NAME__::configure(cfg);\n",
        ),
        insert(
            "crates/myapi-web/src/openapi.rs",
            "// [xtask] schemas",
            "        myapi_schemas::__TYPE__Schema,\n",
        ),
        insert(
            "crates/myapi-web/src/openapi.rs",
            "// [xtask] tags",
            "        (name = \"__NAME__\", description = \"The __NAME__ service\"),\n",
        ),
        create(format!("tests/http/{n}.rs"), t::HTTP_TESTS),
        insert(
            "tests/http/main.rs",
            "// [xtask] test modules",
            "mod __NAME__;\n",
        ),
    ]
}

/// Checks that the service is new and every marker is present, then returns the final
/// contents of every touched file — nothing is written unless all of it is in order.
fn check_and_apply(
    root: &Path,
    names: &Names,
    edits: &[Edit],
) -> Result<BTreeMap<PathBuf, String>, String> {
    let schema = read(&root.join("crates/myapi-models/src/schema.rs"))?;
    if schema.contains(&format!("    {} (", names.plural)) {
        return Err(format!(
            "service `{}` already exists: table `{}` is in schema.rs",
            names.plural, names.plural
        ));
    }
    let mut files: BTreeMap<PathBuf, String> = BTreeMap::new();
    for edit in edits {
        match edit {
            Edit::Create { path, contents } => {
                if path.exists() || files.contains_key(path) {
                    return Err(format!(
                        "service `{}` already exists: {} is present",
                        names.plural,
                        path.display()
                    ));
                }
                files.insert(path.clone(), contents.clone());
            }
            Edit::Insert { path, marker, text } => {
                let current = match files.get(path) {
                    Some(contents) => contents.clone(),
                    None => read(path)?,
                };
                let Some(at) = current.find(marker) else {
                    return Err(format!(
                        "marker `{marker}` not found in {}; was it removed?",
                        path.display()
                    ));
                };
                let line_start = current[..at].rfind('\n').map_or(0, |i| i + 1);
                let mut updated = current.clone();
                updated.insert_str(line_start, text);
                files.insert(path.clone(), updated);
            }
        }
    }
    // Read from disk, which nothing has touched yet: `files` already has the new names.
    let singular_hint = "NAME or `--singular`";
    let (roles, extract) = (
        "crates/myapi-services/src/auth/roles.rs",
        "crates/myapi-web/src/extract.rs",
    );
    for (file, what, ident, hint) in [
        (
            "crates/myapi-models/src/rows.rs",
            "type",
            format!("{}Row", names.type_name),
            singular_hint,
        ),
        (
            "crates/myapi-schemas/src/lib.rs",
            "type",
            format!("{}Schema", names.type_name),
            singular_hint,
        ),
        (extract, "scope marker", names.scope_marker.clone(), "NAME"),
    ] {
        if mentions(&read(&root.join(file))?, &ident) {
            return Err(format!(
                "{what} `{ident}` already exists in {file}; choose another {hint}"
            ));
        }
    }
    let scope = format!("\"{}:read\"", names.plural);
    if read(&root.join(roles))?.contains(&scope) {
        return Err(format!(
            "scope {scope} already exists in {roles}; choose another NAME"
        ));
    }
    Ok(files)
}

/// Whether `text` has `ident` as a whole identifier, not inside a longer one.
fn mentions(text: &str, ident: &str) -> bool {
    let ident_char = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(ident).any(|(at, _)| {
        !text[..at].ends_with(ident_char) && !text[at + ident.len()..].starts_with(ident_char)
    })
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn write_all(files: &BTreeMap<PathBuf, String>) -> Result<(), String> {
    for (path, contents) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(path, contents)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Diesel's migration version format, `YYYY-MM-DD-HHMMSS`, in UTC.
fn migration_version() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}-{:02}{:02}{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Runs cargo in `dir`; a failure is an error naming the command.
fn cargo(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Result<(), String> {
    let status = Command::new(cargo_binary())
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(dir)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`cargo {}` failed in {}",
            args.join(" "),
            dir.display()
        ))
    }
}

/// Scaffolds a fresh service in a temporary copy of the workspace, checks that the scaffold
/// edited that copy and nothing else, then formats, lints and tests the whole copy.
///
/// A second copy, `other-checkout`, builds xtask into the same target directory first, as a
/// neighbouring checkout would: the copy's sources are older than that binary, so cargo
/// reuses it for `cargo xtask` in the copy, and a scaffold that located the workspace from
/// where it was built would edit `other-checkout`.
fn check_scaffold() -> Result<(), String> {
    const PROBE: &str = "scaffold_probes";
    let root = workspace_root()?;
    let base = std::env::temp_dir().join(format!("myapi-scaffold-check-{}", std::process::id()));
    if base.exists() {
        std::fs::remove_dir_all(&base)
            .map_err(|e| format!("cannot clear {}: {e}", base.display()))?;
    }
    let (copy, other) = (base.join("copy"), base.join("other-checkout"));
    copy_tree(&root, &copy)?;
    copy_tree(&root, &other)?;
    // Shared by both copies and kept between runs, so only the first check compiles the
    // dependencies. Not the workspace's own `target/`: the copy's builds would replace its
    // final binaries (cargo does not re-link an up-to-date crate), so a later `cargo xtask`
    // or `cargo test` there could run the copy's code.
    let target = root.join("target").join("scaffold-check");
    let target = target.display().to_string();
    let envs = [("CARGO_TARGET_DIR", target.as_str())];
    let fail = |what: &str, error: String| {
        format!(
            "{what} failed for the scaffolded service ({error}); the copies are kept in {}",
            base.display()
        )
    };

    println!(
        "xtask: check-scaffold: building xtask in {}",
        other.display()
    );
    cargo(&other, &["build", "-q", "-p", "xtask"], &envs).map_err(|e| fail("build", e))?;
    let binary = Path::new(&target)
        .join("debug")
        .join(format!("xtask{}", std::env::consts::EXE_SUFFIX));
    let built_at = modified(&binary);
    println!(
        "xtask: check-scaffold: `cargo xtask new-service {PROBE}` in {}",
        copy.display()
    );
    cargo(&copy, &["xtask", "new-service", PROBE], &envs).map_err(|e| fail("scaffold", e))?;
    let has_probe = |dir: &Path| {
        read(&dir.join("crates/myapi-models/src/schema.rs"))
            .map(|schema| schema.contains(&format!("    {PROBE} (")))
    };
    if !has_probe(&copy)? || has_probe(&other)? || has_probe(&root)? {
        return Err(fail(
            "scaffold",
            format!(
                "it did not edit exactly the workspace it ran in, {}",
                copy.display()
            ),
        ));
    }
    if modified(&binary) != built_at {
        println!(
            "xtask: check-scaffold: note: cargo rebuilt xtask for the copy, so running a binary built in another checkout was not exercised"
        );
    }

    let steps: [(&str, &[&str]); 3] = [
        ("format", &["fmt", "--all", "--", "--check"]),
        (
            "lint",
            &[
                "clippy",
                "-q",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        ("tests", &["test", "-q", "--workspace"]),
    ];
    for (what, args) in steps {
        println!("xtask: check-scaffold: {what}");
        cargo(&copy, args, &envs).map_err(|e| fail(what, e))?;
    }
    let _ = std::fs::remove_dir_all(&base);
    println!(
        "xtask: check-scaffold: the scaffold edited only its own checkout, and the workspace with the new service passes fmt, clippy and all its tests"
    );
    Ok(())
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Copies the workspace sources (not `target/`, `.git/` or local databases).
fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let entries =
        std::fs::read_dir(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == "target" || name == ".git" || name.ends_with(".db") || name.contains(".db-") {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&*name));
        if entry.file_type().map_err(|e| e.to_string())?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(|e| format!("cannot copy {}: {e}", src.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_are_singularised() {
        for (plural, singular) in [
            ("categories", "category"),
            ("companies", "company"),
            ("movies", "movie"),
            ("classes", "class"),
            ("addresses", "address"),
            ("boxes", "box"),
            ("matches", "match"),
            ("statuses", "status"),
            ("houses", "house"),
            ("series", "series"),
            ("news", "news"),
            ("people", "person"),
            ("users", "user"),
            ("directors", "director"),
            ("archives", "archive"),
            ("responses", "response"),
            ("caches", "cache"),
            ("heroes", "hero"),
            ("staff", "staff"),
            ("film_reviews", "film_review"),
            ("sales_people", "sales_person"),
            ("news_items", "news_item"),
        ] {
            assert_eq!(singularise(plural), singular, "{plural}");
        }
    }

    #[test]
    fn names_are_derived_and_checked() {
        let names = Names::parse("directors", None).unwrap();
        assert_eq!(
            (
                names.singular.as_str(),
                names.type_name.as_str(),
                names.id.as_str()
            ),
            ("director", "Director", "director_id")
        );
        let names = Names::parse("film_reviews", None).unwrap();
        assert_eq!(
            (names.type_name.as_str(), names.scope_marker.as_str()),
            ("FilmReview", "FilmReviewsRead")
        );
        assert_eq!(
            Names::parse("categories", None).unwrap().type_name,
            "Category"
        );
        let names = Names::parse("personnel", Some("staff_member")).unwrap();
        assert_eq!(
            (names.type_name.as_str(), names.id.as_str()),
            ("StaffMember", "staff_member_id")
        );
        for bad in [
            "",
            "a",
            "Directors",
            "1abc",
            "dir-ectors",
            "dir__x",
            "x_",
            "movies",
            "auth",
            "type",
            "users",
            "query",
            "scopes",
            "sessions",
            "roles",
        ] {
            assert!(Names::parse(bad, None).is_err(), "{bad}");
        }
        for bad in ["", "Person", "per son", "p"] {
            assert!(Names::parse("people", Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn arguments_are_parsed() {
        let parse =
            |args: &[&str]| parse_args(&args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>());
        let singular_of = |args: &[&str]| match parse(args) {
            Ok(Task::NewService(names)) => names.singular,
            _ => panic!("{args:?}"),
        };
        assert_eq!(
            singular_of(&["new-service", "people", "--singular", "person"]),
            "person"
        );
        assert_eq!(
            singular_of(&["new-service", "--singular=person", "people"]),
            "person"
        );
        assert_eq!(singular_of(&["new-service", "people"]), "person");
        assert!(matches!(
            parse(&["check-scaffold"]),
            Ok(Task::CheckScaffold)
        ));
        assert!(matches!(
            parse(&["deploy-check"]),
            Ok(Task::DeployCheck { stop_cycles: 50 })
        ));
        assert!(matches!(
            parse(&["deploy-check", "--stop-cycles", "300"]),
            Ok(Task::DeployCheck { stop_cycles: 300 })
        ));
        for help in [
            &["--help"][..],
            &["-h"],
            &["help"],
            &["new-service", "--help"],
        ] {
            assert!(matches!(parse(help), Ok(Task::Help)), "{help:?}");
        }
        for bad in [
            &[][..],
            &["bogus"],
            &["--bogus"],
            &["new-service"],
            &["new-service", "a", "b"],
            &["new-service", "people", "--singular"],
            &[
                "new-service",
                "people",
                "--singular",
                "a",
                "--singular",
                "b",
            ],
            &["new-service", "people", "--plural", "x"],
            &["new-service", "Bad"],
            &["check-scaffold", "now"],
            &["deploy-check", "now"],
        ] {
            let error = parse(bad).err().unwrap_or_else(|| panic!("{bad:?}"));
            assert!(!error.contains('\n'), "{error}");
        }
    }

    #[test]
    fn the_workspace_root_is_the_one_around_the_directory() {
        let base = std::env::temp_dir().join(format!("xtask-root-test-{}", std::process::id()));
        let (one, two) = (base.join("one"), base.join("two"));
        for workspace in [&one, &two] {
            std::fs::create_dir_all(workspace.join("crates/deep")).unwrap();
            std::fs::write(workspace.join("Cargo.toml"), "[workspace]\n").unwrap();
        }
        let found = |dir: &Path| find_workspace_root(dir).unwrap().canonicalize().unwrap();
        assert_eq!(found(&one), one.canonicalize().unwrap());
        assert_eq!(found(&two.join("crates/deep")), two.canonicalize().unwrap());
        assert_eq!(found(&one.join("crates/deep")), one.canonicalize().unwrap());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn an_existing_type_is_a_taken_name() {
        let dir = std::env::temp_dir().join(format!("xtask-taken-test-{}", std::process::id()));
        let plan_for = |names: &Names| plan(&dir, names, "2026-01-01-000000");
        for edit in plan_for(&Names::parse("directors", None).unwrap()) {
            if let Edit::Insert { path, marker, .. } = edit {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                std::fs::write(&path, format!("{text}{marker}\n")).unwrap();
            }
        }
        let append = |file: &str, text: &str| {
            let path = dir.join(file);
            let current = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, current + text).unwrap();
        };
        append(
            "crates/myapi-models/src/rows.rs",
            "pub struct MovieRow {}\n",
        );
        append(
            "crates/myapi-schemas/src/lib.rs",
            "pub use auth::{TokenForm, UserSchema};\n",
        );
        append(
            "crates/myapi-web/src/extract.rs",
            "    ReviewsRead = \"reviews:read\",\n",
        );
        append(
            "crates/myapi-services/src/auth/roles.rs",
            "    (\"tickets:read\", Role::Reader),\n",
        );
        for (name, singular) in [
            ("movie", None),
            ("films", Some("movie")),
            ("user", None),
            ("reviews", None),
            ("tickets", None),
        ] {
            let names = Names::parse(name, singular).unwrap();
            let error = check_and_apply(&dir, &names, &plan_for(&names)).unwrap_err();
            assert!(error.contains("already exists"), "{error}");
        }
        for name in ["movie_reviews", "tokens", "users_groups"] {
            let names = Names::parse(name, None).unwrap();
            assert!(
                check_and_apply(&dir, &names, &plan_for(&names)).is_ok(),
                "{name}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn migration_versions_look_like_diesels() {
        let version = migration_version();
        assert_eq!(version.len(), 17, "{version}");
        assert!(version.starts_with("20"), "{version}");
    }

    #[test]
    fn a_missing_marker_touches_nothing() {
        let dir = std::env::temp_dir().join(format!("xtask-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("crates/myapi-models/src")).unwrap();
        std::fs::write(
            dir.join("crates/myapi-models/src/schema.rs"),
            "// no markers\n",
        )
        .unwrap();
        let names = Names::parse("directors", None).unwrap();
        let edits = plan(&dir, &names, "2026-01-01-000000");
        assert!(
            check_and_apply(&dir, &names, &edits)
                .unwrap_err()
                .contains("marker")
        );
        assert!(!dir.join("migrations").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
