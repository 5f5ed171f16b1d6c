//! The raw recording format (`record --format raw`, `.utrace`): the decoded
//! event stream, so that a recording from one machine can be shown, reported
//! and compared anywhere. A writer, a streaming reader that turns truncation
//! and garbage into errors (never panics, never allocates more than one
//! record's bound), and a replay source that cuts the stream into event
//! batches with the time each is due. Imports no aya, tokio or ratatui and
//! never reads a clock (pacing is the caller's: it gets due times).
//!
//! # Layout (version 1, little-endian)
//!
//! ```text
//! magic      8 bytes  "\x89UTRACE\n"
//! version    u16      1
//! hdr_len    u32      length of the header body
//! header     start_unix_ns u64, start_mono_ns u64,
//!            kernel str, plan str, command str        (str = u16 length + UTF-8)
//! records    len u32 (bytes after this field, ≤ 65536), type u8, body
//!   1 pin      ts u64, latency u64, tgid u32, tid u32, comm str, func u16, hook u8,
//!              start u64, nr_pages u64, ret i64, gup_flags u32, longterm u8
//!   2 iopf     ts u64, latency u64, has_tgid u8, tgid u32, comm str, device str,
//!              pasid u32, grpid u32, perm u32, flags u32, addr u64, response u32, hook u8
//!   3 ioctl    ts u64, latency u64, tgid u32, tid u32, comm str, cmd u8, addr u64,
//!              size u64, ret i64, hook u8, pin_calls u32, pages u64
//!              (the driver call an ioctl reached is not recorded)
//!   4 loss     ts u64, dropped u64, unanswered u64
//!              (written by older versions; read as `legacy_dropped` and
//!              `iopf_unanswered` of the loss ledger)
//!   5 pasid    ts u64, tgid u32, comm str, pasid u32, bound u8, hook u8
//!   6 mark     ts u64                     (an interval boundary, e.g. SIGUSR1)
//!   7 queue    ts u64, latency u64, tgid u32, tid u32, comm str, op u8, device str,
//!              pasid u32, ret i64, queue u64, hook u8
//!              (added later in version 1: older readers stop at it)
//!   8 losses   ts u64, n u16, n × (reason str, count u64)
//!              the cumulative loss ledger by reason (`losses::LossReason`
//!              names); a reason this version does not know (a newer
//!              file) is summed into `unknown`, not an error. Replaces
//!              type 4 (added later in version 1: older readers stop at it)
//!   255 end    events u64                 (last record: the file is complete)
//! ```
//!
//! A file without its end record is reported as truncated.

use std::io::{self, Read, Write};

use thiserror::Error;
use uacce_trace_common::PinFunc;

use crate::ingest::event::{
    Event, HookType, IopfEvent, LossSample, PasidEvent, PinEvent, PinIoctl, PinIoctlEvent,
    QueueEvent, QueueOp, RequestEvent,
};
use crate::ingest::losses::{Ledger, LossReason};
use crate::ingest::run::RunMeta;

/// First bytes of every raw recording.
pub const MAGIC: &[u8; 8] = b"\x89UTRACE\n";
/// The format version this code writes and reads.
pub const VERSION: u16 = 1;
/// Largest record body accepted.
pub const MAX_RECORD: usize = 65_536;

const T_PIN: u8 = 1;
const T_IOPF: u8 = 2;
const T_IOCTL: u8 = 3;
const T_LOSS: u8 = 4;
const T_PASID: u8 = 5;
const T_MARK: u8 = 6;
const T_QUEUE: u8 = 7;
const T_LOSSES: u8 = 8;
/// A request (`--op`); older readers refuse the file at this record.
const T_REQUEST: u8 = 12;
const T_END: u8 = 255;

