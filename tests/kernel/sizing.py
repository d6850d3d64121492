"""run-all group `size`: the kernel on a metadata device of exactly the size
`dmce clone_metadata_size` / `era_metadata_size` gives.

  clone: the target hydrates fully (background hydration, or a discard of the whole
         device with no_hydration, which sets every region's bit in one transaction:
         the commit then rewrites the whole bitset) without running out of metadata
         space; the status's total must be the figure, and the figure at most twice
         the blocks the kernel uses.
  era:   many checkpoints, each after one write into every era-array block's range
         (so each digest rewrites the whole era array, in one transaction since
         nothing commits while it runs), with metadata snapshots taken, held across
         such digests, and dropped; the last one is held to the end.  After each
         checkpoint the run waits for the digest to end (the status line stays the
         same for a second), so no more writesets wait than the figure allows for.  Every step
         must succeed and the target must never report a failure; the status line's
         used count is taken before the status's own commit, so it includes what the
         open transaction allocated: the largest is the peak seen.  The figure must
         be at most twice the used count of the last status (a snapshot held).

The figures and counts of each run are printed in the case's detail line, and with
`--keep` written to size.json in its work directory.
"""
import json
import os
import re
import shutil
import subprocess

import lab

BLOCK = 4096


class Failure(Exception):
    pass


