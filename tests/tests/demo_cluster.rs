//! `quorumlb demo` is the appliance: three real nodes on 127.0.0.1-3 serving one
//! replicated config, an admin panel that accepts the printed one-time password,
//! and a clean stop (children gone by PID, temporary directory removed).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tests::client::{self, get, send};
use tests::{free_port, quorumlb_bin};

/// Reads the demo's stdout on a thread; lines arrive on the channel.
fn lines(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Stops the demo by its PID if the test ends early (SIGTERM lets it stop its nodes).
struct DemoGuard(std::process::Child);

impl Drop for DemoGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            for _ in 0..200 {
                if !matches!(self.0.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn alive(pid: u32) -> bool {
    // A reaped child has no /proc entry; a zombie would still show "Z".
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_a_three_node_cluster_with_the_admin_panel_and_stops_cleanly() {
    let (http, admin, cluster) = (free_port(), free_port(), free_port());
    let demo = Command::new(quorumlb_bin())
        .args(["demo", "--listen", &format!("127.0.0.1:{http}")])
        .args(["--admin-port", &admin.to_string(), "--cluster-port", &cluster.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start demo");
    let mut demo = DemoGuard(demo);
    let rx = lines(demo.0.stdout.take().expect("stdout"));
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut password = None;
    let mut complete = false;
    while !complete && Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => {
                if let Some(rest) = line.trim().strip_prefix("Password:") {
                    password = rest.split_whitespace().next().map(str::to_string);
                }
                complete = line.starts_with("Ctrl-C to stop");
                out.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let printed = out.join("\n");
    let Some(password) = password.filter(|_| complete) else {
        panic!("demo did not print its instructions within 90 s:\n{printed}");
    };
    let pids: Vec<u32> = printed
        .split(['(', ')', ','])
        .filter_map(|p| {
            p.trim().split_once('=').and_then(|(name, pid)| name.starts_with("lb").then(|| pid.parse().ok())?)
        })
        .collect();
    assert_eq!(pids.len(), 3, "three node PIDs printed:\n{printed}");
    assert!(printed.contains("VIP handling is off"), "{printed}");
    let dir = printed.lines().find_map(|l| l.split("Logs and data: ").nth(1)).map(str::to_string).expect("dir");

    // Every node serves the same replicated config.
    let c = client::http1();
    for n in 1..=3 {
        let r = get(&c, &format!("http://127.0.0.{n}:{http}/")).await.expect("get through the node");
        assert!(r.text().starts_with("hello from backend-"), "node {n}: {}", r.text());
    }

    // The printed one-time password logs in; the panel lists all three nodes.
    let login = Request::post(format!("http://127.0.0.2:{admin}/api/v1/session"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::json!({"username": "admin", "password": password}).to_string())))
        .unwrap();
    let r = send(&c, login).await.expect("login");
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = r.header("set-cookie").expect("cookie").split(';').next().unwrap().to_string();
    let mut view = serde_json::Value::Null;
    for _ in 0..50 {
        let r = client::get_with(&c, &format!("http://127.0.0.2:{admin}/api/v1/cluster"), &[("cookie", &cookie)])
            .await
            .expect("cluster");
        view = serde_json::from_slice(&r.body).unwrap_or_default();
        if view["nodes"].as_array().is_some_and(|n| n.len() == 3) && view["leader"].is_u64() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(view["nodes"].as_array().map(|n| n.len()), Some(3), "{view}");
    let root = get(&c, &format!("http://127.0.0.1:{admin}/")).await.expect("panel");
    let login_page = match root.header("location") {
        Some(loc) if root.status == 303 => format!("http://127.0.0.1:{admin}{loc}"),
        _ => format!("http://127.0.0.1:{admin}/"),
    };
    let page = get(&c, &login_page).await.expect("panel page");
    assert_eq!(page.status, 200, "{login_page}");
    assert!(page.text().contains("<html"), "the panel page is served");

    // SIGTERM: the demo stops its nodes by PID and removes its directory.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(demo.0.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .expect("signal demo");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = demo.0.try_wait().expect("wait") {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for pid in &pids {
        if alive(*pid) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    }
    assert!(status.is_some_and(|s| s.success()), "demo did not exit cleanly within 30 s: {status:?}");
    assert!(pids.iter().all(|p| !alive(*p)), "demo nodes left running: {pids:?}");
    assert!(!std::path::Path::new(&dir).exists(), "demo directory {dir} left behind");
}
