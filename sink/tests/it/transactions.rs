//! Transaction markers occupy offsets no consumer receives: `--until-idle` must
//! judge "caught up" from the consumer's position, not from the last record's
//! offset + 1.
//!
//! Tansu has no transactions, so the broker here is librdkafka's own mock cluster
//! (rust-rdkafka's `mocking` module). Data is produced with the transactional
//! producer API (transactional batches, committed). The mock's coordinator writes
//! no transaction markers to the log (its EndTxn only answers), so the COMMIT
//! marker a real broker appends after each transaction is appended here with a
//! Produce request of our own: a control batch, as the Kafka protocol defines it
//! (`RecordBatch` v2, attributes transactional | control, key = version 0 + type
//! 1). The consumer then sees what it sees on a real broker: records at offsets
//! 0–2 and 4–5, markers at 3 and 6, high watermark 7.
//!
//! What the mock cannot show: aborted records. Its Fetch response lists no aborted
//! transactions, so a `read_committed` consumer would deliver them; on a real
//! broker librdkafka drops them (the sink always reads `read_committed`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use icefjord_catalog::{parse_table, LakeCatalog, LakeConfig};
use icefjord_engine::schema::{builtin, EventSchema};
use icefjord_sink::{Assign, BatchLimits, Ingest, KafkaSettings, Progress, Route};
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const TOPIC: &str = "retail_tx";

fn event(i: usize) -> String {
    format!(
        r#"{{"user_id": "user_{i:04}", "action": "click", "timestamp": "2023-10-27 10:00:0{i}"}}"#
    )
}

/// Produce `events` in one committed transaction.
fn commit_transaction(producer: &ThreadedProducer<DefaultProducerContext>, events: &[String]) {
    producer.begin_transaction().unwrap();
    for e in events {
        producer
            .send(
                BaseRecord::<(), str>::to(TOPIC)
                    .payload(e.as_str())
                    .partition(0),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer
        .commit_transaction(Duration::from_secs(10))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_idle_finishes_when_the_log_ends_with_a_transaction_marker() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(TOPIC, 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();

    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("transactional.id", "icefjord-test-tx")
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(10)).unwrap();
    let events: Vec<String> = (0..5).map(event).collect();
    commit_transaction(&producer, &events[..3]);
    append_commit_marker(&brokers); // offset 3
    commit_transaction(&producer, &events[3..]);
    append_commit_marker(&brokers); // offset 6

    let dir = tempfile::tempdir().unwrap();
    let lake = LakeCatalog::open(&LakeConfig::local(dir.path()).unwrap())
        .await
        .unwrap();
    let table = parse_table("raw.user_activity").unwrap();
    let route = Route {
        topic: TOPIC.into(),
        table: table.clone(),
        schema: EventSchema::parse("user_activity", builtin::USER_ACTIVITY).unwrap(),
        group: "icefjord-tx".into(),
        evolve_schema: false,
    };
    let lags = Arc::new(Mutex::new(Vec::new()));
    let seen = lags.clone();
    let sink = Ingest::new(
        lake.clone(),
        KafkaSettings {
            brokers: brokers.clone(),
            ..Default::default()
        },
        route,
    )
    .with_assign(Assign::All)
    .with_limits(BatchLimits {
        interval: Duration::from_millis(200),
        ..Default::default()
    })
    // Idle long enough for the lag gauge to be refreshed after the last batch
    // (every 5 s).
    .until_idle(Some(Duration::from_secs(6)))
    .with_progress(Box::new(move |p: &Progress| {
        seen.lock().unwrap().push(p.lag);
    }));
    // Before the fix the sink waited forever: the table's offset (6, one past the
    // last record) never reached the high watermark (7, one past the marker).
    let report = tokio::time::timeout(Duration::from_secs(60), sink.run(std::future::pending()))
        .await
        .expect("--until-idle never finished: caught up was judged from the last record")
        .unwrap();
    assert_eq!(report.consumed, 5, "{report:?}");
    assert_eq!(report.written, 5, "{report:?}");
    assert_eq!(report.dead_lettered, 0, "{report:?}");
    // Lag: nothing is left to read once the consumer is past the marker (before the
    // fix the gauge stayed at 1, the marker's offset).
    let lags = lags.lock().unwrap().clone();
    assert_eq!(lags.last(), Some(&0), "{lags:?}");
    let stored = icefjord_sink::offsets::stored(
        lake.load(&table).await.unwrap().metadata(),
        "raw.tx_events",
        "main",
        "icefjord-tx",
        TOPIC,
    )
    .unwrap();
    // One past the last record: a restart reads on from there (the marker at 6 is
    // skipped by the consumer, never delivered).
    assert_eq!(stored.get(&0), Some(&6), "{stored:?}");
}

/// Append a COMMIT control batch to partition 0 of [`TOPIC`] (Produce v3).
fn append_commit_marker(brokers: &str) {
    let address = brokers.split(',').next().unwrap();
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let batch = control_batch(1);
    let mut body = Vec::new();
    body.extend(0i16.to_be_bytes()); // api key: Produce
    body.extend(3i16.to_be_bytes()); // api version
    body.extend(7i32.to_be_bytes()); // correlation id
    string(&mut body, "icefjord-test"); // client id
    body.extend((-1i16).to_be_bytes()); // transactional id: null
    body.extend((-1i16).to_be_bytes()); // acks: all
    body.extend(10_000i32.to_be_bytes()); // timeout ms
    body.extend(1i32.to_be_bytes()); // one topic
    string(&mut body, TOPIC);
    body.extend(1i32.to_be_bytes()); // one partition
    body.extend(0i32.to_be_bytes()); // partition 0
    body.extend((batch.len() as i32).to_be_bytes());
    body.extend(&batch);
    let mut request = (body.len() as i32).to_be_bytes().to_vec();
    request.extend(body);
    stream.write_all(&request).unwrap();
    // Response: size, correlation id, topics[name, partitions[index, error, base offset, …]].
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).unwrap();
    let mut response = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut response).unwrap();
    let name_len = i16::from_be_bytes([response[8], response[9]]) as usize;
    let at = 10 + name_len + 4 + 4; // past the name, partition count, index
    let error = i16::from_be_bytes([response[at], response[at + 1]]);
    assert_eq!(error, 0, "the mock refused the control batch");
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as i16).to_be_bytes());
    out.extend(s.as_bytes());
}

