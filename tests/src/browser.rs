//! Headless Chromium for browser tests: Debian's `chromium` + `chromedriver`, driven
//! over WebDriver with fantoccini. chromedriver runs as a child in its own process
//! group on a free 127.0.0.1 port; stopping the handle ends the session and then that
//! group (chromedriver and the browsers it started) by its PID. Each browser gets a
//! fresh profile directory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// Where a test saves screenshots: `<target tmp>/<test name>/`; pass
/// `env!("CARGO_TARGET_TMPDIR")` (defined only when compiling integration tests).
pub fn output_dir(target_tmpdir: &str, test: &str) -> PathBuf {
    let dir = PathBuf::from(target_tmpdir).join(test);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or returns `None` (after
    /// printing SKIPPED to stderr) when the Debian packages are not installed.
    pub async fn start() -> Option<Browser> {
        if !std::path::Path::new(CHROMIUM).exists() || !std::path::Path::new(CHROMEDRIVER).exists() {
            eprintln!(
                "SKIPPED: browser test needs Debian's chromium and chromium-driver (tests/run-all.sh installs them)"
            );
            return None;
        }
        let port = crate::free_port();
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}")).arg("--allowed-ips=127.0.0.1").stdout(Stdio::null()).stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let driver = cmd.spawn().expect("spawn chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut browser_args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1400,1000".into(),
        ];
        browser_args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert("goog:chromeOptions".into(), serde_json::json!({"binary": CHROMIUM, "args": browser_args}));
        let url = format!("http://127.0.0.1:{port}");
        let mut guard = DriverGuard(Some(driver));
        // chromedriver needs a moment to listen; bounded retries.
        let mut last = String::new();
        for _ in 0..100 {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    let driver = guard.0.take().expect("driver");
                    return Some(Browser { client, driver, _profile: profile });
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("could not start a chromium session through chromedriver: {last}");
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// Waits (up to 15 s) for an element matching `css`.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap_or_else(|e| panic!("text of {css}: {e}"))
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let e = self.find(css).await;
        e.clear().await.unwrap_or_else(|err| panic!("clear {css}: {err}"));
        e.send_keys(value).await.unwrap_or_else(|err| panic!("type into {css}: {err}"));
    }

    /// Sets a form control's value through script (fast for large text) and fires `input`.
    pub async fn set_value(&self, css: &str, value: &str) {
        self.find(css).await;
        let script = "const e = document.querySelector(arguments[0]); e.value = arguments[1]; \
                      e.dispatchEvent(new Event('input', {bubbles: true}));";
        self.client.execute(script, vec![css.into(), value.into()]).await.unwrap_or_else(|e| panic!("set {css}: {e}"));
    }

    /// Polls until `css`'s text satisfies `pred` (up to 15 s); returns the last text.
    pub async fn wait_text(&self, css: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        for _ in 0..150 {
            if let Ok(e) = self.client.find(Locator::Css(css)).await
                && let Ok(t) = e.text().await
            {
                if pred(&t) {
                    return t;
                }
                last = t;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} never showed {what}; last text: {last:?}");
    }

    pub async fn screenshot(&self, path: &std::path::Path) {
        let png = self.client.screenshot().await.unwrap_or_else(|e| panic!("screenshot: {e}"));
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        eprintln!("screenshot: {}", path.display());
    }

    /// Ends the WebDriver session and stops chromedriver's process group.
    pub async fn stop(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.clone().close()).await;
        stop_group(&mut self.driver);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        stop_group(&mut self.driver);
    }
}

/// Stops a driver that never got as far as a session.
struct DriverGuard(Option<Child>);

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            stop_group(c);
        }
    }
}

fn stop_group(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let pgid = Pid::from_raw(child.id() as i32);
    let _ = killpg(pgid, Signal::SIGTERM);
    for _ in 0..50 {
        if matches!(child.try_wait(), Ok(Some(_))) {
            // Browsers left in the group (if any) get the same signal once more.
            let _ = killpg(pgid, Signal::SIGKILL);
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = child.wait();
}
