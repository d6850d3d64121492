#!/usr/bin/env python3
"""Kernel lab, log-writes mode: captures dm-log-writes logs of the metadata device, the
data device (clone destination / era origin) and the user I/O stream (a log-writes device
on top of the target) while the real kernel runs a workload, then a clean remove or a
power cut.  See tests/kernel/README.md ("Log-writes captures") and REPLAY.md §2.7.

  logwrites.py capture SCN... [--out DIR] [--keep]   write DIR/<case>/ (default fixtures/kernel-logs)
  logwrites.py readme [--out DIR]                    write DIR/README.md from the case.json files
  logwrites.py info LOG                              figures of one log (plain or .gz)

Scenario files: tests/kernel/scenarios/logwrites/*.scn (format in the README).
"""
import argparse
import glob
import gzip
import json
import os
import re
import shutil
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lab  # noqa: E402

SECTOR = 512
BLOCK = 4096
LW_MAGIC = 0x006A736677736872
FLUSH, FUA, DISCARD, MARK, METADATA = 1, 2, 4, 8, 16
END_MARK = "dm-log-writes-end"
SCN_DIR = os.path.join(lab.HERE, "scenarios", "logwrites")
OUT_DEFAULT = os.path.join(lab.REPO, "fixtures", "kernel-logs")
VARIANTS = {  # module variant -> (loaded module to replace, file in the initramfs)
    "fixed": None,
    "buggy-8b3fd1f53a": ("dm_clone", "dm-clone-buggy.ko"),
}
DATA_ROLE = {"clone": "dest", "era": "origin"}
IMAGE_ROLE = {"clone": "source", "era": "origin"}
VERIFY_MODES = ("meta", "crash", "conformance")  # `<target>_verify_log --mode`
TARGET_NAME = {"clone": "clone", "era": "era"}


