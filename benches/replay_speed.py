#!/usr/bin/env python3
"""Replay speed: tiles the I/O statements of a kernel-lab trace (write, discard,
flush, status, checkpoint) into a long trace over the same target, with the
virtual time advancing as in the original, and prints it. Used by
benches/replay_speed.sh; not a test.

usage: replay_speed.py TRACE REPEATS
"""
import re
import sys

path, repeats = sys.argv[1], int(sys.argv[2])
head, body, end = [], [], []
for line in open(path):
    line = line.split('#', 1)[0].rstrip()
    if not line:
        continue
    m = re.match(r'(?:@(\d+)\s+)?(\S+)(.*)', line)
    t, verb, rest = m.group(1), m.group(2), m.group(3)
    if verb in ('dmtrace', 'config'):
        head.append(line)
    elif verb in ('write', 'discard', 'flush', 'status', 'checkpoint', 'tick'):
        body.append((int(t) if t else None, verb, rest))
t0 = min(t for t, _, _ in body if t is not None)
t1 = max(t for t, _, _ in body if t is not None)
span = t1 - t0 + 100
out = ['\n'.join(head)]
n = 0
for r in range(repeats):
    for t, verb, rest in body:
        rest = re.sub(r'\s*id=\S+', '', rest)
        stamp = f'@{t + r * span} ' if t is not None else ''
        out.append(f'{stamp}{verb}{rest}')
        n += 1
out.append(f'@{t1 + repeats * span} remove')
print('\n'.join(out))
print(f'{n + 2} statements', file=sys.stderr)
