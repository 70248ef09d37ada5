//! The short chaos suite against a real lab: `deploy/lab/up.sh` builds an active/standby
//! pair + witness, three backends and a client in network namespaces of its own
//! (unique prefix, private addresses, nothing in the root namespace), then
//! `deploy/chaos/run-all.sh --short` kills, stops (SIGTERM), freezes and cuts off the
//! VIP owner under load, restarts the witness, and kills the preferred node with
//! preempt on and off. The invariants are the suite's: never two VIP owners, no
//! committed config lost, no sticky session broken, the VIP moves off a failed owner
//! and the client's neighbour entry follows it, no failed HTTP request on a planned
//! switchover, a frozen owner silent on ARP before the standby takes over, failback
//! as the preempt setting says. `deploy/lab/down.sh` always runs at the end, even on failure.
//! Needs root and iproute2/nftables/arping/python3; otherwise it says SKIPPED loudly.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn skip(why: &str) {
    // The raw stderr handle is not captured by the harness: the skip shows on a pass.
    let _ = writeln!(std::io::stderr(), "\n!!!!! SKIPPED: chaos_short: {why} !!!!!\n");
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs down.sh for this lab when dropped, so a failing assertion still cleans up.
struct Lab {
    root: PathBuf,
    env: Vec<(String, String)>,
}

impl Lab {
    fn cmd(&self, script: &str) -> Command {
        let mut c = Command::new("timeout");
        // Every step is bounded; run-all's own scenarios are bounded too.
        c.args(["--kill-after=10", "900"]).arg(self.root.join(script)).envs(self.env.iter().cloned());
        c
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.cmd("deploy/lab/down.sh").output();
        let _ = writeln!(std::io::stderr(), "chaos_short: down.sh: {:?}", out.map(|o| o.status));
    }
}

#[test]
fn short_chaos_suite_keeps_every_invariant() {
    if !nix::unistd::Uid::effective().is_root() {
        return skip("not root (the lab creates network namespaces)");
    }
    for tool in ["ip", "nft", "tc", "arping", "python3", "timeout"] {
        if !have(tool) {
            return skip(&format!("{tool} not installed (tests/run-all.sh installs it as root)"));
        }
    }
    let pid = std::process::id();
    let probe = format!("qltprobe{pid}");
    let ok = Command::new("ip").args(["netns", "add", &probe]).status().is_ok_and(|s| s.success());
    let _ = Command::new("ip").args(["netns", "del", &probe]).status();
    if !ok {
        return skip("cannot create a network namespace here");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let bin = tests::process::quorumlb_bin();
    let lab = Lab {
        root: repo_root(),
        env: vec![
            ("QLAB_PREFIX".into(), format!("qlt{pid}")),
            ("QLAB_DIR".into(), dir.path().join("lab").display().to_string()),
            ("QUORUMLB_BIN".into(), bin.display().to_string()),
        ],
    };

    let up = lab.cmd("deploy/lab/up.sh").stdout(Stdio::inherit()).stderr(Stdio::inherit()).status().expect("up.sh");
    assert!(up.success(), "deploy/lab/up.sh failed: {up:?} (logs in {})", dir.path().display());

    let out = lab.cmd("deploy/chaos/run-all.sh").arg("--short").stderr(Stdio::inherit()).output().expect("run-all.sh");
    let table = String::from_utf8_lossy(&out.stdout);
    let _ = writeln!(std::io::stderr(), "{table}");
    if !out.status.success() {
        // Keep the evidence: copy the lab's logs and runs out of the temp dir first.
        let keep = std::env::temp_dir().join(format!("chaos_short-{pid}"));
        let _ = Command::new("cp").arg("-a").arg(dir.path().join("lab")).arg(&keep).status();
        drop(lab);
        panic!("chaos invariants broke (exit {:?}); logs kept in {}:\n{table}", out.status, keep.display());
    }
    assert!(table.contains("ALL INVARIANTS HELD"), "unexpected run-all output:\n{table}");
}
