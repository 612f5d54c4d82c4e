"""The sink's input rules hold for every table it writes (issue 11 F): also for a
table with a binary column (Iceberg's binary reads as Arrow LargeBinary, which the
rules did not know, so the whole batch fell back to arrow-json: epoch ms became
1970, 2.999 became 2.99, zones were applied), and a column whose type the rules do
not cover (a nested column another engine added) stops the sink with a clear
error instead of letting arrow-json guess."""

import json

from pyiceberg.types import IntegerType, NestedField, StructType

from test_ingest import SCHEMA, good_event, ingest

BINARY_SCHEMA = {
    "name": "with_binary",
    "fields": [
        {"name": "ts", "type": "timestamp", "required": True},
        {"name": "price", "type": "decimal(10,2)"},
        {"name": "payload", "type": "binary"},
    ],
}


def send(kafka, topic, values):
    producer = kafka.producer()
    for value in values:
        producer.produce(topic, value=value.encode(), partition=0)
    producer.flush(60)


def test_a_table_with_a_binary_column_follows_the_rules(lake, kafka, tmp_path):
    schema = tmp_path / "with_binary.json"
    schema.write_text(json.dumps(BINARY_SCHEMA))
    kafka.create_topic("binary", partitions=1)
    send(kafka, "binary", [
        '{"ts": 1698400800000, "price": 2.999}',
        '{"ts": "2023-10-27T00:30:00+02:00", "price": "1.5"}',
        '{"ts": "2023-10-27T00:30:00+02:00", "payload": "00ff", "price": 1}',
        '{"ts": 1698400800000, "payload": "zz"}',
    ])
    out = lake.run(
        "ingest", "--brokers", kafka.bootstrap, "--topic", "binary", "--table", "raw.with_binary",
        "--schema", str(schema), "--group", "g", "--until-idle", "3s",
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert (report["written"], report["dead_lettered"]) == (1, 3), report
    rows = lake.catalog().load_table("raw.with_binary").scan().to_arrow().to_pylist()
    assert len(rows) == 1
    row = rows[0]
    assert str(row["ts"]) == "2023-10-27 00:30:00"  # the wall clock, zone dropped
    assert str(row["price"]) == "1.00"
    assert row["payload"] == b"\x00\xff"
    errors = [r["error"] for r in lake.catalog().load_table("raw.with_binary_dlq").scan().to_arrow().to_pylist()]
    assert any("more decimals than the column's scale" in e for e in errors), errors


def test_a_nested_column_another_engine_added_stops_the_sink_clearly(lake, kafka):
    kafka.create_topic("nested", partitions=1)
    send(kafka, "nested", [json.dumps(good_event(0))])
    assert ingest(lake, kafka, "nested").returncode == 0
    table = lake.catalog().load_table("raw.retail_events")
    with table.update_schema() as update:
        update.add_column("meta", StructType(NestedField(100, "a", IntegerType(), required=False)))
    send(kafka, "nested", [json.dumps({**good_event(1), "event_time": 1698400800000})])
    out = ingest(lake, kafka, "nested")
    assert out.returncode == 1, out.stderr
    assert "column meta" in out.stderr and "input rules do not cover" in out.stderr, out.stderr
    assert lake.catalog().load_table("raw.retail_events").scan().to_arrow().num_rows == 1
