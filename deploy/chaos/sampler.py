#!/usr/bin/env python3
"""VIP owner sampler: who holds the VIP, sampled every ~20 ms, for a bounded time.

Runs as root in the root namespace and looks into the lab namespaces through
netlink sockets opened inside each of them (setns), so one sample of every proxy
costs microseconds, not a fork of `ip` per namespace.

Address sampling: each tick reads every proxy forward, then again in reverse. A node
counts as holding the VIP in that tick only if both of its reads saw the address;
then for any two holders X before Y, Y's first read lies between X's two reads, so
both really held it at that instant (no false double from a move between reads).

Fence: the vrrp crate guards a VIP with nftables tables named `*_vip_<ip>` whose set
`lease` must contain the VIP for the kernel to answer (a frozen owner keeps the
address but goes silent). When two nodes hold the address the sampler reads each
holder's set; a holder whose fence table exists and whose lease set is empty is
`fenced`. `double_owner` counts ticks with two or more unfenced holders (the
invariant: must be 0); `double_addr` counts ticks with two addresses at all.

ARP: a second thread, bound to eth0 in the client namespace, asks "who has VIP?"
every 50 ms and counts windows in which two different MACs answered
(`double_arp`): the independent, client-side view of the same invariant. With
--probe-ip it asks as that (unused) address with a MAC of its own, so its answers
never refresh the client kernel's entry for the VIP.

Neighbour entry: every tick also reads the client namespace's neighbour table
(netlink RTM_GETNEIGH) and records the MAC it maps the VIP to, on every change:
{"t":..,"neigh": mac or null, "nstate": state}; the report checks that it flips
to the new owner's MAC after a failover.

ARP answers over time: every change of the set of MACs answering the probe is
recorded as {"t": window start, "arp": [macs]} (written at the end), so the report
can tell when a frozen owner stopped answering for the VIP.

Output (jsonl): {"t":..,"holders":[..],"owners":[..]} on every change, the neigh
and arp records above, and a final {"summary": {...}}. CLOCK_MONOTONIC timestamps,
as load.py.
"""

import argparse
import ctypes
import json
import os
import select
import signal
import socket
import struct
import subprocess
import threading
import time

mono = time.monotonic
CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)
RTM_NEWADDR, RTM_GETADDR, NLMSG_DONE, NLMSG_ERROR = 20, 22, 3, 2
RTM_NEWNEIGH, RTM_GETNEIGH = 28, 30
NDA_DST, NDA_LLADDR = 1, 2
NUD_STATES = {0x01: "INCOMPLETE", 0x02: "REACHABLE", 0x04: "STALE", 0x08: "DELAY", 0x10: "PROBE",
              0x20: "FAILED", 0x40: "NOARP", 0x80: "PERMANENT"}
NLM_F_REQUEST, NLM_F_DUMP = 1, 0x300
IFA_ADDRESS, IFA_LOCAL = 1, 2
ETH_P_ARP = 0x0806


