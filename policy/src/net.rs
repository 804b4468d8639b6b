//! Client networks in CIDR notation, for binding an account to its registered machines.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address block such as `10.1.20.0/24` or `fd00::/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why a network entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The part before `/` is not an IP address.
    #[error("{0:?} is not an IP address")]
    Address(String),
    /// The prefix length is missing, not a number or too long for the address family.
    #[error("prefix length must be 0..={max}")]
    Prefix {
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
    /// Bits are set after the prefix, which usually means a typo in the address or length.
    #[error("host bits are set after the /{prefix} prefix; did you mean {network}?")]
    HostBits {
        /// The prefix length written.
        prefix: u8,
        /// The network the entry most likely meant.
        network: String,
    },
}

impl IpNet {
    /// Makes a network; `None` when the prefix is too long for the address family.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<IpNet> {
        (prefix <= max_prefix(addr)).then_some(IpNet { addr, prefix })
    }

    /// The first address of the block.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The number of leading bits that are fixed.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside the block. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`,
    /// as a dual-stack listener reports IPv4 peers) count as their IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask32(self.prefix);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask128(self.prefix);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for IpNet {
    type Err = NetError;

    /// A bare address means just that address (`/32` or `/128`).
    fn from_str(text: &str) -> Result<IpNet, NetError> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| NetError::Address(addr_text.to_owned()))?;
        let max = max_prefix(addr);
        let prefix = match prefix_text {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max && !prefix.starts_with('+'))
                .ok_or(NetError::Prefix { max })?,
        };
        let network = match addr {
            IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & mask32(prefix)).into()),
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & mask128(prefix)).into()),
        };
        if network != addr {
            return Err(NetError::HostBits {
                prefix,
                network: format!("{network}/{prefix}"),
            });
        }
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    #[test]
    fn contains_v4() {
        let n = net("10.1.20.0/24");
        assert!(n.contains("10.1.20.7".parse().unwrap()));
        assert!(!n.contains("10.1.21.7".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.20.9".parse().unwrap()));
        assert!(!n.contains("fd00::1".parse().unwrap()));
        assert!(net("0.0.0.0/0").contains("8.8.8.8".parse().unwrap()));
        assert!(net("127.0.0.2").contains("127.0.0.2".parse().unwrap()));
        assert!(!net("127.0.0.2/32").contains("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn contains_v6() {
        let n = net("fd00:1::/64");
        assert!(n.contains("fd00:1::5".parse().unwrap()));
        assert!(!n.contains("fd00:2::5".parse().unwrap()));
        assert!(net("::/0").contains("::1".parse().unwrap()));
    }

    #[test]
    fn rejects_bad_entries() {
        assert!(matches!(
            "10.1.20.0/33".parse::<IpNet>(),
            Err(NetError::Prefix { max: 32 })
        ));
        assert!(matches!(
            "10.1.300.0/24".parse::<IpNet>(),
            Err(NetError::Address(_))
        ));
        assert_eq!(
            "10.1.20.5/24".parse::<IpNet>().unwrap_err().to_string(),
            "host bits are set after the /24 prefix; did you mean 10.1.20.0/24?"
        );
        assert!("10.0.0.0/".parse::<IpNet>().is_err());
        assert!("10.0.0.0/+8".parse::<IpNet>().is_err());
    }

    #[test]
    fn displays_as_cidr() {
        assert_eq!(net("127.0.0.1").to_string(), "127.0.0.1/32");
        assert_eq!(net("fd00::/8").to_string(), "fd00::/8");
    }
}
