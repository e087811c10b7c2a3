#!/usr/bin/env bash
# Start a small signed hierarchy for dotstub's DNSSEC interop tests: nsd
# serves it on 127.0.0.1:8855, a NON-validating unbound (module-config
# "iterator") resolves it through stub zones and offers DNS-over-TLS on
# 127.0.0.1:8854 with a throwaway CA. Meant to be sourced
# (`source .ci/interop-dnssec.sh`), like .ci/interop-unbound.sh: installs
# nsd/ldnsutils/unbound/openssl/procps if missing, makes keys with ldns-keygen and
# signs with ldns-signzone in a temp dir, starts nsd and unbound in the
# background, checks that they answer (and that unbound answers nothing
# outside test.), exports
#   DOTSTUB_INTEROP_DNSSEC_ADDR=127.0.0.1:8854
#   DOTSTUB_INTEROP_DNSSEC_NAME=resolver.test
#   DOTSTUB_INTEROP_DNSSEC_CA=<temp dir>/ca.pem
#   DOTSTUB_INTEROP_DNSSEC_ANCHOR=<temp dir>/anchor-ds     (DS of test.'s KSK)
#   DOTSTUB_INTEROP_DNSSEC_ANCHOR_DNSKEY=<temp dir>/anchor-dnskey (that KSK)
# and defines `stop_dnssec` (stops both servers, removes the temp dir) for the
# caller to trap on EXIT. Run directly, it leaves them up, prints the exports.
# The hierarchy (tests/it/interop_dnssec.rs expects exactly this):
#   test.              ECDSAP256SHA256 KSK + ZSK, NSEC; the trust anchor.
#                      www A 192.0.2.1; nx.test. does not exist.
#   secure.test.       ED25519 KSK + ZSK, DS in test.; www A 192.0.2.2,
#                      txt TXT "dotstub dnssec interop"; no www TXT.
#   insecure.test.     unsigned, delegated without DS; www A 192.0.2.3.
#   bogus.test.        ECDSAP256SHA256, DS in test.; www A 192.0.2.4 with its
#                      RRSIG's signature corrupted after signing.
#   ds-mismatch.test.  ECDSAP256SHA256, but the DS in test. is the digest of
#                      a key that is published nowhere; www A 192.0.2.5.
# All NS records name ns.test. (127.0.0.1), so no query needs a referral.

# shellcheck source=.ci/test-ca.sh
source "$(dirname "${BASH_SOURCE[0]}")/test-ca.sh"

DNSSEC_PORT=8854
DNSSEC_NSD_PORT=8855
DNSSEC_NAME=resolver.test
# Unexported on purpose: a child shell sourcing this file never stops ours.
_DNSSEC_NSD_PID="" _DNSSEC_UNBOUND_PID="" DNSSEC_DIR=""

stop_dnssec() {
    local started=() below=() pid i
    # nsd -d still forks: the process we started turns into xfrd, its child
    # is the main server, whose children answer. Stop the two we started and
    # wait for all of those, so nothing of ours outlives the run.
    for pid in "$_DNSSEC_UNBOUND_PID" "$_DNSSEC_NSD_PID"; do [ -z "$pid" ] || started+=("$pid"); done
    [ -z "$_DNSSEC_NSD_PID" ] || mapfile -t below < <(_dnssec_descendants "$_DNSSEC_NSD_PID")
    for pid in "${started[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${started[@]}" "${below[@]}"; do
        for i in $(seq 50); do _dnssec_alive "$pid" || break; sleep 0.1; done
        if _dnssec_alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
    done
    for pid in "${started[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -n "$DNSSEC_DIR" ]; then rm -rf "$DNSSEC_DIR"; fi
    _DNSSEC_NSD_PID="" _DNSSEC_UNBOUND_PID="" DNSSEC_DIR=""
}

# The pids of the processes below $1, children first.
_dnssec_descendants() {
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$child"
        _dnssec_descendants "$child"
    done
}

# Whether process $1 runs (a zombie does not).
_dnssec_alive() {
    local stat
    stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ $stat != *Z* ]]
}

#---- Zones ----

