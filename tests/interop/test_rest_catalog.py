"""The Iceberg REST catalog of `icefjord serve --rest-addr`, checked by PyIceberg's
`RestCatalog` (a client no one here wrote) and by raw HTTP where the spec's wire
format itself is the point: what it reads agrees with `icefjord sql`, what it
commits goes through our compare-and-swap and is seen by `icefjord sql` and the
next `icefjord run`, and what it must refuse it refuses with the spec's errors."""

import json
import shutil
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.exceptions import (
    ForbiddenError,
    NamespaceNotEmptyError,
    NoSuchTableError,
    OAuthError,
    TableAlreadyExistsError,
)
from pyiceberg.expressions import GreaterThan
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

from conftest import Lake
from serve import start

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shared(demo_lake, tmp_path_factory):
    """One server over the module's demo lake, for the read-only tests."""
    server = start(demo_lake.binary, demo_lake.path, tmp_path_factory.mktemp("rest"))
    yield server
    server.stop()


@pytest.fixture
def own(icefjord_bin, tmp_path):
    """A small demo lake of its own and a server over it, for tests that write."""
    lake = Lake(icefjord_bin, tmp_path / "lake")
    out = lake.run("demo", "--events", "3000", "-o", "csv")
    assert out.returncode == 0, out.stderr
    server = start(icefjord_bin, lake.path, tmp_path)
    yield lake, server
    server.stop()


def rest_catalog(server, **props) -> RestCatalog:
    return RestCatalog("icefjord", uri=server.rest, **props)


