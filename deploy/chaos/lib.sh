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
  local nsargs=() p
  for p in "${QLAB_PROXIES[@]}"; do nsargs+=(--ns "$p=$(qlab_ns "$p")"); done
  chaos_spawn_root "sampler-$CHAOS_NAME" python3 -u "$QLAB_CHAOS/sampler.py" --vip "$QLAB_VIP" "${nsargs[@]}" \
    --client-ns "$(qlab_ns client)" --client-ip "$(qlab_ip client)" --duration "$CHAOS_MAX_S" \
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

chaos_finish() {
  sleep "$CHAOS_SETTLE_S"
  qlab_stop "load-$CHAOS_NAME" TERM 10
  qlab_stop "sampler-$CHAOS_NAME" TERM 5
  local cfg lbargs=() p rc=0
  cfg=$(chaos_cfg_check)
  [ -n "$cfg" ] || cfg="lost:check-gave-no-answer"
  for p in "${QLAB_PROXIES[@]}"; do lbargs+=(--lb "$p=$(qlab_ip "$p")"); done
  python3 "$QLAB_CHAOS/report.py" --scenario "$CHAOS_NAME" --load "$CHAOS_RUN/load.jsonl" \
    --samples "$CHAOS_RUN/samples.jsonl" --events "$CHAOS_RUN/events.jsonl" "${lbargs[@]}" \
    --config "$cfg" --results "$QLAB_DIR/results.jsonl" "$@" | tee "$CHAOS_RUN/report.txt" || rc=$?
  return $rc
}
