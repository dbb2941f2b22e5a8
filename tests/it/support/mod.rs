//! Shared test support: a throwaway PostgreSQL, pgward in-process, raw-frame helpers.

pub mod harness;
pub mod jwks;
pub mod pg;
pub mod process;
pub mod wire;

pub use harness::{Harness, Running};

/// Waits for a condition, polling, for at most ten seconds; panics with `what` otherwise.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr, $what:expr) => {{
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if $cond {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {}",
                $what
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }};
}
