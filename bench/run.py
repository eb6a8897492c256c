#!/usr/bin/env python3
"""myapi benchmark harness: one command builds release, prepares PostgreSQL, drives load
from separate processes, and writes docs/BENCHMARKS.md.

    python3 bench/run.py                 # full run (about 20 min), writes docs/BENCHMARKS.md
    python3 bench/run.py --smoke         # every row at tiny size (CI runs it so it cannot rot)
    python3 bench/run.py --only grid     # some sections only (see --help), same report layout
    python3 bench/run.py --template      # the report's structure with placeholders, no run
    python3 bench/run.py --sweep [--base-url URL --token T | --username U --password P]
                                         # 1..256 connections against this or another service

Needs: cargo, psql and pgbench (PostgreSQL client), oha (`cargo install oha`), wrk (Debian package), python3 (stdlib).
PostgreSQL: by default a cluster of the harness's own in target/bench-pg (initdb once, on a
free port each run; max_connections = 300 so pgbench can open 128 clients beside the server's
pool), using the machine's PostgreSQL server binaries, run as user `postgres` when we are root.
The 1M-row table is kept there between runs (rebuilt when a migration changes; --fresh wipes
the cluster). Set MYAPI_BENCH_POSTGRES_URL to use an existing server instead: the harness
creates its own databases there and drops them, except the 1M-row one (kept), and the
ceilings fall back to built-in SQL because it cannot read that server's log.
"""

import argparse
import concurrent.futures
import datetime
import hashlib
import http.client
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Where cargo builds: CARGO_TARGET_DIR when set (relative to the workspace, as cargo reads it).
TARGET = ROOT / os.environ.get("CARGO_TARGET_DIR", "target")
RELEASE = TARGET / "release"
CLUSTER_DIR = ROOT / "target" / "bench-pg"
ADMIN_URL = os.environ.get("MYAPI_BENCH_POSTGRES_URL")  # None: the harness's own cluster
TOKEN_KEY = "bench-token-key-0123456789abcdef-0123456789"
EMAIL, PASSWORD = "bench@example.com", "bench-password-1"
# TLS on loopback would measure OpenSSL, not myapi or PostgreSQL: both sides go without it.
os.environ["PGSSLMODE"] = "disable"

# The read data set of issue #13: 1,010 movies, exactly 50 of them match LISTING.
SMALL_N, SMALL_MATCHES = 1010, 50
LISTING = "/movies/new?year=2000&rating=8"
CURRENT_LISTING = "/movies/new?year=1990&rating=9&limit=50"
# `<id>` in a path stands for a random existing id (1..SMALL_N).
ID_REGEX = "([1-9][0-9]{0,2}|10(0[0-9]|10))"
BY_ID = "/movies/<id>"
READS = [  # (label, path): each is reported against the same SQL in pgbench
    ("GET /movies/{id}", BY_ID),
    (f"GET {LISTING} (50 rows)", LISTING),
    (f"GET {CURRENT_LISTING}", CURRENT_LISTING),
]
TARGETS_16 = {BY_ID: 0.50, LISTING: 0.60}  # fraction of the same-SQL ceiling at 16 connections

# The 1M-row plan grid (issue #13 item 2).
GRID_YEARS = [0, 1900, 1990, 2020, 2024, 2025]
GRID_RATINGS = ["0", "5", "9", "9.5", "9.9", "10"]
GRID_AFTER, GRID_LIMIT, GRID_P99_MS = 500_000, 1000, 20.0
BIG_GENERATOR = "v1"  # bump when the SQL in load_big changes: the cached table is rebuilt

# Settings other work adds (issue #14). A setting exists when config/default.toml has it
# (the only place a default is written); otherwise its rows are skipped with a note.
LOGIN_BUDGET_KEY, LOGIN_BUDGET_ENV, LOGIN_BUDGET_MEMORY = "auth.login_budget", "MYAPI_AUTH__LOGIN_BUDGET", "memory"
METRICS_KEY, METRICS_ENV = "metrics.address", "MYAPI_METRICS__ADDRESS"
# Every client here is one address logging in to one account, and the throttle counts
# logins while they wait for a hashing thread: left at its defaults it would answer most
# of them 429, and the /token rows would measure the throttle instead of the hashing.
# The request limits (issue #25) are off too, except in their own section: the other rows
# send every request with one token, which a limit would refuse past its burst.
UNTHROTTLED = {"MYAPI_AUTH__IP_FAILURE_BURST": "1000000", "MYAPI_AUTH__ACCOUNT_FAILURE_BURST": "1000000",
               "MYAPI_LIMITS__ENABLED": "false"}

# The request limits (issue #25): the reads with them at their defaults against the same reads
# with them off, each request's token taken in turn from this many users, so that every
# caller stays below the read limit (200/s) however fast the server goes.
LIMIT_CALLERS = 400
LIMIT_READS = [("GET /movies/{id}", BY_ID), (f"GET {LISTING}", LISTING)]
LIMIT_RATIO = 0.95  # limits on / limits off, the issue's target
# Servers with the limits off and on alternate (`alternate`), each warmed first.
LIMIT_WARMUP_SECS = 3
# Loads compared with each other alternate in short runs: this many pairs of this many
# seconds.
PAIRS, PAIR_SECS = 15, 2
# The token-key rows take this many 10 s turns instead, the best of each.
LIMIT_TURNS = 5

# The read cache (issue #23): its setting, an editor for the writes mixed into reads, and
# the flood of distinct listing queries under a small bound.
CACHE_ENV = "MYAPI_CACHE__ENABLED"
EDITOR_EMAIL, EDITOR_PASSWORD = "editor@example.com", "bench-password-2"
CACHE_READS = [("GET /movies/{id}", BY_ID, "/movies/{movie_id}"),  # (label, path, the route's label)
               (f"GET {LISTING}", LISTING, "/movies/new")]
WRITE_SHARE = 100  # one request in this many is a PATCH in the mixed row
FLOOD_MAX_BYTES = 16 * 1024 * 1024
SERVER_P99_MS = 10.0  # issue #23: p99 by the server's own histogram at 16 connections
LAG_P99_MS = 100.0  # the README's bound (cache.max_staleness_ms)
# The off-CPU view of the cache-off listing (issue #23 item 6): threads grouped by name, as
# `perf sched` shows them.
SCHED_GROUPS = {"actix-rt|system": "server: async workers", "tokio-rt-worker": "server: blocking threads",
                "postgres": "PostgreSQL backends", "wrk": "wrk (the load generator)"}
# The issue's figures for the original FastAPI app (2026-12-06, not this run): its peaks,
# used when a run has no `--base-url` to measure it side by side.
ORIGINAL_PEAKS = {LISTING: 750, BY_ID: 1073}
# The original's route for each of the reads compared (it has no `/movies/{id}`), and the
# connections it is measured at: the issue found its peak at 1–4. At 16 its connection pool
# (SQLAlchemy's default 5 + 10) runs dry and requests wait out its 30 s pool timeout.
ORIGINAL_ROUTES = {LISTING: LISTING, BY_ID: "/movies/?movie_id=<id>"}
ORIGINAL_LEVELS = [1, 2, 4]

# Token keys (issue #24): `/movies/{id}` with EdDSA tokens (a key file) against HS256 tokens
# (a secret), the same callers' tokens in turn, taking turns like the limits rows.
KEYS_RATIO = 0.95  # EdDSA / HS256, the issue's target

SECTIONS = ["reads", "login", "fleet", "cache", "limits", "keys", "big", "grid", "sweep", "micro", "stops"]
# Stops under load in a full run; CI's deploy step runs deploy-check's default 50.
STOP_CYCLES = 300
SWEEP_LEVELS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(cmd, **kwargs):
    try:
        return subprocess.run(cmd, check=True, text=True, capture_output=True, **kwargs)
    except subprocess.CalledProcessError as error:
        sys.stderr.write(f"bench: {' '.join(map(str, cmd))[:200]} failed:\n{error.stdout}{error.stderr}\n")
        raise


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- PostgreSQL ---------------------------------------------------------------------------------

class Cluster:
    """The harness's PostgreSQL cluster in target/bench-pg, started on a free port."""

    def __init__(self, fresh):
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not bins:
            sys.exit("bench: no PostgreSQL server binaries; set MYAPI_BENCH_POSTGRES_URL")
        self.bin = bins[-1].parent
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.data = CLUSTER_DIR / "data"
        self.log_path = CLUSTER_DIR / "log"
        if fresh or (CLUSTER_DIR.exists() and not (self.data / "PG_VERSION").exists()):
            self.pg_ctl("stop", "-m", "immediate", check=False)
            shutil.rmtree(CLUSTER_DIR, ignore_errors=True)
        if not (self.data / "PG_VERSION").exists():
            CLUSTER_DIR.mkdir(parents=True, exist_ok=True)
            if self.as_postgres:
                shutil.chown(CLUSTER_DIR, "postgres", "postgres")
            run([*self.as_postgres, str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                 "--auth=trust", "-E", "UTF8"])
        self.pg_ctl("stop", "-m", "fast", check=False)  # left running by a killed run
        self.port = free_port()
        options = (f"-p {self.port} -k {CLUSTER_DIR} -c listen_addresses=127.0.0.1 -c max_connections=300 "
                   "-c shared_buffers=256MB")
        self.pg_ctl("start", "-l", str(self.log_path), "-o", options)
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, action, *extra, check=True):
        cmd = [*self.as_postgres, str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", action, *extra]
        if check:
            run(cmd)
        else:
            subprocess.run(cmd, capture_output=True)

    def stop(self):
        self.pg_ctl("stop", "-m", "fast", check=False)


def db_url(name):
    parsed = urllib.parse.urlsplit(ADMIN_URL)
    return urllib.parse.urlunsplit(parsed._replace(path="/" + name))


def psql(url, sql):
    return run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql]).stdout.strip()


