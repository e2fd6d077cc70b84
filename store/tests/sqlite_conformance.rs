//! The conformance suite against the embedded SQLite backend, each store in a fresh directory.

use std::sync::{Arc, Mutex};

use paycenter_store::{conformance, EventStore, SqliteConfig, SqliteStore};

#[test]
fn sqlite_store_passes_the_conformance_suite() {
    let dirs = Mutex::new(Vec::new());
    let factory = || -> Arc<dyn EventStore> {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), SqliteConfig::default()).unwrap();
        dirs.lock().unwrap().push(dir);
        Arc::new(store)
    };
    conformance::run_all(&factory);
}
