#!/usr/bin/env bash
# Issue 5's benchmarks, from a fresh clone on a fresh Debian 12 machine, as root:
#   sudo scripts/bench.sh              every target, PASS/FAIL each (about 10 minutes)
#   sudo scripts/bench.sh --profile    the same, then where one hook run spends its time
#                                      (perf sampling over 300 runs, callgrind of one run)
# Builds the release binary statically (see BENCHMARKS.md), runs the Criterion benchmark
# (benches/parse_evaluate.rs) and the whole-process harness (benches/targets.rs), and prints
# every target with its measured value. The exit status is 0 whatever the verdicts: benchmarks
# are not part of the test suite's pass/fail. Knobs: PSS_BENCH_PAIRS (hook vs /bin/true pairs,
# default 1000), PSS_BENCH_RUNC_ROUNDS (default 150), PSS_BENCH_SNAPSHOT_ROUNDS (hook with and
# without a 2,000-namespace snapshot, default 500).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=0
case "${1:-}" in
  --profile) profile=1 ;;
  "") ;;
  *) echo "usage: $0 [--profile]" >&2; exit 2 ;;
esac

if [ "$(id -u)" != 0 ]; then
  echo "the benchmarks run runc and private namespaces and need root: sudo $0" >&2
  exit 1
fi

# The test suite's packages plus the profilers; it also insists on cargo.
scripts/install-deps.sh hyperfine linux-perf valgrind file time

tdir=${CARGO_TARGET_DIR:-target}

echo "== machine"
echo "nproc: $(nproc)"
echo "cpu:   $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "kernel: $(uname -r)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

# The binary as deploy/build-image.sh ships it: static glibc. crt-static needs the explicit
# --target: without it the flag also reaches the proc-macro crates, which cannot be built so.
echo "== build: static release binary"
target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$target" --bin pss-guard
mkdir -p "$tdir/bench"
cp "$tdir/$target/release/pss-guard" "$tdir/bench/pss-guard"
file -b "$tdir/bench/pss-guard" | grep -q 'static' ||
  echo "warning: $tdir/bench/pss-guard is not statically linked" >&2
echo "$(stat -c %s "$tdir/bench/pss-guard") bytes, $(file -b "$tdir/bench/pss-guard" | cut -d, -f1-4)"
PSS_GUARD_BIN=$(realpath "$tdir/bench/pss-guard")
export PSS_GUARD_BIN

echo "== criterion: parse + evaluate in process"
cargo bench --bench parse_evaluate 2>&1 | grep -E '^(parse_evaluate|parts)/|time:|thrpt:|config.json' || true
est=$tdir/criterion/parse_evaluate/app+sandbox/new/estimates.json
ns=$(jq '.median.point_estimate' "$est")
eval_line=$(awk -v ns="$ns" 'BEGIN {
  r = 1e9 / ns; printf "TARGET eval_specs_per_sec %.0f/s >=50000/s %s", r, (r >= 50000 ? "PASS" : "FAIL") }')

echo "== build: kubelet-sim (the cri part runs a pod on a containerd test node)"
cargo build --release --locked -p kubelet-sim
KUBELET_SIM_BIN=$(realpath "$tdir/release/kubelet-sim")
export KUBELET_SIM_BIN

echo "== whole process, runc, 1,000 bundles, the namespace snapshot, the CRI view"
cargo bench --bench targets 2>&1 | tee "$tdir/bench/targets.log" | grep -v '^TARGET'

if ((profile)); then
  echo "== profile (the hook against a kept node)"
  # `head` closes these pipes early; that is not a failure.
  set +o pipefail
  keep_log=$(PSS_BENCH_KEEP=1 PSS_BENCH_ONLY=process PSS_BENCH_PAIRS=20 cargo bench --bench targets 2>&1)
  cmd=$(sed -n 's/^kept: //p' <<<"$keep_log")
  node_dir=$(sed -n 's/.*--policy \(.*\)\/policy.toml.*/\1/p' <<<"$cmd")
  state="$node_dir/state.json"
  loop="$node_dir/loop.sh"
  printf '#!/bin/bash\nfor _ in {1..300}; do %s; done\n' "$cmd" >"$loop"
  chmod +x "$loop"
  echo "-- perf: cpu-clock samples over 300 hook runs, by program and library"
  perf record -q -e cpu-clock -F 10000 -o "$node_dir/perf.data" -- "$loop" >/dev/null 2>&1
  perf report -i "$node_dir/perf.data" --sort comm,dso --stdio 2>/dev/null | grep '%' | head -8
  echo "-- perf: top symbols in the hook process"
  perf report -i "$node_dir/perf.data" --comm pss-guard --sort sym --stdio 2>/dev/null |
    grep '%' | head -25
  echo "-- callgrind: instructions of one hook run, inclusive, top functions"
  valgrind --tool=callgrind --callgrind-out-file="$node_dir/callgrind.out" \
    "$PSS_GUARD_BIN" hook --policy "$node_dir/policy.toml" --runtime containerd <"$state" 2>&1 |
    grep -E 'Collected'
  callgrind_annotate --inclusive=yes "$node_dir/callgrind.out" 2>/dev/null |
    sed -n '/file:function/,$p' | sed -n '3,40p' | cut -c1-150
  echo "-- callgrind: /bin/true for scale"
  valgrind --tool=callgrind --callgrind-out-file="$node_dir/callgrind.true" /bin/true <"$state" 2>&1 |
    grep -E 'Collected'
  # The kept node's sandbox process: a `sleep` in private namespaces.
  sandbox_pid=$(sed -n 's/^kept sandbox pid: //p' <<<"$keep_log")
  if [ -n "$sandbox_pid" ]; then kill "$sandbox_pid" 2>/dev/null || true; fi
  rm -rf "$node_dir"
  set -o pipefail
fi

echo
echo "== targets ($(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r), load average now $(cut -d' ' -f1-3 /proc/loadavg))"
{
  echo "$eval_line"
  grep '^TARGET' "$tdir/bench/targets.log"
} | awk '{ printf "%-20s %-14s target %-10s %s\n", $2, $3, $4, $5 }'
grep '^RECORD' "$tdir/bench/targets.log" || true
