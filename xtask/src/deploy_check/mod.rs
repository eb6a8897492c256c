//! `cargo xtask deploy-check`: the deployment kit in `deploy/`, run for real on loopback.
//!
//! It builds `myapi-web` and `myapi-cli` (release: CI's quick start has built them already,
//! and they are what a deployment runs), then, in a temp dir: a PostgreSQL cluster of its own,
//! migrated once with `myapi-cli migrate`; three instances started from
//! `deploy/myapi.env.example` with their own ports and metrics listeners; nginx with
//! `deploy/nginx/myapi.conf` and its proxy snippet and a self-signed certificate made here;
//! Prometheus with `deploy/prometheus.yml` at a 1 s interval. The shipped files are used as
//! they are, with only ports and paths substituted, so a drift between them and what is
//! checked fails the check.
//!
//! Then it proves, one line per check: a login over HTTPS whose token every instance accepts;
//! the HTTP redirect; nginx's request id reaching the instances; a per-client budget keyed
//! by the real client (clients connect from 127.0.0.2 and up); one account budget across
//! the instances; a rolling restart under 50 connections of reads that loses no request; and
//! Prometheus seeing every instance and counting the requests sent within 1%.
//!
//! Every check runs even when an earlier one failed (except when the deployment itself cannot
//! be brought up); the exit status is non-zero if any failed. Everything it started is torn
//! down at the end, on failure, panic or Ctrl-C (see `stack`). Logs are copied to
//! `target/deploy-check/` first.

mod database;
mod http;
mod load;
mod stack;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use load::{Load, Work};
use stack::pg_cluster::{self, PgCluster};
use stack::{Proc, TempDir, Watchdog, free_port, loopback, read, substitute, write};

const INSTANCES: usize = 3;
/// Connections of reads during the rolling restart.
const LOAD_CONNECTIONS: usize = 50;
/// Requests sent in the window whose count Prometheus must match.
const WINDOW_CONNECTIONS: usize = 10;
const WINDOW_REQUESTS_PER_CONNECTION: u64 = 300;
/// The job name in deploy/prometheus.yml.
const JOB: &str = "myapi";
const PASSWORD: &str = "correct-horse-battery";
const READER: &str = "ada@example.com";
/// Creates the movies of the failover's writes.
const EDITOR: &str = "eve@example.com";
const VICTIM: &str = "bob@example.com";
/// Longest an instance may take to stop after SIGTERM: server.shutdown_timeout_secs (10 s)
/// plus slack for a loaded machine.
const STOP_LIMIT: Duration = Duration::from_secs(25);
const READY_LIMIT: Duration = Duration::from_secs(30);
/// A request limit no load of the checks reaches.
const UNLIMITED: &str = "1000000";

/// Stops under load by default (`--stop-cycles`); `bench/run.py` runs more.
pub const STOP_CYCLES: usize = 50;
/// `server.shutdown_timeout_secs` in the stop cycles.
const CYCLE_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);
/// A stop in the cycles that takes longer has its threads' stacks dumped: the shutdown
/// timeout, plus actix-server's 1 s check of its workers and the metrics listener's stop;
/// still below the server's own deadline (5 s past the timeout), so the dump catches it alive.
const CYCLE_STOP_LIMIT: Duration = Duration::from_secs(5);
/// Connections reading from the instance while it is stopped.
const CYCLE_CONNECTIONS: usize = 8;

pub fn deploy_check(stop_cycles: usize) -> Result<(), String> {
    let started = Instant::now();
    let root = crate::workspace::workspace_root()?;
    preflight()?;
    say("building myapi-web and myapi-cli (release)");
    crate::workspace::cargo(&root, &["build", "--release", "-q", "-p", "myapi-web"], &[])?;
    crate::workspace::cargo(&root, &["build", "--release", "-q", "-p", "myapi-cli"], &[])?;

    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("release");
    let build_time = started.elapsed();

    let mut deployment = Deployment::start(&root, &bin, target.join("deploy-check"))?;
    say(&format!(
        "up in {:.1} s (build {:.1} s): PostgreSQL :{}, instances {}, nginx https :{} http :{} \
         loopback load :{}, Prometheus :{}",
        started.elapsed().as_secs_f64(),
        build_time.as_secs_f64(),
        deployment.stack.cluster.port,
        deployment
            .stack
            .instances
            .iter()
            .map(|i| format!(":{} (metrics :{})", i.port, i.metrics_port))
            .collect::<Vec<_>>()
            .join(", "),
        deployment.https_port,
        deployment.http_port,
        deployment.load_port,
        deployment.prometheus_port,
    ));

    let mut failed = Vec::new();
    let mut check = |name: &str, result: Result<String, String>| match result {
        Ok(detail) => println!("deploy-check: PASS {name}: {detail}"),
        Err(reason) => {
            println!("deploy-check: FAIL {name}: {reason}");
            failed.push(name.to_owned());
        }
    };
    check("login over HTTPS", deployment.login_over_https());
    check("HTTP redirects to HTTPS", deployment.redirect());
    check("request id from nginx", deployment.request_id());
    check("per-client budget", deployment.client_budget(&root));
    check("one account budget", deployment.account_budget(&root));
    check("rolling restart", deployment.rolling_restart());
    check("stops under load", deployment.stop_cycles(stop_cycles));
    check("systemd unit", systemd_unit(&root, &bin));
    check("Prometheus up", deployment.prometheus_up());
    check("Prometheus count", deployment.prometheus_count());
    // Last: it leaves the old primary stopped.
    check("failover", deployment.failover());
    check("backup and restore", deployment.backup_and_restore());
    drop(deployment);
    say(&format!(
        "torn down; {:.1} s in all; logs in {}",
        started.elapsed().as_secs_f64(),
        target.join("deploy-check").display()
    ));
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("deploy-check failed: {}", failed.join(", ")))
    }
}

fn say(message: &str) {
    println!("deploy-check: {message}");
}

