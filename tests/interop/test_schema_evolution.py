"""PyIceberg changes raw.retail_events' schema as another engine would (rename,
drop and re-add under the old name, promote int to long); icefjord must then read
every column by Iceberg field id and keep writing. Expected values come from
PyIceberg reading the same rows, never from icefjord."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.types import LongType, StringType

ROOT = Path(__file__).resolve().parents[2]
TABLE = "raw.retail_events"


def generate(lake, events: int):
    out = lake.run("generate", "--kind", "retail", "--events", str(events))
    assert out.returncode == 0, out.stderr
    return out


def load(lake):
    return lake.catalog().load_table(TABLE)


def column(lake, name: str, row_filter: str = "True") -> pa.ChunkedArray:
    """Column `name` of every row PyIceberg reads (after `row_filter`)."""
    return load(lake).scan(row_filter=row_filter, selected_fields=(name,)).to_arrow()[name]


def rename_store_id(lake):
    table = load(lake)
    with table.update_schema() as update:
        update.rename_column("store_id", "store")
    # Another engine's rows, written under the new name.
    table = load(lake)
    table.append(table.scan(limit=1).to_arrow())


def test_a_column_renamed_by_pyiceberg_is_read_by_field_id(lake):
    generate(lake, 2000)
    rename_store_id(lake)

    store = column(lake, "store")
    assert len(store) == 2001
    ours = lake.sql(f"SELECT count(store) AS n, sum(store) AS total FROM {TABLE}")[0]
    assert ours == {"n": pc.count(store).as_py(), "total": pc.sum(store).as_py()}

    # A predicate on the renamed column (pushed down, pruning row groups by the
    # file column's statistics) keeps every matching row.
    some = store[0].as_py()
    expected = len(column(lake, "store", f"store == {some}"))
    assert expected > 0
    ours = lake.sql(f"SELECT count(*) AS n FROM {TABLE} WHERE store = {some}")[0]
    assert ours["n"] == expected


def test_generate_writes_the_renamed_column_under_its_old_name(lake):
    generate(lake, 2000)
    rename_store_id(lake)
    generate(lake, 3000)

    store = column(lake, "store")
    assert len(store) == 3001
    assert pc.count(store).as_py() == 3001, "every row written by the generator has a store"
    ours = lake.sql(f"SELECT count(store) AS n, sum(store) AS total FROM {TABLE}")[0]
    assert ours == {"n": 3001, "total": pc.sum(store).as_py()}


def test_jobs_run_on_a_renamed_column_or_name_the_missing_one(lake, tmp_path):
    generate(lake, 2000)
    rename_store_id(lake)

    # The shipped pipeline reads store_id: it stops and names the column.
    out = lake.run("run", str(ROOT / "jobs" / "retail"), "-o", "json")
    assert out.returncode != 0
    assert "store_id" in out.stderr, out.stderr

    # A pipeline that reads the new name: a full rebuild, an incremental model
    # (the runner's filtered read) and a view of the rows past its boundary
    # (the fresh read of engine/src/fresh.rs).
    job = write_store_pipeline(tmp_path)
    out = lake.run("run", str(job), "-o", "json")
    assert out.returncode == 0, out.stderr

    raw = load(lake).scan(selected_fields=("store",)).to_arrow()
    expected = sorted(
        (r["store"], r["store_count"])
        for r in raw.group_by("store").aggregate([("store", "count")]).to_pylist()
    )
    built = lake.catalog().load_table("historical.events_by_store").scan().to_arrow()
    assert sorted((r["store"], r["events"]) for r in built.to_pylist()) == expected
    rows = lake.catalog().load_table("historical.store_events").scan().to_arrow()
    assert sorted(rows["store"].to_pylist()) == sorted(raw["store"].to_pylist())

    # Events past the boundary, written by the generator under the old name.
    generate(lake, 3000)
    new = lake.sql("SELECT n, with_store FROM unified.new_store_events")[0]
    assert new == {"n": 1000, "with_store": 1000}
    out = lake.run("run", str(job), "-o", "json")
    assert out.returncode == 0, out.stderr
    raw = load(lake).scan(selected_fields=("store",)).to_arrow()
    rows = lake.catalog().load_table("historical.store_events").scan().to_arrow()
    assert len(rows) == 3001
    assert sorted(rows["store"].to_pylist()) == sorted(raw["store"].to_pylist())


STORE_PIPELINE = """name = "stores"

[[models]]
name = "historical.events_by_store"
kind = "table"
sql = "by_store.sql"

[[models]]
name = "historical.store_events"
kind = "append"
incremental_input = "raw.retail_events"
sql = "store_events.sql"

