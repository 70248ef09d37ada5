//! Test lab: two network namespaces joined by one veth pair, created with unique
//! names (test PID + test number) and removed by exact name when the lab is dropped,
//! even if the test panics. Nothing here routes to the host.

#![allow(dead_code)]

use std::fs::File;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};

/// Two namespaces `a` and `b`, with `if_a` in `a` and `if_b` in `b` on one link.
pub struct Lab {
    pub a: String,
    pub b: String,
    pub if_a: String,
    pub if_b: String,
    created: Vec<String>,
}

pub const A_V4: &str = "198.51.100.1/24";
pub const B_V4: &str = "198.51.100.2/24";
pub const A_V6: &str = "2001:db8::1/64";
pub const B_V6: &str = "2001:db8::2/64";

fn skip(why: &str) -> Option<Lab> {
    // Written to the raw stderr handle, which the test harness does not capture, so
    // a skip shows even when the test passes.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
    None
}

pub fn have(binary: &str) -> bool {
    Command::new(binary).arg("--version").output().is_ok() || Command::new(binary).arg("-V").output().is_ok()
}

/// Runs a command and returns its output; a command that cannot start is a test failure.
pub fn run(args: &[&str]) -> Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Runs a command that must succeed.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Lab {
    /// Builds the lab for test number `n`, or prints SKIPPED and returns None when
    /// this environment cannot (not root, no `ip netns`, missing tools).
    pub fn new(n: u32, tools: &[&str]) -> Option<Lab> {
        if !nix::unistd::geteuid().is_root() {
            return skip("needs root for network namespaces");
        }
        for t in tools {
            if !have(t) {
                return skip(&format!("{t} not installed"));
            }
        }
        let pid = std::process::id();
        let base = format!("qv{pid}{n}");
        let mut lab = Lab {
            a: format!("{base}a"),
            b: format!("{base}b"),
            if_a: format!("{base}a"),
            if_b: format!("{base}b"),
            created: Vec::new(),
        };
        assert!(lab.if_a.len() <= 15, "interface name too long");
        for ns in [lab.a.clone(), lab.b.clone()] {
            let out = run(&["ip", "netns", "add", &ns]);
            if !out.status.success() {
                return skip(&format!("ip netns add failed: {}", String::from_utf8_lossy(&out.stderr)));
            }
            lab.created.push(ns);
        }
        ok(&[
            "ip", "link", "add", &lab.if_a, "netns", &lab.a, "type", "veth", "peer", "name", &lab.if_b, "netns", &lab.b,
        ]);
        for (ns, ifname, v4, v6) in [(&lab.a, &lab.if_a, A_V4, A_V6), (&lab.b, &lab.if_b, B_V4, B_V6)] {
            ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            ok(&["ip", "-n", ns, "addr", "add", v4, "dev", ifname]);
            ok(&["ip", "-n", ns, "addr", "add", v6, "dev", ifname, "nodad"]);
            ok(&["ip", "-n", ns, "link", "set", ifname, "up"]);
        }
        Some(lab)
    }

    /// Waits (at most 5 s) until no address on either end is tentative: a peer whose
    /// link-local address is still in duplicate address detection ignores
    /// neighbour advertisements, unlike a peer that has been on the LAN for a while.
    pub fn wait_ipv6_ready(&self) {
        let ready = wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
            [(&self.a, &self.if_a), (&self.b, &self.if_b)].iter().all(|(ns, ifname)| {
                !ok(&["ip", "-n", ns, "-6", "addr", "show", "dev", ifname, "tentative"]).contains("inet6")
            })
        });
        assert!(ready.is_some(), "IPv6 never became ready in the lab");
    }

    /// MAC address of `ifname` in namespace `ns`.
    pub fn mac(&self, ns: &str, ifname: &str) -> String {
        let out = ok(&["ip", "-n", ns, "-o", "link", "show", "dev", ifname]);
        let mut words = out.split_whitespace();
        words
            .find(|w| *w == "link/ether")
            .and_then(|_| words.next())
            .unwrap_or_else(|| panic!("no MAC in {out}"))
            .to_string()
    }

    /// The neighbour entry for `ip` in `ns` (empty when none).
    pub fn neigh(&self, ns: &str, ifname: &str, ip: &str) -> String {
        ok(&["ip", "-n", ns, "neigh", "show", ip, "dev", ifname])
    }

    /// Does `ip` answer an ARP request sent from namespace `b` (one probe, 1 s)?
    pub fn arp_answers(&self, ip: &str) -> bool {
        run(&["ip", "netns", "exec", &self.b, "arping", "-c", "1", "-w", "1", "-I", &self.if_b, ip]).status.success()
    }

    /// Does `ip` answer one ping from namespace `b` (1 s)?
    pub fn ping_answers(&self, ip: &str) -> bool {
        let mut args = vec!["ip", "netns", "exec", &self.b, "ping", "-n", "-c", "1", "-W", "1"];
        if ip.contains(':') {
            args.push("-6");
        }
        args.push(ip);
        run(&args).status.success()
    }

    /// Runs `f` on a thread that has entered namespace `ns`, with a current-thread
    /// tokio runtime, so sockets, netlink handles and child processes it creates
    /// belong to that namespace.
    pub fn in_ns<T: Send, F: Future<Output = T>>(&self, ns: &str, f: impl FnOnce() -> F + Send) -> T {
        let path = format!("/run/netns/{ns}");
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(&path).unwrap();
                setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(f())
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.created {
            // deleting the namespace also deletes the veth end inside it
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Polls `cond` every `step` until it holds or `limit` passes; returns the time it
/// took, or None.
pub fn wait_for(limit: Duration, step: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    for _ in 0..100_000 {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(step);
    }
    None
}
