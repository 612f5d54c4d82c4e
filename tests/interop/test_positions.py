"""Writer positions survive other engines' commits (issue 11 C).

PyIceberg plays the other engine: it rewrites a table with the same rows (what a
compaction does), expires our snapshots, rolls back. After each, every Icefjord
writer (the generator, the job runner's boundary, the Kafka sink) must continue
exactly where it was, or refuse to start and say why; never start over silently.
Expected values come from PyIceberg / DuckDB over the same rows."""

import json
from datetime import datetime, timedelta, timezone

import duckdb

from test_ingest import ingest, produce


def table(lake, name):
    return lake.catalog().load_table(name)


def rewrite_same_rows(lake, name):
    """What a compaction does: one overwrite snapshot holding the same rows."""
    t = table(lake, name)
    t.overwrite(t.scan().to_arrow())


def expire_all_but_head(lake, name):
    t = table(lake, name)
    t.maintenance.expire_snapshots().older_than(
        datetime.now(timezone.utc) + timedelta(seconds=1)
    ).commit()
    t = table(lake, name)
    assert len(t.metadata.snapshots) == 1, t.metadata.snapshots
    return t


def raw_counts(lake):
    """(rows, distinct Kafka positions) of raw.retail_events, by DuckDB over PyIceberg's scan."""
    rows = table(lake, "raw.retail_events").scan().to_arrow()
    return duckdb.sql(
        "SELECT count(*), count(DISTINCT (_kafka_topic, _kafka_partition, _kafka_offset)) FROM rows"
    ).fetchall()[0]


def generate(lake, events, seed=5):
    out = lake.run("generate", "--kind", "retail", "--events", str(events), "--seed", str(seed))
    return out


def test_the_generator_continues_after_its_snapshots_were_rewritten_and_expired(lake):
    assert generate(lake, 3000).returncode == 0
    rewrite_same_rows(lake, "raw.retail_events")
    expire_all_but_head(lake, "raw.retail_events")
    out = generate(lake, 5000)
    assert out.returncode == 0, out.stderr
    assert raw_counts(lake) == (5000, 5000)
    # And once more with nothing expired: the walk passes the foreign snapshot.
    rewrite_same_rows(lake, "raw.retail_events")
    assert generate(lake, 6000).returncode == 0
    assert raw_counts(lake) == (6000, 6000)


def test_a_rollback_is_followed_and_a_rollback_past_the_mirror_refuses(lake):
    assert generate(lake, 3000).returncode == 0
    first = table(lake, "raw.retail_events").metadata.current_snapshot_id
    assert generate(lake, 5000).returncode == 0
    # Roll back to 3000 events: the generator continues from 3000, not 5000.
    table(lake, "raw.retail_events").manage_snapshots().rollback_to_snapshot(first).commit()
    assert raw_counts(lake) == (3000, 3000)
    assert generate(lake, 4000).returncode == 0
    assert raw_counts(lake) == (4000, 4000)

    # Roll back again, rewrite on top and expire the snapshot rolled back to:
    # the position's own snapshot still exists off the branch; starting at the
    # mirror would skip rows. The generator must refuse.
    t = table(lake, "raw.retail_events")
    t.manage_snapshots().rollback_to_snapshot(first).commit()
    rewrite_same_rows(lake, "raw.retail_events")
    table(lake, "raw.retail_events").maintenance.expire_snapshots().by_id(first).commit()
    out = generate(lake, 6000)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "lost position icefjord.generator.retail.seed-5.next-position" in out.stderr, out.stderr
    assert "rolled back" in out.stderr, out.stderr
    assert raw_counts(lake) == (3000, 3000)


def test_a_position_truly_gone_refuses_and_a_corrupt_one_is_an_error(lake):
    assert generate(lake, 2000).returncode == 0
    rewrite_same_rows(lake, "raw.retail_events")
    t = expire_all_but_head(lake, "raw.retail_events")
    mirror = "icefjord.position.generator.retail.seed-5.next-position"
    assert json.loads(t.properties[mirror])["value"] == "2000"
    with t.transaction() as tx:
        tx.remove_properties(mirror)
    out = generate(lake, 3000)
    assert out.returncode == 1, out.stderr
    assert "lost position" in out.stderr and "raw.retail_events" in out.stderr, out.stderr
    assert raw_counts(lake) == (2000, 2000)

    with table(lake, "raw.retail_events").transaction() as tx:
        tx.set_properties({mirror: '{"snapshot-id": 1, "sequence-number": 0, "value": "many"}'})
    out = generate(lake, 3000)
    assert out.returncode == 1 and "unreadable position" in out.stderr, out.stderr


