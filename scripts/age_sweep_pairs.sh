#!/usr/bin/env bash
# An age sweep (frames, contact sheet and a looping GIF) for each pair of a CSV file.
#
#   scripts/age_sweep_pairs.sh PAIRS.csv OUTPUT_DIR [babygan age-sweep options...]
#
# e.g.  scripts/age_sweep_pairs.sh pairs.csv sweeps/ --ages 1:50:19 --fps 8
#
# PAIRS.csv has a header with at least the columns father and mother (and optionally name),
# the same file `babygan batch` reads; relative photo paths are relative to the CSV's folder.
# Fields may not contain commas or quotes. Each pair goes to OUTPUT_DIR/<name>/ (name defaults
# to <father>+<mother>). Every pair is tried; the exit status is 1 if any of them failed.
# Encodings are cached, so a photo shared by several pairs is encoded only once.
# Set BABYGAN to run another command (e.g. BABYGAN="python -m babygan").
set -uo pipefail

if [ "$#" -lt 2 ]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
csv=$1
out=$2
shift 2
[ -f "$csv" ] || { echo "$0: $csv: no such file" >&2; exit 2; }
read -r -a babygan <<< "${BABYGAN:-babygan}"
base=$(cd "$(dirname "$csv")" && pwd)

header=$(head -n 1 "$csv" | tr -d '\r\357\273\277')
col() {  # 1-based index of a header column, or empty
  echo "$header" | tr ',' '\n' | awk -v want="$1" '{ gsub(/^ +| +$/, "") } $0 == want { print NR; exit }'
}
fcol=$(col father); mcol=$(col mother); ncol=$(col name)
if [ -z "$fcol" ] || [ -z "$mcol" ]; then
  echo "$0: $csv: the header needs the columns father and mother (got: $header)" >&2
  exit 2
fi

abs() { case "$1" in /*) echo "$1" ;; *) echo "$base/$1" ;; esac; }

failed=0
total=0
while IFS=, read -r -a fields || [ "${#fields[@]}" -gt 0 ]; do
  father=${fields[fcol - 1]:-}; mother=${fields[mcol - 1]:-}
  name=""
  [ -n "$ncol" ] && name=${fields[ncol - 1]:-}
  father=${father//$'\r'/}; mother=${mother//$'\r'/}; name=${name//$'\r'/}
  [ -z "$father$mother" ] && continue
  if [ -z "$name" ]; then
    fb=$(basename "$father"); mb=$(basename "$mother")
    name="${fb%.*}+${mb%.*}"
  fi
  total=$((total + 1))
  echo "== $name" >&2
  if ! "${babygan[@]}" age-sweep "$(abs "$father")" "$(abs "$mother")" \
      --output-dir "$out/$name" --gif "$@"; then
    echo "FAILED $name" >&2
    failed=$((failed + 1))
  fi
done < <(tail -n +2 "$csv")

echo "$((total - failed)) of $total sweeps done in $out" >&2
[ "$failed" -eq 0 ]
