#!/usr/bin/env python3
"""Writes a deterministic clone_dump-format XML of NR_REGIONS regions with exactly
RANGES hydrated ranges, each of 1..MAX_LEN regions, sorted and maximal (at least
one unhydrated region between two ranges), spread over the whole device.

usage: gen_clone_xml.py NR_REGIONS RANGES MAX_LEN SEED > out.xml
       gen_clone_xml.py sparse|dense SEED [NR_REGIONS] > out.xml

`sparse` is 2^30 regions with 100,000 ranges of 1..5000 regions, `dense` 2^30
regions with 4,000,000 ranges of 1..64. Given NR_REGIONS, a preset keeps its
range lengths and scales its number of ranges to the device (2^22 regions:
390 sparse ranges, 15,625 dense ones), for quick runs. The same arguments give
the same bytes; the region size is 8 sectors.
"""
import random
import sys

PRESETS = {
    "sparse": (1 << 30, 100_000, 5000),
    "dense": (1 << 30, 4_000_000, 64),
}


def main():
    args = sys.argv[1:]
    if len(args) in (2, 3) and args[0] in PRESETS:
        (nr, ranges, max_len), seed = PRESETS[args[0]], int(args[1])
        if len(args) == 3:
            scaled = int(args[2])
            ranges, nr = max(1, ranges * scaled // nr), scaled
    elif len(args) == 4:
        nr, ranges, max_len, seed = (int(a) for a in args)
    else:
        sys.exit(__doc__.strip())
    rng = random.Random(seed)
    lens = [rng.randint(1, max_len) for _ in range(ranges)]
    # Regions left once every range and the one-region gap between ranges are placed,
    # shared out over the ranges+1 gaps in random proportions.
    spare = nr - sum(lens) - max(ranges - 1, 0)
    if spare < 0:
        sys.exit(f"{ranges} ranges of up to {max_len} regions do not fit in {nr} regions")
    weights = [rng.random() for _ in range(ranges + 1)]
    scale = spare / sum(weights)
    out = sys.stdout
    out.write(f'<superblock uuid="" region_size="8" target_size="{nr * 8}" nr_regions="{nr}">\n')
    b = 0
    buf = []
    for i, n in enumerate(lens):
        b += int(weights[i] * scale) + (1 if i > 0 else 0)
        buf.append(f'  <hydrated begin="{b}" end="{b + n}"/>\n')
        b += n
        if len(buf) >= 100_000:
            out.write("".join(buf))
            buf.clear()
    out.write("".join(buf))
    out.write("</superblock>\n")
    assert b <= nr


if __name__ == "__main__":
    main()
