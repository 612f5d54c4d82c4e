"""Real Spark 3.5 + Iceberg 1.10 reads and maintains the tables icefjord writes.

Each maintenance operation is one a user will run on our tables (issue 11 part C). What
the table holds afterwards is checked with PyIceberg and DuckDB, never with icefjord, and
the expected rows come from the table as PyIceberg read it *before* Spark touched it.
Whether icefjord's readers and writers cope afterwards is tested elsewhere.
"""

from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

TABLE = "raw.retail_events"
EVENTS = 5000


def generate(lake, events: int = EVENTS) -> None:
    out = lake.run("generate", "--kind", "retail", "--events", str(events))
    assert out.returncode == 0, out.stderr


def generate_in_two_commits(lake) -> None:
    """Two appends, so every day partition has two small files and there are two snapshots."""
    generate(lake, EVENTS // 2)
    generate(lake, EVENTS)


def scan(lake, table: str = TABLE) -> pa.Table:
    return lake.catalog().load_table(table).scan().to_arrow()


def totals(rows: pa.Table) -> tuple[int, Decimal]:
    """(row count, sum of quantity * unit_price), computed by DuckDB over PyIceberg's rows."""
    db = duckdb.connect()
    db.register("t", rows)
    return db.execute("SELECT count(*), sum(quantity * unit_price) FROM t").fetchone()


def same_rows(a: pa.Table, b: pa.Table) -> bool:
    """The two tables hold the same multiset of rows (DuckDB EXCEPT ALL both ways)."""
    db = duckdb.connect()
    db.register("a", a)
    db.register("b", b)
    (left,) = db.execute("SELECT count(*) FROM (SELECT * FROM a EXCEPT ALL SELECT * FROM b)").fetchone()
    (right,) = db.execute("SELECT count(*) FROM (SELECT * FROM b EXCEPT ALL SELECT * FROM a)").fetchone()
    return a.num_rows == b.num_rows and left == 0 and right == 0


def data_files(lake, table: str = TABLE) -> list[str]:
    return [t.file.file_path for t in lake.catalog().load_table(table).scan().plan_files()]


def test_spark_reads_generated_retail_events_like_pyiceberg_and_duckdb(lake, spark):
    generate(lake)
    assert ["raw"] in spark.sql(lake, "SHOW NAMESPACES IN icefjord")
    assert ["raw", "retail_events", False] in spark.sql(lake, "SHOW TABLES IN icefjord.raw")

    [[n, amount]] = spark.sql(
        lake, f"SELECT count(*), sum(quantity * unit_price) FROM icefjord.{TABLE}"
    )
    assert (n, Decimal(amount)) == totals(scan(lake))
    assert n == EVENTS

    table = lake.catalog().load_table(TABLE)
    snapshots = spark.snapshots(lake, TABLE)
    assert [s["snapshot_id"] for s in snapshots] == [s.snapshot_id for s in table.snapshots()]
    assert snapshots[-1]["operation"] == "append"
    assert int(snapshots[-1]["summary"]["total-records"]) == EVENTS


def test_rewrite_data_files_compacts_to_the_same_rows(lake, spark):
    generate_in_two_commits(lake)
    before, files_before = scan(lake), data_files(lake)

    result = spark.rewrite_data_files(lake, TABLE)

    assert result["rewritten_data_files_count"] == len(files_before)
    files_after = data_files(lake)
    assert len(files_after) < len(files_before), "two files per day become one"
    assert not set(files_after) & set(files_before)
    assert same_rows(scan(lake), before)
    head = lake.catalog().load_table(TABLE).current_snapshot()
    assert head.summary.operation.value == "replace"


def test_expire_snapshots_keeps_only_the_head_and_deletes_unreachable_files(lake, spark):
    generate_in_two_commits(lake)
    spark.rewrite_data_files(lake, TABLE)  # the first files are now unreachable from the head
    before = scan(lake)
    table = lake.catalog().load_table(TABLE)
    assert len(table.snapshots()) == 3
    old_manifest_lists = [Path(s.manifest_list.removeprefix("file:")) for s in table.snapshots()[:-1]]
    assert all(path.exists() for path in old_manifest_lists)

    result = spark.expire_snapshots(lake, TABLE, retain_last=1)

    table = lake.catalog().load_table(TABLE)
    assert [s.snapshot_id for s in table.snapshots()] == [table.current_snapshot().snapshot_id]
    assert result["deleted_data_files_count"] > 0
    for path in old_manifest_lists:
        assert not path.exists(), path
    assert same_rows(scan(lake), before)


@pytest.mark.parametrize("mode", ["copy-on-write", "merge-on-read"])
def test_delete_where_removes_exactly_the_matching_rows(lake, spark, mode):
    generate(lake)
    spark.set_properties(lake, TABLE, {"write.delete.mode": mode})
    before = scan(lake)
    db = duckdb.connect()
    db.register("t", before)
    expected = db.sql("SELECT * FROM t WHERE NOT (store_id = 3)").to_arrow_table()
    assert 0 < expected.num_rows < before.num_rows

    spark.delete_where(lake, TABLE, "store_id = 3")

    assert same_rows(scan(lake), expected)
    head = lake.catalog().load_table(TABLE).current_snapshot()
    deletes = int(head.summary.additional_properties.get("total-position-deletes", "0"))
    if mode == "merge-on-read":
        assert deletes == before.num_rows - expected.num_rows, "position deletes, files kept"
    else:
        assert deletes == 0, "files rewritten without the deleted rows"


def test_rename_column_keeps_the_field_id_and_the_values(lake, spark):
    generate(lake)
    before = scan(lake)
    field_id = lake.catalog().load_table(TABLE).schema().find_field("store_id").field_id

    spark.rename_column(lake, TABLE, "store_id", "store")

    schema = lake.catalog().load_table(TABLE).schema()
    assert schema.find_field("store").field_id == field_id
    assert "store_id" not in schema.column_names
    assert same_rows(scan(lake).rename_columns(before.column_names), before)


def test_drop_then_add_a_column_with_the_same_name_reads_null_for_old_rows(lake, spark):
    generate(lake)
    before = scan(lake)
    old_id = lake.catalog().load_table(TABLE).schema().find_field("store_id").field_id

    spark.drop_column(lake, TABLE, "store_id")
    spark.add_column(lake, TABLE, "store_id", "int")

    schema = lake.catalog().load_table(TABLE).schema()
    assert schema.find_field("store_id").field_id != old_id
    after = scan(lake)
    assert after.num_rows == before.num_rows
    assert after["store_id"].null_count == before.num_rows, "the dropped column's values are gone"
    assert same_rows(after.drop_columns(["store_id"]), before.drop_columns(["store_id"]))


@pytest.mark.parametrize(
    "column, spark_type, iceberg_type, arrow_type",
    [
        ("quantity", "bigint", "long", pa.int64()),
        ("unit_price", "decimal(12,2)", "decimal(12, 2)", pa.decimal128(12, 2)),
    ],
)
def test_alter_column_type_promotes_and_keeps_the_values(
    lake, spark, column, spark_type, iceberg_type, arrow_type
):
    generate(lake)
    before = scan(lake)

    spark.alter_column_type(lake, TABLE, column, spark_type)

    table = lake.catalog().load_table(TABLE)
    assert str(table.schema().find_field(column).field_type) == iceberg_type
    after = scan(lake)
    assert after.schema.field(column).type == arrow_type
    assert totals(after) == totals(before)
    i = before.schema.get_field_index(column)
    assert same_rows(after, before.set_column(i, column, before[column].cast(arrow_type)))


def test_move_column_reorders_the_schema_not_the_values(lake, spark):
    generate(lake)
    before = scan(lake)
    ids = {f.name: f.field_id for f in lake.catalog().load_table(TABLE).schema().fields}

    spark.move_column(lake, TABLE, "unit_price")
    spark.move_column(lake, TABLE, "store_id", after="quantity")

    schema = lake.catalog().load_table(TABLE).schema()
    names = [f.name for f in schema.fields]
    assert names[0] == "unit_price"
    assert names.index("store_id") == names.index("quantity") + 1
    assert {f.name: f.field_id for f in schema.fields} == ids
    assert same_rows(scan(lake).select(before.column_names), before)