# The unsigned text of zone $1 (apex without the trailing dot), then $2...
# as records relative to it.
_dnssec_zone() {
    local zone=$1
    shift
    printf '%s\n' "\$ORIGIN $zone." "\$TTL 300" \
        "@ SOA ns.test. hostmaster.test. 1 3600 600 86400 300" "@ NS ns.test." "$@"
}

# Makes a key for zone $1 in the current directory, $2 = algorithm, $3 = -k
# for a KSK; prints its base name.
_dnssec_key() {
    ldns-keygen -a "$2" ${3:+"$3"} "$1." 2>/dev/null
}

# Signs $1.zone into $1.zone.signed with the keys $2..., valid from a day ago
# to a week ahead.
_dnssec_sign() {
    local zone=$1 from until
    shift
    from=$(date -u -d '1 day ago' +%Y%m%d%H%M%S) until=$(date -u -d '7 days' +%Y%m%d%H%M%S)
    ldns-signzone -i "$from" -e "$until" -o "$zone." -f "$zone.zone.signed" "$zone.zone" "$@"
}

# The signed hierarchy, in $DNSSEC_DIR/zones; a subshell, for the `cd`.
_dnssec_zones() (
    local ksk zsk secure_ksk secure_zsk bogus_key mismatch_key unpublished
    mkdir "$DNSSEC_DIR/zones" && cd "$DNSSEC_DIR/zones" || return 1
    ksk=$(_dnssec_key test ECDSAP256SHA256 -k) && zsk=$(_dnssec_key test ECDSAP256SHA256) &&
        secure_ksk=$(_dnssec_key secure.test ED25519 -k) &&
        secure_zsk=$(_dnssec_key secure.test ED25519) &&
        bogus_key=$(_dnssec_key bogus.test ECDSAP256SHA256 -k) &&
        mismatch_key=$(_dnssec_key ds-mismatch.test ECDSAP256SHA256 -k) &&
        unpublished=$(_dnssec_key ds-mismatch.test ECDSAP256SHA256 -k) || return 1

    _dnssec_zone secure.test "www A 192.0.2.2" 'txt TXT "dotstub dnssec interop"' >secure.test.zone
    _dnssec_zone insecure.test "www A 192.0.2.3" >insecure.test.zone
    _dnssec_zone bogus.test "www A 192.0.2.4" >bogus.test.zone
    _dnssec_zone ds-mismatch.test "www A 192.0.2.5" >ds-mismatch.test.zone
    _dnssec_sign secure.test "$secure_ksk" "$secure_zsk" &&
        _dnssec_sign bogus.test "$bogus_key" &&
        _dnssec_sign ds-mismatch.test "$mismatch_key" || return 1
    cp insecure.test.zone insecure.test.zone.signed
    # Flip the first character of www.bogus.test.'s A signature (base64).
    awk 'BEGIN { FS = OFS = "\t" }
        $1 == "www.bogus.test." && $4 == "RRSIG" && $5 ~ /^A / {
            n = split($5, f, " "); c = substr(f[n], 1, 1) == "A" ? "B" : "A"
            sub(/[^ ]+$/, c substr(f[n], 2), $5); hit = 1 }
        { print } END { exit !hit }' bogus.test.zone.signed >bogus.signed.tmp ||
        { echo "error: no RRSIG over www.bogus.test. A to corrupt" >&2; return 1; }
    mv bogus.signed.tmp bogus.test.zone.signed

    {
        _dnssec_zone test "ns A 127.0.0.1" "www A 192.0.2.1" \
            "secure NS ns.test." "insecure NS ns.test." "bogus NS ns.test." "ds-mismatch NS ns.test."
        ldns-key2ds -n -2 "$secure_ksk.key" && ldns-key2ds -n -2 "$bogus_key.key" &&
            ldns-key2ds -n -2 "$unpublished.key"
    } >test.zone || return 1
    _dnssec_sign test "$ksk" "$zsk" || return 1
    ldns-key2ds -n -2 "$ksk.key" >"$DNSSEC_DIR/anchor-ds" &&
        cp "$ksk.key" "$DNSSEC_DIR/anchor-dnskey"
)

#---- Servers ----

