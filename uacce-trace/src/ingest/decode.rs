//! Decoding of ring-buffer records (wire types from `uacce-trace-common`)
//! into domain [`Event`]s. Pure and total: any byte string yields an event
//! or a [`DecodeError`], never a panic (it is a fuzz target). [`decode`]
//! takes one record on its own; [`Decoder`] takes the ring's stream, in
//! which an IO page fault arrives as a report and a response that it pairs
//! (`crate::ingest::pairing`).

use thiserror::Error;
use uacce_trace_common::{
    BindRecord, IoctlRecord, IopfRecord, IopfResponseRecord, PinFunc, PinRecord, ProcRecord,
    QueueRecord, RecordHeader, RequestRecord, BIND_OP_BIND, BIND_OP_SCAN, BIND_OP_UNBIND,
    IOCTL_INNER_PIN_PAGE, IOCTL_INNER_UNPIN_PAGE, IOPF_REPORTER_IS_USER, KIND_BIND, KIND_IOCTL,
    KIND_IOPF, KIND_IOPF_REPORT, KIND_IOPF_RESPONSE, KIND_PIN, KIND_PROC, KIND_QUEUE, KIND_REQUEST,
    KIND_UNPIN, PROC_OP_EXIT, PROC_OP_FORK, QUEUE_OP_OPEN, QUEUE_OP_PUT, QUEUE_OP_RELEASE,
    QUEUE_OP_START, RECORD_VERSION,
};

use crate::{
    ingest::attribution::PasidOwner,
    ingest::event::{
        comm_to_string, DriverCall, Event, HookType, IopfEvent, PasidEvent, PinEvent, PinIoctl,
        PinIoctlEvent, ProcEvent, QueueEvent, QueueOp, RequestEvent,
    },
    ingest::pairing::IopfPairing,
};

/// Why a record could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than its {need}-byte header or body")]
    Short { len: usize, need: usize },
    #[error("record version {found} is not the supported version {RECORD_VERSION}")]
    Version { found: u16 },
    #[error("unknown record kind {0}")]
    Kind(u16),
    #[error("unknown hooked function number {0}")]
    Func(u16),
    #[error("unknown hook type {0}")]
    Hook(u8),
    #[error("unknown ioctl command {0:#x}")]
    Ioctl(u32),
    #[error("unknown PASID operation {0}")]
    BindOp(u32),
    #[error("unknown uacce queue operation {0}")]
    QueueOp(u32),
    #[error("unknown process-tree operation {0}")]
    ProcOp(u32),
    #[error("not a start-up scan record")]
    NotScan,
    #[error("record kind {0} is half of an IO page fault: decode it with a Decoder")]
    Unpaired(u16),
}

/// What decoding needs to know about the running kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeContext {
    /// The running kernel's `FOLL_LONGTERM` bit, if known.
    pub foll_longterm: Option<u32>,
}

