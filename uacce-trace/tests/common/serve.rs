//! A `serve` child for the HTTP tests (`serve --replay`) and the live
//! request test (`serve --op`): started on a free local port, its address read from the "serving" line, its remaining standard
//! error lines forwarded on `err`, SIGTERM'ed and reaped on drop (unless
//! the test reaped it).

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
};

/// A running `serve --replay`; its standard error lines arrive on `err`.
pub struct Serve {
    pub child: Child,
    pub addr: String,
    pub err: mpsc::Receiver<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        // Not when the test reaped it already (its pid may be reused).
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        // SAFETY: SIGTERM to our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// `uacce-trace serve --listen 127.0.0.1:0 --replay RECORDING EXTRA…`.
pub fn start(recording: &Path, extra: &[&str]) -> Serve {
    let mut args = vec![std::ffi::OsStr::new("--replay"), recording.as_os_str()];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    start_with(&args)
}

/// `uacce-trace serve --listen 127.0.0.1:0 ARGS…` (live without
/// `--replay`: needs root); panics when it ends before serving.
pub fn start_with(args: &[&std::ffi::OsStr]) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_uacce-trace"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = loop {
        let line = lines.next().expect("serve exited").expect("stderr");
        if let Some(rest) = line.strip_prefix("uacce-trace: serving http://") {
            break rest.split('/').next().unwrap_or_default().to_string();
        }
    };
    let (tx, err) = mpsc::channel();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    Serve { child, addr, err }
}
