//! A minimal HTTP/1.1 client over TCP or a unix socket: one request per connection. Enough for
//! a CLI talking to switchd's API; no TLS (the API is loopback or unix-socket by default).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// The API port switchd listens on unless told otherwise (`--listen`).
const DEFAULT_PORT: u16 = 7380;

/// `--server` as `switchctl` takes it, in the form [`request`] uses: `unix:/PATH` stays,
/// `http://HOST:PORT[/]`, `HOST:PORT` and `HOST` (port 7380) become `HOST:PORT`; an IPv6
/// address is written `[ADDR]:PORT` (a bare `::1` is taken as an address, not a port).
pub fn server_address(s: &str) -> Result<String, String> {
    let s = s.trim();
    if let Some(path) = s.strip_prefix("unix:") {
        if !path.starts_with('/') {
            return Err(format!("{s:?}: a unix socket is unix:/ABSOLUTE/PATH"));
        }
        return Ok(s.to_string());
    }
    if s.starts_with("https://") {
        return Err(format!(
            "{s:?}: switchd's API has no TLS; use http://HOST:PORT, HOST:PORT or unix:/PATH"
        ));
    }
    let rest = s.strip_prefix("http://").unwrap_or(s);
    let hostport = rest.strip_suffix('/').unwrap_or(rest);
    if hostport.is_empty() || hostport.contains('/') {
        return Err(format!(
            "{s:?}: expected http://HOST:PORT, HOST:PORT, HOST or unix:/PATH"
        ));
    }
    // [v6]:port, [v6], a bare v6 address (two colons or more), host:port, host.
    if let Some(inner) = hostport.strip_prefix('[') {
        return match inner.split_once(']') {
            Some((addr, "")) => Ok(format!("[{addr}]:{DEFAULT_PORT}")),
            Some((_, port)) if port.strip_prefix(':').is_some_and(valid_port) => {
                Ok(hostport.to_string())
            }
            _ => Err(format!("{s:?}: expected [IPV6]:PORT")),
        };
    }
    match hostport.matches(':').count() {
        0 => Ok(format!("{hostport}:{DEFAULT_PORT}")),
        1 => {
            let (_, port) = hostport.split_once(':').expect("one colon");
            if valid_port(port) {
                Ok(hostport.to_string())
            } else {
                Err(format!("{s:?}: {port:?} is not a port number"))
            }
        }
        _ => Ok(format!("[{hostport}]:{DEFAULT_PORT}")),
    }
}

fn valid_port(p: &str) -> bool {
    p.parse::<u16>().is_ok_and(|n| n > 0)
}

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

/// One server-sent event: its `id`, `event` and `data` fields (several `data` lines joined by
/// newlines).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub id: String,
    pub event: String,
    pub data: String,
}

/// Reads server-sent events, one line at a time ([`SseParser::line`]).
#[derive(Debug, Default)]
pub struct SseParser {
    event: SseEvent,
    has_data: bool,
}

impl SseParser {
    /// Takes one line (without its end); returns the event a blank line completes. Comment
    /// lines (`: keepalive`) and unknown fields are skipped.
    pub fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let e = std::mem::take(&mut self.event);
            return std::mem::take(&mut self.has_data).then_some(e);
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => self.event.id = value.to_string(),
            "event" => self.event.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.event.data.push('\n');
                }
                self.event.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
        None
    }
}

/// `GET path` as a stream of server-sent events, each handed to `on_event` until it returns
/// `false` or the server ends the stream. An answer other than 200 is returned whole, for the
/// caller to report.
pub fn follow(
    server: &str,
    token: Option<&str>,
    path: &str,
    on_event: impl FnMut(SseEvent) -> Result<bool>,
) -> Result<Option<Response>> {
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nHost: switchd\r\nConnection: close\r\nAccept: text/event-stream\r\n"
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    // The server says `: keepalive` every 15 s: a minute of silence is a dead connection.
    let timeout = Some(Duration::from_secs(60));
    let cannot = || format!("cannot reach switchd at {server} (is it running? see --server)");
    if let Some(p) = server.strip_prefix("unix:") {
        let mut s = UnixStream::connect(p).with_context(cannot)?;
        s.set_read_timeout(timeout)?;
        s.write_all(head.as_bytes())?;
        read_events(BufReader::new(s), on_event)
    } else {
        let mut s = TcpStream::connect(server).with_context(cannot)?;
        s.set_read_timeout(timeout)?;
        s.write_all(head.as_bytes())?;
        read_events(BufReader::new(s), on_event)
    }
}

