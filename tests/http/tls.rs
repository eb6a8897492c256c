//! TLS to PostgreSQL, end to end: a throwaway cluster with `ssl = on` that refuses every
//! connection not made over TLS, a CA and server certificate the test makes with the
//! `openssl` CLI, and the DSN forms the README documents:
//!
//! - `sslmode=require` connects (encrypted, server not verified);
//! - `sslmode=verify-full&sslrootcert=CA` with the right CA connects (encrypted, verified);
//! - `verify-full&sslrootcert=system` trusts the OS store (here: `SSL_CERT_FILE` naming the
//!   test's CA, which OpenSSL reads in its stead);
//! - `verify-full` with another CA fails, and the server binary says so in one line.
//!
//! Needs the PostgreSQL server binaries (Debian `postgresql`) and `openssl` (Debian
//! `openssl`); without them it skips with a notice, except under `CI=true`, where it fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use myapi_services::secrets::Secret;
use myapi_services::{Database, Settings, error_chain};

use crate::support::{TEST_TOKEN_KEY, TestCluster, in_ci, pg_cluster};

fn have_openssl() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn openssl(dir: &Path, args: &[&str]) {
    pg_cluster::run(Command::new("openssl").current_dir(dir).args(args)).unwrap();
}

/// A self-signed CA: `NAME.crt`, `NAME.key` in `dir`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN=myapi test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// `server.crt`/`server.key` for `localhost` and 127.0.0.1, signed by CA `ca`.
fn make_server_cert(dir: &Path, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = DNS:localhost, IP:127.0.0.1\n\
         basicConstraints = CA:FALSE\n\
         keyUsage = critical, digitalSignature, keyEncipherment\n\
         extendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

/// A PostgreSQL cluster of the test's own that speaks TLS only, its CAs in `certs/`.
struct TlsCluster(TestCluster);

impl TlsCluster {
    /// `None` (after a notice) when the tools are missing outside CI.
    fn create() -> Option<Self> {
        if !have_openssl() {
            assert!(!in_ci(), "CI=true needs the openssl CLI for the TLS test");
            eprintln!("SKIPPED TLS test: no openssl CLI");
            return None;
        }
        let cluster = TestCluster::new(
            "the TLS test",
            &[
                "ssl=on",
                "ssl_cert_file=server.crt",
                "ssl_key_file=server.key",
            ],
        )?;
        let cluster = Self(cluster);

        let certs = cluster.certs();
        std::fs::create_dir(&certs).unwrap();
        make_ca(&certs, "ca");
        make_ca(&certs, "other-ca");
        make_server_cert(&certs, "ca");

        let data = cluster.0.data();
        // The server's key must belong to the server's user and be private to it.
        for file in ["server.crt", "server.key"] {
            let to = data.join(file);
            std::fs::copy(certs.join(file), &to).unwrap();
            std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            cluster.0.hand_over(&to).unwrap();
        }
        // TLS or nothing: a plain TCP connection is rejected, so every success below was
        // made over TLS.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        cluster.0.start().unwrap();
        Some(cluster)
    }

    fn certs(&self) -> PathBuf {
        self.0.dir.path().join("certs")
    }

    /// A DSN for this cluster with `query` (libpq parameters) appended.
    fn dsn(&self, host: &str, query: &str) -> String {
        format!(
            "postgres://postgres@{host}:{}/postgres?{query}",
            self.0.port
        )
    }

    fn ca(&self, name: &str) -> String {
        self.certs()
            .join(format!("{name}.crt"))
            .display()
            .to_string()
    }
}

/// Opens the service tier's pool on `dsn`, as the binaries do at start-up.
fn connect(dsn: &str) -> Result<Database, myapi_services::ServiceError> {
    let mut settings = Settings::defaults().unwrap();
    settings.database.dsn = Secret::new(dsn.to_owned());
    settings.database.pool_size = 1.try_into().unwrap();
    settings.database.connect_timeout_secs = 2.try_into().unwrap();
    Database::connect(&settings.database)
}

#[test]
fn postgres_over_tls_require_and_verify_full_connect_and_a_wrong_ca_fails_in_one_line() {
    let Some(cluster) = TlsCluster::create() else {
        return;
    };

    // Plain TCP is refused: the cluster is TLS-only.
    let plain = connect(&cluster.dsn("127.0.0.1", "sslmode=disable"))
        .expect_err("a non-TLS connection must be rejected");
    assert!(
        error_chain(&plain).contains("no encryption"),
        "{}",
        error_chain(&plain)
    );

    // sslmode=require: encrypted; the certificate is not checked.
    let db = connect(&cluster.dsn("127.0.0.1", "sslmode=require"))
        .unwrap_or_else(|e| panic!("sslmode=require: {}", error_chain(&e)));
    db.migrate().unwrap();
    db.check_ready().unwrap();
    drop(db);

    // sslmode=verify-full with the CA that signed the server's certificate: encrypted, the
    // chain verified and the host name (DNS and IP SANs) matched.
    for host in ["localhost", "127.0.0.1"] {
        let dsn = cluster.dsn(
            host,
            &format!("sslmode=verify-full&sslrootcert={}", cluster.ca("ca")),
        );
        let db =
            connect(&dsn).unwrap_or_else(|e| panic!("verify-full via {host}: {}", error_chain(&e)));
        db.check_ready().unwrap();
    }

    // verify-full with a CA that did not sign it: refused, with libpq's reason in one line.
    let wrong_ca = cluster.dsn(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", cluster.ca("other-ca")),
    );
    let error = connect(&wrong_ca).expect_err("a certificate from another CA must be refused");
    let line = error_chain(&error);
    assert!(!line.contains('\n'), "{line}");
    assert!(line.contains("certificate verify failed"), "{line}");

    // The real server binary, given that DSN, stops at start-up with exactly one error line.
    let scratch = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_myapi-web"))
        .current_dir(scratch.path())
        .env("MYAPI_DATABASE__DSN", &wrong_ca)
        .env("MYAPI_SERVER__PORT", "0")
        .env("MYAPI_TOKEN_KEY", TEST_TOKEN_KEY)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("myapi-web: ") && lines[0].contains("certificate verify failed"),
        "{stderr}"
    );
    eprintln!("wrong CA, as the operator sees it: {}", lines[0]);

    // sslrootcert=system: OpenSSL's default trust store, which SSL_CERT_FILE replaces for
    // the child process, so the binary starts with the test's CA and fails without it.
    let system = cluster.dsn("localhost", "sslmode=verify-full&sslrootcert=system");
    let started = server_starts(scratch.path(), &system, Some(&cluster.ca("ca")));
    assert!(
        started.is_ok(),
        "sslrootcert=system with the CA in SSL_CERT_FILE: {started:?}"
    );
    let refused = server_starts(scratch.path(), &system, Some(&cluster.ca("other-ca")));
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("certificate verify failed")),
        "sslrootcert=system with another CA in SSL_CERT_FILE: {refused:?}"
    );
}

/// Starts `myapi-web` on `dsn` (with `SSL_CERT_FILE`, if given) and stops it again: `Ok` once
/// it listens, `Err(stderr)` if it exits first.
fn server_starts(dir: &Path, dsn: &str, cert_file: Option<&str>) -> Result<(), String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_myapi-web"));
    command
        .current_dir(dir)
        .env("MYAPI_DATABASE__DSN", dsn)
        .env("MYAPI_DATABASE__CONNECT_TIMEOUT_SECS", "2")
        .env("MYAPI_SERVER__PORT", "0")
        .env("MYAPI_SERVER__WORKERS", "1")
        .env("MYAPI_TOKEN_KEY", TEST_TOKEN_KEY)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(file) = cert_file {
        command.env("SSL_CERT_FILE", file);
    }
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    let outcome = loop {
        match seen.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains("listening on") => break Ok(()),
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
            }
            Err(_) => break Err(log),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    outcome
}
