# shellcheck shell=bash
# Shared by deploy/lab/{up,down}.sh and deploy/chaos/*.sh: names, addresses and the
# state directory of the netns lab, and the only functions that start or stop a lab
# process. Everything the lab creates lives inside network namespaces named
# "$QLAB_PREFIX-*": the bridge sits in its own "switch" namespace, so nothing at all
# is added to the host's root namespace (no link, no address, no route, no rule).
#
# State ($QLAB_DIR, default /run/$QLAB_PREFIX):
#   namespaces        every namespace name, written *before* it is created
#   procs             "name pid starttime" of every process ever started
#   pids/NAME.pid     current pid of NAME
#   etc/ data/ log/   configs, node data dirs, logs
# down.sh reads only these files: it kills exactly those PIDs (after checking their
# start time, so a recycled PID is never hit) and deletes exactly those namespaces.

set -o pipefail

QLAB_PREFIX=${QLAB_PREFIX:-qlab}
if ! [[ $QLAB_PREFIX =~ ^[a-z][a-z0-9-]{0,19}$ ]]; then
  echo "QLAB_PREFIX must be 1-20 of [a-z0-9-], starting with a letter (got '$QLAB_PREFIX')" >&2
  exit 2
fi
QLAB_DIR=${QLAB_DIR:-/run/$QLAB_PREFIX}
QLAB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
QLAB_LAB=$QLAB_ROOT/deploy/lab
QLAB_CHAOS=$QLAB_ROOT/deploy/chaos

# Address plan: one private /24 on one bridge, no gateway, no route anywhere else.
QLAB_NET=10.10.0
QLAB_VIP=$QLAB_NET.100
# The same hosts on a ULA /64 (added with nodad), and a second VIP on IPv6.
QLAB_NET6=fd00:10:10::
QLAB_VIP6=${QLAB_NET6}100
QLAB_HTTP_PORT=80
QLAB_TCP_PORT=9000
QLAB_CLUSTER_PORT=7400
QLAB_ADMIN_PORT=9090
QLAB_BACKEND_HTTP=8080
QLAB_BACKEND_TCP=9000

# host -> last octet. lb1/lb2 are proxies, wit the witness (ids 1, 2, 3).
declare -A QLAB_OCTET=([client]=2 [lb1]=11 [lb2]=12 [wit]=13 [be1]=21 [be2]=22 [be3]=23)
QLAB_HOSTS=(client lb1 lb2 wit be1 be2 be3)
QLAB_PROXIES=(lb1 lb2)
QLAB_NODES=(lb1 lb2 wit)
QLAB_BACKENDS=(be1 be2 be3)
declare -A QLAB_NODE_ID=([lb1]=1 [lb2]=2 [wit]=3)

qlab_ns() { echo "$QLAB_PREFIX-$1"; }
qlab_ip() { echo "$QLAB_NET.${QLAB_OCTET[$1]}"; }
qlab_ip6() { echo "$QLAB_NET6${QLAB_OCTET[$1]}"; }
qlab_sw() { echo "$QLAB_PREFIX-sw"; }
# The MAC of HOST's eth0 as the kernel has it (up.sh sets 02:00:0a:0a:00:<octet>).
qlab_mac() { ip -n "$(qlab_ns "$1")" -o link show eth0 2>/dev/null | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }
qlab_log() { echo "[qlab $(date +%T.%3N)] $*" >&2; }
qlab_die() { echo "[qlab] ERROR: $*" >&2; exit 1; }

qlab_need_root() {
  [ "$(id -u)" = 0 ] || qlab_die "must run as root (creates network namespaces)"
}

