"""Commit latency of the Iceberg REST catalog (issue 14): PyIceberg appends through
`icefjord serve --rest-addr` beside PyIceberg's own SqlCatalog on the same lake.

1. A lake with one table, scratch.events (id long, note string), created by PyIceberg.
2. For each catalog (rest: `RestCatalog(uri=…)`; sql: `SqlCatalog` on the lake's
   SQLite file, which PyIceberg commits to itself with its own compare-and-swap):
   - single client: --appends (500) appends of a 10-row PyArrow table, one after the
     other, each timed from `table.append` to its return (PyIceberg writes the data
     file and manifests, then commits: the catalog's share is what differs);
   - 8 concurrent clients (multiprocessing, spawn), each --appends / 8 appends, each
     client on its own catalog object; PyIceberg 0.12 retries a 409 itself, so a
     conflict costs a retry, counted per catalog from the table's snapshot count.
3. Checks: after each phase the table holds exactly the rows appended (count via
   PyIceberg scan) and one snapshot per append.
Reports p50/p99/mean ms, appends/s, and the server's CPU-s for the REST phases
(utime + stime of the serve process from /proc). Output: bench/out/catalog.json."""

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import commit, default_binary, default_scratch, machine  # noqa: E402

ROWS = 10


def batch(client: int, i: int):
    import pyarrow as pa

    return pa.table({"id": pa.array([client * 1_000_000 + i * ROWS + r for r in range(ROWS)], pa.int64()),
                     "note": [f"c{client}-{i}"] * ROWS})


def open_catalog(kind: str, lake: str, rest: str | None):
    if kind == "rest":
        from pyiceberg.catalog.rest import RestCatalog
        return RestCatalog("icefjord", uri=rest)
    from pyiceberg.catalog.sql import SqlCatalog
    return SqlCatalog("icefjord", uri=f"sqlite:///{lake}/catalog.db", warehouse=f"file://{lake}/warehouse")


def client_loop(kind, lake, rest, table, client, appends, start_at, out):
    catalog = open_catalog(kind, lake, rest)
    t = catalog.load_table(table)
    while time.time() < start_at:
        time.sleep(0.001)
    times = []
    for i in range(appends):
        data = batch(client, i)
        started = time.perf_counter()
        for attempt in range(20):
            try:
                t.append(data)
                break
            except Exception as e:  # a conflict PyIceberg did not retry itself
                if "Commit" not in type(e).__name__ or attempt == 19:
                    raise
                t.refresh()
        times.append((time.perf_counter() - started) * 1000)
    out.put(times)


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase(kind, lake, rest, table, clients, appends, server_pid):
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 3
    procs = [ctx.Process(target=client_loop, args=(kind, lake, rest, table, c, appends // clients, start_at, out))
             for c in range(clients)]
    cpu0 = cpu_s(server_pid) if server_pid else None
    for p in procs:
        p.start()
    times = [t for _ in procs for t in out.get()]
    for p in procs:
        p.join()
        assert p.exitcode == 0, f"a {kind} client failed"
    wall = max(times) and (time.time() - start_at)
    times.sort()
    return {
        "catalog": kind, "clients": clients, "appends": len(times),
        "p50_ms": round(times[len(times) // 2], 2),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2),
        "mean_ms": round(statistics.mean(times), 2),
        "appends_per_s": round(len(times) / wall, 1),
        "server_cpu_s": round(cpu_s(server_pid) - cpu0, 2) if server_pid else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=default_binary())
    parser.add_argument("--appends", type=int, default=500)
    parser.add_argument("--concurrent-appends", type=int, default=None,
                        help="appends of the 8-client phase (default: --appends); every conflict "
                             "costs a client a whole retry, so 8 PyIceberg writers on 2 cores take "
                             "~20 min per catalog for 500")
    parser.add_argument("--scratch", default=default_scratch())
    parser.add_argument("--out", default="bench/out/catalog.json")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        lake = f"{scratch}/lake"
        subprocess.run([args.binary, "--lake", lake, "tables"], check=True, capture_output=True)
        server = subprocess.Popen([args.binary, "--lake", lake, "serve", "--pg-addr", "off", "--http-addr", "off",
                                   "--rest-addr", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
        rest = "http://" + json.loads(server.stdout.readline())["rest"]
        try:
            from pyiceberg.schema import Schema
            from pyiceberg.types import LongType, NestedField, StringType
            catalog = open_catalog("rest", lake, rest)
            catalog.create_namespace("scratch")
            for kind in ("rest", "sql"):
                name = f"scratch.events_{kind}"
                catalog.create_table(name, Schema(NestedField(1, "id", LongType(), required=False),
                                                  NestedField(2, "note", StringType(), required=False)))
                appended = 0
                for clients in (1, 8):
                    appends = args.appends if clients == 1 else (args.concurrent_appends or args.appends)
                    result = phase(kind, lake, rest, name, clients, appends,
                                   server.pid if kind == "rest" else None)
                    appended += result["appends"]
                    table = open_catalog(kind, lake, rest).load_table(name)
                    rows = table.scan().to_arrow().num_rows
                    snapshots = len(table.metadata.snapshots)
                    assert rows == appended * ROWS, (kind, rows, appended)
                    assert snapshots == appended, (kind, snapshots, appended)
                    print(json.dumps(result), flush=True)
                    results.append(result)
        finally:
            server.terminate()
            server.wait()
    report = {"machine": machine(), "commit": commit(), "binary": args.binary, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
