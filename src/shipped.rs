//! The pipelines shipped in `jobs/`, compiled in so that `icefjord demo` runs from
//! any directory. `jobs/` stays the source: a test checks that every file of a
//! shipped folder is here.

use std::path::{Path, PathBuf};

/// A shipped pipeline folder.
pub struct Shipped {
    pub name: &'static str,
    pub files: &'static [(&'static str, &'static str)],
}

macro_rules! shipped {
    ($name:literal: $($file:literal),* $(,)?) => {
        Shipped {
            name: $name,
            files: &[$(($file, include_str!(concat!("../jobs/", $name, "/", $file)))),*],
        }
    };
}

pub const RETAIL: Shipped = shipped!("retail":
    "pipeline.toml",
    "sales_hourly.sql",
    "realtime_sales_hourly.sql",
    "sales_hourly_layers.sql",
    "sales_hourly_unified.sql",
    "sales_by_category.sql",
    "sales_by_store.sql",
    "hourly_sales_trend.sql",
    "product_performance.sql",
    "retail_events.sql",
);

pub const CLICKSTREAM: Shipped = shipped!("clickstream":
    "pipeline.toml",
    "sessions.sql",
    "fraud_alerts.sql",
    "funnel_daily.sql",
    "product_stats.sql",
);

pub const ACTIVITY: Shipped = shipped!("activity":
    "pipeline.toml",
    "active_users.sql",
    "user_purchases.sql",
);

/// Every shipped pipeline.
#[cfg(test)]
const ALL: &[&Shipped] = &[&RETAIL, &CLICKSTREAM, &ACTIVITY];

impl Shipped {
    /// Write the folder under `dir` and return its path.
    pub fn materialize(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let folder = dir.join(self.name);
        std::fs::create_dir_all(&folder)?;
        for (name, text) in self.files {
            std::fs::write(folder.join(name), text)?;
        }
        Ok(folder)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_a_shipped_folder_is_compiled_in() {
        for shipped in ALL {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("jobs")
                .join(shipped.name);
            let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sql") || n.ends_with(".toml"))
                .collect();
            on_disk.sort();
            let mut embedded: Vec<String> =
                shipped.files.iter().map(|(n, _)| n.to_string()).collect();
            embedded.sort();
            assert_eq!(
                on_disk, embedded,
                "jobs/{} and src/shipped.rs differ",
                shipped.name
            );
        }
    }
}
