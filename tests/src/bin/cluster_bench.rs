//! Cluster benchmark (not a test): a real three-node cluster of the `quorumlb`
//! binary on 127.0.0.1 (set `QUORUMLB_BIN` to a release build). Reports
//!   1. sticky entries committed per second: new stick-table entries created by
//!      requests through all three proxies, until every node holds all of them;
//!   2. config change to applied everywhere: a PUT through a follower's admin API
//!      until every proxy serves the new config (polled through the proxies).
//!
//! Everything is bounded in time; loopback only; nodes stopped by PID on exit.
//! Usage: cluster_bench [--entries N] [--changes N] [--out FILE]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tests::client::{self, Http, get, get_with, send};
use tests::cluster::ClusterFiles;
use tests::{NodeProcess, TestBackend};

fn cluster_cfg(default: &TestBackend, sticky: &[&TestBackend]) -> String {
    let mut s = format!(
        "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:1\"\nprotocol = \"http\"\ndefault_pool = \"p\"\n\
         \x20 [[listener.route]]\n  path_prefix = \"/s\"\n  pool = \"s\"\n\n\
         [[pool]]\nname = \"p\"\n  [[pool.backend]]\n  address = \"{}\"\n\n\
         [[pool]]\nname = \"s\"\n  [pool.sticky]\n  mode = \"header\"\n  name = \"X-Client\"\n  ttl_s = 3600\n",
        default.addr
    );
    for b in sticky {
        s.push_str(&format!("  [[pool.backend]]\n  address = \"{}\"\n", b.addr));
    }
    s
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn out_file() -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == "--out").and_then(|i| args.get(i + 1)).cloned()
}

async fn cluster_json(c: &Http, files: &ClusterFiles, id: u64) -> Option<serde_json::Value> {
    let url = format!("http://{}/api/v1/cluster", files.node(id).admin_addr());
    let auth = format!("Bearer {}", files.token);
    let r = tokio::time::timeout(Duration::from_secs(2), get_with(c, &url, &[("authorization", &auth)]))
        .await
        .ok()?
        .ok()?;
    serde_json::from_slice(&r.body).ok()
}

