#!/usr/bin/env bash
# The nightly gate, runnable locally: builds release binaries, runs every
# scenario of scenarios/perf/, scenarios/tracing/ (as tracing-NAME) and
# scenarios/chaos/ (ROUNDS times each), gates
# each against ci/baselines/<scenario>.json and writes one summary.md.
#
#   ci/nightly.sh                       run and gate (exit 1 on a regression or failed SLO)
#   ci/nightly.sh --refresh-baselines   run and write ci/baselines/<scenario>.json instead
#   ci/nightly.sh --out DIR --rounds N  where to write (default target/gauntlet/nightly/<time>), runs per scenario (default 2)
#   ci/nightly.sh --only NAME           one scenario
#
# Exit: 0 every gate passed; 1 a regression or failed SLO; 2 bad usage; 3 a run failed.
# .github workflow ci/nightly.yml is a thin wrapper around this script.
set -euo pipefail
cd "$(dirname "$0")/.."

refresh=0
rounds=2
only=""
out="target/gauntlet/nightly/$(date -u +%Y%m%dT%H%M%SZ)"
while [ $# -gt 0 ]; do
  case "$1" in
    --refresh-baselines) refresh=1 ;;
    --rounds) rounds="$2"; shift ;;
    --out) out="$2"; shift ;;
    --only) only="$2"; shift ;;
    *) echo "usage: ci/nightly.sh [--refresh-baselines] [--rounds N] [--out DIR] [--only NAME]" >&2; exit 2 ;;
  esac
  shift
done

cargo build --release -p loadgen -p fabric -p actors -p tracing-server -p reflow-node
loadgen=target/release/loadgen
mkdir -p "$out"
summary="$out/summary.md"
echo "# Gauntlet nightly — $(git rev-parse --short HEAD 2>/dev/null || echo unknown) on $(hostname)" > "$summary"
echo >> "$summary"

status=0
shopt -s nullglob
for scenario in scenarios/perf/*.yaml scenarios/tracing/*.yaml scenarios/chaos/*.yaml; do
  name=$(basename "$scenario" .yaml)
  # scenarios/tracing/NAME.yaml is the tracing tier's `tracing-NAME`.
  case "$scenario" in scenarios/tracing/*) name="tracing-$name" ;; esac
  [ -n "$only" ] && [ "$name" != "$only" ] && continue
  echo "== $name"
  runs=()
  for round in $(seq 1 "$rounds"); do
    if ! "$loadgen" run "$scenario" --quiet --out "$out/runs/$name/$round" > "$out/runs-$name-$round.log" 2>&1; then
      code=$?
      # Exit 1 is a failed SLO: the run is still a measurement to gate.
      if [ "$code" -ne 1 ]; then
        echo "run $name/$round failed (exit $code); see $out/runs-$name-$round.log" | tee -a "$summary"
        status=3
        continue
      fi
    fi
    runs+=("$(readlink -f "$out/runs/$name/$round/latest")")
  done
  [ "${#runs[@]}" -eq 0 ] && continue
  baseline="ci/baselines/$name.json"
  if [ "$refresh" = 1 ]; then
    "$loadgen" baseline "${runs[@]}" --out "$baseline"
    echo "- \`$name\`: baseline refreshed from ${#runs[@]} run(s)" >> "$summary"
  elif [ -f "$baseline" ]; then
    set +e
    # The actor tier is gated with seed 001's profile (ci/profiles/actors-seed001.yaml),
    # the tracing tier with ci/profiles/tracing.yaml.
    profile=()
    case "$name" in
      actors-*) profile=(--profile ci/profiles/actors-seed001.yaml) ;;
      tracing-*) profile=(--profile ci/profiles/tracing.yaml) ;;
    esac
    "$loadgen" gate "${runs[@]}" --baseline "$baseline" "${profile[@]}" --out "$out/gate/$name" > /dev/null
    code=$?
    set -e
    cat "$out/gate/$name/summary.md" >> "$summary"
    echo >> "$summary"
    if [ "$code" -eq 1 ] && [ "$status" -eq 0 ]; then status=1; fi
    if [ "$code" -gt 1 ]; then status=3; fi
  else
    echo "- \`$name\`: no baseline at $baseline (create one with \`ci/nightly.sh --refresh-baselines --only $name\`)" >> "$summary"
  fi
done

# Profiling soak: each bundled service under load for 10 minutes while it is
# profiled back to back at 999 Hz (the pprof endpoint, pprof-endpoint's
# SIGPROF handler). It must neither crash (the run and its SLOs pass) nor
# deadlock (every profile segment is answered: `loadgen profile` lists no
# `!` error line). `--only profile-soak` runs just this.
if [ -z "$only" ] || [ "$only" = profile-soak ]; then
  for spec in perf/fabric-append.yaml:fabric perf/actors-request.yaml:actors tracing/ingest.yaml:ts; do
    scenario="scenarios/${spec%%:*}"; service="${spec##*:}"
    name="profile-soak-$service"
    echo "== $name"
    if "$loadgen" run "$scenario" --quiet --out "$out/runs/$name" \
        --set workload.phases.steady.duration=600s \
        --set "profile={ services: [$service, loadgen], frequency: 999 }" > "$out/runs-$name.log" 2>&1 \
      && "$loadgen" profile "$out/runs/$name/latest" > "$out/profiles-$name.txt" \
      && ! grep -q '^    !' "$out/profiles-$name.txt"; then
      echo "- \`$name\`: 10 minutes profiled at 999 Hz, no crash, every profile answered" >> "$summary"
    else
      echo "- \`$name\`: FAILED (see $out/runs-$name.log, $out/profiles-$name.txt)" | tee -a "$summary"
      status=3
    fi
  done
fi
echo "summary: $summary"
exit "$status"
