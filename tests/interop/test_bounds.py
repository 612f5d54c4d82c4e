"""Issue 11 B: the column bounds of every data file we write hold for every value in
it, so engines that prune files by bounds (PyIceberg here) count what DuckDB counts
over the same Parquet files read without any pruning.

Every table of a lake holding the generator's raw table, the retail pipeline's
models (`icefjord demo`) and a model of long strings, NaN and nulls is filtered at
the edges of its values: equal to the minimum and maximum, just below and above
them, strings past Iceberg's 16-character truncation.
"""

import json
from decimal import Decimal

import duckdb
import pytest
from pyiceberg.expressions import (
    EqualTo,
    GreaterThan,
    GreaterThanOrEqual,
    IsNaN,
    IsNull,
    LessThan,
    LessThanOrEqual,
    NotNaN,
)
from pyiceberg.types import (
    BinaryType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
)

LONG = "c" + "x" * 99
WIDE = "é" + "ü" * 40

LONG_STRINGS = f"""name = "bounds"

[[models]]
name = "historical.long_strings"
kind = "table"
sort_by = ["n"]
"""

# A first row group (2^20 rows) of strings longer than Parquet's 64-byte statistics,
# then a second holding 'a'; NaN, nulls and signed zeros among the doubles.
LONG_STRINGS_SQL = f"""SELECT value AS n,
  CASE WHEN value < 1048576 THEN '{LONG}' ELSE 'a' END AS s,
  CASE WHEN value % 2 = 0 THEN '{WIDE}' ELSE 'éa' END AS u,
  CASE WHEN value % 5 = 0 THEN CAST('NaN' AS DOUBLE)
       WHEN value % 5 = 1 THEN NULL
       WHEN value % 5 = 2 THEN CAST(-0.0 AS DOUBLE)
       ELSE CAST(value AS DOUBLE) / 4 END AS d
FROM (SELECT unnest(range(0, 1048578)) AS value) AS g
"""

CHECKED = (IntegerType, LongType, StringType, BinaryType, DecimalType, DoubleType)


@pytest.fixture(scope="module")
def built(icefjord_bin, tmp_path_factory):
    from conftest import Lake

    root = tmp_path_factory.mktemp("bounds")
    lake = Lake(icefjord_bin, root / "lake")
    out = lake.run("demo", "--events", "20000", "-o", "json")
    assert out.returncode == 0, out.stderr
    jobs = root / "jobs"
    jobs.mkdir()
    (jobs / "pipeline.toml").write_text(LONG_STRINGS)
    (jobs / "long_strings.sql").write_text(LONG_STRINGS_SQL)
    out = lake.run("run", str(jobs))
    assert out.returncode == 0, out.stderr + out.stdout
    return lake


def edge_filters(name, field_type, low, high):
    """(PyIceberg filter, DuckDB predicate, its parameter) at the edges of [low, high]."""
    cases = [
        (EqualTo(name, low), f'"{name}" = ?', low),
        (EqualTo(name, high), f'"{name}" = ?', high),
        (GreaterThanOrEqual(name, high), f'"{name}" >= ?', high),
        (LessThanOrEqual(name, low), f'"{name}" <= ?', low),
        (GreaterThan(name, low), f'"{name}" > ?', low),
        (LessThan(name, high), f'"{name}" < ?', high),
        (GreaterThan(name, high), f'"{name}" > ?', high),
        (LessThan(name, low), f'"{name}" < ?', low),
    ]
    if isinstance(field_type, (IntegerType, LongType)):
        cases += [
            (GreaterThanOrEqual(name, high + 1), f'"{name}" >= ?', high + 1),
            (LessThanOrEqual(name, low - 1), f'"{name}" <= ?', low - 1),
        ]
    if isinstance(field_type, BinaryType):
        cases += [
            (GreaterThanOrEqual(name, high + b"\x00"), f'"{name}" >= ?', high + b"\x00"),
            (GreaterThan(name, high[:16]), f'"{name}" > ?', high[:16]),
            (LessThan(name, low[:16] + b"\xff"), f'"{name}" < ?', low[:16] + b"\xff"),
        ]
    if isinstance(field_type, StringType):
        above = high + "a"
        cases += [
            (GreaterThanOrEqual(name, above), f'"{name}" >= ?', above),
            (GreaterThan(name, "b"), f'"{name}" > ?', "b"),
            (GreaterThan(name, high[:16]), f'"{name}" > ?', high[:16]),
            (LessThan(name, low[:16] + "\U0010ffff"), f'"{name}" < ?', low[:16] + "\U0010ffff"),
        ]
        if low:
            below = low[:-1]
            cases.append((LessThanOrEqual(name, below), f'"{name}" <= ?', below))
    if isinstance(field_type, DecimalType):
        step = Decimal(1).scaleb(-field_type.scale)
        cases += [
            (GreaterThanOrEqual(name, high + step), f'"{name}" >= ?', high + step),
            (LessThanOrEqual(name, low - step), f'"{name}" <= ?', low - step),
        ]
    return cases


