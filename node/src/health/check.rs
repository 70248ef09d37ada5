//! One health probe: a TCP connect, or an HTTP/1.1 GET whose status line must fall
//! in the expected range. Written directly on the socket: a probe needs no pool,
//! and keeping it small keeps its cost per backend small.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::HealthKind;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("timed out")]
    Timeout,
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    #[error("i/o error: {0}")]
    Io(std::io::Error),
    #[error("malformed response")]
    Malformed,
    #[error("status {0} outside the expected range")]
    Status(u16),
}

pub async fn run_check(addr: SocketAddr, kind: &HealthKind, timeout: Duration) -> Result<(), CheckError> {
    match tokio::time::timeout(timeout, probe(addr, kind)).await {
        Ok(r) => r,
        Err(_) => Err(CheckError::Timeout),
    }
}

async fn probe(addr: SocketAddr, kind: &HealthKind) -> Result<(), CheckError> {
    let mut stream = TcpStream::connect(addr).await.map_err(CheckError::Connect)?;
    let HealthKind::Http { path, host, expect } = kind else {
        return Ok(());
    };
    let host = host.clone().unwrap_or_else(|| addr.to_string());
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: quorumlb-health\r\nConnection: close\r\nAccept: */*\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.map_err(CheckError::Io)?;
    // The status line is all we need: "HTTP/1.1 200 OK".
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let r = stream.read(&mut buf[n..]).await.map_err(CheckError::Io)?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let line = std::str::from_utf8(&buf[..n]).map_err(|_| CheckError::Malformed)?;
    let mut it = line.split(' ');
    if !it.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(CheckError::Malformed);
    }
    let code: u16 = it.next().and_then(|c| c.get(..3)).and_then(|c| c.parse().ok()).ok_or(CheckError::Malformed)?;
    if code >= expect.0 && code <= expect.1 { Ok(()) } else { Err(CheckError::Status(code)) }
}
