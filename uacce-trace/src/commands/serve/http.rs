//! A tiny HTTP/1.1 server for one resource: `GET /metrics` (and `HEAD`).
//! Every other path is 404, every other method on `/metrics` 405; one
//! request per connection (`Connection: close`); the body is gzip-compressed
//! when the client accepts it (Prometheus does). Request parsing and
//! response building are pure; [`handle`] runs one connection on tokio and
//! gets the body from the serve loop through a channel (so rendering sees a
//! consistent model and needs no lock). Timeouts and a size limit keep a
//! slow or hostile client from holding a connection.

use std::{io::Write as _, time::Duration};

use tokio::{
    net::TcpStream,
    sync::{mpsc, oneshot},
};

/// Largest request head accepted.
pub const MAX_HEAD: usize = 8192;
/// Time a client has to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// `Accept-Encoding` lists gzip.
    pub gzip: bool,
}

/// Why a request could not be parsed (answered with 400 or 431).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadRequest {
    Malformed,
    TooLarge,
}

/// Where the request head ends (index after the blank line), if it has.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
}

/// Parse a request head (request line and header fields).
pub fn parse_request(head: &[u8]) -> Result<Request, BadRequest> {
    let text = std::str::from_utf8(head).map_err(|_| BadRequest::Malformed)?;
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let line = lines.next().ok_or(BadRequest::Malformed)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BadRequest::Malformed);
    };
    if method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || !matches!(version, "HTTP/1.0" | "HTTP/1.1")
    {
        return Err(BadRequest::Malformed);
    }
    // Absolute form (`http://host:port/metrics`) as proxies send it.
    let target = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    if !target.starts_with('/') {
        return Err(BadRequest::Malformed);
    }
    let path = target.split(['?', '#']).next().unwrap_or("/").to_string();
    let mut gzip = false;
    for l in lines {
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':').ok_or(BadRequest::Malformed)?;
        if name.eq_ignore_ascii_case("accept-encoding") {
            gzip |= value.split(',').any(|e| {
                let mut p = e.split(';');
                let coding = p.next().unwrap_or("").trim();
                let refused = p.any(|q| matches!(q.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
                coding.eq_ignore_ascii_case("gzip") && !refused
            });
        }
    }
    Ok(Request {
        method: method.to_string(),
        path,
        gzip,
    })
}

/// What to answer a request with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// 200 with the metrics (body omitted for HEAD).
    Metrics {
        head_only: bool,
    },
    NotFound,
    MethodNotAllowed,
}

/// Route a request.
pub fn route(req: &Request) -> Route {
    if req.path != "/metrics" {
        return Route::NotFound;
    }
    match req.method.as_str() {
        "GET" => Route::Metrics { head_only: false },
        "HEAD" => Route::Metrics { head_only: true },
        _ => Route::MethodNotAllowed,
    }
}

/// A complete response: status line, fields, blank line, body.
pub fn response(
    status: &str,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 256);
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// A plain-text error response.
pub fn error_response(status: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let body = format!("{status}\n");
    response(
        status,
        "text/plain; charset=utf-8",
        extra,
        body.as_bytes(),
        false,
    )
}

/// The metrics response, gzip-compressed when `gzip`.
pub fn metrics_response(body: &str, gzip: bool, head_only: bool) -> Vec<u8> {
    if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        if enc.write_all(body.as_bytes()).is_ok() {
            if let Ok(z) = enc.finish() {
                return response(
                    "200 OK",
                    super::metrics::CONTENT_TYPE,
                    &[("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")],
                    &z,
                    head_only,
                );
            }
        }
    }
    response(
        "200 OK",
        super::metrics::CONTENT_TYPE,
        &[("Vary", "Accept-Encoding")],
        body.as_bytes(),
        head_only,
    )
}

/// A request for the current exposition, answered by the serve loop.
pub type ScrapeRequest = oneshot::Sender<String>;

