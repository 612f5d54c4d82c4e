"""Sink benchmark (issue 3): Kafka → Iceberg with `icefjord ingest --until-idle`,
against DuckDB and Polars converting the same events from NDJSON to Parquet.

1. Start Tansu (memory storage) on a free loopback port; create a 3-partition topic.
2. Pre-fill it with N retail events from `icefjord simulate --seed` (deterministic).
3. Dump the topic with confluent-kafka to NDJSON: the very bytes the sink reads.
4. Measure --repeat times (median CPU reported), each as a child process (CPU = user + sys from wait4, peak RSS):
   - icefjord ingest --until-idle (events/s = events / time to the last commit),
   - DuckDB  read_json → Parquet (zstd),
   - Polars  scan_ndjson → sink_parquet (zstd).
   All three write to --scratch (a tmpfs by default): on this machine's ext4
   (no journal) creating files right after deleting others costs the kernel ~10%
   of the sink's CPU in inode allocation, which measures the VM, not the engines.
5. Check that all three hold the same row count and sum(quantity * unit_price),
   and write bench/out/ingest.json; bench/RESULTS.md quotes it.

Run through bench/ingest/run (it builds the release binary and the venv).
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import default_scratch, machine, measured  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "data" / "schemas" / "retail_event.json"
DUCKDB_COLUMNS = (
    "{event_time: 'TIMESTAMP', store_id: 'INTEGER', product_id: 'VARCHAR', category: 'VARCHAR', "
    "transaction_type: 'VARCHAR', quantity: 'INTEGER', unit_price: 'DECIMAL(10,2)'}"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tansu:
    def __init__(self, binary: str, workdir: Path):
        self.port = free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.binary = binary
        self.log = open(workdir / "tansu.log", "w")
        self.proc = subprocess.Popen(
            [binary, "broker", "--listener-url", self.url, "--advertised-listener-url", self.url,
             "--storage-engine", "memory://tansu/"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    sys.exit(f"tansu did not start; see {workdir / 'tansu.log'}")
                time.sleep(0.1)

    def create_topic(self, name: str, partitions: int):
        subprocess.run([self.binary, "topic", "create", "--broker", self.url,
                        "--partitions", str(partitions), name], check=True, capture_output=True)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def dump_topic(bootstrap: str, topic: str, expected: int, path: Path) -> int:
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"dump-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    n = 0
    deadline = time.time() + 600
    with open(path, "wb") as out:
        while n < expected and time.time() < deadline:
            for msg in consumer.consume(10_000, timeout=1.0):
                if msg.error() is None:
                    out.write(msg.value())
                    out.write(b"\n")
                    n += 1
    consumer.close()
    return n


def measure_icefjord(args, broker, topic: str, lake: Path) -> dict:
    """One `ingest --until-idle` from the start of the topic into a new lake."""
    wall, cpu, rss, report, started = measured(
        [args.binary, "--lake", str(lake), "ingest", "--brokers", broker.bootstrap,
         "--topic", topic, "--table", "raw.retail_events", "--schema", str(SCHEMA),
         "--group", "bench", "--assign", "all", "--until-idle", "1s",
         # Tansu's memory engine holds every fetch for the full wait, where Kafka
         # answers once fetch.min.bytes (1) is there; see bench/RESULTS.md.
         "--consumer-property", f"fetch.wait.max.ms={args.fetch_wait_ms}"])
    report = json.loads(report)
    assert report["written"] == args.events, report
    from pyiceberg.catalog.sql import SqlCatalog
    import pyarrow as pa
    import pyarrow.compute as pc

    catalog = SqlCatalog("icefjord", uri=f"sqlite:///{lake}/catalog.db",
                         warehouse=f"file://{lake}/warehouse")
    table = catalog.load_table("raw.retail_events")
    snapshots = table.metadata.snapshots
    last_commit = max(s.timestamp_ms for s in snapshots) / 1000
    active = last_commit - (time.time() - (time.monotonic() - started))
    summary = table.current_snapshot().summary.additional_properties
    arrow = table.scan(selected_fields=("quantity", "unit_price")).to_arrow()
    amount = pc.sum(pc.multiply(arrow["quantity"].cast(pa.decimal128(20, 2)),
                                arrow["unit_price"])).as_py()
    shutil.rmtree(lake, ignore_errors=True)
    return {"wall_s": wall, "active_s": active, "cpu_s": cpu, "peak_rss_mib": rss / 2**20,
            "events_per_s": args.events / active, "cpu_us_per_event": cpu / args.events * 1e6,
            "snapshots": len(snapshots), "data_files": int(summary["total-data-files"]),
            "rows": arrow.num_rows, "amount": str(amount)}


def peer_scripts(ndjson: Path, scratch: Path) -> dict:
    """DuckDB and Polars converting the NDJSON to Parquet with the sink's column types."""
    return {
        "duckdb": f"""
import duckdb
con = duckdb.connect(config={{'threads': 2}})
con.execute(\"\"\"COPY (SELECT * FROM read_json('{ndjson}', format='newline_delimited',
    columns={DUCKDB_COLUMNS}, timestampformat='%Y-%m-%d %H:%M:%S'))
    TO '{scratch}/duckdb.parquet' (FORMAT parquet, COMPRESSION zstd)\"\"\")
print(con.execute("SELECT count(*), sum(quantity * unit_price) FROM '{scratch}/duckdb.parquet'").fetchone())
""",
        "polars": f"""
import polars as pl
schema = {{'event_time': pl.String, 'store_id': pl.Int32, 'product_id': pl.String,
          'category': pl.String, 'transaction_type': pl.String, 'quantity': pl.Int32,
          'unit_price': pl.Float64}}
(pl.scan_ndjson('{ndjson}', schema=schema)
   .with_columns(pl.col('event_time').str.to_datetime('%Y-%m-%d %H:%M:%S', time_unit='us'),
                 pl.col('unit_price').cast(pl.Decimal(10, 2)))
   .sink_parquet('{scratch}/polars.parquet', compression='zstd'))
df = pl.read_parquet('{scratch}/polars.parquet')
print((df.height, (df['quantity'].cast(pl.Decimal(20, 2)) * df['unit_price']).sum()))
""",
    }


