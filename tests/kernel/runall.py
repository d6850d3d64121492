#!/usr/bin/env python3
"""End-to-end tier: our restore tools -> real kernel -> our dump tools.

  clone: XML -> `dmce clone_restore` -> kernel load (stamped source/destination, full
         hydration) -> the set of regions the kernel treated as hydrated must equal the XML's.
  era:   XML -> `dmce era_restore` -> kernel load, resume (era must be current_era+1),
         writes, checkpoint, remove -> `dmce era_dump` must show the new writes in that era
         and the old eras unchanged.
  reject: geometry mismatches and a corrupted superblock must be refused by the kernel.
  logwrites: the kernel lab's dm-log-writes captures (scenarios/logwrites/*.scn), made
         fresh, each verified with `dmce clone_verify_log|era_verify_log`: meta mode on every
         case, crash mode on the power-cut cases, conformance on every case; the expected
         exits come from the scenarios' `expect` lines (default 0).
  size:  the kernel on a metadata device of exactly `dmce clone_metadata_size` /
         `era_metadata_size`'s figure: clone hydrates fully, era runs many checkpoints
         with snapshots; the figure is at most twice what the kernel uses (sizing.py).
  boot:  the boot integration (boot/): initramfs images by mkinitramfs and dracut boot
         the root from dm-clone / dm-era, and stop in the rescue shell without writing
         when the metadata is damaged (boot.py).
  replay: tests/traces/kernel/<case>.dmtrace -> `dmce clone_replay|era_replay` -> the image
         the reference model leaves -> kernel load: clone: the kernel's hydrated set must be
         the fixture's truth and `dmce clone_dump`'s; era: status era after resume =
         image current_era+1, writes, checkpoint, remove -> `dmce era_dump` must show the
         fixture's eras plus the new writes.

Tool commands (each a shell-words command line, the arguments are appended):
  DMCE_BIN             default target/release/dmce
  DMCE_CLONE_RESTORE   default "$DMCE_BIN clone_restore"   (called with -i XML -o IMG)
  DMCE_CLONE_CHECK     default "$DMCE_BIN clone_check"     (called with IMG)
  DMCE_CLONE_DUMP      default "$DMCE_BIN clone_dump"      (called with IMG)
  DMCE_ERA_RESTORE     default "$DMCE_BIN era_restore"     e.g. /usr/sbin/era_restore
  DMCE_ERA_DUMP        default "$DMCE_BIN era_dump"        e.g. /usr/sbin/era_dump
  DMCE_ERA_CHECK       default "$DMCE_BIN era_check"       e.g. /usr/sbin/era_check
  DMCE_CLONE_REPLAY    default "$DMCE_BIN clone_replay"    (called with TRACE -o IMG)
  DMCE_ERA_REPLAY      default "$DMCE_BIN era_replay"      (called with TRACE -o IMG)
  DMCE_CLONE_VERIFY_LOG default "$DMCE_BIN clone_verify_log"
  DMCE_ERA_VERIFY_LOG  default "$DMCE_BIN era_verify_log"
  DMCE_CLONE_METADATA_SIZE, DMCE_ERA_METADATA_SIZE  default "$DMCE_BIN clone_metadata_size" ...
A missing tool makes the cases that need it FAIL (never skipped).
"""
import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lab  # noqa: E402
import boot  # noqa: E402
import sizing  # noqa: E402

META_SIZE = 8 << 20


def tool(var, sub):
    if os.environ.get(var):
        return shlex.split(os.environ[var])
    b = os.environ.get("DMCE_BIN", os.path.join(lab.REPO, "target", "release", "dmce"))
    return [b, sub]


def tool_missing(cmd):
    exe = cmd[0]
    if os.sep in exe:
        return not (os.path.isfile(exe) and os.access(exe, os.X_OK))
    return shutil.which(exe) is None


