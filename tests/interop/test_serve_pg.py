"""`icefjord serve` over the PostgreSQL wire protocol, checked by clients no one
here wrote: psql (Debian's), psycopg 3 (PyPI) in text and binary modes, and the
queries Npgsql (Power BI) and Grafana send. Expected values come from
`icefjord sql` (the CLI path, not the server) or are written out by hand."""

import os
import signal
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from conftest import Lake
from serve import cli_rows, start

PSQL = "psql"


@pytest.fixture(scope="module")
def server(demo_lake: Lake, tmp_path_factory):
    server = start(demo_lake.binary, demo_lake.path, tmp_path_factory.mktemp("serve-logs"))
    yield server
    server.stop()


def psql(server, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PGCONNECT_TIMEOUT="10", PAGER="")
    out = subprocess.run(
        [PSQL, "-X", "-v", "ON_ERROR_STOP=1", "-h", server.pg_host, "-p", str(server.pg_port),
         "-U", "icefjord", "-d", "icefjord", *args],
        capture_output=True, text=True, env=env, timeout=120, **kw,
    )
    if check:
        assert out.returncode == 0, f"psql {args}: {out.stdout}\n{out.stderr}"
    return out


# --- psql -------------------------------------------------------------------


def test_psql_lists_schemas_tables_and_describes_a_view(server):
    schemas = psql(server, "-c", r"\dn").stdout
    for namespace in ("raw", "historical", "unified"):
        assert f" {namespace} " in schemas or f" {namespace}\n" in schemas, schemas
    tables = psql(server, "-c", r"\dt raw.*").stdout
    assert "retail_events" in tables and "clickstream_events" in tables, tables
    described = psql(server, "-c", r"\d unified.sales_by_category").stdout
    for column in ("category", "sales_units", "sales_amount", "return_amount", "net_revenue"):
        assert column in described, described


def test_psql_query_equals_icefjord_sql(server, demo_lake):
    sql = ("SELECT category, sales_units, sales_amount, return_amount, net_revenue "
           "FROM unified.sales_by_category ORDER BY category")
    out = psql(server, "-A", "-F", ",", "-t", "-c", sql).stdout
    served = [line.split(",") for line in out.strip().splitlines()]
    expected = cli_rows(demo_lake, sql)
    assert len(expected) >= 3
    assert [[Decimal(v) if "." in v else v for v in row] for row in served] == \
        [[Decimal(v) if "." in v else v for v in row] for row in expected]


def test_psql_ctrl_c_cancels_a_long_query(server):
    env = dict(os.environ, PAGER="")
    long_query = ("SELECT count(*) FROM raw.retail_events a CROSS JOIN raw.retail_events b "
                  "WHERE a.quantity * b.quantity = -1")
    proc = subprocess.Popen(
        [PSQL, "-X", "-h", server.pg_host, "-p", str(server.pg_port), "-U", "icefjord",
         "-d", "icefjord", "-c", long_query],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    time.sleep(3)
    assert proc.poll() is None, "the query ended before it was canceled"
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)  # psql turns Ctrl-C into a cancel request
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - started < 15
    assert "canceling statement due to user request" in err, err
    # The connection pool goes on: the next query works.
    assert psql(server, "-A", "-t", "-c", "SELECT 1").stdout.strip() == "1"


# --- psycopg 3 --------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_psycopg_parameterised_query(server, demo_lake, binary):
    expected = cli_rows(
        demo_lake,
        "SELECT store_id, sum(quantity) FROM raw.retail_events "
        "WHERE category = 'Electronics' AND quantity >= 2 GROUP BY store_id ORDER BY store_id")
    with psycopg.connect(server.dsn()) as conn:
        with conn.cursor(binary=binary) as cur:
            cur.execute(
                "SELECT store_id, sum(quantity) AS units FROM raw.retail_events "
                "WHERE category = %s AND quantity >= %s GROUP BY store_id ORDER BY store_id",
                ("Electronics", 2),
            )
            rows = cur.fetchall()
            assert [c.name for c in cur.description] == ["store_id", "units"]
    assert len(rows) > 0
    assert [[str(a), str(b)] for a, b in rows] == expected


