#!/usr/bin/env python3
"""Writes a deterministic era_dump-format XML of NR_BLOCKS blocks with ERAS archived
writesets (each with about 1/8 of its blocks set in runs) and an era array.

usage: gen_era_xml.py NR_BLOCKS ERAS SEED [marked|set-bits] > out.xml

By default every bit of a writeset is an element (0.9.0's era_dump); with `marked`
only the runs of set bits are, as `<marked block_begin= len=>` (1.3.3's compact
form), which makes the era array most of the document; with `set-bits` only the
set bits are, as `<bit value="true">`: the form that all three restores read right
(1.3.3's restore mishandles a `<marked>` run that crosses a 64-block boundary).
"""
import random
import sys


def main():
    nr_blocks, eras, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    form = sys.argv[4] if len(sys.argv) > 4 else "bits"
    if form not in ("bits", "marked", "set-bits"):
        sys.exit(f"unknown form {form}: bits, marked or set-bits")
    rng = random.Random(seed)
    out = sys.stdout
    current = eras + 2
    out.write(f'<superblock uuid="" block_size="128" nr_blocks="{nr_blocks}" current_era="{current}">\n')
    first_ws = current - eras + 1
    for era in range(first_ws, current + 1):
        out.write(f'  <writeset era="{era}" nr_bits="{nr_blocks}">\n')
        b = 0
        buf = []
        while b < nr_blocks:
            gap = rng.randrange(1, 200)
            run = rng.randrange(1, 30)
            if form == "marked":
                b += gap
                if b < nr_blocks:
                    n = min(run, nr_blocks - b)
                    buf.append(f'    <marked block_begin="{b}" len="{n}"/>\n')
            else:
                if form == "bits":
                    for i in range(b, min(b + gap, nr_blocks)):
                        buf.append(f'    <bit block="{i}" value="false"/>\n')
                b += gap
                for i in range(b, min(b + run, nr_blocks)):
                    buf.append(f'    <bit block="{i}" value="true"/>\n')
            b += run
            if len(buf) > 100000:
                out.write("".join(buf))
                buf.clear()
        out.write("".join(buf))
        out.write("  </writeset>\n")
    out.write("  <era_array>\n")
    buf = []
    for i in range(nr_blocks):
        e = rng.randrange(0, first_ws) if rng.random() < 0.5 else 0
        buf.append(f'    <era block="{i}" era="{e}"/>\n')
        if len(buf) > 100000:
            out.write("".join(buf))
            buf.clear()
    out.write("".join(buf))
    out.write("  </era_array>\n</superblock>\n")


if __name__ == "__main__":
    main()
