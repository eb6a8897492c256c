//! The declared MSRV is true of the locked dependency tree: no package in `Cargo.lock`
//! declares a `rust-version` newer than the workspace's.
//!
//! Only one toolchain can be installed where this runs, so the MSRV cannot be proved by
//! building with it. Two checks stand in: this test (what the dependencies declare), and
//! clippy's `incompatible_msrv` lint in CI (std APIs our own code calls). Neither sees
//! language features newer than the MSRV in our code: say so in review.
//!
//! The tree is read from `cargo metadata --all-features` (every feature, every target
//! platform: the lock file's own resolution), and every `Cargo.lock` entry must be in it,
//! so nothing locked goes unchecked. A failure names the package, what it declares and
//! which packages pull it in.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

type Version = (u64, u64, u64);

/// `"1.88"` or `"1.88.0"` → `(1, 88, 0)`.
fn parse_rust_version(text: &str) -> Version {
    let mut parts = text.trim().split('.').map(|p| {
        p.parse::<u64>()
            .unwrap_or_else(|_| panic!("unparsable rust-version `{text}`"))
    });
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    let patch = parts.next().unwrap_or(0);
    assert!(parts.next().is_none(), "unparsable rust-version `{text}`");
    (major, minor, patch)
}

fn show((major, minor, patch): Version) -> String {
    format!("{major}.{minor}.{patch}")
}

fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--all-features",
            "--locked",
        ])
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata JSON")
}

/// `(name, version)` of every registry/git package in `Cargo.lock`.
fn locked_packages() -> BTreeSet<(String, String)> {
    let lock = std::fs::read_to_string(workspace_root().join("Cargo.lock")).unwrap();
    let mut packages = BTreeSet::new();
    for block in lock.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block.lines().find_map(|line| {
                line.strip_prefix(key)
                    .and_then(|rest| rest.trim().strip_prefix('='))
                    .map(|value| value.trim().trim_matches('"').to_owned())
            })
        };
        // Workspace members have no `source`.
        if field("source ").is_some() {
            packages.insert((field("name ").unwrap(), field("version ").unwrap()));
        }
    }
    packages
}

#[test]
fn no_locked_dependency_needs_a_newer_rust_than_the_workspace_declares() {
    let metadata = metadata();
    let packages = metadata["packages"].as_array().unwrap();
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect();

    // The workspace's MSRV: every member declares it, and the same one.
    let mut declared: BTreeMap<Version, Vec<&str>> = BTreeMap::new();
    for package in packages
        .iter()
        .filter(|p| members.contains(p["id"].as_str().unwrap()))
    {
        let name = package["name"].as_str().unwrap();
        let version = package["rust_version"].as_str().unwrap_or_else(|| {
            panic!("workspace member {name} declares no rust-version (use rust-version.workspace = true)")
        });
        declared
            .entry(parse_rust_version(version))
            .or_default()
            .push(name);
    }
    assert_eq!(
        declared.len(),
        1,
        "workspace members declare different rust-versions: {declared:?}"
    );
    let msrv = *declared.keys().next().unwrap();

    // Who depends on whom, to name the way a package comes in.
    let names: BTreeMap<&str, String> = packages
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap(),
                format!(
                    "{} {}",
                    p["name"].as_str().unwrap(),
                    p["version"].as_str().unwrap()
                ),
            )
        })
        .collect();
    let mut dependents: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for node in metadata["resolve"]["nodes"].as_array().unwrap() {
        let from = node["id"].as_str().unwrap();
        for dep in node["dependencies"].as_array().unwrap() {
            dependents
                .entry(dep.as_str().unwrap())
                .or_default()
                .insert(names[from].as_str());
        }
    }

    let mut checked = BTreeSet::new();
    let mut too_new = Vec::new();
    for package in packages.iter().filter(|p| !p["source"].is_null()) {
        let id = package["id"].as_str().unwrap();
        let (name, version) = (
            package["name"].as_str().unwrap(),
            package["version"].as_str().unwrap(),
        );
        checked.insert((name.to_owned(), version.to_owned()));
        let Some(needs) = package["rust_version"].as_str().map(parse_rust_version) else {
            continue;
        };
        if needs > msrv {
            let by: Vec<&str> = dependents
                .get(id)
                .map(|d| d.iter().copied().collect())
                .unwrap_or_default();
            too_new.push(format!(
                "{name} {version} declares rust-version {} (pulled in by {})",
                show(needs),
                if by.is_empty() {
                    "?".to_owned()
                } else {
                    by.join(", ")
                }
            ));
        }
    }

    let unchecked: Vec<_> = locked_packages().difference(&checked).cloned().collect();
    assert!(
        unchecked.is_empty(),
        "Cargo.lock has packages that `cargo metadata --all-features` did not list, so their \
         rust-version went unchecked: {unchecked:?}"
    );
    assert!(
        too_new.is_empty(),
        "the workspace declares rust-version {}, but these locked dependencies need a newer Rust:\n  {}\n\
         Pin an older release that cargo keeps (an `=` requirement in [workspace.dependencies]), \
         or raise `rust-version` in the root Cargo.toml on purpose.",
        show(msrv),
        too_new.join("\n  ")
    );
}

#[test]
fn rust_version_parsing() {
    assert_eq!(parse_rust_version("1.88"), (1, 88, 0));
    assert_eq!(parse_rust_version("1.85.1"), (1, 85, 1));
    assert!(parse_rust_version("1.95") > parse_rust_version("1.88.0"));
    assert!(parse_rust_version("1.88.0") == parse_rust_version("1.88"));
}