def in_netns(ns, fn):
    """Calls fn() with this thread inside namespace ns; sockets made there stay there."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
        try:
            return fn()
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(fd)
        os.close(own)


def netlink_dump(sock, seq, msg):
    """Sends one NLM_F_DUMP request; yields (type, data, offset, length) of each answer
    message carrying `seq`, until NLMSG_DONE or NLMSG_ERROR."""
    sock.send(msg)
    while True:
        data = sock.recv(65536)
        off = 0
        while off + 16 <= len(data):
            length, typ, _flags, mseq, _pid = struct.unpack_from("=LHHLL", data, off)
            if length < 16:
                return
            if mseq == seq:
                if typ in (NLMSG_DONE, NLMSG_ERROR):
                    return
                yield typ, data, off, length
            off += (length + 3) & ~3


def rtattrs(data, a, end):
    """(type, payload) of the route attributes in data[a:end]."""
    while a + 4 <= end:
        alen, atyp = struct.unpack_from("=HH", data, a)
        if alen < 4:
            return
        yield atyp, data[a + 4 : a + alen]
        a += (alen + 3) & ~3


def route_socket(ns):
    sock = in_netns(ns, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE))
    sock.bind((0, 0))
    sock.settimeout(1.0)
    return sock


class AddrWatch:
    def __init__(self, ns):
        self.ns = ns
        self.sock = route_socket(ns)
        self.seq = 0

    def ipv4s(self):
        self.seq += 1
        msg = struct.pack("=LHHLL", 16 + 8, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, self.seq, 0)
        msg += struct.pack("=BBBBI", socket.AF_INET, 0, 0, 0, 0)
        out = set()
        for typ, data, off, length in netlink_dump(self.sock, self.seq, msg):
            if typ == RTM_NEWADDR:
                for atyp, payload in rtattrs(data, off + 16 + 8, off + length):
                    if atyp in (IFA_LOCAL, IFA_ADDRESS) and len(payload) == 4:
                        out.add(socket.inet_ntoa(payload))
        return out


class NeighWatch:
    """The MAC a namespace's neighbour table maps one IPv4 address to."""

    def __init__(self, ns, ip):
        self.ip = socket.inet_aton(ip)
        self.sock = route_socket(ns)
        self.seq = 0

    def lookup(self):
        """(mac or None, state name or None)."""
        self.seq += 1
        msg = struct.pack("=LHHLL", 16 + 12, RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, self.seq, 0)
        msg += struct.pack("=BxxxiHBB", socket.AF_INET, 0, 0, 0, 0)
        found = (None, None)
        for typ, data, off, length in netlink_dump(self.sock, self.seq, msg):
            if typ == RTM_NEWNEIGH and length >= 16 + 12:
                state = struct.unpack_from("=H", data, off + 16 + 8)[0]
                attrs = dict(rtattrs(data, off + 16 + 12, off + length))
                if attrs.get(NDA_DST) == self.ip:
                    mac = attrs.get(NDA_LLADDR)
                    found = (mac.hex(":") if mac is not None else None, NUD_STATES.get(state, hex(state)))
        return found


def fence_state(ns, vip):
    """'none' (no fence table for vip), 'open' (lease element present), 'closed'."""
    suffix = "_vip_" + vip.replace(".", "_").replace(":", "_")
    try:
        r = subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "-j", "list", "sets"], capture_output=True, timeout=2, text=True
        )
        sets = [o["set"] for o in json.loads(r.stdout or "{}").get("nftables", []) if "set" in o]
    except Exception:  # noqa: BLE001
        return "unknown"
    state = "none"
    for s in sets:
        # The inet table's set gates IP traffic for the VIP (the arp one gates ARP).
        if s.get("family") == "inet" and str(s.get("table", "")).endswith(suffix) and s.get("name") == "lease":
            if vip in json.dumps(s.get("elem", [])):
                return "open"
            state = "closed"
    return state