async fn sticky_counts(c: &Http, files: &ClusterFiles) -> Vec<u64> {
    let mut v = Vec::new();
    for n in &files.nodes {
        v.push(cluster_json(c, files, n.id).await.and_then(|j| j["sticky_entries"].as_u64()).unwrap_or(0));
    }
    v
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let entries = arg("--entries", 20_000);
    let changes = arg("--changes", 20);
    let (b1, b2, s1, s2) = (
        TestBackend::start("b1").await,
        TestBackend::start("b2").await,
        TestBackend::start("s1").await,
        TestBackend::start("s2").await,
    );
    let files = ClusterFiles::new(3, 0);
    let cfg = |d: &TestBackend| cluster_cfg(d, &[&s1, &s2]);
    let mut nodes: Vec<NodeProcess> = Vec::new();
    for n in &files.nodes {
        nodes.push(NodeProcess::start(&files.node_file(n.id, &cfg(&b1))));
    }
    for (i, n) in files.nodes.iter().enumerate() {
        nodes[i].wait_listening(n.admin_addr(), Duration::from_secs(30));
    }
    let c = client::http1();
    // Ready: a leader, and every proxy serving the seeded config.
    let deadline = Instant::now() + Duration::from_secs(30);
    'ready: loop {
        anyhow::ensure!(Instant::now() < deadline, "cluster not ready within 30 s");
        for n in &files.nodes {
            let url = format!("http://{}/", n.http_addr().expect("proxy"));
            let ok = matches!(tokio::time::timeout(Duration::from_secs(1), get(&c, &url)).await, Ok(Ok(r)) if r.text() == "b1");
            if !ok {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue 'ready;
            }
        }
        break;
    }
    let leader = cluster_json(&c, &files, 1).await.and_then(|j| j["leader"].as_u64()).unwrap_or(1);
    let follower = files.nodes.iter().map(|n| n.id).find(|&id| id != leader).unwrap_or(2);

    // 1. Config change to applied everywhere.
    let mut everywhere = Vec::new();
    let mut acked = Vec::new();
    for round in 0..changes {
        let (target, name) = if round % 2 == 0 { (&b2, "b2") } else { (&b1, "b1") };
        let body = serde_json::json!({ "toml": cfg(target), "comment": format!("bench round {round}") }).to_string();
        let req = Request::put(format!("http://{}/api/v1/config", files.node(follower).admin_addr()))
            .header("authorization", format!("Bearer {}", files.token))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let t0 = Instant::now();
        let pollers: Vec<_> = files
            .nodes
            .iter()
            .map(|n| {
                let url = format!("http://{}/", n.http_addr().expect("proxy"));
                let c = c.clone();
                tokio::spawn(async move {
                    let limit = Instant::now() + Duration::from_secs(10);
                    while Instant::now() < limit {
                        if let Ok(r) = get(&c, &url).await
                            && r.text() == name
                        {
                            return Some(Instant::now());
                        }
                        tokio::time::sleep(Duration::from_micros(500)).await;
                    }
                    None
                })
            })
            .collect();
        let r = send(&c, req).await?;
        anyhow::ensure!(r.status == 200, "config PUT failed: {} {}", r.status, r.text());
        acked.push(t0.elapsed().as_secs_f64() * 1000.0);
        let mut last = t0;
        for p in pollers {
            let Some(seen) = p.await? else {
                let logs: Vec<String> =
                    nodes.iter().map(|n| n.log().lines().rev().take(8).collect::<Vec<_>>().join("\n")).collect();
                anyhow::bail!(
                    "a proxy did not serve round {round} within 10 s; node logs (newest first):\n{}",
                    logs.join("\n---\n")
                );
            };
            last = last.max(seen);
        }
        everywhere.push((last - t0).as_secs_f64() * 1000.0);
    }
    everywhere.sort_by(f64::total_cmp);
    acked.sort_by(f64::total_cmp);

    // 2. Sticky entries committed per second.
    let before: u64 = sticky_counts(&c, &files).await.into_iter().min().unwrap_or(0);
    let sent = Arc::new(AtomicU64::new(0));
    let workers = 64u64;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let urls: Vec<String> =
            files.nodes.iter().map(|n| format!("http://{}/s", n.http_addr().expect("proxy"))).collect();
        let c = c.clone();
        let sent = Arc::clone(&sent);
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < entries {
                let key = format!("client-{i}");
                let url = &urls[(i % urls.len() as u64) as usize];
                if let Ok(Ok(r)) =
                    tokio::time::timeout(Duration::from_secs(5), get_with(&c, url, &[("x-client", &key)])).await
                    && r.status == 200
                {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                i += workers;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let requests_done = t0.elapsed();
    let want = before + sent.load(Ordering::Relaxed);
    let limit = Instant::now() + Duration::from_secs(60);
    let mut counts = sticky_counts(&c, &files).await;
    let mut last_growth = Instant::now();
    let mut best = counts.iter().copied().min().unwrap_or(0);
    while counts.iter().any(|&n| n < want) && Instant::now() < limit && last_growth.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        counts = sticky_counts(&c, &files).await;
        let m = counts.iter().copied().min().unwrap_or(0);
        if m > best {
            best = m;
            last_growth = Instant::now();
        }
    }
    let all_done = t0.elapsed();
    let committed = counts.iter().copied().min().unwrap_or(0).saturating_sub(before);

    let mut report = String::new();
    report.push_str(&format!(
        "Cluster benchmark: 3 proxy nodes on 127.0.0.1 ({}), one process each.\n\n",
        std::env::var("QUORUMLB_BIN").unwrap_or_else(|_| "debug build".into())
    ));
    report.push_str("| measure | value |\n|---|---:|\n");
    report.push_str(&format!(
        "| sticky entries committed on every node | {committed} of {} requested ({} answered) |\n",
        entries,
        sent.load(Ordering::Relaxed)
    ));
    report.push_str(&format!(
        "| sticky entries/s (requests start → all 3 nodes hold them) | {:.0} |\n",
        committed as f64 / all_done.as_secs_f64()
    ));
    report.push_str(&format!(
        "| proxy requests/s creating them (64 keep-alive clients over 3 proxies) | {:.0} |\n",
        sent.load(Ordering::Relaxed) as f64 / requests_done.as_secs_f64()
    ));
    report.push_str(&format!(
        "| replication lag after the last request | {:.0} ms |\n",
        (all_done - requests_done).as_secs_f64() * 1000.0
    ));
    report.push_str(&format!(
        "| config change → served by all 3 proxies, p50 / p95 / max over {changes} | {:.1} / {:.1} / {:.1} ms |\n",
        percentile(&everywhere, 0.5),
        percentile(&everywhere, 0.95),
        everywhere.last().copied().unwrap_or(f64::NAN)
    ));
    report.push_str(&format!(
        "| config PUT via a follower acknowledged, p50 / max | {:.1} / {:.1} ms |\n",
        percentile(&acked, 0.5),
        acked.last().copied().unwrap_or(f64::NAN)
    ));
    print!("{report}");
    if let Some(path) = out_file() {
        std::fs::write(&path, &report)?;
    }
    anyhow::ensure!(committed >= entries * 99 / 100, "only {committed} of {entries} sticky entries reached every node");
    drop(nodes);
    Ok(())
}