/// The tools the check runs, with the Debian package that has each.
fn preflight() -> Result<(), String> {
    let tools = [
        ("nginx", "-v", "nginx-light"),
        ("prometheus", "--version", "prometheus"),
        ("promtool", "--version", "prometheus"),
        ("openssl", "version", "openssl"),
        ("curl", "--version", "curl"),
        ("systemd-analyze", "--version", "systemd"),
    ];
    for (tool, arg, package) in tools {
        let found = Command::new(tool)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Err(format!(
                "deploy-check needs `{tool}` (Debian package {package})"
            ));
        }
    }
    if pg_cluster::binaries().is_none() {
        return Err(
            "deploy-check needs the PostgreSQL server binaries (Debian package postgresql)"
                .to_owned(),
        );
    }
    Ok(())
}

/// One myapi-web instance: its ports, its environment, and its process while it runs.
struct Instance {
    name: String,
    port: u16,
    metrics_port: u16,
    env: Vec<(String, String)>,
    process: Option<Proc>,
}

impl Instance {
    fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    fn start(&mut self, bin: &Path, temp: &Path) -> Result<Duration, String> {
        let mut command = Command::new(bin.join("myapi-web"));
        clear_myapi_env(&mut command);
        command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(temp);
        let log = temp.join(format!("{}.log", self.name));
        let process = self
            .process
            .insert(Proc::spawn(&self.name, &mut command, &log, temp)?);
        stack::wait_ok(process, loopback(self.port), "/ready", READY_LIMIT)
    }
}

/// Runs `myapi-cli ARGS` on database `dsn` (in `dir`, with `stdin` as its input), its output
/// appended to `dir/myapi-cli.log`.
fn myapi_cli(
    bin: &Path,
    dir: &Path,
    dsn: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<(), String> {
    let mut command = Command::new(bin.join("myapi-cli"));
    clear_myapi_env(&mut command);
    command
        .args(args)
        .env("MYAPI_DATABASE__DSN", dsn)
        .current_dir(dir);
    let output = match stdin {
        None => command.output(),
        Some(text) => {
            use std::io::Write;
            command
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            command.spawn().and_then(|mut child| {
                if let Some(mut input) = child.stdin.take() {
                    input.write_all(text.as_bytes())?;
                }
                child.wait_with_output()
            })
        }
    }
    .map_err(|e| format!("cannot run myapi-cli: {e}"))?;
    let mut log = String::from_utf8_lossy(&output.stdout).into_owned();
    log.push_str(&String::from_utf8_lossy(&output.stderr));
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("myapi-cli.log"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, log.as_bytes()));
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`myapi-cli {}` failed ({}): {}",
            args.join(" "),
            output.status,
            log.trim()
        ))
    }
}

impl Instance {
    /// Stops it by SIGINT, a stop without the drain, which nothing here would wait for.
    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.signal("INT");
            process.wait_exit(STOP_LIMIT);
        }
    }
}

/// Removes inherited `MYAPI_*` variables (and runs in the temp dir, without `.env` or
/// `config/`), so a developer's own settings do not leak into the deployment.
fn clear_myapi_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MYAPI_") {
            command.env_remove(name);
        }
    }
}

/// Fields drop in this order: nginx and Prometheus, the instances, the cluster, the temp
/// dir, and the watchdog last (it then finds nothing left to do).
struct Stack {
    nginx: Option<Proc>,
    prometheus: Option<Proc>,
    instances: Vec<Instance>,
    /// The primary, until the failover check stops it for good.
    cluster: PgCluster,
    /// Streams from `cluster` synchronously; the failover check promotes it.
    standby: PgCluster,
    temp: TempDir,
    _watchdog: Watchdog,
    logs_to: PathBuf,
}

impl Drop for Stack {
    /// Stops the processes, then keeps their logs.
    fn drop(&mut self) {
        self.nginx.take();
        self.prometheus.take();
        for instance in &mut self.instances {
            instance.stop();
        }
        let _ = std::fs::remove_dir_all(&self.logs_to);
        if std::fs::create_dir_all(&self.logs_to).is_ok() {
            let logs = [
                self.instances
                    .iter()
                    .map(|i| format!("{}.log", i.name))
                    .collect(),
                vec![
                    "myapi-cli.log".to_owned(),
                    "nginx/error.log".to_owned(),
                    "nginx/access.log".to_owned(),
                    "prometheus.log".to_owned(),
                    "pg/server.log".to_owned(),
                    "pg-standby/server.log".to_owned(),
                ],
            ]
            .concat();
            for log in logs {
                let name = log.replace('/', "-");
                let _ = std::fs::copy(self.temp.path.join(&log), self.logs_to.join(name));
            }
        }
    }
}

struct Deployment {
    stack: Stack,
    bin: PathBuf,
    https_port: u16,
    http_port: u16,
    load_port: u16,
    prometheus_port: u16,
    cacert: String,
    access_log: PathBuf,
    /// nginx's site file as written at start, with every instance in the upstream.
    nginx_site: String,
    /// From the HTTPS login, else from an instance directly (so the later checks still run).
    token: Option<String>,
}

