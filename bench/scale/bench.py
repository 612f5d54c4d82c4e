"""Scale curve (issue 12): `icefjord run jobs/retail` and `icefjord ingest` at 1 M,
10 M, 50 M and 100 M retail events, dense shape. CPU-s and wall should grow about
linearly with the events and peak RSS stay flat. Targets: CPU per million events at
100 M within 15 % of its value at 10 M; peak RSS at 100 M ≤ 1.2× its value at 10 M.

Method (every measurement is a child process under GNU time: CPU = user + sys,
wall, peak RSS; `measured` in bench/common.py):

- run: `icefjord generate --kind retail --seed 7` tops one raw lake up to each point
  in turn (`--events-per-day 2000000`, the dense shape, when the binary has the
  flag, and `--batch-events 500000`, the sink's batch, when it has that;
  otherwise the generator's default ~8 640 events a day in one commit, and the
  JSON and RESULTS say so). At each point `icefjord run jobs/retail` runs once
  (`--repeat` for more; the median CPU is kept) on the raw lake as generated
  (saved with data files hard-linked and catalog copied, and put back before each
  run): the first run, which builds historical.sales_hourly from every raw event.
  Check: sum(event_count) of the history equals the events.
- ingest: Tansu (memory storage) on loopback. Its memory engine keeps every record
  in RAM (~200 B an event: 100 M events would need ~20 GB of a shared 24 GiB), so
  the events go in rounds of at most --round-events (10 M): a new 3-partition
  topic per round, pre-filled by `icefjord simulate --seed 7+round`, drained into
  the one growing raw.retail_events by its own `icefjord ingest --until-idle 1s`
  process, then deleted (which frees most of the broker's memory). A point's CPU and wall
  are the sums over its rounds, its peak RSS the largest of any round: per-process
  figures of a sink whose table keeps growing, not one process's lifetime. Check:
  each round's report wrote every event; the table's total-records equals the point.
- Every run writes to --scratch (default bench/out/scale-work, on disk: 100 M
  events do not belong in a shared tmpfs), which is deleted at the end. Before each
  point (for ingest: each round) the script estimates the disk, and for ingest the
  broker's memory, it needs from what the points before used, and stops the curve
  there, saying why, when less than --reserve-gb would be left.

Results: bench/out/scale.json, the plot bench/scale.png and the "Scale curve"
section of bench/RESULTS.md, both regenerated from the JSON (`--report-only`
redraws them without measuring). Run through bench/scale/run.
"""

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import (ROOT, clone_lake, commit, default_binary, has_flag, load_average,  # noqa: E402
                    machine, measured, replace_section, restore_lake)

SCHEMA = ROOT / "data" / "schemas" / "retail_event.json"
OUT_JSON = "scale.json"
PLOT = ROOT / "bench" / "scale.png"
RESULTS = ROOT / "bench" / "RESULTS.md"
GIB = 2**30
MIB = 2**20
# Tansu's memory engine, measured here: ~120 B of RSS per retail event on top of
# ~100 MiB (216 MiB after 1 M events); the margin covers its batches in flight.
TANSU_BYTES_PER_EVENT = 250


