#!/usr/bin/env python3
"""WebSocket echo server for the end-to-end tests (Debian: python3-websockets).

Binds 127.0.0.1 on the port given as the first argument (default 0: the
kernel picks one), prints `listening on 127.0.0.1:<port>` once it accepts,
and sends every message back unchanged on the connection it came from.
"""
import asyncio
import sys

import websockets


async def echo(websocket, path=None):
    async for message in websocket:
        await websocket.send(message)


async def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    async with websockets.serve(echo, "127.0.0.1", port) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"listening on 127.0.0.1:{bound}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