def data_files(table):
    return [task.file.file_path.removeprefix("file://") for task in table.scan().plan_files()]


def tables(lake):
    catalog = lake.catalog()
    for namespace in catalog.list_namespaces():
        for ident in catalog.list_tables(namespace):
            yield ".".join(ident), catalog.load_table(ident)


def check_edges(lake):
    """Compare PyIceberg and DuckDB at the edges of every column of every table;
    returns the names of the tables checked and the number of filters."""
    seen = set()
    checked = 0
    for name, table in tables(lake):
        files = data_files(table)
        if not files:
            continue
        seen.add(name)
        con = duckdb.connect()
        # Loaded into a DuckDB table: counted without any pruning (DuckDB prunes
        # row groups for isnan() by min/max statistics, which exclude NaN).
        con.read_parquet(files).create("t")
        for field in table.schema().fields:
            if not isinstance(field.field_type, CHECKED):
                continue
            column = f'"{field.name}"'
            not_nan = f" AND NOT isnan({column})" if isinstance(field.field_type, DoubleType) else ""
            low, high = con.execute(
                f"SELECT min({column}), max({column}) FROM t WHERE {column} IS NOT NULL{not_nan}"
            ).fetchone()
            if low is None:
                continue
            for row_filter, predicate, value in edge_filters(field.name, field.field_type, low, high):
                expected = con.execute(f"SELECT count(*) FROM t WHERE {predicate}{not_nan}", [value]).fetchone()[0]
                got = table.scan(row_filter=row_filter).to_arrow().num_rows
                assert got == expected, f"{name}: {row_filter}: PyIceberg {got}, DuckDB {expected}"
                checked += 1
    return seen, checked


def test_pyiceberg_prunes_no_file_that_holds_a_match(built):
    seen, checked = check_edges(built)
    assert {"raw.retail_events", "historical.sales_hourly", "historical.long_strings"} <= seen
    assert checked > 100


def test_the_sinks_files_prune_right_too(lake, kafka):
    from test_ingest import BAD_VALUES, good_event, ingest

    kafka.create_topic("retail-bounds", partitions=2)
    producer = kafka.producer()
    for i in range(300):
        event = {**good_event(i), "product_id": f"P{'é' * (i % 40)}{i}"}
        value = BAD_VALUES[i % len(BAD_VALUES)] if i % 7 == 0 else json.dumps(event).encode()
        producer.produce("retail-bounds", key=str(i).encode(), value=value)
    producer.flush(60)
    out = ingest(lake, kafka, "retail-bounds")
    assert out.returncode == 0, out.stderr
    seen, checked = check_edges(lake)
    assert {"raw.retail_events", "raw.retail_events_dlq"} <= seen
    assert checked > 50


def test_the_issue_filter_keeps_the_long_string_file(built):
    table = built.catalog().load_table("historical.long_strings")
    assert table.scan(row_filter="s > 'b'").to_arrow().num_rows == 1048576
    assert table.scan(row_filter=EqualTo("s", LONG)).to_arrow().num_rows == 1048576
    assert table.scan(row_filter=EqualTo("s", "a")).to_arrow().num_rows == 2


def test_nan_and_null_counts_let_no_file_be_skipped(built):
    table = built.catalog().load_table("historical.long_strings")
    files = data_files(table)
    con = duckdb.connect()
    con.read_parquet(files).create("t")
    for row_filter, predicate in [
        (IsNaN("d"), "isnan(d)"),
        (NotNaN("d"), "NOT isnan(d)"),
        (IsNull("d"), "d IS NULL"),
        (EqualTo("d", 0.0), "d = 0.0 AND NOT isnan(d)"),
        (LessThan("d", 0.0), "d < 0.0 AND NOT isnan(d)"),
        (LessThanOrEqual("d", -0.0), "d <= 0.0 AND NOT isnan(d)"),
    ]:
        expected = con.execute(f"SELECT count(*) FROM t WHERE {predicate}").fetchone()[0]
        got = table.scan(row_filter=row_filter).to_arrow().num_rows
        assert got == expected, f"{row_filter}: PyIceberg {got}, DuckDB {expected}"
    # The manifest's own counts are the file's.
    for task in table.scan().plan_files():
        counted = con.execute(
            "SELECT count(*) FILTER (WHERE isnan(d)), count(*) FILTER (WHERE d IS NULL) "
            "FROM read_parquet($f)",
            {"f": task.file.file_path.removeprefix("file://")},
        ).fetchone()
        field_id = table.schema().find_field("d").field_id
        assert (task.file.nan_value_counts[field_id], task.file.null_value_counts[field_id]) == counted
