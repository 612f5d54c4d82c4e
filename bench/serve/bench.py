"""Serving over the PostgreSQL wire (issue 13): `icefjord serve` measured side by
side with PostgreSQL 15 and DuckDB, in one run, on the same rows.

1. Lakes, in a scratch directory (a tmpfs when there is one):
   - the streaming lake: `icefjord generate --kind retail --events R --seed S`
     (R = --rows, 1 M by default): raw.retail_events holds R rows;
   - the demo lake: `icefjord demo --events D` (D = --demo-events, the demo's
     default 200 000), raw.* plus the shipped pipelines' unified.* views.
2. PostgreSQL 15 (Debian's, /usr/lib/postgresql/15/bin): `initdb` into the
   scratch directory (as the `postgres` user when we are root, trust auth), then
   `postgres` on a free loopback port with its socket in scratch, fsync off,
   everything else as initdb writes it (shared_buffers 128 MB). raw.retail_events
   is created with the types of ours (information_schema.columns, mapped by
   PG_TYPES), filled by `COPY` from `icefjord sql -o csv 'SELECT * FROM
   raw.retail_events'`, then `VACUUM ANALYZE`.
3. The same rows on all three: row count and the sums of quantity, unit_price
   and _kafka_offset from icefjord (over the wire), PostgreSQL and DuckDB (over
   the table's current data files, listed with PyIceberg) must be equal, and
   every streaming run checks its row count and quantity sum against them.
4. Streaming: `SELECT * FROM raw.retail_events` to psycopg 3, the same client code
   for both servers: a named (server-side) cursor, itersize 10 000, every row
   iterated in Python (counted, quantity summed); text mode, then binary mode.
   Per run: wall from execute to the last row, rows/s, client CPU-s
   (getrusage), server CPU-s and server peak RSS. icefjord: utime + stime of the
   serve process from /proc/<pid>/stat around the connection, VmHWM after
   resetting it (/proc/<pid>/clear_refs). PostgreSQL: the postmaster's utime +
   stime + cutime + cstime plus every live child's utime + stime, read before
   connecting and after the connection is closed and its backend reaped (so the
   backend's CPU has moved into cutime); peak RSS is the backend's VmHWM (shared
   buffers it touched included). DuckDB: in-process `read_parquet` over the
   data files, `fetchmany(10 000)` to Python tuples, CPU from getrusage (all its
   threads), peak RSS the Python process's VmHWM, reset before the run. Runs are
   interleaved across engines, --repeat times; the median-wall run stands for
   each, every run is kept.
5. Dashboard load: `icefjord serve --query-memory-mib M` (256) on the demo lake
   (results reused, the default; then again with `--result-cache-mib 0`);
   --clients (32) client processes (multiprocessing, spawn: threads would
   measure the GIL), one connection each (autocommit), each runs the five
   DASHBOARD queries once to warm up, waits for the others, then loops them
   (starting at a different one each) for --seconds (60), timing every query
   (execute + fetchall). Reported: p50/p90/p99 latency overall and per query,
   queries/s, errors, the server's CPU-s and peak RSS over the phase, the
   clients' own CPU-s (they share the machine's cores with the server).
6. Over the limit: the same, plus one more client that runs GREEDY_SQL (a
   many-to-many self-join of raw.retail_events, sorted: far over M MiB) back to
   back for the whole phase. Every attempt must fail with SQLSTATE 53200; the
   dashboard clients' latency is reported next to phase 5's.

Results: bench/out/serve.json and the "Serve" section of bench/RESULTS.md,
regenerated from the JSON (`--report-only`). Run through bench/serve/run.
"""

import argparse
import importlib.util
import json
import math
import multiprocessing
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import (  # noqa: E402
    ROOT, commit, default_binary, default_scratch, has_flag, load_average, machine, replace_section)

MIB = 2**20
RESULTS = ROOT / "bench" / "RESULTS.md"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
TABLE = "raw.retail_events"
STREAM_SQL = f"SELECT * FROM {TABLE}"
ITERSIZE = 10_000
# The sums every engine must agree on (with the row count).
CHECK_SQL = f"SELECT count(*), sum(quantity), sum(unit_price), sum(_kafka_offset) FROM {TABLE}"
CHECK_NAMES = ("rows", "sum_quantity", "sum_unit_price", "sum_kafka_offset")

# Our column types (DataFusion's, as information_schema shows them) in PostgreSQL.
PG_TYPES = {"Int16": "smallint", "Int32": "integer", "Int64": "bigint", "Float32": "real",
            "Float64": "double precision", "Boolean": "boolean", "Utf8": "text",
            "Utf8View": "text", "LargeUtf8": "text", "Date32": "date"}

