"""File layouts of raw.retail_events for the pipeline benchmark's shapes.

The same rows, three ways (every engine then reads the chosen layout's files):

- `sink`: the table `icefjord generate` writes (the Kafka sink's layout: many
  small files per day partition). Nothing to do here.
- `big-files`: the rows rewritten by PyIceberg into a fresh lake as a daily
  batch writer would: whole days appended at a time (one append per ~2 M rows),
  one Parquet file per day partition, rows in arrival order.
- `compacted`: the rows rewritten by PyIceberg in one transaction, one file per
  day partition (PyIceberg's 512 MiB target is never reached), rows sorted by
  (store_id, product_id, event_time) as a sort-strategy compaction
  (Spark's `rewrite_data_files`) leaves them.

The fresh lake's table copies the source table's schema (field ids), partition
spec and properties, so `icefjord --lake <dst>` reads it as it reads the sink's.

Run as a script (a child process, so the benchmark's own RSS stays small):
    python layout.py SRC_LAKE DST_LAKE LAYOUT
prints {"files": n, "rows": n} on stdout.
"""

import json
import sys
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

TABLE = "raw.retail_events"
# Whole days are appended together until a batch holds this many rows.
BATCH_ROWS = 2_000_000
LAYOUTS = ("sink", "big-files", "compacted")


def catalog(lake: str):
    from pyiceberg.catalog.sql import SqlCatalog

    return SqlCatalog("icefjord", uri=f"sqlite:///{lake}/catalog.db",
                      warehouse=f"file://{lake}/warehouse")


def day_batches(table):
    """Arrow tables of whole days in time order, each of about BATCH_ROWS rows
    (or one day, when a day holds more)."""
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

    times = table.scan(selected_fields=("event_time",)).to_arrow()["event_time"]
    per_day = pc.value_counts(pc.cast(times, pa.date32()))
    counts = sorted((d.as_py(), n.as_py()) for d, n in zip(per_day.field("values"), per_day.field("counts")))
    del times, per_day
    group, rows = [], 0
    for day, n in counts:
        group.append(day)
        rows += n
        if rows >= BATCH_ROWS or day == counts[-1][0]:
            lo, hi = group[0], group[-1] + timedelta(days=1)
            yield table.scan(row_filter=And(GreaterThanOrEqual("event_time", lo.isoformat() + "T00:00:00"),
                                            LessThan("event_time", hi.isoformat() + "T00:00:00"))).to_arrow()
            group, rows = [], 0


def rewrite(src_lake: str, dst_lake: str, layout: str) -> dict:
    """Writes `layout` of src_lake's table into a fresh lake at dst_lake."""
    if layout not in LAYOUTS[1:]:
        raise SystemExit(f"layout {layout!r}: one of {', '.join(LAYOUTS[1:])}")
    source = catalog(src_lake).load_table(TABLE)
    Path(dst_lake).mkdir(parents=True)
    target_catalog = catalog(dst_lake)
    target_catalog.create_namespace("raw")
    target = target_catalog.create_table(TABLE, schema=source.schema(), partition_spec=source.spec(),
                                         properties=source.properties)
    rows = 0
    if layout == "big-files":
        for batch in day_batches(source):
            target.append(batch)
            rows += batch.num_rows
    else:
        with target.transaction() as tx:
            for batch in day_batches(source):
                tx.append(batch.sort_by([("store_id", "ascending"), ("product_id", "ascending"),
                                         ("event_time", "ascending")]))
                rows += batch.num_rows
    files = len(list(target_catalog.load_table(TABLE).scan().plan_files()))
    return {"files": files, "rows": rows}


if __name__ == "__main__":
    src, dst, kind = sys.argv[1:4]
    print(json.dumps(rewrite(str(Path(src).resolve()), str(Path(dst).resolve()), kind)))