async fn read_some(stream: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        stream.readable().await?;
        match stream.try_read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

async fn write_all(stream: &TcpStream, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        stream.writable().await?;
        match stream.try_write(buf) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn read_head(stream: &TcpStream) -> Result<Request, Option<BadRequest>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = head_end(&buf) {
            return parse_request(&buf[..end]).map_err(Some);
        }
        if buf.len() >= MAX_HEAD {
            return Err(Some(BadRequest::TooLarge));
        }
        match read_some(stream, &mut chunk).await {
            // Closed before a whole head: nothing to answer.
            Ok(0) if buf.is_empty() => return Err(None),
            Ok(0) => return Err(Some(BadRequest::Malformed)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return Err(None),
        }
    }
}

/// Serve one connection: read the request, answer, close.
pub async fn handle(stream: TcpStream, scrapes: mpsc::Sender<ScrapeRequest>) {
    let req = match tokio::time::timeout(READ_TIMEOUT, read_head(&stream)).await {
        Ok(r) => r,
        Err(_) => Err(Some(BadRequest::Malformed)),
    };
    let answer = match req {
        Err(None) => return,
        Err(Some(BadRequest::TooLarge)) => {
            error_response("431 Request Header Fields Too Large", &[])
        }
        Err(Some(BadRequest::Malformed)) => error_response("400 Bad Request", &[]),
        Ok(req) => match route(&req) {
            Route::NotFound => error_response("404 Not Found", &[]),
            Route::MethodNotAllowed => {
                error_response("405 Method Not Allowed", &[("Allow", "GET, HEAD")])
            }
            Route::Metrics { head_only } => {
                let (tx, rx) = oneshot::channel();
                let body = match scrapes.send(tx).await {
                    Ok(()) => rx.await.ok(),
                    Err(_) => None,
                };
                match body {
                    Some(body) => metrics_response(&body, req.gzip, head_only),
                    None => error_response("503 Service Unavailable", &[]),
                }
            }
        },
    };
    let write = async {
        write_all(&stream, &answer).await?;
        // Half-close after the response, then drop: the client reads to EOF.
        stream.into_std()?.shutdown(std::net::Shutdown::Write)
    };
    // A client that went away (EPIPE, reset) or stalls is simply dropped.
    let _ = tokio::time::timeout(WRITE_TIMEOUT, write).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Request, BadRequest> {
        let b = s.as_bytes();
        parse_request(&b[..head_end(b).unwrap_or(b.len())])
    }

    #[test]
    fn requests_and_routes() {
        let r = parse("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip, deflate\r\n\r\n");
        assert_eq!(
            r,
            Ok(Request {
                method: "GET".into(),
                path: "/metrics".into(),
                gzip: true
            })
        );
        assert_eq!(
            route(&r.unwrap_or_else(|e| panic!("{e:?}"))),
            Route::Metrics { head_only: false }
        );
        let r = parse("HEAD /metrics?x=1 HTTP/1.0\n\n").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            (route(&r), r.gzip),
            (Route::Metrics { head_only: true }, false)
        );
        let r = parse("GET http://h:19211/metrics HTTP/1.1\r\nAccept-Encoding: gzip;q=0\r\n\r\n")
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((r.path.as_str(), r.gzip), ("/metrics", false));
        let r = parse("POST /metrics HTTP/1.1\r\n\r\n").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(route(&r), Route::MethodNotAllowed);
        let r = parse("GET / HTTP/1.1\r\n\r\n").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(route(&r), Route::NotFound);
        let r = parse("GET /metrics/ HTTP/1.1\r\n\r\n").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(route(&r), Route::NotFound);
        for bad in [
            "",
            "GET\r\n\r\n",
            "GET /metrics\r\n\r\n",
            "GET /metrics HTTP/2.0\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\n",
            "get /metrics HTTP/1.1\r\n\r\n",
            "GET metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
            "\u{0}\u{1}\u{2}\r\n\r\n",
        ] {
            assert_eq!(parse(bad), Err(BadRequest::Malformed), "{bad:?}");
        }
        assert_eq!(
            parse_request(b"GET /\xff HTTP/1.1\r\n\r\n"),
            Err(BadRequest::Malformed)
        );
    }

    #[test]
    fn responses() {
        let r = String::from_utf8(metrics_response("a 1\n", false, false)).unwrap_or_default();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(r.contains("Content-Length: 4\r\n") && r.contains("Connection: close\r\n"));
        assert!(r.ends_with("\r\n\r\na 1\n"), "{r}");
        let head = String::from_utf8(metrics_response("a 1\n", false, true)).unwrap_or_default();
        assert!(head.contains("Content-Length: 4\r\n") && head.ends_with("\r\n\r\n"));
        let z = metrics_response("a 1\n", true, false);
        let split = head_end(&z).unwrap_or(0);
        let mut text = String::new();
        use std::io::Read as _;
        flate2::read::GzDecoder::new(&z[split..])
            .read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text, "a 1\n");
        let e = String::from_utf8(error_response(
            "405 Method Not Allowed",
            &[("Allow", "GET, HEAD")],
        ))
        .unwrap_or_default();
        assert!(
            e.starts_with("HTTP/1.1 405 Method Not Allowed\r\n")
                && e.contains("Allow: GET, HEAD\r\n")
        );
    }
}
