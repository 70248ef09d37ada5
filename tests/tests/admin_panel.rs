//! The admin web panel in headless Chromium against the real `quorumlb` binary (a
//! one-node cluster): sign in, see the node as leader, watch live charts, drain a
//! backend and see its state change, apply a config with an error and see it marked at
//! its line, apply a good config and see the version bump, find it in the audit trail.
//! Screenshots of the dashboard, pools and config pages go to the test's output folder.

use std::net::SocketAddr;
use std::time::Duration;

use tests::browser::{Browser, output_dir};
use tests::client::{self, get};
use tests::{NodeProcess, TestBackend, free_port};

const PASSWORD: &str = "panel-test-password-9f3c";

fn pool_cfg(web: u16, backends: &[SocketAddr]) -> String {
    let mut s = format!(
        "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{web}\"\nprotocol = \"http\"\ndefault_pool = \"p\"\n\n\
         [[pool]]\nname = \"p\"\n"
    );
    for b in backends {
        s.push_str(&format!("  [[pool.backend]]\n  address = \"{b}\"\n"));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_signs_in_drains_a_backend_and_applies_config_in_the_panel() {
    let Some(browser) = Browser::start().await else { return };
    let shots = output_dir(env!("CARGO_TARGET_TMPDIR"), "admin_panel");
    let b1 = TestBackend::start("b1").await;
    let b2 = TestBackend::start("b2").await;
    let (cluster_port, admin_port, web_port) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "a-panel-test-cluster-secret-of-enough-length-0123456789").expect("secret");
    let pw_file = dir.path().join("admin-password");
    std::fs::write(&pw_file, format!("{PASSWORD}\n")).expect("password file");
    let file = format!(
        "[node]\nid = 1\ndata_dir = \"{}\"\ncluster_listen = \"127.0.0.1:{cluster_port}\"\n\n\
         [cluster]\nsecret_file = \"{}\"\npeers = [ {{ id = 1, address = \"127.0.0.1:{cluster_port}\" }} ]\n\n\
         [admin]\nlisten = \"127.0.0.1:{admin_port}\"\nbootstrap_password_file = \"{}\"\n\n{}",
        dir.path().join("n1").display(),
        secret.display(),
        pw_file.display(),
        pool_cfg(web_port, &[b1.addr, b2.addr])
    );
    let mut node = NodeProcess::start(&file);
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
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
    assert!(ready, "/healthz never 200; log:\n{}", node.log());

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

    // Dashboard: the node, its role and leadership, the summary.
    let row =
        browser.wait_text("#nodes-table tr[data-node-id=\"1\"]", "node 1 as leader", |t| t.contains("leader")).await;
    assert!(row.contains("proxy"), "{row}");
    let name = browser.text("#nodes-table tr[data-node-id=\"1\"] td:nth-child(2)").await;
    let name = name.trim_end_matches("leader").trim().to_string();
    assert!(!name.is_empty(), "{row}");
    browser.wait_text("#sum-leader", "the leader's name", |t| t == name).await;
    browser.find("#vips-table").await;
    browser.wait_text("#whoami", "the user", |t| t == "admin").await;
    // Live charts: the SSE stream delivers samples and the legend names the pool.
    browser.wait_text("#stream-state", "a live stream", |t| t.contains("live,")).await;
    browser.wait_text("#chart-legend", "pool p in the legend", |t| t.contains("p (")).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    browser.screenshot(&shots.join("dashboard.png")).await;

    // Pools: drain b1 and see the state change.
    browser.click("#nav-pools").await;
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
