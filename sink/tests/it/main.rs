//! The sink's integration tests: one binary, a module per subject.

#![allow(clippy::unwrap_used)]

mod fence;
mod transactions;
