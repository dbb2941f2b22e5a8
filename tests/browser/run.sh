#!/usr/bin/env bash
# The console's end-to-end browser test: headless Chromium driven through chromedriver (Debian's
# chromium and chromium-driver packages) by the Rust test in tests/browser/console.rs, which
# starts its own throwaway PostgreSQL and pgward through the integration-test harness.
#
#   tests/browser/run.sh                 run it; screenshots under the target directory
#   tests/browser/run.sh --screenshots   run it and save the screenshots to docs/screenshots/
#
# Without a browser it is skipped with a note, except under CI=true, where that is a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "${1:-}" = "--screenshots" ]; then
  export PGWARD_SCREENSHOTS="$PWD/docs/screenshots"
fi

driver="${PGWARD_CHROMEDRIVER:-$(command -v chromedriver || true)}"
if [ -z "$driver" ] || ! { [ -n "${PGWARD_CHROMIUM:-}" ] || [ -x /usr/lib/chromium/chromium ] || command -v chromium >/dev/null; }; then
  if [ "${CI:-}" = "true" ]; then
    echo "error: the browser test needs chromium and chromedriver (apt-get install chromium chromium-driver)" >&2
    exit 1
  fi
  echo "note: chromium or chromedriver not installed; browser test skipped (apt-get install chromium chromium-driver)"
  exit 0
fi

cargo test --locked --test it console::browser -- --ignored