def ingest_module():
    """bench/ingest/bench.py, for its Tansu harness (one copy of how to start it)."""
    spec = importlib.util.spec_from_file_location("ingest_bench", ROOT / "bench" / "ingest" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tree_bytes(path: Path) -> int:
    """Disk blocks under path, each inode once (clones share their data files)."""
    seen, total = set(), 0
    for p in path.rglob("*"):
        st = p.lstat()
        if p.is_file() and st.st_ino not in seen:
            seen.add(st.st_ino)
            total += st.st_blocks * 512
    return total


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def headroom(args, scratch: Path, disk_needed: int, mem_needed: int = 0) -> str | None:
    """Why the next point does not fit, or None when it does."""
    free = shutil.disk_usage(scratch).free
    if free - disk_needed < args.reserve_gb * GIB:
        return (f"disk: the point needs ~{disk_needed / GIB:.1f} GiB more, {free / GIB:.1f} GiB "
                f"free, {args.reserve_gb} GiB kept for others")
    avail = mem_available()
    if mem_needed and avail - mem_needed < args.reserve_gb * GIB:
        return (f"memory: the broker needs ~{mem_needed / GIB:.1f} GiB for a round, "
                f"{avail / GIB:.1f} GiB available, {args.reserve_gb} GiB kept for others")
    return None


def sql_one(binary: str, lake: Path, query: str) -> dict:
    out = subprocess.run([binary, "--lake", str(lake), "sql", "-o", "json", query],
                         check=True, capture_output=True).stdout
    return json.loads(out)[0]


def shape_flags(args, command: str) -> tuple[list, str]:
    """The generator flags of the dense shape when `command` has them, and the shape's
    name. `generate` also commits in the sink's batches (--batch-events) when it can,
    so the run reads the layout the sink would have left."""
    flags, shape = [], "default (~8 640 events/day)" if command == "generate" else "default (10 s apart)"
    if has_flag(args.binary, command, "--events-per-day"):
        flags, shape = ["--events-per-day", str(args.events_per_day)], f"{args.events_per_day:,} events/day"
    else:
        print(f"note: `{command}` has no --events-per-day (older binary): its default shape",
              file=sys.stderr)
    if command == "generate" and has_flag(args.binary, command, "--batch-events"):
        flags += ["--batch-events", str(args.batch_events)]
        shape += f", committed in batches of {args.batch_events:,} events"
    return flags, shape


def run_curve(args, scratch: Path) -> dict:
    flags, shape = shape_flags(args, "generate")
    # The lake lives at one path (its metadata holds absolute paths); `raw` keeps the
    # raw-only state that each run starts from and the next point tops up.
    lake, raw = scratch / "run-lake", scratch / "run-raw"
    points, stopped = [], None
    bytes_per_event = 60  # before the first point: raw ~15 B/event, history, margin
    for n in args.points:
        raw_now = tree_bytes(raw) if raw.exists() else 0
        reason = headroom(args, scratch, int(bytes_per_event * n * 1.3) - raw_now)
        if reason:
            stopped = {"before_events": n, "reason": reason}
            print(f"run: stopping before {n:,} events: {reason}", file=sys.stderr)
            break
        if raw.exists():
            restore_lake(raw, lake)
        _, gen_cpu, _, _, _ = measured([args.binary, "--lake", str(lake), "generate", "--kind", "retail",
                                        "--events", str(n), "--seed", str(args.seed), *flags])
        shutil.rmtree(raw, ignore_errors=True)
        clone_lake(lake, raw)
        reps = []
        for _ in range(args.repeat):
            restore_lake(raw, lake)
            load = load_average()
            wall, cpu, rss, out, _ = measured([args.binary, "--lake", str(lake), "run",
                                               str(ROOT / "jobs" / "retail"), "-o", "json"])
            model = next(m for m in json.loads(out)["models"] if m["model"] == "historical.sales_hourly")
            counted = int(sql_one(args.binary, lake, "SELECT sum(event_count) AS n FROM historical.sales_hourly")["n"])
            if counted != n:
                sys.exit(f"run at {n} events: historical.sales_hourly counts {counted} events")
            history_bytes = tree_bytes(lake / "warehouse" / "historical")
            reps.append({"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": rss / MIB, "load": load,
                         "history_rows": model.get("rows"), "history_files": model.get("files"),
                         "history_mib": history_bytes / MIB})
        rep = sorted(reps, key=lambda r: r["cpu_s"])[len(reps) // 2]
        raw_bytes = tree_bytes(raw)
        bytes_per_event = (raw_bytes + rep["history_mib"] * MIB) / n
        point = {"events": n, **rep, "cpu_s_per_m": rep["cpu_s"] / n * 1e6,
                 "wall_s_per_m": rep["wall_s"] / n * 1e6, "raw_mib": raw_bytes / MIB,
                 "raw_files": sum(1 for _ in (raw / "warehouse" / "raw").rglob("*.parquet")),
                 "generate_cpu_s": gen_cpu, "runs": reps}
        points.append(point)
        print(f"run {n:>11,}: {rep['cpu_s']:.2f} CPU-s ({point['cpu_s_per_m']:.3f}/M), "
              f"{rep['wall_s']:.2f} s, {rep['peak_rss_mib']:.0f} MiB, load {rep['load'][0]}",
              file=sys.stderr)
    shutil.rmtree(lake, ignore_errors=True)
    shutil.rmtree(raw, ignore_errors=True)
    return {"command": "icefjord run jobs/retail", "shape": shape, "seed": args.seed,
            "points": points, "stopped": stopped}


def ingest_curve(args, scratch: Path) -> dict:
    flags, shape = shape_flags(args, "simulate")
    bench = ingest_module()
    lake = scratch / "ingest-lake"
    broker = bench.Tansu(args.tansu, scratch)
    points, rounds, stopped = [], [], None
    done = 0
    try:
        for n in args.points:
            while done < n:
                k = len(rounds)
                size = min(args.round_events, n - done)
                # Checked before every round: the broker may keep some memory of the
                # rounds before (deleted topics), and the lake grows.
                per_event = tree_bytes(lake) / done if done else 30
                reason = headroom(args, scratch, int(per_event * size * 1.3), size * TANSU_BYTES_PER_EVENT)
                if reason:
                    stopped = {"before_events": n, "reason": reason}
                    print(f"ingest: stopping before {n:,} events: {reason}", file=sys.stderr)
                    break
                topic = f"scale_{k}"
                broker.create_topic(topic, args.partitions)
                fill_started = time.monotonic()
                subprocess.run([args.binary, "simulate", "--brokers", broker.bootstrap, "--topic", topic,
                                "--kind", "retail", "--events", str(size), "--seed", str(args.seed + k),
                                *flags, "--producer-property", "linger.ms=50",
                                "--producer-property", "batch.num.messages=10000"],
                               check=True, stdout=subprocess.DEVNULL)
                fill_s = time.monotonic() - fill_started
                broker_rss = tansu_rss(broker)
                load = load_average()
                wall, cpu, rss, out, _ = measured(
                    [args.binary, "--lake", str(lake), "ingest", "--brokers", broker.bootstrap,
                     "--topic", topic, "--table", "raw.retail_events", "--schema", str(SCHEMA),
                     "--group", "bench", "--assign", "all", "--until-idle", "1s",
                     # Tansu holds every fetch for the full wait (bench/RESULTS.md, broker note).
                     "--consumer-property", "fetch.wait.max.ms=10"])
                report = json.loads(out)
                if report["written"] != size:
                    sys.exit(f"ingest round {k}: wrote {report['written']} of {size} events: {report}")
                subprocess.run([args.tansu, "topic", "delete", "--broker", broker.url, topic],
                               check=True, capture_output=True)
                done += size
                rounds.append({"round": k, "events": size, "total_events": done, "wall_s": wall,
                               "cpu_s": cpu, "peak_rss_mib": rss / MIB, "load": load,
                               "cpu_us_per_event": cpu / size * 1e6, "commits": report.get("commits"),
                               "prefill_s": fill_s, "broker_rss_mib": broker_rss / MIB})
                print(f"ingest round {k}: {size:,} events ({done:,} in all): {cpu:.2f} CPU-s, "
                      f"{wall:.2f} s, {rss / MIB:.0f} MiB; broker {broker_rss / MIB:.0f} MiB",
                      file=sys.stderr)
            if stopped:
                break
            mine = [r for r in rounds if r["total_events"] <= n]
            table = table_state(lake)
            if table["records"] != n:
                sys.exit(f"ingest at {n} events: raw.retail_events holds {table['records']} rows")
            cpu = sum(r["cpu_s"] for r in mine)
            wall = sum(r["wall_s"] for r in mine)
            points.append({"events": n, "rounds": len(mine), "cpu_s": cpu, "wall_s": wall,
                           "peak_rss_mib": max(r["peak_rss_mib"] for r in mine),
                           "cpu_s_per_m": cpu / n * 1e6, "wall_s_per_m": wall / n * 1e6,
                           "events_per_s": n / wall, "last_round_cpu_us_per_event": mine[-1]["cpu_us_per_event"],
                           "data_files": table["data_files"], "snapshots": table["snapshots"],
                           "lake_mib": tree_bytes(lake) / MIB})
            p = points[-1]
            print(f"ingest {n:>11,}: {cpu:.2f} CPU-s ({p['cpu_s_per_m']:.3f}/M), {wall:.2f} s, "
                  f"{p['peak_rss_mib']:.0f} MiB, {p['data_files']} files", file=sys.stderr)
    finally:
        broker.stop()
        shutil.rmtree(lake, ignore_errors=True)
    return {"command": "icefjord ingest --until-idle 1s (Tansu memory storage, rounds of "
                       f"≤ {args.round_events:,} events)", "shape": shape, "seed": args.seed,
            "round_events": args.round_events, "partitions": args.partitions,
            "points": points, "rounds": rounds, "stopped": stopped}


def tansu_rss(broker) -> int:
    try:
        for line in Path(f"/proc/{broker.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def table_state(lake: Path) -> dict:
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog("icefjord", uri=f"sqlite:///{lake}/catalog.db", warehouse=f"file://{lake}/warehouse")
    table = catalog.load_table("raw.retail_events")
    summary = table.current_snapshot().summary.additional_properties
    return {"records": int(summary["total-records"]), "data_files": int(summary["total-data-files"]),
            "snapshots": len(table.metadata.snapshots)}


# --- the report: targets, plot and RESULTS section, all from the JSON ---------------

def targets(curve: dict) -> dict:
    """The issue's two targets, from the 10 M point to the largest one (100 M when the
    curve got there)."""
    by = {p["events"]: p for p in curve["points"]}
    if 10_000_000 not in by or max(by) <= 10_000_000:
        return {}
    base, top = by[10_000_000], by[max(by)]
    cpu = top["cpu_s_per_m"] / base["cpu_s_per_m"]
    rss = top["peak_rss_mib"] / base["peak_rss_mib"]
    return {"from_events": 10_000_000, "to_events": top["events"],
            "cpu_per_m_ratio": cpu, "cpu_met": abs(cpu - 1) <= 0.15,
            "rss_ratio": rss, "rss_met": rss <= 1.2}


def plot(doc: dict, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    panels = [("cpu_s_per_m", "CPU-s per million events"), ("wall_s_per_m", "wall s per million events"),
              ("peak_rss_mib", "peak RSS (MiB)")]
    for name, curve in doc["curves"].items():
        xs = [p["events"] / 1e6 for p in curve["points"]]
        for ax, (key, label) in zip(axes, panels):
            ax.plot(xs, [p[key] for p in curve["points"]], marker="o", label=f"icefjord {name}")
    ticks = sorted({p["events"] / 1e6 for c in doc["curves"].values() for p in c["points"]})
    for ax, (_, label) in zip(axes, panels):
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{t:g} M" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("events")
        ax.set_title(label)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    axes[0].legend()
    shapes = "; ".join(f"{n}: {c['shape']}" for n, c in doc["curves"].items())
    binaries = ", ".join(sorted({Path(c["meta"]["binary"]).name for c in doc["curves"].values()}))
    fig.suptitle(f"icefjord scale curve: {binaries}, bench {doc['commit']} ({shapes}); flat = linear",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fmt_events(n: int) -> str:
    return f"{n / 1e6:g} M"


def section(doc: dict) -> str:
    lines = ["## Scale curve (issue 12)", "",
             "Generated by `bench/scale/run` from `bench/out/scale.json` (do not edit by hand); "
             "plot: [`scale.png`](scale.png). Method: the docstring of `bench/scale/bench.py`. "
             "CPU = user + sys, peak RSS and wall from GNU time; scratch on disk (ext4).", "",
             "![scale curve](scale.png)", ""]
    for name, curve in doc["curves"].items():
        meta = curve["meta"]
        lines += [f"### `{curve['command']}`", "",
                  f"Binary `{meta['binary']}` ({meta['version']}), bench commit {meta['commit']}, "
                  f"measured {meta['measured_at']}; shape: {curve['shape']}, seed {curve['seed']}; "
                  f"load average {meta['load_before'][0]} before.", ""]
        if name == "run":
            lines += ["| events | CPU-s | CPU-s / M events | wall | peak RSS | raw files | history rows | load (1 min) |",
                      "|---|---|---|---|---|---|---|---|"]
            for p in curve["points"]:
                lines.append(f"| {fmt_events(p['events'])} | {p['cpu_s']:.2f} | {p['cpu_s_per_m']:.3f} | "
                             f"{p['wall_s']:.1f} s | {p['peak_rss_mib']:.0f} MiB | {p['raw_files']:,} | "
                             f"{p['history_rows']:,} | {p['load'][0]} |")
        else:
            lines += ["| events | rounds | CPU-s | CPU-s / M events | wall | events/s | peak RSS (largest round) | data files | snapshots |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for p in curve["points"]:
                lines.append(f"| {fmt_events(p['events'])} | {p['rounds']} | {p['cpu_s']:.2f} | "
                             f"{p['cpu_s_per_m']:.3f} | {p['wall_s']:.1f} s | {p['events_per_s']:,.0f} | "
                             f"{p['peak_rss_mib']:.0f} MiB | {p['data_files']:,} | {p['snapshots']} |")
            if curve.get("rounds"):
                per_round = ", ".join(f"{r['cpu_us_per_event']:.2f}" for r in curve["rounds"])
                broker = ", ".join(f"{r['broker_rss_mib'] / 1024:.1f}" for r in curve["rounds"])
                lines += ["", f"CPU-µs per event, round by round (the table grows): {per_round}. "
                              f"Tansu's RSS after each round's fill, GiB: {broker}."]
        t = curve.get("targets") or {}
        lines.append("")
        if t:
            top = fmt_events(t["to_events"])
            lines.append(f"**Targets** (10 M → {top}): CPU per million events {t['cpu_per_m_ratio']:.2f}× "
                         f"(within 15 %: {'met' if t['cpu_met'] else 'not met'}); peak RSS "
                         f"{t['rss_ratio']:.2f}× (≤ 1.2×: {'met' if t['rss_met'] else 'not met'}).")
        else:
            lines.append("**Targets**: not evaluated (the curve has no point past 10 M).")
        if curve.get("stopped"):
            s = curve["stopped"]
            lines.append(f"The curve stopped before {fmt_events(s['before_events'])} events: {s['reason']}.")
        lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", default="1000000,10000000,50000000,100000000",
                        help="event counts, ascending, comma-separated")
    parser.add_argument("--commands", default="run,ingest",
                        help="which curves to measure; the others are kept from the previous JSON")
    parser.add_argument("--events-per-day", type=int, default=2_000_000, help="the dense shape")
    parser.add_argument("--batch-events", type=int, default=500_000,
                        help="events per generate commit, when the binary has the flag (the sink's --commit-rows)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=1, help="runs of `icefjord run` per point (median CPU)")
    parser.add_argument("--round-events", type=int, default=10_000_000,
                        help="events per broker fill for ingest (Tansu keeps them in RAM)")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--reserve-gb", type=float, default=8.0,
                        help="disk and memory left for others: the curve stops before a point that would eat into it")
    parser.add_argument("--binary", default=default_binary())
    parser.add_argument("--tansu", help="Tansu binary (scripts/install-tansu); needed for ingest")
    parser.add_argument("--out", default=str(ROOT / "bench" / "out"))
    parser.add_argument("--scratch", default=str(ROOT / "bench" / "out" / "scale-work"))
    parser.add_argument("--report-only", action="store_true",
                        help="redraw the plot and the RESULTS section from the JSON, measure nothing")
    args = parser.parse_args()
    args.points = sorted(int(p) for p in args.points.split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / OUT_JSON
    previous = json.loads(path.read_text()) if path.exists() else {"curves": {}}

    if args.report_only:
        doc = previous
    else:
        commands = args.commands.split(",")
        if "ingest" in commands and not args.tansu:
            sys.exit("--tansu is needed for the ingest curve (bench/scale/run passes it)")
        scratch = Path(args.scratch)
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        version = subprocess.run([args.binary, "-V"], capture_output=True, text=True).stdout.strip()
        curves = {k: v for k, v in previous.get("curves", {}).items() if k not in commands}
        try:
            for name in ("run", "ingest"):
                if name not in commands:
                    continue
                meta = {"binary": args.binary, "version": version, "commit": commit(),
                        "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                        "load_before": load_average()}
                started = time.monotonic()
                curve = run_curve(args, scratch) if name == "run" else ingest_curve(args, scratch)
                meta["bench_s"] = time.monotonic() - started
                curve["meta"] = meta
                curve["targets"] = targets(curve)
                curves[name] = curve
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        doc = {"benchmark": "scale", "commit": commit(), "machine": machine(),
               "curves": {k: curves[k] for k in ("run", "ingest") if k in curves}}
        path.write_text(json.dumps(doc, indent=2))
    plot(doc, PLOT)
    replace_section(RESULTS, "scale", section(doc))
    print(json.dumps({k: {"points": [(p["events"], round(p["cpu_s"], 2), round(p["peak_rss_mib"]))
                                     for p in c["points"]], "targets": c.get("targets"),
                          "stopped": c.get("stopped")} for k, c in doc["curves"].items()}, indent=2))


if __name__ == "__main__":
    main()
