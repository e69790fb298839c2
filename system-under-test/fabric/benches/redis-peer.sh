#!/usr/bin/env bash
# The peer a user would pick for durable appends: Redis Streams (XADD) with
# the append-only file, run privately on loopback for the fabric benchmark.
#
#   redis-peer.sh install                 apt-get install redis-server (if missing)
#   redis-peer.sh start PORT FSYNC DIR    start redis-server on 127.0.0.1:PORT, data in DIR,
#                                         appendonly yes, appendfsync FSYNC (always|everysec)
#   redis-peer.sh stop DIR                stop the server started with DIR
#   redis-peer.sh bench [ARGS...]         install, then run the fabric benchmark (which
#                                         starts and stops the peer itself through this script)
#
# The benchmark (benches/fabric.rs) calls `start` and `stop`; without
# redis-server on PATH it prints a note and skips the Redis comparison.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

cmd=${1:-}
case "$cmd" in
  install)
    if ! command -v redis-server >/dev/null 2>&1; then
      if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
      else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
      fi
    fi
    redis-server --version
    ;;
  start)
    port=${2:?port}; fsync=${3:?always|everysec}; dir=${4:?dir}
    case "$fsync" in always|everysec) ;; *) echo "appendfsync must be always or everysec" >&2; exit 2 ;; esac
    mkdir -p "$dir"
    # Loopback only, no RDB snapshots, AOF on with the chosen fsync; the
    # Debian service (if any) is not touched.
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" \
      --appendonly yes --appendfsync "$fsync" --save '' \
      --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
      --protected-mode yes
    for _ in $(seq 1 100); do
      if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then exit 0; fi
      sleep 0.05
    done
    echo "redis-server did not answer on port $port; log:" >&2
    cat "$dir/redis.log" >&2 || true
    exit 1
    ;;
  stop)
    dir=${2:?dir}
    if [ -f "$dir/redis.pid" ]; then
      pid=$(cat "$dir/redis.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || exit 0
        sleep 0.05
      done
      echo "redis-server $pid did not stop" >&2
      exit 1
    fi
    ;;
  bench)
    shift
    "$0" install
    cd "$here/../../.."
    cargo bench -p fabric --bench fabric -- "$@"
    ;;
  *)
    sed -n '2,13p' "$0"
    exit 2
    ;;
esac
