"""`icefjord serve` attacked as BI users, analysts and an attacker would, over the
PostgreSQL wire: what a PostgreSQL user expects, checked with clients no one here
wrote (psycopg 3 in text and binary modes, psql, pgjdbc). Expected values come
from `icefjord sql` (the CLI path, not the server), from PostgreSQL's documented
behaviour, or are written out by hand.

Each test is named after what broke (or, for the guards at the end, after what
held and must keep holding)."""

import os
import re
import signal
import subprocess
import threading
import time
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from conftest import Lake
from serve import start

JDBC_JAR = Path("/usr/share/java/postgresql.jar")


@pytest.fixture(scope="module")
def demo_lake(icefjord_bin: Path, tmp_path_factory) -> Lake:
    lake = Lake(icefjord_bin, tmp_path_factory.mktemp("breaker") / "lake")
    out = lake.run("demo", "--events", "20000", "-o", "csv")
    assert out.returncode == 0, out.stderr
    add_types_table(lake)
    return lake


def add_types_table(lake: Lake) -> None:
    """`types.all_types`, written by PyIceberg (not by us): a timestamptz, a
    decimal(12,3) and a list column, as Iceberg tables from other engines have."""
    import datetime

    import pyarrow as pa

    catalog = lake.catalog()
    catalog.create_namespace("types")
    schema = pa.schema([
        pa.field("id", pa.int32(), nullable=False),
        pa.field("tstz", pa.timestamp("us", tz="UTC")),
        pa.field("dec", pa.decimal128(12, 3)),
        pa.field("lst", pa.list_(pa.int64())),
    ])
    rows = pa.Table.from_pylist([
        {"id": 1, "tstz": datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
         "dec": Decimal("-1.250"), "lst": [1, None]},
    ], schema=schema)
    table = catalog.create_table("types.all_types", schema=schema)
    table.append(rows)


@pytest.fixture(scope="module")
def server(demo_lake: Lake, tmp_path_factory):
    server = start(demo_lake.binary, demo_lake.path, tmp_path_factory.mktemp("breaker-logs"))
    yield server
    server.stop()


def cli_scalar(lake: Lake, sql: str) -> str:
    out = lake.run("sql", "-o", "csv", sql)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()[1]


def alive(server) -> bool:
    return server.proc.poll() is None


