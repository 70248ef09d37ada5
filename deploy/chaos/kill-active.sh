#!/usr/bin/env bash
# kill -9 the VIP owner under load; the standby must take the VIP, sticky sessions
# must keep their backend, never two owners. The killed node is restarted afterwards
# (from its own data dir) so the lab is whole again for the next scenario.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
chaos_begin kill-active
chaos_event fault
qlab_stop "$CHAOS_ACTIVE" KILL 5
chaos_manual_takeover "$CHAOS_ACTIVE" "$CHAOS_STANDBY"
chaos_wait_moved "$CHAOS_ACTIVE" 10 >/dev/null || qlab_log "VIP did not move within 10 s"
sleep 2
chaos_event restart
qlab_start_node "$CHAOS_ACTIVE"
chaos_wait_cluster 30
chaos_finish --expect-failover yes
