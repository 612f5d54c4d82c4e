"""Real Spark 3.5 + Iceberg 1.10 against a lake, for the interop tests.

scripts/install-spark installs Spark once (cached) and prints the path of a JSON file
naming its Python and jars; scripts/test exports it as ICEFJORD_SPARK_ENV. The `spark`
fixture (conftest.py) starts one Spark driver per test session (spark_worker.py in that
Python, ~10-20 s) and every test talks to it; each lake gets its own SparkSession and
catalog `icefjord`, so tests do not see each other's tables.

    def test_x(lake, spark):
        lake.run("generate", "--kind", "retail", "--events", "5000")
        assert spark.sql(lake, "SELECT count(*) FROM icefjord.raw.retail_events") == [[5000]]
        spark.rewrite_data_files(lake, "raw.retail_events")

The maintenance helpers run what users run on our tables: Iceberg's Spark procedures
(https://iceberg.apache.org/docs/1.10.0/spark-procedures/) and Spark DDL/DML
(https://iceberg.apache.org/docs/1.10.0/spark-ddl/). Each returns the procedure's output
row as a dict (or nothing for DDL). A failing statement raises SparkError with Spark's
message; the driver's log is at `Spark.log_path`.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import time
from pathlib import Path

CATALOG = "icefjord"
WORKER = Path(__file__).with_name("spark_worker.py")


class SparkError(AssertionError):
    """Spark refused a statement (or the driver died); the message is Spark's."""


class SparkUnavailable(RuntimeError):
    """ICEFJORD_SPARK_ENV is unset or names no usable install."""


def sqlite_catalog(lake_path: Path) -> dict:
    """The JDBC catalog of a lake on SQLite: `<lake>/catalog.db` and `<lake>/warehouse`."""
    return {"uri": f"jdbc:sqlite:{lake_path}/catalog.db", "warehouse": f"{lake_path}/warehouse"}


def postgres_catalog(uri: str, warehouse: str, user: str | None = None,
                     password: str | None = None) -> dict:
    """A JDBC catalog on PostgreSQL, e.g. uri `jdbc:postgresql://127.0.0.1:5432/lake`."""
    return {"uri": uri, "warehouse": warehouse, "user": user, "password": password}


def rest_catalog(uri: str, warehouse: str = "main", credential: str | None = None) -> dict:
    """Icefjord's Iceberg REST catalog (`icefjord serve --rest-addr`); `warehouse`
    selects the branch."""
    return {"type": "rest", "uri": uri, "warehouse": warehouse, "credential": credential}


def load_env() -> dict:
    """The install's description: {"python": path, "jars": [path...], versions}."""
    path = os.environ.get("ICEFJORD_SPARK_ENV")
    if not path or not Path(path).is_file():
        raise SparkUnavailable(
            "ICEFJORD_SPARK_ENV must name the JSON file scripts/install-spark prints "
            "(scripts/test runs it and sets the variable; by hand: "
            "export ICEFJORD_SPARK_ENV=$(scripts/install-spark))"
        )
    env = json.loads(Path(path).read_text())
    missing = [p for p in [env["python"], *env["jars"]] if not Path(p).is_file()]
    if missing:
        raise SparkUnavailable(f"the Spark install is incomplete, rerun scripts/install-spark: missing {missing}")
    return env