def call(server, method: str, path: str, body=None, token: str | None = None):
    """A raw REST call: (status, parsed JSON body or None)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.rest + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        text = e.read()
        return e.code, json.loads(text) if text else None


def new_events(rows: pa.Table) -> pa.Table:
    """Copies of raw events as new Kafka records (offsets no record has), so the
    runner takes them as new events rather than redeliveries."""
    i = rows.schema.get_field_index("_kafka_offset")
    offsets = pc.add(rows["_kafka_offset"], pa.scalar(10**9, rows.schema.field(i).type))
    return rows.set_column(i, rows.schema.field(i), offsets)


def scalar(lake, sql: str):
    rows = lake.sql(sql)
    return next(iter(rows[0].values()))


def test_config_names_main_as_the_prefix_and_lists_what_is_served(shared):
    status, config = call(shared, "GET", "/v1/config")
    assert status == 200
    assert config["overrides"]["prefix"] == "main"
    assert "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}" in config["endpoints"]
    status, error = call(shared, "GET", "/v1/config?warehouse=nope")
    assert status == 404
    assert error["error"]["type"] == "NotFoundException"
    assert "nope" in error["error"]["message"]


def test_pyiceberg_lists_what_icefjord_tables_lists(shared, demo_lake):
    catalog = rest_catalog(shared)
    namespaces = {ns for (ns,) in catalog.list_namespaces()}
    assert {"raw", "historical"} <= namespaces
    ours = demo_lake.catalog()
    for namespace in ("raw", "historical"):
        assert sorted(catalog.list_tables(namespace)) == sorted(ours.list_tables(namespace))
    assert catalog.table_exists("raw.retail_events")
    assert not catalog.table_exists("raw.no_such_table")
    with pytest.raises(NoSuchTableError, match="raw.no_such_table"):
        catalog.load_table("raw.no_such_table")


def test_a_filtered_scan_agrees_with_icefjord_sql(shared, demo_lake):
    table = rest_catalog(shared).load_table("raw.retail_events")
    scanned = table.scan(
        row_filter=GreaterThan("quantity", 3), selected_fields=("quantity", "unit_price")
    ).to_arrow()
    ours = demo_lake.sql(
        "SELECT count(*) AS n, CAST(sum(quantity * unit_price) AS VARCHAR) AS amount "
        "FROM raw.retail_events WHERE quantity > 3"
    )[0]
    assert scanned.num_rows == ours["n"] > 0
    amount = pc.sum(
        pc.multiply(pc.cast(scanned["quantity"], pa.decimal128(10, 0)), scanned["unit_price"])
    ).as_py()
    assert amount == Decimal(ours["amount"])


def test_the_metadata_served_is_the_catalogs_current_file(shared, demo_lake):
    ours = demo_lake.catalog().load_table("historical.sales_hourly")
    status, body = call(shared, "GET", "/v1/main/namespaces/historical/tables/sales_hourly")
    assert status == 200
    assert body["metadata-location"] == ours.metadata_location
    assert body["metadata"]["current-snapshot-id"] == ours.metadata.current_snapshot_id
    rows = rest_catalog(shared).load_table("historical.sales_hourly").scan().to_arrow().num_rows
    assert rows == scalar(demo_lake, "SELECT count(*) FROM historical.sales_hourly")


def test_an_append_is_seen_by_icefjord_sql_and_the_next_run_still_works(own):
    lake, server = own
    catalog = rest_catalog(server)
    table = catalog.load_table("raw.retail_events")
    before = scalar(lake, "SELECT count(*) FROM raw.retail_events")
    head = table.metadata.current_snapshot_id
    extra = new_events(table.scan(limit=25).to_arrow())
    table.append(extra)
    assert scalar(lake, "SELECT count(*) FROM raw.retail_events") == before + 25
    current = lake.catalog().load_table("raw.retail_events")
    assert current.metadata.snapshot_by_id(current.metadata.current_snapshot_id).parent_snapshot_id == head
    out = lake.run("run", str(ROOT / "jobs" / "retail"), "-o", "json")
    assert out.returncode == 0, out.stderr
    # The run read past the foreign snapshot: the hourly sums include the 25 rows.
    raw = scalar(lake, "SELECT CAST(sum(CASE WHEN transaction_type = 'SALE' "
                       "THEN quantity * unit_price ELSE 0 END) AS VARCHAR) FROM raw.retail_events")
    hourly = scalar(lake, "SELECT CAST(sum(sales_amount) AS VARCHAR) FROM historical.sales_hourly")
    assert Decimal(hourly) == Decimal(raw)


def metric(server, name: str) -> float:
    """A sample of the server's Prometheus metrics (0 when absent)."""
    with urllib.request.urlopen(server.http + "/metrics") as response:
        for line in response.read().decode().splitlines():
            if line.rsplit(" ", 1)[0] == name:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_conflicting_append_gets_409_and_the_client_retries_it(own):
    lake, server = own
    first = rest_catalog(server).load_table("raw.retail_events")
    second = rest_catalog(server).load_table("raw.retail_events")
    rows = new_events(first.scan(limit=10).to_arrow())
    before = scalar(lake, "SELECT count(*) FROM raw.retail_events")
    first.append(rows)
    # `second` still asserts the old head of main: our 409 makes PyIceberg 0.12
    # reload and retry the append on the new head.
    second.append(rows)
    conflicts = 'icefjord_rest_commits_total{outcome="conflict"}'
    assert metric(server, conflicts) == 1
    assert scalar(lake, "SELECT count(*) FROM raw.retail_events") == before + 20
    metadata = lake.catalog().load_table("raw.retail_events").metadata
    head = metadata.snapshot_by_id(metadata.current_snapshot_id)
    assert head.parent_snapshot_id == first.metadata.current_snapshot_id


def test_a_failed_requirement_is_409_and_changes_nothing(own):
    lake, server = own
    path = "/v1/main/namespaces/raw/tables/retail_events"
    _, loaded = call(server, "GET", path)
    status, error = call(server, "POST", path, {
        "requirements": [{"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": 1}],
        "updates": [{"action": "set-properties", "updates": {"owner": "spark"}}],
    })
    assert status == 409
    assert error["error"]["type"] == "CommitFailedException"
    _, after = call(server, "GET", path)
    assert after["metadata-location"] == loaded["metadata-location"]
    assert "owner" not in after["metadata"]["properties"]
    # The same change with the right requirement lands.
    status, body = call(server, "POST", path, {
        "requirements": [{"type": "assert-ref-snapshot-id", "ref": "main",
                          "snapshot-id": loaded["metadata"]["current-snapshot-id"]}],
        "updates": [{"action": "set-properties", "updates": {"owner": "spark"}}],
    })
    assert status == 200, body
    assert body["metadata"]["properties"]["owner"] == "spark"
    assert lake.catalog().load_table("raw.retail_events").properties["owner"] == "spark"