# The five views the users' Power BI reads (seed 004: retail_events_unified,
# sales_by_category, sales_by_store, hourly_sales_trend, product_performance), each
# as a dashboard tile queries it: the latest events, the small views whole, the
# top products.
DASHBOARD = (
    ("recent events", "SELECT * FROM unified.retail_events ORDER BY event_time DESC LIMIT 100"),
    ("sales by category", "SELECT * FROM unified.sales_by_category ORDER BY net_revenue DESC"),
    ("sales by store", "SELECT * FROM unified.sales_by_store ORDER BY store_id"),
    ("hourly trend", "SELECT * FROM unified.hourly_sales_trend ORDER BY hour"),
    ("top products", "SELECT * FROM unified.product_performance ORDER BY revenue_rank LIMIT 10"),
)
# An analyst's accidental many-to-many join, sorted: every event paired with every
# other event of its store and product (~ rows² / 500 pairs), far over the pool.
GREEDY_SQL = ("SELECT a._kafka_offset AS a_offset, b._kafka_offset AS b_offset "
              "FROM raw.retail_events a JOIN raw.retail_events b "
              "ON a.store_id = b.store_id AND a.product_id = b.product_id ORDER BY 1, 2")
OVER_MEMORY = "53200"
TARGET_P50_MS = 50
# "The 32 clients keep their latency": p50 and p99 within 25 % of the phase without
# the over-the-limit query (our reading of the issue, which gives no number).
KEPT_LATENCY = 1.25


# ---------------------------------------------------------------- processes

def clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def stat_fields(pid: int) -> list:
    """The fields of /proc/<pid>/stat after the command name (field 3 onwards)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()


def cpu_s(pid: int, reaped_children: bool = False) -> float:
    """utime + stime of a process (plus cutime + cstime: its reaped children)."""
    f = stat_fields(pid)
    ticks = int(f[11]) + int(f[12]) + ((int(f[13]) + int(f[14])) if reaped_children else 0)
    return ticks / clock_ticks()


def children(pid: int) -> list:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(stat_fields(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, ValueError):
                continue
    return found


def status_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024 / MIB
    return float("nan")


def peak_rss_mib(pid: int) -> float:
    return status_mib(pid, "VmHWM")


def reset_peak_rss(pid: int):
    """Start a process's VmHWM again from its current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def machine_busy_s() -> float:
    """CPU-s the whole machine has been busy (all cores, /proc/stat), to tell how
    much of a phase went to processes that are not the benchmark's."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    return (user + nice + system + irq + softirq + steal) / clock_ticks()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(dsn: dict, **kwargs):
    import psycopg

    return psycopg.connect(**dsn, **kwargs)


def stop(proc: subprocess.Popen, pid: int, log):
    """SIGTERM to the server's own process (PostgreSQL's postmaster is runuser's
    child), then wait for the process we started; killed after 30 s."""
    os.kill(pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


class Profile:
    """`perf record` (cpu-clock, call graphs) of one process while a block runs;
    `top()` gives the symbols with the most self time."""

    def __init__(self, pid: int, data: Path):
        self.pid, self.data = pid, data

    def __enter__(self):
        self.proc = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "499", "-g", "-p", str(self.pid),
                                      "-o", str(self.data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)  # perf attaches
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=60)

    def top(self, limit: int = 20) -> list:
        """[(percent of samples, symbol)], most first."""
        report = subprocess.run(["perf", "report", "-i", str(self.data), "--stdio", "--no-children",
                                 "--sort", "symbol", "-g", "none", "--percent-limit", "0.5"],
                                capture_output=True, text=True).stdout
        self.data.unlink(missing_ok=True)
        found = []
        for line in report.splitlines():
            pct, _, symbol = line.strip().partition("%")
            if line.startswith("#") or not symbol:
                continue
            name = symbol.strip().removeprefix("[.]").removeprefix("[k]").strip().split("  ")[0]
            found.append((float(pct), name[:160]))
        return found[:limit]


class Icefjord:
    """`icefjord serve` on a free loopback port (the fixture of
    tests/interop/serve.py, without HTTP): its address from the JSON line it prints."""

    name = "icefjord"

    def __init__(self, binary: str, lake: Path, log: Path, *args: str):
        self.log_path = log
        self.log = open(log, "w")
        self.proc = subprocess.Popen(
            [binary, "--lake", str(lake), "--log-format", "json", "serve", "--pg-addr", "127.0.0.1:0", "--http-addr", "off",
             *(["--rest-addr", "off"] if has_flag(binary, "serve", "--rest-addr") else []), *args],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"icefjord serve did not start: {log.read_text()[-2000:]}")
        host, port = json.loads(line)["pg"].rsplit(":", 1)
        self.pid = self.proc.pid
        self.dsn = {"host": host, "port": int(port), "user": "icefjord", "dbname": "icefjord"}

    def cpu_s(self) -> float:
        return cpu_s(self.pid)

    def backend(self, conn) -> int:
        """The process that runs this connection's queries."""
        return self.pid

    def log_offset(self) -> int:
        self.log.flush()
        return self.log_path.stat().st_size

    def queries(self, since: int) -> list:
        """The server's log line of each query (outcome, duration_ms, statement…)
        written since a log_offset()."""
        with open(self.log_path) as f:
            f.seek(since)
            lines = [json.loads(line) for line in f if line.startswith("{")]
        return [line["fields"] for line in lines if line.get("target") == "icefjord::query"]

    def settle(self, backend: int):
        pass

    def stop(self):
        stop(self.proc, self.pid, self.log)


