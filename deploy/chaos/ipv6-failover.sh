#!/usr/bin/env bash
# The IPv6 VIP (fd00:10:10::100) fails over like the IPv4 one: kill -9 its owner;
# the standby must hold the address, answer HTTP on it, and the client's neighbour
# entry for it must name the standby's MAC (unsolicited neighbour advertisements).
# The killed node is restarted afterwards. Prints one report line and appends it to
# the lab's results; exits non-zero if the VIP did not move or the entry did not flip.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
qlab_need_root
qlab_require_up
[ "$(qlab_mode)" = pair ] || qlab_die "ipv6-failover needs the clustered lab (QLAB_MODE=pair)"
CHAOS_RUN=$QLAB_DIR/runs/ipv6-failover-$(date +%Y%m%d-%H%M%S)
mkdir -p "$CHAOS_RUN"
client=$(qlab_ns client)
url="http://[$QLAB_VIP6]:$QLAB_HTTP_PORT/"
get6() { ip netns exec "$client" curl -6 -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" 2>/dev/null || true; }
neigh6() { ip -n "$client" -6 neigh show "$QLAB_VIP6" dev eth0 2>/dev/null | sed -n 's/.*lladdr \([0-9a-f:]*\).*/\1/p'; }

owner=""
for ((i = 0; i < 200; i++)); do # 20 s: one holder, answering
  h=$(qlab_vip6_holders)
  if [ -n "$h" ] && [ "$h" = "${h// /}" ] && [ "$(get6)" = 200 ]; then owner=$h; break; fi
  sleep 0.1
done
[ -n "$owner" ] || qlab_die "IPv6 VIP: no single holder answering (holders: '$(qlab_vip6_holders)')"
standby=$(chaos_standby "$owner")
before=$(neigh6)
qlab_log "ipv6-failover: owner=$owner standby=$standby client neighbour entry=$before"
trap 'qlab_start_node "$owner" || true' EXIT

t0=$(chaos_now)
qlab_stop "$owner" KILL 5
moved=no failover_ms=-
for ((i = 0; i < 300; i++)); do # 30 s
  if [[ " $(qlab_vip6_holders) " == *" $standby "* ]] && [ "$(get6)" = 200 ]; then
    moved=yes
    failover_ms=$(python3 -c "print(round(($(chaos_now) - $t0) * 1000))")
    break
  fi
  sleep 0.1
done
after=$(neigh6)
flip=no
[ -n "$after" ] && [ "$after" = "$(qlab_mac "$standby")" ] && flip=yes

qlab_start_node "$owner"
trap - EXIT
chaos_wait_cluster 30
result=PASS
[ "$moved" = yes ] && [ "$flip" = yes ] || result=FAIL
line="scenario=ipv6-failover result=$result failover_ms=$failover_ms moved=$moved neigh_flip=$flip owner_before=$owner owner_after=$standby neigh_before=$before neigh_after=$after"
echo "$line" | tee "$CHAOS_RUN/report.txt"
python3 - "$QLAB_DIR/results.jsonl" "$result" "$failover_ms" "$moved" "$flip" "$owner" "$standby" <<'PY'
import json, sys
path, result, ms, moved, flip, before, after = sys.argv[1:]
row = {"scenario": "ipv6-failover", "result": result, "failover_ms": None if ms == "-" else int(ms),
       "moved": moved, "neigh_flip": flip, "owner_before": before, "owner_after": after}
with open(path, "a") as f:
    f.write(json.dumps(row) + "\n")
PY
[ "$result" = PASS ]