def test_psycopg_types_round_trip(server):
    with psycopg.connect(server.dsn()) as conn:
        for binary in (False, True):
            row = conn.execute(
                "SELECT CAST(1 AS INT) AS i, CAST(2 AS BIGINT) AS b, CAST(1.5 AS DOUBLE) AS d, "
                "CAST('12.34' AS DECIMAL(10,2)) AS n, 'x' AS s, TRUE AS t, "
                "CAST('2026-11-30' AS DATE) AS day, "
                "CAST('2026-11-30 10:11:12' AS TIMESTAMP) AS ts, NULL AS nothing",
                binary=binary,
            ).fetchone()
            import datetime
            assert row == (1, 2, 1.5, Decimal("12.34"), "x", True,
                           datetime.date(2026, 11, 30),
                           datetime.datetime(2026, 11, 30, 10, 11, 12), None), (binary, row)


def test_psycopg_server_side_cursor_streams_a_million_rows(server):
    total = 0
    count = 0
    with psycopg.connect(server.dsn()) as conn:
        with conn.cursor(name="big") as cur:
            cur.itersize = 20_000
            cur.execute("SELECT value FROM generate_series(1, 1000000) AS t(value)")
            for (value,) in cur:
                total += value
                count += 1
    assert count == 1_000_000
    assert total == 1_000_000 * 1_000_001 // 2


def test_server_side_cursor_with_parameters_matches_the_plain_query(server):
    """A named cursor's parameters bind as a plain query's do: a decimal keeps
    its precision (16.175 is not rounded to the column's 16.18) and a string
    that looks like an array stays a string."""
    sql = ("SELECT count(*) FROM generate_series(1, 100) AS t(v) "
           "WHERE CAST(v AS DECIMAL(10, 2)) / 4 >= %s AND %s <> ''")
    params = (Decimal("16.175"), "{a, b}")
    with psycopg.connect(server.dsn()) as conn:
        plain = conn.execute(sql, params).fetchone()
        with conn.cursor(name="c") as cur:
            cur.execute(sql, params)
            named = cur.fetchone()
    # v / 4 >= 16.175 holds for v = 65 (16.25) … 100: 36 rows; 16.18 would give the same,
    # so the boundary value is checked directly too.
    assert plain == named == (36,)
    with psycopg.connect(server.dsn()) as conn:
        with conn.cursor(name="d") as cur:
            cur.execute("SELECT CAST(%s AS DECIMAL(10, 3)) = 16.175", (Decimal("16.175"),))
            assert cur.fetchone() == (True,)


def test_named_cursors_close_with_their_transaction(server):
    """PostgreSQL closes a cursor not declared WITH HOLD at COMMIT or ROLLBACK,
    and psycopg relies on it: it sends no CLOSE for a named cursor after a
    commit, and reuses the name."""
    with psycopg.connect(server.dsn()) as conn:
        for _ in range(3):
            cur = conn.cursor(name="nc")
            cur.execute("SELECT value FROM generate_series(1, 100) AS t(value)")
            assert len(cur.fetchmany(10)) == 10
            conn.commit()
            cur.close()
        conn.execute("DECLARE kept CURSOR WITH HOLD FOR SELECT 1 AS one")
        conn.execute("DECLARE gone CURSOR FOR SELECT 2 AS two")
        conn.rollback()
        assert conn.execute("FETCH ALL FROM kept").fetchall() == [(1,)]
        with pytest.raises(psycopg.errors.InvalidCursorName):
            conn.execute("FETCH ALL FROM gone")


def test_prepared_statement_sees_new_commits(server, demo_lake):
    """A statement prepared before a commit reads the lake as it is at Execute."""
    with psycopg.connect(server.dsn()) as conn:
        query = "SELECT count(*) FROM raw.retail_events WHERE quantity >= %s"
        before = conn.execute(query, (0,), prepare=True).fetchone()[0]
        out = demo_lake.run("generate", "--events", str(before + 500))
        assert out.returncode == 0, out.stderr
        after = conn.execute(query, (0,), prepare=True).fetchone()[0]
    assert after == before + 500


