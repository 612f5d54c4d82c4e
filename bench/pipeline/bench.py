"""Pipeline benchmark (issue 4): the shipped retail pipeline on N retail events
(20 M by default) against DuckDB, Polars and PySpark (local[2]) running the same
definitions on the same Parquet files.

1. `icefjord generate --kind retail --events N --seed 7` fills raw.retail_events
   (the sink's layout) once; PyIceberg lists its data files for the peers.
2. Each engine, --repeat times (median CPU reported), as child processes under GNU
   time (CPU = user + sys, peak RSS):
   - icefjord: `icefjord run jobs/retail` on a fresh copy of the raw lake (it
     writes historical.sales_hourly and publishes the views), then one
     `icefjord sql` process reading the four unified views; CPU and wall are the
     sum of both, RSS their maximum;
   - DuckDB / Polars / PySpark: sales_hourly from the raw files, written to
     Parquet (zstd), then the four views' aggregates from it.
3. Every engine prints checksums of its five outputs (row counts, sums of units and
   money, sum of ranks); they must agree. Results: bench/out/pipeline.json.

With --shapes (issue 12), the same measurement runs on each named shape of
bench/pipeline/shapes.py (10 M events each by default; density, time range, key
skew and file layout): bench/out/pipeline-<shape>.json, then report.py rewrites
the shapes section of bench/RESULTS.md from every pipeline-<shape>.json.

Run through bench/pipeline/run.
"""

import argparse
import json
import shutil
import sys
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import ROOT, commit, default_scratch, machine, measured  # noqa: E402

SALE = "CASE WHEN transaction_type = 'SALE' THEN {} ELSE 0 END"
RETURN = "CASE WHEN transaction_type = 'RETURN' THEN {} ELSE 0 END"
RESTOCK = "CASE WHEN transaction_type = 'RESTOCK' THEN {} ELSE 0 END"
AMOUNT = "quantity * unit_price"

# One query per output over the engine's sales_hourly table (`h`), giving the
# checksums every engine must agree on.
CHECKS = {
    "sales_hourly": "SELECT count(*), sum(sales_units), sum(sales_amount), sum(return_amount), "
                    "sum(event_count) FROM {h}",
    "sales_by_category": "SELECT count(*), sum(sales_units), sum(net_revenue) FROM {category}",
    "sales_by_store": "SELECT count(*), sum(sales_units), sum(net_revenue) FROM {store}",
    "hourly_sales_trend": "SELECT count(*), sum(sales_units), sum(net_revenue) FROM {trend}",
    "product_performance": "SELECT count(*), sum(net_revenue), sum(revenue_rank) FROM {products}",
}

HOURLY_SQL = f"""
SELECT date_trunc('hour', event_time) AS hour, store_id, category, product_id,
       sum({SALE.format('quantity')}) AS sales_units,
       sum({SALE.format(AMOUNT)}) AS sales_amount,
       sum({RETURN.format('quantity')}) AS return_units,
       sum({RETURN.format(AMOUNT)}) AS return_amount,
       sum({RESTOCK.format('quantity')}) AS restock_units,
       count(*) AS event_count
FROM raw GROUP BY 1, 2, 3, 4
"""

VIEWS_SQL = {
    "category": "SELECT category, sum(sales_units) AS sales_units, sum(sales_amount) AS sales_amount, "
                "sum(return_amount) AS return_amount, sum(sales_amount) - sum(return_amount) AS net_revenue "
                "FROM h GROUP BY category",
    "store": "SELECT store_id, sum(sales_units) AS sales_units, sum(sales_amount) AS sales_amount, "
             "sum(return_amount) AS return_amount, sum(sales_amount) - sum(return_amount) AS net_revenue "
             "FROM h GROUP BY store_id",
    "trend": "SELECT hour, sum(sales_units) AS sales_units, sum(sales_amount) AS sales_amount, "
             "sum(sales_amount) - sum(return_amount) AS net_revenue FROM h GROUP BY hour",
    "products": "SELECT product_id, category, sales_units, sales_amount, net_revenue, "
                "rank() OVER (ORDER BY net_revenue DESC) AS revenue_rank FROM ("
                "SELECT product_id, category, sum(sales_units) AS sales_units, "
                "sum(sales_amount) AS sales_amount, sum(sales_amount) - sum(return_amount) AS net_revenue "
                "FROM h GROUP BY product_id, category)",
}