/// A `RecordBatch` v2 holding one control record (`kind` 0 = ABORT, 1 = COMMIT).
fn control_batch(kind: i16) -> Vec<u8> {
    let mut record = Vec::new();
    record.push(0u8); // attributes
    varint(&mut record, 0); // timestamp delta
    varint(&mut record, 0); // offset delta
    let key: Vec<u8> = [0i16.to_be_bytes(), kind.to_be_bytes()].concat();
    varint(&mut record, key.len() as i64);
    record.extend(&key);
    let value: Vec<u8> = [0i16.to_be_bytes().to_vec(), 0i32.to_be_bytes().to_vec()].concat();
    varint(&mut record, value.len() as i64);
    record.extend(&value);
    varint(&mut record, 0); // headers
    let mut framed = Vec::new();
    varint(&mut framed, record.len() as i64);
    framed.extend(record);

    // From attributes on: what the CRC covers.
    let mut tail = Vec::new();
    tail.extend(0x30i16.to_be_bytes()); // transactional | control
    tail.extend(0i32.to_be_bytes()); // last offset delta
    tail.extend(1_700_000_000_000i64.to_be_bytes()); // base timestamp
    tail.extend(1_700_000_000_000i64.to_be_bytes()); // max timestamp
    tail.extend(1i64.to_be_bytes()); // producer id
    tail.extend(0i16.to_be_bytes()); // producer epoch
    tail.extend((-1i32).to_be_bytes()); // base sequence
    tail.extend(1i32.to_be_bytes()); // one record
    tail.extend(framed);

    let mut batch = Vec::new();
    batch.extend(0i64.to_be_bytes()); // base offset (the broker assigns it)
    batch.extend(((4 + 1 + 4 + tail.len()) as i32).to_be_bytes()); // batch length
    batch.extend((-1i32).to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend(crc32c(&tail).to_be_bytes());
    batch.extend(tail);
    batch
}

/// Zig-zag varint, as Kafka's records encode lengths.
fn varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// CRC-32C (Castagnoli), bit by bit.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
