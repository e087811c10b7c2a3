# shellcheck shell=bash
# Sourced by the interop scripts: a throwaway CA and a server certificate
# signed by it, for a local DoT server that dotstub must authenticate.
#
#   make_test_ca DIR NAME CA_NAME
#     writes DIR/ca.pem (the root to trust), DIR/server.pem and
#     DIR/server.key (a P-256 certificate for the DNS name NAME, 3 days).
#   wait_for_tls PID PORT NAME CA_FILE
#     waits (10 s at most) until the server on 127.0.0.1:PORT completes a
#     TLS handshake verified for NAME against CA_FILE; fails when process
#     PID exits first or time runs out.

make_test_ca() {
    local d="$1" name="$2" ca_name="$3" ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
    openssl req -x509 "${ec[@]}" -keyout "$d/ca.key" -out "$d/ca.pem" -days 3 \
        -subj "/CN=$ca_name" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null || return 1
    openssl req -new "${ec[@]}" -keyout "$d/server.key" -out "$d/server.csr" \
        -subj "/CN=$name" 2>/dev/null || return 1
    printf '%s\n' "subjectAltName=DNS:$name" "extendedKeyUsage=serverAuth" \
        "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
        "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" >"$d/server.ext"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -days 3 -extfile "$d/server.ext" -out "$d/server.pem" 2>/dev/null
}

wait_for_tls() {
    local pid="$1" port="$2" name="$3" ca="$4" _
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 1
        if timeout 3 openssl s_client -connect "127.0.0.1:$port" -servername "$name" \
            -CAfile "$ca" -verify_hostname "$name" -verify_return_error \
            </dev/null >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}
