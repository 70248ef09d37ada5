#!/usr/bin/env bash
# Planned switchover: SIGTERM the VIP owner under load (what `systemctl stop` does).
# The owner drains first (new SYNs to the VIP dropped silently, HTTP connections
# closed at a request boundary), then hands the VIP over through the log, so no
# HTTP request may fail (load.py retries a GET whose kept-alive connection was
# closed before any response byte, as real clients do; those are counted as
# http_retried). L4 streams cannot be closed at a request boundary: they reconnect,
# reported as tcp_failed/tcp_reconnects and not judged. Neither node may hold the
# address while the other does. The stopped node is started again afterwards.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
chaos_begin switchover
chaos_event fault
qlab_stop "$CHAOS_ACTIVE" TERM 20
chaos_manual_takeover "$CHAOS_ACTIVE" "$CHAOS_STANDBY"
chaos_wait_moved "$CHAOS_ACTIVE" 10 >/dev/null || qlab_log "VIP did not move within 10 s"
sleep 1
chaos_event restart
qlab_start_node "$CHAOS_ACTIVE"
chaos_wait_cluster 30
chaos_finish --expect-failover yes --max-http-failed 0 --no-double-addr
