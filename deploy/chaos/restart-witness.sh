#!/usr/bin/env bash
# Restart the witness (SIGTERM, 2 s down, start from its data dir). The VIP must
# not move and nothing is lost: the two proxies keep a quorum on their own.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
chaos_begin restart-witness
[ "$(qlab_mode)" = pair ] || qlab_log "single mode: there is no witness process; measuring a quiet period"
chaos_event fault
qlab_stop wit TERM 20
sleep 2
chaos_event restart
[ "$(qlab_mode)" = pair ] && qlab_start_node wit
chaos_wait_cluster 30
chaos_finish --expect-failover no
