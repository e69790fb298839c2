#!/usr/bin/env bash
# Engine efficiency: requests per CPU-second of the load generator, Gauntlet's
# open-model engine against wrk and goose, all driving the same nginx on
# loopback with 32 connections, alternating, several rounds.
#
#   ci/bench/engine.sh [--rounds N] [--seconds S] [--requests N]
#
# --seconds: how long wrk and goose run; --requests: how many Gauntlet sends.
#
# Installs nginx-light, wrk and time from Debian when missing (apt-get,
# idempotent). nginx runs from a throwaway config in a temporary directory,
# removed on exit. CPU is the generator process's own user + system time
# (getrusage, through /usr/bin/time), not wall-clock. Generators are pinned
# to CPU 0 and nginx to CPU 1 when the machine has two or more CPUs.
#
# Gauntlet runs `loadgen run` on a scenario with nginx as an external service
# and the `http` operation, max_in_flight 32, with all `--requests` scheduled
# within one second — far above what one core can send, so the engine runs
# flat out like wrk (every request late, latency still counted from its
# intended start). A rate the engine can keep up with would measure pacing
# (waking at each arrival's time), not the cost of a request: an earlier
# version of this script scheduled requests/seconds per second, about 60k/s,
# which this engine exceeds, so it measured pacing as well.
# Its CPU includes start-up, recording and the report. wrk: `wrk -t1 -c32`.
# goose: `examples/goose_bench.rs`, 32 users on goose's own client.
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=3
seconds=10
requests=600000
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --requests) requests="$2"; shift 2 ;;
    *) echo "usage: ci/bench/engine.sh [--rounds N] [--seconds S] [--requests N]" >&2; exit 2 ;;
  esac
done

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

echo "== building loadgen and the goose benchmark (release)"
cargo build --release -q -p loadgen --bin loadgen --example goose_bench
loadgen=target/release/loadgen
goose=target/release/examples/goose_bench

tmp=$(mktemp -d)
nginx_pid=""
cleanup() {
  if [ -n "$nginx_pid" ]; then kill "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
gen_pin=()
srv_pin=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  gen_pin=(taskset -c 0)
  srv_pin=(taskset -c 1)
fi

mkdir -p "$tmp/nginx"
cat > "$tmp/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
  client_body_temp_path $tmp/nginx;
  proxy_temp_path $tmp/nginx;
  fastcgi_temp_path $tmp/nginx;
  uwsgi_temp_path $tmp/nginx;
  scgi_temp_path $tmp/nginx;
  server {
    listen 127.0.0.1:$port;
    location / { default_type text/plain; return 200 "ok\n"; }
  }
}
CONF
"${srv_pin[@]}" "$nginx_bin" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" &
nginx_pid=$!
for _ in $(seq 1 50); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.1
done
url="http://127.0.0.1:$port"
echo "== nginx at $url (pid $nginx_pid)"

rate=$requests
cat > "$tmp/bench.yaml" <<YAML
name: engine-bench
stack: { external: { nginx: "$url" } }
workload:
  max_in_flight: 32
  late_after: 1s
  phases:
    - { name: flat-out, duration: 1s, rate: ${rate}/s }
  operations:
    - { name: index, http: { service: nginx, method: GET, url: /, expect: 200 } }
YAML

# cpu_seconds FILE: user + system seconds from /usr/bin/time's output.
cpu_seconds() { awk '/^cpu / { print $2 + $3 }' "$1"; }
timed() { /usr/bin/time -f 'cpu %U %S' -o "$tmp/time" "${gen_pin[@]}" "$@"; }

results="$tmp/results.tsv"
: > "$results"
for round in $(seq 1 "$rounds"); do
  # Gauntlet
  rm -rf "$tmp/runs"
  timed "$loadgen" run "$tmp/bench.yaml" --quiet --out "$tmp/runs" > "$tmp/g.out" 2> "$tmp/g.err" || { cat "$tmp/g.err"; exit 3; }
  cpu=$(cpu_seconds "$tmp/time")
  read -r n errors engine_cpu_ms < <(python3 - "$tmp/runs/latest/results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ops = r["totals"] if "totals" in r else r["operations"]
count = sum(o["count"] for o in ops)
errors = sum(o["errors"] for o in ops)
print(count, errors, r["engine"]["cpu_ms"])
PY
)
  echo "gauntlet $round $n $cpu $errors $engine_cpu_ms" >> "$results"
  printf 'round %d  gauntlet %9d requests  %6.2f CPU-s  %8.0f req/CPU-s  (errors %d; engine loop alone %.2f CPU-s)\n' \
    "$round" "$n" "$cpu" "$(echo "$n / $cpu" | bc -l)" "$errors" "$(echo "$engine_cpu_ms / 1000" | bc -l)"

  # wrk
  timed wrk -t1 -c32 -d"${seconds}s" "$url/" > "$tmp/w.out"
  cpu=$(cpu_seconds "$tmp/time")
  n=$(awk '/requests in/ { print $1 }' "$tmp/w.out")
  echo "wrk $round $n $cpu 0 0" >> "$results"
  printf 'round %d  wrk      %9d requests  %6.2f CPU-s  %8.0f req/CPU-s\n' "$round" "$n" "$cpu" "$(echo "$n / $cpu" | bc -l)"

  # goose
  BENCH_PATH=/ timed "$goose" --host "$url" --users 32 --increase-rate 1000 --run-time "${seconds}s" \
    --quiet --no-print-metrics --no-telnet --no-websocket > "$tmp/o.out" 2> "$tmp/o.err" || { cat "$tmp/o.err"; exit 3; }
  cpu=$(cpu_seconds "$tmp/time")
  n=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["requests"])' "$tmp/o.out")
  echo "goose $round $n $cpu 0 0" >> "$results"
  printf 'round %d  goose    %9d requests  %6.2f CPU-s  %8.0f req/CPU-s\n' "$round" "$n" "$cpu" "$(echo "$n / $cpu" | bc -l)"
done

python3 - "$results" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
per = {}
for tool, _r, n, cpu, *_ in rows:
    per.setdefault(tool, []).append(int(n) / float(cpu))
med = {t: statistics.median(v) for t, v in per.items()}
print()
print("| generator | requests per CPU-second (median of %d) | min–max | vs wrk |" % len(per["wrk"]))
print("|---|---:|---:|---:|")
for t in ("gauntlet", "wrk", "goose"):
    v = per[t]
    print(f"| {t} | {med[t]:,.0f} | {min(v):,.0f}–{max(v):,.0f} | {med[t] / med['wrk']:.2f}× |")
PY
