#!/usr/bin/env python3
"""A small real HTTP/1.1 backend for the HTTP-mode tests (standard library only).

Usage: http_echo.py NAME [STATUS]

Binds 127.0.0.1 on a free port and prints `listening on 127.0.0.1:PORT`.
Every answer starts with NAME, so a test can tell instances apart.

  GET /sse            text/event-stream: `data: one`, then waits until
                      /release is requested, then `data: two` and ends.
  GET /release        releases every open /sse stream.
  GET /auth           forward-auth check: 200 with X-Authentik-Username
                      when the request carries `Authorization: Bearer good`,
                      else 302 to /login with a body naming the
                      X-Forwarded-Method and X-Forwarded-Uri it got.
  with STATUS         every request is answered STATUS with `NAME failing`
                      (a member in trouble, for passive ejection).
  anything else       200 text/plain: `NAME METHOD PATH` then one
                      `name: value` line per request header (lowercase
                      names), then `body-bytes: N` for the request body
                      and `peer-port: N`, the connecting side's port.
"""

import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = sys.argv[1] if len(sys.argv) > 1 else "echo"
FAIL_STATUS = int(sys.argv[2]) if len(sys.argv) > 2 else None
RELEASE = threading.Event()
# How long an /sse stream waits for /release before giving up (a bound,
# so a failed test never leaves the server hanging).
SSE_WAIT_SECONDS = 30


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # With HTTP_ECHO_IDLE_TIMEOUT=N, a keep-alive connection idle for N
    # seconds is closed, as servers' keep-alive timeouts do.
    timeout = float(os.environ["HTTP_ECHO_IDLE_TIMEOUT"]) if "HTTP_ECHO_IDLE_TIMEOUT" in os.environ else None

    def log_message(self, fmt, *args):
        sys.stdout.write("%s %s\n" % (NAME, fmt % args))
        sys.stdout.flush()

    def _send(self, status, body, headers=()):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _body_bytes(self):
        length = self.headers.get("Content-Length")
        if length is not None:
            return len(self.rfile.read(int(length)))
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return total
                total += len(self.rfile.read(size))
                self.rfile.readline()
        return 0

    def _handle(self):
        path = self.path
        if FAIL_STATUS is not None:
            self._body_bytes()
            self._send(FAIL_STATUS, "%s failing\n" % NAME)
            return
        if path == "/sse":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"data: one\n\n")
            self.wfile.flush()
            RELEASE.wait(SSE_WAIT_SECONDS)
            self.wfile.write(b"data: two\n\n")
            self.wfile.flush()
            self.close_connection = True
            return
        if path == "/release":
            RELEASE.set()
            self._send(200, "%s released\n" % NAME)
            return
        if path.startswith("/auth"):
            if self.headers.get("Authorization") == "Bearer good":
                # X-Auth-Peer-Port: the proxy's side of this connection, to
                # see auth connections reused.
                self._send(200, "ok\n", [
                    ("X-Authentik-Username", "alice"),
                    ("X-Other", "x"),
                    ("X-Auth-Peer-Port", str(self.client_address[1])),
                ])
            else:
                body = "%s login please: method=%s uri=%s\n" % (
                    NAME,
                    self.headers.get("X-Forwarded-Method"),
                    self.headers.get("X-Forwarded-Uri"),
                )
                self._send(302, body, [("Location", "/login")])
            return
        received = self._body_bytes()
        lines = ["%s %s %s" % (NAME, self.command, path)]
        for k, v in self.headers.items():
            lines.append("%s: %s" % (k.lower(), v))
        lines.append("body-bytes: %d" % received)
        # The proxy's side of this connection: equal ports mean a reused connection.
        lines.append("peer-port: %d" % self.client_address[1])
        self._send(200, "\n".join(lines) + "\n")

    do_GET = _handle
    do_POST = _handle
    do_PUT = _handle
    do_DELETE = _handle


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print("listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
