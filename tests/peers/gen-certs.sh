#!/usr/bin/env bash
# Regenerates the test certificates under tests/peers/certs/ (committed, so the
# tests never run openssl to get them). Valid for 100 years; test use only.
#
#   ca.crt / ca.key       "hearth e2e test CA": signs both leaves below.
#   edge.crt / edge.key   the edge's own certificate (tls.certificates in the
#                         e2e configs): hearth.test, lk.hearth.test.
#   turn.crt / turn.key   coturn's certificate (and the bench's TLS nginx): the
#                         edge passes turn.hearth.test through, so a client must
#                         see THIS certificate, never the edge's.
set -euo pipefail
cd "$(dirname "$0")/certs"

DAYS=36500

ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ec_key ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$DAYS" -out ca.crt \
    -subj "/O=hearth-wasm-edge tests/CN=hearth e2e test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"

leaf() { # name, subject CN, SANs
    local name=$1 cn=$2 sans=$3
    ec_key "$name.key"
    openssl req -new -key "$name.key" -subj "/O=hearth-wasm-edge tests/CN=$cn" -out "$name.csr"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" \
        "subjectAltName=$sans" > "$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
        -days "$DAYS" -sha256 -extfile "$name.ext" -out "$name.crt" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
}

leaf edge "hearth-edge test leaf" "DNS:hearth.test,DNS:lk.hearth.test"
leaf turn "coturn test leaf" "DNS:turn.hearth.test,DNS:localhost"
rm -f ca.srl
# coturn and nginx run as root in the tests but may drop privileges: keep keys readable.
chmod 0644 ./*.key
for c in edge turn; do
    printf '%s: %s\n' "$c" "$(openssl x509 -in $c.crt -noout -fingerprint -sha256)"
done
