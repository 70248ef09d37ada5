#!/usr/bin/env bash
# Rolling restart of every node, one at a time, each with SIGTERM (graceful: an
# owner hands its VIP over first): the witness, the standby, then the owner. Each
# node must be back in the cluster before the next goes.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
chaos_begin rolling-restart
order=()
[ "$(qlab_mode)" = pair ] && order+=(wit)
order+=("$CHAOS_STANDBY" "$CHAOS_ACTIVE")
for n in "${order[@]}"; do
  [ "$n" = "$CHAOS_ACTIVE" ] && chaos_event fault || chaos_event "restart-$n"
  qlab_stop "$n" TERM 20
  [ "$n" = "$CHAOS_ACTIVE" ] && chaos_manual_takeover "$CHAOS_ACTIVE" "$CHAOS_STANDBY"
  qlab_start_node "$n"
  chaos_wait_cluster 30
  sleep 1
done
chaos_finish --expect-failover yes
