#!/usr/bin/env python3
"""Stand-ins for a Matrix homeserver and a LiveKit SFU (standard library only),
for the handler tests: what lk-jwt talks to.

Usage:
  matrix_livekit.py homeserver HOST CERT KEY TOKEN=USER...
      HTTPS on HOST, a free port. GET /_matrix/federation/v1/openid/userinfo
      ?access_token=T answers {"sub": USER} for a known token (USER without
      a server part gets ":" + the Host header the client sent), else 401
      M_UNKNOWN_TOKEN. Every userinfo request is logged as `userinfo N`, every
      accepted connection as `connection accepted`.
  matrix_livekit.py livekit HOST KEY SECRET
      HTTP on HOST, a free port. POST /twirp/livekit.RoomService/CreateRoom
      checks the bearer token (HS256 with SECRET, iss KEY, unexpired,
      video.roomCreate) and the JSON body, logs `created ROOM` and answers
      200, or logs `refused WHY` and answers 401.

Both print `listening on HOST:PORT` first.
"""

import base64
import hashlib
import hmac
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

MODE = sys.argv[1]
HOST = sys.argv[2]
LOCK = threading.Lock()
COUNT = [0]


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_jwt(token, key, secret):
    """The claims of an HS256 token signed with SECRET and issued by KEY, or an error."""
    parts = token.split(".")
    if len(parts) != 3:
        return None, "not a JWT"
    header = json.loads(b64url_decode(parts[0]))
    if header.get("alg") != "HS256":
        return None, "alg is not HS256"
    signed = (parts[0] + "." + parts[1]).encode()
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, b64url_decode(parts[2])):
        return None, "bad signature"
    claims = json.loads(b64url_decode(parts[1]))
    now = time.time()
    if claims.get("iss") != key:
        return None, "wrong iss"
    if not claims.get("nbf", 0) <= now + 5 or not claims.get("exp", 0) > now:
        return None, "not valid now"
    return claims, None


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        print("connection accepted", flush=True)

    def answer(self, status, body):
        if status >= 400:
            print(f"answered {status} to {self.command} {urlparse(self.path).path}", flush=True)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class Homeserver(JsonHandler):
    TOKENS = {}

    def do_GET(self):
        url = urlparse(self.path)
        if url.path != "/_matrix/federation/v1/openid/userinfo":
            return self.answer(404, {"errcode": "M_UNRECOGNIZED"})
        with LOCK:
            COUNT[0] += 1
            print(f"userinfo {COUNT[0]}", flush=True)
        token = parse_qs(url.query).get("access_token", [""])[0]
        user = self.TOKENS.get(token)
        if user is None:
            return self.answer(401, {"errcode": "M_UNKNOWN_TOKEN"})
        if ":" not in user:
            user = user + ":" + self.headers.get("Host", "")
        self.answer(200, {"sub": user})


class Livekit(JsonHandler):
    KEY = ""
    SECRET = ""

    def do_POST(self):
        body = self.read_body()
        if self.path != "/twirp/livekit.RoomService/CreateRoom":
            return self.answer(404, {"code": "bad_route"})
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return self.refuse("no bearer token")
        claims, why = verify_jwt(auth[len("Bearer "):], self.KEY, self.SECRET)
        if why:
            return self.refuse(why)
        if not claims.get("video", {}).get("roomCreate"):
            return self.refuse("no roomCreate grant")
        request = json.loads(body)
        if request.get("empty_timeout") != 300 or request.get("departure_timeout") != 20:
            return self.refuse("unexpected timeouts")
        print(f"created {request['name']}", flush=True)
        self.answer(200, {"name": request["name"], "sid": "RM_test"})

    def read_body(self):
        """The request body, with a Content-Length or chunked."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def refuse(self, why):
        print(f"refused {why}", flush=True)
        self.answer(401, {"code": "unauthenticated", "msg": why})


def main():
    if MODE == "homeserver":
        cert, key = sys.argv[3], sys.argv[4]
        Homeserver.TOKENS = dict(arg.split("=", 1) for arg in sys.argv[5:])
        server = ThreadingHTTPServer((HOST, 0), Homeserver)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    elif MODE == "livekit":
        Livekit.KEY, Livekit.SECRET = sys.argv[3], sys.argv[4]
        server = ThreadingHTTPServer((HOST, 0), Livekit)
    else:
        sys.exit(f"unknown mode {MODE}")
    print(f"listening on {HOST}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
