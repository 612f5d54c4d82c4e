"""PyIceberg and DuckDB, clients no one here wrote, read what `icefjord demo` wrote
and must agree with `icefjord sql` to the cent."""

from decimal import Decimal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

EVENTS = 30_000


def build(lake):
    out = lake.run("demo", "--events", str(EVENTS), "-o", "json")
    assert out.returncode == 0, out.stderr


def test_pyiceberg_and_duckdb_agree_with_icefjord_sql(lake):
    build(lake)
    ours = lake.sql(
        "SELECT count(*) AS n, CAST(sum(quantity * unit_price) AS VARCHAR) AS amount "
        "FROM raw.retail_events"
    )[0]
    assert ours["n"] == EVENTS

    table = lake.catalog().load_table("raw.retail_events")
    scanned = table.scan().to_arrow()
    assert scanned.num_rows == EVENTS
    amount = pc.sum(
        pc.multiply(pc.cast(scanned["quantity"], pa.decimal128(10, 0)), scanned["unit_price"])
    ).as_py()
    assert Decimal(ours["amount"]) == amount

    files = [task.file.file_path.removeprefix("file://") for task in table.scan().plan_files()]
    assert len(files) >= 3, "one file per day partition at least"
    n, total = duckdb.connect().execute(
        "SELECT count(*), sum(quantity * unit_price) FROM read_parquet($files)",
        {"files": files},
    ).fetchone()
    assert n == EVENTS
    assert Decimal(ours["amount"]) == total


def test_partitioning_and_schema_are_visible_to_pyiceberg(lake):
    build(lake)
    table = lake.catalog().load_table("raw.retail_events")
    spec = table.spec()
    assert [f.name for f in spec.fields] == ["event_time_day"]
    assert str(spec.fields[0].transform) == "day"
    assert str(table.schema().find_field("unit_price").field_type) == "decimal(10, 2)"
    # Every file holds exactly one day.
    for task in table.scan().plan_files():
        days = duckdb.connect().execute(
            "SELECT count(DISTINCT CAST(event_time AS DATE)) FROM read_parquet($f)",
            {"f": task.file.file_path.removeprefix("file://")},
        ).fetchone()[0]
        assert days == 1


def test_the_demo_history_read_by_pyiceberg_matches_duckdb_over_raw_parquet(lake):
    """historical.sales_hourly, read by PyIceberg (not our reader) and summed per
    category, equals DuckDB's aggregate over the raw Parquet files."""
    build(lake)
    catalog = lake.catalog()
    raw_files = [
        t.file.file_path.removeprefix("file://")
        for t in catalog.load_table("raw.retail_events").scan().plan_files()
    ]
    expected = duckdb.connect().execute(
        """
        SELECT category,
               sum(CASE WHEN transaction_type = 'SALE' THEN quantity ELSE 0 END) AS sales_units,
               sum(CASE WHEN transaction_type = 'SALE' THEN quantity * unit_price ELSE 0 END),
               sum(CASE WHEN transaction_type = 'RETURN' THEN quantity * unit_price ELSE 0 END),
               count(*)
        FROM read_parquet($files) GROUP BY category ORDER BY category
        """,
        {"files": raw_files},
    ).fetchall()
    hourly = catalog.load_table("historical.sales_hourly").scan().to_arrow()
    per_category = hourly.group_by("category").aggregate(
        [("sales_units", "sum"), ("sales_amount", "sum"), ("return_amount", "sum"),
         ("event_count", "sum")]
    ).sort_by("category")
    actual = list(
        zip(
            per_category["category"].to_pylist(),
            per_category["sales_units_sum"].to_pylist(),
            per_category["sales_amount_sum"].to_pylist(),
            per_category["return_amount_sum"].to_pylist(),
            per_category["event_count_sum"].to_pylist(),
        )
    )
    assert actual == expected


def test_rerunning_the_demo_adds_no_snapshot(lake):
    build(lake)
    before = lake.catalog().load_table("raw.retail_events").metadata.current_snapshot_id
    build(lake)
    table = lake.catalog().load_table("raw.retail_events")
    assert table.metadata.current_snapshot_id == before
    assert table.scan().to_arrow().num_rows == EVENTS
