//! The pin paths of `uacce-workload` besides io_uring buffer registration,
//! the `busy` loop that a tracer is started onto, and `now`.
//!
//! Every mode keeps its own tally of the pages it made the kernel pin and
//! unpin and prints one JSON line on stdout with it and the
//! CLOCK_MONOTONIC times (ns, the clock of the tool's `ts_ns`) around its
//! calls. On a failed call: the call and errno on stderr, exit status 1.
//!
//! - `odirect --dev PATH`: `pread` of `--size-kib` from a block device
//!   opened `O_DIRECT` into a page-aligned buffer (the bio pins the user
//!   pages, `pin_user_pages_fast` through `iov_iter_extract_pages` on
//!   6.x, and unpins them when the bio ends). The test kernel has brd
//!   (`/dev/ram0`); the stock Debian kernels have no built-in block driver
//!   in an initramfs-only VM.
//! - `pvm`: `process_vm_readv` of `--size-kib` from a child's own anonymous
//!   buffer (`pin_user_pages_remote` on the child's mm, then
//!   `unpin_user_pages_dirty_lock`, which for a read calls
//!   `unpin_user_pages`).
//! - `udmabuf`: `UDMABUF_CREATE` on a sealed memfd (`memfd_pin_folios`),
//!   then closing the dma-buf (unpins every folio).
//! - `busy --log FILE`: `--threads` threads register and unregister a
//!   `--size-kib` buffer on their own ring in a loop, as fast as they can,
//!   until `--stop-file` exists or `--seconds` passed (sleeping
//!   `--pause-us` after each register/unregister pair, 0: none); every
//!   `io_uring_register` call is logged to FILE as
//!   `tid kind t_enter_ns t_exit_ns pages` (`kind`: `p` register, `u`
//!   unregister), so the host can compare any time window with a tracer's.

use std::ffi::CString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::{
    json_list, usage, Mapping, Ring, SysError, IORING_REGISTER_BUFFERS, IORING_UNREGISTER_BUFFERS,
    RING_ENTRIES,
};

/// `UDMABUF_CREATE` = `_IOW('u', 0x42, struct udmabuf_create)` (24 bytes).
const UDMABUF_CREATE: u64 = (1 << 30) | (24 << 16) | ((b'u' as u64) << 8) | 0x42;
/// `UDMABUF_FLAGS_CLOEXEC`.
const UDMABUF_FLAGS_CLOEXEC: u32 = 1;

/// `struct udmabuf_create` (uapi).
#[repr(C)]
struct UdmabufCreate {
    memfd: u32,
    flags: u32,
    offset: u64,
    size: u64,
}

/// CLOCK_MONOTONIC in ns.
pub(crate) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// The calling thread's id.
fn gettid() -> u64 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u64 }
}