/// Why a raw recording could not be read or written.
#[derive(Debug, Error)]
pub enum RawError {
    #[error("empty file")]
    Empty,
    #[error("not a uacce-trace raw recording (bad magic)")]
    Magic,
    #[error(
        "raw recording version {0} is not supported (this uacce-trace reads version {VERSION})"
    )]
    Version(u16),
    #[error("truncated at byte {offset}: {what}")]
    Truncated { offset: u64, what: &'static str },
    #[error("corrupt at byte {offset}: {what}")]
    Corrupt { offset: u64, what: String },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// One item of a recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Event(Event),
    /// An interval boundary at this time.
    Mark(u64),
}

// ---- encoding ---------------------------------------------------------

struct Enc(Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        // Longer strings are cut at a character boundary.
        let mut end = s.len().min(u16::MAX as usize);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.u16(end as u16);
        self.0.extend_from_slice(&s.as_bytes()[..end]);
    }
    /// The prefix that pin, ioctl and queue records share: ts, latency,
    /// tgid, tid, comm (see [`Dec::task`]).
    fn task(&mut self, ts_ns: u64, latency_ns: u64, tgid: u32, tid: u32, comm: &str) {
        self.u64(ts_ns);
        self.u64(latency_ns);
        self.u32(tgid);
        self.u32(tid);
        self.str(comm);
    }
}

/// Defines `$code` (enum to its byte in the file) and `$from` (the byte
/// back, `None` for an unknown one) from one table, so that the writer and
/// the reader cannot disagree. The bytes are the format: never renumber.
macro_rules! wire_codes {
    ($code:ident, $from:ident, $ty:ident { $($variant:ident = $v:literal),+ $(,)? }) => {
        fn $code(x: $ty) -> u8 {
            match x {
                $($ty::$variant => $v,)+
            }
        }

        fn $from(v: u8) -> Option<$ty> {
            Some(match v {
                $($v => $ty::$variant,)+
                _ => return None,
            })
        }
    };
}

wire_codes!(hook_code, hook_from, HookType {
    Fentry = 1,
    Kprobe = 2,
    Tracepoint = 3,
});

wire_codes!(queue_op_code, queue_op_from, QueueOp {
    Open = 0,
    StartQ = 1,
    PutQ = 2,
    Release = 3,
});

wire_codes!(ioctl_code, ioctl_from, PinIoctl {
    UaccePin = 0,
    UacceUnpin = 1,
    MemPin = 2,
    MemUnpin = 3,
});

fn encode_event(ev: &Event) -> Vec<u8> {
    let mut e = Enc(Vec::with_capacity(96));
    match ev {
        // Not stored (`RawWriter::write_event`).
        Event::Proc(_) | Event::Summary(_) => return Vec::new(),
        Event::Pin(p) => {
            e.u8(T_PIN);
            e.task(p.ts_ns, p.latency_ns, p.tgid, p.tid, &p.comm);
            e.u16(p.func as u16);
            e.u8(hook_code(p.hook));
            e.u64(p.start);
            e.u64(p.nr_pages);
            e.i64(p.ret);
            e.u32(p.gup_flags);
            e.u8(u8::from(p.longterm));
        }
        Event::Iopf(f) => {
            e.u8(T_IOPF);
            e.u64(f.ts_ns);
            e.u64(f.latency_ns);
            e.u8(u8::from(f.tgid.is_some()));
            e.u32(f.tgid.unwrap_or(0));
            e.str(&f.comm);
            e.str(&f.device);
            e.u32(f.pasid);
            e.u32(f.grpid);
            e.u32(f.perm);
            e.u32(f.flags);
            e.u64(f.addr);
            e.u32(f.response);
            e.u8(hook_code(f.hook));
        }
        Event::PinIoctl(i) => {
            e.u8(T_IOCTL);
            e.task(i.ts_ns, i.latency_ns, i.tgid, i.tid, &i.comm);
            e.u8(ioctl_code(i.cmd));
            e.u64(i.addr);
            e.u64(i.size);
            e.i64(i.ret);
            e.u8(hook_code(i.hook));
            e.u32(i.pin_calls);
            e.u64(i.pages);
        }
        Event::Loss(l) => {
            e.u8(T_LOSSES);
            e.u64(l.ts_ns);
            // Zero counts are implied; a ledger has fewer than 2^16 reasons.
            let nonzero: Vec<_> = l.losses.iter_nonzero().collect();
            e.u16(nonzero.len() as u16);
            for (r, n) in nonzero {
                e.str(r.name());
                e.u64(n);
            }
        }
        Event::Queue(q) => {
            e.u8(T_QUEUE);
            e.task(q.ts_ns, q.latency_ns, q.tgid, q.tid, &q.comm);
            e.u8(queue_op_code(q.op));
            e.str(&q.device);
            e.u32(q.pasid);
            e.i64(q.ret);
            e.u64(q.queue);
            e.u8(hook_code(q.hook));
        }
        Event::Request(r) => {
            e.u8(T_REQUEST);
            e.task(r.ts_ns, r.latency_ns, r.tgid, r.tid, &r.comm);
            e.str(&r.op);
            e.i64(r.ret);
            e.u32(r.faults);
            e.u64(r.fault_ns);
        }
        Event::Pasid(p) => {
            e.u8(T_PASID);
            e.u64(p.ts_ns);
            e.u32(p.tgid);
            e.str(&p.comm);
            e.u32(p.pasid);
            e.u8(u8::from(p.bound));
            e.u8(hook_code(p.hook));
        }
    }
    e.0
}