def as_postgres(args: list) -> list:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` user
    (tests/harness/src/postgres.rs does the same)."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class Postgres:
    """A throwaway PostgreSQL 15: initdb into `home`, started on a free loopback
    port with its socket in `home`, trust authentication, fsync off."""

    name = "postgresql"

    def __init__(self, home: Path):
        home.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(home, "postgres", "postgres")
        data = home / "data"
        subprocess.run(as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "icefjord",
                                    "--auth=trust", "--encoding=UTF8", "--no-sync"]),
                       check=True, capture_output=True)
        port = free_port()
        self.log = open(home / "postgres.log", "w")
        self.proc = subprocess.Popen(
            as_postgres([str(PG_BIN / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
                         "-k", str(home), "-c", "fsync=off", "-c", "max_connections=100",
                         "-c", "dynamic_shared_memory_type=mmap"]),
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while subprocess.run([str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                sys.exit(f"PostgreSQL did not start: {(home / 'postgres.log').read_text()[-2000:]}")
            time.sleep(0.1)
        self.pid = int((data / "postmaster.pid").read_text().split()[0])
        self.dsn = {"host": "127.0.0.1", "port": port, "user": "icefjord", "dbname": "postgres"}
        self.version = subprocess.run([str(PG_BIN / "postgres"), "--version"],
                                      capture_output=True, text=True).stdout.strip()

    def cpu_s(self) -> float:
        """The postmaster, the backends it has reaped, and every live child."""
        total = cpu_s(self.pid, reaped_children=True)
        for child in children(self.pid):
            try:
                total += cpu_s(child)
            except FileNotFoundError:
                continue
        return total

    def backend(self, conn) -> int:
        return conn.execute("SELECT pg_backend_pid()").fetchone()[0]

    def settle(self, backend: int):
        """Wait until a closed connection's backend is reaped (its CPU then is in
        the postmaster's cutime + cstime)."""
        deadline = time.monotonic() + 10
        while Path(f"/proc/{backend}").exists() and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self):
        stop(self.proc, self.pid, self.log)


# ---------------------------------------------------------------- data

def icefjord_sql(binary: str, lake: Path, query: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([binary, "--lake", str(lake), "sql", "-o", "csv", query], check=True, **kwargs)


def pg_type(ours: str) -> str:
    if ours.startswith("Decimal128("):
        precision, scale = ours.removeprefix("Decimal128(").rstrip(")").split(",")
        return f"numeric({int(precision)}, {int(scale)})"
    if ours.startswith("Timestamp("):
        return "timestamptz" if "," in ours else "timestamp"
    if ours not in PG_TYPES:
        sys.exit(f"no PostgreSQL type for {ours!r}: add it to PG_TYPES")
    return PG_TYPES[ours]


def load_postgres(binary: str, lake: Path, pg: Postgres, scratch: Path) -> dict:
    """raw.retail_events in PostgreSQL with our column types and our rows."""
    import csv

    from psycopg import sql

    columns_csv = icefjord_sql(binary, lake, "SELECT column_name, data_type FROM information_schema.columns "
                               "WHERE table_schema = 'raw' AND table_name = 'retail_events' "
                               "ORDER BY ordinal_position", capture_output=True, text=True).stdout
    columns = [(name, pg_type(kind)) for name, kind in list(csv.reader(columns_csv.splitlines()))[1:]]
    rows_csv = scratch / "retail_events.csv"
    started = time.monotonic()
    with open(rows_csv, "wb") as f:
        icefjord_sql(binary, lake, STREAM_SQL, stdout=f)
    schema, table = TABLE.split(".")
    target = sql.Identifier(schema, table)
    with connect(pg.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE TABLE {} ({})").format(target, sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind)) for name, kind in columns)))
        with conn.cursor() as cur, open(rows_csv, "rb") as f:
            with cur.copy(sql.SQL("COPY {} FROM STDIN (FORMAT csv, HEADER true)").format(target)) as copy:
                while data := f.read(MIB):
                    copy.write(data)
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(target))
        size = conn.execute("SELECT pg_total_relation_size(%s)", [TABLE]).fetchone()[0]
    rows_csv.unlink()
    return {"columns": dict(columns), "load_s": time.monotonic() - started, "table_mib": size / MIB}


def steady_module():
    """bench/steady/bench.py, for listing a lake's raw data files with PyIceberg."""
    spec = importlib.util.spec_from_file_location("steady_bench", ROOT / "bench" / "steady" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def normal(values) -> list:
    """Numbers as plain decimals, so 1.50 == 1.5 across engines."""
    return [format(Decimal(str(v)).normalize(), "f") for v in values]


def check_same_rows(icefjord: Icefjord, pg: Postgres, files: list) -> dict:
    import duckdb

    found = {}
    for server in (icefjord, pg):
        with connect(server.dsn) as conn:
            found[server.name] = normal(conn.execute(CHECK_SQL).fetchone())
    con = duckdb.connect()
    found["duckdb"] = normal(con.execute(CHECK_SQL.replace(TABLE, "read_parquet($files)"),
                                         {"files": files}).fetchone())
    if len({tuple(v) for v in found.values()}) != 1:
        sys.exit(f"the engines do not hold the same rows: {found}")
    return dict(zip(CHECK_NAMES, found["duckdb"]))


# ---------------------------------------------------------------- streaming

def client_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def drain(rows, quantity: int, counted: list):
    """Iterate rows in Python: count them and sum the quantity column."""
    n = total = 0
    for row in rows:
        n += 1
        total += row[quantity]
    counted[0] += n
    counted[1] += total


def stream_server(server, binary: bool) -> dict:
    before = server.cpu_s()
    conn = connect(server.dsn)
    backend = server.backend(conn)
    reset_peak_rss(backend)
    idle = status_mib(backend, "VmRSS")
    cpu0, t0 = client_cpu_s(), time.perf_counter()
    cur = conn.cursor(name="stream", binary=binary)
    cur.itersize = ITERSIZE
    cur.execute(STREAM_SQL)
    counted = [0, 0]
    drain(cur, [d.name for d in cur.description].index("quantity"), counted)
    wall, client = time.perf_counter() - t0, client_cpu_s() - cpu0
    rss = peak_rss_mib(backend)
    cur.close()
    conn.close()
    server.settle(backend)
    return {"wall_s": wall, "rows": counted[0], "sum_quantity": counted[1],
            "server_cpu_s": server.cpu_s() - before, "client_cpu_s": client, "peak_rss_mib": rss,
            "rss_before_mib": idle}


def stream_duckdb(files: list) -> dict:
    import duckdb

    con = duckdb.connect()
    reset_peak_rss(os.getpid())
    idle = status_mib(os.getpid(), "VmRSS")
    cpu0, t0 = client_cpu_s(), time.perf_counter()
    cur = con.execute(STREAM_SQL.replace(TABLE, "read_parquet($files)"), {"files": files})
    quantity = [d[0] for d in cur.description].index("quantity")
    counted = [0, 0]
    while batch := cur.fetchmany(ITERSIZE):
        drain(batch, quantity, counted)
    wall, cpu = time.perf_counter() - t0, client_cpu_s() - cpu0
    rss = peak_rss_mib(os.getpid())
    con.close()
    # In process: the engine's CPU is the client's.
    return {"wall_s": wall, "rows": counted[0], "sum_quantity": counted[1], "server_cpu_s": None,
            "client_cpu_s": cpu, "peak_rss_mib": rss, "rss_before_mib": idle}


def streaming(args, icefjord: Icefjord, pg: Postgres, files: list, sums: dict) -> list:
    setups = [("icefjord", "text", lambda: stream_server(icefjord, False)),
              ("postgresql", "text", lambda: stream_server(pg, False)),
              ("duckdb", "in-process", lambda: stream_duckdb(files))]
    if not args.no_binary:
        setups += [("icefjord", "binary", lambda: stream_server(icefjord, True)),
                   ("postgresql", "binary", lambda: stream_server(pg, True))]
    runs = {(engine, mode): [] for engine, mode, _ in setups}
    for i in range(args.repeat):
        for engine, mode, run in setups:
            load = load_average()
            r = run()
            if (str(r["rows"]), str(r["sum_quantity"])) != (sums["rows"], sums["sum_quantity"]):
                sys.exit(f"{engine} {mode} streamed {r['rows']} rows, quantity {r['sum_quantity']}: "
                         f"expected {sums['rows']}, {sums['sum_quantity']}")
            r.update(rows_per_s=r["rows"] / r["wall_s"], load=load)
            runs[(engine, mode)].append(r)
            server = "—" if r["server_cpu_s"] is None else f"{r['server_cpu_s']:.2f}"
            print(f"stream {engine} {mode} run {i + 1}: {r['rows_per_s']:,.0f} rows/s, {r['wall_s']:.2f} s, "
                  f"server {server} CPU-s, client {r['client_cpu_s']:.2f} CPU-s, "
                  f"{r['peak_rss_mib']:.0f} MiB, load {load[0]}", file=sys.stderr)
    if args.profile:
        with Profile(icefjord.pid, scratch_of(args) / "stream.perf") as profile:
            stream_server(icefjord, False)
        args.profiles["streaming icefjord text"] = profile.top()
    found = []
    for (engine, mode), rs in runs.items():
        median = sorted(rs, key=lambda r: r["wall_s"])[len(rs) // 2]
        found.append({"engine": engine, "mode": mode, **median, "runs": rs})
    return found


# ---------------------------------------------------------------- dashboard

def percentile(sorted_values: list, p: float):
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(p * len(sorted_values)) - 1)]


def dashboard_client(index: int, dsn: dict, seconds: float, barrier, results):
    """One dashboard: loops the DASHBOARD queries for `seconds` on one connection,
    timing each; sends (index, [(query, started, latency_s, error)], CPU-s)."""
    import psycopg

    conn = psycopg.connect(**dsn, autocommit=True)
    for _, query in DASHBOARD:
        conn.execute(query).fetchall()
    barrier.wait(timeout=300)
    cpu0 = client_cpu_s()
    start = time.perf_counter()
    samples = []
    i = index % len(DASHBOARD)
    while (t := time.perf_counter()) - start < seconds:
        error = None
        try:
            conn.execute(DASHBOARD[i][1]).fetchall()
        except psycopg.Error as e:
            error = f"{e.sqlstate or type(e).__name__}: {str(e)[:200]}"
            if conn.broken:
                conn = psycopg.connect(**dsn, autocommit=True)
        samples.append((i, t - start, time.perf_counter() - t, error))
        i = (i + 1) % len(DASHBOARD)
    conn.close()
    results.put(("dashboard", index, samples, client_cpu_s() - cpu0))


def greedy_client(dsn: dict, seconds: float, query: str, barrier, results):
    """Runs `query` back to back for `seconds`; sends (…, [(started, s, sqlstate,
    message)], CPU-s)."""
    import psycopg

    conn = psycopg.connect(**dsn, autocommit=True)
    barrier.wait(timeout=300)
    cpu0 = client_cpu_s()
    start = time.perf_counter()
    samples = []
    while (t := time.perf_counter()) - start < seconds:
        state, message = "ok", ""
        try:
            for _ in conn.execute(query):
                pass
        except psycopg.Error as e:
            state, message = e.sqlstate or type(e).__name__, str(e)[:300]
            if conn.broken:
                conn = psycopg.connect(**dsn, autocommit=True)
        samples.append((t - start, time.perf_counter() - t, state, message))
    conn.close()
    results.put(("greedy", 0, samples, client_cpu_s() - cpu0))


def latency_summary(latencies_s: list) -> dict:
    ms = sorted(x * 1000 for x in latencies_s)
    return {"queries": len(ms), "p50_ms": percentile(ms, 0.50), "p90_ms": percentile(ms, 0.90),
            "p99_ms": percentile(ms, 0.99), "max_ms": ms[-1] if ms else None}


def one_client(server: Icefjord, runs: int) -> dict:
    """Each dashboard query `runs` times from one connection, nothing else running:
    its latency without queueing and the server CPU it costs (/proc delta)."""
    found = {}
    with connect(server.dsn, autocommit=True) as conn:
        for name, query in DASHBOARD:
            conn.execute(query).fetchall()
            before, latencies = server.cpu_s(), []
            for _ in range(runs):
                t = time.perf_counter()
                rows = len(conn.execute(query).fetchall())
                latencies.append(time.perf_counter() - t)
            found[name] = {**latency_summary(latencies), "rows": rows,
                           "server_cpu_ms": (server.cpu_s() - before) * 1000 / runs}
    print("one client: " + ", ".join(f"{name} {q['p50_ms']:.1f} ms / {q['server_cpu_ms']:.1f} CPU-ms"
                                      for name, q in found.items()), file=sys.stderr)
    return found


def dashboard_phase(args, server: Icefjord, greedy: bool) -> dict:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(args.clients + (1 if greedy else 0) + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=dashboard_client, args=(i, server.dsn, args.seconds, barrier, results))
             for i in range(args.clients)]
    if greedy:
        procs.append(ctx.Process(target=greedy_client,
                                 args=(server.dsn, args.seconds, args.greedy_sql, barrier, results)))
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=300)
    except threading.BrokenBarrierError:
        for p in procs:
            p.terminate()
        sys.exit("a dashboard client did not connect and warm up within 300 s")
    load = load_average()
    reset_peak_rss(server.pid)
    log_offset = server.log_offset()
    before, busy = server.cpu_s(), machine_busy_s()
    started = time.perf_counter()
    got = [results.get(timeout=args.seconds + 600) for _ in procs]
    wall = time.perf_counter() - started
    server_cpu, rss = server.cpu_s() - before, peak_rss_mib(server.pid)
    busy = machine_busy_s() - busy
    for p in procs:
        p.join()
    samples = [s for kind, _, ss, _ in got if kind == "dashboard" for s in ss]
    ok = [s for s in samples if s[3] is None]
    errors = {}
    for s in samples:
        if s[3] is not None:
            errors[s[3]] = errors.get(s[3], 0) + 1
    elapsed = max((s[1] + s[2] for s in samples), default=args.seconds)
    phase = {"clients": args.clients, "seconds": args.seconds, "elapsed_s": elapsed, "wall_s": wall,
             "load": load, **latency_summary([s[2] for s in ok]),
             "queries_per_s": len(ok) / elapsed, "errors": sum(errors.values()), "error_kinds": errors,
             "server_cpu_s": server_cpu, "server_cpu_share": server_cpu / elapsed, "peak_rss_mib": rss,
             "clients_cpu_s": sum(cpu for kind, _, _, cpu in got if kind == "dashboard"),
             "others_cpu_s": busy - server_cpu - sum(cpu for _, _, _, cpu in got),
             "by_query": {name: latency_summary([s[2] for s in ok if s[0] == i])
                          for i, (name, _) in enumerate(DASHBOARD)}}
    # The server's own duration of each dashboard query: the rest of a client's
    # latency is the wire, the client and waiting for a core.
    logged = server.queries(log_offset)
    statements = {sql: name for name, sql in DASHBOARD}
    phase["server_side"] = latency_summary([q["duration_ms"] / 1000 for q in logged
                                            if q.get("statement") in statements and q.get("outcome") == "ok"])
    phase["server_outcomes"] = {}
    for q in logged:
        kind = "dashboard" if q.get("statement") in statements else "other"
        key = f"{kind} {q.get('outcome')}"
        phase["server_outcomes"][key] = phase["server_outcomes"].get(key, 0) + 1
    if greedy:
        attempts = next(ss for kind, _, ss, _ in got if kind == "greedy")
        states = {}
        for _, _, state, _ in attempts:
            states[state] = states.get(state, 0) + 1
        phase["greedy"] = {"attempts": len(attempts), "sqlstates": states,
                           "all_over_memory": bool(attempts) and set(states) == {OVER_MEMORY},
                           "median_s": sorted(a[1] for a in attempts)[len(attempts) // 2]
                           if attempts else None,
                           "message": next((a[3].splitlines()[0] for a in attempts if a[2] == OVER_MEMORY), None),
                           "cpu_s_client": next(cpu for kind, _, _, cpu in got if kind == "greedy")}
    print(f"dashboard{' + over the limit' if greedy else ''}: p50 {phase['p50_ms']:.1f} ms, "
          f"p99 {phase['p99_ms']:.1f} ms, {phase['queries_per_s']:.0f} q/s, {phase['errors']} errors, "
          f"server {server_cpu:.1f} CPU-s, {rss:.0f} MiB, load {load[0]}"
          + (f"; greedy {phase['greedy']['sqlstates']}" if greedy else ""), file=sys.stderr)
    return phase


# ---------------------------------------------------------------- main

def targets(doc: dict) -> dict:
    found = {}
    by = {(s["engine"], s["mode"]): s for s in doc.get("streaming", [])}
    for mode in ("text", "binary"):
        ours, theirs = by.get(("icefjord", mode)), by.get(("postgresql", mode))
        if ours and theirs:
            ratio = ours["rows_per_s"] / theirs["rows_per_s"]
            found[f"streaming_{mode}"] = {"vs_postgresql": ratio, "met": ratio >= 1.0}
    if doc.get("dashboard"):
        d = doc["dashboard"]
        found["dashboard"] = {"p50_ms": d["p50_ms"], "limit_ms": TARGET_P50_MS, "errors": d["errors"],
                              "met": d["p50_ms"] <= TARGET_P50_MS and d["errors"] == 0}
    if doc.get("over_limit"):
        o, d = doc["over_limit"], doc["dashboard"]
        p50, p99 = o["p50_ms"] / d["p50_ms"], o["p99_ms"] / d["p99_ms"]
        found["over_limit"] = {"all_over_memory": o["greedy"]["all_over_memory"], "errors": o["errors"],
                               "p50_vs_alone": p50, "p99_vs_alone": p99, "kept_limit": KEPT_LATENCY,
                               "met": o["greedy"]["all_over_memory"] and o["errors"] == 0
                               and max(p50, p99) <= KEPT_LATENCY}
    return found


def scratch_of(args) -> Path:
    return Path(args.scratch) / "icefjord-bench-serve"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows streamed (raw.retail_events)")
    parser.add_argument("--demo-events", type=int, default=200_000, help="events of the dashboard's demo lake")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=3, help="streaming runs per engine and mode")
    parser.add_argument("--no-binary", action="store_true", help="stream in text mode only")
    parser.add_argument("--clients", type=int, default=32, help="dashboard client processes")
    parser.add_argument("--seconds", type=float, default=60, help="length of each dashboard phase")
    parser.add_argument("--single-runs", type=int, default=30,
                        help="runs of each dashboard query from one client alone, before the load")
    parser.add_argument("--query-memory-mib", type=int, default=256,
                        help="the dashboard server's --query-memory-mib (the over-the-limit query's pool)")
    parser.add_argument("--greedy-sql", default=GREEDY_SQL, help="the query over the memory pool")
    parser.add_argument("--profile", action="store_true",
                        help="perf record the server in one more streaming run and dashboard phase (not measured)")
    parser.add_argument("--parts", default="streaming,dashboard", help="streaming, dashboard or both")
    parser.add_argument("--binary", default=default_binary())
    parser.add_argument("--out", default=str(ROOT / "bench" / "out"))
    parser.add_argument("--scratch", default=default_scratch())
    parser.add_argument("--report-only", action="store_true",
                        help="regenerate the RESULTS section from the JSON, measure nothing")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "serve.json"
    if args.report_only:
        replace_section(RESULTS, "serve", section(json.loads(path.read_text())))
        return
    parts = set(args.parts.split(","))
    if not parts <= {"streaming", "dashboard"}:
        sys.exit(f"--parts: streaming, dashboard or both, not {args.parts!r}")

    import duckdb
    import psycopg

    scratch = scratch_of(args)
    args.profiles = {}
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    started = time.monotonic()
    load_before = load_average()
    doc = {"benchmark": "serve", "binary": args.binary,
           "version": subprocess.run([args.binary, "--version"], capture_output=True, text=True).stdout.strip(),
           "commit": commit(), "machine": machine(),
           "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "load_before": load_before, "rows": args.rows, "demo_events": args.demo_events, "seed": args.seed,
           "repeat": args.repeat, "itersize": ITERSIZE, "clients": args.clients, "seconds": args.seconds,
           "query_memory_mib": args.query_memory_mib, "dashboard_queries": dict(DASHBOARD),
           "greedy_sql": args.greedy_sql, "duckdb": duckdb.__version__, "psycopg": psycopg.__version__}
    servers = []
    try:
        if "streaming" in parts:
            lake = scratch / "stream-lake"
            subprocess.run([args.binary, "--lake", str(lake), "generate", "--kind", "retail",
                            "--events", str(args.rows), "--seed", str(args.seed)], check=True,
                           stdout=subprocess.DEVNULL)
            files = steady_module().raw_files(lake)
            pg = Postgres(scratch / "pg")
            servers.append(pg)
            doc["postgresql"] = {"version": pg.version, "settings": "initdb defaults, fsync=off",
                                 **load_postgres(args.binary, lake, pg, scratch)}
            icefjord = Icefjord(args.binary, lake, scratch / "serve-stream.log")
            servers.append(icefjord)
            doc["data_files"] = len(files)
            doc["checks"] = check_same_rows(icefjord, pg, files)
            doc["streaming"] = streaming(args, icefjord, pg, files, doc["checks"])
        if "dashboard" in parts:
            demo = scratch / "demo-lake"
            subprocess.run([args.binary, "--lake", str(demo), "demo", "--events", str(args.demo_events),
                            "--seed", str(args.seed), "-o", "csv"], check=True, capture_output=True)
            server = Icefjord(args.binary, demo, scratch / "serve-dashboard.log",
                              "--query-memory-mib", str(args.query_memory_mib))
            servers.append(server)
            doc["one_client"] = one_client(server, args.single_runs)
            doc["dashboard"] = dashboard_phase(args, server, greedy=False)
            doc["over_limit"] = dashboard_phase(args, server, greedy=True)
            # The same load with result reuse off: every query planned and run.
            server.stop()
            servers.remove(server)
            uncached = Icefjord(args.binary, demo, scratch / "serve-dashboard-uncached.log",
                                "--query-memory-mib", str(args.query_memory_mib), "--result-cache-mib", "0")
            servers.append(uncached)
            doc["one_client_uncached"] = one_client(uncached, args.single_runs)
            doc["dashboard_uncached"] = dashboard_phase(args, uncached, greedy=False)
            if args.profile:
                seconds, args.seconds = args.seconds, min(args.seconds, 20)
                with Profile(server.pid, scratch / "dashboard.perf") as profile:
                    dashboard_phase(args, server, greedy=False)
                args.seconds = seconds
                args.profiles["dashboard alone"] = profile.top()
        doc["profiles"] = args.profiles
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    doc["targets"] = targets(doc)
    doc["bench_s"] = time.monotonic() - started
    path.write_text(json.dumps(doc, indent=2))
    replace_section(RESULTS, "serve", section(doc))
    print(json.dumps(doc["targets"], indent=2))


# ---------------------------------------------------------------- report

def fmt(v, spec="{:,.0f}") -> str:
    return "—" if v is None else spec.format(v)


def section(doc: dict) -> str:
    lines = [
        "## Serve: PostgreSQL wire (issue 13)", "",
        "Generated by `bench/serve/run` from `bench/out/serve.json` (do not edit by hand). "
        "Method: the docstring of `bench/serve/bench.py`.", "",
        f"Binary `{doc['binary']}` ({doc['version']}), bench commit {doc['commit']}, measured "
        f"{doc['measured_at']} on {doc['machine']['cpus']} CPUs ({doc['machine']['platform']}); load average "
        f"{doc['load_before'][0]} before; the whole benchmark took {doc['bench_s'] / 60:.1f} min. "
        f"Clients: psycopg {doc['psycopg']}, DuckDB {doc['duckdb']}.", "",
    ]
    if doc.get("streaming"):
        pg = doc["postgresql"]
        checks = doc["checks"]
        lines += [
            f"### Streaming {int(checks['rows']):,} rows of raw.retail_events to Python", "",
            f"`SELECT * FROM raw.retail_events` ({doc['rows']:,} events from `generate --seed {doc['seed']}`, "
            f"{doc['data_files']} data files) through a psycopg named cursor (itersize {doc['itersize']:,}), "
            f"every row iterated in Python; {pg['version']} ({pg['settings']}) serving the same rows from a "
            f"table ({pg['table_mib']:.0f} MiB); DuckDB reading the same Parquet files in-process. "
            f"Same rows everywhere: count {int(checks['rows']):,}, sum(quantity) {checks['sum_quantity']}, "
            f"sum(unit_price) {checks['sum_unit_price']}, sum(_kafka_offset) {checks['sum_kafka_offset']} on "
            f"all three. Median-wall run of {doc['repeat']}.", "",
            "| engine | mode | rows/s | wall | server CPU-s | client CPU-s | server peak RSS (before the query) | load |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for s in doc["streaming"]:
            rss = (f"{s['peak_rss_mib']:.0f} MiB ({fmt(s.get('rss_before_mib'))} MiB)"
                   + (", Python + DuckDB" if s["engine"] == "duckdb" else ""))
            lines.append(f"| {s['engine']} | {s['mode']} | {s['rows_per_s']:,.0f} | {s['wall_s']:.2f} s | "
                         f"{fmt(s['server_cpu_s'], '{:.2f}')} | {s['client_cpu_s']:.2f} | {rss} | "
                         f"{s['load'][0]} |")
        lines += ["", "Server CPU-s: icefjord's serve process; PostgreSQL's postmaster and all its "
                  "processes (the backend reaped after the connection closed). Peak RSS: icefjord's "
                  "process, PostgreSQL's backend (shared buffers it touched included), DuckDB's host "
                  "Python process. DuckDB's CPU is all client-side (in-process).", ""]
    if doc.get("dashboard"):
        d, o = doc["dashboard"], doc["over_limit"]
        lines += [
            f"### Dashboard load: {d['clients']} clients × the five unified views, {d['seconds']:g} s", "",
            f"`icefjord demo --events {doc['demo_events']:,}` lake, `icefjord serve --query-memory-mib "
            f"{doc['query_memory_mib']}`; {d['clients']} client processes, one connection each, each looping "
            "these queries (latency = execute + fetchall):", "",
        ]
        lines += [f"- {name}: `{sql}`" for name, sql in doc["dashboard_queries"].items()]
        lines += [
            "", f"Over the limit: the same {o['clients']} clients plus one more running, back to back, "
            f"`{doc['greedy_sql']}`.", "",
            "| phase | queries | queries/s | p50 | p90 | p99 | max | errors | server CPU-s (cores) | "
            "server peak RSS | clients' CPU-s | other processes' CPU-s | load |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        phases = [("dashboard alone", d), ("+ over-the-limit query", o)]
        if doc.get("dashboard_uncached"):
            phases.append(("dashboard alone, result reuse off (`--result-cache-mib 0`)",
                           doc["dashboard_uncached"]))
        for name, p in phases:
            s = p["server_side"]
            lines.append(f"| {name} | {p['queries']:,} | {p['queries_per_s']:,.0f} | {p['p50_ms']:.1f} ms | "
                         f"{p['p90_ms']:.1f} ms | {p['p99_ms']:.1f} ms | {p['max_ms']:.0f} ms | {p['errors']} | "
                         f"{p['server_cpu_s']:.1f} ({p['server_cpu_share']:.2f}) | {p['peak_rss_mib']:.0f} MiB | "
                         f"{p['clients_cpu_s']:.1f} | {fmt(p.get('others_cpu_s'), '{:.1f}')} | {p['load'][0]} |")
            lines.append(f"| … the server's own duration (its log) | {s['queries']:,} | | "
                         f"{fmt(s['p50_ms'], '{:.0f}')} ms | {fmt(s['p90_ms'], '{:.0f}')} ms | "
                         f"{fmt(s['p99_ms'], '{:.0f}')} ms | {fmt(s['max_ms'], '{:.0f}')} ms | | | | | | |")
        lines += ["", "Results are reused while the tables they read are unchanged (the default, "
                  "`--result-cache-mib 64`): the dashboards' repeated queries are answered from memory "
                  "after their first run. The last row is the same load with every query planned and "
                  "run.", ""]
        single = doc.get("one_client", {})
        runs = next(iter(single.values()), {}).get("queries")
        lines += ["", f"Per query: rows returned, and with one client alone ({runs} runs each, before the load) "
                  "p50 latency and the server's CPU per query; then p50 / p99 (ms) under the load:", "",
                  f"| query | rows | one client: p50 | server CPU per query | {d['clients']} clients: p50 / p99 | "
                  "+ over-the-limit query: p50 / p99 |", "|---|---|---|---|---|---|"]
        for name in d["by_query"]:
            a, b, s = d["by_query"][name], o["by_query"][name], single.get(name, {})
            lines.append(f"| {name} | {fmt(s.get('rows'))} | {fmt(s.get('p50_ms'), '{:.1f} ms')} | "
                         f"{fmt(s.get('server_cpu_ms'), '{:.1f} ms')} | "
                         f"{fmt(a['p50_ms'], '{:.1f}')} / {fmt(a['p99_ms'], '{:.1f}')} | "
                         f"{fmt(b['p50_ms'], '{:.1f}')} / {fmt(b['p99_ms'], '{:.1f}')} |")
        g = o["greedy"]
        states = ", ".join(f"{state}: {n}" for state, n in g["sqlstates"].items())
        lines += ["", f"The over-the-limit query: {g['attempts']} attempts, SQLSTATE {states}; median "
                  f"{fmt(g['median_s'], '{:.2f}')} s each; message: `{g['message']}`.", ""]
    for name, top in doc.get("profiles", {}).items():
        lines += [f"Profile of the server, {name} (perf, cpu-clock, self time, one more unmeasured run):", "",
                  "| % | symbol |", "|---|---|"]
        lines += [f"| {pct:.1f} | `{symbol}` |" for pct, symbol in top]
        lines.append("")
    t = doc["targets"]
    lines += ["### Targets", ""]

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**not met**"
    for mode in ("text", "binary"):
        if f"streaming_{mode}" in t:
            s = t[f"streaming_{mode}"]
            lines.append(f"- Streaming ({mode}) ≥ PostgreSQL's rows/s: {s['vs_postgresql']:.2f}× "
                         f"PostgreSQL's, {verdict(s['met'])}.")
    if "dashboard" in t:
        s = t["dashboard"]
        lines.append(f"- Dashboard p50 ≤ {s['limit_ms']} ms with zero errors: {s['p50_ms']:.1f} ms, "
                     f"{s['errors']} errors, {verdict(s['met'])}.")
    if "over_limit" in t:
        s = t["over_limit"]
        lines.append(f"- Over the limit: every such query fails with {OVER_MEMORY} "
                     f"({'yes' if s['all_over_memory'] else 'no'}) while the dashboards keep their "
                     f"latency ({s['errors']} errors; p50 {s['p50_vs_alone']:.2f}×, p99 "
                     f"{s['p99_vs_alone']:.2f}× the phase without it; kept = both ≤ {s['kept_limit']:.2f}×): "
                     f"{verdict(s['met'])}.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