DUCKDB = """
import json, duckdb
files = json.load(open({files!r}))
con = duckdb.connect(config={{'threads': 2}})
con.read_parquet(files).create_view('raw')
con.execute('''CREATE TABLE h AS {hourly}''')
con.execute("COPY h TO '{out}/duckdb_sales_hourly.parquet' (FORMAT parquet, COMPRESSION zstd)")
views = {views!r}
for name, sql in views.items():
    con.execute(f'CREATE TABLE {{name}} AS {{sql}}')
checks = {checks!r}
print(json.dumps({{k: [str(v) for v in con.execute(q.format(h='h', category='category', store='store',
    trend='trend', products='products')).fetchone()] for k, q in checks.items()}}))
"""

POLARS = """
import json, polars as pl
files = json.load(open({files!r}))
ctx = pl.SQLContext(raw=pl.scan_parquet(files))
hourly = ctx.execute('''{hourly}''')
hourly.sink_parquet('{out}/polars_sales_hourly.parquet', compression='zstd')
h = pl.scan_parquet('{out}/polars_sales_hourly.parquet')
views = {views!r}
tables = {{'h': h.collect()}}
for name, sql in views.items():
    tables[name] = pl.SQLContext(h=h).execute(sql).collect()
ctx = pl.SQLContext(**{{k: v.lazy() for k, v in tables.items()}})
checks = {checks!r}
print(json.dumps({{k: [str(v) for v in ctx.execute(q.format(h='h', category='category', store='store',
    trend='trend', products='products')).collect().row(0)] for k, q in checks.items()}}))
"""

SPARK = """
import json
from pyspark.sql import SparkSession
files = json.load(open({files!r}))
spark = (SparkSession.builder.master('local[2]').appName('bench')
         .config('spark.ui.enabled', 'false').config('spark.sql.shuffle.partitions', '8')
         .config('spark.driver.memory', '4g').getOrCreate())
spark.sparkContext.setLogLevel('ERROR')
spark.read.parquet(*files).createOrReplaceTempView('raw')
spark.sql('''{hourly}''').write.mode('overwrite').option('compression', 'zstd').parquet('{out}/spark_sales_hourly')
spark.read.parquet('{out}/spark_sales_hourly').createOrReplaceTempView('h')
views = {views!r}
for name, sql in views.items():
    spark.sql(sql).cache().createOrReplaceTempView(name)
checks = {checks!r}
result = {{k: [str(v) for v in spark.sql(q.format(h='h', category='category', store='store',
    trend='trend', products='products')).collect()[0]] for k, q in checks.items()}}
# The JVM is not a process GNU time waits for: read its CPU and peak RSS from /proc.
pid = spark._jvm.java.lang.ProcessHandle.current().pid()
fields = open(f'/proc/{{pid}}/stat').read().rsplit(')', 1)[1].split()
ticks = __import__('os').sysconf('SC_CLK_TCK')
jvm_cpu = (int(fields[11]) + int(fields[12])) / ticks
hwm = [l for l in open(f'/proc/{{pid}}/status') if l.startswith('VmHWM')][0].split()[1]
print(json.dumps({{'checks': result, 'extra_cpu_s': jvm_cpu, 'extra_rss_kib': int(hwm)}}))
spark.stop()
"""

