//! Running programs: capture their output or pass it on to our stderr, with
//! errors that name the command line.

use std::fs::{self, File};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::base::fs::elapsed;

/// How often [`run_logged`] prints that its command is still running.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// The command line of `cmd`, for messages.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` and returns its stdout; on failure the error carries the end of
/// its output.
pub fn capture(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", describe(cmd)))?;
    if !out.status.success() {
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        bail!("`{}` failed ({}):\n{tail}", describe(cmd), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` with its stdout and stderr both going to our stderr.
pub fn run_to_stderr(cmd: &mut Command) -> Result<()> {
    let stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stderr")?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(stderr))
        .status()
        .with_context(|| format!("running {}", describe(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(cmd));
    }
    Ok(())
}

/// Starts `cmd` with no input and its stdout and stderr both written to
/// the new file `log`.
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> Result<Child> {
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out
        .try_clone()
        .with_context(|| format!("opening {} twice", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {}", cmd.get_program().to_string_lossy()))
}

/// Runs `cmd` with all its output in `log`, printing every
/// [`PROGRESS_EVERY`] (as `LABEL: …`) how long it has run, how many lines it wrote and its
/// last line; on failure the error holds the log's last lines.
pub fn run_logged(cmd: &mut Command, log: &Path, label: &str) -> Result<()> {
    let start = Instant::now();
    let mut child = spawn_logged(cmd, log)?;
    let mut next_report = PROGRESS_EVERY;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for the command")? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(250));
        if start.elapsed() >= next_report {
            next_report += PROGRESS_EVERY;
            let text = fs::read_to_string(log).unwrap_or_default();
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim();
            eprintln!(
                "{label}: {} elapsed, {} lines; {last}",
                elapsed(start),
                text.lines().count()
            );
        }
    };
    if !status.success() {
        let text = fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        bail!(
            "failed ({status}) after {}; full output in {}; its end:\n{}",
            elapsed(start),
            log.display(),
            lines[lines.len().saturating_sub(25)..].join("\n")
        );
    }
    eprintln!("{label} ok ({})", elapsed(start));
    Ok(())
}

/// `patch -p1 --force --silent ARGS < text` in `tree` (`--force`: a
/// patch that looks reversed is not taken as reversed, as `--batch` would): Ok(()) when it
/// succeeded, Err(its output) when it did not; Err(_) outside when it
/// could not run.
pub fn run_patch(tree: &Path, text: &str, args: &[&str]) -> Result<Result<(), String>> {
    use std::io::Write;
    let mut child = Command::new("patch")
        .args(["-p1", "--force", "--silent"])
        .args(args)
        .current_dir(tree)
        .env("LC_ALL", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting patch (Debian package patch)")?;
    child
        .stdin
        .take()
        .context("patch's stdin")?
        .write_all(text.as_bytes())
        .context("writing to patch")?;
    let out = child.wait_with_output().context("waiting for patch")?;
    if out.status.success() {
        Ok(Ok(()))
    } else {
        Ok(Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
