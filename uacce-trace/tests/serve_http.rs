//! `serve`'s HTTP side through the binary (replaying a golden recording, no
//! root): `GET`/`HEAD /metrics`, 404 and 405, gzip when asked, malformed and
//! oversized requests, many clients at once, slow clients.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use common::serve::Serve;

/// `serve --replay` of the golden "before" recording.
fn start() -> Serve {
    common::serve::start(&common::golden_dir().join("before.utrace"), &[])
}

/// Send raw bytes, read the whole answer: (status line, head, body bytes).
fn exchange(addr: &str, request: &[u8]) -> (String, String, Vec<u8>) {
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    c.write_all(request).expect("send");
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).expect("read");
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(buf.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, head, buf[split..].to_vec())
}

#[test]
fn http_behaviour() {
    let s = start();
    // Wait for the whole replay, so that the scrapes below agree.
    for _ in 0..200 {
        let (_, _, body) = exchange(&s.addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        if String::from_utf8_lossy(&body).contains("\nuacce_trace_replay_complete 1\n") {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let (status, head, body) = exchange(&s.addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert!(head.contains("Connection: close\r\n"));
    assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
    let text = String::from_utf8(body).expect("UTF-8");
    assert!(text.contains("uacce_trace_iopf_latency_seconds_bucket{pid=\"1234\",comm=\"fio\""));

    let (status, head, body) = exchange(&s.addr, b"HEAD /metrics HTTP/1.0\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.is_empty() && head.contains("Content-Length: "));

    let (status, head, body) = exchange(
        &s.addr,
        b"GET /metrics HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n",
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(head.contains("Content-Encoding: gzip\r\n"));
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut unzipped)
        .expect("gzip body");
    // Equal but for the tool's own CPU time and memory, which move.
    let steady = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with("process_"))
            .map(str::to_string)
            .collect()
    };
    let (a, b) = (steady(&unzipped), steady(&text));
    let differ: Vec<(&String, &String)> = a.iter().zip(&b).filter(|(x, y)| x != y).collect();
    assert!(
        a.len() == b.len() && differ.is_empty(),
        "gzip body differs: {differ:?}"
    );

    for (req, want) in [
        (&b"GET / HTTP/1.1\r\n\r\n"[..], "HTTP/1.1 404 Not Found"),
        (b"GET /metricsx HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
        (
            b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 405 Method Not Allowed",
        ),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
        ),
        (b"GET /metrics SPDY/3\r\n\r\n", "HTTP/1.1 400 Bad Request"),
    ] {
        let (status, head, _) = exchange(&s.addr, req);
        assert_eq!(status, want, "{req:?}");
        if want.contains("405") {
            assert!(head.contains("Allow: GET, HEAD\r\n"));
        }
    }
    // A head that never ends within the size limit.
    let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 10_000));
    let (status, _, _) = exchange(&s.addr, &huge);
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");

    // A slow client, one byte at a time.
    let mut c = TcpStream::connect(&s.addr).expect("connect");
    for b in b"GET /metrics HTTP/1.1\r\n\r\n" {
        c.write_all(&[*b]).expect("send");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).expect("read");
    assert!(buf.starts_with(b"HTTP/1.1 200 OK\r\n"));

    // Many clients at once (more than the connection limit): all answered.
    let handles: Vec<_> = (0..48)
        .map(|_| {
            let addr = s.addr.clone();
            std::thread::spawn(move || {
                let (status, _, body) = exchange(&addr, b"GET /metrics HTTP/1.1\r\n\r\n");
                status == "HTTP/1.1 200 OK" && !body.is_empty()
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().expect("client thread"), "a client got no answer");
    }
}

/// A crowd of slow clients cannot starve a scrape: 1,000 connections that
/// send the start of a request head and then nothing are held open while
/// a real scrape must be answered within 1 s; afterwards the crowd is
/// dropped by the server's head timeout, not by the test.
#[test]
fn a_scrape_is_answered_while_a_thousand_slow_clients_hold_connections() {
    // The test itself needs a descriptor per slow client.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit on structs we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max.min(4096);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    const SLOW: usize = 1000;
    assert!(
        lim.rlim_cur as usize > SLOW + 64,
        "open-file hard limit {} too low for {SLOW} clients",
        lim.rlim_max
    );
    let s = start();
    let crowd: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut c = TcpStream::connect(&s.addr).expect("connect");
            c.write_all(b"GET /met").expect("send");
            c
        })
        .collect();
    // Let the server accept them all.
    std::thread::sleep(Duration::from_millis(300));
    let t0 = std::time::Instant::now();
    let mut c = TcpStream::connect(&s.addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    c.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").expect("send");
    let mut buf = Vec::new();
    let read = c.read_to_end(&mut buf);
    let took = t0.elapsed();
    assert!(
        read.is_ok() && buf.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "no answer within 1 s while {SLOW} slow clients wait ({took:?}, {read:?})"
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    // The server drops each slow client at its head timeout (5 s).
    let mut first = crowd.into_iter().next().expect("a slow client");
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut rest = Vec::new();
    let t1 = std::time::Instant::now();
    let _ = first.read_to_end(&mut rest);
    assert!(t1.elapsed() < Duration::from_secs(9), "slow client held");
}