OURS_CHECKS = {
    "sales_hourly": CHECKS["sales_hourly"].format(h="historical.sales_hourly"),
    "sales_by_category": CHECKS["sales_by_category"].format(category="unified.sales_by_category"),
    "sales_by_store": CHECKS["sales_by_store"].format(store="unified.sales_by_store"),
    "hourly_sales_trend": CHECKS["hourly_sales_trend"].format(trend="unified.hourly_sales_trend"),
    "product_performance": CHECKS["product_performance"].format(products="unified.product_performance"),
}


def normal(checks: dict) -> dict:
    """Numbers as normalized decimals, so 1.50 == 1.5 across engines."""
    def one(v):
        try:
            return str(Decimal(v).normalize())
        except ArithmeticError:
            return v
    return {k: [one(v) for v in vs] for k, vs in checks.items()}


# `icefjord-nothp`: the same binary with mimalloc's transparent huge pages off
# (what the mimalloc crate's `no_thp` feature builds in), issue 12's candidate fix
# for the kernel time spent zeroing huge pages mimalloc re-faults.
ICEFJORD_ENV = {"icefjord": {}, "icefjord-nothp": {"MIMALLOC_ALLOW_THP": "0"}}


def run_icefjord(args, raw_lake: Path, lake: Path, env: dict | None = None) -> dict:
    shutil.rmtree(lake, ignore_errors=True)
    shutil.copytree(raw_lake, lake)
    env = {**__import__("os").environ, **(env or {})}
    wall, cpu, rss, _, _ = measured([args.binary, "--lake", str(lake), "run", str(ROOT / "jobs" / "retail"),
                                     "-o", "json"], env=env)
    # The checksums read the history and the four views, one `sql` process each.
    queries = [f"SELECT '{k}' AS k, * FROM ({q}) AS x" for k, q in OURS_CHECKS.items()]
    checks = {}
    wall2 = cpu2 = 0.0
    rss2 = 0
    for query in queries:
        w, c, r, out, _ = measured([args.binary, "--lake", str(lake), "sql", "-o", "json", query], env=env)
        row = json.loads(out)[0]
        key = row.pop("k")
        checks[key] = [str(v) for v in row.values()]
        wall2, cpu2, rss2 = wall2 + w, cpu2 + c, max(rss2, r)
    return {"wall_s": wall + wall2, "cpu_s": cpu + cpu2, "peak_rss_mib": max(rss, rss2) / 2**20,
            "run": {"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": rss / 2**20},
            "checks": normal(checks)}


def run_peer(args, template: str, files_json: Path, out: Path) -> dict:
    script = template.format(files=str(files_json), out=str(out), hourly=HOURLY_SQL,
                             views=VIEWS_SQL, checks=CHECKS)
    env = {**__import__("os").environ, "POLARS_MAX_THREADS": "2"}
    wall, cpu, rss, printed, _ = measured([sys.executable, "-c", script], env=env)
    report = json.loads(printed.decode().strip().splitlines()[-1])
    if "checks" in report:
        # PySpark: the driver (measured) plus its JVM (reported from /proc). The
        # peak RSS is the larger of the two processes, not their sum.
        cpu += report["extra_cpu_s"]
        rss = max(rss, report["extra_rss_kib"] * 1024)
        report = report["checks"]
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": rss / 2**20, "checks": normal(report)}


def list_files(lake: Path) -> list:
    """The data files of the lake's raw.retail_events (what the peers read)."""
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog("icefjord", uri=f"sqlite:///{lake}/catalog.db",
                         warehouse=f"file://{lake}/warehouse")
    return [t.file.file_path.removeprefix("file://")
            for t in catalog.load_table("raw.retail_events").scan().plan_files()]


