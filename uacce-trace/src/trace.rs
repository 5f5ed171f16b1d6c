//! `uacce-trace trace`: one line per event, human-readable or NDJSON with
//! stable field names, until Ctrl-C/SIGTERM; then a drop summary on stderr.

use std::io::{self, Write};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::{
    attribution::owner_label,
    event::{Event, PinEvent, PinIoctl},
    source::{Counters, Tracer, TracerOptions},
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
            dropped: l.dropped,
            unanswered: l.unanswered,
        })
        .unwrap_or_default(),
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

#[derive(Serialize)]
struct LossJson {
    event: &'static str,
    ts_ns: u64,
    dropped: u64,
    unanswered: u64,
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

fn human_pin(p: &PinEvent) -> String {
    let result = match p.errno() {
        Some(e) => format!("-{e}"),
        None => p.pages().to_string(),
    };
    format!(
        "{:>14.6} {:>7} {:>7} {:<16} {:<5} {:<32} {:>6} {:<8} {:>8}  {:<6} {:#x}{}",
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
            "{:>14.6} {:>7} {:>7} {:<16} {:<5} {:<32} {:>6} {:<8} {:>8}  {:<6} pasid={} grpid={} perm={} addr={:#x}",
            f.ts_ns as f64 / 1e9,
            f.tgid.map_or("-".to_string(), |t| t.to_string()),
            "-",
            if f.tgid.is_some() { f.comm.clone() } else { format!("pasid {}?", f.pasid) },
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
            "{:>14.6} {:>7} {:>7} {:<16} {:<5} {:<32} {:>6} {:<8} {:>8}  {:<6} addr={:#x} size={} pin_calls={}",
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
        // Losses are summarised at exit; JSON carries the samples.
        Event::Loss(_) => String::new(),
    }
}

/// Summary printed on stderr at exit.
pub fn summary(events: u64, c: &Counters) -> String {
    let mut s = format!(
        "uacce-trace: stopped: {events} events, {} dropped",
        c.dropped()
    );
    if c.dropped() > 0 {
        s.push_str(&format!(
            " (ring buffer full: {}, in-flight map full: {}, undecodable: {})",
            c.ringbuf_full, c.inflight_full, c.undecodable
        ));
    }
    if c.unanswered > 0 || c.pending_at_exit > 0 {
        s.push_str(&format!(
            "; IOPF groups unanswered: {} (timed out), {} pending at exit",
            c.unanswered, c.pending_at_exit
        ));
    }
    if c.exit_without_entry > 0 {
        s.push_str(&format!(
            "; {} exits without a seen entry",
            c.exit_without_entry
        ));
    }
    s
}

/// Resolves on SIGINT or SIGTERM. Handlers are installed when this is
/// called (not when first polled), so a signal that arrives right after
/// "tracing started" is never lost to the default disposition.
pub fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
    })
}

/// Run `trace`. Returns the exit code.
pub fn run(opts: TracerOptions, as_json: bool) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let stop = stop_signal()?;
        let (tracer, _inspection) = match Tracer::start(opts) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("uacce-trace: {e}");
                return Ok(1);
            }
        };
        if let Some(problem) = tracer.plan().core_problem() {
            eprintln!("uacce-trace: warning: {problem}");
        }
        eprintln!(
            "uacce-trace: tracing started ({} hooks attached; {})",
            tracer.hooks_attached(),
            tracer.plan().summary()
        );
        let (tx, mut rx) = mpsc::channel::<Vec<Event>>(64);
        let reader = tokio::spawn(tracer.run(tx, stop));
        let stdout = io::stdout();
        let mut out = io::BufWriter::new(stdout.lock());
        if !as_json {
            writeln!(out, "{HUMAN_HEADER}")?;
            out.flush()?;
        }
        let mut events = 0u64;
        let mut closed = false;
        while let Some(batch) = rx.recv().await {
            if closed {
                continue;
            }
            for ev in &batch {
                let line = if as_json {
                    json_line(ev)
                } else {
                    human_line(ev)
                };
                if writeln!(out, "{line}").is_err() {
                    closed = true;
                    break;
                }
                events += 1;
            }
            if !closed && out.flush().is_err() {
                closed = true;
            }
            if closed {
                // stdout went away (e.g. `| head`): stop reading.
                rx.close();
            }
        }
        let _ = out.flush();
        let counters = reader.await??;
        eprintln!("{}", summary(events, &counters));
        Ok(0)
    })
}

#[cfg(test)]
mod tests {
    use uacce_trace_common::PinFunc;

    use super::*;
    use crate::event::HookType;

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
    fn summary_mentions_drops() {
        let c = Counters {
            ringbuf_full: 3,
            ..Default::default()
        };
        assert_eq!(
            summary(10, &c),
            "uacce-trace: stopped: 10 events, 3 dropped (ring buffer full: 3, in-flight map full: 0, undecodable: 0)"
        );
        assert_eq!(
            summary(10, &Counters::default()),
            "uacce-trace: stopped: 10 events, 0 dropped"
        );
    }
}
