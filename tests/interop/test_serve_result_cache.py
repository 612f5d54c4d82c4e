"""`icefjord serve` reuses the result of a repeated query while the tables it
read are unchanged (serve/src/result_cache.rs), and never serves a stale one:
another engine (PyIceberg) commits between queries here, and the next query
must see its rows. Expected counts are written out by hand."""

import re
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest

from conftest import Lake
from serve import cli_rows, start

ROOT = Path(__file__).resolve().parents[2]

SCHEMA = pa.schema([
    pa.field("order_id", pa.int64(), nullable=False),
    pa.field("amount", pa.int64()),
])


def orders(first: int, count: int) -> pa.Table:
    return pa.Table.from_pylist(
        [{"order_id": i, "amount": 10} for i in range(first, first + count)], schema=SCHEMA)


@pytest.fixture(scope="module")
def shop(icefjord_bin, tmp_path_factory):
    """A lake with one table, `shop.orders`, written by PyIceberg: 3 orders of 10."""
    lake = Lake(icefjord_bin, tmp_path_factory.mktemp("result-cache") / "lake")
    out = lake.run("demo", "--events", "2000", "-o", "csv")
    assert out.returncode == 0, out.stderr
    catalog = lake.catalog()
    catalog.create_namespace("shop")
    catalog.create_table("shop.orders", schema=SCHEMA).append(orders(1, 3))
    return lake


@pytest.fixture(scope="module")
def server(shop: Lake, tmp_path_factory):
    server = start(shop.binary, shop.path, tmp_path_factory.mktemp("result-cache-logs"))
    yield server
    server.stop()


