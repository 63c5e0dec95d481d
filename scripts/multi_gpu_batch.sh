#!/usr/bin/env bash
# Run a pairs CSV on this machine's GPUs: `babygan batch --ray`, one worker per GPU.
#
#   scripts/multi_gpu_batch.sh PAIRS.csv OUTPUT_DIR NUM_GPUS [babygan batch options...]
#
# e.g.  scripts/multi_gpu_batch.sh pairs.csv out/ 4 --genes 0.5
#
# A thin wrapper: a Ray instance is started here and stopped after; each of the NUM_GPUS
# workers holds one GPU and loads the models once, and takes rows as they come. All the
# children land in OUTPUT_DIR/<name>/ with one OUTPUT_DIR/batch.json, a worker that dies has its
# row redone, and --resume finishes a stopped run. Needs the ray extra (pip install 'babygan[ray]').
# Exit status as `babygan batch`'s: 1 if any row failed. Set BABYGAN to run another command.
set -euo pipefail

if [ "$#" -lt 3 ]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
csv=$1
out=$2
gpus=$3
shift 3
[ -f "$csv" ] || { echo "$0: $csv: no such file" >&2; exit 2; }
case "$gpus" in ''|*[!0-9]*|0) echo "$0: NUM_GPUS must be a positive whole number, got '$gpus'" >&2; exit 2 ;; esac

read -r -a cmd <<< "${BABYGAN:-babygan}"
exec "${cmd[@]}" batch "$csv" --output-dir "$out" --ray --workers "$gpus" --gpus-per-worker 1 "$@"
