"""Views through the REST catalog (issue 14 part 3), checked by Spark 3.5 +
Iceberg 1.10 and PyIceberg: the pipeline's `unified.*` views read in Spark give
the rows `icefjord sql` gives, `@since:` tables included; views Spark creates
are Iceberg views it can replace and drop; pipeline views cannot be changed
from outside."""

from decimal import Decimal

import pytest
from pyiceberg.exceptions import NoSuchViewError

from pathlib import Path

from serve import start
from test_rest_catalog import call, new_events, own, rest_catalog  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[2]


def fresh_raw_rows(lake, server, count: int) -> None:
    """New raw events past the runner's boundary, so the unified views' speed
    layer (`raw."retail_events@since:historical.sales_hourly"`) is not empty."""
    table = rest_catalog(server).load_table("raw.retail_events")
    table.append(new_events(table.scan(limit=count).to_arrow()))


def by_category_ours(lake) -> dict:
    rows = lake.sql(
        "SELECT category, sales_units, CAST(sales_amount AS VARCHAR) AS sales_amount, "
        "CAST(net_revenue AS VARCHAR) AS net_revenue FROM unified.sales_by_category"
    )
    return {
        r["category"]: (r["sales_units"], Decimal(r["sales_amount"]), Decimal(r["net_revenue"]))
        for r in rows
    }


def test_spark_reads_the_pipelines_unified_views_as_icefjord_sql_does(own, spark):
    from spark import rest_catalog as spark_rest

    lake, server = own
    fresh_raw_rows(lake, server, 40)
    ours = by_category_ours(lake)
    realtime = lake.sql("SELECT count(*) AS n FROM unified.realtime_sales_hourly")[0]["n"]
    assert realtime > 0, "the speed layer should hold the 40 fresh events"

    catalog = spark_rest(server.rest)
    views = {row[1] for row in spark.sql(catalog, "SHOW VIEWS IN unified")}
    assert {"sales_by_category", "sales_hourly", "realtime_sales_hourly"} <= views
    theirs = {
        row[0]: (row[1], Decimal(row[2]), Decimal(row[3]))
        for row in spark.sql(
            catalog,
            "SELECT category, sales_units, CAST(sales_amount AS STRING), "
            "CAST(net_revenue AS STRING) FROM icefjord.unified.sales_by_category",
        )
    }
    assert theirs == ours
    [[n]] = spark.sql(catalog, "SELECT count(*) FROM unified.realtime_sales_hourly")
    assert n == realtime
    # rank() is unsigned in DataFusion and int in Spark: the view still loads and agrees.
    spark_ranks = sorted(tuple(r) for r in spark.sql(
        catalog, "SELECT product_id, category, revenue_rank FROM unified.product_performance"))
    our_ranks = sorted((r["product_id"], r["category"], r["revenue_rank"]) for r in lake.sql(
        "SELECT product_id, category, revenue_rank FROM unified.product_performance"))
    assert spark_ranks == our_ranks and len(our_ranks) > 0
    # Every hourly row agrees, not only the totals.
    spark_hours = sorted(
        tuple(r)
        for r in spark.sql(
            catalog,
            "SELECT CAST(hour AS STRING), store_id, category, product_id, sales_units, "
            "CAST(sales_amount AS STRING), event_count FROM unified.sales_hourly",
        )
    )
    our_hours = sorted(
        (r["h"], r["store_id"], r["category"], r["product_id"], r["sales_units"],
         r["sales_amount"], r["event_count"])
        for r in lake.sql(
            "SELECT CAST(hour AS VARCHAR) AS h, store_id, category, "
            "product_id, sales_units, CAST(sales_amount AS VARCHAR) AS sales_amount, event_count "
            "FROM unified.sales_hourly"
        )
    )
    # Both sort by hour (each engine's text of a timestamp sorts as time).
    assert len(spark_hours) == len(our_hours) > 0
    assert [r[1:] for r in spark_hours] == [r[1:] for r in our_hours]


