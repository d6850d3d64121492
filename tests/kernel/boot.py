"""run-all group `boot`: the boot integration (boot/, dmce-targets(5)) under the lab
kernel, with the root file system on a dm-clone or a dm-era target.

Steps 1 and 2 once per builder and kind (the clean and the damaged case boot the same
image, in <work>/initramfs-<builder>-<kind>), 3 and 4 per case:
  1. `make install DESTDIR=<work>/inst` (the hook, the boot script, the dracut module,
     dmce-assemble, $DMCE_BIN as dmce) and /etc/dmce/targets naming the lab's disks.
  2. An initramfs made by Debian's own `mkinitramfs` (initramfs-tools) or `dracut`, run
     in a private mount namespace that shows the installed tree and the lab kernel's
     modules (plus the lab's dm-clone.ko) in their usual places: /etc is an overlay of
     <work>/inst/etc over the host's, /usr/local and /lib/modules are bind mounts of
     the install and of the unpacked kernel image.  The host is not changed.
  3. A root file system (ext4, made with `mke2fs -d`: busybox, dmsetup, an init that
     reports and powers off) on the clone's source / the era's origin; metadata from
     `dmce clone_restore` / `era_restore` (the checkers refuse unformatted metadata).
  4. Boot: qemu, ttyS0 on a pipe, `root=/dev/mapper/<name>`.
       clean:   the root's init must run from the dm target: it prints /proc/mounts and
                the target's status a few times (clone: the hydrated count, 0 in the
                restored metadata, is above 0 and never shrinks; era: a write and a
                checkpoint advance the era), then powers off.
       damaged: one byte of a metadata block is flipped first (the host's checker must
                fail on it); the boot must stop with the checker's findings and a rescue
                shell, in which `dmsetup ls` is run (no target) before a reboot (dracut's
                shell has no `reboot`: sysrq b); the
                metadata file must be byte-identical after the boot (sha256).
The console transcript is kept in the case directory (console.txt, with --keep) and
the boot time (qemu start to the root's init, or to the rescue shell) is reported.
"""
import hashlib
import os
import re
import select
import shutil
import subprocess
import threading
import time

import lab

ROOT_MB = 64


class Failure(Exception):
    pass


