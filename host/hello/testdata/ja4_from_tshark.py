#!/usr/bin/env python3
"""Computes JA4 for each ClientHello in a pcap from tshark's own dissection, as an
independent cross-check of the Rust parser (used by capture.sh; the unit tests carry the
values by hand). Usage: ja4_from_tshark.py FILE.pcap"""
import hashlib
import subprocess
import sys

FIELDS = [
    "tls.handshake.version",
    "tls.handshake.extensions.supported_version",
    "tls.handshake.ciphersuite",
    "tls.handshake.extension.type",
    "tls.handshake.extensions_alpn_str",
    "tls.handshake.sig_hash_alg",
]
VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2"}


def grease(v):
    return (v >> 8) == (v & 0xFF) and (v & 0x0F) == 0x0A


def ints(field):
    return [int(x, 0) for x in field.split(",") if x]


def short_hash(text):
    return hashlib.sha256(text.encode()).hexdigest()[:12] if text else "000000000000"


def ja4(row):
    legacy, versions, ciphers, exts, alpn, sigs = row
    ciphers = [c for c in ints(ciphers) if not grease(c)]
    exts = [e for e in ints(exts) if not grease(e)]
    sigs = [s for s in ints(sigs) if not grease(s)]
    versions = [v for v in ints(versions) if not grease(v)]
    version = max(versions) if versions else ints(legacy)[0]
    first = alpn.split(",")[0] if alpn else ""
    if not first:
        alpn_code = "00"
    elif first[0].isalnum() and first[-1].isalnum() and first.isascii():
        alpn_code = first[0] + first[-1]
    else:
        h = first.encode().hex()
        alpn_code = h[0] + h[-1]
    head = "t%s%s%02d%02d%s" % (
        VERSIONS.get(version, "00"),
        "d" if 0 in exts else "i",
        min(len(ciphers), 99),
        min(len(exts), 99),
        alpn_code,
    )
    b = short_hash(",".join("%04x" % c for c in sorted(ciphers)))
    ext_text = ",".join("%04x" % e for e in sorted(e for e in exts if e not in (0x0000, 0x0010)))
    if ext_text and sigs:
        ext_text += "_" + ",".join("%04x" % s for s in sigs)
    return "%s_%s_%s" % (head, b, short_hash(ext_text))


def main():
    cmd = ["tshark", "-r", sys.argv[1], "-d", "tcp.port==443,tls", "-Y", "tls.handshake.type == 1",
           "-T", "fields", "-E", "separator=;", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        print(ja4(line.split(";")))


if __name__ == "__main__":
    main()
