//! Channel accounts parsed once: parsing a channel account's parameters means parsing and
//! checking RSA keys, which costs far more than the call it serves. Each adapter keeps the
//! accounts it parsed, keyed by a SHA-256 of the parameters, so a rotation (new parameters) is
//! a new entry and the old one ages out. Bounded; secrets in the cached accounts are zeroized
//! when an entry is dropped (`rsa` private keys do it themselves, the adapters' other secrets
//! are `Zeroizing`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::GatewayError;

/// Accounts kept per adapter. A process serving more active accounts than this re-parses the
/// ones that fell out.
const MAX_CACHED_ACCOUNTS: usize = 1024;

/// Parsed accounts of one adapter.
pub(crate) struct AccountCache<A> {
    entries: Mutex<HashMap<[u8; 32], Arc<A>>>,
}

impl<A> Default for AccountCache<A> {
    fn default() -> Self {
        AccountCache {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<A> AccountCache<A> {
    /// The account these parameters describe, parsed by `parse` the first time.
    pub(crate) fn get_or_parse(
        &self,
        params: &serde_json::Value,
        parse: impl FnOnce(&serde_json::Value) -> Result<A, GatewayError>,
    ) -> Result<Arc<A>, GatewayError> {
        // serde_json keeps object keys sorted, so equal parameters give equal text.
        let key: [u8; 32] = Sha256::digest(params.to_string().as_bytes()).into();
        if let Some(account) = self.lock().get(&key) {
            return Ok(account.clone());
        }
        // Parsed outside the lock: a slow parse must not hold up other accounts.
        let account = Arc::new(parse(params)?);
        let mut entries = self.lock();
        if entries.len() >= MAX_CACHED_ACCOUNTS {
            // Any entry: a wrong choice costs one parse.
            if let Some(evicted) = entries.keys().next().copied() {
                entries.remove(&evicted);
            }
        }
        entries.insert(key, account.clone());
        assert!(entries.len() <= MAX_CACHED_ACCOUNTS);
        Ok(account)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<A>>> {
        // Entries are whole or absent; a panic elsewhere cannot leave one half made.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_once_per_parameters_and_stays_bounded() {
        let cache: AccountCache<String> = AccountCache::default();
        let mut n_parses = 0;
        for _ in 0..3 {
            let account = cache
                .get_or_parse(&json!({"a": 1, "b": 2}), |params| {
                    n_parses += 1;
                    Ok(params.to_string())
                })
                .unwrap();
            assert_eq!(*account, r#"{"a":1,"b":2}"#);
        }
        assert_eq!(n_parses, 1);
        // Rotated parameters are another account.
        cache
            .get_or_parse(&json!({"a": 1, "b": 3}), |_| {
                n_parses += 1;
                Ok(String::new())
            })
            .unwrap();
        assert_eq!(n_parses, 2);
        // A refusal is not cached.
        let refused = cache.get_or_parse(&json!({"bad": true}), |_| {
            Err(GatewayError::InvalidParams {
                reason: "bad".into(),
            })
        });
        assert!(refused.is_err());
        for index in 0..MAX_CACHED_ACCOUNTS + 10 {
            cache
                .get_or_parse(&json!({ "index": index }), |_| Ok(String::new()))
                .unwrap();
        }
        assert_eq!(cache.lock().len(), MAX_CACHED_ACCOUNTS);
    }
}
