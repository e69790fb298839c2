#!/usr/bin/env bash
# Installs what Gauntlet's tests need on a fresh Debian machine, idempotently:
# a Rust toolchain with rustfmt and clippy, and the Debian packages below
# (installed only when a command they provide is missing).
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

# command the tests run -> Debian package that provides it
declare -A packages=(
  [xmllint]=libxml2-utils   # validates the gate's junit.xml against ci/schemas/junit.xsd
  [chromium]="chromium fonts-liberation"  # loads the HTML report in reports/tests/browser.rs
)

missing=()
for cmd in "${!packages[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    read -ra pkgs <<<"${packages[$cmd]}"
    missing+=("${pkgs[@]}")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "ci/setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null \
    || { $sudo apt-get update >/dev/null && $sudo apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
fi
