"""`icefjord serve` as a test fixture: started on free loopback ports, its bound
addresses read from the JSON line it prints, stopped with SIGTERM."""

import csv
import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest


class Server:
    def __init__(self, binary: Path, lake: Path, log: Path, *args: str, env: dict | None = None,
                 log_format: str = "text"):
        self.log_path = log
        self.log = open(log, "w")
        full_env = dict(os.environ)
        full_env.setdefault("ICEFJORD_LOG", "warn,icefjord::query=info,icefjord_serve=info")
        for key in ("ICEFJORD_PG_PASSWORD", "ICEFJORD_PG_USER", "ICEFJORD_PG_USERS_FILE",
                    "ICEFJORD_HTTP_TOKEN", "ICEFJORD_HTTP_TOKENS_FILE", "ICEFJORD_REST_CLIENTS_FILE",
                    "ICEFJORD_REST_CLIENT_ID", "ICEFJORD_REST_CLIENT_SECRET", "ICEFJORD_REST_TOKEN_KEY"):
            full_env.pop(key, None)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [str(binary), "--lake", str(lake), "--log-format", log_format, "serve",
             "--pg-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
             *([] if "--rest-addr" in args else ["--rest-addr", "127.0.0.1:0"]), *args],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=full_env,
        )
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=10)
            pytest.fail(f"icefjord serve did not start (exit {self.proc.returncode}): "
                        f"{log.read_text()}")
        ready = json.loads(line)
        self.pg_host, port = ready["pg"].rsplit(":", 1) if ready["pg"] else (None, None)
        self.pg_port = int(port) if port else None
        self.http = f"http://{ready['http']}" if ready["http"] else None
        self.rest = f"http://{ready['rest']}" if ready.get("rest") else None

    def dsn(self, user: str = "icefjord", password: str | None = None, **extra) -> str:
        from psycopg.conninfo import make_conninfo

        if password is not None:
            extra["password"] = password
        return make_conninfo(host=self.pg_host, port=self.pg_port, user=user,
                             dbname="icefjord", **extra)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def logs(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text()


def start(binary: Path, lake: Path, tmp: Path, *args: str, env: dict | None = None,
          log_format: str = "text") -> Server:
    return Server(binary, lake, tmp / f"serve-{time.monotonic_ns()}.log", *args, env=env,
                  log_format=log_format)


def cli_rows(lake, sql: str) -> list[list[str]]:
    """The rows of `sql` as `icefjord sql -o csv` prints them (the CLI path, not
    the server): the expected values of the serve tests."""
    out = lake.run("sql", "-o", "csv", sql)
    assert out.returncode == 0, out.stderr
    return list(csv.reader(io.StringIO(out.stdout)))[1:]
