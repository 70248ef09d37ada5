//! Observability on the real binary: `/metrics` on the admin address parses with
//! a strict OpenMetrics text parser (written here, independent of the exporter)
//! and counts exactly what the test sent; `/healthz` answers; the access log has
//! one JSON line per request and is reopened on SIGUSR1.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use nix::sys::signal::Signal;
use tests::client::{self, get};
use tests::{NodeProcess, TestBackend, free_port};

/// One sample: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// A strict parser of the OpenMetrics text format: every line must be a HELP,
/// TYPE or UNIT line, a sample of the family declared last, or the final `# EOF`.
fn parse_openmetrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut family: Option<(String, String)> = None;
    let mut saw_eof = false;
    for line in text.lines() {
        assert!(!saw_eof, "content after # EOF: {line:?}");
        if line == "# EOF" {
            saw_eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().unwrap_or_else(|| panic!("bad comment line {line:?}"));
            let arg = parts.next().unwrap_or("");
            match kind {
                "TYPE" => {
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "info", "stateset", "unknown", "gaugehistogram"]
                            .contains(&arg),
                        "bad type in {line:?}"
                    );
                    family = Some((name.to_string(), arg.to_string()));
                }
                "HELP" | "UNIT" => {}
                _ => panic!("unknown comment {line:?}"),
            }
            continue;
        }
        let (fam, ty) = family.clone().unwrap_or_else(|| panic!("sample before TYPE: {line:?}"));
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => (&line[..i], &line[i..]),
            None => panic!("bad sample {line:?}"),
        };
        let suffix = name.strip_prefix(fam.as_str()).unwrap_or_else(|| panic!("{name} not in family {fam}"));
        let allowed: &[&str] = match ty.as_str() {
            "counter" => &["_total", "_created"],
            "gauge" => &[""],
            "histogram" => &["_bucket", "_count", "_sum", "_created"],
            _ => &["", "_total", "_bucket", "_count", "_sum", "_created", "_info"],
        };
        assert!(allowed.contains(&suffix), "{name}: suffix {suffix:?} not allowed for a {ty}");
        let mut labels = HashMap::new();
        let rest = if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices();
            let end: Option<usize>;
            loop {
                // label name
                let mut key = String::new();
                let (_, c) = chars.next().unwrap_or_else(|| panic!("unterminated labels {line:?}"));
                if c == '}' && key.is_empty() {
                    end = chars.next().map(|(i, _)| i);
                    break;
                }
                key.push(c);
                for (_, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    assert!(c.is_ascii_alphanumeric() || c == '_', "bad label name char {c:?} in {line:?}");
                    key.push(c);
                }
                assert_eq!(chars.next().map(|x| x.1), Some('"'), "label value must be quoted: {line:?}");
                let mut value = String::new();
                loop {
                    let (_, c) = chars.next().unwrap_or_else(|| panic!("unterminated value {line:?}"));
                    match c {
                        '"' => break,
                        '\\' => match chars.next().map(|x| x.1) {
                            Some('n') => value.push('\n'),
                            Some('"') => value.push('"'),
                            Some('\\') => value.push('\\'),
                            other => panic!("bad escape {other:?} in {line:?}"),
                        },
                        c => value.push(c),
                    }
                }
                assert!(labels.insert(key, value).is_none(), "duplicate label in {line:?}");
                match chars.next().map(|x| x.1) {
                    Some(',') => continue,
                    Some('}') => {
                        end = chars.next().map(|(i, _)| i);
                        break;
                    }
                    other => panic!("expected , or }} got {other:?} in {line:?}"),
                }
            }
            let i = end.unwrap_or_else(|| panic!("no value in {line:?}"));
            &body[i..]
        } else {
            rest
        };
        let value_str = rest.strip_prefix(' ').unwrap_or_else(|| panic!("no space before value {line:?}"));
        let value_str = value_str.split(' ').next().unwrap();
        let value = match value_str {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("bad value {v:?} in {line:?}")),
        };
        out.push(Sample { name: name.to_string(), labels, value });
    }
    assert!(saw_eof, "no # EOF at the end");
    out
}

fn sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && want.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
        .sum()
}

#[test]
fn the_parser_rejects_what_it_should() {
    assert!(std::panic::catch_unwind(|| parse_openmetrics("# TYPE a counter\na_total 1\n")).is_err(), "no EOF");
    assert!(std::panic::catch_unwind(|| parse_openmetrics("# TYPE a counter\nb_total 1\n# EOF\n")).is_err());
    assert!(std::panic::catch_unwind(|| parse_openmetrics("# TYPE a gauge\na{x=1} 1\n# EOF\n")).is_err());
    let ok = parse_openmetrics("# TYPE a counter\na_total{x=\"q\\\"\",y=\"2\"} 3\n# EOF\n");
    assert_eq!(ok[0].labels["x"], "q\"");
    assert_eq!(ok[0].value, 3.0);
}

