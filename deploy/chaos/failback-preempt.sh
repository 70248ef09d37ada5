#!/usr/bin/env bash
# kill -9 of the preferred node (lb1) with preempt = true and preempt_delay_ms =
# CHAOS_PREEMPT_DELAY_MS (default 3000): when lb1 is back it takes the VIP back,
# not sooner than the delay after its restart, never two owners. The lab's default
# (preempt = false) is restored at the end.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
chaos_failback true failback-preempt
