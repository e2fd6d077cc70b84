//! Channel accounts' parameters unsealed once per activation: opening them means an AES-GCM
//! open and a JSON parse, which every payment, callback, query and refund would otherwise
//! repeat. The cache is keyed by account and checked against the sealed text, so a rotation
//! (new sealed parameters) is opened afresh; it is bounded, and the plaintext (the unsealed
//! bytes and every string of the parsed parameters) is zeroized when an entry is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use paycenter_domain::events::ChannelAccountActivated;
use paycenter_domain::ids::ChannelAccountId;
use zeroize::{Zeroize, Zeroizing};

use crate::error::Refusal;
use crate::keys::MasterKey;

/// Accounts whose parameters are kept unsealed. A process serving more active accounts than
/// this opens the ones that fell out again.
const MAX_CACHED_ACCOUNTS: usize = 4_096;

/// A channel account's unsealed parameters; the secrets in them are wiped on drop.
pub struct ChannelParams(serde_json::Value);

impl std::ops::Deref for ChannelParams {
    type Target = serde_json::Value;

    fn deref(&self) -> &serde_json::Value {
        &self.0
    }
}

fn wipe(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => text.zeroize(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(wipe),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(wipe),
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {}
    }
}

impl Drop for ChannelParams {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Unsealed parameters by account, each with the sealed text it came from (ciphertext: no
/// secret), which tells a rotation apart by a plain comparison.
type Entries = HashMap<ChannelAccountId, (String, Arc<ChannelParams>)>;

/// Channel accounts' unsealed parameters, bounded.
#[derive(Default)]
pub struct ParamsCache {
    entries: Mutex<Entries>,
}

impl ParamsCache {
    /// `account`'s parameters, unsealed with `master_key` the first time this activation is
    /// asked for.
    pub fn get(
        &self,
        master_key: &MasterKey,
        account: &ChannelAccountActivated,
    ) -> Result<Arc<ChannelParams>, Refusal> {
        if let Some((known, params)) = self.lock().get(&account.channel_account_id) {
            if *known == account.params_sealed {
                return Ok(params.clone());
            }
        }
        let bytes = Zeroizing::new(
            master_key
                .open(account.channel_account_id.as_str(), &account.params_sealed)
                .map_err(|error| Refusal::internal("open channel params", error))?,
        );
        let params = Arc::new(ChannelParams(
            serde_json::from_slice(&bytes)
                .map_err(|error| Refusal::internal("channel params", error))?,
        ));
        let mut entries = self.lock();
        if entries.len() >= MAX_CACHED_ACCOUNTS
            && !entries.contains_key(&account.channel_account_id)
        {
            // Any entry: a wrong choice costs one open.
            if let Some(evicted) = entries.keys().next().cloned() {
                entries.remove(&evicted);
            }
        }
        entries.insert(
            account.channel_account_id.clone(),
            (account.params_sealed.clone(), params.clone()),
        );
        assert!(entries.len() <= MAX_CACHED_ACCOUNTS);
        Ok(params)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Entries are whole or absent; a panic elsewhere cannot leave one half made.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wiping_clears_every_string() {
        let mut value = serde_json::json!({"key": "secret", "list": ["a", {"b": "c"}], "n": 1});
        wipe(&mut value);
        assert_eq!(
            value,
            serde_json::json!({"key": "", "list": ["", {"b": ""}], "n": 1})
        );
    }
}
