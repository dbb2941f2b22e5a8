//! `pgward test DIR`: run the rule test cases kept in `DIR/tests/`.

use std::path::Path;
use std::process::ExitCode;

pub fn run(dir: &Path) -> anyhow::Result<ExitCode> {
    match pgward::policy::testing::run(dir) {
        Ok(report) => {
            print!("{report}");
            Ok(if report.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Err(e) => {
            for e in e.iter() {
                eprintln!("error: {e}");
            }
            Ok(ExitCode::from(1))
        }
    }
}
