# shellcheck shell=bash
# Shared by the chaos scripts: start the load and the owner sampler, mark events,
# check the replicated config, undo faults on exit, and print the one report line.
# A scenario script looks like:
#   chaos_begin NAME            # sampler + load start (bounded), warm-up
#   chaos_event fault; <inject the fault>; <wait, bounded>; <heal>
#   chaos_finish --expect-failover yes|no|any [report.py options]
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/../lab" && pwd)/lib.sh"

CHAOS_MAX_S=${CHAOS_MAX_S:-90}       # hard bound on the load and the sampler of one scenario
CHAOS_WARMUP_S=${CHAOS_WARMUP_S:-3}  # steady load before the fault
CHAOS_SETTLE_S=${CHAOS_SETTLE_S:-3}  # steady load after healing, before the report
CHAOS_UNDO=()

chaos_now() { python3 -c 'import time; print(round(time.monotonic(), 4))'; }
chaos_event() { echo "{\"t\": $(chaos_now), \"ev\": \"$1\"}" >>"$CHAOS_RUN/events.jsonl"; qlab_log "event: $1"; }
chaos_undo() { CHAOS_UNDO+=("$1"); }

chaos_cleanup() {
  local i
  for ((i = ${#CHAOS_UNDO[@]} - 1; i >= 0; i--)); do eval "${CHAOS_UNDO[$i]}" || true; done
  CHAOS_UNDO=()
  qlab_stop "load-$CHAOS_NAME" TERM 5
  qlab_stop "sampler-$CHAOS_NAME" TERM 5
}

# Spawns a process in the root namespace (the sampler needs to see every namespace).
chaos_spawn_root() {
  local name=$1 pid
  shift
  "$@" </dev/null >>"$QLAB_DIR/log/$name.log" 2>&1 &
  pid=$!
  disown "$pid" 2>/dev/null || true
  echo "$name $pid $(qlab_starttime "$pid")" >>"$QLAB_DIR/procs"
  echo "$pid $(qlab_starttime "$pid")" >"$QLAB_DIR/pids/$name.pid"
}

# The one proxy holding the VIP now (fails if none or two).
chaos_active() {
  local h
  h=$(qlab_wait_vip 20) || qlab_die "no single VIP owner answering before the scenario (address on: '$(qlab_vip_holders)')"
  echo "$h"
}
chaos_standby() { local p; for p in "${QLAB_PROXIES[@]}"; do [ "$p" = "$1" ] || { echo "$p"; return; }; done; }

chaos_begin() {
  CHAOS_NAME=$1
  qlab_need_root
  qlab_require_up
  CHAOS_RUN=$QLAB_DIR/runs/$CHAOS_NAME-$(date +%Y%m%d-%H%M%S)
  mkdir -p "$CHAOS_RUN"
  : >"$CHAOS_RUN/events.jsonl"
  trap chaos_cleanup EXIT
  trap 'exit 130' INT TERM
  CHAOS_ACTIVE=$(chaos_active)
  CHAOS_STANDBY=$(chaos_standby "$CHAOS_ACTIVE")
  qlab_log "$CHAOS_NAME: active=$CHAOS_ACTIVE standby=$CHAOS_STANDBY run=$CHAOS_RUN"
  chaos_cfg_mark
  chaos_lease_check
  local nsargs=() p
  for p in "${QLAB_PROXIES[@]}"; do nsargs+=(--ns "$p=$(qlab_ns "$p")"); done
  chaos_spawn_root "sampler-$CHAOS_NAME" python3 -u "$QLAB_CHAOS/sampler.py" --vip "$QLAB_VIP" "${nsargs[@]}" \
    --client-ns "$(qlab_ns client)" --client-ip "$(qlab_ip client)" --probe-ip "$QLAB_NET.3" --duration "$CHAOS_MAX_S" \
    --out "$CHAOS_RUN/samples.jsonl"
  qlab_spawn "load-$CHAOS_NAME" client python3 -u "$QLAB_CHAOS/load.py" --vip "$QLAB_VIP" \
    --port "$QLAB_HTTP_PORT" --tcp-port "$QLAB_TCP_PORT" --duration "$CHAOS_MAX_S" \
    --out "$CHAOS_RUN/load.jsonl" ${CHAOS_LOAD_ARGS:-} >/dev/null
  sleep "$CHAOS_WARMUP_S"
}

# Waits (bounded) until the VIP is held by a proxy other than $1; prints it.
chaos_wait_moved() {
  local from=$1 timeout_s=${2:-10} i h
  for ((i = 0; i < timeout_s * 20; i++)); do
    h=$(qlab_vip_owners)
    if [ -n "$h" ] && [ "$h" != "$from" ] && [[ " $h " != *" $from "* ]]; then echo "$h"; return 0; fi
    sleep 0.05
  done
  return 1
}

# Stand-alone lab only (QLAB_MODE=single): no cluster moves the VIP, so the script
# does it by hand, to exercise the tooling. Never used against a real cluster.
chaos_manual_takeover() {
  [ "$(qlab_mode)" = single ] || return 0
  local from=$1 to=$2
  ip -n "$(qlab_ns "$from")" addr del "$QLAB_VIP/24" dev eth0 2>/dev/null || true
  ip -n "$(qlab_ns "$to")" addr add "$QLAB_VIP/24" dev eth0 2>/dev/null || true
  ip netns exec "$(qlab_ns "$to")" arping -q -U -c 2 -w 1 -I eth0 -s "$QLAB_VIP" "$QLAB_VIP" || true
}

# Waits (bounded) until every node answers the admin API and agrees on a leader
# (falls back to the cluster port being open when the admin API is not there).
chaos_wait_cluster() {
  local timeout_s=${1:-30}
  [ "$(qlab_mode)" = pair ] || { sleep 1; return 0; }
  local rc=0 n i
  ip netns exec "$(qlab_ns client)" python3 "$QLAB_CHAOS/admin.py" --dir "$QLAB_DIR" wait-healthy \
    --timeout "$timeout_s" 2>>"$CHAOS_RUN/admin.log" || rc=$?
  case $rc in
    0) ;;
    3) # No admin API in this build: settle for every node's cluster port answering.
      for n in "${QLAB_NODES[@]}"; do
        for ((i = 0; i < timeout_s * 5; i++)); do
          ip netns exec "$(qlab_ns client)" python3 -c "import socket; socket.create_connection(('$(qlab_ip "$n")', $QLAB_CLUSTER_PORT), timeout=0.2)" 2>/dev/null && break
          sleep 0.2
        done
      done
      sleep 2 ;;
    *) qlab_log "WARNING: cluster not healthy after ${timeout_s}s (see $CHAOS_RUN/admin.log)" ;;
  esac
}

