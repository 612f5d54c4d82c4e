"""The shipped clickstream and activity pipelines against DuckDB: simulated events
go through Tansu and `icefjord ingest`, the pipelines run, and every table and view
must equal the same definition written for DuckDB over the raw Parquet files,
including the Rust transforms (sessions with the 30-minute split, fraud rules)."""

from pathlib import Path

from test_retail_pipeline import duck, ours

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "data" / "schemas"

SESSIONS = """
WITH ordered AS (
  SELECT *, row_number() OVER (PARTITION BY session_id
                               ORDER BY event_time, event_type, product_id NULLS FIRST) AS n,
         event_time - lag(event_time) OVER (PARTITION BY session_id
                               ORDER BY event_time, event_type, product_id NULLS FIRST) AS gap
  FROM raw),
parts AS (
  SELECT *, 1 + sum(CASE WHEN gap > INTERVAL 30 MINUTE THEN 1 ELSE 0 END)
                  OVER (PARTITION BY session_id ORDER BY n ROWS UNBOUNDED PRECEDING) AS part
  FROM ordered)
SELECT CASE WHEN part = 1 THEN session_id ELSE session_id || '~' || part END AS sid,
       arg_min(user_id, n), arg_min(country, n), min(event_time), max(event_time),
       (epoch_us(max(event_time)) - epoch_us(min(event_time))) // 1000000,
       count(*),
       count(DISTINCT CASE WHEN event_type = 'product_viewed' THEN product_id END),
       count(*) FILTER (WHERE event_type = 'product_added_to_cart'),
       count(*) FILTER (WHERE event_type = 'purchase'),
       coalesce(sum(price * coalesce(quantity, 1)) FILTER (WHERE event_type = 'purchase'), 0)
FROM parts GROUP BY session_id, part ORDER BY sid
"""

# Purchases in the rules' total order: user, time, session, amount.
PURCHASES = """
WITH p AS (
  SELECT user_id, session_id, country, event_time, price * coalesce(quantity, 1) AS amount
  FROM raw WHERE event_type = 'purchase'),
o AS (
  SELECT *, row_number() OVER (PARTITION BY user_id ORDER BY event_time, session_id, amount) AS n
  FROM p)
"""

FRAUD = PURCHASES + """
SELECT user_id, event_time, 'burst' FROM o
WHERE (SELECT count(*) FROM o AS q WHERE q.user_id = o.user_id AND q.n <= o.n
         AND q.event_time > o.event_time - INTERVAL 10 MINUTE) >= 3
UNION ALL
SELECT user_id, event_time, 'big_spender' FROM (
  SELECT *, count(*) OVER w AS k, sum(amount) OVER w AS total FROM o
  WINDOW w AS (PARTITION BY user_id ORDER BY n ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING))
WHERE k >= 3 AND amount * k > 5 * total
UNION ALL
SELECT user_id, event_time, 'country_hop' FROM (
  SELECT *, lag(country) OVER w AS before, lag(event_time) OVER w AS prev_time FROM o
  WINDOW w AS (PARTITION BY user_id ORDER BY n))
WHERE prev_time IS NOT NULL AND event_time - prev_time < INTERVAL 60 MINUTE AND before <> country
ORDER BY 1, 2, 3
"""

FUNNEL = """
SELECT date, country, count(*), sum(viewed), sum(carted), sum(purchased),
       sum(purchased) / count(*)
FROM (SELECT session_id, CAST(min(event_time) AS DATE) AS date, min(country) AS country,
             max(CASE WHEN event_type = 'product_viewed' THEN 1 ELSE 0 END) AS viewed,
             max(CASE WHEN event_type = 'product_added_to_cart' THEN 1 ELSE 0 END) AS carted,
             max(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchased
      FROM raw GROUP BY session_id)
GROUP BY date, country ORDER BY date, country
"""

