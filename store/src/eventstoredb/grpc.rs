//! The transport to a real EventStoreDB / KurrentDB server: the `eventstore` crate's gRPC
//! client on a runtime of the store's own, so the blocking [`LogBackend`] methods can wait on
//! it from any thread that is not itself driving async tasks.

use std::time::Duration;

use eventstore::{
    AppendToStreamOptions, Client, ClientSettings, EventData, ReadStreamOptions, StreamMetadata,
    StreamPosition,
};
use serde_json::value::RawValue;

use super::{AppendFailure, LogBackend, LogRecord};
use crate::StoreError;

/// How long one call to the server may take.
const CALL_DEADLINE_MS: u64 = 10_000;
/// Runtime threads driving the client's connections.
const RUNTIME_THREADS: usize = 2;

pub(crate) struct GrpcLog {
    /// `Some` until drop.
    runtime: Option<tokio::runtime::Runtime>,
    client: Client,
}

impl Drop for GrpcLog {
    fn drop(&mut self) {
        // A runtime dropped the ordinary way blocks, which panics when the last holder of
        // the store is an async task: let its threads wind down in the background instead.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn backend_error(action: &str, error: eventstore::Error) -> StoreError {
    StoreError::Backend(format!("EventStoreDB {action}: {error}"))
}

impl GrpcLog {
    /// A client for `connection_string`. Connecting happens on the first call.
    pub(crate) fn connect(connection_string: &str) -> Result<GrpcLog, StoreError> {
        // The parse error repeats the string, which may hold a password: say what is wanted.
        let settings: ClientSettings = connection_string.parse().map_err(|_| {
            StoreError::Backend(
                "the EventStoreDB connection string does not parse; expected esdb://[user:password@]host:port[?tls=false] or esdb+discover://..."
                    .to_owned(),
            )
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_THREADS)
            .thread_name("paycenter-esdb")
            .enable_all()
            .build()?;
        let client = Client::with_runtime_handle(runtime.handle().clone(), settings)
            .map_err(|error| backend_error("client", error))?;
        Ok(GrpcLog {
            runtime: Some(runtime),
            client,
        })
    }
}

fn deadline() -> Duration {
    Duration::from_millis(CALL_DEADLINE_MS)
}

impl LogBackend for GrpcLog {
    fn append(
        &self,
        stream: &str,
        expected_last: Option<u64>,
        records: Vec<LogRecord>,
    ) -> Result<(), AppendFailure> {
        let mut events = Vec::with_capacity(records.len());
        for record in records {
            // Stored as JSON (not bytes) so EventStoreDB's UI and projections can read it.
            let data = RawValue::from_string(record.data).map_err(|error| {
                AppendFailure::Unknown(format!("event data is not JSON: {error}"))
            })?;
            let event = EventData::json(&record.event_type, &data)
                .map_err(|error| AppendFailure::Unknown(error.to_string()))?
                .id(record.event_id);
            events.push(event);
        }
        let expected = match expected_last {
            Some(revision) => eventstore::ExpectedRevision::Exact(revision),
            None => eventstore::ExpectedRevision::NoStream,
        };
        let options = AppendToStreamOptions::default()
            .expected_revision(expected)
            .requires_leader(true)
            .deadline(deadline());
        let appended = self
            .runtime()
            .block_on(self.client.append_to_stream(stream, &options, events));
        match appended {
            Ok(_) => Ok(()),
            Err(eventstore::Error::WrongExpectedVersion { .. }) => {
                Err(AppendFailure::WrongExpectedRevision)
            }
            Err(error) => Err(AppendFailure::Unknown(format!(
                "EventStoreDB append: {error}"
            ))),
        }
    }

    fn read_forward(
        &self,
        stream: &str,
        from_revision: u64,
        max_count: usize,
    ) -> Result<Vec<LogRecord>, StoreError> {
        let options = ReadStreamOptions::default()
            .forwards()
            .position(StreamPosition::Position(from_revision))
            .max_count(max_count)
            .requires_leader(true)
            .deadline(deadline());
        self.read(stream, &options, max_count)
    }

    fn read_last(&self, stream: &str) -> Result<Option<LogRecord>, StoreError> {
        let options = ReadStreamOptions::default()
            .position(StreamPosition::End)
            .backwards()
            .max_count(1)
            .requires_leader(true)
            .deadline(deadline());
        Ok(self.read(stream, &options, 1)?.pop())
    }

    fn cap_stream(&self, stream: &str, max_count: u64) -> Result<(), StoreError> {
        let metadata: StreamMetadata = StreamMetadata::builder().max_count(max_count).build();
        let options = AppendToStreamOptions::default()
            .requires_leader(true)
            .deadline(deadline());
        self.runtime()
            .block_on(self.client.set_stream_metadata(stream, &options, &metadata))
            .map(|_| ())
            .map_err(|error| backend_error("set stream metadata", error))
    }
}

impl GrpcLog {
    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives until drop")
    }

    fn read(
        &self,
        stream: &str,
        options: &ReadStreamOptions,
        max_count: usize,
    ) -> Result<Vec<LogRecord>, StoreError> {
        self.runtime().block_on(async {
            let mut reading = match self.client.read_stream(stream, options).await {
                Ok(reading) => reading,
                Err(eventstore::Error::ResourceNotFound) => return Ok(Vec::new()),
                Err(error) => return Err(backend_error("read", error)),
            };
            let mut records = Vec::new();
            while records.len() < max_count {
                let resolved = match reading.next().await {
                    Ok(Some(resolved)) => resolved,
                    Ok(None) => break,
                    Err(eventstore::Error::ResourceNotFound) => break,
                    Err(error) => return Err(backend_error("read", error)),
                };
                let event = resolved.get_original_event();
                let data =
                    String::from_utf8(event.data.to_vec()).map_err(|_| StoreError::Corrupted {
                        position: event.revision + 1,
                        reason: format!("event data in stream {stream} is not UTF-8"),
                    })?;
                records.push(LogRecord {
                    revision: event.revision,
                    event_id: event.id,
                    event_type: event.event_type.clone(),
                    data,
                });
            }
            Ok(records)
        })
    }
}