def run_tool(cmd, args, timeout=300):
    if tool_missing(cmd):
        raise Failure(f"tool missing: {cmd[0]} (build with `cargo build --release` or set the env override)")
    r = subprocess.run(cmd + args, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise Failure(f"`{' '.join(cmd + args)}` exited {r.returncode}: {(r.stderr or r.stdout).strip()[:300]}")
    return r.stdout


class Failure(Exception):
    pass


class Skip(Exception):
    pass


# ------------------------------------------------------------------ clone

def clone_xml(rs, target, ranges):
    nr = (target + rs - 1) // rs
    lines = [f'<superblock uuid="" region_size="{rs}" target_size="{target}" nr_regions="{nr}">']
    lines += [f'  <hydrated begin="{b}" end="{e}"/>' for b, e in ranges]
    lines.append("</superblock>")
    return "\n".join(lines) + "\n"


CLONE_CASES = [
    # name, region size, target size, hydrated ranges
    ("clone-rs64-mixed", 64, 131072, [[0, 1], [10, 20], [63, 65], [127, 129], [2046, 2048]]),
    ("clone-rs8-words", 8, 131072, [[0, 64], [100, 200], [511, 513], [16383, 16384]]),
    ("clone-rs2048-partial-last", 2048, 263168, [[0, 3], [64, 65], [128, 129]]),
    ("clone-rs64-empty", 64, 131072, []),
    ("clone-rs64-all", 64, 131072, [[0, 2048]]),
]


def run_clone_case(name, rs, target, ranges, work):
    d = os.path.join(work, name)
    os.makedirs(d)
    xml = os.path.join(d, "in.xml")
    img = os.path.join(d, "meta.img")
    with open(xml, "w") as f:
        f.write(clone_xml(rs, target, ranges))
    with open(img, "wb") as f:
        f.truncate(META_SIZE)
    run_tool(tool("DMCE_CLONE_RESTORE", "clone_restore"), ["-i", xml, "-o", img])
    notes = []
    chk = tool("DMCE_CLONE_CHECK", "clone_check")
    run_tool(chk, [img])
    notes.append("clone_check ok")
    after = os.path.join(d, "after.img")
    r = lab.load_clone(img, rs, target, hydrate=True, work=os.path.join(d, "load"), out_meta=after)
    if not r.get("accepted"):
        raise Failure(f"kernel refused the restored image: {r.get('dmesg_reason')} {r.get('error')}")
    if r.get("error"):
        raise Failure(str(r["error"]))
    if r.get("hydrated_count_status") != lab.ranges_count(ranges):
        raise Failure(f"kernel status counts {r.get('hydrated_count_status')} hydrated, XML has {lab.ranges_count(ranges)}")
    if r["hydrated_ranges"] != ranges:
        raise Failure(f"kernel hydrated set {r['hydrated_ranges'][:6]} != XML {ranges[:6]}")
    # after full hydration the kernel committed every region: our dump must say so
    out = run_tool(tool("DMCE_CLONE_DUMP", "clone_dump"), [after])
    got = [[int(a), int(b)] for a, b in re.findall(r'<hydrated\s+begin="(\d+)"\s+end="(\d+)"\s*/>', out)]
    nr = (target + rs - 1) // rs
    if got != [[0, nr]]:
        raise Failure(f"clone_dump of the kernel-hydrated image shows {got[:4]}, expected [[0, {nr}]]")
    notes.append("kernel set == XML (%d regions), dump after hydration == all" % lab.ranges_count(ranges))
    return "; ".join(notes)


# ------------------------------------------------------------------ era

def era_xml(bs, nr, cur, writesets, array):
    lines = [f'<superblock uuid="" block_size="{bs}" nr_blocks="{nr}" current_era="{cur}">']
    for era, bits in sorted(writesets.items()):
        lines.append(f'  <writeset era="{era}" nr_bits="{nr}">')
        for b in range(nr):
            lines.append(f'    <bit block="{b}" value="{"true" if b in bits else "false"}"/>')
        lines.append("  </writeset>")
    lines.append("  <era_array>")
    for b in range(nr):
        lines.append(f'    <era block="{b}" era="{array.get(b, 0)}"/>')
    lines.append("  </era_array>")
    lines.append("</superblock>")
    return "\n".join(lines)


def parse_era_dump(text):
    """Logical era per block from a default or --logical era_dump."""
    m = re.search(r'<superblock[^>]*current_era="(\d+)"', text)
    cur = int(m.group(1)) if m else None
    nrm = re.search(r'<superblock[^>]*nr_blocks="(\d+)"', text)
    logical = {}
    for mm in re.finditer(r'<era block="(\d+)" era="(\d+)"/>', text):
        if mm.group(2) != "0":
            logical[int(mm.group(1))] = int(mm.group(2))
    for ws in re.finditer(r'<writeset era="(\d+)"[^>]*>(.*?)</writeset>', text, re.S):
        e = int(ws.group(1))
        for mm in re.finditer(r'<bit block="(\d+)" value="true"/>', ws.group(2)):
            b = int(mm.group(1))
            logical[b] = max(logical.get(b, 0), e)
        for mm in re.finditer(r'<marked block_begin="(\d+)" len="(\d+)"/>', ws.group(2)):
            for b in range(int(mm.group(1)), int(mm.group(1)) + int(mm.group(2))):
                logical[b] = max(logical.get(b, 0), e)
    return cur, int(nrm.group(1)) if nrm else None, logical


ERA_CASES = [
    # name, block size, nr_blocks, current_era, writesets {era: blocks}, era array, writes (sector, count)
    ("era-bs128-archived", 128, 1024, 4, {3: {1, 2, 9}, 4: {2, 15, 1023}},
     {0: 1, 3: 2, 11: 2, 500: 1}, [(0, 8), (640, 256), (130944, 128)]),
    ("era-bs8-array-only", 8, 40, 7, {}, {b: (b % 7) + 1 for b in range(0, 40, 3)}, [(8, 8), (312, 8)]),
]


def run_era_case(name, bs, nr, cur, writesets, array, writes, work):
    d = os.path.join(work, name)
    os.makedirs(d)
    xml = os.path.join(d, "in.xml")
    img = os.path.join(d, "meta.img")
    with open(xml, "w") as f:
        f.write(era_xml(bs, nr, cur, writesets, array))
    with open(img, "wb") as f:
        f.truncate(META_SIZE)
    run_tool(tool("DMCE_ERA_RESTORE", "era_restore"), ["-i", xml, "-o", img])
    after = os.path.join(d, "after.img")
    r = lab.load_era(img, bs, nr * bs, writes=writes, checkpoint=True, out_meta=after,
                     work=os.path.join(d, "load"))
    if not r.get("accepted"):
        raise Failure(f"kernel refused the restored image: {r.get('dmesg_reason')} {r.get('error')}")
    if not r.get("all_steps_ok"):
        raise Failure(f"guest steps failed: {r.get('error')}")
    if r.get("era_after_resume") != cur + 1:
        raise Failure(f"status era after resume {r.get('era_after_resume')} != current_era+1 = {cur + 1}")
    if r.get("era_final") != cur + 2:
        raise Failure(f"status era after checkpoint {r.get('era_final')} != {cur + 2}")
    out = run_tool(tool("DMCE_ERA_DUMP", "era_dump"), [after])
    dcur, dnr, logical = parse_era_dump(out)
    expect = dict(array)
    for e, bits in writesets.items():
        for b in bits:
            expect[b] = max(expect.get(b, 0), e)
    expect = {b: e for b, e in expect.items() if e}
    for s, n in writes:
        for b in range(s // bs, (s + n - 1) // bs + 1):
            expect[b] = cur + 1
    if dcur != cur + 2:
        raise Failure(f"dump current_era {dcur} != {cur + 2}")
    if dnr != nr:
        raise Failure(f"dump nr_blocks {dnr} != {nr}")
    if logical != expect:
        diff = sorted(b for b in set(logical) | set(expect) if logical.get(b) != expect.get(b))
        raise Failure(f"dump differs in {len(diff)} blocks, e.g. " +
                      ", ".join(f"{b}: got {logical.get(b)} want {expect.get(b)}" for b in diff[:4]))
    return f"resume era {cur + 1}, writes logged in era {cur + 1}, dump matches ({len(expect)} written blocks)"


# ------------------------------------------------------------------ rejections

def run_reject_case(kind, what, work):
    d = os.path.join(work, f"reject-{kind}-{what}")
    os.makedirs(d)
    img = os.path.join(d, "meta.img")
    xml = os.path.join(d, "in.xml")
    with open(img, "wb") as f:
        f.truncate(META_SIZE)
    if kind == "clone":
        with open(xml, "w") as f:
            f.write(clone_xml(64, 131072, [[0, 5]]))
        run_tool(tool("DMCE_CLONE_RESTORE", "clone_restore"), ["-i", xml, "-o", img])
        kw = {"table_region_size": 128} if what == "region-size" else {}
        if what == "target-size":
            kw = {"table_target_size": 131072 * 2}
        r = lab.load_clone(img, 64, 131072, hydrate=False, corrupt_sb=(what == "bad-sb"),
                           work=os.path.join(d, "load"), **kw)
    else:
        with open(xml, "w") as f:
            f.write(era_xml(128, 1024, 2, {2: {5}}, {1: 1}))
        run_tool(tool("DMCE_ERA_RESTORE", "era_restore"), ["-i", xml, "-o", img])
        bs = 256 if what == "block-size" else 128
        r = lab.load_era(img, bs, 131072, checkpoint=False, corrupt_sb=(what == "bad-sb"),
                         work=os.path.join(d, "load"))
    if r.get("accepted"):
        raise Failure("kernel ACCEPTED the table, expected a rejection")
    reason = [l for l in (r.get("dmesg_reason") or []) if "error" in l.lower() or "fail" in l.lower() or "match" in l.lower()]
    # Our checker, given the image the kernel saw and the table's geometry (as an
    # fsck hook that knows the table would), must flag it too.
    loaded = os.path.join(d, "load", "meta.img")
    if what == "bad-sb":
        check_args = [loaded]
    elif what == "region-size":
        check_args = ["--region-size", "128", img]
    elif what == "target-size":
        check_args = ["--target-size", str(131072 * 2), img]
    else:
        check_args = ["--block-size", "256", img]
    check = tool("DMCE_CLONE_CHECK" if kind == "clone" else "DMCE_ERA_CHECK", f"{kind}_check")
    if tool_missing(check):
        raise Failure(f"tool missing: {check[0]}")
    c = subprocess.run(check + check_args, capture_output=True, text=True, timeout=300)
    # The checker's report goes to stderr, each line naming the file: "IMG: error: ...".
    finding = next((l for l in (c.stderr + c.stdout).splitlines()
                    if l.startswith("error:") or ": error: " in l), "")
    if c.returncode != 1 or not finding:
        raise Failure(f"`{' '.join(check + check_args)}` exited {c.returncode} without an error: "
                      f"{(c.stderr + c.stdout).strip()[:200]}")
    finding = "error: " + finding.split("error: ", 1)[-1]
    return "rejected: " + (reason[0].split("] ", 1)[-1] if reason else str(r.get("error"))) + f"; {kind}_check: {finding}"



# ------------------------------------------------------------------ kernel-made fixtures -> our dump

def run_fixture_dump(case_dir, work):
    """`dmce *_check` must accept the kernel-made image and `dmce *_dump` must agree with
    its truth.json (no VM needed)."""
    import json
    t = json.load(open(os.path.join(case_dir, "truth.json")))
    d = os.path.join(work, "fx-" + os.path.basename(case_dir))
    os.makedirs(d)
    img = os.path.join(d, "meta.img")
    lab.zst_read(os.path.join(case_dir, "metadata.img.zst"), img)
    if t["kind"] == "clone":
        run_tool(tool("DMCE_CLONE_CHECK", "clone_check"), [img])
        out = run_tool(tool("DMCE_CLONE_DUMP", "clone_dump"), [img])
        got = [[int(a), int(b)] for a, b in re.findall(r'<hydrated\s+begin="(\d+)"\s+end="(\d+)"\s*/>', out)]
        if got != t["hydrated_ranges"]:
            raise Failure(f"clone_dump {got[:4]} != truth {t['hydrated_ranges'][:4]}")
        return f"check ok, dump == truth ({t['hydrated_count']} regions)"
    run_tool(tool("DMCE_ERA_CHECK", "era_check"), [img])
    out = run_tool(tool("DMCE_ERA_DUMP", "era_dump"), [img])
    cur, nr, logical = parse_era_dump(out)
    want = {}
    for e, rs in t["last_written_era"].items():
        for b, e2 in rs:
            for blk in range(b, e2):
                want[blk] = int(e)
    if cur != t["current_era"] or nr != t["nr_blocks"]:
        raise Failure(f"dump current_era/nr_blocks {cur}/{nr} != {t['current_era']}/{t['nr_blocks']}")
    if logical != want:
        diff = sorted(b for b in set(logical) | set(want) if logical.get(b) != want.get(b))
        raise Failure(f"dump differs from truth in {len(diff)} blocks, e.g. " +
                      ", ".join(f"{b}: got {logical.get(b)} want {want.get(b)}" for b in diff[:4]))
    return f"check ok, dump == truth ({len(want)} written blocks, era {cur})"

# ------------------------------------------------------------------ model images (replay) -> kernel

TRACE_DIR = os.path.join(lab.REPO, "tests", "traces", "kernel")
KEEP = False
# *-millions: 32 GiB / 8 GiB sparse targets; loading them takes minutes per case.
REPLAY_SKIP = re.compile(r"-millions$")
_replay_avail = {}


def replay_tool(kind):
    return tool("DMCE_CLONE_REPLAY" if kind == "clone" else "DMCE_ERA_REPLAY", f"{kind}_replay")


def tool_unavailable(cmd, name, cache):
    """None when the tool `cmd` can be run (its --help works), else why not (cached by name)."""
    if name in cache:
        return cache[name]
    why = None
    if tool_missing(cmd):
        why = f"{cmd[0]} does not exist or is not executable"
    else:
        try:
            r = subprocess.run(cmd + ["--help"], capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                msg = (r.stderr or r.stdout).strip().splitlines()
                why = f"`{' '.join(cmd)} --help` exited {r.returncode}: {msg[0] if msg else ''}"
        except (OSError, subprocess.TimeoutExpired) as e:
            why = f"`{' '.join(cmd)} --help`: {e}"
    cache[name] = why and f"{name} not available ({why})"
    return cache[name]


def replay_unavailable(kind):
    """None when `<kind>_replay` can be run, else why not (cached)."""
    return tool_unavailable(replay_tool(kind), f"{kind}_replay", _replay_avail)


def trace_info(path):
    """target kind and the config keys of a dmtrace file (enough for the lab)."""
    kind, cfg = None, {}
    with open(path) as f:
        for no, line in enumerate(f, 1):
            toks = line.split("#", 1)[0].split()
            if not toks:
                continue
            if kind is None:
                if toks[:2] != ["dmtrace", "1"] or len(toks) < 3:
                    raise Failure(f"{path}:{no}: not a dmtrace v1 header")
                kind = toks[2]
                continue
            if toks[0].startswith("@"):
                toks = toks[1:]
            if toks and toks[0] == "config":
                cfg = dict(t.partition("=")[::2] for t in toks[1:])
                break
    if "meta_size" not in cfg:
        raise Failure(f"{path}: no 'config ... meta_size=' statement")
    return kind, cfg


def dump_ranges(text):
    return [[int(a), int(b)] for a, b in re.findall(r'<hydrated\s+begin="(\d+)"\s+end="(\d+)"\s*/>', text)]


def ranges_subset(a, b):
    """every region of ranges a lies in ranges b"""
    return all(any(b0 <= x0 and x1 <= b1 for b0, b1 in b) for x0, x1 in a if x0 < x1)


def era_load_writes(bs, target):
    """one short write into the first, a middle and the last (possibly partial) era block"""
    nr = (target + bs - 1) // bs
    out = []
    for b in sorted({0, nr // 2, nr - 1}):
        s = b * bs
        out.append((s, min(8, target - s)))
    return out


def run_replay_case(case, trace, work):
    d = os.path.join(work, "replay-" + case)
    os.makedirs(d)
    try:
        return replay_and_load(case, trace, d)
    finally:
        if not KEEP:   # the load's source/destination disks are hundreds of MiB once hydrated
            shutil.rmtree(d, ignore_errors=True)


def replay_and_load(case, trace, d):
    import json
    kind, cfg = trace_info(trace)
    truth_path = os.path.join(lab.REPO, "fixtures", "kernel", case, "truth.json")
    if not os.path.isfile(truth_path):
        raise Failure(f"no fixture truth {os.path.relpath(truth_path, lab.REPO)} for {os.path.relpath(trace, lab.REPO)}")
    t = json.load(open(truth_path))
    if t["kind"] != kind:
        raise Failure(f"trace kind {kind} != fixture kind {t['kind']}")
    why = replay_unavailable(kind)
    if why:
        raise Failure(why)
    cmd = replay_tool(kind)
    img = os.path.join(d, "replay.img")
    r = subprocess.run(cmd + [trace, "-o", img], capture_output=True, text=True, timeout=600)
    said = " | ".join(l.strip() for l in (r.stdout + r.stderr).strip().splitlines()[-4:])
    if r.returncode != 0:
        meaning = {1: "an expect failed", 2: "malformed trace"}.get(r.returncode, "error")
        raise Failure(f"`{' '.join(cmd)} {os.path.relpath(trace, lab.REPO)} -o IMG` exited {r.returncode} ({meaning}): {said[:400]}")
    if not os.path.isfile(img):
        raise Failure(f"{kind}_replay exited 0 but wrote no image")
    want_size = int(cfg["meta_size"].replace("_", ""), 0) * lab.SECTOR
    if os.path.getsize(img) != want_size:
        raise Failure(f"{kind}_replay image is {os.path.getsize(img)} bytes, trace meta_size is {want_size}")
    tag = "crash image" if t.get("crashed") else "image"
    if kind == "clone":
        rs, target = t["region_size"], t["target_size"]
        dumped = dump_ranges(run_tool(tool("DMCE_CLONE_DUMP", "clone_dump"), [img]))
        r = lab.load_clone(img, rs, target, hydrate=True, work=os.path.join(d, "load"))
        if not r.get("accepted"):
            raise Failure(f"kernel refused the model's {tag}: {r.get('dmesg_reason')} {r.get('error')}")
        if r.get("error"):
            raise Failure(str(r["error"]))
        got = r["hydrated_ranges"]
        if not r.get("consistent"):
            raise Failure(f"kernel status count {r.get('hydrated_count_status')} disagrees with its hydrated set {got[:6]}"
                          f" (unexpected regions {r.get('unexpected_regions', [])[:6]})")
        if dumped != got:
            raise Failure(f"kernel hydrated set {got[:6]} != clone_dump of the image {dumped[:6]}")
        lb = (t.get("uncertainty") or {}).get("lower_bound_ranges")
        if lb is not None:
            # background hydration at the power cut: the kernel's own set was timing dependent
            if not ranges_subset(lb, got):
                raise Failure(f"kernel hydrated set {got[:6]} lacks the truth's lower bound {lb}")
            return (f"{' '.join(cmd[-1:])} exit 0; kernel accepted the {tag}: {lab.ranges_count(got)} hydrated"
                    f" == clone_dump, contains the lower bound {lb} (set timing dependent)")
        if got != t["hydrated_ranges"]:
            raise Failure(f"kernel hydrated set {got[:6]} != fixture truth {t['hydrated_ranges'][:6]}")
        return (f"{' '.join(cmd[-1:])} exit 0; kernel accepted the {tag}: hydrated set == truth == clone_dump"
                f" ({lab.ranges_count(got)} regions)")
    bs, target = t["block_size"], t["target_size"]
    sb = lab.read_superblock(img)
    if sb.get("kind") != "era":
        raise Failure(f"{kind}_replay image has no era superblock at block 0 (magic {sb.get('magic')})")
    cur = sb["current_era"]
    if cur != t["current_era"]:
        raise Failure(f"image current_era {cur} != the kernel's {t['current_era']} (fixture truth)")
    writes = era_load_writes(bs, target)
    after = os.path.join(d, "after.img")
    r = lab.load_era(img, bs, target, writes=writes, checkpoint=True, out_meta=after, work=os.path.join(d, "load"))
    if not r.get("accepted"):
        raise Failure(f"kernel refused the model's {tag}: {r.get('dmesg_reason')} {r.get('error')}")
    if not r.get("all_steps_ok"):
        raise Failure(f"guest steps failed: {r.get('error')}")
    if r.get("era_after_resume") != cur + 1:
        raise Failure(f"status era after resume {r.get('era_after_resume')} != image current_era+1 = {cur + 1}")
    if r.get("era_final") != cur + 2:
        raise Failure(f"status era after checkpoint {r.get('era_final')} != {cur + 2}")
    dcur, dnr, logical = parse_era_dump(run_tool(tool("DMCE_ERA_DUMP", "era_dump"), [after]))
    want = {}
    for e, rs in t["last_written_era"].items():
        for b0, b1 in rs:
            for blk in range(b0, b1):
                want[blk] = int(e)
    for s, n in writes:
        for b in range(s // bs, (s + n - 1) // bs + 1):
            want[b] = cur + 1
    if dcur != cur + 2 or dnr != t["nr_blocks"]:
        raise Failure(f"era_dump after the kernel: current_era/nr_blocks {dcur}/{dnr} != {cur + 2}/{t['nr_blocks']}")
    if logical != want:
        diff = sorted(b for b in set(logical) | set(want) if logical.get(b) != want.get(b))
        raise Failure(f"era_dump after the kernel differs in {len(diff)} blocks, e.g. " +
                      ", ".join(f"{b}: got {logical.get(b)} want {want.get(b)}" for b in diff[:4]))
    return (f"{' '.join(cmd[-1:])} exit 0; kernel accepted the {tag}: era {cur + 1} after resume, "
            f"dump == truth + writes in era {cur + 1} ({len(want)} written blocks)")


def run_traces_current():
    """the committed traces must be what scn2trace makes from today's scenarios + fixtures"""
    r = subprocess.run([os.path.join(lab.HERE, "scn2trace"), "--check"], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise Failure("stale or unmappable: " + " | ".join(r.stderr.strip().splitlines()[:3]))
    return f"{len(r.stdout.splitlines())} traces == scn2trace output"


def replay_cases():
    out = []
    for f in sorted(os.listdir(TRACE_DIR)) if os.path.isdir(TRACE_DIR) else []:
        if f.endswith(".dmtrace") and not REPLAY_SKIP.search(f[:-8]):
            out.append((f[:-8], os.path.join(TRACE_DIR, f)))
    return out


# ------------------------------------------------------------------ logwrites

_verify_avail = {}


def verify_tool(kind):
    return tool("DMCE_CLONE_VERIFY_LOG" if kind == "clone" else "DMCE_ERA_VERIFY_LOG", f"{kind}_verify_log")


def verify_unavailable(kind):
    """None when `<kind>_verify_log` can be run, else why not (cached)."""
    return tool_unavailable(verify_tool(kind), f"{kind}_verify_log", _verify_avail)


def gunzip_to(src, dst):
    import gzip
    with gzip.open(src, "rb") as fi, open(dst, "wb") as fo:
        shutil.copyfileobj(fi, fo, 1 << 20)
    return dst


def verify_args(case, d, mode):
    """command-line arguments of `<target>_verify_log` for one mode (files uncompressed);
    `conformance:VARIANT` is conformance mode with `--variant VARIANT`."""
    mode, _, variant = mode.partition(":")
    f = case["files"]
    data = "dest" if case["target"] == "clone" else "origin"
    args = ["--mode", mode, "--meta-log", os.path.join(d, "meta.log")]
    if mode == "crash":
        img = "--source" if case["target"] == "clone" else "--origin"
        args += [f"--{data}-log", os.path.join(d, f"{data}.log"), img, os.path.join(d, f["image"][:-3])]
    elif mode == "conformance":
        args += ["--user-log", os.path.join(d, "top.log")]
        if variant:
            args += ["--variant", variant]
    return args


def run_logwrites_case(scn, work):
    import logwrites
    name = os.path.basename(scn)[:-4]
    outroot = os.path.join(work, "kernel-logs")
    case = logwrites.capture(scn, outroot, work=os.path.join(work, f"lw-{name}"))
    if case["problems"]:
        raise Failure("capture: " + "; ".join(case["problems"][:3]))
    lg = case["logs"]
    fig = ", ".join(f"{n} {lg[n]['entries']} entries/{lg[n]['flush_entries']} flush"
                    for n in lg) + (", power cut" if case["power_cut"] else "")
    why = verify_unavailable(case["target"])
    if why:
        raise Failure(f"captured ({fig}); cannot verify: {why}")
    d = os.path.join(outroot, case["case"])
    for fname in os.listdir(d):
        if fname.endswith(".gz"):
            gunzip_to(os.path.join(d, fname), os.path.join(d, fname[:-3]))
    cmd = verify_tool(case["target"])
    got = []
    for mode, exp in case["expect"].items():
        args = verify_args(case, d, mode)
        try:
            r = subprocess.run(cmd + args, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            raise Failure(f"{mode}: `{' '.join(cmd + args)}` timed out")
        out = (r.stdout + r.stderr).strip().splitlines()
        tail = " | ".join(out[-3:])
        if r.returncode != exp["exit"]:
            raise Failure(f"{mode}: exit {r.returncode}, expected {exp['exit']}: {tail}")
        if exp.get("id") and not any(exp["id"] in line for line in out):
            raise Failure(f"{mode}: exit {r.returncode} as expected but no line names {exp['id']}: {tail}")
        got.append(f"{mode} {r.returncode}" + (f" ({exp['id']})" if exp.get("id") else ""))
    return f"{fig}; " + ", ".join(got)


def logwrites_cases():
    import logwrites
    return [(os.path.basename(f)[:-4], f) for f in logwrites.scenario_files()]


# ------------------------------------------------------------------ main

def run_one(name, fn):
    """Runs one case; prints and returns (name, verdict, seconds, detail)."""
    t = time.time()
    try:
        detail = fn()
        verdict = "PASS"
    except (Failure, sizing.Failure, boot.Failure) as e:
        verdict, detail = "FAIL", str(e)
    except Skip as e:
        verdict, detail = "SKIP", str(e)
    except Exception as e:  # a bug in the harness is a failure too
        verdict, detail = "FAIL", f"{type(e).__name__}: {e}"
    dt = time.time() - t
    print(f"{verdict:4}  {name:32} {dt:6.1f}s  {detail}", flush=True)
    return name, verdict, dt, detail


def main():
    ap = argparse.ArgumentParser(prog="run-all")
    ap.add_argument("--only", help="regex on case names")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--slow", action="store_true", help="also run the slow cases (" + ", ".join(sizing.slow_names()) + ")")
    ap.add_argument("-j", "--jobs", type=int, default=1,
                    help="cases run at once (each VM is one qemu thread; default 1)")
    a = ap.parse_args()
    if a.jobs < 1:
        ap.error("--jobs must be at least 1")
    global KEEP
    KEEP = a.keep
    t0 = time.time()
    r = subprocess.run([os.path.join(lab.HERE, "setup")], env=dict(os.environ, DMCE_LAB_QUIET="1"))
    t_setup = time.time() - t0
    if r.returncode != 0:
        print("run-all: setup FAILED")
        sys.exit(2)
    work = tempfile.mkdtemp(prefix="dmce-runall-", dir=os.environ.get("DMCE_LAB_TMP"))
    missing = sorted({c[0] for c in (tool("DMCE_CLONE_RESTORE", "clone_restore"), tool("DMCE_CLONE_CHECK", "clone_check"),
                                     tool("DMCE_CLONE_DUMP", "clone_dump"), tool("DMCE_ERA_RESTORE", "era_restore"),
                                     tool("DMCE_ERA_DUMP", "era_dump"), tool("DMCE_ERA_CHECK", "era_check")) if tool_missing(c)})
    if missing:
        print(f"run-all: WARNING: missing tool(s): {', '.join(missing)} -- the cases using them will FAIL", flush=True)
    cases = [("clone", c[0], lambda c=c: run_clone_case(*c, work)) for c in CLONE_CASES]
    cases += [("era", c[0], lambda c=c: run_era_case(*c, work)) for c in ERA_CASES]
    fxroot = os.path.join(lab.REPO, "fixtures", "kernel")
    for c in sorted(os.listdir(fxroot)) if os.path.isdir(fxroot) else []:
        if os.path.isfile(os.path.join(fxroot, c, "truth.json")):
            cases.append(("fixture", f"dump-{c}", lambda c=c: run_fixture_dump(os.path.join(fxroot, c), work)))
    for kind, what in (("clone", "region-size"), ("clone", "target-size"), ("clone", "bad-sb"),
                       ("era", "block-size"), ("era", "bad-sb")):
        cases.append(("reject", f"reject-{kind}-{what}", lambda k=kind, w=what: run_reject_case(k, w, work)))
    rcases = replay_cases()
    cases.append(("replay", "replay-traces-current", run_traces_current))
    if not rcases:
        cases.append(("replay", "replay-traces", lambda: (_ for _ in ()).throw(
            Failure(f"no traces in {os.path.relpath(TRACE_DIR, lab.REPO)} (tests/kernel/scn2trace makes them)"))))
    for case, trace in rcases:
        cases.append(("replay", f"replay-{case}", lambda c=case, tr=trace: run_replay_case(c, tr, work)))
    size_tools = {t: tool("DMCE_" + t.upper(), t) for t in
                  ("clone_metadata_size", "era_metadata_size", "clone_check", "era_check")}
    cases += sizing.cases(work, size_tools, slow=a.slow)
    boot_tools = {t: tool("DMCE_" + t.upper(), t) for t in
                  ("clone_restore", "era_restore", "clone_check", "era_check")}
    boot_tools["dmce"] = [os.environ.get("DMCE_BIN", os.path.join(lab.REPO, "target", "release", "dmce"))]
    cases += boot.cases(work, boot_tools)
    if not a.slow:
        print(f"run-all: NOTE: slow cases left out (--slow runs them): {', '.join(sizing.slow_names())}", flush=True)
    for case, scn in logwrites_cases():
        cases.append(("logwrites", f"logwrites-{case}", lambda f=scn: run_logwrites_case(f, work)))
    if any(k == "logwrites" and (not a.only or re.search(a.only, n)) for k, n, _ in cases):
        for kind in ("clone", "era"):
            why = verify_unavailable(kind)
            if why:
                print(f"run-all: NOTE: {why} -- the logwrites cases will capture, then SKIP", flush=True)
    if any(k == "replay" and n != "replay-traces-current" and (not a.only or re.search(a.only, n)) for k, n, _ in cases):
        for kind in ("clone", "era"):
            why = replay_unavailable(kind)
            if why:
                print(f"run-all: WARNING: {why} -- the replay cases will FAIL", flush=True)
    chosen = [(name, fn) for _, name, fn in cases if not a.only or re.search(a.only, name)]
    if a.jobs == 1:
        results = [run_one(name, fn) for name, fn in chosen]
    else:
        # Every case works in its own directory under `work`; the summary keeps the
        # cases' order, the lines above come as the cases end.
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=a.jobs) as pool:
            results = list(pool.map(lambda c: run_one(*c), chosen))
    total = time.time() - t0
    print()
    print(f"{'case':34} {'result':6} {'time':>7}")
    print("-" * 50)
    for name, verdict, dt, _ in results:
        print(f"{name:34} {verdict:6} {dt:6.1f}s")
    print("-" * 50)
    nfail = sum(v == "FAIL" for _, v, _, _ in results)
    nskip = sum(v == "SKIP" for _, v, _, _ in results)
    print(f"{len(results) - nfail - nskip} passed, {nfail} failed, {nskip} skipped; setup {t_setup:.1f}s; total {total:.1f}s")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"work dir: {work}")
    sys.exit(1 if nfail or not results else 0)


if __name__ == "__main__":
    main()