PRODUCTS = """
SELECT product_id, category,
       count(*) FILTER (WHERE event_type = 'product_viewed'),
       count(*) FILTER (WHERE event_type = 'product_added_to_cart'),
       count(*) FILTER (WHERE event_type = 'purchase'),
       coalesce(sum(price * coalesce(quantity, 1)) FILTER (WHERE event_type = 'purchase'), 0)
FROM raw WHERE product_id IS NOT NULL GROUP BY product_id, category ORDER BY 1, 2
"""

ACTIVE = """
SELECT d, as_of, (SELECT count(DISTINCT user_id) FROM raw
                  WHERE "timestamp" > as_of - d * INTERVAL 1 DAY AND "timestamp" <= as_of)
FROM (SELECT max("timestamp") AS as_of FROM raw), (VALUES (1), (7), (30)) AS w(d)
ORDER BY d
"""

PURCHASE_COUNTS = """
SELECT user_id, count(*) FROM raw WHERE action = 'purchase' GROUP BY user_id ORDER BY user_id
"""


def raw_files(lake, table):
    t = lake.catalog().load_table(table)
    return [task.file.file_path.removeprefix("file://") for task in t.scan().plan_files()]


def load(lake, kafka, topic, kind, schema, table, events):
    kafka.create_topic(topic, 3)
    out = lake.run("simulate", "--brokers", kafka.bootstrap, "--topic", topic, "--kind", kind,
                   "--events", str(events), "--seed", "3",
                   "--producer-property", "batch.num.messages=1")
    assert out.returncode == 0, out.stderr
    out = lake.run("ingest", "--brokers", kafka.bootstrap, "--topic", topic, "--table", table,
                   "--schema", str(SCHEMAS / schema), "--group", "g", "--until-idle", "3s")
    assert out.returncode == 0, out.stderr


def run(lake, job):
    out = lake.run("run", str(ROOT / "jobs" / job), "-o", "json")
    assert out.returncode == 0, out.stdout + out.stderr


def same(lake, files, duckdb_sql, ours_sql, name):
    expected = duck(files, duckdb_sql)
    actual = ours(lake, ours_sql)
    assert expected, f"{name}: DuckDB found no rows"
    assert actual == expected, f"{name} differs from DuckDB over the raw files"
    return actual


def test_clickstream_sessions_fraud_funnel_and_products_equal_duckdb(lake, kafka):
    load(lake, kafka, "clicks", "clickstream", "clickstream_event.json",
         "raw.clickstream_events", 6000)
    run(lake, "clickstream")
    files = raw_files(lake, "raw.clickstream_events")
    sessions = same(lake, files, SESSIONS,
                    "SELECT session_id, user_id, country, started_at, ended_at, duration_s, events, "
                    "products_viewed, cart_adds, purchases, revenue FROM historical.sessions "
                    "ORDER BY session_id", "historical.sessions")
    assert len(sessions) > 100
    alerts = same(lake, files, FRAUD,
                  "SELECT user_id, event_time, rule FROM historical.fraud_alerts ORDER BY 1, 2, 3",
                  "historical.fraud_alerts")
    assert any(a[2] == "burst" for a in alerts), "the simulated data should trip some rule"
    same(lake, files, FUNNEL,
         "SELECT date, country, sessions, viewed, carted, purchased, conversion_rate "
         "FROM unified.funnel_daily ORDER BY 1, 2", "unified.funnel_daily")
    same(lake, files, PRODUCTS,
         "SELECT product_id, category, views, cart_adds, purchases, revenue "
         "FROM unified.product_stats ORDER BY 1, 2", "unified.product_stats")


def test_activity_windows_and_purchases_equal_duckdb(lake, kafka):
    load(lake, kafka, "activity", "activity", "user_activity.json", "raw.user_activity", 5000)
    run(lake, "activity")
    files = raw_files(lake, "raw.user_activity")
    active = same(lake, files, ACTIVE,
                  "SELECT window_days, as_of, active_users FROM unified.active_users ORDER BY 1",
                  "unified.active_users")
    assert [row[0] for row in active] == [1, 7, 30]
    same(lake, files, PURCHASE_COUNTS,
         "SELECT user_id, total_purchases FROM unified.user_purchases ORDER BY 1",
         "unified.user_purchases")