[[models]]
name = "unified.new_store_events"
kind = "view"
sql = "new_store_events.sql"
"""


def write_store_pipeline(root: Path) -> Path:
    job = root / "stores"
    job.mkdir()
    (job / "pipeline.toml").write_text(STORE_PIPELINE)
    (job / "by_store.sql").write_text(
        f"SELECT store, count(*) AS events FROM {TABLE} GROUP BY store"
    )
    (job / "store_events.sql").write_text(
        f"SELECT _kafka_partition, _kafka_offset, store FROM {TABLE}"
    )
    (job / "new_store_events.sql").write_text(
        'SELECT count(*) AS n, count(store) AS with_store '
        'FROM raw."retail_events@since:historical.store_events"'
    )
    return job


def test_a_column_dropped_and_added_again_reads_null_for_older_rows(lake):
    generate(lake, 2000)
    table = load(lake)
    with table.update_schema() as update:
        update.delete_column("category")
    table = load(lake)
    with table.update_schema() as update:
        update.add_column("category", StringType())

    category = column(lake, "category")
    assert len(category) == 2000 and pc.count(category).as_py() == 0
    ours = lake.sql(f"SELECT count(*) AS n, count(category) AS c FROM {TABLE}")[0]
    assert ours == {"n": 2000, "c": 0}

    # New rows of the new column are read; the old values never come back.
    table = load(lake)
    row = table.scan(limit=1).to_arrow()
    row = row.set_column(row.schema.get_field_index("category"), "category",
                         pa.array(["Books"], pa.string()))
    table.append(row)
    ours = lake.sql(
        f"SELECT category, count(*) AS n FROM {TABLE} WHERE category IS NOT NULL GROUP BY 1"
    )
    assert ours == [{"category": "Books", "n": 1}]

    # The generator's category goes to the new column.
    generate(lake, 2500)
    category = column(lake, "category")
    assert pc.count(category).as_py() == 501
    ours = lake.sql(f"SELECT count(category) AS c FROM {TABLE}")[0]
    assert ours["c"] == 501


def test_a_dropped_column_the_generator_still_writes_is_refused_by_name(lake):
    generate(lake, 2000)
    table = load(lake)
    with table.update_schema() as update:
        update.delete_column("product_id")
    out = lake.run("generate", "--kind", "retail", "--events", "2500")
    assert out.returncode != 0
    assert "product_id" in out.stderr and "dropped" in out.stderr, out.stderr
    assert len(column(lake, "quantity")) == 2000, "nothing was written"


def test_an_int_column_promoted_to_long_reads_old_files_widened(lake):
    generate(lake, 2000)
    table = load(lake)
    with table.update_schema() as update:
        update.update_column("quantity", LongType())

    quantity = column(lake, "quantity")
    assert quantity.type == pa.int64()
    ours = lake.sql(
        f"SELECT arrow_typeof(quantity) AS t, sum(quantity) AS total, "
        f"max(quantity) AS top FROM {TABLE} GROUP BY 1"
    )
    assert ours == [{"t": "Int64", "total": pc.sum(quantity).as_py(), "top": pc.max(quantity).as_py()}]

    generate(lake, 2500)
    quantity = column(lake, "quantity")
    assert len(quantity) == 2500
    ours = lake.sql(f"SELECT sum(quantity) AS total FROM {TABLE}")[0]
    assert ours["total"] == pc.sum(quantity).as_py()


def test_the_sink_lands_a_producers_old_key_in_the_renamed_column(lake, kafka):
    from test_ingest import good_event, ingest

    def produce(events):
        producer = kafka.producer()
        for i, event in events:
            producer.produce("retail-renamed", key=str(i).encode(), value=json.dumps(event).encode())
        producer.flush(60)

    kafka.create_topic("retail-renamed", partitions=1)
    first = [(i, good_event(i)) for i in range(40)]
    produce(first)
    out = ingest(lake, kafka, "retail-renamed")
    assert out.returncode == 0, out.stderr

    table = load(lake)
    with table.update_schema() as update:
        update.rename_column("store_id", "store")
    # The producer still says store_id.
    second = [(i, good_event(i)) for i in range(40, 100)]
    produce(second)
    out = ingest(lake, kafka, "retail-renamed")
    assert out.returncode == 0, out.stderr

    store = column(lake, "store")
    sent = [event["store_id"] for _, event in first + second]
    assert len(store) == 100
    assert sorted(store.to_pylist()) == sorted(sent)
    ours = lake.sql(f"SELECT count(store) AS n, sum(store) AS total FROM {TABLE}")[0]
    assert ours == {"n": 100, "total": sum(sent)}
    dead = lake.sql("SELECT count(*) AS n FROM raw.retail_events_dlq")[0]
    assert dead["n"] == 0


def test_the_clickstream_generator_writes_a_renamed_column(lake):
    """The JSON generators decode their events like the sink: a column renamed
    since keeps the producer's key, and lands under its new name."""
    out = lake.run("generate", "--kind", "clickstream", "--events", "1000")
    assert out.returncode == 0, out.stderr
    table = lake.catalog().load_table("raw.clickstream_events")
    with table.update_schema() as update:
        update.rename_column("user_id", "customer_id")
    out = lake.run("generate", "--kind", "clickstream", "--events", "2000")
    assert out.returncode == 0, out.stderr
    rows = lake.catalog().load_table("raw.clickstream_events").scan().to_arrow()
    assert rows.num_rows == 2000
    customer = rows["customer_id"]
    assert customer.null_count == 0
    ours = lake.sql("SELECT count(customer_id) AS n FROM raw.clickstream_events")[0]
    assert ours["n"] == 2000
