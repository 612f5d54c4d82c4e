//! Step 4 of a run: one commit for every output, view and history row (and a
//! failed run's history rows, committed on their own).

use super::*;

impl<'a> Runner<'a> {
    /// Step 4: one commit for every output, view and history row.
    ///
    /// Delta outputs cannot join the catalog transaction: each is committed first
    /// as one Delta version tagged with the commit id (a retry finds it instead of
    /// writing it again), and the catalog commit then pins that version
    /// (`icefjord_catalog::delta`). Their history rows carry the Delta version as
    /// `snapshot_id`.
    pub(super) async fn publish(
        &self,
        commit_id: &CommitId,
        outputs: Vec<(usize, Output)>,
        report: &mut RunReport,
    ) -> Result<()> {
        let mut pinned = Vec::new();
        for (_, output) in &outputs {
            if let Output::Delta {
                ident,
                output,
                files,
                mode,
            } = output
            {
                let version = output
                    .commit(files.clone(), *mode, commit_id.as_str())
                    .await?;
                let name = icefjord_catalog::display(ident);
                if let Some(entry) = report.models.iter_mut().find(|m| m.model == name) {
                    entry.snapshot_id = Some(version as i64);
                }
                pinned.push(DeltaPointer::new(ident.clone(), output.location(), version));
            }
        }
        let runs = history::ensure_runs_table(self.catalog).await?;
        let mut writer = TableWriter::new(&runs).await?;
        writer.write(history::rows(report, commit_id)?).await?;
        let (files, _) = writer.close().await?;
        let mut commit = self.catalog.commit(commit_id.clone()).with_write(
            TableWrite::append(history::runs_table(), files)
                .with_property(keys::WRITER, keys::writer::RUN)
                .with_property(keys::PIPELINE, self.pipeline.name.clone())
                .with_property(keys::RUN_ID, report.run_id.clone()),
        );
        for pointer in pinned {
            let namespace = pointer.ident.namespace().join(".");
            self.catalog.ensure_namespace(&namespace).await?;
            commit = commit.with_delta(pointer);
        }
        for (_, output) in outputs {
            commit = match output {
                Output::UpToDate | Output::Delta { .. } => commit,
                Output::View(view) => {
                    let namespace = view.ident.namespace().join(".");
                    self.catalog.ensure_namespace(&namespace).await?;
                    commit.with_view(view)
                }
                Output::Table {
                    write, companion, ..
                } => match companion {
                    Some(companion) => commit.with_write(*write).with_write(*companion),
                    None => commit.with_write(*write),
                },
            };
        }
        commit.execute().await?;
        Ok(())
    }

    /// A failed run's history rows, committed on their own.
    pub(super) async fn record_failure(&self, report: &RunReport) -> Result<()> {
        let runs = history::ensure_runs_table(self.catalog).await?;
        let commit_id = CommitId::new(format!(
            "run:{}:{}:failed:{}",
            report.pipeline,
            report.run_id,
            uuid::Uuid::now_v7()
        ));
        let mut writer = TableWriter::new(&runs).await?;
        writer.write(history::rows(report, &commit_id)?).await?;
        let (files, _) = writer.close().await?;
        self.catalog
            .commit(commit_id)
            .with_write(
                TableWrite::append(history::runs_table(), files)
                    .with_property(keys::WRITER, keys::writer::RUN)
                    .with_property(keys::PIPELINE, report.pipeline.clone()),
            )
            .execute()
            .await?;
        Ok(())
    }
}
