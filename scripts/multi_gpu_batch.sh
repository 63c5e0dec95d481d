#!/usr/bin/env bash
# Split a pairs CSV across GPUs: one `babygan batch` process per GPU (CUDA_VISIBLE_DEVICES).
#
#   scripts/multi_gpu_batch.sh PAIRS.csv OUTPUT_DIR NUM_GPUS [babygan batch options...]
#
# e.g.  scripts/multi_gpu_batch.sh pairs.csv out/ 4 --genes 0.5
#
# Rows are dealt round-robin into OUTPUT_DIR/parts/part_<i>.csv (relative photo paths are
# made absolute, so the parts work from anywhere); process i sees only GPU i and writes to
# OUTPUT_DIR/gpu_<i>/. Uses GNU parallel when installed, plain background jobs otherwise.
# A photo used in several parts is encoded by each process that needs it (the cache is shared).
# Exit status 1 if any process failed. Set BABYGAN to run another command, and
# BABYGAN_NO_PARALLEL=1 to use background jobs even where GNU parallel is installed.
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
base=$(cd "$(dirname "$csv")" && pwd)
mkdir -p "$out/parts"

# Deal the rows out; make relative father/mother paths absolute (fields without commas/quotes).
awk -F, -v OFS=, -v n="$gpus" -v base="$base" -v dir="$out/parts" '
  NR == 1 {
    gsub(/\r|\357\273\277/, "")
    for (i = 1; i <= NF; i++) { h = $i; gsub(/^ +| +$/, "", h); if (h == "father") fc = i; if (h == "mother") mc = i }
    if (!fc || !mc) { print "the header needs the columns father and mother" > "/dev/stderr"; exit 2 }
    header = $0
    for (k = 0; k < n; k++) print header > (dir "/part_" k ".csv")
    next
  }
  {
    gsub(/\r/, "")
    if ($0 ~ /^[ ,]*$/) next
    if ($fc !~ /^\//) $fc = base "/" $fc
    if ($mc !~ /^\//) $mc = base "/" $mc
    print > (dir "/part_" (row++ % n) ".csv")
  }' "$csv"

export BABYGAN=${BABYGAN:-babygan} BABYGAN_OUT=$out
run_part() {  # run_part GPU_INDEX [babygan batch options...]
  local k=$1 cmd
  shift
  read -r -a cmd <<< "$BABYGAN"
  if [ "$(wc -l < "$BABYGAN_OUT/parts/part_$k.csv")" -le 1 ]; then return 0; fi
  CUDA_VISIBLE_DEVICES=$k "${cmd[@]}" batch "$BABYGAN_OUT/parts/part_$k.csv" \
    --output-dir "$BABYGAN_OUT/gpu_$k" "$@" > "$BABYGAN_OUT/gpu_$k.log" 2>&1
}

status=0
if [ -z "${BABYGAN_NO_PARALLEL:-}" ] && command -v parallel > /dev/null; then
  export -f run_part
  export PARALLEL_SHELL=bash
  # -q quotes every argument, so options with spaces pass through unchanged.
  parallel -q --jobs "$gpus" --halt never run_part {} "$@" ::: $(seq 0 $((gpus - 1))) || status=1
else
  pids=()
  for k in $(seq 0 $((gpus - 1))); do
    run_part "$k" "$@" &
    pids+=("$!")
  done
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done
fi
for k in $(seq 0 $((gpus - 1))); do
  [ -f "$out/gpu_$k.log" ] && echo "GPU $k: $(tail -n 1 "$out/gpu_$k.log")" >&2
done
exit "$status"
