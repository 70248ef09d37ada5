# bench/lib/common.sh: logging, bounded waits and process bookkeeping for the
# benchmark. Every process the harness starts is recorded in a PID file under
# $WORK/pids and stopped from there; nothing is ever stopped by name.
# shellcheck shell=bash

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# wait_port HOST PORT SECONDS [PID]: until something accepts on HOST:PORT, or
# fail; fails at once when PID (the process that should listen) has exited.
wait_port() {
    local host=$1 port=$2 deadline=$((SECONDS + $3)) pid=${4:-}
    while ((SECONDS < deadline)); do
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
        if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    return 1
}

# wait_port_free PORT SECONDS: until nothing listens on PORT (the previous
# contender is gone), or fail.
wait_port_free() {
    local port=$1 deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        if ! ss -Hltn "sport = :$port" | grep -q .; then return 0; fi
        sleep 0.05
    done
    return 1
}

# spawn NAME CPU LOGFILE CMD...: starts CMD pinned to CPU in the background and
# records its PID in $WORK/pids/NAME.pid.
spawn() {
    local name=$1 cpu=$2 logf=$3
    shift 3
    taskset -c "$cpu" "$@" >"$logf" 2>&1 &
    echo $! >"$WORK/pids/$name.pid"
}

# descendants PID: PID and all its descendants, one per line.
descendants() {
    local p=$1 c
    echo "$p"
    for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do descendants "$c"; done
}

# stop NAME: stops the process recorded in NAME.pid and its descendants; TERM
# first, KILL after 5 s. Only these PIDs are signalled.
stop() {
    local name=$1 f="$WORK/pids/$1.pid" pid pids p deadline
    [[ -f $f ]] || return 0
    pid=$(<"$f")
    pids=$(descendants "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 5))
    while ((SECONDS < deadline)); do
        local alive=0
        for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.05
    done
    for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
    wait "$pid" 2>/dev/null || true
    rm -f "$f"
}

# stop_all: every process with a PID file (used by the trap).
stop_all() {
    local f
    for f in "$WORK"/pids/*.pid; do
        [[ -e $f ]] || continue
        stop "$(basename "$f" .pid)"
    done
}

# rss_kib PID: resident memory of PID and its descendants, in KiB.
rss_kib() {
    local total=0 p v
    for p in $(descendants "$1"); do
        v=$(awk '/^VmRSS:/ {print $2}' /proc/"$p"/status 2>/dev/null)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# render TEMPLATE OUT: substitutes @VAR@ with the value of shell variable VAR.
render() {
    local line out=$2
    : >"$out"
    while IFS= read -r line || [[ -n $line ]]; do
        while [[ $line =~ @([A-Z0-9_]+)@ ]]; do
            local var=${BASH_REMATCH[1]}
            [[ -v $var ]] || die "template $1 uses @$var@, which is not set"
            line=${line//@$var@/${!var}}
        done
        printf '%s\n' "$line" >>"$out"
    done <"$1"
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) exit; if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