# Installs the Debian packages the lab uses when a tool is missing (root only).
qlab_ensure_tools() {
  local missing=() t
  declare -A pkg=([ip]=iproute2 [tc]=iproute2 [nft]=nftables [arping]=iputils-arping
    [ping]=iputils-ping [python3]=python3 [ps]=procps [sysctl]=procps)
  for t in "${!pkg[@]}"; do
    command -v "$t" >/dev/null 2>&1 || missing+=("${pkg[$t]}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  [ "$(id -u)" = 0 ] || qlab_die "missing packages: ${missing[*]} (run as root to install them)"
  qlab_log "installing: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
    qlab_die "apt-get install ${missing[*]} failed"
}

# The quorumlb binary: $QUORUMLB_BIN, else built here (release unless QLAB_PROFILE=debug).
qlab_bin() {
  if [ -n "${QUORUMLB_BIN:-}" ]; then
    [ -x "$QUORUMLB_BIN" ] || qlab_die "QUORUMLB_BIN=$QUORUMLB_BIN is not executable"
    echo "$QUORUMLB_BIN"
    return
  fi
  local profile=${QLAB_PROFILE:-release} flag=--release target
  [ "$profile" = debug ] && flag=
  target=${CARGO_TARGET_DIR:-$QLAB_ROOT/target}
  qlab_log "building quorumlb ($profile) with cargo"
  (cd "$QLAB_ROOT" && cargo build -q $flag -p quorumlb --bin quorumlb) >&2 || qlab_die "cargo build failed"
  echo "$target/$profile/quorumlb"
}

# /proc/PID/stat field 22 (start time in clock ticks); empty if the PID is gone.
qlab_starttime() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  # after "comm) " the fields start at field 3; starttime is field 22.
  set -- $stat
  echo "${20}"
}

# True if PID is alive and still the process we recorded with that start time.
qlab_pid_is() { [ -n "$1" ] && [ "$(qlab_starttime "$1")" = "$2" ]; }

# qlab_spawn NAME HOST CMD...: runs CMD inside HOST's namespace in the background,
# stdout/stderr to log/NAME.log, and records its PID. `ip netns exec` execs the
# command, so $! is the PID of CMD itself.
qlab_spawn() {
  local name=$1 host=$2 pid st
  shift 2
  mkdir -p "$QLAB_DIR/pids" "$QLAB_DIR/log"
  ip netns exec "$(qlab_ns "$host")" "$@" </dev/null >>"$QLAB_DIR/log/$name.log" 2>&1 &
  pid=$!
  # Out of the job table: a later kill -9 by a chaos script prints no "Killed" line.
  disown "$pid" 2>/dev/null || true
  st=$(qlab_starttime "$pid")
  echo "$name $pid $st" >>"$QLAB_DIR/procs"
  echo "$pid $st" >"$QLAB_DIR/pids/$name.pid"
  echo "$pid"
}

# PID of NAME if it is still the process we started, else nothing.
qlab_pid() {
  local f=$QLAB_DIR/pids/$1.pid pid st
  [ -f "$f" ] || return 0
  read -r pid st <"$f"
  qlab_pid_is "$pid" "$st" && echo "$pid"
  return 0
}

# qlab_stop NAME [SIGNAL] [WAIT_S]: signals NAME (default TERM) and waits up to
# WAIT_S (default 15) for it to exit, then SIGKILLs it. Bounded.
qlab_stop() {
  local name=$1 sig=${2:-TERM} wait_s=${3:-15} pid st i
  local f=$QLAB_DIR/pids/$name.pid
  [ -f "$f" ] || return 0
  read -r pid st <"$f"
  if qlab_pid_is "$pid" "$st"; then
    kill "-$sig" "$pid" 2>/dev/null
    for ((i = 0; i < wait_s * 20; i++)); do
      qlab_pid_is "$pid" "$st" || break
      sleep 0.05
    done
    if qlab_pid_is "$pid" "$st"; then
      qlab_log "$name (pid $pid) still alive after ${wait_s}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null
      for ((i = 0; i < 40; i++)); do qlab_pid_is "$pid" "$st" || break; sleep 0.05; done
    fi
  fi
  rm -f "$f"
}