/// Options of the modes in this file.
struct Opts {
    size_kib: u64,
    count: u32,
    dev: String,
    threads: u32,
    seconds: u64,
    stop_file: Option<String>,
    log: Option<String>,
    nice: i32,
    pause_us: u64,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        size_kib: 64,
        count: 4,
        dev: "/dev/ram0".into(),
        threads: 2,
        seconds: 60,
        stop_file: None,
        log: None,
        nice: 0,
        pause_us: 0,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let number = |v: String| {
            v.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!("bad {name} {v:?} (a number > 0)"))
        };
        match name {
            "--size-kib" => o.size_kib = number(value()?)?,
            "--count" => o.count = u32::try_from(number(value()?)?).map_err(|e| e.to_string())?,
            "--threads" => {
                o.threads = u32::try_from(number(value()?)?).map_err(|e| e.to_string())?;
            }
            "--seconds" => o.seconds = number(value()?)?,
            "--dev" => o.dev = value()?,
            "--stop-file" => o.stop_file = Some(value()?),
            "--log" => o.log = Some(value()?),
            "--pause-us" => {
                let v = value()?;
                o.pause_us = v.parse().map_err(|_| format!("bad --pause-us {v:?}"))?;
            }
            "--nice" => {
                let v = value()?;
                o.nice = v
                    .parse()
                    .ok()
                    .filter(|n| (0..=19).contains(n))
                    .ok_or(format!("bad --nice {v:?} (0 to 19)"))?;
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(o)
}

/// Runs `mode` (not `iouring`) with `args`.
pub(crate) fn main(mode: &str, args: &[String]) -> ExitCode {
    if mode == "now" {
        println!("{}", now_ns());
        return ExitCode::SUCCESS;
    }
    if mode == "compact" {
        return compact();
    }
    let opts = match parse(args) {
        Ok(o) => o,
        Err(msg) => return usage(&msg),
    };
    // SAFETY: sysconf has no preconditions.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    };
    let len = usize::try_from(opts.size_kib.saturating_mul(1024))
        .unwrap_or(usize::MAX)
        .div_ceil(page)
        .saturating_mul(page);
    let result = match mode {
        "odirect" => odirect(&opts, len, page),
        "pvm" => pvm(&opts, len, page),
        "udmabuf" => udmabuf(&opts, len, page),
        "busy" => return busy(&opts, len, page),
        other => return usage(&format!("unknown workload {other:?}")),
    };
    match result {
        Ok(r) => {
            println!(
                "{{\"workload\":\"{mode}\",\"pid\":{},\"tid\":{},\"calls\":{},\"page_size\":{page},\"pages_per_call\":{},\"pinned_pages\":{},\"unpinned_pages\":{},\"t_start\":{},\"t_end\":{}}}",
                std::process::id(),
                gettid(),
                r.calls,
                json_list(&r.pages_per_call),
                r.pinned,
                r.unpinned,
                r.t_start,
                r.t_end
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("uacce-workload {mode}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A mode's tally.
struct Tally {
    calls: u32,
    pages_per_call: Vec<u64>,
    pinned: u64,
    unpinned: u64,
    t_start: u64,
    t_end: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            calls: 0,
            pages_per_call: Vec::new(),
            pinned: 0,
            unpinned: 0,
            t_start: now_ns(),
            t_end: 0,
        }
    }

    /// One call that pinned and later unpinned `pages`.
    fn add(&mut self, pages: u64) {
        self.calls += 1;
        self.pages_per_call.push(pages);
        self.pinned += pages;
        self.unpinned += pages;
    }
}

/// An owned file descriptor, closed on drop.
struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: closes this descriptor once.
        unsafe { libc::close(self.0) };
    }
}

fn open(path: &str, flags: libc::c_int, call: &'static str) -> Result<Fd, SysError> {
    let c = CString::new(path).map_err(|_| SysError {
        call,
        errno: libc::EINVAL,
    })?;
    // SAFETY: `c` is a NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    if fd < 0 {
        return Err(SysError::last(call));
    }
    Ok(Fd(fd))
}

/// `O_DIRECT` reads from a block device: each pins and unpins the buffer.
fn odirect(o: &Opts, len: usize, page: usize) -> Result<Tally, SysError> {
    let fd = open(&o.dev, libc::O_RDONLY | libc::O_DIRECT, "open(O_DIRECT)")?;
    let buf = Mapping::new_touched(len, page)?;
    let mut t = Tally::new();
    for _ in 0..o.count {
        // SAFETY: `buf` is a writable mapping of `len` bytes.
        let n = unsafe { libc::pread(fd.0, buf.addr, len, 0) };
        if n < 0 {
            return Err(SysError::last("pread(O_DIRECT)"));
        }
        if n as usize != len {
            return Err(SysError {
                call: "pread(O_DIRECT) (short read: device smaller than --size-kib)",
                errno: libc::EIO,
            });
        }
        t.add((len / page) as u64);
    }
    t.t_end = now_ns();
    Ok(t)
}

/// `process_vm_readv` from a child's anonymous buffer.
fn pvm(o: &Opts, len: usize, page: usize) -> Result<Tally, SysError> {
    let mut to_parent = [0 as libc::c_int; 2];
    let mut to_child = [0 as libc::c_int; 2];
    // SAFETY: two-element arrays for pipe(2).
    if unsafe { libc::pipe(to_parent.as_mut_ptr()) } != 0
        || unsafe { libc::pipe(to_child.as_mut_ptr()) } != 0
    {
        return Err(SysError::last("pipe"));
    }
    // SAFETY: the child only maps, writes to and reads from pipes, and
    // exits with `_exit` (no allocation, no locks).
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(SysError::last("fork"));
    }
    if child == 0 {
        let status = match Mapping::new_touched(len, page) {
            Ok(m) => {
                let addr = (m.addr as usize as u64).to_ne_bytes();
                let mut byte = 0u8;
                // SAFETY: valid buffers and descriptors inherited from the
                // parent; the read blocks until the parent closes its end.
                unsafe {
                    libc::close(to_child[1]);
                    libc::write(to_parent[1], addr.as_ptr().cast(), addr.len());
                    libc::read(to_child[0], (&mut byte as *mut u8).cast(), 1);
                }
                std::mem::forget(m);
                0
            }
            Err(_) => 1,
        };
        // SAFETY: ends the forked child without running the parent's
        // destructors.
        unsafe { libc::_exit(status) };
    }
    // SAFETY: closes the child's ends in the parent.
    unsafe {
        libc::close(to_parent[1]);
        libc::close(to_child[0]);
    }
    let write_end = Fd(to_child[1]);
    let read_end = Fd(to_parent[0]);
    let mut addr = [0u8; 8];
    // SAFETY: reads 8 bytes into `addr`.
    let n = unsafe { libc::read(read_end.0, addr.as_mut_ptr().cast(), addr.len()) };
    let result = if n != 8 {
        Err(SysError {
            call: "read(child's buffer address)",
            errno: libc::EIO,
        })
    } else {
        (|| {
            let local = Mapping::new_touched(len, page)?;
            let mut t = Tally::new();
            for _ in 0..o.count {
                let liov = libc::iovec {
                    iov_base: local.addr,
                    iov_len: len,
                };
                let riov = libc::iovec {
                    iov_base: u64::from_ne_bytes(addr) as usize as *mut libc::c_void,
                    iov_len: len,
                };
                // SAFETY: one local iovec over our own mapping; the remote
                // one is checked by the kernel against the child's mm.
                let n = unsafe { libc::process_vm_readv(child, &liov, 1, &riov, 1, 0) };
                if n < 0 {
                    return Err(SysError::last("process_vm_readv"));
                }
                if n as usize != len {
                    return Err(SysError {
                        call: "process_vm_readv (short read)",
                        errno: libc::EIO,
                    });
                }
                t.add((len / page) as u64);
            }
            t.t_end = now_ns();
            Ok(t)
        })()
    };
    drop(write_end);
    let mut status = 0;
    // SAFETY: reaps our own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    result
}