def lookups(server) -> dict[str, float]:
    """`icefjord_query_result_cache_total` by result (hit, miss)."""
    with urllib.request.urlopen(f"{server.http}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = {"hit": 0.0, "miss": 0.0}
    for result, value in re.findall(
            r'^icefjord_query_result_cache_total\{result="(\w+)"\} (\S+)$', text, re.M):
        found[result] = float(value)
    return found


def one_row(server, sql: str, params=None, binary: bool = False):
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        return conn.execute(sql, params, binary=binary).fetchone()


def test_repeated_query_is_reused_until_another_engine_commits(server, shop):
    sql = "SELECT count(*), sum(amount) FROM shop.orders"
    before = lookups(server)
    assert one_row(server, sql) == (3, 30)
    assert one_row(server, sql) == (3, 30)
    after = lookups(server)
    assert after["hit"] - before["hit"] == 1, (before, after)

    shop.catalog().load_table("shop.orders").append(orders(4, 2))
    assert one_row(server, sql) == (5, 50), "a result from before the commit was served"
    assert lookups(server)["hit"] == after["hit"]
    assert one_row(server, sql) == (5, 50)
    assert lookups(server)["hit"] == after["hit"] + 1


def test_parameters_and_formats_are_part_of_the_key(server):
    sql = "SELECT count(*) FROM shop.orders WHERE order_id <= %s"
    assert one_row(server, sql, (1,)) == (1,)
    assert one_row(server, sql, (2,)) == (2,)
    assert one_row(server, sql, (2,), binary=True) == (2,)
    assert one_row(server, sql, (1,), binary=True) == (1,)


def test_a_view_is_reused_and_follows_its_tables(server, shop):
    sql = ("SELECT category, net_revenue FROM unified.sales_by_category "
           "ORDER BY category LIMIT 1")
    first = one_row(server, sql)
    before = lookups(server)
    assert one_row(server, sql) == first
    assert lookups(server)["hit"] == before["hit"] + 1


@pytest.mark.parametrize("sql", [
    "SELECT count(*), now() FROM shop.orders",
    "SELECT count(*), random() FROM shop.orders",
    "SELECT count(*) FROM pg_catalog.pg_class",
    "SELECT count(*) FROM shop.orders WHERE current_user = 'icefjord'",
])
def test_results_that_can_change_without_a_commit_are_never_reused(server, sql):
    before = lookups(server)
    one_row(server, sql)
    time.sleep(0.01)
    one_row(server, sql)
    assert lookups(server)["hit"] == before["hit"], sql


def test_now_is_fresh_on_each_run(server):
    sql = "SELECT count(*), now() FROM shop.orders"
    first = one_row(server, sql)[1]
    time.sleep(0.05)
    assert one_row(server, sql)[1] > first


def test_a_big_result_is_not_kept(shop, tmp_path):
    # 1 MiB in all: no result over 64 KiB is kept.
    small = start(shop.binary, shop.path, tmp_path, "--result-cache-mib", "1")
    try:
        sql = "SELECT * FROM raw.retail_events"
        with psycopg.connect(small.dsn(), autocommit=True) as conn:
            rows = conn.execute(sql).fetchall()
            assert len(rows) >= 1000
            assert len(conn.execute(sql).fetchall()) == len(rows)
            assert conn.execute("SELECT count(*) FROM shop.orders").fetchone()[0] >= 3
            conn.execute("SELECT count(*) FROM shop.orders").fetchone()
        found = lookups(small)
        assert found["hit"] == 1, found
    finally:
        small.stop()


def test_reuse_can_be_turned_off(shop, tmp_path):
    off = start(shop.binary, shop.path, tmp_path, "--result-cache-mib", "0")
    try:
        for _ in range(2):
            assert one_row(off, "SELECT count(*) FROM shop.orders")[0] >= 3
        assert lookups(off) == {"hit": 0.0, "miss": 0.0}
    finally:
        off.stop()


def test_http_queries_are_reused_with_their_params(server):
    import json

    def post(params):
        body = json.dumps({"sql": "SELECT count(*) AS n FROM shop.orders WHERE order_id <= $1",
                           "params": params}).encode()
        request = urllib.request.Request(f"{server.http}/v1/query", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    before = lookups(server)
    first = post([1])
    assert post([1]) == first
    assert post([3]) != first
    after = lookups(server)
    assert after["hit"] - before["hit"] == 1, (before, after)


def test_a_slice_chosen_by_another_tables_boundary_follows_that_table(server, shop):
    """`raw."retail_events@since:historical.sales_hourly"` (what the realtime
    half of a Lambda view reads) depends on historical.sales_hourly's boundary
    too: a run that commits only the historical table moves it. Found by a
    break-in: the kept result outlived the run."""
    since = 'SELECT count(*) FROM raw."retail_events@since:historical.sales_hourly"'
    view = "SELECT count(*), sum(event_count) FROM unified.realtime_sales_hourly"
    out = shop.run("generate", "--events", "3000")
    assert out.returncode == 0, out.stderr
    for _ in range(2):
        assert one_row(server, since)[0] > 0
        one_row(server, view)
    out = shop.run("run", str(ROOT / "jobs" / "retail"))
    assert out.returncode == 0, out.stderr
    assert [str(v) for v in one_row(server, since)] == cli_rows(shop, since)[0]
    assert [("" if v is None else str(v)) for v in one_row(server, view)] == cli_rows(shop, view)[0]


def test_time_travel_to_a_moving_time_is_never_reused(server, shop):
    """`FOR SYSTEM_TIME AS OF now() - …` names a different snapshot as time
    passes: the plan holds a fixed snapshot, the statement's text does not."""
    table = shop.catalog().load_table("shop.orders")
    sql = "SELECT count(*) FROM shop.orders FOR SYSTEM_TIME AS OF now() - INTERVAL '2 seconds'"
    time.sleep(2.5)  # the table's last snapshot is now more than 2 s old
    before = one_row(server, sql)[0]
    table.append(orders(100, 1))
    assert one_row(server, sql)[0] == before
    time.sleep(3)
    assert one_row(server, sql)[0] == before + 1


@pytest.mark.parametrize("binary", [False, True])
def test_decimal_parameters_keep_their_digits(server, binary):
    """A numeric parameter is a decimal, not a float: 1.10 × 16.18 is 17.7980
    (it came back 17.798000000000002), and 17 significant digits survive."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        got = conn.execute("SELECT CAST(16.18 AS DECIMAL(10, 2)) * %s, %s + 0",
                           (Decimal("1.10"), Decimal("12345678901234567.89")),
                           binary=binary).fetchone()
    assert got == (Decimal("17.7980"), Decimal("12345678901234567.89")), got
