"""Catalog-wide branches and tags (Nessie-style), as a user drives them from the CLI,
checked against what PyIceberg's SqlCatalog (main's rows), PyIceberg's RestCatalog
and Spark (through the REST prefix) read."""

import json
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from pyiceberg.catalog.rest import RestCatalog

from conftest import Lake
from serve import start

ROOT = Path(__file__).resolve().parents[2]
RETAIL = str(ROOT / "jobs" / "retail")


def ok(lake: Lake, *args: str) -> str:
    out = lake.run(*args)
    assert out.returncode == 0, f"icefjord {' '.join(args)}: {out.stderr}"
    return out.stdout


def tables(lake: Lake, branch: str | None = None) -> dict:
    """namespace.table -> current snapshot id, as `icefjord tables` reports it."""
    flags = ["--branch", branch] if branch else []
    rows = json.loads(ok(lake, *flags, "tables", "-o", "json"))
    return {f"{r['namespace']}.{r['table']}": r["snapshot_id"] for r in rows}


def views_on_main(lake: Lake) -> dict:
    """The view SQL the catalog's main rows hold (what JDBC readers see)."""
    with sqlite3.connect(lake.path / "catalog.db") as db:
        return dict(db.execute(
            "SELECT view_namespace || '.' || view_name, view_sql FROM icefjord_views "
            "WHERE catalog_name = 'icefjord'"))


def revenue(lake: Lake, branch: str | None = None) -> Decimal:
    flags = ["--branch", branch] if branch else []
    rows = json.loads(ok(lake, *flags, "sql", "-o", "json",
                         "SELECT CAST(sum(sales_amount) AS VARCHAR) AS s FROM unified.sales_hourly"))
    return Decimal(rows[0]["s"])


@pytest.fixture
def demo(icefjord_bin, tmp_path) -> Lake:
    lake = Lake(icefjord_bin, tmp_path / "lake")
    ok(lake, "demo", "--events", "3000", "-o", "csv")
    return lake


def test_a_pipeline_on_a_branch_leaves_main_alone_until_the_merge(demo):
    lake = demo
    main_before, views_before, revenue_before = tables(lake), views_on_main(lake), revenue(lake)
    created = json.loads(ok(lake, "branch", "create", "dev", "-o", "json"))
    assert created == [{"name": "dev", "kind": "branch", "created_from": "main",
                        "created_at": created[0]["created_at"]}]
    assert tables(lake, "dev") == main_before, "a new branch holds main's state"

    ok(lake, "--branch", "dev", "generate", "--events", "5000")
    report = json.loads(ok(lake, "--branch", "dev", "run", RETAIL, "-o", "json"))
    assert report["status"] == "success"
    dev = tables(lake, "dev")
    assert dev["raw.retail_events"] != main_before["raw.retail_events"]
    assert dev["historical.sales_hourly"] != main_before["historical.sales_hourly"]
    # Main: same snapshots, same view SQL, same numbers; JDBC readers agree.
    assert tables(lake) == main_before
    assert views_on_main(lake) == views_before
    assert revenue(lake) == revenue_before
    sql_catalog = lake.catalog().load_table("raw.retail_events")
    assert sql_catalog.metadata.current_snapshot_id == main_before["raw.retail_events"]
    assert revenue(lake, "dev") > revenue_before

    ok(lake, "tag", "create", "before-merge")
    merged = json.loads(ok(lake, "merge", "dev", "-o", "json"))
    moved = {m["object"]: m["how"] for m in merged}
    assert moved["raw.retail_events"] == "fast-forward"
    assert moved["historical.sales_hourly"] == "fast-forward"
    # Every table of main now has dev's state, views included.
    assert tables(lake) == dev
    assert revenue(lake) == revenue(lake, "dev")
    assert lake.catalog().load_table("raw.retail_events").metadata.current_snapshot_id \
        == dev["raw.retail_events"]
    # The tag still reads the state before the merge, and is read-only.
    assert revenue(lake, "before-merge") == revenue_before
    assert tables(lake, "before-merge") == main_before
    refused = lake.run("--branch", "before-merge", "generate", "--events", "9000")
    assert refused.returncode == 2
    assert "before-merge is a tag" in refused.stderr
    # A second merge has nothing left to move.
    assert json.loads(ok(lake, "merge", "dev", "-o", "json")) == []