JOB = __import__("pathlib").Path(__file__).resolve().parents[2] / "jobs" / "retail"


def unified_events(lake):
    rows = lake.sql("SELECT sum(event_count) AS n FROM unified.sales_hourly")
    return int(rows[0]["n"])


def history_events(lake):
    rows = table(lake, "historical.sales_hourly").scan().to_arrow()
    return duckdb.sql("SELECT sum(event_count) FROM rows").fetchall()[0][0]


def run(lake):
    out = lake.run("run", str(JOB), "--output", "json")
    assert out.returncode == 0, out.stderr
    return out


def test_the_unified_view_stays_exact_when_the_history_is_compacted_and_expired(lake):
    assert generate(lake, 4000).returncode == 0
    run(lake)
    assert unified_events(lake) == 4000 == history_events(lake)
    # The input: a rewrite of the history with the same rows doubled the view.
    rewrite_same_rows(lake, "historical.sales_hourly")
    assert unified_events(lake) == 4000
    run(lake)
    assert unified_events(lake) == 4000 == history_events(lake)
    # New events, then the history compacted and expired before the next run.
    assert generate(lake, 6000).returncode == 0
    rewrite_same_rows(lake, "historical.sales_hourly")
    expire_all_but_head(lake, "historical.sales_hourly")
    assert unified_events(lake) == 6000
    run(lake)
    assert unified_events(lake) == 6000 == history_events(lake)
    # The raw table compacted and expired too: the input snapshot the history
    # read is gone, so the view scans every file; still exact.
    rewrite_same_rows(lake, "raw.retail_events")
    expire_all_but_head(lake, "raw.retail_events")
    assert unified_events(lake) == 6000
    assert generate(lake, 7000).returncode == 0
    run(lake)
    assert unified_events(lake) == 7000 == history_events(lake)
    # The record of which input snapshot the history read only saves work: with
    # it lost (history compacted and expired, its mirror removed) the view scans
    # every file and stays exact.
    assert generate(lake, 7500).returncode == 0
    rewrite_same_rows(lake, "historical.sales_hourly")
    t = expire_all_but_head(lake, "historical.sales_hourly")
    with t.transaction() as tx:
        tx.remove_properties("icefjord.position.input.raw.retail_events")
    assert unified_events(lake) == 7500


def test_the_sink_resumes_exactly_after_compaction_and_expiry(lake, kafka):
    kafka.create_topic("positions")
    produce(kafka, "positions", 300)
    out = ingest(lake, kafka, "positions")
    assert out.returncode == 0, out.stderr
    rewrite_same_rows(lake, "raw.retail_events")
    expire_all_but_head(lake, "raw.retail_events")
    produce(kafka, "positions", 200)
    out = ingest(lake, kafka, "positions")
    assert out.returncode == 0, out.stderr
    assert raw_counts(lake) == (500, 500)


def test_a_lost_sink_position_refuses_then_a_deliberate_reset_goes_on(lake, kafka):
    kafka.create_topic("lost")
    produce(kafka, "lost", 300)
    assert ingest(lake, kafka, "lost").returncode == 0
    rewrite_same_rows(lake, "raw.retail_events")
    t = expire_all_but_head(lake, "raw.retail_events")
    with t.transaction() as tx:
        tx.remove_properties("icefjord.position.kafka.icefjord-test.lost")
    produce(kafka, "lost", 100)
    out = ingest(lake, kafka, "lost")
    assert out.returncode == 1, out.stderr
    assert "lost position icefjord.kafka.icefjord-test.lost" in out.stderr, out.stderr
    assert "--reset-offsets lost=earliest|latest" in out.stderr, out.stderr
    assert raw_counts(lake) == (300, 300)
    # Deliberately: go on from the log's end; what arrives next lands once.
    out = ingest(lake, kafka, "lost", "--reset-offsets", "lost=latest")
    assert out.returncode == 0, out.stderr
    assert raw_counts(lake) == (300, 300)
    produce(kafka, "lost", 50)
    out = ingest(lake, kafka, "lost")
    assert out.returncode == 0, out.stderr
    assert raw_counts(lake) == (350, 350)
