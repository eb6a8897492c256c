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

mod check_scaffold;
mod deploy_check;
mod names;
mod new_service;
mod templates;
mod workspace;

use std::process::ExitCode;

use check_scaffold::check_scaffold;
use names::Names;
use new_service::new_service;
use workspace::workspace_root;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
