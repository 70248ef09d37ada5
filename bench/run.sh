#!/usr/bin/env bash
# bench/run.sh: quorumlb side by side with nginx and HAProxy on this machine, in
# one command. See bench/README.md for what each row measures and how.
#
#   bench/run.sh                  # full run: 6 alternating rounds, 8 s per measurement
#   QUICK=1 bench/run.sh          # smoke test: 1 round, 2 s per measurement
#   RUNS=9 DURATION=10 SUITES="http" CONTENDERS="quorumlb haproxy-http" bench/run.sh
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
LIB=$BENCH/lib CONF=$BENCH/conf
# shellcheck source=lib/common.sh
source "$LIB/common.sh"
# shellcheck source=lib/contenders.sh
source "$LIB/contenders.sh"
# shellcheck source=lib/measure.sh
source "$LIB/measure.sh"

QUICK=${QUICK:-0}
if ((QUICK)); then RUNS=${RUNS:-1} DURATION=${DURATION:-2}; fi
RUNS=${RUNS:-6}
DURATION=${DURATION:-8}
IDLE_CONNS=${IDLE_CONNS:-5000}
HS_CLIENTS=${HS_CLIENTS:-8} # parallel `openssl s_time -new` for handshakes/s
SUITES=${SUITES:-"http https tcp idle"}
CONTENDERS=${CONTENDERS:-"direct quorumlb nginx haproxy-http haproxy-tcp"}
CPU_LOAD=${CPU_LOAD:-0}   # wrk, the idle-connection client and the backends
CPU_PROXY=${CPU_PROXY:-1} # the contender
PORT=${PORT:-18000} TLS_PORT=${TLS_PORT:-18443} BE_BASE=${BE_BASE:-18080} BE_TLS_PORT=${BE_TLS_PORT:-18444}
NGINX_STREAM_MODULE=${NGINX_STREAM_MODULE:-/usr/lib/nginx/modules/ngx_stream_module.so}
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
QUORUMLB=${QUORUMLB:-$CARGO_TARGET_DIR/release/quorumlb}
RESULTS=${RESULTS:-$BENCH/results}
# Full runs append their table to bench/RESULTS.md (the history); smoke runs don't.
RECORD_HISTORY=${RECORD_HISTORY:-$((!QUICK))}

