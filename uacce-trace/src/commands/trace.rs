//! `uacce-trace trace`: one line per event, human-readable or NDJSON with
//! stable field names, until Ctrl-C/SIGTERM; then a loss summary on stderr
//! (and, with `--json`, a last `"event":"stopped"` line with the losses by
//! reason).

use std::io::{self, Write};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::{
    commands::{dropped_text, open_failed},
    exit,
    ingest::attribution::owner_label,
    ingest::event::{Event, PinEvent, PinIoctl},
    ingest::live::TracerOptions,
    ingest::losses::{Ledger, LossReason},
    ingest::source::{block_on, Item, LiveOptions, Origin, Source, Stop, StopOn},
    logger, status,
};

/// NDJSON form of a pin/unpin event. Field names are a stable interface.
#[derive(Serialize)]
struct PinJson<'a> {
    event: &'static str,
    ts_ns: u64,
    tgid: u32,
    tid: u32,
    comm: &'a str,
    func: &'static str,
    hook: &'static str,
    start: String,
    nr_pages: u64,
    ret: i64,
    pinned: u64,
    gup_flags: String,
    longterm: bool,
    latency_ns: u64,
}

/// One NDJSON line (without newline).
pub fn json_line(ev: &Event) -> String {
    match ev {
        Event::Pin(p) => {
            let j = PinJson {
                event: if p.is_pin() { "pin" } else { "unpin" },
                ts_ns: p.ts_ns,
                tgid: p.tgid,
                tid: p.tid,
                comm: &p.comm,
                func: p.func.symbol(),
                hook: p.hook.name(),
                start: format!("{:#x}", p.start),
                nr_pages: p.nr_pages,
                ret: p.ret,
                pinned: if p.is_pin() { p.pages() } else { 0 },
                gup_flags: format!("{:#x}", p.gup_flags),
                longterm: p.longterm,
                latency_ns: p.latency_ns,
            };
            serde_json::to_string(&j).unwrap_or_default()
        }
        Event::Iopf(f) => serde_json::to_string(&IopfJson {
            event: "iopf",
            ts_ns: f.ts_ns,
            latency_ns: f.latency_ns,
            tgid: f.tgid,
            comm: &f.comm,
            owner: owner_label(f),
            device: &f.device,
            pasid: f.pasid,
            grpid: f.grpid,
            perm: f.perm,
            flags: format!("{:#x}", f.flags),
            addr: format!("{:#x}", f.addr),
            response: f.response,
            hook: f.hook.name(),
        })
        .unwrap_or_default(),
        Event::PinIoctl(i) => serde_json::to_string(&IoctlJson {
            event: "pin_ioctl",
            cmd: ioctl_name(i.cmd),
            ts_ns: i.ts_ns,
            latency_ns: i.latency_ns,
            tgid: i.tgid,
            tid: i.tid,
            comm: &i.comm,
            addr: format!("{:#x}", i.addr),
            size: i.size,
            ret: i.ret,
            pin_calls: i.pin_calls,
            pages: i.pages,
            hook: i.hook.name(),
            driver_call: i.driver_call.map(|d| d.function),
            driver_ret: i.driver_call.map(|d| d.ret),
        })
        .unwrap_or_default(),
        Event::Queue(q) => serde_json::to_string(&QueueJson {
            event: "uacce_queue",
            op: q.op.name(),
            ts_ns: q.ts_ns,
            latency_ns: q.latency_ns,
            tgid: q.tgid,
            tid: q.tid,
            comm: &q.comm,
            device: &q.device,
            pasid: q.pasid,
            ret: q.ret,
            queue: format!("{:#x}", q.queue),
            hook: q.hook.name(),
        })
        .unwrap_or_default(),
        Event::Pasid(p) => serde_json::to_string(&PasidJson {
            event: if p.bound {
                "pasid_bind"
            } else {
                "pasid_unbind"
            },
            ts_ns: p.ts_ns,
            tgid: p.tgid,
            comm: &p.comm,
            pasid: p.pasid,
            hook: p.hook.name(),
        })
        .unwrap_or_default(),
        Event::Loss(l) => serde_json::to_string(&LossJson {
            event: "loss",
            ts_ns: l.ts_ns,
            dropped: l.losses.total(),
            unanswered: l.losses.get(LossReason::IopfUnanswered),
            losses: &l.losses,
        })
        .unwrap_or_default(),
        Event::Summary(e) => serde_json::json!({
            "event": "summary",
            "ts_ns": e.ts_ns,
            "tgid": e.tgid,
            "comm": e.comm,
            "kind": format!("{:?}", e.kind),
            "calls": e.calls,
            "errors": e.errors,
            "pages": e.pages,
        })
        .to_string(),
        Event::Proc(p) => serde_json::json!({
            "event": if p.parent.is_some() { "fork" } else { "exit" },
            "ts_ns": p.ts_ns,
            "tgid": p.tgid,
            "parent": p.parent,
            "tid": p.tid,
            "comm": p.comm,
            "lost": p.lost,
        })
        .to_string(),
        Event::Request(r) => serde_json::json!({
            "event": "request",
            "op": r.op,
            "ts_ns": r.ts_ns,
            "latency_ns": r.latency_ns,
            "tgid": r.tgid,
            "tid": r.tid,
            "comm": r.comm,
            "ret": r.ret,
            "faults": r.faults,
            "fault_ns": r.fault_ns,
        })
        .to_string(),
    }
}