def measure(args, raw_lake: Path, scratch: Path, label: str = "", engines: list | None = None) -> dict:
    """Every engine of `engines` (default --engines) on the raw lake's files,
    --repeat times (PySpark --spark-repeat times); medians by CPU, each
    icefjord variant's ratios to the peers, and whether all checksums agree."""
    files = list_files(raw_lake)
    files_json = scratch / "files.json"
    files_json.write_text(json.dumps(files))
    engines = engines or args.engines.split(",")
    runs = {name: [] for name in engines}
    for i in range(args.repeat):
        for name in engines:
            if name == "pyspark" and i >= args.spark_repeat:
                continue
            if name in ICEFJORD_ENV:
                runs[name].append(run_icefjord(args, raw_lake, scratch / "lake", ICEFJORD_ENV[name]))
                shutil.rmtree(scratch / "lake", ignore_errors=True)
            else:
                template = {"duckdb": DUCKDB, "polars": POLARS, "pyspark": SPARK}[name]
                runs[name].append(run_peer(args, template, files_json, scratch))
            print(f"{label}run {i + 1} {name}: {runs[name][-1]['cpu_s']:.2f} CPU-s, "
                  f"{runs[name][-1]['wall_s']:.2f} s, {runs[name][-1]['peak_rss_mib']:.0f} MiB",
                  file=sys.stderr)
    results = {name: sorted(rs, key=lambda r: r["cpu_s"])[len(rs) // 2] for name, rs in runs.items()}
    checks = {json.dumps(r["checks"], sort_keys=True) for rs in runs.values() for r in rs}
    ratios = {}
    for ours in (e for e in results if e in ICEFJORD_ENV):
        prefix = "" if ours == "icefjord" else f"{ours}_"
        for peer in (e for e in results if e not in ICEFJORD_ENV):
            ratios[f"{prefix}cpu_vs_{peer}"] = results[ours]["cpu_s"] / results[peer]["cpu_s"]
            ratios[f"{prefix}rss_vs_{peer}"] = results[ours]["peak_rss_mib"] / results[peer]["peak_rss_mib"]
    return {"files": len(files), "checksums_agree": len(checks) == 1, "checksums": sorted(checks),
            "results": results, "runs": runs, "ratios": ratios}


def run_legacy(args, scratch: Path) -> None:
    """The issue-4 benchmark: --events (20 M) of the default shape, the sink's
    layout; bench/out/pipeline.json."""
    raw_lake = scratch / "raw-lake"
    _, gen_cpu, _, _, _ = measured([args.binary, "--lake", str(raw_lake), "generate", "--kind", "retail",
                                    "--events", str(args.events or 20_000_000), "--seed", "7"])
    measurement = measure(args, raw_lake, scratch)
    document = {"benchmark": "pipeline", "events": args.events or 20_000_000, "repeat": args.repeat,
                "generate_cpu_s": gen_cpu, "commit": commit(), "machine": machine(), **measurement}
    write(args, "pipeline.json", document)


def write(args, name: str, document: dict) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(document, indent=2))
    print(json.dumps({k: v for k, v in document.items() if k != "runs"}, indent=2))
    if not document["checksums_agree"]:
        sys.exit(f"checksums differ across engines: {document['checksums']}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=None,
                        help="events per table (default 20 M; with --shapes, 10 M per shape)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--spark-repeat", type=int, default=1,
                        help="runs of PySpark (at most --repeat; it costs ~10x the others)")
    parser.add_argument("--shapes", default=None,
                        help="all, or shape names (bench/pipeline/shapes.py), comma-separated: "
                             "one bench/out/pipeline-<shape>.json each, then the shapes section "
                             "of bench/RESULTS.md is regenerated")
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "icefjord"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "out"))
    parser.add_argument("--scratch", default=default_scratch())
    parser.add_argument("--engines", default="icefjord,duckdb,polars,pyspark",
                        help="of icefjord, icefjord-nothp, duckdb, polars, pyspark")
    parser.add_argument("--spark-shapes", default="sparse,dense-2m",
                        help="with --shapes: the shapes PySpark runs on (all: every one); "
                             "it takes ~2.5 min a run on 2 cores")
    args = parser.parse_args()

    scratch = Path(args.scratch) / "icefjord-bench-pipeline"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        if args.shapes is None:
            run_legacy(args, scratch)
        else:
            from run_shapes import run_shapes

            run_shapes(args, scratch, measure, write)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
