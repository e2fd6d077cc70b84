//! Callback IP allowlists: addresses and CIDR blocks a channel account accepts callbacks from.
//! The check is on the TCP peer; behind a proxy, allow the proxy (or filter there).

use std::fmt;
use std::net::IpAddr;

/// An address block: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    address: IpAddr,
    prefix_len: u8,
}

impl IpNetwork {
    /// `192.0.2.7`, `192.0.2.0/24`, `2001:db8::/32`; `None` when it is none of these.
    pub fn parse(text: &str) -> Option<IpNetwork> {
        let (address, prefix_len) = match text.trim().split_once('/') {
            None => {
                let address: IpAddr = text.trim().parse().ok()?;
                (address, if address.is_ipv4() { 32 } else { 128 })
            }
            Some((address, prefix)) => (address.parse().ok()?, prefix.parse().ok()?),
        };
        let max_len = if address.is_ipv4() { 32 } else { 128 };
        if prefix_len > max_len {
            return None;
        }
        Some(IpNetwork {
            address,
            prefix_len,
        })
    }

    /// Whether `ip` is in the block. IPv4-mapped IPv6 peers are compared as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.address, ip) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - self.prefix_len as u32)
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - self.prefix_len as u32)
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// Whether `ip` may post callbacks under `allowlist` (empty allows everyone).
pub fn allows(allowlist: &[String], ip: Option<IpAddr>) -> bool {
    if allowlist.is_empty() {
        return true;
    }
    let Some(ip) = ip else {
        return false;
    };
    allowlist
        .iter()
        .filter_map(|entry| IpNetwork::parse(entry))
        .any(|network| network.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_addresses() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let block = IpNetwork::parse("192.0.2.0/24").unwrap();
        assert!(block.contains(ip("192.0.2.200")));
        assert!(!block.contains(ip("192.0.3.1")));
        assert!(block.contains(ip("::ffff:192.0.2.9")));
        assert!(IpNetwork::parse("0.0.0.0/0")
            .unwrap()
            .contains(ip("8.8.8.8")));
        assert!(IpNetwork::parse("2001:db8::/32")
            .unwrap()
            .contains(ip("2001:db8::1")));
        assert!(IpNetwork::parse("10.0.0.1/33").is_none());
        assert!(IpNetwork::parse("example.com").is_none());
        assert_eq!(
            IpNetwork::parse("10.0.0.1").unwrap().to_string(),
            "10.0.0.1/32"
        );
        assert!(allows(&[], None));
        assert!(!allows(&["127.0.0.1".into()], None));
        assert!(allows(&["127.0.0.1".into()], Some(ip("127.0.0.1"))));
        assert!(!allows(&["127.0.0.2".into()], Some(ip("127.0.0.1"))));
    }
}