#[derive(Serialize)]
struct IopfJson<'a> {
    event: &'static str,
    ts_ns: u64,
    latency_ns: u64,
    tgid: Option<u32>,
    comm: &'a str,
    owner: String,
    device: &'a str,
    pasid: u32,
    grpid: u32,
    perm: u32,
    flags: String,
    addr: String,
    response: u32,
    hook: &'static str,
}

#[derive(Serialize)]
struct IoctlJson<'a> {
    event: &'static str,
    cmd: &'static str,
    ts_ns: u64,
    latency_ns: u64,
    tgid: u32,
    tid: u32,
    comm: &'a str,
    addr: String,
    size: u64,
    ret: i64,
    pin_calls: u32,
    pages: u64,
    hook: &'static str,
    /// `uacce_pin_page`/`uacce_unpin_page` reached inside the ioctl.
    #[serde(skip_serializing_if = "Option::is_none")]
    driver_call: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    driver_ret: Option<i32>,
}

#[derive(Serialize)]
struct QueueJson<'a> {
    event: &'static str,
    op: &'static str,
    ts_ns: u64,
    latency_ns: u64,
    tgid: u32,
    tid: u32,
    comm: &'a str,
    device: &'a str,
    pasid: u32,
    ret: i64,
    queue: String,
    hook: &'static str,
}

#[derive(Serialize)]
struct PasidJson<'a> {
    event: &'static str,
    ts_ns: u64,
    tgid: u32,
    comm: &'a str,
    pasid: u32,
    hook: &'static str,
}

/// A cumulative loss sample: `dropped` is everything lost (every reason),
/// `losses` the non-zero reasons (`losses::LossReason` names).
#[derive(Serialize)]
struct LossJson<'a> {
    event: &'static str,
    ts_ns: u64,
    dropped: u64,
    unanswered: u64,
    losses: &'a Ledger,
}

/// The last line of `--json`: events written and everything lost.
#[derive(Serialize)]
struct StoppedJson<'a> {
    event: &'static str,
    events: u64,
    dropped: u64,
    losses: &'a Ledger,
}

/// The `--json` stream's last line.
pub fn stopped_json(events: u64, losses: &Ledger) -> String {
    serde_json::to_string(&StoppedJson {
        event: "stopped",
        events,
        dropped: losses.total(),
        losses,
    })
    .unwrap_or_default()
}

