#!/usr/bin/env bash
# Profiles the shim under the list-issues workload: starts target/release/local (memory
# store) under `perf record` (default) or valgrind's callgrind, loads it with
# `bench http --mix list=1` from a separate process, then prints the top functions.
#
#   cargo build --profile bench --bins      # keeps symbols; `--release` strips them
#   scripts/profile.sh                      # 10 s of list=1 under perf
#   scripts/profile.sh 20                   # 20 s
#   MIX=get=1 scripts/profile.sh            # another workload (bench http --mix syntax)
#   PROFILER=callgrind scripts/profile.sh 5 # valgrind --tool=callgrind (slow: ~50x)
#
# Output stays in target/profile/ (perf.data or callgrind.out) for `perf report -i ...`
# or `callgrind_annotate ...`. Environment: BIN_DIR (target/release), PORT (18087),
# CONCURRENCY (32), MIX (list=1), PROFILER (perf|callgrind), OUT_DIR (target/profile),
# STORE (memory, or embedded: a SQLite file in a fresh directory under OUT_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-10}"
bin_dir="${BIN_DIR:-target/release}"
port="${PORT:-18087}"
concurrency="${CONCURRENCY:-32}"
mix="${MIX:-list=1}"
profiler="${PROFILER:-perf}"
out="${OUT_DIR:-target/profile}"

for b in local bench; do
  if [ ! -x "$bin_dir/$b" ]; then
    echo "missing $bin_dir/$b: run \`cargo build --profile bench --bins\` first" >&2
    exit 1
  fi
done
if ! nm "$bin_dir/local" 2>/dev/null | grep -q ' T '; then
  echo "warning: $bin_dir/local has no symbols (built with --release?); use --profile bench" >&2
fi
mkdir -p "$out"

store="${STORE:-memory}"
shim=("$bin_dir/local" --host 127.0.0.1 --port "$port" --store "$store")
if [ "$store" = embedded ]; then
  rm -rf "$out/data"
  shim+=(--data-dir "$out/data")
fi
export MOMENTUM_ENV=local RUST_LOG=warn MOMENTUM_EXPOSE_STORAGE_CALLS=true

case "$profiler" in
  perf)
    # cpu-clock works in VMs without hardware counters; DWARF unwinding gives callers
    # although Rust code is built without frame pointers.
    perf record -q -e cpu-clock -F 499 --call-graph dwarf,8192 -o "$out/perf.data" \
      -- "${shim[@]}" 2>"$out/perf-record.log" &
    ;;
  callgrind)
    valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" \
      -- "${shim[@]}" 2>"$out/callgrind.log" &
    ;;
  *)
    echo "PROFILER=$profiler: use perf or callgrind" >&2
    exit 1
    ;;
esac
wrapper=$!

# The shim is the profiler's child: wait for it to answer, then find its pid.
for _ in $(seq 1 600); do
  if curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$wrapper" 2>/dev/null; then
    echo "profiler exited early; see $out/*.log" >&2
    exit 1
  fi
  sleep 0.1
done
shim_pid=$(pgrep -P "$wrapper" | head -n1 || true)
[ -n "$shim_pid" ] || shim_pid=$wrapper # valgrind runs the program in its own process

"$bin_dir/bench" http --server "http://127.0.0.1:$port" --mix "$mix" \
  --duration "$secs" --concurrency "$concurrency"

kill -INT "$shim_pid" # graceful shutdown: the profiler then writes its data
wait "$wrapper" || true

# Drops comments, blank lines and the padded empty columns; keeps lines readable.
tidy() {
  grep -v '^#' | grep -v '^$' | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//' | cut -c1-200
}

echo
case "$profiler" in
  perf)
    echo "== top functions by self time (perf report --no-children)"
    perf report -i "$out/perf.data" --stdio --no-children --sort symbol -g none \
      --percent-limit 0.5 2>/dev/null | tidy | head -n 30
    echo
    echo "== top functions including callees (perf report --children)"
    perf report -i "$out/perf.data" --stdio --children --sort symbol -g none \
      --percent-limit 2 2>/dev/null | tidy | head -n 40
    ;;
  callgrind)
    callgrind_annotate "$out/callgrind.out" 2>/dev/null | head -n 50
    ;;
esac
