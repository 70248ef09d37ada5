//! Adding, removing and listing a VIP on an interface through rtnetlink, in the
//! network namespace of the thread that opened the [`AddrHandle`]. Idempotent both
//! ways. Announcing the address is `announce`'s job, fencing it is `fence`'s.

use std::net::IpAddr;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage};
use tokio::task::JoinHandle;

use crate::{Error, Result, VipAddress};

const EEXIST: i32 = libc::EEXIST;
const EADDRNOTAVAIL: i32 = libc::EADDRNOTAVAIL;
const ENODEV: i32 = libc::ENODEV;

/// A netlink route socket and its driver task. The socket belongs to the network
/// namespace of the thread that called [`AddrHandle::new`], whatever thread later
/// uses it.
pub struct AddrHandle {
    handle: rtnetlink::Handle,
    driver: JoinHandle<()>,
}

impl AddrHandle {
    /// Opens the socket; must be called inside a tokio runtime.
    pub fn new() -> Result<Self> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| Error::io("opening rtnetlink socket", e))?;
        let driver = tokio::spawn(conn);
        Ok(Self { handle, driver })
    }

    /// Adds `vip` to `ifname`. An address already there is fine. IPv6 addresses are
    /// added with `nodad` so they are usable at once.
    pub async fn add(&self, ifname: &str, vip: &VipAddress) -> Result<()> {
        let index = if_index(ifname)?;
        let mut req = self.handle.address().add(index, vip.ip(), vip.prefix());
        if vip.ip().is_ipv6() {
            let msg = req.message_mut();
            msg.header.flags |= AddressHeaderFlags::Nodad;
            msg.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if netlink_code(&e) == Some(EEXIST) => Ok(()),
            Err(e) if netlink_code(&e) == Some(ENODEV) => Err(Error::NoSuchInterface(ifname.to_string())),
            Err(source) => Err(Error::Netlink { op: "address add", source }),
        }
    }

    /// Removes `vip` (whatever its prefix) from `ifname`. Returns whether an address
    /// was removed; a missing address or interface is not an error, since "not
    /// configured" is exactly what the caller wants.
    pub async fn remove(&self, ifname: &str, vip: &VipAddress) -> Result<bool> {
        let index = match if_index(ifname) {
            Ok(i) => i,
            Err(Error::NoSuchInterface(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let mut removed = false;
        for msg in self.messages(index, Some(vip.ip())).await? {
            match self.handle.address().del(msg).execute().await {
                Ok(()) => removed = true,
                Err(e) if netlink_code(&e) == Some(EADDRNOTAVAIL) => {}
                Err(source) => return Err(Error::Netlink { op: "address del", source }),
            }
        }
        Ok(removed)
    }

    /// The addresses configured on `ifname`, with their prefixes.
    pub async fn list(&self, ifname: &str) -> Result<Vec<VipAddress>> {
        let index = if_index(ifname)?;
        let mut out = Vec::new();
        for msg in self.messages(index, None).await? {
            let ip = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let ip = ip.or_else(|| {
                msg.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            });
            if let Some(ip) = ip
                && let Ok(v) = VipAddress::new(ip, msg.header.prefix_len)
            {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Whether `vip`'s IP is configured on `ifname` (any prefix).
    pub async fn contains(&self, ifname: &str, vip: &VipAddress) -> Result<bool> {
        let index = if_index(ifname)?;
        Ok(!self.messages(index, Some(vip.ip())).await?.is_empty())
    }

    async fn messages(&self, index: u32, ip: Option<IpAddr>) -> Result<Vec<AddressMessage>> {
        let mut req = self.handle.address().get().set_link_index_filter(index);
        if let Some(ip) = ip {
            req = req.set_address_filter(ip);
        }
        req.execute().try_collect().await.map_err(|source| Error::Netlink { op: "address dump", source })
    }
}

impl Drop for AddrHandle {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Interface index in the calling thread's network namespace.
pub fn if_index(ifname: &str) -> Result<u32> {
    nix::net::if_::if_nametoindex(ifname).map_err(|_| Error::NoSuchInterface(ifname.to_string()))
}

fn netlink_code(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| c.get().abs()),
        _ => None,
    }
}