# Config check: before the fault, commit one config change through the admin API
# and remember the version; after, every node must report that version or newer
# and still carry the change.
chaos_cfg_mark() {
  CHAOS_CFG=n/a
  [ "$(qlab_mode)" = pair ] || { CHAOS_CFG="n/a:single-mode"; return 0; }
  CHAOS_CFG=$(ip netns exec "$(qlab_ns client)" python3 "$QLAB_CHAOS/admin.py" --dir "$QLAB_DIR" mark 2>>"$CHAOS_RUN/admin.log") ||
    CHAOS_CFG="n/a:mark-failed"
  qlab_log "config mark: $CHAOS_CFG"
}
chaos_cfg_check() {
  case $CHAOS_CFG in n/a*) echo "$CHAOS_CFG"; return 0 ;; esac
  ip netns exec "$(qlab_ns client)" python3 "$QLAB_CHAOS/admin.py" --dir "$QLAB_DIR" check "$CHAOS_CFG" \
    2>>"$CHAOS_RUN/admin.log" || true
}

# GET /api/v1/cluster on the owner shows the lease it has left (and nobody else
# shows one); a wrong or missing value fails the scenario's report.
chaos_lease_check() {
  CHAOS_LEASE=n/a
  [ "$(qlab_mode)" = pair ] || return 0
  CHAOS_LEASE=$(ip netns exec "$(qlab_ns client)" python3 "$QLAB_CHAOS/admin.py" --dir "$QLAB_DIR" lease "$CHAOS_ACTIVE" \
    2>>"$CHAOS_RUN/admin.log") || CHAOS_LEASE="bad:admin.py failed"
  qlab_log "lease on the owner: $CHAOS_LEASE"
}

