#!/usr/bin/env bash
# Cut the VIP owner off from the cluster (nftables drop of the cluster port inside
# its namespace) while clients still reach it. It must drop the VIP when its lease
# runs out, the standby takes over only after that, never two owners. Healed after
# CHAOS_PARTITION_S (default 5) s.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
hold_s=${CHAOS_PARTITION_S:-5}
chaos_begin partition-active
ns=$(qlab_ns "$CHAOS_ACTIVE")
chaos_undo "ip netns exec $ns nft delete table inet qlab_chaos 2>/dev/null"
chaos_event fault
ip netns exec "$ns" nft -f - <<NFT
table inet qlab_chaos {
  chain input { type filter hook input priority -50; policy accept;
    tcp dport $QLAB_CLUSTER_PORT drop; tcp sport $QLAB_CLUSTER_PORT drop; }
  chain output { type filter hook output priority -50; policy accept;
    tcp dport $QLAB_CLUSTER_PORT drop; tcp sport $QLAB_CLUSTER_PORT drop; }
}
NFT
chaos_manual_takeover "$CHAOS_ACTIVE" "$CHAOS_STANDBY"
sleep "$hold_s"
chaos_event heal
ip netns exec "$ns" nft delete table inet qlab_chaos
chaos_wait_cluster 30
chaos_finish --expect-failover yes --no-double-addr
