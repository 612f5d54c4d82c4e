"""Schema evolution and multi-route `[ingest]` config of `icefjord ingest`, against
Tansu, fed by confluent-kafka and checked by SQL and by PyIceberg (which reads the
evolved table by field id, independently of our reader)."""

import json
from pathlib import Path

from test_ingest import SCHEMA, good_event, ingest

SCHEMAS = SCHEMA.parent


def send(kafka, topic, values):
    """Produce raw values in order (one partition); returns their offsets."""
    producer = kafka.producer()
    offsets = []

    def on_delivery(err, msg):
        assert err is None, err
        offsets.append(msg.offset())

    for value in values:
        producer.produce(topic, value=value if isinstance(value, bytes) else json.dumps(value).encode(),
                         on_delivery=on_delivery)
    producer.flush(60)
    assert len(offsets) == len(values)
    return offsets


def test_evolve_schema_adds_optional_columns_and_widens_int_to_long(lake, kafka):
    kafka.create_topic("evolve-a", partitions=1)
    before = [good_event(i) for i in range(50)]
    send(kafka, "evolve-a", before)
    assert ingest(lake, kafka, "evolve-a", "--evolve-schema").returncode == 0

    big = 5_000_000_000  # does not fit the int column quantity
    after = [
        {**good_event(100), "coupon": "BLACKFRIDAY", "loyalty_points": 12},
        {**good_event(101), "quantity": big, "discount": 0.15},
        {**good_event(102), "coupon": None},                          # null only: nothing to add
        {**good_event(103), "basket": {"items": 3}},                  # nested: a dead letter
        {**good_event(104), "loyalty_points": 2.5},                  # long seen as a fraction: double
    ]
    send(kafka, "evolve-a", after)
    out = ingest(lake, kafka, "evolve-a", "--evolve-schema")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["schema_changes"] >= 1 and report["written"] == 4 and report["dead_lettered"] == 1

    dead = lake.sql("SELECT source_offset AS o, stage, error FROM raw.retail_events_dlq")
    assert [(d["o"], d["stage"]) for d in dead] == [(53, "schema")]
    assert "basket" in dead[0]["error"]

    rows = lake.sql("SELECT _kafka_offset AS o, coupon, loyalty_points AS lp, discount, quantity "
                    "FROM raw.retail_events ORDER BY _kafka_offset")
    assert len(rows) == 54
    assert all(r["coupon"] is None and r["lp"] is None for r in rows[:50])  # old files read null
    by_offset = {r["o"]: r for r in rows}
    assert by_offset[50]["coupon"] == "BLACKFRIDAY" and by_offset[50]["lp"] == 12.0
    assert by_offset[51]["quantity"] == big and by_offset[51]["discount"] == 0.15
    assert by_offset[54]["lp"] == 2.5
    assert sum(r["quantity"] for r in rows) == sum(e["quantity"] for e in before) + big + sum(
        after[i]["quantity"] for i in (0, 2, 4))

    # PyIceberg sees the evolved schema: new optional columns, quantity now long.
    table = lake.catalog().load_table("raw.retail_events")
    fields = {f.name: f for f in table.schema().fields}
    assert str(fields["quantity"].field_type) == "long"
    assert str(fields["coupon"].field_type) == "string" and not fields["coupon"].required
    assert str(fields["loyalty_points"].field_type) == "double"
    assert str(fields["discount"].field_type) == "double"
    arrow = table.scan().to_arrow()
    assert arrow.num_rows == 54
    assert sorted(v for v in arrow.column("coupon").to_pylist() if v) == ["BLACKFRIDAY"]
    assert sum(arrow.column("quantity").to_pylist()) == sum(r["quantity"] for r in rows)


def test_without_evolve_schema_new_keys_are_ignored_and_overflows_dead_lettered(lake, kafka):
    kafka.create_topic("evolve-b", partitions=1)
    send(kafka, "evolve-b", [
        {**good_event(1), "coupon": "X"},
        {**good_event(2), "quantity": 5_000_000_000},
    ])
    out = ingest(lake, kafka, "evolve-b")
    assert out.returncode == 0, out.stderr
    columns = lake.sql("SELECT * FROM raw.retail_events")
    assert len(columns) == 1 and "coupon" not in columns[0]
    dead = lake.sql("SELECT source_offset AS o, stage FROM raw.retail_events_dlq")
    assert dead == [{"o": 1, "stage": "schema"}]


def write_config(path: Path, kafka, lake_dir: Path) -> Path:
    config = path / "icefjord.toml"
    config.write_text(f"""
lake = "{lake_dir}"

[kafka]
brokers = "{kafka.bootstrap}"

[ingest]
group = "icefjord-routes"
commit_interval = "1s"

[[ingest.routes]]
topic = "routes-retail"
table = "raw.retail_events"
schema = "schemas/retail_event.json"
evolve_schema = true

[[ingest.routes]]
topic = "routes-activity"
table = "raw.user_activity"
schema = "{SCHEMAS / 'user_activity.json'}"
group = "icefjord-activity"
""")
    schemas = path / "schemas"
    schemas.mkdir()
    (schemas / "retail_event.json").write_text((SCHEMAS / "retail_event.json").read_text())
    return config


def test_routes_from_the_config_file_each_fill_their_table(lake, kafka, tmp_path):
    kafka.create_topic("routes-retail", partitions=3)
    kafka.create_topic("routes-activity", partitions=2)
    send(kafka, "routes-retail", [{**good_event(i), "channel": "web"} for i in range(120)])
    send(kafka, "routes-activity", [
        {"user_id": f"u{i % 7}", "action": "login", "timestamp": f"2024-05-01 10:{i % 60:02}:00"}
        for i in range(80)
    ] + [b"garbage"])
    config = write_config(tmp_path, kafka, lake.path)

    import subprocess
    out = subprocess.run([str(lake.binary), "--config", str(config), "ingest", "--until-idle", "3s"],
                         capture_output=True, text=True, check=False, timeout=300)
    assert out.returncode == 0, out.stderr
    reports = {r["table"]: r for r in map(json.loads, out.stdout.splitlines())}
    assert set(reports) == {"raw.retail_events", "raw.user_activity"}
    assert reports["raw.retail_events"]["written"] == 120
    assert reports["raw.user_activity"]["written"] == 80
    assert reports["raw.user_activity"]["dead_lettered"] == 1

    assert lake.sql("SELECT count(*) AS n, count(channel) AS c FROM raw.retail_events") == [
        {"n": 120, "c": 120}]  # evolve_schema = true on this route
    assert lake.sql("SELECT count(DISTINCT user_id) AS u FROM raw.user_activity") == [{"u": 7}]
    # Each route keeps its offsets under its own group in its own table.
    props = lake.catalog().load_table("raw.user_activity").current_snapshot().summary.additional_properties
    assert "icefjord.kafka.icefjord-activity.routes-activity" in props


def test_a_bad_route_entry_names_the_line(lake, tmp_path):
    config = tmp_path / "icefjord.toml"
    config.write_text('[ingest]\ngroup = "g"\n\n[[ingest.routes]]\ntopic = "t"\ntable = "raw.t"\nschem = "x.json"\n')
    import subprocess
    out = subprocess.run([str(lake.binary), "--config", str(config), "ingest", "--brokers", "127.0.0.1:1"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 2, out.stderr
    assert "line 7" in out.stderr and "schem" in out.stderr