_dnssec_nsd_conf() {
    local d="$DNSSEC_DIR" zone
    printf '%s\n' "server:" "ip-address: 127.0.0.1@$DNSSEC_NSD_PORT" "port: $DNSSEC_NSD_PORT" \
        "do-ip6: no" 'username: ""' 'chroot: ""' "zonesdir: \"$d/zones\"" 'database: ""' \
        "pidfile: \"$d/nsd.pid\"" "logfile: \"$d/nsd.log\"" "xfrdfile: \"$d/xfrd.state\"" \
        "xfrdir: \"$d\"" "zonelistfile: \"$d/zone.list\"" "server-count: 1" "verbosity: 1" \
        "remote-control:" "control-enable: no"
    for zone in test secure.test insecure.test bogus.test ds-mismatch.test; do
        printf '%s\n' "zone:" "name: \"$zone.\"" "zonefile: \"$zone.zone.signed\""
    done
}

_dnssec_unbound_conf() {
    local d="$DNSSEC_DIR" zone
    printf '%s\n' "server:" "interface: 127.0.0.1@$DNSSEC_PORT" "tls-port: $DNSSEC_PORT" \
        "tls-service-key: \"$d/server.key\"" "tls-service-pem: \"$d/server.pem\"" \
        "do-daemonize: no" 'chroot: ""' 'username: ""' "directory: \"$d\"" \
        "pidfile: \"$d/unbound.pid\"" "use-syslog: no" "logfile: \"$d/unbound.log\"" \
        "verbosity: 1" "num-threads: 1" "do-ip6: no" "access-control: 127.0.0.0/8 allow" \
        "incoming-num-tcp: 100" "tcp-idle-timeout: 10000"
    # Non-validating: dotstub is the validator under test. No validator also
    # means no trust-anchor fetches.
    printf '%s\n' 'module-config: "iterator"'
    # Nothing may leave loopback. Clients get REFUSED for every name outside
    # test. ("test." is one of unbound's default static zones, so it is made
    # transparent to let the stub zones answer). Every zone, the root too,
    # is a stub zone on nsd, so the iterator never uses the root hints; and
    # as a last fence queries go out from 127.0.0.1, which cannot reach
    # anything but loopback.
    printf '%s\n' 'local-zone: "." refuse' 'local-zone: "test." transparent' \
        "do-not-query-localhost: no" "outgoing-interface: 127.0.0.1"
    printf '%s\n' "remote-control:" "control-enable: no"
    for zone in . test. secure.test. insecure.test. bogus.test. ds-mismatch.test.; do
        printf '%s\n' "stub-zone:" "name: \"$zone\"" "stub-addr: 127.0.0.1@$DNSSEC_NSD_PORT"
    done
}

_dnssec_certs() {
    make_test_ca "$DNSSEC_DIR" "$DNSSEC_NAME" "dotstub DNSSEC interop test CA"
}

# The rcode of `drill` asking 127.0.0.1 port $1 for $2 (name) $3 (type).
_dnssec_rcode() {
    drill -p "$1" "$2" "$3" @127.0.0.1 2>/dev/null | sed -n 's/.*rcode: \([A-Z]*\).*/\1/p'
}

# Fails when a server listens on port $1 already.
_dnssec_port_free() {
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
        echo "error: 127.0.0.1:$1 is already in use" >&2
        return 1
    fi
}

_dnssec_install() {
    local need=() i policy=/usr/sbin/policy-rc.d own=""
    command -v nsd >/dev/null || need+=(nsd)
    command -v ldns-signzone >/dev/null && command -v drill >/dev/null || need+=(ldnsutils)
    command -v unbound >/dev/null || need+=(unbound)
    command -v openssl >/dev/null || need+=(openssl)
    command -v ps >/dev/null || need+=(procps)
    [ "${#need[@]}" -gt 0 ] || return 0
    # A policy-rc.d that says 101 keeps the packages from starting the system
    # nsd and unbound (unbound would prime the root from outside).
    [ -e "$policy" ] || { printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own=1; }
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
    i=$?
    [ -z "$own" ] || rm -f "$policy"
    return "$i"
}