# --- refusals -----------------------------------------------------------------


@pytest.mark.parametrize("sql", [
    "CREATE TABLE raw.evil (a INT)",
    "INSERT INTO raw.retail_events (event_id) VALUES ('x')",
    "DROP TABLE raw.retail_events",
    "COPY raw.retail_events TO '/tmp/stolen.csv'",
    "CREATE EXTERNAL TABLE passwd STORED AS CSV LOCATION '/etc/passwd'",
])
def test_writes_are_refused_with_sqlstate(server, sql):
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(sql)
        assert caught.value.sqlstate in ("25006", "42601"), (sql, caught.value.sqlstate,
                                                              str(caught.value))
        assert "read-only" in str(caught.value) or "syntax" in str(caught.value)
        # The connection still answers.
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert not Path("/tmp/stolen.csv").exists()


def test_missing_table_is_42P01_and_names_it(server):
    with psycopg.connect(server.dsn()) as conn:
        with pytest.raises(psycopg.errors.UndefinedTable) as caught:
            conn.execute("SELECT * FROM raw.no_such_table")
        assert "no_such_table" in str(caught.value)


def test_set_show_search_path_and_discard(server):
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("SET search_path = unified")
        assert conn.execute("SHOW search_path").fetchone()[0] == "unified"
        n = conn.execute("SELECT count(*) FROM sales_by_category").fetchone()[0]
        assert n >= 3
        conn.execute("DISCARD ALL")
        with pytest.raises(psycopg.Error):
            conn.execute("SELECT count(*) FROM sales_by_category")


def test_catalog_functions(server):
    with psycopg.connect(server.dsn()) as conn:
        version = conn.execute("SELECT version()").fetchone()[0]
        assert version.startswith("PostgreSQL 16"), version
        assert conn.execute("SELECT current_schema()").fetchone()[0] == "public"
        assert conn.execute(
            "SELECT has_table_privilege('raw.retail_events', 'SELECT')").fetchone()[0] is True
        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'unified'")}
        assert "sales_by_category" in tables
        kinds = {(n, r): k for n, r, k in conn.execute(
            "SELECT n.nspname, c.relname, c.relkind FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname IN ('raw', 'unified')").fetchall()}
        assert kinds.get(("raw", "retail_events")) == "r", kinds
        assert kinds.get(("unified", "sales_by_category")) == "v", kinds
        columns = [r[0] for r in conn.execute(
            "SELECT a.attname FROM pg_catalog.pg_attribute a "
            "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'unified' AND c.relname = 'sales_by_category' "
            "AND a.attnum > 0 ORDER BY a.attnum")]
        assert columns[:2] == ["category", "sales_units"], columns
        assert conn.execute("SELECT count(*) FROM pg_catalog.pg_database").fetchone()[0] >= 1
        assert conn.execute(
            "SELECT count(*) FROM pg_catalog.pg_settings").fetchone()[0] >= 1
        assert conn.execute(
            "SELECT typname FROM pg_catalog.pg_type WHERE oid = 23").fetchone()[0] == "int4"
        assert conn.execute("SELECT count(*) FROM pg_catalog.pg_enum").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_catalog.pg_range").fetchone()[0] >= 1
        assert conn.execute("SELECT count(*) FROM pg_catalog.pg_proc").fetchone()[0] > 100


# --- authentication and start-up ----------------------------------------------