#[tokio::test]
async fn metrics_parse_and_count_what_was_sent_and_access_log_reopens_on_sigusr1() {
    let b1 = TestBackend::start("b1").await;
    let b2 = TestBackend::start("b2").await;
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("access.log");
    let bind: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = format!(
        "[admin]\nlisten = \"{admin}\"\n[access_log]\nformat = \"json\"\npath = \"{}\"\n\
         [[listener]]\nname = \"web\"\nbind = \"{bind}\"\nprotocol = \"http\"\ndefault_pool = \"app\"\n\
         [[pool]]\nname = \"app\"\n  [[pool.backend]]\n  address = \"{}\"\n  [[pool.backend]]\n  address = \"{}\"\n",
        log_path.display(),
        b1.addr,
        b2.addr
    );
    let mut node = NodeProcess::start(&cfg);
    node.wait_listening(bind, Duration::from_secs(20));
    node.wait_listening(admin, Duration::from_secs(5));
    let http = client::http1();
    for _ in 0..20 {
        assert_eq!(get(&http, &format!("http://{bind}/ok")).await.unwrap().status, 200);
    }
    for _ in 0..5 {
        assert_eq!(get(&http, &format!("http://{bind}/status?code=404")).await.unwrap().status, 404);
    }
    for _ in 0..3 {
        let r = get(&http, &format!("http://{bind}/big?bytes=1000")).await.unwrap();
        assert_eq!(r.body.len(), 1000);
    }

    let health = get(&http, &format!("http://{admin}/healthz")).await.unwrap();
    assert_eq!((health.status.as_u16(), health.text().as_str()), (200, "ok\n"));
    let resp = get(&http, &format!("http://{admin}/metrics")).await.unwrap();
    assert_eq!(resp.status, 200);
    assert!(resp.header("content-type").unwrap().starts_with("application/openmetrics-text"));
    let samples = parse_openmetrics(&resp.text());

    let req = "quorumlb_http_requests_total";
    assert_eq!(sum(&samples, req, &[("listener", "web"), ("pool", "app"), ("code", "2xx")]), 23.0);
    assert_eq!(sum(&samples, req, &[("listener", "web"), ("pool", "app"), ("code", "4xx")]), 5.0);
    assert_eq!(sum(&samples, req, &[("listener", "web"), ("code", "5xx")]), 0.0);
    for b in [&b1, &b2] {
        let per = sum(&samples, req, &[("backend", &b.addr.to_string())]);
        assert!((12.0..=16.0).contains(&per), "round robin share of {}: {per}", b.addr);
        assert_eq!(sum(&samples, "quorumlb_backend_up", &[("pool", "app"), ("backend", &b.addr.to_string())]), 1.0);
    }
    let count = sum(&samples, "quorumlb_http_request_duration_seconds_count", &[("listener", "web"), ("pool", "app")]);
    assert_eq!(count, 28.0);
    let inf = sum(
        &samples,
        "quorumlb_http_request_duration_seconds_bucket",
        &[("listener", "web"), ("pool", "app"), ("le", "+Inf")],
    );
    assert_eq!(inf, 28.0);
    assert_eq!(sum(&samples, "quorumlb_upstream_response_duration_seconds_count", &[("pool", "app")]), 28.0);
    let sent = sum(&samples, "quorumlb_http_sent_bytes_total", &[("listener", "web")]);
    assert!(sent >= 3000.0, "body bytes sent: {sent}");
    assert!(sum(&samples, "quorumlb_connections_total", &[("listener", "web")]) >= 1.0);
    assert_eq!(sum(&samples, "quorumlb_access_log_dropped_total", &[]), 0.0);

    // The access log: one JSON line per request.
    let read_lines = |p: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    };
    assert!(tests::wait_until(Duration::from_secs(5), || read_lines(&log_path).len() >= 28).await);
    let lines = read_lines(&log_path);
    assert_eq!(lines.len(), 28);
    let notfound: Vec<_> = lines.iter().filter(|l| l["status"] == 404).collect();
    assert_eq!(notfound.len(), 5);
    let l = &notfound[0];
    assert_eq!(l["method"], "GET");
    assert_eq!(l["path"], "/status?code=404");
    assert_eq!(l["client"], "127.0.0.1");
    assert!(l["upstream"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(l["total_time"].as_f64().unwrap() >= l["upstream_time"].as_f64().unwrap());
    assert!(lines.iter().any(|l| l["bytes"] == 1000));

    // logrotate: move the file away, SIGUSR1, the next line goes to a new file.
    let rotated = logs.path().join("access.log.1");
    std::fs::rename(&log_path, &rotated).unwrap();
    node.signal(Signal::SIGUSR1);
    assert!(tests::wait_until(Duration::from_secs(5), || node.log().contains("access log reopened")).await);
    get(&http, &format!("http://{bind}/after-rotate")).await.unwrap();
    assert!(tests::wait_until(Duration::from_secs(5), || read_lines(&log_path).len() == 1).await, "new file");
    assert_eq!(read_lines(&log_path)[0]["path"], "/after-rotate");
    assert_eq!(read_lines(&rotated).len(), 28);
}