fn read<T: Copy>(bytes: &[u8]) -> Result<T, DecodeError> {
    let need = core::mem::size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            len: bytes.len(),
            need,
        });
    }
    // SAFETY: length checked above; `T` is a `#[repr(C)]` integer-only wire
    // type for which every bit pattern is valid; read_unaligned has no
    // alignment requirement.
    Ok(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

fn header(bytes: &[u8]) -> Result<RecordHeader, DecodeError> {
    let header: RecordHeader = read(bytes)?;
    if header.version != RECORD_VERSION {
        return Err(DecodeError::Version {
            found: header.version,
        });
    }
    Ok(header)
}

/// Decodes the ring buffer's record stream: IO page fault reports and
/// responses through an [`IopfPairing`] (an event once the response
/// arrives), every other record on its own ([`decode`]).
#[derive(Debug, Default)]
pub struct Decoder {
    pub ctx: DecodeContext,
    pub pairing: IopfPairing,
    /// Names of the request ops by number (`--op`; `kernel::ops::OpPlan`).
    pub ops: Vec<String>,
}

impl Decoder {
    pub fn new(ctx: DecodeContext) -> Self {
        Decoder {
            ctx,
            pairing: IopfPairing::new(),
            ops: Vec::new(),
        }
    }

    /// The event a record completes: `Ok(None)` for a report (held until
    /// its response) and for a response without a report (counted in
    /// [`IopfPairing::counts`]).
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Option<Event>, DecodeError> {
        match header(bytes)?.kind {
            KIND_IOPF_REPORT => {
                self.pairing.report(read(bytes)?);
                Ok(None)
            }
            KIND_IOPF_RESPONSE => {
                let response: IopfResponseRecord = read(bytes)?;
                HookType::from_wire(response.hook).ok_or(DecodeError::Hook(response.hook))?;
                self.pairing
                    .respond(&response)
                    .map(|r| iopf_event(&r))
                    .transpose()
            }
            KIND_REQUEST => request_event(bytes, &self.ops).map(Some),
            _ => decode(bytes, &self.ctx).map(Some),
        }
    }
}

/// A request record as an event, its op named from `ops` (`op#N` when the
/// number is not there).
fn request_event(bytes: &[u8], ops: &[String]) -> Result<Event, DecodeError> {
    let r: RequestRecord = read(bytes)?;
    let op = ops
        .get(r.op as usize)
        .cloned()
        .unwrap_or_else(|| format!("op#{}", r.op));
    Ok(Event::Request(RequestEvent {
        ts_ns: r.ts_ns,
        latency_ns: r.latency_ns,
        tgid: r.tgid,
        tid: r.tid,
        comm: comm_to_string(&r.comm),
        op,
        ret: r.ret,
        faults: 0,
        fault_ns: 0,
    }))
}

/// A paired IO page fault ([`KIND_IOPF`]) as an event.
fn iopf_event(r: &IopfRecord) -> Result<Event, DecodeError> {
    let hook = HookType::from_wire(r.hook).ok_or(DecodeError::Hook(r.hook))?;
    // Attribution starts from the reporting task when it is a user task;
    // `attribution` replaces it with the PASID's owner.
    let user = r.flags2 & IOPF_REPORTER_IS_USER != 0;
    Ok(Event::Iopf(IopfEvent {
        ts_ns: r.ts_ns,
        latency_ns: r.latency_ns,
        tgid: user.then_some(r.reporter_tgid),
        comm: if user {
            comm_to_string(&r.reporter_comm)
        } else {
            String::new()
        },
        device: comm_to_string(&r.dev_name),
        pasid: r.pasid,
        grpid: r.grpid,
        perm: r.perm,
        flags: r.flags,
        addr: r.addr,
        response: r.response,
        hook,
    }))
}

/// Decode one ring-buffer record on its own; the two halves of an IO page
/// fault are [`DecodeError::Unpaired`] here ([`Decoder`] pairs them).
pub fn decode(bytes: &[u8], ctx: &DecodeContext) -> Result<Event, DecodeError> {
    let header = header(bytes)?;
    match header.kind {
        KIND_IOPF_REPORT | KIND_IOPF_RESPONSE => Err(DecodeError::Unpaired(header.kind)),
        KIND_REQUEST => request_event(bytes, &[]),
        KIND_PIN | KIND_UNPIN => {
            let r: PinRecord = read(bytes)?;
            let func = PinFunc::from_u16(r.func).ok_or(DecodeError::Func(r.func))?;
            let hook = HookType::from_wire(r.hook).ok_or(DecodeError::Hook(r.hook))?;
            Ok(Event::Pin(PinEvent {
                ts_ns: r.ts_ns,
                latency_ns: r.latency_ns,
                tgid: r.tgid,
                tid: r.tid,
                comm: comm_to_string(&r.comm),
                func,
                hook,
                start: r.start,
                nr_pages: r.nr_pages,
                ret: r.ret,
                gup_flags: r.gup_flags,
                // memfd_pin_folios takes no gup_flags; its pins (udmabuf)
                // are long-term by design (FOLL_PIN | FOLL_LONGTERM inside).
                longterm: func == PinFunc::MemfdPinFolios
                    || (func.is_pin()
                        && ctx.foll_longterm.is_some_and(|bit| r.gup_flags & bit != 0)),
            }))
        }
        KIND_IOPF => iopf_event(&read(bytes)?),
        KIND_IOCTL => {
            let r: IoctlRecord = read(bytes)?;
            let hook = HookType::from_wire(r.hook).ok_or(DecodeError::Hook(r.hook))?;
            let cmd = PinIoctl::from_cmd(r.cmd).ok_or(DecodeError::Ioctl(r.cmd))?;
            Ok(Event::PinIoctl(PinIoctlEvent {
                ts_ns: r.ts_ns,
                latency_ns: r.latency_ns,
                tgid: r.tgid,
                tid: r.tid,
                comm: comm_to_string(&r.comm),
                cmd,
                addr: r.addr,
                size: r.size,
                ret: r.ret,
                hook,
                pin_calls: u32::from(r.pin_calls),
                pages: u64::from(r.pages),
                driver_call: if r.inner & IOCTL_INNER_PIN_PAGE != 0 {
                    Some(DriverCall {
                        function: "uacce_pin_page",
                        ret: r.inner_ret,
                    })
                } else if r.inner & IOCTL_INNER_UNPIN_PAGE != 0 {
                    Some(DriverCall {
                        function: "uacce_unpin_page",
                        ret: r.inner_ret,
                    })
                } else {
                    None
                },
            }))
        }
        KIND_QUEUE => {
            let r: QueueRecord = read(bytes)?;
            let hook = HookType::from_wire(r.hook).ok_or(DecodeError::Hook(r.hook))?;
            let op = match r.op {
                QUEUE_OP_OPEN => QueueOp::Open,
                QUEUE_OP_START => QueueOp::StartQ,
                QUEUE_OP_PUT => QueueOp::PutQ,
                QUEUE_OP_RELEASE => QueueOp::Release,
                other => return Err(DecodeError::QueueOp(other)),
            };
            Ok(Event::Queue(QueueEvent {
                ts_ns: r.ts_ns,
                latency_ns: r.latency_ns,
                tgid: r.tgid,
                tid: r.tid,
                comm: comm_to_string(&r.comm),
                op,
                device: comm_to_string(&r.dev_name),
                pasid: r.pasid,
                ret: r.ret,
                queue: r.queue,
                hook,
            }))
        }
        KIND_BIND => {
            let r: BindRecord = read(bytes)?;
            let hook_byte = u8::try_from(r.hook).unwrap_or(u8::MAX);
            let hook = HookType::from_wire(hook_byte).ok_or(DecodeError::Hook(hook_byte))?;
            let bound = match r.op {
                BIND_OP_BIND => true,
                BIND_OP_UNBIND => false,
                other => return Err(DecodeError::BindOp(other)),
            };
            Ok(Event::Pasid(PasidEvent {
                ts_ns: r.ts_ns,
                tgid: r.tgid,
                comm: comm_to_string(&r.comm),
                pasid: r.pasid,
                bound,
                hook,
            }))
        }
        KIND_PROC => {
            let r: ProcRecord = read(bytes)?;
            let parent = match r.op {
                PROC_OP_FORK => Some(r.parent_tgid),
                PROC_OP_EXIT => None,
                other => return Err(DecodeError::ProcOp(other)),
            };
            Ok(Event::Proc(ProcEvent {
                ts_ns: r.ts_ns,
                tgid: r.tgid,
                parent,
                tid: r.tid,
                comm: comm_to_string(&r.comm),
                lost: r.lost,
            }))
        }
        other => Err(DecodeError::Kind(other)),
    }
}

/// Decode one record of the start-up PASID scan (a [`BindRecord`] with
/// `BIND_OP_SCAN`).
pub fn decode_scan(bytes: &[u8]) -> Result<PasidOwner, DecodeError> {
    if header(bytes)?.kind != KIND_BIND {
        return Err(DecodeError::NotScan);
    }
    let r: BindRecord = read(bytes)?;
    if r.op != BIND_OP_SCAN {
        return Err(DecodeError::NotScan);
    }
    Ok(PasidOwner {
        pasid: r.pasid,
        tgid: r.tgid,
        comm: comm_to_string(&r.comm),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use uacce_trace_common::ioctl_cmd;

    fn record() -> PinRecord {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"fio\0");
        PinRecord {
            header: RecordHeader {
                kind: KIND_PIN,
                version: RECORD_VERSION,
                size: 80,
            },
            ts_ns: 10,
            latency_ns: 20,
            tgid: 30,
            tid: 31,
            comm,
            start: 0x7f00_0000_0000,
            nr_pages: 256,
            ret: 256,
            gup_flags: 0x100 | 0x1,
            func: PinFunc::PinUserPagesFast as u16,
            hook: uacce_trace_common::HOOK_FENTRY,
            _pad: 0,
        }
    }

    fn bytes(r: &PinRecord) -> Vec<u8> {
        // SAFETY: PinRecord is repr(C) plain data without implicit padding.
        unsafe {
            core::slice::from_raw_parts(
                (r as *const PinRecord).cast::<u8>(),
                core::mem::size_of::<PinRecord>(),
            )
        }
        .to_vec()
    }

    #[test]
    fn decodes_pin_record_with_longterm_from_context() {
        let b = bytes(&record());
        let ctx = DecodeContext {
            foll_longterm: Some(0x100),
        };
        let Ok(Event::Pin(e)) = decode(&b, &ctx) else {
            panic!("decode failed")
        };
        assert_eq!(e.comm, "fio");
        assert_eq!(e.func, PinFunc::PinUserPagesFast);
        assert_eq!((e.tgid, e.tid, e.nr_pages, e.ret), (30, 31, 256, 256));
        assert!(e.longterm);
        // 6.1's FOLL_LONGTERM is another bit: the same flags are not long-term.
        let ctx61 = DecodeContext {
            foll_longterm: Some(0x10000),
        };
        let Ok(Event::Pin(e)) = decode(&b, &ctx61) else {
            panic!("decode failed")
        };
        assert!(!e.longterm);
    }

    #[test]
    fn process_tree_records() {
        let mut r = ProcRecord {
            header: RecordHeader {
                kind: KIND_PROC,
                version: RECORD_VERSION,
                size: core::mem::size_of::<ProcRecord>() as u32,
            },
            ts_ns: 5,
            op: PROC_OP_FORK,
            tgid: 101,
            parent_tgid: 100,
            tid: 100,
            lost: 0,
            comm: *b"sh\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        };
        let ctx = DecodeContext::default();
        let Ok(Event::Proc(e)) = decode(&as_bytes(&r), &ctx) else {
            panic!("a fork decodes");
        };
        assert_eq!(
            (e.tgid, e.parent, e.tid, e.comm.as_str()),
            (101, Some(100), 100, "sh")
        );
        r.op = PROC_OP_EXIT;
        r.lost = 3;
        let Ok(Event::Proc(e)) = decode(&as_bytes(&r), &ctx) else {
            panic!("an exit decodes");
        };
        assert_eq!((e.tgid, e.parent, e.lost), (101, None, 3));
        r.op = 9;
        assert_eq!(decode(&as_bytes(&r), &ctx), Err(DecodeError::ProcOp(9)));
        let bytes = as_bytes(&r);
        assert!(matches!(
            decode(&bytes[..40], &ctx),
            Err(DecodeError::Short { .. })
        ));
    }

    fn as_bytes<T>(r: &T) -> Vec<u8> {
        // SAFETY: wire types are repr(C) plain data without implicit padding.
        unsafe {
            core::slice::from_raw_parts((r as *const T).cast::<u8>(), core::mem::size_of::<T>())
        }
        .to_vec()
    }

    #[test]
    fn decodes_iopf_with_user_reporter_only() {
        let mut r = IopfRecord {
            header: RecordHeader {
                kind: KIND_IOPF,
                version: RECORD_VERSION,
                size: 128,
            },
            ts_ns: 5,
            latency_ns: 7,
            dev: 0xffff_8880_0000_1000,
            addr: 0x7f00_0000_2000,
            pasid: 3,
            grpid: 9,
            perm: 3,
            flags: 2,
            response: 0,
            nr_faults: 1,
            reporter_tgid: 77,
            flags2: IOPF_REPORTER_IS_USER,
            hook: uacce_trace_common::HOOK_KPROBE,
            ..Default::default()
        };
        r.reporter_comm[..3].copy_from_slice(b"zip");
        r.dev_name[..6].copy_from_slice(b"mock0\0");
        let ctx = DecodeContext::default();
        let Ok(Event::Iopf(e)) = decode(&as_bytes(&r), &ctx) else {
            panic!("decode failed")
        };
        assert_eq!(
            (e.tgid, e.comm.as_str(), e.device.as_str()),
            (Some(77), "zip", "mock0")
        );
        assert_eq!(
            (e.pasid, e.grpid, e.perm, e.addr, e.latency_ns),
            (3, 9, 3, 0x7f00_0000_2000, 7)
        );
        r.flags2 = 0;
        let Ok(Event::Iopf(e)) = decode(&as_bytes(&r), &ctx) else {
            panic!("decode failed")
        };
        assert_eq!((e.tgid, e.comm.as_str()), (None, ""));
    }

    #[test]
    fn decodes_ioctl_and_bind() {
        let r = IoctlRecord {
            header: RecordHeader {
                kind: KIND_IOCTL,
                version: RECORD_VERSION,
                size: 88,
            },
            addr: 0x1000,
            size: 0x4000,
            ret: -25,
            cmd: ioctl_cmd::UACCE_CMD_PIN,
            hook: uacce_trace_common::HOOK_TRACEPOINT,
            ..Default::default()
        };
        let ctx = DecodeContext::default();
        let Ok(Event::PinIoctl(e)) = decode(&as_bytes(&r), &ctx) else {
            panic!("decode failed")
        };
        assert_eq!(
            (e.cmd, e.addr, e.size, e.ret, e.hook),
            (
                PinIoctl::UaccePin,
                0x1000,
                0x4000,
                -25,
                HookType::Tracepoint
            )
        );
        let b = BindRecord {
            header: RecordHeader {
                kind: KIND_BIND,
                version: RECORD_VERSION,
                size: 56,
            },
            tgid: 12,
            pasid: 4,
            op: BIND_OP_UNBIND,
            hook: u32::from(uacce_trace_common::HOOK_FENTRY),
            ..Default::default()
        };
        let Ok(Event::Pasid(e)) = decode(&as_bytes(&b), &ctx) else {
            panic!("decode failed")
        };
        assert_eq!((e.tgid, e.pasid, e.bound), (12, 4, false));
    }

    #[test]
    fn decodes_queue_driver_call_and_scan() {
        let ctx = DecodeContext::default();
        let mut q = QueueRecord {
            header: RecordHeader {
                kind: KIND_QUEUE,
                version: RECORD_VERSION,
                size: 112,
            },
            ret: -22,
            tgid: 9,
            op: QUEUE_OP_START,
            pasid: 5,
            hook: uacce_trace_common::HOOK_KPROBE,
            queue: 0xffff_8880_0000_2000,
            ..Default::default()
        };
        q.dev_name[..10].copy_from_slice(b"hisi_zip-0");
        let Ok(Event::Queue(e)) = decode(&as_bytes(&q), &ctx) else {
            panic!("decode failed")
        };
        assert_eq!(
            (e.op, e.ret, e.device.as_str(), e.pasid, e.tgid),
            (QueueOp::StartQ, -22, "hisi_zip-0", 5, 9)
        );
        q.op = 9;
        assert_eq!(decode(&as_bytes(&q), &ctx), Err(DecodeError::QueueOp(9)));

        let r = IoctlRecord {
            header: RecordHeader {
                kind: KIND_IOCTL,
                version: RECORD_VERSION,
                size: 96,
            },
            ret: -17,
            cmd: ioctl_cmd::UACCE_CMD_PIN,
            hook: uacce_trace_common::HOOK_FENTRY,
            inner: IOCTL_INNER_PIN_PAGE,
            inner_ret: -17,
            ..Default::default()
        };
        let Ok(Event::PinIoctl(e)) = decode(&as_bytes(&r), &ctx) else {
            panic!("decode failed")
        };
        assert_eq!(
            e.driver_call,
            Some(DriverCall {
                function: "uacce_pin_page",
                ret: -17
            })
        );

        let mut b = BindRecord {
            header: RecordHeader {
                kind: KIND_BIND,
                version: RECORD_VERSION,
                size: 56,
            },
            tgid: 48,
            pasid: 1,
            op: BIND_OP_SCAN,
            hook: u32::from(uacce_trace_common::HOOK_TRACEPOINT),
            ..Default::default()
        };
        b.comm[..6].copy_from_slice(b"holder");
        assert_eq!(
            decode_scan(&as_bytes(&b)),
            Ok(PasidOwner {
                pasid: 1,
                tgid: 48,
                comm: "holder".into()
            })
        );
        // A scan record is not a live event, and a live bind is no scan.
        assert_eq!(decode(&as_bytes(&b), &ctx), Err(DecodeError::BindOp(3)));
        b.op = BIND_OP_BIND;
        assert_eq!(decode_scan(&as_bytes(&b)), Err(DecodeError::NotScan));
    }

    #[test]
    fn rejects_bad_records() {
        let ctx = DecodeContext::default();
        let b = bytes(&record());
        assert!(matches!(
            decode(&b[..7], &ctx),
            Err(DecodeError::Short { .. })
        ));
        assert!(matches!(
            decode(&b[..40], &ctx),
            Err(DecodeError::Short { .. })
        ));
        let mut r = record();
        r.header.version = 99;
        assert_eq!(
            decode(&bytes(&r), &ctx),
            Err(DecodeError::Version { found: 99 })
        );
        let mut r = record();
        r.header.kind = 77;
        assert_eq!(decode(&bytes(&r), &ctx), Err(DecodeError::Kind(77)));
        let mut r = record();
        r.func = 5;
        assert_eq!(decode(&bytes(&r), &ctx), Err(DecodeError::Func(5)));
        let mut r = record();
        r.hook = 9;
        assert_eq!(decode(&bytes(&r), &ctx), Err(DecodeError::Hook(9)));
    }
}
