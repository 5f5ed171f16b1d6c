//! Files that appear whole or not at all: written to a temporary file in
//! the same directory and renamed over the target when committed. A run that
//! dies leaves at most the hidden temporary file, never a truncated target.
//! A target that exists and is not a regular file (`/dev/stdout`, a FIFO, a
//! device) is written directly: renaming over it would replace the node.
//! No aya, tokio, ratatui, no clock.

use std::{
    fs::{self, File},
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

/// A file being written; [`AtomicFile::commit`] makes it appear at its path.
/// Dropping it without committing removes the temporary file.
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    /// `None` when writing straight to a non-regular target.
    temp: Option<PathBuf>,
    file: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Create the temporary file `.<name>.<pid>.tmp` next to `target`.
    pub fn create(target: &Path) -> io::Result<AtomicFile> {
        if let Ok(meta) = fs::metadata(target) {
            if !meta.is_file() {
                let file = fs::OpenOptions::new().write(true).open(target)?;
                return Ok(AtomicFile {
                    target: target.to_path_buf(),
                    temp: None,
                    file: Some(BufWriter::new(file)),
                });
            }
        }
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{}.tmp", std::process::id()));
        let temp = dir.join(temp_name);
        let file = File::create(&temp)?;
        Ok(AtomicFile {
            target: target.to_path_buf(),
            temp: Some(temp),
            file: Some(BufWriter::new(file)),
        })
    }

    /// The path the file will have once committed.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flush, sync and rename over the target.
    pub fn commit(mut self) -> io::Result<()> {
        if let Some(w) = self.file.take() {
            let file = w.into_inner().map_err(|e| e.into_error())?;
            if let Some(temp) = &self.temp {
                file.sync_all()?;
                drop(file);
                fs::rename(temp, &self.target)?;
            }
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("file already committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let (Some(_), Some(temp)) = (self.file.take(), &self.temp) {
            let _ = fs::remove_file(temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileTypeExt;

    use super::*;

    #[test]
    fn appears_only_on_commit() -> io::Result<()> {
        let dir = std::env::temp_dir().join(format!("uacce-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let target = dir.join("out.txt");
        let mut f = AtomicFile::create(&target)?;
        f.write_all(b"hello")?;
        f.flush()?;
        assert!(!target.exists());
        f.commit()?;
        assert_eq!(fs::read(&target)?, b"hello");
        let mut g = AtomicFile::create(&target)?;
        g.write_all(b"partial")?;
        drop(g);
        assert_eq!(fs::read(&target)?, b"hello");
        assert_eq!(fs::read_dir(&dir)?.count(), 1, "temporary file left behind");
        fs::remove_dir_all(&dir)
    }

    #[test]
    fn devices_are_written_in_place() -> io::Result<()> {
        let mut f = AtomicFile::create(Path::new("/dev/null"))?;
        f.write_all(b"x")?;
        f.commit()?;
        assert!(fs::metadata("/dev/null")?.file_type().is_char_device());
        let mut full = AtomicFile::create(Path::new("/dev/full"))?;
        let res = full.write_all(&[0u8; 1 << 16]).and_then(|()| full.flush());
        assert_eq!(res.map_err(|e| e.raw_os_error()), Err(Some(libc::ENOSPC)));
        Ok(())
    }
}