def rss_mib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) // 1024


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def psql(server, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PGCONNECT_TIMEOUT="10", PAGER="")
    return subprocess.run(
        ["psql", "-X", "-h", server.pg_host, "-p", str(server.pg_port), "-U", "icefjord",
         "-d", "icefjord", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )


# --- crashes and stalls ---------------------------------------------------------------


@pytest.mark.parametrize("sql,expected", [
    # 500 terms: `icefjord sql` answers 500 (its main thread has an 8 MiB stack);
    # the server's 2 MiB query-runtime threads overflow from about 180 terms.
    ("SELECT " + " + ".join(["1"] * 500) + " AS s", 500),
    # Nested CASE 30 deep / coalesce 25 deep overflow a tokio worker while planning.
    ("SELECT " + "CASE WHEN true THEN " * 30 + "1" + " END" * 30 + " AS s", 1),
    ("SELECT " + "coalesce(" * 25 + "1" + ")" * 25 + " AS s", 1),
], ids=["plus-chain-500", "nested-case-30", "nested-coalesce-25"])
def test_deep_expression_overflows_the_stack_and_kills_the_server(demo_lake, tmp_path,
                                                                   sql, expected):
    """One query from any client aborted the whole process ("thread 'icefjord-query'
    has overflowed its stack / fatal runtime error: stack overflow, aborting"):
    every other connection dropped. PostgreSQL answers these (or errors with
    `54001 stack depth limit exceeded`); it never goes down."""
    server = start(demo_lake.binary, demo_lake.path, tmp_path)
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            try:
                assert conn.execute(sql).fetchone()[0] == expected
            except psycopg.errors.ProgramLimitExceeded:
                pass  # 54001 is an acceptable answer; a crash is not
            except psycopg.OperationalError:
                pass  # asserted below
        time.sleep(0.5)
        assert alive(server), "the server died:\n" + server.logs()[-400:]
        with psycopg.connect(server.dsn(), autocommit=True) as other:
            assert other.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()


@pytest.mark.xfail(strict=True, reason='known gap: planning now runs on the query runtime under the time limit (SELECT 1 beside two 20-level planners: 44 s before, ~4 s now), but on 2 cores the planners still take every query thread')
def test_slow_planning_holds_up_other_connections_and_escapes_the_timeout(demo_lake, tmp_path):
    """README: "Plans run on a thread pool of their own, so a long query never holds
    up the connections" and `--query-timeout` bounds a query. Planning runs on the
    connection runtime (2 threads on 2 cores) and before the deadline starts:
    two clients whose statements take long to plan (nested replace(), whose
    planning time doubles per level) froze every other client, new connections
    included (a `SELECT 1` waited 44 s), and ran past a 2 s `--query-timeout`."""
    server = start(demo_lake.binary, demo_lake.path, tmp_path, "--query-timeout", "2")
    heavy_sql = "SELECT " + "replace(" * 19 + "'abc'" + ", 'a', 'b')" * 19 + " AS s"
    results = {}

    def heavy(i):
        started = time.monotonic()
        try:
            with psycopg.connect(server.dsn(), autocommit=True) as conn:
                conn.execute(heavy_sql).fetchall()
                results[i] = ("ok", time.monotonic() - started)
        except psycopg.Error as e:
            results[i] = (e.sqlstate, time.monotonic() - started)

    try:
        workers = [threading.Thread(target=heavy, args=(i,)) for i in range(2)]
        for w in workers:
            w.start()
        time.sleep(1.0)
        started = time.monotonic()
        with psycopg.connect(server.dsn(), autocommit=True, connect_timeout=120) as light:
            assert light.execute("SELECT 1").fetchone() == (1,)
        light_seconds = time.monotonic() - started
        for w in workers:
            w.join(timeout=300)
    finally:
        server.stop()
    assert light_seconds < 3, f"SELECT 1 on a new connection took {light_seconds:.1f}s"
    for outcome, seconds in results.values():
        assert outcome == "57014" and seconds < 8, results


def test_extended_protocol_streams_a_whole_result_in_flat_memory(demo_lake, tmp_path):
    """Execute with max_rows = 0 (what psycopg, pgjdbc in autocommit and Npgsql
    send) streams its rows as the simple protocol does. pgwire's own portal
    fetch collected every row into a Vec before the first DataRow: server
    memory grew with the result size, outside `--query-memory-mib` (measured:
    +600 MiB for 5 M rows, +0 MiB with the simple protocol)."""
    server = start(demo_lake.binary, demo_lake.path, tmp_path, "--query-memory-mib", "64")
    pid = server.proc.pid
    peak = [0]
    stop = [False]

    def monitor():
        while not stop[0]:
            peak[0] = max(peak[0], rss_mib(pid))
            time.sleep(0.05)

    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("SELECT 1").fetchone()
            base = rss_mib(pid)
            watcher = threading.Thread(target=monitor)
            watcher.start()
            count = 0
            with conn.cursor() as cur:
                for _ in cur.stream("SELECT value, md5(CAST(value AS VARCHAR)) AS h "
                                    "FROM generate_series(1, 4000000) AS t(value)"):
                    count += 1
            stop[0] = True
            watcher.join()
    finally:
        stop[0] = True
        server.stop()
    assert count == 4_000_000
    assert peak[0] - base < 200, f"server RSS grew by {peak[0] - base} MiB (64 MiB pool)"


def test_unfetched_cursors_cost_nothing_until_fetched(server):
    """PostgreSQL's DECLARE runs nothing until FETCH, and neither do we. When
    DECLARE started the plan at once, six unfetched cursors kept both cores busy
    and grew the server by ~1 GiB in a minute, each with its own 1 GiB pool, on
    one connection under `--max-connections`. A bad query still fails at
    DECLARE, and the first FETCH gets the rows."""
    pid = server.proc.pid
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        for i in range(6):
            conn.execute(
                f"DECLARE s{i} CURSOR FOR SELECT value, md5(CAST(value AS VARCHAR)) AS h "
                "FROM generate_series(1, 2000000) AS t(value) ORDER BY h")
        before = cpu_seconds(pid)
        time.sleep(8)
        used = cpu_seconds(pid) - before
        first = conn.execute("FETCH 2 FROM s0").fetchall()
        conn.execute("CLOSE ALL")
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("DECLARE bad CURSOR FOR SELECT * FROM raw.nope")
    assert used < 2, f"the server used {used:.1f} CPU seconds on cursors nobody fetched"
    assert len(first) == 2 and len(first[0][1]) == 32, first


# --- wrong results through parameters ---------------------------------------------------


def test_decimal_parameter_is_rounded_to_the_column_scale(server, demo_lake):
    """A NUMERIC parameter is rescaled (rounded) to the column's type before the
    comparison: `unit_price = 16.175` matched the 16.18 rows, and `store_id =
    3.5` matched store 3 (to_i32 truncates). PostgreSQL compares the values."""
    expected_price = cli_scalar(demo_lake, "SELECT count(*) FROM raw.retail_events "
                                           "WHERE unit_price = 16.175")
    expected_store = cli_scalar(demo_lake, "SELECT count(*) FROM raw.retail_events "
                                           "WHERE store_id = 3.5")
    assert expected_price == expected_store == "0"
    assert int(cli_scalar(demo_lake, "SELECT count(*) FROM raw.retail_events "
                                     "WHERE unit_price = 16.18")) > 0
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        got_price = conn.execute("SELECT count(*) FROM raw.retail_events WHERE unit_price = %s",
                                 (Decimal("16.175"),)).fetchone()[0]
        got_store = conn.execute("SELECT count(*) FROM raw.retail_events WHERE store_id = %s",
                                 (Decimal("3.5"),)).fetchone()[0]
    assert (str(got_price), str(got_store)) == (expected_price, expected_store)


@pytest.mark.parametrize("value", [100, 100.5], ids=["int", "float"])
def test_int_or_float_parameter_against_a_decimal_column_is_refused(server, demo_lake, value):
    """`WHERE unit_price > %s` with a Python int or float (pgjdbc's setInt /
    setDouble alike) failed with 22023 "Cannot coerce integer value to
    Decimal128(10, 2)"; PostgreSQL compares numeric with int and float8."""
    expected = cli_scalar(demo_lake, f"SELECT count(*) FROM raw.retail_events "
                                     f"WHERE unit_price > {value}")
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        got = conn.execute("SELECT count(*) FROM raw.retail_events WHERE unit_price > %s",
                           (value,)).fetchone()[0]
    assert str(got) == expected


def test_null_parameter_without_an_inferred_type_is_dropped(server, demo_lake):
    """The optional-filter idiom `(%s IS NULL OR category = %s)` with None failed
    with 42601 "No value found for placeholder with id $2": a NULL whose type the
    planner cannot infer is left out of the parameter list and the later ones
    shift. PostgreSQL reads NULL."""
    total = int(cli_scalar(demo_lake, "SELECT count(*) FROM raw.retail_events"))
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        got = conn.execute("SELECT count(*) FROM raw.retail_events "
                           "WHERE (%s::text IS NULL OR category = %s)", (None, None)).fetchone()
        assert got == (total,)
        assert conn.execute("SELECT %s::int AS x", (None,)).fetchone() == (None,)


@pytest.mark.parametrize("text", ['{"a": 1}', "{a, b}"])
def test_string_parameter_that_looks_like_an_array_is_rewritten(server, text):
    """An untyped text parameter starting with `{` and ending with `}` is turned
    into a list of strings: `SELECT %s::text` with JSON '{"a": 1}' came back as
    '["a": 1]' and with '{a, b}' as '[a, b]' (and `SELECT %s` as '{"\\"a\\": 1"}'
    and '{a,b}'). PostgreSQL returns the string it was given."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT %s::text AS x", (text,)).fetchone() == (text,)


@pytest.mark.parametrize("value", ["total", 5])
def test_selected_parameter_is_described_with_its_type(server, value):
    """`SELECT %s AS label` is described with the parameter's type, as
    PostgreSQL does (the type the client declared, text for an unknown
    literal). It was described as 705 (unknown) while Execute encoded the value
    by its real type: in binary mode psycopg got b'total' and b'\\x00\\x05'
    instead of 'total' and 5."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        for binary in (False, True):
            got = conn.cursor(binary=binary).execute("SELECT %s AS label", (value,)).fetchone()
            assert got == (value,) or got == (str(value),), (binary, got)


# --- wrong values on the wire ---------------------------------------------------------


def test_tinyint_is_int2_in_text_and_binary(server):
    """Int8 is described as int2 and must be sent as one: arrow-pg 0.14 sent one
    byte in binary, read as CAST(1 AS TINYINT) = 256, -128 = -32768, -1 = -256."""
    sql = ("SELECT CAST(1 AS TINYINT) AS a, CAST(-128 AS TINYINT) AS b, "
           "CAST(-1 AS TINYINT) AS c, CAST(127 AS TINYINT) AS d")
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        assert conn.cursor(binary=False).execute(sql).fetchone() == (1, -128, -1, 127)
        assert conn.cursor(binary=True).execute(sql).fetchone() == (1, -128, -1, 127)


def test_infinite_doubles_are_spelled_as_postgresql_does_and_pgjdbc_reads_them(server, tmp_path):
    """float8 text output is `Infinity` / `-Infinity` / `NaN` as PostgreSQL
    sends it. arrow-pg 0.14 sent `inf`, and pgjdbc's getDouble failed on it
    ("Bad value for type double : inf"), so DBeaver showed an error for the
    first five reads of a column holding an infinity."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        result = conn.pgconn.exec_(
            b"SELECT CAST('Infinity' AS DOUBLE) AS a, CAST('-Infinity' AS DOUBLE) AS b, "
            b"CAST('NaN' AS DOUBLE) AS c")
        assert [result.get_value(0, i) for i in range(3)] == [b"Infinity", b"-Infinity", b"NaN"]
    if not JDBC_JAR.exists():
        pytest.fail(f"{JDBC_JAR} is missing: apt-get install libpostgresql-jdbc-java")
    source = tmp_path / "InfCheck.java"
    source.write_text("""
import java.sql.*;
public class InfCheck { public static void main(String[] a) throws Exception {
  try (Connection c = DriverManager.getConnection(a[0], "icefjord", "");
       Statement s = c.createStatement();
       ResultSet rs = s.executeQuery("SELECT CAST('Infinity' AS DOUBLE) AS x")) {
    rs.next(); System.out.println("value=" + rs.getDouble(1)); } } }
""")
    subprocess.run(["javac", "-d", str(tmp_path), str(source)], check=True, capture_output=True)
    url = f"jdbc:postgresql://{server.pg_host}:{server.pg_port}/icefjord?sslmode=disable"
    out = subprocess.run(["java", "-cp", f"{tmp_path}:{JDBC_JAR}", "InfCheck", url],
                         capture_output=True, text=True, timeout=120)
    assert "value=Infinity" in out.stdout, out.stdout + out.stderr


def test_null_struct_fields_are_empty_in_text_mode(server):
    """A struct's NULL fields are empty in text mode, as PostgreSQL's record
    output is `(,)` (arrow-pg 0.14 sent `("","")`, empty strings); binary mode
    gives (None, None). The metadata tables' `partition` struct is a struct too."""
    sql = "SELECT named_struct('x', CAST(NULL AS INT), 'y', CAST(NULL AS VARCHAR)) AS s"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        assert conn.pgconn.exec_(sql.encode()).get_value(0, 0) == b"(,)"
        assert conn.cursor(binary=True).execute(sql).fetchone()[0] == (None, None)


def test_wide_decimals_are_sent_whole(server, demo_lake):
    """DECIMAL(38, s) values beyond rust_decimal's 96-bit mantissa or 28-digit
    scale are sent whole in both formats, as `icefjord sql` prints them
    (arrow-pg 0.14 failed the whole query with 22003 "Numeric value conversion
    failed" or "Scale 30 exceeds maximum precision for numeric type")."""
    sql = ("SELECT CAST('1234567890123456789012345678901234567.8' AS DECIMAL(38,1)) AS a, "
           "CAST('-0.000000000000000000000000000001' AS DECIMAL(38,30)) AS b")
    expected = [Decimal(v) for v in cli_scalar(demo_lake, sql).split(",")]
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        for binary in (False, True):
            got = conn.cursor(binary=binary).execute(sql).fetchone()
            assert list(got) == expected, binary


# --- sessions, transactions, cursors ----------------------------------------------------


def test_psycopg_rollback_after_prepared_statements_fails(server):
    """psycopg prepares a query after 5 runs and, on ROLLBACK, sends `DEALLOCATE
    ALL`; it is refused as a write (25006), so `conn.rollback()` raises
    ReadOnlySqlTransaction (and so does leaving `with psycopg.connect()` on an
    exception, or a pool resetting the connection). DEALLOCATE is allowed in
    PostgreSQL's read-only transactions."""
    with psycopg.connect(server.dsn()) as conn:
        for i in range(6):
            conn.execute("SELECT count(*) FROM raw.retail_events WHERE store_id = %s",
                         (i,)).fetchone()
        conn.rollback()
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("DEALLOCATE ALL")


def test_savepoints_are_refused_as_writes(server):
    """psycopg's nested `conn.transaction()` blocks, pgjdbc's setSavepoint (and
    its autosave), Rails and Django use SAVEPOINT / RELEASE / ROLLBACK TO; all
    were refused with 25006. PostgreSQL allows them in read-only transactions.
    (`ROLLBACK TO SAVEPOINT s` was also answered as a whole ROLLBACK.)"""
    with psycopg.connect(server.dsn()) as conn:
        with conn.transaction():
            with conn.transaction():
                assert conn.execute("SELECT 1").fetchone() == (1,)
            with pytest.raises(psycopg.errors.UndefinedTable):
                with conn.transaction():
                    conn.execute("SELECT * FROM raw.no_such_table")
            assert conn.execute("SELECT 2").fetchone() == (2,)


@pytest.mark.parametrize("statement", [
    "SET timezone = 'Europe/Oslo'",
    "SET TimeZone TO 'Europe/Oslo'",
])
def test_set_timezone_spelling_is_silently_ignored(server, statement):
    """Only `SET TIME ZONE x` is honoured; `SET timezone = x` and `SET TimeZone TO
    x` (PostgreSQL's usual spellings) answer SET and change nothing: no
    ParameterStatus, SHOW TIME ZONE still UTC, timestamptz still in UTC."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(statement)
        assert conn.info.parameter_status("TimeZone") == "Europe/Oslo"
        assert conn.execute("SHOW TIME ZONE").fetchone()[0] == "Europe/Oslo"
        got = conn.execute("SELECT CAST('2024-01-01 12:00:00+00:00' AS TIMESTAMPTZ) "
                           "AS t").fetchone()[0]
        assert got.utcoffset().total_seconds() == 3600, got


def test_invalid_time_zone_is_accepted_and_breaks_later_queries(server):
    """`SET TIME ZONE 'Bogus/Zone'` answers SET; every later query with a
    timestamptz literal then fails with XX000 "Invalid timezone". PostgreSQL
    refuses the SET with 22023."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SET TIME ZONE 'Bogus/Zone'")


