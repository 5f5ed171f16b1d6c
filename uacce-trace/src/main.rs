//! The `uacce-trace` binary: parse arguments, run, exit with the code the
//! library returns (0 ok, 1 failure, 2 bad usage).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    uacce_trace::logger::init();
    let cli = uacce_trace::cli::Cli::parse();
    uacce_trace::logger::set_verbosity(cli.verbose);
    ExitCode::from(uacce_trace::cli::run(cli))
}