class Spark:
    """One Spark driver process; `sql` and the helpers take a lake (or a catalog dict)."""

    def __init__(self, workdir: Path, start_timeout: float = 180.0):
        env = load_env()
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "spark.log"
        self._log = open(self.log_path, "w")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [env["python"], str(WORKER), json.dumps(env["jars"]), str(workdir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
            cwd=workdir,
        )
        hello = self._read(start_timeout)
        self.version = hello["spark"]
        self.start_seconds = time.monotonic() - started
        self.timings: list[tuple[str, float]] = []

    # -- the protocol -----------------------------------------------------------------

    def _read(self, timeout: float) -> dict:
        import select

        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.stop()
            raise SparkError(f"the Spark driver did not answer; its log ends:\n{self.log_tail()}")
        return json.loads(line)

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        return "".join(self.log_path.read_text(errors="replace").splitlines(True)[-lines:])

    def run(self, lake_or_catalog, *statements: str, timeout: float = 600.0) -> list[dict]:
        """Runs statements in order in the lake's session; one {"columns", "rows"} each."""
        catalog = lake_or_catalog if isinstance(lake_or_catalog, dict) else sqlite_catalog(lake_or_catalog.path)
        if self.proc.poll() is not None:
            raise SparkError(f"the Spark driver has exited; its log ends:\n{self.log_tail()}")
        self.proc.stdin.write(json.dumps({"catalog": catalog, "sql": list(statements)}) + "\n")
        self.proc.stdin.flush()
        response = self._read(timeout)
        self.timings.append((statements[-1] if statements else "", response["seconds"]))
        if not response["ok"]:
            raise SparkError(f"Spark failed on {response['statement']!r}: {response['error']}")
        return response["results"]

    def sql(self, lake_or_catalog, statement: str) -> list[list]:
        """One statement's rows, each a list of JSON values (see spark_worker.py)."""
        return self.run(lake_or_catalog, statement)[0]["rows"]

    def records(self, lake_or_catalog, statement: str) -> list[dict]:
        result = self.run(lake_or_catalog, statement)[0]
        return [dict(zip(result["columns"], row)) for row in result["rows"]]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        timings = [{"statement": s, "seconds": t} for s, t in getattr(self, "timings", [])]
        self.log_path.with_name("timings.json").write_text(json.dumps(timings, indent=1))

    # -- what users run on our tables -----------------------------------------------------

    def rewrite_data_files(self, lake, table: str, options: dict | None = None,
                           where: str | None = None) -> dict:
        """Compaction. By default every file is rewritten, however few or small."""
        options = {"min-input-files": "1", "rewrite-all": "true"} if options is None else options
        args = [f"table => {quote(table)}"]
        if options:
            pairs = ", ".join(f"{quote(k)}, {quote(v)}" for k, v in options.items())
            args.append(f"options => map({pairs})")
        if where:
            args.append(f"where => {quote(where)}")
        return self._call(lake, "rewrite_data_files", args)

    def expire_snapshots(self, lake, table: str, retain_last: int = 1,
                         older_than: datetime.datetime | None = None) -> dict:
        """Expires every snapshot committed before `older_than` (default: now) except the
        newest `retain_last`, and deletes the files no remaining snapshot references."""
        at = (older_than or datetime.datetime.now(datetime.timezone.utc)).astimezone(datetime.timezone.utc)
        args = [
            f"table => {quote(table)}",
            f"older_than => TIMESTAMP {quote(at.strftime('%Y-%m-%d %H:%M:%S.%f'))}",
            f"retain_last => {retain_last}",
        ]
        return self._call(lake, "expire_snapshots", args)

    def set_properties(self, lake, table: str, properties: dict) -> None:
        """ALTER TABLE ... SET TBLPROPERTIES, e.g. {"write.delete.mode": "merge-on-read"}."""
        pairs = ", ".join(f"{quote(k)} = {quote(v)}" for k, v in properties.items())
        self.run(lake, f"ALTER TABLE {CATALOG}.{table} SET TBLPROPERTIES ({pairs})")

    def rewrite_manifests(self, lake, table: str) -> dict:
        return self._call(lake, "rewrite_manifests", [f"table => {quote(table)}"])

    def delete_where(self, lake, table: str, condition: str) -> None:
        self.run(lake, f"DELETE FROM {CATALOG}.{table} WHERE {condition}")

    def rename_column(self, lake, table: str, old: str, new: str) -> None:
        self.run(lake, f"ALTER TABLE {CATALOG}.{table} RENAME COLUMN {old} TO {new}")

    def drop_column(self, lake, table: str, column: str) -> None:
        self.run(lake, f"ALTER TABLE {CATALOG}.{table} DROP COLUMN {column}")

    def add_column(self, lake, table: str, column: str, type_: str) -> None:
        self.run(lake, f"ALTER TABLE {CATALOG}.{table} ADD COLUMN {column} {type_}")

    def alter_column_type(self, lake, table: str, column: str, type_: str) -> None:
        """Type promotion the Iceberg spec allows: int→bigint, float→double, decimal(P,S)→decimal(P',S) with P'>P."""
        self.run(lake, f"ALTER TABLE {CATALOG}.{table} ALTER COLUMN {column} TYPE {type_}")

    def move_column(self, lake, table: str, column: str, after: str | None = None) -> None:
        """Reorders a column: to the front (after=None) or after another column."""
        where = f"AFTER {after}" if after else "FIRST"
        self.run(lake, f"ALTER TABLE {CATALOG}.{table} ALTER COLUMN {column} {where}")

    def snapshots(self, lake, table: str) -> list[dict]:
        """The table's `.snapshots` metadata table, oldest first."""
        return self.records(
            lake,
            f"SELECT committed_at, snapshot_id, parent_id, operation, summary "
            f"FROM {CATALOG}.{table}.snapshots ORDER BY committed_at",
        )

    def _call(self, lake, procedure: str, args: list[str]) -> dict:
        rows = self.records(lake, f"CALL {CATALOG}.system.{procedure}({', '.join(args)})")
        return rows[0] if rows else {}


def quote(value: str) -> str:
    """A Spark SQL string literal."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
