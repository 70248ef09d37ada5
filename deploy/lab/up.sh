#!/usr/bin/env bash
# Builds the quorumlb lab on this host, entirely inside network namespaces:
#
#   qlab-sw      switch: bridge br0 + one veth end per host (v-client, v-lb1, ...)
#   qlab-client  10.10.0.2    load generator
#   qlab-lb1     10.10.0.11   proxy, node id 1, VIP priority 150
#   qlab-lb2     10.10.0.12   proxy, node id 2, VIP priority 100
#   qlab-wit     10.10.0.13   witness, node id 3
#   qlab-be1..3  10.10.0.21-23 backends (HTTP :8080, TCP echo :9000)
#   VIP 10.10.0.100: http :80 (pools with cookie and header stickiness), tcp :9000
#   VIP fd00:10:10::100: http :80 (every host also has fd00:10:10::<octet>/64)
#
# Nothing is added to the root namespace. State and PIDs go to $QLAB_DIR
# (default /run/qlab); deploy/lab/down.sh removes exactly what is recorded there.
#
# Env: QUORUMLB_BIN (else cargo build --release; QLAB_PROFILE=debug for a debug
# build), QLAB_PREFIX (namespace prefix, default qlab), QLAB_DIR,
# QLAB_MODE=pair (default: lb1 + lb2 + witness as one Raft cluster) or single
# (lb1 and lb2 run stand-alone, no cluster; the VIP is placed on lb1 by this script:
# for proving the lab and tooling without the cluster), QLAB_RUST_LOG.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

qlab_need_root
qlab_ensure_tools
mode=${QLAB_MODE:-pair}
case $mode in pair | single) ;; *) qlab_die "QLAB_MODE must be pair or single" ;; esac

if [ -f "$QLAB_DIR/mode" ] || [ -s "$QLAB_DIR/namespaces" ]; then
  qlab_die "a lab is already recorded in $QLAB_DIR: run deploy/lab/down.sh first"
fi
for h in sw "${QLAB_HOSTS[@]}"; do
  [ ! -e "/run/netns/$QLAB_PREFIX-$h" ] ||
    qlab_die "namespace $QLAB_PREFIX-$h exists but is not recorded by this lab; refusing to touch it (pick another QLAB_PREFIX or remove it yourself)"
done

BIN=$(qlab_bin)
# Logs and runs of a previous lab are kept one generation back.
if [ -d "$QLAB_DIR/log" ]; then
  rm -rf "$QLAB_DIR/prev"
  mkdir -p "$QLAB_DIR/prev"
  for d in log runs results.jsonl etc; do [ -e "$QLAB_DIR/$d" ] && mv "$QLAB_DIR/$d" "$QLAB_DIR/prev/"; done
fi
"$BIN" --version >/dev/null || qlab_die "$BIN does not run"
mkdir -p "$QLAB_DIR"/{etc,data,log,pids}
chmod 700 "$QLAB_DIR"
: >"$QLAB_DIR/namespaces"
: >"$QLAB_DIR/procs"
echo "$BIN" >"$QLAB_DIR/bin"
trap 'qlab_log "up.sh failed; run deploy/lab/down.sh to remove what was made"' ERR

mkns() {
  echo "$1" >>"$QLAB_DIR/namespaces"
  ip netns add "$1"
  ip -n "$1" link set lo up
}

# --- topology ---------------------------------------------------------------
sw=$(qlab_sw)
mkns "$sw"
ip -n "$sw" link add br0 type bridge stp_state 0 forward_delay 0
ip -n "$sw" link set br0 up
for h in "${QLAB_HOSTS[@]}"; do
  ns=$(qlab_ns "$h")
  mkns "$ns"
  # Both veth ends are created inside namespaces: the root namespace never sees them.
  ip -n "$sw" link add "v-$h" type veth peer name eth0 netns "$ns"
  ip -n "$sw" link set "v-$h" master br0 up
  ip -n "$ns" link set eth0 address "$(printf '02:00:0a:0a:00:%02x' "${QLAB_OCTET[$h]}")"
  ip -n "$ns" addr add "$(qlab_ip "$h")/24" dev eth0
  ip -n "$ns" addr add "$(qlab_ip6 "$h")/64" dev eth0 nodad
  ip -n "$ns" link set eth0 up