def test_a_conflicting_merge_changes_nothing_and_names_the_table(demo):
    lake = demo
    ok(lake, "branch", "create", "dev")
    ok(lake, "--branch", "dev", "generate", "--events", "5000")
    ok(lake, "--branch", "dev", "run", RETAIL, "-o", "json")
    # Meanwhile someone overwrites main's historical.sales_hourly (PyIceberg, main's rows).
    table = lake.catalog().load_table("historical.sales_hourly")
    table.overwrite(table.scan().to_arrow())
    main_before, dev_before = tables(lake), tables(lake, "dev")
    out = lake.run("merge", "dev")
    assert out.returncode == 1, out.stderr
    assert "historical.sales_hourly" in out.stderr
    assert "conflicts" in out.stderr
    assert tables(lake) == main_before
    assert tables(lake, "dev") == dev_before


def test_appends_on_both_sides_rebase_unless_they_read_a_source(demo):
    lake = demo
    ok(lake, "branch", "create", "dev")
    # Another engine appends on each side: PyIceberg's SqlCatalog on the branch's
    # rows (catalog name icefjord@dev) and on main's.
    from pyiceberg.catalog.sql import SqlCatalog

    dev = SqlCatalog("icefjord@dev", uri=f"sqlite:///{lake.path}/catalog.db",
                     warehouse=f"file://{lake.path}/warehouse").load_table("raw.user_activity")
    dev.append(dev.scan(limit=7).to_arrow())
    main = lake.catalog().load_table("raw.user_activity")
    main.append(main.scan(limit=10).to_arrow())
    merged = json.loads(ok(lake, "merge", "dev", "-o", "json"))
    assert {"object": "raw.user_activity", "kind": "table", "how": "rebased"} in merged
    count = json.loads(ok(lake, "sql", "-o", "json", "SELECT count(*) AS n FROM raw.user_activity"))
    assert count[0]["n"] == 1500 + 7 + 10

    # The generator on both sides reads the same positions: no rebase, a conflict.
    ok(lake, "branch", "create", "dev2")
    ok(lake, "--branch", "dev2", "generate", "--events", "4000")
    ok(lake, "generate", "--events", "5000")
    before = tables(lake)
    out = lake.run("merge", "dev2")
    assert out.returncode == 1 and "raw.retail_events" in out.stderr, out.stderr
    assert tables(lake) == before


def test_branch_list_delete_and_log(demo):
    lake = demo
    ok(lake, "branch", "create", "dev")
    ok(lake, "tag", "create", "v1", "--at", "dev")
    listed = json.loads(ok(lake, "branch", "list", "-o", "json"))
    assert [(r["name"], r["kind"], r["created_from"]) for r in listed] == [
        ("dev", "branch", "main"), ("v1", "tag", "dev")]
    again = lake.run("branch", "create", "dev")
    assert again.returncode == 2 and "already exists" in again.stderr
    for bad in ("no spaces", "feat/x", "..", "icefjord", "main"):
        out = lake.run("branch", "create", bad)
        assert out.returncode == 2, (bad, out.stderr)
    missing = lake.run("--branch", "nope", "tables")
    assert missing.returncode == 2 and "nope does not exist" in missing.stderr
    assert lake.run("branch", "delete", "v1").returncode == 2, "v1 is a tag"
    ok(lake, "tag", "delete", "v1")
    ok(lake, "branch", "delete", "dev")
    assert json.loads(ok(lake, "branch", "list", "-o", "json")) == []

    log = json.loads(ok(lake, "log", "-o", "json"))
    runs = [e for e in log if e["writer"] == "icefjord run"]
    assert runs, log
    retail = next(e for e in runs if "historical.sales_hourly" in e["tables"].split(","))
    assert retail["run_id"] and retail["commit_id"].startswith("run:retail:")
    assert log == sorted(log, key=lambda e: e["committed_at"], reverse=True)


