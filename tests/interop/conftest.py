"""Shared fixtures: the icefjord binary and a fresh lake per test."""

import json
import os
import subprocess
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def icefjord_bin() -> Path:
    path = os.environ.get("ICEFJORD_BIN")
    if not path or not Path(path).is_file():
        pytest.fail(
            "ICEFJORD_BIN must name a built icefjord binary (scripts/test builds it and sets it)"
        )
    return Path(path)


class Lake:
    def __init__(self, binary: Path, path: Path):
        self.binary = binary
        self.path = path

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.binary), "--lake", str(self.path), *args],
            capture_output=True,
            text=True,
            check=False,
        )

    def sql(self, query: str) -> list:
        out = self.run("sql", "-o", "json", query)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def catalog(self):
        from pyiceberg.catalog.sql import SqlCatalog

        return SqlCatalog(
            "icefjord",
            uri=f"sqlite:///{self.path}/catalog.db",
            warehouse=f"file://{self.path}/warehouse",
        )


@pytest.fixture
def lake(icefjord_bin: Path, tmp_path: Path) -> Lake:
    return Lake(icefjord_bin, tmp_path / "lake")
