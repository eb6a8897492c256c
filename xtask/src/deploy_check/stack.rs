//! The deployment the check runs: a temp dir, a PostgreSQL cluster of its own, myapi-web
//! instances, nginx and Prometheus, all on loopback, each torn down by a guard.
//!
//! Teardown happens twice over. Each process is a guard that stops its process group on drop
//! (a failed check, an error, a panic). A watchdog shell, in a process group of its own so
//! Ctrl-C does not reach it, waits for the check's end of a pipe to close, which also happens
//! when the check is killed outright; it then kills every process group the check recorded,
//! stops the cluster and removes the temp dir. After a normal teardown it finds the dir gone
//! and does nothing.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::http;

/// The cluster code the TLS and resilience tests use too (std only, hence includable here).
#[allow(dead_code)] // what only the tests call, such as `PgCluster::stop`
#[path = "../../../tests/support/pg_cluster.rs"]
pub mod pg_cluster;

pub use pg_cluster::{free_port, run};

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The check's temp dir; removed on drop. World-traversable (0755) so PostgreSQL, running
/// as `postgres` when the check runs as root, and nginx's workers reach their files in it.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn create() -> Result<Self, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let path =
            std::env::temp_dir().join(format!("myapi-deploy-check-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path)
            .and_then(|()| std::fs::set_permissions(&path, PermissionsExt::from_mode(0o755)))
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The process groups the check started, one per line in `DIR/pgids`, for the watchdog.
fn record_group(dir: &Path, pgid: u32) -> Result<(), String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("pgids"))
        .and_then(|mut f| writeln!(f, "{pgid}"))
        .map_err(|e| format!("cannot record process group {pgid}: {e}"))
}

/// Cleans up after the check if it dies without doing so (see the module comment).
pub struct Watchdog {
    stdin: Option<ChildStdin>,
    child: Child,
}

/// Every PostgreSQL cluster of the check lives in `DIR/*/data`; SIGQUIT to its postmaster
/// is an immediate stop.
const WATCHDOG: &str = r#"
cat >/dev/null
dir=$1
[ -d "$dir" ] || exit 0
if [ -f "$dir/pgids" ]; then
    while read -r group; do kill -s KILL -- "-$group" 2>/dev/null; done <"$dir/pgids"
fi
for pid in "$dir"/*/data/postmaster.pid; do
    [ -f "$pid" ] && kill -s QUIT "$(head -n 1 "$pid")" 2>/dev/null
done
sleep 1
rm -rf "$dir"
"#;

impl Watchdog {
    pub fn spawn(dir: &Path) -> Result<Self, String> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("watchdog")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start the watchdog shell: {e}"))?;
        Ok(Self {
            stdin: child.stdin.take(),
            child,
        })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// A process in a group of its own, with stdout and stderr appended to `log`.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(
        name: &str,
        command: &mut Command,
        log: &Path,
        dir: &Path,
    ) -> Result<Self, String> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", command.get_program()))?;
        record_group(dir, child.id())?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends `signal` (a `kill` name such as `TERM`) to the process itself.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .stderr(Stdio::null())
            .status();
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last `lines` lines of its log, for an error message.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for Proc {
    /// SIGTERM to the whole group, 5 s to go, then SIGKILL.
    fn drop(&mut self) {
        if self.exited().is_none() {
            let group = format!("-{}", self.pid());
            let _ = Command::new("kill")
                .args(["-TERM", "--", &group])
                .stderr(Stdio::null())
                .status();
            if self.wait_exit(Duration::from_secs(5)).is_none() {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &group])
                    .stderr(Stdio::null())
                    .status();
                let _ = self.child.wait();
            }
        }
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Polls `GET path` on `addr` until it answers 200, the process exits, or `limit` passes.
pub fn wait_ok(
    process: &mut Proc,
    addr: SocketAddr,
    path: &str,
    limit: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    let mut last;
    loop {
        match http::get(addr, path, &[]) {
            Ok(response) if response.status == 200 => return Ok(started.elapsed()),
            Ok(response) => last = format!("{} {}", response.status, response.text()),
            Err(e) => last = e.to_string(),
        }
        if let Some(status) = process.exited() {
            return Err(format!(
                "{} exited ({status}) before {path} answered 200; its log ends:\n{}",
                process.name,
                process.log_tail(10)
            ));
        }
        if started.elapsed() > limit {
            return Err(format!(
                "{} did not answer 200 on http://{addr}{path} within {limit:?} (last: {last})",
                process.name,
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Replaces each `from` in `text` with its `to`; a `from` that is missing is an error naming
/// `file`, so the shipped file and the check cannot drift apart unnoticed.
pub fn substitute(file: &str, text: &str, pairs: &[(&str, String)]) -> Result<String, String> {
    let mut out = text.to_owned();
    for (from, to) in pairs {
        if !out.contains(from) {
            return Err(format!(
                "{file} no longer contains `{from}`, which the deploy-check replaces; update \
                 xtask/src/deploy_check to match"
            ));
        }
        out = out.replace(from, to);
    }
    Ok(out)
}

pub fn write(path: &Path, text: &str) -> Result<(), String> {
    File::create(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

pub fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// `KEY=value` lines of an environment file (systemd `EnvironmentFile=` syntax as far as the
/// example uses it: comments, blank lines, values optionally in single or double quotes).
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let unquoted = ['\'', '"']
                .iter()
                .find_map(|q| v.strip_prefix(*q).and_then(|rest| rest.strip_suffix(*q)));
            (k.trim().to_owned(), unquoted.unwrap_or(v).to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_files_are_parsed() {
        let env = parse_env_file("# comment\n\nA=1\nB='x&y=z'\n  C=\"q\"\n# D=4\nE=\n");
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(pairs, [("A", "1"), ("B", "x&y=z"), ("C", "q"), ("E", "")]);
    }

    #[test]
    fn a_missing_substitution_is_an_error() {
        assert_eq!(
            substitute("f", "listen 80;", &[("80", "8080".into())]).unwrap(),
            "listen 8080;"
        );
        assert!(substitute("f", "listen 80;", &[("443", "1".into())]).is_err());
    }
}
