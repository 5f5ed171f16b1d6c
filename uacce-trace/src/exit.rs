//! Exit statuses of the `uacce-trace` binary, in one place (ripgrep's
//! convention: 0 ok, 1 failure, 2 bad usage or input; `compare` adds 3,
//! inconclusive; a command run by `record` passes its own status through,
//! shell style). Imports nothing.

/// Everything went as asked.
pub const OK: u8 = 0;
/// Tracing could not start, or a run failed.
pub const FAILURE: u8 = 1;
/// Unusable input or output files, or a bad listen address.
pub const BAD_INPUT: u8 = 2;
/// `compare`: the goal is not met only because some verdicts are
/// inconclusive (the confidence intervals overlap or rest on too few
/// samples); any definite reason makes it [`FAILURE`].
pub const INCONCLUSIVE: u8 = 3;
/// The command `record` was to run could not be started (the shell's 127).
pub const CANNOT_RUN: u8 = 127;

/// The status of a process ended by signal `sig`: 128 + the signal.
pub fn signalled(sig: i32) -> u8 {
    u8::try_from(128 + sig).unwrap_or(FAILURE)
}

/// Exit status of a finished child, shell style (128 + signal when killed).
pub fn of_status(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c & 0xff).unwrap_or(FAILURE),
        (None, Some(sig)) => u8::try_from((128 + sig) & 0xff).unwrap_or(FAILURE),
        _ => FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(signalled(libc::SIGINT), 130);
        assert_eq!(signalled(libc::SIGTERM), 143);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(of_status(std::process::ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(of_status(std::process::ExitStatus::from_raw(9)), 137);
    }
}
