#!/usr/bin/env bash
# Measures the release gate's power on this machine:
#   - false-alarm rate: identical builds gated against a baseline of the same build;
#   - detection rate: the fabric slowed on purpose (FABRIC_TEST_DELAY_US, a
#     test-only knob that adds a fixed delay to every /api request) so that
#     p99 (fabric-append) or throughput (fabric-saturate) worsens by 5, 10, 20 %.
# Every candidate is one run gated against a baseline of BASE runs. The
# "measured" column is the gate's own estimate of the change for each trial.
#
#   ci/gate-power.sh [--trials N] [--base N] [--out DIR]
#   ONLY=fabric-saturate DELAYS_US="3 6 12" ci/gate-power.sh   one half, explicit delays
#
# The nominal slowdown (delay = 5/10/20 % of the baseline's p99, or of its
# service time for throughput) is only a starting point: a delay on a shared
# 2-core machine changes latency and capacity non-linearly, so the table's
# "measured" column — the gate's own estimate per trial — is what to read.
#
# Prints a table and writes DIR/power.md. Takes about (BASE + 4·TRIALS) runs
# of ~25 s per scenario.
set -euo pipefail
cd "$(dirname "$0")/.."
trials=4
base=3
out="target/gauntlet/gate-power/$(date -u +%Y%m%dT%H%M%SZ)"
while [ $# -gt 0 ]; do
  case "$1" in
    --trials) trials="$2"; shift ;;
    --base) base="$2"; shift ;;
    --out) out="$2"; shift ;;
    *) echo "usage: ci/gate-power.sh [--trials N] [--base N] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done
cargo build --release -p loadgen -p fabric
loadgen=target/release/loadgen
mkdir -p "$out"

# run SCENARIO LABEL DELAY_US [--set ...] -> prints the run directory
run() {
  local scenario=$1 label=$2 delay=$3
  shift 3
  "$loadgen" run "$scenario" --quiet --out "$out/runs/$label" \
    --set "stack.services.fabric.env.FABRIC_TEST_DELAY_US=$delay" "$@" > "$out/$label.log" 2>&1 || [ $? -eq 1 ]
  readlink -f "$out/runs/$label/latest"
}

# gate RUN BASELINE METRIC -> prints "regression" when METRIC of the first operation regressed, else its outcome
gate() {
  "$loadgen" gate "$1" --baseline "$2" --out "$1/gate" > /dev/null 2>&1 || true
  python3 - "$1/gate/verdict.json" "$3" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
c = [c for c in v["comparisons"] if c["operation"] == "append" and c["metric"] == sys.argv[2]]
any_reg = any(c["outcome"] == "regression" for c in v["comparisons"])
change = c[0].get("change") if c else None
print(c[0]["outcome"] if c else "missing", "any-regression" if any_reg else "none", "n/a" if change is None else f"{change * 100:+.1f}%")
PY
}

report="$out/power.md"
echo "| scenario | injected | metric | trials | regressions detected |" > "$report"
echo "|---|---|---|---|---|" >> "$report"

only=${ONLY:-}
for pair in "fabric-append p99" "fabric-saturate throughput"; do
  [ -n "$only" ] && [ "${pair%% *}" != "$only" ] && continue
  set -- $pair
  name=$1 metric=$2
  scenario="scenarios/perf/$name.yaml"
  base_runs=()
  for i in $(seq 1 "$base"); do base_runs+=("$(run "$scenario" "$name-base-$i" 0)"); done
  "$loadgen" baseline "${base_runs[@]}" --out "$out/$name-baseline.json" > /dev/null
  # Calibrate the delay against the statistic the gate compares (the median
  # of per-second p99 of the baseline, read from a gate of the first baseline
  # run): p99 rises by the delay. Throughput of the saturated scenario (16
  # operations in flight) falls from N/S to N/(S+d), with S the median
  # service time of the first baseline run.
  "$loadgen" gate "${base_runs[0]}" --baseline "$out/$name-baseline.json" --out "$out/$name-calibrate" > /dev/null 2>&1 || true
  read -r p99 service < <(python3 - "$out/$name-calibrate/verdict.json" "${base_runs[0]}/results.json" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
r = json.load(open(sys.argv[2]))
p99 = [c for c in v["comparisons"] if c["operation"] == "append" and c["metric"] == "p99"][0]["baseline"]
op = [o for o in r["phases"][-1]["operations"] if o["operation"] == "append"][0]
print(p99, op["service_time_us"]["p50"])
PY
)
  false_any=0 false_metric=0
  for t in $(seq 1 "$trials"); do
    read -r outcome any change < <(gate "$(run "$scenario" "$name-same-$t" 0)" "$out/$name-baseline.json" "$metric")
    [ "$any" = "any-regression" ] && false_any=$((false_any + 1))
    [ "$outcome" = "regression" ] && false_metric=$((false_metric + 1))
  done
  echo "| $name | none (same build) | any metric | $trials | $false_any false alarm(s) |" >> "$report"
  echo "| $name | none (same build) | $metric | $trials | $false_metric false alarm(s) |" >> "$report"
  # DELAYS_US="3 6 12" replaces the calibrated delays with explicit ones
  # (the "injected" column then names the delay; "measured" shows its effect).
  for pct in ${DELAYS_US:-5 10 20}; do
    if [ -n "${DELAYS_US:-}" ]; then
      delay=$pct
    elif [ "$metric" = p99 ]; then
      delay=$(python3 -c "print(int($p99 * $pct / 100))")
    else
      delay=$(python3 -c "print(int($service * $pct / (100 - $pct)))")
    fi
    hits=0
    changes=""
    for t in $(seq 1 "$trials"); do
      read -r outcome any change < <(gate "$(run "$scenario" "$name-slow$pct-$t" "$delay")" "$out/$name-baseline.json" "$metric")
      [ "$outcome" = "regression" ] && hits=$((hits + 1))
      changes="$changes $change"
    done
    label="+$pct % (delay ${delay} µs)"
    [ -n "${DELAYS_US:-}" ] && label="delay ${delay} µs"
    echo "| $name | $label | $metric | $trials | $hits (measured:$changes) |" >> "$report"
  done
done
cat "$report"
