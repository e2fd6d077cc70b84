//! The egress rule: where paycenter may send requests on someone's behalf (webhooks to apps,
//! channel gateways, alert destinations). Link-local addresses (the cloud metadata service
//! lives at 169.254.169.254), multicast, broadcast and unspecified addresses are always
//! refused; loopback and private ranges only when the operator allows them
//! (`PAYCENTER_ALLOW_PRIVATE_EGRESS=1`, for tests and private deployments).
//!
//! [`check_url`] is the registration-time check (scheme, and the host when it is an address
//! literal); [`check_ip`] is the rule itself, which the outbound client applies again to every
//! address it connects to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What the operator allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EgressPolicy {
    /// Loopback and private addresses are reachable.
    pub allow_private: bool,
}

impl EgressPolicy {
    /// From `PAYCENTER_ALLOW_PRIVATE_EGRESS` (`1` or `true` allows private addresses).
    pub fn from_env() -> EgressPolicy {
        let allow_private = std::env::var("PAYCENTER_ALLOW_PRIVATE_EGRESS")
            .is_ok_and(|value| value == "1" || value.eq_ignore_ascii_case("true"));
        EgressPolicy { allow_private }
    }
}

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EgressRefused(pub String);

/// The kind of an address, as the rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddressClass {
    Public,
    /// Loopback, private (RFC 1918, unique local) and shared (100.64.0.0/10) ranges.
    Private,
    /// Never reachable: why.
    Forbidden(&'static str),
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let octets = ip.octets();
    if ip.is_unspecified() || octets[0] == 0 {
        return AddressClass::Forbidden("an unspecified address");
    }
    if ip.is_link_local() {
        return AddressClass::Forbidden("a link-local address");
    }
    if ip.is_multicast() || octets[0] >= 240 {
        return AddressClass::Forbidden("a multicast, reserved or broadcast address");
    }
    let shared = octets[0] == 100 && (64..128).contains(&octets[1]);
    if ip.is_loopback() || ip.is_private() || shared {
        return AddressClass::Private;
    }
    AddressClass::Public
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        return AddressClass::Forbidden("an unspecified address");
    }
    if first & 0xffc0 == 0xfe80 {
        return AddressClass::Forbidden("a link-local address");
    }
    if ip.is_multicast() {
        return AddressClass::Forbidden("a multicast address");
    }
    if ip.is_loopback() || first & 0xfe00 == 0xfc00 {
        return AddressClass::Private;
    }
    AddressClass::Public
}

/// The rule for one address.
pub fn check_ip(ip: IpAddr, policy: EgressPolicy) -> Result<(), EgressRefused> {
    let class = match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    };
    match class {
        AddressClass::Public => Ok(()),
        AddressClass::Private if policy.allow_private => Ok(()),
        AddressClass::Private => Err(EgressRefused(format!(
            "{ip} is a loopback or private address (allowed only with PAYCENTER_ALLOW_PRIVATE_EGRESS=1)"
        ))),
        AddressClass::Forbidden(what) => Err(EgressRefused(format!("{ip} is {what}"))),
    }
}

/// The most characters a destination URL may have.
pub const MAX_URL_CHARS: usize = 2_048;

/// Checks a destination URL when it is registered: `http` or `https`, a host, no user name or
/// password, and a host that is not a forbidden address literal (`localhost` counts as
/// loopback). Names are resolved and checked again at every connection.
pub fn check_url(text: &str, policy: EgressPolicy) -> Result<url::Url, EgressRefused> {
    if text.chars().count() > MAX_URL_CHARS {
        return Err(EgressRefused(format!(
            "the URL is longer than {MAX_URL_CHARS} characters"
        )));
    }
    let url = url::Url::parse(text)
        .map_err(|error| EgressRefused(format!("not an absolute URL: {error}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(EgressRefused("the URL must be http or https".to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EgressRefused(
            "the URL must not carry a user name or password".to_owned(),
        ));
    }
    match url.host() {
        None => Err(EgressRefused("the URL has no host".to_owned())),
        Some(url::Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip), policy).map(|()| url),
        Some(url::Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip), policy).map(|()| url),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                check_ip(IpAddr::V4(Ipv4Addr::LOCALHOST), policy)?;
            }
            Ok(url)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: EgressPolicy = EgressPolicy {
        allow_private: false,
    };
    const OPEN: EgressPolicy = EgressPolicy {
        allow_private: true,
    };

    #[test]
    fn forbidden_addresses_are_refused_whatever_the_policy() {
        for url in [
            "http://169.254.169.254/latest",
            "http://[fe80::1]/x",
            "http://224.0.0.1/",
            "http://0.0.0.0:80/",
            "http://[::]/",
            "http://255.255.255.255/",
            "http://[::ffff:169.254.169.254]/",
        ] {
            assert!(check_url(url, OPEN).is_err(), "{url}");
            assert!(check_url(url, STRICT).is_err(), "{url}");
        }
    }

    #[test]
    fn private_addresses_need_the_operator() {
        for url in [
            "http://127.0.0.1:9000/hooks",
            "http://10.1.2.3/",
            "http://192.168.1.1/",
            "http://[::1]/",
            "http://localhost:8080/",
            "https://[fd00::1]/",
        ] {
            assert!(check_url(url, STRICT).is_err(), "{url}");
            assert!(check_url(url, OPEN).is_ok(), "{url}");
        }
        assert!(check_url("https://api.example.com/hooks", STRICT).is_ok());
    }

    #[test]
    fn only_plain_web_urls() {
        for url in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "https://user:pw@example.com/",
            "hooks",
        ] {
            assert!(check_url(url, OPEN).is_err(), "{url}");
        }
    }
}