class ArpProbe(threading.Thread):
    """Who-has VIP every `period` from the client namespace; MACs answering per window."""

    def __init__(self, ns, iface, vip, my_ip, period, stop, probe_ip=None):
        super().__init__(daemon=True)
        self.vip, self.period, self.stop = vip, period, stop
        self.sock = in_netns(ns, lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)))
        self.sock.bind((iface, ETH_P_ARP))
        self.mac = self.sock.getsockname()[4]
        self.my_ip = my_ip
        if probe_ip:
            # Ask as a host of our own (unused address, locally administered MAC
            # from it): the answers then never touch the client kernel's neighbour
            # entry for the VIP, which must flip by the new owner's gratuitous ARP
            # alone. The bridge learns the MAC from these requests and forwards the
            # answers to this port; the kernel drops them (not its MAC), the packet
            # socket still reads them.
            self.my_ip = probe_ip
            self.mac = bytes([0x02, 0x00]) + socket.inet_aton(probe_ip)
        self.windows = self.double = self.unanswered = 0
        self.double_at = []
        self.macs = set()
        # (window start, sorted MACs) whenever the answering set changes; bounded.
        self.changes = []

    def run(self):
        bcast = b"\xff" * 6
        req = (
            bcast + self.mac + struct.pack("!H", ETH_P_ARP)
            + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
            + self.mac + socket.inet_aton(self.my_ip) + b"\x00" * 6 + socket.inet_aton(self.vip)
        )
        vip_b, me_b = socket.inet_aton(self.vip), socket.inet_aton(self.my_ip)
        while not self.stop.is_set():
            start = mono()
            self.sock.send(req)
            seen = set()
            while True:
                left = self.period - (mono() - start)
                if left <= 0:
                    break
                r, _, _ = select.select([self.sock], [], [], left)
                if not r:
                    break
                pkt = self.sock.recv(128)
                if len(pkt) < 42:
                    continue
                op = struct.unpack_from("!H", pkt, 20)[0]
                sha, spa, tpa = pkt[22:28], pkt[28:32], pkt[38:42]
                if op == 2 and spa == vip_b and tpa == me_b:
                    seen.add(sha.hex(":"))
            self.windows += 1
            self.macs |= seen
            now_seen = sorted(seen)
            if (not self.changes or self.changes[-1][1] != now_seen) and len(self.changes) < 5000:
                self.changes.append((round(start, 4), now_seen))
            if not seen:
                self.unanswered += 1
            elif len(seen) > 1:
                self.double += 1
                self.double_at.append([round(start, 3), sorted(seen)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vip", required=True)
    ap.add_argument("--ns", action="append", required=True, help="NAME=NAMESPACE of a proxy node (repeat)")
    ap.add_argument("--client-ns")
    ap.add_argument("--client-ip")
    ap.add_argument("--probe-ip", help="unused address the ARP probe asks from (keeps the client's own neighbour table out of it)")
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--interval-ms", type=float, default=20)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if not 0 < a.duration <= 3600:
        raise SystemExit("duration must be in (0, 3600] s")
    nodes = [tuple(x.split("=", 1)) for x in a.ns]
    watches = [(name, AddrWatch(ns), ns) for name, ns in nodes]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    arp = neigh = None
    if a.client_ns:
        arp = ArpProbe(a.client_ns, "eth0", a.vip, a.client_ip, 0.05, stop, a.probe_ip)
        arp.start()
        neigh = NeighWatch(a.client_ns, a.vip)
    last_neigh = ()
    out = open(a.out, "w", buffering=1)
    samples = double_addr = double_owner = none_ticks = errors = 0
    last = None
    double_owner_at = []
    deadline = mono() + a.duration
    while not stop.is_set() and mono() < deadline:
        t = mono()
        try:
            first = {n: a.vip in w.ipv4s() for n, w, _ in watches}
            second = {n: a.vip in w.ipv4s() for n, w, _ in reversed(watches)}
        except OSError:
            errors += 1
            time.sleep(a.interval_ms / 1000.0)
            continue
        holders = [n for n, _, _ in watches if first[n] and second[n]]
        owners = holders
        fences = {}
        if len(holders) > 1:
            double_addr += 1
            fences = {n: fence_state(ns, a.vip) for n, _, ns in watches if n in holders}
            owners = [n for n in holders if fences[n] != "closed"]
            if len(owners) > 1:
                double_owner += 1
                double_owner_at.append([round(t, 3), owners, fences])
        if not holders:
            none_ticks += 1
        if neigh is not None:
            try:
                n = neigh.lookup()
            except OSError:
                n = last_neigh
            if n != last_neigh:
                out.write(json.dumps({"t": round(t, 4), "neigh": n[0], "nstate": n[1]}) + "\n")
                last_neigh = n
        samples += 1
        state = (tuple(holders), tuple(owners))
        if state != last:
            rec = {"t": round(t, 4), "holders": holders, "owners": owners}
            if fences:
                rec["fences"] = fences
            out.write(json.dumps(rec) + "\n")
            last = state
        time.sleep(max(0.0, a.interval_ms / 1000.0 - (mono() - t)))
    stop.set()
    summary = dict(
        samples=samples, double_addr=double_addr, double_owner=double_owner, no_owner_ticks=none_ticks,
        errors=errors, double_owner_at=double_owner_at[:20],
    )
    if arp is not None:
        arp.join(timeout=1)
        for t, macs in list(arp.changes):
            out.write(json.dumps({"t": t, "arp": macs}) + "\n")
        summary.update(
            arp_windows=arp.windows, double_arp=arp.double, arp_unanswered=arp.unanswered,
            arp_macs=sorted(arp.macs), double_arp_at=arp.double_at[:20],
        )
    out.write(json.dumps({"t": round(mono(), 4), "summary": summary}) + "\n")
    out.close()


if __name__ == "__main__":
    main()