_dnssec_start_nsd() {
    local d="$DNSSEC_DIR" i
    _dnssec_nsd_conf >"$d/nsd.conf"
    nsd-checkconf "$d/nsd.conf" || return 1
    nsd -d -c "$d/nsd.conf" >"$d/nsd.out" 2>&1 </dev/null &
    _DNSSEC_NSD_PID=$!
    for i in $(seq 50); do
        kill -0 "$_DNSSEC_NSD_PID" 2>/dev/null || break
        [ "$(_dnssec_rcode "$DNSSEC_NSD_PORT" test. SOA)" = NOERROR ] && return 0
        sleep 0.2
    done
    echo "error: nsd did not answer on 127.0.0.1:$DNSSEC_NSD_PORT; output and log:" >&2
    cat "$d/nsd.out" "$d/nsd.log" >&2 2>/dev/null || true
    return 1
}

_dnssec_start_unbound() {
    local d="$DNSSEC_DIR"
    _dnssec_unbound_conf >"$d/unbound.conf"
    unbound-checkconf "$d/unbound.conf" >/dev/null || return 1
    unbound -d -c "$d/unbound.conf" >"$d/unbound.out" 2>&1 </dev/null &
    _DNSSEC_UNBOUND_PID=$!
    wait_for_tls "$_DNSSEC_UNBOUND_PID" "$DNSSEC_PORT" "$DNSSEC_NAME" "$d/ca.pem" && return 0
    echo "error: unbound did not accept TLS on 127.0.0.1:$DNSSEC_PORT; output and log:" >&2
    cat "$d/unbound.out" "$d/unbound.log" >&2 2>/dev/null || true
    return 1
}

# unbound answers for test. (through nsd) and refuses everything else.
_dnssec_check_fence() {
    local name want got
    for name in www.secure.test.:NOERROR nx.test.:NXDOMAIN .:REFUSED example.com.:REFUSED; do
        want=${name##*:} name=${name%:*}
        got=$(_dnssec_rcode "$DNSSEC_PORT" "$name" A)
        if [ "$got" != "$want" ]; then
            echo "error: unbound answered $name with '${got:-nothing}', expected $want" >&2
            return 1
        fi
    done
}

_dnssec_start() {
    _dnssec_install || return 1
    _dnssec_port_free "$DNSSEC_NSD_PORT" && _dnssec_port_free "$DNSSEC_PORT" || return 1
    DNSSEC_DIR=$(mktemp -d "${TMPDIR:-/tmp}/dotstub-dnssec.XXXXXX") || return 1
    _dnssec_zones || { echo "error: making the signed zones failed" >&2; return 1; }
    _dnssec_certs || { echo "error: openssl failed" >&2; return 1; }
    _dnssec_start_nsd && _dnssec_start_unbound && _dnssec_check_fence || return 1
    export DOTSTUB_INTEROP_DNSSEC_ADDR="127.0.0.1:$DNSSEC_PORT" \
        DOTSTUB_INTEROP_DNSSEC_NAME="$DNSSEC_NAME" \
        DOTSTUB_INTEROP_DNSSEC_CA="$DNSSEC_DIR/ca.pem" \
        DOTSTUB_INTEROP_DNSSEC_ANCHOR="$DNSSEC_DIR/anchor-ds" \
        DOTSTUB_INTEROP_DNSSEC_ANCHOR_DNSKEY="$DNSSEC_DIR/anchor-dnskey"
    echo "nsd $(nsd -v 2>&1 | head -n1 | sed 's/.* //') on 127.0.0.1:$DNSSEC_NSD_PORT" \
        "(pid $_DNSSEC_NSD_PID), unbound on 127.0.0.1:$DNSSEC_PORT (pid $_DNSSEC_UNBOUND_PID)," \
        "dir $DNSSEC_DIR; trust anchor: $(cat "$DNSSEC_DIR/anchor-ds")"
}

if ! _dnssec_start; then
    stop_dnssec
    # shellcheck disable=SC2317 # exit is reached only when run, not sourced
    return 1 2>/dev/null || exit 1
fi
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    env | grep '^DOTSTUB_INTEROP_DNSSEC_' | sed 's/^/export /'
fi
