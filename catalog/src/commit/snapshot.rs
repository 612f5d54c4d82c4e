//! Producing a new snapshot for one [`TableWrite`]: manifests, manifest list,
//! summary and the new table metadata. Nothing here touches the catalog row; the
//! caller swaps it in.

use std::collections::{HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use iceberg::spec::{
    DataContentType, DataFile, FormatVersion, Manifest, ManifestContentType, ManifestEntryRef,
    ManifestFile, ManifestListWriter, ManifestWriter, ManifestWriterBuilder, Operation, Schema,
    SchemaRef, Snapshot, SnapshotReference, SnapshotRetention, SnapshotSummaryCollector, Struct,
    Summary, TableMetadata, MAIN_BRANCH,
};
use iceberg::table::Table;

use super::{ancestry, head_of, CommitId, TableWrite, WriteMode, COMMIT_ID_PROPERTY};
use crate::catalog::display;
use crate::error::{CatalogError, Result};
use crate::evolution::check_evolution;
use crate::protocol::mirror_property;
use crate::protocol::position::Mirror;

/// The live data-file entries of a snapshot (its manifests, a few loaded at a
/// time so that memory holds their entries, not every manifest at once).
pub async fn live_entries(
    table: &Table,
    snapshot_id: Option<i64>,
) -> Result<Vec<ManifestEntryRef>> {
    live_entries_after(table, snapshot_id, None).await
}

/// [`live_entries`] whose data sequence number is above `after` (all: `None`).
/// Manifests added at or before `after` are not even read: a manifest's entries
/// never have a sequence number above the manifest's own (Iceberg spec,
/// "Sequence Numbers"), so an incremental read costs the new manifests.
pub async fn live_entries_after(
    table: &Table,
    snapshot_id: Option<i64>,
    after: Option<i64>,
) -> Result<Vec<ManifestEntryRef>> {
    let Some(snapshot) = snapshot_id.and_then(|id| table.metadata().snapshot_by_id(id)) else {
        return Ok(Vec::new());
    };
    let newer = |sequence: i64| after.is_none_or(|after| sequence > after);
    let manifests = table.manifest_list_reader(snapshot).load().await?;
    let mut loaded = load_manifests(
        table,
        manifests
            .entries()
            .iter()
            .filter(|m| m.content == ManifestContentType::Data && newer(m.sequence_number)),
    );
    let mut entries = Vec::new();
    while let Some(manifest) = loaded.try_next().await? {
        entries.extend(
            manifest
                .into_parts()
                .0
                .into_iter()
                .filter(|e| e.is_alive() && e.sequence_number().is_none_or(newer)),
        );
    }
    Ok(entries)
}

/// `manifests` read from storage, in their order, [`MANIFESTS_IN_FLIGHT`] at a
/// time (so that memory holds a few manifests, not every one at once).
pub fn load_manifests<'a>(
    table: &'a Table,
    manifests: impl IntoIterator<Item = &'a ManifestFile>,
) -> impl futures::Stream<Item = Result<Manifest>> + Send + 'a {
    // Collected first: a stream over closures is not `Send` enough for the
    // scans that await this.
    let loads: Vec<_> = manifests
        .into_iter()
        .map(|m| m.load_manifest(table.file_io()))
        .collect();
    futures::stream::iter(loads)
        .buffered(MANIFESTS_IN_FLIGHT)
        .map_err(CatalogError::from)
}

/// Manifests read at once by [`load_manifests`].
const MANIFESTS_IN_FLIGHT: usize = 16;

/// The snapshot a write builds on: its branch head, or `main`'s head for a new branch.
fn parent_of(metadata: &TableMetadata, branch: &str) -> Option<i64> {
    match metadata.snapshot_for_ref(branch) {
        Some(snapshot) => Some(snapshot.snapshot_id()),
        None if branch != MAIN_BRANCH => head_of(metadata, MAIN_BRANCH),
        None => None,
    }
}

