#!/usr/bin/env python3
"""Admin API helper for the chaos scripts (runs in the client namespace).

  cluster           print every node's GET /api/v1/cluster (or why it failed)
  wait-healthy      wait (bounded) until every node answers and all agree on one leader
  mark              commit one config change (weight of the third backend of pool
                    `web`, toggled 1 <-> 2) and print "v<version>:<weight>"
                    (the weight is read back from GET /api/v1/pools/web on each proxy)
  check MARK        every node must report config_version >= version and the weight;
                    prints "ok", "lost:<why>" or "n/a:<why>"
  leader            print the name of the Raft leader (lb1, lb2, wit) or "-"
  lease OWNER       the owner's GET /api/v1/cluster must show lease_remaining_ms for each
                    VIP it owns, within (0, lease_ms], and every other node null; prints
                    "ok:<ms>" or "bad:<why>"
  set-preempt true|false [--delay-ms N]
                    rewrite `preempt` / `preempt_delay_ms` of every [[vip]] in the cluster
                    config (GET + PUT /api/v1/config with base_version) and print the new
                    config version

Logs in as `admin` with the lab's bootstrap password ($QLAB_DIR/etc/admin.pass) and
keeps the session in $QLAB_DIR/admin-sessions.json, so the many short runs of a chaos
suite do not hit the admin API's login rate limit (a session the node refuses is
replaced by a new login). Standard library only.
"""

import argparse
import http.client
import json
import os
import sys
import time

NODES = {"lb1": "10.10.0.11", "lb2": "10.10.0.12", "wit": "10.10.0.13"}
PORT = 9090
POOL = "web"
BACKEND = "10.10.0.23:8080"


class Sessions:
    """Session cookies by host, kept in a file between runs of this script."""

    def __init__(self, path):
        self.path = path
        try:
            with open(path) as f:
                self.data = json.load(f)
        except (OSError, ValueError):
            self.data = {}

    def get(self, host):
        s = self.data.get(host)
        return (s["cookie"], s["csrf"]) if isinstance(s, dict) and "cookie" in s and "csrf" in s else (None, None)

    def put(self, host, cookie, csrf):
        self.data[host] = {"cookie": cookie, "csrf": csrf}
        tmp = self.path + ".tmp"
        try:
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                json.dump(self.data, f)
            os.replace(tmp, self.path)
        except OSError:
            pass  # only a cache


class Api:
    def __init__(self, host, password, timeout=2.0, sessions=None):
        self.host, self.password, self.timeout = host, password, timeout
        self.sessions = sessions
        self.cookie, self.csrf = sessions.get(host) if sessions else (None, None)

    def req(self, method, path, body=None, auth=True, retry=True):
        st, r, data = self._req(method, path, body, auth)
        if auth and retry and st in (401, 403):
            # The cached session expired or the node forgot it: log in again, once.
            self.cookie = None
            st, r, data = self._req(method, path, body, auth)
        return st, r, data

    def _req(self, method, path, body=None, auth=True):
        c = http.client.HTTPConnection(self.host, PORT, timeout=self.timeout)
        headers = {"content-type": "application/json"}
        if auth:
            if self.cookie is None:
                self.login()
            headers["cookie"] = self.cookie
            if method != "GET":
                headers["x-csrf-token"] = self.csrf
        c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, r, data

    def login(self):
        c = http.client.HTTPConnection(self.host, PORT, timeout=self.timeout)
        c.request("POST", "/api/v1/session", body=json.dumps({"username": "admin", "password": self.password}),
                  headers={"content-type": "application/json"})
        r = c.getresponse()
        data = r.read()
        c.close()
        if r.status != 200:
            raise RuntimeError(f"login on {self.host}: HTTP {r.status} {data[:200]!r}")
        self.cookie = "; ".join(v.split(";", 1)[0] for k, v in r.getheaders() if k.lower() == "set-cookie")
        self.csrf = json.loads(data)["csrf_token"]
        if self.sessions:
            self.sessions.put(self.host, self.cookie, self.csrf)

    def json(self, method, path, body=None):
        st, _, data = self.req(method, path, body)
        if st != 200:
            raise RuntimeError(f"{method} {path} on {self.host}: HTTP {st} {data[:200]!r}")
        return json.loads(data)


def apis(d):
    pw = open(f"{d}/etc/admin.pass").read().strip()
    sessions = Sessions(f"{d}/admin-sessions.json")
    return {n: Api(ip, pw, sessions=sessions) for n, ip in NODES.items()}


def cluster_views(a):
    out = {}
    for n, api in a.items():
        try:
            out[n] = api.json("GET", "/api/v1/cluster")
        except Exception as e:  # noqa: BLE001
            out[n] = {"error": str(e)}
    return out


def weight_on(api):
    """The backend's weight as this node applies it (GET /api/v1/pools/{pool}).

    Not read from GET /api/v1/config: a weight change is committed as its own
    command and the config text there does not show it."""
    for b in api.json("GET", f"/api/v1/pools/{POOL}")["backends"]:
        if b.get("address") == BACKEND:
            return b.get("weight")
    return None


