#!/usr/bin/env bash
# Regenerates the test certificates of the config golden tests and the
# in-crate data path tests. Self-signed, long-lived, test-only keys.
set -euo pipefail
cd "$(dirname "$0")"
days=36500
# hearth.crt: SANs give the names.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days "$days" \
    -subj "/CN=hearth.example" -addext "subjectAltName=DNS:hearth.example,DNS:turn.hearth.example,DNS:*.apps.hearth.example" \
    -keyout hearth.key -out hearth.crt 2>/dev/null
# lk.crt: its names come from the config's `names`.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days "$days" \
    -subj "/CN=lk.hearth.example" -addext "subjectAltName=DNS:lk.hearth.example" \
    -keyout lk.key -out lk.crt 2>/dev/null
# nosan.crt: a CN and no DNS SAN, so it needs `names`.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days "$days" \
    -subj "/CN=nosan.example" -keyout nosan.key -out nosan.crt 2>/dev/null
printf 'not a certificate\n' > garbage.pem