def log(msg):
    print(f"[logwrites] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- log reader

def read_log(path):
    """Parses a dm-log-writes v1 log (plain or .gz).  Scans past the super's nr_entries up
    to the first all-zero or invalid entry header.  Returns (super, entries, end_offset);
    entries: dicts sector, nr_sectors, flags, label (MARK), offset (header byte offset),
    data_offset (payload byte offset or None)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        buf = f.read()
    return parse_log(buf)


def parse_log(buf):
    if len(buf) < SECTOR:
        raise ValueError("log shorter than one sector")
    magic, version, nr_entries, sectorsize = struct.unpack_from("<QQQI", buf, 0)
    if magic != LW_MAGIC:
        raise ValueError(f"bad log magic {magic:#x}")
    if version != 1:
        raise ValueError(f"unsupported log version {version}")
    if sectorsize not in (512, 1024, 2048, 4096):
        raise ValueError(f"bad sectorsize {sectorsize}")
    S = sectorsize
    sup = {"magic": magic, "version": version, "nr_entries": nr_entries, "sectorsize": S}
    entries, off = [], S
    while off + S <= len(buf):
        sector, nr, flags, dlen = struct.unpack_from("<QQQQ", buf, off)
        if flags == 0 and nr == 0:
            break  # all-zero header: end of the log
        if flags & ~0x1F:
            break  # not an entry (e.g. past the end of a log from a crashed host)
        e = {"index": len(entries), "sector": sector, "nr_sectors": nr, "flags": flags, "offset": off,
             "data_offset": None}
        if flags & MARK:
            e["label"] = buf[off + 32:off + 32 + dlen].decode(errors="replace")
        size = S
        if not flags & DISCARD and nr:
            e["data_offset"] = off + S
            size += nr * S
        if off + size > len(buf):
            break  # truncated payload
        entries.append(e)
        off += size
    return sup, entries, off


def log_figures(sup, entries, end, metadata=True, super_block_sectors=8):
    """Counts for case.json / README: entries, flushes, FUA, discards, marks, writes,
    superblock writes (writes touching sectors [0, 8) of the logged device = metadata block 0)."""
    S = sup["sectorsize"]
    sb_span = super_block_sectors * SECTOR // S
    f = {"nr_entries_super": sup["nr_entries"], "entries": len(entries), "sectorsize": S,
         "flush_entries": sum(1 for e in entries if e["flags"] & FLUSH),
         "fua_entries": sum(1 for e in entries if e["flags"] & FUA),
         "discard_entries": sum(1 for e in entries if e["flags"] & DISCARD),
         "metadata_flag_entries": sum(1 for e in entries if e["flags"] & METADATA),
         "write_entries": sum(1 for e in entries if not e["flags"] & (MARK | DISCARD) and e["nr_sectors"]),
         "write_sectors": sum(e["nr_sectors"] for e in entries if not e["flags"] & (MARK | DISCARD)),
         "superblock_writes": None if not metadata else sum(1 for e in entries if not e["flags"] & (MARK | DISCARD) and e["nr_sectors"]
                                  and e["sector"] < sb_span),
         "marks": [e["label"] for e in entries if e["flags"] & MARK],
         "log_bytes": end}
    f["nr_entries_lagged"] = sup["nr_entries"] < len(entries)
    f["end_mark"] = END_MARK in f["marks"]
    return f


def durable_image(buf, entries, size_bytes, base=None, upto=None):
    """Image of the logged device after applying entries[0..upto] (inclusive) in log order
    (discards zero their range).  upto=None: up to the last FLUSH entry (the durable prefix
    at a power cut); -1 when there is none (the base)."""
    if upto is None:
        upto = max((e["index"] for e in entries if e["flags"] & FLUSH), default=-1)
    img = bytearray(base) if base is not None else bytearray(size_bytes)
    for e in entries[:upto + 1]:
        if e["flags"] & MARK or not e["nr_sectors"]:
            continue
        a, n = e["sector"] * SECTOR, e["nr_sectors"] * SECTOR
        if e["flags"] & DISCARD:
            img[a:a + n] = bytes(min(n, len(img) - a))
        else:
            img[a:a + n] = buf[e["data_offset"]:e["data_offset"] + n]
    return img, upto


# --------------------------------------------------------------------------- dm-clone metadata (enough to read the hydrated bitset)

def _btree_values(meta, root, out):
    b = meta[root * BLOCK:(root + 1) * BLOCK]
    flags, _, nr, mx, vsz = struct.unpack_from("<IQIII", b, 4)
    keys = struct.unpack_from(f"<{nr}Q", b, 32)
    vals = struct.unpack_from(f"<{nr}Q", b, 32 + 8 * mx)
    for k, v in zip(keys, vals):
        if flags & 1:  # internal node
            _btree_values(meta, v, out)
        else:
            out.append((k, v))


def clone_committed_bitset(meta):
    """(superblock dict, set of hydrated regions) of a clone metadata image."""
    sb = meta[:BLOCK]
    if sb == bytes(BLOCK):
        return None, set()
    magic = struct.unpack_from("<Q", sb, 32)[0]
    if magic != 0x8AF27F64:
        raise ValueError(f"not a dm-clone superblock (magic {magic:#x})")
    rs, tsize, root = struct.unpack_from("<QQQ", sb, 172)
    nr_regions = (tsize + rs - 1) // rs
    leaves = []
    _btree_values(meta, root, leaves)
    hyd = set()
    for idx, blk in sorted(leaves):
        ab = meta[blk * BLOCK:(blk + 1) * BLOCK]
        _, mx, nr, vsz, _ = struct.unpack_from("<IIIIQ", ab, 0)
        words = struct.unpack_from(f"<{nr}Q", ab, 24)
        for wi, w in enumerate(words):
            base = (idx * mx + wi) * 64
            while w:
                low = w & -w
                r = base + low.bit_length() - 1
                if r < nr_regions:
                    hyd.add(r)
                w ^= low
    return {"region_size": rs, "target_size": tsize, "nr_regions": nr_regions, "bitset_root": root}, hyd


def clone_lost_hydration(meta_log, dest_log, source_img, meta_size, dest_size):
    """Power-cut check on the captured logs: the durable metadata (meta log up to its last
    FLUSH) against the durable destination (dest log up to its last FLUSH).  A region the
    committed superblock calls hydrated is lost when one of its sectors holds source data
    (non-zero) but the durable destination has zeros there (the base): neither the copy nor a
    user write reached it."""
    mbuf = open_log_bytes(meta_log)
    dbuf = open_log_bytes(dest_log)
    _, ments, _ = parse_log(mbuf)
    _, dents, _ = parse_log(dbuf)
    meta, mupto = durable_image(mbuf, ments, meta_size)
    dest, dupto = durable_image(dbuf, dents, dest_size)
    src = open_log_bytes(source_img)
    sb, hyd = clone_committed_bitset(meta)
    last_sb = max((e["index"] for e in ments[:mupto + 1]
                   if not e["flags"] & (MARK | DISCARD) and e["nr_sectors"] and e["sector"] < 8), default=None)
    lost = []
    if sb:
        rs = sb["region_size"]
        for r in sorted(hyd):
            for s in range(r * rs, min((r + 1) * rs, dest_size // SECTOR)):
                a = s * SECTOR
                if src[a:a + SECTOR] != bytes(SECTOR) and dest[a:a + SECTOR] == bytes(SECTOR):
                    lost.append(r)
                    break
    marks_before = [e["label"] for e in ments[:mupto + 1] if e["flags"] & MARK]
    return {"meta_durable_upto_entry": mupto, "committed_superblock_entry": last_sb,
            "meta_marks_before_it": marks_before[-1:] if marks_before else [],
            "committed_hydrated": lab.ranges_from_sorted(sorted(hyd)), "committed_hydrated_count": len(hyd),
            "dest_durable_upto_entry": dupto, "dest_flush_entries": sum(1 for e in dents if e["flags"] & FLUSH),
            "lost_regions": lab.ranges_from_sorted(lost), "lost_count": len(lost)}


def open_log_bytes(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return f.read()


# --------------------------------------------------------------------------- scenarios

def parse_scn(path):
    """Log-writes scenario.  Directives: case, target clone|era, description, module VARIANT,
    disk NAME SIZE [stamp TAG] [log], table ..., timeout, mem, expect MODE[:VARIANT] EXIT [ID].
    Workload (all through the top log-writes device): write/fua-write S N TAG, discard S N,
    flush, message WORDS..., wait-hydrated [T], sleep S, settle; last: end remove|powercut."""
    sc = {"file": os.path.relpath(path, lab.REPO), "disks": [], "work": [], "module": "fixed",
          "timeout": 600, "mem": 512, "description": "", "expect": {}, "end": None}
    for n, raw in enumerate(open(path), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        w = line.split()
        where = f"{path}:{n}"
        if w[0] == "case":
            sc["case"] = w[1]
        elif w[0] == "target":
            if w[1] not in DATA_ROLE:
                sys.exit(f"{where}: target must be clone or era")
            sc["target"] = w[1]
        elif w[0] == "description":
            sc["description"] = line.split(None, 1)[1]
        elif w[0] == "module":
            if w[1] not in VARIANTS:
                sys.exit(f"{where}: unknown module variant {w[1]!r} (known: {', '.join(VARIANTS)})")
            sc["module"] = w[1]
        elif w[0] == "disk":
            d = {"name": w[1], "size": lab.parse_size(w[2]), "stamp": None, "log": False}
            i = 3
            while i < len(w):
                if w[i] == "stamp":
                    d["stamp"] = w[i + 1]
                    i += 2
                elif w[i] == "log":
                    d["log"] = True
                    i += 1
                else:
                    sys.exit(f"{where}: unknown disk option {w[i]!r}")
            sc["disks"].append(d)
        elif w[0] == "table":
            sc["table"] = line.split(None, 1)[1]
        elif w[0] == "timeout":
            sc["timeout"] = int(w[1])
        elif w[0] == "mem":
            sc["mem"] = int(w[1])
        elif w[0] == "expect":
            # expect MODE EXIT [ID]: what `dmce <target>_verify_log --mode MODE` must answer;
            # expect conformance:VARIANT EXIT [ID]: the same with `--variant VARIANT` (the
            # reference model with a kernel bug the captured kernel has), besides the
            # default run on the fixed model.
            mode, _, variant = w[1].partition(":")
            if mode not in VERIFY_MODES or (variant and mode != "conformance"):
                sys.exit(f"{where}: expect MODE must be one of {', '.join(VERIFY_MODES)}, "
                         f"or conformance:VARIANT")
            sc["expect"][w[1]] = {"exit": int(w[2]), "id": w[3] if len(w) > 3 else None}
        elif w[0] == "end":
            if w[1] not in ("remove", "powercut"):
                sys.exit(f"{where}: end remove|powercut")
            sc["end"] = w[1]
        elif w[0] in ("write", "fua-write", "discard", "flush", "message", "wait-hydrated", "sleep", "settle"):
            if sc["end"]:
                sys.exit(f"{where}: step after 'end'")
            sc["work"].append((where, w))
        else:
            sys.exit(f"{where}: unknown directive or step {w[0]!r}")
    for k in ("case", "target", "table", "end"):
        if k not in sc:
            sys.exit(f"{path}: missing '{k}'")
    names = [d["name"] for d in sc["disks"]]
    for role in ("meta", DATA_ROLE[sc["target"]]):
        if role not in names or not next(d for d in sc["disks"] if d["name"] == role)["log"]:
            sys.exit(f"{path}: needs a logged disk '{role}' (disk {role} SIZE log)")
    if sc["target"] == "clone" and "source" not in names:
        sys.exit(f"{path}: clone needs a disk 'source'")
    return sc


def mark_label(words):
    return "msg:" + "_".join(words)


def expand(sc):
    """Host scenario -> guest steps.  Returns (disks, steps, plan); plan lists the workload
    steps with the mark that follows each (None when no mark)."""
    tname = TARGET_NAME[sc["target"]]
    disks, lw = [], []
    dev = {}
    for d in sc["disks"]:
        disks.append(d["name"])
        if d["log"]:
            lw.append(d["name"])
            dev[d["name"]] = f"/dev/mapper/lw-{d['name']}"
        else:
            dev[d["name"]] = "@" + d["name"]
    logs = [f"lw-{n}" for n in lw] + ["lw-top"]
    table = re.sub(r"@([A-Za-z][A-Za-z0-9_]*)", lambda m: dev.get(m.group(1), m.group(0)), sc["table"])
    w = table.split()
    if len(w) < 3 or w[2] != sc["target"]:
        sys.exit(f"{sc['file']}: table must be '0 LEN {sc['target']} ...'")
    tlen = int(w[1])
    steps = []
    if VARIANTS[sc["module"]]:
        loaded, f = VARIANTS[sc["module"]]
        steps.append(f"module {loaded} {f}")
    for n in lw:
        steps.append(f"create lw-{n} 0 {sc['sizes'][n] // SECTOR} log-writes @{n} @{n}_log")
    steps.append(f"create {tname} {table}")
    steps.append(f"create lw-top 0 {tlen} log-writes /dev/mapper/{tname} @top_log")
    # clone: --noflush, a flushing status would commit.  era: every status is an RPC to the
    # worker, which commits the metadata (one superblock commit in the meta log after each
    # mark; logically a no-op), so the era target is left out of `settle`.
    status = f"status {tname}" + (" --noflush" if sc["target"] == "clone" else "")
    quiet = " ".join(logs + ([tname] if sc["target"] == "clone" else []))
    plan = []

    def mark(label):
        steps.append(f"mark {label} {' '.join(logs)}")
        steps.append(status)

    mark("activated")
    plan.append({"step": "activate", "mark": "activated"})
    q = 0
    for where, ws in sc["work"]:
        op, a = ws[0], ws[1:]
        m = None
        if op in ("write", "fua-write"):
            steps.append(f"{op} lw-top {a[0]} {a[1]} {a[2]}")
        elif op == "discard":
            steps.append(f"discard lw-top {a[0]} {a[1]}")
        elif op == "flush":
            steps.append("flush lw-top")
            q += 1
            m = f"q{q}"
        elif op == "message":
            steps.append(f"message {tname} {' '.join(a)}")
            m = mark_label(a)
        elif op == "wait-hydrated":
            steps.append(f"wait-hydrated {tname} {a[0] if a else 300}")
        elif op == "sleep":
            steps.append(f"sleep {a[0]}")
        elif op == "settle":
            steps.append(f"settle 60 {quiet}")
        if m:
            mark(m)
        plan.append({"step": " ".join(ws), "mark": m, "where": where})
    if sc["end"] == "remove":
        steps += ["remove lw-top", f"remove {tname}"] + [f"remove lw-{n}" for n in lw]
        plan.append({"step": "remove lw-top, target, lower log-writes devices", "mark": END_MARK})
    else:
        # quiet point: no I/O in flight and the logging threads drained, then the power cut
        steps.append(f"settle 60 {quiet}")
        steps.append("sleep 0.5")
        steps.append("crash")
        plan.append({"step": "settle, power cut", "mark": None})
    return steps, plan, logs, tname, table


def stamp_image(path, size, tag):
    """Sparse file; the first sector of every 4 KiB block holds '<tag>@<sector>' repeated."""
    with open(path, "wb") as f:
        f.truncate(size)
        for s in range(0, size // SECTOR, BLOCK // SECTOR):
            t = f"{tag}@{s}|".encode()
            f.seek(s * SECTOR)
            f.write((t * (SECTOR // len(t) + 1))[:SECTOR])


def gz(src, dst, limit=None):
    with open(src, "rb") as fi, gzip.GzipFile(dst, "wb", compresslevel=9, mtime=0) as fo:
        left = limit if limit is not None else -1
        while left != 0:
            b = fi.read(1 << 20 if left < 0 else min(left, 1 << 20))
            if not b:
                break
            fo.write(b)
            if left > 0:
                left -= len(b)


def log_tail_is_zero(path, end):
    with open(path, "rb") as f:
        f.seek(end)
        while True:
            b = f.read(1 << 20)
            if not b:
                return True
            if b.count(0) != len(b):
                return False


# --------------------------------------------------------------------------- capture

def capture(path, outroot, keep=False, work=None):
    """Runs one log-writes scenario; writes outroot/<case>/ and returns case.json's dict
    (its 'problems' list is empty when the capture is sound)."""
    sc = parse_scn(path)
    case = sc["case"]
    own = work is None
    work = work or tempfile.mkdtemp(prefix=f"dmce-lw-{case}-", dir=os.environ.get("DMCE_LAB_TMP"))
    os.makedirs(work, exist_ok=True)
    t_start = time.time()
    sc["sizes"] = {d["name"]: d["size"] for d in sc["disks"]}
    disks, files = [], {}
    for d in sc["disks"]:
        p = os.path.join(work, d["name"] + ".img")
        if d["stamp"]:
            stamp_image(p, d["size"], d["stamp"])
        else:
            lab.make_disk(p, d["size"])  # zeros: the known base of every logged device
        disks.append((d["name"], p))
        files[d["name"]] = p
    # initial content of the source (clone) / origin (era), before anything runs
    image_role = IMAGE_ROLE[sc["target"]]
    init_copy = os.path.join(work, image_role + ".initial")
    shutil.copyfile(files[image_role], init_copy)
    steps, plan, logs, tname, table = expand(sc)
    tlen = int(table.split()[1])
    log_sizes = {}
    for d in sc["disks"]:
        if d["log"]:
            log_sizes[d["name"]] = 8 * d["size"] + 64 * lab.MB  # generous: logging never runs out
    log_sizes["top"] = 8 * tlen * SECTOR + 64 * lab.MB
    for n, size in log_sizes.items():
        p = os.path.join(work, n + ".log")
        lab.make_disk(p, size)
        disks.append((n + "_log", p))
        files[n + "_log"] = p
    log(f"{case}: booting ({len(steps)} guest steps, module {sc['module']}, end {sc['end']})")
    res = lab.run_guest(disks, steps, work, timeout=sc["timeout"], mem=sc["mem"])
    problems = []
    crashed = res["crash"] is not None
    if sc["end"] == "powercut" and not crashed:
        problems.append(f"no power cut happened (qemu rc {res['qemu_rc']})")
    if sc["end"] == "remove" and res["end"] is None:
        problems.append(f"guest did not finish (qemu rc {res['qemu_rc']})")
    for op in res["ops"]:
        if op["rc"] != 0:
            problems.append(f"step failed: {op['step']}: {' | '.join(op['err'])}")
    for line in res["dmesg"]:
        if "Ran out of space" in line or "log-writes" in line and "error" in line.lower():
            problems.append(f"kernel: {line}")
    # status of the target after each mark, in step order
    mark_status, op_times = [], []
    for i, op in enumerate(res["ops"]):
        if op["op"] == "status" and op["args"] and op["args"][0] == tname:
            mark_status.append(op["status"][0]["line"] if op["status"] else None)
    marked = [p for p in plan if p["mark"] and p["mark"] != END_MARK]
    if len(mark_status) != len(marked):
        problems.append(f"{len(marked)} marks planned, {len(mark_status)} target status lines")
    it = iter(mark_status)
    for p in plan:
        if p["mark"] and p["mark"] != END_MARK:
            p["status"] = next(it, None)
    # guest times of the workload steps (ops of the guest in order, mapped back loosely)
    for op in res["ops"]:
        op_times.append({"t0": op["t0"], "t1": op["t1"], "rc": op["rc"], "step": op["step"]})

    outdir = os.path.join(outroot, case)
    if os.path.isdir(outdir):
        shutil.rmtree(outdir)
    os.makedirs(outdir)
    data_role = DATA_ROLE[sc["target"]]
    out_logs = {}
    raw_logs = {}
    for n in list(log_sizes):
        p = files[n + "_log"]
        try:
            sup, entries, end = read_log(p)
        except (ValueError, OSError) as e:
            problems.append(f"{n} log unreadable: {e}")
            continue
        if not log_tail_is_zero(p, end):
            problems.append(f"{n} log: non-zero bytes after the last valid entry (offset {end})")
        fname = ("meta" if n == "meta" else "top" if n == "top" else data_role) + ".log.gz"
        gz(p, os.path.join(outdir, fname), limit=end)
        fig = log_figures(sup, entries, end, metadata=n == "meta")
        fig["file"] = fname
        fig["logged_device"] = ("top: log-writes over the target (user I/O)" if n == "top"
                                else f"{n}: under the target")
        fig["logged_device_sectors"] = (tlen if n == "top" else sc["sizes"][n] // SECTOR)
        fig["gz_bytes"] = os.path.getsize(os.path.join(outdir, fname))
        out_logs[n] = fig
        raw_logs[n] = p
        want = [p["mark"] for p in plan if p["mark"]]
        if sc["end"] == "powercut":
            want = [m for m in want if m != END_MARK]
        got = [m for m in fig["marks"]]
        if got != want:
            problems.append(f"{n} log marks {got} != planned {want}")
        if sc["end"] == "remove" and sup["nr_entries"] != len(entries):
            problems.append(f"{n} log: nr_entries {sup['nr_entries']} != {len(entries)} entries after a clean remove")
    gz(init_copy, os.path.join(outdir, image_role + ".img.gz"))

    sizes = {d["name"]: d["size"] // SECTOR for d in sc["disks"]}
    sizes.update({f"{n}_log": s // SECTOR for n, s in log_sizes.items()})
    sizes["target"] = tlen
    boot = (res.get("boot") or "").split()
    out = {
        "case": case, "description": sc["description"], "target": sc["target"],
        "regen": f"tests/kernel/make-kernel-logs {case}",
        "scenario_file": sc["file"],
        "table": table, "table_scenario": sc["table"],
        "guest_devices": {n: (f"/dev/mapper/lw-{n}" if n in log_sizes and n != "top" else res["devmap"].get(n))
                          for n in sizes if not n.endswith("_log") and n != "target"},
        "device_sectors": sizes,
        "logical_sector_size": next(iter(out_logs.values()))["sectorsize"] if out_logs else None,
        "module_variant": sc["module"],
        "power_cut": crashed,
        "kernel": {"release": boot[1] if len(boot) > 1 else res["kernel"].get("abi"),
                   "debian_version": res["kernel"].get("debian_version"), "accel": "tcg"},
        "bases": {"meta": "zeros", data_role: "zeros" if sc["target"] == "clone" else f"{image_role}.img.gz",
                  image_role: f"{image_role}.img.gz"},
        "files": {"meta_log": "meta.log.gz", f"{data_role}_log": f"{data_role}.log.gz", "user_log": "top.log.gz",
                  "image": f"{image_role}.img.gz"},
        "workload": [{k: v for k, v in p.items() if k != "where"} for p in plan],
        "logs": out_logs,
        "expect": expectations(sc, crashed),
        "guest_ops": op_times,
        "dmesg": lab.dm_lines(res["dmesg"]),
        "wall_seconds": None,
    }
    if sc["target"] == "clone" and crashed and "meta" in raw_logs and "dest" in raw_logs:
        chk = clone_lost_hydration(raw_logs["meta"], raw_logs["dest"], init_copy,
                                   sc["sizes"]["meta"], sc["sizes"]["dest"])
        out["lost_hydration_check"] = chk
        want_lost = out["expect"]["crash"]["exit"] == 1
        if want_lost and not chk["lost_count"]:
            problems.append("the capture does not show the bug: no committed-hydrated region lacks its data "
                            "in the durable dest log (timing?)")
        if not want_lost and chk["lost_count"]:
            problems.append(f"durable dest lacks data of committed-hydrated regions {chk['lost_regions']}")
    out["problems"] = problems
    out["wall_seconds"] = round(time.time() - t_start, 1)
    with open(os.path.join(outdir, "case.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(outdir, x)) for x in os.listdir(outdir))
    log(f"{case}: {'OK' if not problems else 'PROBLEMS: ' + '; '.join(problems)} "
        f"({out['wall_seconds']} s, {total // 1024} KiB)")
    if own and not keep:
        shutil.rmtree(work, ignore_errors=True)
    elif keep:
        log(f"work dir: {work}")
    return out


def expectations(sc, crashed):
    """verifier runs of a capture -> expected exit and id: every mode that applies (default
    exit 0), then the scenario's conformance runs on a model variant (`conformance:VARIANT`)."""
    modes = ["meta", "crash", "conformance"] if crashed else ["meta", "conformance"]
    out = {m: sc["expect"].get(m, {"exit": 0, "id": None}) for m in modes}
    out.update({m: e for m, e in sc["expect"].items() if ":" in m})
    return out


def scenario_files(pattern="*"):
    return sorted(glob.glob(os.path.join(SCN_DIR, pattern + ".scn")))


# --------------------------------------------------------------------------- README

README_HEAD = """# Kernel-made dm-log-writes captures

Each directory holds the dm-log-writes logs the real Linux kernel (Debian bookworm
{kernel}, under qemu TCG; `dm-clone` built from the same `linux-source-6.1`,
`dm-era` and `dm-log-writes` as shipped) wrote while a workload ran on dm-clone or
dm-era: one log under the metadata device, one under the data device (clone destination /
era origin) and one over the target (the user I/O stream).  Made by the kernel lab's
log-writes mode (`tests/kernel/README.md`, "Log-writes captures"); do not edit by hand,
regenerate with `tests/kernel/make-kernel-logs [CASE-GLOB]` (this file:
`tests/kernel/logwrites.py readme`).

| file | content |
|---|---|
| `meta.log.gz` | log of the metadata device (base: all zeros) |
| `dest.log.gz` / `origin.log.gz` | log of the clone destination (base: zeros) / era origin (base: `origin.img.gz`) |
| `top.log.gz` | log of a log-writes device stacked on the target: the user I/O |
| `source.img.gz` / `origin.img.gz` | initial content of the clone source / era origin (first sector of every 4 KiB stamped `TAG@<sector>`) |
| `case.json` | target, table, device sizes (512-byte sectors), module variant, power cut, kernel, the workload with the mark after each step and the target status there, per-log figures, expected verifier exits |

Logs are v1 (REPLAY.md §1.2), 512-byte logical sectors, gzip -9, cut after the last valid
entry (the rest of the log device was zeros).  Marks on all three logs: `activated` after
activation, `q<n>` after the n-th fsync returned, `msg:<message>` (spaces as `_`) after a
target message returned; a clean remove adds `dm-log-writes-end`.  After a power cut the
super's `nr_entries` may be smaller than the number of entries: read past it.

Verifier expectations (`expect` in the scenario, `case.json`): the exit of `dmce
<target>_verify_log --mode MODE` on the logs; `conformance:VARIANT` is conformance mode
with `--variant VARIANT`, the reference model with a bug the captured kernel has.  The
6.1 dm-era marks only the first era block of a discard (HAZARDS H-E7, `era_map`): a
capture with a multi-block discard conforms to `discard-first-block-only`, and the fixed
model names the discard's other blocks in its differences.

Figures: entries (all / flush / FUA / discard) per log, `sb` = writes to metadata block 0
(sectors 0-7) in the meta log, `lag` = the super's `nr_entries` is behind the entries.

| case | target | module | end | meta: entries / flush / sb / nr_entries | {data}: entries / flush | top: entries / flush / fua / discard | marks | gz KiB |
|---|---|---|---|---|---|---|---|---:|
"""


def write_readme(outroot):
    rows, kernel = [], "6.1"
    for cj in sorted(glob.glob(os.path.join(outroot, "*", "case.json"))):
        c = json.load(open(cj))
        kernel = c["kernel"]["release"]
        lg = c["logs"]
        m = lg.get("meta", {})
        dname = "dest" if c["target"] == "clone" else "origin"
        d = lg.get(dname, {})
        t = lg.get("top", {})

        def nr(x):
            s = str(x.get("nr_entries_super"))
            return s + (" (lag)" if x.get("nr_entries_lagged") else "")
        size = sum(os.path.getsize(os.path.join(os.path.dirname(cj), f)) for f in os.listdir(os.path.dirname(cj)))
        rows.append(f"| `{c['case']}` | {c['target']} | {c['module_variant']} | "
                    f"{'power cut' if c['power_cut'] else 'remove'} | "
                    f"{m.get('entries')} / {m.get('flush_entries')} / {m.get('superblock_writes')} / {nr(m)} | "
                    f"{d.get('entries')} / {d.get('flush_entries')} ({dname}, nr_entries {nr(d)}) | "
                    f"{t.get('entries')} / {t.get('flush_entries')} / {t.get('fua_entries')} / {t.get('discard_entries')} | "
                    f"{len(m.get('marks', []))} | {size // 1024} |")
    text = README_HEAD.replace("{kernel}", kernel).replace("{data}", "dest / origin") + "\n".join(rows) + "\n"
    descs = []
    for cj in sorted(glob.glob(os.path.join(outroot, "*", "case.json"))):
        c = json.load(open(cj))
        line = f"* `{c['case']}`: {c['description'].rstrip('.')}."
        if c.get("lost_hydration_check"):
            ch = c["lost_hydration_check"]
            line += (f" Lost-hydration check on the logs: the committed superblock (meta entry "
                     f"{ch['committed_superblock_entry']}) has {ch['committed_hydrated_count']} hydrated regions, "
                     f"{ch['lost_count']} of them without their data in the durable dest log"
                     + (f" ({ch['lost_regions']})" if ch["lost_count"] else "") + ".")
        exp = ", ".join(f"{k} exit {v['exit']}" + (f" ({v['id']})" if v.get("id") else "")
                        for k, v in c["expect"].items())
        descs.append(line + f" Verifier: {exp}.")
    text += "\n## Cases\n\n" + "\n".join(descs) + "\n"
    with open(os.path.join(outroot, "README.md"), "w") as f:
        f.write(text)


# --------------------------------------------------------------------------- CLI

def main():
    ap = argparse.ArgumentParser(prog="logwrites")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("capture", help="run log-writes scenarios")
    c.add_argument("files", nargs="+")
    c.add_argument("--out", default=OUT_DEFAULT)
    c.add_argument("--keep", action="store_true")
    r = sub.add_parser("readme")
    r.add_argument("--out", default=OUT_DEFAULT)
    i = sub.add_parser("info", help="figures of a log file")
    i.add_argument("log")
    i.add_argument("--entries", action="store_true", help="list every entry")
    a = ap.parse_args()
    if a.cmd == "capture":
        bad, t0 = 0, time.time()
        for f in a.files:
            bad += bool(capture(f, a.out, keep=a.keep)["problems"])
        log(f"{len(a.files)} capture(s) in {time.time() - t0:.1f} s, {bad} with problems")
        sys.exit(1 if bad else 0)
    if a.cmd == "readme":
        write_readme(a.out)
        return
    if a.cmd == "info":
        sup, entries, end = read_log(a.log)
        print(json.dumps(log_figures(sup, entries, end), indent=1))
        if a.entries:
            for e in entries:
                fl = "".join(ch for bit, ch in ((FLUSH, "F"), (FUA, "U"), (DISCARD, "D"), (MARK, "M"), (METADATA, "m"))
                             if e["flags"] & bit)
                print(f"{e['index']:6} {fl:5} {e['sector']:10} +{e['nr_sectors']:<6} {e.get('label', '')}")


if __name__ == "__main__":
    main()
