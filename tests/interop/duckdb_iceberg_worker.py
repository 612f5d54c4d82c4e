"""Run SQL in DuckDB 1.4 with the Iceberg extension loaded from its PyPI wheel, the
REST catalog ATTACHed as `lake` (run by the Python of .venv-duckdb-iceberg, which the
test venv is not). Usage: duckdb_iceberg_worker.py REST_URI WAREHOUSE SQL...
Prints one JSON list of result rows (lists) per statement; values that JSON cannot
hold are printed as strings."""

import json
import sys
from pathlib import Path

import duckdb


def main() -> None:
    uri, warehouse, *statements = sys.argv[1:]
    extensions = next(Path(p) for p in sys.path if (Path(p) / "duckdb_ext").is_dir()) / "duckdb_ext" / "extensions"
    con = duckdb.connect()
    con.execute("SET extension_directory = ?", [str(extensions)])
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = true")
    for extension in ("httpfs", "avro", "iceberg"):
        con.execute(f"LOAD {extension}")
    con.execute(
        f"ATTACH '{warehouse}' AS lake (TYPE iceberg, ENDPOINT '{uri}', AUTHORIZATION_TYPE 'none')"
    )
    results = [con.execute(sql).fetchall() for sql in statements]
    print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
