#!/usr/bin/env bash
# kill -9 of the preferred node (lb1) with preempt = false: when lb1 is back the
# VIP stays on lb2 (no second move), never two owners. The lab's default
# (preempt = false) is restored at the end.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
chaos_failback false failback-nopreempt