def measure_peer(args, script: str) -> dict:
    env = {**os.environ, "POLARS_MAX_THREADS": "2"}
    wall, cpu, rss, printed, _ = measured([sys.executable, "-c", script], env=env)
    rows, amount = eval(printed.decode().strip(), {"Decimal": __import__("decimal").Decimal})
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": rss / 2**20,
            "cpu_us_per_event": cpu / args.events * 1e6, "rows": rows, "amount": str(amount)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "icefjord"))
    parser.add_argument("--tansu", required=True)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out"))
    parser.add_argument("--fetch-wait-ms", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3,
                        help="measure each engine this many times on the same data; "
                             "the run with the median CPU is reported")
    parser.add_argument("--scratch", default=default_scratch(),
                        help="where the three engines write their output (default: a tmpfs "
                             "when there is one, so the filesystem is not measured)")
    args = parser.parse_args()

    out = Path(args.out)
    work = out / "ingest-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    scratch = Path(args.scratch) / "icefjord-bench-ingest"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    broker = Tansu(args.tansu, work)
    topic = "bench_retail"
    try:
        broker.create_topic(topic, args.partitions)
        fill_started = time.monotonic()
        subprocess.run([args.binary, "simulate", "--brokers", broker.bootstrap, "--topic", topic,
                        "--kind", "retail", "--events", str(args.events), "--seed", "7",
                        "--producer-property", "linger.ms=50",
                        "--producer-property", "batch.num.messages=10000"],
                       check=True, stdout=subprocess.DEVNULL)
        fill_seconds = time.monotonic() - fill_started
        ndjson = work / "events.ndjson"
        dumped = dump_topic(broker.bootstrap, topic, args.events, ndjson)
        assert dumped == args.events, f"dumped {dumped} of {args.events} events"

        runs = {"icefjord": [measure_icefjord(args, broker, topic, scratch / f"lake-{i}")
                             for i in range(args.repeat)]}
        for name, script in peer_scripts(ndjson, scratch).items():
            runs[name] = [measure_peer(args, script) for _ in range(args.repeat)]
    finally:
        broker.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    # The run with the median CPU stands for each engine; every run is kept.
    results = {name: sorted(rs, key=lambda r: r["cpu_s"])[len(rs) // 2] for name, rs in runs.items()}
    checks = {(r["rows"], r["amount"].rstrip("0").rstrip(".")) for rs in runs.values() for r in rs}
    agreed = len(checks) == 1
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    document = {
        "benchmark": "ingest", "events": args.events, "partitions": args.partitions,
        "fetch_wait_max_ms": args.fetch_wait_ms, "scratch": args.scratch,
        "prefill_s": fill_seconds, "commit": commit, "machine": machine(),
        "repeat": args.repeat, "checksums_agree": agreed, "results": results, "runs": runs,
        "ratios": {f"cpu_vs_{peer}": results["icefjord"]["cpu_s"] / results[peer]["cpu_s"]
                   for peer in results if peer != "icefjord"},
    }
    (out / "ingest.json").write_text(json.dumps(document, indent=2))
    print(json.dumps(document, indent=2))
    if not agreed:
        sys.exit(f"checksums differ across engines: {checks}")


if __name__ == "__main__":
    main()