def test_a_transaction_commits_every_table_or_none(own):
    lake, server = own
    def change(table, value, snapshot_id=None):
        requirements = []
        if snapshot_id is not None:
            requirements.append({"type": "assert-ref-snapshot-id", "ref": "main",
                                 "snapshot-id": snapshot_id})
        return {"identifier": {"namespace": table.split(".")[:1], "name": table.split(".")[1]},
                "requirements": requirements,
                "updates": [{"action": "set-properties", "updates": {"release": value}}]}

    status, error = call(server, "POST", "/v1/main/transactions/commit", {"table-changes": [
        change("raw.retail_events", "r1"), change("historical.sales_hourly", "r1", snapshot_id=1)]})
    assert status == 409, error
    ours = lake.catalog()
    assert "release" not in ours.load_table("raw.retail_events").properties
    status, _ = call(server, "POST", "/v1/main/transactions/commit", {"table-changes": [
        change("raw.retail_events", "r2"), change("historical.sales_hourly", "r2")]})
    assert status == 204
    assert ours.load_table("raw.retail_events").properties["release"] == "r2"
    assert ours.load_table("historical.sales_hourly").properties["release"] == "r2"


def test_create_schema_update_rename_drop_and_register(own):
    lake, server = own
    catalog = rest_catalog(server)
    catalog.create_namespace("scratch", {"owner": "analytics"})
    assert catalog.load_namespace_properties("scratch")["owner"] == "analytics"
    schema = Schema(NestedField(1, "id", LongType(), required=False),
                    NestedField(2, "name", StringType(), required=False))
    table = catalog.create_table("scratch.people", schema)
    with pytest.raises(TableAlreadyExistsError):
        catalog.create_table("scratch.people", schema)
    table.append(pa.table({"id": pa.array([1, 2], pa.int64()), "name": ["ada", "bob"]}))
    with table.update_schema() as update:
        update.add_column("city", StringType())
    table.append(pa.table({"id": pa.array([3], pa.int64()), "name": ["cy"], "city": ["oslo"]}))
    assert lake.sql("SELECT id, name, city FROM scratch.people ORDER BY id") == [
        {"id": 1, "name": "ada", "city": None},
        {"id": 2, "name": "bob", "city": None},
        {"id": 3, "name": "cy", "city": "oslo"},
    ]
    with pytest.raises(NamespaceNotEmptyError):
        catalog.drop_namespace("scratch")

    catalog.rename_table("scratch.people", "scratch.persons")
    assert not catalog.table_exists("scratch.people")
    location = catalog.load_table("scratch.persons").metadata_location
    catalog.drop_table("scratch.persons")
    assert not catalog.table_exists("scratch.persons")
    registered = catalog.register_table("scratch.people", location)
    assert registered.scan().to_arrow().num_rows == 3
    assert scalar(lake, "SELECT count(*) FROM scratch.people") == 3


def test_locations_outside_the_warehouse_are_refused(own, tmp_path):
    lake, server = own
    catalog = rest_catalog(server)
    schema = Schema(NestedField(1, "id", LongType(), required=False))
    with pytest.raises(ForbiddenError, match="outside the warehouse"):
        catalog.create_table("raw.elsewhere", schema, location=f"file://{tmp_path}/elsewhere")
    with pytest.raises(ForbiddenError, match="outside the warehouse"):
        catalog.create_table("raw.sneaky", schema,
                             location=f"{lake.path.as_uri()}/warehouse/raw/../../outside")
    foreign = tmp_path / "foreign.metadata.json"
    shutil.copy(Path(catalog.load_table("raw.retail_events").metadata_location.removeprefix("file://")),
                foreign)
    with pytest.raises(ForbiddenError, match="outside the warehouse"):
        catalog.register_table("raw.foreign", f"file://{foreign}")
    assert not catalog.table_exists("raw.elsewhere")
    assert not catalog.table_exists("raw.foreign")


