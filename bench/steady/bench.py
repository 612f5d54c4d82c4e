"""Steady-state runs (issue 12): what the run *after* the first costs. Airflow runs
jobs/retail every hour on a history that keeps growing, so the next run is the
workload. Targets, with 10 M events of history: a run with no new events ≤ 5 % of
the first run's CPU; with 1 % new events (recent hours) ≤ 20 %; the peak RSS of
either ≤ the first run's.

1. `icefjord generate --kind retail --events N --seed 11` fills raw.retail_events
   (10 M by default, the generator's default shape unless --events-per-day).
2. First run: `icefjord run jobs/retail -o json` on that lake, --repeat times
   (median CPU kept), each time on the generated state put back in place (saved
   with data files hard-linked and the catalog copied); the state the first run
   leaves is saved too, and every step starts from it.
3. Each step, from that state: top the raw table up by P % of N with the same
   generator stream (`generate --events N·(1+P/100)`: later, i.e. recent,
   hours), then `icefjord run jobs/retail` again, --repeat times on the
   topped-up state. Steps `0` (nothing new), `1` and `10` by default.
   The `+late` steps (`1+late`, `10+late`) run on a second history generated
   with `--late F` (0.1): a share F of the events, the top-up's included, gets
   an event time drawn from the history before it, so old hours change too. The
   generator keeps one shape per table (a top-up must repeat it), hence the
   second history, with a first run of its own that those steps are compared
   with. A binary without `--late` skips them and says so.
4. Measured per run (GNU time, `measured` in bench/common.py): CPU-s (user + sys),
   wall, peak RSS, and their ratios to its history's first run. What the run did, per
   materialized model: from the JSON run report `rows` and `files`, and
   `rows_read`, `files_deleted`, `bytes_written` when the binary reports them
   (absent: shown as —); from the Iceberg snapshots the run committed (summary
   fields every Iceberg writer keeps): data files added and deleted, bytes added,
   records added and deleted.
5. Correctness after the first run and after each step: the published
   unified.sales_hourly and historical.sales_hourly (read with `icefjord sql`)
   must both hold the checksums of DuckDB's hourly aggregate over every raw data
   file (listed with PyIceberg): rows, the sums of every measure, and two
   weighted sums that move when an event lands in the wrong hour or store. A
   mismatch fails the benchmark.

Results: bench/out/steady.json and the "Steady state" section of
bench/RESULTS.md, regenerated from the JSON (`--report-only`). Run through
bench/steady/run.
"""

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import (ROOT, clone_lake, commit, default_binary, default_scratch, has_flag,  # noqa: E402
                    load_average, machine, measured, replace_section, restore_lake)

MIB = 2**20
RESULTS = ROOT / "bench" / "RESULTS.md"
# Per model: the run report's own fields (the last three are newer than some binaries).
REPORT_FIELDS = ("rows", "files", "rows_read", "files_deleted", "bytes_written")
SNAPSHOT_FIELDS = ("added-data-files", "deleted-data-files", "added-files-size", "removed-files-size",
                   "added-records", "deleted-records")

# The checksums of an hourly table `{t}`; {hour_index} is the hour as an integer,
# spelled per engine. The weighted sums catch an event counted in the wrong hour or
# store, which plain sums do not.
CHECKS = ("SELECT count(*) AS hourly_rows, sum(sales_units) AS sales_units, sum(sales_amount) AS sales_amount, "
          "sum(return_units) AS return_units, sum(return_amount) AS return_amount, "
          "sum(restock_units) AS restock_units, sum(event_count) AS events, "
          "sum(event_count * ({hour_index} % 997)) AS events_by_hour, "
          "sum(sales_units * store_id) AS units_by_store FROM {t}")
HOUR_INDEX = {"icefjord": "CAST(date_part('epoch', hour) AS BIGINT) / 3600",
              "duckdb": "CAST(epoch(hour) AS BIGINT) // 3600"}


