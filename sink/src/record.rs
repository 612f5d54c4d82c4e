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
///
/// Used-up chunks are kept and reused once no record refers to them any more
/// (their batch was committed): a fresh chunk costs a page fault per 4 KiB, which
/// was a tenth of the sink's CPU.
#[derive(Debug, Default)]
pub struct ByteArena {
    chunk: bytes::BytesMut,
    /// The size `chunk` was allocated with.
    chunk_size: usize,
    /// Used-up chunks, oldest first.
    spent: std::collections::VecDeque<bytes::BytesMut>,
}

impl ByteArena {
    const CHUNK: usize = 1 << 20;
    /// At most this many used-up chunks are kept (1 GiB; a batch holds at most
    /// 256 MiB by default, and two batches are alive at once).
    const MAX_SPENT: usize = 1024;

    pub fn copy(&mut self, data: &[u8]) -> Bytes {
        // After `split`, the chunk is empty and its capacity is what is left of it.
        if self.chunk.capacity() < data.len() {
            self.next_chunk(data.len());
        }
        self.chunk.extend_from_slice(data);
        self.chunk.split().freeze()
    }

    fn next_chunk(&mut self, len: usize) {
        let reusable = len <= Self::CHUNK
            && self
                .spent
                .front_mut()
                .is_some_and(|oldest| oldest.try_reclaim(Self::CHUNK));
        let size = Self::CHUNK.max(len);
        let next = match reusable {
            true => self.spent.pop_front(),
            false => None,
        }
        .unwrap_or_else(|| bytes::BytesMut::with_capacity(size));
        let used = std::mem::replace(&mut self.chunk, next);
        let used_size = std::mem::replace(&mut self.chunk_size, size);
        // Only standard chunks are kept (not oversized ones, not the initial empty one).
        if used_size == Self::CHUNK && self.spent.len() < Self::MAX_SPENT {
            self.spent.push_back(used);
        }
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

    #[test]
    fn chunks_are_reused_once_no_record_holds_them() {
        let mut arena = ByteArena::default();
        let first: Vec<_> = (0..3000).map(|_| arena.copy(&[1u8; 1000])).collect();
        let first_chunk = first[0].as_ptr();
        // A record still alive pins its chunk.
        let kept = first[2999].clone();
        drop(first);
        let second: Vec<_> = (0..3000).map(|_| arena.copy(&[2u8; 1000])).collect();
        assert!(
            second.iter().any(|b| b.as_ptr() == first_chunk),
            "the first chunk was not reused"
        );
        assert!(
            kept.iter().all(|&b| b == 1),
            "a pinned chunk was overwritten"
        );
        assert!(second.iter().all(|b| b.iter().all(|&x| x == 2)));
    }
}