def test_the_published_view_carries_both_dialects_and_refuses_changes(own):
    lake, server = own
    status, loaded = call(server, "GET", "/v1/namespaces/unified/views/realtime_sales_hourly")
    assert status == 200, loaded
    version = next(v for v in loaded["metadata"]["versions"]
                   if v["version-id"] == loaded["metadata"]["current-version-id"])
    sql = {r["dialect"]: r["sql"] for r in version["representations"]}
    assert '"retail_events@since:historical.sales_hourly"' in sql["icefjord"]
    assert "@since" not in sql["spark"] and "`_kafka_offset` >=" in sql["spark"]
    assert version["default-namespace"] == ["unified"]
    columns = [f["name"] for f in loaded["metadata"]["schemas"][0]["fields"]]
    assert columns[:4] == ["hour", "store_id", "category", "product_id"]
    # Loading again gives the same view UUID (clients assert it on replace).
    _, again = call(server, "GET", "/v1/namespaces/unified/views/realtime_sales_hourly")
    assert again["metadata"]["view-uuid"] == loaded["metadata"]["view-uuid"]

    status, error = call(server, "DELETE", "/v1/namespaces/unified/views/sales_by_category")
    assert status == 403 and "pipeline retail" in error["error"]["message"]
    status, error = call(server, "POST", "/v1/namespaces/unified/views/sales_by_category",
                         {"requirements": [], "updates": []})
    assert status == 403
    assert lake.sql("SELECT count(*) AS n FROM unified.sales_by_category")[0]["n"] > 0
    status, error = call(server, "GET", "/v1/namespaces/unified/views/no_such_view")
    assert status == 404 and error["error"]["type"] == "NoSuchViewException"
    # Spark asks for a view by every table name first: a table is not a view.
    assert call(server, "HEAD", "/v1/namespaces/raw/views/retail_events")[0] == 404


def test_spark_creates_replaces_and_drops_its_own_views(own, spark):
    from spark import rest_catalog as spark_rest

    lake, server = own
    catalog = spark_rest(server.rest)
    big = lake.sql("SELECT count(*) AS n FROM raw.retail_events WHERE quantity > 3")[0]["n"]
    small = lake.sql("SELECT count(*) AS n FROM raw.retail_events WHERE quantity <= 3")[0]["n"]
    spark.run(catalog, "CREATE VIEW raw.big_orders AS "
                       "SELECT * FROM raw.retail_events WHERE quantity > 3")
    assert spark.sql(catalog, "SELECT count(*) FROM raw.big_orders") == [[big]]
    pyiceberg = rest_catalog(server)
    assert ("raw", "big_orders") in pyiceberg.list_views("raw")
    assert pyiceberg.view_exists("raw.big_orders")
    # The view is a catalog row of the JDBC layout, not a table.
    assert not pyiceberg.table_exists("raw.big_orders")

    status, loaded = call(server, "GET", "/v1/namespaces/raw/views/big_orders")
    assert status == 200
    uuid = loaded["metadata"]["view-uuid"]
    assert loaded["metadata-location"].startswith(f"file://{lake.path}/warehouse/raw/big_orders/")

    spark.run(catalog, "CREATE OR REPLACE VIEW raw.big_orders AS "
                       "SELECT * FROM raw.retail_events WHERE quantity <= 3")
    assert spark.sql(catalog, "SELECT count(*) FROM raw.big_orders") == [[small]]
    _, replaced = call(server, "GET", "/v1/namespaces/raw/views/big_orders")
    assert replaced["metadata"]["view-uuid"] == uuid
    assert replaced["metadata"]["current-version-id"] > loaded["metadata"]["current-version-id"]

    # A replace whose requirement fails changes nothing.
    status, error = call(server, "POST", "/v1/namespaces/raw/views/big_orders", {
        "requirements": [{"type": "assert-view-uuid",
                          "uuid": "00000000-0000-0000-0000-000000000000"}],
        "updates": [{"action": "set-properties", "updates": {"x": "y"}}],
    })
    assert status == 409 and error["error"]["type"] == "CommitFailedException"
    _, unchanged = call(server, "GET", "/v1/namespaces/raw/views/big_orders")
    assert unchanged["metadata-location"] == replaced["metadata-location"]

    # A name a table holds is not free for a view.
    with pytest.raises(Exception, match="(?i)already exists"):
        spark.run(catalog, "CREATE VIEW raw.retail_events AS SELECT 1 AS x")
    spark.run(catalog, "ALTER VIEW raw.big_orders RENAME TO raw.small_orders")
    assert not pyiceberg.view_exists("raw.big_orders")
    assert spark.sql(catalog, "SELECT count(*) FROM raw.small_orders") == [[small]]
    spark.run(catalog, "DROP VIEW raw.small_orders")
    with pytest.raises(NoSuchViewError):
        pyiceberg.drop_view("raw.small_orders")
    assert not pyiceberg.view_exists("raw.small_orders")