@pytest.mark.parametrize("method", ["scram-sha-256", "md5"])
def test_password_auth(demo_lake, tmp_path, method):
    server = start(demo_lake.binary, demo_lake.path, tmp_path, "--password-method", method,
                   env={"ICEFJORD_PG_USER": "bi", "ICEFJORD_PG_PASSWORD": "s3cret pw"})
    try:
        with psycopg.connect(server.dsn(user="bi", password="s3cret pw")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        for user, password in (("bi", "wrong"), ("nobody", "s3cret pw")):
            with pytest.raises(psycopg.OperationalError) as caught:
                psycopg.connect(server.dsn(user=user, password=password))
            assert "password authentication failed" in str(caught.value).lower(), caught.value
    finally:
        server.stop()
    assert "s3cret" not in server.logs()


def test_non_loopback_without_password_is_refused(demo_lake):
    out = subprocess.run(
        [str(demo_lake.binary), "--lake", str(demo_lake.path), "serve",
         "--pg-addr", "0.0.0.0:0", "--http-addr", "off", "--rest-addr", "off"],
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("ICEFJORD_PG")},
    )
    assert out.returncode == 2, out
    assert "ICEFJORD_PG_PASSWORD" in out.stderr


def test_tls(demo_lake, tmp_path):
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    server = start(demo_lake.binary, demo_lake.path, tmp_path,
                   "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        with psycopg.connect(server.dsn(sslmode="require")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            assert conn.pgconn.ssl_in_use
        # With a certificate configured, plain text is refused (as hostssl).
        with pytest.raises(psycopg.OperationalError) as caught:
            psycopg.connect(server.dsn(sslmode="disable"))
        assert "requires TLS" in str(caught.value)
    finally:
        server.stop()
    bad = subprocess.run(
        [str(demo_lake.binary), "--lake", str(demo_lake.path), "serve",
         "--pg-addr", "127.0.0.1:0", "--http-addr", "off", "--rest-addr", "off",
         "--tls-cert", str(cert), "--tls-key", str(tmp_path / "missing.key")],
        capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 2, bad
    assert "missing.key" in bad.stderr


def test_sigterm_lets_a_running_query_finish(demo_lake, tmp_path):
    import threading

    server = start(demo_lake.binary, demo_lake.path, tmp_path, "--shutdown-grace", "60")
    result = {}

    def run():
        with psycopg.connect(server.dsn()) as conn:
            result["count"] = conn.execute(SLOW_COUNT).fetchone()[0]

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(1.0)
    assert worker.is_alive(), "the query ended before SIGTERM"
    server.proc.send_signal(signal.SIGTERM)
    worker.join(timeout=120)
    assert result.get("count") == SLOW_COUNT_RESULT
    assert server.stop() == 0
    assert "shutting down" in server.logs()


# Takes seconds, answer known: multiples of 7 in 1..N.
SLOW_N = 60_000_000
SLOW_COUNT = f"SELECT count(*) FROM generate_series(1, {SLOW_N}) AS t(value) WHERE value % 7 = 0"
SLOW_COUNT_RESULT = SLOW_N // 7


# --- what BI tools send ---------------------------------------------------------

# Npgsql's type loading batch, sent on connect by Power BI's PostgreSQL connector
# (Npgsql 8, src/Npgsql/PostgresDatabaseInfo.cs, GenerateLoadTypesQuery with ranges
# and multiranges, GenerateLoadCompositeTypesQuery and GenerateLoadEnumFieldsQuery;
# PostgreSQL License). Replayed as Npgsql sends it: one simple-protocol batch.
NPGSQL_LOAD_TYPES = """SELECT version();

SELECT ns.nspname, t.oid, t.typname, t.typtype, t.typnotnull, t.elemtypoid
FROM (
    -- Arrays have typtype=b - this subquery identifies them by their typreceive and converts their typtype to a
    -- We first do this for the type (innerest-most subquery), and then for its element type
    -- This also returns the array element, range subtype and domain base type as elemtypoid
    SELECT
        typ.oid, typ.typnamespace, typ.typname, typ.typtype, typ.typrelid, typ.typnotnull, typ.relkind,
        elemtyp.oid AS elemtypoid, elemtyp.typname AS elemtypname, elemcls.relkind AS elemrelkind,
        CASE WHEN elemproc.proname='array_recv' THEN 'a' ELSE elemtyp.typtype END AS elemtyptype
    FROM (
        SELECT typ.oid, typnamespace, typname, typrelid, typnotnull, relkind, typelem AS elemoid,
            CASE WHEN proc.proname='array_recv' THEN 'a' ELSE typ.typtype END AS typtype,
            CASE
                WHEN proc.proname='array_recv' THEN typ.typelem
                WHEN typ.typtype='r' THEN rngsubtype
                WHEN typ.typtype='m' THEN (SELECT rngtypid FROM pg_range WHERE rngmultitypid = typ.oid)
                WHEN typ.typtype='d' THEN typ.typbasetype
            END AS elemtypoid
        FROM pg_type AS typ
        LEFT JOIN pg_class AS cls ON (cls.oid = typ.typrelid)
        LEFT JOIN pg_proc AS proc ON proc.oid = typ.typreceive
        LEFT JOIN pg_range ON (pg_range.rngtypid = typ.oid)
    ) AS typ
    LEFT JOIN pg_type AS elemtyp ON elemtyp.oid = elemtypoid
    LEFT JOIN pg_class AS elemcls ON (elemcls.oid = elemtyp.typrelid)
    LEFT JOIN pg_proc AS elemproc ON elemproc.oid = elemtyp.typreceive
) AS t
JOIN pg_namespace AS ns ON (ns.oid = typnamespace)
WHERE
    typtype IN ('b', 'r', 'm', 'e', 'd') OR -- Base, range, multirange, enum, domain
    (typtype = 'c' AND relkind='c') OR -- User-defined free-standing composites (not table composites) by default
    (typtype = 'p' AND typname IN ('record', 'void')) OR -- Some special supported pseudo-types
    (typtype = 'a' AND (  -- Array of...
        elemtyptype IN ('b', 'r', 'm', 'e', 'd') OR -- Array of base, range, multirange, enum, domain
        (elemtyptype = 'p' AND elemtypname IN ('record', 'void')) OR -- Arrays of special supported pseudo-types
        (elemtyptype = 'c' AND elemrelkind='c') -- Array of user-defined free-standing composites (not table composites) by default
    ))
ORDER BY CASE
       WHEN typtype IN ('b', 'e', 'p') THEN 0           -- First base types, enums, pseudo-types
       WHEN typtype = 'r' THEN 1                        -- Ranges after
       WHEN typtype = 'm' THEN 2                        -- Multiranges after
       WHEN typtype = 'c' THEN 3                        -- Composites after
       WHEN typtype = 'd' AND elemtyptype <> 'a' THEN 4 -- Domains over non-arrays after
       WHEN typtype = 'a' THEN 5                        -- Arrays after
       WHEN typtype = 'd' AND elemtyptype = 'a' THEN 6  -- Domains over arrays last
END;

-- Load field definitions for (free-standing) composite types
SELECT typ.oid, att.attname, att.atttypid
FROM pg_type AS typ
JOIN pg_namespace AS ns ON (ns.oid = typ.typnamespace)
JOIN pg_class AS cls ON (cls.oid = typ.typrelid)
JOIN pg_attribute AS att ON (att.attrelid = typ.typrelid)
WHERE
  (typ.typtype = 'c' AND cls.relkind='c') AND
  attnum > 0 AND     -- Don't load system attributes
  NOT attisdropped
ORDER BY typ.oid, att.attnum;

-- Load enum fields
SELECT pg_type.oid, enumlabel
FROM pg_enum
JOIN pg_type ON pg_type.oid=enumtypid
ORDER BY oid, enumsortorder;
"""


def test_npgsql_type_loading_batch(server):
    out = psql(server, "-A", "-F", "|", "-t", "-c", NPGSQL_LOAD_TYPES).stdout
    lines = out.strip().splitlines()
    assert lines[0].startswith("PostgreSQL 16"), lines[0]
    types = {}
    for line in lines[1:]:
        fields = line.split("|")
        if len(fields) == 6:
            types[fields[2]] = fields[3]
    # What Npgsql needs to read our columns: each a base type ('b').
    for name in ("int4", "int8", "float8", "numeric", "text", "varchar", "bool", "date",
                 "timestamp", "timestamptz", "bytea"):
        assert types.get(name) == "b", (name, types.get(name))


# Grafana's PostgreSQL data source (pkg/tsdb/grafana-postgresql-datasource/macros.go)
# expands $__timeGroupAlias(hour, 1h) to `floor(extract(epoch from hour)/3600)*3600
# AS "time"` and $__timeFilter(hour) to `hour BETWEEN '<from>' AND '<to>'` (RFC 3339).
GRAFANA = """SELECT
  floor(extract(epoch from hour)/3600)*3600 AS "time",
  sum(sales_amount) AS "sales"
FROM historical.sales_hourly
WHERE
  hour BETWEEN '2023-10-27T06:00:00Z' AND '2023-10-28T05:59:59.999Z'
GROUP BY 1
ORDER BY 1"""


def test_grafana_time_series_query(server, demo_lake):
    expected = cli_rows(
        demo_lake,
        "SELECT CAST(to_unixtime(hour) AS BIGINT), sum(sales_amount) FROM historical.sales_hourly "
        "WHERE hour >= TIMESTAMP '2023-10-27 06:00:00' AND hour < TIMESTAMP '2023-10-28 06:00:00' "
        "GROUP BY 1 ORDER BY 1")
    assert len(expected) == 24
    with psycopg.connect(server.dsn()) as conn:
        rows = conn.execute(GRAFANA).fetchall()
    assert [[int(t), Decimal(s)] for t, s in rows] == \
        [[int(t), Decimal(s)] for t, s in expected]
    out = psql(server, "-A", "-F", ",", "-t", "-c", GRAFANA).stdout
    assert len(out.strip().splitlines()) == 24


# --- pgjdbc (DBeaver and other JDBC tools) ------------------------------------------

JDBC_JAR = Path("/usr/share/java/postgresql.jar")


def test_pgjdbc_metadata_and_prepared_statement(server, demo_lake, tmp_path):
    if not JDBC_JAR.exists():
        pytest.fail(f"{JDBC_JAR} is missing: apt-get install libpostgresql-jdbc-java")
    source = Path(__file__).parent / "jdbc" / "JdbcCheck.java"
    subprocess.run(["javac", "-d", str(tmp_path), str(source)], check=True, capture_output=True)
    category, units = cli_rows(
        demo_lake, "SELECT category, sales_units FROM unified.sales_by_category "
                   "ORDER BY category LIMIT 1")[0]
    url = f"jdbc:postgresql://{server.pg_host}:{server.pg_port}/icefjord?sslmode=disable"
    out = subprocess.run(
        ["java", "-cp", f"{tmp_path}:{JDBC_JAR}", "JdbcCheck", url, category],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any(l.startswith("product=PostgreSQL 16") for l in lines), lines
    assert "table=unified.sales_by_category:VIEW" in lines, lines
    assert "table=raw.retail_events:TABLE" in lines, lines
    columns = [l for l in lines if l.startswith("column=")]
    assert [c.split(":")[0] for c in columns][:2] == ["column=category", "column=sales_units"], columns
    assert columns[0].endswith(":1")
    assert f"row={category}:{units}" in lines, lines


# --- limits and operations ----------------------------------------------------------


def test_query_over_its_memory_pool_fails_and_others_go_on(demo_lake, tmp_path):
    server = start(demo_lake.binary, demo_lake.path, tmp_path, "--query-memory-mib", "8")
    try:
        with psycopg.connect(server.dsn()) as other:
            with psycopg.connect(server.dsn()) as greedy:
                with pytest.raises(psycopg.Error) as caught:
                    greedy.execute(
                        "SELECT value, md5(CAST(value AS VARCHAR)) AS h "
                        "FROM generate_series(1, 3000000) AS t(value) ORDER BY h").fetchall()
                assert caught.value.sqlstate == "53200", (caught.value.sqlstate, caught.value)
                assert "memory" in str(caught.value)
                assert greedy.execute("SELECT 1").fetchone() == (1,)
            assert other.execute("SELECT count(*) FROM raw.retail_events").fetchone()[0] > 0
    finally:
        server.stop()


def test_connection_limit(demo_lake, tmp_path):
    server = start(demo_lake.binary, demo_lake.path, tmp_path, "--max-connections", "2")
    try:
        first = psycopg.connect(server.dsn())
        second = psycopg.connect(server.dsn())
        with pytest.raises(psycopg.OperationalError) as caught:
            psycopg.connect(server.dsn())
        assert "too many clients" in str(caught.value)
        first.close()
        time.sleep(0.5)
        with psycopg.connect(server.dsn()) as third:
            assert third.execute("SELECT 1").fetchone() == (1,)
        second.close()
    finally:
        server.stop()


def test_query_timeout(demo_lake, tmp_path):
    server = start(demo_lake.binary, demo_lake.path, tmp_path, "--query-timeout", "1")
    try:
        with psycopg.connect(server.dsn()) as conn:
            with pytest.raises(psycopg.errors.QueryCanceled) as caught:
                conn.execute(SLOW_COUNT.replace(str(SLOW_N), str(SLOW_N * 10))).fetchone()
            assert "statement timeout" in str(caught.value)
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()


def test_json_log_line_per_query(demo_lake, tmp_path):
    import json

    server = start(demo_lake.binary, demo_lake.path, tmp_path, env={
        "ICEFJORD_LOG": "warn,icefjord::query=info"}, log_format="json")
    try:
        with psycopg.connect(server.dsn(user="analyst")) as conn:
            conn.execute("SELECT count(*) FROM raw.retail_events").fetchone()
            with pytest.raises(psycopg.Error):
                conn.execute("SELECT * FROM raw.nope")
    finally:
        server.stop()
    lines = [json.loads(l) for l in server.logs().splitlines() if l.startswith("{")]
    queries = [l["fields"] for l in lines if l.get("target") == "icefjord::query"]
    ok = [q for q in queries if q["outcome"] == "ok" and "retail_events" in q["statement"]]
    assert ok and ok[0]["user"] == "analyst" and ok[0]["protocol"] == "pg" and ok[0]["rows"] == 1
    assert isinstance(ok[0]["duration_ms"], int)
    refused = [q for q in queries if q["outcome"] == "refused"]
    assert refused and "nope" in refused[0]["error"]


# --- time travel and metadata tables over the wire ------------------------------------


def test_time_travel_and_metadata_tables(server, demo_lake):
    snapshots = cli_rows(demo_lake, "SELECT snapshot_id FROM raw.retail_events.snapshots "
                                    "ORDER BY committed_at")
    first = snapshots[0][0]
    expected = cli_rows(demo_lake, f"SELECT count(*) FROM raw.retail_events VERSION AS OF {first}")
    with psycopg.connect(server.dsn()) as conn:
        for binary in (False, True):
            got = conn.execute(
                f"SELECT count(*) FROM raw.retail_events VERSION AS OF {first}",
                binary=binary).fetchone()[0]
            assert str(got) == expected[0][0]
            rows = conn.execute(
                "SELECT snapshot_id, operation FROM raw.retail_events.snapshots "
                "ORDER BY committed_at", binary=binary).fetchall()
            assert [str(r[0]) for r in rows] == [s[0] for s in snapshots]
            files = conn.execute(
                "SELECT file_path, record_count, partition FROM raw.retail_events.files",
                binary=binary).fetchall()
            assert sum(r[1] for r in files) == int(cli_rows(
                demo_lake, "SELECT count(*) FROM raw.retail_events")[0][0])
        with pytest.raises(psycopg.Error) as caught:
            conn.execute("SELECT count(*) FROM raw.retail_events VERSION AS OF 1")
        assert "retail_events" in str(caught.value)
