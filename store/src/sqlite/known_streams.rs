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
//!
//! **Kept across restarts.** A scan of a long log's index takes seconds to minutes of the
//! indexer's core, right when the service starts taking load (26 % of the server's samples at
//! 10M events, docs/benchmarks.md). So the indexer saves the filter in use beside the index file
//! ([`FILTER_FILE_NAME`]): at most every [`SAVE_INTERVAL`] after a fill and when the store
//! closes, with the index position it holds every stream through and that event's hash. The
//! next open takes it instead of scanning when the hash is the log's at that position, adding
//! the streams of the log's events after it that the index file holds ([`SavedFilter`]). A
//! file that is damaged, from another log or another format is ignored: the scan runs as
//! before. The file is derived, so it is never fsynced: what a power cut tears, the checksum
//! refuses.

use std::hash::Hasher;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use sha2::Digest;

/// The saved filter's file, in the data directory beside the index file.
pub const FILTER_FILE_NAME: &str = "streams.filter";
/// The least time between two saves of the filter after fills.
pub(super) const SAVE_INTERVAL: Duration = Duration::from_secs(60);
/// The first bytes of a saved filter: the file's kind and its format's version.
const FILE_MAGIC: &[u8; 8] = b"PCSTRF01";
/// Magic, position, hash, two keys, capacity, length, blocks.
const FILE_HEADER_BYTES: usize = 8 + 8 + 32 + 8 * 5;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StreamFilter {
    blocks: Vec<[u32; 8]>,
    /// SipHash-1-3's keys, drawn per filter and saved with it.
    keys: (u64, u64),
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
            keys: uuid::Uuid::new_v4().as_u64_pair(),
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
        let mut hasher = siphasher::sip::SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        hasher.write(stream_id.as_bytes());
        let hash = hasher.finish();
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

    /// The file of this filter, holding every stream of the index through `position` (whose
    /// event has `hash`): header, blocks, then a SHA-256 of everything before it.
    fn encode(&self, position: u64, hash: &[u8; 32]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(FILE_HEADER_BYTES + self.blocks.len() * 32 + 32);
        bytes.extend_from_slice(FILE_MAGIC);
        bytes.extend_from_slice(&position.to_le_bytes());
        bytes.extend_from_slice(hash);
        for number in [
            self.keys.0,
            self.keys.1,
            self.capacity as u64,
            self.len as u64,
            self.blocks.len() as u64,
        ] {
            bytes.extend_from_slice(&number.to_le_bytes());
        }
        for block in &self.blocks {
            for word in block {
                bytes.extend_from_slice(&word.to_le_bytes());
            }
        }
        let checksum = sha2::Sha256::digest(&bytes);
        bytes.extend_from_slice(&checksum);
        bytes
    }

    /// A filter read back from [`StreamFilter::encode`]'s bytes, with its position and hash;
    /// `None` for anything else (torn, damaged, another format, blocks not matching its
    /// capacity).
    fn decode(bytes: &[u8]) -> Option<SavedFilter> {
        let (body, checksum) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
        if body.len() < FILE_HEADER_BYTES
            || &body[..8] != FILE_MAGIC
            || sha2::Sha256::digest(body)[..] != checksum[..]
        {
            return None;
        }
        let number = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        let position = number(8);
        let hash: [u8; 32] = body[16..48].try_into().expect("32 bytes");
        let keys = (number(48), number(56));
        let capacity = usize::try_from(number(64)).ok()?;
        let len = usize::try_from(number(72)).ok()?;
        let n_blocks = usize::try_from(number(80)).ok()?;
        let words = &body[FILE_HEADER_BYTES..];
        if n_blocks != Self::n_blocks(capacity) || words.len() != n_blocks.checked_mul(32)? {
            return None;
        }
        let blocks = words
            .chunks_exact(32)
            .map(|block| {
                std::array::from_fn(|idx| {
                    u32::from_le_bytes(block[idx * 4..idx * 4 + 4].try_into().expect("4 bytes"))
                })
            })
            .collect();
        Some(SavedFilter {
            filter: StreamFilter {
                blocks,
                keys,
                capacity,
                len,
            },
            position,
            hash,
        })
    }
}

/// A filter read from its file: it holds every stream of the index through `position`, the
/// event with `hash`.
#[derive(Debug)]
pub(super) struct SavedFilter {
    filter: StreamFilter,
    pub position: u64,
    pub hash: [u8; 32],
}

