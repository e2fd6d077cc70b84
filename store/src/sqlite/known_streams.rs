//! Which streams the stream index file may hold: a filter that spares the writer a lookup in
//! the file for a stream that has never been appended to.
//!
//! Most appends that create a stream (every new order) looked their head up in the index file
//! and found nothing; with the file past the page cache that was a read from disk per new
//! stream, on the writer's thread, 39 % of its time under the HTTP load (docs/benchmarks.md).
//! The filter is a split-block Bloom filter (the layout of Apache Parquet's bloom filter spec):
//! it answers "not in the file" for certain and "maybe" otherwise, so a false positive costs
//! one lookup as before and a wrong answer is impossible.
//!
//! It is filled by the indexer thread and nothing else: at open, from a scan of the file in
//! chunks between fills; afterwards, with every fill's streams, added before the fill's events
//! leave the in-memory tail. A stream the tail does not hold therefore is in the filter
//! whenever it is in the file. Until the scan is done, every stream is "maybe". A filter over
//! its capacity is built again, twice as large, up to `max_bytes`; past that it keeps answering
//! correctly, with more false positives.

use std::hash::BuildHasher;
use std::sync::Mutex;

/// Bits of filter per stream it is sized for: about 1 % false positives when full.
const BITS_PER_STREAM: usize = 12;
/// The smallest filter sized (1 MiB of bits' worth of streams: 1.5 MB).
const MIN_CAPACITY_STREAMS: usize = 1 << 20;

/// Parquet's split-block salts: each block is 8 words of 32 bits, one bit set in each.
const SALT: [u32; 8] = [
    0x47b6_137b,
    0x4497_4d91,
    0x8824_ad5b,
    0xa2b7_289d,
    0x7054_95c7,
    0x2df1_424b,
    0x9efc_4947,
    0x5c6b_fb31,
];

/// A split-block Bloom filter of stream ids.
#[derive(Debug)]
pub(super) struct StreamFilter {
    blocks: Vec<[u32; 8]>,
    hasher: std::collections::hash_map::RandomState,
    /// Streams it was sized for.
    capacity: usize,
    /// Insertions so far (a stream scanned and also filled counts twice: the count only decides
    /// when to build a larger filter).
    len: usize,
}

impl StreamFilter {
    pub fn with_capacity(capacity: usize) -> StreamFilter {
        StreamFilter {
            blocks: vec![[0; 8]; Self::n_blocks(capacity)],
            // Keys drawn per filter: nobody can choose stream names that collide on purpose
            // (which would only cost lookups, never a wrong answer).
            hasher: std::collections::hash_map::RandomState::new(),
            capacity,
            len: 0,
        }
    }

    /// Blocks of 256 bits for `capacity` streams.
    fn n_blocks(capacity: usize) -> usize {
        (capacity * BITS_PER_STREAM).div_ceil(256).max(1)
    }

    fn size_bytes(capacity: usize) -> usize {
        Self::n_blocks(capacity) * std::mem::size_of::<[u32; 8]>()
    }

    /// The block and the eight bit masks of `stream_id`.
    fn locate(&self, stream_id: &str) -> (usize, [u32; 8]) {
        let hash = self.hasher.hash_one(stream_id);
        // The upper half picks the block (a multiply-shift range reduction), the lower half the
        // bits in it.
        let block = (((hash >> 32) * self.blocks.len() as u64) >> 32) as usize;
        let key = hash as u32;
        let masks = SALT.map(|salt| 1u32 << (key.wrapping_mul(salt) >> 27));
        (block, masks)
    }

    pub fn insert(&mut self, stream_id: &str) {
        let (block, masks) = self.locate(stream_id);
        for (word, mask) in self.blocks[block].iter_mut().zip(masks) {
            *word |= mask;
        }
        self.len += 1;
    }

