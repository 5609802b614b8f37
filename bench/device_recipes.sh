#!/usr/bin/env bash
# Recipe experiments on a lent GPU: CNN runs trained side by side, one per argument.
#
#   bash bench/device_recipes.sh 'adam_lowdrop=--optimizer adam --weight-decay 0' 'sgd_lr05=--lr 0.05'
#
# Each argument is NAME=OPTIONS for `train_cnn.py --preset best` (options override the
# preset). Carry .whl and .device as for bench/device_check.sh, which explains them. Runs
# still going BUDGET seconds after the start are stopped. Each run comes back in $OUT as one
# tar of its folder (without the resumable checkpoint) and its log NAME.txt (one file per run:
# at most 8 files come back, so up to six runs; but a model is 14 MB of the 64 MiB that
# return, so four). A summary prints last, after the inference rate of the first run's model
# on the 7,178 test faces (timed after a warm-up call, so without compiling).
set -uo pipefail
cd "$(dirname "$0")/.."
budget=${BUDGET:-330}
# shellcheck source=bench/device_setup.sh
source bench/device_setup.sh

left=$((budget - SECONDS - 40))
echo "== $# runs side by side, at most $left s =="
mkdir -p /tmp/runs /tmp/logs
# Each run preallocates its share of the GPU's memory; 10% stays for the CUDA contexts.
fraction=$(awk -v n=$# 'BEGIN { printf "%.3f", 0.9 / n }')
pids=()
names=()
for argument in "$@"; do
    name=${argument%%=*}
    names+=("$name")
    # Options are split on spaces on purpose: they are flags and numbers.
    # shellcheck disable=SC2086
    XLA_PYTHON_CLIENT_MEM_FRACTION=$fraction timeout "$left" python3 train_cnn.py --preset best \
        --data /tmp/fer2013/train.csv --out /tmp/runs --name "$name" --quiet \
        ${argument#*=} >"/tmp/logs/$name.txt" 2>&1 &
    pids+=($!)
done
wait "${pids[@]}"  # not a bare wait: that would also wait for the tee above, for ever
for name in "${names[@]}"; do
    if [ -d "/tmp/runs/$name" ]; then
        cp "/tmp/logs/$name.txt" "/tmp/runs/$name.txt"
        tar -C /tmp/runs --exclude checkpoint -cf "$out/$name.tar" "$name" "$name.txt"
    else
        cp "/tmp/logs/$name.txt" "$out/"  # it never started: the log says why
    fi
done

python3 - "/tmp/runs/${names[0]}" <<'PY'
import sys, time
import numpy as np
from ferkit import data, runs
model = runs.load_model(sys.argv[1])
test = data.read_csv("/tmp/fer2013/test.csv")
model.predict(test.images, batch_size=512, verbose=0)  # compiles
rates = []
for _ in range(3):
    started = time.perf_counter()
    model.predict(test.images, batch_size=512, verbose=0)
    rates.append(len(test.images) / (time.perf_counter() - started))
print(f"inference, batch 512, after a warm-up: {', '.join(f'{r:.0f}' for r in rates)} img/s")
PY

echo "== summary ($SECONDS s) =="
python3 bench/run_summary.py "${names[@]/#//tmp/runs/}"
