//! `cargo xtask check-scaffold`: the scaffold run on a copy of the workspace, which must
//! then format, lint and test clean.

use std::path::Path;
use std::time::SystemTime;

use crate::workspace::{cargo, read, workspace_root};

/// Scaffolds a fresh service in a temporary copy of the workspace, checks that the scaffold
/// edited that copy and nothing else, then formats, lints and tests the whole copy.
///
/// A second copy, `other-checkout`, builds xtask into the same target directory first, as a
/// neighbouring checkout would: the copy's sources are older than that binary, so cargo
/// reuses it for `cargo xtask` in the copy, and a scaffold that located the workspace from
/// where it was built would edit `other-checkout`.
pub(crate) fn check_scaffold() -> Result<(), String> {
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
