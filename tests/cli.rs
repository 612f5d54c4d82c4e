//! End-to-end tests of the `icefjord` binary on real lakes in temporary directories.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

fn icefjord(lake: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_icefjord"))
        .arg("--lake")
        .arg(lake)
        .args(args)
        .env_remove("ICEFJORD_WAREHOUSE")
        .env_remove("ICEFJORD_CATALOG")
        .output()
        .expect("the icefjord binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(lake: &Path, sql: &str) -> serde_json::Value {
    let out = icefjord(lake, &["sql", "-o", "json", sql]);
    assert!(out.status.success(), "{sql}: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("--output json prints one JSON document")
}

/// Exit code, and that the error is one line naming `needle`, without a panic.
fn assert_clean_error(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn demo_builds_the_lake_and_a_rerun_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let out = icefjord(&lake, &["demo", "--events", "5000", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let rows = printed.as_array().unwrap();
    assert!(rows.len() >= 5, "one row per category: {printed}");

    let counts = json(
        &lake,
        "SELECT count(*) AS n, count(DISTINCT event_time) AS t FROM raw.retail_events",
    );
    assert_eq!(counts[0]["n"], 5000);
    let first_snapshot = json(&lake, "SELECT 1 AS one");
    assert_eq!(first_snapshot[0]["one"], 1);

    // The printed table equals the definition recomputed over the raw table.
    let expected = json(
        &lake,
        "SELECT category, SUM(CASE WHEN transaction_type = 'SALE' THEN quantity ELSE 0 END) AS sales_units,
                COUNT(*) AS event_count
         FROM raw.retail_events GROUP BY category ORDER BY category",
    );
    let actual = json(
        &lake,
        "SELECT c.category, c.sales_units, SUM(h.event_count) AS event_count
         FROM unified.sales_by_category c JOIN unified.sales_hourly h ON c.category = h.category
         GROUP BY c.category, c.sales_units ORDER BY c.category",
    );
    assert_eq!(expected, actual);

    let tables_before = stdout(&icefjord(&lake, &["tables", "-o", "csv"]));
    let again = icefjord(&lake, &["demo", "--events", "5000", "-o", "csv"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("0 new events"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        stdout(&icefjord(&lake, &["tables", "-o", "csv"])),
        tables_before
    );
    assert_eq!(
        json(&lake, "SELECT count(*) AS n FROM raw.retail_events")[0]["n"],
        5000
    );

    // Asking for more events appends only the missing ones.
    let more = icefjord(&lake, &["demo", "--events", "7000", "-o", "csv"]);
    assert!(more.status.success(), "{}", stderr(&more));
    let n = json(&lake, "SELECT count(*) AS n, count(DISTINCT (event_time, store_id, product_id)) AS d FROM raw.retail_events");
    assert_eq!(n[0]["n"], 7000);
    let total = json(
        &lake,
        "SELECT SUM(event_count) AS n FROM historical.sales_hourly",
    );
    assert_eq!(
        total[0]["n"], 7000,
        "the second run folded in the 2000 new events"
    );
}

#[test]
fn tables_lists_snapshots_and_row_counts() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    assert!(icefjord(&lake, &["demo", "--events", "1000", "-o", "csv"])
        .status
        .success());
    let out = icefjord(&lake, &["tables", "-o", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let raw = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["namespace"] == "raw" && t["table"] == "retail_events")
        .expect("raw.retail_events is listed");
    assert_eq!(raw["row_count"], 1000);
    assert!(raw["snapshot_id"].as_i64().is_some());
}

#[test]
fn unknown_tables_and_bad_sql_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    assert_clean_error(
        &icefjord(&lake, &["sql", "SELECT * FROM raw.nope"]),
        1,
        "raw.nope",
    );
    assert_clean_error(&icefjord(&lake, &["sql", "SELEC 1"]), 1, "SELEC");
    assert_clean_error(
        &icefjord(&lake, &["sql", "CREATE TABLE raw.t AS SELECT 1"]),
        1,
        "DDL not supported",
    );
}

#[test]
fn an_unwritable_lake_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let lake = blocker.join("lake");
    let out = icefjord(&lake, &["sql", "SELECT 1"]);
    assert_clean_error(&out, 2, &blocker.display().to_string());
}

#[test]
fn a_corrupt_catalog_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    std::fs::create_dir_all(&lake).unwrap();
    std::fs::write(lake.join("catalog.db"), vec![0x5a; 8192]).unwrap();
    let out = icefjord(&lake, &["tables"]);
    assert_clean_error(&out, 1, "catalog.db");
    assert!(stderr(&out).contains("not a database"), "{}", stderr(&out));
}

#[test]
fn config_show_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("icefjord.toml");
    std::fs::write(
        &config,
        "warehouse = \"s3://lake/prod\"\ncatalog = \"postgres://icefjord:hunter2@db:5432/lake\"\n\
         [s3]\nendpoint = \"http://127.0.0.1:9000\"\naccess_key_id = \"AKIAEXAMPLE\"\nsecret_access_key = \"s3cr3t\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_icefjord"))
        .args(["--config", config.to_str().unwrap(), "config"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains("s3://lake/prod") && text.contains("db:5432"),
        "{text}"
    );
    for secret in ["hunter2", "s3cr3t", "AKIAEXAMPLE"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

#[test]
fn the_demo_runs_on_a_postgresql_catalog() {
    let pg = icefjord_test_harness::Postgres::start();
    let url = pg.create_database("cli_lake");
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_icefjord"))
            .arg("--warehouse")
            .arg(dir.path().join("warehouse"))
            .arg("--catalog")
            .arg(&url)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["demo", "--events", "3000", "-o", "csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&[
        "sql",
        "-o",
        "json",
        "SELECT count(*) AS n FROM raw.retail_events",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()[0]["n"],
        3000
    );
    // Errors show the catalog without its password.
    drop(pg);
    let out = run(&["tables"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "unavailable service: {}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("icefjord-test"),
        "password leaked: {}",
        stderr(&out)
    );
}

#[test]
fn ingest_refuses_to_let_settings_break_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = icefjord(
        &dir.path().join("lake"),
        &[
            "ingest",
            "--brokers",
            "127.0.0.1:1",
            "--topic",
            "t",
            "--table",
            "raw.t",
            "--schema",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/data/schemas/retail_event.json"
            ),
            "--group",
            "g",
            "--consumer-property",
            "enable.auto.commit=true",
        ],
    );
    assert_clean_error(&out, 2, "enable.auto.commit");
}

#[test]
fn ingest_without_a_route_or_a_broker_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    // Run where no icefjord.toml is, so only flags count.
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_icefjord"))
            .current_dir(dir.path())
            .arg("--lake")
            .arg(&lake)
            .args(args)
            .env_remove("ICEFJORD_KAFKA_BROKERS")
            .env_remove("ICEFJORD_KAFKA_PASSWORD")
            .output()
            .unwrap()
    };
    let out = run(&["ingest", "--brokers", "127.0.0.1:1"]);
    assert_clean_error(&out, 2, "[[ingest.routes]]");
    let with_schema = |brokers: &[&str], schema: &str| {
        let mut args = vec!["ingest"];
        args.extend_from_slice(brokers);
        args.extend([
            "--topic", "t", "--table", "raw.t", "--group", "g", "--schema",
        ]);
        args.push(schema);
        run(&args)
    };
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/schemas/retail_event.json"
    );
    assert_clean_error(&with_schema(&[], shipped), 2, "ICEFJORD_KAFKA_BROKERS");
    let broker = ["--brokers", "127.0.0.1:1"];
    let out = with_schema(&broker, "/nonexistent/schema.json");
    assert_clean_error(&out, 2, "/nonexistent/schema.json");
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"name": "x", "fields": [{"name": "a", "type": "uuidish"}]}"#,
    )
    .unwrap();
    let out = with_schema(&broker, bad.to_str().unwrap());
    assert_clean_error(&out, 2, "uuidish");
    // Security settings are checked before any connection: a SASL user without a
    // password in the environment, an unreadable CA file.
    let sasl = [
        "--brokers",
        "127.0.0.1:1",
        "--sasl-mechanism",
        "SCRAM-SHA-512",
        "--sasl-username",
        "icefjord",
    ];
    let out = with_schema(&sasl, shipped);
    assert_clean_error(&out, 2, "ICEFJORD_KAFKA_PASSWORD");
    let tls = [
        "--brokers",
        "127.0.0.1:1",
        "--tls-ca",
        "/nonexistent/ca.pem",
    ];
    assert_clean_error(&with_schema(&tls, shipped), 2, "/nonexistent/ca.pem");
}

