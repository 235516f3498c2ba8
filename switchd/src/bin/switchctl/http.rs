//! A minimal HTTP/1.1 client over TCP or a unix socket: one request per connection. Enough for
//! a CLI talking to switchd's API; no TLS (the API is loopback or unix-socket by default).

use std::io::{Read, Write};
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
    let mut s = open(server, token, method, path, body, "application/json")?;
    s.set_timeout(Some(Duration::from_secs(30)))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse(&raw)
}

/// Sends a `GET` for a stream (a capture, events) and hands its body to `on_data` piece by
/// piece as it arrives, until the server ends it or `on_data` says stop (`false`). An answer
/// that is not 2xx is returned whole instead. `quiet`: longest the stream may be silent.
pub fn stream(
    server: &str,
    token: Option<&str>,
    path: &str,
    accept: &str,
    quiet: Option<Duration>,
    mut on_data: impl FnMut(&[u8]) -> Result<bool>,
) -> Result<Option<Response>> {
    let mut s = open(server, token, "GET", path, None, accept)?;
    s.set_timeout(quiet)?;
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let split = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            bail!("malformed HTTP response: no header end");
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = std::str::from_utf8(&raw[..split]).context("malformed HTTP response header")?;
    let (status, chunked) = status_of(head)?;
    if !(200..300).contains(&status) {
        s.read_to_end(&mut raw)?;
        return parse(&raw).map(Some);
    }
    let mut dechunk = chunked.then(Dechunk::default);
    let mut feed = |bytes: &[u8]| -> Result<bool> {
        match &mut dechunk {
            None => on_data(bytes),
            Some(d) => {
                let (data, end) = d.feed(bytes)?;
                Ok(on_data(&data)? && !end)
            }
        }
    };
    if !feed(&raw[split + 4..])? {
        return Ok(None);
    }
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 || !feed(&buf[..n])? {
            return Ok(None);
        }
    }
}

/// A connection to switchd, TCP or unix.
trait Conn: Read + Write {
    fn set_timeout(&self, t: Option<Duration>) -> std::io::Result<()>;
}

impl Conn for TcpStream {
    fn set_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        self.set_read_timeout(t)
    }
}

impl Conn for UnixStream {
    fn set_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        self.set_read_timeout(t)
    }
}

/// Connects to `server` and sends the request.
fn open(
    server: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
    accept: &str,
) -> Result<Box<dyn Conn>> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: switchd\r\nConnection: close\r\nAccept: {accept}\r\n"
    );
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
    let cannot = || format!("cannot reach switchd at {server} (is it running? see --server)");
    let mut s: Box<dyn Conn> = match server.strip_prefix("unix:") {
        Some(p) => Box::new(UnixStream::connect(p).with_context(cannot)?),
        None => Box::new(TcpStream::connect(server).with_context(cannot)?),
    };
    s.write_all(head.as_bytes())?;
    if let Some((_, b)) = body {
        s.write_all(b)?;
    }
    Ok(s)
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
/// `false` or the server ends the stream. An answer other than 2xx is returned whole, for the
/// caller to report.
pub fn follow(
    server: &str,
    token: Option<&str>,
    path: &str,
    mut on_event: impl FnMut(SseEvent) -> Result<bool>,
) -> Result<Option<Response>> {
    let (mut sse, mut pending) = (SseParser::default(), Vec::new());
    // The server says `: keepalive` every 15 s: a minute of silence is a dead connection.
    let quiet = Some(Duration::from_secs(60));
    stream(server, token, path, "text/event-stream", quiet, |data| {
        pending.extend_from_slice(data);
        events_in(&mut pending, &mut sse, &mut on_event)
    })
}

/// Hands every complete line in `pending` to `sse`, and each event it completes to
/// `on_event`; false when `on_event` says stop.
fn events_in(
    pending: &mut Vec<u8>,
    sse: &mut SseParser,
    on_event: &mut impl FnMut(SseEvent) -> Result<bool>,
) -> Result<bool> {
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
}