/// Stable name of a pin ioctl.
pub fn ioctl_name(cmd: PinIoctl) -> &'static str {
    match cmd {
        PinIoctl::UaccePin => "uacce_pin",
        PinIoctl::UacceUnpin => "uacce_unpin",
        PinIoctl::MemPin => "mem_pin",
        PinIoctl::MemUnpin => "mem_unpin",
    }
}

/// `IOMMU_FAULT_PERM_*` bits as letters: r, w, x, p.
pub fn perm_letters(perm: u32) -> String {
    let mut s = String::new();
    for (bit, c) in [(1, 'r'), (2, 'w'), (4, 'x'), (8, 'p')] {
        if perm & bit != 0 {
            s.push(c);
        }
    }
    if s.is_empty() {
        s.push('-');
    }
    s
}

/// Latency with a unit that keeps 3 significant digits.
pub fn fmt_ns(ns: u64) -> String {
    match ns {
        0..=9_999 => format!("{ns}ns"),
        10_000..=9_999_999 => format!("{:.1}µs", ns as f64 / 1e3),
        10_000_000..=9_999_999_999 => format!("{:.1}ms", ns as f64 / 1e6),
        _ => format!("{:.2}s", ns as f64 / 1e9),
    }
}

/// Header of the human-readable form.
pub const HUMAN_HEADER: &str =
    "TIME(s)          PID     TID COMM             EVENT FUNCTION                          PAGES RESULT   LATENCY  HOOK   FLAGS";

/// The format of the columns of [`HUMAN_HEADER`] from TIME to HOOK, for
/// `concat!` in front of each kind's FLAGS: one layout for every event
/// with a latency, so that all line up under the header.
macro_rules! human_cols {
    () => {
        "{:>14.6} {:>7} {:>7} {:<16} {:<5} {:<32} {:>6} {:<8} {:>8}  {:<6} "
    };
}

fn human_pin(p: &PinEvent) -> String {
    let result = match p.errno() {
        Some(e) => format!("-{e}"),
        None => p.pages().to_string(),
    };
    format!(
        concat!(human_cols!(), "{:#x}{}"),
        p.ts_ns as f64 / 1e9,
        p.tgid,
        p.tid,
        p.comm,
        if p.is_pin() { "pin" } else { "unpin" },
        p.func.symbol(),
        p.nr_pages,
        result,
        fmt_ns(p.latency_ns),
        p.hook.name(),
        p.gup_flags,
        if p.longterm { " LONGTERM" } else { "" },
    )
}

/// One human-readable line.
pub fn human_line(ev: &Event) -> String {
    match ev {
        Event::Pin(p) => human_pin(p),
        Event::Iopf(f) => format!(
            concat!(human_cols!(), "pasid={} grpid={} perm={} addr={:#x}"),
            f.ts_ns as f64 / 1e9,
            f.tgid.map_or("-".to_string(), |t| t.to_string()),
            "-",
            if f.tgid.is_some() {
                f.comm.clone()
            } else {
                format!("pasid {}?", f.pasid)
            },
            "iopf",
            f.device,
            "",
            format!("resp={}", f.response),
            fmt_ns(f.latency_ns),
            f.hook.name(),
            f.pasid,
            f.grpid,
            perm_letters(f.perm),
            f.addr,
        ),
        Event::PinIoctl(i) => format!(
            concat!(human_cols!(), "addr={:#x} size={} pin_calls={}"),
            i.ts_ns as f64 / 1e9,
            i.tgid,
            i.tid,
            i.comm,
            "ioctl",
            ioctl_name(i.cmd),
            i.pages,
            i.ret,
            fmt_ns(i.latency_ns),
            i.hook.name(),
            i.addr,
            i.size,
            i.pin_calls,
        ),
        Event::Pasid(p) => format!(
            "{:>14.6} {:>7} {:>7} {:<16} {:<5} pasid {} {}",
            p.ts_ns as f64 / 1e9,
            p.tgid,
            "-",
            p.comm,
            if p.bound { "bind" } else { "unbind" },
            p.pasid,
            if p.bound { "bound" } else { "released" },
        ),
        Event::Queue(q) => format!(
            concat!(human_cols!(), "pasid={} queue={:#x}"),
            q.ts_ns as f64 / 1e9,
            q.tgid,
            q.tid,
            q.comm,
            "queue",
            format!("{} {}", q.device, q.op.name()),
            "",
            q.ret,
            fmt_ns(q.latency_ns),
            q.hook.name(),
            q.pasid,
            q.queue,
        ),
        Event::Request(r) => format!(
            concat!(human_cols!(), "faults={} fault_time={}"),
            r.ts_ns as f64 / 1e9,
            r.tgid,
            r.tid,
            r.comm,
            "req",
            r.op,
            "",
            r.ret,
            fmt_ns(r.latency_ns),
            "uprobe",
            r.faults,
            fmt_ns(r.fault_ns),
        ),
        // Losses are summarised at exit; JSON carries the samples.
        Event::Loss(_) => String::new(),
        // `trace` is per-event: summary mode never runs under it.
        Event::Summary(e) => format!(
            "{:>14.6} {:>7} {:>7} {:<16} summary {:?} calls={} errors={} pages={}",
            e.ts_ns as f64 / 1e9,
            e.tgid,
            "-",
            e.comm,
            e.kind,
            e.calls,
            e.errors,
            e.pages
        ),
        Event::Proc(p) => format!(
            "{:>14.6} {:>7} {:>7} {:<16} {}",
            p.ts_ns as f64 / 1e9,
            p.tgid,
            p.tid,
            p.comm,
            match p.parent {
                Some(parent) => format!("fork from {parent}"),
                None => "exit".to_string(),
            },
        ),
    }
}