impl Deployment {
    fn start(root: &Path, bin: &Path, logs_to: PathBuf) -> Result<Self, String> {
        let pg_bin = pg_cluster::binaries().ok_or("no PostgreSQL server binaries")?;
        let temp = TempDir::create()?;
        // A primary and a synchronous streaming standby, each with its own port and socket
        // dir, as `postgres` when root.
        let settings = ["max_connections=60"];
        let cluster =
            PgCluster::new(pg_bin.clone(), temp.path.join("pg"))?.with_settings(&settings);
        let standby =
            PgCluster::new(pg_bin, temp.path.join("pg-standby"))?.with_settings(&settings);
        let watchdog = Watchdog::spawn(&temp.path)?;
        let mut stack = Stack {
            nginx: None,
            prometheus: None,
            instances: Vec::new(),
            cluster,
            standby,
            temp,
            _watchdog: watchdog,
            logs_to,
        };
        let dir = stack.temp.path.clone();
        stack.cluster.init()?;
        stack.cluster.start()?;
        database::start_standby(&stack.cluster, &stack.standby)?;
        let dsn = stack.cluster.dsn();

        // Migrate once, then the users and films the checks use.
        let cli = |args: &[&str], stdin: Option<&str>| myapi_cli(bin, &dir, &dsn, args, stdin);
        cli(&["migrate"], None)?;
        let password = format!("{PASSWORD}\n");
        for (name, email, role) in [
            ("Ada", READER, "reader"),
            ("Bob", VICTIM, "reader"),
            ("Eve", EDITOR, "editor"),
        ] {
            cli(
                &[
                    "create-user",
                    "--name",
                    name,
                    "--email",
                    email,
                    "--role",
                    role,
                    "--password-stdin",
                ],
                Some(&password),
            )?;
        }
        let movies = root.join("data").join("movies.csv").display().to_string();
        cli(&["import-movies", &movies], None)?;

        // The instances: deploy/myapi.env.example, with this deployment's database, key and
        // ports. One worker each: three instances, nginx, PostgreSQL and the load share the
        // machine.
        let example_path = root.join("deploy").join("myapi.env.example");
        let example = stack::parse_env_file(&read(&example_path)?);
        let value = |key: &str| {
            example
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        for key in [
            "MYAPI_DATABASE__DSN",
            "MYAPI_TOKEN_KEYS",
            "MYAPI_SERVER__HOST",
            "MYAPI_SERVER__TRUSTED_PROXIES",
            "MYAPI_LOG__FORMAT",
            "MYAPI_AUTH__TOKEN_AUDIENCE",
        ] {
            if value(key).is_none() {
                return Err(format!("{} does not set {key}", example_path.display()));
            }
        }
        if value("MYAPI_DATABASE__RUN_MIGRATIONS") != Some("false") {
            return Err(format!(
                "{} must set MYAPI_DATABASE__RUN_MIGRATIONS=false (migrations run once, by \
                 myapi-cli migrate)",
                example_path.display()
            ));
        }
        let token_keys = format!("deploy-check:{}", random_hex(32)?);
        // Both servers, the one that takes writes first: what production uses with a standby.
        let fleet_dsn = format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
            stack.cluster.port, stack.standby.port
        );
        for index in 1..=INSTANCES {
            let (port, metrics_port) = (free_port()?, free_port()?);
            let mut env: Vec<(String, String)> = example
                .iter()
                .filter(|(k, _)| k != "MYAPI_DATABASE__DSN" && k != "MYAPI_TOKEN_KEYS")
                .cloned()
                .collect();
            env.extend(
                [
                    ("MYAPI_DATABASE__DSN", fleet_dsn.clone()),
                    ("MYAPI_TOKEN_KEYS", token_keys.clone()),
                    ("MYAPI_SERVER__PORT", port.to_string()),
                    (
                        "MYAPI_METRICS__ADDRESS",
                        format!("127.0.0.1:{metrics_port}"),
                    ),
                    ("MYAPI_SERVER__WORKERS", "1".to_owned()),
                    // The load is one user sending as fast as it can, far past any caller's
                    // request limit: lifted here, so the checks see the fleet, not 429s.
                    ("MYAPI_LIMITS__READ__PER_SECOND", UNLIMITED.to_owned()),
                    ("MYAPI_LIMITS__READ__BURST", UNLIMITED.to_owned()),
                    ("MYAPI_LIMITS__WRITE__PER_SECOND", UNLIMITED.to_owned()),
                    ("MYAPI_LIMITS__WRITE__BURST", UNLIMITED.to_owned()),
                ]
                .map(|(k, v)| (k.to_owned(), v)),
            );
            stack.instances.push(Instance {
                name: format!("instance-{index}"),
                port,
                metrics_port,
                env,
                process: None,
            });
        }
        for instance in &mut stack.instances {
            instance.start(bin, &dir)?;
        }

        let (https_port, http_port, load_port) = (free_port()?, free_port()?, free_port()?);
        let ports: Vec<u16> = stack.instances.iter().map(|i| i.port).collect();
        let (nginx, nginx_site) =
            start_nginx(root, &dir, &ports, https_port, http_port, load_port)?;
        let nginx = stack.nginx.insert(nginx);
        stack::wait_ok(nginx, loopback(load_port), "/health", READY_LIMIT)?;

        let prometheus_port = free_port()?;
        let metrics: Vec<u16> = stack.instances.iter().map(|i| i.metrics_port).collect();
        let prometheus = start_prometheus(root, &dir, &metrics, prometheus_port)?;
        let prometheus = stack.prometheus.insert(prometheus);
        stack::wait_ok(
            prometheus,
            loopback(prometheus_port),
            "/-/ready",
            READY_LIMIT,
        )?;

        Ok(Self {
            bin: bin.to_path_buf(),
            https_port,
            http_port,
            load_port,
            prometheus_port,
            cacert: dir.join("nginx").join("cert.pem").display().to_string(),
            access_log: dir.join("nginx").join("access.log"),
            nginx_site,
            token: None,
            stack,
        })
    }