def test_our_writers_positions_cannot_be_changed_from_outside(own):
    lake, server = own
    path = "/v1/main/namespaces/raw/tables/retail_events"
    _, loaded = call(server, "GET", path)
    mirrors = [k for k in loaded["metadata"]["properties"] if k.startswith("icefjord.position.")]
    assert mirrors, "the demo's generator records its position"
    status, error = call(server, "POST", path, {
        "requirements": [], "updates": [{"action": "remove-properties", "removals": mirrors[:1]}]})
    assert status == 400
    assert mirrors[0] in error["error"]["message"]
    _, after = call(server, "GET", path)
    assert after["metadata-location"] == loaded["metadata-location"]


@pytest.fixture
def authed(demo_lake, tmp_path):
    clients = tmp_path / "clients"
    clients.write_text("# id:secret[:scope]\nwriter:w-secret\nreader:r-secret:read\n")
    server = start(demo_lake.binary, demo_lake.path, tmp_path,
                   env={"ICEFJORD_REST_CLIENTS_FILE": str(clients)})
    yield server
    server.stop()


def token(server, client: str, secret: str) -> str:
    data = f"grant_type=client_credentials&client_id={client}&client_secret={secret}&scope=catalog"
    request = urllib.request.Request(server.rest + "/v1/oauth/tokens", data=data.encode(),
                                     method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())["access_token"]


