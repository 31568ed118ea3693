#!/usr/bin/env python3
"""Render one run of benches/compare/run.sh (a results directory) as markdown tables.

Reads facts.txt, transports.tsv (one line per transport that ran), workloads.tsv, raw.tsv (one
line per timed run), cells.tsv (the status of each workload x tool cell) and notes.tsv
(footnotes). A cell shows a time only when its status is `ok`, i.e. every one of its runs
exited 0 and the checked run produced the right tree.

One table per transport. The local one races the copy floor too; a remote one (ssh, netns)
races xsync and rsync only, and adds the bytes on the wire (sent + received through
count-bytes) and the server side's peak RSS.
"""

import statistics
import sys
from collections import defaultdict
from pathlib import Path

TOOLS = ["xsync", "rsync", "cp", "tar", "fcp", "xcp"]
REMOTE_TOOLS = ["xsync", "rsync"]
LABELS = {"xsync": "xsync -a", "rsync": "rsync -a", "cp": "cp -a", "tar": "tar \\| tar",
          "fcp": "fcp", "xcp": "xcp -r"}
TITLES = {"local": "local (both paths on this machine)",
          "ssh": "ssh (loopback), push",
          "pull": "ssh (loopback), pull",
          "netns": "netns (100 Mbit/s veth between two network namespaces)"}


def secs(x):
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def mib(kib):
    m = kib / 1024
    return f"{m:.0f}" if m >= 10 else f"{m:.1f}"


def size(b):
    """Decimal units, three significant digits: the bytes on the wire."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= scale:
            v = b / scale
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{b} B"


def tsv(path):
    p = Path(path)
    if not p.exists():
        return []
    return [line.rstrip("\n").split("\t") for line in p.read_text().splitlines() if line.strip()]


def num(s):
    # float first: an older run.sh let awk print big sums as 4.29513e+09.
    return int(float(s)) if s not in ("", "-") else None


def main(resdir):
    d = Path(resdir)
    facts = d.joinpath("facts.txt").read_text().strip().splitlines()
    transports = tsv(d / "transports.tsv")
    workloads = tsv(d / "workloads.tsv")  # key transport id desc
    samples = defaultdict(list)  # (key, tool) -> [(wall, rss, bytes or None, server rss or None)]
    for row in tsv(d / "raw.tsv"):
        w, t, _run, wall, rss = row[:5]
        sent, recv, srv = (row[5:8] + ["-", "-", "-"])[:3]
        wire = None if num(sent) is None or num(recv) is None else num(sent) + num(recv)
        samples[(w, t)].append((float(wall), int(rss), wire, num(srv)))
    cells = {}
    for row in tsv(d / "cells.tsv"):
        w, t, status = row[0], row[1], row[2]
        text = row[3] if len(row) > 3 else ""
        # The first verdict that is not `ok` wins (a tool that failed once has no time).
        if (w, t) not in cells or cells[(w, t)][0] == "ok":
            cells[(w, t)] = (status, text)
    notes = defaultdict(list)
    for row in tsv(d / "notes.tsv"):
        notes[(row[0], row[1])].append(row[2])

    footnotes = []  # deduplicated texts, numbered in order of first use

    def ref(text):
        if text not in footnotes:
            footnotes.append(text)
        return f" [{footnotes.index(text) + 1}]"

    def tool_cell(key, wid, t, remote):
        status, text = cells.get((key, t), ("none", ""))
        marks = "".join(ref(f"{wid}, {LABELS[t]}: {n}") for n in notes.get((key, t), []))
        runs = samples[(key, t)]
        if status == "ok" and runs:
            walls = [s[0] for s in runs]
            med = statistics.median(walls)
            rss = f"{mib(max(s[1] for s in runs))} MiB"
            srv = [s[3] for s in runs if s[3] is not None]
            if remote:
                rss += f" (server {mib(max(srv))} MiB)" if srv else " (server ?)"
            if len(walls) == 1:
                cell = f"{secs(med)} s · {rss}"
            else:
                cell = f"{secs(med)} s ({secs(min(walls))}–{secs(max(walls))}) · {rss}"
            return cell + marks, med
        if status == "na":
            cell = "n/a (xsync: not implemented)"
        elif status == "wrong":
            cell = "WRONG RESULT"
        elif status == "fail":
            cell = f"FAILED ({text})"
        elif status in ("skipped", "pending"):
            cell = status + (ref(text.strip("()")) if text else "")
        else:
            cell = "—"
        return cell + marks, None

    def wire(key, t):
        if cells.get((key, t), ("",))[0] != "ok":
            return None
        b = [s[2] for s in samples[(key, t)] if s[2] is not None]
        return statistics.median(b) if b else None

    def ratio(x, b, key):
        if x is not None and b:
            r = x / b
            # Two significant digits when small: a no-op's 253 B against 1.35 MB is not "0.00×".
            return f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"
        if cells.get((key, "xsync"), ("",))[0] == "pending":
            return "pending"
        return "—"

    print("\n".join(f"- {f}" for f in facts))
    order = [t for t, _ in transports] or sorted({w[1] for w in workloads})
    tdesc = dict((row[0], row[1] if len(row) > 1 else "") for row in transports)
    for transport in order:
        rows = [w for w in workloads if w[1] == transport]
        if not rows:
            continue
        remote = transport != "local"
        print()
        print(f"**transport: {transport}** — {TITLES.get(transport, transport)}: "
              f"{tdesc.get(transport, '')}")
        print()
        if remote:
            cols = [LABELS[t] for t in REMOTE_TOOLS] + [
                "xsync/rsync", "xsync bytes", "rsync bytes", "bytes xsync/rsync"]
        else:
            cols = [LABELS[t] for t in TOOLS] + ["xsync/rsync", "xsync/cp -a"]
        print("| workload | what | " + " | ".join(cols) + " |")
        print("|" + "---|" * (len(cols) + 2))
        for key, _tr, wid, desc in rows:
            row = [f"`{wid}`", desc]
            med = {}
            for t in REMOTE_TOOLS if remote else TOOLS:
                text, m = tool_cell(key, wid, t, remote)
                row.append(text)
                med[t] = m
            row.append(ratio(med.get("xsync"), med.get("rsync"), key))
            if remote:
                xb, rb = wire(key, "xsync"), wire(key, "rsync")
                row += [size(xb) if xb is not None else "—", size(rb) if rb is not None else "—",
                        ratio(xb, rb, key)]
            else:
                row.append(ratio(med.get("xsync"), med.get("cp"), key))
            print("| " + " | ".join(row) + " |")

    print()
    print("Cells: median wall time (min–max over the runs) · peak RSS of the largest single "
          "process (remote: the client tool's own, read by count-bytes, and the server's, "
          "from remote-rss). Bytes: sent + received on the remote shell's pipes, median over "
          "the runs. Ratios: xsync's median over the other tool's median, same invocation "
          "(below 1 means xsync is faster or smaller). `—`: not applicable to that tool.")
    if footnotes:
        print()
        for i, f in enumerate(footnotes, 1):
            print(f"[{i}] {f}  ")


if __name__ == "__main__":
    main(sys.argv[1])