def test_rest_clients_read_a_branch_through_the_warehouse_prefix(demo, tmp_path, spark):
    from spark import rest_catalog as spark_rest

    lake = demo
    ok(lake, "branch", "create", "dev")
    ok(lake, "--branch", "dev", "generate", "--events", "5000")
    server = start(lake.binary, lake.path, tmp_path)
    try:
        dev = RestCatalog("icefjord", uri=server.rest, warehouse="dev")
        assert dev.load_table("raw.retail_events").scan().to_arrow().num_rows == 5000
        main = RestCatalog("icefjord", uri=server.rest)
        assert main.load_table("raw.retail_events").scan().to_arrow().num_rows == 3000
        [[n]] = spark.sql(spark_rest(server.rest, warehouse="dev"),
                          "SELECT count(*) FROM raw.retail_events")
        assert n == 5000
        # A commit through the dev prefix lands on dev only.
        table = dev.load_table("raw.retail_events")
        table.append(table.scan(limit=5).to_arrow())
        assert tables(lake, "dev")["raw.retail_events"] == table.metadata.current_snapshot_id
        assert main.load_table("raw.retail_events").scan().to_arrow().num_rows == 3000
        with pytest.raises(Exception, match="nope"):
            RestCatalog("icefjord", uri=server.rest, warehouse="nope")
        # Purging through a branch would delete files main still reads: refused.
        import urllib.error
        import urllib.request
        request = urllib.request.Request(
            server.rest + "/v1/dev/namespaces/raw/tables/user_activity?purgeRequested=true",
            method="DELETE")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request)
        assert refused.value.code == 400
        assert "shared with main:raw.user_activity" in refused.value.read().decode()
        assert main.load_table("raw.user_activity").scan().to_arrow().num_rows == 1500
        # A tag's prefix is read-only.
        ok(lake, "tag", "create", "t1")
        request = urllib.request.Request(server.rest + "/v1/t1/namespaces", method="POST",
                                         data=b'{"namespace": ["x"]}',
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request)
        assert refused.value.code == 403
        # So is a staged create (refused now, not at its commit) and a view.
        for path, body in [
            ("/v1/t1/namespaces/raw/tables",
             {"name": "staged", "stage-create": True,
              "schema": {"type": "struct", "schema-id": 0, "fields": [
                  {"id": 1, "name": "x", "type": "long", "required": False}]}}),
            ("/v1/t1/namespaces/raw/views",
             {"name": "v", "schema": {"type": "struct", "schema-id": 0, "fields": [
                 {"id": 1, "name": "x", "type": "long", "required": False}]},
              "view-version": {"version-id": 1, "schema-id": 0, "timestamp-ms": 1,
                               "summary": {}, "default-namespace": ["raw"],
                               "representations": [{"type": "sql", "dialect": "spark",
                                                    "sql": "SELECT 1 AS x"}]},
              "properties": {}}),
        ]:
            request = urllib.request.Request(server.rest + path, method="POST",
                                             data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request)
            assert refused.value.code == 403, path
    finally:
        server.stop()


def test_pg_and_http_sessions_select_a_branch(demo, tmp_path):
    import urllib.request

    import psycopg

    lake = demo
    ok(lake, "branch", "create", "dev")
    ok(lake, "--branch", "dev", "generate", "--events", "5000")
    server = start(lake.binary, lake.path, tmp_path)
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            count = "SELECT count(*) FROM raw.retail_events"
            assert conn.execute(count).fetchone()[0] == 3000
            conn.execute("SET icefjord.branch = 'dev'")
            assert conn.execute("SHOW icefjord.branch").fetchone()[0] == "dev"
            assert conn.execute(count).fetchone()[0] == 5000
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="nope"):
                conn.execute("SET icefjord.branch = 'nope'")
            assert conn.execute(count).fetchone()[0] == 5000, "a refused SET changes nothing"
            conn.execute("SET icefjord.branch TO DEFAULT")
            assert conn.execute(count).fetchone()[0] == 3000

        def query(body: dict):
            request = urllib.request.Request(server.http + "/v1/query", data=json.dumps(body).encode(),
                                             method="POST", headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        import urllib.error
        sql = "SELECT count(*) AS n FROM raw.retail_events"
        assert query({"sql": sql})[1]["rows"] == [{"n": 3000}]
        assert query({"sql": sql, "branch": "dev"})[1]["rows"] == [{"n": 5000}]
        status, error = query({"sql": sql, "branch": "nope"})
        assert status == 400 and "nope does not exist" in json.dumps(error)
    finally:
        server.stop()
