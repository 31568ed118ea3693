#!/usr/bin/env python3
"""Render one run of benches/compare/run.sh (a results directory) as a markdown table.

Reads facts.txt, workloads.tsv, raw.tsv (one line per timed run), cells.tsv (the status of each
workload x tool cell) and notes.tsv (footnotes). A cell shows a time only when its status is
`ok`, i.e. every one of its runs exited 0 and the checked run produced the right tree.
"""

import statistics
import sys
from collections import defaultdict
from pathlib import Path

TOOLS = ["xsync", "rsync", "cp", "tar", "fcp", "xcp"]
LABELS = {"xsync": "xsync -a", "rsync": "rsync -a", "cp": "cp -a", "tar": "tar \\| tar",
          "fcp": "fcp", "xcp": "xcp -r"}


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


def tsv(path):
    p = Path(path)
    if not p.exists():
        return []
    return [line.rstrip("\n").split("\t") for line in p.read_text().splitlines() if line.strip()]


def main(resdir):
    d = Path(resdir)
    facts = d.joinpath("facts.txt").read_text().strip().splitlines()
    workloads = tsv(d / "workloads.tsv")
    samples = defaultdict(list)  # (w, t) -> [(wall, rss)]
    for w, t, _run, wall, rss in tsv(d / "raw.tsv"):
        samples[(w, t)].append((float(wall), int(rss)))
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

    medians = {}
    out = ["| workload | what | " + " | ".join(LABELS[t] for t in TOOLS) + " | xsync/rsync | xsync/cp -a |",
           "|" + "---|" * (len(TOOLS) + 4)]
    for w, desc in workloads:
        row = [f"`{w}`", desc]
        for t in TOOLS:
            status, text = cells.get((w, t), ("none", ""))
            marks = "".join(ref(f"{w}, {LABELS[t]}: {n}") for n in notes.get((w, t), []))
            if status == "ok" and samples[(w, t)]:
                walls = [s[0] for s in samples[(w, t)]]
                med = statistics.median(walls)
                medians[(w, t)] = med
                cell = (f"{secs(med)} s ({secs(min(walls))}–{secs(max(walls))}) · "
                        f"{mib(max(s[1] for s in samples[(w, t)]))} MiB")
                if len(walls) == 1:
                    cell = f"{secs(med)} s · {mib(samples[(w, t)][0][1])} MiB"
            elif status == "na":
                cell = "n/a (xsync: not implemented)"
            elif status == "wrong":
                cell = "WRONG RESULT"
            elif status == "fail":
                cell = f"FAILED ({text})"
            elif status in ("skipped", "pending"):
                cell = status + (ref(text.strip("()")) if text else "")
            else:
                cell = "—"
            row.append(cell + marks)
        x = medians.get((w, "xsync"))
        for base in ("rsync", "cp"):
            b = medians.get((w, base))
            if x is not None and b:
                row.append(f"{x / b:.2f}×")
            elif cells.get((w, "xsync"), ("",))[0] == "pending":
                row.append("pending")
            else:
                row.append("—")
        out.append("| " + " | ".join(row) + " |")

    print("\n".join(f"- {f}" for f in facts))
    print()
    print("\n".join(out))
    print()
    print("Cells: median wall time (min–max over the runs) · peak RSS of the largest single "
          "process. Ratios: xsync's median over the other tool's median, same invocation "
          "(below 1 means xsync is faster). `—`: not applicable to that tool.")
    if footnotes:
        print()
        for i, f in enumerate(footnotes, 1):
            print(f"[{i}] {f}  ")


if __name__ == "__main__":
    main(sys.argv[1])