/// Writes a recording.
pub struct RawWriter<W: Write> {
    w: W,
    events: u64,
}

impl<W: Write> RawWriter<W> {
    /// Write the magic, version and header.
    pub fn new(mut w: W, header: &RunMeta) -> io::Result<Self> {
        let mut h = Enc(Vec::new());
        h.u64(header.start_unix_ns);
        h.u64(header.start_mono_ns);
        h.str(&header.kernel);
        h.str(&header.plan);
        h.str(&header.command);
        w.write_all(MAGIC)?;
        w.write_all(&VERSION.to_le_bytes())?;
        w.write_all(&(h.0.len() as u32).to_le_bytes())?;
        w.write_all(&h.0)?;
        Ok(RawWriter { w, events: 0 })
    }

    fn record(&mut self, body: &[u8]) -> io::Result<()> {
        self.w.write_all(&(body.len() as u32).to_le_bytes())?;
        self.w.write_all(body)
    }

    /// Append one event.
    /// Process-tree events are left out: the recording is already of the
    /// command's processes, so a replay has nothing to decide with them.
    pub fn write_event(&mut self, ev: &Event) -> io::Result<()> {
        match ev {
            Event::Proc(_) => return Ok(()),
            // Never silently: a raw recording holds events, and summary
            // mode has none (`record` refuses `--raw` with `--summary`).
            Event::Summary(_) => {
                return Err(io::Error::other(
                    "summary-mode counts cannot be stored in a raw recording",
                ))
            }
            _ => {}
        }
        self.events += 1;
        self.record(&encode_event(ev))
    }

    /// Append an interval boundary.
    pub fn write_mark(&mut self, ts_ns: u64) -> io::Result<()> {
        let mut e = Enc(Vec::with_capacity(9));
        e.u8(T_MARK);
        e.u64(ts_ns);
        self.record(&e.0)
    }

    /// Flush what was written, so that a reader at the other end of a pipe
    /// or serial port (`top --replay -`) sees it now.
    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    /// Write the end record, flush and hand back the writer.
    pub fn finish(mut self) -> io::Result<W> {
        let mut e = Enc(Vec::with_capacity(9));
        e.u8(T_END);
        e.u64(self.events);
        self.record(&e.0)?;
        self.w.flush()?;
        Ok(self.w)
    }
}

// ---- decoding ---------------------------------------------------------

struct Dec<'a> {
    b: &'a [u8],
    at: usize,
    base: u64,
}

