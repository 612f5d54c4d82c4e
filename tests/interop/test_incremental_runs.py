"""Incremental runs cost what changed (issue 12): the retail pipeline's
`historical.sales_hourly` (incremental_by_key, merge = "sum", partitioned by
month) after a first run, a run with no new events, new events in recent hours
and late events in an old hour. Each step is checked against DuckDB over the raw
table's files, and its cost by the files PyIceberg sees change."""

import json
from datetime import datetime
from decimal import Decimal

import pyarrow as pa

from test_retail_pipeline import JOB, UNIFIED, check

HOURLY = "historical.sales_hourly"


def generate(lake, events):
    out = lake.run("generate", "--kind", "retail", "--events", str(events), "--seed", "5")
    assert out.returncode == 0, out.stderr


def run(lake):
    out = lake.run("run", str(JOB), "-o", "json")
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["status"] == "success", report
    return next(m for m in report["models"] if m["model"] == HOURLY)


def files(lake):
    """Path → month partition of every live file of the history."""
    table = lake.catalog().load_table(HOURLY)
    return {t.file.file_path: t.file.partition[0] for t in table.scan().plan_files()}


def snapshot(lake):
    return lake.catalog().load_table(HOURLY).current_snapshot().snapshot_id


def append_late_events(lake, hour: datetime, count: int):
    """`count` sales in `hour` appended by another writer (PyIceberg) with
    offsets past every partition's last one, as a producer's late events are."""
    raw = lake.catalog().load_table("raw.retail_events")
    top = {
        row["p"]: row["o"]
        for row in lake.sql("SELECT _kafka_partition AS p, max(_kafka_offset) AS o "
                            "FROM raw.retail_events GROUP BY 1")
    }
    schema = raw.schema().as_arrow()
    rows = {
        "event_time": [hour.replace(minute=i) for i in range(count)],
        "store_id": [3] * count,
        "product_id": ["Laptop"] * count,
        "category": ["Electronics"] * count,
        "transaction_type": ["SALE"] * count,
        "quantity": [2] * count,
        "unit_price": [Decimal("450.00")] * count,
        "_kafka_topic": ["retail_events"] * count,
        "_kafka_partition": [0] * count,
        "_kafka_offset": [top[0] + 1 + i for i in range(count)],
        "_kafka_timestamp": [None] * count,
    }
    raw.append(pa.Table.from_pydict(rows, schema=schema))


def test_incremental_runs_rewrite_only_the_files_new_keys_touch(lake):
    # ~46 days from 2023-10-27: three month partitions of history.
    generate(lake, 400_000)
    first = run(lake)
    assert first["rows"] > 0 and first["files"] >= 3, first
    check(lake, [HOURLY, *UNIFIED])
    before = files(lake)
    assert len(set(before.values())) == 3, before

    # No new event: nothing is read again, written or committed.
    head = snapshot(lake)
    idle = run(lake)
    assert (idle["status"], idle["rows"], idle["files"], idle["files_deleted"]) == \
        ("up_to_date", 0, 0, None), idle
    assert idle["rows_read"] == 0, idle
    assert snapshot(lake) == head
    assert files(lake) == before
    check(lake, [HOURLY, *UNIFIED])

    # New events in the latest hours: only the last month's files are rewritten.
    generate(lake, 402_000)
    recent = run(lake)
    after = files(lake)
    last_month = max(before.values())
    kept = {p for p, month in before.items() if month != last_month}
    assert kept <= set(after), "a file of an untouched month was rewritten"
    assert 1 <= recent["files_deleted"] <= len(before) - len(kept), recent
    assert recent["rows_read"] < first["rows_read"] / 3, (recent, first)
    assert recent["bytes_written"] > 0
    check(lake, [HOURLY, *UNIFIED])

    # Late events in the first hour of history: that month's files are merged,
    # the middle month's files stay as they are.
    append_late_events(lake, datetime(2023, 10, 27, 0), 5)
    late = run(lake)
    final = files(lake)
    middle = sorted(set(before.values()))[1]
    assert {p for p, m in before.items() if m == middle} <= set(final)
    assert late["files_deleted"] >= 1 and late["rows"] >= 1, late
    check(lake, [HOURLY, *UNIFIED])
    assert lake.sql(
        "SELECT sales_units, event_count FROM historical.sales_hourly "
        "WHERE hour = TIMESTAMP '2023-10-27 00:00:00' AND store_id = 3 AND product_id = 'Laptop'"
    )[0]["sales_units"] >= 10


# A sink-shaped source written by another engine (PyIceberg), and a pipeline of
# its own: the edge cases a review found in the incremental merge.
SOURCE_PIPELINE = """name = "edges"

[[models]]
name = "out.by_x"
kind = "incremental_by_key"
unique_key = ["x"]
merge = "sum"
incremental_input = "src.ev"

[[models.audits]]
check = "sql"
name = "whole_output"
sql = "SELECT 1 FROM (SELECT count(*) AS c FROM out.by_x) WHERE c < 3"
"""