/// `UDMABUF_CREATE` on a sealed memfd, then close of the dma-buf.
fn udmabuf(o: &Opts, len: usize, page: usize) -> Result<Tally, SysError> {
    let name = c"uacce-udmabuf";
    // SAFETY: a NUL-terminated name and valid flags.
    let memfd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_ALLOW_SEALING) };
    if memfd < 0 {
        return Err(SysError::last("memfd_create"));
    }
    let memfd = Fd(memfd);
    // SAFETY: plain calls on our own descriptor.
    if unsafe { libc::ftruncate(memfd.0, len as libc::off_t) } != 0 {
        return Err(SysError::last("ftruncate(memfd)"));
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(memfd.0, libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) } != 0 {
        return Err(SysError::last("fcntl(F_ADD_SEALS, F_SEAL_SHRINK)"));
    }
    let dev = open("/dev/udmabuf", libc::O_RDWR, "open(/dev/udmabuf)")?;
    let mut t = Tally::new();
    for _ in 0..o.count {
        let create = UdmabufCreate {
            memfd: memfd.0 as u32,
            flags: UDMABUF_FLAGS_CLOEXEC,
            offset: 0,
            size: len as u64,
        };
        // SAFETY: `create` is the ioctl's argument struct, alive for the call.
        let buf = unsafe { libc::ioctl(dev.0, UDMABUF_CREATE as _, &create) };
        if buf < 0 {
            return Err(SysError::last("ioctl(UDMABUF_CREATE)"));
        }
        drop(Fd(buf));
        t.add((len / page) as u64);
    }
    t.t_end = now_ns();
    Ok(t)
}

/// `compact`: NDJSON of `uacce-trace trace --json` on stdin; pin/unpin
/// records out as `P|U tgid tid ts_ns pages func hook` (pages: `pinned`
/// of a pin, `nr_pages` of an unpin), every other line unchanged. The
/// busy test ships tens of thousands of records per tracer lifetime out
/// of an emulated guest; this is 8× smaller and fast where awk is not.
fn compact() -> ExitCode {
    use std::io::BufRead;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let v: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(_) => {
                let _ = writeln!(out, "{line}");
                continue;
            }
        };
        let get = |k: &str| v.get(k).and_then(serde_json::Value::as_u64);
        let text = |k: &str| v.get(k).and_then(serde_json::Value::as_str).unwrap_or("-");
        let kind = text("event");
        let (tag, pages) = match kind {
            "pin" => ("P", get("pinned")),
            "unpin" => ("U", get("nr_pages")),
            _ => {
                let _ = writeln!(out, "{line}");
                continue;
            }
        };
        let n = |x: Option<u64>| x.map_or("-".to_string(), |x| x.to_string());
        let _ = writeln!(
            out,
            "{tag} {} {} {} {} {} {}",
            n(get("tgid")),
            n(get("tid")),
            n(get("ts_ns")),
            n(pages),
            text("func"),
            text("hook")
        );
    }
    if out.flush().is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// One logged `io_uring_register` call of the busy loop.