impl<'a> Dec<'a> {
    fn corrupt(&self, what: &str) -> RawError {
        RawError::Corrupt {
            offset: self.base + self.at as u64,
            what: what.to_string(),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], RawError> {
        let s = self
            .b
            .get(self.at..self.at.saturating_add(n))
            .ok_or_else(|| self.corrupt("record shorter than its fields"))?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, RawError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, RawError> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, RawError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, RawError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    fn i64(&mut self) -> Result<i64, RawError> {
        Ok(self.u64()? as i64)
    }
    fn bool(&mut self) -> Result<bool, RawError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.corrupt("boolean neither 0 nor 1")),
        }
    }
    fn str(&mut self) -> Result<String, RawError> {
        let n = self.u16()? as usize;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| self.corrupt("string is not UTF-8"))
    }
    fn hook(&mut self) -> Result<HookType, RawError> {
        let v = self.u8()?;
        hook_from(v).ok_or_else(|| self.corrupt(&format!("unknown hook type {v}")))
    }
    /// The prefix that pin, ioctl and queue records share (see
    /// [`Enc::task`]): `(ts_ns, latency_ns, tgid, tid, comm)`.
    fn task(&mut self) -> Result<(u64, u64, u32, u32, String), RawError> {
        Ok((
            self.u64()?,
            self.u64()?,
            self.u32()?,
            self.u32()?,
            self.str()?,
        ))
    }
    fn done(&self) -> Result<(), RawError> {
        if self.at == self.b.len() {
            Ok(())
        } else {
            Err(self.corrupt("record longer than its fields"))
        }
    }
}

enum Item {
    Record(Record),
    End(u64),
}

fn decode_body(body: &[u8], base: u64) -> Result<Item, RawError> {
    let mut d = Dec {
        b: body,
        at: 0,
        base,
    };
    let t = d.u8()?;
    let item = match t {
        T_PIN => {
            let (ts_ns, latency_ns, tgid, tid, comm) = d.task()?;
            let f = d.u16()?;
            let func = PinFunc::from_u16(f)
                .ok_or_else(|| d.corrupt(&format!("unknown pin function {f}")))?;
            Item::Record(Record::Event(Event::Pin(PinEvent {
                ts_ns,
                latency_ns,
                tgid,
                tid,
                comm,
                func,
                hook: d.hook()?,
                start: d.u64()?,
                nr_pages: d.u64()?,
                ret: d.i64()?,
                gup_flags: d.u32()?,
                longterm: d.bool()?,
            })))
        }
        T_IOPF => {
            let ts_ns = d.u64()?;
            let latency_ns = d.u64()?;
            let has = d.bool()?;
            let tgid = d.u32()?;
            Item::Record(Record::Event(Event::Iopf(IopfEvent {
                ts_ns,
                latency_ns,
                tgid: has.then_some(tgid),
                comm: d.str()?,
                device: d.str()?,
                pasid: d.u32()?,
                grpid: d.u32()?,
                perm: d.u32()?,
                flags: d.u32()?,
                addr: d.u64()?,
                response: d.u32()?,
                hook: d.hook()?,
            })))
        }
        T_IOCTL => {
            let (ts_ns, latency_ns, tgid, tid, comm) = d.task()?;
            let c = d.u8()?;
            let cmd = ioctl_from(c).ok_or_else(|| d.corrupt(&format!("unknown ioctl {c}")))?;
            Item::Record(Record::Event(Event::PinIoctl(PinIoctlEvent {
                ts_ns,
                latency_ns,
                tgid,
                tid,
                comm,
                cmd,
                addr: d.u64()?,
                size: d.u64()?,
                ret: d.i64()?,
                hook: d.hook()?,
                pin_calls: d.u32()?,
                pages: d.u64()?,
                driver_call: None,
            })))
        }
        T_QUEUE => {
            let (ts_ns, latency_ns, tgid, tid, comm) = d.task()?;
            let c = d.u8()?;
            let op = queue_op_from(c).ok_or_else(|| d.corrupt(&format!("unknown queue op {c}")))?;
            Item::Record(Record::Event(Event::Queue(QueueEvent {
                ts_ns,
                latency_ns,
                tgid,
                tid,
                comm,
                op,
                device: d.str()?,
                pasid: d.u32()?,
                ret: d.i64()?,
                queue: d.u64()?,
                hook: d.hook()?,
            })))
        }
        T_REQUEST => {
            let (ts_ns, latency_ns, tgid, tid, comm) = d.task()?;
            Item::Record(Record::Event(Event::Request(RequestEvent {
                ts_ns,
                latency_ns,
                tgid,
                tid,
                comm,
                op: d.str()?,
                ret: d.i64()?,
                faults: d.u32()?,
                fault_ns: d.u64()?,
            })))
        }
        T_LOSS => {
            // The old record: `dropped` summed several reasons (ring buffer
            // full, in-flight map full, pairing table full, undecodable)
            // that cannot be told apart now, so it becomes `legacy_dropped`
            // rather than a guess; `unanswered` is `iopf_unanswered`.
            let ts_ns = d.u64()?;
            let mut losses = Ledger::new();
            losses.set(LossReason::LegacyDropped, d.u64()?);
            losses.set(LossReason::IopfUnanswered, d.u64()?);
            Item::Record(Record::Event(Event::Loss(LossSample { ts_ns, losses })))
        }
        T_LOSSES => {
            let ts_ns = d.u64()?;
            let n = d.u16()?;
            let mut losses = Ledger::new();
            for _ in 0..n {
                let name = d.str()?;
                losses.add_named(&name, d.u64()?);
            }
            Item::Record(Record::Event(Event::Loss(LossSample { ts_ns, losses })))
        }
        T_PASID => Item::Record(Record::Event(Event::Pasid(PasidEvent {
            ts_ns: d.u64()?,
            tgid: d.u32()?,
            comm: d.str()?,
            pasid: d.u32()?,
            bound: d.bool()?,
            hook: d.hook()?,
        }))),
        T_MARK => Item::Record(Record::Mark(d.u64()?)),
        T_END => Item::End(d.u64()?),
        other => return Err(d.corrupt(&format!("unknown record type {other}"))),
    };
    d.done()?;
    Ok(item)
}

