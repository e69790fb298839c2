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
  [debootstrap]=debootstrap       # makes the base image's root filesystem (loadgen images build)
  [redis-server]=redis-server     # `kind: redis` in process mode (loadgen/cli/tests/process_control.rs)
  # `kind: postgres` in process mode: initdb, pg_ctl and postgres live off
  # PATH; the package also creates the `postgres` user a root harness
  # runs them as (loadgen/stack/src/process.rs)
  [/usr/lib/postgresql/15/bin/postgres]=postgresql-15
  [nginx]=nginx-light             # `kind: nginx` in process mode (loadgen/cli/tests/wiring.rs)
  [haproxy]=haproxy               # `kind: haproxy` in process mode (loadgen/cli/tests/haproxy.rs)
  [docker]=docker.io              # the docker command: images are built with docker import/build
)

missing=()
for cmd in "${!packages[@]}"; do
  # debootstrap lives in /usr/sbin, which a non-root PATH may lack.
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
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

# Container mode needs a running Docker engine (nothing is pulled: images
# are built here). Say so early rather than in the middle of the tests.
if ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
  echo "ci/setup.sh: warning: no Docker engine is reachable; the container tests (loadgen/cli/tests/containers.rs) will fail" >&2
fi
