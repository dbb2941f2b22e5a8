#!/usr/bin/env bash
# All the tests: formatting, lints, unit and integration tests (the latter start their own
# throwaway PostgreSQL), and the console's browser test in headless Chromium (skipped with a
# note when no browser is installed, a failure under CI=true). This is the README's test command
# and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
# fmt and clippy come with the rustup toolchain; a toolchain without them still runs the tests.
if cargo fmt --version >/dev/null 2>&1; then cargo fmt --check; else echo "note: rustfmt not installed; format not checked"; fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --all-targets --locked -- -D warnings
else
  echo "note: clippy not installed; lints not checked"
fi
cargo test --locked
tests/browser/run.sh
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --document-private-items --locked --quiet