/// Fail when data landed in the range a replacing write covers since its base.
pub(super) async fn check_no_conflict(
    table: &Table,
    write: &TableWrite,
    base: Option<i64>,
    id: &CommitId,
) -> Result<()> {
    if write.mode == WriteMode::Append {
        return Ok(());
    }
    let metadata = table.metadata();
    let conflict = |reason: String| CatalogError::Conflict {
        table: display(&write.table),
        commit_id: id.to_string(),
        reason,
    };
    let mut since_base = Vec::new();
    let mut reached_base = base.is_none();
    for snapshot in ancestry(metadata, parent_of(metadata, &write.branch)) {
        if Some(snapshot.snapshot_id()) == base {
            reached_base = true;
            break;
        }
        since_base.push(snapshot.clone());
    }
    if !reached_base {
        return Err(conflict(format!(
            "its base snapshot {} is no longer in the history of branch {}",
            base.unwrap_or_default(),
            write.branch
        )));
    }
    let replaced = replaced_partitions(table, write);
    for snapshot in since_base {
        let manifests = table.manifest_list_reader(&snapshot).load().await?;
        for manifest in manifests
            .entries()
            .iter()
            .filter(|m| m.added_snapshot_id == snapshot.snapshot_id() && m.has_added_files())
        {
            let loaded = manifest.load_manifest(table.file_io()).await?;
            for entry in loaded.entries() {
                let added_here = entry.status() == iceberg::spec::ManifestStatus::Added
                    && entry.snapshot_id() == Some(snapshot.snapshot_id());
                if !added_here {
                    continue;
                }
                let hit = match &replaced {
                    None => true,
                    Some(set) => set.contains(&(
                        manifest.partition_spec_id,
                        entry.data_file().partition().clone(),
                    )),
                };
                if hit {
                    return Err(conflict(format!(
                        "snapshot {} added {} after this write's base snapshot {}",
                        snapshot.snapshot_id(),
                        entry.file_path(),
                        base.map_or("(empty)".into(), |b| b.to_string()),
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The partitions a write replaces: `None` = everything. New files are always
/// written with the table's default partition spec.
fn replaced_partitions(table: &Table, write: &TableWrite) -> Option<HashSet<(i32, Struct)>> {
    let spec = table.metadata().default_partition_spec();
    (write.mode == WriteMode::ReplacePartitions && !spec.is_unpartitioned()).then(|| {
        write
            .files
            .iter()
            .map(|f| f.partition())
            .chain(&write.replaced)
            .map(|partition| (spec.spec_id(), partition.clone()))
            .collect()
    })
}

/// Build the new snapshot and metadata for `write` on top of `table`.
/// Returns the new metadata and the new snapshot id.
pub(crate) async fn produce(
    table: &Table,
    write: &TableWrite,
    guard_properties: &std::collections::BTreeMap<String, String>,
    id: &CommitId,
) -> Result<(TableMetadata, i64)> {
    let metadata = table.metadata();
    let spec = metadata.default_partition_spec().clone();
    let invalid = |message: String| CatalogError::InvalidCommit {
        table: display(&write.table),
        message,
    };
    let (schema, new_schema_id) = evolved_schema(metadata, write, id)?;
    for file in &write.files {
        if file.content_type() != DataContentType::Data {
            return Err(invalid(format!("{} is not a data file", file.file_path())));
        }
        if file.partition().fields().len() != spec.fields().len() {
            return Err(invalid(format!(
                "{} has {} partition values, the table's partition spec {} has {} fields",
                file.file_path(),
                file.partition().fields().len(),
                spec.spec_id(),
                spec.fields().len()
            )));
        }
    }

    let parent_id = parent_of(metadata, &write.branch);
    let parent = parent_id.and_then(|id| metadata.snapshot_by_id(id));
    let snapshot_id = match write.snapshot_id {
        None => unique_snapshot_id(metadata),
        Some(id) if metadata.snapshot_by_id(id).is_none() => id,
        Some(id) => {
            return Err(CatalogError::InvalidCommit {
                table: display(&write.table),
                message: format!("snapshot id {id} is already taken"),
            })
        }
    };
    let sequence_number = metadata.next_sequence_number();
    let commit_uuid = uuid::Uuid::now_v7();
    let mut manifest_counter = 0u32;
    // Entries are rewritten under the partition spec they were written with
    // (a table whose spec evolved holds files of several specs).
    let spec_of = |spec_id: i32| -> Result<iceberg::spec::PartitionSpecRef> {
        metadata
            .partition_spec_by_id(spec_id)
            .cloned()
            .ok_or_else(|| {
                invalid(format!(
                    "a manifest names partition spec {spec_id}, which the table lacks"
                ))
            })
    };
    let mut new_manifest =
        |content_hint: &str, spec: &iceberg::spec::PartitionSpecRef| -> Result<ManifestWriter> {
            manifest_counter += 1;
            let path = format!(
                "{}/metadata/{commit_uuid}-{content_hint}{manifest_counter}.avro",
                metadata.location()
            );
            let output = table.file_io().new_output(path)?;
            let builder = ManifestWriterBuilder::new(
                output,
                Some(snapshot_id),
                schema.clone(),
                spec.as_ref().clone(),
            );
            Ok(match metadata.format_version() {
                FormatVersion::V1 => builder.build_v1(),
                FormatVersion::V2 => builder.build_v2_data(),
                FormatVersion::V3 => builder.build_v3_data(),
            })
        };

    let mut collector = SnapshotSummaryCollector::default();
    let mut manifests: Vec<ManifestFile> = Vec::new();
    let replaced = replaced_partitions(table, write);
    let mut removed: Vec<(DataFile, iceberg::spec::PartitionSpecRef)> = Vec::new();

    if let Some(parent) = parent {
        let parent_manifests = table.manifest_list_reader(parent).load().await?;
        match write.mode {
            WriteMode::Append => {
                manifests.extend(
                    parent_manifests
                        .entries()
                        .iter()
                        .filter(|m| m.has_added_files() || m.has_existing_files())
                        .cloned(),
                );
            }
            WriteMode::Overwrite | WriteMode::ReplacePartitions | WriteMode::OverwriteFiles => {
                // One manifest of deleted entries per partition spec.
                let mut deleted: std::collections::BTreeMap<i32, ManifestWriter> =
                    Default::default();
                for manifest in parent_manifests.entries() {
                    if !(manifest.has_added_files() || manifest.has_existing_files()) {
                        continue;
                    }
                    if manifest.content != ManifestContentType::Data {
                        manifests.push(manifest.clone());
                        continue;
                    }
                    let loaded = manifest.load_manifest(table.file_io()).await?;
                    let live: Vec<_> = loaded.entries().iter().filter(|e| e.is_alive()).collect();
                    let is_replaced = |e: &ManifestEntryRef| match &replaced {
                        _ if write.mode == WriteMode::OverwriteFiles => {
                            write.deleted.contains(e.file_path())
                        }
                        None => true,
                        Some(set) => set.contains(&(
                            manifest.partition_spec_id,
                            e.data_file().partition().clone(),
                        )),
                    };
                    if !live.iter().any(|e| is_replaced(e)) {
                        manifests.push(manifest.clone());
                        continue;
                    }
                    let manifest_spec = spec_of(manifest.partition_spec_id)?;
                    let mut kept = new_manifest("e", &manifest_spec)?;
                    let mut any_kept = false;
                    for entry in live {
                        let seq = entry.sequence_number().unwrap_or(0);
                        let file_seq = entry.file_sequence_number.or(Some(seq));
                        if is_replaced(entry) {
                            let writer = match deleted.entry(manifest.partition_spec_id) {
                                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                                std::collections::btree_map::Entry::Vacant(v) => {
                                    v.insert(new_manifest("d", &manifest_spec)?)
                                }
                            };
                            writer.add_delete_file(entry.data_file().clone(), seq, file_seq)?;
                            removed.push((entry.data_file().clone(), manifest_spec.clone()));
                        } else {
                            let added_by =
                                entry.snapshot_id().unwrap_or(manifest.added_snapshot_id);
                            kept.add_existing_file(
                                entry.data_file().clone(),
                                added_by,
                                seq,
                                file_seq,
                            )?;
                            any_kept = true;
                        }
                    }
                    if any_kept {
                        manifests.push(kept.write_manifest_file().await?);
                    }
                }
                for (_, writer) in deleted {
                    manifests.push(writer.write_manifest_file().await?);
                }
            }
        }
    }

    if write.mode == WriteMode::OverwriteFiles && removed.len() != write.deleted.len() {
        let live: HashSet<&str> = removed.iter().map(|(f, _)| f.file_path()).collect();
        let gone = write
            .deleted
            .iter()
            .find(|path| !live.contains(path.as_str()))
            .cloned()
            .unwrap_or_default();
        return Err(CatalogError::Conflict {
            table: display(&write.table),
            commit_id: id.to_string(),
            reason: format!(
                "{gone} is no longer a live file of branch {} (rewritten or deleted since \
                 this write read it)",
                write.branch
            ),
        });
    }
    if !write.files.is_empty() {
        let mut added = new_manifest("a", &spec)?;
        for file in &write.files {
            added.add_file(file.clone(), sequence_number)?;
        }
        manifests.push(added.write_manifest_file().await?);
    }
    for file in &write.files {
        collector.add_file(file, schema.clone(), spec.clone());
    }
    for (file, file_spec) in &removed {
        collector.remove_file(file, schema.clone(), file_spec.clone());
    }

    let manifest_list_path = format!(
        "{}/metadata/snap-{snapshot_id}-1-{commit_uuid}.avro",
        metadata.location()
    );
    let list_out = table
        .file_io()
        .new_output(&manifest_list_path)?
        .writer()
        .await?;
    let mut list_writer = match metadata.format_version() {
        FormatVersion::V1 => ManifestListWriter::v1(list_out, snapshot_id, parent_id),
        FormatVersion::V2 => {
            ManifestListWriter::v2(list_out, snapshot_id, parent_id, sequence_number)
        }
        FormatVersion::V3 => ManifestListWriter::v3(
            list_out,
            snapshot_id,
            parent_id,
            sequence_number,
            Some(metadata.next_row_id()),
        ),
    };
    list_writer.add_manifests(manifests.into_iter())?;
    let next_row_id = list_writer.next_row_id();
    list_writer.close().await?;

    let operation = match write.mode {
        WriteMode::Append => Operation::Append,
        WriteMode::Overwrite | WriteMode::ReplacePartitions | WriteMode::OverwriteFiles => {
            Operation::Overwrite
        }
    };
    let mut properties: HashMap<String, String> = write
        .properties
        .iter()
        .chain(guard_properties)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    properties.insert(COMMIT_ID_PROPERTY.to_string(), id.to_string());
    properties.extend(collector.build());
    add_totals(&mut properties, parent.map(|p| p.summary()));
    if write.mode == WriteMode::ReplacePartitions {
        properties.insert("replace-partitions".into(), "true".into());
    }

    let builder = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(parent_id)
        .with_sequence_number(sequence_number)
        .with_manifest_list(manifest_list_path)
        .with_schema_id(new_schema_id.unwrap_or(metadata.current_schema_id()))
        .with_timestamp_ms(next_timestamp_ms(metadata))
        .with_summary(Summary {
            operation,
            additional_properties: properties,
        });
    let snapshot = match next_row_id {
        Some(next) => {
            let first = metadata.next_row_id();
            builder.with_row_range(first, next - first).build()
        }
        None => builder.build(),
    };
    let mirrors = position_mirrors(write, guard_properties, snapshot_id, sequence_number);
    let mut builder = metadata
        .clone()
        .into_builder(table.metadata_location().map(str::to_string));
    if new_schema_id.is_some() {
        builder = builder.add_current_schema(schema.as_ref().clone())?;
    }
    if !mirrors.is_empty() {
        builder = builder.set_properties(mirrors)?;
    }
    let new_metadata = builder
        .add_snapshot(snapshot)?
        .set_ref(
            &write.branch,
            SnapshotReference::new(snapshot_id, SnapshotRetention::branch(None, None, None)),
        )?
        .build()?
        .metadata;
    if new_metadata.current_schema_id() != new_schema_id.unwrap_or(metadata.current_schema_id()) {
        return Err(invalid(format!(
            "the new schema got id {}, but snapshot {snapshot_id} was built for {:?}",
            new_metadata.current_schema_id(),
            new_schema_id
        )));
    }
    Ok((new_metadata, snapshot_id))
}

/// The table properties mirroring the positions this write sets on `main` (see
/// [`crate::protocol::position`], invariant 2): its own and its guard's.
fn position_mirrors(
    write: &TableWrite,
    guard_properties: &std::collections::BTreeMap<String, String>,
    snapshot_id: i64,
    sequence_number: i64,
) -> HashMap<String, String> {
    if write.branch != MAIN_BRANCH {
        return HashMap::new();
    }
    let own = write
        .positions
        .iter()
        .filter_map(|key| Some((key, write.properties.get(key)?)));
    own.chain(guard_properties)
        .map(|(key, value)| {
            let mirror = Mirror {
                snapshot_id,
                sequence_number,
                value: value.clone(),
            };
            (mirror_property(key), mirror.render())
        })
        .collect()
}

/// The schema the write's files use, and its id when it becomes a new current
/// schema (`None`: the table's current schema stays).
fn evolved_schema(
    metadata: &TableMetadata,
    write: &TableWrite,
    id: &CommitId,
) -> Result<(SchemaRef, Option<i32>)> {
    let current = metadata.current_schema();
    let Some(next) = write.schema.as_ref() else {
        return Ok((current.clone(), None));
    };
    let same = |a: &Schema, b: &Schema| {
        a.as_struct() == b.as_struct() && a.identifier_field_ids().eq(b.identifier_field_ids())
    };
    if same(next, current) {
        return Ok((current.clone(), None));
    }
    check_evolution(current, metadata.last_column_id(), next).map_err(|reason| {
        CatalogError::Conflict {
            table: display(&write.table),
            commit_id: id.to_string(),
            reason: format!("schema evolution: {reason}"),
        }
    })?;
    // The id TableMetadataBuilder gives it: an identical older schema's, or the next.
    let schema_id = metadata
        .schemas_iter()
        .find(|s| same(s, next))
        .map(|s| s.schema_id())
        .unwrap_or_else(|| {
            metadata
                .schemas_iter()
                .map(|s| s.schema_id())
                .max()
                .unwrap_or(0)
                + 1
        });
    Ok((next.clone(), Some(schema_id)))
}

/// Snapshot timestamps must grow along the table's log; a clock that stepped back
/// must not produce a snapshot older than its parent.
fn next_timestamp_ms(metadata: &TableMetadata) -> i64 {
    let now = chrono::Utc::now().timestamp_millis();
    now.max(metadata.last_updated_ms() + 1)
}

fn unique_snapshot_id(metadata: &TableMetadata) -> i64 {
    loop {
        let id = mint_snapshot_id();
        if metadata.snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

/// A random positive snapshot id (63 random bits: a clash is not a practical
/// concern, and the commit path refuses one anyway).
pub fn mint_snapshot_id() -> i64 {
    loop {
        let (hi, lo) = uuid::Uuid::new_v4().as_u64_pair();
        let id = ((hi ^ lo) & (i64::MAX as u64)) as i64;
        if id != 0 {
            return id;
        }
    }
}

/// `total-*` summary fields: previous totals + added − removed.
fn add_totals(properties: &mut HashMap<String, String>, previous: Option<&Summary>) {
    const TOTALS: [(&str, &str, &str); 3] = [
        ("total-records", "added-records", "deleted-records"),
        ("total-data-files", "added-data-files", "deleted-data-files"),
        ("total-files-size", "added-files-size", "removed-files-size"),
    ];
    let get = |map: &HashMap<String, String>, key: &str| -> Option<u64> {
        map.get(key).and_then(|v| v.parse().ok())
    };
    for (total, added, removed) in TOTALS {
        let before = match previous {
            None => Some(0),
            Some(summary) => get(&summary.additional_properties, total),
        };
        if let Some(before) = before {
            let value = before + get(properties, added).unwrap_or(0)
                - get(properties, removed)
                    .unwrap_or(0)
                    .min(before + get(properties, added).unwrap_or(0));
            properties.insert(total.to_string(), value.to_string());
        }
    }
    for (key, value) in [
        ("total-delete-files", "0"),
        ("total-position-deletes", "0"),
        ("total-equality-deletes", "0"),
    ] {
        properties
            .entry(key.to_string())
            .or_insert_with(|| value.to_string());
    }
}
