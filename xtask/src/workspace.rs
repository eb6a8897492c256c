//! The workspace the commands work on, and cargo run in it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace containing the current directory, found at run time: with a shared
/// `CARGO_TARGET_DIR` cargo reuses an up-to-date xtask binary built for another checkout, so
/// a path fixed at compile time (`CARGO_MANIFEST_DIR`) can name that other checkout, or one
/// that is gone.
pub(crate) fn workspace_root() -> Result<PathBuf, String> {
    let here =
        std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?;
    find_workspace_root(&here)
}

/// The root of the cargo workspace `dir` is in, as `cargo locate-project --workspace` gives
/// it. Asking cargo rather than walking up to the first `Cargo.toml` with `[workspace]`: it is
/// the very lookup that `cargo xtask` used to pick the workspace it runs in, and it handles
/// what a walk would have to re-implement (`package.workspace`, `workspace.exclude`, nested
/// workspaces, a `[workspace]` table written in any TOML form).
pub(crate) fn find_workspace_root(dir: &Path) -> Result<PathBuf, String> {
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
pub(crate) fn cargo_binary() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs cargo in `dir`; a failure is an error naming the command.
pub(crate) fn cargo(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Result<(), String> {
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

pub(crate) fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