/// Summary printed on stderr at exit.
pub fn summary(events: u64, losses: &Ledger) -> String {
    format!(
        "uacce-trace: stopped: {events} events, {}",
        dropped_text(losses)
    )
}

/// Run `trace`. Returns the exit code.
pub fn run(opts: TracerOptions, as_json: bool) -> anyhow::Result<u8> {
    block_on(async move {
        let origin = Origin::Live(LiveOptions {
            tracer: opts,
            print_warning: true,
            ..Default::default()
        });
        let mut src = match Source::open(origin, StopOn::Interrupt).await {
            Ok(s) => s,
            Err(e) => return Ok(open_failed(&e, exit::OK)),
        };
        if let Some(live) = src.live() {
            status!("pasid scan: {}", live.pasid_scan.summary());
            if as_json {
                // First line of the stream: who held a PASID before we started.
                let mut line = serde_json::to_value(&live.pasid_scan)?;
                if let Some(map) = line.as_object_mut() {
                    map.insert("event".into(), "pasid_scan".into());
                }
                let mut out = io::stdout();
                writeln!(out, "{line}")?;
                out.flush()?;
            }
        }
        status!("{}", src.started_line());
        // A stop must end the run even while standard output is blocked.
        let stop = src.stop.clone();
        let writer = Writer::start(as_json);
        let mut stopping = false;
        let mut stalled = false;
        // Events handed to the writer or given up on.
        let mut received = 0u64;
        loop {
            let item = tokio::select! {
                b = src.stream.next() => b,
                _ = stop.wait(), if !stopping => { stopping = true; continue; }
            };
            let Some(item) = item else { break };
            let Ok(Item::Batch(batch)) = item else {
                continue;
            };
            if writer.closed() {
                // stdout went away (e.g. `| head`): stop reading.
                src.stream.close();
                continue;
            }
            received += batch.len() as u64;
            if stalled {
                continue;
            }
            match writer.send(batch, &stop, &mut stopping).await {
                Sent::Yes => {}
                Sent::Closed => src.stream.close(),
                Sent::Stalled => stalled = true,
            }
        }
        let (written, closed) = writer.finish(stalled).await;
        let losses = src.stream.end().await?;
        if as_json && !closed && !stalled {
            // On a thread of its own, as every write to standard output: a
            // reader that stopped reading must not keep us from exiting.
            let line = stopped_json(written, &losses);
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                let mut out = io::stdout().lock();
                let _ = writeln!(out, "{line}").and_then(|()| out.flush());
                let _ = tx.send(());
            });
            let _ = tokio::time::timeout(STALL_GRACE, rx).await;
        }
        let mut line = summary(written, &losses);
        if written < received && !closed {
            line.push_str(&format!(
                "; {} events not written: standard output stopped taking data",
                received - written
            ));
        }
        logger::emit(&line);
        Ok(exit::OK)
    })?
}

