//! Telling the segment who has a VIP now: gratuitous ARP (IPv4) and unsolicited
//! neighbour advertisements (IPv6) sent with a pnet datalink channel, plus the
//! owner interface's ARP sysctls. When and how often to announce is `owner`'s call.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use pnet::datalink::{self, Channel, DataLinkSender, NetworkInterface};
use pnet::packet::icmpv6::{self, Icmpv6Packet};
use pnet::util::MacAddr;

use crate::{Error, Result};

const BROADCAST: [u8; 6] = [0xff; 6];
/// Ethernet address of ff02::1 (all nodes).
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Length of an Ethernet frame carrying an ARP packet (without padding).
pub const GARP_LEN: usize = 14 + 28;
/// Length of an Ethernet frame carrying an unsolicited NA with a target link-layer
/// address option.
pub const NA_LEN: usize = 14 + 40 + 32;

/// Which of the two gratuitous ARP forms Linux accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GarpKind {
    /// ARP reply, sender IP = target IP = VIP, target MAC = sender MAC.
    Reply,
    /// ARP request, sender IP = target IP = VIP, target MAC zero.
    Request,
}

/// A gratuitous ARP frame for `ip` from `mac`, broadcast.
pub fn garp_frame(mac: [u8; 6], ip: Ipv4Addr, kind: GarpKind) -> [u8; GARP_LEN] {
    let mut f = [0u8; GARP_LEN];
    f[0..6].copy_from_slice(&BROADCAST);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let arp = &mut f[14..];
    arp[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    arp[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    arp[4] = 6;
    arp[5] = 4;
    let (op, target_mac) = match kind {
        GarpKind::Reply => (2u16, mac),
        GarpKind::Request => (1u16, [0u8; 6]),
    };
    arp[6..8].copy_from_slice(&op.to_be_bytes());
    arp[8..14].copy_from_slice(&mac);
    arp[14..18].copy_from_slice(&ip.octets());
    arp[18..24].copy_from_slice(&target_mac);
    arp[24..28].copy_from_slice(&ip.octets());
    f
}

/// An unsolicited neighbour advertisement for `ip` from `mac` to ff02::1: override
/// flag set, solicited flag clear, hop limit 255, target link-layer address option.
pub fn unsolicited_na_frame(mac: [u8; 6], ip: Ipv6Addr) -> [u8; NA_LEN] {
    let mut f = [0u8; NA_LEN];
    f[0..6].copy_from_slice(&ALL_NODES_MAC);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let (ip6, icmp) = f[14..].split_at_mut(40);
    ip6[0] = 0x60;
    ip6[4..6].copy_from_slice(&32u16.to_be_bytes()); // payload length
    ip6[6] = 58; // ICMPv6
    ip6[7] = 255; // hop limit: receivers drop NDP with anything else
    ip6[8..24].copy_from_slice(&ip.octets());
    ip6[24..40].copy_from_slice(&ALL_NODES.octets());
    icmp[0] = 136; // neighbour advertisement
    icmp[4] = 0x20; // override
    icmp[8..24].copy_from_slice(&ip.octets());
    icmp[24] = 2; // target link-layer address
    icmp[25] = 1; // length in units of 8 bytes
    icmp[26..32].copy_from_slice(&mac);
    let sum = Icmpv6Packet::new(icmp).map(|p| icmpv6::checksum(&p, &ip, &ALL_NODES));
    if let Some(sum) = sum {
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    f
}

/// A datalink sender bound to one interface, kept open across an announce burst.
pub struct Announcer {
    ifname: String,
    mac: [u8; 6],
    tx: Box<dyn DataLinkSender>,
}

impl Announcer {
    /// Opens a packet socket on `ifname` in the calling thread's network namespace.
    /// Needs CAP_NET_RAW.
    pub fn open(ifname: &str) -> Result<Self> {
        let iface = find_interface(ifname)?;
        let mac = iface.mac.filter(|m| *m != MacAddr::zero()).ok_or_else(|| Error::NoMac(ifname.to_string()))?;
        let config = datalink::Config { promiscuous: false, ..Default::default() };
        let tx = match datalink::channel(&iface, config) {
            Ok(Channel::Ethernet(tx, _rx)) => tx,
            Ok(_) => {
                return Err(Error::io(
                    format!("opening packet socket on {ifname}"),
                    std::io::Error::other("not an Ethernet channel"),
                ));
            }
            Err(e) => return Err(Error::io(format!("opening packet socket on {ifname}"), e)),
        };
        Ok(Self { ifname: ifname.to_string(), mac: mac.octets(), tx })
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// One round: for IPv4 a GARP reply and a GARP request, for IPv6 one NA.
    pub fn announce_once(&mut self, ip: IpAddr) -> Result<()> {
        match ip {
            IpAddr::V4(v4) => {
                self.send(&garp_frame(self.mac, v4, GarpKind::Reply))?;
                self.send(&garp_frame(self.mac, v4, GarpKind::Request))
            }
            IpAddr::V6(v6) => self.send(&unsolicited_na_frame(self.mac, v6)),
        }
    }

    fn send(&mut self, frame: &[u8]) -> Result<()> {
        match self.tx.send_to(frame, None) {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(Error::io(format!("sending announcement on {}", self.ifname), e)),
            None => Err(Error::io(
                format!("sending announcement on {}", self.ifname),
                std::io::Error::other("send buffer too small"),
            )),
        }
    }
}

/// Announces `ip` on `ifname` `count` times, `interval` apart.
pub async fn announce(ifname: &str, ip: IpAddr, count: u32, interval: Duration) -> Result<()> {
    let mut a = Announcer::open(ifname)?;
    for i in 0..count {
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        a.announce_once(ip)?;
    }
    Ok(())
}

fn find_interface(ifname: &str) -> Result<NetworkInterface> {
    datalink::interfaces()
        .into_iter()
        .find(|i| i.name == ifname)
        .ok_or_else(|| Error::NoSuchInterface(ifname.to_string()))
}

/// On the owner interface: never use the VIP as the source of our own ARP requests
/// (`arp_announce=2`) and answer ARP only for addresses of the receiving interface
/// (`arp_ignore=1`). Writes /proc/sys of the calling thread's network namespace.
pub fn set_owner_arp_sysctls(ifname: &str) -> Result<()> {
    if ifname.is_empty() || ifname.contains('/') || ifname == "." || ifname == ".." {
        return Err(Error::InvalidName { name: ifname.to_string(), reason: "not an interface name" });
    }
    for (key, value) in [("arp_announce", "2"), ("arp_ignore", "1")] {
        let path = format!("/proc/sys/net/ipv4/conf/{ifname}/{key}");
        fs::write(&path, value).map_err(|e| Error::io(format!("writing {path}"), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet::packet::Packet;
    use pnet::packet::arp::{ArpOperations, ArpPacket};
    use pnet::packet::ethernet::{EtherTypes, EthernetPacket};
    use pnet::packet::ipv6::Ipv6Packet;

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];

    #[test]
    fn garp_reply_has_sender_ip_equal_target_ip_and_own_target_mac() {
        let ip: Ipv4Addr = "10.0.0.100".parse().unwrap();
        let f = garp_frame(MAC, ip, GarpKind::Reply);
        let eth = EthernetPacket::new(&f).unwrap();
        assert_eq!(eth.get_destination(), MacAddr::broadcast());
        assert_eq!(eth.get_source().octets(), MAC);
        assert_eq!(eth.get_ethertype(), EtherTypes::Arp);
        let arp = ArpPacket::new(eth.payload()).unwrap();
        assert_eq!(arp.get_operation(), ArpOperations::Reply);
        assert_eq!(arp.get_sender_proto_addr(), ip);
        assert_eq!(arp.get_target_proto_addr(), ip);
        assert_eq!(arp.get_sender_hw_addr().octets(), MAC);
        assert_eq!(arp.get_target_hw_addr().octets(), MAC);
    }

    #[test]
    fn garp_request_form() {
        let ip: Ipv4Addr = "10.0.0.100".parse().unwrap();
        let f = garp_frame(MAC, ip, GarpKind::Request);
        let arp = ArpPacket::new(&f[14..]).unwrap();
        assert_eq!(arp.get_operation(), ArpOperations::Request);
        assert_eq!(arp.get_sender_proto_addr(), ip);
        assert_eq!(arp.get_target_proto_addr(), ip);
        assert_eq!(arp.get_target_hw_addr(), MacAddr::zero());
    }

    #[test]
    fn unsolicited_na_is_well_formed_with_valid_checksum() {
        let ip: Ipv6Addr = "fd00::100".parse().unwrap();
        let f = unsolicited_na_frame(MAC, ip);
        let eth = EthernetPacket::new(&f).unwrap();
        assert_eq!(eth.get_ethertype(), EtherTypes::Ipv6);
        assert_eq!(eth.get_destination().octets(), ALL_NODES_MAC);
        let ip6 = Ipv6Packet::new(eth.payload()).unwrap();
        assert_eq!(ip6.get_hop_limit(), 255);
        assert_eq!(ip6.get_destination(), ALL_NODES);
        assert_eq!(ip6.get_source(), ip);
        assert_eq!(ip6.get_payload_length(), 32);
        let icmp = Icmpv6Packet::new(ip6.payload()).unwrap();
        assert_eq!(icmp.get_icmpv6_type().0, 136);
        assert_eq!(icmpv6::checksum(&icmp, &ip, &ALL_NODES), icmp.get_checksum());
        assert_ne!(icmp.get_checksum(), 0);
        let body = ip6.payload();
        assert_eq!(body[4], 0x20, "override set, solicited clear");
        assert_eq!(&body[8..24], &ip.octets());
        assert_eq!(&body[26..32], &MAC);
    }

    #[test]
    fn sysctl_helper_rejects_path_tricks() {
        for bad in ["", "..", "a/b", "."] {
            assert!(matches!(set_owner_arp_sysctls(bad), Err(Error::InvalidName { .. })));
        }
    }
}
