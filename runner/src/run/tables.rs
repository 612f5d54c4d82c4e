//! The tables a run writes: its outputs (Iceberg, or Delta) as the catalog has them
//! or new ones, and the input snapshots recorded with them.

use super::*;

impl<'a> Runner<'a> {
    /// The snapshot of each lake table the model read (as of the run's catalog
    /// state), for the output's snapshot summary: `icefjord.input.<table>`.
    pub(super) async fn input_snapshots(
        &self,
        session: &LakeSession,
        model: &Model,
    ) -> Result<Vec<(String, i64)>> {
        let mut inputs = Vec::new();
        for read in &model.sql.reads {
            if self.pipeline.model(&read.table).is_some() {
                continue;
            }
            let provider = session
                .context()
                .table_provider(read.table.as_str())
                .await?;
            if let Some(table) = provider.as_any().downcast_ref::<IcebergTable>() {
                let snapshot = table
                    .snapshot_id()
                    .or_else(|| table.table().metadata().current_snapshot_id());
                // An empty input has no snapshot to record.
                if let Some(id) = snapshot {
                    inputs.push((read.table.clone(), id));
                }
            }
        }
        Ok(inputs)
    }

    /// A table of the run (an output or a boundary table), or when the lake has
    /// none, a new one from `schema` that is not in the catalog yet (`true`): the
    /// run's commit registers it (`TableWrite::creating`), so a failed run leaves
    /// no empty table behind.
    pub(super) async fn output_table(
        &self,
        ident: &iceberg::TableIdent,
        partition_by: &[String],
        schema: &SchemaRef,
    ) -> Result<(Table, bool)> {
        match self.catalog.load(ident).await {
            Ok(table) => return Ok((table, false)),
            Err(CatalogError::TableNotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let name = icefjord_catalog::display(ident);
        let iceberg = iceberg_schema_for(&name, schema)?;
        let partition_spec = match partition_by.is_empty() {
            true => None,
            false => Some(partition_spec(&name, partition_by, &iceberg)?),
        };
        let properties = [(keys::PIPELINE.to_string(), self.pipeline.name.clone())];
        let spec = TableSpec {
            schema: iceberg,
            partition_spec,
            properties: properties.into(),
        };
        Ok((self.catalog.unregistered(ident, spec).await?, true))
    }

    /// The Delta table of a `target = "delta"` model at its latest version, or a
    /// new one (version 0, no files) at the output's default location.
    pub(super) async fn delta_output(
        &self,
        model: &Model,
        schema: &SchemaRef,
    ) -> Result<DeltaOutput> {
        if self.catalog.exists(&model.ident).await? {
            return Err(model
                .error(
                    Some("target"),
                    format!(
                        "{} is an Iceberg table of the lake; a Delta output needs a name of its own",
                        model.name
                    ),
                )
                .into());
        }
        let store = self.catalog.store();
        let location = match self.catalog.delta_table(&model.ident).await? {
            Some(pointer) => pointer.location,
            None => self.catalog.default_location(&model.ident),
        };
        if let Some(output) = DeltaOutput::open(store, &location).await? {
            let wanted = model.partition_by.clone();
            if output.partition_columns() != wanted {
                return Err(model
                    .error(
                        Some("partition_by"),
                        format!(
                            "the Delta table at {location} is partitioned by {:?}, not {wanted:?}",
                            output.partition_columns()
                        ),
                    )
                    .into());
            }
            return Ok(output);
        }
        Ok(DeltaOutput::create(
            store,
            &location,
            model.ident.name(),
            schema,
            &model.partition_by,
        )
        .await?)
    }
}
