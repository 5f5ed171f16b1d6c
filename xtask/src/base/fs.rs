//! Small file and folder helpers with errors that name the path.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

/// Entries of `dir` with their names; empty when `dir` does not exist.
pub fn list_dir(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).with_context(|| format!("reading {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        if let Some(name) = entry.file_name().to_str() {
            out.push((entry.path(), name.to_owned()));
        }
    }
    Ok(out)
}

/// Removes a file or a whole folder; nothing there is fine.
pub fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))
        }
        Ok(_) => fs::remove_file(path).with_context(|| format!("removing {}", path.display())),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("inspecting {}", path.display())),
    }
}

/// Renames `from` to `to`, or copies it across file systems.
pub fn move_file(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to)
        .or_else(|_| fs::copy(from, to).map(drop))
        .with_context(|| format!("moving {} to {}", from.display(), to.display()))
}

/// Writes `text` unless the file already holds it (keeps its mtime).
pub fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The file's text without surrounding white space.
pub fn read_trimmed(path: &Path) -> Result<String> {
    Ok(fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_owned())
}

/// Time since `start` for progress lines: `12.3s` or `4m05s`.
pub fn elapsed(start: Instant) -> String {
    let secs = start.elapsed().as_secs();
    if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{:.1}s", start.elapsed().as_secs_f64())
    }
}

/// An exclusive `flock` on a file, released when dropped (the file closes).
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the lock on `path`, saying that it waits for `holder` (the
    /// command that holds it) when it has to.
    pub fn acquire(path: &Path, holder: &str) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let fd = file.as_raw_fd();
        // SAFETY: fd is an open descriptor owned by `file` for this call.
        if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Self { _file: file });
        }
        eprintln!("waiting for another {holder} (lock {})", path.display());
        // SAFETY: as above.
        if unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("locking {}", path.display()));
        }
        Ok(Self { _file: file })
    }
}

/// `bytes` in MiB, for messages.
pub fn mib(bytes: u64) -> f64 {
    // Display only: precision loss in the conversion does not matter.
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    b / (1024.0 * 1024.0)
}
