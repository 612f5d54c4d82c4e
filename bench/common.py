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
