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


@pytest.fixture(scope="module")
def demo_lake(icefjord_bin: Path, tmp_path_factory) -> Lake:
    """A lake after `icefjord demo` (every shipped pipeline run once), one per test
    module (the serve tests), so what one module adds never reaches another."""
    lake = Lake(icefjord_bin, tmp_path_factory.mktemp("demo") / "lake")
    out = lake.run("demo", "--events", "20000", "-o", "csv")
    assert out.returncode == 0, out.stderr
    return lake


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tansu_bin() -> Path:
    path = os.environ.get("ICEFJORD_TANSU")
    if not path or not Path(path).is_file():
        pytest.fail(
            "ICEFJORD_TANSU must name a tansu binary; scripts/install-tansu installs it "
            "(scripts/test does so and sets the variable)"
        )
    return Path(path)


class Broker:
    """A Tansu broker (Kafka protocol) on a free loopback port, memory storage."""

    def __init__(self, binary: Path, workdir: Path):
        import socket
        import time

        self.binary = binary
        self.port = free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log = open(workdir / "tansu.log", "w")
        self.proc = subprocess.Popen(
            [
                str(binary),
                "broker",
                "--listener-url",
                self.url,
                "--advertised-listener-url",
                self.url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f"tansu did not start; see {workdir / 'tansu.log'}")
                time.sleep(0.1)

    def create_topic(self, name: str, partitions: int = 3) -> None:
        out = subprocess.run(
            [str(self.binary), "topic", "create", "--broker", self.url,
             "--partitions", str(partitions), name],
            capture_output=True, text=True, check=False,
        )
        assert out.returncode == 0, f"topic create {name}: {out.stdout}{out.stderr}"

    def producer(self, **extra):
        from confluent_kafka import Producer

        # Tansu's memory engine mishandles fetches that start inside a multi-record
        # batch (see test_broker.py): test producers send one record per batch.
        config = {"bootstrap.servers": self.bootstrap, "batch.num.messages": 1, "linger.ms": 0}
        config.update(extra)
        return Producer(config)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture
def kafka(tansu_bin: Path, tmp_path: Path):
    broker = Broker(tansu_bin, tmp_path)
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """One Spark 3.5 + Iceberg 1.10 driver for the session (tests/interop/spark.py)."""
    from spark import Spark, SparkUnavailable

    try:
        driver = Spark(tmp_path_factory.mktemp("spark"))
    except SparkUnavailable as e:
        pytest.fail(str(e))
    yield driver
    driver.stop()
