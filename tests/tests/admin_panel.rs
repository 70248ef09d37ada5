//! The admin web panel in headless Chromium against the real `quorumlb` binary (a
//! three-node cluster: two proxies and a witness, one VIP): sign in, see every node by
//! its name with the leader marked and the VIP with its owner, watch live charts, see
//! latency percentiles from real traffic, drain a backend and see its state change,
//! apply a config with an error and see it marked at its line, apply a good config and
//! see the version bump, find it in the audit trail. Screenshots of the dashboard,
//! pools and config pages go to the test's output folder.
//!
//! The VIP (192.0.2.10, TEST-NET-1) names an interface that does not exist, so no node
//! adds the address, root or not: ownership is replicated state that the leader's
//! controller commits from the nodes' reports, and the panel shows it either way.

use std::net::SocketAddr;
use std::time::Duration;

use tests::browser::{Browser, output_dir};
use tests::client::{self, get};
use tests::{NodeProcess, TestBackend, free_port};

const PASSWORD: &str = "panel-test-password-9f3c";
/// `[node] name` of nodes 1, 2 (proxies) and 3 (witness); also in every peers list.
const NAMES: [&str; 3] = ["lb-east", "lb-west", "quorum-witness"];
const VIP: &str = "192.0.2.10/24";

fn pool_cfg(backends: &[SocketAddr]) -> String {
    let mut s = String::from(
        "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:1\"\nprotocol = \"http\"\ndefault_pool = \"p\"\n\n\
         [[pool]]\nname = \"p\"\n",
    );
    for b in backends {
        s.push_str(&format!("  [[pool.backend]]\n  address = \"{b}\"\n"));
    }
    s.push_str(&format!(
        "\n[[vip]]\naddress = \"{VIP}\"\ninterface = \"qlbnone0\"\npriority = {{ 1 = 150, 2 = 100 }}\n"
    ));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_signs_in_drains_a_backend_and_applies_config_in_the_panel() {
    let Some(browser) = Browser::start().await else { return };
    let shots = output_dir(env!("CARGO_TARGET_TMPDIR"), "admin_panel");
    let b1 = TestBackend::start("b1").await;
    let b2 = TestBackend::start("b2").await;
    b2.set_delay(Duration::from_millis(30));
    let cl = [free_port(), free_port(), free_port()];
    let web = [free_port(), free_port()];
    let admin_port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "a-panel-test-cluster-secret-of-enough-length-0123456789").expect("secret");
    let pw_file = dir.path().join("admin-password");
    std::fs::write(&pw_file, format!("{PASSWORD}\n")).expect("password file");
    let peers = format!(
        "peers = [ {{ id = 1, address = \"127.0.0.1:{}\", name = \"{}\" }}, \
         {{ id = 2, address = \"127.0.0.1:{}\", name = \"{}\" }}, \
         {{ id = 3, address = \"127.0.0.1:{}\", role = \"witness\", name = \"{}\" }} ]",
        cl[0], NAMES[0], cl[1], NAMES[1], cl[2], NAMES[2]
    );
    let file = |id: usize, extra: &str| {
        let role = if id == 3 { "witness" } else { "proxy" };
        let bind =
            if id < 3 { format!("  [node.bind]\n  web = \"127.0.0.1:{}\"\n", web[id - 1]) } else { String::new() };
        let admin = if id == 1 {
            format!(
                "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\nbootstrap_password_file = \"{}\"\n",
                pw_file.display()
            )
        } else {
            String::new()
        };
        format!(
            "[node]\nid = {id}\nname = \"{}\"\nrole = \"{role}\"\ndata_dir = \"{}\"\ncluster_listen = \"127.0.0.1:{}\"\n{bind}\n\
             [cluster]\nsecret_file = \"{}\"\n{peers}\n\n{admin}\n{extra}",
            NAMES[id - 1],
            dir.path().join(format!("n{id}")).display(),
            cl[id - 1],
            secret.display()
        )
    };
    let mut node = NodeProcess::start(&file(1, &pool_cfg(&[b1.addr, b2.addr])));
    let n2 = NodeProcess::start(&file(2, ""));
    let n3 = NodeProcess::start(&file(3, ""));
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
    let web1: SocketAddr = format!("127.0.0.1:{}", web[0]).parse().expect("addr");
    node.wait_listening(admin, Duration::from_secs(30));
    let base = format!("http://{admin}");
    let c = client::http1();
    let mut ready = false;
    for _ in 0..150 {
        if get(&c, &format!("{base}/healthz")).await.is_ok_and(|r| r.status == 200) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "/healthz never 200; n1:\n{}\nn2:\n{}\nn3:\n{}", node.log(), n2.log(), n3.log());

    // The panel sends a browser without a session to the login page.
    browser.goto(&format!("{base}/")).await;
    browser.find("#login-form").await;
    assert!(browser.client.current_url().await.expect("url").as_str().ends_with("/login"));
    browser.fill("#username", "admin").await;
    browser.fill("#password", "not-the-password").await;
    browser.click("#login-button").await;
    browser.wait_text("#login-error", "the refusal", |t| t.contains("wrong username or password")).await;
    browser.fill("#password", PASSWORD).await;
    browser.click("#login-button").await;

    // Dashboard: every node by its name and role, the leader marked, the VIP's owner.
    let mut leaders = 0;
    for (i, want) in NAMES.iter().enumerate() {
        let sel = format!("#nodes-table tr[data-node-id=\"{}\"]", i + 1);
        let row = browser
            .wait_text(&sel, want, |t| t.contains(want) && (t.contains("leader") || t.contains("follower")))
            .await;
        let role = if i == 2 { "witness" } else { "proxy" };
        assert!(row.contains(role), "{row}");
        assert!(!row.contains("node-"), "a node shown by id instead of name: {row}");
        if browser.text(&format!("{sel} td.raft-state")).await == "leader" {
            leaders += 1;
            browser.wait_text("#sum-leader", "the leader's name", |t| t == *want).await;
        }
    }
    assert_eq!(leaders, 1, "exactly one leader in the nodes table");
    let vip_row = format!("#vips-table tr[data-vip=\"{VIP}\"]");
    // Node 1 has the higher priority, but whichever proxy reported first may hold it.
    let owner = browser
        .wait_text(&format!("{vip_row} td.vip-owner"), "a proxy owning the VIP", |t| t == NAMES[0] || t == NAMES[1])
        .await;
    println!("VIP {VIP} owner shown in the panel: {owner}");
    let vip_text = browser.text(&vip_row).await;
    assert!(vip_text.contains(" ms"), "the lease is shown: {vip_text}");
    if owner == NAMES[0] {
        // Node 1 answers for itself: it is the owner but cannot add the address.
        let lease = browser
            .wait_text(&format!("{vip_row} td.vip-lease"), "why the owner lacks the address", |t| {
                t.contains("not held by the owner: adding address")
            })
            .await;
        println!("VIP lease cell on the owner: {lease}");
    }
    // The leader knows when each other member last reported.
    if browser.text("#nodes-table tr[data-node-id=\"1\"] td.raft-state").await == "leader" {
        for id in [2, 3] {
            let cell = format!("#nodes-table tr[data-node-id=\"{id}\"] td:nth-child(7)");
            let t = browser.wait_text(&cell, "a last contact", |t| t.ends_with(" ms")).await;
            let ms: u64 = t.trim_end_matches(" ms").parse().expect("ms");
            assert!(ms < 2_000, "node {id} last reported {ms} ms ago");
        }
    }
    browser.wait_text("#whoami", "the user", |t| t == "admin").await;
    // Live charts: the SSE stream delivers samples and the legend names the pool.
    browser.wait_text("#stream-state", "a live stream", |t| t.contains("live,")).await;
    browser.wait_text("#chart-legend", "pool p in the legend", |t| t.contains("p (")).await;
    // Traffic through node 1's proxy, so the charts and the latency columns have
    // data (b2 answers 30 ms late).
    for i in 0..20 {
        let r = get(&c, &format!("http://{web1}/t{i}")).await.expect("proxied request");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    browser.screenshot(&shots.join("dashboard.png")).await;

    // Pools: latency columns from the traffic above; drain b1 and see the state change.
    browser.click("#nav-pools").await;
    let b2_p50 = format!("tr[data-pool=\"p\"][data-backend=\"{}\"] td.latency.p50", b2.addr);
    let slow = browser.wait_text(&b2_p50, "b2's p50", |t| t.parse::<f64>().is_ok_and(|ms| ms >= 25.0)).await;
    let b1_p50 = format!("tr[data-pool=\"p\"][data-backend=\"{}\"] td.latency.p50", b1.addr);
    let fast = browser.wait_text(&b1_p50, "b1's p50", |t| t.parse::<f64>().is_ok_and(|ms| ms < 10.0)).await;
    println!("pools page: b1 p50 {fast} ms, b2 (30 ms delay) p50 {slow} ms");
    let b1_row = format!("tr[data-pool=\"p\"][data-backend=\"{}\"]", b1.addr);
    browser.wait_text(&format!("{b1_row} td.admin-state"), "enabled", |t| t == "enabled").await;
    browser.click(&format!("{b1_row} button.drain")).await;
    browser.wait_text(&format!("{b1_row} td.admin-state"), "draining", |t| t == "draining").await;
    browser.wait_text("#flash", "a confirmation", |t| t.contains("drain done")).await;
    let b2_row = format!("tr[data-pool=\"p\"][data-backend=\"{}\"]", b2.addr);
    assert_eq!(browser.text(&format!("{b2_row} td.admin-state")).await, "enabled");
    browser.screenshot(&shots.join("pools.png")).await;

    // Config: an error is shown at its line, and nothing is applied.
    browser.click("#nav-config").await;
    let version_text = browser.wait_text("#config-version", "a version", |t| t.starts_with("version ")).await;
    let version: u64 = version_text.trim_start_matches("version ").parse().expect("version number");
    let current: String = browser
        .client
        .execute("return document.querySelector('#config-editor').value", vec![])
        .await
        .expect("editor value")
        .as_str()
        .expect("string")
        .to_string();
    assert!(current.contains("[[pool]]"), "{current}");
    let broken = current.replacen("default_pool = \"p\"", "default_pool = = \"p\"", 1);
    let bad_line = broken.lines().position(|l| l.contains("= =")).expect("broken line") + 1;
    browser.set_value("#config-editor", &broken).await;
    browser.click("#config-apply").await;
    browser.wait_text("#config-status", "the refusal", |t| t.starts_with("Not applied")).await;
    let item = browser.text(&format!("#config-errors li[data-line=\"{bad_line}\"]")).await;
    assert!(item.starts_with(&format!("line {bad_line}")), "{item}");
    let class = browser.find(&format!("#config-line-{bad_line}")).await.attr("class").await.expect("class");
    assert_eq!(class.as_deref(), Some("error"), "gutter line {bad_line} is not marked");
    // The marked number sits beside its text line (the gutter stays aligned below it).
    let offsets = browser
        .client
        .execute(
            "const t = n => document.getElementById('config-line-' + n).getBoundingClientRect().top; \
             return [t(1), t(arguments[0]), t(arguments[0] + 1)];",
            vec![bad_line.into()],
        )
        .await
        .expect("gutter offsets");
    let tops: Vec<f64> = offsets.as_array().expect("array").iter().map(|v| v.as_f64().expect("number")).collect();
    let step = (tops[1] - tops[0]) / (bad_line as f64 - 1.0);
    assert!((step - 20.0).abs() < 0.5 && (tops[2] - tops[1] - 20.0).abs() < 0.5, "gutter misaligned: {tops:?}");
    browser.screenshot(&shots.join("config-error.png")).await;
    assert_eq!(browser.text("#config-version").await, version_text, "a refused config changed the version");

    // A good config: the diff shows the change, applying bumps the version.
    let good = format!("{current}\n[[pool]]\nname = \"extra\"\n  [[pool.backend]]\n  address = \"{}\"\n", b2.addr);
    browser.set_value("#config-editor", &good).await;
    browser.click("#config-diff").await;
    browser.wait_text("#config-diff-output", "the added pool", |t| t.contains("+ name = \"extra\"")).await;
    browser.click("#config-apply").await;
    let status = browser.wait_text("#config-status", "success", |t| t.starts_with("Applied")).await;
    assert_eq!(status, format!("Applied: config version {}.", version + 1));
    browser.wait_text("#config-version", "the new version", |t| t == format!("version {}", version + 1)).await;
    assert_eq!(browser.find("#config-errors").await.text().await.expect("errors text"), "");

    // The audit trail names who did it.
    browser.click("#nav-audit").await;
    let audit = browser.wait_text("#audit-table tbody", "the config change", |t| t.contains("replace_config")).await;
    assert!(audit.contains("admin") && audit.contains("set_backend_state"), "{audit}");

    browser.stop().await;
    let log = node.log();
    assert!(!log.contains(PASSWORD), "the password leaked into the node log");
}