def source(lake, rows, format_version="2"):
    """Append `rows` of (x, v) to src.ev (created with `format_version`), with
    offsets past the last one on partition 0."""
    from pyiceberg.schema import Schema
    from pyiceberg.types import DoubleType, IntegerType, LongType, NestedField, StringType

    if not lake.path.exists():
        out = lake.run("tables")  # creates the lake
        assert out.returncode == 0, out.stderr
    catalog = lake.catalog()
    if not catalog.table_exists("src.ev"):
        catalog.create_namespace_if_not_exists("src")
        schema = Schema(
            NestedField(1, "x", DoubleType(), required=False),
            NestedField(2, "v", LongType(), required=False),
            NestedField(3, "_kafka_topic", StringType(), required=True),
            NestedField(4, "_kafka_partition", IntegerType(), required=True),
            NestedField(5, "_kafka_offset", LongType(), required=True),
        )
        catalog.create_table("src.ev", schema, properties={"format-version": format_version})
    table = catalog.load_table("src.ev")
    offsets = table.scan(selected_fields=("_kafka_offset",)).to_arrow().column(0).to_pylist()
    start = max(offsets) + 1 if offsets else 0
    table.append(pa.Table.from_pydict({
        "x": [r[0] for r in rows],
        "v": [r[1] for r in rows],
        "_kafka_topic": ["ev"] * len(rows),
        "_kafka_partition": [0] * len(rows),
        "_kafka_offset": list(range(start, start + len(rows))),
    }, schema=table.schema().as_arrow()))


def run_edges(lake, tmp_path):
    job = tmp_path / "edges"
    job.mkdir(exist_ok=True)
    (job / "pipeline.toml").write_text(SOURCE_PIPELINE)
    (job / "by_x.sql").write_text("SELECT x, sum(v) AS v, count(*) AS n FROM src.ev GROUP BY x")
    return lake.run("run", str(job), "-o", "json")


def by_x(lake):
    rows = lake.sql("SELECT CAST(x AS VARCHAR) AS x, v, n FROM out.by_x ORDER BY x")
    return [(r["x"], r["v"], r["n"]) for r in rows]


def test_incremental_edges_nan_keys_v1_inputs_sql_audits_and_foreign_columns(lake, tmp_path):
    import math

    nan = math.nan
    # Format v1 (no sequence numbers): later runs must still see the new rows.
    source(lake, [(1.0, 1), (2.0, 1), (nan, 1)], format_version="1")
    out = run_edges(lake, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    source(lake, [(nan, 10), (3.0, 100)])
    out = run_edges(lake, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    # The NaN key is one key (merged, not added again); the whole-output SQL
    # audit (3 rows or more) passes on a run that wrote only 2 rows.
    assert by_x(lake) == [("1.0", 1, 1), ("2.0", 1, 1), ("3.0", 100, 1), ("NaN", 11, 2)]

    # A column another engine added to the output would be lost by a merge: refused.
    with lake.catalog().load_table("out.by_x").update_schema() as update:
        from pyiceberg.types import StringType
        update.add_column("note", StringType())
    source(lake, [(1.0, 5)])
    out = run_edges(lake, tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "has a column note that the query does not produce" in out.stderr, out.stderr
    assert by_x(lake)[0] == ("1.0", 1, 1)


def test_a_first_run_on_an_empty_input_creates_the_output(lake):
    # `generate --events 0` creates the empty raw table (and then reports that
    # it has no snapshot to show, exit 1): a pipeline deployed before its
    # first events.
    lake.run("generate", "--kind", "retail", "--events", "0", "--seed", "5")
    assert lake.sql("SELECT count(*) AS n FROM raw.retail_events") == [{"n": 0}]
    out = lake.run("run", str(JOB), "-o", "json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert lake.sql("SELECT count(*) AS n FROM unified.sales_hourly") == [{"n": 0}]
    generate(lake, 5_000)
    assert run(lake)["rows"] > 0
    check(lake, [HOURLY, *UNIFIED])


def test_a_merge_after_another_engine_evolved_the_partition_spec(lake):
    """Spark or PyIceberg may change an output's partitioning: files of the old
    spec that a merge replaces are deleted under their own spec (this panicked
    in the manifest writer), and the new files use the new spec."""
    generate(lake, 50_000)
    run(lake)
    with lake.catalog().load_table(HOURLY).update_spec() as update:
        update.add_identity("store_id")
    append_late_events(lake, datetime(2023, 10, 27, 0), 3)
    late = run(lake)
    assert late["files_deleted"] >= 1, late
    check(lake, [HOURLY, *UNIFIED])
    specs = {t.file.spec_id for t in lake.catalog().load_table(HOURLY).scan().plan_files()}
    assert specs == {0, 1}, specs
