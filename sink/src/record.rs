//! A consumed Kafka record, independent of the client library.

use std::sync::Arc;

use bytes::Bytes;

/// One record as consumed: where it came from and its raw bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceRecord {
    /// Shared by every record of the topic (no allocation per record).
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Record timestamp in milliseconds since the epoch, when the broker gave one.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
}

/// Copies record keys and values into shared 1 MiB chunks: one allocation per
/// chunk instead of one per key and per value. A record's [`Bytes`] keeps its
/// chunk alive, so records may outlive the arena.
#[derive(Debug, Default)]
pub struct ByteArena {
    chunk: bytes::BytesMut,
}

impl ByteArena {
    const CHUNK: usize = 1 << 20;

    pub fn copy(&mut self, data: &[u8]) -> Bytes {
        // After `split`, the chunk is empty and its capacity is what is left of it.
        if self.chunk.capacity() < data.len() {
            self.chunk = bytes::BytesMut::with_capacity(Self::CHUNK.max(data.len()));
        }
        self.chunk.extend_from_slice(data);
        self.chunk.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::ByteArena;

    #[test]
    fn arena_copies_stay_intact_across_chunks() {
        let mut arena = ByteArena::default();
        let big = vec![7u8; ByteArena::CHUNK + 10];
        let mut copies: Vec<_> = (0..3000u32)
            .map(|i| arena.copy(format!("record-{i}-{}", "x".repeat(i as usize % 700)).as_bytes()))
            .collect();
        copies.extend([arena.copy(&big), arena.copy(b""), arena.copy(b"after")]);
        for (i, copy) in copies.iter().take(3000).enumerate() {
            let expected = format!("record-{i}-{}", "x".repeat(i % 700));
            assert_eq!(copy.as_ref(), expected.as_bytes());
        }
        assert_eq!(copies[3000].as_ref(), big.as_slice());
        assert!(copies[3001].is_empty());
        assert_eq!(copies[3002].as_ref(), b"after");
    }
}
