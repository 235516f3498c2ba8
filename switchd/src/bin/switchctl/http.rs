//! A minimal HTTP/1.1 client over TCP or a unix socket: one request per connection. Enough for
//! a CLI talking to switchd's API; no TLS (the API is loopback or unix-socket by default).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// A response: status and body.
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// Sends one request to `server` (`HOST:PORT` or `unix:/PATH`).
pub fn request(
    server: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> Result<Response> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: switchd\r\nConnection: close\r\nAccept: application/json\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some((ctype, b)) = body {
        head.push_str(&format!(
            "Content-Type: {ctype}\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    let mut raw = Vec::new();
    let timeout = Some(Duration::from_secs(30));
    let cannot = || format!("cannot reach switchd at {server} (is it running? see --server)");
    if let Some(p) = server.strip_prefix("unix:") {
        let mut s = UnixStream::connect(p).with_context(cannot)?;
        s.set_read_timeout(timeout)?;
        s.write_all(head.as_bytes())?;
        if let Some((_, b)) = body {
            s.write_all(b)?;
        }
        s.read_to_end(&mut raw)?;
    } else {
        let mut s = TcpStream::connect(server).with_context(cannot)?;
        s.set_read_timeout(timeout)?;
        s.write_all(head.as_bytes())?;
        if let Some((_, b)) = body {
            s.write_all(b)?;
        }
        s.read_to_end(&mut raw)?;
    }
    parse(&raw)
}

fn parse(raw: &[u8]) -> Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("malformed HTTP response: no header end")?;
    let head = std::str::from_utf8(&raw[..split]).context("malformed HTTP response header")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("malformed status line {status_line:?}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("malformed chunk")?;
        let size = usize::from_str_radix(std::str::from_utf8(&b[..end])?.trim(), 16)?;
        b = &b[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked() {
        let r = parse(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok").unwrap();
        assert_eq!((r.status, r.body.as_str()), (201, "ok"));
        let r = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            .unwrap();
        assert_eq!(r.body, "abcde");
        assert!(parse(b"garbage").is_err());
    }
}
