//! The names shared by every module: a VIP as address/prefix and the node id type.
//! Parsing and display only; no OS calls.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// A cluster node id (openraft's default `u64`).
pub type NodeId = u64;

/// A virtual IP with its prefix length, written `10.0.0.100/24` or `fd00::100/64`.
/// A missing prefix means a host address (/32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VipAddress {
    ip: IpAddr,
    prefix: u8,
}

impl VipAddress {
    pub fn new(ip: IpAddr, prefix: u8) -> Result<Self, Error> {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(Error::InvalidAddress {
                input: format!("{ip}/{prefix}"),
                reason: "prefix length too long for the address family",
            });
        }
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(Error::InvalidAddress {
                input: format!("{ip}/{prefix}"),
                reason: "a VIP must be a unicast address",
            });
        }
        Ok(VipAddress { ip, prefix })
    }

    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl FromStr for VipAddress {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |reason| Error::InvalidAddress { input: s.to_string(), reason };
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (s, None),
        };
        let ip: IpAddr = ip.trim().parse().map_err(|_| bad("not an IP address"))?;
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| bad("prefix length is not a number"))?,
            None if ip.is_ipv4() => 32,
            None => 128,
        };
        VipAddress::new(ip, prefix)
    }
}

impl fmt::Display for VipAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

impl TryFrom<String> for VipAddress {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<VipAddress> for String {
    fn from(v: VipAddress) -> String {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v4_and_v6_with_and_without_prefix() {
        let v: VipAddress = "10.0.0.100/24".parse().unwrap();
        assert_eq!(v.ip(), "10.0.0.100".parse::<IpAddr>().unwrap());
        assert_eq!(v.prefix(), 24);
        assert_eq!(v.to_string(), "10.0.0.100/24");
        let v: VipAddress = "fd00::100".parse().unwrap();
        assert_eq!(v.prefix(), 128);
        assert_eq!(v.to_string(), "fd00::100/128");
    }

    #[test]
    fn rejects_bad_input() {
        for bad in ["", "10.0.0.1/33", "fd00::1/129", "x/24", "10.0.0.1/x", "0.0.0.0/0", "224.0.0.1/32"] {
            assert!(bad.parse::<VipAddress>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn serde_uses_the_string_form() {
        use serde::de::IntoDeserializer;
        use serde::de::value::{Error as DeErr, StrDeserializer};
        let de: StrDeserializer<DeErr> = "10.1.2.3/16".into_deserializer();
        assert_eq!(VipAddress::deserialize(de).unwrap().to_string(), "10.1.2.3/16");
        let de: StrDeserializer<DeErr> = "10.1.2.3/40".into_deserializer();
        assert!(VipAddress::deserialize(de).is_err());
    }
}
