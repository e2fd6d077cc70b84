//! Which adapter serves which channel: one place instead of a field per channel.

use paycenter_domain::payment::Channel;

use crate::PaymentChannel;

/// The adapters a process runs, by channel.
pub struct ChannelRegistry {
    adapters: Vec<Box<dyn PaymentChannel>>,
}

impl ChannelRegistry {
    /// A registry of `adapters`, at most one per channel.
    pub fn new(adapters: Vec<Box<dyn PaymentChannel>>) -> ChannelRegistry {
        for (adapter_idx, adapter) in adapters.iter().enumerate() {
            assert!(
                adapters[..adapter_idx]
                    .iter()
                    .all(|earlier| earlier.channel() != adapter.channel()),
                "two adapters for {}",
                adapter.channel()
            );
        }
        ChannelRegistry { adapters }
    }

    /// The adapter of `channel`, if this process runs one.
    pub fn get(&self, channel: Channel) -> Option<&dyn PaymentChannel> {
        self.adapters
            .iter()
            .find(|adapter| adapter.channel() == channel)
            .map(|adapter| adapter.as_ref())
    }

    /// The channels served.
    pub fn channels(&self) -> impl Iterator<Item = Channel> + '_ {
        self.adapters.iter().map(|adapter| adapter.channel())
    }
}