struct Call {
    unregister: bool,
    t0: u64,
    t1: u64,
    pages: u64,
}

/// The busy loop: threads pin and unpin at full speed, every call logged.
fn busy(o: &Opts, len: usize, page: usize) -> ExitCode {
    let Some(log) = o.log.clone() else {
        return usage("busy needs --log FILE");
    };
    // A niceness for the busy threads (inherited by them), so that a
    // tracer started onto them still gets the CPU to load and attach.
    // SAFETY: nice(2) has no memory arguments.
    if o.nice > 0 && unsafe { libc::nice(o.nice) } == -1 {
        eprintln!("uacce-workload busy: {}", SysError::last("nice"));
        return ExitCode::FAILURE;
    }
    let deadline = Instant::now() + Duration::from_secs(o.seconds);
    let pages = (len / page) as u64;
    let t_start = now_ns();
    let handles: Vec<_> = (0..o.threads)
        .map(|_| {
            let stop_file = o.stop_file.clone();
            let pause = Duration::from_micros(o.pause_us);
            std::thread::spawn(move || -> Result<(u64, Vec<Call>), String> {
                let tid = gettid();
                let map = Mapping::new_touched(len, page).map_err(|e| e.to_string())?;
                let ring = Ring::setup(RING_ENTRIES).map_err(|e| e.to_string())?;
                let iov = libc::iovec {
                    iov_base: map.addr,
                    iov_len: map.len,
                };
                let mut calls = Vec::new();
                let mut i = 0u64;
                loop {
                    if i.is_multiple_of(32)
                        && (Instant::now() >= deadline
                            || stop_file
                                .as_deref()
                                .is_some_and(|f| std::path::Path::new(f).exists()))
                    {
                        break;
                    }
                    i += 1;
                    let t0 = now_ns();
                    ring.register(
                        "io_uring_register(IORING_REGISTER_BUFFERS)",
                        IORING_REGISTER_BUFFERS,
                        (&iov as *const libc::iovec).cast(),
                        1,
                    )
                    .map_err(|e| e.to_string())?;
                    let t1 = now_ns();
                    calls.push(Call {
                        unregister: false,
                        t0,
                        t1,
                        pages,
                    });
                    let t0 = now_ns();
                    ring.register(
                        "io_uring_register(IORING_UNREGISTER_BUFFERS)",
                        IORING_UNREGISTER_BUFFERS,
                        std::ptr::null(),
                        0,
                    )
                    .map_err(|e| e.to_string())?;
                    let t1 = now_ns();
                    calls.push(Call {
                        unregister: true,
                        t0,
                        t1,
                        pages,
                    });
                    if !pause.is_zero() {
                        std::thread::sleep(pause);
                    }
                }
                Ok((tid, calls))
            })
        })
        .collect();
    let mut out = String::new();
    let mut tids = Vec::new();
    let (mut pinned, mut unpinned, mut ncalls) = (0u64, 0u64, 0u64);
    for h in handles {
        match h.join() {
            Ok(Ok((tid, calls))) => {
                tids.push(tid);
                for c in &calls {
                    let _ = writeln!(
                        out,
                        "{tid} {} {} {} {}",
                        if c.unregister { 'u' } else { 'p' },
                        c.t0,
                        c.t1,
                        c.pages
                    );
                    if c.unregister {
                        unpinned += c.pages;
                    } else {
                        pinned += c.pages;
                    }
                }
                ncalls += calls.len() as u64;
            }
            Ok(Err(e)) => {
                eprintln!("uacce-workload busy: {e}");
                return ExitCode::FAILURE;
            }
            Err(_) => {
                eprintln!("uacce-workload busy: a thread panicked");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Err(e) = std::fs::File::create(&log).and_then(|mut f| f.write_all(out.as_bytes())) {
        eprintln!("uacce-workload busy: writing {log}: {e}");
        return ExitCode::FAILURE;
    }
    println!(
        "{{\"workload\":\"busy\",\"pid\":{},\"tids\":{},\"calls\":{ncalls},\"page_size\":{page},\"pinned_pages\":{pinned},\"unpinned_pages\":{unpinned},\"t_start\":{t_start},\"t_end\":{}}}",
        std::process::id(),
        json_list(&tids),
        now_ns()
    );
    ExitCode::SUCCESS
}
