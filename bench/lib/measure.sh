# bench/lib/measure.sh: the rows of the table. Each function runs one bounded
# measurement against $TARGET and appends its numbers to $CSV.
# shellcheck shell=bash

# record RUN CONTENDER ROW VALUE ERRORS NOTE
record() { local q='"' note=${6//\"/\"\"}; printf '%s,%s,%s,%s,%s,%s\n' "$1" "$2" "$3" "$4" "$5" "$q$note$q" >>"$CSV"; }

# wrk_once CONNS URL [wrk args...]: runs wrk on the load core; sets W_* from the
# reporter line. wrk is bounded by -d and by an outer timeout.
wrk_once() {
    local conns=$1 url=$2 out line
    shift 2
    out=$(timeout -k 5 $((DURATION + 30)) taskset -c "$CPU_LOAD" \
        wrk -t1 -c"$conns" -d"${DURATION}s" --timeout 5s -s "$LIB/report.lua" "$@" "$url" 2>&1) || true
    line=$(grep '^RESULT ' <<<"$out" || true)
    if [[ -z $line ]]; then
        log "wrk gave no result for $url: $(tail -2 <<<"$out" | tr '\n' ' ')"
        W_OK=0
        return
    fi
    W_OK=1
    eval "$(sed 's/^RESULT //; s/\([a-z0-9_]*\)=/W_\1=/g' <<<"$line")"
    W_ERRORS=$((W_err_connect + W_err_read + W_err_write + W_err_status + W_err_timeout))
    W_SECS=$(awk -v d="$W_duration_us" 'BEGIN {print d / 1e6}')
}

rate() { awk -v n="$1" -v s="$W_SECS" 'BEGIN {printf "%.0f", n / s}'; }
mbps() { awk -v n="$W_bytes" -v s="$W_SECS" 'BEGIN {printf "%.1f", n / s / 1e6}'; }
ms() { awk -v u="$1" 'BEGIN {printf "%.3f", u / 1000}'; }
errnote() {
    ((W_ERRORS == 0)) && return
    echo "errors: connect $W_err_connect read $W_err_read write $W_err_write status $W_err_status timeout $W_err_timeout of $W_requests"
}

# keepalive RUN NAME ROWPREFIX CONNS URL
m_keepalive() {
    local run=$1 name=$2 row=$3 conns=$4 url=$5
    wrk_once "$conns" "$url"
    if ((!W_OK)); then record "$run" "$name" "${row}_rps" n/a 0 "wrk failed"; return; fi
    record "$run" "$name" "${row}_rps" "$(rate "$W_requests")" "$W_ERRORS" "$(errnote)"
    record "$run" "$name" "${row}_p50" "$(ms "$W_p50_us")" "$W_ERRORS" ""
    record "$run" "$name" "${row}_p99" "$(ms "$W_p99_us")" "$W_ERRORS" ""
}

# m_close RUN NAME ROW CONNS URL: one request per connection; wrk reconnects
# after each `Connection: close` answer.
m_close() {
    local run=$1 name=$2 row=$3 conns=$4 url=$5
    wrk_once "$conns" "$url" -H "Connection: close"
    if ((!W_OK)); then record "$run" "$name" "$row" n/a 0 "wrk failed"; return; fi
    record "$run" "$name" "$row" "$(rate "$W_requests")" "$W_ERRORS" "$(errnote)"
}

# m_handshakes RUN NAME ROW HOSTPORT: full TLS handshakes/s, each followed by one
# HTTP/1.0 GET of /. Not wrk: on reconnect wrk reuses its SSL object (SSL_clear),
# so it resumes the session whenever the server issues tickets, and servers
# differ there. `openssl s_time -new` starts a fresh session every time; it runs
# one connection at a time, so HS_CLIENTS copies run side by side.
m_handshakes() {
    local run=$1 name=$2 row=$3 hostport=$4 i total=0 n dir=$WORK/s_time pids=()
    mkdir -p "$dir"
    for ((i = 0; i < HS_CLIENTS; i++)); do
        timeout -k 5 $((DURATION + 30)) taskset -c "$CPU_LOAD" \
            openssl s_time -new -connect "$hostport" -www / -time "$DURATION" >"$dir/$i" 2>&1 &
        pids+=($!)
    done
    wait "${pids[@]}" || true
    for ((i = 0; i < HS_CLIENTS; i++)); do
        # "N connections in T real seconds, B bytes read per connection"
        n=$(sed -n 's/^\([0-9]*\) connections in [0-9]* real seconds.*/\1/p' "$dir/$i")
        if [[ -z $n ]]; then
            record "$run" "$name" "$row" n/a 0 "openssl s_time failed: $(grep -v '^\s*$' "$dir/$i" | tail -1 | cut -c1-120)"
            rm -rf "$dir"
            return
        fi
        total=$((total + n))
    done
    rm -rf "$dir"
    record "$run" "$name" "$row" "$(awk -v n="$total" -v d="$DURATION" 'BEGIN {printf "%.0f", n / d}')" 0 ""
}

# m_bytes RUN NAME ROW CONNS URL: MB/s (10^6 bytes) of response bytes read.
m_bytes() {
    local run=$1 name=$2 row=$3 conns=$4 url=$5
    wrk_once "$conns" "$url"
    if ((!W_OK)); then record "$run" "$name" "$row" n/a 0 "wrk failed"; return; fi
    record "$run" "$name" "$row" "$(mbps)" "$W_ERRORS" "$(errnote)"
}

# m_idle RUN NAME PID PORT
m_idle() {
    local run=$1 name=$2 pid=$3 port=$4 out line
    out=$(timeout -k 5 180 taskset -c "$CPU_LOAD" python3 "$LIB/idle_conns.py" \
        --port "$port" --pid "$pid" -n "$IDLE_CONNS" 2>&1) || true
    line=$(grep '^RESULT ' <<<"$out" || true)
    if [[ -z $line ]]; then
        record "$run" "$name" idle_kib n/a 0 "idle test failed: $(tail -1 <<<"$out")"
        return
    fi
    local I_rss_before_kib I_rss_after_kib I_open I_errors I_per_conn_kib I_open_s
    eval "$(sed 's/^RESULT //; s/\([a-z0-9_]*\)=/I_\1=/g' <<<"$line")"
    local note="rss ${I_rss_before_kib}->${I_rss_after_kib} KiB; $I_open open"
    ((I_errors > 0)) && note="$note; $I_errors failed: $(grep -m1 '^first error' <<<"$out")"
    record "$run" "$name" idle_kib "$I_per_conn_kib" "$I_errors" "$note"
}

# run_suite RUN NAME SUITE: every row of SUITE against the running contender.
run_suite() {
    local run=$1 name=$2 suite=$3
    case $suite in
    http)
        # Warm-up: fill the upstream pools and page in the code.
        DURATION=1 wrk_once 50 "$TARGET/" >/dev/null
        m_keepalive "$run" "$name" ka50 50 "$TARGET/"
        m_keepalive "$run" "$name" ka200 200 "$TARGET/"
        m_close "$run" "$name" close_cps 50 "$TARGET/"
        m_bytes "$run" "$name" body1m_mbs 10 "$TARGET/1m"
        ;;
    https)
        DURATION=1 wrk_once 50 "$TARGET/" >/dev/null
        m_keepalive "$run" "$name" tls50 50 "$TARGET/"
        m_handshakes "$run" "$name" tls_hs "${TARGET#https://}"
        ;;
    tcp)
        DURATION=1 wrk_once 10 "$TARGET/1m" >/dev/null
        m_bytes "$run" "$name" l4_mbs 10 "$TARGET/1m"
        ;;
    idle)
        m_idle "$run" "$name" "$TARGET_PID" "${TARGET##*:}"
        ;;
    esac
}
