#!/usr/bin/env python3
"""A userspace stand-in for `tc qdisc ... netem delay D loss L`, for kernels without
sch_netem (some VMs and containers). Runs in the lab's switch namespace and relays
Ethernet frames between a host's switch port (`--node-if`, taken off the bridge by
the caller) and a new veth end whose peer the caller put on the bridge (`--br-if`).
Frames the host sends are delayed by D and dropped with probability L, like netem
on the host's egress; frames towards the host pass at once.

Frames read from a packet socket can carry partial checksums (veth checksum
offload), so TCP/UDP checksums of IPv4 frames are recomputed before re-sending.
Bounded by --duration; standard library only.
"""

import argparse
import heapq
import random
import select
import socket
import struct
import time

ETH_P_ALL = 3
PACKET_OUTGOING = 4


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def fix_l4_checksum(frame):
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return frame
    ihl = (frame[14] & 0x0F) * 4
    total = struct.unpack_from("!H", frame, 16)[0]
    proto = frame[23]
    frag = struct.unpack_from("!H", frame, 20)[0] & 0x3FFF
    if frag or proto not in (6, 17):
        return frame
    l4 = 14 + ihl
    end = 14 + total
    if end > len(frame) or l4 >= end:
        return frame
    seg = bytearray(frame[l4:end])
    off = 16 if proto == 6 else 6
    if len(seg) < off + 2:
        return frame
    seg[off : off + 2] = b"\0\0"
    pseudo = frame[26:34] + struct.pack("!BBH", 0, proto, len(seg))
    c = csum(pseudo + bytes(seg))
    if proto == 17 and c == 0:
        c = 0xFFFF
    seg[off : off + 2] = struct.pack("!H", c)
    return frame[:l4] + bytes(seg) + frame[end:]


def open_if(name):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((name, ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setblocking(False)
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--node-if", required=True)
    ap.add_argument("--br-if", required=True)
    ap.add_argument("--delay-ms", type=float, default=100)
    ap.add_argument("--loss", type=float, default=0.05)
    ap.add_argument("--duration", type=float, required=True)
    a = ap.parse_args()
    node, br = open_if(a.node_if), open_if(a.br_if)
    delay = a.delay_ms / 1000.0
    queue = []  # (due, seq, frame) towards the bridge
    seq = relayed = dropped = errors = 0
    deadline = time.monotonic() + min(a.duration, 3600)
    while time.monotonic() < deadline:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, f = heapq.heappop(queue)
            try:
                br.send(f)
                relayed += 1
            except OSError:
                errors += 1
        timeout = min(0.2, queue[0][0] - now) if queue else 0.2
        r, _, _ = select.select([node, br], [], [], max(0.0, timeout))
        for s in r:
            for _ in range(64):
                try:
                    f, addr = s.recvfrom(65536)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue  # our own sends, seen on the way out
                f = fix_l4_checksum(f)
                if s is node:
                    if random.random() < a.loss:
                        dropped += 1
                        continue
                    seq += 1
                    heapq.heappush(queue, (time.monotonic() + delay, seq, f))
                else:
                    try:
                        node.send(f)
                    except OSError:
                        errors += 1
    print(f"netem.py: relayed={relayed} dropped={dropped} errors={errors}", flush=True)


if __name__ == "__main__":
    main()
