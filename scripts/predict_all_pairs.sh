#!/usr/bin/env bash
# Predict a child for every father x mother pair of photos in two folders.
#
#   scripts/predict_all_pairs.sh FATHERS_DIR MOTHERS_DIR OUTPUT_DIR [babygan batch options...]
#
# e.g.  scripts/predict_all_pairs.sh dads/ mums/ out/ --genes 0.4 --age 5
#
# Writes OUTPUT_DIR/pairs.csv (one row per pair, named <father>+<mother>) and runs a single
# `babygan batch` on it, so the models load once and each photo is aligned and encoded once.
# Results: OUTPUT_DIR/<father>+<mother>/child.png ..., summary in OUTPUT_DIR/batch.json.
# The exit status is babygan's: non-zero if any pair failed.
# Set BABYGAN to run another command (e.g. BABYGAN="python -m babygan").
set -euo pipefail

if [ "$#" -lt 3 ]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
fathers=$1
mothers=$2
out=$3
shift 3
for d in "$fathers" "$mothers"; do
  [ -d "$d" ] || { echo "$0: $d: not a folder" >&2; exit 2; }
done

read -r -a babygan <<< "${BABYGAN:-babygan}"
mkdir -p "$out"
csv="$out/pairs.csv"
tmp="$csv.part"

list_photos() {  # photo files of a folder, sorted, one per line (absolute paths)
  find "$(cd "$1" && pwd)" -maxdepth 1 -type f \
    \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' -o -iname '*.webp' -o -iname '*.bmp' \) | sort
}

echo "father,mother,name" > "$tmp"
n=0
while IFS= read -r f; do
  while IFS= read -r m; do
    case "$f$m" in *,*) echo "$0: skipping a path with a comma: $f / $m" >&2; continue ;; esac
    fb=$(basename "$f"); mb=$(basename "$m")
    echo "$f,$m,${fb%.*}+${mb%.*}" >> "$tmp"
    n=$((n + 1))
  done < <(list_photos "$mothers")
done < <(list_photos "$fathers")
mv "$tmp" "$csv"

if [ "$n" -eq 0 ]; then
  echo "$0: no photos (jpg, png, webp, bmp) in $fathers and $mothers" >&2
  exit 1
fi
echo "$n pairs -> $csv" >&2
exec "${babygan[@]}" batch "$csv" --output-dir "$out" "$@"
