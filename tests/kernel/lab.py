#!/usr/bin/env python3
"""Kernel lab host driver: boots a Debian 6.1 kernel under qemu (TCG), runs device-mapper
steps in the guest and turns the results into ground truth.

Subcommands (see tests/kernel/README.md):
  scenario FILE... [--out DIR]    run scenario files, write fixtures/kernel/<case>/
  load clone|era ...              hand the kernel a metadata image, report JSON
  probe                           rejection probes (mismatched geometry, bad superblock)
"""
import argparse
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CACHE = os.environ.get("DMCE_LAB_CACHE", "/var/cache/dmce-kernel-lab")
SECTOR = 512
MB = 1 << 20


def log(msg):
    print(f"[lab] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- kernel / VM

def kernel():
    """Runs setup (fast when warm) and returns the kernel directory."""
    env = dict(os.environ, DMCE_LAB_QUIET="1")
    r = subprocess.run([os.path.join(HERE, "setup")], env=env)
    if r.returncode != 0:
        sys.exit("setup failed")
    abi = open(os.path.join(CACHE, "current")).read().strip()
    k = os.path.join(CACHE, "kernel-" + abi)
    info = {}
    for line in open(os.path.join(CACHE, "info.txt")):
        if "=" in line:
            a, b = line.rstrip("\n").split("=", 1)
            info[a] = b
    return k, info


def parse_size(s):
    """8M, 64M, 36G, 4096 (bytes), 131072s (sectors)."""
    m = re.fullmatch(r"(\d+)([sKMGT]?)", s)
    if not m:
        raise ValueError(f"bad size {s!r}")
    n, u = int(m.group(1)), m.group(2)
    return n * {"": 1, "s": SECTOR, "K": 1 << 10, "M": MB, "G": 1 << 30, "T": 1 << 40}[u]


def make_disk(path, size, stamp=None):
    """Sparse zero file; stamp=(region_sectors, tag, nr_sectors_total) writes a 512-byte
    stamp '<tag>@<region>' at the first sector of every region."""
    with open(path, "wb") as f:
        f.truncate(size)
        if stamp:
            rs, tag = stamp
            n = (size // SECTOR + rs - 1) // rs
            for r in range(n):
                f.seek(r * rs * SECTOR)
                f.write(f"{tag}@{r}".encode().ljust(SECTOR, b"\0"))


def run_guest(disks, steps, work, timeout=600, mem=512):
    """disks: list of (name, path). steps: guest step lines, '@name' replaced by the
    guest device of that disk.  Returns the parsed result dict."""
    k, info = kernel()
    os.makedirs(work, exist_ok=True)
    devmap = {}
    for i, (name, _) in enumerate(disks):
        devmap[name] = "/dev/vd" + chr(ord("b") + i)

    def subst(line):
        return re.sub(r"@([A-Za-z][A-Za-z0-9_]*)", lambda m: devmap.get(m.group(1), m.group(0)), line)

    guest_steps = [subst(s) for s in steps]
    ctl = os.path.join(work, "ctl.txt")
    data = ("\n".join(guest_steps) + "\n").encode()
    with open(ctl, "wb") as f:
        f.write(data + b"\0" * (-len(data) % 4096 or 0))
        if len(data) % 4096 == 0:
            f.write(b"\0" * 4096)
    console = os.path.join(work, "console.log")
    results = os.path.join(work, "results.log")
    for p in (console, results):
        if os.path.exists(p):
            os.unlink(p)
    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", str(mem), "-smp", "1",
           "-nographic", "-nodefaults", "-no-reboot", "-monitor", "none",
           "-kernel", os.path.join(k, "vmlinuz"), "-initrd", os.path.join(k, "initrd.img"),
           # no_timer_check: on a loaded host the guest's check that the timer ticks
           # through the IO-APIC can fail under TCG, which panics the kernel at boot.
           "-append", "console=ttyS0 panic=-1 loglevel=4 no_timer_check",
           "-serial", "file:" + console, "-serial", "file:" + results]
    # cache=writeback: the guest sees a volatile write cache and sends FLUSHes, which qemu
    # turns into fdatasync on the host file (see README: crash model).
    for path in [ctl] + [p for _, p in disks]:
        cmd += ["-drive", f"file={path},if=virtio,format=raw,cache=writeback,discard=unmap"]
    t0 = time.time()
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        qrc = r.returncode
        qout = r.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired:
        qrc, qout = "timeout", ""
    wall = time.time() - t0
    res = parse_results(open(results, errors="replace").read() if os.path.exists(results) else "")
    res.update(wall=round(wall, 2), qemu_rc=qrc, qemu_out=qout[-2000:], devmap=devmap,
               guest_steps=guest_steps, kernel=info)
    return res


def parse_results(text):
    ops, pending_status, dmesg_all = [], [], []
    res = {"boot": None, "end": None, "crash": None, "ops": ops, "dmesg": dmesg_all, "errors": []}
    last = None
    for line in text.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "@boot":
            res["boot"] = rest
        elif tag == "@status":
            t, name, st = rest.split(" ", 2)
            pending_status.append({"t": float(t), "name": name, "line": st})
        elif tag == "@op":
            t0, t1, rc, step = rest.split(" ", 3)
            words = step.split()
            mode = "ok"
            if words and words[0] in ("try", "expect-fail"):
                mode = words[0]
                words = words[1:]
            last = {"t0": float(t0), "t1": float(t1), "rc": int(rc), "mode": mode,
                    "op": words[0] if words else "", "args": words[1:], "step": " ".join(words),
                    "status": pending_status, "out": [], "err": [], "dmesg": []}
            pending_status = []
            ops.append(last)
        elif tag == "@out" and last is not None:
            last["out"].append(rest)
        elif tag == "@err":
            (last["err"] if last is not None else res["errors"]).append(rest)
        elif tag == "@dmesg":
            dmesg_all.append(rest)
            if last is not None:
                last["dmesg"].append(rest)
        elif tag == "@crash":
            res["crash"] = float(rest)
        elif tag == "@end":
            t, rc = rest.split()
            res["end"] = {"t": float(t), "rc": int(rc)}
    return res


def zst_read(path, dst):
    if path.endswith(".zst"):
        subprocess.run(["zstd", "-q", "-d", "-f", path, "-o", dst], check=True)
    else:
        shutil.copyfile(path, dst)


def zst_write(src, dst):
    subprocess.run(["zstd", "-q", "-19", "-f", src, "-o", dst], check=True)


# --------------------------------------------------------------------------- helpers

def ranges_from_sorted(items):
    out = []
    for b in items:
        if out and out[-1][1] == b:
            out[-1][1] = b + 1
        else:
            out.append([b, b + 1])
    return out


def ranges_from_bytes(bits):
    """bits: bytearray of 0/1 -> half-open ranges."""
    out, n, i = [], len(bits), 0
    while i < n:
        j = bits.find(1, i)
        if j < 0:
            break
        k = bits.find(0, j)
        if k < 0:
            k = n
        out.append([j, k])
        i = k
    return out


def ranges_count(rs):
    return sum(e - b for b, e in rs)


def parse_clone_status(line):
    w = line.split()
    if len(w) < 3 or w[2] != "clone":
        return None
    w = w[3:]
    if w and w[0] in ("Fail", "Error"):
        return {"mode": w[0]}
    used, mtot = w[1].split("/")
    hyd, nreg = w[3].split("/")
    return {"metadata_block_sectors": int(w[0]), "metadata_used": int(used), "metadata_total": int(mtot),
            "region_size": int(w[2]), "hydrated": int(hyd), "nr_regions": int(nreg),
            "hydrating": int(w[4]), "mode": w[-1]}


def parse_era_status(line):
    w = line.split()
    if len(w) < 3 or w[2] != "era":
        return None
    w = w[3:]
    if w and w[0] in ("Fail", "Error"):
        return {"mode": w[0]}
    used, mtot = w[1].split("/")
    return {"metadata_block_sectors": int(w[0]), "metadata_used": int(used), "metadata_total": int(mtot),
            "era": int(w[2]), "held_root": None if w[3] == "-" else int(w[3])}


def read_superblock(path):
    with open(path, "rb") as f:
        b = f.read(4096)
    if b == b"\0" * 4096:
        return {"all_zero": True}
    magic = struct.unpack_from("<Q", b, 32)[0]
    sm = struct.unpack_from("<QQQQ", b, 44)
    d = {"csum": struct.unpack_from("<I", b, 0)[0], "flags": struct.unpack_from("<I", b, 4)[0],
         "blocknr": struct.unpack_from("<Q", b, 8)[0], "magic": magic,
         "version": struct.unpack_from("<I", b, 40)[0],
         "sm_root": {"nr_blocks": sm[0], "nr_allocated": sm[1], "bitmap_root": sm[2], "ref_count_root": sm[3]}}
    if magic == 0x8AF27F64:
        d["kind"] = "clone"
        d["region_size"], d["target_size"], d["bitset_root"] = struct.unpack_from("<QQQ", b, 172)
    elif magic == 2126579579:
        d["kind"] = "era"
        (d["data_block_size"], d["metadata_block_size"], d["nr_blocks"], d["current_era"],
         nr_bits) = struct.unpack_from("<IIIII", b, 172)
        d["current_writeset"] = {"nr_bits": nr_bits, "root": struct.unpack_from("<Q", b, 192)[0]}
        d["writeset_tree_root"], d["era_array_root"], d["metadata_snap"] = struct.unpack_from("<QQQ", b, 200)
    return d


def dm_lines(dmesg):
    return [l for l in dmesg if "device-mapper" in l or "dm_" in l or "dm-" in l]



_CRC_TABLE = None


def crc32c_kernel(data, seed=0xFFFFFFFF):
    """Linux crc32c(): Castagnoli, reflected, register = seed, no final inversion."""
    global _CRC_TABLE
    if _CRC_TABLE is None:
        t = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            t.append(c)
        _CRC_TABLE = t
    c, t = seed, _CRC_TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c


def era_snapshot_as_live(path, dst):
    """Copy of an era image whose block 0 is the metadata-snapshot superblock (blocknr 0,
    no current writeset, no snapshot), so that userspace tools show the snapshot view."""
    sb = read_superblock(path)
    snap = sb.get("metadata_snap")
    if not snap:
        return None
    shutil.copyfile(path, dst)
    with open(dst, "r+b") as f:
        f.seek(snap * 4096)
        b = bytearray(f.read(4096))
        struct.pack_into("<Q", b, 8, 0)          # blocknr
        struct.pack_into("<Q", b, 192, 0)        # current_writeset.root: not owned by the snapshot
        struct.pack_into("<Q", b, 216, 0)        # metadata_snap
        struct.pack_into("<I", b, 0, crc32c_kernel(bytes(b[4:])) ^ 146538381)
        f.seek(0)
        f.write(b)
    return snap

# --------------------------------------------------------------------------- clone model

class CloneModel:
    """Hydrated-region model of dm-clone (CLONE.md §6) driven by the executed steps."""

    def __init__(self, name):
        self.name = name
        self.geom = None
        self.bits = None          # in-core map
        self.committed = None     # map as of the last known commit point
        self.last_commit_t = None
        # dm-clone's 1 s periodic commit is timed from the constructor and from worker
        # commits only (a status-triggered commit does not reset it): track the earliest
        # possible time of the last worker commit we know of.
        self.last_worker_commit_t = None
        self.deterministic = True
        self.nondet_reason = []
        self.hydration_enabled = False
        self.suspended = False
        self.events = []
        self.status_checks = []
        self.table = None

    def set_geom(self, args):
        # NAME start len clone meta dest src rs [#feat feats...] [#core k v...]
        start, length, tt, meta, dest, src, rs = args[1:8]
        rest = args[8:]
        feats = []
        if rest:
            nf = int(rest[0]); feats = [x.lower() for x in rest[1:1 + nf]]
        rs, length = int(rs), int(length)
        g = {"region_size": rs, "target_size": length, "nr_regions": (length + rs - 1) // rs,
             "features": feats, "shift": rs.bit_length() - 1}
        if self.geom is None:
            self.geom = g
            self.bits = bytearray(g["nr_regions"])
            self.committed = bytearray(g["nr_regions"])
        self.table = " ".join(args[1:])
        self.hydration_enabled = "no_hydration" not in feats
        if self.hydration_enabled:
            self.nondet("background hydration enabled at create")

    def nondet(self, why):
        if not self.bits or all(self.bits):
            return
        self.deterministic = False
        self.nondet_reason.append(why)

    def mark(self, a, b):
        """mark regions [a,b) hydrated; returns the newly hydrated ranges."""
        n = self.geom["nr_regions"]
        a, b = max(0, a), min(n, b)
        new = [r for r in range(a, b) if not self.bits[r]] if b - a < 5_000_000 else None
        self.bits[a:b] = b"\1" * max(0, b - a)
        return ranges_from_sorted(new) if new is not None else [[a, b]]

    def commit(self, t):
        self.committed = bytearray(self.bits)
        self.last_commit_t = t

    def apply(self, op):
        if op["rc"] != 0 or not op["args"]:
            return
        kind, a = op["op"], op["args"]
        if a[0] != self.name and kind not in ("crash", "sleep"):
            return
        t = op["t1"]
        shift = self.geom["shift"] if self.geom else 0
        ev = None
        if kind == "create":
            self.set_geom(a)
            self.commit(t)  # a fresh format / an open is committed
            self.last_worker_commit_t = op["t0"]
            self.suspended = False
        elif kind == "write":
            s, n = int(a[1]), int(a[2])
            regs = [s >> shift, ((s + n - 1) >> shift) + 1]
            ev = {"op": "write", "t": t, "start_sector": s, "nr_sectors": n, "tag": a[3],
                  "regions": regs, "newly_hydrated": self.mark(*regs)}
        elif kind == "discard":
            s, n = int(a[1]), int(a[2])
            rs = self.geom["region_size"]
            first, end = (s + rs - 1) // rs, (s + n) // rs
            new = self.mark(first, end) if first < end else []
            ev = {"op": "discard", "t": t, "start_sector": s, "nr_sectors": n,
                  "covered_regions": [first, end] if first < end else None, "newly_hydrated": new}
        elif kind == "wait-hydrated":
            self.mark(0, self.geom["nr_regions"])
            self.deterministic = True
            self.nondet_reason = []
            ev = {"op": "wait-hydrated", "t": t}
        elif kind == "message":
            msg = a[1].lower()
            if msg == "enable_hydration":
                self.hydration_enabled = True
                self.nondet("enable_hydration")
            elif msg == "disable_hydration":
                self.hydration_enabled = False
            ev = {"op": "message", "t": t, "message": " ".join(a[1:])}
        elif kind in ("suspend", "remove"):
            self.commit(t)
            self.suspended = True
        elif kind == "resume":
            self.suspended = False
        elif kind == "flush":
            if self.bits != self.committed:
                # a FLUSH with pending changes is deferred to the worker, which commits
                self.last_worker_commit_t = op["t0"]
            self.commit(t)
        elif kind == "status":
            noflush = "--noflush" in a
            for st in op["status"]:
                p = parse_clone_status(st["line"])
                chk = {"t": st["t"], "line": st["line"], "noflush": noflush,
                       "kernel_hydrated": p.get("hydrated") if p else None,
                       "model_hydrated": sum(self.bits)}
                chk["agree"] = chk["kernel_hydrated"] == chk["model_hydrated"] if self.deterministic else None
                self.status_checks.append(chk)
                if not self.deterministic and p and "hydrated" in p:
                    # background hydration: the kernel is the reference for the count
                    pass
            if not noflush and not self.suspended:
                self.commit(t)
        if ev:
            self.events.append(ev)


# --------------------------------------------------------------------------- era model

class EraModel:
    """Last-written-era model of dm-era (ERA.md §5) driven by the executed steps."""

    def __init__(self, name):
        self.name = name
        self.geom = None
        self.era = 0
        self.last = {}            # block -> last era written
        self.snapshot = None      # copy of self.last at take_metadata_snap
        self.snapshot_era = None
        self.held_root = None
        self.events = []
        self.status_checks = []
        self.table = None

    def set_geom(self, args):
        start, length, tt, meta, origin, bs = args[1:7]
        bs, length = int(bs), int(length)
        g = {"block_size": bs, "target_size": length, "nr_blocks": (length + bs - 1) // bs}
        if self.geom is None:
            self.geom = g
        self.table = " ".join(args[1:])

    def mark(self, a, b):
        n = self.geom["nr_blocks"]
        for blk in range(max(0, a), min(n, b)):
            self.last[blk] = self.era

    def apply(self, op):
        if op["rc"] != 0 or not op["args"]:
            return
        kind, a = op["op"], op["args"]
        if a[0] != self.name:
            return
        t = op["t1"]
        ev = None
        if kind == "create":
            self.set_geom(a)
            self.era += 1          # first resume rolls over
            ev = {"op": "create+resume", "t": t, "era_after": self.era}
        elif kind == "resume":
            self.era += 1
            ev = {"op": "resume", "t": t, "era_after": self.era}
        elif kind == "write":
            s, n = int(a[1]), int(a[2])
            bs = self.geom["block_size"]
            blocks = [s // bs, (s + n - 1) // bs + 1]
            self.mark(*blocks)
            ev = {"op": "write", "t": t, "start_sector": s, "nr_sectors": n, "tag": a[3],
                  "era": self.era, "blocks": blocks}
        elif kind == "discard":
            s, n = int(a[1]), int(a[2])
            bs = self.geom["block_size"]
            blocks = [s // bs, s // bs + 1]   # only the first block is marked (H-E7)
            self.mark(*blocks)
            ev = {"op": "discard", "t": t, "start_sector": s, "nr_sectors": n, "era": self.era,
                  "blocks": blocks, "note": "dm-era marks only the first block of a discard"}
        elif kind == "message":
            msg = a[1].lower()
            if msg == "checkpoint":
                self.era += 1
            elif msg == "take_metadata_snap":
                self.snapshot = dict(self.last)
                self.snapshot_era = self.era + 1
                self.era += 1
            elif msg == "drop_metadata_snap":
                self.snapshot = None
                self.snapshot_era = None
            ev = {"op": "message", "t": t, "message": msg, "era_after": self.era}
        elif kind == "status":
            for st in op["status"]:
                p = parse_era_status(st["line"])
                chk = {"t": st["t"], "line": st["line"], "kernel_era": p.get("era") if p else None,
                       "model_era": self.era, "held_root": p.get("held_root") if p else None}
                chk["agree"] = chk["kernel_era"] == chk["model_era"]
                if p and p.get("held_root") is not None:
                    self.held_root = p["held_root"]
                self.status_checks.append(chk)
        if ev:
            self.events.append(ev)

    @staticmethod
    def per_era(last):
        by = {}
        for blk in sorted(last):
            by.setdefault(last[blk], []).append(blk)
        return {str(e): ranges_from_sorted(bl) for e, bl in sorted(by.items())}


# --------------------------------------------------------------------------- scenario

def parse_scenario(path):
    sc = {"file": os.path.relpath(path, REPO), "disks": [], "steps": [], "meta": "meta",
          "timeout": 600, "mem": 512, "description": "", "verify": "auto"}
    for raw in open(path):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        w = line.split()
        if w[0] == "case":
            sc["case"] = w[1]
        elif w[0] == "kind":
            sc["kind"] = w[1]
        elif w[0] == "description":
            sc["description"] = line.split(None, 1)[1]
        elif w[0] == "disk":
            sc["disks"].append({"name": w[1], "size": parse_size(w[2])})
        elif w[0] == "meta":
            sc["meta"] = w[1]
        elif w[0] == "timeout":
            sc["timeout"] = int(w[1])
        elif w[0] == "mem":
            sc["mem"] = int(w[1])
        elif w[0] == "verify":
            sc["verify"] = w[1]
        else:
            sc["steps"].append(line)
    for k in ("case", "kind"):
        if k not in sc:
            sys.exit(f"{path}: missing '{k}'")
    return sc


def primary_name(ops, kind):
    for op in ops:
        if op["op"] == "create" and op["rc"] == 0 and len(op["args"]) > 3 and op["args"][3] == kind:
            return op["args"][0]
    return None


def run_scenario(path, outroot, keep_work=False):
    sc = parse_scenario(path)
    case = sc["case"]
    work = tempfile.mkdtemp(prefix=f"dmce-lab-{case}-", dir=os.environ.get("DMCE_LAB_TMP"))
    disks = []
    for d in sc["disks"]:
        p = os.path.join(work, d["name"] + ".img")
        make_disk(p, d["size"])
        disks.append((d["name"], p))
    t_start = time.time()
    log(f"{case}: booting ({len(sc['steps'])} steps)")
    res = run_guest(disks, sc["steps"], work, timeout=sc["timeout"], mem=sc["mem"])
    ops = res["ops"]
    crashed = res["crash"] is not None
    problems = []
    if res["end"] is None and not crashed:
        problems.append(f"guest did not finish (qemu rc {res['qemu_rc']})")
    if res["end"] is not None and res["end"]["rc"] != 0:
        problems.append("a guest step failed")
    for op in ops:
        if op["mode"] == "ok" and op["rc"] != 0:
            problems.append(f"step failed: {op['step']}: {' | '.join(op['err'])}")
    meta_path = dict(disks)[sc["meta"]]
    outdir = os.path.join(outroot, case)
    os.makedirs(outdir, exist_ok=True)
    name = primary_name(ops, sc["kind"])
    if name is None:
        problems.append("no successful create of the primary target")
    truth = {"kind": sc["kind"], "case": case, "description": sc["description"],
             "regen": f"tests/kernel/scenario {sc['file']}",
             "scenario_file": sc["file"], "crashed": crashed}
    if sc["kind"] == "clone" and name:
        m = CloneModel(name)
        for op in ops:
            m.apply(op)
        if crashed:
            m.bits_at_crash = bytearray(m.bits)
        truth.update(clone_truth(m, sc, res, meta_path, work, problems))
    elif sc["kind"] == "era" and name:
        m = EraModel(name)
        for op in ops:
            m.apply(op)
        truth.update(era_truth(m, sc, res, meta_path, work, problems))
    sb = read_superblock(meta_path)
    truth["superblock"] = sb
    truth["metadata_blocks"] = os.path.getsize(meta_path) // 4096
    truth["kernel"] = {"release": res["kernel"].get("abi"), "debian_version": res["kernel"].get("debian_version"),
                       "dm_clone_vermagic": res["kernel"].get("vermagic"), "accel": "tcg",
                       "qemu_cache": "writeback", "crash_method": "sysrq-b (reset) with -no-reboot" if crashed else None}
    truth["wall_seconds"] = round(time.time() - t_start, 1)
    truth["guest_seconds"] = res["end"]["t"] if res["end"] else res["crash"]
    truth["problems"] = problems
    truth["verdict"] = "OK" if not problems else "FAIL"
    # files
    zst_write(meta_path, os.path.join(outdir, "metadata.img.zst"))
    with open(os.path.join(outdir, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1)
        f.write("\n")
    with open(os.path.join(outdir, "table.txt"), "w") as f:
        for op in ops:
            if op["op"] in ("create", "reload"):
                f.write(f"{' '.join(op['args'][1:])}    # dm name {op['args'][0]}\n")
        f.write("# guest devices: " + ", ".join(f"{dev}={n}" for n, dev in res["devmap"].items())
                + " (disk sizes: " + ", ".join(f"{d['name']}={d['size']}" for d in sc["disks"]) + " bytes)\n")
    with open(os.path.join(outdir, "status.txt"), "w") as f:
        for op in ops:
            for st in op["status"]:
                f.write(f"t={st['t']:.2f} {st['name']} {st['line']}\n")
    with open(os.path.join(outdir, "ops.txt"), "w") as f:
        for op in ops:
            f.write(f"t={op['t0']:8.2f}..{op['t1']:8.2f} rc={op['rc']} {op['step']}\n")
            for e in op["err"]:
                f.write(f"    err: {e}\n")
            for d in dm_lines(op["dmesg"]):
                f.write(f"    dmesg: {d}\n")
        if crashed:
            f.write(f"t={res['crash']:8.2f} power cut (sysrq-b, no teardown)\n")
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    else:
        log(f"work dir kept: {work}")
    log(f"{case}: {truth['verdict']} in {truth['wall_seconds']} s" + ("" if not problems else ": " + "; ".join(problems)))
    return truth


def clone_truth(m, sc, res, meta_path, work, problems):
    g = m.geom
    ranges_model = ranges_from_bytes(m.committed if res["crash"] is not None else m.bits)
    out = {"region_size": g["region_size"], "target_size": g["target_size"], "nr_regions": g["nr_regions"],
           "last_region_sectors": g["target_size"] - (g["nr_regions"] - 1) * g["region_size"],
           "table": m.table, "features": g["features"]}
    for chk in m.status_checks:
        if chk["agree"] is False:
            problems.append(f"status hydrated {chk['kernel_hydrated']} != model {chk['model_hydrated']} at t={chk['t']}")
    # kernel re-read of the image
    full = g["nr_regions"] <= 70000
    probes = []
    if not full:
        # read-probe the regions around every range boundary of the model
        for b, e in ranges_from_bytes(m.bits):
            probes += [b - 1, b, e - 1, e]
        probes += [0, g["nr_regions"] - 1, g["nr_regions"] // 2]
    kv = load_clone(meta_path, g["region_size"], g["target_size"], hydrate=full,
                    work=os.path.join(work, "reload"), probe_regions=probes)
    if kv.get("probed_regions"):
        kv["method"] = "status-count + read probes at range boundaries (destination stamp = hydrated)"
        if not res["crash"]:
            bad = [r for r, v in kv["probed_regions"].items() if v is not bool(m.bits[int(r)])]
            if bad:
                problems.append(f"read probes disagree with the model at regions {bad[:8]}")
    out["kernel_view"] = {k: kv.get(k) for k in ("accepted", "method", "hydrated_count", "hydrated_ranges",
                                                 "probed_regions",
                                                 "status_initial", "status_final", "dmesg_reason", "consistent",
                                                 "wall_seconds")}
    if not kv.get("accepted"):
        problems.append("kernel refused to load the image again: " + str(kv.get("dmesg_reason")))
    crashed = res["crash"] is not None
    if not m.deterministic and not crashed:
        problems.append("model not deterministic at the end: " + "; ".join(m.nondet_reason))
    out["model_deterministic"] = m.deterministic
    uncertainty = None
    if crashed:
        gap = res["crash"] - m.last_worker_commit_t if m.last_worker_commit_t is not None else None
        out["last_commit_point_t"] = m.last_commit_t
        out["last_worker_commit_t"] = m.last_worker_commit_t
        out["crash_t"] = res["crash"]
        incore_at_crash = ranges_from_bytes(m.bits_at_crash)
        out["hydrated_in_core_at_crash_model"] = incore_at_crash if m.deterministic else None
        if m.deterministic and gap is not None and gap < 0.9:
            # nothing can have committed between the last commit point and the power cut
            truth_ranges = ranges_model
            out["truth_source"] = ("model: committed set at the last commit point; the last worker commit was at most "
                                   "%.2f s before the power cut, so the 1 s periodic commit cannot have run" % gap)
        else:
            truth_ranges = kv.get("hydrated_ranges")
            out["truth_source"] = "kernel re-read of the image (background hydration makes the committed set timing dependent)"
            lb = ranges_from_bytes(m.committed)
            sts = [c for c in m.status_checks if not c["noflush"] and c["kernel_hydrated"] is not None]
            uncertainty = {
                "why": "power cut during background hydration; the exact set depends on which copies completed before the last commit",
                "last_flushing_status_before_crash": sts[-1]["line"] if sts else None,
                "last_flushing_status_hydrated": sts[-1]["kernel_hydrated"] if sts else None,
                "note": "that status commits first and then counts the in-core map, so its count is an upper bound of what that commit recorded; a later 1 s periodic commit may add more"}
            if kv.get("hydrated_count") == g["nr_regions"]:
                problems.append("hydration had completed before the power cut: not a mid-hydration crash")
            # regions the model knows were committed (user I/O before a flushing status)
            uncertainty["lower_bound_ranges"] = lb
            kvr = kv.get("hydrated_ranges")
            if kvr is not None:
                kbits = bytearray(g["nr_regions"])
                for b, e in kvr:
                    kbits[b:e] = b"\1" * (e - b)
                if any(m.committed[i] and not kbits[i] for i in range(g["nr_regions"])):
                    problems.append("kernel re-read lacks regions committed before the crash")
                uncertainty["checks"] = "lower bound contained in the re-read set"
        out["uncertainty"] = uncertainty
    else:
        truth_ranges = ranges_model
        out["truth_source"] = "model (CLONE.md §6) cross-checked with status counts and a kernel re-read"
    if truth_ranges is None:
        problems.append("no truth available")
        truth_ranges = []
    out["hydrated_ranges"] = truth_ranges
    out["hydrated_count"] = ranges_count(truth_ranges)
    if kv.get("hydrated_ranges") is not None:
        out["kernel_view_equals_truth"] = kv["hydrated_ranges"] == truth_ranges
        if not out["kernel_view_equals_truth"]:
            problems.append("kernel re-read differs from the truth")
    elif kv.get("hydrated_count") is not None:
        out["kernel_view_equals_truth"] = kv["hydrated_count"] == out["hydrated_count"]
        if not out["kernel_view_equals_truth"]:
            problems.append(f"kernel re-read count {kv['hydrated_count']} != truth {out['hydrated_count']}")
    out["ops"] = m.events
    out["status_checks"] = m.status_checks
    finals = [c["line"] for c in m.status_checks]
    out["final_status"] = finals[-1] if finals else None
    return out


def era_truth(m, sc, res, meta_path, work, problems):
    g = m.geom
    crashed = res["crash"] is not None
    out = {"block_size": g["block_size"], "target_size": g["target_size"], "nr_blocks": g["nr_blocks"],
           "table": m.table, "current_era": m.era, "metadata_snap": m.held_root,
           "last_written_era": EraModel.per_era(m.last),
           "written_blocks": len(m.last)}
    if m.snapshot is not None:
        out["snapshot_last_written_era"] = EraModel.per_era(m.snapshot)
        out["snapshot_current_era"] = m.snapshot_era
    for chk in m.status_checks:
        if not chk["agree"]:
            problems.append(f"status era {chk['kernel_era']} != model {chk['model_era']} at t={chk['t']}")
    sb = read_superblock(meta_path)
    if sb.get("current_era") != m.era:
        problems.append(f"superblock current_era {sb.get('current_era')} != model {m.era}")
    if (sb.get("metadata_snap") or None) != m.held_root:
        problems.append(f"superblock metadata_snap {sb.get('metadata_snap')} != status {m.held_root}")
    if crashed:
        out["committed_current_writeset_root"] = sb.get("current_writeset", {}).get("root")
        if not out["committed_current_writeset_root"]:
            problems.append("crash case but the superblock has no current writeset")
        out["truth_source"] = ("model: dm-era commits the mark of a block before it issues the write (E-ORD), "
                               "so every write completed before the power cut is in the committed metadata")
    else:
        out["truth_source"] = "model (ERA.md §5) cross-checked with status eras, era_dump --logical and a kernel re-read"
    out["ops"] = m.events
    out["status_checks"] = m.status_checks
    out["final_status"] = m.status_checks[-1]["line"] if m.status_checks else None
    # cross-checks with thin-provisioning-tools (0.9.0 drops a committed current writeset)
    tools = {}
    chk = subprocess.run(["era_check", meta_path], capture_output=True, text=True)
    tools["era_check_rc"] = chk.returncode
    tools["era_check_output"] = (chk.stdout + chk.stderr).strip()[-500:]
    logical = era_dump_logical(meta_path)
    if logical is not None:
        same = logical == m.last
        tools["era_dump_logical_equals_model"] = same
        if not same and not crashed:
            problems.append("era_dump --logical differs from the model: " + diff_last(logical, m.last))
        if crashed:
            tools["note"] = "0.9.0 era_dump ignores the committed current writeset; compared via kernel re-read instead"
    if m.snapshot is not None:
        # 0.9.0 era_invalidate --metadata-snapshot was observed to answer with the live
        # view (blocks written after the snapshot included): informational only.
        tools["era_invalidate_metadata_snapshot"] = check_invalidate(meta_path, m.snapshot, m.snapshot_era, [])
        tools["era_invalidate_note"] = ("0.9.0 era_invalidate --metadata-snapshot answers with the live view "
                                        "(observed: its counts equal the live last_written_era), not the snapshot; "
                                        "the snapshot truth is checked with snapshot_view_* instead")
        sv = os.path.join(work, "snapshot-view.img")
        if era_snapshot_as_live(meta_path, sv):
            lg = era_dump_logical(sv)
            tools["snapshot_view_era_dump_logical_equals_model"] = lg == m.snapshot
            tools["snapshot_view_method"] = ("snapshot superblock copied to block 0 with blocknr 0, current writeset "
                                             "root 0, checksum recomputed; era_dump --logical of that copy")
            if lg != m.snapshot:
                problems.append("snapshot view differs from the model: " + diff_last(lg or {}, m.snapshot))
    out["tpt_0_9_0"] = tools
    # kernel re-read: load, no writes, remove (archives the current writeset), dump
    if crashed or sc.get("verify") == "reload":
        after = os.path.join(work, "reload-after.img")
        kv = load_era(meta_path, g["block_size"], g["target_size"], writes=[], checkpoint=False,
                      out_meta=after, work=os.path.join(work, "reload"))
        kvs = {k: kv.get(k) for k in ("accepted", "era_after_resume", "status", "dmesg_reason", "wall_seconds")}
        if kv.get("accepted"):
            lg = era_dump_logical(after)
            # after the reload the running era was m.era+1 with no writes
            kvs["logical_after_reload_equals_model"] = lg == m.last
            if lg != m.last:
                problems.append("kernel re-read differs from the model: " + diff_last(lg or {}, m.last))
            if kv.get("era_after_resume") != m.era + 1:
                problems.append(f"reload era {kv.get('era_after_resume')} != {m.era + 1}")
        else:
            problems.append("kernel refused the image: " + str(kv.get("dmesg_reason")))
        out["kernel_view"] = kvs
    return out


def diff_last(a, b):
    d = [k for k in set(a) | set(b) if a.get(k) != b.get(k)]
    d.sort()
    return f"{len(d)} blocks differ, first: " + ", ".join(f"{k}: {a.get(k)} vs {b.get(k)}" for k in d[:5])


def era_dump_logical(path):
    r = subprocess.run(["era_dump", "--logical", path], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    last = {}
    for mm in re.finditer(r'<era block="(\d+)" era="(\d+)"/>', r.stdout):
        if mm.group(2) != "0":
            last[int(mm.group(1))] = int(mm.group(2))
    # --logical with no writesets prints the default format; the regex covers both
    return last


def check_invalidate(path, snap, snap_era, problems):
    """era_invalidate --metadata-snapshot --written-since T must list exactly the blocks
    whose snapshot era >= T."""
    res = {}
    for T in range(0, (snap_era or 1) + 1):
        r = subprocess.run(["era_invalidate", "--metadata-snapshot", "--written-since", str(T), path],
                           capture_output=True, text=True)
        if r.returncode != 0:
            res[str(T)] = "rc %d: %s" % (r.returncode, r.stderr.strip()[:200])
            continue
        got = set()
        for mm in re.finditer(r'<block block\s*=\s*"\s*(\d+)\s*"/>', r.stdout):
            got.add(int(mm.group(1)))
        for mm in re.finditer(r'<range begin\s*=\s*"\s*(\d+)\s*"\s+end\s*=\s*"\s*(\d+)\s*"/>', r.stdout):
            got.update(range(int(mm.group(1)), int(mm.group(2))))
        want = {b for b, e in snap.items() if e >= T}
        res[str(T)] = {"blocks": len(got), "equals_model": got == want} if T > 0 else {"blocks": len(got)}
        if T > 0 and got != want:
            problems.append(f"era_invalidate --metadata-snapshot --written-since {T}: {len(got)} blocks, model {len(want)}")
    return res


# --------------------------------------------------------------------------- load mode

def load_clone(meta, region_size, target_size, table_region_size=None, table_target_size=None,
               hydrate=True, features=None, work=None, out_meta=None, corrupt_sb=False, timeout=900,
               probe_regions=None):
    """Loads a clone metadata image with a stamped source and destination.  With hydrate,
    enables background hydration, waits for completion and derives from the destination
    which regions the kernel took as already hydrated."""
    own = work is None
    work = work or tempfile.mkdtemp(prefix="dmce-lab-load-", dir=os.environ.get("DMCE_LAB_TMP"))
    os.makedirs(work, exist_ok=True)
    t0 = time.time()
    rs_t = table_region_size or region_size
    len_t = table_target_size or target_size
    nr = (target_size + region_size - 1) // region_size
    m = os.path.join(work, "meta.img")
    zst_read(meta, m)
    if corrupt_sb:
        with open(m, "r+b") as f:
            f.seek(200)
            b = f.read(1)
            f.seek(200)
            f.write(bytes([b[0] ^ 0x5A]))
    size = max(target_size, len_t) * SECTOR
    src, dst = os.path.join(work, "src.img"), os.path.join(work, "dst.img")
    stamp = hydrate
    make_disk(src, size, (region_size, "SRC") if stamp else None)
    make_disk(dst, size, (region_size, "DST") if stamp else None)
    probe_regions = sorted(set(r for r in (probe_regions or []) if 0 <= r < nr)) if not hydrate else []
    for path, tag in ((src, "SRC"), (dst, "DST")):
        with open(path, "r+b") as f:
            for r in probe_regions:
                f.seek(r * region_size * SECTOR)
                f.write(f"{tag}@{r}".encode().ljust(SECTOR, b"\0"))
    feats = features if features is not None else ["no_hydration"]
    core = ["hydration_threshold", "512", "hydration_batch_size", "256"] if hydrate else []
    table = f"0 {len_t} clone @meta @dest @src {rs_t} {len(feats)} {' '.join(feats)}".strip()
    if core:
        table += f" {len(core)} {' '.join(core)}"
    steps = [f"try create c {table}", "status c"]
    # reads of a region go to the destination iff the kernel has it hydrated
    steps += [f"sample c {r * region_size} 1 1" for r in probe_regions]
    if hydrate:
        steps += ["message c enable_hydration", f"wait-hydrated c {timeout - 60}", "status c"]
    steps += ["remove c"]
    res = run_guest([("meta", m), ("dest", dst), ("src", src)], steps, work, timeout=timeout)
    out = {"kind": "clone", "meta": meta, "region_size": region_size, "target_size": target_size,
           "table": table, "table_region_size": rs_t, "table_target_size": len_t,
           "method": "hydrate-and-compare" if hydrate else "status-count"}
    create = res["ops"][0] if res["ops"] else None
    out["accepted"] = bool(create and create["rc"] == 0)
    if not out["accepted"]:
        out["dmesg_reason"] = dm_lines(create["dmesg"]) if create else ["guest did not run: %s" % res.get("qemu_rc")]
        out["error"] = create["err"] if create else None
    else:
        sts = [st["line"] for op in res["ops"] for st in op["status"]]
        out["status_initial"] = sts[0] if sts else None
        out["status_final"] = sts[-1] if sts else None
        p0 = parse_clone_status(sts[0]) if sts else None
        out["hydrated_count_status"] = p0.get("hydrated") if p0 else None
        ok_all = all(op["rc"] == 0 for op in res["ops"])
        if hydrate:
            pf = parse_clone_status(sts[-1]) if sts else None
            if not ok_all or not pf or pf.get("hydrated") != pf.get("nr_regions"):
                out["error"] = "hydration did not complete: " + "; ".join(
                    e for op in res["ops"] for e in op["err"])
            else:
                bits = bytearray(nr)
                with open(dst, "rb") as fd, open(src, "rb") as fs:
                    for r in range(nr):
                        off = r * region_size * SECTOR
                        fd.seek(off); fs.seek(off)
                        d, s = fd.read(64).rstrip(b"\0"), fs.read(64).rstrip(b"\0")
                        if d == f"DST@{r}".encode():
                            bits[r] = 1
                        elif d != s:
                            out.setdefault("unexpected_regions", []).append(r)
                out["hydrated_ranges"] = ranges_from_bytes(bits)
                out["hydrated_count"] = ranges_count(out["hydrated_ranges"])
                out["consistent"] = out["hydrated_count"] == out["hydrated_count_status"] and "unexpected_regions" not in out
        else:
            out["hydrated_count"] = out["hydrated_count_status"]
            if probe_regions:
                seen = {}
                for op in res["ops"]:
                    if op["op"] == "sample":
                        for line in op["out"]:
                            sec, _, st = line.partition(" ")
                            r = int(sec) // region_size
                            seen[r] = True if st.startswith("DST@") else False if st.startswith("SRC@") else None
                out["probed_regions"] = {str(r): seen.get(r) for r in probe_regions}
    out["ops"] = [f"t={op['t0']:.2f} rc={op['rc']} {op['step']}" for op in res["ops"]]
    out["wall_seconds"] = round(time.time() - t0, 1)
    if out_meta:
        shutil.copyfile(m, out_meta)
    if own:
        shutil.rmtree(work, ignore_errors=True)
    return out


def load_era(meta, block_size, target_size, writes=(), checkpoint=True, out_meta=None, work=None,
             corrupt_sb=False, discards=(), timeout=600):
    own = work is None
    work = work or tempfile.mkdtemp(prefix="dmce-lab-load-", dir=os.environ.get("DMCE_LAB_TMP"))
    os.makedirs(work, exist_ok=True)
    t0 = time.time()
    m = os.path.join(work, "meta.img")
    zst_read(meta, m)
    if corrupt_sb:
        with open(m, "r+b") as f:
            f.seek(200)
            b = f.read(1)
            f.seek(200)
            f.write(bytes([b[0] ^ 0x5A]))
    origin = os.path.join(work, "origin.img")
    make_disk(origin, target_size * SECTOR)
    steps = [f"try create e 0 {target_size} era @meta @origin {block_size}", "status e"]
    for i, (s, n) in enumerate(writes):
        steps.append(f"write e {s} {n} L{i}")
    for s, n in discards:
        steps.append(f"discard e {s} {n}")
    if checkpoint:
        steps += ["message e checkpoint", "status e"]
    steps += ["remove e"]
    res = run_guest([("meta", m), ("origin", origin)], steps, work, timeout=timeout)
    out = {"kind": "era", "meta": meta, "block_size": block_size, "target_size": target_size,
           "writes": [list(w) for w in writes], "discards": [list(d) for d in discards], "checkpoint": checkpoint}
    create = res["ops"][0] if res["ops"] else None
    out["accepted"] = bool(create and create["rc"] == 0)
    if not out["accepted"]:
        out["dmesg_reason"] = dm_lines(create["dmesg"]) if create else ["guest did not run: %s" % res.get("qemu_rc")]
        out["error"] = create["err"] if create else None
    else:
        sts = [st["line"] for op in res["ops"] for st in op["status"]]
        out["status"] = sts
        p0 = parse_era_status(sts[0]) if sts else None
        out["era_after_resume"] = p0.get("era") if p0 else None
        pf = parse_era_status(sts[-1]) if sts else None
        out["era_final"] = pf.get("era") if pf else None
        out["all_steps_ok"] = all(op["rc"] == 0 for op in res["ops"])
        if not out["all_steps_ok"]:
            out["error"] = [e for op in res["ops"] for e in op["err"]]
    out["ops"] = [f"t={op['t0']:.2f} rc={op['rc']} {op['step']}" for op in res["ops"]]
    out["wall_seconds"] = round(time.time() - t0, 1)
    if out_meta:
        shutil.copyfile(m, out_meta)
        out["out_meta"] = out_meta
    if own:
        shutil.rmtree(work, ignore_errors=True)
    return out



# --------------------------------------------------------------------------- rejection probes

def run_probes(outroot):
    """Loads kernel-made fixture images with wrong geometry or a damaged superblock, all
    in one boot, and records what the kernel says."""
    work = tempfile.mkdtemp(prefix="dmce-lab-probe-", dir=os.environ.get("DMCE_LAB_TMP"))
    t0 = time.time()
    cimg = os.path.join(outroot, "clone-partial", "metadata.img.zst")
    eimg = os.path.join(outroot, "era-eras", "metadata.img.zst")
    probes = [
        # name, kind, image, table (with @meta etc.), corrupt superblock?
        ("clone-region-size-mismatch", "clone", cimg, "0 131072 clone @m @dest @src 128 1 no_hydration", False),
        ("clone-target-size-mismatch", "clone", cimg, "0 65536 clone @m @dest @src 64 1 no_hydration", False),
        ("clone-bad-superblock-checksum", "clone", cimg, "0 131072 clone @m @dest @src 64 1 no_hydration", True),
        ("clone-control-correct-geometry", "clone", cimg, "0 131072 clone @m @dest @src 64 1 no_hydration", False),
        ("era-block-size-mismatch", "era", eimg, "0 131072 era @m @origin 256", False),
        ("era-bad-superblock-checksum", "era", eimg, "0 131072 era @m @origin 128", True),
        ("era-control-correct-geometry", "era", eimg, "0 131072 era @m @origin 128", False),
    ]
    disks = [("dest", os.path.join(work, "dest.img")), ("src", os.path.join(work, "src.img")),
             ("origin", os.path.join(work, "origin.img"))]
    for _, p in disks:
        make_disk(p, 64 * MB)
    steps = []
    for i, (name, kind, img, table, bad) in enumerate(probes):
        m = os.path.join(work, f"m{i}.img")
        zst_read(img, m)
        if bad:
            with open(m, "r+b") as f:
                f.seek(190)
                b = f.read(1)
                f.seek(190)
                f.write(bytes([b[0] ^ 0x5A]))
        disks.append((f"m{i}", m))
        steps += [f"try create p{i} " + table.replace("@m ", f"@m{i} "), f"try status p{i}", f"try remove p{i}"]
    res = run_guest(disks, steps, work, timeout=300)
    out = {"what": "table loads the kernel must refuse (and controls it must accept)",
           "regen": "tests/kernel/lab.py probe", "kernel": res["kernel"].get("abi"), "probes": []}
    problems = []
    for i, (name, kind, img, table, bad) in enumerate(probes):
        op = next((o for o in res["ops"] if o["op"] == "create" and o["args"][0] == f"p{i}"), None)
        acc = bool(op and op["rc"] == 0)
        expect = "control" in name
        out["probes"].append({"name": name, "image": os.path.relpath(img, REPO), "table": table,
                              "corrupted_superblock_byte": 190 if bad else None,
                              "accepted": acc, "expected_accepted": expect,
                              "dmesg": dm_lines(op["dmesg"]) if op else None,
                              "dmsetup_error": op["err"] if op else None})
        if acc != expect:
            problems.append(name)
    out["problems"] = problems
    out["wall_seconds"] = round(time.time() - t0, 1)
    with open(os.path.join(outroot, "rejections.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    shutil.rmtree(work, ignore_errors=True)
    log(f"probes: {'OK' if not problems else 'FAIL ' + ', '.join(problems)} in {out['wall_seconds']} s")
    return not problems

# --------------------------------------------------------------------------- CLI

def main():
    ap = argparse.ArgumentParser(prog="lab")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("scenario", help="run scenario files")
    s.add_argument("files", nargs="+")
    s.add_argument("--out", default=os.path.join(REPO, "fixtures", "kernel"))
    s.add_argument("--keep", action="store_true", help="keep the work directory")
    lc = sub.add_parser("load", help="load a metadata image into the kernel")
    lsub = lc.add_subparsers(dest="kind", required=True)
    c = lsub.add_parser("clone")
    c.add_argument("--meta", required=True)
    c.add_argument("--region-size", type=int, required=True)
    c.add_argument("--target-size", type=int, required=True)
    c.add_argument("--table-region-size", type=int, help="region size put in the table (default: --region-size)")
    c.add_argument("--table-target-size", type=int, help="length put in the table (default: --target-size)")
    c.add_argument("--no-hydrate", action="store_true", help="only load and read the status count")
    c.add_argument("--corrupt-sb", action="store_true", help="flip a byte of the superblock first")
    c.add_argument("--probe-regions", default="", help='with --no-hydrate: "R R ..." regions read through the target')
    c.add_argument("--out-meta")
    c.add_argument("--out")
    e = lsub.add_parser("era")
    e.add_argument("--meta", required=True)
    e.add_argument("--block-size", type=int, required=True)
    e.add_argument("--target-size", type=int, required=True)
    e.add_argument("--writes", default="", help='"SECTOR COUNT SECTOR COUNT ..." written after the load')
    e.add_argument("--discards", default="", help='"SECTOR COUNT ..." discarded after the writes')
    e.add_argument("--no-checkpoint", action="store_true")
    e.add_argument("--corrupt-sb", action="store_true")
    e.add_argument("--out-meta")
    e.add_argument("--out")
    pr = sub.add_parser("probe", help="rejection probes on kernel-made fixtures")
    pr.add_argument("--out", default=os.path.join(REPO, "fixtures", "kernel"))
    a = ap.parse_args()
    if a.cmd == "probe":
        sys.exit(0 if run_probes(a.out) else 1)
    if a.cmd == "scenario":
        bad = 0
        t0 = time.time()
        for f in a.files:
            t = run_scenario(f, a.out, keep_work=a.keep)
            bad += t["verdict"] != "OK"
        log(f"{len(a.files)} scenario(s) in {time.time() - t0:.1f} s, {bad} failed")
        sys.exit(1 if bad else 0)
    if a.cmd == "load":
        if a.kind == "clone":
            r = load_clone(a.meta, a.region_size, a.target_size, a.table_region_size, a.table_target_size,
                           hydrate=not a.no_hydrate, out_meta=a.out_meta, corrupt_sb=a.corrupt_sb,
                           probe_regions=[int(x) for x in a.probe_regions.replace(",", " ").split()])
        else:
            nums = [int(x) for x in a.writes.replace(",", " ").split()]
            dnums = [int(x) for x in a.discards.replace(",", " ").split()]
            if len(nums) % 2 or len(dnums) % 2:
                sys.exit("--writes/--discards take SECTOR COUNT pairs")
            r = load_era(a.meta, a.block_size, a.target_size, writes=list(zip(nums[::2], nums[1::2])),
                         discards=list(zip(dnums[::2], dnums[1::2])), checkpoint=not a.no_checkpoint,
                         out_meta=a.out_meta, corrupt_sb=a.corrupt_sb)
        txt = json.dumps(r, indent=1)
        if a.out:
            with open(a.out, "w") as f:
                f.write(txt + "\n")
        print(txt)
        sys.exit(0 if r.get("accepted") and not r.get("error") else 3)


if __name__ == "__main__":
    main()