/// Reads as much as possible; returns how many bytes were read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Streaming reader of a recording.
pub struct RawReader<R: Read> {
    r: R,
    offset: u64,
    events: u64,
    ended: bool,
    body: Vec<u8>,
}

impl<R: Read> RawReader<R> {
    /// Read and check the magic, version and header.
    pub fn open(mut r: R) -> Result<(RawReader<R>, RunMeta), RawError> {
        let mut fixed = [0u8; 14];
        let n = read_full(&mut r, &mut fixed)?;
        if n == 0 {
            return Err(RawError::Empty);
        }
        if n < MAGIC.len() || &fixed[..8] != MAGIC {
            return Err(RawError::Magic);
        }
        if n < fixed.len() {
            return Err(RawError::Truncated {
                offset: n as u64,
                what: "in the file header",
            });
        }
        let version = u16::from_le_bytes([fixed[8], fixed[9]]);
        if version != VERSION {
            return Err(RawError::Version(version));
        }
        let len = u32::from_le_bytes([fixed[10], fixed[11], fixed[12], fixed[13]]) as usize;
        if len > MAX_RECORD {
            return Err(RawError::Corrupt {
                offset: 10,
                what: format!("header length {len} is implausible"),
            });
        }
        let mut body = vec![0u8; len];
        if read_full(&mut r, &mut body)? < len {
            return Err(RawError::Truncated {
                offset: 14,
                what: "in the file header",
            });
        }
        let mut d = Dec {
            b: &body,
            at: 0,
            base: 14,
        };
        let header = RunMeta {
            start_unix_ns: d.u64()?,
            start_mono_ns: d.u64()?,
            kernel: d.str()?,
            plan: d.str()?,
            command: d.str()?,
        };
        d.done()?;
        Ok((
            RawReader {
                r,
                offset: 14 + len as u64,
                events: 0,
                ended: false,
                body: Vec::new(),
            },
            header,
        ))
    }