done
for p in "${QLAB_PROXIES[@]}"; do
  # The owner never uses the VIP as ARP source and answers ARP only for addresses of
  # the interface asked on (deploy/sysctl/90-quorumlb.conf).
  ip netns exec "$(qlab_ns "$p")" sysctl -qw net.ipv4.conf.all.arp_announce=2 net.ipv4.conf.all.arp_ignore=1 \
    net.ipv4.conf.eth0.arp_announce=2 net.ipv4.conf.eth0.arp_ignore=1
done

# --- configs ----------------------------------------------------------------
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$QLAB_DIR/etc/cluster.key"
head -c 18 /dev/urandom | base64 | tr -d '/+=\n' >"$QLAB_DIR/etc/admin.pass"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$QLAB_DIR/etc/sticky.key"
chmod 600 "$QLAB_DIR"/etc/*.key "$QLAB_DIR/etc/admin.pass"

# The replicated part: listeners, pools, VIP. Bootstrapped from lb1's file.
shared_config() {
  local be
  cat <<EOF
[runtime]
shutdown_grace_ms = 2000

[[listener]]
name = "web"
bind = "$QLAB_VIP:$QLAB_HTTP_PORT"
protocol = "http"
default_pool = "web"
  [[listener.route]]
  path_prefix = "/c/"
  pool = "web_cookie"
  [[listener.route]]
  path_prefix = "/h/"
  pool = "web_header"

# The same service on the IPv6 VIP.
[[listener]]
name = "web6"
bind = "[$QLAB_VIP6]:$QLAB_HTTP_PORT"
protocol = "http"
default_pool = "web"

[[listener]]
name = "stream"
bind = "$QLAB_VIP:$QLAB_TCP_PORT"
protocol = "tcp"
default_pool = "stream"
EOF
  for pool in web web_cookie web_header stream; do
    cat <<EOF

[[pool]]
name = "$pool"
algorithm = "round_robin"
connect_timeout_ms = 300
retries = 1
  [pool.health]
  kind = "$([ $pool = stream ] && echo tcp || echo http)"
EOF
    [ $pool = stream ] || echo '  path = "/healthz"'
    cat <<EOF
  interval_ms = 500
  timeout_ms = 400
  rise = 2
  fall = 3
EOF
    case ${QLAB_STICKY:-on} in on)
      case $pool in
        web_cookie) printf '  [pool.sticky]\n  mode = "cookie"\n  name = "QLBSTICKY"\n  secret_file = "%s"\n' "$QLAB_DIR/etc/sticky.key" ;;
        web_header) printf '  [pool.sticky]\n  mode = "header"\n  name = "x-session"\n' ;;
      esac ;;
    esac
    for be in "${QLAB_BACKENDS[@]}"; do
      local port=$QLAB_BACKEND_HTTP
      [ $pool = stream ] && port=$QLAB_BACKEND_TCP
      printf '  [[pool.backend]]\n  address = "%s:%s"\n' "$(qlab_ip "$be")" "$port"
    done
  done
}

node_config() {
  local node=$1 n
  if [ "$mode" = pair ]; then
    cat <<EOF
# quorumlb lab node $node (generated by deploy/lab/up.sh)
[node]
id = ${QLAB_NODE_ID[$node]}
name = "$node"
role = "$([ "$node" = wit ] && echo witness || echo proxy)"
data_dir = "$QLAB_DIR/data/$node"
cluster_listen = "$(qlab_ip "$node"):$QLAB_CLUSTER_PORT"

[cluster]
peers = [
EOF
    for n in "${QLAB_NODES[@]}"; do
      echo "  { id = ${QLAB_NODE_ID[$n]}, address = \"$(qlab_ip "$n"):$QLAB_CLUSTER_PORT\", role = \"$([ "$n" = wit ] && echo witness || echo proxy)\", name = \"$n\" },"
    done
    cat <<EOF
]
secret_file = "$QLAB_DIR/etc/cluster.key"

[admin]
listen = "$(qlab_ip "$node"):$QLAB_ADMIN_PORT"
$admin_pass_line

[[vip]]
address = "$QLAB_VIP/24"
interface = "eth0"
priority = { 1 = 150, 2 = 100 }
preempt = false
lease_ms = ${QLAB_LEASE_MS:-1000}

[[vip]]
address = "$QLAB_VIP6/64"
interface = "eth0"
priority = { 1 = 150, 2 = 100 }
preempt = false
lease_ms = ${QLAB_LEASE_MS:-1000}

EOF
  else
    echo "# quorumlb lab node $node, stand-alone (QLAB_MODE=single)"
  fi
  shared_config
}

admin_pass_line="bootstrap_password_file = \"$QLAB_DIR/etc/admin.pass\""
for n in "${QLAB_NODES[@]}"; do
  [ "$mode" = single ] && [ "$n" = wit ] && continue
  mkdir -p "$QLAB_DIR/data/$n"
  for attempt in 1 2; do
    node_config "$n" >"$QLAB_DIR/etc/$n.toml"
    "$BIN" validate --config "$QLAB_DIR/etc/$n.toml" >/dev/null 2>"$QLAB_DIR/log/validate-$n.txt" && break
    if [ $attempt = 1 ] && grep -q bootstrap_password_file "$QLAB_DIR/log/validate-$n.txt"; then
      qlab_log "WARNING: this build does not know [admin] bootstrap_password_file yet; leaving it out"
      admin_pass_line=""
      continue
    fi
    cat "$QLAB_DIR/log/validate-$n.txt" >&2
    qlab_die "generated config for $n does not validate"
  done
done
echo "$mode" >"$QLAB_DIR/mode"

# --- processes --------------------------------------------------------------
for be in "${QLAB_BACKENDS[@]}"; do qlab_start_backend "$be"; done
for be in "${QLAB_BACKENDS[@]}"; do
  for ((i = 0; i < 50; i++)); do
    ip netns exec "$(qlab_ns "$be")" python3 -c "import socket,sys; socket.create_connection(('$(qlab_ip "$be")', $QLAB_BACKEND_HTTP), timeout=0.2)" 2>/dev/null && break
    sleep 0.1
  done
done

QLAB_BIN=$BIN
if [ "$mode" = pair ]; then
  for n in "${QLAB_NODES[@]}"; do qlab_start_node "$n"; done
else
  for n in "${QLAB_PROXIES[@]}"; do qlab_start_node "$n"; done
  # Stand-alone: this script plays the cluster and puts the VIP on lb1.
  ip -n "$(qlab_ns lb1)" addr add "$QLAB_VIP/24" dev eth0
  ip netns exec "$(qlab_ns lb1)" arping -q -U -c 2 -w 1 -I eth0 -s "$QLAB_VIP" "$QLAB_VIP" || true
fi

if owner=$(qlab_wait_vip "${QLAB_UP_TIMEOUT_S:-60}"); then
  trap - ERR
  qlab_log "lab up ($mode): VIP $QLAB_VIP held by $owner and answering; state in $QLAB_DIR"
  qlab_log "try: ip netns exec $(qlab_ns client) curl -s http://$QLAB_VIP/   |   deploy/chaos/run-all.sh   |   deploy/lab/down.sh"
else
  qlab_log "VIP holders now: '$(qlab_vip_holders)'"
  for n in "${QLAB_NODES[@]}"; do
    [ -f "$QLAB_DIR/log/$n.log" ] && { echo "--- $n.log (tail)" >&2; tail -n 20 "$QLAB_DIR/log/$n.log" >&2; }
  done
  qlab_die "the VIP did not come up answering within ${QLAB_UP_TIMEOUT_S:-60}s (lab left in place for inspection; run down.sh)"
fi
