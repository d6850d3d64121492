#!/bin/sh
# fuzz/hours.sh [LOGDIR...]: appends the runs of each LOGDIR/runs.tsv (written by
# fuzz/rotate.sh) to fuzz/hours.tsv, the record of fuzzing kept with the source,
# dated today; then prints, per target, the CPU hours, executions and runs in
# all, and how the runs ended. Runs already recorded are not added twice.
set -eu
cd "$(dirname "$0")"
rec=hours.tsv
[ -f "$rec" ] || printf 'date\tstart\ttarget\tcpu_s\texecs\tcorpus\tend\n' > "$rec"
day=$(date -u +%Y-%m-%d)
for d in "$@"; do
    tail -n +2 "$d/runs.tsv" | while IFS= read -r line; do
        row="$day	$line"
        grep -qxF "$row" "$rec" || printf '%s\n' "$row" >> "$rec"
    done
done
printf "%-18s %9s %14s %5s  %s\n" target "CPU h" executions runs "ends other than done"
awk -F'\t' 'NR > 1 { cpu[$3] += $4; ex[$3] += ($5 ~ /^[0-9]+$/ ? $5 : 0); n[$3]++;
        if ($7 != "done") bad[$3] = bad[$3] " " $7 }
    END { for (t in cpu) printf "%-18s %9.2f %14d %5d  %s\n", t, cpu[t] / 3600, ex[t], n[t], bad[t] }' "$rec" | sort
