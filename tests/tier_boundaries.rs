//! The tier rules, read from `cargo metadata`: each crate's normal (non-dev) dependencies
//! must stay inside its tier. A violation fails naming the offending edge.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Command;

/// Per crate: direct dependencies it must never have (it could then use them).
const FORBIDDEN_DIRECT: &[(&str, &[&str])] = &[
    (
        "myapi-web",
        &["myapi-models", "diesel", "diesel_migrations", "r2d2"],
    ),
    (
        "myapi-cli",
        &[
            "myapi-models",
            "diesel",
            "diesel_migrations",
            "r2d2",
            "actix-web",
        ],
    ),
    ("myapi-services", &["actix-web"]),
];

/// Per crate: dependencies it must not reach even indirectly.
const FORBIDDEN_ANYWHERE: &[(&str, &[&str])] = &[
    ("myapi-cli", &["actix-web"]),
    ("myapi-services", &["actix-web", "utoipa-swagger-ui"]),
    (
        "myapi-schemas",
        &[
            "diesel",
            "actix-web",
            "myapi-models",
            "myapi-services",
            "myapi-web",
            "myapi-cli",
        ],
    ),
    (
        "myapi-models",
        &[
            "actix-web",
            "utoipa",
            "utoipa-swagger-ui",
            "myapi-schemas",
            "myapi-services",
            "myapi-web",
        ],
    ),
];

/// `examples/resource-server` stands for another team's service: it may know our tokens'
/// format and JWK Set URL, never our code. (myapi-web's tests use it as a dev-dependency.)
const FOREIGN: &[(&str, &[&str])] = &[(
    "resource-server",
    &[
        "myapi-models",
        "myapi-schemas",
        "myapi-services",
        "myapi-web",
        "myapi-cli",
    ],
)];

/// `myapi-schemas` holds data shapes only: these are all it may depend on.
const SCHEMAS_MAY_USE: &[&str] = &["serde", "utoipa"];

/// Direct workspace edges the architecture allows (everything else between myapi crates is refused).
const ALLOWED_WORKSPACE_EDGES: &[(&str, &str)] = &[
    ("myapi-web", "myapi-services"),
    ("myapi-web", "myapi-schemas"),
    ("myapi-cli", "myapi-services"),
    ("myapi-cli", "myapi-schemas"),
    ("myapi-services", "myapi-models"),
    ("myapi-services", "myapi-schemas"),
];

#[test]
fn tiers_only_depend_downwards() {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
            &host_triple(),
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    // Normal dependency graph by package name (dev- and build-dependencies excluded).
    let names: BTreeMap<&str, &str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for node in metadata["resolve"]["nodes"].as_array().unwrap() {
        let from = names[node["id"].as_str().unwrap()];
        for dep in node["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            if normal {
                graph
                    .entry(from)
                    .or_default()
                    .push(names[dep["pkg"].as_str().unwrap()]);
            }
        }
    }

    let mut violations = Vec::new();
    for (krate, deps) in &graph {
        if !krate.starts_with("myapi-") {
            continue;
        }
        for dep in deps {
            if dep.starts_with("myapi-") && !ALLOWED_WORKSPACE_EDGES.contains(&(krate, dep)) {
                violations.push(format!("{krate} -> {dep} (direct)"));
            }
        }
    }
    for (krate, forbidden) in FORBIDDEN_DIRECT {
        for dep in graph.get(krate).into_iter().flatten() {
            if forbidden.contains(dep) {
                violations.push(format!("{krate} -> {dep} (direct)"));
            }
        }
    }
    for (krate, forbidden) in FORBIDDEN_ANYWHERE {
        for (path_end, path) in reachable(&graph, krate) {
            if forbidden.contains(&path_end) {
                violations.push(path.join(" -> "));
            }
        }
    }
    for (krate, forbidden) in FOREIGN {
        assert!(graph.contains_key(krate), "{krate} is not in the workspace");
        for (path_end, path) in reachable(&graph, krate) {
            if forbidden.contains(&path_end) {
                violations.push(path.join(" -> "));
            }
        }
        for (other, deps) in &graph {
            if deps.contains(krate) {
                violations.push(format!("{other} -> {krate} (a normal dependency)"));
            }
        }
    }
    for dep in graph.get("myapi-schemas").into_iter().flatten() {
        if !SCHEMAS_MAY_USE.contains(dep) {
            violations.push(format!(
                "myapi-schemas -> {dep} (schemas may use only serde and utoipa)"
            ));
        }
    }
    violations.sort();
    violations.dedup();
    assert!(
        violations.is_empty(),
        "tier boundaries broken:\n  {}",
        violations.join("\n  ")
    );
}

/// Every crate reachable from `root`, with one path to it.
fn reachable<'a>(
    graph: &BTreeMap<&'a str, Vec<&'a str>>,
    root: &'a str,
) -> Vec<(&'a str, Vec<&'a str>)> {
    let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut stack = vec![vec![root]];
    while let Some(path) = stack.pop() {
        let last = *path.last().unwrap();
        for next in graph.get(last).into_iter().flatten() {
            if !seen.contains_key(next) {
                let mut longer = path.clone();
                longer.push(next);
                seen.insert(next, longer.clone());
                stack.push(longer);
            }
        }
    }
    seen.into_iter().collect()
}

/// The host's target triple, so platform-specific dependencies of other targets are skipped.
fn host_triple() -> String {
    let output = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_owned()
}