    /// `false`: certainly never inserted. `true`: maybe.
    pub fn may_contain(&self, stream_id: &str) -> bool {
        let (block, masks) = self.locate(stream_id);
        self.blocks[block]
            .iter()
            .zip(masks)
            .all(|(word, mask)| word & mask == mask)
    }

    fn is_over_capacity(&self) -> bool {
        self.len > self.capacity
    }
}

#[derive(Debug, Default)]
struct Filters {
    /// Holds every stream of the index file; `None` until the first scan ends.
    ready: Option<StreamFilter>,
    /// Being filled by a scan of the file (and by the fills meanwhile); replaces `ready` when
    /// the scan ends.
    building: Option<StreamFilter>,
    /// Where the scan goes on: the last stream id it read.
    scanned_through: Option<String>,
}

/// The filter and its build, shared by the indexer (writes) and the writer (asks).
#[derive(Debug)]
pub(super) struct KnownStreams {
    filters: Mutex<Filters>,
    /// The largest filter built; 0 builds none (every stream is looked up in the file).
    max_bytes: usize,
}

impl KnownStreams {
    pub fn new(max_bytes: usize) -> KnownStreams {
        KnownStreams {
            filters: Mutex::new(Filters::default()),
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Filters> {
        self.filters.lock().expect("known streams lock")
    }

    /// Whether the index file may hold `stream_id`: `false` only when it certainly does not.
    pub fn file_may_hold(&self, stream_id: &str) -> bool {
        match &self.lock().ready {
            Some(filter) => filter.may_contain(stream_id),
            None => true,
        }
    }

    /// Starts building a filter for about `expected_streams` streams (from a scan the indexer
    /// then runs with [`KnownStreams::scan_from`] and [`KnownStreams::add_scanned`]), unless one
    /// is being built or the size allowed does not fit the smallest. Returns whether it did.
    pub fn begin_build(&self, expected_streams: usize) -> bool {
        let mut filters = self.lock();
        if filters.building.is_some() || self.max_bytes == 0 {
            return false;
        }
        let largest = self.max_bytes / 32 * 256 / BITS_PER_STREAM;
        let capacity = expected_streams.max(MIN_CAPACITY_STREAMS).min(largest);
        if StreamFilter::size_bytes(capacity) > self.max_bytes || capacity == 0 {
            return false;
        }
        if let Some(ready) = &filters.ready {
            if capacity <= ready.capacity {
                // As large as allowed already: keep it, false positives and all.
                return false;
            }
        }
        filters.building = Some(StreamFilter::with_capacity(capacity));
        filters.scanned_through = None;
        true
    }

    /// While a build is under way: the last stream id its scan read (`None` to start with
    /// the first); `None` outside a build too (see [`KnownStreams::is_building`]).
    pub fn scan_from(&self) -> Option<String> {
        self.lock().scanned_through.clone()
    }

    pub fn is_building(&self) -> bool {
        self.lock().building.is_some()
    }

    /// Whether a filter answers (a scan has ended since the open).
    pub fn is_ready(&self) -> bool {
        self.lock().ready.is_some()
    }

    /// Adds a chunk of the scan (stream ids in order). With `last_chunk`, the filter is
    /// complete and replaces the one in use.
    pub fn add_scanned(&self, stream_ids: &[String], last_chunk: bool) {
        let mut filters = self.lock();
        let Some(building) = filters.building.as_mut() else {
            return;
        };
        for stream_id in stream_ids {
            building.insert(stream_id);
        }
        if let Some(last) = stream_ids.last() {
            filters.scanned_through = Some(last.clone());
        }
        if last_chunk {
            let built = filters.building.take().expect("a filter being built");
            tracing::info!(
                streams = built.len,
                capacity = built.capacity,
                bytes = StreamFilter::size_bytes(built.capacity),
                "the filter of known streams is ready"
            );
            filters.ready = Some(built);
            filters.scanned_through = None;
        }
    }

    /// Drops a build that could not finish (the scan failed): lookups go on as before.
    pub fn abandon_build(&self) {
        let mut filters = self.lock();
        filters.building = None;
        filters.scanned_through = None;
    }

    /// Adds the streams of a fill the file now holds, before they leave the tail. Returns the
    /// capacity a larger filter should have when the one in use is full.
    pub fn add_filled<'a>(&self, stream_ids: impl Iterator<Item = &'a str>) -> Option<usize> {
        let mut filters = self.lock();
        let Filters {
            ready, building, ..
        } = &mut *filters;
        if ready.is_none() && building.is_none() {
            return None;
        }
        for stream_id in stream_ids {
            if let Some(filter) = ready.as_mut() {
                filter.insert(stream_id);
            }
            if let Some(filter) = building.as_mut() {
                filter.insert(stream_id);
            }
        }
        match ready {
            Some(filter) if filter.is_over_capacity() && building.is_none() => {
                Some(filter.capacity * 2)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inserted_stream_is_always_found_and_few_others_are() {
        let capacity = 100_000;
        let mut filter = StreamFilter::with_capacity(capacity);
        for n in 0..capacity {
            filter.insert(&format!("order-app_1-mch_1-L{n}"));
        }
        for n in 0..capacity {
            assert!(filter.may_contain(&format!("order-app_1-mch_1-L{n}")));
        }
        let n_false = (0..capacity)
            .filter(|n| filter.may_contain(&format!("order-app_1-mch_1-M{n}")))
            .count();
        // About 1 % when full; 3 % leaves room for an unlucky draw of keys.
        assert!(
            n_false < capacity * 3 / 100,
            "{n_false} false positives of {capacity}"
        );
    }

    #[test]
    fn streams_are_maybe_until_the_scan_ends_then_the_filter_answers() {
        let known = KnownStreams::new(64 << 20);
        assert!(known.file_may_hold("never"));
        assert!(known.begin_build(10));
        assert!(!known.begin_build(10), "one build at a time");
        known.add_scanned(&["a".to_owned(), "b".to_owned()], false);
        assert_eq!(known.scan_from().as_deref(), Some("b"));
        // A fill while the scan runs reaches the filter being built.
        assert_eq!(known.add_filled(["z"].into_iter()), None);
        assert!(known.file_may_hold("never"), "still building");
        known.add_scanned(&["c".to_owned()], true);
        assert!(!known.is_building());
        for stream_id in ["a", "b", "c", "z"] {
            assert!(known.file_may_hold(stream_id), "{stream_id}");
        }
        let n_maybe = (0..1_000)
            .filter(|n| known.file_may_hold(&format!("new-{n}")))
            .count();
        assert!(n_maybe < 30, "{n_maybe} of 1,000 new streams maybe held");
    }

    #[test]
    fn a_full_filter_asks_for_a_larger_one_within_the_limit() {
        let known = KnownStreams::new(4 << 20);
        assert!(known.begin_build(0));
        known.add_scanned(&[], true);
        let ids: Vec<String> = (0..=MIN_CAPACITY_STREAMS)
            .map(|n| format!("s{n}"))
            .collect();
        let larger = known.add_filled(ids.iter().map(String::as_str));
        assert_eq!(larger, Some(MIN_CAPACITY_STREAMS * 2));
        assert!(known.begin_build(MIN_CAPACITY_STREAMS * 2));
        known.add_scanned(&ids[..10], true);
        // 4 MiB holds at most ~2.8M streams: a further doubling is capped, then refused.
        assert!(known.begin_build(MIN_CAPACITY_STREAMS * 4));
        known.add_scanned(&[], true);
        assert!(
            !known.begin_build(MIN_CAPACITY_STREAMS * 8),
            "no larger than allowed"
        );
    }

    #[test]
    fn no_filter_is_built_with_no_room_for_one() {
        let known = KnownStreams::new(0);
        assert!(!known.begin_build(10));
        assert!(known.file_may_hold("anything"));
        assert_eq!(known.add_filled(["a"].into_iter()), None);
    }
}
