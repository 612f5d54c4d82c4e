"""`icefjord ingest` against a real Kafka-protocol broker (Tansu), fed by
confluent-kafka: every record lands exactly once, in the table or in the DLQ."""

import json
import random
import subprocess
from collections import defaultdict
from pathlib import Path

SCHEMA = Path(__file__).resolve().parents[2] / "data" / "schemas" / "retail_event.json"


def good_event(i: int) -> dict:
    rng = random.Random(i)
    return {
        "event_time": f"2023-10-{27 + i % 3} {rng.randrange(24):02}:{rng.randrange(60):02}:00",
        "store_id": rng.randrange(1, 21),
        "product_id": rng.choice(["Laptop", "Jeans", "Pasta"]),
        "category": rng.choice(["Electronics", "Clothing", "Grocery"]),
        "transaction_type": rng.choice(["SALE", "RETURN", "RESTOCK"]),
        "quantity": rng.randrange(1, 10),
        "unit_price": round(rng.uniform(1, 500), 2),
    }


BAD_VALUES = [
    b"not json at all",
    b'{"store_id": 3}',                                   # missing required fields
    json.dumps({**good_event(0), "quantity": "five"}).encode(),  # wrong type
    b"[1, 2, 3]",                                         # not an object
]


def produce(kafka, topic, n, bad_every=0):
    """Produce n records; every `bad_every`-th is malformed. Returns {(p, o): value}."""
    producer = kafka.producer()
    delivered = {}

    def on_delivery(err, msg):
        assert err is None, err
        delivered[(msg.partition(), msg.offset())] = msg.value()

    for i in range(n):
        if bad_every and i % bad_every == bad_every - 1:
            value = BAD_VALUES[(i // bad_every) % len(BAD_VALUES)]
        else:
            value = json.dumps(good_event(i)).encode()
        producer.produce(topic, key=str(i).encode(), value=value, on_delivery=on_delivery)
        if i % 500 == 0:
            producer.poll(0)
    producer.flush(60)
    assert len(delivered) == n
    return delivered


def ingest(lake, kafka, topic, *extra, group="icefjord-test"):
    return lake.run(
        "ingest", "--brokers", kafka.bootstrap, "--topic", topic,
        "--table", "raw.retail_events", "--schema", str(SCHEMA), "--group", group,
        "--until-idle", "3s", "--commit-interval", "1s", *extra,
    )


def positions(lake, table, partition_col, offset_col):
    rows = lake.sql(f"SELECT {partition_col} AS p, {offset_col} AS o FROM {table}")
    return [(r["p"], r["o"]) for r in rows]


def test_good_records_land_once_and_bad_ones_in_the_dlq(lake, kafka):
    kafka.create_topic("retail-a", partitions=3)
    produced = produce(kafka, "retail-a", 1200, bad_every=10)
    out = ingest(lake, kafka, "retail-a")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["consumed"] == 1200

    good = positions(lake, "raw.retail_events", "_kafka_partition", "_kafka_offset")
    dead = positions(lake, "raw.retail_events_dlq", "source_partition", "source_offset")
    assert len(good) == len(set(good)) == 1080
    assert len(dead) == len(set(dead)) == 120
    assert set(good) | set(dead) == set(produced)
    assert not set(good) & set(dead)
    for p, o in dead:
        assert produced[(p, o)] in BAD_VALUES

    # The dead letters keep the raw bytes and say why.
    rows = lake.sql("SELECT source_partition AS p, source_offset AS o, stage, error, "
                    "encode(value, 'hex') AS value FROM raw.retail_events_dlq")
    for row in rows:
        assert bytes.fromhex(row["value"]) == produced[(row["p"], row["o"])]
        assert row["stage"] in ("json", "schema") and row["error"]

    # Values survive: the table equals what was produced, to the cent.
    expected = defaultdict(int)
    for (p, o), value in produced.items():
        if value not in BAD_VALUES:
            e = json.loads(value)
            expected[e["category"]] += round(e["quantity"] * e["unit_price"] * 100)
    got = lake.sql("SELECT category, CAST(sum(quantity * unit_price) * 100 AS BIGINT) AS cents "
                   "FROM raw.retail_events GROUP BY category")
    assert {r["category"]: r["cents"] for r in got} == dict(expected)


def test_a_rerun_resumes_from_the_offsets_in_the_table(lake, kafka):
    kafka.create_topic("retail-b", partitions=3)
    produce(kafka, "retail-b", 300)
    assert ingest(lake, kafka, "retail-b").returncode == 0
    # Nothing new: a second run adds nothing, even though we never rely on the group.
    out = ingest(lake, kafka, "retail-b", group="icefjord-test")
    assert out.returncode == 0, out.stderr
    assert lake.sql("SELECT count(*) AS n FROM raw.retail_events")[0]["n"] == 300
    produce(kafka, "retail-b", 200)
    assert ingest(lake, kafka, "retail-b").returncode == 0
    rows = positions(lake, "raw.retail_events", "_kafka_partition", "_kafka_offset")
    assert len(rows) == len(set(rows)) == 500


def test_too_many_bad_records_stop_the_sink_with_nothing_committed(lake, kafka):
    kafka.create_topic("retail-c", partitions=1)
    produce(kafka, "retail-c", 100, bad_every=2)
    out = ingest(lake, kafka, "retail-c", "--max-error-ratio", "0.1")
    assert out.returncode == 1
    assert "ratio" in out.stderr and "retail-c" in out.stderr
    assert lake.sql("SELECT count(*) AS n FROM raw.retail_events")[0]["n"] == 0


def scrape(port):
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_metrics_are_served_and_sigterm_commits_what_is_held(lake, kafka):
    import signal
    import time

    from conftest import free_port

    kafka.create_topic("retail-m", partitions=2)
    produce(kafka, "retail-m", 500, bad_every=5)
    port = free_port()
    sink = subprocess.Popen(
        [str(lake.binary), "--lake", str(lake.path), "ingest", "--brokers", kafka.bootstrap,
         "--topic", "retail-m", "--table", "raw.retail_events", "--schema", str(SCHEMA),
         "--group", "icefjord-m", "--commit-interval", "1h", "--commit-rows", "200",
         "--metrics-addr", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 60
    metrics = {}
    ok_commits = 'icefjord_sink_commits_total{table="raw.retail_events",result="ok"}'
    while time.time() < deadline:
        try:
            metrics = scrape(port)
        except OSError:
            metrics = {}
        # All consumed, and the second batch's commit (in flight meanwhile) landed.
        if (metrics.get('icefjord_sink_records_consumed_total{topic="retail-m"}') == 500
                and metrics.get(ok_commits) == 2):
            break
        time.sleep(0.5)
    assert metrics.get('icefjord_sink_records_consumed_total{topic="retail-m"}') == 500, metrics
    # Two batches of 200 committed; the last 100 records are held (interval 1h).
    table = 'table="raw.retail_events"'
    assert metrics[f'icefjord_sink_commits_total{{{table},result="ok"}}'] == 2, metrics
    assert (metrics[f"icefjord_sink_records_written_total{{{table}}}"]
            + metrics[f"icefjord_sink_records_dead_lettered_total{{{table}}}"]) == 400
    positions = sum(v for k, v in metrics.items()
                    if k.startswith("icefjord_sink_last_committed_offset{"))
    assert positions == 400, metrics
    assert lake.sql("SELECT count(*) AS n FROM raw.retail_events")[0]["n"] + \
        lake.sql("SELECT count(*) AS n FROM raw.retail_events_dlq")[0]["n"] == 400

    sink.send_signal(signal.SIGTERM)
    out, err = sink.communicate(timeout=60)
    assert sink.returncode == 0, err
    report = json.loads(out)
    assert report["written"] == 400 and report["dead_lettered"] == 100, report
    assert lake.sql("SELECT count(*) AS n FROM raw.retail_events")[0]["n"] == 400
    assert lake.sql("SELECT count(*) AS n FROM raw.retail_events_dlq")[0]["n"] == 100


def test_progress_shows_on_a_terminal_and_nowhere_else(lake, kafka):
    import os
    import pty
    import select
    import time

    kafka.create_topic("retail-p", partitions=1)
    produce(kafka, "retail-p", 200)
    args = [str(lake.binary), "--lake", str(lake.path), "ingest", "--brokers", kafka.bootstrap,
            "--topic", "retail-p", "--table", "raw.retail_events", "--schema", str(SCHEMA),
            "--group", "icefjord-p", "--until-idle", "3s", "--commit-interval", "500ms"]

    # stderr on a pseudo-terminal: a progress line with counts and rate.
    primary, secondary = pty.openpty()
    sink = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=secondary)
    os.close(secondary)
    seen = b""
    deadline = time.time() + 60
    while sink.poll() is None and time.time() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.5)
        if ready:
            try:
                seen += os.read(primary, 4096)
            except OSError:
                break
    sink.wait(timeout=60)
    os.close(primary)
    assert sink.returncode == 0
    text = seen.decode(errors="replace")
    assert "consumed" in text and "/s" in text and "lag" in text, text

    # stderr piped (CI, Airflow): no progress output at all.
    out = subprocess.run(args, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "consumed (" not in out.stderr, out.stderr