qlab_mode() { cat "$QLAB_DIR/mode" 2>/dev/null || echo none; }

qlab_require_up() {
  [ -f "$QLAB_DIR/mode" ] || qlab_die "no lab at $QLAB_DIR: run deploy/lab/up.sh first"
  QLAB_BIN=$(cat "$QLAB_DIR/bin")
}

# Starts quorumlb on NODE (lb1, lb2, wit) with its lab config and data dir.
qlab_start_node() {
  local node=$1 bin
  bin=${QLAB_BIN:-$(cat "$QLAB_DIR/bin")}
  [ -z "$(qlab_pid "$node")" ] || { qlab_log "$node already running"; return 0; }
  qlab_spawn "$node" "$node" env NO_COLOR=1 RUST_LOG="${QLAB_RUST_LOG:-info,openraft=warn}" \
    "$bin" run --config "$QLAB_DIR/etc/$node.toml" >/dev/null
}

qlab_start_backend() {
  local be=$1
  [ -z "$(qlab_pid "$be")" ] || return 0
  qlab_spawn "$be" "$be" python3 -u "$QLAB_LAB/backend.py" --name "$be" \
    --http "$(qlab_ip "$be"):$QLAB_BACKEND_HTTP" --tcp "$(qlab_ip "$be"):$QLAB_BACKEND_TCP" >/dev/null
}

# Proxy namespaces that hold the VIP on eth0 right now (ground truth); with
# argument "6", the IPv6 VIP.
qlab_vip_holders() {
  local family=${1:-4} vip=$QLAB_VIP p out=()
  [ "$family" = 6 ] && vip=$QLAB_VIP6
  for p in "${QLAB_PROXIES[@]}"; do
    ip -n "$(qlab_ns "$p")" -o "-$family" addr show dev eth0 2>/dev/null | grep -q " $vip/" && out+=("$p")
  done
  echo "${out[*]}"
}
qlab_vip6_holders() { qlab_vip_holders 6; }

# Proxies that *own* the VIP now: hold the address and are not fenced. A node that
# was killed or frozen keeps its address, but once its lease ran out its nftables
# fence (a `lease` set in an inet table `*_vip_<ip>`) drops all traffic for it.
qlab_vip_owners() {
  local holders p out=()
  holders=$(qlab_vip_holders)
  if [ "${holders// /}" = "$holders" ]; then echo "$holders"; return; fi
  for p in $holders; do
    [ "$(python3 -B -c "import sys; sys.path.insert(0, '$QLAB_CHAOS'); import sampler; print(sampler.fence_state('$(qlab_ns "$p")', '$QLAB_VIP'))")" = closed ] || out+=("$p")
  done
  echo "${out[*]}"
}

# One HTTP GET from the client namespace through the VIP; prints the backend name.
qlab_client_get() {
  ip netns exec "$(qlab_ns client)" python3 - "$QLAB_VIP" "$QLAB_HTTP_PORT" <<'EOF'
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1)
    s.settimeout(1)
    s.sendall(b"GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        c = s.recv(4096)
        if not c:
            break
        data += c
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin1").split("\r\n")
    be = [h.split(":", 1)[1].strip() for h in head[1:] if h.lower().startswith("x-backend:")]
    if head[0].split()[1] == "200" and be:
        print(be[0])
        sys.exit(0)
except Exception as e:
    print(e, file=sys.stderr)
sys.exit(1)
EOF
}

# Waits (bounded) until exactly one proxy owns the VIP and a GET through it works.
qlab_wait_vip() {
  local timeout_s=${1:-30} i holders
  for ((i = 0; i < timeout_s * 5; i++)); do
    holders=$(qlab_vip_owners)
    if [ -n "$holders" ] && [ "${holders// /}" = "$holders" ] && qlab_client_get >/dev/null 2>&1; then
      echo "$holders"
      return 0
    fi
    sleep 0.2
  done
  return 1
}
