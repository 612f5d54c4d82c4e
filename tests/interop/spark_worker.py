"""A long-lived Spark 3.5 + Iceberg driver for the interop tests (see spark.py).

Runs with the Python of the venv scripts/install-spark made (it has pyspark; the test
venv does not). Protocol: one JSON request per line on stdin, one JSON response per
line on the stdout it was started with:

  request  {"catalog": {"uri": "jdbc:sqlite:/lake/catalog.db", "warehouse": "/lake/warehouse",
                        "user": null, "password": null},
            "sql": ["SELECT ...", "CALL icefjord.system.expire_snapshots(...)"]}
  response {"ok": true, "seconds": 1.23,
            "results": [{"columns": ["n"], "rows": [[5000]]}, ...]}   one per statement
           {"ok": false, "error": "...", "statement": "...", "seconds": ...}

Each distinct catalog gets its own SparkSession (SparkSession.newSession: one JVM,
isolated SQL conf and catalogs). The Spark catalog is named `icefjord` because Iceberg's
JdbcCatalog takes the Spark catalog name as its `catalog_name` column value, which must
be Icefjord's CATALOG_NAME (catalog/src/catalog.rs). Table caching is off, so every
statement sees what other writers committed since the last one.
Values: numbers and booleans as JSON, decimals as strings, timestamps and dates ISO 8601,
binary as hex, structs as objects, arrays as lists, maps as objects.
"""

import datetime
import decimal
import json
import os
import sys
import time

CATALOG = "icefjord"


def main() -> None:
    # Keep the protocol stream private: the JVM and log4j may write to fd 1.
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    jars = json.loads(sys.argv[1])
    scratch = sys.argv[2]
    spark = start(jars, scratch)
    sessions = {}
    protocol.write(json.dumps({"ok": True, "ready": True, "spark": spark.version}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        started = time.monotonic()
        statement = None
        try:
            catalog = request["catalog"]
            key = json.dumps(catalog, sort_keys=True)
            if key not in sessions:
                sessions[key] = session_for(spark, catalog)
            session = sessions[key]
            results = []
            for statement in request["sql"]:
                df = session.sql(statement)
                results.append({"columns": df.columns, "rows": [to_json(list(r)) for r in df.collect()]})
            response = {"ok": True, "results": results}
        except Exception as e:  # reported to the test, which fails with it
            response = {"ok": False, "error": f"{type(e).__name__}: {e}", "statement": statement}
        response["seconds"] = round(time.monotonic() - started, 3)
        protocol.write(json.dumps(response) + "\n")


def start(jars, scratch):
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master("local[2]")
        .appName("icefjord-interop")
        # On the driver's own class path, so java.sql.DriverManager sees the JDBC drivers.
        .config("spark.driver.extraClassPath", ":".join(jars))
        .config("spark.driver.memory", "1g")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.catalogImplementation", "in-memory")
        .config("spark.sql.warehouse.dir", os.path.join(scratch, "spark-warehouse"))
        .config("spark.local.dir", os.path.join(scratch, "spark-local"))
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.extensions",
                "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions")
        .getOrCreate()
    )


def session_for(spark, catalog):
    session = spark.newSession()
    prefix = f"spark.sql.catalog.{CATALOG}"
    if catalog.get("type") == "rest":
        conf = {
            prefix: "org.apache.iceberg.spark.SparkCatalog",
            f"{prefix}.type": "rest",
            f"{prefix}.uri": catalog["uri"],
            f"{prefix}.warehouse": catalog["warehouse"],
            f"{prefix}.cache-enabled": "false",
            "spark.sql.defaultCatalog": CATALOG,
        }
        if catalog.get("credential"):
            conf[f"{prefix}.credential"] = catalog["credential"]
            conf[f"{prefix}.oauth2-server-uri"] = catalog["uri"] + "/v1/oauth/tokens"
        for k, v in conf.items():
            session.conf.set(k, v)
        return session
    conf = {
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.type": "jdbc",
        f"{prefix}.uri": catalog["uri"],
        f"{prefix}.warehouse": catalog["warehouse"],
        f"{prefix}.jdbc.schema-version": "V1",
        f"{prefix}.cache-enabled": "false",
        "spark.sql.defaultCatalog": CATALOG,
    }
    if catalog["uri"].startswith("jdbc:sqlite:"):
        # Icefjord made the catalog tables. Iceberg 1.10's check for them leaves a read
        # transaction open on SQLite; in rollback-journal mode (a catalog PyIceberg made)
        # every later commit then fails with SQLITE_BUSY. Icefjord's catalog is in WAL mode
        # (catalog/src/db.rs), where it does no harm, but the check is not needed.
        conf[f"{prefix}.jdbc.init-catalog-tables"] = "false"
        # Wait for another writer's lock as long as Icefjord does (catalog/src/db.rs);
        # sqlite-jdbc's default is 3 s, after which the commit fails with SQLITE_BUSY.
        conf[f"{prefix}.jdbc.busy_timeout"] = "30000"
    if catalog.get("user"):
        conf[f"{prefix}.jdbc.user"] = catalog["user"]
    if catalog.get("password"):
        conf[f"{prefix}.jdbc.password"] = catalog["password"]
    for k, v in conf.items():
        session.conf.set(k, v)
    return session


def to_json(value):
    from pyspark.sql import Row

    if isinstance(value, Row):
        return {k: to_json(v) for k, v in value.asDict().items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    return value


if __name__ == "__main__":
    main()
