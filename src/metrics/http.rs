//! A deliberately tiny HTTP/1.1 server for three GET paths: `/metrics`, `/healthz`, `/readyz`.
//!
//! Hand-rolled on a tokio `TcpListener` rather than a web framework: the protocol needed here
//! is one request line per connection, and hyper with its stack would be the largest
//! dependency of the proxy for it. What keeps it safe on an address a scraper (or anyone on
//! the network) can reach:
//! - one request per connection, answered with `Connection: close`;
//! - the request head is bounded ([`MAX_REQUEST`]; larger gets 431) and must arrive within
//!   [`READ_TIMEOUT`] (else 408); a body is never read;
//! - at most [`MAX_CONNECTIONS`] connections at once; more are closed at accept;
//! - parsing works on bytes and returns a status for anything malformed (400), never panics;
//! - GET only (405 with `Allow: GET` on a known path), unknown paths 404;
//! - it stops when `shutdown.hard` is cancelled, and keeps answering while the proxy drains.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::MissedTickBehavior;

use super::sample::Sampler;
use crate::app::Shared;

/// Largest request head (request line and headers) read.
pub const MAX_REQUEST: usize = 8 * 1024;
/// Time allowed for the whole request head to arrive.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed to write the response (a slow scraper cannot hold a task forever).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How often histogram samples are folded into their buckets when nobody scrapes, so
/// memory stays bounded (the exporter otherwise folds them at render).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// What one connection needs.
struct Endpoint {
    handle: PrometheusHandle,
    shared: Arc<Shared>,
    sampler: Sampler,
}

/// Accepts until `shared.shutdown.hard` is cancelled.
pub(super) async fn serve(listener: TcpListener, handle: PrometheusHandle, shared: Arc<Shared>) {
    let stop = shared.shutdown.hard.clone();
    let endpoint = Arc::new(Endpoint {
        handle,
        shared,
        sampler: Sampler::default(),
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut upkeep = tokio::time::interval(UPKEEP_INTERVAL);
    upkeep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = upkeep.tick() => {
                endpoint.handle.run_upkeep();
                continue;
            }
            _ = stop.cancelled() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: back off briefly rather than spin.
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // Too many at once: closing is the cheapest answer and the scraper retries.
            continue;
        };
        let endpoint = Arc::clone(&endpoint);
        let stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            tokio::select! {
                _ = endpoint.connection(stream) => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

impl Endpoint {
    /// One request, one response, close. I/O errors end the connection quietly: the peer is
    /// gone and there is nobody to tell.
    async fn connection(&self, mut stream: TcpStream) {
        let response = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
            Err(_) => Response::text(408, "request timeout\n"),
            Ok(Err(_)) => return,
            Ok(Ok(head)) => match parse_request(&head) {
                Ok(req) => self.respond(req).await,
                Err(status) => Response::text(status, status_line_reason(status)),
            },
        };
        let bytes = response.encode();
        let write = async {
            stream.write_all(&bytes).await?;
            stream.shutdown().await
        };
        let _ = tokio::time::timeout(WRITE_TIMEOUT, write).await;
    }

    async fn respond(&self, req: Request<'_>) -> Response {
        let known = matches!(req.path, "/metrics" | "/healthz" | "/readyz");
        if !known {
            return Response::text(404, "not found: try /metrics, /healthz or /readyz\n");
        }
        if req.method != "GET" {
            let mut r = Response::text(405, "method not allowed: GET only\n");
            r.allow_get = true;
            return r;
        }
        match req.path {
            "/metrics" => {
                self.sampler.refresh(&self.shared);
                Response {
                    status: 200,
                    content_type: METRICS_CONTENT_TYPE,
                    body: self.handle.render().into_bytes(),
                    allow_get: false,
                }
            }
            "/healthz" => Response::text(200, "ok\n"),
            _ => match super::readiness(&self.shared).await {
                Ok(()) => Response::text(200, "ready\n"),
                Err(why) => Response::text(503, format!("not ready: {why}\n")),
            },
        }
    }
}

/// Reads until the end of the request head (a blank line), EOF, or [`MAX_REQUEST`] bytes;
/// returns what it read (the parser decides whether that is a request).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(buf);
        }
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if head_end(&buf[from..]).is_some() || buf.len() > MAX_REQUEST {
            return Ok(buf);
        }
    }
}

