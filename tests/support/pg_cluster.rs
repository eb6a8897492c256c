//! A throwaway PostgreSQL cluster: `initdb` into a directory of its own, `pg_ctl start` on a
//! free loopback port with its socket in that directory, `pg_ctl stop`, and a stop on drop.
//! PostgreSQL refuses to run as root, so when we are root its binaries run as `postgres`
//! (through `runuser`) and the cluster's directory is handed to that user.
//!
//! Std only, errors as `String`: the HTTP tests (through tests/support/mod.rs) and the
//! dependency-free `cargo xtask deploy-check` (xtask/src/deploy_check/stack.rs) include it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The newest installed server binaries (Debian: /usr/lib/postgresql/VERSION/bin).
pub fn binaries() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|dirs| {
            dirs.filter_map(Result::ok)
                .map(|d| d.path().join("bin"))
                .filter(|b| b.join("initdb").exists())
                .max()
        })
}

/// A free loopback port (bound then released: another process could take it in between,
/// which on a CI machine does not happen).
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Runs a command to completion and returns its stdout; a failure names it and quotes its
/// stderr.
pub fn run(command: &mut Command) -> Result<String, String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{:?} failed ({}): {}",
            command.get_program(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// A cluster in `dir`: `dir/data`, `dir/server.log` and the Unix socket. Stopped
/// (immediately) on drop if it is running.
pub struct PgCluster {
    bin: PathBuf,
    pub dir: PathBuf,
    pub port: u16,
    as_postgres: bool,
    /// `name=value` server settings `start` passes on top of its own.
    settings: Vec<String>,
}

impl PgCluster {
    /// Creates `dir` (its parent must be traversable by `postgres` when we are root) and picks
    /// a port; [`init`](Self::init) and [`start`](Self::start) follow.
    pub fn new(bin: PathBuf, dir: PathBuf) -> Result<Self, String> {
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let cluster = Self {
            bin,
            dir,
            port: free_port()?,
            as_postgres: is_root(),
            settings: Vec::new(),
        };
        cluster.hand_over(&cluster.dir)?;
        Ok(cluster)
    }

    /// Adds `name=value` server settings (`-c`) to every start.
    pub fn with_settings(mut self, settings: &[&str]) -> Self {
        self.settings
            .extend(settings.iter().map(|s| (*s).to_owned()));
        self
    }

    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Makes `path` the server user's when we are root, e.g. a TLS key (PostgreSQL insists).
    pub fn hand_over(&self, path: &Path) -> Result<(), String> {
        if self.as_postgres {
            run(Command::new("chown").arg("postgres:").arg(path))?;
        }
        Ok(())
    }

    /// The command line that runs server binary `program` with `args`, as `postgres` when we
    /// are root.
    fn command_line(&self, program: &str, args: &[&str]) -> Vec<String> {
        let mut line = Vec::new();
        if self.as_postgres {
            line.extend(["runuser", "-u", "postgres", "--"].map(String::from));
        }
        line.push(self.bin.join(program).display().to_string());
        line.extend(args.iter().map(|a| (*a).to_owned()));
        line
    }

    fn server(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let line = self.command_line(program, args);
        run(Command::new(&line[0]).args(&line[1..]))
    }

    /// `initdb`: user `postgres`, trust authentication, UTF-8.
    pub fn init(&self) -> Result<(), String> {
        let data = self.data().display().to_string();
        self.server(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )?;
        Ok(())
    }

    /// Starts the server and waits until it accepts connections: 127.0.0.1 only, no fsync,
    /// plus the settings given to [`with_settings`](Self::with_settings).
    pub fn start(&self) -> Result<(), String> {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        for setting in &self.settings {
            options.push_str(" -c ");
            options.push_str(setting);
        }
        let data = self.data().display().to_string();
        let log = self.dir.join("server.log").display().to_string();
        self.server(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-o", &options, "-w", "start"],
        )?;
        Ok(())
    }

    /// The command line that stops the server at once (no checkpoint: the data is throwaway).
    pub fn stop_command(&self) -> Vec<String> {
        let data = self.data().display().to_string();
        self.command_line("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"])
    }

    pub fn stop(&self) -> Result<(), String> {
        let line = self.stop_command();
        run(Command::new(&line[0]).args(&line[1..]))?;
        Ok(())
    }

    pub fn dsn(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Fills this (not yet initialised) cluster with a base backup of running `primary`,
    /// set up to stream from it (`pg_basebackup -R`: `standby.signal` and
    /// `primary_conninfo`); [`start`](Self::start) then runs it as a standby.
    pub fn replicate(&self, primary: &PgCluster) -> Result<(), String> {
        let data = self.data().display().to_string();
        let port = primary.port.to_string();
        self.server(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                &data,
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
        )?;
        Ok(())
    }

    /// Ends recovery: a standby becomes a primary that accepts writes.
    pub fn promote(&self) -> Result<(), String> {
        let data = self.data().display().to_string();
        self.server("pg_ctl", &["-D", &data, "-w", "promote"])?;
        Ok(())
    }

    /// Runs `sql` with psql on database `postgres`; its unaligned output.
    pub fn sql(&self, sql: &str) -> Result<String, String> {
        run(Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-XAtq",
                "-p",
            ])
            .arg(self.port.to_string())
            .args(["-v", "ON_ERROR_STOP=1", "-c", sql]))
        .map(|out| out.trim().to_owned())
    }

    /// The directory of the server binaries.
    pub fn bin(&self) -> PathBuf {
        self.bin.clone()
    }

    /// Server binary `program` of this cluster's version (`pg_dump`, `pg_restore`, ...).
    pub fn program(&self, program: &str) -> PathBuf {
        self.bin.join(program)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.data().join("postmaster.pid").exists() {
            let line = self.stop_command();
            let _ = Command::new(&line[0])
                .args(&line[1..])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