def view_body(sql: str, namespace: str) -> dict:
    return {
        "name": None,
        "schema": {"type": "struct", "schema-id": 0,
                   "fields": [{"id": 1, "name": "x", "type": "int", "required": False}]},
        "view-version": {"version-id": 1, "schema-id": 0, "timestamp-ms": 1, "summary": {},
                         "default-namespace": [namespace],
                         "representations": [{"type": "sql", "dialect": "spark", "sql": sql}]},
        "properties": {},
    }


def test_a_name_is_a_table_a_pipeline_view_or_a_client_view_never_two(lake, tmp_path):
    out = lake.run("generate", "--kind", "retail", "--events", "500")
    assert out.returncode == 0, out.stderr
    server = start(lake.binary, lake.path, tmp_path)
    try:
        assert call(server, "POST", "/v1/namespaces", {"namespace": ["unified"]})[0] == 200
        body = view_body("SELECT 42 AS x", "unified") | {"name": "sales_by_category"}
        status, created = call(server, "POST", "/v1/namespaces/unified/views", body)
        assert status == 200, created
        # The pipeline cannot publish its view over the client's: the run fails
        # at once (exit 2, no retries), naming the view, and publishes nothing.
        out = lake.run("run", str(ROOT / "jobs" / "retail"))
        assert out.returncode == 2, out.stderr
        assert "unified.sales_by_category is an Iceberg view" in out.stderr
        status, listed = call(server, "GET", "/v1/namespaces/unified/views")
        assert [v["name"] for v in listed["identifiers"]] == ["sales_by_category"]
        assert lake.run("sql", "SELECT * FROM historical.sales_hourly").returncode != 0
        # A table cannot be renamed onto a view's name either (409, not 404).
        status, error = call(server, "POST", "/v1/tables/rename", {
            "source": {"namespace": ["raw"], "name": "retail_events"},
            "destination": {"namespace": ["unified"], "name": "sales_by_category"}})
        assert status == 409 and error["error"]["type"] == "AlreadyExistsException", error
        # Requests a view cannot be made from are refused.
        empty = view_body("SELECT 1 AS x", "unified") | {"name": "empty"}
        empty["view-version"]["representations"] = []
        assert call(server, "POST", "/v1/namespaces/unified/views", empty)[0] == 400
        status, error = call(server, "POST", "/v1/namespaces/unified/views/sales_by_category", {
            "requirements": [], "updates": [{"action": "assign-uuid",
                                             "uuid": "00000000-0000-0000-0000-000000000001"}]})
        assert status == 400 and "UUID cannot change" in error["error"]["message"]
        # Dropped, the name is free and the pipeline publishes its view.
        assert call(server, "DELETE", "/v1/namespaces/unified/views/sales_by_category")[0] == 204
        out = lake.run("run", str(ROOT / "jobs" / "retail"))
        assert out.returncode == 0, out.stderr
        assert lake.sql("SELECT count(*) AS n FROM unified.sales_by_category")[0]["n"] > 0
    finally:
        server.stop()


def test_views_of_a_multi_level_namespace_are_listed_with_its_levels(own):
    lake, server = own
    assert call(server, "POST", "/v1/namespaces", {"namespace": ["a", "b"]})[0] == 200
    body = view_body("SELECT 1 AS x", "a") | {"name": "v"}
    assert call(server, "POST", "/v1/namespaces/a%1Fb/views", body)[0] == 200
    status, listed = call(server, "GET", "/v1/namespaces/a%1Fb/views")
    assert status == 200
    assert listed["identifiers"] == [{"namespace": ["a", "b"], "name": "v"}]