impl SavedFilter {
    /// Reads the filter saved in `data_dir`, if there is one that is whole and no larger than
    /// `max_bytes` allows.
    pub fn load(data_dir: &Path, max_bytes: usize) -> Option<SavedFilter> {
        let path = data_dir.join(FILTER_FILE_NAME);
        let size = std::fs::metadata(&path).ok()?.len();
        let most_bytes = max_bytes.checked_add(FILE_HEADER_BYTES + 32)?;
        if max_bytes == 0 || size > most_bytes as u64 {
            return None;
        }
        let bytes = std::fs::read(&path).ok()?;
        let saved = StreamFilter::decode(&bytes);
        if saved.is_none() {
            tracing::warn!(file = %path.display(), "the saved filter of known streams is damaged; the index is scanned instead");
        }
        saved
    }

    /// Adds a stream the index file holds after `position` (from the log's events after it).
    pub fn insert(&mut self, stream_id: &str) {
        self.filter.insert(stream_id);
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
    /// Asked of the indexer by [`KnownStreams::request_save`]: a save between its fills.
    save_requested: std::sync::atomic::AtomicBool,
    /// Saves done on request, and their signal.
    saves_done: Mutex<u64>,
    saved: std::sync::Condvar,
}

impl KnownStreams {
    pub fn new(max_bytes: usize) -> KnownStreams {
        KnownStreams {
            filters: Mutex::new(Filters::default()),
            max_bytes,
            save_requested: std::sync::atomic::AtomicBool::new(false),
            saves_done: Mutex::new(0),
            saved: std::sync::Condvar::new(),
        }
    }

    /// Asks the indexer for a save of the filter; returns the count of saves done so far, for
    /// [`KnownStreams::wait_saved`].
    pub fn request_save(&self) -> u64 {
        let done = *self.saves_done.lock().expect("filter saves lock");
        self.save_requested
            .store(true, std::sync::atomic::Ordering::Release);
        done
    }

    /// Waits at most `timeout` for a save after the `done_before`th; whether one came.
    pub fn wait_saved(&self, done_before: u64, timeout: Duration) -> bool {
        let done = self.saves_done.lock().expect("filter saves lock");
        let (done, _) = self
            .saved
            .wait_timeout_while(done, timeout, |done| *done <= done_before)
            .expect("filter saves lock");
        *done > done_before
    }

    /// For the indexer: whether a save was asked for since it last looked.
    pub fn take_save_request(&self) -> bool {
        self.save_requested
            .swap(false, std::sync::atomic::Ordering::AcqRel)
    }

    /// For the indexer: a save asked for is done (or was tried).
    pub fn note_saved(&self) {
        *self.saves_done.lock().expect("filter saves lock") += 1;
        self.saved.notify_all();
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

    /// Makes a filter read from its file the one in use (at open, before the indexer runs).
    pub fn install(&self, saved: SavedFilter) {
        let mut filters = self.lock();
        tracing::info!(
            streams = saved.filter.len,
            capacity = saved.filter.capacity,
            through_position = saved.position,
            "the filter of known streams is ready, read from its file"
        );
        filters.ready = Some(saved.filter);
    }

    /// Saves the filter in use in `data_dir` as holding every stream of the index through
    /// `position` (the event with `hash`). Only the indexer calls it, between fills, so no
    /// fill adds to the filter meanwhile. Without a filter in use, nothing is saved.
    pub fn save(&self, data_dir: &Path, position: u64, hash: &[u8; 32]) -> std::io::Result<()> {
        // Copied under the lock, encoded without it: the writer asks the filter meanwhile.
        let Some(filter) = self.lock().ready.clone() else {
            return Ok(());
        };
        // Derived, and checked whole when read: never fsynced.
        crate::files::replace_whole(
            &data_dir.join(FILTER_FILE_NAME),
            &filter.encode(position, hash),
            crate::files::Durability::Unsynced,
        )
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
    fn a_saved_filter_reads_back_whole_and_a_damaged_one_not_at_all() {
        let mut filter = StreamFilter::with_capacity(1_000);
        for n in 0..1_000 {
            filter.insert(&format!("s{n}"));
        }
        let bytes = filter.encode(42, &[7; 32]);
        let saved = StreamFilter::decode(&bytes).expect("reads back");
        assert_eq!((saved.position, saved.hash), (42, [7; 32]));
        assert_eq!(saved.filter, filter);
        assert!((0..1_000).all(|n| saved.filter.may_contain(&format!("s{n}"))));
        for damage in [0, 9, 60, FILE_HEADER_BYTES + 5, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[damage] ^= 1;
            assert!(StreamFilter::decode(&damaged).is_none(), "byte {damage}");
        }
        for cut in [0, 31, FILE_HEADER_BYTES, bytes.len() - 1] {
            assert!(StreamFilter::decode(&bytes[..cut]).is_none(), "{cut} bytes");
        }
    }

    #[test]
    fn no_filter_is_built_with_no_room_for_one() {
        let known = KnownStreams::new(0);
        assert!(!known.begin_build(10));
        assert!(known.file_may_hold("anything"));
        assert_eq!(known.add_filled(["a"].into_iter()), None);
    }
}