    /// curl from local address `from` (127.0.0.X), trusting the check's certificate.
    fn curl(&self, from: &str, args: &[&str]) -> Result<CurlResponse, String> {
        let output = Command::new("curl")
            .args(["-sS", "-i", "--max-time", "20", "--cacert", &self.cacert])
            .args(["--interface", from, "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .map_err(|e| format!("cannot run curl: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "curl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        CurlResponse::parse(&String::from_utf8_lossy(&output.stdout))
    }

    fn https(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.https_port)
    }

    /// A password login from `from` at `url`.
    fn login(
        &self,
        from: &str,
        url: &str,
        email: &str,
        password: &str,
    ) -> Result<CurlResponse, String> {
        self.curl(
            from,
            &[
                "-d",
                "grant_type=password",
                "--data-urlencode",
                &format!("username={email}"),
                "--data-urlencode",
                &format!("password={password}"),
                url,
            ],
        )
    }

    fn login_over_https(&mut self) -> Result<String, String> {
        let response = self.login("127.0.0.2", &self.https("/token"), READER, PASSWORD);
        let token = match &response {
            Ok(r) if r.status == 200 => json_string(&r.body, "access_token"),
            _ => None,
        };
        if token.is_none() {
            // Later checks need a token: take one from an instance directly.
            let direct = format!("http://127.0.0.1:{}/token", self.stack.instances[0].port);
            self.token = self
                .login("127.0.0.2", &direct, READER, PASSWORD)
                .ok()
                .and_then(|r| json_string(&r.body, "access_token"));
            return Err(match response {
                Ok(r) => format!(
                    "POST /token through nginx answered {}: {}",
                    r.status, r.body
                ),
                Err(e) => e,
            });
        }
        let token = token.unwrap_or_default();
        self.token = Some(token.clone());
        let bearer = format!("Bearer {token}");
        let mut accepted = Vec::new();
        for instance in &self.stack.instances {
            let response = http::get(instance.addr(), "/users/me", &[("Authorization", &bearer)])
                .map_err(|e| format!("GET /users/me on {}: {e}", instance.name))?;
            if response.status != 200 || !response.text().contains(READER) {
                return Err(format!(
                    "{} refused the token from the HTTPS login: {} {}",
                    instance.name,
                    response.status,
                    response.text()
                ));
            }
            accepted.push(format!(":{}", instance.port));
        }
        Ok(format!(
            "POST /token over TLS (certificate verified) from 127.0.0.2 gave a token; GET \
             /users/me accepts it on each instance directly ({})",
            accepted.join(", ")
        ))
    }

    fn redirect(&self) -> Result<String, String> {
        let url = format!("http://127.0.0.1:{}/users/me?x=1", self.http_port);
        let response = self.curl("127.0.0.2", &[&url])?;
        let location = response.header("location").unwrap_or_default();
        if response.status == 301 && location == "https://127.0.0.1/users/me?x=1" {
            Ok(format!("GET {url} answers 301 to {location}"))
        } else {
            Err(format!(
                "GET {url} answered {} with Location `{location}`",
                response.status
            ))
        }
    }

    /// nginx replaces a client's X-Request-Id with its own `$request_id`, and the instance
    /// takes that one (from a trusted proxy) and echoes it.
    fn request_id(&self) -> Result<String, String> {
        let mine = "chosen-by-the-client";
        let response = self.curl(
            "127.0.0.2",
            &[
                "-H",
                &format!("X-Request-Id: {mine}"),
                &self.https("/health"),
            ],
        )?;
        let id = response
            .header("x-request-id")
            .unwrap_or_default()
            .to_owned();
        if response.status != 200 {
            return Err(format!(
                "GET /health through nginx answered {}",
                response.status
            ));
        }
        if id == mine {
            return Err("the client's own X-Request-Id reached the instance".to_owned());
        }
        let nginx_like = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
        let needle = format!("rid={id} ");
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut logged = false;
        while !logged && Instant::now() < deadline {
            logged = read(&self.access_log)?.contains(&needle);
            if !logged {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if nginx_like && logged {
            Ok(format!(
                "the response carries nginx's $request_id {id} (the client's was dropped), as \
                 nginx's access log does"
            ))
        } else {
            Err(format!(
                "the response's X-Request-Id `{id}` is not the $request_id nginx logged \
                 (the instance did not take nginx's id)"
            ))
        }
    }

    /// One client address exhausting its budget through nginx is throttled; another is not.
    fn client_budget(&self, root: &Path) -> Result<String, String> {
        let burst = default_setting(root, "ip_failure_burst")?;
        let refill = default_setting(root, "ip_failure_refill_secs")?;
        let url = self.https("/token");
        let started = Instant::now();
        let mut attempt = 0;
        let throttled_at = loop {
            attempt += 1;
            // A new unknown account each time: only the address's budget can run out.
            let email = format!("nobody-{attempt}@example.com");
            let status = self
                .login("127.0.0.3", &url, &email, "wrong-password")?
                .status;
            let leaked = started.elapsed().as_secs() / refill;
            match status {
                400 if attempt <= burst + 1 + leaked => {}
                400 => {
                    return Err(format!(
                        "127.0.0.3 still answered 400 at attempt {attempt} (budget {burst} per \
                         client address, for the fleet): the budget is per instance, or nginx's \
                         address is counted"
                    ));
                }
                429 if attempt > burst => break attempt,
                other => {
                    return Err(format!(
                        "attempt {attempt} from 127.0.0.3 answered {other} (budget {burst})"
                    ));
                }
            }
        };
        let other = self.login("127.0.0.4", &url, "nobody-0@example.com", "wrong-password")?;
        if other.status != 400 {
            return Err(format!(
                "after 127.0.0.3 was throttled, 127.0.0.4 got {} instead of 400: the budget is \
                 keyed by nginx's address, not the client's",
                other.status
            ));
        }
        Ok(format!(
            "127.0.0.3 got 429 at failed login {throttled_at} through nginx (budget {burst}); \
             127.0.0.4 still got 400 invalid_grant"
        ))
    }

    /// Wrong guesses for one account, spread over the instances, stop at one budget.
    fn account_budget(&self, root: &Path) -> Result<String, String> {
        let burst = default_setting(root, "account_failure_burst")?;
        let refill = default_setting(root, "account_failure_refill_secs")?;
        let started = Instant::now();
        let mut statuses = Vec::new();
        // Until two 429s in a row, from different instances; a failure leaks away every
        // `refill` seconds, which a slow machine may see.
        while !statuses.ends_with(&[429, 429]) {
            let guess = statuses.len();
            let leaked = started.elapsed().as_secs() / refill;
            if guess as u64 > burst + 1 + leaked {
                break;
            }
            let instance = &self.stack.instances[guess % INSTANCES];
            let url = format!("http://127.0.0.1:{}/token", instance.port);
            let response = self.login("127.0.0.5", &url, VICTIM, &format!("guess-{guess}"))?;
            statuses.push(response.status);
        }
        let listed = statuses
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        let first_429 = statuses.iter().position(|s| *s == 429);
        let before_ok =
            first_429.is_some_and(|i| i as u64 >= burst && statuses[..i].iter().all(|s| *s == 400));
        if before_ok && statuses.ends_with(&[429, 429]) {
            Ok(format!(
                "{} wrong guesses for {VICTIM}, round-robin over the {INSTANCES} instances \
                 directly: {listed} (budget {burst} for the fleet)",
                statuses.len()
            ))
        } else {
            Err(format!(
                "wrong guesses for {VICTIM} round-robin over the instances answered {listed}; \
                 expected {burst} × 400 then 429 (one budget of {burst}, not one per instance)"
            ))
        }
    }

    fn bearer(&self) -> Result<String, String> {
        self.token
            .as_ref()
            .map(|t| format!("Bearer {t}"))
            .ok_or_else(|| "no token: the login failed".to_owned())
    }

    /// Restarts each instance in turn as README's "Stopping" says an operator does, while 50
    /// connections read through nginx with its retries off: take it out of the upstream and
    /// reload nginx, SIGTERM (the instance drains, then stops), start it, wait for /ready,
    /// put it back. Every read must succeed.
    fn rolling_restart(&mut self) -> Result<String, String> {
        let bearer = self.bearer()?;
        let log_before = read(&self.access_log)?.len();
        let load = Load::start(
            loopback(self.load_port),
            &bearer,
            Work::Read,
            LOAD_CONNECTIONS,
            None,
            true,
        );
        std::thread::sleep(Duration::from_secs(1));
        let mut timings = Vec::new();
        let mut restart_error = None;
        for index in 0..self.stack.instances.len() {
            if let Err(error) = self.restart_drained(index).map(|t| timings.push(t)) {
                restart_error = Some(error);
                break;
            }
        }
        std::thread::sleep(Duration::from_secs(1));
        let result = load.finish();
        if let Err(error) = self.take_out(None) {
            restart_error.get_or_insert(error);
        }
        let log = read(&self.access_log)?;
        let retried = log
            .get(log_before..)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" upstream=") && l.contains(", "))
            .count();
        if let Some(error) = restart_error {
            return Err(format!("{error} ({})", result.summary()));
        }
        if result.failed() > 0 || retried > 0 {
            return Err(format!(
                "{} of {} reads failed during the restarts: {}; nginx retried {retried} on \
                 another instance ({})",
                result.failed(),
                result.sent,
                result.failures_listed(),
                timings.join("; ")
            ));
        }
        Ok(format!(
            "{} reads over {LOAD_CONNECTIONS} connections through nginx (retries off) in \
             {:.1} s, 0 failed; {}",
            result.sent,
            result.elapsed.as_secs_f64(),
            timings.join("; ")
        ))
    }

    /// One step of [`Self::rolling_restart`]; returns its timings.
    fn restart_drained(&mut self, index: usize) -> Result<String, String> {
        let port = self.stack.instances[index].port;
        self.take_out(Some(port))?;
        let temp = self.stack.temp.path.clone();
        let instance = &mut self.stack.instances[index];
        let process = instance
            .process
            .as_mut()
            .ok_or_else(|| format!("{} is not running", instance.name))?;
        let stopping = Instant::now();
        process.signal("TERM");
        let status = process.wait_exit(STOP_LIMIT).ok_or_else(|| {
            format!(
                "{} did not exit within {STOP_LIMIT:?} of SIGTERM",
                instance.name
            )
        })?;
        if !status.success() {
            return Err(format!(
                "{} exited with {status} on SIGTERM; its log ends:\n{}",
                instance.name,
                process.log_tail(10)
            ));
        }
        let stop_time = stopping.elapsed();
        let ready = instance.start(&self.bin, &temp)?;
        let timing = format!(
            "{} drained and stopped in {:.1} s, ready in {:.1} s",
            instance.name,
            stop_time.as_secs_f64(),
            ready.as_secs_f64()
        );
        self.take_out(None)?;
        Ok(timing)
    }

    /// Starts and stops the last instance `cycles` times, each stop by SIGTERM (no drain)
    /// while connections read from it directly, a varying while after its start. A stop
    /// must end with exit code 0 within [`CYCLE_STOP_LIMIT`]; one that does not has every
    /// thread's stack dumped into the result, while it still runs.
    fn stop_cycles(&mut self, cycles: usize) -> Result<String, String> {
        let bearer = self.bearer()?;
        let index = self.stack.instances.len() - 1;
        let port = self.stack.instances[index].port;
        self.take_out(Some(port))?;
        let temp = self.stack.temp.path.clone();
        let mut stop_times = Vec::new();
        let mut problems = Vec::new();
        let cycle_env = [
            ("MYAPI_SERVER__DRAIN_SECS", "0".to_owned()),
            (
                "MYAPI_SERVER__SHUTDOWN_TIMEOUT_SECS",
                CYCLE_SHUTDOWN_TIMEOUT.as_secs().to_string(),
            ),
        ];
        let instance = &mut self.stack.instances[index];
        let normal_env = instance.env.clone();
        instance
            .env
            .extend(cycle_env.map(|(k, v)| (k.to_owned(), v)));
        let (mut answered, mut refused) = (0, 0);
        for cycle in 0..=cycles {
            // Cycle 0 stops the instance as the deployment started it.
            if cycle > 0 {
                instance.start(&self.bin, &temp)?;
            }
            let load = Load::start(
                instance.addr(),
                &bearer,
                Work::Read,
                CYCLE_CONNECTIONS,
                None,
                false,
            );
            std::thread::sleep(Duration::from_millis(100 + 50 * (cycle % 7) as u64));
            let process = instance
                .process
                .as_mut()
                .ok_or_else(|| format!("{} is not running", instance.name))?;
            let stopping = Instant::now();
            process.signal(if cycle == 0 { "INT" } else { "TERM" });
            let mut status = process.wait_exit(CYCLE_STOP_LIMIT);
            if status.is_none() {
                problems.push(format!(
                    "cycle {cycle}: still running {CYCLE_STOP_LIMIT:?} after SIGTERM; \
                     its threads:\n{}",
                    thread_dump(process.pid())
                ));
                status = process.wait_exit(STOP_LIMIT);
            }
            let stop_time = stopping.elapsed();
            let result = load.finish();
            answered += result.sent - result.failed();
            refused += result.failed();
            match status {
                Some(status) if status.success() => {}
                Some(status) => problems.push(format!(
                    "cycle {cycle}: exited with {status}; its log ends:\n{}",
                    process.log_tail(10)
                )),
                None => problems.push(format!(
                    "cycle {cycle}: did not exit within {:?}",
                    CYCLE_STOP_LIMIT + STOP_LIMIT
                )),
            }
            if cycle > 0 {
                stop_times.push(stop_time);
            }
        }
        instance.env = normal_env;
        instance.start(&self.bin, &temp)?;
        self.take_out(None)?;
        stop_times.sort();
        let (median, slowest) = (
            stop_times
                .get(stop_times.len() / 2)
                .copied()
                .unwrap_or_default(),
            stop_times.last().copied().unwrap_or_default(),
        );
        let summary = format!(
            "{cycles} SIGTERMs under {CYCLE_CONNECTIONS} reading connections: stop median \
             {:.0} ms, slowest {:.0} ms; {answered} reads answered, {refused} attempts refused \
             or cut while an instance was stopping or stopped",
            median.as_secs_f64() * 1000.0,
            slowest.as_secs_f64() * 1000.0
        );
        if problems.is_empty() {
            Ok(summary)
        } else {
            Err(format!("{summary}\n{}", problems.join("\n")))
        }
    }

    /// Rewrites nginx's site with the instance on `port` marked `down` (with `None`, every
    /// instance in), and reloads nginx: new connections go to the others at once, and
    /// nginx's old workers finish what they had sent it.
    fn take_out(&self, port: Option<u16>) -> Result<(), String> {
        let mut site = self.nginx_site.clone();
        if let Some(port) = port {
            let line = format!("server 127.0.0.1:{port} ");
            let end = site
                .find(&line)
                .and_then(|at| site[at..].find(';').map(|end| at + end))
                .ok_or_else(|| format!("nginx's site has no `{line}…;`"))?;
            site.insert_str(end, " down");
        }
        let dir = self.stack.temp.path.join("nginx");
        write(&dir.join("myapi.conf"), &site)?;
        stack::run(nginx_command(&dir).args(["-s", "reload"]))
            .map(drop)
            .map_err(|e| format!("nginx -s reload: {e}"))
    }

    fn prometheus(&self) -> SocketAddr {
        loopback(self.prometheus_port)
    }

    /// Waits until Prometheus has scraped every instance after `after` (Unix seconds).
    fn wait_for_scrape(&self, after: f64) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = String::new();
        while Instant::now() < deadline {
            let targets = prom_scalar(self.prometheus(), &format!("count(up{{job=\"{JOB}\"}})"));
            let oldest = prom_scalar(
                self.prometheus(),
                &format!("min(timestamp(up{{job=\"{JOB}\"}}))"),
            );
            match (targets, oldest) {
                (Ok(n), Ok(t)) if n == INSTANCES as f64 && t > after => return Ok(()),
                (Ok(n), Ok(t)) => last = format!("{n} targets, oldest scrape at {t:.1}"),
                (Err(e), _) | (_, Err(e)) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!(
            "Prometheus did not scrape all {INSTANCES} instances after {after:.1} ({last})"
        ))
    }

    fn prometheus_up(&self) -> Result<String, String> {
        self.wait_for_scrape(unix_now())?;
        let up = prom_scalar(
            self.prometheus(),
            &format!("count(up{{job=\"{JOB}\"}} == 1)"),
        )?;
        if up == INSTANCES as f64 {
            Ok(format!(
                "up == 1 for all {INSTANCES} metrics listeners (after the restarts)"
            ))
        } else {
            Err(format!(
                "up == 1 for {} of {INSTANCES} metrics listeners (is metrics.address served?)",
                if up.is_nan() { 0.0 } else { up }
            ))
        }
    }

    /// With nothing else running, the requests Prometheus counted between two scrapes match
    /// the requests sent between them.
    fn prometheus_count(&self) -> Result<String, String> {
        let bearer = self.bearer()?;
        let total = format!("sum(http_server_request_duration_seconds_count{{job=\"{JOB}\"}})");
        // No request is in flight: wait for a scrape that has them all.
        self.wait_for_scrape(unix_now())?;
        let before = prom_scalar(self.prometheus(), &total)?;
        if before.is_nan() {
            return Err(
                "Prometheus has no http_server_request_duration_seconds_count series".to_owned(),
            );
        }
        let load = Load::start(
            loopback(self.load_port),
            &bearer,
            Work::Read,
            WINDOW_CONNECTIONS,
            Some(WINDOW_REQUESTS_PER_CONNECTION),
            false,
        );
        let result = load.finish();
        let window_end = unix_now();
        if result.failed() > 0 {
            return Err(format!(
                "{} of {} requests in the window failed: {}",
                result.failed(),
                result.sent,
                result.failures_listed()
            ));
        }
        self.wait_for_scrape(window_end + 0.05)?;
        let after = prom_scalar(self.prometheus(), &total)?;
        let counted = after - before;
        let sent = result.sent as f64;
        let error = (counted - sent).abs() / sent;
        let line = format!(
            "Prometheus counted {counted} requests over the {INSTANCES} instances, {} were sent \
             ({:.2}% apart)",
            result.sent,
            error * 100.0
        );
        if error <= 0.01 { Ok(line) } else { Err(line) }
    }
}

/// A curl response: `-i` output, then the status from `-w`.
struct CurlResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl CurlResponse {
    fn parse(output: &str) -> Result<Self, String> {
        let (response, code) = output
            .rsplit_once('\n')
            .ok_or_else(|| format!("unexpected curl output `{output}`"))?;
        let status = code
            .trim()
            .parse()
            .map_err(|_| format!("unexpected curl status `{code}`"))?;
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
        let headers = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Ok(Self {
            status,
            headers,
            body: body.to_owned(),
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// nginx with the shipped site and snippet, ports and paths substituted (and retries turned
/// off), a self-signed certificate for 127.0.0.1, and one extra loopback server for the
/// load. Returns it with the site as written, for [`Deployment::take_out`].
fn start_nginx(
    root: &Path,
    temp: &Path,
    upstreams: &[u16],
    https_port: u16,
    http_port: u16,
    load_port: u16,
) -> Result<(Proc, String), String> {
    let dir = temp.join("nginx");
    let snippets = dir.join("snippets");
    std::fs::create_dir_all(&snippets)
        .map_err(|e| format!("cannot create {}: {e}", snippets.display()))?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    stack::run(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
            .args(["-subj", "/CN=localhost", "-addext"])
            .arg("subjectAltName=DNS:localhost,IP:127.0.0.1")
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    )?;

    let deploy = root.join("deploy").join("nginx");
    let site_file = "deploy/nginx/myapi.conf";
    let mut pairs: Vec<(&str, String)> = vec![
        ("listen 80;", format!("listen 127.0.0.1:{http_port};")),
        (
            "listen 443 ssl http2;",
            format!("listen 127.0.0.1:{https_port} ssl http2;"),
        ),
        ("/etc/ssl/myapi/fullchain.pem", cert.display().to_string()),
        ("/etc/ssl/myapi/privkey.pem", key.display().to_string()),
        (
            "/var/log/nginx/myapi.access.log",
            dir.join("access.log").display().to_string(),
        ),
    ];
    let shipped = ["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"];
    for (from, port) in shipped.iter().zip(upstreams) {
        pairs.push((from, format!("127.0.0.1:{port}")));
    }
    let site = substitute(site_file, &read(&deploy.join("myapi.conf"))?, &pairs)?;
    write(&dir.join("myapi.conf"), &site)?;
    // Retries off: the rolling restart must lose no read without nginx resending any.
    let proxy = substitute(
        "deploy/nginx/myapi-proxy.conf",
        &read(&deploy.join("myapi-proxy.conf"))?,
        &[(
            "proxy_next_upstream error timeout;",
            "proxy_next_upstream off;".to_owned(),
        )],
    )?;
    write(&snippets.join("myapi-proxy.conf"), &proxy)?;
    let d = dir.display();
    // `include` paths resolve against this directory, so the site's
    // `snippets/myapi-proxy.conf` is the shipped snippet.
    let main = format!(
        "worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/myapi.conf;
    # The check's load over plain HTTP on loopback: it has no TLS client of its own, and TLS
    # changes nothing in what a rolling restart tests. Same upstream, same proxy rules.
    server {{
        listen 127.0.0.1:{load_port};
        access_log {d}/access.log myapi;
        location / {{
            include snippets/myapi-proxy.conf;
        }}
    }}
}}
"
    );
    write(&dir.join("nginx.conf"), &main)?;
    stack::run(nginx_command(&dir).arg("-t")).map_err(|e| format!("nginx -t: {e}"))?;
    let nginx = Proc::spawn(
        "nginx",
        &mut nginx_command(&dir),
        &dir.join("nginx.log"),
        temp,
    )?;
    Ok((nginx, site))
}

/// nginx on the check's own configuration in `dir` (Debian's /etc/nginx/nginx.conf runs as a
/// daemon with system paths), in the foreground; add `-t` or `-s reload`.
fn nginx_command(dir: &Path) -> Command {
    let mut command = Command::new("nginx");
    command
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"]);
    command
}

/// Prometheus with the shipped scrape configuration, pointed at `targets`, scraping every
/// second, its storage in the temp dir.
fn start_prometheus(root: &Path, temp: &Path, targets: &[u16], port: u16) -> Result<Proc, String> {
    let mut pairs: Vec<(&str, String)> = vec![
        ("scrape_interval: 15s", "scrape_interval: 1s".to_owned()),
        ("scrape_timeout: 5s", "scrape_timeout: 1s".to_owned()),
    ];
    let shipped = ["127.0.0.1:9464", "127.0.0.1:9465", "127.0.0.1:9466"];
    for (from, port) in shipped.iter().zip(targets) {
        pairs.push((from, format!("127.0.0.1:{port}")));
    }
    let config = substitute(
        "deploy/prometheus.yml",
        &read(&root.join("deploy").join("prometheus.yml"))?,
        &pairs,
    )?;
    let file = temp.join("prometheus.yml");
    write(&file, &config)?;
    stack::run(
        Command::new("promtool")
            .args(["check", "config"])
            .arg(&file),
    )
    .map_err(|e| format!("promtool check config: {e}"))?;
    Proc::spawn(
        "prometheus",
        Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                temp.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn"),
        &temp.join("prometheus.log"),
        temp,
    )
}

/// The value of `scalar(expr)` at Prometheus's now (NaN when `expr` has no single sample).
fn prom_scalar(addr: SocketAddr, expr: &str) -> Result<f64, String> {
    let path = format!(
        "/api/v1/query?query={}",
        http::encode(&format!("scalar({expr})"))
    );
    let response =
        http::get(addr, &path, &[]).map_err(|e| format!("Prometheus query `{expr}`: {e}"))?;
    let body = response.text();
    if response.status != 200 {
        return Err(format!(
            "Prometheus query `{expr}`: {} {body}",
            response.status
        ));
    }
    scalar_value(&body)
        .ok_or_else(|| format!("Prometheus query `{expr}`: unexpected answer {body}"))
}

/// The value of a Prometheus scalar answer:
/// `{"status":"success","data":{"resultType":"scalar","result":[1700000000.1,"3"]}}`.
fn scalar_value(body: &str) -> Option<f64> {
    let result = &body[body.find("\"result\":[")? + 10..];
    let value = result.split_once(',')?.1.trim_start().strip_prefix('"')?;
    value.split_once('"')?.0.parse().ok()
}

/// The string value of `"key":"…"` in a JSON object (enough for a token).
fn json_string(body: &str, key: &str) -> Option<String> {
    let rest = &body[body.find(&format!("\"{key}\""))? + key.len() + 2..];
    let rest = rest
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    Some(rest.split_once('"')?.0.to_owned())
}

/// Most exposure `systemd-analyze security` may rate the unit (its "OK" ends at 4.9; the
/// unit does far better and must stay there).
const UNIT_EXPOSURE_LIMIT: f64 = 2.0;

/// `deploy/systemd/myapi@.service`, as instance 1 with `ExecStart` naming the binary just
/// built: `systemd-analyze verify` finds nothing, and `systemd-analyze security` rates it
/// "OK" with exposure at most [`UNIT_EXPOSURE_LIMIT`]. Offline: the machines have systemd
/// but do not boot with it.
fn systemd_unit(root: &Path, bin: &Path) -> Result<String, String> {
    let unit = substitute(
        "deploy/systemd/myapi@.service",
        &read(&root.join("deploy").join("systemd").join("myapi@.service"))?,
        &[(
            "ExecStart=/usr/local/bin/myapi-web",
            format!("ExecStart={}", bin.join("myapi-web").display()),
        )],
    )?;
    let dir = TempDir::create()?;
    let file = dir.path.join("myapi@1.service");
    write(&file, &unit)?;
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&file)
        .output()
        .map_err(|e| format!("cannot run systemd-analyze: {e}"))?;
    let complaints = String::from_utf8_lossy(&verify.stderr).trim().to_owned();
    if !verify.status.success() || !complaints.is_empty() {
        return Err(format!("systemd-analyze verify: {complaints}"));
    }
    let security = stack::run(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&file),
    )
    .map_err(|e| format!("systemd-analyze security: {e}"))?;
    let overall = security
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for myapi@1.service: "))
        .map(|(_, rating)| rating.trim().to_owned())
        .ok_or_else(|| format!("systemd-analyze security printed no rating:\n{security}"))?;
    let exposure: f64 = overall
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("unreadable rating `{overall}`"))?;
    if exposure > UNIT_EXPOSURE_LIMIT || !overall.contains(" OK") {
        return Err(format!(
            "systemd-analyze security rates it {overall}; at most {UNIT_EXPOSURE_LIMIT} OK"
        ));
    }
    Ok(format!(
        "verify found nothing; security --offline: exposure {exposure} OK"
    ))
}

