//! `uacce-workload`: a small guest program for the VM tests
//! (`cargo xtask vm-test`) that pins a known number of user pages, so the
//! tracer's counts can be compared with the workload's own expectation and
//! with the kernel's `nr_foll_pin_acquired` / `nr_foll_pin_released`.
//!
//! Only `std` and `libc`, raw syscalls (no io_uring crate), so it runs on any
//! kernel with io_uring and is easy to copy into an initramfs.
//!
//! ```text
//! uacce-workload iouring [--size-kib 1024[,64,4]] [--count 4] [--one-ring]
//! uacce-workload odirect|pvm|udmabuf [--size-kib 64] [--count 4] [--dev /dev/ram0]
//! uacce-workload busy --log FILE [--threads 2] [--size-kib 64] [--seconds 60] [--stop-file F] [--nice N] [--pause-us U]
//! uacce-workload now
//! ```
//!
//! The other pin paths (`odirect`, `pvm`, `udmabuf`) and the `busy` loop
//! are in `pinpaths` below; `now` prints CLOCK_MONOTONIC in ns (the clock
//! of the tool's `ts_ns`), for guest scripts that time their steps.
//!
//! Each of `count` rounds creates a ring (`io_uring_setup`), maps one
//! anonymous private buffer per size, writes every page of it (so the pages
//! are real, not the shared zero page), registers all of them in one
//! `IORING_REGISTER_BUFFERS` call (one iovec per size: io_uring pins each
//! with `FOLL_WRITE | FOLL_LONGTERM`), unregisters them again
//! (`IORING_UNREGISTER_BUFFERS`, which unpins), closes the ring and unmaps
//! the buffers. With `--one-ring` the ring and the buffers are set up once
//! and each round only registers and unregisters them (a pin loop whose
//! rounds are mostly the pin and unpin calls: `cargo xtask bench hooks`).
//! On success it prints exactly one JSON line on stdout:
//!
//! ```text
//! {"workload":"iouring","pid":123,"rounds":4,"sizes_kib":[1024],"page_size":4096,
//!  "pages_per_round":[256,256,256,256],"expected_pinned_pages":1024,"expected_unpinned_pages":1024}
//! ```
//!
//! (one line; wrapped here). On any failed syscall it prints the call and the
//! errno on stderr and exits with status 1.
//!
//! io_uring buffer registration pins with `FOLL_PIN | FOLL_LONGTERM` on
//! every kernel since 5.x.

use std::ffi::c_void;
use std::fmt::Write as _;
use std::process::ExitCode;

#[path = "../workload/pinpaths.rs"]
mod pinpaths;

/// `IORING_REGISTER_BUFFERS` opcode of `io_uring_register(2)`.
pub(crate) const IORING_REGISTER_BUFFERS: libc::c_uint = 0;
/// `IORING_UNREGISTER_BUFFERS` opcode of `io_uring_register(2)`.
pub(crate) const IORING_UNREGISTER_BUFFERS: libc::c_uint = 1;
/// Entries of the submission queue; nothing is ever submitted.
pub(crate) const RING_ENTRIES: u32 = 8;
/// Size of `struct io_uring_params` (stable uapi layout: 120 bytes).
const IO_URING_PARAMS_WORDS: usize = 15;

/// A failed system call: its name and errno.
pub(crate) struct SysError {
    pub(crate) call: &'static str,
    pub(crate) errno: i32,
}

impl SysError {
    /// The current `errno` for `call`.
    pub(crate) fn last(call: &'static str) -> Self {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        Self { call, errno }
    }
}

impl std::fmt::Display for SysError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} failed: errno {} ({})",
            self.call,
            self.errno,
            std::io::Error::from_raw_os_error(self.errno)
        )
    }
}

/// An anonymous private mapping, unmapped on drop.
pub(crate) struct Mapping {
    pub(crate) addr: *mut c_void,
    pub(crate) len: usize,
}

impl Mapping {
    /// Maps `len` bytes (a multiple of the page size) and writes every page.
    pub(crate) fn new_touched(len: usize, page_size: usize) -> Result<Self, SysError> {
        // SAFETY: an anonymous mapping with no address hint; the result is
        // checked against MAP_FAILED before use.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(SysError::last("mmap"));
        }
        let map = Self { addr, len };
        let base = addr.cast::<u8>();
        for (i, off) in (0..len).step_by(page_size).enumerate() {
            // SAFETY: `off < len`, inside the writable mapping just created.
            unsafe { base.add(off).write_volatile((i as u8).wrapping_add(1)) };
        }
        Ok(map)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `new_touched`.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

/// An io_uring instance, closed on drop.
pub(crate) struct Ring {
    fd: libc::c_int,
}

impl Ring {
    /// `io_uring_setup(entries, &params)`; the rings are never mapped.
    pub(crate) fn setup(entries: u32) -> Result<Self, SysError> {
        let mut params = [0u64; IO_URING_PARAMS_WORDS];
        // SAFETY: `params` is a zeroed, writable buffer of the size of
        // `struct io_uring_params`, which the kernel fills in.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_io_uring_setup,
                libc::c_ulong::from(entries),
                params.as_mut_ptr(),
            )
        };
        if ret < 0 {
            return Err(SysError::last("io_uring_setup"));
        }
        let fd = libc::c_int::try_from(ret).map_err(|_| SysError {
            call: "io_uring_setup",
            errno: libc::EBADF,
        })?;
        Ok(Self { fd })
    }

    /// `io_uring_register(fd, opcode, arg, nr_args)`.
    pub(crate) fn register(
        &self,
        call: &'static str,
        opcode: libc::c_uint,
        arg: *const c_void,
        nr_args: libc::c_uint,
    ) -> Result<(), SysError> {
        // SAFETY: `arg` is either null or points at `nr_args` iovecs that
        // stay alive for the duration of the call.
        let ret =
            unsafe { libc::syscall(libc::SYS_io_uring_register, self.fd, opcode, arg, nr_args) };
        if ret < 0 {
            return Err(SysError::last(call));
        }
        Ok(())
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: closes the ring's own descriptor once.
        unsafe { libc::close(self.fd) };
    }
}

