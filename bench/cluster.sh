#!/usr/bin/env bash
# bench/cluster.sh: the Raft side of quorumlb on a 3-node loopback cluster (real
# `quorumlb` processes, release build): sticky entries committed per second and
# config change -> applied on every proxy. Loopback only, bounded, stops what it
# started (the benchmark program stops its nodes by PID).
#
#   bench/cluster.sh                       # 50,000 sticky entries, 30 config changes
#   ENTRIES=5000 CHANGES=10 bench/cluster.sh
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
ENTRIES=${ENTRIES:-50000}
CHANGES=${CHANGES:-30}
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
RESULTS=${RESULTS:-$BENCH/results}
RECORD_HISTORY=${RECORD_HISTORY:-1}

cd "$REPO"
echo "[cluster-bench] building (release)" >&2
CARGO_TARGET_DIR=$CARGO_TARGET_DIR cargo build -q --release -p quorumlb -p tests --bin quorumlb --bin cluster_bench
mkdir -p "$RESULTS"
stamp=$(date -u +%Y-%m-%dT%H%M%S)
out=$RESULTS/cluster-$stamp.md
QUORUMLB_BIN=$CARGO_TARGET_DIR/release/quorumlb RUST_LOG=warn QLB_TEST_LOG=warn \
    timeout 600 "$CARGO_TARGET_DIR/release/cluster_bench" --entries "$ENTRIES" --changes "$CHANGES" --out "$out.body"
{
    echo "## Cluster $stamp — commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
    echo "Machine: $(uname -srm), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), load avg $(cut -d' ' -f1 /proc/loadavg) at end."
    echo
    cat "$out.body"
} >"$out"
rm -f "$out.body"
echo "[cluster-bench] table written to $out" >&2
if ((RECORD_HISTORY)); then
    { echo; cat "$out"; } >>"$BENCH/RESULTS.md"
    echo "[cluster-bench] appended to bench/RESULTS.md" >&2
fi