def pipeline_module():
    """bench/pipeline/bench.py, for its hourly aggregate and number normalization:
    one definition of what the peers compute."""
    spec = importlib.util.spec_from_file_location("pipeline_bench",
                                                  ROOT / "bench" / "pipeline" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PIPELINE = pipeline_module()


def catalog(lake: Path):
    from pyiceberg.catalog.sql import SqlCatalog

    return SqlCatalog("icefjord", uri=f"sqlite:///{lake}/catalog.db", warehouse=f"file://{lake}/warehouse")


def raw_files(lake: Path) -> list:
    return [t.file.file_path.removeprefix("file://")
            for t in catalog(lake).load_table("raw.retail_events").scan().plan_files()]


def checksums(args, lake: Path) -> dict:
    """{source: {checksum: value}} for DuckDB's aggregate of the raw files and for
    icefjord's published unified.sales_hourly and historical.sales_hourly."""
    import duckdb

    con = duckdb.connect(config={"threads": 2})
    con.read_parquet(raw_files(lake)).create_view("raw")
    cur = con.execute(CHECKS.format(t=f"({PIPELINE.HOURLY_SQL})", hour_index=HOUR_INDEX["duckdb"]))
    names = [d[0] for d in cur.description]
    found = {"duckdb": [str(v) for v in cur.fetchone()]}
    for table in ("unified.sales_hourly", "historical.sales_hourly"):
        query = CHECKS.format(t=table, hour_index=HOUR_INDEX["icefjord"])
        out = subprocess.run([args.binary, "--lake", str(lake), "sql", "-o", "json", query],
                             check=True, capture_output=True).stdout
        row = json.loads(out)[0]
        found[table] = [str(row[n]) for n in names]
    # Numbers as normalized decimals, so 1.50 == 1.5 across engines (written out in
    # full: 1000000, not 1E+6).
    return {source: dict(zip(names, (format(Decimal(v), "f") for v in values)))
            for source, values in PIPELINE.normal(found).items()}


def check(args, lake: Path, step: str) -> dict:
    sums = checksums(args, lake)
    expected = sums.pop("duckdb")
    wrong = {source: values for source, values in sums.items() if values != expected}
    if wrong:
        sys.exit(f"{step}: checksums differ from DuckDB's {expected}: {wrong}")
    return expected


def committed(lake: Path, report: dict) -> dict:
    """Per model the run published: the summaries of the snapshots it committed
    (found by the run id every commit of ours carries), summed."""
    found = {}
    cat = catalog(lake)
    for model in report["models"]:
        if model.get("snapshot_id") is None:
            continue
        table = cat.load_table(model["model"])
        totals = dict.fromkeys(SNAPSHOT_FIELDS, 0)
        snapshots = 0
        for snapshot in table.metadata.snapshots:
            props = snapshot.summary.additional_properties
            if props.get("icefjord.run-id") != report["run_id"]:
                continue
            snapshots += 1
            for field in SNAPSHOT_FIELDS:
                totals[field] += int(props.get(field, 0))
        found[model["model"]] = {"snapshots": snapshots, **totals}
    return found


def model_fields(report: dict) -> dict:
    """The report's per-model cost fields for every materialized model (views have no files)."""
    return {m["model"]: {f: m.get(f) for f in REPORT_FIELDS}
            for m in report["models"] if m.get("kind") != "view"}


def run_once(args, saved: Path, lake: Path) -> dict:
    restore_lake(saved, lake)
    load = load_average()
    wall, cpu, rss, out, _ = measured([args.binary, "--lake", str(lake), "run",
                                       str(ROOT / "jobs" / "retail"), "-o", "json"])
    report = json.loads(out)
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": rss / MIB, "load": load,
            "duration_s": report.get("duration_s"), "models": model_fields(report),
            "committed": committed(lake, report)}


