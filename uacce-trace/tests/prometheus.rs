//! `serve` scraped by a real Prometheus server (Debian's `prometheus`
//! package, installed here with apt-get when missing and we are root;
//! otherwise the test skips and says why, a failure under `CI=true`). The
//! server and `serve` run on loopback; `serve` replays a synthetic
//! recording made here with the raw file writer and then holds its final
//! state, so every scrape sees the same data. A `histogram_quantile()` query through Prometheus's HTTP API
//! must agree with the tool's own quantile (from the model): both in the
//! same bucket, and equal to the value the bucket counts interpolate to.

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use uacce_trace::{
    commands::serve::metrics::{cumulative_buckets, BUCKETS_NS},
    ingest::event::{Event, HookType, IopfEvent, LossSample, PinEvent},
    ingest::rawfile::RawWriter,
    ingest::run::RunMeta,
    model::{Aggregator, Kind, ModelConfig, ProcId},
};
use uacce_trace_common::PinFunc;

const PID: u32 = 4242;
const DEV: &str = "0000:6a:00.0";
const START: u64 = 5_000_000_000_000;

/// Kills the child when dropped (a failed assertion leaves nothing running).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: SIGTERM to our own child, which has not been reaped.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find_prometheus() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
}

/// The prometheus binary, installing Debian's package when root.
fn prometheus() -> Result<PathBuf, String> {
    if let Some(p) = find_prometheus() {
        return Ok(p);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("prometheus is not installed and installing it needs root \
                    (apt-get install prometheus)"
            .into());
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "prometheus"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    eprintln!("installing Debian's prometheus package");
    if !install() {
        let _ = Command::new("apt-get")
            .arg("update")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        install();
    }
    find_prometheus().ok_or_else(|| "apt-get install prometheus failed".into())
}

struct Lcg(u64);

impl Lcg {
    fn unit(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// 4000 IOPFs of one process spread log-uniformly over 3 µs–3 ms with a
/// 2 % tail up to 40 ms, a few unattributed faults, pins and a loss sample.
fn events() -> Vec<Event> {
    let mut rng = Lcg(99);
    let mut v = Vec::new();
    for i in 0..4000u64 {
        let u = rng.unit();
        let latency = if rng.unit() < 0.02 {
            3e6 * (40e6f64 / 3e6).powf(u)
        } else {
            3e3 * (3e6f64 / 3e3).powf(u)
        };
        v.push(Event::Iopf(IopfEvent {
            ts_ns: START + i * 500_000,
            latency_ns: latency as u64,
            tgid: if i % 50 == 7 { None } else { Some(PID) },
            comm: if i % 50 == 7 {
                String::new()
            } else {
                "accel-bench".into()
            },
            device: DEV.into(),
            pasid: 5,
            grpid: (i % 256) as u32,
            perm: 3,
            flags: 1,
            addr: 0x7f00_0000_0000 + (i % 64) * 4096,
            response: 0,
            hook: HookType::Fentry,
        }));
        if i % 400 == 0 {
            v.push(Event::Pin(PinEvent {
                ts_ns: START + i * 500_000 + 1,
                latency_ns: 2_000 + i,
                tgid: PID,
                tid: PID,
                comm: "accel-bench".into(),
                func: PinFunc::PinUserPagesFast,
                hook: HookType::Kprobe,
                start: 0x7e00_0000_0000 + i * 0x10_0000,
                nr_pages: 8,
                ret: 8,
                gup_flags: 0,
                longterm: true,
            }));
        }
    }
    v.push(Event::Loss(LossSample {
        ts_ns: START + 2_000_000_000,
        losses: uacce_trace::ingest::losses::Ledger::from_counts(&[
            (uacce_trace::ingest::losses::LossReason::RingFullIoctl, 2),
            (uacce_trace::ingest::losses::LossReason::IopfUnanswered, 1),
        ]),
    }));
    v
}

fn write_recording(path: &Path, events: &[Event]) {
    let header = RunMeta {
        start_unix_ns: 1_700_000_000_000_000_000,
        start_mono_ns: START,
        kernel: "6.12.0-prom-test".into(),
        plan: "iopf: fentry".into(),
        command: String::new(),
    };
    let file = std::fs::File::create(path).expect("create recording");
    let mut w = RawWriter::new(std::io::BufWriter::new(file), &header).expect("header");
    for e in events {
        w.write_event(e).expect("write event");
    }
    w.finish().expect("finish").flush().expect("flush");
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET` with HTTP/1.0 (no chunking); returns status and body.
fn http_get(port: u16, target: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {target} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// An instant query; the scalar value of the first result, if any.
fn query(port: u16, promql: &str) -> Option<f64> {
    let (status, body) = http_get(port, &format!("/api/v1/query?query={}", urlencode(promql)))?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// Prometheus's `histogram_quantile` over classic buckets (v2.42 `bucketQuantile`).
fn bucket_quantile(q: f64, cum: &[u64], count: u64) -> f64 {
    let rank = q * count as f64;
    let Some(b) = cum.iter().position(|&c| c as f64 >= rank) else {
        return BUCKETS_NS[BUCKETS_NS.len() - 1] as f64 / 1e9;
    };
    let (start, below) = if b == 0 {
        (0.0, 0.0)
    } else {
        (BUCKETS_NS[b - 1] as f64 / 1e9, cum[b - 1] as f64)
    };
    let end = BUCKETS_NS[b] as f64 / 1e9;
    start + (end - start) * ((rank - below) / (cum[b] as f64 - below))
}

/// The bucket `(start, end]` in seconds holding `ns`.
fn bucket_of(ns: u64) -> (f64, f64) {
    let i = BUCKETS_NS.iter().position(|&le| ns <= le).unwrap_or(0);
    let start = if i == 0 { 0 } else { BUCKETS_NS[i - 1] };
    (start as f64 / 1e9, BUCKETS_NS[i] as f64 / 1e9)
}

#[test]
fn prometheus_histogram_quantile_agrees_with_the_model() {
    let prom = match prometheus() {
        Ok(p) => p,
        Err(why) => {
            common::skip(common::Lack::Setup, &why);
            return;
        }
    };
    let dir = common::scratch("prometheus");
    let events = events();
    let recording = dir.join("synthetic.utrace");
    write_recording(&recording, &events);

    // The tool's own view: the same events through the model.
    let mut agg = Aggregator::new(ModelConfig {
        start_ns: Some(START),
        ..Default::default()
    });
    agg.ingest_all(&events);
    let snap = agg.snapshot(agg.latest_ns());
    let series = snap
        .series
        .iter()
        .find(|s| s.key.kind == Kind::Iopf && s.key.proc_id == ProcId::Pid(PID))
        .expect("the process's IOPF series");
    let (cum, count, _) = cumulative_buckets(&series.hist);

    // serve --replay, held after the replay.
    let mut serve = Command::new(env!("CARGO_BIN_EXE_uacce-trace"))
        .args(["serve", "--listen", "127.0.0.1:0", "--replay"])
        .arg(&recording)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start serve");
    let stderr = serve.stderr.take().expect("stderr");
    let serve = Running(serve);
    let mut lines = BufReader::new(stderr).lines();
    let serve_addr = loop {
        let line = lines
            .next()
            .expect("serve exited before listening")
            .expect("read serve's stderr");
        if let Some(rest) = line.strip_prefix("uacce-trace: serving http://") {
            break rest.split('/').next().unwrap_or_default().to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));

    let prom_port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: uacce\n    static_configs:\n      - targets: ['{serve_addr}']\n"
        ),
    )
    .expect("write prometheus.yml");
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
    let prometheus = Running(
        Command::new(&prom)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );

    // Wait until Prometheus has scraped the complete replay.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if query(prom_port, "uacce_trace_replay_complete{job=\"uacce\"}") == Some(1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the complete replay; its log:\n{}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(query(prom_port, "up{job=\"uacce\"}"), Some(1.0));
    assert_eq!(
        query(
            prom_port,
            &format!("uacce_trace_iopf_latency_seconds_count{{pid=\"{PID}\"}}")
        ),
        Some(count as f64)
    );
    assert_eq!(
        query(prom_port, "uacce_trace_dropped_records_total"),
        Some(3.0)
    );
    // By reason: every reason a series, summing to the total.
    assert_eq!(
        query(
            prom_port,
            "uacce_trace_lost_total{job=\"uacce\",reason=\"ring_full_ioctl\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        query(
            prom_port,
            "uacce_trace_lost_total{job=\"uacce\",reason=\"stale_inflight\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        query(prom_port, "sum(uacce_trace_lost_total{job=\"uacce\"})"),
        Some(3.0)
    );

    for (q, tool_ns) in [
        (0.5, series.summary.p50),
        (0.9, series.summary.p90),
        (0.99, series.summary.p99),
    ] {
        let promql = format!(
            "histogram_quantile({q}, uacce_trace_iopf_latency_seconds_bucket{{job=\"uacce\",pid=\"{PID}\",device=\"{DEV}\"}})"
        );
        let got = query(prom_port, &promql).unwrap_or_else(|| panic!("no result for {promql}"));
        let expected = bucket_quantile(q, &cum, count);
        let (lo, hi) = bucket_of(tool_ns);
        let tool_s = tool_ns as f64 / 1e9;
        eprintln!(
            "q={q}: Prometheus {got:.9} s, tool (model HDR) {tool_s:.9} s, bucket ({lo}, {hi}] s, \
             interpolated from the exported buckets {expected:.9} s"
        );
        assert!(
            (got - expected).abs() <= 1e-9 + 1e-9 * expected,
            "Prometheus {got} differs from the bucket interpolation {expected}"
        );
        // Same bucket as the tool's own quantile (HDR values within 0.1 %).
        assert!(
            got >= lo * 0.999 && got <= hi * 1.001,
            "Prometheus {got} s is outside the bucket ({lo}, {hi}] of the tool's {tool_s} s"
        );
    }
    drop(prometheus);
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
}
