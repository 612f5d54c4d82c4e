"""Time travel and metadata tables (issue 13, item 3) checked against PyIceberg, a
client no one here wrote: `raw.t.snapshots|history|refs|files|manifests|partitions`
hold the rows of PyIceberg's `table.inspect.*`, and `VERSION AS OF`, `tag_`,
`branch_` read what PyIceberg's `scan(snapshot_id=…)` reads. The tag and branch are
created by PyIceberg (`manage_snapshots()`), as another engine would."""

import json

import pyarrow as pa
import pyarrow.compute as pc

TABLE = "raw.retail_events"


def three_commits(lake):
    for events in ("3000", "5000", "8000"):
        out = lake.run("generate", "--kind", "retail", "--events", events)
        assert out.returncode == 0, out.stderr
    return lake.catalog().load_table(TABLE)


def ms(column):
    """A PyIceberg timestamp(ms) column as epoch milliseconds."""
    return column.cast(pa.int64()).to_pylist()


def pairs(value):
    """A PyIceberg map (list of pairs) or one of our JSON maps, as a dict with
    string keys (empty when absent, as PyIceberg shows it)."""
    if value is None:
        return {}
    if isinstance(value, str):
        return json.loads(value)
    return {str(k): v for k, v in value}


def readable(value):
    """A partition value as text (PyIceberg gives dates, we print ISO dates)."""
    return {k: (v if v is None else str(v)) for k, v in value.items()}