def sh(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise Failure(f"`{' '.join(cmd)}` exited {r.returncode}: {(r.stderr or r.stdout).strip()[-400:]}")
    return r.stdout


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------ root file system

ROOT_INIT = r"""#!/bin/busybox sh
# The lab's root: reports where it runs from, then powers off.
/bin/busybox mount -t proc proc /proc 2>/dev/null  # moved here by the initramfs, or not
/bin/busybox mount -t sysfs sysfs /sys 2>/dev/null
export PATH=/bin:/sbin
echo "@rootinit $(cut -d' ' -f1 /proc/uptime) $(cat /etc/lab-root)"
echo "@mount $(grep ' / ' /proc/mounts)"
for d in $(dmsetup ls | cut -f1); do
    echo "@table $d $(dmsetup table "$d")"
done
for i in 1 2 3 4; do
    dd if=/dev/zero of=/written.$i bs=64k count=16 2>/dev/null
    sync
    for d in $(dmsetup ls | cut -f1); do
        case $(dmsetup table "$d") in
            *" era "*) dmsetup message "$d" 0 checkpoint ;;
        esac
        echo "@status $(cut -d' ' -f1 /proc/uptime) $d $(dmsetup status --noflush "$d" 2>/dev/null || dmsetup status "$d")"
    done
    sleep 1
done
echo "@rootdone"
poweroff -f
"""


def make_rootfs(work):
    """An ext4 image of ROOT_MB MiB with busybox, dmsetup and ROOT_INIT."""
    d = os.path.join(work, "rootdir")
    for sub in ("bin", "sbin", "etc", "proc", "sys", "dev", "run", "tmp", "lib64"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    shutil.copy("/bin/busybox", os.path.join(d, "bin", "busybox"))
    for a in ("sh", "cat", "cut", "grep", "dd", "sync", "sleep", "mount", "poweroff", "echo"):
        os.symlink("busybox", os.path.join(d, "bin", a))
    shutil.copy("/sbin/dmsetup", os.path.join(d, "sbin", "dmsetup"))
    for line in sh(["ldd", "/sbin/dmsetup"]).splitlines():
        m = re.search(r"(/\S+\.so\S*)", line)
        if m and os.path.exists(m.group(1)):
            dst = d + m.group(1)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy(m.group(1), dst)
    with open(os.path.join(d, "sbin", "init"), "w") as f:
        f.write(ROOT_INIT)
    os.chmod(os.path.join(d, "sbin", "init"), 0o755)
    with open(os.path.join(d, "etc", "lab-root"), "w") as f:
        f.write("lab root file system\n")
    img = os.path.join(work, "root.img")
    sh(["mke2fs", "-q", "-F", "-t", "ext4", "-d", d, "-L", "labroot", img, f"{ROOT_MB}M"])
    shutil.rmtree(d)
    return img


# ------------------------------------------------------------------ initramfs

def install_tree(work, dmce_bin):
    inst = os.path.join(work, "inst")
    sh(["make", "-s", "-C", lab.REPO, "install", f"DESTDIR={inst}", f"BIN={dmce_bin}"])
    return inst


def module_tree(work, k, abi):
    """<work>/mods/lib/modules/ABI: the image's modules (hard links) + dm-clone.ko."""
    base = os.path.join(work, "mods")
    dst = os.path.join(base, "lib", "modules", abi)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    sh(["cp", "-al", os.path.join(k, "root", "lib", "modules", abi), dst])
    for f in os.listdir(dst):
        if f.startswith("modules.") and f not in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
            os.unlink(os.path.join(dst, f))
    os.makedirs(os.path.join(dst, "updates"), exist_ok=True)
    shutil.copy(os.path.join(k, "dm-clone.ko"), os.path.join(dst, "updates", "dm-clone.ko"))
    sh(["depmod", "-b", base, abi])
    return os.path.join(base, "lib", "modules")


def initramfs_conf(inst):
    """initramfs-tools configuration for the lab: only the listed modules."""
    conf = os.path.join(inst, "etc", "initramfs-tools")
    with open(os.path.join(conf, "initramfs.conf"), "w") as f:
        f.write("MODULES=list\nBUSYBOX=y\nKEYMAP=n\nCOMPRESS=gzip\nDEVICE=\nNFSROOT=auto\nRUNSIZE=10%\nFSTYPE=ext4\n")
    with open(os.path.join(conf, "modules"), "w") as f:
        f.write("virtio_pci\nvirtio_blk\next4\ncrc32c_generic\n")


def build_initramfs(tool, work, k, abi, inst, mods, out, kind):
    """Runs mkinitramfs or dracut in a private mount namespace; returns seconds."""
    binds = [(os.path.join(inst, "usr", "local"), "/usr/local"), (mods, "/lib/modules"),
             (os.path.join(k, "root", "boot"), "/boot")]
    script = ["set -e", "mount --make-rprivate /",
              f"mount -t overlay overlay -o lowerdir={inst}/etc:/etc /etc"]
    script += [f"mount --bind {a} {b}" for a, b in binds]
    if tool == "mkinitramfs":
        script.append(f"mkinitramfs -o {out} {abi}")
    else:
        script.append(f"mount -t overlay overlay -o lowerdir={inst}/usr/lib/dracut/modules.d:"
                      f"/usr/lib/dracut/modules.d /usr/lib/dracut/modules.d")
        # Without systemd (the busybox-sized classic initqueue boots much faster
        # under TCG); the modules a root on a dm target needs, and ours.
        script.append(f"dracut -q --force --no-hostonly --no-early-microcode --compress gzip "
                      f"--kver {abi} -m 'bash udev-rules base dm dmce rootfs-block' "
                      f"--omit 'systemd systemd-initrd' --drivers 'virtio_pci virtio_blk ext4 crc32c_generic' "
                      f"{out}")
    t0 = time.time()
    r = subprocess.run(["unshare", "-m", "sh", "-c", "\n".join(script)], capture_output=True, text=True,
                       timeout=900)
    with open(os.path.join(work, f"{tool}.log"), "w") as f:
        f.write(r.stdout + r.stderr)
    if r.returncode != 0:
        raise Failure(f"{tool} exited {r.returncode}: {(r.stderr or r.stdout).strip()[-600:]}")
    listing = sh(["lsinitramfs", out]) if shutil.which("lsinitramfs") else ""
    for want in ("etc/dmce/targets", "dmce-assemble", "sbin/dmce", "sbin/dmsetup", f"dm-{kind}.ko"):
        if listing and want not in listing:
            raise Failure(f"{tool}'s initramfs has no {want}")
    return time.time() - t0


# ------------------------------------------------------------------ boot

def boot(work, k, initrd, disks, root, stop, answer=None, timeout=900, mem=512):
    """Boots with ttyS0 on a pipe; returns (transcript, seconds to the first line
    matching `stop`, seconds in all).  `answer`: text typed once `stop` is seen."""
    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", str(mem), "-smp", "1",
           "-nographic", "-nodefaults", "-no-reboot", "-monitor", "none", "-serial", "stdio",
           "-kernel", os.path.join(k, "vmlinuz"), "-initrd", initrd,
           "-append", f"console=ttyS0 root={root} rw rootdelay=20 loglevel=4 no_timer_check"]
    for p in disks:
        cmd += ["-drive", f"file={p},if=virtio,format=raw,cache=writeback"]
    t0 = time.time()
    q = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    buf, t_stop, sent = b"", None, False
    live = open(os.path.join(work, "console.raw"), "wb")  # as it comes, for a hung boot
    try:
        while True:
            if time.time() - t0 > timeout:
                raise Failure(f"boot timed out after {timeout} s; console ends: {tail(buf)}")
            ready, _, _ = select.select([q.stdout], [], [], 1.0)
            if ready:
                chunk = os.read(q.stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
                live.write(chunk)
                live.flush()
            if t_stop is None and re.search(stop, buf.decode(errors="replace")):
                t_stop = time.time() - t0
                if answer is not None and not sent:
                    time.sleep(1)
                    q.stdin.write(answer.encode())
                    q.stdin.flush()
                    sent = True
            if q.poll() is not None and not ready:
                break
    finally:
        if q.poll() is None:
            q.kill()
        q.wait()
        live.close()
    text = buf.decode(errors="replace").replace("\r\n", "\n")
    with open(os.path.join(work, "console.txt"), "w") as f:
        f.write(text)
    return text, t_stop, time.time() - t0


def tail(b, n=600):
    return b.decode(errors="replace")[-n:].replace("\r", "")


# ------------------------------------------------------------------ cases

def prepare(work, kind, tools):
    """Disks and the targets line of a kind; returns (disks, name, line, meta)."""
    root = make_rootfs(work)
    meta = os.path.join(work, "meta.img")
    sectors = ROOT_MB << 11
    if kind == "clone":
        import runall
        rs = 8
        with open(os.path.join(work, "in.xml"), "w") as f:
            f.write(runall.clone_xml(rs, sectors, []))
        lab.make_disk(meta, 4 << 20)
        sh(tools["clone_restore"] + ["-q", "-i", os.path.join(work, "in.xml"), "-o", meta])
        dest = os.path.join(work, "dest.img")
        lab.make_disk(dest, sectors * lab.SECTOR)
        disks = [meta, dest, root]
        # One region copied at a time: slow enough that the root's statuses see the
        # background hydration move (with 64 at a time a fast boot has finished it
        # before the root's init runs).
        line = f"rootc clone /dev/vda /dev/vdb /dev/vdc {rs} hydration_threshold=1 hydration_batch_size=1"
        return disks, "rootc", line, meta
    import runall
    bs = 128
    nr = sectors // bs
    with open(os.path.join(work, "in.xml"), "w") as f:
        f.write(runall.era_xml(bs, nr, 1, {}, {}))
    lab.make_disk(meta, 4 << 20)
    sh(tools["era_restore"] + ["-q", "-i", os.path.join(work, "in.xml"), "-o", meta])
    return [meta, root], "roote", f"roote era /dev/vda /dev/vdb {bs}", meta


def damage(meta, check_cmd):
    """Flips one byte in block 1 (a structure a fresh restore writes); the host's
    checker must fail on it."""
    with open(meta, "r+b") as f:
        f.seek(4096 + 100)
        b = f.read(1)
        f.seek(4096 + 100)
        f.write(bytes([b[0] ^ 0x5A]))
    r = subprocess.run(check_cmd + [meta], capture_output=True, text=True)
    if r.returncode == 0:
        raise Failure("the damaged metadata passes the checker on the host")
    return (r.stdout + r.stderr).strip().splitlines()


# One image per builder and kind, made by the first of its cases and booted by both
# (clean and damaged differ only in the metadata): {(builder, kind): [lock, result]}.
_images = {}
_images_lock = threading.Lock()


def initramfs_for(builder, kind, line, work, k, abi, tools):
    """(initrd path, seconds its build took) of a builder and kind, built once per run
    in <work>/initramfs-<builder>-<kind>; a failed build is tried again by the next case."""
    with _images_lock:
        slot = _images.setdefault((work, builder, kind), [threading.Lock(), None])
    with slot[0]:
        if slot[1] is None:
            d = os.path.join(work, f"initramfs-{builder}-{kind}")
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            inst = install_tree(d, tools["dmce"][0])
            with open(os.path.join(inst, "etc", "dmce", "targets"), "w") as f:
                f.write(f"# lab: {builder}, {kind}\n{line}\n")
            initramfs_conf(inst)
            mods = module_tree(d, k, abi)
            initrd = os.path.join(d, "initrd.img")
            slot[1] = (initrd, build_initramfs(builder, d, k, abi, inst, mods, initrd, kind))
        return slot[1]


def run_case(name, builder, kind, damaged, work, tools):
    k, info = lab.kernel()
    abi = info["abi"]
    d = os.path.join(work, name)
    os.makedirs(d)
    disks, tname, line, meta = prepare(d, kind, tools)
    initrd, t_build = initramfs_for(builder, kind, line, work, k, abi, tools)
    check = tools["clone_check" if kind == "clone" else "era_check"]
    host_findings = damage(meta, check) if damaged else []
    before = sha256(meta)
    # initramfs-tools' panic shell; dracut's emergency shell, named after the module
    rescue = r"\(initramfs\) |dmce:/#"
    if damaged:
        text, t_stop, t_all = boot(d, k, initrd, disks, f"/dev/mapper/{tname}", rescue,
                                   answer="echo RESCUE-SHELL-UP; dmsetup ls; reboot -f || "
                                   "{ echo 1 >/proc/sys/kernel/sysrq; echo b >/proc/sysrq-trigger; }\n")
    else:
        text, t_stop, t_all = boot(d, k, initrd, disks, f"/dev/mapper/{tname}", r"@rootinit ")
    after = sha256(meta)
    if damaged:
        if t_stop is None:
            raise Failure(f"no rescue shell; console ends: {text[-800:]}")
        if f"dmce: {tname}: the {kind} metadata on /dev/vda is damaged" not in text:
            raise Failure(f"no dmce message on the console: {text[-800:]}")
        first = host_findings[0] if host_findings else ""
        # the checker's own first finding must be on the console
        key = first.split(":", 1)[-1].strip()[:40]
        if key and key not in text:
            raise Failure(f"the checker's finding {first!r} is not on the console")
        if "@rootinit" in text:
            raise Failure("the root was mounted despite the damaged metadata")
        if "RESCUE-SHELL-UP" not in text:
            raise Failure("the rescue shell did not run the commands typed")
        if before != after:
            raise Failure(f"the metadata changed during the boot: sha256 {before[:16]} -> {after[:16]}")
        return (f"{builder}: boot stopped at the rescue shell after {t_stop:.1f} s (its initramfs built in "
                f"{t_build:.1f} s); checker's message shown; metadata unchanged (sha256 before and after {before})")
    if t_stop is None or "@rootdone" not in text:
        raise Failure(f"the root's init did not finish; console ends: {text[-800:]}")
    m = re.search(r"@mount (\S+) / ", text)
    if not m or m.group(1) != f"/dev/mapper/{tname}":
        raise Failure(f"root is not /dev/mapper/{tname}: {m.group(0) if m else 'no @mount line'}")
    sts = re.findall(rf"@status \S+ {tname} (.*)", text)
    if len(sts) < 4:
        raise Failure(f"{len(sts)} status lines from the root's init")
    if kind == "clone":
        # 0 LEN clone <meta block size> <used>/<total> <region size> <hydrated>/<regions> ...
        counts = [int(s.split()[6].split("/")[0]) for s in sts]
        # The metadata was restored with no region hydrated: every count above 0
        # was hydrated during this boot (on a fast host all of them already).
        if counts[0] == 0 or any(b < a for a, b in zip(counts, counts[1:])):
            raise Failure(f"hydration did not proceed: hydrated counts {counts} (0 at boot)")
        progress = (f"hydrated regions 0 (restored) -> {' -> '.join(map(str, counts))} of {ROOT_MB << 8}"
                    f"{'' if counts[-1] > counts[0] else ' (no growth seen while the root ran)'}")
    else:
        # 0 LEN era <meta block size> <used>/<total> <current era> <held root>
        eras = [int(s.split()[5]) for s in sts]
        if not all(b > a for a, b in zip(eras, eras[1:])):
            raise Failure(f"era did not advance with each checkpoint: {eras}")
        progress = f"era {eras[0]} -> {eras[-1]} over 4 checkpoints"
    # The metadata the kernel left must check clean on the host.
    sh(check + [meta])
    return (f"{builder}: root /dev/mapper/{tname} mounted, the root's init ran after {t_stop:.1f} s "
            f"(whole boot {t_all:.1f} s, its initramfs built in {t_build:.1f} s); {progress}; metadata checks clean after")


CASES = [(f"boot-{b}-{kind}-{state}", b, kind, state == "damaged")
         for b in ("mkinitramfs", "dracut") for kind in ("clone", "era") for state in ("clean", "damaged")]


def run_and_record(name, builder, kind, damaged, work, tools):
    """run_case, with its verdict line kept beside the transcript (result.txt)."""
    try:
        detail = run_case(name, builder, kind, damaged, work, tools)
    except Failure as e:
        record(work, name, f"FAIL {e}")
        raise
    record(work, name, f"PASS {detail}")
    return detail


def record(work, name, line):
    d = os.path.join(work, name)
    if os.path.isdir(d):
        with open(os.path.join(d, "result.txt"), "w") as f:
            f.write(line + "\n")


def cases(work, tools):
    return [("boot", n, lambda n=n, b=b, kd=kd, dm=dm: run_and_record(n, b, kd, dm, work, tools))
            for n, b, kd, dm in CASES]


# ------------------------------------------------------------------ transcripts

ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1bc")


def transcripts(work):
    """Markdown of the kept cases of a `run-all --only boot --keep` work directory:
    each case's verdict line and its console from the initramfs on (the firmware's
    lines and terminal escapes left out)."""
    out = []
    for name, _, _, _ in CASES:
        d = os.path.join(work, name)
        con = os.path.join(d, "console.txt")
        if not os.path.isfile(con):
            continue
        text = ESCAPES.sub("", open(con, errors="replace").read()).replace("\r", "")
        lines = text.splitlines()
        start = next((i for i, l in enumerate(lines) if "Loading, please wait" in l or "systemd-udevd" in l), 0)
        lines = [l.split("Probing EDD (edd=off to disable)... o", 1)[-1] for l in lines[start:]]
        res = os.path.join(d, "result.txt")
        verdict = open(res).read().strip() if os.path.isfile(res) else "(no verdict recorded)"
        out += [f"`{name}`: {verdict}", "", "```", *lines, "```", ""]
    return "\n".join(out)


if __name__ == "__main__":
    import sys
    if len(sys.argv) != 3 or sys.argv[1] != "transcripts":
        sys.exit("usage: boot.py transcripts WORKDIR   (a `run-all --only boot --keep` work directory)")
    if not os.path.isdir(sys.argv[2]):
        sys.exit(f"boot.py: {sys.argv[2]}: no such directory")
    print(transcripts(sys.argv[2]))
