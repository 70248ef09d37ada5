#!/usr/bin/env bash
# Removes exactly what deploy/lab/up.sh (and the chaos scripts) recorded in $QLAB_DIR:
# the recorded processes (by PID, only if the start time still matches, so a
# recycled PID is never signalled), then any process still inside a recorded
# namespace, then each recorded namespace by its exact name (which takes its veth
# ends, bridge, addresses and nftables tables with it). Idempotent; works after a
# partial up.sh. Touches nothing that is not recorded.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
qlab_need_root

if [ ! -d "$QLAB_DIR" ]; then
  qlab_log "nothing recorded in $QLAB_DIR; nothing to do"
  exit 0
fi

# 1. Recorded processes: TERM, wait up to 5 s, then KILL.
declare -a live=()
if [ -f "$QLAB_DIR/procs" ]; then
  while read -r name pid st; do
    [ -n "${pid:-}" ] && [ -n "${st:-}" ] || continue
    if qlab_pid_is "$pid" "$st"; then
      kill -TERM "$pid" 2>/dev/null && live+=("$pid:$st:$name")
    fi
  done <"$QLAB_DIR/procs"
fi
for ((i = 0; i < 100 && ${#live[@]} > 0; i++)); do
  left=()
  for e in "${live[@]}"; do
    IFS=: read -r pid st _ <<<"$e"
    qlab_pid_is "$pid" "$st" && left+=("$e")
  done
  live=(${left[@]+"${left[@]}"})
  [ ${#live[@]} -eq 0 ] || sleep 0.05
done
for e in ${live[@]+"${live[@]}"}; do
  IFS=: read -r pid st name <<<"$e"
  qlab_log "$name (pid $pid) ignored SIGTERM for 5 s: SIGKILL"
  qlab_pid_is "$pid" "$st" && kill -KILL "$pid" 2>/dev/null
done

# 2. Namespaces, in reverse order of creation.
if [ -f "$QLAB_DIR/namespaces" ]; then
  mapfile -t nss < <(tac "$QLAB_DIR/namespaces")
  for ns in ${nss[@]+"${nss[@]}"}; do
    # Only names this lab can have made (guards against a hand-edited state file).
    [[ $ns == "$QLAB_PREFIX"-* ]] || { qlab_log "skipping unexpected name '$ns'"; continue; }
    [ -e "/run/netns/$ns" ] || continue
    # Anything still running inside our namespace is ours (started by a script in it).
    for ((i = 0; i < 3; i++)); do
      pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
      [ -z "${pids// /}" ] && break
      qlab_log "killing leftover processes in $ns: $pids"
      # shellcheck disable=SC2086
      kill -KILL $pids 2>/dev/null
      sleep 0.2
    done
    ip netns del "$ns" || qlab_log "could not delete namespace $ns"
  done
fi

# 3. Forget the lab; keep logs for inspection unless asked not to.
rm -f "$QLAB_DIR/mode" "$QLAB_DIR/namespaces" "$QLAB_DIR/procs" "$QLAB_DIR/bin"
rm -rf "$QLAB_DIR/pids" "$QLAB_DIR/data"
if [ "${QLAB_KEEP_LOGS:-1}" = 0 ]; then
  rm -rf "$QLAB_DIR"
else
  qlab_log "lab removed; logs kept in $QLAB_DIR/log (QLAB_KEEP_LOGS=0 to remove)"
fi
exit 0
