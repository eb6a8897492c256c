//! `cargo xtask new-service`: the edits that add a service in every tier, checked against
//! the workspace before any is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::names::Names;
use crate::templates;
use crate::workspace::{cargo, read};

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

pub(crate) fn new_service(root: &Path, names: &Names) -> Result<(), String> {
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
            "crates/myapi-services/src/app.rs",
            "// [xtask] service fields",
            t::SERVICES_FIELD,
        ),
        insert(
            "crates/myapi-services/src/app.rs",
            "// [xtask] service constructors",
            t::SERVICES_INIT,
        ),
        insert(
            "crates/myapi-services/src/auth/roles.rs",
            "// [xtask] scopes",
            "    __SCOPE_MARKER__ = \"__NAME__:read\" for Reader,\n",
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
    let roles = "crates/myapi-services/src/auth/roles.rs";
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
        (roles, "scope marker", names.scope_marker.clone(), "NAME"),
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
    jiff::Timestamp::now()
        .strftime("%Y-%m-%d-%H%M%S")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
            "crates/myapi-services/src/auth/roles.rs",
            "    ReviewsRead = \"other:read\" for Reader,\n    Other = \"tickets:read\" for Reader,\n",
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
