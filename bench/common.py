"""Helpers shared by the benchmarks in bench/*/bench.py."""

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measured(args, **kwargs):
    """Run a command to completion under GNU time; returns (wall s, cpu s, peak RSS
    bytes, stdout, start). GNU time forks the command from its own small process:
    a child forked from this (large) Python process would inherit its RSS
    high-water mark through exec and report that instead."""
    stats = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-time-{os.getpid()}"
    started = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(stats), *args],
                          stdout=subprocess.PIPE, **kwargs)
    if proc.returncode != 0:
        sys.exit(f"{args[0]} failed with exit code {proc.returncode}")
    wall, user, system, rss_kib = stats.read_text().split()[-4:]
    stats.unlink()
    return float(wall), float(user) + float(system), int(rss_kib) * 1024, proc.stdout, started


def default_scratch() -> str:
    """A tmpfs when there is one, so the filesystem is not measured."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return str(shm)
    return str(ROOT / "bench" / "out")


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}


def commit() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()


def default_binary() -> str:
    """The icefjord binary under test: $ICEFJORD_BENCH_BIN when set (a prebuilt binary,
    e.g. another commit's), else this checkout's release build."""
    return os.environ.get("ICEFJORD_BENCH_BIN") or str(ROOT / "target" / "release" / "icefjord")


def has_flag(binary: str, command: str, flag: str) -> bool:
    """Whether `binary command --help` lists `flag`, so a benchmark can use flags newer
    than the binary it is given and say what it did instead."""
    text = subprocess.run([binary, command, "--help"], capture_output=True, text=True).stdout
    return any(word.startswith(flag) and word[len(flag):] in ("", "=", ",")
               for word in text.split())


def clone_lake(src: Path, dst: Path):
    """A copy of a local lake that costs no data: Iceberg never rewrites a data,
    manifest or metadata file, so they are hard-linked; the SQLite catalog, written in
    place, is copied. The catalog and the metadata hold absolute paths, so a clone only
    works at the path of the lake it came from: use it to save a lake's state and to
    put that state back in place (`restore_lake`), not to run a second lake beside it."""
    import shutil

    def copy(s, d):
        if Path(s).name.startswith("catalog.db"):
            return shutil.copy2(s, d)
        os.link(s, d)
        return d
    shutil.copytree(src, dst, copy_function=copy)


def restore_lake(saved: Path, lake: Path):
    """Put a state saved with `clone_lake(lake, saved)` back at `lake`."""
    import shutil

    shutil.rmtree(lake, ignore_errors=True)
    clone_lake(saved, lake)


def replace_section(path: Path, name: str, text: str):
    """Put `text` between the `<!-- name:begin -->` and `<!-- name:end -->` markers of
    a Markdown file (appended with them when missing): sections regenerated from JSON."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    body = path.read_text() if path.exists() else ""
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in body and end in body:
        head, rest = body.split(begin, 1)
        body = head + block + rest.split(end, 1)[1]
    else:
        body = body.rstrip() + "\n\n" + block + "\n"
    path.write_text(body)


def load_average() -> list:
    """The 1, 5 and 15 minute load averages, recorded next to each measurement: CPU-s
    is robust to a contended machine, wall time is not."""
    return [round(x, 2) for x in os.getloadavg()]
