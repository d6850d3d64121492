#!/usr/bin/env python3
"""For every era fixture (kernel samples and fixtures/kernel) and every N from 0 to
current_era + 1: the number of blocks the ground truth lists for
--written-since N, what dmce's era_invalidate lists (and whether it is exactly the
truth), and what Debian's thin-provisioning-tools 0.9.0 lists (and whether it is).
With --metadata-snapshot for fixtures that hold a snapshot.

usage: benches/invalidate_table.py [path/to/dmce]
"""
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DMCE = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/dmce")
PEER = "/usr/sbin/era_invalidate"


def blocks(xml):
    out = set()
    for m in re.finditer(r'<block block="(\d+)"/>|<range begin="(\d+)" end\s*=\s*"(\d+)"/>', xml):
        if m.group(1):
            out.add(int(m.group(1)))
        else:
            out.update(range(int(m.group(2)), int(m.group(3))))
    return out


def truth_sets(eras, nr, n):
    listed = set()
    for era, ranges in eras.items():
        if int(era) >= n:
            for b, e in ranges:
                listed.update(range(b, e))
    if n == 0:
        listed = set(range(nr))
    return listed


def cases():
    sample = os.path.join(ROOT, "fixtures/samples/era-b-eras")
    g = json.load(open(os.path.join(sample, "ground-truth.json")))
    yield "era-b-eras", os.path.join(sample, "metadata.img.zst"), g["nr_blocks"], g["current_era_model"], {k: v for k, v in g["last_written_era_ranges"].items()}, None
    kdir = os.path.join(ROOT, "fixtures/kernel")
    for name in sorted(os.listdir(kdir)):
        t = os.path.join(kdir, name, "truth.json")
        if not name.startswith("era") or not os.path.exists(t):
            continue
        t = json.load(open(t))
        yield name, os.path.join(kdir, name, "metadata.img.zst"), t["nr_blocks"], t["current_era"], t["last_written_era"], t.get("snapshot_last_written_era") if t.get("metadata_snap") else None


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.stdout if p.returncode == 0 else None


print(f"{'fixture':<16} {'view':<9} {'N':>3} {'truth':>7} {'dmce':>7} {'':<6} {'0.9.0':>7} {'':<6}")
with tempfile.TemporaryDirectory() as tmp:
    for name, zst, nr, cur, eras, snap in cases():
        img = os.path.join(tmp, name + ".img")
        subprocess.run(["zstd", "-dqf", zst, "-o", img], check=True)
        views = [("live", eras, [])]
        if snap is not None:
            views.append(("snapshot", snap, ["--metadata-snapshot"]))
        for view, truth_eras, flag in views:
            for n in range(cur + 2):
                want = truth_sets(truth_eras, nr, n)
                ours = run([DMCE, "era_invalidate", "--written-since", str(n)] + flag + [img])
                peer = run([PEER, "--written-since", str(n)] + flag + [img])
                o = blocks(ours) if ours is not None else None
                p = blocks(peer) if peer is not None else None
                fmt = lambda s: "error" if s is None else str(len(s))
                ok = lambda s: "" if s is None else ("exact" if s == want else ("MISSES" if want - s else "extra"))
                print(f"{name:<16} {view:<9} {n:>3} {len(want):>7} {fmt(o):>7} {ok(o):<6} {fmt(p):>7} {ok(p):<6}")