    /// The next record; `Ok(None)` after the end record.
    pub fn next_record(&mut self) -> Result<Option<Record>, RawError> {
        if self.ended {
            return Ok(None);
        }
        let mut len_bytes = [0u8; 4];
        let n = read_full(&mut self.r, &mut len_bytes)?;
        if n < 4 {
            return Err(RawError::Truncated {
                offset: self.offset + n as u64,
                what: "no end record (the recording was cut short)",
            });
        }
        let len = u32::from_le_bytes(len_bytes) as usize;
        if len == 0 || len > MAX_RECORD {
            return Err(RawError::Corrupt {
                offset: self.offset,
                what: format!("record length {len} is implausible"),
            });
        }
        self.body.resize(len, 0);
        let got = read_full(&mut self.r, &mut self.body)?;
        if got < len {
            return Err(RawError::Truncated {
                offset: self.offset + 4 + got as u64,
                what: "in the middle of a record",
            });
        }
        let base = self.offset + 4;
        self.offset += 4 + len as u64;
        match decode_body(&self.body, base)? {
            Item::Record(r) => {
                if matches!(r, Record::Event(_)) {
                    self.events += 1;
                }
                Ok(Some(r))
            }
            Item::End(count) => {
                if count != self.events {
                    return Err(RawError::Corrupt {
                        offset: base,
                        what: format!(
                            "end record counts {count} events, the file holds {}",
                            self.events
                        ),
                    });
                }
                self.ended = true;
                Ok(None)
            }
        }
    }

    /// Read everything left.
    pub fn read_all(&mut self) -> Result<Vec<Record>, RawError> {
        let mut out = Vec::new();
        while let Some(r) = self.next_record()? {
            out.push(r);
        }
        Ok(out)
    }
}

/// What a replay hands out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayItem {
    /// Events in recorded order, due `due_ns` after the replay started (at
    /// the recorded pace: the first event's offset from the first event of
    /// the recording).
    Batch { events: Vec<Event>, due_ns: u64 },
    /// An interval boundary recorded at this event time.
    Mark(u64),
}

/// Cuts a recording into batches: at most `max_events` events spanning at
/// most `max_span_ns` of event time. The caller sleeps until each batch is
/// due (recorded pace) or not at all (as fast as possible).
pub struct Replay<R: Read> {
    reader: RawReader<R>,
    pending: Option<Record>,
    first_ts: Option<u64>,
    max_events: usize,
    max_span_ns: u64,
    done: bool,
}

impl<R: Read> Replay<R> {
    /// Batches of up to 4096 events within 10 ms of event time.
    pub fn new(reader: RawReader<R>) -> Self {
        Replay {
            reader,
            pending: None,
            first_ts: None,
            max_events: 4096,
            max_span_ns: 10_000_000,
            done: false,
        }
    }

    fn next_item(&mut self) -> Result<Option<ReplayItem>, RawError> {
        let mut events: Vec<Event> = Vec::new();
        let mut batch_ts = 0u64;
        loop {
            let rec = match self.pending.take() {
                Some(r) => r,
                None => match self.reader.next_record()? {
                    Some(r) => r,
                    None => {
                        self.done = true;
                        break;
                    }
                },
            };
            match rec {
                Record::Mark(ts) if events.is_empty() => return Ok(Some(ReplayItem::Mark(ts))),
                Record::Mark(_) => {
                    self.pending = Some(rec);
                    break;
                }
                Record::Event(ev) => {
                    let ts = ev.ts_ns();
                    self.first_ts.get_or_insert(ts);
                    if events.is_empty() {
                        batch_ts = ts;
                    } else if events.len() >= self.max_events
                        || ts.saturating_sub(batch_ts) > self.max_span_ns
                    {
                        self.pending = Some(Record::Event(ev));
                        break;
                    }
                    events.push(ev);
                }
            }
        }
        if events.is_empty() {
            return Ok(None);
        }
        let due_ns = batch_ts.saturating_sub(self.first_ts.unwrap_or(batch_ts));
        Ok(Some(ReplayItem::Batch { events, due_ns }))
    }
}

