#!/usr/bin/env python3
"""Opens COUNT idle TLS connections to HOST:PORT with SNI NAME (handshake
completed, nothing sent afterwards), prints `open COUNT`, and holds them
until stdin closes. Used by run.sh to measure memory per idle connection.

Usage: idle_conns.py HOST PORT NAME COUNT
"""
import socket
import ssl
import sys


def main():
    host, port, name, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    held = []
    for _ in range(count):
        raw = socket.create_connection((host, port), timeout=10)
        held.append(context.wrap_socket(raw, server_hostname=name))
    print(f"open {len(held)}", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
