"""Pin down the behaviour of the test broker (Tansu 0.6.0, memory engine) that our
Kafka tests depend on, with confluent-kafka as the client. If Tansu changes, these
fail and tell us which workaround to revisit."""

import time

from confluent_kafka import Consumer, Producer, TopicPartition


def produce_one_batch(kafka, topic, n):
    # Everything in one produce request: one multi-record batch.
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 500,
                         "batch.num.messages": 10_000})
    for i in range(n):
        producer.produce(topic, value=f"v{i}".encode(), partition=0)
    producer.flush(30)


def consumer(kafka, group="pin"):
    return Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": group,
                     "enable.auto.commit": False, "auto.offset.reset": "earliest"})


def first_offset_from(kafka, topic, start):
    c = consumer(kafka)
    c.assign([TopicPartition(topic, 0, start)])
    deadline = time.time() + 20
    try:
        while time.time() < deadline:
            m = c.poll(1.0)
            if m is not None and m.error() is None:
                return m.offset()
        return None
    finally:
        c.close()


def test_fetch_inside_a_multi_record_batch_skips_to_the_next_batch(kafka):
    kafka.create_topic("pin-batch", partitions=1)
    produce_one_batch(kafka, "pin-batch", 10)   # offsets 0..9, one batch
    produce_one_batch(kafka, "pin-batch", 10)   # offsets 10..19, one batch
    assert first_offset_from(kafka, "pin-batch", 0) == 0
    # A correct broker returns 5 here; Tansu 0.6.0 (memory) returns the next batch.
    assert first_offset_from(kafka, "pin-batch", 5) == 10


def test_high_watermark_is_last_batch_base_plus_one(kafka):
    kafka.create_topic("pin-hwm", partitions=1)
    produce_one_batch(kafka, "pin-hwm", 10)
    c = consumer(kafka)
    low, high = c.get_watermark_offsets(TopicPartition("pin-hwm", 0), timeout=10)
    c.close()
    # A correct broker reports 10; Tansu 0.6.0 reports the batch base offset + 1.
    assert (low, high) == (0, 1)


def test_one_record_batches_are_served_exactly(kafka):
    kafka.create_topic("pin-single", partitions=1)
    producer = kafka.producer()
    for i in range(10):
        producer.produce("pin-single", value=f"v{i}".encode(), partition=0)
    producer.flush(30)
    assert first_offset_from(kafka, "pin-single", 5) == 5
    c = consumer(kafka)
    assert c.get_watermark_offsets(TopicPartition("pin-single", 0), timeout=10) == (0, 10)
    c.close()


def test_committed_group_offsets_round_trip(kafka):
    kafka.create_topic("pin-commit", partitions=3)
    c = consumer(kafka, group="pin-commit-group")
    c.commit(offsets=[TopicPartition("pin-commit", 1, 42)], asynchronous=False)
    got = c.committed([TopicPartition("pin-commit", 1)], timeout=10)
    c.close()
    assert got[0].offset == 42
