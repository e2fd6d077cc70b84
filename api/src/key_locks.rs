//! One async lock per key in use: requests with one `Idempotency-Key` run one at a time on a
//! node, and the map holds only keys someone is using.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// One async lock per key in use; entries leave the map when their last user is done.
#[derive(Default)]
pub struct KeyLocks {
    in_use: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyLocks {
    /// Runs `work` holding `key`'s lock.
    pub async fn run<T>(&self, key: &str, work: impl Future<Output = T>) -> T {
        let lock = self
            .in_use
            .lock()
            .expect("key locks")
            .entry(key.to_owned())
            .or_default()
            .clone();
        let result = {
            let _held = lock.lock().await;
            work.await
        };
        let mut in_use = self.in_use.lock().expect("key locks");
        // Two holders left (the map and this call): nobody else waits, so forget the key.
        if Arc::strong_count(&lock) == 2 {
            in_use.remove(key);
        }
        result
    }
}