/// How long a writer blocked on standard output may make no progress after
/// a stop signal before `trace` gives up on the rest of its output.
const STALL_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

enum Sent {
    Yes,
    /// Standard output is closed (write error, e.g. EPIPE).
    Closed,
    /// Stopping, and standard output took nothing for [`STALL_GRACE`].
    Stalled,
}

/// Standard output on a thread of its own: a `write(2)` to a full pipe
/// nobody reads blocks, and a signal does not interrupt it (the handlers
/// restart system calls), so the task that handles stop signals must never
/// be the one writing.
struct Writer {
    tx: mpsc::Sender<Vec<Event>>,
    /// Events formatted into the buffer so far (progress).
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Events known to be out (the buffer flushed after them).
    flushed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    done: tokio::sync::oneshot::Receiver<()>,
}

impl Writer {
    fn start(as_json: bool) -> Writer {
        use std::sync::atomic::Ordering;
        let (tx, mut rx) = mpsc::channel::<Vec<Event>>(4);
        let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let flushed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (w, c, f) = (written.clone(), closed.clone(), flushed.clone());
        std::thread::spawn(move || {
            let mut lines = 0u64;
            let stdout = io::stdout();
            let mut out = io::BufWriter::new(stdout.lock());
            let mut ok =
                as_json || (writeln!(out, "{HUMAN_HEADER}").is_ok() && out.flush().is_ok());
            while ok {
                let Some(batch) = rx.blocking_recv() else {
                    break;
                };
                for ev in &batch {
                    let line = if as_json {
                        json_line(ev)
                    } else {
                        human_line(ev)
                    };
                    if writeln!(out, "{line}").is_err() {
                        ok = false;
                        break;
                    }
                    lines += 1;
                    w.fetch_add(1, Ordering::Relaxed);
                }
                ok = ok && out.flush().is_ok();
                if ok {
                    f.store(lines, Ordering::Relaxed);
                }
            }
            if !ok {
                c.store(true, Ordering::Relaxed);
            }
            let _ = out.flush();
            let _ = done_tx.send(());
        });
        Writer {
            tx,
            written,
            flushed,
            closed,
            done,
        }
    }

