//! Rust transforms: models whose output is computed in Rust from the rows of their
//! SQL (the SQL says what to read, the transform what to make of it). All are
//! registered here, in [`REGISTRY`], the one place `transform = "name"` in a
//! pipeline is resolved.
//!
//! A transform sees all input rows of a run at once and returns all output rows;
//! it must be deterministic (same rows in any order → same output), so a run can
//! be repeated.

mod columns;
pub mod fraud;
pub mod sessionize;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::error::Result;

/// Input record batches → output record batches.
pub trait Transform: Send + Sync {
    fn name(&self) -> &'static str;
    /// One line for `icefjord list` and errors.
    fn description(&self) -> &'static str;
    /// The columns the input must have (name, what is expected).
    fn input_columns(&self) -> &'static [(&'static str, &'static str)];
    fn output_schema(&self) -> SchemaRef;
    fn apply(&self, input: &[RecordBatch]) -> Result<RecordBatch>;
}

impl std::fmt::Debug for dyn Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "transform {}", self.name())
    }
}

/// Every transform, by name.
pub static REGISTRY: &[&dyn Transform] = &[&sessionize::Sessionize, &fraud::FraudRules];

/// The transform called `name`.
pub fn lookup(name: &str) -> Option<&'static dyn Transform> {
    REGISTRY.iter().copied().find(|t| t.name() == name)
}

/// The registered names, for error messages.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|t| t.name()).collect()
}
