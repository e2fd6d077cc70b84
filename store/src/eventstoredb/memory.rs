//! An in-memory log with EventStoreDB's append rule (expected revision, all or nothing), for
//! testing the backend's own logic where no server runs. It can lose an append's answer after
//! writing it, as a dropped connection does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::{AppendFailure, LogBackend, LogRecord};
use crate::StoreError;

#[derive(Default)]
pub(crate) struct MemoryLog {
    streams: Mutex<HashMap<String, Vec<LogRecord>>>,
    lose_next_answer: AtomicBool,
}

impl MemoryLog {
    /// The next append is written, then answered with an error.
    #[cfg(test)]
    pub(crate) fn lose_next_answer(&self) {
        self.lose_next_answer.store(true, Ordering::SeqCst);
    }

    /// Replaces the data of one stored event, as a tamperer with server access could.
    #[cfg(test)]
    pub(crate) fn overwrite(&self, stream: &str, revision: u64, data: String) {
        let mut streams = self.streams.lock().unwrap();
        streams.get_mut(stream).unwrap()[revision as usize].data = data;
    }
}

impl LogBackend for MemoryLog {
    fn append(
        &self,
        stream: &str,
        expected_last: Option<u64>,
        records: Vec<LogRecord>,
    ) -> Result<(), AppendFailure> {
        let mut streams = self.streams.lock().unwrap();
        let events = streams.entry(stream.to_owned()).or_default();
        let current_last = (events.len() as u64).checked_sub(1);
        if current_last != expected_last {
            return Err(AppendFailure::WrongExpectedRevision);
        }
        for mut record in records {
            record.revision = events.len() as u64;
            events.push(record);
        }
        if self.lose_next_answer.swap(false, Ordering::SeqCst) {
            return Err(AppendFailure::Unknown("connection reset".to_owned()));
        }
        Ok(())
    }

    fn read_forward(
        &self,
        stream: &str,
        from_revision: u64,
        max_count: usize,
    ) -> Result<Vec<LogRecord>, StoreError> {
        let streams = self.streams.lock().unwrap();
        Ok(streams
            .get(stream)
            .map(|events| {
                events
                    .iter()
                    .skip(from_revision as usize)
                    .take(max_count)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    fn read_last(&self, stream: &str) -> Result<Option<LogRecord>, StoreError> {
        let streams = self.streams.lock().unwrap();
        Ok(streams
            .get(stream)
            .and_then(|events| events.last().cloned()))
    }

    fn cap_stream(&self, _stream: &str, _max_count: u64) -> Result<(), StoreError> {
        Ok(())
    }
}
