#!/usr/bin/env python3
"""lk-jwt `/sfu/get` requests/s through the edge, with the stand-in homeserver
(HTTPS, a test CA made here with openssl) and LiveKit of the tests
(tests/peers/matrix_livekit.py). Called by benches/handlers/run.sh:

    lk_jwt.py EDGE_BIN WORK_DIR DURATION

Two cases, wrk -t1 -c8 over plain HTTP to a `plain_listen` route: a
restricted homeserver (one userinfo call per request) and a full-access one
(userinfo + CreateRoom per request). The stand-ins are single-process Python:
they, not the handler, bound these figures; the edge's CPU per request is
printed next to them.
"""

import os
import re
import socket
import subprocess
import sys
import time

EDGE, WORK, DURATION = sys.argv[1], sys.argv[2], sys.argv[3]
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STANDIN = os.path.join(ROOT, "tests/peers/matrix_livekit.py")
TICK = os.sysconf("SC_CLK_TCK")


def run(*args):
    subprocess.run(args, check=True, capture_output=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pki():
    ca_key, ca, key, csr, crt = (os.path.join(WORK, f) for f in ("ca.key", "ca.pem", "hs.key", "hs.csr", "hs.pem"))
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=bench CA")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    ext = os.path.join(WORK, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,IP:127.0.0.3\n")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", crt, "-days", "2", "-extfile", ext)
    return ca, crt, key


def standin(*args):
    proc = subprocess.Popen([sys.executable, "-u", STANDIN, *args], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    addr = line.strip().rsplit(" ", 1)[-1]
    return proc, addr


def cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def main():
    ca, crt, key = pki()
    full, full_addr = standin("homeserver", "127.0.0.1", crt, key, "tok-a=@alice")
    restricted, restricted_addr = standin("homeserver", "127.0.0.3", crt, key, "tok-b=@bob")
    livekit, livekit_addr = standin("livekit", "127.0.0.1", "bench-key", "bench-secret")
    for name, value in (("key", "bench-key"), ("secret", "bench-secret")):
        with open(os.path.join(WORK, name), "w") as f:
            f.write(value + "\n")
    port, tls_port = free_port(), free_port()
    config = os.path.join(WORK, "lk.yaml")
    with open(config, "w") as f:
        f.write(f"""listen: "127.0.0.1:{tls_port}"
policy: {{ path: "{ROOT}/policies/hearth.wasm", config: {{ domain: hearth.test }} }}
backends: {{}}
plain_listen:
  - {{ addr: "127.0.0.1:{port}", routes: web }}
handlers:
  lk-jwt:
    component: "{ROOT}/handlers/lk-jwt.wasm"
    env: {{ LIVEKIT_URL: "ws://{livekit_addr}", LIVEKIT_FULL_ACCESS_HOMESERVERS: "{full_addr}" }}
    env_files: {{ LIVEKIT_KEY: "{WORK}/key", LIVEKIT_SECRET: "{WORK}/secret" }}
    outbound:
      allow: ["https://{full_addr}", "https://{restricted_addr}", "http://{livekit_addr}"]
      ca_roots: "{ca}"
http_routes:
  web:
    routes:
      - {{ path_prefix: /livekit/jwt, handler: lk-jwt, strip_prefix: true }}
log: {{ level: warn }}
""")
    edge_log = open(os.path.join(WORK, "lk-edge.log"), "w")
    edge = subprocess.Popen([EDGE, "--config", config], stdout=edge_log, stderr=subprocess.STDOUT)
    procs = [full, restricted, livekit, edge]
    try:
        url = f"http://127.0.0.1:{port}/livekit/jwt/sfu/get"
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        print(f"\nlk-jwt POST /sfu/get through the edge (plain HTTP, wrk -t1 -c8, {DURATION}s):\n")
        print("| homeserver | req/s | p99 ms | edge CPU µs/req |")
        print("|---|---|---|---|")
        for label, server, token in (("restricted (userinfo)", restricted_addr, "tok-b"),
                                     ("full access (userinfo + CreateRoom)", full_addr, "tok-a")):
            body = ('{"room":"!r:hearth.test","openid_token":{"access_token":"%s","token_type":"Bearer",'
                    '"matrix_server_name":"%s","expires_in":3600},"device_id":"D"}') % (token, server)
            script = os.path.join(WORK, "post.lua")
            with open(script, "w") as f:
                f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
                f.write("wrk.body = '%s'\n" % body)
            check = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-d", body, url],
                                   capture_output=True, text=True).stdout
            if check != "200":
                print(f"| {label} | failed: HTTP {check} | | |")
                continue
            before = cpu(edge.pid)
            out = subprocess.run(["wrk", "-t1", "-c8", f"-d{DURATION}s", "--latency", "-s", script, url],
                                 capture_output=True, text=True).stdout
            after = cpu(edge.pid)
            requests = int(re.search(r"(\d+) requests in", out).group(1))
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
            p99_ms = float(p99.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
            non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            note = f" ({non2xx.group(1)} non-2xx)" if non2xx else ""
            print(f"| {label} | {rps:.0f}{note} | {p99_ms:.1f} | {(after - before) * 1e6 / max(requests, 1):.0f} |")
    finally:
        for p in procs:
            p.kill()
        edge_log.close()
        for name, proc in (("homeservers", full), ("homeservers", restricted), ("livekit", livekit)):
            refused = [l for l in proc.stdout.read().splitlines() if l.startswith(("answered", "refused"))]
            if refused:
                print(f"\n{name} refused {len(refused)} requests, first: {refused[0]}")
        warnings = [l for l in open(os.path.join(WORK, "lk-edge.log")) if " WARN " in l or " ERROR " in l]
        if warnings:
            print(f"\nedge warnings during the run: {len(warnings)}, first: {warnings[0].strip()[:300]}")


if __name__ == "__main__":
    main()
