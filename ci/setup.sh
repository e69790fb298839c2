#!/usr/bin/env bash
# Installs what Gauntlet's tests need on a fresh Debian machine, idempotently.
# Today: a Rust toolchain with rustfmt and clippy (the integration tests start
# the fabric as a local process and need nothing else).
set -euo pipefail

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not installed; install Rust with rustup (https://rustup.rs)" >&2
  exit 3
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    rustup component add "$component"
  fi
done