def figure(tool_cmd, args):
    """The figure in bytes, from `<tool> ARGS -u b -n`."""
    if shutil.which(tool_cmd[0]) is None:
        raise Failure(f"tool missing: {tool_cmd[0]} (build with `cargo build --release` or set the env override)")
    r = subprocess.run(tool_cmd + args + ["-u", "b", "-n"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise Failure(f"`{' '.join(tool_cmd + args)} -u b -n` exited {r.returncode}: {r.stderr.strip()[:200]}")
    n = int(r.stdout.strip())
    if n % BLOCK:
        raise Failure(f"figure {n} bytes is not whole 4096-byte blocks")
    return n


def metadata_errors(res):
    """Kernel messages of the targets or persistent-data saying something failed
    (metadata space ran out, a commit failed, read-only mode)."""
    who = re.compile(r"device-mapper: (era|clone|space map|btree|array|bitset|transaction manager|block manager)", re.I)
    bad = re.compile(r"fail|unable|could ?n[o']t|no space|ENOSPC|read-only|error", re.I)
    return [l for l in res["dmesg"] if who.search(l) and bad.search(l)]


def statuses(res, parse):
    out = []
    for op in res["ops"]:
        for st in op["status"]:
            p = parse(st["line"])
            if p is None or "mode" in p and p["mode"] in ("Fail", "Error"):
                raise Failure(f"status after `{op['step']}`: {st['line']}")
            out.append(p)
    return out


def check_steps(res):
    if res.get("qemu_rc") != 0 or not res.get("end"):
        raise Failure(f"guest did not finish: qemu {res.get('qemu_rc')} {res.get('qemu_out', '')[-300:]}")
    failed = [op for op in res["ops"] if op["rc"] != 0]
    if failed:
        op = failed[0]
        raise Failure(f"`{op['step']}` exited {op['rc']}: {' | '.join(op['err'][:2])} {lab.dm_lines(op['dmesg'])[:2]}")
    errs = metadata_errors(res)
    if errs:
        raise Failure("kernel: " + " | ".join(errs[:3]))


def our_check(check_cmd, img):
    r = subprocess.run(check_cmd + [img], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise Failure(f"`{' '.join(check_cmd)}` of the image the kernel left exited {r.returncode}: "
                      f"{(r.stdout + r.stderr).strip()[:300]}")
    m = re.search(r"metadata blocks (\d+)/(\d+) used", r.stdout + r.stderr)
    if not m:
        raise Failure(f"no 'metadata blocks U/T used' in {r.stdout.strip()[:200]}")
    return int(m.group(1)), int(m.group(2))


def ratio_ok(fig_blocks, used, what):
    if fig_blocks > 2 * used:
        raise Failure(f"figure {fig_blocks} blocks is more than twice the {used} blocks the kernel used ({what})")


def keep(d, info):
    with open(os.path.join(d, "size.json"), "w") as f:
        json.dump(info, f, indent=1)


# ------------------------------------------------------------------ clone

# name, device sectors, region sectors, how: "hydrate" (writes, a discard of a
# quarter, then background hydration) or "discard" (no_hydration, one discard of
# the whole device), guest memory (MB)
CLONE_CASES = [
    ("size-clone-1g-rs8-hydrate", 1 << 21, 8, "hydrate", 512),
    ("size-clone-64g-rs8-discard", 1 << 27, 8, "discard", 512),
    ("size-clone-1t-rs1024-discard", 1 << 31, 1024, "discard", 512),
]
# Slow (8 minutes under TCG, most of it the commit setting 2^28 region bits one by
# one): only with `run-all --slow`.
CLONE_SLOW = [
    ("size-clone-1t-rs8-discard", 1 << 31, 8, "discard", 1024),
    ("size-clone-256g-rs64-discard", 1 << 29, 64, "discard", 512),
    ("size-clone-4g-rs64-hydrate", 1 << 23, 64, "hydrate", 512),
]


def run_clone(name, sectors, rs, how, mem, work, tools):
    d = os.path.join(work, name)
    os.makedirs(d)
    fig = figure(tools["clone_metadata_size"], ["-s", str(sectors), "-r", str(rs)])
    fig_blocks = fig // BLOCK
    nr = (sectors + rs - 1) // rs
    meta, src, dst = (os.path.join(d, f) for f in ("meta.img", "src.img", "dst.img"))
    lab.make_disk(meta, fig)
    lab.make_disk(src, sectors * lab.SECTOR)
    lab.make_disk(dst, sectors * lab.SECTOR)
    if how == "hydrate":
        table = (f"0 {sectors} clone @meta @dest @src {rs} 1 no_hydration "
                 f"4 hydration_threshold 512 hydration_batch_size 256")
        steps = [f"create c {table}", "status c", "write c 0 64 A", "write c 1000000 8 B",
                 f"discard c {sectors // 2} {sectors // 4}", "status c",
                 "message c enable_hydration", "wait-hydrated c 600", "status c", "remove c"]
    else:
        table = f"0 {sectors} clone @meta @dest @src {rs} 2 no_hydration no_discard_passdown"
        steps = [f"create c {table}", "status c", f"discard c 0 {sectors}", "status c",
                 "write c 1000 64 A", "status c", "remove c"]
    try:
        res = lab.run_guest([("meta", meta), ("dest", dst), ("src", src)], steps,
                            os.path.join(d, "guest"), timeout=1800, mem=mem)
        check_steps(res)
        sts = statuses(res, lab.parse_clone_status)
        last = sts[-1]
        if last["metadata_total"] != fig_blocks:
            raise Failure(f"kernel's metadata total {last['metadata_total']} != figure {fig_blocks}")
        if last["hydrated"] != nr or last["nr_regions"] != nr:
            raise Failure(f"hydrated {last['hydrated']}/{last['nr_regions']}, expected all {nr}")
        used_max = max(s["metadata_used"] for s in sts)
        used_img, total_img = our_check(tools["clone_check"], meta)
        ratio_ok(fig_blocks, last["metadata_used"], "last status")
        info = {"case": name, "device_sectors": sectors, "region_sectors": rs, "regions": nr,
                "figure_blocks": fig_blocks, "status_used_max": used_max,
                "status_used_end": last["metadata_used"], "image_used": used_img, "image_total": total_img,
                "guest_seconds": res["ops"][-1]["t1"] - res["ops"][0]["t0"]}
        keep(d, info)
        return (f"{sectors * 512 >> 20} MiB, rs {rs}: figure {fig_blocks} blocks; hydrated {nr}/{nr} "
                f"({'background' if how == 'hydrate' else 'one discard'}); kernel used {last['metadata_used']} "
                f"(figure x{fig_blocks / last['metadata_used']:.3f} of it), clone_check {used_img}/{total_img}")
    finally:
        for f in (src, dst):
            if os.path.exists(f):
                os.unlink(f)


# ------------------------------------------------------------------ era

# name, device sectors, block sectors, writesets allowed for (-w), iterations,
# sleep after each checkpoint (s), double checkpoints (a second one after the
# next writes, before the first digest can end: two writesets wait),
# snapshot (take, drop) iterations (drop None = held to the end)
ERA_CASES = [
    ("size-era-1t-bs2048-12ckpt", 1 << 31, 2048, 2, 6, 3, True, [(1, 3), (4, None)]),
]
# Slow (minutes under TCG: each digest walks half a million blocks, or fifty
# checkpoints each wait for their digest): `run-all --slow`.
ERA_SLOW = [
    ("size-era-1g-bs8-50ckpt", 1 << 21, 8, 1, 50, 1, False, [(10, 15), (25, 30), (40, 45), (46, None)]),
    ("size-era-16g-bs64-10ckpt", 1 << 25, 64, 1, 10, 3, False, [(2, 5), (6, None)]),
]


def run_era(name, sectors, bs, writesets, iters, nap, double, snaps, work, tools):
    d = os.path.join(work, name)
    os.makedirs(d)
    fig = figure(tools["era_metadata_size"], ["-s", str(sectors), "-b", str(bs), "-w", str(writesets)])
    fig_blocks = fig // BLOCK
    nr = (sectors + bs - 1) // bs
    meta, origin = os.path.join(d, "meta.img"), os.path.join(d, "origin.img")
    lab.make_disk(meta, fig)
    lab.make_disk(origin, sectors * lab.SECTOR)
    stride = 1018 * bs                 # one era-array block's range of the origin
    count = nr // 1018                 # one write into each full array block's range
    takes = {t: i for i, (t, _) in enumerate(snaps)}
    drops = {dr for _, dr in snaps if dr is not None}
    steps = [f"create e 0 {sectors} era @meta @origin {bs}", "status e"]
    checkpoints = 0
    for i in range(iters):
        if i in takes:
            # take_metadata_snap archives the current writeset too: let it be
            # digested before the checkpoints of this round add theirs.
            steps += ["message e take_metadata_snap", "settle 300 e"]
        # a different 4 KiB of each range every time
        first = (i * 8 * 37) % (stride - 8)
        steps.append(f"spread e {first} {stride} {count} I{i}")
        steps.append("message e checkpoint")
        checkpoints += 1
        if double:
            steps.append(f"spread e {first + 8} {stride} {count} J{i}")
            steps.append("message e checkpoint")
            checkpoints += 1
        # The status after the nap shows the digest's open transaction (its used
        # count is taken before the status commits); then wait until the status
        # stays the same for a second (each poll commits): the digest is done, so
        # no more than the allowed writesets ever wait, however slow the host.
        steps += [f"sleep {nap}", "status e", "settle 300 e"]
        if i in drops:
            steps.append("message e drop_metadata_snap")
    # A last round with a long nap, the snapshot still held: the digest then
    # rewrites the era array in one transaction on most hosts, and the status shows
    # that peak (the snapshot's array, the live one and its copy).
    steps += [f"spread e {8 * iters} {stride} {count} Z", "message e checkpoint", "sleep 10", "status e",
              "settle 300 e", "status e", "remove e"]
    checkpoints += 1
    try:
        res = lab.run_guest([("meta", meta), ("origin", origin)], steps, os.path.join(d, "guest"), timeout=1800)
        check_steps(res)
        sts = statuses(res, lab.parse_era_status)
        last = sts[-1]
        if last["metadata_total"] != fig_blocks:
            raise Failure(f"kernel's metadata total {last['metadata_total']} != figure {fig_blocks}")
        used_max = max(s["metadata_used"] for s in sts)
        if last["held_root"] is None:
            raise Failure(f"no metadata snapshot held at the end: {last}")
        used_img, total_img = our_check(tools["era_check"], meta)
        ratio_ok(fig_blocks, last["metadata_used"], "last status, snapshot held")
        info = {"case": name, "device_sectors": sectors, "block_sectors": bs, "blocks": nr,
                "writesets": writesets, "checkpoints": checkpoints, "snapshots": len(snaps),
                "figure_blocks": fig_blocks, "status_used_max": used_max,
                "status_used_end": last["metadata_used"], "status_used": [s["metadata_used"] for s in sts],
                "era_end": last["era"], "image_used": used_img, "image_total": total_img,
                "guest_seconds": res["ops"][-1]["t1"] - res["ops"][0]["t0"]}
        keep(d, info)
        return (f"{sectors * 512 >> 20} MiB, bs {bs}, -w {writesets}: figure {fig_blocks} blocks; "
                f"{checkpoints} checkpoints, {len(snaps)} snapshots, era {last['era']}; kernel used "
                f"{last['metadata_used']} at the end, snapshot held (figure x{fig_blocks / last['metadata_used']:.3f} "
                f"of it), {used_max} at the peak seen; era_check {used_img}/{total_img}")
    finally:
        if os.path.exists(origin):
            os.unlink(origin)


def cases(work, tools, slow=False):
    """(group, name, thunk) of every case; the slow ones only with `slow`."""
    clone = CLONE_CASES + (CLONE_SLOW if slow else [])
    out = [("size", c[0], lambda c=c: run_clone(*c, work, tools)) for c in clone]
    era = ERA_CASES + (ERA_SLOW if slow else [])
    out += [("size", c[0], lambda c=c: run_era(*c, work, tools)) for c in era]
    return out


def slow_names():
    return [c[0] for c in CLONE_SLOW + ERA_SLOW]