/// Parsed `iouring` options.
struct IouringOpts {
    sizes_kib: Vec<u64>,
    count: u32,
    /// One ring and one set of buffers for all rounds.
    one_ring: bool,
}

/// Prints the usage on stderr and returns the exit status for bad usage.
pub(crate) fn usage(msg: &str) -> ExitCode {
    eprintln!("uacce-workload: {msg}");
    eprintln!("usage: uacce-workload iouring [--size-kib KIB[,KIB...]] [--count N] [--one-ring]");
    eprintln!(
        "       uacce-workload odirect|pvm|udmabuf [--size-kib KIB] [--count N] [--dev PATH]"
    );
    eprintln!("       uacce-workload busy --log FILE [--threads N] [--size-kib KIB] [--seconds S] [--stop-file F] [--nice N] [--pause-us U]");
    eprintln!("       uacce-workload now");
    ExitCode::from(2)
}

/// Parses the arguments after `iouring`.
fn parse_iouring(args: &[String]) -> Result<IouringOpts, String> {
    let mut opts = IouringOpts {
        sizes_kib: vec![1024],
        count: 4,
        one_ring: false,
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
        match name {
            "--one-ring" if inline.is_none() => opts.one_ring = true,
            "--size-kib" => {
                let v = value()?;
                opts.sizes_kib = v
                    .split(',')
                    .map(|s| match s.trim().parse::<u64>() {
                        Ok(n) if n > 0 => Ok(n),
                        _ => Err(format!("bad size {s:?} in --size-kib (KiB, > 0)")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--count" => {
                let v = value()?;
                opts.count = v
                    .parse()
                    .map_err(|_| format!("bad --count {v:?} (a number)"))?;
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(opts)
}

/// Runs the io_uring rounds; returns the pages pinned per round.
fn run_iouring(opts: &IouringOpts, page_size: usize) -> Result<Vec<u64>, SysError> {
    let lens: Vec<usize> = opts
        .sizes_kib
        .iter()
        .map(|&kib| {
            let bytes = usize::try_from(kib.saturating_mul(1024)).unwrap_or(usize::MAX);
            bytes.div_ceil(page_size).saturating_mul(page_size)
        })
        .collect();
    let pages: u64 = lens.iter().map(|&l| (l / page_size) as u64).sum();
    let mut per_round = Vec::new();
    // With --one-ring: the buffers and the ring of the first round, kept.
    let mut kept: Option<(Vec<Mapping>, Ring)> = None;
    for _ in 0..opts.count {
        let (maps, ring) = match kept.take() {
            Some(held) => held,
            None => {
                let maps = lens
                    .iter()
                    .map(|&len| Mapping::new_touched(len, page_size))
                    .collect::<Result<Vec<_>, _>>()?;
                (maps, Ring::setup(RING_ENTRIES)?)
            }
        };
        let iovecs: Vec<libc::iovec> = maps
            .iter()
            .map(|m| libc::iovec {
                iov_base: m.addr,
                iov_len: m.len,
            })
            .collect();
        let nr = libc::c_uint::try_from(iovecs.len()).map_err(|_| SysError {
            call: "io_uring_register(IORING_REGISTER_BUFFERS)",
            errno: libc::EINVAL,
        })?;
        ring.register(
            "io_uring_register(IORING_REGISTER_BUFFERS)",
            IORING_REGISTER_BUFFERS,
            iovecs.as_ptr().cast(),
            nr,
        )?;
        ring.register(
            "io_uring_register(IORING_UNREGISTER_BUFFERS)",
            IORING_UNREGISTER_BUFFERS,
            std::ptr::null(),
            0,
        )?;
        if opts.one_ring {
            kept = Some((maps, ring));
        } else {
            drop(ring);
            drop(maps);
        }
        per_round.push(pages);
    }
    Ok(per_round)
}

/// Formats a list of numbers as a JSON array.
pub(crate) fn json_list(values: &[u64]) -> String {
    let mut out = String::from("[");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{v}");
    }
    out.push(']');
    out
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, rest)) = args.split_first() else {
        return usage("missing workload (iouring)");
    };
    if mode != "iouring" {
        return pinpaths::main(mode, rest);
    }
    let opts = match parse_iouring(rest) {
        Ok(opts) => opts,
        Err(msg) => return usage(&msg),
    };
    // SAFETY: sysconf has no preconditions.
    let page_size = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => usize::try_from(n).unwrap_or(4096),
        _ => {
            eprintln!(
                "uacce-workload: {}",
                SysError::last("sysconf(_SC_PAGESIZE)")
            );
            return ExitCode::FAILURE;
        }
    };
    match run_iouring(&opts, page_size) {
        Ok(per_round) => {
            let total: u64 = per_round.iter().sum();
            println!(
                "{{\"workload\":\"iouring\",\"pid\":{},\"rounds\":{},\"sizes_kib\":{},\"page_size\":{},\"pages_per_round\":{},\"expected_pinned_pages\":{},\"expected_unpinned_pages\":{}}}",
                std::process::id(),
                per_round.len(),
                json_list(&opts.sizes_kib),
                page_size,
                json_list(&per_round),
                total,
                total
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("uacce-workload: {err}");
            ExitCode::FAILURE
        }
    }
}
