//! `pgward check DIR`: validate a rules directory.

use std::path::Path;
use std::process::ExitCode;

pub fn run(dir: &Path) -> anyhow::Result<ExitCode> {
    match pgward::policy::check(dir) {
        Ok(warnings) => {
            for w in &warnings {
                println!("warning: {w}");
            }
            println!(
                "{}: rules are valid ({} warning(s))",
                dir.display(),
                warnings.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            for e in e.iter() {
                eprintln!("error: {e}");
            }
            Ok(ExitCode::from(1))
        }
    }
}
