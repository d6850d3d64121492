#!/usr/bin/env python3
"""Writes fixtures/kernel/README.md from the truth.json files (run by make-fixtures)."""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FX = os.path.join(REPO, "fixtures", "kernel")

HEAD = """# Kernel-made metadata fixtures

Every directory here was produced by the real Linux kernel (Debian bookworm
{kernel}, `dm-era` as shipped, `dm-clone` built out of tree from the same
`linux-source-6.1`) running under qemu (TCG) by the kernel lab in `tests/kernel/`.
Do not edit them by hand: regenerate them (see the `regen` column, or
`tests/kernel/make-fixtures` for all of them).

Files per case:

| file | content |
|---|---|
| `metadata.img.zst` | the metadata device after the run (zstd); {{clone,era}} superblock at block 0 |
| `truth.json` | normalized ground truth (schema below) + everything the run observed |
| `table.txt` | the table line(s) loaded (guest device names; the disk mapping is in the comment) |
| `status.txt` | every `dmsetup status` line, with guest uptime |
| `ops.txt` | every step with guest start/end time, return code, errors and device-mapper kernel messages |

`truth.json` minimal schema:

* clone: `kind, region_size, target_size, nr_regions, metadata_blocks, crashed, hydrated_ranges`
  (half-open, sorted, maximal region ranges hydrated in the **committed** metadata).
* era: `kind, block_size, nr_blocks, current_era, metadata_snap (block or null), crashed,
  last_written_era` (era -> half-open block ranges whose logical era, i.e. last era written,
  is that era; blocks not listed were never written) and for a snapshot
  `snapshot_last_written_era`.

Extra fields: `regen`, `truth_source`, `kernel_view` (the kernel's own reading of the image:
for clone the image is loaded again with a source and a destination stamped per region,
hydrated to completion, and the destination tells which regions the kernel skipped; for a
large clone only the status count), `status_checks` (model vs every status line), `ops`
(per write/discard: regions or blocks and era), `superblock` (decoded fields),
`uncertainty` (crash cases whose committed set depends on timing), `final_status`,
`tpt_0_9_0` (Debian thin-provisioning-tools 0.9.0 cross-checks for era).

`rejections.json`: table loads of kernel-made images that the kernel must refuse
(mismatched clone region size / target size, mismatched era block size, corrupted superblock),
with the kernel's messages, plus controls that must load (`tests/kernel/lab.py probe`).

## Cases

| case | kind | geometry | key figures | crashed | meta blocks | verdict | regen |
|---|---|---|---|---|---|---|---|
"""


def figures(t):
    if t["kind"] == "clone":
        hr = t.get("hydrated_ranges", [])
        cnt = sum(e - b for b, e in hr)
        shown = ", ".join(f"[{b},{e})" for b, e in hr[:6]) + (" …" if len(hr) > 6 else "")
        return (f"rs {t['region_size']}, {t['nr_regions']} regions, target {t['target_size']} s"
                + (f" (last region {t['last_region_sectors']} s)" if t.get("last_region_sectors") != t["region_size"] else ""),
                f"{cnt} hydrated: {shown or 'none'}")
    per = t.get("last_written_era", {})
    parts = [f"e{e}: {sum(b2 - b1 for b1, b2 in r)}" for e, r in per.items()]
    snap = f"; snapshot at block {t['metadata_snap']}" if t.get("metadata_snap") else ""
    return (f"bs {t['block_size']}, {t['nr_blocks']} blocks",
            f"current era {t['current_era']}; written blocks per last era: {', '.join(parts) or 'none'}{snap}")


def main():
    rows = []
    kernel = "6.1"
    for case in sorted(os.listdir(FX)):
        p = os.path.join(FX, case, "truth.json")
        if not os.path.isfile(p):
            continue
        t = json.load(open(p))
        kernel = f"{t['kernel']['release']} ({t['kernel']['debian_version']})"
        geo, fig = figures(t)
        rows.append(f"| `{case}` | {t['kind']} | {geo} | {fig} | {'yes' if t['crashed'] else 'no'} | "
                    f"{t['metadata_blocks']} | {t['verdict']} | `{t['regen']}` |")
    descr = []
    for case in sorted(os.listdir(FX)):
        p = os.path.join(FX, case, "truth.json")
        if os.path.isfile(p):
            t = json.load(open(p))
            descr.append(f"* `{case}`: {t['description']}" + (f" — truth: {t['truth_source']}" if t.get("crashed") else ""))
    with open(os.path.join(FX, "README.md"), "w") as f:
        f.write(HEAD.format(kernel=kernel))
        f.write("\n".join(rows) + "\n\n")
        f.write("Regenerate everything: `tests/kernel/make-fixtures` (one case: `tests/kernel/scenario "
                "tests/kernel/scenarios/<case>.scn`; probes: `tests/kernel/lab.py probe`).\n\n")
        f.write("### What each case does\n\n" + "\n".join(descr) + "\n")
    print(f"fixtures README: {len(rows)} cases", file=sys.stderr)


if __name__ == "__main__":
    main()
