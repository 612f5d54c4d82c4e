//! Real services for tests, started on free loopback ports and stopped on drop.
//! A service that cannot start makes the test fail with a message saying why;
//! nothing is skipped.
//!
//! ```no_run
//! let pg = icefjord_test_harness::Postgres::start();
//! let url = pg.create_database("lake_test");
//! ```

pub mod port;
pub mod postgres;

pub use postgres::Postgres;