def test_oauth_tokens_gate_reads_and_writes(authed):
    status, error = call(authed, "GET", "/v1/main/namespaces")
    assert status == 401
    assert error["error"]["type"] == "NotAuthorizedException"
    status, _ = call(authed, "POST", "/v1/main/namespaces", {"namespace": ["anon"]})
    assert status == 401
    reader = token(authed, "reader", "r-secret")
    status, body = call(authed, "GET", "/v1/main/namespaces", token=reader)
    assert status == 200 and ["raw"] in body["namespaces"]
    status, error = call(authed, "POST", "/v1/main/namespaces", {"namespace": ["r"]}, token=reader)
    assert status == 403
    assert error["error"]["type"] == "ForbiddenException"
    status, _ = call(authed, "GET", "/v1/main/namespaces", token=reader[:-2] + "xx")
    assert status == 401

    # A table named `metrics` is no metrics report: writing it needs the write scope.
    writer = token(authed, "writer", "w-secret")
    status, _ = call(authed, "POST", "/v1/main/namespaces", {"namespace": ["gate"]}, token=writer)
    assert status == 200
    schema = {"type": "struct", "schema-id": 0,
              "fields": [{"id": 1, "name": "id", "type": "long", "required": False}]}
    status, _ = call(authed, "POST", "/v1/main/namespaces/gate/tables",
                     {"name": "metrics", "schema": schema}, token=writer)
    assert status == 200
    status, _ = call(authed, "DELETE", "/v1/main/namespaces/gate/tables/metrics", token=reader)
    assert status == 403
    status, _ = call(authed, "POST", "/v1/main/namespaces/gate/tables/metrics/metrics",
                     {"report-type": "scan-report"}, token=reader)
    assert status == 204, "a metrics report is a read"
    # The token endpoint answers malformed requests the OAuth2 way.
    request = urllib.request.Request(authed.rest + "/v1/oauth/tokens", data=b'{"grant_type": 1}',
                                     method="POST", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["error"] == "invalid_request"

    catalog = rest_catalog(authed, credential="writer:w-secret",
                           **{"oauth2-server-uri": authed.rest + "/v1/oauth/tokens"})
    catalog.create_namespace("by_writer")
    assert ("by_writer",) in catalog.list_namespaces()
    with pytest.raises(OAuthError):
        rest_catalog(authed, credential="writer:wrong",
                     **{"oauth2-server-uri": authed.rest + "/v1/oauth/tokens"})


def duckdb_iceberg(server, *statements: str) -> list:
    """Rows of each statement as DuckDB 1.4's Iceberg extension reads them through
    the REST catalog (a client no one here wrote)."""
    import os
    import subprocess

    python = os.environ.get("ICEFJORD_DUCKDB_ICEBERG_PY")
    if not python or not Path(python).is_file():
        pytest.fail("ICEFJORD_DUCKDB_ICEBERG_PY must name the Python of .venv-duckdb-iceberg "
                    "(scripts/test makes it from tests/interop/requirements-duckdb-iceberg.txt)")
    worker = Path(__file__).with_name("duckdb_iceberg_worker.py")
    out = subprocess.run([python, str(worker), server.rest, "main", *statements],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_duckdb_attaches_the_rest_catalog_and_agrees_with_icefjord_sql(shared, demo_lake):
    (tables, [(n, amount)], [(hours,)]) = duckdb_iceberg(
        shared,
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'lake' "
        "AND table_schema = 'raw' ORDER BY 1",
        "SELECT count(*), CAST(sum(quantity * unit_price) AS VARCHAR) FROM lake.raw.retail_events",
        "SELECT count(*) FROM lake.historical.sales_hourly",
    )
    assert ["retail_events"] in tables
    ours = demo_lake.sql(
        "SELECT count(*) AS n, CAST(sum(quantity * unit_price) AS VARCHAR) AS amount "
        "FROM raw.retail_events"
    )[0]
    assert n == ours["n"]
    assert Decimal(amount) == Decimal(ours["amount"])
    assert hours == scalar(demo_lake, "SELECT count(*) FROM historical.sales_hourly")


def test_spark_reads_writes_compacts_and_time_travels_through_the_rest_catalog(own, spark):
    from spark import rest_catalog as spark_rest

    lake, server = own
    catalog = spark_rest(server.rest)
    namespaces = {row[0] for row in spark.sql(catalog, "SHOW NAMESPACES")}
    assert {"raw", "historical"} <= namespaces
    [[n, amount]] = spark.sql(catalog, "SELECT count(*), CAST(sum(quantity * unit_price) AS STRING) "
                                       "FROM raw.retail_events")
    ours = lake.sql("SELECT count(*) AS n, CAST(sum(quantity * unit_price) AS VARCHAR) AS amount "
                    "FROM raw.retail_events")[0]
    assert n == ours["n"] and Decimal(amount) == Decimal(ours["amount"])
    [[hours]] = spark.sql(catalog, "SELECT count(*) FROM historical.sales_hourly")
    assert hours == scalar(lake, "SELECT count(*) FROM historical.sales_hourly")

    before = lake.catalog().load_table("raw.retail_events").metadata.current_snapshot_id
    spark.run(catalog, "INSERT INTO raw.retail_events SELECT * FROM raw.retail_events LIMIT 7")
    assert scalar(lake, "SELECT count(*) FROM raw.retail_events") == n + 7
    spark.run(catalog, "CALL icefjord.system.rewrite_data_files(table => 'raw.retail_events', "
                       "options => map('min-input-files', '1', 'rewrite-all', 'true'))")
    assert scalar(lake, "SELECT count(*) FROM raw.retail_events") == n + 7
    [[old]] = spark.sql(catalog, f"SELECT count(*) FROM raw.retail_events VERSION AS OF {before}")
    assert old == n
    # Our own writers go on past Spark's commits.
    out = lake.run("run", str(ROOT / "jobs" / "retail"), "-o", "json")
    assert out.returncode == 0, out.stderr


def test_a_table_with_a_non_ascii_name_is_read_by_icefjord_sql(own):
    lake, server = own
    catalog = rest_catalog(server)
    table = catalog.create_table("raw.café_ventes", schema=pa.schema([("x", pa.int64())]))
    table.append(pa.table({"x": [1, 2, 3]}))
    assert "café_ventes" in table.metadata_location
    assert scalar(lake, 'SELECT sum(x) FROM raw."café_ventes"') == 6
