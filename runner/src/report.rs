//! What a run did, as printed by `icefjord run --output json` and kept in
//! `icefjord.runs`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::spec::Kind;

/// The outcome of a whole run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every model ran and passed its audits; all outputs were published together.
    Success,
    /// A model failed or an audit did not pass: nothing was published.
    Failed,
    /// A run with this id was already published: nothing was done.
    AlreadyDone,
    /// `--dry-run`: every model ran and was audited; nothing was written.
    DryRun,
}

/// The outcome of one model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelStatus {
    Published,
    /// Ran and passed its audits, but the run published nothing (dry run, or
    /// another model failed).
    NotPublished,
    Failed,
    AuditFailed,
    /// Not run: a model before it failed.
    Skipped,
    /// Audits of the published output passed (`icefjord test`).
    Passed,
    /// An incremental model with nothing new: its output was left as published.
    UpToDate,
}

impl ModelStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Published => "published",
            Self::NotPublished => "not_published",
            Self::Failed => "failed",
            Self::AuditFailed => "audit_failed",
            Self::Skipped => "skipped",
            Self::Passed => "passed",
            Self::UpToDate => "up_to_date",
        }
    }
}

/// One audit's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    pub audit: String,
    pub passed: bool,
    /// Rows (or keys, for `unique`) that break the audit.
    pub failing: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelReport {
    pub model: String,
    pub kind: Kind,
    pub status: ModelStatus,
    /// Rows the model produced this run (an incremental merge: its new rows).
    pub rows: Option<u64>,
    /// Data files written.
    pub files: Option<usize>,
    /// Rows the model's plans read from data files (inputs and, for a merge,
    /// the output's rewritten files).
    pub rows_read: Option<u64>,
    /// Published data files of the output the run replaced (Iceberg's
    /// `deleted-data-files`).
    pub files_deleted: Option<usize>,
    /// Bytes of the data files written.
    pub bytes_written: Option<u64>,
    /// The snapshot of the output that the run published (for a Delta output:
    /// the Delta version).
    pub snapshot_id: Option<i64>,
    pub audits: Vec<AuditReport>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub error: Option<String>,
}

impl ModelReport {
    /// A model's report as it starts: no rows, files, audits or error yet.
    pub fn new(model: &str, kind: Kind, status: ModelStatus, started_at: DateTime<Utc>) -> Self {
        Self {
            model: model.to_string(),
            kind,
            status,
            rows: None,
            files: None,
            rows_read: None,
            files_deleted: None,
            bytes_written: None,
            snapshot_id: None,
            audits: vec![],
            started_at,
            finished_at: started_at,
            error: None,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub pipeline: String,
    pub status: RunStatus,
    /// The commit that published the run (`run:<pipeline>:<run id>`).
    pub commit_id: Option<String>,
    pub started_at: DateTime<Utc>,
    pub duration_s: f64,
    pub models: Vec<ModelReport>,
}

impl RunReport {
    /// A run of `pipeline` starting now: successful until a model says otherwise.
    pub fn start(pipeline: &str, run_id: String, started_at: DateTime<Utc>) -> Self {
        Self {
            run_id,
            pipeline: pipeline.to_string(),
            status: RunStatus::Success,
            commit_id: None,
            started_at,
            duration_s: 0.0,
            models: Vec::new(),
        }
    }

    pub fn failed(&self) -> bool {
        self.status == RunStatus::Failed
    }
}