    fn closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn written(&self) -> u64 {
        self.written.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Hand a batch to the writing thread, waiting while it is busy; once
    /// stopping, wait only as long as it keeps making progress.
    async fn send(&self, batch: Vec<Event>, stop: &Stop, stopping: &mut bool) -> Sent {
        let mut progress = self.written();
        let reserve = self.tx.reserve();
        tokio::pin!(reserve);
        loop {
            tokio::select! {
                permit = &mut reserve => {
                    return match permit {
                        Ok(p) => {
                            p.send(batch);
                            Sent::Yes
                        }
                        Err(_) => Sent::Closed,
                    };
                }
                _ = stop.wait(), if !*stopping => { *stopping = true; }
                () = tokio::time::sleep(STALL_GRACE), if *stopping => {
                    let now = self.written();
                    if now == progress && !self.closed() {
                        return Sent::Stalled;
                    }
                    progress = now;
                }
            }
        }
    }

    /// Let the thread write what it has (unless output stalled, or as long
    /// as it makes progress) and return the number of events written and
    /// whether standard output was closed. A thread still blocked in
    /// `write(2)` is left behind; the process exits without it.
    async fn finish(self, stalled: bool) -> (u64, bool) {
        let Writer {
            tx,
            written,
            flushed,
            done,
            closed,
        } = self;
        drop(tx);
        if !stalled {
            tokio::pin!(done);
            let mut progress = written.load(std::sync::atomic::Ordering::Relaxed);
            loop {
                tokio::select! {
                    _ = &mut done => break,
                    () = tokio::time::sleep(STALL_GRACE) => {
                        let now = written.load(std::sync::atomic::Ordering::Relaxed);
                        if now == progress {
                            break;
                        }
                        progress = now;
                    }
                }
            }
        }
        (
            flushed.load(std::sync::atomic::Ordering::Relaxed),
            closed.load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use uacce_trace_common::PinFunc;

    use super::*;
    use crate::ingest::event::HookType;

    fn ev(func: PinFunc, ret: i64) -> Event {
        Event::Pin(PinEvent {
            ts_ns: 1_500_000_000,
            latency_ns: 12_345,
            tgid: 42,
            tid: 43,
            comm: "uacce-workload".into(),
            func,
            hook: HookType::Kprobe,
            start: 0x7f00_0000_1000,
            nr_pages: 256,
            ret,
            gup_flags: 0x10103,
            longterm: true,
        })
    }

    #[test]
    fn json_field_names_are_stable() {
        assert_eq!(
            json_line(&ev(PinFunc::PinUserPagesFast, 256)),
            r#"{"event":"pin","ts_ns":1500000000,"tgid":42,"tid":43,"comm":"uacce-workload","func":"pin_user_pages_fast","hook":"kprobe","start":"0x7f0000001000","nr_pages":256,"ret":256,"pinned":256,"gup_flags":"0x10103","longterm":true,"latency_ns":12345}"#
        );
        let unpin = json_line(&ev(PinFunc::UnpinUserPages, 256));
        assert!(unpin.starts_with(r#"{"event":"unpin","#), "{unpin}");
        assert!(unpin.contains(r#""pinned":0"#));
    }

    #[test]
    fn human_line_shows_errors_and_longterm() {
        let line = human_line(&ev(PinFunc::PinUserPagesFast, -14));
        assert!(line.contains(" -14 "), "{line}");
        assert!(line.contains("LONGTERM"));
        assert!(line.contains("12.3µs"));
    }

    #[test]
    fn latency_units() {
        assert_eq!(fmt_ns(999), "999ns");
        assert_eq!(fmt_ns(12_345), "12.3µs");
        assert_eq!(fmt_ns(12_345_678), "12.3ms");
        assert_eq!(fmt_ns(12_345_678_901), "12.35s");
    }

    #[test]
    fn summary_lists_every_nonzero_reason() {
        let mut l = Ledger::new();
        l.set(LossReason::RingFullIoctl, 3);
        l.set(LossReason::ExitWithoutEntry, 1);
        l.set(LossReason::IopfPendingAtExit, 2);
        assert_eq!(
            summary(10, &l),
            "uacce-trace: stopped: 10 events, 6 dropped (ring_full_ioctl 3, exit_without_entry 1, iopf_pending_at_exit 2)"
        );
        assert_eq!(
            summary(10, &Ledger::new()),
            "uacce-trace: stopped: 10 events, 0 dropped"
        );
        // Folded nested calls are no loss: still "0 dropped", but shown.
        let mut n = Ledger::new();
        n.set(LossReason::Nested, 4);
        assert_eq!(
            summary(1, &n),
            "uacce-trace: stopped: 1 events, 0 dropped; not lost: nested 4"
        );
        assert_eq!(
            stopped_json(10, &l),
            r#"{"event":"stopped","events":10,"dropped":6,"losses":{"ring_full_ioctl":3,"exit_without_entry":1,"iopf_pending_at_exit":2}}"#
        );
        let sample = json_line(&Event::Loss(crate::ingest::event::LossSample {
            ts_ns: 5,
            losses: l,
        }));
        assert_eq!(
            sample,
            r#"{"event":"loss","ts_ns":5,"dropped":6,"unanswered":0,"losses":{"ring_full_ioctl":3,"exit_without_entry":1,"iopf_pending_at_exit":2}}"#
        );
    }
}