def set_preempt(text, preempt, delay_ms):
    """The config text with `preempt`/`preempt_delay_ms` of every [[vip]] replaced."""
    out, in_vip = [], False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            in_vip = stripped == "[[vip]]"
            out.append(line)
            if in_vip:
                out.append(f"preempt = {preempt}")
                out.append(f"preempt_delay_ms = {delay_ms}")
            continue
        key = stripped.split("=", 1)[0].strip()
        if in_vip and key in ("preempt", "preempt_delay_ms"):
            continue
        out.append(line)
    if not any(l.strip() == "[[vip]]" for l in out):
        raise RuntimeError("the cluster config has no [[vip]]")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("cluster")
    w = sub.add_parser("wait-healthy")
    w.add_argument("--timeout", type=float, default=30)
    sub.add_parser("mark")
    c = sub.add_parser("check")
    c.add_argument("mark")
    sub.add_parser("leader")
    ls = sub.add_parser("lease")
    ls.add_argument("owner", choices=sorted(NODES))
    sp = sub.add_parser("set-preempt")
    sp.add_argument("preempt", choices=["true", "false"])
    sp.add_argument("--delay-ms", type=int, default=0)
    a = ap.parse_args()
    nodes = apis(a.dir)

    if a.cmd == "cluster":
        print(json.dumps(cluster_views(nodes), indent=1))
        return 0

    if a.cmd == "leader":
        ids = {1: "lb1", 2: "lb2", 3: "wit"}
        for v in cluster_views(nodes).values():
            if v.get("leader") is not None:
                print(ids.get(v["leader"], str(v["leader"])))
                return 0
        print("-")
        return 0

    if a.cmd == "lease":
        views = cluster_views(nodes)
        problems, shown = [], None
        for n, v in views.items():
            if "error" in v:
                problems.append(f"{n}: {v['error'][:80]}")
                continue
            for vip in v.get("vips", []):
                left = vip.get("lease_remaining_ms")
                if n == a.owner and vip.get("owner") == v.get("node_id"):
                    if left is None or not 0 < left <= (vip.get("lease_ms") or 0):
                        problems.append(f"{n}: lease_remaining_ms={left} lease_ms={vip.get('lease_ms')}")
                    shown = left
                elif left is not None:
                    problems.append(f"{n} does not own {vip.get('address')} but shows lease_remaining_ms={left}")
        if shown is None and not problems:
            problems.append(f"{a.owner} is not the owner in its own view")
        print("bad:" + "; ".join(problems) if problems else f"ok:{shown}")
        return 0

    if a.cmd == "set-preempt":
        if not 0 <= a.delay_ms <= 600_000:
            print("--delay-ms must be within 0..600000", file=sys.stderr)
            return 2
        last_err = None
        for api in nodes.values():
            try:
                doc = api.json("GET", "/api/v1/config")
                text = set_preempt(doc["toml"], a.preempt, a.delay_ms)
                ack = api.json("PUT", "/api/v1/config", {"toml": text, "base_version": doc["version"],
                                                         "comment": f"chaos: preempt={a.preempt} delay={a.delay_ms}ms"})
                print(ack.get("config_version"))
                return 0
            except Exception as e:  # noqa: BLE001
                last_err = e
        print(f"set-preempt failed: {last_err}", file=sys.stderr)
        return 1

    if a.cmd == "wait-healthy":
        start = time.monotonic()
        deadline = start + min(a.timeout, 300)
        views, ever = {}, False
        while time.monotonic() < deadline:
            views = cluster_views(nodes)
            ever = ever or any("error" not in v for v in views.values())
            if not ever and time.monotonic() - start > 5:
                print(f"admin API unavailable: {json.dumps(views)[:600]}", file=sys.stderr)
                return 3
            leaders = {v.get("leader") for v in views.values()}
            if all("error" not in v for v in views.values()) and len(leaders) == 1 and None not in leaders:
                lv = next(v for v in views.values() if v.get("node_id") == next(iter(leaders)))
                contacts = [m.get("last_contact_ms") for m in lv.get("nodes", []) if m.get("id") != lv["node_id"]]
                # last_contact_ms may be unknown (None); when known it must be fresh.
                if all(c is None or c < 1000 for c in contacts):
                    return 0
            time.sleep(0.2)
        print(f"not healthy: {json.dumps(views)[:1500]}", file=sys.stderr)
        return 1

    if a.cmd == "mark":
        try:
            leader = None
            for v in cluster_views(nodes).values():
                leader = leader or v.get("leader")
            # Any node forwards writes to the leader; try them in turn.
            last_err = None
            for api in nodes.values():
                try:
                    new = 2 if weight_on(api) == 1 else 1
                    ack = api.json("PUT", f"/api/v1/pools/{POOL}/backends/{BACKEND}/weight", {"weight": new})
                    print(f"v{ack['config_version']}:{new}")
                    return 0
                except Exception as e:  # noqa: BLE001
                    last_err = e
            print(f"mark failed: {last_err}", file=sys.stderr)
        except Exception as e:  # noqa: BLE001
            print(f"mark failed: {e}", file=sys.stderr)
        print("n/a:admin-api-unavailable")
        return 0

    if a.cmd == "check":
        ver, weight = a.mark[1:].split(":")
        ver, weight = int(ver), int(weight)
        problems, unreachable = [], []
        deadline = time.monotonic() + 10  # a restarted node may still be catching up
        while True:
            problems, unreachable = [], []
            for n, api in nodes.items():
                try:
                    v = api.json("GET", "/api/v1/cluster")["config_version"]
                    if v < ver:
                        problems.append(f"{n}:version {v}<{ver}")
                        continue
                    if n != "wit":
                        got = weight_on(api)
                        if got != weight:
                            problems.append(f"{n}:weight {got}!={weight}")
                except Exception as e:  # noqa: BLE001
                    unreachable.append(f"{n}:{type(e).__name__}")
            if not problems and not unreachable or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if problems:
            print("lost:" + ",".join(problems))
        elif unreachable:
            print("n/a:unreachable:" + ",".join(unreachable))
        else:
            print("ok")
        return 0


if __name__ == "__main__":
    sys.exit(main())