@pytest.mark.parametrize("variable,check", [
    ("server_version", lambda v: v.startswith("16")),
    ("server_version_num", lambda v: v.startswith("16")),
    ("TimeZone", lambda v: v in ("UTC", "Etc/UTC")),
    ("standard_conforming_strings", lambda v: v == "on"),
    ("client_encoding", lambda v: v == "UTF8"),
    ("transaction_read_only", lambda v: v == "on"),
    ("default_transaction_read_only", lambda v: v == "on"),
    ("integer_datetimes", lambda v: v == "on"),
])
def test_show_answers_empty_or_datafusion_for_postgresql_settings(server, variable, check):
    """SHOW of common settings answered a column `unsupported_show_statement`
    with an empty value, and `SHOW server_version` said "datafusion 53.1.0 on
    datafusion-postgres 0.17.0" while version() and the startup ParameterStatus
    say PostgreSQL 16. Tools that read them (version checks, SQLAlchemy's
    standard_conforming_strings) get nothing or a non-PostgreSQL version."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        value = conn.execute(f"SHOW {variable}").fetchone()[0]
    assert check(value), (variable, value)


def test_multi_statement_query_sends_the_results_before_an_error(server):
    """In one simple query `SELECT 1; SELECT * FROM raw.nope; SELECT 2`,
    PostgreSQL returns the first result, then the error, and does not run the
    third. The server used to return only the error (psql printed nothing for
    the first result)."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        pg = conn.pgconn
        pg.send_query(b"SELECT 1 AS a; SELECT * FROM raw.nope; SELECT 2 AS b")
        results = []
        while True:
            result = pg.get_result()
            if result is None:
                break
            results.append(result)
    statuses = [r.status for r in results]
    assert statuses[0] == psycopg.pq.ExecStatus.TUPLES_OK, statuses
    assert results[0].get_value(0, 0) == b"1"
    assert statuses[1:] == [psycopg.pq.ExecStatus.FATAL_ERROR], statuses
    assert "raw.nope" in results[1].error_message.decode(), results[1].error_message


