#!/usr/bin/env bash
# One prepared check for a lent GPU (no TensorFlow there, so KERAS_BACKEND=jax).
#
# Here, once:   echo /.whl/ >> .git/info/exclude
#               python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#                   --implementation cp --platform manylinux_2_28_x86_64 \
#                   --platform manylinux2014_x86_64 -d .whl keras==3.15.1 namex optree
#               python bench/pack_data.py          # .device/fer2013.npz.xz, git-ignored
# Device run:   bash bench/device_check.sh         (carry: .whl .device; timeout_s 600)
#
# Within BUDGET seconds it prints the GPU; bench/throughput.py for the CNN (the report's
# ImageDataGenerator pipeline against ferkit's, on the same card); then trains the CNN's
# `best` preset once per seed in SEEDS, concurrently (one small network leaves most of the GPU
# idle; as many as the measured rate says will finish), stopping any run still going at the
# deadline; then a summary table last. Each run
# comes back in $OUT as a tar of its folder (model, config, history, metrics; not the
# resumable checkpoint, which is twice the model). Score them here with
#   python bench/pack_data.py --unpack /tmp/fer2013      # the same CSV bytes as there
#   python predict.py RUN --test /tmp/fer2013/test.csv --labels /tmp/fer2013/public_test_labels.csv
# Smoke test on a CPU: WHEELS= BUDGET=400 IMAGES=256 LARGE=cnn=64 TRAIN_OPTIONS="--epochs 2
# --limit 640" bash bench/device_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
budget=${BUDGET:-560}
seeds=${SEEDS:-"1 2 3"}
# shellcheck source=bench/device_setup.sh
source bench/device_setup.sh

echo "== throughput ($((budget - SECONDS)) s left) =="
timeout "${THROUGHPUT_SECONDS:-170}" python3 bench/throughput.py \
    --data .device/fer2013.npz.xz --networks cnn --images "${IMAGES:-20480}" --rounds 2 \
    --large-batch "${LARGE-cnn=1024}" >"$out/throughput.txt" 2>&1
echo "throughput exit status $?"
cat "$out/throughput.txt" | grep -v "^WARNING\|^I0000\|^W0000"

left=$((budget - SECONDS - 25))
# How many seeds (and, if even one cannot finish, how many epochs) fit before the deadline,
# judged from the rates just measured: at batch 64 a run is taken to go at half ferkit's
# batch-128 rate (per-step overhead bound), runs sharing the GPU at most half its batch-1024
# rate together, plus 90 s each for compiling, validating and saving.
plan=$(python3 - "$out/throughput.txt" "$left" $seeds <<'PY'
import re, statistics, sys
from ferkit import config as configuration
text, left, seeds = open(sys.argv[1]).read(), int(sys.argv[2]), sys.argv[3:]
preset = configuration.resolve("cnn", "best")
with open("/tmp/fer2013/train.csv", "rb") as file:
    train_images = (sum(1 for _ in file) - 1) * (1 - preset["val_split"])
def rate(name):
    found = re.search(rf"^  cnn {name}: ([0-9, ]+)$", text, re.M)
    return statistics.median(map(float, found.group(1).split(","))) if found else 0.0
single, large = rate("ferkit") / 2, (rate("ferkit_large") or rate("ferkit")) / 2
def seconds(count):  # for `count` whole runs side by side
    together = min(count * single, large) or 1.0
    return count * train_images * preset["epochs"] / together + 90
count = max([n for n in range(1, len(seeds) + 1) if seconds(n) <= left] or [1])
epochs = int((left - 90) * single / train_images) if seconds(1) > left else preset["epochs"]
shorter = f"--epochs {max(20, epochs)}" if epochs < preset["epochs"] else ""
print(" ".join(seeds[:count]), shorter)
PY
)
seeds=$(echo "$plan" | cut -d- -f1)
shorter=$(echo "$plan" | grep -o -- "--epochs [0-9]*")
echo "== best preset, seeds $seeds ${shorter:-}, concurrently, at most $left s =="
pids=()
for seed in $seeds; do
    # Each process takes a share of the GPU's memory rather than JAX's default 75%.
    XLA_PYTHON_CLIENT_MEM_FRACTION=0.25 timeout "$left" python3 train_cnn.py --preset best \
        --data /tmp/fer2013/train.csv --seed "$seed" --out /tmp/runs \
        --name "cnn_best_seed$seed" --quiet ${shorter:-} ${TRAIN_OPTIONS:-} >"$out/train_seed$seed.txt" 2>&1 &
    pids+=($!)
done
wait "${pids[@]}"  # not a bare wait: that would also wait for the tee above, for ever
for seed in $seeds; do
    run=cnn_best_seed$seed
    [ -d "/tmp/runs/$run" ] && tar -C /tmp/runs --exclude checkpoint -cf "$out/$run.tar" "$run"
done

echo "== summary ($SECONDS s) =="
cat "$out/gpu.txt"
grep -E "^(network|cnn) " "$out/throughput.txt"
python3 bench/run_summary.py $(printf "/tmp/runs/cnn_best_seed%s " $seeds)
