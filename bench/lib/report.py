#!/usr/bin/env python3
"""Turns the raw CSV of a bench run into the table of medians with the ratio
quorumlb/peer for each row. Reads CSV and a small header file; writes Markdown."""

import csv
import statistics
import sys

CONTENDERS = ["direct", "quorumlb", "nginx", "haproxy-http", "haproxy-tcp"]
TITLES = {"direct": "direct (ceiling)", "quorumlb": "quorumlb", "nginx": "nginx",
          "haproxy-http": "HAProxy http", "haproxy-tcp": "HAProxy tcp"}
PEERS = ["nginx", "haproxy-http", "haproxy-tcp", "direct"]
# row id, label, unit, True when higher is better
ROWS = [
    ("ka50_rps", "HTTP/1.1 keep-alive, 50 conns", "req/s", True),
    ("ka50_p50", "  p50 latency, 50 conns", "ms", False),
    ("ka50_p99", "  p99 latency, 50 conns", "ms", False),
    ("ka200_rps", "HTTP/1.1 keep-alive, 200 conns", "req/s", True),
    ("ka200_p50", "  p50 latency, 200 conns", "ms", False),
    ("ka200_p99", "  p99 latency, 200 conns", "ms", False),
    ("close_cps", "New connections (Connection: close), 50 conns", "conn/s", True),
    ("tls50_rps", "HTTPS keep-alive, 50 conns", "req/s", True),
    ("tls_hs", "HTTPS full handshakes + 1 GET (openssl s_time -new x8)", "hs/s", True),
    ("body1m_mbs", "1 MiB bodies, 10 conns", "MB/s", True),
    ("l4_mbs", "L4 TCP (1 MiB bodies through a tcp listener), 10 conns", "MB/s", True),
    ("idle_kib", "Memory per idle keep-alive conn (5,000 open)", "KiB", False),
]


def fmt(v, unit):
    if unit == "ms":
        return f"{v:.2f}"
    if unit == "KiB":
        return f"{v:.2f}"
    return f"{v:,.0f}"


def main():
    csv_path, header_path = sys.argv[1], sys.argv[2]
    vals, notes, errs, na = {}, {}, {}, {}
    with open(csv_path) as f:
        for r in csv.DictReader(f):
            key = (r["row"], r["contender"])
            if r["value"] == "n/a":
                na[key] = r["note"]
                continue
            vals.setdefault(key, []).append(float(r["value"]))
            if int(r["errors"] or 0) > 0:
                errs.setdefault(key, []).append(r["note"] or f'{r["errors"]} errors')
    out = [open(header_path).read().rstrip(), ""]
    out.append("| Row | unit | " + " | ".join(TITLES[c] for c in CONTENDERS) + " | "
               + " | ".join(f"quorumlb/{TITLES[p]}" for p in PEERS) + " |")
    out.append("|---|---|" + "---:|" * (len(CONTENDERS) + len(PEERS)))
    footnotes = []
    for row, label, unit, higher in ROWS:
        med = {}
        cells = []
        for c in CONTENDERS:
            key = (row, c)
            if key in vals:
                med[c] = statistics.median(vals[key])
                cell = fmt(med[c], unit)
                if key in errs:
                    footnotes.append(f"{label} / {TITLES[c]}: {len(errs[key])} run(s) with errors, e.g. {errs[key][0]}")
                    cell += f" [!{len(footnotes)}]"
                cells.append(cell)
            elif key in na:
                cells.append(f"n/a ({na[key]})")
            else:
                cells.append("—")
        ratios = []
        for p in PEERS:
            if "quorumlb" in med and p in med and med[p] > 0:
                ratios.append(f"{med['quorumlb'] / med[p]:.2f}")
            else:
                ratios.append("—")
        arrow = "↑" if higher else "↓"
        out.append(f"| {label} | {unit} {arrow} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    out.append("")
    out.append("↑ higher is better, ↓ lower is better; a ratio is quorumlb's median divided by the peer's "
               "(so above 1 is better for ↑ rows and worse for ↓ rows). — = not a row for that contender.")
    if footnotes:
        out.append("")
        out += [f"[!{i}] {t}" for i, t in enumerate(footnotes, 1)]
    print("\n".join(out))


if __name__ == "__main__":
    main()
