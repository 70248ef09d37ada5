#!/usr/bin/env bash
# 100 ms delay and 5 % loss (tc netem) on the VIP owner's interface for
# CHAOS_NETEM_S (default 8) s. The VIP may stay or move; either way never two
# owners, no sticky session broken, service answering at the end. ARP answers from
# a delayed node can arrive in the next probe window, so double ARP is reported but
# not judged here (the address/fence sampler still is).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
hold_s=${CHAOS_NETEM_S:-8}
node=${CHAOS_NODE:-}
chaos_begin netem-node
node=${node:-$CHAOS_ACTIVE}
ns=$(qlab_ns "$node")
sw=$(qlab_sw)
chaos_event fault
if ip netns exec "$ns" tc qdisc add dev eth0 root netem delay 100ms loss 5% 2>/dev/null; then
  chaos_undo "ip netns exec $ns tc qdisc del dev eth0 root 2>/dev/null"
  how="tc netem"
else
  # No sch_netem in this kernel: put a userspace relay with the same delay and loss
  # between the node's switch port and the bridge (deploy/chaos/netem.py).
  how="netem.py relay (kernel has no sch_netem)"
  chaos_undo "ip -n $sw link set v-$node master br0; ip -n $sw link del n-$node 2>/dev/null"
  chaos_undo "qlab_stop netem-$node TERM 3"
  ip -n "$sw" link add "n-$node" type veth peer name "m-$node"
  ip -n "$sw" link set "m-$node" master br0 up
  ip -n "$sw" link set "n-$node" promisc on up
  ip -n "$sw" link set "v-$node" promisc on
  qlab_spawn "netem-$node" sw python3 -u "$QLAB_CHAOS/netem.py" --node-if "v-$node" --br-if "n-$node" \
    --delay-ms 100 --loss 0.05 --duration "$((hold_s + 30))" >/dev/null
  sleep 0.3
  ip -n "$sw" link set "v-$node" nomaster
fi
qlab_log "netem on $node via $how for ${hold_s}s"
sleep "$hold_s"
chaos_event heal
for ((i = ${#CHAOS_UNDO[@]} - 1; i >= 0; i--)); do eval "${CHAOS_UNDO[$i]}" || true; done
CHAOS_UNDO=()
chaos_wait_cluster 30
chaos_finish --expect-failover any --allow-double-arp
