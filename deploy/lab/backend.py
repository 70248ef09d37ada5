#!/usr/bin/env python3
"""Lab backend: a small asyncio HTTP/1.1 server with keep-alive plus a TCP echo port.

HTTP: every path answers 200 "<name>\\n" with `x-backend: <name>` and
`x-peer: <address the connection came from>` (that is the proxy node that forwarded
it, so the client can tell which load balancer answered). `/healthz` answers 200, or
503 while the health flag is off; SIGUSR1 flips the flag (for flapping by signal).
TCP: each line received is answered with "<name> <peer> <line>".
Standard library only.
"""

import argparse
import asyncio
import signal

HEALTHY = True


def split_hostport(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


async def http_conn(name, reader, writer):
    peer = writer.get_extra_info("peername")[0]
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) < 3:
                return
            method, path, version = parts[0], parts[1], parts[2]
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            length = int(headers.get("content-length", "0") or 0)
            if length:
                await reader.readexactly(length)
            if path == "/healthz":
                status, body = ("200 OK", b"ok\n") if HEALTHY else ("503 Service Unavailable", b"unhealthy\n")
            else:
                status, body = "200 OK", (name + "\n").encode()
            close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
            out = (
                f"HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {len(body)}\r\n"
                f"x-backend: {name}\r\nx-peer: {peer}\r\n"
                f"connection: {'close' if close else 'keep-alive'}\r\n\r\n"
            ).encode() + (body if method != "HEAD" else b"")
            writer.write(out)
            await writer.drain()
            if close:
                return
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def tcp_conn(name, reader, writer):
    peer = writer.get_extra_info("peername")[0]
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            writer.write(f"{name} {peer} ".encode() + line)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--http", required=True, help="host:port")
    ap.add_argument("--tcp", help="host:port of the echo listener")
    a = ap.parse_args()

    def flip():
        global HEALTHY
        HEALTHY = not HEALTHY
        print(f"{a.name}: healthy={HEALTHY}", flush=True)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, flip)
    stop = loop.create_future()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, lambda: stop.done() or stop.set_result(None))
    h, p = split_hostport(a.http)
    servers = [await asyncio.start_server(lambda r, w: http_conn(a.name, r, w), h, p, backlog=1024)]
    if a.tcp:
        h, p = split_hostport(a.tcp)
        servers.append(await asyncio.start_server(lambda r, w: tcp_conn(a.name, r, w), h, p, backlog=1024))
    print(f"{a.name}: http {a.http} tcp {a.tcp}", flush=True)
    await stop
    for s in servers:
        s.close()


if __name__ == "__main__":
    asyncio.run(main())
