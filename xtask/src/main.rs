//! Developer tooling for the myapi workspace (the Rust `xtask` convention; not part of the
//! admin CLI):
//!
//! - `cargo xtask new-service NAME` adds a service in every tier — migrations for both
//!   backends, table and row struct, schema, service and data manager, a `/NAME` scope
//!   behind the bearer guard with OpenAPI entries, and HTTP tests — and wires it in.
//! - `cargo xtask check-scaffold` proves the recipe still holds: it scaffolds a fresh service
//!   in a temporary copy of the workspace, then builds, lints and tests it.
//!
//! Wiring points in existing files are marked with `// [xtask] …` comments; the scaffold
//! inserts above each marker, so the markers also show a reader where a service plugs in.

mod templates;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{SystemTime, UNIX_EPOCH};

/// Module names a new service may not take: existing modules of the tiers, Rust keywords.
const RESERVED: &[&str] = &[
    "auth",
    "movies",
    "users",
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
    "support",
    "binary",
    "browser",
    "hostile",
    "resilience",
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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["new-service", name] => new_service(&workspace_root(), name, true),
        ["check-scaffold"] => check_scaffold(),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: cargo xtask new-service NAME   (NAME: lower_snake_case plural, e.g. directors)\n       \
                     cargo xtask check-scaffold";

/// The workspace this xtask was built from.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
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
}

impl Names {
    /// Parses and checks NAME; every refusal is a clear message.
    fn parse(name: &str) -> Result<Self, String> {
        let valid = name.len() >= 2
            && name.len() <= 40
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !name.ends_with('_')
            && !name.contains("__");
        if !valid {
            return Err(format!(
                "invalid service name `{name}`: use lower_snake_case, 2-40 characters, starting with a letter (e.g. directors)"
            ));
        }
        if RESERVED.contains(&name) {
            return Err(format!(
                "invalid service name `{name}`: it is reserved (an existing module or a Rust keyword)"
            ));
        }
        let singular = match name.strip_suffix('s') {
            Some(stem) if stem.len() >= 2 && !stem.ends_with('s') && !RESERVED.contains(&stem) => {
                stem.to_owned()
            }
            _ => name.to_owned(),
        };
        let type_name = singular
            .split('_')
            .map(|word| {
                let mut chars = word.chars();
                chars.next().map_or_else(String::new, |first| {
                    first.to_ascii_uppercase().to_string() + chars.as_str()
                })
            })
            .collect();
        Ok(Self {
            id: format!("{singular}_id"),
            plural: name.to_owned(),
            singular,
            type_name,
        })
    }

    /// Fills a template's placeholders.
    fn fill(&self, template: &str, migration: &str) -> String {
        template
            .replace("__NAME__", &self.plural)
            .replace("__SINGULAR__", &self.singular)
            .replace("__TYPE__", &self.type_name)
            .replace("__ID__", &self.id)
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

fn new_service(root: &Path, name: &str, refresh_snapshot: bool) -> Result<(), String> {
    let names = Names::parse(name)?;
    let migration = migration_version();
    let edits = plan(root, &names, &migration);
    let files = check_and_apply(root, &names, &edits)?;
    write_all(&files)?;
    println!("xtask: added service `{}`:", names.plural);
    for path in files.keys() {
        println!("  {}", path.strip_prefix(root).unwrap_or(path).display());
    }
    cargo(root, &["fmt", "--all"], &[])?;
    if refresh_snapshot {
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
    }
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
        create(format!("crates/myapi-web/src/routes/{n}.rs"), t::ROUTES),
        insert(
            "crates/myapi-web/src/routes/mod.rs",
            "// [xtask] route modules",
            "pub mod __NAME__;\n",
        ),
        insert(
            "crates/myapi-web/src/routes/mod.rs",
            "// [xtask] route scopes",
            "    __NAME__::configure(&mut scopes);\n",
        ),
        insert(
            "crates/myapi-web/src/openapi.rs",
            "// [xtask] paths",
            t::OPENAPI_PATHS,
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
    Ok(files)
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
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
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

/// Scaffolds a fresh service in a temporary copy of the workspace, then builds, lints and
/// tests the copy (in `target/scaffold-check`, kept between runs).
fn check_scaffold() -> Result<(), String> {
    const PROBE: &str = "scaffold_probes";
    let root = workspace_root();
    let copy = std::env::temp_dir().join(format!("myapi-scaffold-check-{}", std::process::id()));
    if copy.exists() {
        std::fs::remove_dir_all(&copy)
            .map_err(|e| format!("cannot clear {}: {e}", copy.display()))?;
    }
    copy_tree(&root, &copy)?;
    // A target directory of its own under target/: sharing the workspace's would overwrite
    // its final binaries (cargo does not re-link an up-to-date crate), so a later
    // `cargo xtask` or `cargo test` could run the copy's builds. Kept between runs, so only
    // the first check compiles the dependencies.
    let target = root
        .join("target")
        .join("scaffold-check")
        .display()
        .to_string();
    let envs = [("CARGO_TARGET_DIR", target.as_str())];
    println!("xtask: scaffolding `{PROBE}` in {}", copy.display());
    let steps: [(&str, Vec<&str>); 5] = [
        (
            "scaffold",
            vec!["run", "-q", "-p", "xtask", "--", "new-service", PROBE],
        ),
        ("format", vec!["fmt", "--all", "--", "--check"]),
        (
            "lint",
            vec![
                "clippy",
                "-q",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        (
            "tier rules",
            vec!["test", "-q", "-p", "myapi-web", "--test", "tier_boundaries"],
        ),
        (
            "tests",
            vec![
                "test",
                "-q",
                "-p",
                "myapi-web",
                "--test",
                "http",
                "--",
                PROBE,
                "openapi",
                "fuzz",
            ],
        ),
    ];
    for (what, args) in &steps {
        println!("xtask: check-scaffold: {what}");
        if let Err(error) = cargo(&copy, args, &envs) {
            return Err(format!(
                "{what} failed for the scaffolded service ({error}); the copy is kept at {}",
                copy.display()
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&copy);
    println!("xtask: check-scaffold: the scaffolded service builds, lints and passes its tests");
    Ok(())
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
    fn names_are_derived_and_checked() {
        let names = Names::parse("directors").unwrap();
        assert_eq!(
            (
                names.singular.as_str(),
                names.type_name.as_str(),
                names.id.as_str()
            ),
            ("director", "Director", "director_id")
        );
        let names = Names::parse("film_reviews").unwrap();
        assert_eq!(names.type_name, "FilmReview");
        assert_eq!(Names::parse("staff").unwrap().singular, "staff");
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
        ] {
            assert!(Names::parse(bad).is_err(), "{bad}");
        }
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
        let names = Names::parse("directors").unwrap();
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