def test_metadata_tables_hold_pyicebergs_rows(lake):
    table = three_commits(lake)
    snapshots = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)
    table.manage_snapshots().create_tag(snapshots[0].snapshot_id, "v1").create_branch(
        snapshots[1].snapshot_id, "audit"
    ).commit()
    table = lake.catalog().load_table(TABLE)

    theirs = table.inspect.snapshots()
    theirs = sorted(
        zip(
            ms(theirs["committed_at"]),
            theirs["snapshot_id"].to_pylist(),
            theirs["parent_id"].to_pylist(),
            theirs["operation"].to_pylist(),
            theirs["manifest_list"].to_pylist(),
            [pairs(s) for s in theirs["summary"].to_pylist()],
        )
    )
    ours = lake.sql(
        "SELECT CAST(committed_at AS BIGINT) / 1000 AS at, snapshot_id, parent_id, "
        f"operation, manifest_list, summary FROM {TABLE}.snapshots ORDER BY committed_at"
    )
    ours = [
        (r["at"], r["snapshot_id"], r["parent_id"], r["operation"], r["manifest_list"],
         pairs(r["summary"]))
        for r in ours
    ]
    assert len(ours) == 3
    assert ours == theirs

    theirs = table.inspect.history()
    theirs = list(
        zip(
            ms(theirs["made_current_at"]),
            theirs["snapshot_id"].to_pylist(),
            theirs["parent_id"].to_pylist(),
            theirs["is_current_ancestor"].to_pylist(),
        )
    )
    ours = lake.sql(
        "SELECT CAST(made_current_at AS BIGINT) / 1000 AS at, snapshot_id, parent_id, "
        f"is_current_ancestor FROM {TABLE}.history"
    )
    assert [tuple(r.values()) for r in ours] == theirs

    columns = ["name", "type", "snapshot_id", "max_reference_age_in_ms",
               "min_snapshots_to_keep", "max_snapshot_age_in_ms"]
    theirs = sorted(tuple(r[c] for c in columns) for r in table.inspect.refs().to_pylist())
    ours = lake.sql(f"SELECT {', '.join(columns)} FROM {TABLE}.refs ORDER BY name")
    assert [tuple(r[c] for c in columns) for r in ours] == theirs
    assert {r[0] for r in theirs} == {"main", "v1", "audit"}

    # files: every shared column; bounds as readable values of a long column.
    quantity = str(table.schema().find_field("quantity").field_id)
    theirs = {}
    for r in table.inspect.files().to_pylist():
        theirs[r["file_path"]] = (
            r["content"], r["file_format"], r["spec_id"], readable(r["partition"]),
            r["record_count"], r["file_size_in_bytes"], pairs(r["column_sizes"]),
            pairs(r["value_counts"]), pairs(r["null_value_counts"]),
            pairs(r["nan_value_counts"]), r["split_offsets"], r["sort_order_id"],
            str(r["readable_metrics"]["quantity"]["lower_bound"]),
            str(r["readable_metrics"]["quantity"]["upper_bound"]),
        )
    ours = {}
    for r in lake.sql(f"SELECT * FROM {TABLE}.files"):
        ours[r["file_path"]] = (
            r["content"], r["file_format"], r["spec_id"], readable(r["partition"]),
            r["record_count"], r["file_size_in_bytes"], pairs(r["column_sizes"]),
            pairs(r["value_counts"]), pairs(r["null_value_counts"]),
            pairs(r["nan_value_counts"]), r["split_offsets"], r["sort_order_id"],
            pairs(r["lower_bounds"])[quantity], pairs(r["upper_bounds"])[quantity],
        )
    assert len(ours) >= 3
    assert ours == theirs

    theirs = {}
    for r in table.inspect.manifests().to_pylist():
        theirs[r["path"]] = tuple(v for k, v in r.items() if k != "path")
    ours = {}
    for r in lake.sql(f"SELECT * FROM {TABLE}.manifests"):
        ours[r["path"]] = tuple(v for k, v in r.items() if k != "path")
    assert len(ours) >= 1
    assert ours == theirs

    partition_columns = ["spec_id", "record_count", "file_count",
                         "total_data_file_size_in_bytes", "position_delete_record_count",
                         "position_delete_file_count", "equality_delete_record_count",
                         "equality_delete_file_count", "last_updated_snapshot_id"]
    theirs = table.inspect.partitions()
    last = ms(theirs["last_updated_at"])
    theirs = sorted(
        (str(sorted(readable(r["partition"]).items())), *(r[c] for c in partition_columns), at)
        for r, at in zip(theirs.to_pylist(), last)
    )
    ours = lake.sql(
        f"SELECT *, CAST(last_updated_at AS BIGINT) / 1000 AS at FROM {TABLE}.partitions"
    )
    ours = sorted(
        (str(sorted(readable(r["partition"]).items())), *(r[c] for c in partition_columns),
         r["at"])
        for r in ours
    )
    assert sum(r[2] for r in ours) == 8000
    assert ours == theirs


def test_versions_read_what_pyiceberg_scans(lake):
    table = three_commits(lake)
    snapshots = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)
    table.manage_snapshots().create_tag(snapshots[0].snapshot_id, "first").create_branch(
        snapshots[1].snapshot_id, "second"
    ).commit()

    def theirs(snapshot_id):
        rows = table.scan(snapshot_id=snapshot_id).to_arrow()
        return {"n": rows.num_rows, "q": pc.sum(rows["quantity"]).as_py()}

    def ours(name_and_version):
        return lake.sql(
            f"SELECT count(*) AS n, sum(quantity) AS q FROM {name_and_version}"
        )[0]

    counts = []
    for snapshot in snapshots:
        expected = theirs(snapshot.snapshot_id)
        counts.append(expected["n"])
        assert ours(f"{TABLE} VERSION AS OF {snapshot.snapshot_id}") == expected
        assert ours(f"{TABLE}.snapshot_id_{snapshot.snapshot_id}") == expected
        assert ours(f"{TABLE}.at_timestamp_{snapshot.timestamp_ms}") == expected
    assert counts == [3000, 5000, 8000]
    assert ours(f"{TABLE}.tag_first") == theirs(snapshots[0].snapshot_id)
    assert ours(f"{TABLE}.branch_second") == theirs(snapshots[1].snapshot_id)
    assert ours(TABLE) == theirs(snapshots[2].snapshot_id)