/// Reads a response head, then (on 200) its chunked or plain body as server-sent events.
fn read_events(
    mut r: impl BufRead,
    mut on_event: impl FnMut(SseEvent) -> Result<bool>,
) -> Result<Option<Response>> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if r.read_until(b'\n', &mut head)? == 0 {
            bail!("the server closed the connection before answering");
        }
    }
    let status_line = std::str::from_utf8(&head)
        .ok()
        .and_then(|h| h.lines().next())
        .unwrap_or_default()
        .to_string();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("malformed status line {status_line:?}"))?;
    if status != 200 {
        let mut raw = head;
        r.read_to_end(&mut raw)?;
        return parse(&raw).map(Some);
    }
    let chunked = String::from_utf8_lossy(&head)
        .to_ascii_lowercase()
        .lines()
        .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
    let mut sse = SseParser::default();
    let mut pending = Vec::new();
    // Hands every complete line in `pending` to the parser.
    let mut lines = |pending: &mut Vec<u8>| -> Result<bool> {
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            if let Some(e) = sse.line(line.trim_end_matches(['\r', '\n'])) {
                if !on_event(e)? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    };
    loop {
        if chunked {
            let mut size = String::new();
            if r.read_line(&mut size)? == 0 {
                return Ok(None);
            }
            let size = usize::from_str_radix(size.trim(), 16)
                .with_context(|| format!("malformed chunk size {size:?}"))?;
            if size == 0 {
                return Ok(None);
            }
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk)?;
            chunk.truncate(size);
            pending.extend_from_slice(&chunk);
        } else {
            let n = {
                let buf = r.fill_buf()?;
                pending.extend_from_slice(buf);
                buf.len()
            };
            if n == 0 {
                return Ok(None);
            }
            r.consume(n);
        }
        if !lines(&mut pending)? {
            return Ok(None);
        }
    }
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
        if size.checked_add(2).is_none_or(|n| b.len() < n) {
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

    #[test]
    fn server_sent_events_from_a_chunked_body() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
            d\r\n: keepalive\n\n\r\n\
            16\r\nid: 1\nevent: link\ndata\r\n\
            1a\r\n: {\"port\":\"a\",\"up\":true}\n\n\r\n\
            0\r\n\r\n";
        let mut seen = Vec::new();
        let r = read_events(&raw[..], |e| {
            seen.push(e);
            Ok(true)
        })
        .unwrap();
        assert!(r.is_none());
        assert_eq!(
            seen,
            [SseEvent {
                id: "1".into(),
                event: "link".into(),
                data: r#"{"port":"a","up":true}"#.into()
            }]
        );
        let r = read_events(
            &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}"[..],
            |_| Ok(true),
        )
        .unwrap()
        .unwrap();
        assert_eq!((r.status, r.body.as_str()), (400, "{}"));
    }

    #[test]
    fn server_addresses_in_every_form_people_write_them() {
        let ok = [
            ("127.0.0.1:7380", "127.0.0.1:7380"),
            ("127.0.0.1", "127.0.0.1:7380"),
            ("http://127.0.0.1:7381", "127.0.0.1:7381"),
            ("http://127.0.0.1:7381/", "127.0.0.1:7381"),
            ("http://localhost", "localhost:7380"),
            ("localhost:9000", "localhost:9000"),
            ("[::1]:7390", "[::1]:7390"),
            ("[::1]", "[::1]:7380"),
            ("::1", "[::1]:7380"),
            (
                "unix:/run/vlanswitch/api.sock",
                "unix:/run/vlanswitch/api.sock",
            ),
        ];
        for (given, want) in ok {
            assert_eq!(server_address(given).as_deref(), Ok(want), "{given}");
        }
        for bad in [
            "https://127.0.0.1:7380",
            "127.0.0.1:http",
            "127.0.0.1:0",
            "http://127.0.0.1:7380/api/v1",
            "unix:relative.sock",
            "",
            "[::1]:x",
        ] {
            assert!(server_address(bad).is_err(), "{bad:?} accepted");
        }
    }
}