chaos_finish() {
  sleep "$CHAOS_SETTLE_S"
  qlab_stop "load-$CHAOS_NAME" TERM 10
  qlab_stop "sampler-$CHAOS_NAME" TERM 5
  local cfg lbargs=() leasearg=() p rc=0
  [[ ${CHAOS_LEASE:-} == bad:* ]] && leasearg=(--fail "GET /api/v1/cluster lease_remaining_ms: $CHAOS_LEASE")
  cfg=$(chaos_cfg_check)
  [ -n "$cfg" ] || cfg="lost:check-gave-no-answer"
  for p in "${QLAB_PROXIES[@]}"; do lbargs+=(--lb "$p=$(qlab_ip "$p")" --mac "$p=$(qlab_mac "$p")"); done
  python3 "$QLAB_CHAOS/report.py" --scenario "$CHAOS_NAME" --load "$CHAOS_RUN/load.jsonl" \
    --samples "$CHAOS_RUN/samples.jsonl" --events "$CHAOS_RUN/events.jsonl" "${lbargs[@]}" \
    --config "$cfg" --results "$QLAB_DIR/results.jsonl" "${leasearg[@]}" "$@" | tee "$CHAOS_RUN/report.txt" || rc=$?
  return $rc
}

# Sets preempt / preempt_delay_ms of the lab's VIP through the admin API (a
# committed config change); logs to $QLAB_DIR/log/admin.log.
chaos_set_preempt() {
  ip netns exec "$(qlab_ns client)" python3 "$QLAB_CHAOS/admin.py" --dir "$QLAB_DIR" set-preempt "$1" --delay-ms "$2" \
    >/dev/null 2>>"$QLAB_DIR/log/admin.log" || { qlab_log "could not set preempt=$1 (see $QLAB_DIR/log/admin.log)"; return 1; }
  qlab_log "VIP preempt=$1 preempt_delay_ms=$2"
}

# Waits (bounded) until NODE alone owns the VIP.
chaos_wait_owner() {
  local node=$1 timeout_s=${2:-10} i
  for ((i = 0; i < timeout_s * 20; i++)); do
    [ "$(qlab_vip_owners)" = "$node" ] && return 0
    sleep 0.05
  done
  return 1
}

# Failback after kill -9 of the preferred node (lb1, priority 150), with preempt
# on (PREEMPT=true: it takes the VIP back CHAOS_PREEMPT_DELAY_MS after it is back,
# never sooner) or off (the VIP stays on lb2). The lab's default (preempt = false)
# is restored at the end.
chaos_failback() {
  local preempt=$1 name=$2 delay=${CHAOS_PREEMPT_DELAY_MS:-3000} preferred=lb1 other=lb2
  qlab_need_root
  qlab_require_up
  [ "$(qlab_mode)" = pair ] || qlab_die "$name needs the cluster (QLAB_MODE=pair)"
  # Set-up, not measured: the preferred node owns the VIP (preempt brings it
  # home), then preempt as the scenario wants it.
  chaos_set_preempt true "$delay" || exit 1
  chaos_wait_owner "$preferred" $((delay / 1000 + 20)) ||
    qlab_die "$preferred did not take the VIP back for the set-up (owners: '$(qlab_vip_owners)')"
  [ "$preempt" = true ] || chaos_set_preempt false "$delay" || exit 1
  chaos_begin "$name"
  chaos_undo "chaos_set_preempt false 0"
  [ "$CHAOS_ACTIVE" = "$preferred" ] || qlab_die "$preferred should own the VIP, $CHAOS_ACTIVE does"
  chaos_event fault
  qlab_stop "$preferred" KILL 5
  chaos_wait_moved "$preferred" 15 >/dev/null || qlab_log "VIP did not move within 15 s"
  chaos_event restart
  qlab_start_node "$preferred"
  chaos_wait_cluster 30
  local args=(--expect-failover yes)
  if [ "$preempt" = true ]; then
    chaos_wait_owner "$preferred" $((delay / 1000 + 15)) || qlab_log "$preferred did not take the VIP back"
    args+=(--expect-owner "$preferred" --expect-moves 2 --min-failback-ms "$delay")
  else
    # Give a preempt (wrongly) every chance to happen: the delay and 3 s more.
    sleep $((delay / 1000 + 3))
    args+=(--expect-owner "$other" --expect-moves 1)
  fi
  chaos_finish "${args[@]}"
}