def measure(args, saved: Path, lake: Path, label: str) -> dict:
    """--repeat runs, each on the state `saved` put back at `lake`; the median-CPU
    run stands for them, every run is kept. The lake is left as the last run made it."""
    runs = []
    for i in range(args.repeat):
        runs.append(run_once(args, saved, lake))
        run = runs[-1]
        print(f"{label} run {i + 1}: {run['cpu_s']:.2f} CPU-s, {run['wall_s']:.2f} s, "
              f"{run['peak_rss_mib']:.0f} MiB, load {run['load'][0]}", file=sys.stderr)
    median = sorted(runs, key=lambda r: r["cpu_s"])[len(runs) // 2]
    return {**median, "runs": [{k: r[k] for k in ("wall_s", "cpu_s", "peak_rss_mib", "load")}
                               for r in runs]}


def parse_step(spec: str) -> dict:
    pct, _, late = spec.partition("+")
    if late not in ("", "late"):
        sys.exit(f"bad step {spec!r}: P or P+late, e.g. 0,1,10,1+late,10+late")
    return {"step": spec, "new_pct": float(pct), "late": late == "late"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="events of history")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--steps", default="0,1,10,1+late,10+late",
                        help="new events per step in %% of the history; +late: with --late")
    parser.add_argument("--late", type=float, default=0.1,
                        help="share of the +late history's events (top-ups included) that fall in old hours")
    parser.add_argument("--events-per-day", type=int,
                        help="history density (default: the generator's own, ~8 640/day)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--binary", default=default_binary())
    parser.add_argument("--out", default=str(ROOT / "bench" / "out"))
    parser.add_argument("--scratch", default=default_scratch())
    parser.add_argument("--report-only", action="store_true",
                        help="regenerate the RESULTS section from the JSON, measure nothing")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "steady.json"
    if args.report_only:
        replace_section(RESULTS, "steady", section(json.loads(path.read_text())))
        return

    notes = []
    shape = []
    if args.events_per_day:
        if not has_flag(args.binary, "generate", "--events-per-day"):
            sys.exit("--events-per-day: this binary's `generate` has no such flag")
        shape = ["--events-per-day", str(args.events_per_day)]
    specs = [parse_step(spec) for spec in args.steps.split(",")]
    late_specs = [s for s in specs if s["late"]]
    if late_specs and not has_flag(args.binary, "generate", "--late"):
        notes.append("the binary's `generate` has no --late: the `+late` steps were skipped")
        print(f"note: {notes[-1]}", file=sys.stderr)
        for s in late_specs:
            s["skipped"] = "no `generate --late` in this binary"
        late_specs = []
    scratch = Path(args.scratch) / "icefjord-bench-steady"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    started = time.monotonic()
    version = subprocess.run([args.binary, "-V"], capture_output=True, text=True).stdout.strip()
    load_before = load_average()
    generate = [args.binary, "generate", "--kind", "retail", "--seed", str(args.seed), *shape]
    first_late = None
    try:
        first = history(args, generate, scratch, [s for s in specs if not s["late"]], late=False)
        if late_specs:
            first_late = history(args, generate, scratch, late_specs, late=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    document = {"benchmark": "steady", "events": args.events, "seed": args.seed,
                "events_per_day": args.events_per_day, "late": args.late, "repeat": args.repeat,
                "binary": args.binary, "version": version, "commit": commit(), "machine": machine(),
                "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "load_before": load_before, "bench_s": time.monotonic() - started,
                "notes": notes, "first": first, "first_late": first_late, "steps": specs,
                "targets": targets(specs)}
    path.write_text(json.dumps(document, indent=2))
    replace_section(RESULTS, "steady", section(document))
    print(json.dumps({"first_cpu_s": first["cpu_s"], "targets": document["targets"],
                      "steps": {s["step"]: s.get("cpu_vs_first", s.get("skipped")) for s in specs}},
                     indent=2))


def history(args, generate: list, scratch: Path, steps: list, late: bool) -> dict:
    """One history of --events events (with --late F throughout when `late`: the
    generator keeps one shape per table, top-ups included), its first run, then each
    step from the state that run left; fills in the steps, returns the first run."""
    shape = [*generate[1:], *(["--late", str(args.late)] if late else [])]
    label = "late history: " if late else ""
    # One lake path throughout (its metadata holds absolute paths); states are saved
    # beside it with clone_lake and put back with restore_lake.
    lake = scratch / "lake"
    raw, after_first, topped = scratch / "saved-raw", scratch / "saved-first", scratch / "saved-step"
    for path in (lake, raw, after_first):
        shutil.rmtree(path, ignore_errors=True)
    _, gen_cpu, _, _, _ = measured([generate[0], "--lake", str(lake), *shape, "--events", str(args.events)])
    clone_lake(lake, raw)
    first = measure(args, raw, lake, f"{label}first")
    first["checks"] = check(args, lake, f"{label}first run")
    first["generate_cpu_s"] = gen_cpu
    clone_lake(lake, after_first)
    for step in steps:
        new = round(args.events * step["new_pct"] / 100)
        step["new_events"] = new
        restore_lake(after_first, lake)
        if new:
            _, step["topup_cpu_s"], _, _, _ = measured(
                [generate[0], "--lake", str(lake), *shape, "--events", str(args.events + new)])
        shutil.rmtree(topped, ignore_errors=True)
        clone_lake(lake, topped)
        step.update(measure(args, topped, lake, f"step {step['step']}"))
        step["checks"] = check(args, lake, f"step {step['step']}")
        step["cpu_vs_first"] = step["cpu_s"] / first["cpu_s"]
        step["rss_vs_first"] = step["peak_rss_mib"] / first["peak_rss_mib"]
        print(f"step {step['step']}: {step['cpu_vs_first']:.1%} of the first run's CPU, "
              f"{step['rss_vs_first']:.2f}x its RSS", file=sys.stderr)
    return first


def targets(steps: list) -> dict:
    by = {s["step"]: s for s in steps if "cpu_s" in s}
    found = {}
    for spec, limit in (("0", 0.05), ("1", 0.20)):
        if spec in by:
            s = by[spec]
            found[spec] = {"cpu_vs_first": s["cpu_vs_first"], "cpu_limit": limit,
                           "cpu_met": s["cpu_vs_first"] <= limit,
                           "rss_vs_first": s["rss_vs_first"], "rss_met": s["rss_vs_first"] <= 1.0}
    return found


def number(v, fmt="{:,}") -> str:
    return "—" if v is None else fmt.format(v)


def section(doc: dict) -> str:
    first = doc["first"]
    shape = (f"{doc['events_per_day']:,} events/day" if doc.get("events_per_day")
             else "the generator's default (~8 640 events/day)")
    lines = [
        "## Steady state: the run after the first (issue 12)", "",
        "Generated by `bench/steady/run` from `bench/out/steady.json` (do not edit by hand). "
        "Method: the docstring of `bench/steady/bench.py`.", "",
        f"Binary `{doc['binary']}` ({doc['version']}), bench commit {doc['commit']}, measured "
        f"{doc['measured_at']}; history {doc['events']:,} events (`generate --seed {doc['seed']}`, "
        f"{shape}); late share of `+late` steps: {doc['late']}; {doc['repeat']} runs per row "
        f"(median CPU); load average {doc['load_before'][0]} before; the whole benchmark took "
        f"{doc['bench_s'] / 60:.1f} min.", "",
        "| run | new events | CPU-s | × its first run | wall | peak RSS | × its first run |",
        "|---|---|---|---|---|---|---|",
    ]
    runs = [("first (empty history)", f"{doc['events']:,}", first)]
    if doc.get("first_late"):
        runs.append((f"first, history with {doc['late']:.0%} late", f"{doc['events']:,}", doc["first_late"]))
    for s in doc["steps"]:
        late = f"{doc['late']:.0%} of them late" if s["late"] else "recent hours"
        new = f"{s['new_events']:,} = {s['new_pct']:g} %, {late}" if s.get("new_events") else (
            "none" if s["new_pct"] == 0 else f"{s['new_pct']:g} %, {late}")
        runs.append((f"next: {s['step']}", new, s))
    for name, new, r in runs:
        if "skipped" in r:
            lines.append(f"| {name} | {new} | skipped: {r['skipped']} | | | | |")
        else:
            lines.append(f"| {name} | {new} | {r['cpu_s']:.2f} | {r.get('cpu_vs_first', 1):.1%} | "
                         f"{r['wall_s']:.2f} s | {r['peak_rss_mib']:.0f} MiB | "
                         f"{r.get('rss_vs_first', 1):.2f}× |")
    lines += ["", "What each run did to historical.sales_hourly, and the events the published tables count:", "",
              "| run | report: rows | rows_read | files | files_deleted | bytes_written | "
              "snapshots: data files added / deleted | bytes added / removed | records added / deleted | "
              "events counted |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name, _, r in runs:
        if "skipped" in r:
            continue
        m = r["models"].get("historical.sales_hourly", {})
        c = r["committed"].get("historical.sales_hourly", {})
        lines.append(f"| {name} | {number(m.get('rows'))} | {number(m.get('rows_read'))} | "
                     f"{number(m.get('files'))} | {number(m.get('files_deleted'))} | "
                     f"{number(m.get('bytes_written'))} | {number(c.get('added-data-files'))} / "
                     f"{number(c.get('deleted-data-files'))} | {number(c.get('added-files-size'))} / "
                     f"{number(c.get('removed-files-size'))} | {number(c.get('added-records'))} / "
                     f"{number(c.get('deleted-records'))} | {number(int(Decimal(r['checks']['events'])))} |")
    lines += ["", "The history columns are historical.sales_hourly's: `rows` and `files` from the run "
              "report, `rows_read`, `files_deleted` and `bytes_written` from it when the binary reports "
              "them (— when not), and the added/deleted files and bytes from the Iceberg snapshots the "
              "run committed. Checksums (rows, measure sums, hour- and store-weighted sums) of the "
              "published unified.sales_hourly and historical.sales_hourly equal DuckDB's hourly "
              "aggregate over every raw file after the first run and after every step.", ""]
    names = {"0": "no new events: CPU ≤ 5 % of the first run's", "1": "1 % new events: CPU ≤ 20 %"}
    for spec, t in doc["targets"].items():
        lines.append(f"- {names[spec]}: {t['cpu_vs_first']:.1%}, **{'met' if t['cpu_met'] else 'not met'}**; "
                     f"peak RSS ≤ the first run's: {t['rss_vs_first']:.2f}×, "
                     f"**{'met' if t['rss_met'] else 'not met'}**.")
    for note in doc.get("notes", []):
        lines.append(f"- Note: {note}.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