/// The status and whether the body is chunked, from a response head.
fn status_of(head: &str) -> Result<(u16, bool)> {
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
    Ok((status, chunked))
}

/// Decodes a chunked body as it arrives.
#[derive(Debug, Default)]
struct Dechunk {
    state: Chunked,
    /// The chunk-size line read so far.
    line: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy)]
enum Chunked {
    /// Reading a chunk-size line.
    #[default]
    Size,
    /// This many data bytes of the chunk to come.
    Data(usize),
    /// This many bytes of the CRLF after a chunk's data to skip.
    Crlf(u8),
    /// The last chunk was seen.
    Done,
}

impl Dechunk {
    /// The data in `input`, and whether the last chunk was seen.
    fn feed(&mut self, mut b: &[u8]) -> Result<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            match self.state {
                Chunked::Size => {
                    let Some(i) = b.iter().position(|&c| c == b'\n') else {
                        self.line.extend_from_slice(b);
                        if self.line.len() > 1024 {
                            bail!("malformed chunk: a size line over 1 KiB");
                        }
                        break;
                    };
                    self.line.extend_from_slice(&b[..i]);
                    b = &b[i + 1..];
                    let text = std::str::from_utf8(&self.line)?;
                    let digits = text.split(';').next().unwrap_or_default().trim();
                    let size = usize::from_str_radix(digits, 16)
                        .with_context(|| format!("malformed chunk size {text:?}"))?;
                    self.line.clear();
                    self.state = if size == 0 {
                        Chunked::Done
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(n) => {
                    let k = n.min(b.len());
                    out.extend_from_slice(&b[..k]);
                    b = &b[k..];
                    self.state = if k == n {
                        Chunked::Crlf(2)
                    } else {
                        Chunked::Data(n - k)
                    };
                }
                Chunked::Crlf(n) => {
                    b = &b[1..];
                    self.state = if n == 1 {
                        Chunked::Size
                    } else {
                        Chunked::Crlf(n - 1)
                    };
                }
                Chunked::Done => break,
            }
        }
        Ok((out, matches!(self.state, Chunked::Done)))
    }
}

fn parse(raw: &[u8]) -> Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("malformed HTTP response: no header end")?;
    let head = std::str::from_utf8(&raw[..split]).context("malformed HTTP response header")?;
    let (status, chunked) = status_of(head)?;
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
    fn chunks_split_anywhere_decode_whole() {
        let body = b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n2;ext=1\r\nde\r\n0\r\n\r\n";
        for step in 1..body.len() {
            let mut d = Dechunk::default();
            let (mut out, mut end) = (Vec::new(), false);
            for piece in body.chunks(step) {
                let (data, e) = d.feed(piece).unwrap();
                out.extend_from_slice(&data);
                end = e;
                if end {
                    break;
                }
            }
            assert!(end, "step {step}");
            assert_eq!(out, b"abc0123456789abcdefde", "step {step}");
        }
        assert!(Dechunk::default().feed(b"zz\r\n").is_err());
    }

    #[test]
    fn server_sent_events_split_anywhere() {
        let body = b": keepalive\n\nid: 1\nevent: link\ndata: {\"port\":\"a\",\"up\":true}\n\nid: 2\nevent: x\ndata: a\ndata: b\n\n";
        for step in 1..body.len() {
            let (mut sse, mut pending, mut seen) = (SseParser::default(), Vec::new(), Vec::new());
            for piece in body.chunks(step) {
                pending.extend_from_slice(piece);
                events_in(&mut pending, &mut sse, &mut |e| {
                    seen.push(e);
                    Ok(true)
                })
                .unwrap();
            }
            assert_eq!(
                seen,
                [
                    SseEvent {
                        id: "1".into(),
                        event: "link".into(),
                        data: r#"{"port":"a","up":true}"#.into()
                    },
                    SseEvent {
                        id: "2".into(),
                        event: "x".into(),
                        data: "a\nb".into()
                    }
                ],
                "step {step}"
            );
        }
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
