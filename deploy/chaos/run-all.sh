#!/usr/bin/env bash
# Runs every chaos scenario against the lab, one after the other, prints a summary
# table and exits non-zero if any invariant broke (two VIP owners, committed config
# lost, sticky session broken, VIP never moving off a failed owner, service not
# answering at the end) or a scenario could not run.
#
#   deploy/chaos/run-all.sh            # against a lab already up (deploy/lab/up.sh)
#   deploy/chaos/run-all.sh --up       # brings the lab up first and down at the end
#   deploy/chaos/run-all.sh --short    # the test-suite subset with shorter phases
#   deploy/chaos/run-all.sh kill-active partition-active   # only these
set -uo pipefail
source "$(dirname "$0")/lib.sh"
qlab_need_root

all=(restart-witness flap-backend netem-node kill-active switchover sigstop-active partition-active rolling-restart
  failback-nopreempt failback-preempt ipv6-failover)
short=(kill-active switchover sigstop-active partition-active restart-witness failback-nopreempt failback-preempt
  ipv6-failover)
up=0 picked=()
for arg in "$@"; do
  case $arg in
    --up) up=1 ;;
    --short)
      picked=("${short[@]}")
      export CHAOS_WARMUP_S=${CHAOS_WARMUP_S:-2} CHAOS_SETTLE_S=${CHAOS_SETTLE_S:-2} CHAOS_STOP_S=${CHAOS_STOP_S:-2}
      export CHAOS_PARTITION_S=${CHAOS_PARTITION_S:-3} CHAOS_NETEM_S=${CHAOS_NETEM_S:-4} CHAOS_FLAPS=${CHAOS_FLAPS:-1} ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) [[ " ${all[*]} " == *" $arg "* ]] || qlab_die "unknown scenario $arg (known: ${all[*]})"; picked+=("$arg") ;;
  esac
done
[ ${#picked[@]} -gt 0 ] || picked=("${all[@]}")

if [ $up = 1 ]; then
  trap '"$QLAB_LAB/down.sh"' EXIT
  "$QLAB_LAB/up.sh" || exit 1
fi
qlab_require_up

mkdir -p "$QLAB_DIR"
results=$QLAB_DIR/results.jsonl
touch "$results"
start_line=$(( $(wc -l <"$results") + 1 ))
declare -A rc_of=()
for s in "${picked[@]}"; do
  qlab_log "=== $s"
  timeout --kill-after=10 300 "$QLAB_CHAOS/$s.sh"
  rc_of[$s]=$?
  # A failed scenario may leave the VIP unowned; give the lab a moment, bounded.
  qlab_wait_vip 20 >/dev/null || qlab_log "WARNING: no single VIP owner answering after $s"
done

python3 - "$results" "$start_line" "${picked[@]}" <<'PY'
import json, sys
path, start, picked = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rows = {}
try:
    lines = open(path).read().splitlines()[start - 1:]
except FileNotFoundError:
    lines = []
for l in lines:
    try:
        r = json.loads(l)
        rows[r["scenario"]] = r
    except Exception:
        pass
cols = [("scenario", 18), ("result", 6), ("failover_ms", 11), ("gap_ms", 7), ("http_sent", 9), ("http_failed", 11),
        ("http_retried", 12), ("sticky_kept", 11), ("sticky_broken", 13), ("sticky_across", 13), ("tcp_failed", 10),
        ("tcp_max_gap_ms", 14), ("double_owner", 12), ("double_addr", 11), ("double_arp", 10), ("neigh_flip", 12),
        ("arp_quiet_ms", 12), ("new_owner_arp_ms", 16), ("moved", 10), ("vip_moves", 9), ("failback_ms", 11), ("no_owner_ms", 11), ("config", 10)]
fmt = lambda vals: " ".join(str(v).ljust(w) for v, (_, w) in zip(vals, cols))
print()
print(fmt([c for c, _ in cols]))
for s in picked:
    r = rows.get(s, {"scenario": s, "result": "NO-REPORT"})
    print(fmt(["-" if r.get(c) is None else r.get(c) for c, _ in cols]))
PY

fail=0
for s in "${picked[@]}"; do
  if [ "${rc_of[$s]}" != 0 ]; then
    echo "FAILED: $s (exit ${rc_of[$s]}; see $QLAB_DIR/runs/$s-*/ and $QLAB_DIR/log/)" >&2
    fail=1
  fi
done
[ $fail = 0 ] && echo "ALL INVARIANTS HELD (${#picked[@]} scenarios)" || echo "SOME INVARIANTS BROKE" >&2
exit $fail
