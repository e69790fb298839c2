#!/usr/bin/env bash
# Gauntlet's test command (the README's): sets up what the tests need and runs
# every test of the workspace, then the smoke scenario as a user runs it.
#
#   ci/test.sh            everything
#   ci/test.sh --no-smoke the test suites only
#
# The tests need only the Rust toolchain today; the Debian packages later
# issues need (PostgreSQL, Redis, Chromium) are installed by ci/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=1
for arg in "$@"; do
  case "$arg" in
    --no-smoke) smoke=0 ;;
    *) echo "usage: ci/test.sh [--no-smoke]" >&2; exit 2 ;;
  esac
done

ci/setup.sh

echo "== cargo test --workspace"
# --workspace builds every binary (fabric-node among them) before the
# integration tests that start them.
cargo test --workspace --all-targets

if [ "$smoke" = 1 ]; then
  echo "== smoke: cargo run --release --bin loadgen"
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  cargo run --release --bin loadgen -- run --quiet --out "$out"
  test -s "$out/latest/results.json"
  test -s "$out/latest/latency.hlog"
  test -s "$out/latest/metrics.jsonl"
  test -s "$out/latest/report.html"
fi
echo "== all tests passed"
