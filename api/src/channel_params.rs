//! Channel accounts' parameters unsealed once per activation: opening them means an AES-GCM
//! open and a JSON parse, which every payment, callback, query and refund would otherwise
//! repeat. The cache is keyed by account and checked against the sealed text, so a rotation
//! (new sealed parameters) is opened afresh; it is bounded, and the plaintext (the unsealed
//! bytes and every string of the parsed parameters) is zeroized when an entry is dropped.
//! A sub-merchant's entry holds its provider's parameters with its own ids added, and is
//! checked against both sealed texts, so rotating the provider's keys reaches it at once.

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

/// Unsealed parameters by account, each with the sealed texts it came from (ciphertext: no
/// secret; the provider's too for a sub-merchant), which tell a rotation apart by a plain
/// comparison.
type Entries = HashMap<ChannelAccountId, (Sealed, Arc<ChannelParams>)>;

/// The sealed texts an entry was opened from: the account's, and its provider's.
struct Sealed {
    own: String,
    provider: Option<String>,
}

impl Sealed {
    fn of(account: &ChannelAccountActivated, provider: Option<&ChannelAccountActivated>) -> Sealed {
        Sealed {
            own: account.params_sealed.clone(),
            provider: provider.map(|provider| provider.params_sealed.clone()),
        }
    }

    /// Whether the entry was opened from these activations: compared in place, so a cache hit
    /// (every channel call) copies no sealed text.
    fn matches(
        &self,
        account: &ChannelAccountActivated,
        provider: Option<&ChannelAccountActivated>,
    ) -> bool {
        self.own == account.params_sealed
            && self.provider.as_deref() == provider.map(|provider| provider.params_sealed.as_str())
    }
}

/// Channel accounts' unsealed parameters, bounded.
#[derive(Default)]
pub struct ParamsCache {
    entries: Mutex<Entries>,
}

impl ParamsCache {
    /// `account`'s parameters, unsealed with `master_key` the first time this activation is
    /// asked for; a sub-merchant's (`provider` given) are its provider's with its ids added.
    pub fn get(
        &self,
        master_key: &MasterKey,
        account: &ChannelAccountActivated,
        provider: Option<&ChannelAccountActivated>,
    ) -> Result<Arc<ChannelParams>, Refusal> {
        if let Some((known, params)) = self.lock().get(&account.channel_account_id) {
            if known.matches(account, provider) {
                return Ok(params.clone());
            }
        }
        let own = ChannelParams(open(master_key, account)?);
        let params = Arc::new(match provider {
            None => own,
            Some(provider) => acting_for(&ChannelParams(open(master_key, provider)?), &own),
        });
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
            (Sealed::of(account, provider), params.clone()),
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

/// A sub-merchant's parameters: its provider's with its own ids added (wiped on drop, as the
/// provider's keys are in them).
pub fn acting_for(provider: &ChannelParams, own: &serde_json::Value) -> ChannelParams {
    ChannelParams(paycenter_gateway::acting_for(provider, own))
}

/// An activation's parameters, unsealed and parsed.
fn open(
    master_key: &MasterKey,
    account: &ChannelAccountActivated,
) -> Result<serde_json::Value, Refusal> {
    let bytes = Zeroizing::new(
        master_key
            .open(account.channel_account_id.as_str(), &account.params_sealed)
            .map_err(|error| Refusal::internal("open channel params", error))?,
    );
    serde_json::from_slice(&bytes).map_err(|error| Refusal::internal("channel params", error))
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
