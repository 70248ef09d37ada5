# bench/lib/contenders.sh: starting and stopping the backends and each contender
# for one suite (http, https, tcp, idle). A contender that cannot serve a suite is
# either "not applicable" (e.g. HAProxy mode http on the L4 row) or "n/a" with the
# reason its own config check gave (e.g. a quorumlb build without `tcp`).
# shellcheck shell=bash

# Sets USER_LINE so nginx workers can read the bench files when run as root.
nginx_common_vars() {
    USER_LINE=""
    if ((EUID == 0)); then USER_LINE="user root root;"; fi
    CERT=$WORK/tls/cert.pem KEY=$WORK/tls/key.pem FILES=$WORK/files
}

make_files() {
    mkdir -p "$WORK/files" "$WORK/tls"
    head -c $((1024 * 1024)) /dev/urandom >"$WORK/files/1m.bin"
    # ECDSA P-256: what a current deployment serves; every contender uses this pair.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=bench.local -addext subjectAltName=DNS:bench.local,IP:127.0.0.1 \
        -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" >/dev/null 2>&1 ||
        die "openssl could not make the test certificate"
    cat "$WORK/tls/cert.pem" "$WORK/tls/key.pem" >"$WORK/tls/haproxy.pem"
}

start_backends() {
    nginx_common_vars
    local i port DIR PORT TLS_LISTEN
    for i in 1 2 3; do
        port=$((BE_BASE + i))
        DIR=$WORK/be$i PORT=$port TLS_LISTEN=""
        ((i == 1)) && TLS_LISTEN="listen 127.0.0.1:$BE_TLS_PORT ssl backlog=4096;"
        mkdir -p "$DIR"
        render "$CONF/backend-nginx.conf.tmpl" "$DIR/nginx.conf"
        spawn "backend$i" "$CPU_LOAD" "$DIR/log" nginx -p "$DIR" -c "$DIR/nginx.conf" -e stderr
        wait_port 127.0.0.1 "$port" 10 || die "backend $i did not start: $(tail -5 "$DIR/log")"
    done
    wait_port 127.0.0.1 "$BE_TLS_PORT" 10 || die "backend 1 TLS port did not start"
}

# applies CONTENDER SUITE: 0 when the pairing is a row of the table at all.
applies() {
    case "$1:$2" in
        direct:idle) return 1 ;;        # no proxy, nothing to measure
        haproxy-http:tcp) return 1 ;;   # the L4 row is HAProxy's mode tcp
        *) return 0 ;;
    esac
}

# start_contender NAME SUITE: starts NAME serving SUITE on $PORT (or $TLS_PORT),
# sets TARGET (the URL base) and TARGET_PID. Returns 1 with NA_REASON set when
# the contender refused its config.
start_contender() {
    local name=$1 suite=$2 dir=$WORK/$1-$2 port=$PORT scheme=http
    NA_REASON="" TARGET_PID=""
    [[ $suite == https ]] && { port=$TLS_PORT scheme=https; }
    mkdir -p "$dir"
    nginx_common_vars
    BE1=$((BE_BASE + 1)) BE2=$((BE_BASE + 2)) BE3=$((BE_BASE + 3)) DIR=$dir
    case $name in
    direct)
        if [[ $suite == https ]]; then TARGET=https://127.0.0.1:$BE_TLS_PORT; else TARGET=http://127.0.0.1:$BE1; fi
        return 0
        ;;
    quorumlb)
        local proto=$suite
        [[ $suite == idle ]] && proto=http
        PROTO=$proto LISTENER_EXTRA=""
        [[ $suite == https ]] && LISTENER_EXTRA=$'  [[listener.certificate]]\n  cert_file = "'"$CERT"$'"\n  key_file = "'"$KEY"'"'
        local PORT=$port
        render "$CONF/quorumlb.toml.tmpl" "$dir/lb.toml"
        if ! "$QUORUMLB" validate --config "$dir/lb.toml" >"$dir/validate.log" 2>&1; then
            NA_REASON="not supported by this build: $(grep -v '^\s*$' "$dir/validate.log" | head -1 | sed "s|$dir/||")"
            return 1
        fi
        spawn quorumlb "$CPU_PROXY" "$dir/log" env RUST_LOG=warn "$QUORUMLB" run --config "$dir/lb.toml"
        ;;
    nginx)
        LOAD_STREAM="" SSL=""
        local PORT=$port
        if [[ $suite == tcp ]]; then
            [[ -f $NGINX_STREAM_MODULE ]] || { NA_REASON="nginx stream module not installed ($NGINX_STREAM_MODULE)"; return 1; }
            LOAD_STREAM="load_module $NGINX_STREAM_MODULE;"
            render "$CONF/nginx-tcp.inc.tmpl" "$dir/block"
        else
            [[ $suite == https ]] && SSL=ssl
            render "$CONF/nginx-http.inc.tmpl" "$dir/block"
        fi
        BLOCK=$(<"$dir/block")
        render "$CONF/nginx.conf.tmpl" "$dir/nginx.conf"
        if ! nginx -t -q -p "$dir" -c "$dir/nginx.conf" -e stderr >"$dir/validate.log" 2>&1; then
            NA_REASON="nginx refused its config: $(head -1 "$dir/validate.log")"
            return 1
        fi
        spawn nginx "$CPU_PROXY" "$dir/log" nginx -p "$dir" -c "$dir/nginx.conf" -e stderr
        ;;
    haproxy-http | haproxy-tcp)
        local PORT=$port BIND_SSL="" SCHEME=$scheme
        [[ $suite == https ]] && BIND_SSL="ssl crt $WORK/tls/haproxy.pem"
        render "$CONF/$name.cfg.tmpl" "$dir/haproxy.cfg"
        if ! haproxy -c -q -f "$dir/haproxy.cfg" >"$dir/validate.log" 2>&1; then
            NA_REASON="haproxy refused its config: $(head -1 "$dir/validate.log")"
            return 1
        fi
        spawn "$name" "$CPU_PROXY" "$dir/log" haproxy -db -f "$dir/haproxy.cfg"
        ;;
    *) die "unknown contender $name" ;;
    esac
    TARGET=$scheme://127.0.0.1:$port
    TARGET_PID=$(<"$WORK/pids/$name.pid")
    if ! wait_port 127.0.0.1 "$port" 10 "$TARGET_PID"; then
        NA_REASON="did not start listening: $(grep -v '^\s*$' "$dir/log" | tail -1 | cut -c1-160)"
        stop "$name"
        return 1
    fi
}

stop_contender() {
    local name=$1 port=$PORT
    [[ $name == direct ]] && return 0
    stop "$name"
    [[ $2 == https ]] && port=$TLS_PORT
    wait_port_free "$port" 10 || die "port $port still in use after stopping $name"
}
