#!/usr/bin/env bash
# SIGSTOP the VIP owner for 5 s (much longer than the lease), then SIGCONT. The
# standby must take the VIP; the frozen node keeps its address but its nftables
# fence expires on its own, so it never answers beside the new owner; on waking it
# must drop the address before serving.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
stop_s=${CHAOS_STOP_S:-5}
chaos_begin sigstop-active
pid=$(qlab_pid "$CHAOS_ACTIVE")
[ -n "$pid" ] || qlab_die "$CHAOS_ACTIVE is not running"
chaos_undo "kill -CONT $pid 2>/dev/null"
chaos_event fault
kill -STOP "$pid"
chaos_manual_takeover "$CHAOS_ACTIVE" "$CHAOS_STANDBY"
sleep "$stop_s"
chaos_event cont
kill -CONT "$pid"
# The woken node must hold no address at once (rule 1); give it 1 s at most.
for ((i = 0; i < 20; i++)); do
  [[ " $(qlab_vip_holders) " == *" $CHAOS_ACTIVE "* ]] || break
  sleep 0.05
done
extra=()
if [[ " $(qlab_vip_holders) " == *" $CHAOS_ACTIVE "* ]]; then
  extra=(--fail "$CHAOS_ACTIVE still held the VIP address 1 s after SIGCONT")
fi
chaos_wait_cluster 30
chaos_finish --expect-failover yes --check-arp-fence "${extra[@]}"
