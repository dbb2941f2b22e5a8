//! The `pgward` command: argument parsing and exit codes; the work is in the library.

#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pgward: {e:#}");
            ExitCode::from(2)
        }
    }
}
