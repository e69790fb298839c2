#!/usr/bin/env bash
# Coordinated omission, side by side: Gauntlet's open model and goose with
# `--co-mitigation average`, each at 2,000 requests/s for 10 s against the
# fabric, the fabric frozen with SIGSTOP for exactly 1 s, 4 s into the load.
#
#   ci/bench/co.sh
#
# Gauntlet: `loadgen run` with 32 in-flight slots appending 64 B events
# (the scenario of loadgen/cli/tests/co.rs); the fabric-node it boots is
# found by its command line (it names the run directory). goose:
# `examples/goose_bench.rs`, 32 users throttled to 2,000 requests/s, GET of
# a stream's latest offset on a fabric-node this script starts. The analytic
# answer for 10 % of the requests delayed 0–1 s: p99 ≈ 900 ms, p99.9 ≈ 990 ms,
# and 20,000 requests sent.
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build --release -q -p loadgen --bin loadgen --example goose_bench -p fabric --bin fabric-node
bin=$PWD/target/release
tmp=$(mktemp -d)
fabric_pid=""
cleanup() {
  if [ -n "$fabric_pid" ]; then kill -CONT "$fabric_pid" 2>/dev/null || true; kill "$fabric_pid" 2>/dev/null || true; wait "$fabric_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# freeze PID: SIGSTOP for exactly 1 s, 4 s from now.
freeze() { sleep 4; kill -STOP "$1"; sleep 1; kill -CONT "$1"; }

echo "== Gauntlet (open model)"
cat > "$tmp/co.yaml" <<'YAML'
name: co-freeze
seed: 5
stack:
  services:
    fabric: { kind: fabric, env: { STORAGE_FSYNC_POLICY: interval, LOGGING_LEVEL: warn } }
workload:
  max_in_flight: 32
  phases:
    - { name: steady, duration: 10s, rate: 2000/s }
  operations:
    - { name: append, fabric.stream.append: { stream: test/co/events, payload: 64B } }
YAML
GAUNTLET_BIN_DIR=$bin "$bin/loadgen" run "$tmp/co.yaml" --quiet --out "$tmp/runs" > "$tmp/g.out" 2> "$tmp/g.err" &
loadgen_pid=$!
pid=""
for _ in $(seq 1 300); do
  pid=$(pgrep -f "fabric-node.*$tmp/runs" || true)
  if [ -n "$pid" ] && grep -q "ready at" "$tmp/g.err"; then break; fi
  sleep 0.1
done
[ -n "$pid" ] || { echo "the fabric never started" >&2; cat "$tmp/g.err" >&2; exit 3; }
freeze "$pid"
wait "$loadgen_pid"
python3 - "$tmp/runs/latest/results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t, e = r["totals"][0], r["engine"]
print(f"gauntlet: sent {e['started']} of {e['scheduled']} scheduled, errors {t['errors']}, "
      f"latency p99 {t['latency_us']['p99']/1000:.0f} ms, p99.9 {t['latency_us']['p999']/1000:.0f} ms, "
      f"service p99 {t['service_time_us']['p99']/1000:.1f} ms")
PY

echo "== goose 0.19 (--co-mitigation average)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
STORAGE_FSYNC_POLICY=interval LOGGING_LEVEL=warn "$bin/fabric-node" --http-addr "127.0.0.1:$port" --data-dir "$tmp/fabric" > "$tmp/fabric.log" 2>&1 &
fabric_pid=$!
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/ready" > /dev/null 2>&1 && break
  sleep 0.1
done
curl -fs -X PUT "http://127.0.0.1:$port/api/v1/streams/test/co/events" > /dev/null
( freeze "$fabric_pid" ) &
freezer=$!
BENCH_PATH=/api/v1/streams/test/co/events/offsets/latest "$bin/examples/goose_bench" \
  --host "http://127.0.0.1:$port" --users 32 --increase-rate 1000 --run-time 10s \
  --throttle-requests 2000 --co-mitigation average \
  --quiet --no-print-metrics --no-telnet --no-websocket > "$tmp/goose.out" 2> "$tmp/goose.err" || { cat "$tmp/goose.err"; exit 3; }
wait "$freezer"
python3 - "$tmp/goose.out" <<'PY'
import json, sys
g = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(f"goose: sent {g['requests']} of 20000, failures {g['failures']}, raw p99 {g['p99_us']/1000:.0f} ms, "
      f"p99.9 {g['p999_us']/1000:.0f} ms; with CO mitigation ({g['co_count']} samples) "
      f"p99 {g['co_p99_us']/1000:.0f} ms, p99.9 {g['co_p999_us']/1000:.0f} ms")
PY
