#!/usr/bin/env python3
"""Admin API helper for the chaos scripts (runs in the client namespace).

  cluster           print every node's GET /api/v1/cluster (or why it failed)
  wait-healthy      wait (bounded) until every node answers and all agree on one leader
  mark              commit one config change (weight of the third backend of pool
                    `web`, toggled 1 <-> 2) and print "v<version>:<weight>"
                    (the weight is read back from GET /api/v1/pools/web on each proxy)
  check MARK        every node must report config_version >= version and the weight;
                    prints "ok", "lost:<why>" or "n/a:<why>"

Logs in as `admin` with the lab's bootstrap password ($QLAB_DIR/etc/admin.pass).
Standard library only.
"""

import argparse
import http.client
import json
import sys
import time

NODES = {"lb1": "10.10.0.11", "lb2": "10.10.0.12", "wit": "10.10.0.13"}
PORT = 9090
POOL = "web"
BACKEND = "10.10.0.23:8080"


class Api:
    def __init__(self, host, password, timeout=2.0):
        self.host, self.password, self.timeout = host, password, timeout
        self.cookie = self.csrf = None

    def req(self, method, path, body=None, auth=True):
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

    def json(self, method, path, body=None):
        st, _, data = self.req(method, path, body)
        if st != 200:
            raise RuntimeError(f"{method} {path} on {self.host}: HTTP {st} {data[:200]!r}")
        return json.loads(data)


def apis(d):
    pw = open(f"{d}/etc/admin.pass").read().strip()
    return {n: Api(ip, pw) for n, ip in NODES.items()}


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
    a = ap.parse_args()
    nodes = apis(a.dir)

    if a.cmd == "cluster":
        print(json.dumps(cluster_views(nodes), indent=1))
        return 0

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
