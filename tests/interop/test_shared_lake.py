"""Spark changes our tables the way users' maintenance jobs do, and every Icefjord
command still gives the answer DuckDB computes over the same rows, or refuses
clearly (issue 11). Spark here is real Spark 3.5 + Iceberg 1.10 (the `spark`
fixture); DuckDB reads what PyIceberg scans, so no expected value comes from us."""

from decimal import Decimal

import duckdb

from test_ingest import ingest, produce
from test_positions import JOB, history_events, raw_counts, table, unified_events


def duck(lake, name, query):
    """`query` over table `name` as PyIceberg scans it (the relation is `t`)."""
    t = table(lake, name).scan().to_arrow()  # noqa: F841 (DuckDB reads the local)
    return duckdb.sql(query).fetchall()


def icefjord_totals(lake):
    row = lake.sql(
        "SELECT count(*) AS n, sum(quantity * unit_price) AS amount FROM raw.retail_events"
    )[0]
    return int(row["n"]), Decimal(str(row["amount"]))


def duck_totals(lake):
    n, amount = duck(lake, "raw.retail_events", "SELECT count(*), sum(quantity * unit_price) FROM t")[0]
    return int(n), Decimal(str(amount))


def generate(lake, events):
    out = lake.run("generate", "--kind", "retail", "--events", str(events), "--seed", "9")
    assert out.returncode == 0, out.stderr
    return out


def run(lake):
    out = lake.run("run", str(JOB), "--output", "json")
    assert out.returncode == 0, out.stderr


def test_compaction_and_expiry_of_the_raw_table(lake, spark):
    generate(lake, 3000)
    generate(lake, 4000)
    before = duck_totals(lake)
    spark.rewrite_data_files(lake, "raw.retail_events")
    spark.expire_snapshots(lake, "raw.retail_events", retain_last=1)
    assert len(table(lake, "raw.retail_events").metadata.snapshots) == 1
    assert icefjord_totals(lake) == before == duck_totals(lake)
    generate(lake, 6000)
    assert raw_counts(lake) == (6000, 6000)
    assert icefjord_totals(lake) == duck_totals(lake)


def test_compaction_and_expiry_of_the_history_keep_the_unified_views_exact(lake, spark):
    generate(lake, 4000)
    run(lake)
    spark.rewrite_data_files(lake, "historical.sales_hourly")
    assert unified_events(lake) == 4000
    spark.expire_snapshots(lake, "historical.sales_hourly", retain_last=1)
    assert unified_events(lake) == 4000
    generate(lake, 5000)
    spark.rewrite_data_files(lake, "raw.retail_events")
    spark.expire_snapshots(lake, "raw.retail_events", retain_last=1)
    assert unified_events(lake) == 5000
    run(lake)
    assert unified_events(lake) == 5000 == history_events(lake)


def test_a_copy_on_write_delete(lake, spark):
    generate(lake, 3000)
    spark.delete_where(lake, "raw.retail_events", "store_id = 3")
    assert icefjord_totals(lake) == duck_totals(lake)
    kept = icefjord_totals(lake)[0]
    assert kept < 3000
    # The generator goes on past the position; deleted events stay deleted.
    generate(lake, 3500)
    assert raw_counts(lake) == (kept + 500, kept + 500)
    assert icefjord_totals(lake) == duck_totals(lake)


def test_a_merge_on_read_delete_is_refused_clearly_not_ignored(lake, spark):
    generate(lake, 2000)
    spark.set_properties(lake, "raw.retail_events", {"write.delete.mode": "merge-on-read"})
    spark.delete_where(lake, "raw.retail_events", "store_id = 3")
    out = lake.run("sql", "SELECT count(*) FROM raw.retail_events")
    assert out.returncode != 0
    assert "delete files" in out.stderr, out.stderr


def test_the_sink_resumes_exactly_after_spark_compaction_and_expiry(lake, kafka, spark):
    kafka.create_topic("shared")
    produce(kafka, "shared", 300)
    assert ingest(lake, kafka, "shared").returncode == 0
    spark.rewrite_data_files(lake, "raw.retail_events")
    spark.expire_snapshots(lake, "raw.retail_events", retain_last=1)
    produce(kafka, "shared", 200)
    out = ingest(lake, kafka, "shared")
    assert out.returncode == 0, out.stderr
    assert raw_counts(lake) == (500, 500)
    assert icefjord_totals(lake) == duck_totals(lake)


def columns_agree(lake, columns):
    """icefjord and DuckDB (over PyIceberg's scan) give the same count and sum per column."""
    for c in columns:
        ours = lake.sql(f"SELECT count({c}) AS n, sum({c}) AS s FROM raw.retail_events")[0]
        n, s = duck(lake, "raw.retail_events", f"SELECT count({c}), sum({c}) FROM t")[0]
        assert (int(ours["n"]), Decimal(str(ours["s"] or 0))) == (n, Decimal(str(s or 0))), c


def test_spark_schema_changes_then_icefjord_reads_and_writes(lake, spark):
    generate(lake, 3000)
    spark.rename_column(lake, "raw.retail_events", "store_id", "store")
    spark.alter_column_type(lake, "raw.retail_events", "quantity", "bigint")
    spark.alter_column_type(lake, "raw.retail_events", "unit_price", "decimal(12,2)")
    spark.move_column(lake, "raw.retail_events", "category")
    columns_agree(lake, ["store", "quantity", "unit_price"])
    generate(lake, 4000)
    assert raw_counts(lake) == (4000, 4000)
    columns_agree(lake, ["store", "quantity", "unit_price"])
    assert icefjord_totals(lake) == duck_totals(lake)


def test_spark_drop_and_re_add_reads_nulls_for_older_rows(lake, spark):
    generate(lake, 2000)
    spark.drop_column(lake, "raw.retail_events", "product_id")
    spark.add_column(lake, "raw.retail_events", "product_id", "string")
    ours = lake.sql("SELECT count(product_id) AS n, count(*) AS rows FROM raw.retail_events")[0]
    assert (ours["n"], ours["rows"]) == (0, 2000)
    # The generator still writes product_id: it goes to the new column.
    generate(lake, 2500)
    (n,) = duck(lake, "raw.retail_events", "SELECT count(product_id) FROM t")[0]
    ours = lake.sql("SELECT count(product_id) AS n FROM raw.retail_events")[0]
    assert ours["n"] == n == 500


def test_a_column_spark_dropped_is_refused_by_the_writer_by_name(lake, spark):
    generate(lake, 1000)
    spark.drop_column(lake, "raw.retail_events", "category")
    columns_agree(lake, ["quantity", "store_id"])
    out = lake.run("generate", "--kind", "retail", "--events", "1500", "--seed", "9")
    assert out.returncode != 0
    assert "category" in out.stderr, out.stderr
    assert raw_counts(lake) == (1000, 1000)
