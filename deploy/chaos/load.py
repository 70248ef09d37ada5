#!/usr/bin/env python3
"""Steady client load through the VIP for a bounded time; one JSON line per request.

Runs in the client namespace. Kinds of traffic, each a set of independent workers:
  plain   GET /            keep-alive, no affinity
  cookie  GET /c/<sid>     keeps every cookie the proxy sets (cookie stickiness)
  header  GET /h/<sid>     sends `x-session: <sid>` (stick table replicated by Raft)
  tcp     a stream through the tcp listener: one line every interval, echo expected
Each record: t0/t1 (CLOCK_MONOTONIC seconds, shared with the sampler), kind, session,
ok, status or error, backend (x-backend) and lb (x-peer: the proxy node address the
backend saw, i.e. which load balancer answered). Standard library only.

It behaves like a real HTTP client (curl, browsers, HTTP client libraries) in two
places, and says so in its records:
- Connect timeout (--connect-timeout-ms, default 3 s) is longer than the first SYN
  retransmission (1 s on Linux): a SYN that finds nobody answering (a VIP on its
  way to the standby, or an owner dropping new connections while it drains) is
  sent again, as any client's kernel does. The wait shows in the request's t1-t0.
- Retry on a reused connection: when a keep-alive connection that already carried
  a response is found closed (EOF or reset) before a single byte of the next
  response arrived, the server never processed the request (RFC 9112 9.3.1 and
  RFC 9110 9.2.2: an idempotent request may be retried), so the GET is sent once
  more on a new connection. The record then has `rt` (what the first try got) and
  the report counts it as http_retried. Nothing else is retried: a timeout, an
  error on a fresh connection, a partial or bad response all count as failed.
"""

import argparse
import asyncio
import json
import signal
import sys
import time

mono = time.monotonic
# What each worker is waiting for right now, and since when (reported on stderr when
# the load stops: records exist only for finished requests, not for cut-off ones).
PHASE = {}


class Log:
    def __init__(self, path):
        self.f = open(path, "w", buffering=1 << 16)

    def write(self, **rec):
        self.f.write(json.dumps(rec, separators=(",", ":")) + "\n")

    def close(self):
        self.f.close()


class NoResponse(Exception):
    """The connection closed (EOF or reset) before the first byte of a response."""


async def read_response(reader):
    try:
        first = await reader.readexactly(1)
    except (asyncio.IncompleteReadError, ConnectionError) as e:
        raise NoResponse(type(e).__name__) from e
    head = first + await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = []
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers.append((k.strip().lower(), v.strip()))
    h = dict(headers)
    length = int(h.get("content-length", "0") or 0)
    body = await reader.readexactly(length) if length else b""
    return status, headers, h, body


async def http_worker(a, log, kind, sid, deadline):
    """One client: keep-alive connection, reconnect after any failure."""
    reader = writer = None
    cookies = {}
    path = {"plain": "/", "cookie": f"/c/{sid}", "header": f"/h/{sid}"}[kind]
    interval = a.interval_ms / 1000.0
    connect_timeout = a.connect_timeout_ms / 1000.0
    timeout = a.timeout_ms / 1000.0
    while mono() < deadline:
        t0 = mono()
        rec = dict(k=kind, s=sid)
        tries = 0
        while True:
            tries += 1
            reused = writer is not None
            try:
                if writer is None:
                    PHASE[sid] = ("connect", mono())
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(a.vip, a.port), timeout=connect_timeout
                    )
                req = f"GET {path} HTTP/1.1\r\nHost: {a.vip}\r\n"
                if kind == "header":
                    req += f"x-session: {sid}\r\n"
                if cookies:
                    req += "Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items()) + "\r\n"
                writer.write((req + "\r\n").encode())
                PHASE[sid] = ("response", mono())
                status, headers, h, _ = await asyncio.wait_for(read_response(reader), timeout=timeout)
                for k, v in headers:
                    if k == "set-cookie":
                        name, _, rest = v.partition("=")
                        cookies[name.strip()] = rest.split(";", 1)[0].strip()
                rec.update(ok=status == 200, st=status, be=h.get("x-backend"), lb=h.get("x-peer"))
                if h.get("connection", "").lower() == "close":
                    writer.close()
                    reader = writer = None
                break
            except Exception as e:  # noqa: BLE001 - every failure is a data point
                if writer is not None:
                    writer.close()
                reader = writer = None
                if isinstance(e, NoResponse) and reused and tries == 1:
                    # A kept-alive connection the server had closed: retry once.
                    rec["rt"] = str(e)
                    continue
                rec.update(ok=False, err=type(e).__name__)
                break
        t1 = mono()
        rec.update(t0=round(t0, 4), t1=round(t1, 4))
        log.write(**rec)
        PHASE[rec["s"]] = ("idle", t1)
        await asyncio.sleep(max(0.005, interval - (t1 - t0)) if rec["ok"] else 0.01)
    if writer is not None:
        writer.close()


