#!/usr/bin/env python3
"""Turns one chaos run (load log, owner samples, fault events) into one report line.

failover_ms: last good response through the old owner -> first good response through
             the new owner (by the node address the backend saw), when the VIP moved.
gap_ms:      longest time with no good HTTP response at all (every kind of client).
sticky:      a cookie/header session is kept if every good answer came from the
             backend of its first answer; sessions homed on a backend the scenario
             takes down on purpose (--exempt-backend) are not judged.
double_owner / double_arp: from sampler.py; must be 0.
Prints `key=value ...` on stdout and appends a JSON record to --results.
"""

import argparse
import json
import sys


def load_jsonl(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass  # a line cut by a kill; the rest still counts
    except FileNotFoundError:
        pass
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--load", required=True)
    ap.add_argument("--samples", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--lb", action="append", default=[], help="NAME=IP of a proxy node")
    ap.add_argument("--expect-failover", choices=["yes", "no", "any"], default="any")
    ap.add_argument("--exempt-backend", action="append", default=[])
    ap.add_argument("--allow-double-arp", action="store_true", help="report double ARP answers but do not fail on them")
    ap.add_argument("--config", default="n/a", help="ok | lost:<why> | n/a:<why> (from the config check)")
    ap.add_argument("--results")
    ap.add_argument("--fail", action="append", default=[], help="a broken invariant the script saw itself")
    a = ap.parse_args()

    ip_of = dict(x.split("=", 1) for x in a.lb)
    recs = load_jsonl(a.load)
    samples = load_jsonl(a.samples)
    events = load_jsonl(a.events)
    summary = next((s["summary"] for s in samples if "summary" in s), {})
    timeline = [(s["t"], s["owners"]) for s in samples if "owners" in s]
    ev = {e["ev"]: e["t"] for e in events}
    t_fault = ev.get("fault")

    http = sorted((r for r in recs if r.get("k") != "tcp"), key=lambda r: r["t1"])
    tcp = sorted((r for r in recs if r.get("k") == "tcp"), key=lambda r: r["t1"])
    ok = [r for r in http if r.get("ok")]
    res = dict(scenario=a.scenario)
    res["http_sent"] = len(http)
    res["http_failed"] = len(http) - len(ok)

    # TCP streams: longest silence between good echoes of one stream, reconnects.
    gaps, reconnects, last_ok = [], 0, {}
    for r in tcp:
        if r.get("new"):
            reconnects += 1
        if r.get("ok"):
            if r["s"] in last_ok:
                gaps.append(r["t1"] - last_ok[r["s"]])
            last_ok[r["s"]] = r["t1"]
    res["tcp_sent"] = len(tcp)
    res["tcp_failed"] = sum(1 for r in tcp if not r.get("ok"))
    res["tcp_reconnects"] = max(0, reconnects - len({r["s"] for r in tcp}))
    res["tcp_max_gap_ms"] = round(max(gaps) * 1000) if gaps else None

    # Longest stretch without any good HTTP answer.
    gap = 0.0
    for p, q in zip(ok, ok[1:]):
        gap = max(gap, q["t1"] - p["t1"])
    res["gap_ms"] = round(gap * 1000)

    # Sticky sessions.
    homes, broken, kept, exempt, moves = {}, set(), 0, 0, []
    for r in ok:
        if r["k"] not in ("cookie", "header"):
            continue
        key = (r["k"], r["s"])
        if key not in homes:
            homes[key] = r.get("be")
        elif r.get("be") != homes[key] and key not in broken:
            if homes[key] in a.exempt_backend:
                continue
            broken.add(key)
            moves.append(f"{r['k']}:{r['s']} {homes[key]}->{r.get('be')} at t={r['t1']:.3f} via {r.get('lb')}")
    for key, home in homes.items():
        if home in a.exempt_backend:
            exempt += 1
        elif key not in broken:
            kept += 1
    res["sticky_kept"] = kept
    res["sticky_broken"] = len(broken)
    if exempt:
        res["sticky_exempt"] = exempt

    # Owners and failover.
    def owners_at(t):
        cur = []
        for ts, o in timeline:
            if ts > t:
                break
            cur = o
        return cur

    old = owners_at(t_fault) if t_fault is not None else (timeline[0][1] if timeline else [])
    res["owner_before"] = ",".join(old) or "-"
    new = None
    if t_fault is not None and len(old) == 1:
        for ts, o in timeline:
            if ts > t_fault and len(o) == 1 and o[0] != old[0]:
                new = o[0]
                break
    res["owner_after"] = ",".join(timeline[-1][1]) if timeline else "-"
    res["failover_ms"] = None
    if new and old:
        old_ip, new_ip = ip_of.get(old[0]), ip_of.get(new)
        firsts = [r["t1"] for r in ok if r.get("lb") == new_ip and r["t1"] > t_fault]
        if firsts:
            t_new = firsts[0]
            lasts = [r["t1"] for r in ok if r.get("lb") == old_ip and r["t1"] < t_new]
            if lasts:
                res["failover_ms"] = round((t_new - lasts[-1]) * 1000)
        res["moved"] = f"{old[0]}->{new}"
    # Every change of owner, and time with no owner at all (informational: with
    # preempt = false one fault should move the VIP once; a heal or a leader change
    # that drops or moves it again shows up here).
    moves, prev = 0, None
    for _, o in timeline:
        if len(o) == 1:
            if prev is not None and o[0] != prev:
                moves += 1
            prev = o[0]
    res["vip_moves"] = moves
    no_owner = 0.0
    for (t0, o), (t1, _) in zip(timeline, timeline[1:]):
        if not o:
            no_owner += t1 - t0
    res["no_owner_ms"] = round(no_owner * 1000)
    res["double_owner"] = summary.get("double_owner")
    res["double_addr"] = summary.get("double_addr")
    res["double_arp"] = summary.get("double_arp")
    res["samples"] = summary.get("samples")
    res["config"] = a.config

    # Verdict.
    why = list(a.fail)
    if summary == {}:
        why.append("no sampler summary")
    if (summary.get("double_owner") or 0) > 0:
        why.append(f"two VIP owners at {summary.get('double_owner')} sampled instants: {summary.get('double_owner_at')}")
    if (summary.get("double_arp") or 0) > 0 and not a.allow_double_arp:
        why.append(f"two MACs answered ARP for the VIP in {summary.get('double_arp')} windows: {summary.get('double_arp_at')}")
    if res["sticky_broken"]:
        why.append("sticky sessions broken: " + "; ".join(moves[:5]))
    if a.config.startswith("lost"):
        why.append("committed config lost: " + a.config)
    if a.expect_failover == "yes" and not new:
        why.append("the VIP never moved away from the faulty owner")
    if a.expect_failover == "no" and new:
        why.append(f"the VIP moved ({old[0]}->{new}) although the scenario should not move it")
    end = timeline[-1][1] if timeline else []
    if len(end) != 1:
        why.append(f"VIP owners at the end: {end}")
    tail = [r for r in http if http and r["t1"] > http[-1]["t1"] - 1.0]
    if not any(r.get("ok") for r in tail):
        why.append("no good HTTP answer in the last second of load")
    res["result"] = "FAIL" if why else "PASS"
    if why:
        res["why"] = why

    keys = ["scenario", "result", "failover_ms", "gap_ms", "http_sent", "http_failed", "sticky_kept",
            "sticky_broken", "tcp_sent", "tcp_failed", "tcp_max_gap_ms", "double_owner", "double_addr",
            "double_arp", "vip_moves", "no_owner_ms", "owner_before", "owner_after", "config"]
    line = " ".join(f"{k}={'-' if res.get(k) is None else res.get(k)}" for k in keys)
    print(line)
    for w in why:
        print(f"  {a.scenario}: FAIL: {w}", file=sys.stderr)
    if a.results:
        with open(a.results, "a") as f:
            f.write(json.dumps(res) + "\n")
    sys.exit(1 if why else 0)


if __name__ == "__main__":
    main()
