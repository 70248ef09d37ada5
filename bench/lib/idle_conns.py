#!/usr/bin/env python3
"""Memory per idle keep-alive connection: opens N connections to HOST:PORT, sends
one keep-alive GET on each and reads its response, lets them sit idle, and reports
the resident memory of the given process tree before and after. Resident memory
here is anonymous plus shared (RssAnon + RssShmem): what connections allocate.
File-backed pages (the program's own code and libraries) are left out: they are
not per connection, and how many of them stay resident moves by a megabyte or
more between samples with the page cache, as much as 5,000 connections cost. A warm-up of 200
connections (one GET each, then closed) comes before the first sample, so code
paged in by the first requests and upstream pools are not counted per connection.
Bounded in time:
every step has a timeout and the script exits on its own."""

import argparse
import asyncio
import os
import sys
import time


def tree(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def rss_kib(pid):
    """Anonymous + shared resident KiB of the process tree (see the docstring)."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(("RssAnon:", "RssShmem:")):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


async def one(host, port, sem, conns, errors):
    async with sem:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
            w.write(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await asyncio.wait_for(r.readexactly(length), 10)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            conns.append(w)
        except Exception as e:  # counted and reported, the run goes on
            errors.append(repr(e))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True, help="process tree to measure")
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--warmup", type=int, default=200,
                    help="connections opened, used once and closed before the first sample")
    a = ap.parse_args()

    sem = asyncio.Semaphore(200)  # don't turn the open phase into a SYN flood
    # Warm-up: the first requests page in code and fill upstream pools; that is
    # not memory per connection, so it happens before the "before" sample.
    warm, warm_errors = [], []
    await asyncio.wait_for(
        asyncio.gather(*(one(a.host, a.port, sem, warm, warm_errors) for _ in range(a.warmup))), 60)
    for w in warm:
        w.close()
    # The same settle time as before the "after" sample: allocators that hand
    # freed memory back to the kernel after a delay are sampled alike both times.
    await asyncio.sleep(a.settle)

    before = rss_kib(a.pid)
    conns, errors = [], []
    t0 = time.monotonic()
    await asyncio.wait_for(
        asyncio.gather(*(one(a.host, a.port, sem, conns, errors) for _ in range(a.n))), 120)
    opened = time.monotonic() - t0
    await asyncio.sleep(a.settle)
    after = rss_kib(a.pid)
    per_conn = (after - before) / max(len(conns), 1)
    print(f"RESULT rss_before_kib={before} rss_after_kib={after} open={len(conns)} "
          f"errors={len(errors)} per_conn_kib={per_conn:.3f} open_s={opened:.1f}")
    if errors:
        print(f"first error: {errors[0]}", file=sys.stderr)
    for w in conns:
        w.close()


if __name__ == "__main__":
    asyncio.run(main())
