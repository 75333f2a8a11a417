#!/usr/bin/env bash
# make bench-routes: BenchmarkRoutes1k and 10k against a real kube-apiserver,
# for this tree and for an earlier build (BENCH_BEFORE, a git revision;
# default: the last commit before issue 13 took endpoints out of the route
# table), in one run, printed side by side. The earlier build is compiled
# once into the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
before_rev="${BENCH_BEFORE:-1cb6dde}"
sizes="${BENCH_SIZES:-1k 10k}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/bulkhead/bench-before-$(git rev-parse --short "$before_rev")"
if [ ! -x "$cache/bulkhead" ]; then
  tmp="$(mktemp -d)"
  git worktree add --detach "$tmp/src" "$before_rev" >/dev/null
  (cd "$tmp/src" && CGO_ENABLED=0 go build -o "$cache/bulkhead" ./cmd/bulkhead)
  git worktree remove --force "$tmp/src"
  rm -rf "$tmp"
fi
out="$(mktemp -d)"
for size in $sizes; do
  for which in before after; do
    bin=""
    [ "$which" = before ] && bin="$cache/bulkhead"
    echo "== $size, $which, load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    # BENCH_PROFILE=1: the router's profiles (BULKHEAD_BENCH_PROFILE) go
    # beside the results, for a look at where the time goes. Not by
    # default: taking them costs the router what it measures (a CPU
    # profile's buffers; symbolizing a heap profile reads the binary's
    # line tables into memory, several MiB of resident pages). 200
    # Ingress changes: the p99 of 50 was the slowest change but one.
    prof=""
    if [ "${BENCH_PROFILE:-0}" = 1 ]; then
      prof="$out/prof-$size-$which"
      mkdir -p "$prof"
    fi
    BULKHEAD_BINARY="$bin" BULKHEAD_BENCH_PROFILE="$prof" go test -run '^$' -bench "BenchmarkRoutes${size}\$" -benchtime 200x -timeout 60m ./e2e/ \
      | tee -a /dev/stderr | grep '^BenchmarkRoutes' > "$out/$size-$which" || true
  done
done
# One row per metric: before, after.
for size in $sizes; do
  echo
  echo "BenchmarkRoutes$size: before ($before_rev) | after ($(git rev-parse --short HEAD))"
  # The column is the file's, not its order among non-empty files: a run
  # that failed (an empty file) must not shift the other into its column.
  awk '{f = (FILENAME == ARGV[1]) ? 1 : 2} {for (i=3;i<NF;i+=2) {v[f,$(i+1)]=$i; if (!(($(i+1)) in seen)) {seen[$(i+1)]=1; order[++n]=$(i+1)}}}
       END {for (k=1;k<=n;k++) {m=order[k]; b=((1,m) in v)?v[1,m]:"-"; a=((2,m) in v)?v[2,m]:"-"; printf "  %-36s %14s %14s\n", m, b, a}}' \
    "$out/$size-before" "$out/$size-after"
done
echo "the runs' output and profiles: $out" >&2
