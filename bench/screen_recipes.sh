#!/bin/bash
# Recipe screen: one bench/convergence.py process per candidate, all in parallel, each stopped after
# SCREEN_SECONDS; the records as they stood at the last multiple of 10 epochs (<name>.snap) and each
# run's progress (<name>.err) land in one archive, $OUT/screen.tgz (a lent device returns few files).
# Usage: bench/screen_recipes.sh CANDIDATES_FILE   (lines "name --set a=1 --set b=2"; a name alone = the
# current recipe). Env: SCREEN_SECONDS, MACHINES, SEEDS, PYTHON, OUT.
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/screen}
mkdir -p "$OUT"
nproc; "${PYTHON:-python3}" -c "import torch, platform; print(torch.__version__, platform.processor())"
while read -r name args; do
  [ -z "$name" ] && continue
  timeout "${SCREEN_SECONDS:-500}" "${PYTHON:-python3}" bench/convergence.py --machines "${MACHINES:-EightBitMachine,EightBitModified}" \
    --seeds "${SEEDS:-1-2}" --cap 3000 --snapshot "$OUT/$name.snap" $args 2> "$OUT/$name.err" > /dev/null &
done < "$1"
wait
for f in "$OUT"/*.err; do echo "$(basename "$f" .err): $(tail -1 "$f")"; done
# one archive: the device returns only a few files per call
tar czf "$OUT/screen.tgz" -C "$OUT" --exclude screen.tgz . && find "$OUT" -type f ! -name screen.tgz -delete
