"""The pipeline benchmark's shapes (issue 12): how dense the retail history is,
from when, how skewed its keys, and who wrote its files.

Each shape is `icefjord generate` flags (the rows) plus a layout of
bench/pipeline/layout.py (the files). Shapes with equal flags share one
generated table. `--shapes all` runs them in this order.
"""

# The sink's layout: a commit (a snapshot, a file per day it touches) every
# 20 000 events, as the Kafka sink commits a batch. At 2 M events/day that is a
# commit per ~15 min of events, ~20 k rows (~0.5 MB) per file.
SINK = ["--batch-events", "20000"]
SPARSE = ["--events-per-day", "8640"] + SINK
DAILY = ["--events-per-day", "200000", "--start", "2024-01-01"] + SINK
DENSE = ["--events-per-day", "2000000", "--start", "2024-01-01"] + SINK
SKEWED = DENSE + ["--skew", "1.1"]

# name -> (generate flags, layout, what it stands for)
SHAPES = {
    "sparse": (SPARSE, "sink",
               "today's default density: 8 640 events/day over 3 years, the sink's files"),
    "daily-200k": (DAILY, "sink", "200 k events/day, the sink's small files"),
    "daily-200k-big-files": (DAILY, "big-files",
                             "200 k events/day, one file per day written by PyIceberg"),
    "dense-2m": (DENSE, "sink", "2 M events/day, the sink's small files"),
    "dense-2m-big-files": (DENSE, "big-files",
                           "2 M events/day, one file per day written by PyIceberg"),
    "dense-2m-compacted": (DENSE, "compacted",
                           "2 M events/day, compacted: one file per day sorted by store, product, time"),
    "skewed": (SKEWED, "sink",
               "2 M events/day, Zipf 1.1 over products and stores (hot keys), the sink's files"),
}


def select(spec: str) -> list:
    """`all` or a comma-separated list of shape names, in SHAPES order."""
    if spec == "all":
        return list(SHAPES)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in SHAPES]
    if unknown or not names:
        raise SystemExit(f"unknown shape(s) {unknown or spec!r}: choose from all, {', '.join(SHAPES)}")
    return [n for n in SHAPES if n in names]
