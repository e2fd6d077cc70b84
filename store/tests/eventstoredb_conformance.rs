//! The conformance suite against a real EventStoreDB / KurrentDB server.
//!
//! Needs the `eventstoredb` feature and a server at `PAYCENTER_EVENTSTOREDB_URL` (for example
//! `esdb://127.0.0.1:2113?tls=false`). No server can be installed on paycenter's build
//! machines, so there the suite prints that it was skipped and why; the backend's logic is
//! tested on an in-memory log in `store/src/eventstoredb/tests.rs`. What runs here without a
//! server: the real client's handling of a bad connection string and of an unreachable server.

#[cfg(not(feature = "eventstoredb"))]
#[test]
fn eventstoredb_conformance() {
    eprintln!(
        "skipped: built without the eventstoredb feature (cargo test --workspace --all-features)"
    );
}

#[cfg(feature = "eventstoredb")]
mod with_client {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use paycenter_store::conformance;
    use paycenter_store::{EventStore, EventStoreDbStore, StoreError};

    fn server_url() -> Option<String> {
        match std::env::var("PAYCENTER_EVENTSTOREDB_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                eprintln!("skipped: PAYCENTER_EVENTSTOREDB_URL is unset. No EventStoreDB server runs on this machine; set it to esdb://host:2113?tls=false to run the suite against one");
                None
            }
        }
    }

    static LOG_COUNTER: AtomicUsize = AtomicUsize::new(0);

    /// A log stream no earlier run used.
    fn fresh_log_stream() -> String {
        let started_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        format!(
            "paycenter-test-{started_ms}-{}-{}",
            std::process::id(),
            LOG_COUNTER.fetch_add(1, Ordering::Relaxed)
        )
    }

    #[test]
    fn eventstoredb_store_passes_the_conformance_suite() {
        let Some(url) = server_url() else {
            return;
        };
        conformance::run_all(&|| -> Arc<dyn EventStore> {
            Arc::new(EventStoreDbStore::connect(&url, &fresh_log_stream()).unwrap())
        });
    }

    #[test]
    fn two_nodes_on_one_server_share_one_gap_free_chain() {
        let Some(url) = server_url() else {
            return;
        };
        let log_stream = fresh_log_stream();
        let nodes: Vec<Arc<EventStoreDbStore>> = (0..2)
            .map(|_| Arc::new(EventStoreDbStore::connect(&url, &log_stream).unwrap()))
            .collect();
        conformance::two_nodes_share_one_chain(nodes[0].clone(), nodes[1].clone(), 25, 1);
        assert!(nodes[0]
            .try_lease("webhook:ntf_1:1", "node-a", 60_000)
            .unwrap());
        assert!(!nodes[1]
            .try_lease("webhook:ntf_1:1", "node-b", 60_000)
            .unwrap());
    }

    #[test]
    fn a_bad_connection_string_is_refused_without_repeating_it() {
        let Err(error) = EventStoreDbStore::connect("esdb://admin:s3cret@:bad port", "log") else {
            panic!("a malformed connection string was accepted");
        };
        let message = error.to_string();
        assert!(message.contains("does not parse"), "{message}");
        assert!(
            !message.contains("s3cret"),
            "the error repeats the password: {message}"
        );
    }

    #[test]
    fn an_unreachable_server_fails_the_open_with_a_clear_error() {
        // Nothing listens on port 1 of loopback.
        let started = Instant::now();
        let Err(error) = EventStoreDbStore::connect(
            "esdb://127.0.0.1:1?tls=false&maxDiscoverAttempts=2&discoveryInterval=50",
            "paycenter-log",
        ) else {
            panic!("opened a store with no server behind it");
        };
        assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
        assert!(error.to_string().contains("EventStoreDB"), "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "gave up only after {:?}",
            started.elapsed()
        );
        eprintln!(
            "unreachable server refused after {:?}: {error}",
            started.elapsed()
        );
    }
}