/// Where the head ends (after `\r\n\r\n`, or `\n\n` from lenient clients), if it does.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The parts of a request line this server looks at.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The target without its query string.
    pub path: &'a str,
}

/// Parses a request head: `METHOD SP /target SP HTTP/1.x`, then header lines up to a blank
/// line. Returns the HTTP status to answer with when it is not a request this server takes:
/// 431 when larger than [`MAX_REQUEST`] or without an end within it, 400 when malformed, 505
/// for another HTTP version. Headers are not interpreted (a body, if announced, is ignored:
/// the connection closes after the response).
pub fn parse_request(head: &[u8]) -> Result<Request<'_>, u16> {
    let Some(end) = head_end(head) else {
        return Err(if head.len() > MAX_REQUEST { 431 } else { 400 });
    };
    if end > MAX_REQUEST {
        return Err(431);
    }
    let head = &head[..end];
    let line_end = head.iter().position(|&b| b == b'\n').ok_or(400u16)?;
    let line = head[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&head[..line_end]);
    let line = std::str::from_utf8(line).map_err(|_| 400u16)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(400);
    }
    if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(400);
    }
    match version {
        "HTTP/1.1" | "HTTP/1.0" => {}
        v if v.starts_with("HTTP/") => return Err(505),
        _ => return Err(400),
    }
    // Header lines must at least look like `name: value` (no bare garbage after the line).
    for header in head[line_end + 1..].split(|&b| b == b'\n') {
        let header = header.strip_suffix(b"\r").unwrap_or(header);
        if !header.is_empty() && !header.contains(&b':') {
            return Err(400);
        }
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    Ok(Request { method, path })
}

fn status_line_reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    allow_get: bool,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Response {
        let mut body = body.into();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        Response {
            status,
            content_type: TEXT,
            body: body.into_bytes(),
            allow_get: false,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let allow = if self.allow_get { "Allow: GET\r\n" } else { "" };
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            self.status,
            status_line_reason(self.status),
            self.content_type,
            self.body.len(),
        )
        .into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_plain_get() {
        let r = parse_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
        assert_eq!(
            r,
            Ok(Request {
                method: "GET",
                path: "/metrics"
            })
        );
        let r = parse_request(b"GET /readyz?verbose=1 HTTP/1.0\n\n");
        assert_eq!(r.map(|r| r.path), Ok("/readyz"));
    }

    #[test]
    fn malformed_requests_get_a_status_not_a_panic() {
        for bad in [
            &b""[..],
            b"\r\n\r\n",
            b"HELLO\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET /metrics\r\n\r\n",
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"get /metrics HTTP/1.1\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics FTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1 extra\r\n\r\n",
            b"GET /m\xffx HTTP/1.1\r\n\r\n",
            b"\xff\xfe\x00\x01\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\ngarbage\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\n", // no end of head
        ] {
            assert_eq!(
                parse_request(bad),
                Err(400),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(parse_request(b"GET / HTTP/2.0\r\n\r\n"), Err(505));
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_REQUEST + 10, b'a');
        assert_eq!(parse_request(&big), Err(431));
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_request(&big), Err(431));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let len = (rng % 64) as usize;
            let mut buf: Vec<u8> = (0..len)
                .map(|i| b"GET /metricsHTP1.\r\n: ?\xff"[(rng as usize >> (i % 40)) % 23])
                .collect();
            buf.extend_from_slice(b"\r\n\r\n");
            let _ = parse_request(&buf);
        }
    }

    #[test]
    fn responses_close_and_say_their_length() {
        let mut r = Response::text(405, "no");
        r.allow_get = true;
        let text = String::from_utf8(r.encode()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(text.contains("Content-Length: 3\r\n"), "{text}");
        assert!(text.contains("Allow: GET\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n\r\nno\n"), "{text}");
    }
}
