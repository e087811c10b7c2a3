#!/usr/bin/env bash
# Start a throwaway unbound as a DNS-over-TLS server on 127.0.0.1:8853 for the
# dotstub interop tests. Meant to be sourced (`source .ci/interop-unbound.sh`):
# installs unbound/openssl if missing, makes a temp dir with a test CA, a server
# certificate for "unbound.test" and an unbound.conf serving only local data,
# starts unbound in the background, waits until TLS handshakes succeed, exports
#   DOTSTUB_INTEROP_UNBOUND_ADDR=127.0.0.1:8853
#   DOTSTUB_INTEROP_UNBOUND_NAME=unbound.test
#   DOTSTUB_INTEROP_UNBOUND_CA=<temp dir>/ca.pem
#   DOTSTUB_INTEROP_UNBOUND_PID=<pid of unbound>
# and defines `stop_unbound` (kills that unbound, removes the temp dir) for the
# caller to trap on EXIT. Run directly, it leaves unbound up, prints the exports.
# Zone interop.test. (the tests compute the same data):
#   www  A 192.0.2.10, AAAA 2001:db8::10;   txt  TXT "dotstub interop"
#   n<i> A 198.51.100.<i>   for i = 0..199
#   big  20 TXT records; record k (0..19) is "big-" k (2 digits) "-" then 'x'
#        up to 100 characters, e.g. "big-07-xxx...x"; the answer is > 2000 octets.

# shellcheck source=.ci/test-ca.sh
source "$(dirname "${BASH_SOURCE[0]}")/test-ca.sh"

UNBOUND_PORT=8853
UNBOUND_NAME=unbound.test
# Unexported on purpose: a child shell sourcing this file never stops our unbound.
_UNBOUND_PID="" UNBOUND_DIR=""

stop_unbound() {
    local pid="$_UNBOUND_PID" i
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    if [ -n "$UNBOUND_DIR" ]; then rm -rf "$UNBOUND_DIR"; fi
    _UNBOUND_PID="" UNBOUND_DIR="" && unset DOTSTUB_INTEROP_UNBOUND_PID
}

_unbound_conf() {
    local d="$UNBOUND_DIR" i k s
    printf '%s\n' "server:" "interface: 127.0.0.1@$UNBOUND_PORT" "tls-port: $UNBOUND_PORT" \
        "tls-service-key: \"$d/server.key\"" "tls-service-pem: \"$d/server.pem\"" \
        "do-daemonize: no" 'chroot: ""' 'username: ""' "directory: \"$d\"" \
        "pidfile: \"$d/unbound.pid\"" "use-syslog: no" "logfile: \"$d/unbound.log\"" \
        "verbosity: 1" "num-threads: 1" "do-ip6: no" "do-not-query-localhost: yes" \
        "access-control: 127.0.0.0/8 allow" "pad-responses: yes" \
        "pad-responses-block-size: 468" "incoming-num-tcp: 100" "tcp-idle-timeout: 10000"
    # Nothing may leave loopback: every name outside interop.test. is answered
    # REFUSED by the "." local zone (the more specific static zone wins), so the
    # iterator never runs; as a second fence no upstream address is allowed at
    # all. No validator module, hence no trust-anchor fetches either.
    printf '%s\n' 'module-config: "iterator"' "do-not-query-address: 0.0.0.0/0" \
        "do-not-query-address: ::/0" 'local-zone: "." refuse' 'local-zone: "interop.test." static' \
        'local-data: "www.interop.test. 300 IN A 192.0.2.10"' \
        'local-data: "www.interop.test. 300 IN AAAA 2001:db8::10"' \
        "local-data: 'txt.interop.test. 300 IN TXT \"dotstub interop\"'"
    for i in $(seq 0 199); do echo "local-data: \"n$i.interop.test. 300 IN A 198.51.100.$i\""; done
    for k in $(seq 0 19); do
        printf -v s 'big-%02d-%s' "$k" "$(printf 'x%.0s' $(seq 93))"
        echo "local-data: 'big.interop.test. 300 IN TXT \"$s\"'"
    done
    printf '%s\n' "remote-control:" "control-enable: no"
}

_unbound_certs() {
    make_test_ca "$UNBOUND_DIR" "$UNBOUND_NAME" "dotstub interop test CA"
}

_unbound_start() {
    local need=() i
    command -v unbound >/dev/null || need+=(unbound)
    command -v openssl >/dev/null || need+=(openssl)
    if [ "${#need[@]}" -gt 0 ]; then
        # A policy-rc.d that says 101 keeps the package from starting the system
        # unbound (it would prime the root and fetch trust anchors from outside).
        local policy=/usr/sbin/policy-rc.d own=""
        [ -e "$policy" ] || { printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own=1; }
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
        i=$?; [ -z "$own" ] || rm -f "$policy"; [ "$i" -eq 0 ] || return 1
    fi
    # If a system unbound (port 53) runs anyway, stop it: ours has its own
    # config and port, but it should stay out of the way.
    if command -v systemctl >/dev/null && systemctl is-active --quiet unbound 2>/dev/null; then
        systemctl stop unbound || true
    elif service unbound status >/dev/null 2>&1; then
        service unbound stop >/dev/null 2>&1 || true
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$UNBOUND_PORT") 2>/dev/null; then
        echo "error: 127.0.0.1:$UNBOUND_PORT is already in use" >&2; return 1
    fi
    UNBOUND_DIR=$(mktemp -d "${TMPDIR:-/tmp}/dotstub-unbound.XXXXXX") || return 1
    _unbound_certs || { echo "error: openssl failed" >&2; return 1; }
    _unbound_conf >"$UNBOUND_DIR/unbound.conf"
    unbound-checkconf "$UNBOUND_DIR/unbound.conf" >/dev/null || return 1
    unbound -d -c "$UNBOUND_DIR/unbound.conf" >"$UNBOUND_DIR/unbound.out" 2>&1 </dev/null &
    _UNBOUND_PID=$!
    if wait_for_tls "$_UNBOUND_PID" "$UNBOUND_PORT" "$UNBOUND_NAME" "$UNBOUND_DIR/ca.pem"; then
        export DOTSTUB_INTEROP_UNBOUND_ADDR="127.0.0.1:$UNBOUND_PORT" \
            DOTSTUB_INTEROP_UNBOUND_NAME="$UNBOUND_NAME" \
            DOTSTUB_INTEROP_UNBOUND_CA="$UNBOUND_DIR/ca.pem" \
            DOTSTUB_INTEROP_UNBOUND_PID="$_UNBOUND_PID"
        echo "unbound $(unbound -V | head -n1) up: pid $_UNBOUND_PID, dir $UNBOUND_DIR"
        return 0
    fi
    echo "error: unbound did not accept TLS on 127.0.0.1:$UNBOUND_PORT; output and log:" >&2
    cat "$UNBOUND_DIR/unbound.out" "$UNBOUND_DIR/unbound.log" >&2 2>/dev/null || true
    return 1
}

if ! _unbound_start; then
    stop_unbound
    # shellcheck disable=SC2317 # exit is reached only when run, not sourced
    return 1 2>/dev/null || exit 1
fi
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    env | grep '^DOTSTUB_INTEROP_UNBOUND_' | sed 's/^/export /'
fi
