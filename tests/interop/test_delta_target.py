"""Delta outputs (`target = "delta"`) read by delta-rs's Python package, a Delta
reader no one here wrote: the table at its location must equal DuckDB's result
of the same definition over the raw Parquet files, after a first run and after
a second one; every version must carry the run's commit id, and a failed audit
must leave the Delta log untouched."""

import json
from pathlib import Path

import duckdb
from deltalake import DeltaTable

from test_retail_pipeline import normal, raw_files

PIPELINE = """name = "export"

[[models]]
name = "export.category_hourly"
kind = "table"
target = "delta"
sql = "category_hourly.sql"
partition_by = ["category"]

[[models.audits]]
check = "not_null"
columns = ["hour", "category"]

[[models]]
name = "export.sales"
kind = "append"
target = "delta"
sql = "sales.sql"
"""

CATEGORY_HOURLY = """SELECT date_trunc('hour', event_time) AS hour, category,
       sum(CASE WHEN transaction_type = 'SALE' THEN quantity * unit_price ELSE 0 END) AS sales_amount,
       count(*) AS events
FROM raw.retail_events GROUP BY 1, 2"""

SALES = """SELECT _kafka_partition, _kafka_offset, event_time, store_id, quantity * unit_price AS amount
FROM raw.retail_events@since_last_run WHERE transaction_type = 'SALE'"""

# The same definitions, written for DuckDB.
DUCK_CATEGORY_HOURLY = """SELECT date_trunc('hour', event_time), category,
       sum(CASE WHEN transaction_type = 'SALE' THEN quantity * unit_price ELSE 0 END), count(*)
FROM raw GROUP BY ALL ORDER BY 1, 2"""
DUCK_SALES = """SELECT _kafka_partition, _kafka_offset, event_time, store_id, quantity * unit_price
FROM raw WHERE transaction_type = 'SALE' ORDER BY 1, 2"""


def write_pipeline(root: Path, sales_sql: str, audit_min: int | None = None) -> Path:
    folder = root / "export"
    folder.mkdir(exist_ok=True)
    toml = PIPELINE
    if audit_min is not None:
        toml += f'\n[[models.audits]]\ncheck = "row_count_min"\nmin = {audit_min}\n'
    (folder / "pipeline.toml").write_text(toml)
    (folder / "category_hourly.sql").write_text(CATEGORY_HOURLY)
    (folder / "sales.sql").write_text(sales_sql)
    return folder


def duck(files, query):
    con = duckdb.connect()
    con.read_parquet(files).create_view("raw")
    return [tuple(normal(v) for v in row) for row in con.execute(query).fetchall()]


def delta(path: Path, query: str):
    """`query` over the Delta table at `path` (as `t`), read by delta-rs."""
    con = duckdb.connect()
    table = DeltaTable(str(path)).to_pyarrow_table()
    con.register("t", table)
    return [tuple(normal(v) for v in row) for row in con.execute(query).fetchall()]


def test_delta_outputs_equal_duckdb_and_carry_the_run(lake, tmp_path):
    out = lake.run("generate", "--kind", "retail", "--events", "4000", "--seed", "3")
    assert out.returncode == 0, out.stderr
    # The append model reads every sale on the first run; the second run's query
    # names the positions past the first run's (a test-only stand-in for
    # incremental_input, which Delta outputs do not take).
    first_sales = SALES.replace("raw.retail_events@since_last_run", "raw.retail_events")
    job = write_pipeline(tmp_path, first_sales)
    out = lake.run("run", str(job), "--run-id", "first", "-o", "json")
    assert out.returncode == 0, out.stdout + out.stderr

    hourly = lake.path / "warehouse" / "export" / "category_hourly"
    sales = lake.path / "warehouse" / "export" / "sales"
    files = raw_files(lake)
    expected = duck(files, DUCK_CATEGORY_HOURLY)
    assert expected
    assert delta(hourly, "SELECT hour, category, sales_amount, events FROM t ORDER BY 1, 2") == expected
    assert delta(sales, "SELECT * FROM t ORDER BY 1, 2") == duck(files, DUCK_SALES)
    # Partitioned by value, as Delta readers expect.
    assert DeltaTable(str(hourly)).metadata().partition_columns == ["category"]
    history = DeltaTable(str(hourly)).history()
    assert history[0]["icefjord.commit-id"] == "run:export:first", history[0]

    # More raw events and a second run: the full refresh is recomputed; the
    # append model adds only the sales past the first run's offsets.
    out = lake.run("generate", "--kind", "retail", "--events", "6000", "--seed", "3")
    assert out.returncode == 0, out.stderr
    seen = delta(sales, "SELECT _kafka_partition, max(_kafka_offset) FROM t GROUP BY 1")
    past = " ".join(f"WHEN {int(p)} THEN {int(o)}" for p, o in seen)
    second_sales = SALES.replace(
        "raw.retail_events@since_last_run WHERE",
        f"raw.retail_events WHERE _kafka_offset > CASE _kafka_partition {past} ELSE -1 END AND",
    )
    job = write_pipeline(tmp_path, second_sales)
    out = lake.run("run", str(job), "--run-id", "second", "-o", "json")
    assert out.returncode == 0, out.stdout + out.stderr
    files = raw_files(lake)
    assert delta(hourly, "SELECT hour, category, sales_amount, events FROM t ORDER BY 1, 2") == duck(
        files, DUCK_CATEGORY_HOURLY
    )
    assert delta(sales, "SELECT * FROM t ORDER BY 1, 2") == duck(files, DUCK_SALES)
    # Icefjord reads the same version it pinned, and lists it.
    ours = lake.sql("SELECT count(*) AS n FROM export.sales")
    assert ours[0]["n"] == delta(sales, "SELECT count(*) FROM t")[0][0]
    out = lake.run("tables", "-o", "json")
    assert out.returncode == 0, out.stderr
    listed = {(t["namespace"], t["table"]): t for t in json.loads(out.stdout)}
    assert listed[("export", "sales")]["format"] == "delta"
    assert listed[("export", "sales")]["snapshot_id"] == DeltaTable(str(sales)).version()
    assert listed[("raw", "retail_events")]["format"] == "iceberg"

    # A failed audit: no new Delta version.
    version = DeltaTable(str(hourly)).version()
    job = write_pipeline(tmp_path, second_sales, audit_min=10**9)
    out = lake.run("run", str(job), "--run-id", "third", "-o", "json")
    assert out.returncode == 1, out.stdout + out.stderr
    assert DeltaTable(str(hourly)).version() == version
    assert DeltaTable(str(sales)).version() == version
