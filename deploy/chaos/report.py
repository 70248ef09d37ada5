#!/usr/bin/env python3
"""Turns one chaos run (load log, owner samples, fault events) into one report line.

failover_ms: last good response through the old owner -> first good response through
             the new owner (by the node address the backend saw), when the VIP moved.
gap_ms:      longest time with no good HTTP response at all (every kind of client).
sticky:      a cookie/header session is kept if every good answer came from the
             backend of its first answer; sessions homed on a backend the scenario
             takes down on purpose (--exempt-backend) are not judged.
double_owner / double_arp: from sampler.py; must be 0.
http_retried: requests load.py sent again after a kept-alive connection closed
             before any response byte (what a real client does); not failures.
neigh_flip:  after a move, the client's neighbour entry for the VIP names the new
             owner's MAC (yes/no, and ms after the new owner took the address).
sticky_across: sessions answered through the old owner before the move and the new
             one after it: kept/broken (they are also in sticky_kept/broken).
arp_quiet_ms (--check-arp-fence): the old owner's last ARP answer for the VIP ended
             this long before the new owner took the address; must be >= 0.
new_owner_arp_ms: after a move, ms from the new owner taking the address to the first
             ARP probe window its MAC answered ("never": it held the address and
             stayed silent, e.g. behind a closed nftables lease fence).
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
    ap.add_argument("--mac", action="append", default=[], help="NAME=MAC of a proxy node's interface")
    ap.add_argument("--max-http-failed", type=int, help="fail if more HTTP requests than this failed")
    ap.add_argument("--no-double-addr", action="store_true",
                    help="fail if two nodes ever held the address at all (a live, cut-off or leaving owner "
                         "must remove it before the next takes it)")
    ap.add_argument("--check-arp-fence", action="store_true",
                    help="fail unless the old owner stopped answering ARP before the new one took the VIP")
    ap.add_argument("--expect-owner", help="the proxy that must own the VIP at the end")
    ap.add_argument("--expect-moves", type=int, help="exact number of owner changes")
    ap.add_argument("--min-failback-ms", type=int,
                    help="the VIP must return to the old owner no sooner than this after the 'restart' event")
    ap.add_argument("--expect-failover", choices=["yes", "no", "any"], default="any")
    ap.add_argument("--exempt-backend", action="append", default=[])
    ap.add_argument("--allow-double-arp", action="store_true", help="report double ARP answers but do not fail on them")
    ap.add_argument("--config", default="n/a", help="ok | lost:<why> | n/a:<why> (from the config check)")
    ap.add_argument("--results")
    ap.add_argument("--fail", action="append", default=[], help="a broken invariant the script saw itself")
    a = ap.parse_args()

    ip_of = dict(x.split("=", 1) for x in a.lb)
    mac_of = {k: v.lower() for k, v in (x.split("=", 1) for x in a.mac)}
    recs = load_jsonl(a.load)
    samples = load_jsonl(a.samples)
    events = load_jsonl(a.events)
    summary = next((s["summary"] for s in samples if "summary" in s), {})
    timeline = [(s["t"], s["owners"]) for s in samples if "owners" in s]
    holders_tl = [(s["t"], s["holders"]) for s in samples if "holders" in s]
    neigh_tl = [(s["t"], s["neigh"]) for s in samples if "neigh" in s]
    arp_tl = sorted((s["t"], s["arp"]) for s in samples if "arp" in s)
    ev = {e["ev"]: e["t"] for e in events}
    t_fault = ev.get("fault")

    http = sorted((r for r in recs if r.get("k") != "tcp"), key=lambda r: r["t1"])
    tcp = sorted((r for r in recs if r.get("k") == "tcp"), key=lambda r: r["t1"])
    ok = [r for r in http if r.get("ok")]
    res = dict(scenario=a.scenario)
    res["http_sent"] = len(http)
    res["http_failed"] = len(http) - len(ok)
    res["http_retried"] = sum(1 for r in http if "rt" in r)

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
    # The client's neighbour entry, the ARP silence of the old owner, and sticky
    # sessions that were answered on both sides of the move.
    res["neigh_flip"] = None
    res["sticky_across"] = None
    t_new_hold = None
    if new and old:
        t_new_hold = next((ts for ts, h in holders_tl if ts > t_fault and new in h), None)
        new_mac = mac_of.get(new)
        if new_mac and t_new_hold is not None:
            flip = next((ts for ts, m in neigh_tl if ts >= t_new_hold and (m or "").lower() == new_mac), None)
            after = [m for ts, m in neigh_tl if ts >= t_new_hold]
            res["neigh_flip"] = "no" if flip is None else f"yes:{round((flip - t_new_hold) * 1000)}ms"
            res["neigh_end"] = (after[-1] if after else (neigh_tl[-1][1] if neigh_tl else None))
        old_ip, new_ip = ip_of.get(old[0]), ip_of.get(new)
        across_kept = across_broken = 0
        for key in homes:
            if homes[key] in a.exempt_backend:
                continue
            rs = [r for r in ok if (r["k"], r["s"]) == key]
            before = [r for r in rs if r.get("lb") == old_ip and r["t1"] <= t_fault]
            later = [r for r in rs if r.get("lb") == new_ip and r["t1"] > t_fault]
            if before and later:
                if all(r.get("be") == before[-1].get("be") for r in later):
                    across_kept += 1
                else:
                    across_broken += 1
        res["sticky_across"] = f"{across_kept}/{across_broken}"
    res["arp_quiet_ms"] = None
    if a.check_arp_fence and old and t_new_hold is not None and mac_of.get(old[0]):
        old_mac = mac_of[old[0]]
        end = None  # end of the old owner's last ARP answering period before the takeover
        for i, (ts, macs) in enumerate(arp_tl):
            if ts >= t_new_hold:
                break
            if old_mac in macs:
                end = arp_tl[i + 1][0] if i + 1 < len(arp_tl) else float("inf")
        if end is not None:
            res["arp_quiet_ms"] = round((t_new_hold - end) * 1000) if end != float("inf") else -1

    # How soon the new owner answered the ARP probe for the VIP after taking it.
    res["new_owner_arp_ms"] = None
    if new and t_new_hold is not None and mac_of.get(new):
        new_mac = mac_of[new]
        at_take = [macs for ts, macs in arp_tl if ts <= t_new_hold][-1:]
        if at_take and new_mac in at_take[0]:
            res["new_owner_arp_ms"] = 0
        else:
            first = next((ts for ts, macs in arp_tl if ts > t_new_hold and new_mac in macs), None)
            res["new_owner_arp_ms"] = "never" if first is None else round((first - t_new_hold) * 1000)

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
    # Failback: the VIP came back to the node it moved away from (preempt).
    res["failback_ms"] = None
    t_restart = ev.get("restart")
    if new and old and t_restart is not None:
        back = [ts for ts, o in timeline if ts > t_restart and o == [old[0]]]
        if back:
            res["failback_ms"] = round((back[0] - t_restart) * 1000)
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
        if t_fault is not None and len(old) != 1:
            # Not the scenario's fault: the VIP was already without a single owner
            # when the fault came (a leader election or lease loss just before).
            before = [(round(ts - t_fault, 3), o) for ts, o in timeline if ts <= t_fault][-3:]
            why.append(f"no single VIP owner at the moment of the fault (owners {old}; last changes, "
                       f"s relative to the fault: {before}): the cluster moved the VIP on its own just before")
        else:
            why.append("the VIP never moved away from the faulty owner")
    if a.expect_failover == "yes" and new and not any(r.get("lb") == ip_of.get(new) for r in ok if r["t1"] > t_fault):
        # Says which side failed: the VIP did move, but nothing came back through
        # the node that took it (the tail check below fails too, less tellingly).
        took = None if t_new_hold is None else round(t_new_hold - t_fault, 3)
        arp_new = res["new_owner_arp_ms"]
        why.append(f"the new owner {new} never gave a good HTTP answer (it took the address {took} s after the "
                   f"fault; its MAC answered the ARP probe for the VIP: "
                   f"{'n/a' if arp_new is None else arp_new}{' ms after it took it' if isinstance(arp_new, int) else ''})")
    if a.expect_failover == "no" and new:
        why.append(f"the VIP moved ({old[0]}->{new}) although the scenario should not move it")
    end = timeline[-1][1] if timeline else []
    if len(end) != 1:
        why.append(f"VIP owners at the end: {end}")
    if a.expect_owner and end != [a.expect_owner]:
        why.append(f"VIP owned by {end} at the end, expected {a.expect_owner}")
    if a.expect_moves is not None and res["vip_moves"] != a.expect_moves:
        why.append(f"the VIP changed owner {res['vip_moves']} times, expected {a.expect_moves}")
    if a.max_http_failed is not None and res["http_failed"] > a.max_http_failed:
        errs = {}
        for r in http:
            if not r.get("ok"):
                errs[r.get("err") or r.get("st")] = errs.get(r.get("err") or r.get("st"), 0) + 1
        why.append(f"{res['http_failed']} HTTP requests failed (at most {a.max_http_failed} allowed): {errs}")
    if a.min_failback_ms is not None and (res["failback_ms"] is None or res["failback_ms"] < a.min_failback_ms):
        why.append(f"failback after {res['failback_ms']} ms, expected no sooner than {a.min_failback_ms} ms")
    if a.no_double_addr and (summary.get("double_addr") or 0) > 0:
        why.append(f"two nodes held the VIP address at {summary.get('double_addr')} sampled instants")
    if a.expect_failover == "yes" and new and mac_of.get(new) and res["neigh_flip"] == "no":
        why.append(f"the client's neighbour entry for the VIP never named {new}'s MAC {mac_of[new]} "
                   f"(entries after the move: {[m for ts, m in neigh_tl if ts >= (t_new_hold or 0)][:5]})")
    if res.get("sticky_across") and not res["sticky_across"].endswith("/0"):
        why.append(f"sticky sessions answered on both sides of the move changed backend: {res['sticky_across']}")
    if a.check_arp_fence:
        if res["arp_quiet_ms"] is None:
            why.append("cannot tell when the old owner stopped answering ARP (no move or no ARP data)")
        elif res["arp_quiet_ms"] < 0:
            why.append("the old owner still answered ARP for the VIP when the new owner took it")
    tail = [r for r in http if http and r["t1"] > http[-1]["t1"] - 1.0]
    if not any(r.get("ok") for r in tail):
        why.append("no good HTTP answer in the last second of load")
    res["result"] = "FAIL" if why else "PASS"
    if why:
        res["why"] = why

    keys = ["scenario", "result", "failover_ms", "gap_ms", "http_sent", "http_failed", "http_retried",
            "sticky_kept", "sticky_broken", "sticky_across", "tcp_sent", "tcp_failed", "tcp_reconnects",
            "tcp_max_gap_ms", "double_owner", "double_addr", "double_arp", "neigh_flip", "arp_quiet_ms",
            "new_owner_arp_ms", "vip_moves", "failback_ms", "no_owner_ms", "owner_before", "owner_after", "config"]
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
