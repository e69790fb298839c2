#!/usr/bin/env bash
# Gauntlet's test command (the README's): sets up what the tests need and runs
# every test of the workspace, then the smoke scenario as a user runs it.
#
#   ci/test.sh            everything
#   ci/test.sh --no-smoke the test suites only
#
# The Debian packages the tests need (debootstrap, Redis, Chromium, …) are
# installed by ci/setup.sh; the container tests need a running Docker engine.
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

echo "== container images: release fabric-node, actor-node, tracing-server and reflow-node, then loadgen images build (once per CI run; a no-op when up to date)"
# The container tests (loadgen/cli/tests/containers.rs) use these images and
# these release binaries (every bundled kind gets an image); building here
# keeps the build out of the tests.
cargo build --locked --release -p fabric --bin fabric-node -p actors --bin actor-node -p tracing-server --bin tracing-server -p reflow-node --bin reflow-node
GAUNTLET_BIN_DIR=target/release cargo run --locked --quiet --bin loadgen -- images build

echo "== cargo test --workspace"
# --workspace builds every binary (fabric-node, actor-node) before the
# integration tests that start them.
cargo test --locked --workspace --all-targets

if [ "$smoke" = 1 ]; then
  echo "== smoke: cargo run --release --bin loadgen"
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  cargo run --locked --release --bin loadgen -- run --quiet --out "$out"
  test -s "$out/latest/results.json"
  test -s "$out/latest/latency.hlog"
  test -s "$out/latest/metrics.jsonl"
  test -s "$out/latest/report.html"
fi
echo "== all tests passed"
