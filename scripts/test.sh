#!/usr/bin/env bash
# All the tests: formatting, lints, unit and integration tests (the latter start their own
# throwaway PostgreSQL). This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --document-private-items --locked --quiet
