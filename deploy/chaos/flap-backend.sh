#!/usr/bin/env bash
# Flap one backend (its link goes down for 2 s, up for 2 s, CHAOS_FLAPS times, by
# default 3). The VIP must not move; sessions homed on other backends keep them.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
be=${CHAOS_BACKEND:-be1}
flaps=${CHAOS_FLAPS:-3}
chaos_begin flap-backend
sw=$(qlab_sw)
chaos_undo "ip -n $sw link set v-$be up"
chaos_event fault
for ((i = 0; i < flaps; i++)); do
  ip -n "$sw" link set "v-$be" down
  sleep 2
  ip -n "$sw" link set "v-$be" up
  sleep 2
done
chaos_event heal
chaos_finish --expect-failover no --exempt-backend "$be"