impl<R: Read> Iterator for Replay<R> {
    type Item = Result<ReplayItem, RawError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done && self.pending.is_none() {
            return None;
        }
        match self.next_item() {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                self.pending = None;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_events() -> Vec<Event> {
        vec![
            Event::Pin(PinEvent {
                ts_ns: 1_000,
                latency_ns: 500,
                tgid: 10,
                tid: 11,
                comm: "bench".into(),
                func: PinFunc::PinUserPagesRemote,
                hook: HookType::Fentry,
                start: 0x7f00_0000_0000,
                nr_pages: 8,
                ret: 8,
                gup_flags: 0x10001,
                longterm: true,
            }),
            Event::Iopf(IopfEvent {
                ts_ns: 2_000,
                latency_ns: 7_000,
                tgid: None,
                comm: String::new(),
                device: "0000:00:02.0".into(),
                pasid: 3,
                grpid: 4,
                perm: 3,
                flags: 1,
                addr: 0x1234_5000,
                response: 1,
                hook: HookType::Kprobe,
            }),
            Event::PinIoctl(PinIoctlEvent {
                ts_ns: 30_000_000,
                latency_ns: 900,
                tgid: 10,
                tid: 12,
                comm: "bénch".into(),
                cmd: PinIoctl::MemUnpin,
                addr: 0x5000,
                size: 8192,
                ret: -22,
                hook: HookType::Tracepoint,
                pin_calls: 1,
                pages: 2,
                driver_call: None,
            }),
            Event::Queue(QueueEvent {
                ts_ns: 30_000_000,
                latency_ns: 400,
                tgid: 10,
                tid: 11,
                comm: "zip".into(),
                op: QueueOp::StartQ,
                device: "hisi_zip-0".into(),
                pasid: 3,
                ret: 0,
                queue: 0xffff_8880_0000_1000,
                hook: HookType::Fentry,
            }),
            Event::Request(RequestEvent {
                ts_ns: 30_000_000,
                latency_ns: 2_000_000,
                tgid: 10,
                tid: 12,
                comm: "zip".into(),
                op: "wd_do_comp_sync".into(),
                ret: -22,
                faults: 2,
                fault_ns: 700_000,
            }),
            Event::Pasid(PasidEvent {
                ts_ns: 30_000_001,
                tgid: 10,
                comm: "bench".into(),
                pasid: 3,
                bound: true,
                hook: HookType::Kprobe,
            }),
            Event::Loss(LossSample {
                ts_ns: 30_000_002,
                losses: {
                    let mut l = Ledger::new();
                    l.set(LossReason::RingFullIoctl, 5);
                    l.set(LossReason::IopfUnanswered, 6);
                    l.set(LossReason::Nested, 1);
                    l
                },
            }),
        ]
    }

    fn header() -> RunMeta {
        RunMeta {
            start_unix_ns: 1_700_000_000_000_000_000,
            start_mono_ns: 500,
            kernel: "6.12.0-test".into(),
            plan: "pin_user_pages_fast: kprobe".into(),
            command: "./bench --fast".into(),
        }
    }

    fn file() -> Vec<u8> {
        let mut w = RawWriter::new(Vec::new(), &header()).unwrap_or_else(|e| panic!("{e}"));
        let evs = sample_events();
        for (i, e) in evs.iter().enumerate() {
            w.write_event(e).unwrap_or_else(|e| panic!("{e}"));
            if i == 1 {
                w.write_mark(2_500).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        w.finish().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn round_trip() -> Result<(), RawError> {
        let bytes = file();
        let (mut r, h) = RawReader::open(&bytes[..])?;
        assert_eq!(h, header());
        let recs = r.read_all()?;
        let mut expect: Vec<Record> = sample_events().into_iter().map(Record::Event).collect();
        expect.insert(2, Record::Mark(2_500));
        assert_eq!(recs, expect);
        assert_eq!(r.next_record()?, None);
        Ok(())
    }

    #[test]
    fn replay_batches_and_marks() -> Result<(), RawError> {
        let bytes = file();
        let (r, _) = RawReader::open(&bytes[..])?;
        let items: Vec<ReplayItem> = Replay::new(r).collect::<Result<_, _>>()?;
        let shape: Vec<(usize, u64)> = items
            .iter()
            .map(|i| match i {
                ReplayItem::Batch { events, due_ns } => (events.len(), *due_ns),
                ReplayItem::Mark(ts) => (0, *ts),
            })
            .collect();
        // Two events, the mark, then five events 30 ms later (a request among them).
        assert_eq!(shape, vec![(2, 0), (0, 2_500), (5, 29_999_000)]);
        Ok(())
    }

    #[test]
    fn truncation_and_garbage_are_errors() {
        let bytes = file();
        // Every truncation is an error (never a panic, never silent).
        for cut in 0..bytes.len() {
            let res = RawReader::open(&bytes[..cut]).and_then(|(mut r, _)| r.read_all());
            assert!(res.is_err(), "cut at {cut} read fine");
        }
        // Byte flips: errors or (rarely) different values, never panics.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xa5;
            let _ = RawReader::open(&b[..]).and_then(|(mut r, _)| r.read_all());
        }
        assert!(matches!(RawReader::open(&b""[..]), Err(RawError::Empty)));
        assert!(matches!(
            RawReader::open(&b"hello world, not a recording"[..]),
            Err(RawError::Magic)
        ));
        let mut v = bytes.clone();
        v[8] = 9;
        assert!(matches!(RawReader::open(&v[..]), Err(RawError::Version(9))));
        let mut huge = bytes[..14].to_vec();
        huge[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            RawReader::open(&huge[..]),
            Err(RawError::Corrupt { .. })
        ));
    }

    /// A recording with one hand-made record body in place of the events.
    fn file_with(body: &[u8]) -> Vec<u8> {
        let mut w = RawWriter::new(Vec::new(), &header()).unwrap_or_else(|e| panic!("{e}"));
        w.record(body).unwrap_or_else(|e| panic!("{e}"));
        w.events += 1;
        w.finish().unwrap_or_else(|e| panic!("{e}"))
    }

    fn only_loss(bytes: &[u8]) -> Result<LossSample, RawError> {
        let (mut r, _) = RawReader::open(bytes)?;
        match r.read_all()?.as_slice() {
            [Record::Event(Event::Loss(l))] => Ok(l.clone()),
            other => panic!("expected one loss sample, got {other:?}"),
        }
    }

    #[test]
    fn old_loss_record_reads_as_legacy_dropped_and_unanswered() -> Result<(), RawError> {
        let mut e = Enc(Vec::new());
        e.u8(T_LOSS);
        e.u64(77);
        e.u64(5);
        e.u64(6);
        let l = only_loss(&file_with(&e.0))?;
        assert_eq!(l.ts_ns, 77);
        assert_eq!(l.losses.breakdown(), "iopf_unanswered 6, legacy_dropped 5");
        assert_eq!(l.losses.total(), 11);
        Ok(())
    }

    #[test]
    fn unknown_loss_reasons_are_summed_not_errors() -> Result<(), RawError> {
        let mut e = Enc(Vec::new());
        e.u8(T_LOSSES);
        e.u64(9);
        e.u16(3);
        e.str("ring_full_pin");
        e.u64(2);
        e.str("a_reason_from_a_newer_version");
        e.u64(3);
        e.str("another_one");
        e.u64(4);
        let l = only_loss(&file_with(&e.0))?;
        assert_eq!(l.losses.get(LossReason::RingFullPin), 2);
        assert_eq!(l.losses.get(LossReason::Unknown), 7);
        assert_eq!(l.losses.total(), 9);
        // Counts that overflow saturate instead of wrapping or panicking.
        let mut e = Enc(Vec::new());
        e.u8(T_LOSSES);
        e.u64(9);
        e.u16(2);
        e.str("x");
        e.u64(u64::MAX);
        e.str("y");
        e.u64(u64::MAX);
        assert_eq!(only_loss(&file_with(&e.0))?.losses.total(), u64::MAX);
        Ok(())
    }
}