install_deps() {
    local missing=() c
    for c in nginx haproxy wrk openssl python3 taskset ss timeout; do
        command -v "$c" >/dev/null || missing+=("$c")
    done
    [[ -f $NGINX_STREAM_MODULE ]] || missing+=(ngx_stream_module)
    ((${#missing[@]} == 0)) && return 0
    [[ ${SKIP_INSTALL:-0} == 1 ]] && die "missing: ${missing[*]} (SKIP_INSTALL=1)"
    ((EUID == 0)) || die "missing: ${missing[*]}; run as root so apt-get can install them"
    log "installing (missing: ${missing[*]})"
    timeout 300 apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q \
        nginx libnginx-mod-stream haproxy wrk openssl python3 util-linux iproute2 coreutils >/dev/null
    # Debian starts the packaged services where it can; they are not ours and we
    # leave them alone, but they must not hold our ports.
}

build_quorumlb() {
    [[ " $CONTENDERS " == *" quorumlb "* ]] || return 0
    # Always through cargo (a no-op when fresh): a stale binary would bench old code.
    if [[ -x $QUORUMLB && ${SKIP_BUILD:-0} == 1 ]]; then return 0; fi
    log "building quorumlb (release, into $CARGO_TARGET_DIR; minutes when cold)"
    (cd "$REPO" && CARGO_TARGET_DIR=$CARGO_TARGET_DIR cargo build --release -p quorumlb) ||
        die "cargo build failed"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_all
    if [[ ${KEEP_WORK:-0} == 1 ]]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}

load1() { cut -d' ' -f1 /proc/loadavg; }

main() {
    install_deps
    build_quorumlb
    # The idle row holds IDLE_CONNS client sockets, and as many upstream ones in
    # an L4 proxy; every process gets the same limit and sizes itself from it.
    local want_fds=$((IDLE_CONNS * 2 + 1000))
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    FD_LIMIT=$(ulimit -n)
    ((FD_LIMIT >= want_fds)) || log "warning: open-file limit $FD_LIMIT < $want_fds; the idle row may fail"
    # HAProxy reserves two fds per connection plus pipes for splicing.
    NGINX_CONNS=$((FD_LIMIT / 2)) HAPROXY_MAXCONN=$(((FD_LIMIT - 1000) / 3))
    for p in "$PORT" "$TLS_PORT" "$BE_BASE" $((BE_BASE + 1)) $((BE_BASE + 2)) $((BE_BASE + 3)) "$BE_TLS_PORT"; do
        ss -Hltn "sport = :$p" | grep -q . && die "port $p is already in use; set PORT/TLS_PORT/BE_BASE/BE_TLS_PORT"
    done

    WORK=$(mktemp -d /tmp/quorumlb-bench.XXXXXX)
    mkdir -p "$WORK/pids"
    trap cleanup EXIT
    trap 'exit 130' INT TERM

    local stamp load_start load_max
    stamp=$(date +%Y-%m-%dT%H%M%S)
    mkdir -p "$RESULTS"
    CSV=$RESULTS/$stamp.csv
    echo "run,contender,row,value,errors,note" >"$CSV"
    load_start=$(load1)
    log "load average at start: $load_start; $RUNS round(s) of ${DURATION}s measurements; suites: $SUITES"

    make_files
    start_backends

    local run suite name
    for ((run = 1; run <= RUNS; run++)); do
        for suite in $SUITES; do
            for name in $CONTENDERS; do
                applies "$name" "$suite" || continue
                log "round $run/$RUNS  $suite  $name"
                if ! start_contender "$name" "$suite"; then
                    log "  n/a: $NA_REASON"
                    local rows
                    case $suite in
                    http) rows="ka50_rps ka200_rps close_cps body1m_mbs" ;;
                    https) rows="tls50_rps tls_hs" ;;
                    tcp) rows="l4_mbs" ;;
                    idle) rows="idle_kib" ;;
                    esac
                    for r in $rows; do record "$run" "$name" "$r" n/a 0 "$NA_REASON"; done
                    continue
                fi
                run_suite "$run" "$name" "$suite"
                stop_contender "$name" "$suite"
            done
        done
    done
    local load_end
    load_end=$(load1)
    load_max=$(awk -v a="$load_start" -v b="$load_end" 'BEGIN {print (a > b ? a : b)}')

    local header=$WORK/header.md commit dirty="" caveat=""
    commit=${QUORUMLB_COMMIT:-$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)}
    if [[ -z ${QUORUMLB_COMMIT:-} ]] && ! git -C "$REPO" diff --quiet HEAD -- . 2>/dev/null; then
        dirty=" (working tree has uncommitted changes)"
    fi
    if awk -v l="$load_max" 'BEGIN {exit !(l > 1.5)}'; then
        caveat=$'\n'"**Taken under load (load avg $load_max): other work shared the cores; treat differences under ~25% as noise.**"
    fi
    {
        echo "## $stamp — commit $commit$dirty"
        echo
        echo "Machine: $(uname -srm), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), load avg $load_start at start / $load_end at end."
        echo "Contenders: $("$QUORUMLB" --version 2>/dev/null | head -1), $(nginx -v 2>&1 | cut -d' ' -f3), HAProxy $(haproxy -v | head -1 | cut -d' ' -f3), wrk $(wrk -v 2>&1 | head -1 | cut -d' ' -f2)."
        echo "Medians of $RUNS alternating round(s), ${DURATION}s per measurement; proxy pinned to CPU $CPU_PROXY, wrk and the three nginx backends to CPU $CPU_LOAD; raw numbers: results/$stamp.csv.$caveat"
    } >"$header"
    python3 "$LIB/report.py" "$CSV" "$header" >"$RESULTS/$stamp.md"
    cat "$RESULTS/$stamp.md"
    if ((RECORD_HISTORY)); then
        { echo; cat "$RESULTS/$stamp.md"; } >>"$BENCH/RESULTS.md"
        log "appended to bench/RESULTS.md"
    fi
    log "wrote $RESULTS/$stamp.md and $CSV"
}

main "$@"