async def tcp_worker(a, log, sid, deadline):
    """A TCP stream: one line per interval, echo expected; reconnect on failure."""
    reader = writer = None
    seq = 0
    interval = a.interval_ms / 1000.0
    while mono() < deadline:
        t0 = mono()
        rec = dict(k="tcp", s=sid)
        try:
            if writer is None:
                PHASE[sid] = ("connect", mono())
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(a.vip, a.tcp_port), timeout=a.connect_timeout_ms / 1000.0
                )
                rec["new"] = True
            seq += 1
            writer.write(f"{sid}-{seq}\n".encode())
            PHASE[sid] = ("response", mono())
            line = await asyncio.wait_for(reader.readline(), timeout=a.timeout_ms / 1000.0)
            parts = line.decode().split()
            if len(parts) != 3 or parts[2] != f"{sid}-{seq}":
                raise ConnectionError("bad echo")
            rec.update(ok=True, be=parts[0], lb=parts[1])
        except Exception as e:  # noqa: BLE001
            rec.update(ok=False, err=type(e).__name__)
            if writer is not None:
                writer.close()
            reader = writer = None
        t1 = mono()
        rec.update(t0=round(t0, 4), t1=round(t1, 4))
        log.write(**rec)
        PHASE[rec["s"]] = ("idle", t1)
        await asyncio.sleep(max(0.005, interval - (t1 - t0)) if rec["ok"] else 0.01)
    if writer is not None:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vip", required=True)
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--tcp-port", type=int, default=9000)
    ap.add_argument("--duration", type=float, required=True, help="seconds (hard bound)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--plain", type=int, default=4)
    ap.add_argument("--cookie", type=int, default=6)
    ap.add_argument("--header", type=int, default=6)
    ap.add_argument("--tcp", type=int, default=2)
    ap.add_argument("--interval-ms", type=float, default=40)
    ap.add_argument("--timeout-ms", type=float, default=500, help="per request, from sending it to the whole answer")
    ap.add_argument("--connect-timeout-ms", type=float, default=3000, help="TCP connect (covers SYN retransmissions)")
    a = ap.parse_args()
    if not 0 < a.duration <= 3600:
        sys.exit("duration must be in (0, 3600] s")
    log = Log(a.out)
    deadline = mono() + a.duration
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    tasks = [asyncio.create_task(http_worker(a, log, "plain", f"p{i}", deadline)) for i in range(a.plain)]
    tasks += [asyncio.create_task(http_worker(a, log, "cookie", f"c{i}", deadline)) for i in range(a.cookie)]
    tasks += [asyncio.create_task(http_worker(a, log, "header", f"h{i}", deadline)) for i in range(a.header)]
    tasks += [asyncio.create_task(tcp_worker(a, log, f"t{i}", deadline)) for i in range(a.tcp)]
    waiter = asyncio.create_task(stop.wait())
    # return_exceptions: cancelling the workers below must not leave this future
    # with a CancelledError nobody retrieves (asyncio then prints a traceback that
    # looks like a failure of load.py itself).
    workers = asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.wait([workers, waiter], timeout=a.duration + 5, return_when=asyncio.FIRST_COMPLETED)
    now = mono()
    busy = {}
    for sid, (phase, since) in sorted(PHASE.items()):
        if phase != "idle":
            busy.setdefault(phase, []).append(f"{sid}:{now - since:.2f}s")
    why = "signal" if stop.is_set() else "deadline"
    print(f"load.py: stopped ({why}); workers cut off while waiting (worker:for how long): "
          + ("; ".join(f"{p} {' '.join(v)}" for p, v in busy.items()) or "none"), file=sys.stderr)
    for t in tasks:
        t.cancel()
    waiter.cancel()
    await workers
    log.close()


if __name__ == "__main__":
    asyncio.run(main())