/// Every thread's stack of process `pid`: gdb's backtraces where ptrace is allowed, else
/// each thread's name, kernel wait channel and kernel stack from /proc.
fn thread_dump(pid: u32) -> String {
    let gdb = Command::new("gdb")
        .args([
            "-p",
            &pid.to_string(),
            "-batch",
            "-ex",
            "thread apply all bt",
        ])
        .output();
    if let Ok(out) = gdb {
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && text.contains("Thread ") {
            return text.into_owned();
        }
    }
    let tasks = format!("/proc/{pid}/task");
    let Ok(entries) = std::fs::read_dir(&tasks) else {
        return format!("(no gdb, and {tasks} cannot be read)");
    };
    let mut dump = String::from("(gdb could not attach; from /proc)\n");
    for entry in entries.flatten() {
        let path = entry.path();
        let field = |name: &str| {
            std::fs::read_to_string(path.join(name))
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|e| format!("({e})"))
        };
        dump.push_str(&format!(
            "thread {} {}: wchan {}\n{}\n",
            entry.file_name().to_string_lossy(),
            field("comm"),
            field("wchan"),
            field("stack")
        ));
    }
    dump
}

/// A default from config/default.toml (the one place defaults are written).
fn default_setting(root: &Path, key: &str) -> Result<u64, String> {
    let text = read(&root.join("config").join("default.toml"))?;
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .and_then(|(_, v)| v.split('#').next()?.trim().parse().ok())
        .ok_or_else(|| format!("config/default.toml has no numeric `{key}`"))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// `bytes` random bytes, hex-encoded.
fn random_hex(bytes: usize) -> Result<String, String> {
    use std::io::Read;
    let mut buffer = vec![0; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buffer))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_scalars_are_read() {
        let body =
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.123,"3"]}}"#;
        assert_eq!(scalar_value(body), Some(3.0));
        let nan = r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"NaN"]}}"#;
        assert!(scalar_value(nan).is_some_and(f64::is_nan));
        assert_eq!(scalar_value("{}"), None);
    }

    #[test]
    fn json_strings_are_read() {
        let body = r#"{"access_token":"a.b.c","token_type":"bearer"}"#;
        assert_eq!(json_string(body, "access_token").as_deref(), Some("a.b.c"));
        assert_eq!(json_string(body, "refresh_token"), None);
    }

    #[test]
    fn curl_output_is_split() {
        let response =
            CurlResponse::parse("HTTP/2 301\r\nlocation: https://x/\r\n\r\nmoved\n301").unwrap();
        assert_eq!(response.status, 301);
        assert_eq!(response.header("location"), Some("https://x/"));
        assert_eq!(response.body, "moved");
    }

    #[test]
    fn the_shipped_files_hold_what_the_check_substitutes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        assert_eq!(default_setting(&root, "account_failure_burst").unwrap(), 10);
        let env = stack::parse_env_file(&read(&root.join("deploy/myapi.env.example")).unwrap());
        assert!(env.contains(&(
            "MYAPI_DATABASE__RUN_MIGRATIONS".to_owned(),
            "false".to_owned()
        )));
        assert!(env.contains(&(
            "MYAPI_SERVER__TRUSTED_PROXIES".to_owned(),
            "127.0.0.1/32".to_owned()
        )));
    }
}
