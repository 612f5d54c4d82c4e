"""`bench.py --shapes`: the pipeline benchmark on each shape of shapes.py.

For each selected shape: `icefjord generate` (once per distinct set of flags,
seed 7), the shape's layout (layout.py, a child process), then bench.py's
measurement of every engine on that layout's files; the document goes to
bench/out/pipeline-<shape>.json. Scratch lakes are deleted as soon as no later
shape needs them. At the end report.py regenerates the shapes section of
bench/RESULTS.md from every pipeline-<shape>.json there is.
"""

import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import ROOT, commit, machine, measured  # noqa: E402
from report import regenerate  # noqa: E402
from shapes import SHAPES, select  # noqa: E402

LAYOUT = Path(__file__).resolve().parent / "layout.py"


def run_shapes(args, scratch: Path, measure, write) -> None:
    names = select(args.shapes)
    events = args.events or 10_000_000
    last_use = {tuple(SHAPES[n][0]): n for n in names}
    generated = {}
    failed = []
    for name in names:
        flags, layout, about = SHAPES[name]
        started = time.monotonic()
        key = tuple(flags)
        if key not in generated:
            lake = scratch / f"raw-{len(generated)}"
            wall, cpu, _, out, _ = measured([args.binary, "--lake", str(lake), "generate", "--kind", "retail",
                                             "--events", str(events), "--seed", "7", *flags])
            generated[key] = {"lake": lake, "generate_cpu_s": cpu, "generate_wall_s": wall,
                              "sink_files": json.loads(out)["files"]}
        source = generated[key]
        data_lake, layout_cpu = source["lake"], 0.0
        if layout != "sink":
            data_lake = scratch / f"layout-{name}"
            _, layout_cpu, _, out, _ = measured([sys.executable, str(LAYOUT), str(source["lake"]),
                                                 str(data_lake), layout])
        engines = [e for e in args.engines.split(",")
                   if e != "pyspark" or args.spark_shapes == "all" or name in args.spark_shapes.split(",")]
        measurement = measure(args, data_lake, scratch, label=f"{name}: ", engines=engines)
        document = {"benchmark": "pipeline", "shape": name, "about": about, "layout": layout,
                    "generate": ["--events", str(events), "--seed", "7", *flags], "events": events,
                    "repeat": args.repeat, "spark_repeat": args.spark_repeat,
                    "generate_cpu_s": source["generate_cpu_s"], "layout_cpu_s": layout_cpu,
                    "commit": commit(), "machine": machine(),
                    "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    **measurement}
        if layout != "sink":
            shutil.rmtree(data_lake, ignore_errors=True)
        if last_use[key] == name:
            shutil.rmtree(source["lake"], ignore_errors=True)
        document["elapsed_s"] = time.monotonic() - started
        try:
            write(args, f"pipeline-{name}.json", document)
        except SystemExit as e:
            failed.append(f"{name}: {e}")
    regenerate(Path(args.out), ROOT / "bench" / "RESULTS.md")
    if failed:
        sys.exit("\n".join(failed))
