"""Incremental runs cost what changed (issue 12): the retail pipeline's
`historical.sales_hourly` (incremental_by_key, merge = "sum", partitioned by
month) after a first run, a run with no new events, new events in recent hours
and late events in an old hour. Each step is checked against DuckDB over the raw
table's files, and its cost by the files PyIceberg sees change."""

import json
from datetime import datetime

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
        "unit_price": [__import__("decimal").Decimal("450.00")] * count,
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
    assert (idle["rows"], idle["files"], idle["files_deleted"]) == (0, 0, None), idle
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
