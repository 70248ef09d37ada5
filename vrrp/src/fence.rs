//! Kernel fencing of one VIP with nftables, so that a frozen owner stops answering
//! on its own. The right to answer is an element of a set with a millisecond
//! timeout; rules in an `arp` table and an `inet` table drop ARP and IP traffic for
//! the VIP unless the element is present. The owner re-adds it on every renewal with
//! the lease's remaining time, so the kernel's expiry equals the lease's end even if
//! the process never runs again. Driven through the `nft` CLI, in the network
//! namespace of the calling thread. Deciding when to refresh is `owner`'s job.

use std::net::IpAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::{Error, Result};

/// The nftables tables guarding one VIP: `arp <name>` (IPv4 only) and
/// `inet <name>`, each with a set `lease` holding the VIP while the lease is fresh.
#[derive(Debug, Clone)]
pub struct Fence {
    vip: IpAddr,
    table: String,
    nft: String,
}

impl Fence {
    /// `instance` names this node's fences (letters, digits, `_`; e.g. `quorumlb`);
    /// the table name adds the VIP, so several VIPs and instances never share tables.
    pub fn new(instance: &str, vip: IpAddr) -> Result<Self> {
        if instance.is_empty()
            || instance.len() > 40
            || !instance.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || instance.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(Error::InvalidName {
                name: instance.to_string(),
                reason: "fence instance must be 1-40 of [A-Za-z0-9_], not starting with a digit",
            });
        }
        let ip = vip.to_string().replace(['.', ':'], "_");
        Ok(Self { vip, table: format!("{instance}_vip_{ip}"), nft: "nft".to_string() })
    }

    /// Use another `nft` binary (tests, unusual installs).
    pub fn with_nft_binary(mut self, path: impl Into<String>) -> Self {
        self.nft = path.into();
        self
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    pub fn vip(&self) -> IpAddr {
        self.vip
    }

    /// Creates (or atomically replaces) the tables with an empty lease set: from
    /// here on the VIP is fenced until [`Self::refresh`].
    pub async fn install(&self) -> Result<()> {
        self.run(&self.install_script()).await
    }

    /// Lets the VIP answer for `ttl` more (rounded down to whole milliseconds; a
    /// zero ttl fences at once). Replaces any earlier timeout in one transaction:
    /// older kernels keep the old timeout when an existing element is re-added.
    pub async fn refresh(&self, ttl: Duration) -> Result<()> {
        self.run(&self.refresh_script(ttl)).await
    }

    /// Fences the VIP now (empties the lease sets), keeping the tables.
    pub async fn revoke(&self) -> Result<()> {
        self.run(&self.refresh_script(Duration::ZERO)).await
    }

    /// Deletes exactly this fence's tables; missing tables are fine.
    pub async fn remove(&self) -> Result<()> {
        // `add table` first makes the delete succeed when the table is absent.
        let mut s = String::new();
        for family in self.families() {
            s.push_str(&format!("add table {family} {t}\ndelete table {family} {t}\n", t = self.table));
        }
        self.run(&s).await
    }

    /// Planned handover, first step: drop new TCP connection attempts (a SYN
    /// without ACK) to the VIP while the address is still here, so the connections
    /// the node already has can be closed gracefully and none replace them. Nothing
    /// is answered (no RST): the client retransmits its SYN about a second later,
    /// when the next owner answers. Established connections are not touched. Lives
    /// in its own table `inet <instance>_drain_<ip>` (see [`Self::drain_table_name`])
    /// so installing or removing the lease fence never disturbs it.
    pub async fn block_new_connections(&self) -> Result<()> {
        self.run(&self.block_script()).await
    }

    /// Removes the SYN block of [`Self::block_new_connections`]; a missing table is fine.
    pub async fn unblock_new_connections(&self) -> Result<()> {
        let t = self.drain_table_name();
        self.run(&format!("add table inet {t}\ndelete table inet {t}\n")).await
    }

    /// `<instance>_drain_<ip>`: the table of the SYN block.
    pub fn drain_table_name(&self) -> String {
        self.table.replacen("_vip_", "_drain_", 1)
    }

    pub(crate) fn block_script(&self) -> String {
        let t = self.drain_table_name();
        let family = if self.vip.is_ipv4() { "ip" } else { "ip6" };
        // Priority below the fence's raw chain, so the drop happens whatever the
        // lease set holds; `tcp flags & (syn | ack) == syn` is a new attempt only.
        format!(
            "add table inet {t}\ndelete table inet {t}\n\
             table inet {t} {{
  chain input {{
    type filter hook input priority raw - 10; policy accept;
    {family} daddr {vip} tcp flags & (syn | ack) == syn drop
  }}
}}
",
            vip = self.vip
        )
    }

    /// Whether the lease element is present right now (for tests and status).
    pub async fn is_open(&self) -> Result<bool> {
        let out = Command::new(&self.nft)
            .args(["list", "set", "inet", &self.table, "lease"])
            .output()
            .await
            .map_err(|e| Error::io(format!("running {}", self.nft), e))?;
        if !out.status.success() {
            return Err(Error::Nft {
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.contains("elements") && text.contains(&self.vip.to_string()))
    }

    fn families(&self) -> &'static [&'static str] {
        if self.vip.is_ipv4() { &["arp", "inet"] } else { &["inet"] }
    }

    pub(crate) fn install_script(&self) -> String {
        let t = &self.table;
        let vip = self.vip;
        let mut s = String::new();
        // add + delete + define in one transaction = atomic create-or-replace
        for family in self.families() {
            s.push_str(&format!("add table {family} {t}\ndelete table {family} {t}\n"));
        }
        match vip {
            IpAddr::V4(_) => {
                s.push_str(&format!(
                    "table arp {t} {{
  set lease {{ type ipv4_addr; flags timeout; }}
  chain input {{
    type filter hook input priority filter; policy accept;
    arp operation request arp daddr ip {vip} arp saddr ip != {vip} arp daddr ip != @lease drop
  }}
  chain output {{
    type filter hook output priority filter; policy accept;
    arp saddr ip {vip} arp saddr ip != @lease drop
  }}
}}
table inet {t} {{
  set lease {{ type ipv4_addr; flags timeout; }}
  chain input {{
    type filter hook input priority raw; policy accept;
    ip daddr {vip} ip daddr != @lease drop
  }}
  chain output {{
    type filter hook output priority raw; policy accept;
    ip saddr {vip} ip saddr != @lease drop
  }}
}}
"
                ));
            }
            IpAddr::V6(_) => {
                // Solicited NAs for our own address are sent from it, so the output
                // rule also silences neighbour discovery for the VIP.
                s.push_str(&format!(
                    "table inet {t} {{
  set lease {{ type ipv6_addr; flags timeout; }}
  chain input {{
    type filter hook input priority raw; policy accept;
    ip6 daddr {vip} ip6 daddr != @lease drop
  }}
  chain output {{
    type filter hook output priority raw; policy accept;
    ip6 saddr {vip} ip6 saddr != @lease drop
  }}
}}
"
                ));
            }
        }
        s
    }

    pub(crate) fn refresh_script(&self, ttl: Duration) -> String {
        let ms = ttl.as_millis();
        let mut s = String::new();
        for family in self.families() {
            s.push_str(&format!("flush set {family} {} lease\n", self.table));
            if ms > 0 {
                s.push_str(&format!("add element {family} {} lease {{ {} timeout {ms}ms }}\n", self.table, self.vip));
            }
        }
        s
    }

    /// Runs `script` as one `nft` transaction. The script is passed as an argument,
    /// not through stdin: once spawned, `nft` needs nothing more from this process,
    /// so a stall of this process (SIGSTOP, a paused VM) right after the spawn can no
    /// longer hold back a refresh and have it applied, with a TTL computed before the
    /// stall, long after the lease it was computed for has ended.
    async fn run(&self, script: &str) -> Result<()> {
        let out = Command::new(&self.nft)
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| Error::io(format!("running {}", self.nft), e))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Nft {
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_per_instance_and_vip() {
        let f = Fence::new("qlb", "10.0.0.100".parse().unwrap()).unwrap();
        assert_eq!(f.table_name(), "qlb_vip_10_0_0_100");
        let f = Fence::new("qlb", "fd00::1".parse().unwrap()).unwrap();
        assert_eq!(f.table_name(), "qlb_vip_fd00__1");
        for bad in ["", "a-b", "a b", "1abc", "x;y"] {
            assert!(Fence::new(bad, "10.0.0.1".parse().unwrap()).is_err(), "{bad}");
        }
    }

    #[test]
    fn refresh_replaces_the_element_in_one_script() {
        let f = Fence::new("qlb", "10.0.0.100".parse().unwrap()).unwrap();
        let s = f.refresh_script(Duration::from_micros(250_900));
        assert_eq!(
            s,
            "flush set arp qlb_vip_10_0_0_100 lease\n\
             add element arp qlb_vip_10_0_0_100 lease { 10.0.0.100 timeout 250ms }\n\
             flush set inet qlb_vip_10_0_0_100 lease\n\
             add element inet qlb_vip_10_0_0_100 lease { 10.0.0.100 timeout 250ms }\n"
        );
        let revoke = f.refresh_script(Duration::from_micros(900));
        assert!(!revoke.contains("add element"));
        let f6 = Fence::new("qlb", "fd00::1".parse().unwrap()).unwrap();
        assert!(!f6.install_script().contains("table arp"));
        assert!(!f6.refresh_script(Duration::from_secs(1)).contains(" arp "));
    }

    #[test]
    fn the_syn_block_has_its_own_table_and_drops_only_new_attempts() {
        let f = Fence::new("qlb", "10.0.0.100".parse().unwrap()).unwrap();
        assert_eq!(f.drain_table_name(), "qlb_drain_10_0_0_100");
        let s = f.block_script();
        assert!(s.starts_with("add table inet qlb_drain_10_0_0_100\ndelete table inet qlb_drain_10_0_0_100\n"));
        assert!(s.contains("ip daddr 10.0.0.100 tcp flags & (syn | ack) == syn drop"), "{s}");
        assert!(!s.contains(f.table_name()), "must not touch the lease fence's table");
        let f6 = Fence::new("qlb", "fd00::1".parse().unwrap()).unwrap();
        assert!(f6.block_script().contains("ip6 daddr fd00::1 tcp flags"));
    }
}