def test_a_failed_cursor_then_reports_end_of_data(server):
    """After a FETCH fails (division by zero on row 3), the next FETCH from the
    same cursor answered `FETCH 0` with no rows, as if the result had ended: a
    client that retries or logs and continues silently loses the rest. In
    PostgreSQL the failed cursor cannot be read again (25P02 / 34000)."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("DECLARE c CURSOR FOR SELECT CAST(value AS INT) / (value - 3) "
                     "FROM generate_series(1, 10) AS t(value)")
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("FETCH ALL FROM c").fetchall()
        with pytest.raises(psycopg.Error):
            conn.execute("FETCH ALL FROM c").fetchall()


# --- catalog emulation ---------------------------------------------------------------------


@pytest.mark.xfail(strict=True, reason="known gap: psql's \\d+ / \\df / \\du need functions the catalog emulation lacks (array, pg_size_pretty, obj_description, …)")
@pytest.mark.parametrize("command", [r"\d+ raw.retail_events", r"\dt+ raw.*", r"\df",
                                     r"\dn+", r"\du"])
def test_psql_meta_commands_fail(server, command):
    """psql's `\\d+` (array()), `\\dt+` (pg_size_pretty), `\\df`
    (pg_function_is_visible), `\\dn+` (obj_description) and `\\du` (array()) fail
    with "Invalid function"."""
    out = psql(server, "-c", command)
    assert out.returncode == 0 and "ERROR" not in out.stderr, out.stderr


@pytest.mark.xfail(strict=True, reason='known gap: information_schema shows Arrow type names; pg_attribute maps some types to text')
def test_catalog_types_differ_from_the_wire_types(server):
    """information_schema.columns.data_type holds Arrow type names ("Int32",
    "Utf8View", "Timestamp(µs, \\"+00:00\\")") instead of PostgreSQL's, and
    pg_attribute says `text` (25) for a timestamptz column that the wire sends as
    1184, and for list columns sent as int8[] (1016). pgjdbc's getColumns, and so
    DBeaver, reports a timestamptz column as VARCHAR."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        wire = {d.name: d.type_code for d in conn.execute(
            "SELECT id, tstz, dec, lst FROM types.all_types").description}
        attributes = dict(conn.execute(
            "SELECT a.attname, a.atttypid FROM pg_catalog.pg_attribute a "
            "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'types' AND c.relname = 'all_types' AND a.attnum > 0").fetchall())
        data_types = dict(conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'raw' AND table_name = 'retail_events'").fetchall())
    assert {k: attributes[k] for k in wire} == wire
    assert data_types["store_id"] == "integer", data_types
    assert data_types["category"] in ("text", "character varying"), data_types
    assert data_types["event_time"] == "timestamp without time zone", data_types
    assert data_types["unit_price"] == "numeric", data_types


@pytest.mark.xfail(strict=True, reason='known gap: pgjdbc getPrimaryKeys/getFunctions/… need catalog functions the emulation lacks')
def test_pgjdbc_metadata_calls_dbeaver_makes(server, tmp_path):
    """DBeaver opens a table with getPrimaryKeys / getIndexInfo (fail:
    `_pg_expandarray`), its ER and references tabs call getImportedKeys (fails:
    "Unable to determine a value for MaxIndexKeys"), the functions folder
    getFunctions (fails: pg_get_function_result), permissions getTablePrivileges
    (fails: no c.relacl). Each must answer (an empty result is fine)."""
    if not JDBC_JAR.exists():
        pytest.fail(f"{JDBC_JAR} is missing: apt-get install libpostgresql-jdbc-java")
    source = tmp_path / "MetaCheck.java"
    source.write_text("""
import java.sql.*;
public class MetaCheck {
  interface Call { ResultSet run(DatabaseMetaData md) throws SQLException; }
  static void check(DatabaseMetaData md, String name, Call call) {
    try (ResultSet rs = call.run(md)) { int n = 0; while (rs.next()) n++; System.out.println(name + "=ok:" + n); }
    catch (SQLException e) { System.out.println(name + "=error:" + e.getMessage().replace('\\n', ' ')); } }
  public static void main(String[] a) throws Exception {
    try (Connection c = DriverManager.getConnection(a[0], "icefjord", "")) {
      DatabaseMetaData md = c.getMetaData();
      check(md, "getPrimaryKeys", m -> m.getPrimaryKeys(null, "raw", "retail_events"));
      check(md, "getIndexInfo", m -> m.getIndexInfo(null, "raw", "retail_events", false, true));
      check(md, "getImportedKeys", m -> m.getImportedKeys(null, "raw", "retail_events"));
      check(md, "getFunctions", m -> m.getFunctions(null, null, "%"));
      check(md, "getTablePrivileges", m -> m.getTablePrivileges(null, "raw", "%"));
      check(md, "getTypeInfo", m -> m.getTypeInfo());
      check(md, "getSchemas", m -> m.getSchemas());
    } } }
""")
    subprocess.run(["javac", "-d", str(tmp_path), str(source)], check=True, capture_output=True)
    url = f"jdbc:postgresql://{server.pg_host}:{server.pg_port}/icefjord?sslmode=disable"
    out = subprocess.run(["java", "-cp", f"{tmp_path}:{JDBC_JAR}", "MetaCheck", url],
                         capture_output=True, text=True, timeout=120)
    lines = out.stdout.splitlines()
    failed = [l for l in lines if "=error:" in l]
    assert len(lines) == 7 and not failed, out.stdout + out.stderr


# --- start-up, authentication, shutdown --------------------------------------------------


def test_sigterm_right_after_the_ready_line_kills_without_grace(demo_lake):
    """The ready line `{"pg": …}` is printed before the SIGTERM handler is
    installed: a SIGTERM soon after it (a supervisor's quick restart, a test
    fixture) killed the process by the signal's default action (exit -15, no
    "shutting down", no grace) in 10 of 25 tries by hand and 10 of 10 under
    pytest. It must always exit 0."""
    codes = []
    for _ in range(10):
        proc = subprocess.Popen(
            [str(demo_lake.binary), "--lake", str(demo_lake.path), "serve",
             "--pg-addr", "127.0.0.1:0", "--http-addr", "off", "--rest-addr", "off"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        codes.append(proc.wait(timeout=60))
    assert codes == [0] * 10, codes


@pytest.mark.xfail(strict=True, reason="known gap: pgwire's SASL handler reports an empty user name")
def test_scram_failure_does_not_name_the_user(demo_lake, tmp_path):
    """With SCRAM a wrong password answers `Password authentication failed for
    user ""` (empty name; md5 names the user). PostgreSQL: `password
    authentication failed for user "bi"`."""
    server = start(demo_lake.binary, demo_lake.path, tmp_path,
                   env={"ICEFJORD_PG_USER": "bi", "ICEFJORD_PG_PASSWORD": "s3cret pw"})
    try:
        with pytest.raises(psycopg.OperationalError) as caught:
            psycopg.connect(server.dsn(user="bi", password="wrong"))
        assert 'for user "bi"' in str(caught.value), str(caught.value)
    finally:
        server.stop()


# --- guards: checked, held, must keep holding ----------------------------------------------


@pytest.mark.parametrize("sql", [
    "insert into raw.retail_events (store_id) values (1)",
    "/* hi */ DELETE FROM raw.retail_events",
    "WITH x AS (DELETE FROM raw.retail_events RETURNING *) SELECT count(*) FROM x",
    "SELECT 1 INTO evil_t",
    "CREATE VIEW raw.evil AS SELECT 1",
    "COPY (SELECT 1) TO STDOUT",
    "PREPARE p AS INSERT INTO raw.retail_events (store_id) VALUES (1)",
    "EXPLAIN ANALYZE INSERT INTO raw.retail_events (store_id) VALUES (1)",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "ATTACH DATABASE '/tmp/x.db' AS x",
])
def test_read_only_escapes_are_refused(server, demo_lake, sql):
    before = cli_scalar(demo_lake, "SELECT count(*) FROM raw.retail_events")
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.Error):
            conn.execute(sql).fetchall()
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert cli_scalar(demo_lake, "SELECT count(*) FROM raw.retail_events") == before


def test_set_datafusion_options_do_not_reach_other_connections(server):
    with psycopg.connect(server.dsn(), autocommit=True) as one:
        one.execute("SET datafusion.execution.batch_size = 1")
        one.execute("SET datafusion.catalog.default_schema = 'raw'")
        with psycopg.connect(server.dsn(), autocommit=True) as two:
            settings = dict(two.execute(
                "SELECT name, value FROM information_schema.df_settings WHERE name IN "
                "('datafusion.execution.batch_size', 'datafusion.catalog.default_schema')"))
    assert settings == {"datafusion.execution.batch_size": "8192",
                        "datafusion.catalog.default_schema": "public"}


def test_cancel_variants_leave_the_connection_usable(server):
    slow = "SELECT count(*) FROM generate_series(1, 600000000) AS t(v) WHERE v % 7 = 0"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.cancel_safe()  # nothing running
        assert conn.execute("SELECT 1").fetchone() == (1,)
        timer = threading.Timer(1.0, conn.cancel_safe)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute(slow).fetchone()
        assert time.monotonic() - started < 10
        conn.execute("SET statement_timeout = 500")
        with pytest.raises(psycopg.errors.QueryCanceled) as caught:
            conn.execute(slow).fetchone()
        assert "statement timeout" in str(caught.value)
        assert conn.execute("SELECT 2").fetchone() == (2,)


@pytest.mark.parametrize("method", ["scram-sha-256", "md5"])
def test_password_never_reaches_trace_logs(demo_lake, tmp_path, method):
    import hashlib

    password = "Sup3r$ecret-PW"
    server = start(demo_lake.binary, demo_lake.path, tmp_path, "--password-method", method,
                   env={"ICEFJORD_PG_USER": "bi", "ICEFJORD_PG_PASSWORD": password,
                        "ICEFJORD_LOG": "trace"})
    try:
        with psycopg.connect(server.dsn(user="bi", password=password)) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.dsn(user="bi", password=password + "x"))
    finally:
        server.stop()
    logs = server.logs()
    assert len(logs) > 1000  # trace logging was on
    assert password not in logs
    assert hashlib.md5((password + "bi").encode()).hexdigest() not in logs