def fresh_database(name):
    psql(ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(ADMIN_URL, f'CREATE DATABASE "{name}"')
    return db_url(name)


def cli_env(dsn):
    return dict(os.environ, MYAPI_DATABASE__DSN=dsn, RUST_LOG="error")


def plain_tls(dsn):
    """The DSN without TLS (loopback): PostgreSQL's gets `sslmode=disable`; SQLite's is kept."""
    return dsn + "?sslmode=disable" if dsn.startswith("postgres") else dsn


def cli(*args, dsn, stdin=None):
    return run([str(RELEASE / "myapi-cli"), *args], env=cli_env(plain_tls(dsn)), input=stdin)


def create_user(dsn):
    cli("create-user", "--name", "Bench", "--email", EMAIL, "--password-stdin", dsn=dsn, stdin=PASSWORD + "\n")


def write_small_csv(path):
    """The 1,010 movies of issue #13: ids 20, 40, …, 1000 (50 of them) are released in 2000
    or later with a rating of 8 or more; every other movie fails one of the two."""
    rng = random.Random(1010)
    with open(path, "w") as f:
        f.write("movie_id,title,released,rating\n")
        for i in range(1, SMALL_N + 1):
            if i % 20 == 0 and i <= 1000:
                year, tenths = rng.randint(2000, 2025), rng.randint(80, 100)
            elif rng.random() < 0.5:
                year, tenths = rng.randint(1900, 1999), rng.randint(0, 100)
            else:
                year, tenths = rng.randint(2000, 2025), rng.randint(0, 79)
            f.write(f"{i},Movie {i},{year},{tenths / 10}\n")


def write_random_csv(path, n):
    rng = random.Random(42)
    with open(path, "w") as f:
        f.write("movie_id,title,released,rating\n")
        for i in range(1, n + 1):
            f.write(f"{i},Movie {i},{rng.randint(1900, 2025)},{rng.randint(0, 100) / 10}\n")


def load_small(name, csv_path=None):
    """A migrated database with the 1,010 movies (or `csv_path`), a user and pgbench's tables."""
    url = fresh_database(name)
    cli("migrate", dsn=url)
    if csv_path is None:
        csv_path = Path(tempfile.mkdtemp(prefix="myapi-bench-")) / "movies-1010.csv"
        write_small_csv(csv_path)
        cli("import-movies", str(csv_path), dsn=url)
        matches = psql(url, "SELECT count(*) FROM myapi.movies WHERE released >= 2000 AND rating >= 8")
        assert int(matches) == SMALL_MATCHES, f"{matches} movies match {LISTING}, not {SMALL_MATCHES}"
    else:
        cli("import-movies", str(csv_path), dsn=url)
    create_user(url)
    return url


def migrations_fingerprint():
    digest = hashlib.sha256(BIG_GENERATOR.encode())
    for path in sorted((ROOT / "migrations" / "postgres").rglob("*.sql")):
        digest.update(path.relative_to(ROOT).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def load_big(n):
    """Database myapi_bench_<n> with movies 1..n (years 1900–2025, ratings 0.0–10.0 in tenths,
    spread by multiplicative hashing: deterministic), kept between runs in the harness's own
    cluster while the migrations and the generator are unchanged."""
    name = f"myapi_bench_{n}"
    url = db_url(name)
    stamp = f"bench {n} rows {migrations_fingerprint()}"
    exists = psql(ADMIN_URL, f"SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{name}'")
    if exists == stamp:
        log(f"{n} movies: cached in database {name}")
        return url, 0.0
    start = time.perf_counter()
    url = fresh_database(name)
    cli("migrate", dsn=url)
    create_user(url)
    psql(url, f"""
        INSERT INTO myapi.movies (movie_id, title, released, rating)
        SELECT i, 'Movie ' || i,
               1900 + ((i::bigint * 2654435761) % 4294967296) / 256 % 126,
               ((i::bigint * 2246822519) % 4294967291) % 101 / 10.0
        FROM generate_series(1, {n}) AS i""")
    psql(url, "VACUUM (ANALYZE) myapi.movies")  # as autovacuum would: visibility map and statistics
    psql(ADMIN_URL, f"COMMENT ON DATABASE \"{name}\" IS '{stamp}'")
    took = time.perf_counter() - start
    log(f"{n} movies: generated in {took:.1f} s")
    return url, took


# --- the server and the load generators ----------------------------------------------------------

SERVERS = []


class ServerRejected(Exception):
    """The server exited at start-up (e.g. a setting it does not accept)."""


class Server:
    """A release myapi-web on a free port; RSS read from /proc.

    Always with raised login bursts: on PostgreSQL the login budget lives in the database and
    outlives each server, so a storm run by one server would throttle the next one's login."""

    def __init__(self, dsn, log_path, settings=None):
        self.port = free_port()
        # No drain on stop: no load balancer is watching /ready here, and each stop would
        # wait its 5 s.
        env = dict(os.environ, MYAPI_DATABASE__DSN=plain_tls(dsn), MYAPI_TOKEN_KEY=TOKEN_KEY,
                   MYAPI_SERVER__PORT=str(self.port), MYAPI_SERVER__DRAIN_SECS="0", RUST_LOG="info",
                   **{**UNTHROTTLED, **(settings or {})})
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([str(RELEASE / "myapi-web")], env=env, stdout=self.log, stderr=self.log)
        SERVERS.append(self)
        self.base = f"http://127.0.0.1:{self.port}"
        for _ in range(300):
            if self.proc.poll() is not None:
                self.log.close()
                tail = Path(log_path).read_text()[-600:].strip()
                raise ServerRejected(f"exited with {self.proc.returncode}: {tail}")
            try:
                urllib.request.urlopen(self.base + "/ready", timeout=1)
                return
            except Exception:
                time.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def status(self, field):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # MiB
        return 0.0

    def reset_peak(self):
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def token(self):
        return login(self.base, EMAIL, PASSWORD)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            log("server did not stop within 30 s of SIGTERM; killing it")
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def login(base, username, password, path="/token"):
    body = urllib.parse.urlencode({"grant_type": "password", "username": username, "password": password}).encode()
    with urllib.request.urlopen(base + path, data=body, timeout=30) as r:
        return json.load(r)["access_token"]


def oha(base, path, conns, seconds, extra=(), background=False):
    """oha on base+path for `seconds`; `<id>` in path becomes a random id 1..SMALL_N."""
    if "<id>" in path:
        url = base + re.escape(path).replace("<id>", ID_REGEX)
        extra = ["--rand-regex-url", *extra]
    else:
        url = base + path
    cmd = ["oha", "--no-tui", "--output-format", "json", "-z", f"{seconds}s", "-c", str(conns), *extra, url]
    if background:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return parse_oha(run(cmd).stdout)


def parse_oha(text):
    data = json.loads(text)
    lat = data.get("latencyPercentiles", {})
    statuses = dict(data.get("statusCodeDistribution", {}))
    for error, count in data.get("errorDistribution", {}).items():
        if "aborted due to deadline" not in error:  # requests cut off by the end of the run
            statuses[f"error: {error[:40]}"] = count
    return {
        "rps": data["summary"]["requestsPerSec"],
        "p50": (lat.get("p50") or 0) * 1000,
        "p99": (lat.get("p99") or 0) * 1000,
        "statuses": statuses,
        "errors": sum(v for k, v in statuses.items() if not (k.startswith("2") or k == "304")),
    }


def wrk(base, path, conns, seconds, token, headers=None):
    """wrk on base+path for `seconds`, as the issue's figures were taken: a C load generator
    about as light as pgbench, so the reads and their ceilings compete with the same client
    cost for the shared cores (oha, a tokio client, takes several times more CPU per
    request). `<id>` becomes a random id 1..SMALL_N; `headers` are sent with every request."""
    target = path.replace("<id>", '" .. math.random(1, %d) .. "' % SMALL_N)
    script = f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    for name, value in (headers or {}).items():
        script += f'wrk.headers["{name}"] = {lua_string(value)}\n'
    script += f'request = function() return wrk.format("GET", "{target}") end\n'
    return wrk_script(base, script, conns, seconds)


def wrk_script(base, script, conns, seconds):
    """wrk running the Lua `script` (which makes the requests) for `seconds`."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        # wrk wants a connection per thread at least.
        out = run(["wrk", "--latency", "-t", str(min(2, conns)), "-c", str(conns), "-d", f"{seconds}s", "-s", f.name,
                   base]).stdout
    finally:
        os.unlink(f.name)
    return parse_wrk(out)


def lua_string(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_wrk(text):
    def millis(label):
        match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\b", text, re.M)
        if not match:
            return 0.0
        return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]

    total = int(re.search(r"(\d+) requests in", text).group(1))
    non_2xx = int((re.search(r"Non-2xx or 3xx responses: (\d+)", text) or [0, 0])[1])
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    transport = sum(map(int, socket.groups())) if socket else 0
    statuses = {"2xx": total - non_2xx}
    if non_2xx:
        statuses["non-2xx"] = non_2xx
    if transport:
        statuses["error: socket"] = transport
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "p50": millis("50%"),
        "p99": millis("99%"),
        "statuses": statuses,
        "errors": non_2xx + transport,
    }


def pgbench(url, conns, seconds, script=None):
    """tps of `pgbench -S` (the classic select-only run, simple protocol) or of a script file
    with -M prepared (the same SQL the app sends, as the app sends it)."""
    cmd = ["pgbench", "-n", "-c", str(conns), "-j", str(min(conns, 2)), "-T", str(seconds)]
    cmd += ["-M", "prepared", "-f", str(script)] if script else ["-S"]
    out = run([*cmd, url], env=dict(os.environ, PGOPTIONS="-c search_path=myapi,public")).stdout
    for line in out.splitlines():
        if line.startswith("tps ="):
            return float(line.split()[2])
    raise RuntimeError(out)


def auth_header(token):
    return ["-H", f"Authorization: Bearer {token}"]


def token_form():
    return ["-m", "POST", "-T", "application/x-www-form-urlencoded",
            "-d", urllib.parse.urlencode({"grant_type": "password", "username": EMAIL, "password": PASSWORD})]


# --- the same SQL the app sends -----------------------------------------------------------------

# What diesel generates (used when the server's log cannot be read: MYAPI_BENCH_POSTGRES_URL).
FALLBACK_SQL = {
    BY_ID: ('SELECT "movies"."movie_id", "movies"."title", "movies"."released", "movies"."rating", '
            '"movies"."version" FROM "movies" WHERE ("movies"."movie_id" = $1) LIMIT $2', ["<id>", "1"]),
    "listing": ('SELECT "movies"."movie_id", "movies"."title", "movies"."released", "movies"."rating" '
                'FROM "movies" WHERE ((("movies"."released" >= $1) AND ("movies"."rating" >= $2)) '
                'AND ("movies"."movie_id" > $3)) ORDER BY "movies"."movie_id" LIMIT $4 OFFSET $5', None),
}
PROBE_ID = 777  # the id the capture requests; a parameter with this value becomes random


def capture_statements(cluster, db_name, dsn, work):
    """For each read, the statements the app sends for one request, with their parameters,
    from PostgreSQL's log (log_statement = all on this database while a capture server runs).
    Statements on users and refresh tokens (the token check, cached) are left out."""
    if cluster is None:
        return {}
    psql(ADMIN_URL, f'ALTER DATABASE "{db_name}" SET log_statement = \'all\'')
    captured = {}
    try:
        # The database path: with the cache on, the captured request would be a hit.
        server = Server(dsn, work / "server-capture.log", {"MYAPI_CACHE__ENABLED": "false"})
        token = server.token()
        for _, path in READS:
            url = server.base + path.replace("<id>", str(PROBE_ID))
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
            for _ in range(3):  # every pooled connection may prepare first; capture a later one
                urllib.request.urlopen(request, timeout=10).read()
            offset = cluster.log_path.stat().st_size
            urllib.request.urlopen(request, timeout=10).read()
            time.sleep(0.3)
            with open(cluster.log_path, errors="replace") as f:
                f.seek(offset)
                captured[path] = parse_statement_log(f.read())
        server.stop()
    finally:
        psql(ADMIN_URL, f'ALTER DATABASE "{db_name}" RESET log_statement')
    return captured


def parse_statement_log(text):
    statements = []
    for line in text.splitlines():
        found = re.search(r"LOG:\s+(?:execute [^:]*|statement): (.*)$", line)
        if found:
            statements.append([found.group(1), []])
            continue
        found = re.search(r"DETAIL:\s+parameters: (.*)$", line)
        if found and statements:
            statements[-1][1] = [None if v == "NULL" else v[1:-1].replace("''", "'")
                                 for v in re.findall(r"\$\d+ = (NULL|'(?:[^']|'')*')", found.group(1))]
    return [(sql, params) for sql, params in statements
            if not re.search(r'"?(users|refresh_\w+)"?', sql)]


def pgbench_script(statements, path):
    """A pgbench script of `statements` [(sql with $n, [values])]: each $n becomes a variable
    set to its value, and the probe id a random id 1..SMALL_N."""
    lines = []
    for k, (sql, params) in enumerate(statements):
        def variable(match):
            index = int(match.group(1)) - 1
            value = params[index] if index < len(params) else None
            name = f"s{k}p{index + 1}"
            if value == str(PROBE_ID) or value == "<id>":
                lines.append(f"\\set {name} random(1, {SMALL_N})")
            elif value is not None and re.fullmatch(r"-?\d+(\.\d+)?", value):
                lines.append(f"\\set {name} {value}")
            else:
                return "NULL" if value is None else "'" + value.replace("'", "''") + "'"
            return f":{name}"
        statements[k] = (re.sub(r"\$(\d+)", variable, sql), params)
    lines += [sql + ";" for sql, _ in statements]
    Path(path).write_text("\n".join(lines) + "\n")
    return path


def listing_params(path):
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query))
    limit = int(query.get("limit", 100))
    return [query["year"], query["rating"], "0", str(limit + 1), "0"]


def same_sql(captured, path):
    """The statements of `path`'s request: captured, or the fallback."""
    if captured.get(path):
        return [tuple(s) for s in captured[path]], "captured from PostgreSQL's log"
    if path == BY_ID:
        sql, params = FALLBACK_SQL[BY_ID]
    else:
        sql, params = FALLBACK_SQL["listing"][0], listing_params(path)
    return [(sql, list(params))], "built-in (diesel's SQL; not captured)"


# --- measurements ---------------------------------------------------------------------------------

def percentile(samples, p):
    """Nearest rank: with 30 samples the p99 is the largest."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def grid_run(base, token, years, ratings, warmup, reps):
    """Every grid point, without a cursor and with after=GRID_AFTER: `warmup` requests over
    the points first, then `reps` sequential requests per point, on one keep-alive
    connection; client-side latency (request sent to body read) in ms."""
    host, port = urllib.parse.urlsplit(base).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"Authorization": f"Bearer {token}"}

    def get(path):
        start = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        return (time.perf_counter() - start) * 1000, response.status, body

    points = [(y, r, a) for a in (None, GRID_AFTER) for y in years for r in ratings]

    def path(point):
        year, rating, after = point
        return f"/movies/new?year={year}&rating={rating}&limit={GRID_LIMIT}" + (f"&after={after}" if after else "")

    for i in range(warmup):
        get(path(points[i % len(points)]))
    results = {}
    for point in points:
        samples, statuses, rows = [], set(), None
        for _ in range(reps):
            ms, status, body = get(path(point))
            samples.append(ms)
            statuses.add(status)
            if status == 200:
                rows = len(json.loads(body))
        results[point] = {"p50": statistics.median(samples), "p99": percentile(samples, 99),
                          "statuses": sorted(statuses), "rows": rows}
    conn.close()
    return results


def answers_again(url, token, limit_secs):
    """Seconds until `url` answers (any status below 500) within 1 s; None past `limit_secs`."""
    start = time.perf_counter()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    while time.perf_counter() - start < limit_secs:
        try:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=1).read()
            return time.perf_counter() - start
        except urllib.error.HTTPError as error:
            if error.code < 500:
                return time.perf_counter() - start
        except Exception:
            pass
        time.sleep(0.1)
    return None


def sweep_run(base, token, paths, levels, seconds, probe, recover_secs):
    results = {}
    for path in paths:
        for c in levels:
            result = oha(base, path, c, seconds, auth_header(token) if token else [])
            result["recovery"] = answers_again(base + probe, token, recover_secs)
            results[(path, c)] = result
            rec = "never" if result["recovery"] is None else f"{result['recovery']:.2f} s"
            log(f"sweep {path} c={c}: {result['rps']:.0f} req/s p50 {result['p50']:.2f} p99 {result['p99']:.2f} ms "
                f"errors {result['errors']} answers again after {rec}")
    return results


def setting_exists(key):
    table = tomllib.loads((ROOT / "config" / "default.toml").read_text())
    for part in key.split("."):
        if not isinstance(table, dict) or part not in table:
            return False
        table = table[part]
    return True


def criterion(smoke):
    args = ["cargo", "bench", "-q", "-p", "myapi-services", "--bench", "micro", "--"]
    args += ["--warm-up-time", "1", "--measurement-time", "1" if smoke else "4"]
    run(args, cwd=ROOT)
    results = {}
    for name in ["token_sign", "token_verify", "token_verify_memoised", "argon2/argon2_verify",
                 "movies_query_sqlite_1k"]:
        estimates = json.loads((TARGET / "criterion" / name / "new" / "estimates.json").read_text())
        results[name.split("/")[-1]] = estimates["mean"]["point_estimate"]  # ns
    return results


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    mem = int(next(l.split()[1] for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))) // 1024**2
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB RAM, {platform.platform()}"


# --- the run ---------------------------------------------------------------------------------------

class Plan:
    """Sizes: full, or tiny for --smoke (every row type still runs)."""

    def __init__(self, smoke):
        self.smoke = smoke
        self.seconds = 1 if smoke else 10
        self.levels = [16] if smoke else [4, 16, 64, 128]
        self.big_n = 20_000 if smoke else 1_000_000
        self.grid_years = [1990, 2025] if smoke else GRID_YEARS
        self.grid_ratings = ["9"] if smoke else GRID_RATINGS
        self.grid_warmup, self.grid_reps = (5, 5) if smoke else (50, 30)
        self.sweep_levels = [1, 2, 4] if smoke else SWEEP_LEVELS
        self.sweep_seconds = 1 if smoke else 10
        self.recover_secs = 10 if smoke else 900
        self.flood_queries = 2_000 if smoke else 200_000
        self.flood_max_bytes = 256 * 1024 if smoke else FLOOD_MAX_BYTES
        self.stale_rounds = 200 if smoke else 10_000
        self.limit_callers = 16 if smoke else LIMIT_CALLERS
        self.original_levels = [1, 4] if smoke else ORIGINAL_LEVELS
        self.pairs, self.pair_seconds = (2, 1) if smoke else (PAIRS, PAIR_SECS)
        self.limit_warmup = 1 if smoke else LIMIT_WARMUP_SECS


def measure(args, plan, work, cluster):
    R = {"notes": []}  # everything the report shows; what is missing renders as a placeholder
    only = set(args.only)

    def row(key, result, rss=None):
        result = dict(result, rss=rss)
        R[key] = result
        log(f"{key}: {result['rps']:.0f}/s p50 {result['p50']:.2f} ms p99 {result['p99']:.2f} ms "
            f"{fmt_statuses(result['statuses'])}" + (f" rss {rss:.1f} MiB" if rss else ""))

    need_small = only & {"reads", "login", "fleet", "cache", "limits", "keys", "sweep"}
    if need_small:
        small = load_small("myapi_bench_small")
        run(["pgbench", "-i", "-q", "-s", "10", small])

    if "reads" in only:
        R["sql"] = {}
        captured = capture_statements(cluster, "myapi_bench_small", small, work)
        scripts = {}
        for _, path in READS:
            statements, origin = same_sql(captured, path)
            scripts[path] = pgbench_script(statements, work / f"ceiling-{len(scripts)}.sql")
            R["sql"][path] = (scripts[path].read_text(), origin)
        server = Server(small, work / "server-reads.log")
        time.sleep(1)
        R["idle_rss"] = server.status("VmRSS")
        token = server.token()
        for c in plan.levels:
            server.reset_peak()
            row(("health", c), oha(server.base, "/health", c, plan.seconds), server.status("VmHWM"))
            R[("pgbench -S", c)] = pgbench(small, c, plan.seconds)
            log(f"pgbench -S c={c}: {R[('pgbench -S', c)]:.0f} tps")
            for _, path in READS:
                R[("ceiling", path, c)] = pgbench(small, c, plan.seconds, scripts[path])
                log(f"same SQL as {path} c={c}: {R[('ceiling', path, c)]:.0f} tps")
                server.reset_peak()
                row((path, c), wrk(server.base, path, c, plan.seconds, token), server.status("VmHWM"))
        server.stop()

    if "login" in only:
        server = Server(small, work / "server-login.log")
        auth = auth_header(server.token())
        for c in plan.levels:
            server.reset_peak()
            row(("token", c), oha(server.base, "/token", c, plan.seconds, token_form()), server.status("VmHWM"))
        # Login storm: 200 connections on /token while 16 read movies by id.
        server.reset_peak()
        storm = oha(server.base, "/token", 200, plan.seconds + 4, token_form(), background=True)
        time.sleep(2)
        during = oha(server.base, BY_ID, 16, plan.seconds, auth)
        storm_result = parse_oha(storm.communicate()[0])
        rss = server.status("VmHWM")
        row(("storm read", 16), during, rss)
        row(("storm token", 200), storm_result, rss)
        server.stop()
        # Tuning: with PostgreSQL on the same 2 cores, one async worker leaves it more CPU.
        tuned = Server(small, work / "server-tuned.log", {"MYAPI_SERVER__WORKERS": "1"})
        auth = auth_header(tuned.token())
        for c in plan.levels:
            tuned.reset_peak()
            row(("tuned", c), oha(tuned.base, BY_ID, c, plan.seconds, auth), tuned.status("VmHWM"))
        tuned.stop()

    if "fleet" in only:
        measure_fleet(R, plan, small, work, row)

    if "cache" in only:
        if args.base_url:
            measure_original(R, plan, args, work)
        measure_cache(R, plan, small, work)

    if "limits" in only:
        measure_limits(R, plan, small, work, row)

    if "keys" in only:
        measure_keys(R, plan, small, work, row)

    if "big" in only or "grid" in only:
        big, R["big_generated_secs"] = load_big(plan.big_n)
        # The uncached path is what these rows measure (the cache has its own section).
        server = Server(big, work / "server-big.log", {"MYAPI_CACHE__ENABLED": "false"})
        token = server.token()
        if "big" in only:
            server.reset_peak()
            row(("big listing", 16), oha(server.base, CURRENT_LISTING, 16, plan.seconds, auth_header(token)),
                server.status("VmHWM"))
            R["explain"] = run(["psql", big, "-qAtc", "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT movie_id, title, "
                                "released, rating FROM myapi.movies WHERE released >= 1990 AND rating >= 9 "
                                "ORDER BY movie_id LIMIT 51"]).stdout.strip()
        if "grid" in only:
            log(f"grid: {len(plan.grid_years) * len(plan.grid_ratings) * 2} points at {plan.big_n} rows")
            R["grid"] = grid_run(server.base, token, plan.grid_years, plan.grid_ratings,
                                 plan.grid_warmup, plan.grid_reps)
            worst = max(R["grid"].values(), key=lambda v: v["p99"])
            log(f"grid: worst p99 {worst['p99']:.1f} ms")
        server.stop()

    if "big" in only or "grid" in only:
        scratch = fresh_database("myapi_bench_import")
        cli("migrate", dsn=scratch)
        csv_big = work / "movies-big.csv"
        write_random_csv(csv_big, plan.big_n)
        start = time.perf_counter()
        cli("import-movies", str(csv_big), dsn=scratch)
        R["import_secs"] = time.perf_counter() - start
    if "grid" in only:
        # The same grid on uniformly random data, straight after `import-movies` (which
        # leaves the table vacuumed and analysed), with the cache off.
        create_user(scratch)
        server = Server(scratch, work / "server-grid-random.log", {"MYAPI_CACHE__ENABLED": "false"})
        R["grid_random"] = grid_run(server.base, server.token(), plan.grid_years, plan.grid_ratings,
                                    plan.grid_warmup, plan.grid_reps)
        worst = max(R["grid_random"].values(), key=lambda v: v["p99"])
        log(f"grid on random data after import-movies: worst p99 {worst['p99']:.1f} ms")
        server.stop()
    if "big" in only:
        psql(scratch, "CREATE TABLE myapi.movies_copy (LIKE myapi.movies INCLUDING ALL)")
        start = time.perf_counter()
        run(["psql", scratch, "-v", "ON_ERROR_STOP=1", "-qc",
             f"\\copy myapi.movies_copy(movie_id,title,released,rating) FROM '{csv_big}' CSV HEADER"])
        R["copy_secs"] = time.perf_counter() - start
        log(f"import {plan.big_n} rows: myapi-cli {R['import_secs']:.2f} s, psql \\copy {R['copy_secs']:.2f} s")
    if "big" in only or "grid" in only:
        psql(ADMIN_URL, 'DROP DATABASE "myapi_bench_import" WITH (FORCE)')

    if "sweep" in only:
        server = Server(small, work / "server-sweep.log")
        R["sweep"] = sweep_run(server.base, server.token(), SWEEP_PATHS, plan.sweep_levels, plan.sweep_seconds,
                               "/health", plan.recover_secs)
        server.stop()

    if "micro" in only:
        log("criterion micro-benchmarks")
        R["micro"] = criterion(plan.smoke)
    if "stops" in only and not plan.smoke:
        log(f"deploy-check with {STOP_CYCLES} stops under load")
        R["stops"] = stop_cycles()
    return R


def stop_cycles():
    """`cargo xtask deploy-check --stop-cycles N`: its lines for the rolling restart, the stops
    (with any thread dump) and the failover."""
    out = subprocess.run(["cargo", "xtask", "deploy-check", "--stop-cycles", str(STOP_CYCLES)],
                         cwd=ROOT, capture_output=True, text=True)
    lines = []
    for check in ["rolling restart", "stops under load", "failover", "backup and restore"]:
        found = re.search(rf"^deploy-check: (PASS|FAIL) {check}: .*?(?=^deploy-check: |\Z)", out.stdout,
                          re.M | re.S)
        lines.append(found.group(0).strip() if found else
                     f"{check}: not reached (exit {out.returncode}): {out.stderr.strip()[-300:]}")
    return "\n".join(lines)


def measure_fleet(R, plan, small, work, row):
    """Issue #14's costs: the login budget in PostgreSQL (shared by instances) against the
    in-process one, and the metrics listener on against off."""
    stores = [("shared", {})]
    if setting_exists(LOGIN_BUDGET_KEY):
        stores.append(("memory", {LOGIN_BUDGET_ENV: LOGIN_BUDGET_MEMORY}))
    else:
        R["notes"].append(f"In-process login budget rows skipped: config/default.toml has no `{LOGIN_BUDGET_KEY}` "
                          f"(this build has one store, measured as the default).")
    for store, settings in stores:
        try:
            server = Server(small, work / f"server-budget-{store}.log", settings)
        except ServerRejected as error:
            R["notes"].append(f"Login budget `{store}` skipped: the server refused {settings}: {error}")
            continue
        auth = auth_header(server.token())
        row(("budget token", store), oha(server.base, "/token", 16, plan.seconds, token_form()))
        row(("budget read", store), oha(server.base, BY_ID, 16, plan.seconds, auth))
        load = oha(server.base, "/token", 16, plan.seconds + 4, token_form(), background=True)
        time.sleep(2)
        row(("budget read during logins", store), oha(server.base, BY_ID, 16, plan.seconds, auth))
        load.communicate()
        server.stop()
    variants = [("off", {})]
    if setting_exists(METRICS_KEY):
        variants.append(("on", {METRICS_ENV: f"127.0.0.1:{free_port()}"}))
    else:
        R["notes"].append(f"Metrics-on rows skipped: config/default.toml has no `{METRICS_KEY}`.")
    for state, settings in variants:
        try:
            server = Server(small, work / f"server-metrics-{state}.log", settings)
        except ServerRejected as error:
            R["notes"].append(f"Metrics `{state}` skipped: the server refused {settings}: {error}")
            continue
        if settings:
            try:
                urllib.request.urlopen(f"http://{settings[METRICS_ENV]}/metrics", timeout=2).read()
            except Exception as error:
                R["notes"].append(f"Metrics-on rows skipped: nothing answers /metrics on {settings[METRICS_ENV]} ({error}).")
                server.stop()
                continue
        auth = auth_header(server.token())
        for _, path in READS[:2]:
            row(("metrics", state, path), oha(server.base, path, 16, plan.seconds, auth))
        server.stop()


SWEEP_PATHS = [LISTING, "/movies/?movie_id=<id>"]  # the route the original service also has


# --- the read cache (issue #23) ------------------------------------------------------------------

def scrape(address):
    """The samples of /metrics on a server's metrics listener: {(name, sorted labels): value}."""
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()
    samples = {}
    for line in text.splitlines():
        found = re.match(r"^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)", line)
        if found and not line.startswith("#"):
            labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', found.group(2) or "")))
            samples[(found.group(1), labels)] = float(found.group(3))
    return samples


def metric_sum(samples, name, **match):
    """The sum of `name` over the series whose labels include `match`."""
    return sum(value for (metric, labels), value in samples.items()
               if metric == name and all(dict(labels).get(k) == v for k, v in match.items()))


def buckets(samples, name, **match):
    """Histogram `name`'s cumulative buckets {upper bound in s: count}, summed over the series
    whose labels include `match`."""
    found = {}
    for (metric, labels), value in samples.items():
        labels = dict(labels)
        if metric == name + "_bucket" and all(labels.get(k) == v for k, v in match.items()):
            bound = math.inf if labels["le"] == "+Inf" else float(labels["le"])
            found[bound] = found.get(bound, 0) + value
    return found


def buckets_between(before, after, name, **match):
    """What histogram `name` recorded between two scrapes."""
    earlier = buckets(before, name, **match)
    return {bound: count - earlier.get(bound, 0) for bound, count in buckets(after, name, **match).items()}


def bucket_quantile(counts, q):
    """The bucket that holds quantile `q`: (its upper bound in ms, the largest finite bound in
    ms), the first math.inf when past every finite bucket; None when nothing was recorded."""
    total = counts.get(math.inf, 0)
    if not total:
        return None
    rank = math.ceil(q * total)
    finite = max((b for b in counts if b != math.inf), default=0) * 1000
    return next((b * 1000, finite) for b in sorted(counts) if counts[b] >= rank)


def fmt_bucket(found):
    if found is None:
        return "—"
    bound, finite = found
    return f"> {finite:g} ms" if bound == math.inf else f"≤ {bound:g} ms"


def statuses_between(before, after, route, method="GET"):
    """Responses by status that the server counted on `route` between two scrapes."""
    counts = {}
    for (metric, labels), value in after.items():
        labels = dict(labels)
        if (metric == REQUEST_DURATION + "_count" and labels.get("http_route") == route
                and labels.get("http_request_method") == method):
            status = labels.get("http_response_status_code", "?")
            done = value - metric_sum(before, metric, http_route=route, http_request_method=method,
                                      http_response_status_code=status)
            if done:
                counts[status] = int(done)
    return counts


REQUEST_DURATION = "http_server_request_duration_seconds"
LAG_METRIC = "myapi_cache_invalidation_lag_seconds"


def with_server_view(result, before, after, route, method="GET"):
    """A client's result with the server's own view of `route` over the same run: its p50 and
    p99 (the bucket holding each) and the statuses it answered."""
    counts = buckets_between(before, after, REQUEST_DURATION, http_route=route, http_request_method=method)
    return dict(result, server_p50=bucket_quantile(counts, 0.50), server_p99=bucket_quantile(counts, 0.99),
                server_statuses=statuses_between(before, after, route, method))


def warm(base, token):
    """Every movie and the listing once, on one connection: the cache (when on) holds them
    before the timed runs, and PostgreSQL's buffers are warm either way."""
    host, port = urllib.parse.urlsplit(base).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    for path in [LISTING, *(f"/movies/{i}" for i in range(1, SMALL_N + 1))]:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        conn.getresponse().read()
    conn.close()


def conditional_get(base, token, path):
    """`path`'s ETag, and the status a request with `If-None-Match: <it>` gets."""
    host, port = urllib.parse.urlsplit(base).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    response.read()
    etag = response.getheader("ETag")
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}", "If-None-Match": etag or ""})
    again = conn.getresponse()
    again.read()
    conn.close()
    return etag, again.status


def mixed_script(token):
    """Lua for wrk: the listing, and one request in WRITE_SHARE (per thread) a merge patch of
    the title of one of the movies it lists (ids 20, 40, …, 1000), with `If-Match: *`."""
    auth = f"Bearer {token}"
    return f"""
n = 0
request = function()
  n = n + 1
  if n % {WRITE_SHARE} == 0 then
    local id = 20 * math.random(1, {SMALL_MATCHES})
    local headers = {{["Authorization"] = "{auth}", ["If-Match"] = "*",
                     ["Content-Type"] = "application/merge-patch+json"}}
    return wrk.format("PATCH", "/movies/" .. id, headers, '{{"title": "Movie ' .. id .. ' (' .. n .. ')"}}')
  end
  return wrk.format("GET", "{LISTING}", {{["Authorization"] = "{auth}"}})
end
"""


FLOOD_THREADS = 2


def flood_script(token):
    """Lua for wrk: listing queries that never repeat (request i of the run, over both threads:
    limit 1 + i % 100, year 1900 + i / 100 % 126, rating i / 12600 % 101 tenths; distinct for
    the first 1,272,600), so pages of up to 100 movies fill the cache."""
    return f"""
wrk.headers["Authorization"] = "Bearer {token}"
threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
tid = 0
n = 0
request = function()
  local i = n * {FLOOD_THREADS} + tid
  n = n + 1
  local path = string.format("/movies/new?year=%d&rating=%.1f&limit=%d", 1900 + math.floor(i / 100) % 126,
                             math.floor(i / 12600) % 101 / 10, 1 + i % 100)
  return wrk.format("GET", path)
end
"""


def flood(base, token, metrics, count, cap_secs):
    """wrk sending distinct listing queries until the server has answered `count` of them
    (polled on /metrics; wrk stopped with SIGINT, as Ctrl-C would), or `cap_secs` passed."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(flood_script(token))
    try:
        start = scrape(metrics)
        done = lambda: metric_sum(scrape(metrics), REQUEST_DURATION + "_count", http_route="/movies/new") \
            - metric_sum(start, REQUEST_DURATION + "_count", http_route="/movies/new")
        proc = subprocess.Popen(["wrk", "--latency", "-t", str(FLOOD_THREADS), "-c", "16", "-d", f"{cap_secs}s",
                                 "-s", f.name, base], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        began = time.perf_counter()
        while proc.poll() is None and done() < count:
            time.sleep(0.25)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"wrk (flood) exited with {proc.returncode}: {err[-400:]}")
        return dict(parse_wrk(out), secs=time.perf_counter() - began)
    finally:
        os.unlink(f.name)


def stale_reads(rounds):
    """The two-instance test of tests/http/cache.rs with `rounds` rounds on the harness's
    PostgreSQL; its summary line, whether it passed, and how long it took."""
    env = dict(os.environ, MYAPI_STALE_ROUNDS=str(rounds), MYAPI_TEST_POSTGRES_URL=ADMIN_URL, CI="true")
    cmd = ["cargo", "test", "-q", "--workspace", "--test", "http", "--",
           "cache::no_instance_serves_a_stale_movie_after_the_bound", "--exact", "--nocapture"]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    found = re.search(r"^(\d+) rounds: (\d+) stale; the reader's cache: (.*)$", done.stdout, re.M)
    if not found:
        tail = (done.stdout + done.stderr).strip()[-600:]
        return {"passed": False, "line": f"no summary line (exit {done.returncode}): {tail}", "secs": took}
    return {"passed": done.returncode == 0, "rounds": int(found.group(1)), "stale": int(found.group(2)),
            "line": found.group(0), "secs": took}


def add_callers(dsn, count):
    """`count` readers with the bench user's password (its hash copied, so no hashing), as
    bench1@example.com, bench2@…, unless they exist (an earlier section added them); returns
    their emails."""
    emails = [f"bench{i}@example.com" for i in range(1, count + 1)]
    copy = (f"INSERT INTO {{users}} (name, email, hashed_password, security_stamp, role) "
            f"SELECT 'Bench ' || i, 'bench' || i || '@example.com', hashed_password, "
            f"'stamp-' || i, 'reader' FROM {{users}}, {{series}} WHERE email = '{EMAIL}' "
            f"ON CONFLICT DO NOTHING")
    if dsn.startswith("postgres"):
        psql(dsn, copy.format(users="myapi.users", series=f"generate_series(1, {count}) AS s(i)"))
    else:
        with sqlite3.connect(dsn.removeprefix("sqlite://")) as db:
            db.execute(copy.format(users="users", series=f"(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL "
                                                         f"SELECT i + 1 FROM s WHERE i < {count}) SELECT i FROM s)"))
    return emails


def wrk_callers(base, path, conns, seconds, tokens):
    """wrk on base+path, each request with the next of `tokens` in turn (per wrk thread), so
    each caller gets 1/len(tokens) of the requests."""
    target = path.replace("<id>", '" .. math.random(1, %d) .. "' % SMALL_N)
    script = "tokens = {" + ",".join(lua_string(t) for t in tokens) + "}\n"
    script += "n = 0\n"
    script += ("request = function()\n  n = n + 1\n"
               f'  return wrk.format("GET", "{target}", {{["Authorization"] = "Bearer " .. tokens[n % #tokens + 1]}})\n'
               "end\n")
    return wrk_script(base, script, conns, seconds)


def cpu_secs(pid):
    """CPU seconds (user and system) the process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alternate(first, second, pairs, seconds):
    """Two loads, each `(name, start(seconds) -> wrk result, server pid or None)`, run
    `pairs` times each for `seconds`, back to back, the order flipped each pair (first
    second, second first, …). Short runs in alternation: this machine's pace drifts by tens of
    percent within a minute (other tenants' CPU steal), so two loads compare only when run
    seconds apart, and many pairs are needed for a steady ratio.

    Returns each load's runs merged (requests/s over all of its runs, the median run's
    p50 and p99, statuses summed, and the server's CPU time per request when a pid is given),
    and each pair's ratio of first to second."""
    runs, ratios = {first[0]: [], second[0]: []}, []
    for pair in range(pairs):
        rates = {}
        for name, start, pid in (first, second) if pair % 2 == 0 else (second, first):
            used = cpu_secs(pid) if pid else None
            result = start(seconds)
            if pid:
                result["cpu_secs"] = cpu_secs(pid) - used
            runs[name].append(result)
            rates[name] = result["rps"]
        ratios.append(rates[first[0]] / rates[second[0]] if rates[second[0]] else 0.0)

    def merged(results):
        median = lambda field: percentile([r[field] for r in results], 50)
        statuses = {}
        for r in results:
            for status, number in r["statuses"].items():
                statuses[status] = statuses.get(status, 0) + number
        served = sum(r["rps"] for r in results) * seconds
        cpu = [r["cpu_secs"] for r in results if "cpu_secs" in r]
        return {"rps": served / (seconds * len(results)), "p50": median("p50"), "p99": median("p99"),
                "statuses": statuses, "errors": sum(r["errors"] for r in results), "runs": len(results),
                "cpu_us": sum(cpu) / served * 1e6 if cpu and served else None}

    return {name: merged(results) for name, results in runs.items()}, ratios


def measure_limits(R, plan, small, work, row):
    """Issue #25: the read rows at 16 connections with the request limits at their defaults
    against the same rows with them off, on both backends, every caller below its limit; and
    the 429 path: one caller past its burst.

    A server of each kind runs throughout, warmed first with the same load (so each caller's
    first lease is taken, as on a server that has been up a while), then the two alternate
    in short runs (`alternate`); each row is all of a kind's runs, the ratio theirs."""
    sqlite = f"sqlite://{work / 'limits.db'}"
    cli("migrate", dsn=sqlite)
    csv_path = Path(tempfile.mkdtemp(prefix="myapi-bench-")) / "movies-1010.csv"
    write_small_csv(csv_path)
    cli("import-movies", str(csv_path), dsn=sqlite)
    create_user(sqlite)
    for backend, dsn in [("postgres", small), ("sqlite", sqlite)]:
        emails = add_callers(dsn, plan.limit_callers)
        servers = {limits: Server(dsn, work / f"server-limits-{backend}-{limits}.log",
                                  {"MYAPI_LIMITS__ENABLED": "true" if limits == "on" else "false"})
                   for limits in ("off", "on")}
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            tokens = list(pool.map(lambda e: login(servers["off"].base, e, PASSWORD), emails))
        for server in servers.values():
            for _, path in LIMIT_READS:
                wrk_callers(server.base, path, 16, plan.limit_warmup, tokens)
        for _, path in LIMIT_READS:
            def load(limits, path=path):
                server = servers[limits]
                return limits, lambda secs: wrk_callers(server.base, path, 16, secs, tokens), server.proc.pid

            merged, ratios = alternate(load("on"), load("off"), plan.pairs, plan.pair_seconds)
            for limits in ("off", "on"):
                row(("limits", backend, limits, path), merged[limits])
            R[("limits ratios", backend, path)] = ratios
            log(f"limits {backend} {path}: on / off {pct(merged['on']['rps'], merged['off']['rps'])}; by pair "
                f"{', '.join(pct(r, 1) for r in ratios)}; server CPU per request "
                f"{merged['off']['cpu_us'] or 0:.1f} / {merged['on']['cpu_us'] or 0:.1f} µs")
        # One caller, its burst spent within the first moment: the rest is 429s.
        row(("limits", backend, "429"), wrk(servers["on"].base, BY_ID, 16, plan.seconds, tokens[0]))
        for server in servers.values():
            server.stop()


def measure_keys(R, plan, small, work, row):
    """Issue #24: GET /movies/{id} at 16 connections signed with an Ed25519 key file against
    an HS256 secret, on PostgreSQL, in LIMIT_TURNS turns (the order flipped each turn, the best
    of each), each request with the next of plan.limit_callers users' tokens."""
    key_file = work / "token-ed25519.pem"
    if not key_file.exists():
        run([str(RELEASE / "myapi-cli"), "generate-key", str(key_file)])
    emails = add_callers(small, plan.limit_callers)
    tokens = {}
    for turn in range(LIMIT_TURNS):
        for kind in ("hs256", "eddsa") if turn % 2 == 0 else ("eddsa", "hs256"):
            settings = {"MYAPI_TOKEN_KEY_FILES": str(key_file)} if kind == "eddsa" else {}
            server = Server(small, work / f"server-keys-{kind}.log", settings)
            if kind not in tokens:
                with concurrent.futures.ThreadPoolExecutor(4) as pool:
                    tokens[kind] = list(pool.map(lambda e: login(server.base, e, PASSWORD), emails))
            result = wrk_callers(server.base, BY_ID, 16, plan.seconds, tokens[kind])
            key = ("keys", kind)
            if key not in R or result["rps"] > R[key]["rps"]:
                row(key, result)
            server.stop()


def keys_report(R, plan):
    hs, ed = R.get(("keys", "hs256")), R.get(("keys", "eddsa"))
    ratio = ed["rps"] / hs["rps"] if ed and hs and hs["rps"] else None
    return [
        "## Token keys (issue #24)", "",
        f"GET /movies/{{id}} at 16 connections on PostgreSQL with access tokens signed by an Ed25519 key file "
        f"(EdDSA) and by an HS256 secret, taking {LIMIT_TURNS} turns (the order flipped each turn; the best of "
        f"each). Each request carries the next of {plan.limit_callers} users' tokens in turn.", "",
        "| tokens | req/s | p99, ms |", "|---|---|---|",
        f"| HS256 | {n(get(R, ('keys', 'hs256')))} | {n(get(R, ('keys', 'hs256'), 'p99'), '.2f')} |",
        f"| EdDSA | {n(get(R, ('keys', 'eddsa')))} | {n(get(R, ('keys', 'eddsa'), 'p99'), '.2f')} |",
        f"| EdDSA / HS256 | {n(ratio * 100 if ratio else None)}% "
        f"({verdict(None if ratio is None else ratio >= KEYS_RATIO)}) | |", "",
    ]


def limits_report(R, plan):
    lines = [
        "## Request limits (issue #25)", "",
        f"The reads at 16 connections with the request limits at their defaults (reads 200/s, burst 400 "
        f"per caller) and with them off, the same run: a server of each kind, both up throughout and warmed "
        f"for {plan.limit_warmup} s on each read first (so every caller holds a lease, as on a server that has "
        f"been up a while), then {plan.pairs} pairs of {plan.pair_seconds} s runs, one on each, back to back, the "
        f"order flipped each pair (on then off, off then on, …): this machine's pace drifts by tens of percent "
        f"within a minute, so only runs seconds apart compare. Each rate is over all of its runs, p99 is the median "
        f"run's, the spread of the pairs' ratios is beside the ratio, and the server's CPU time per request is its CPU "
        f"time (user and system) over the requests it answered. "
        f"Each request carries the next of {plan.limit_callers} users' tokens in turn, so every caller "
        f"stays below its limit (non-2xx counts any 429). The last row is one caller past its burst: "
        f"nearly every answer is a 429, the path a flood meets.", "",
        "| backend | read | limits off, req/s | limits on, req/s | on / off | server CPU per request off / on, µs "
        "| p99 off / on, ms | non-2xx on |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for backend in ("postgres", "sqlite"):
        for label, path in LIMIT_READS:
            off, on = R.get(("limits", backend, "off", path)), R.get(("limits", backend, "on", path))
            ratio = on["rps"] / off["rps"] if on and off and off["rps"] else None
            lines.append(f"| {backend} | {label} | {n(get(R, ('limits', backend, 'off', path)))} | "
                         f"{n(get(R, ('limits', backend, 'on', path)))} | "
                         f"{n(ratio * 100 if ratio else None)}% ({verdict(None if ratio is None else ratio >= LIMIT_RATIO)}; "
                         f"pairs {spread(R.get(('limits ratios', backend, path)))}) | "
                         f"{n(get(R, ('limits', backend, 'off', path), 'cpu_us'), '.1f')} / "
                         f"{n(get(R, ('limits', backend, 'on', path), 'cpu_us'), '.1f')} | "
                         f"{n(get(R, ('limits', backend, 'off', path), 'p99'), '.2f')} / "
                         f"{n(get(R, ('limits', backend, 'on', path), 'p99'), '.2f')} | "
                         f"{n(get(R, ('limits', backend, 'on', path), 'errors'), 'd')} |")
        refused = R.get(("limits", backend, "429"))
        lines.append(f"| {backend} | GET /movies/{{id}}, one caller past its burst (429 path) | | "
                     f"{n(get(R, ('limits', backend, '429')))} | | | "
                     f"— / {n(get(R, ('limits', backend, '429'), 'p99'), '.2f')} | "
                     f"{fmt_statuses(refused['statuses']) if refused else '—'} |")
    return lines + [""]


def measure_original(R, plan, args, work):
    """Issue #23's side-by-side rows: the original app (or another implementation) at
    `--base-url`, started by whoever runs the harness, loaded with the same movies and read
    with the same wrk requests as this service's cache rows."""
    csv_path = work / "movies-original.csv"
    write_small_csv(csv_path)
    base, token = other_service(args, csv_path)
    for path in ORIGINAL_ROUTES.values():
        probe = base + path.replace("<id>", "1")
        for c in plan.original_levels:
            # Each step starts on a server that answers: one left stalled by the step before
            # would measure that stall instead.
            if answers_again(probe, token, plan.recover_secs) is None:
                sys.exit(f"bench: {base} does not answer {path} within {plan.recover_secs} s")
            key = ("original", path, c)
            R[key] = wrk(base, path, c, plan.seconds, token)
            log(f"original {path} c={c}: {R[key]['rps']:.0f}/s p50 {R[key]['p50']:.2f} p99 {R[key]['p99']:.2f} ms "
                f"{fmt_statuses(R[key]['statuses'])}")
    R["original"] = base


def scheduling_delays(base, path, token, work, seconds):
    """The off-CPU view of a cache-off read at 16 connections: `perf sched record` notes
    every context switch on the machine for the first half of a wrk run, and each group of
    threads (SCHED_GROUPS) gets how long its threads, once woken, waited for a core. None when
    perf cannot record (not installed, or not allowed)."""
    data = work / "sched.data"
    window = max(1, seconds // 2)
    try:
        recorder = subprocess.Popen(["perf", "sched", "record", "-o", str(data), "--", "sleep", str(window)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except FileNotFoundError:
        return None
    time.sleep(0.5)  # perf's start-up, before the load
    load = wrk(base, path, 16, seconds, token)
    if recorder.wait() != 0:
        return None
    timeline = subprocess.run(["perf", "sched", "timehist", "-i", str(data)], capture_output=True, text=True).stdout
    delays, cpu_ms, span = {}, {}, [math.inf, 0.0]
    for line in timeline.splitlines():
        fields = line.split()
        if len(fields) < 6 or not re.fullmatch(r"\d+\.\d+", fields[0]):
            continue
        comm = fields[2].split("[")[0]
        if comm == "<idle>":  # a core with nothing to run
            continue
        group = SCHED_GROUPS.get(comm, "other")
        _, delay, run_ms = map(float, fields[-3:])
        delays.setdefault(group, []).append(delay)
        cpu_ms[group] = cpu_ms.get(group, 0.0) + run_ms
        span = [min(span[0], float(fields[0])), max(span[1], float(fields[0]))]
    if not delays:
        return None
    groups = {group: {"wakeups": len(found), "p50": percentile(found, 50), "p99": percentile(found, 99),
                      "max": max(found), "cpu_ms": cpu_ms[group]} for group, found in delays.items()}
    secs = span[1] - span[0]
    busy = sum(cpu_ms.values()) / (secs * 1000 * os.cpu_count()) if secs > 0 else None
    log(f"scheduling delays over {secs:.1f} s ({n(busy * 100 if busy else None)}% of the cores busy): " + "; ".join(
        f"{g} p99 {r['p99']:.2f} max {r['max']:.2f} ms" for g, r in groups.items()))
    return {"groups": groups, "secs": secs, "busy": busy, "load": load}


def original_peak(R, plan, path):
    """The original's best error-free rate for the read at `path` in this run, else None."""
    rates = [r["rps"] for c in plan.original_levels
             if (r := R.get(("original", ORIGINAL_ROUTES[path], c))) and not r["errors"]]
    return max(rates, default=None)


def measure_cache(R, plan, small, work):
    """Issue #23: the reads with the cache on and off (client and server p99), a 304 on the
    listing against /health, 1% writes mixed into the listing, the invalidation lag, memory
    under a flood of distinct queries, and stale reads across two instances."""
    cli("create-user", "--name", "Editor", "--email", EDITOR_EMAIL, "--password-stdin", "--role", "editor",
        dsn=small, stdin=EDITOR_PASSWORD + "\n")

    def log_row(key, r):
        log(f"{key}: {r['rps']:.0f}/s client p50 {r['p50']:.2f} p99 {r['p99']:.2f} ms, server p99 "
            f"{fmt_bucket(r.get('server_p99'))} {fmt_statuses(r.get('server_statuses') or r['statuses'])}")

    for state, settings in [("on", {}), ("off", {CACHE_ENV: "false"})]:
        metrics = f"127.0.0.1:{free_port()}"
        server = Server(small, work / f"server-cache-{state}.log", {METRICS_ENV: metrics, **settings})
        time.sleep(1)
        R[("cache idle_rss", state)] = server.status("VmRSS")
        token = login(server.base, EDITOR_EMAIL, EDITOR_PASSWORD)
        warm(server.base, token)

        def timed(key, load, route, method="GET"):
            before = scrape(metrics)
            result = with_server_view(load(), before, scrape(metrics), route, method)
            R[key] = result
            log_row(key, result)
            return result

        for c in plan.levels:
            for _, path, route in CACHE_READS:
                timed(("cache", state, path, c), lambda: wrk(server.base, path, c, plan.seconds, token), route)
        # The client's p99 beside the server's comes from oha, which times every request: wrk's
        # percentiles of these reads break Little's law on this machine (a mean latency several
        # times connections / rate), so they are not those of all its requests.
        for _, path, _ in CACHE_READS:
            R[("cache oha", state, path)] = oha(server.base, path, 16, plan.seconds, auth_header(token))
        etag, status = conditional_get(server.base, token, LISTING)
        R[("cache etag", state)] = (etag, status)
        # The 304 and /health alternate in short runs: the machine's pace drifts by more than
        # the target's margin between longer ones.
        before = scrape(metrics)
        merged, ratios = alternate(
            ("304", lambda secs: wrk(server.base, LISTING, 16, secs, token, {"If-None-Match": etag or ""}), None),
            ("health", lambda secs: wrk(server.base, "/health", 16, secs, token), None),
            plan.pairs, plan.pair_seconds)
        after = scrape(metrics)
        for kind, route in [("304", "/movies/new"), ("health", "/health")]:
            R[("cache " + kind, state)] = with_server_view(merged[kind], before, after, route)
            log_row(("cache " + kind, state), R[("cache " + kind, state)])
        R[("cache 304 ratios", state)] = ratios
        log(f"cache {state}: 304 / health {pct(merged['304']['rps'], merged['health']['rps'])}; by pair "
            f"{', '.join(pct(r, 1) for r in ratios)}")

        before = scrape(metrics)
        mixed = wrk_script(server.base, mixed_script(token), 16, plan.seconds)
        after = scrape(metrics)
        mixed = with_server_view(mixed, before, after, "/movies/new")
        mixed["write_statuses"] = statuses_between(before, after, "/movies/{movie_id}", "PATCH")
        reads = sum(mixed["server_statuses"].values())
        writes = sum(mixed["write_statuses"].values())
        mixed["read_rps"] = mixed["rps"] * reads / (reads + writes) if reads + writes else None
        R[("cache mixed", state)] = mixed
        log_row(("cache mixed", state), mixed)
        log(f"cache mixed {state}: reads {n(mixed['read_rps'])}/s, writes {fmt_statuses(mixed['write_statuses'])}")
        if state == "on":
            lag = buckets_between(before, after, LAG_METRIC)
            R["cache lag"] = {"count": int(lag.get(math.inf, 0)), "p50": bucket_quantile(lag, 0.50),
                              "p99": bucket_quantile(lag, 0.99)}
            log(f"invalidation lag over the mixed run: {R['cache lag']['count']} recorded, p99 "
                f"{fmt_bucket(R['cache lag']['p99'])}")
        psql(small, "UPDATE myapi.movies SET title = 'Movie ' || movie_id WHERE title <> 'Movie ' || movie_id")
        if state == "off":
            for _, path, _ in CACHE_READS:
                R[("cache sched", path)] = scheduling_delays(server.base, path, token, work, plan.seconds)
        server.stop()

    # Memory: a flood of distinct listing queries under a small bound.
    metrics = f"127.0.0.1:{free_port()}"
    server = Server(small, work / "server-cache-flood.log",
                    {METRICS_ENV: metrics, "MYAPI_CACHE__MAX_BYTES": str(plan.flood_max_bytes)})
    token = login(server.base, EDITOR_EMAIL, EDITOR_PASSWORD)
    # The login's argon2 working memory is freed within two seconds of the last login; the
    # flood is measured from there.
    time.sleep(3)
    idle = server.status("VmRSS")
    server.reset_peak()
    before = scrape(metrics)
    result = flood(server.base, token, metrics, plan.flood_queries, 60 if plan.smoke else 900)
    after = scrape(metrics)
    cache_results = {r: int(metric_sum(after, "myapi_cache_requests_total", result=r)
                            - metric_sum(before, "myapi_cache_requests_total", result=r))
                     for r in ("hit", "miss", "bypass")}
    R["cache flood"] = dict(
        result, idle_rss=idle, peak_rss=server.status("VmHWM"), rss_after=server.status("VmRSS"),
        max_bytes=plan.flood_max_bytes, queries=plan.flood_queries,
        answered=statuses_between(before, after, "/movies/new"), cache=cache_results,
        cache_bytes=metric_sum(after, "myapi_cache_bytes"),
        evictions=int(metric_sum(after, "myapi_cache_evictions_total")))
    f = R["cache flood"]
    log(f"flood: {fmt_statuses(f['answered'])} in {f['secs']:.1f} s ({fmt_statuses(f['cache'])}); RSS idle "
        f"{idle:.1f} MiB, peak {f['peak_rss']:.1f} MiB, after {f['rss_after']:.1f} MiB; myapi_cache_bytes "
        f"{f['cache_bytes']:.0f} of {f['max_bytes']}, {f['evictions']} evictions")
    server.stop()

    log(f"stale reads: the two-instance test with {plan.stale_rounds} rounds")
    R["cache stale"] = stale_reads(plan.stale_rounds)
    log(f"stale reads: {R['cache stale']['line']} ({R['cache stale']['secs']:.0f} s)")


# --- the report --------------------------------------------------------------------------------------

def fmt_statuses(statuses):
    return ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())) or "-"


def n(value, spec=".0f"):
    return "—" if value is None else format(value, spec)


def spread(ratios):
    """The quartiles of a list of ratios, as percentages: `min, p25, median, p75, max`."""
    if not ratios:
        return "—"
    middle = ", ".join(f"{label} {percentile(ratios, p):.0%}" for label, p in [("p25", 25), ("median", 50), ("p75", 75)])
    return f"min {min(ratios):.0%}, {middle}, max {max(ratios):.0%}"


def pct(a, b):
    return "—" if a is None or not b else f"{a / b:.0%}"


def verdict(ok):
    return "—" if ok is None else ("met" if ok else "**missed**")


def get(R, key, field="rps"):
    value = R.get(key)
    if value is None:
        return None
    return value[field] if isinstance(value, dict) else value


def grid_verdict(grid):
    """The measured and verdict cells of a grid's target row: every point answered 200 within
    GRID_P99_MS at p99."""
    if not grid:
        return "— | —"
    measured = [v for v in grid.values() if v["statuses"] == [200]]
    over = [v for v in measured if v["p99"] > GRID_P99_MS]
    worst = max((v["p99"] for v in measured), default=None)
    skipped = len(grid) - len(measured)
    return (f"{len(measured) - len(over)} of {len(grid)} points within; worst p99 {n(worst, '.1f')} ms"
            f"{f'; {skipped} points not answered 200' if skipped else ''} | {verdict(not over and not skipped)}")


def report(R, plan, args, cluster):
    big_label = f"{plan.big_n // 1000}k" if plan.big_n < 1_000_000 else "1M"
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    if args.template:
        origin = "Structure only (`python3 bench/run.py --template`): every — is filled by a full run."
    else:
        origin = (f"Produced by `python3 bench/run.py{' --smoke' if plan.smoke else ''}"
                  f"{' --only ' + ' '.join(args.only) if set(args.only) != set(SECTIONS) else ''}` on {when} "
                  f"({'smoke mode: tiny sizes, 1 s runs — not representative' if plan.smoke else 'full run'}).")
    pg_version = "—" if args.template else psql(ADMIN_URL, "SHOW server_version")
    lines = [
        "# Benchmarks", "", origin, "",
        f"- Machine: {'—' if args.template else machine()}; PostgreSQL {pg_version} on the same machine"
        f"{' (the harness cluster: max_connections 300, shared_buffers 256MB, otherwise defaults)' if cluster or args.template else ''}.",
        "- Server: release `myapi-web` with default settings (workers = cores, blocking threads per worker = pool / workers, pool 10, "
        "hashing threads = cores, `RUST_LOG=info` access log to a file, the read cache on: the reads rows are mostly cache hits, "
        "while their ceilings are the database path's statements, captured from a server with the cache off; the 1M-row and "
        "grid rows run with the cache off), PostgreSQL over TCP on 127.0.0.1 without TLS "
        "(`sslmode=disable`, pgbench likewise). The service, PostgreSQL and the load generators share the machine's cores.",
        f"- Load: the reads compared with a ceiling run under `wrk --latency -t 2 -c C -d {plan.seconds}s` (as the issue "
        "measured them: a C client about as light as pgbench); every other row under "
        f"`oha -z {plan.seconds}s -c C`; each from a separate process; `<id>` is a random id 1–{SMALL_N}. "
        f"Reads run on {SMALL_N} movies of which exactly {SMALL_MATCHES} match `year=2000&rating=8`.",
        f"- Ceilings: `pgbench -M prepared -c C -j 2 -T {plan.seconds}` running the statements the app sends for that "
        "request (captured from PostgreSQL's log, with the same parameters; the id random), and the classic "
        f"`pgbench -S -c C -j 2 -T {plan.seconds}` (simple protocol) on a scale-10 pgbench database.",
        "",
        "## Targets", "",
        "| target | measured | |", "|---|---|---|",
    ]
    for path, share in TARGETS_16.items():
        label = next(lbl for lbl, p in READS if p == path)
        rps, ceiling = get(R, (path, 16)), R.get(("ceiling", path, 16))
        lines.append(f"| {label} ≥ {share:.0%} of the same SQL in pgbench at 16 connections | "
                     f"{n(rps)} / {n(ceiling)} = {pct(rps, ceiling)} | "
                     f"{verdict(None if rps is None or ceiling is None else rps >= share * ceiling)} |")
    for key, target in [("grid", f"{big_label} rows: every grid point's p99 ≤ {GRID_P99_MS:.0f} ms"),
                        ("grid_random", "… the same on uniformly random data, straight after `import-movies`")]:
        lines.append(f"| {target} | {grid_verdict(R.get(key))} |")
    grid = R.get("grid")
    by16, db16 = get(R, (BY_ID, 16)), R.get(("pgbench -S", 16))
    by128, db128 = get(R, (BY_ID, 128)), R.get(("pgbench -S", 128))
    tuned16, tuned128 = get(R, ("tuned", 16)), get(R, ("tuned", 128))
    micro = R.get("micro")
    argon2_ms = micro["argon2_verify"] / 1e6 if micro else None
    argon2_ceiling = os.cpu_count() / (argon2_ms / 1000) if argon2_ms else None
    storm_token, storm_read = R.get(("storm token", 200)), R.get(("storm read", 16))
    storm_rss = storm_read["rss"] if storm_read else None
    new_small, new_big = get(R, (CURRENT_LISTING, 16), "p50"), get(R, ("big listing", 16), "p50")
    read_peak = max((R[(p, 128)]["rss"] or 0 for _, p in READS if (p, 128) in R), default=None)
    lines += [
        f"| GET /movies/{{id}} ≥ 40% of pgbench -S at {c} connections | {n(r)} / {n(d)} = {pct(r, d)} | "
        f"{verdict(None if r is None or d is None else r >= 0.4 * d)} |"
        for c, r, d in [(16, by16, db16), (128, by128, db128)]
    ]
    lines += [
        f"| … the same with MYAPI_SERVER__WORKERS=1 (tuned for PostgreSQL on the same cores) at {c} connections | "
        f"{n(r)} / {n(d)} = {pct(r, d)} | {verdict(None if r is None or d is None else r >= 0.4 * d)} |"
        for c, r, d in [(16, tuned16, db16), (128, tuned128, db128)]
    ]
    for c in (16, 128):
        t = get(R, ("token", c))
        lines.append(f"| POST /token ≥ 90% of argon2 ceiling ({os.cpu_count()} cores / {n(argon2_ms, '.1f')} ms = "
                     f"{n(argon2_ceiling)}/s) at {c} connections | {n(t)}/s = {pct(t, argon2_ceiling)} | "
                     f"{verdict(None if t is None or argon2_ceiling is None else t >= 0.9 * argon2_ceiling)} |")
    storm_ok = None
    if storm_token and storm_read:
        storm_ok = (not [k for k in storm_token["statuses"] if k not in ("200", "429", "503")]
                    and not [k for k in storm_read["statuses"] if k != "200"])
    lines += [
        f"| Login storm: GET /movies/{{id}} p99 ≤ 50 ms | {n(get(R, ('storm read', 16), 'p99'), '.1f')} ms | "
        f"{verdict(None if not storm_read else storm_read['p99'] <= 50)} |",
        f"| Login storm: only 429/503 besides 200 on /token; reads all 200 | "
        f"{'/token: ' + fmt_statuses(storm_token['statuses']) + '; reads: ' + fmt_statuses(storm_read['statuses']) if storm_ok is not None else '—'} | "
        f"{verdict(storm_ok)} |",
        f"| Login storm: server RSS ≤ 256 MiB | {n(storm_rss)} MiB | {verdict(None if storm_rss is None else storm_rss <= 256)} |",
        f"| /movies/new p50 at {big_label} rows within 2× of {SMALL_N} rows | {n(new_big, '.2f')} ms vs {n(new_small, '.2f')} ms | "
        f"{verdict(None if new_big is None or new_small is None else new_big <= 2 * new_small)} |",
        f"| Server RSS idle ≤ 20 MiB | {n(R.get('idle_rss'), '.1f')} MiB | "
        f"{verdict(None if R.get('idle_rss') is None else R['idle_rss'] <= 20)} |",
        f"| Server RSS under 128 connections of reads ≤ 64 MiB | {n(read_peak, '.1f')} MiB | "
        f"{verdict(None if read_peak is None else read_peak <= 64)} |",
        f"| Import {plan.big_n} CSV rows ≤ 2× psql \\copy | {n(R.get('import_secs'), '.2f')} s vs "
        f"{n(R.get('copy_secs'), '.2f')} s | {verdict(None if 'copy_secs' not in R else R['import_secs'] <= 2 * R['copy_secs'])} |",
        *cache_targets(R, plan),
        "",
    ]

    lines += [
        "## Reads against their ceilings", "",
        "Each read beside the same SQL in pgbench (its own ceiling) and beside `pgbench -S`.", "",
        "| read | connections | myapi req/s | p50 ms | p99 ms | non-2xx/errors | same SQL in pgbench, tps | myapi / same SQL | pgbench -S, tps | myapi / pgbench -S |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in plan.levels:
        db = R.get(("pgbench -S", c))
        health = get(R, ("health", c))
        lines.append(f"| GET /health (HTTP ceiling) | {c} | {n(health)} | {n(get(R, ('health', c), 'p50'), '.2f')} | "
                     f"{n(get(R, ('health', c), 'p99'), '.2f')} | {n(get(R, ('health', c), 'errors'), 'd')} | | | {n(db)} | |")
        for label, path in READS:
            rps, ceiling = get(R, (path, c)), R.get(("ceiling", path, c))
            lines.append(f"| {label} | {c} | {n(rps)} | {n(get(R, (path, c), 'p50'), '.2f')} | "
                         f"{n(get(R, (path, c), 'p99'), '.2f')} | {n(get(R, (path, c), 'errors'), 'd')} | {n(ceiling)} | "
                         f"{pct(rps, ceiling)} | {n(db)} | {pct(rps, db)} |")
    lines += ["", "The statements each ceiling runs (`pgbench -M prepared -f`):", ""]
    for label, path in READS:
        script, origin = R.get("sql", {}).get(path, ("—", "—"))
        lines += [f"- {label} ({origin}):", "", "  ```", *["  " + l for l in script.strip().splitlines()], "  ```", ""]

    lines += [
        "## Login and other scenarios", "",
        "| scenario | connections | requests/s | p50 ms | p99 ms | responses | server peak RSS MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    others = ([(f"POST /token", ("token", c)) for c in plan.levels]
              + [("GET /movies/{id} during login storm", ("storm read", 16)),
                 ("POST /token login storm (200 connections)", ("storm token", 200))]
              + [("GET /movies/{id} with MYAPI_SERVER__WORKERS=1", ("tuned", c)) for c in plan.levels]
              + [(f"GET {CURRENT_LISTING} ({big_label} rows)", ("big listing", 16))])
    for label, key in others:
        r = R.get(key)
        lines.append(f"| {label} | {key[1]} | {n(get(R, key))} | {n(get(R, key, 'p50'), '.2f')} | "
                     f"{n(get(R, key, 'p99'), '.2f')} | {fmt_statuses(r['statuses']) if r else '—'} | "
                     f"{n(r['rss'] if r else None, '.1f')} |")
    lines += ["", f"Idle server RSS after start-up: {n(R.get('idle_rss'), '.1f')} MiB.", ""]

    lines += [
        f"## Plans at {big_label} rows: the grid over HTTP", "",
        f"`GET /movies/new?year=Y&rating=R&limit={GRID_LIMIT}`, without a cursor and with `after={GRID_AFTER}`, on "
        f"{plan.big_n} movies (ids 1..{plan.big_n}, years 1900–2025, ratings 0.0–10.0 in tenths, spread evenly). "
        f"After {plan.grid_warmup} warm-up requests over the grid, {plan.grid_reps} sequential requests per point on "
        f"one keep-alive connection (Python http.client), latency measured by the client. "
        f"p50 / p99 in ms; target p99 ≤ {GRID_P99_MS:.0f} ms (over it in bold). `rows`: movies in the last answer.", "",
        "| year | rating | no cursor p50 / p99 ms | rows | after=500000 p50 / p99 ms | rows |",
        "|---|---|---|---|---|---|",
    ]
    for year in plan.grid_years:
        for rating in plan.grid_ratings:
            cells = []
            for after in (None, GRID_AFTER):
                v = (grid or {}).get((year, rating, after))
                if v is None:
                    cells += ["— / —", "—"]
                elif v["statuses"] != [200]:
                    cells += [f"status {', '.join(map(str, v['statuses']))}", "—"]
                else:
                    p99 = f"{v['p99']:.1f}"
                    cells += [f"{v['p50']:.1f} / {'**' + p99 + '**' if v['p99'] > GRID_P99_MS else p99}", str(v["rows"])]
            lines.append(f"| {year} | {rating} | {' | '.join(cells)} |")
    lines += ["", f"Query plan of `{CURRENT_LISTING}`'s SQL at {big_label} rows (psql, literal values):", "",
              "```", R.get("explain", "—"), "```", ""]

    lines += [
        "## Fleet costs (issue #14)", "",
        "At 16 connections. The login budget in PostgreSQL (shared by every instance, the default on PostgreSQL) "
        f"against the in-process one (`{LOGIN_BUDGET_ENV}={LOGIN_BUDGET_MEMORY}`); reads with the metrics listener "
        f"on (`{METRICS_ENV}=127.0.0.1:PORT`) against off (empty, the default).", "",
        "| scenario | shared store (PostgreSQL) | in-process store |", "|---|---|---|",
        f"| POST /token req/s | {n(get(R, ('budget token', 'shared')))} | {n(get(R, ('budget token', 'memory')))} |",
        f"| GET /movies/{{id}} p99 ms | {n(get(R, ('budget read', 'shared'), 'p99'), '.2f')} | "
        f"{n(get(R, ('budget read', 'memory'), 'p99'), '.2f')} |",
        f"| GET /movies/{{id}} p99 ms while 16 connections log in | "
        f"{n(get(R, ('budget read during logins', 'shared'), 'p99'), '.2f')} | "
        f"{n(get(R, ('budget read during logins', 'memory'), 'p99'), '.2f')} |",
        "", "| read req/s | metrics off | metrics on | on / off |", "|---|---|---|---|",
    ]
    for label, path in READS[:2]:
        off, on = get(R, ("metrics", "off", path)), get(R, ("metrics", "on", path))
        lines.append(f"| {label} | {n(off)} | {n(on)} | {pct(on, off)} |")
    lines += [""] + [f"- {note}" for note in R["notes"]] + ([""] if R["notes"] else [])

    lines += cache_report(R, plan)
    lines += limits_report(R, plan)
    lines += keys_report(R, plan)

    lines += sweep_table(R.get("sweep"), plan.sweep_levels, SWEEP_PATHS, "this service", plan.sweep_seconds)

    micro = R.get("micro") or {}
    lines += [
        "## Micro-benchmarks (criterion, `cargo bench -p myapi-services --bench micro`)", "",
        "| benchmark | mean |", "|---|---|",
        f"| token sign (HS256) | {n(micro.get('token_sign', 0) / 1000 if micro else None, '.2f')} µs |",
        f"| token verify (HS256) | {n(micro.get('token_verify', 0) / 1000 if micro else None, '.2f')} µs |",
        f"| token verify, remembered (a client's repeated token) | "
        f"{n(micro.get('token_verify_memoised', 0) / 1000 if micro else None, '.2f')} µs |",
        f"| argon2id verify (m=19456 KiB, t=2, p=1) | {n(argon2_ms, '.2f')} ms |",
        f"| movies query on SQLite (1k rows, 50-row page) | "
        f"{n(micro.get('movies_query_sqlite_1k', 0) / 1000 if micro else None, '.1f')} µs |",
        "",
        "## Stops, rolling restart and failover (issue #27)", "",
        f"`cargo xtask deploy-check --stop-cycles {STOP_CYCLES}` (README, \"The deployment check\"): the rolling "
        "restart with each instance taken out of nginx first and nginx's retries off; one instance started and "
        "stopped by SIGTERM while 8 connections read from it, each stop to exit 0 within 5 s (its 3 s "
        "shutdown timeout and actix-server's 1 s check of its workers) or have its threads' stacks dumped here; the primary killed under reads and creates and the "
        "synchronous standby promoted 1 s later; a dump restored into a fresh cluster.", "",
        '<a id="failover"></a>', "",
        "```", R.get("stops") or ("— (smoke mode: CI's deploy step runs 50)" if plan.smoke else "—"), "```", "",
        f"## Import of {plan.big_n} rows", "",
        f"`myapi-cli import-movies` took {n(R.get('import_secs'), '.2f')} s; `psql \\copy` of the same file into a copy "
        f"of the table took {n(R.get('copy_secs'), '.2f')} s.", "",
    ]
    return "\n".join(lines)


def server_p99_ok(result):
    """Whether the server's p99 is within SERVER_P99_MS: its bucket's upper bound is (the
    buckets are 5, 10, 25 ms, …, so a p99 in the 10–25 ms bucket is over)."""
    found = (result or {}).get("server_p99")
    return None if found is None else found[0] <= SERVER_P99_MS


def best_rps(R, state, path, levels):
    return max((get(R, ("cache", state, path, c)) or 0 for c in levels), default=0) or None


def cache_targets(R, plan):
    """Issue #23's targets. The ratios to the original use its peaks measured in this run
    (`--base-url`); without them, the issue's figures for it, labelled as another run and
    given no verdict."""
    lines = []

    def against_original(target, path, factor, rate, unit):
        measured = original_peak(R, plan, path)
        ratio = rate / (measured or ORIGINAL_PEAKS[path]) if rate else None
        if measured:
            return (f"| {target}: ≥ {factor}× the original's peak (`GET {ORIGINAL_ROUTES[path]}`, best of "
                    f"{', '.join(map(str, plan.original_levels))} connections, this run) | {n(rate)} {unit} = "
                    f"{n(ratio, '.1f')}× {n(measured)} req/s | {verdict(None if ratio is None else ratio >= factor)} |")
        return (f"| {target}: ≥ {factor}× the original's peak ({ORIGINAL_PEAKS[path]:,} req/s in the issue's run of "
                f"2026-12-06, not this run) | {n(rate)} {unit} = {n(ratio, '.1f')}× the issue's figure | "
                "not side by side |")

    for label, path, _ in CACHE_READS:
        lines.append(against_original(f"{label}, cache on, best of {', '.join(map(str, plan.levels))} connections",
                                      path, 25 if path == LISTING else 50, best_rps(R, "on", path, plan.levels),
                                      "req/s"))
    mixed = R.get(("cache mixed", "on"))
    lines.append(against_original(f"{LISTING} with 1% writes mixed in, cache on, 16 connections", LISTING, 15,
                                  mixed.get("read_rps") if mixed else None, "reads/s"))
    for state in ("on", "off"):
        r304, health = get(R, ("cache 304", state)), get(R, ("cache health", state))
        ratios = R.get(("cache 304 ratios", state)) or []
        lines.append(f"| 304 on {LISTING} ≥ 70% of GET /health, cache {state}, 16 connections ({plan.pairs} pairs "
                     f"of {plan.pair_seconds} s runs, alternating) | {n(r304)} / {n(health)} = {pct(r304, health)} "
                     f"(pairs: {spread(ratios)}) | "
                     f"{verdict(None if r304 is None or not health else r304 >= 0.7 * health)} |")
    for state in ("on", "off"):
        for label, path, _ in CACHE_READS:
            r = R.get(("cache", state, path, 16))
            lines.append(f"| {label}, cache {state}: p99 ≤ {SERVER_P99_MS:.0f} ms at 16 connections by the server's "
                         f"own histogram (client's beside it) | server {fmt_bucket(r.get('server_p99') if r else None)}, "
                         f"client {n(get(R, ('cache oha', state, path), 'p99'), '.2f')} ms by oha "
                         f"(wrk: {n(get(R, ('cache', state, path, 16), 'p99'), '.2f')} ms, see the cache section) | "
                         f"{verdict(server_p99_ok(r))} |")
    idle = R.get(("cache idle_rss", "on"))
    lines.append(f"| Server RSS idle ≤ 20 MiB, cache on (default `cache.max_bytes`), metrics listener on | {n(idle, '.1f')} MiB | "
                 f"{verdict(None if idle is None else idle <= 20)} |")
    flood = R.get("cache flood")
    limit = plan.flood_max_bytes / 1024**2 + 30
    lines.append(f"| Peak RSS ≤ `cache.max_bytes` + 30 MiB ({limit:.2f} MiB) under {plan.flood_queries:,} distinct "
                 f"listing queries | {n(flood['peak_rss'] if flood else None, '.1f')} MiB | "
                 f"{verdict(None if not flood else flood['peak_rss'] <= limit)} |")
    lag = R.get("cache lag")
    lag_p99 = lag["p99"] if lag else None
    lines.append(f"| Invalidation lag p99 ≤ {LAG_P99_MS:.0f} ms (`myapi_cache_invalidation_lag_seconds`, over the "
                 f"1%-writes run) | {fmt_bucket(lag_p99)} of {n(lag['count'] if lag else None, 'd')} | "
                 f"{verdict(None if lag_p99 is None else lag_p99[0] <= LAG_P99_MS)} |")
    stale = R.get("cache stale")
    lines.append(f"| No stale read after the bound, two instances, {plan.stale_rounds:,} rounds | "
                 f"{(str(stale['stale']) + ' stale in ' + format(stale['rounds'], ',') + ' rounds') if stale and 'stale' in stale else ('failed: see below' if stale else '—')} | "
                 f"{verdict(None if not stale else stale['passed'] and stale.get('stale') == 0)} |")
    return lines


def cache_report(R, plan):
    def server(key, field):
        return fmt_bucket((R.get(key) or {}).get(field))

    lines = [
        "## Read cache (issue #23)", "",
        f"On the {SMALL_N} movies, `wrk --latency -t 2 -c C -d {plan.seconds}s` as an editor, with the metrics listener "
        f"on (`{METRICS_ENV}`); cache on (the default) and off (`{CACHE_ENV}=false`). Before the runs every movie and "
        "the listing are read once (so the cache, when on, holds them). Client p50/p99 are wrk's; the server's are "
        f"the bucket of its own `{REQUEST_DURATION}` (buckets 5, 10, 25, 50 ms, …) that holds the p50/p99 of that "
        "route's requests between scrapes of `/metrics` before and after the run.", "",
        "| read | connections | cache | req/s | client p50 ms | client p99 ms | server p50 | server p99 | server's statuses |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, path, _ in CACHE_READS:
        for c in plan.levels:
            for state in ("on", "off"):
                key = ("cache", state, path, c)
                r = R.get(key)
                lines.append(f"| {label} | {c} | {state} | {n(get(R, key))} | {n(get(R, key, 'p50'), '.2f')} | "
                             f"{n(get(R, key, 'p99'), '.2f')} | {server(key, 'server_p50')} | {server(key, 'server_p99')} | "
                             f"{fmt_statuses(r['server_statuses']) if r else '—'} |")
    lines += [
        "", "The client's p99 by oha at 16 connections, the same reads on the same servers: oha times every request. "
        "wrk's percentiles above are not those of all its requests: Little's law bounds a closed loop's mean latency "
        "by connections / rate, yet on 2026-12-07 here wrk reported a mean of 4.1 ms for one movie with the cache off "
        "at 24,765 req/s (16 / 24,765 = 0.65 ms), and p99s of 60–300 ms where oha measured 2.8–3.2 ms and the "
        "server's histogram put 99.8% of the requests under 5 ms.", "",
        "| read | cache | oha req/s | oha p50 ms | oha p99 ms | 16 / req/s, ms | wrk p99 ms |", "|---|---|---|---|---|---|---|",
    ]
    for label, path, _ in CACHE_READS:
        for state in ("on", "off"):
            key = ("cache oha", state, path)
            rate = get(R, key)
            lines.append(f"| {label} | {state} | {n(rate)} | {n(get(R, key, 'p50'), '.2f')} | {n(get(R, key, 'p99'), '.2f')} | "
                         f"{n(16 / rate * 1000 if rate else None, '.2f')} | {n(get(R, ('cache', state, path, 16), 'p99'), '.2f')} |")
    for label, path, _ in CACHE_READS:
        lines += sched_report(label, R.get(("cache sched", path)))
    lines += [
        "", f"Conditional GET at 16 connections: `{LISTING}` with `If-None-Match` set to its current `ETag` "
        f"(fetched first), against `GET /health` on the same server: {plan.pairs} pairs of {plan.pair_seconds} s runs "
        "back to back, the order flipped each pair (304 then /health, /health then 304, …). Each rate is over all of its "
        "runs; p99 is the median run's; the spread of the pairs' ratios is in the targets.",
        "",
        "| cache | ETag; status of one conditional request | 304 req/s | client p99 ms | server p99 | server's statuses | "
        "GET /health req/s | 304 / health |", "|---|---|---|---|---|---|---|---|",
    ]
    for state in ("on", "off"):
        etag, status = R.get(("cache etag", state), ("—", "—"))
        key, health = ("cache 304", state), get(R, ("cache health", state))
        r = R.get(key)
        lines.append(f"| {state} | `{etag}`; {status} | {n(get(R, key))} | {n(get(R, key, 'p99'), '.2f')} | "
                     f"{server(key, 'server_p99')} | {fmt_statuses(r['server_statuses']) if r else '—'} | {n(health)} | "
                     f"{pct(get(R, key), health)} |")
    lines += [
        "", f"1% writes at 16 connections: in each wrk thread, every {WRITE_SHARE}th request is `PATCH /movies/{{id}}` "
        "(`If-Match: *`, `application/merge-patch+json`, a new title for one of the 50 listed movies), the rest "
        f"`GET {LISTING}`. Reads/s is wrk's rate times the reads' share of what the server answered; client "
        "percentiles cover reads and writes; the server's p99 is the listing's. Titles are restored afterwards.", "",
        "| cache | reads/s | all requests/s | client p50 / p99 ms | listing's server p99 | reads' statuses | writes' statuses |",
        "|---|---|---|---|---|---|---|",
    ]
    for state in ("on", "off"):
        key = ("cache mixed", state)
        r = R.get(key)
        lines.append(f"| {state} | {n(r.get('read_rps') if r else None)} | {n(get(R, key))} | "
                     f"{n(get(R, key, 'p50'), '.2f')} / {n(get(R, key, 'p99'), '.2f')} | {server(key, 'server_p99')} | "
                     f"{fmt_statuses(r['server_statuses']) if r else '—'} | {fmt_statuses(r['write_statuses']) if r else '—'} |")
    lag = R.get("cache lag") or {}
    lines += ["", f"Invalidation lag (`{LAG_METRIC}`, from the trigger's `clock_timestamp()` to this instance "
              f"dropping what changed) recorded during the 1%-writes run with the cache on: {n(lag.get('count'), 'd')} "
              f"invalidations, p50 {fmt_bucket(lag.get('p50'))}, p99 {fmt_bucket(lag.get('p99'))} (the bucket that "
              f"holds it; buckets 1, 2.5, 5, 10, 25, 50, 100, 250 ms, …).", ""]
    flood = R.get("cache flood")
    idle_on, idle_off = R.get(("cache idle_rss", "on")), R.get(("cache idle_rss", "off"))
    lines += [
        f"Memory. Idle RSS one second after start-up, with the metrics listener on: {n(idle_on, '.1f')} MiB with "
        f"the cache on (default `cache.max_bytes`), {n(idle_off, '.1f')} MiB with it off (the default settings' "
        f"figure is in the targets above, from `reads`). Then a server with "
        f"`MYAPI_CACHE__MAX_BYTES={plan.flood_max_bytes}` ({plan.flood_max_bytes / 1024**2:g} MiB) under "
        f"{plan.flood_queries:,} distinct listing queries (`limit` 1–100, `year` and `rating` varied so that no URL repeats; "
        "wrk at 16 connections, stopped once the server had answered that many); peak RSS is `VmHWM`, reset before "
        "the flood.", "",
        "| idle RSS MiB | peak RSS MiB | RSS after MiB | limit (max_bytes + 30 MiB) | myapi_cache_bytes after | "
        "myapi_cache_evictions_total | cache lookups | answered | seconds |", "|---|---|---|---|---|---|---|---|---|",
    ]
    if flood:
        lines.append(f"| {flood['idle_rss']:.1f} | {flood['peak_rss']:.1f} | {flood['rss_after']:.1f} | "
                     f"{flood['max_bytes'] / 1024**2 + 30:.2f} | {flood['cache_bytes']:.0f} | {flood['evictions']} | "
                     f"{fmt_statuses(flood['cache'])} | {fmt_statuses(flood['answered'])} | {flood['secs']:.1f} |")
    else:
        lines.append("| — | — | — | — | — | — | — | — | — |")
    stale = R.get("cache stale")
    lines += [
        "", f"Stale reads across instances: `MYAPI_STALE_ROUNDS={plan.stale_rounds} cargo test --workspace --test http "
        "cache::no_instance_serves_a_stale_movie_after_the_bound -- --exact --nocapture` on the harness's PostgreSQL "
        "(two instances on one database; each round reads a movie on one instance, changes it through the other's "
        "API, through another services instance as `myapi-cli` is, or in psql, waits the bound and reads it again on "
        "the first):", "",
        "```", (f"{stale['line']}  ({'passed' if stale['passed'] else 'FAILED'}, {stale['secs']:.0f} s with the build)"
                if stale else "—"), "```", "",
    ]
    return lines + original_report(R, plan)


def sched_report(label, sched):
    """Where the client's p99 goes beyond the server's: the off-CPU view of one read."""
    lines = ["", f"Off-CPU view, cache off, `{label}` at 16 connections: `perf sched record` over the first "
             "half of another wrk run, then `perf sched timehist`. A woken thread's wait for a core is its scheduling "
             "delay. One read wakes threads several times (the async worker, a blocking thread, a PostgreSQL backend, "
             "and back, besides wrk's own), and the server's histogram sees only the waits between reading the "
             "request and writing the answer: the client's p99 also carries the others."]
    if not sched:
        return lines + ["", "Not measured: `perf sched record` did not run here (perf missing or not allowed).", ""]
    load = sched["load"]
    lines += [
        "", f"Over {sched['secs']:.1f} s, the threads below used {n(sched['busy'] * 100 if sched['busy'] else None)}% "
        f"of the {os.cpu_count()} cores (wrk: {load['rps']:.0f} req/s, p99 {load['p99']:.2f} ms).", "",
        "| threads | wake-ups | wait for a core p50 / p99 / max, ms | CPU time, ms |", "|---|---|---|---|",
    ]
    for group in [*SCHED_GROUPS.values(), "other"]:
        r = sched["groups"].get(group)
        if r:
            lines.append(f"| {group} | {r['wakeups']} | {r['p50']:.3f} / {r['p99']:.3f} / {r['max']:.3f} | "
                         f"{r['cpu_ms']:.0f} |")
    return lines + [""]


def original_report(R, plan):
    if "original" not in R:
        return [
            "The original FastAPI app was not measured in this run (no `--base-url`): the figures above are absolute. "
            f"The issue's run of 2026-12-06 measured its peaks at {ORIGINAL_PEAKS[LISTING]:,} req/s (`{LISTING}`) and "
            f"{ORIGINAL_PEAKS[BY_ID]:,} req/s (`/movies/?movie_id=N`); ratios to those figures in the targets compare "
            "two different runs and are not a side-by-side measurement. To measure the original in the same run, "
            "see bench/README.md (`--base-url`).", ""]
    lines = [
        f"The original app, side by side: the service at `{R['original']}`, started before this run with its own "
        f"database on this machine, loaded by the harness with the same {SMALL_N} movies (`--load-dsn`) and read "
        f"with the same wrk requests (`-d {plan.seconds}s`, one token) just before this service's rows above.", "",
        "| read | connections | req/s | p50 ms | p99 ms | statuses |", "|---|---|---|---|---|---|",
    ]
    for route in ORIGINAL_ROUTES.values():
        for c in plan.original_levels:
            key = ("original", route, c)
            r = R.get(key)
            lines.append(f"| GET {route} | {c} | {n(get(R, key))} | {n(get(R, key, 'p50'), '.2f')} | "
                         f"{n(get(R, key, 'p99'), '.2f')} | {fmt_statuses(r['statuses']) if r else '—'} |")
    return lines + [""]


def sweep_table(results, levels, paths, who, seconds):
    lines = [
        f"## Sweep: {who}, 1 to {levels[-1]} connections", "",
        f"`oha -z {seconds}s -c C` per step on the {SMALL_N} movies; after each step, the time until the server "
        "answers again (a request answered within 1 s). Errors: responses other than 2xx, and failed connections. "
        "To hold another implementation against this one, see bench/README.md.", "",
        "| read | connections | req/s | p50 ms | p99 ms | errors | answers again after |",
        "|---|---|---|---|---|---|---|",
    ]
    for path in paths:
        for c in levels:
            r = (results or {}).get((path, c))
            if r is None:
                lines.append(f"| GET {path} | {c} | — | — | — | — | — |")
                continue
            rec = f"> limit (never)" if r["recovery"] is None else f"{r['recovery']:.2f} s"
            lines.append(f"| GET {path} | {c} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['errors']} | {rec} |")
    peaks = []
    for path in paths:
        best = max((results or {}).get((path, c), {}).get("rps", 0) for c in levels)
        if best:
            peaks.append(f"GET {path}: {best:.0f} req/s")
    if peaks:
        lines += ["", "Peaks: " + "; ".join(peaks) + "."]
    return lines + [""]


# --- entry points ----------------------------------------------------------------------------------

def start_postgres(args, work):
    global ADMIN_URL
    if ADMIN_URL is None:
        log("starting the harness's PostgreSQL cluster")
        cluster = Cluster(args.fresh)
        ADMIN_URL = cluster.url
        return cluster
    return None


def build():
    log("building release binaries")
    run(["cargo", "build", "--release", "-q", "-p", "myapi-web", "-p", "myapi-cli"], cwd=ROOT)


def cleanup(cluster, work):
    for server in SERVERS:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
    if cluster:
        cluster.stop()
    elif ADMIN_URL:
        for name in ["myapi_bench_small", "myapi_bench_import"]:
            subprocess.run(["psql", ADMIN_URL, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
                           capture_output=True)
    shutil.rmtree(work, ignore_errors=True)


def other_service(args, csv_path):
    """`--base-url`: another implementation of the API on its own database, e.g. the original
    app. Loads `csv_path` into it (`--load-dsn`) and logs in; returns its base URL and token."""
    base = args.base_url.rstrip("/")
    if args.load_dsn:
        log(f"loading {csv_path} into {args.load_table}")
        run(["psql", args.load_dsn, "-v", "ON_ERROR_STOP=1", "-qc", f"TRUNCATE {args.load_table}"])
        run(["psql", args.load_dsn, "-v", "ON_ERROR_STOP=1", "-qc",
             f"\\copy {args.load_table}(movie_id,title,released,rating) FROM '{csv_path}' CSV HEADER"])
    token = args.token or (login(base, args.username, args.password, args.token_path) if args.username else None)
    return base, token


def sweep_main(args):
    """--sweep: this service (started here) or another at --base-url."""
    levels = [int(c) for c in args.levels.split(",")] if args.levels else (
        [1, 2, 4] if args.smoke else SWEEP_LEVELS)
    seconds = args.seconds or (1 if args.smoke else 10)
    paths = args.path or SWEEP_PATHS
    work = Path(tempfile.mkdtemp(prefix="myapi-bench-"))
    cluster = None
    csv_path = Path(args.data) if args.data else work / "movies-1010.csv"
    if not args.data:
        write_small_csv(csv_path)
    try:
        if args.base_url:
            base, token = other_service(args, csv_path)
            probe = args.probe or paths[0].replace("<id>", "1")
            who = base
        else:
            cluster = start_postgres(args, work)
            build()
            small = load_small("myapi_bench_small", csv_path if args.data else None)
            server = Server(small, work / "server-sweep.log")
            base, token, probe, who = server.base, server.token(), args.probe or "/health", "this service"
        results = sweep_run(base, token, paths, levels, seconds, probe, args.recover_secs or (10 if args.smoke else 900))
        text = "\n".join(sweep_table(results, levels, paths, who, seconds))
        if args.out:
            Path(args.out).write_text(text)
            log(f"wrote {args.out}")
        print(text)
    finally:
        cleanup(cluster, work)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and 1 s runs (for CI)")
    parser.add_argument("--out", help="report path (default docs/BENCHMARKS.md; --sweep: stdout only)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=SECTIONS, help="sections to run")
    parser.add_argument("--template", action="store_true", help="write the report's structure, run nothing")
    parser.add_argument("--fresh", action="store_true", help="wipe the harness's cluster (and cached tables) first")
    sweep = parser.add_argument_group(
        "another implementation", "--sweep sweeps it alone; a full run (section cache) measures it as the original, "
        "side by side with this service")
    sweep.add_argument("--sweep", action="store_true", help="sweep connections against one service")
    sweep.add_argument("--data", help="CSV (movie_id,title,released,rating) to load; default the 1,010 movies")
    sweep.add_argument("--base-url", help="another implementation, e.g. the original at http://127.0.0.1:8001 (--sweep default: start this one)")
    sweep.add_argument("--token", help="bearer token for --base-url")
    sweep.add_argument("--username", help="log in at --base-url with the OAuth2 password grant")
    sweep.add_argument("--password")
    sweep.add_argument("--token-path", default="/token")
    sweep.add_argument("--load-dsn", help="PostgreSQL URL of --base-url's database: TRUNCATE --load-table, COPY --data")
    sweep.add_argument("--load-table", default="myapi.movies")
    sweep.add_argument("--path", action="append", help=f"path to load, repeatable; <id> = random id (default {SWEEP_PATHS})")
    sweep.add_argument("--probe", help="path polled after each step (default /health here, else the first --path)")
    sweep.add_argument("--levels", help="connections, comma-separated (default 1,2,4,…,256)")
    sweep.add_argument("--seconds", type=int, help="per step (default 10)")
    sweep.add_argument("--recover-secs", type=int, help="give up waiting for an answer after a step (default 900)")
    args = parser.parse_args()
    for tool in [] if args.template else ["cargo", "psql", "pgbench", "oha", "wrk"]:
        if not shutil.which(tool):
            sys.exit(f"bench: `{tool}` not found (oha: cargo install oha)")
    if args.sweep:
        return sweep_main(args)
    plan = Plan(args.smoke)
    out = Path(args.out or ROOT / "docs" / "BENCHMARKS.md")
    if args.template:
        text = report({"notes": []}, plan, args, None)
    else:
        work = Path(tempfile.mkdtemp(prefix="myapi-bench-"))
        os.chmod(work, 0o755)
        cluster = start_postgres(args, work)
        try:
            build()
            R = measure(args, plan, work, cluster)
            text = report(R, plan, args, cluster)
        finally:
            cleanup(cluster, work)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