/// A small pipeline over the demo's raw.retail_events.
fn write_job(dir: &Path, min_rows: u64) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("pipeline.toml"),
        format!(
            "name = \"units\"\n\n[[models]]\nname = \"historical.units_by_category\"\nkind = \"table\"\n\n\
             [[models.audits]]\ncheck = \"not_null\"\ncolumns = [\"category\"]\n\n\
             [[models.audits]]\ncheck = \"row_count_min\"\nmin = {min_rows}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("units_by_category.sql"),
        "SELECT category, sum(quantity) AS units\nFROM raw.retail_events\nGROUP BY category",
    )
    .unwrap();
    std::fs::write(
        dir.join("top.sql"),
        "-- name = \"unified.top_category\"\n-- kind = \"view\"\n\
         SELECT category FROM historical.units_by_category ORDER BY units DESC LIMIT 1",
    )
    .unwrap();
}

#[test]
fn run_plan_list_and_test_a_pipeline_with_stable_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    assert!(icefjord(&lake, &["demo", "--events", "3000"])
        .status
        .success());
    let job = dir.path().join("jobs").join("units");
    write_job(&job, 1);
    let job_arg = job.to_str().unwrap();

    let out = icefjord(&lake, &["plan", job_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = stdout(&out);
    let first = plan.find("historical.units_by_category").unwrap();
    let second = plan.find("unified.top_category").unwrap();
    assert!(first < second, "run order: {plan}");

    let out = icefjord(
        &lake,
        &[
            "list",
            dir.path().join("jobs").to_str().unwrap(),
            "-o",
            "csv",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).lines().count(),
        3,
        "header + two models: {}",
        stdout(&out)
    );

    let out = icefjord(&lake, &["run", job_arg, "--run-id", "r1", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(report["commit_id"], "run:units:r1");
    // The view answers like the same query over the raw table.
    let top = json(&lake, "SELECT category FROM unified.top_category");
    let direct = json(
        &lake,
        "SELECT category FROM raw.retail_events GROUP BY category ORDER BY sum(quantity) DESC LIMIT 1",
    );
    assert_eq!(top, direct);
    let runs = json(
        &lake,
        "SELECT count(*) AS n FROM icefjord.runs WHERE run_id = 'r1'",
    );
    assert_eq!(runs[0]["n"], 2);

    let out = icefjord(&lake, &["run", job_arg, "--run-id", "r1", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let again: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(again["status"], "already_done");

    let out = icefjord(&lake, &["test", job_arg]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A failing audit: exit 1, the report still on stdout, nothing published.
    let before = json(
        &lake,
        "SELECT count(*) AS n FROM icefjord.runs WHERE status = 'published'",
    );
    write_job(&job, 1_000_000);
    let out = icefjord(&lake, &["run", job_arg, "-o", "json"]);
    assert_clean_error(&out, 1, "row_count_min(1000000)");
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["status"], "failed");
    assert_eq!(
        json(
            &lake,
            "SELECT count(*) AS n FROM icefjord.runs WHERE status = 'published'"
        ),
        before
    );
    let out = icefjord(&lake, &["test", job_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    // A bad spec: exit 2, naming file and line.
    std::fs::write(
        job.join("pipeline.toml"),
        "name = \"units\"\n\n[[models]]\nname = \"historical.units_by_category\"\nkind = \"tabel\"\n",
    )
    .unwrap();
    let out = icefjord(&lake, &["run", job_arg]);
    assert_clean_error(&out, 2, "pipeline.toml:5");
    let out = icefjord(&lake, &["run", dir.path().join("nope").to_str().unwrap()]);
    assert_clean_error(&out, 2, "pipeline.toml");
}

#[test]
fn generate_fills_a_raw_table_in_the_sinks_layout_and_tops_it_up() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let out = icefjord(
        &lake,
        &["generate", "--kind", "activity", "--events", "1000"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["table"], "raw.user_activity");
    assert_eq!(report["events_written"], 1000);
    let out = icefjord(
        &lake,
        &["generate", "--kind", "activity", "--events", "1500"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let counts = json(
        &lake,
        "SELECT count(*) AS n, count(DISTINCT (_kafka_partition, _kafka_offset)) AS positions,
                count(DISTINCT user_id) > 100 AS many_users
         FROM raw.user_activity",
    );
    assert_eq!(counts[0]["n"], 1500);
    assert_eq!(counts[0]["positions"], 1500);
    assert_eq!(counts[0]["many_users"], true);
}

/// Issue 11 E: `sum` over BIGINT wrapped around (printed -9223372036854775808).
/// Every way DataFusion sums (one group, GROUP BY, windows, DISTINCT, decimals)
/// and integer `+ - *` (which wrapped too) fail with an error naming the overflow.
#[test]
fn integer_sums_that_overflow_are_errors_not_wrapped_values() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let max =
        "(VALUES (1, CAST(9223372036854775807 AS BIGINT)), (1, CAST(1 AS BIGINT))) AS t(k, v)";
    let overflowing = [
        "SELECT sum(v) FROM (VALUES (CAST(9223372036854775807 AS BIGINT)), (CAST(1 AS BIGINT))) AS t(v)".to_string(),
        format!("SELECT k, sum(v) FROM {max} GROUP BY k"),
        format!("SELECT sum(DISTINCT v) FROM {max}"),
        format!("SELECT sum(v) OVER (ORDER BY v ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM {max}"),
        format!("SELECT sum(v) OVER (PARTITION BY k) FROM {max}"),
        "SELECT sum(d) FROM (VALUES (CAST('99999999999999999999999999999999999999' AS DECIMAL(38, 0))), \
         (CAST('1' AS DECIMAL(38, 0)))) AS t(d)"
            .to_string(),
        format!("SELECT v + 1 FROM {max}"),
        format!("SELECT v * 2 FROM {max}"),
        format!("SELECT -v - 2 FROM {max}"),
        format!("SELECT k FROM {max} WHERE v + k > 0"),
        "SELECT CAST(2147483647 AS INT) + CAST(1 AS INT)".to_string(),
        // Negation and decimal arithmetic that leaves its precision (found by
        // review: both printed a wrapped or truncated value).
        "SELECT -v FROM (VALUES (CAST(-9223372036854775808 AS BIGINT))) AS t(v)".to_string(),
        "SELECT a + b FROM (VALUES (CAST('99999999999999999999999999999999999999' AS DECIMAL(38, 0)), \
         CAST('1' AS DECIMAL(38, 0)))) AS t(a, b)"
            .to_string(),
    ];
    for sql in &overflowing {
        let out = icefjord(&lake, &["sql", sql]);
        assert_clean_error(&out, 1, "overflow");
    }
    // Sums in range stay exact; avg of BIGINT is a double, as in DataFusion.
    let fine = json(
        &lake,
        "SELECT sum(v) AS s, avg(v) > 4e18 AS a, max(v - 1) AS m FROM \
         (VALUES (CAST(9223372036854775807 AS BIGINT)), (CAST(-1 AS BIGINT))) AS t(v)",
    );
    assert_eq!(fine[0]["s"], 9_223_372_036_854_775_806_i64);
    assert_eq!(fine[0]["a"], true);
    assert_eq!(fine[0]["m"], 9_223_372_036_854_775_806_i64);
    // Column names stay the operator's.
    let named = json(&lake, "SELECT k + 1 FROM (VALUES (1)) AS t(k)");
    assert_eq!(named[0]["t.k + Int64(1)"], 2);
    let named = json(
        &lake,
        "SELECT -k, d + d FROM (VALUES (1, CAST(1.25 AS DECIMAL(5, 2)))) AS t(k, d)",
    );
    assert_eq!(named[0]["(- t.k)"], -1);
    assert_eq!(named[0]["t.d + t.d"].as_f64(), Some(2.5));
}

/// `generate --kind retail` into a fresh lake with extra flags; the report.
fn generate_retail(lake: &Path, events: u64, flags: &[&str]) -> Output {
    let events = events.to_string();
    let mut args = vec![
        "generate", "--kind", "retail", "--seed", "3", "--events", &events,
    ];
    args.extend_from_slice(flags);
    icefjord(lake, &args)
}

#[test]
fn generate_events_per_day_and_start_fill_each_day_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let flags = ["--events-per-day", "1000", "--start", "2024-02-28"];
    let out = generate_retail(&lake, 3_000, &flags);
    assert!(out.status.success(), "{}", stderr(&out));
    let days = json(
        &lake,
        "SELECT CAST(date_trunc('day', event_time) AS VARCHAR) AS day, count(*) AS n
         FROM raw.retail_events GROUP BY 1 ORDER BY 1",
    );
    // A leap year: 28 and 29 February, then 1 March, 1 000 events each.
    let days: Vec<(String, u64)> = days
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["day"].as_str().unwrap().to_string(),
                r["n"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected = ["2024-02-28", "2024-02-29", "2024-03-01"];
    assert_eq!(days.len(), 3, "{days:?}");
    for ((day, n), want) in days.iter().zip(expected) {
        assert!(day.starts_with(want), "{days:?}");
        assert_eq!(*n, 1_000, "{days:?}");
    }
}

#[test]
fn generate_skew_makes_a_few_products_and_stores_hot() {
    let dir = tempfile::tempdir().unwrap();
    let (uniform, skewed) = (dir.path().join("uniform"), dir.path().join("skewed"));
    let out = generate_retail(&uniform, 20_000, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = generate_retail(&skewed, 20_000, &["--skew", "1.2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let top_share = |lake: &Path, key: &str| {
        let sql = format!(
            "SELECT CAST(max(n) AS DOUBLE) / sum(n) AS share, count(*) AS keys
             FROM (SELECT {key}, count(*) AS n FROM raw.retail_events GROUP BY {key})"
        );
        let row = &json(lake, &sql)[0];
        (
            row["share"].as_f64().unwrap(),
            row["keys"].as_u64().unwrap(),
        )
    };
    // Zipf with exponent 1.2: the hottest of n keys has share 1 / Σ k^-1.2.
    let zipf_top = |n: i32| 1.0 / (1..=n).map(|k| f64::from(k).powf(-1.2)).sum::<f64>();
    for (key, n) in [("product_id", 25), ("store_id", 20)] {
        let (share, keys) = top_share(&uniform, key);
        assert_eq!(keys, n as u64);
        assert!(share < 1.5 / f64::from(n), "uniform {key}: {share}");
        let (share, keys) = top_share(&skewed, key);
        assert_eq!(keys, n as u64, "every {key} still sells");
        assert!((share - zipf_top(n)).abs() < 0.015, "skewed {key}: {share}");
    }
}

#[test]
fn generate_late_events_land_in_the_history_before_them() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    // One event a second from 2024-01-01: event i (= offset·3 + partition) is on
    // time in second i; a late one lies in an earlier second, never before day 1.
    let flags = [
        "--events-per-day",
        "86400",
        "--start",
        "2024-01-01",
        "--late",
        "0.2",
    ];
    let out = generate_retail(&lake, 20_000, &flags);
    assert!(out.status.success(), "{}", stderr(&out));
    let row = &json(
        &lake,
        "SELECT avg(CASE WHEN to_unixtime(event_time) < 1704067200 + position THEN 1.0 ELSE 0.0 END)
                  AS late,
                sum(CASE WHEN to_unixtime(event_time) > 1704067200 + position THEN 1 ELSE 0 END)
                  AS early,
                min(event_time) >= TIMESTAMP '2024-01-01 00:00:00' AS in_range
         FROM (SELECT *, _kafka_offset * 3 + _kafka_partition AS position
               FROM raw.retail_events)",
    )[0];
    let late = row["late"].as_f64().unwrap();
    assert!((late - 0.2).abs() < 0.015, "{row}");
    assert_eq!(row["early"], 0, "{row}");
    assert_eq!(row["in_range"], true, "{row}");
}

#[test]
fn generate_top_ups_continue_the_stored_shape_or_refuse_another() {
    let dir = tempfile::tempdir().unwrap();
    let (stepwise, at_once) = (dir.path().join("stepwise"), dir.path().join("at-once"));
    let shape = [
        "--events-per-day",
        "500",
        "--start",
        "2024-03-01",
        "--skew",
        "0.8",
        "--late",
        "0.05",
    ];
    assert!(generate_retail(&stepwise, 1_000, &shape).status.success());
    // Each flag left out, or changed, is refused by name; nothing is written.
    for (flags, named) in [
        (&shape[..6], "--late"),
        (&[&shape[..4], &["--skew", "1.1"]].concat()[..], "--skew"),
        (&shape[2..], "--events-per-day"),
        (&[&shape[..2], &shape[4..]].concat()[..], "--start"),
    ] {
        let out = generate_retail(&stepwise, 2_500, flags);
        assert_clean_error(&out, 2, named);
    }
    assert_eq!(
        json(&stepwise, "SELECT count(*) AS n FROM raw.retail_events")[0]["n"],
        1_000
    );
    let out = generate_retail(&stepwise, 2_500, &shape);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(generate_retail(&at_once, 2_500, &shape).status.success());
    let all = "SELECT * FROM raw.retail_events ORDER BY _kafka_partition, _kafka_offset";
    let (a, b) = (json(&stepwise, all), json(&at_once, all));
    assert_eq!(a.as_array().unwrap().len(), 2_500);
    assert_eq!(
        a, b,
        "a top-up continues exactly the events generated at once"
    );
}

#[test]
fn generate_refuses_shapes_out_of_range_or_for_other_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    for (flags, named) in [
        (&["--events-per-day", "0"][..], "--events-per-day"),
        (&["--skew=-1"][..], "--skew"),
        (&["--late", "1.5"][..], "--late"),
        (
            &["--events-per-day", "1", "--start", "2990-01-01"][..],
            "year 3000",
        ),
    ] {
        assert_clean_error(&generate_retail(&lake, 100_000, flags), 2, named);
    }
    let out = icefjord(&lake, &["generate", "--kind", "activity", "--skew", "1"]);
    assert_clean_error(&out, 2, "retail events only");
}

/// Files of `suffix` under a lake's warehouse (counted on disk, not by icefjord).
fn files_ending(dir: &Path, suffix: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .map(|path| match path.is_dir() {
            true => files_ending(&path, suffix),
            false => usize::from(path.to_string_lossy().ends_with(suffix)),
        })
        .sum()
}

#[test]
fn generate_batch_events_commits_like_the_sink_without_changing_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (batched, once) = (dir.path().join("batched"), dir.path().join("once"));
    let shape = ["--events-per-day", "1000", "--start", "2024-01-01"];
    let out = generate_retail(
        &batched,
        5_000,
        &[&shape[..], &["--batch-events", "250"]].concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(generate_retail(&once, 5_000, &shape).status.success());
    // 20 commits of a quarter day each: a file and a metadata version per commit
    // (plus the table's creation), against one file per day in one commit.
    assert_eq!(files_ending(&batched.join("warehouse"), ".parquet"), 20);
    assert_eq!(
        files_ending(&batched.join("warehouse"), ".metadata.json"),
        21
    );
    assert_eq!(files_ending(&once.join("warehouse"), ".parquet"), 5);
    let all = "SELECT * FROM raw.retail_events ORDER BY _kafka_partition, _kafka_offset";
    assert_eq!(json(&batched, all), json(&once, all));
    let out = generate_retail(
        &batched,
        5_000,
        &[&shape[..], &["--batch-events", "0"]].concat(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Issue 13, item 3: time travel and metadata tables in `icefjord sql`.
#[test]
fn sql_reads_a_table_as_of_each_snapshot_and_its_metadata_tables() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    for events in ["1000", "1500", "2500"] {
        let out = icefjord(
            &lake,
            &["generate", "--kind", "activity", "--events", events],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let snapshots = json(
        &lake,
        "SELECT snapshot_id, parent_id, operation, committed_at \
         FROM raw.user_activity.snapshots ORDER BY committed_at",
    );
    let snapshots = snapshots.as_array().unwrap();
    assert_eq!(snapshots.len(), 3, "{snapshots:?}");
    assert_eq!(snapshots[1]["parent_id"], snapshots[0]["snapshot_id"]);
    assert_eq!(snapshots[0]["operation"], "append");
    // The newest is what `icefjord tables` reports as the table's snapshot.
    let tables: serde_json::Value =
        serde_json::from_str(&stdout(&icefjord(&lake, &["tables", "-o", "json"]))).unwrap();
    let listed = tables
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "user_activity")
        .unwrap();
    assert_eq!(listed["snapshot_id"], snapshots[2]["snapshot_id"]);

    for (snapshot, rows) in snapshots.iter().zip([1000, 1500, 2500]) {
        let id = &snapshot["snapshot_id"];
        for sql in [
            format!("SELECT count(*) AS n FROM raw.user_activity VERSION AS OF {id}"),
            format!("SELECT count(*) AS n FROM raw.user_activity.snapshot_id_{id}"),
            format!(
                "SELECT count(*) AS n FROM raw.user_activity TIMESTAMP AS OF '{}'",
                snapshot["committed_at"].as_str().unwrap()
            ),
        ] {
            assert_eq!(json(&lake, &sql)[0]["n"], rows, "{sql}");
        }
    }
    let metadata = json(
        &lake,
        "SELECT (SELECT count(*) FROM raw.user_activity.history) AS history,
                (SELECT sum(record_count) FROM raw.user_activity.files) AS file_rows,
                (SELECT sum(record_count) FROM raw.user_activity.partitions) AS partition_rows,
                (SELECT count(*) FROM raw.user_activity.manifests) > 0 AS manifests,
                (SELECT snapshot_id FROM raw.user_activity.refs WHERE name = 'main') AS main",
    );
    assert_eq!(metadata[0]["history"], 3);
    assert_eq!(metadata[0]["file_rows"], 2500);
    assert_eq!(metadata[0]["partition_rows"], 2500);
    assert_eq!(metadata[0]["manifests"], true);
    assert_eq!(metadata[0]["main"], snapshots[2]["snapshot_id"]);
    // Every output format prints them, nested columns included.
    for table in [
        "snapshots",
        "history",
        "refs",
        "files",
        "manifests",
        "partitions",
    ] {
        for format in ["csv", "table", "json"] {
            let sql = format!("SELECT * FROM raw.user_activity.{table}");
            let out = icefjord(&lake, &["sql", "-o", format, &sql]);
            assert!(out.status.success(), "{sql} -o {format}: {}", stderr(&out));
        }
    }

    assert_clean_error(
        &icefjord(
            &lake,
            &["sql", "SELECT * FROM raw.user_activity VERSION AS OF 42"],
        ),
        1,
        "table raw.user_activity has no snapshot with id 42",
    );
    assert_clean_error(
        &icefjord(
            &lake,
            &[
                "sql",
                "SELECT * FROM raw.user_activity TIMESTAMP AS OF '2001-01-01'",
            ],
        ),
        1,
        "raw.user_activity",
    );
    assert_clean_error(
        &icefjord(&lake, &["sql", "SELECT * FROM raw.user_activity.tag_v1"]),
        1,
        "v1",
    );
}
