//! Step 2 of a run for one model: plan its query (fresh rows of an incremental
//! input, the intervals still to do), merge, write its files, and build its
//! output's table write with the positions it carries.

use super::*;

/// An incremental input's fresh rows, as seen by one model's run.
enum FreshInput {
    /// The model has no incremental input.
    None,
    /// No fresh row since the output's published boundary: nothing to do
    /// (`rows_read` rows were read to find out).
    UpToDate { rows_read: u64 },
    /// Fresh rows, staged as the input for this model: the boundary past them
    /// and the one the run started from.
    Advanced {
        next: boundary::Boundary,
        previous: boundary::Boundary,
        rows_read: u64,
    },
}

/// The output's new content and how its files relate to the published ones.
struct Content {
    frame: DataFrame,
    mode: StagedMode,
    /// The model's new rows, when counted before merging.
    new_rows: Option<u64>,
    rows_read: u64,
    /// Rows the content reads from data files outside its plan's scans, counted
    /// as it streams (a copy-on-write merge's touched files).
    streamed_rows_read: Option<ReadCounter>,
    /// Published files the content replaces (a copy-on-write merge).
    deleted: Option<HashSet<String>>,
}

impl<'a> Runner<'a> {
    /// Step 2 for one model: its output, rows and files.
    pub(super) async fn run_model(
        &self,
        session: &LakeSession,
        model: &Model,
        run_id: &str,
    ) -> Result<ModelRun> {
        if model.kind == Kind::View {
            return self.run_view(session, model).await;
        }
        let existing = match self.catalog.load(&model.ident).await {
            Ok(table) => Some(table),
            Err(CatalogError::TableNotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let (advanced, fresh_read) =
            match self.fresh_input(session, model, existing.as_ref()).await? {
                FreshInput::UpToDate { rows_read } => return Ok(ModelRun::up_to_date(rows_read)),
                FreshInput::None => (None, 0),
                FreshInput::Advanced {
                    next,
                    previous,
                    rows_read,
                } => (Some((next, previous)), rows_read),
            };
        // incremental_by_time: the intervals this run processes (none: up to date).
        let (done, ranges) = self.intervals(existing.as_ref(), model)?;
        if ranges.as_ref().is_some_and(Vec::is_empty) {
            session.unstage(&model.ident)?;
            return Ok(ModelRun::up_to_date(0));
        }
        let new_frame = self.new_rows(session, model, ranges.as_ref()).await?;
        let frame_schema: SchemaRef = Arc::new(new_frame.schema().as_arrow().clone());
        let mut schema = frame_schema.clone();
        // Where the output goes: the table loaded before the run read its boundary
        // and intervals (or a new one), and its published content.
        let destination = self
            .destination(model, existing.as_ref(), &mut schema)
            .await?;
        let base = match &destination {
            Destination::Iceberg { table, .. } => table.metadata().current_snapshot_id(),
            Destination::Delta(output) => Some(output.version() as i64),
        };
        let content = self
            .content(
                session,
                model,
                &destination,
                new_frame,
                &frame_schema,
                &schema,
            )
            .await?;
        let deleted = content.deleted;
        let written = self
            .write_content(
                session,
                model,
                &destination,
                content.frame,
                content.mode,
                deleted.as_ref(),
                &frame_schema,
                &schema,
                ranges.as_ref(),
            )
            .await?;
        session.stage(&model.ident, written.staged)?;
        let mut run = ModelRun {
            rows: Some(content.new_rows.unwrap_or(written.rows)),
            files: Some(written.files.len() + written.delta_files.len()),
            rows_read: Some(
                fresh_read
                    + content.rows_read
                    + content.streamed_rows_read.map_or(0, |r| r.get())
                    + written.rows_read,
            ),
            files_deleted: deleted.as_ref().map(HashSet::len),
            bytes_written: Some(written.bytes),
            // Audits of an incremental output check the rows this run wrote
            // (see `Runner::audit`).
            audit_scope: (model.kind == Kind::IncrementalByTime || deleted.is_some())
                .then(|| written.only_new.clone()),
            output: Output::UpToDate,
        };
        // A new Iceberg output is registered by the publishing commit.
        let creating = match (&destination, &existing) {
            (Destination::Iceberg { table, .. }, None) => Some(table.clone()),
            _ => None,
        };
        if let Destination::Delta(output) = destination {
            run.output = Output::Delta {
                ident: model.ident.clone(),
                output: Box::new(output),
                files: written.delta_files,
                mode: content.mode,
            };
            return Ok(run);
        }
        let snapshot_id = mint_snapshot_id();
        let inputs = self.input_snapshots(session, model).await?;
        let write = match model.kind {
            Kind::Append => TableWrite::append(model.ident.clone(), written.files),
            Kind::IncrementalByKey => match deleted {
                Some(deleted) => TableWrite::overwrite_files(
                    model.ident.clone(),
                    deleted.into_iter().collect(),
                    written.files,
                ),
                None => TableWrite::overwrite(model.ident.clone(), written.files),
            }
            .with_base_snapshot(base),
            Kind::IncrementalByTime => {
                let covered = interval::merged(
                    done.iter()
                        .chain(ranges.iter().flatten())
                        .copied()
                        .collect(),
                );
                TableWrite::replace_partitions(model.ident.clone(), written.files)
                    .with_replaced_partitions(written.replaced)
                    .with_base_snapshot(base)
                    .with_position(&IntervalsKey, &covered)
            }
            _ => TableWrite::overwrite(model.ident.clone(), written.files),
        }
        .with_snapshot_id(snapshot_id)
        .with_property(keys::WRITER, keys::writer::RUN)
        .with_property(keys::PIPELINE, self.pipeline.name.clone())
        .with_property(keys::MODEL, model.name.clone())
        .with_property(keys::RUN_ID, run_id.to_string());
        let mut write = inputs.into_iter().fold(write, |write, (input, snapshot)| {
            write.with_position(&InputSnapshotKey { input }, &snapshot)
        });
        if let Some(table) = creating {
            write = write.creating(table);
        }
        let mut companion = None;
        if let (Some(input), Some((advanced, previous))) = (&model.incremental_input, &advanced) {
            let key = BoundaryKey {
                input: input.clone(),
            };
            // The fence expects the boundary this run read (found past other
            // engines' snapshots, like every position).
            write = write
                .with_position(&key, advanced)
                .with_guard(Arc::new(boundary::Fence {
                    key,
                    expected: previous.clone(),
                }));
            companion = Some(
                self.stage_boundary(session, model, run_id, input, advanced)
                    .await?,
            );
        }
        run.output = Output::Table {
            write: Box::new(write),
            snapshot_id,
            companion: companion.map(Box::new),
        };
        Ok(run)
    }

    /// A view model: staged for later models, published as its SQL.
    async fn run_view(&self, session: &LakeSession, model: &Model) -> Result<ModelRun> {
        let frame = session.context().sql(&model.sql.text).await?;
        session.stage(
            &model.ident,
            Arc::new(ViewTable::new(
                frame.into_unoptimized_plan(),
                Some(model.sql.text.clone()),
            )),
        )?;
        let view = ViewWrite::new(model.ident.clone(), model.sql.text.clone())
            .with_owner(format!("pipeline {}", self.pipeline.name));
        Ok(ModelRun::of(Output::View(view)))
    }

    /// An incremental input shows only its fresh rows, to this model only.
    ///
    /// `input@since:model` scans only the input's files committed after the
    /// snapshot the output last read; the filter on this run's boundary keeps
    /// exactly the fresh rows (also of a rewritten file). With no fresh row the
    /// model is up to date, and later models read its output as published,
    /// not as the stubs planning staged.
    async fn fresh_input(
        &self,
        session: &LakeSession,
        model: &Model,
        existing: Option<&Table>,
    ) -> Result<FreshInput> {
        let Some(input) = &model.incremental_input else {
            return Ok(FreshInput::None);
        };
        let previous = boundary::previous(existing, input)?;
        let input_ident = icefjord_catalog::parse_table(input)?;
        let since = TableReference::partial(
            input_ident.namespace().join("."),
            boundary::since_name(input_ident.name(), &model.name),
        );
        let fresh = session
            .context()
            .table(since)
            .await?
            .filter(boundary::fresh_filter(&previous))?;
        let (next, rows_read) = boundary::advance(&previous, fresh.clone()).await?;
        // A first run always runs: it creates the (maybe empty) output.
        if next == previous && existing.is_some() {
            session.unstage(&model.ident)?;
            session.unstage(&boundary::companion(&model.ident))?;
            return Ok(FreshInput::UpToDate { rows_read });
        }
        session.stage(
            &input_ident,
            Arc::new(ViewTable::new(fresh.into_unoptimized_plan(), None)),
        )?;
        Ok(FreshInput::Advanced {
            next,
            previous,
            rows_read,
        })
    }

    /// The output's new content for `model`'s new rows `new_frame`
    /// (`frame_schema`), shaped as `schema`.
    async fn content(
        &self,
        session: &LakeSession,
        model: &Model,
        destination: &Destination,
        new_frame: DataFrame,
        frame_schema: &SchemaRef,
        schema: &SchemaRef,
    ) -> Result<Content> {
        let ctx = session.context();
        let is_empty = match destination {
            Destination::Iceberg { table, .. } => table.metadata().current_snapshot_id().is_none(),
            Destination::Delta(output) => output.version() == 0,
        };
        let content = |frame, mode| Content {
            frame,
            mode,
            new_rows: None,
            rows_read: 0,
            streamed_rows_read: None,
            deleted: None,
        };
        Ok(match (model.kind, destination) {
            // A published Iceberg output: merge into the files the new keys touch.
            (Kind::IncrementalByKey, Destination::Iceberg { table, published }) if !is_empty => {
                let merge = by_key::merge_into_files(
                    ctx,
                    model,
                    table,
                    published,
                    new_frame,
                    frame_schema,
                    schema,
                )
                .await?;
                Content {
                    deleted: Some(merge.touched_paths()),
                    new_rows: Some(merge.new_rows),
                    rows_read: merge.rows_read,
                    streamed_rows_read: Some(merge.touched_rows_read),
                    ..content(merge.content, StagedMode::Append)
                }
            }
            (Kind::Table, _) => content(new_frame, StagedMode::Overwrite),
            (Kind::Append, _) => content(new_frame, StagedMode::Append),
            (Kind::IncrementalByTime, _) => content(new_frame, StagedMode::ReplacePartitions),
            // Nothing published yet and the key unique by the query's own GROUP
            // BY: merging changes nothing, so the rows stream to files.
            (Kind::IncrementalByKey, _)
                if is_empty && merge::unique_by_plan(&new_frame, &model.unique_key) =>
            {
                content(new_frame, StagedMode::Overwrite)
            }
            // A first run, or a Delta output: the whole output is rewritten.
            (Kind::IncrementalByKey, _) => {
                // The new rows are read twice (their keys, then the rows): hold them.
                let (batches, rows_read) = collect_counted(new_frame).await?;
                let new_rows = batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
                let new = conformed(ctx.read_table(mem_table(frame_schema, &batches)?)?, schema)?;
                // Nothing published yet: no old rows to merge with.
                let old = match is_empty {
                    true => None,
                    false => Some(conformed(ctx.read_table(destination.published())?, schema)?),
                };
                let merged = merge::merge_by_key(model, old, new, schema).await?;
                Content {
                    new_rows: Some(new_rows),
                    rows_read,
                    ..content(conformed(merged, schema)?, StagedMode::Overwrite)
                }
            }
            (Kind::View, _) => {
                return Err(RunnerError::Usage(format!(
                    "{}: kind {} cannot be run here",
                    model.name, model.kind
                )))
            }
        })
    }

    /// incremental_by_time: the intervals `model`'s output has done (its
    /// position, found past other engines' snapshots and through snapshot
    /// expiry; lost or corrupt is an error, never "redo everything"), and those
    /// this run processes (`None`: not incremental by time; empty: up to date).
    fn intervals(
        &self,
        existing: Option<&Table>,
        model: &Model,
    ) -> Result<(interval::Ranges, Option<interval::Ranges>)> {
        let done: interval::Ranges = match (existing, &model.time) {
            (Some(table), Some(_)) => {
                find_position(table.metadata(), &model.name, MAIN_BRANCH, &IntervalsKey)?
                    .map(|found| found.value)
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        };
        let ranges = model.time.as_ref().map(|axis| match self.interval {
            Some((from, to)) => {
                let to = axis.grain.next(axis.grain.floor(to - 1));
                interval::missing(axis.grain, from, to, &Vec::new())
            }
            None => {
                let now = axis.grain.floor(Utc::now().timestamp_micros());
                interval::missing(axis.grain, axis.start, now, &done)
            }
        });
        Ok((done, ranges))
    }

    /// The model's new rows as one frame: its query (per interval range,
    /// unioned), or the transform's output of all the query's rows; sorted by
    /// `sort_by`. An incremental input staged for the model is unstaged here
    /// (the plan keeps the fresh rows' provider).
    async fn new_rows(
        &self,
        session: &LakeSession,
        model: &Model,
        ranges: Option<&interval::Ranges>,
    ) -> Result<DataFrame> {
        let ctx = session.context();
        let planned = match ranges {
            None => ctx.sql(&model.sql.text).await.map(|f| vec![f]),
            Some(ranges) => {
                let mut frames = Vec::new();
                for (from, to) in ranges {
                    let params = vec![
                        (
                            "interval_start",
                            ScalarValue::TimestampMicrosecond(Some(*from), None),
                        ),
                        (
                            "interval_end",
                            ScalarValue::TimestampMicrosecond(Some(*to), None),
                        ),
                    ];
                    frames.push(ctx.sql(&model.sql.text).await?.with_param_values(params)?);
                }
                Ok(frames)
            }
        };
        if let Some(input) = &model.incremental_input {
            session.unstage(&icefjord_catalog::parse_table(input)?)?;
        }
        // The plan holds the fresh rows' provider: it runs the same after unstaging.
        let frames = planned?;
        let order: Vec<SortExpr> = model
            .sort_by
            .iter()
            .map(|c| Expr::Column(Column::new_unqualified(c)).sort(true, false))
            .collect();
        // The new rows as one frame: the query (its interval ranges unioned), or
        // the transform's output of all the query's rows.
        let mut frames = frames.into_iter();
        let first = frames
            .next()
            .ok_or_else(|| RunnerError::Usage(format!("{}: nothing to run", model.name)))?;
        let mut new_frame = frames.try_fold(first, |all, frame| all.union(frame))?;
        if let Some(transform) = model.transform {
            // CPU work on all rows at once: off the runtime's threads.
            let input = new_frame.collect().await?;
            let output = tokio::task::spawn_blocking(move || transform.apply(&input))
                .await
                .map_err(|e| RunnerError::Transform {
                    transform: transform.name().into(),
                    message: e.to_string(),
                })??;
            new_frame = ctx.read_batch(output)?;
        }
        if !order.is_empty() {
            new_frame = new_frame.sort(order)?;
        }
        Ok(new_frame)
    }

    /// Stage `input@since:output` past the new boundary `advanced` for the run's
    /// later views and the companion table `<output>__boundary`, and return the
    /// companion's table write (files written unless a dry run).
    async fn stage_boundary(
        &self,
        session: &LakeSession,
        model: &Model,
        run_id: &str,
        input: &str,
        advanced: &boundary::Boundary,
    ) -> Result<TableWrite> {
        let ctx = session.context();
        // Later views of this run read `input@since:output` past the new boundary.
        let input_ident = icefjord_catalog::parse_table(input)?;
        let since = iceberg::TableIdent::new(
            input_ident.namespace().clone(),
            boundary::since_name(input_ident.name(), &model.name),
        );
        let unread = ctx
            .table(input)
            .await?
            .filter(boundary::fresh_filter(advanced))?;
        session.stage(
            &since,
            Arc::new(ViewTable::new(unread.into_unoptimized_plan(), None)),
        )?;
        let ident = boundary::companion(&model.ident);
        let rows = boundary::rows(advanced)?;
        let staged = MemTable::try_new(boundary::schema(), vec![vec![rows.clone()]])?;
        session.stage(&ident, Arc::new(staged))?;
        let mut files = Vec::new();
        let mut new_table = None;
        if !self.dry_run {
            let (table, new) = self.output_table(&ident, &[], &boundary::schema()).await?;
            let mut writer = TableWriter::new(&table).await?;
            writer.write(rows).await?;
            files = writer.close().await?.0;
            new_table = new.then_some(table);
        }
        let mut write = TableWrite::overwrite(ident, files)
            .with_property(keys::WRITER, keys::writer::RUN)
            .with_property(keys::MODEL, model.name.clone())
            .with_property(keys::RUN_ID, run_id.to_string());
        if let Some(table) = new_table {
            write = write.creating(table);
        }
        Ok(write)
    }

    /// Where the output goes: the table loaded before the run read its boundary
    /// and intervals (or a new one) and its published content, or the Delta
    /// table (whose schema then replaces `schema`).
    async fn destination(
        &self,
        model: &Model,
        existing: Option<&Table>,
        schema: &mut SchemaRef,
    ) -> Result<Destination> {
        Ok(match model.target {
            Target::Iceberg => {
                let table = match existing {
                    Some(table) => table.clone(),
                    None if self.catalog.delta_table(&model.ident).await?.is_some() => {
                        return Err(model
                            .error(
                                Some("target"),
                                format!(
                                    "{} is a Delta table of the lake: set target = \"delta\" \
                                     or give the Iceberg output a name of its own",
                                    model.name
                                ),
                            )
                            .into())
                    }
                    None => {
                        self.output_table(&model.ident, &model.partition_by, schema)
                            .await?
                            .0
                    }
                };
                let published =
                    IcebergTable::try_new(table.clone(), None, self.catalog.store().clone())?;
                Destination::Iceberg { table, published }
            }
            Target::Delta => {
                let output = self.delta_output(model, schema).await?;
                *schema = output.schema();
                Destination::Delta(output)
            }
        })
    }

    /// Stream `content` into the destination's files (or, in a dry run, hold it)
    /// and stage what the commit will publish, so later models read it.
    #[allow(clippy::too_many_arguments)]
    async fn write_content(
        &self,
        session: &LakeSession,
        model: &Model,
        destination: &Destination,
        content: DataFrame,
        mode: StagedMode,
        deleted: Option<&HashSet<String>>,
        frame_schema: &SchemaRef,
        schema: &SchemaRef,
        ranges: Option<&interval::Ranges>,
    ) -> Result<Written> {
        let ctx = session.context();
        // What is published, less the files this run replaces.
        let published: Arc<dyn TableProvider> = match (destination, deleted) {
            (Destination::Iceberg { published, .. }, Some(deleted)) => Arc::new(
                published
                    .clone()
                    .with_staged_overwriting_files(Vec::new(), deleted.clone()),
            ),
            _ => destination.published(),
        };
        let mut files = Vec::new();
        let mut delta_files = Vec::new();
        let mut replaced = Vec::new();
        if self.dry_run {
            let (batches, rows_read) = collect_counted(content).await?;
            let written = mem_table(frame_schema, &batches)?;
            let rows = conformed(ctx.read_table(written.clone())?, schema)?;
            let old = conformed(ctx.read_table(published.clone())?, schema)?;
            let all = match mode {
                StagedMode::Overwrite => rows,
                StagedMode::Append => old.union(rows)?,
                StagedMode::ReplacePartitions => {
                    old.filter(!replaced_ranges(model, ranges))?.union(rows)?
                }
            };
            return Ok(Written {
                staged: Arc::new(ViewTable::new(all.into_unoptimized_plan(), None)),
                only_new: written,
                rows: batches.iter().map(|b| b.num_rows() as u64).sum(),
                rows_read,
                bytes: 0,
                files,
                delta_files,
                replaced,
            });
        }
        let plan = content.create_physical_plan().await?;
        let mut stream = execute_stream(plan.clone(), ctx.task_ctx())?;
        let metrics;
        let (staged, only_new): (Arc<dyn TableProvider>, Arc<dyn TableProvider>) = match destination
        {
            Destination::Iceberg { table, published } => {
                let mut writer = TableWriter::new(table).await?;
                while let Some(batch) = stream.next().await {
                    writer.write(batch?).await?;
                }
                (files, metrics) = writer.close().await?;
                let only_new = published
                    .clone()
                    .with_staged(files.clone(), StagedMode::Overwrite);
                let staged = match (&model.time, ranges, deleted) {
                    // The processed ranges' partitions are replaced whole,
                    // also where the query no longer produces rows.
                    (Some(axis), Some(ranges), _) => {
                        replaced = interval::partitions_in(table, axis, ranges).await?;
                        published
                            .clone()
                            .with_staged_replacing(files.clone(), replaced.clone())
                    }
                    (_, _, Some(deleted)) => published
                        .clone()
                        .with_staged_overwriting_files(files.clone(), deleted.clone()),
                    _ => published.clone().with_staged(files.clone(), mode),
                };
                (Arc::new(staged), Arc::new(only_new))
            }
            Destination::Delta(output) => {
                let mut writer = output.writer()?;
                while let Some(batch) = stream.next().await {
                    writer.write(batch?).await?;
                }
                (delta_files, metrics) = writer.close().await?;
                (
                    Arc::new(output.scan(Some((delta_files.clone(), mode)))),
                    Arc::new(output.scan(Some((delta_files.clone(), StagedMode::Overwrite)))),
                )
            }
        };
        Ok(Written {
            staged,
            only_new,
            rows: metrics.rows,
            rows_read: scanned_rows(&plan),
            bytes: metrics.bytes,
            files,
            delta_files,
            replaced,
        })
    }
}

/// What [`Runner::write_content`] wrote and staged.
struct Written {
    /// The output as the commit will publish it.
    staged: Arc<dyn TableProvider>,
    /// Only the rows this run wrote.
    only_new: Arc<dyn TableProvider>,
    rows: u64,
    /// Rows the content's plan read from data files.
    rows_read: u64,
    bytes: u64,
    files: Vec<iceberg::spec::DataFile>,
    delta_files: Vec<DeltaAdd>,
    replaced: Vec<iceberg::spec::Struct>,
}
