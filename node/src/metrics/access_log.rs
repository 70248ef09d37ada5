//! The access log: one line per request (time, client, listener, method, host,
//! path, status, bytes, upstream, upstream time, total time), text or JSON, to
//! stdout or a file. Requests hand a record to a bounded queue and never wait: a
//! dedicated writer thread formats and writes; when the queue is full the record
//! is dropped and counted. `reopen` (SIGUSR1) makes the writer reopen its file,
//! for logrotate.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::uri::PathAndQuery;
use http::{HeaderValue, Method};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use crate::config::{AccessLogFormat, AccessLogSettings};

/// What one request leaves in the log. Built from values the request already
/// holds (cheap clones of shared buffers).
#[derive(Debug, Clone)]
pub struct AccessRecord {
    pub time: SystemTime,
    pub listener: Arc<str>,
    pub client: SocketAddr,
    pub method: Method,
    pub host: Option<HeaderValue>,
    pub path: Option<PathAndQuery>,
    pub status: u16,
    /// Response body bytes sent.
    pub bytes: u64,
    pub upstream: Option<SocketAddr>,
    pub upstream_time: Option<Duration>,
    pub total_time: Duration,
}

enum Msg {
    Record(Box<AccessRecord>),
    Wake,
}

/// The handle requests log through.
pub struct AccessLog {
    tx: mpsc::Sender<Msg>,
    reopen: Arc<AtomicBool>,
    settings: AccessLogSettings,
    dropped: Counter,
}

impl AccessLog {
    /// Opens the destination and starts the writer thread. The thread ends once
    /// every handle is dropped, after writing what is queued.
    pub fn start(settings: AccessLogSettings, dropped: Counter) -> io::Result<Arc<AccessLog>> {
        let out = open(settings.path.as_deref())?;
        let (tx, rx) = mpsc::channel(settings.buffer.max(1));
        let reopen = Arc::new(AtomicBool::new(false));
        let (flag, s) = (Arc::clone(&reopen), settings.clone());
        std::thread::Builder::new().name("access-log".into()).spawn(move || writer(rx, out, s, flag))?;
        Ok(Arc::new(AccessLog { tx, reopen, settings, dropped }))
    }

    pub fn settings(&self) -> &AccessLogSettings {
        &self.settings
    }

    /// Queues a record; never blocks.
    pub fn log(&self, rec: AccessRecord) {
        if self.tx.try_send(Msg::Record(Box::new(rec))).is_err() {
            self.dropped.inc();
        }
    }

    /// Asks the writer to reopen its file (after logrotate moved it).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
        let _ = self.tx.try_send(Msg::Wake);
    }
}

fn open(path: Option<&Path>) -> io::Result<BufWriter<Box<dyn Write + Send>>> {
    let w: Box<dyn Write + Send> = match path {
        Some(p) => Box::new(OpenOptions::new().create(true).append(true).open(p)?),
        None => Box::new(io::stdout()),
    };
    Ok(BufWriter::with_capacity(64 * 1024, w))
}

fn writer(
    mut rx: mpsc::Receiver<Msg>,
    mut out: BufWriter<Box<dyn Write + Send>>,
    s: AccessLogSettings,
    reopen: Arc<AtomicBool>,
) {
    let mut line = String::with_capacity(512);
    while let Some(msg) = rx.blocking_recv() {
        if reopen.swap(false, Ordering::AcqRel) {
            let _ = out.flush();
            match open(s.path.as_deref()) {
                Ok(fresh) => out = fresh,
                Err(e) => tracing::error!(error = %e, "access log: reopen failed, keeping the old file"),
            }
        }
        let mut next = Some(msg);
        // Drain what is queued, then flush once.
        while let Some(m) = next {
            if let Msg::Record(rec) = m {
                line.clear();
                match s.format {
                    AccessLogFormat::Text => format_text(&mut line, &rec),
                    AccessLogFormat::Json => format_json(&mut line, &rec),
                }
                if let Err(e) = out.write_all(line.as_bytes()) {
                    tracing::warn!(error = %e, "access log: write failed");
                }
            }
            next = rx.try_recv().ok();
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

fn host_str(rec: &AccessRecord) -> &str {
    rec.host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("-")
}

fn path_str(rec: &AccessRecord) -> &str {
    rec.path.as_ref().map(|p| p.as_str()).unwrap_or("/")
}

fn format_text(out: &mut String, r: &AccessRecord) {
    let _ = write!(
        out,
        "{} {} {} {} {} \"{}\" {} {} ",
        rfc3339(r.time),
        r.client.ip(),
        r.listener,
        r.method,
        host_str(r),
        path_str(r).replace('"', "%22"),
        r.status,
        r.bytes
    );
    match r.upstream {
        Some(u) => {
            let _ = write!(out, "{u} {:.3}", r.upstream_time.unwrap_or_default().as_secs_f64());
        }
        None => out.push_str("- -"),
    }
    let _ = writeln!(out, " {:.3}", r.total_time.as_secs_f64());
}

fn format_json(out: &mut String, r: &AccessRecord) {
    let v = serde_json::json!({
        "time": rfc3339(r.time),
        "client": r.client.ip().to_string(),
        "listener": &*r.listener,
        "method": r.method.as_str(),
        "host": host_str(r),
        "path": path_str(r),
        "status": r.status,
        "bytes": r.bytes,
        "upstream": r.upstream.map(|u| u.to_string()),
        "upstream_time": r.upstream_time.map(|d| d.as_secs_f64()),
        "total_time": r.total_time.as_secs_f64(),
    });
    out.push_str(&v.to_string());
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> AccessRecord {
        AccessRecord {
            time: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            listener: "web".into(),
            client: "10.0.0.9:5555".parse().unwrap(),
            method: Method::GET,
            host: Some(HeaderValue::from_static("example.com")),
            path: Some(PathAndQuery::from_static("/a?b=1")),
            status: 200,
            bytes: 42,
            upstream: Some("127.0.0.1:9001".parse().unwrap()),
            upstream_time: Some(Duration::from_millis(3)),
            total_time: Duration::from_millis(5),
        }
    }

    #[test]
    fn time_is_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn text_and_json_lines() {
        let mut s = String::new();
        format_text(&mut s, &rec());
        assert_eq!(
            s,
            "2023-11-14T22:13:20.123Z 10.0.0.9 web GET example.com \"/a?b=1\" 200 42 127.0.0.1:9001 0.003 0.005\n"
        );
        s.clear();
        format_json(&mut s, &rec());
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["upstream"], "127.0.0.1:9001");
        assert_eq!(v["path"], "/a?b=1");
    }

    #[test]
    fn file_is_written_and_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let s = AccessLogSettings { format: AccessLogFormat::Text, path: Some(path.clone()), buffer: 16 };
        let log = AccessLog::start(s, Counter::default()).unwrap();
        log.log(rec());
        let rotated = dir.path().join("access.log.1");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(&path).unwrap_or_default().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen();
        log.log(rec());
        while !path.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        while std::fs::read_to_string(&path).unwrap_or_default().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(std::fs::read_to_string(&rotated).unwrap().lines().count(), 1);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }
}
