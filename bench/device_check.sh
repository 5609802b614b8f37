#!/usr/bin/env bash
# One prepared check for a lent GPU (no TensorFlow there, so KERAS_BACKEND=jax).
#
# Here, once:   echo /.whl/ >> .git/info/exclude
#               python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#                   --implementation cp --platform manylinux2014_x86_64 -d .whl \
#                   keras==3.15.1 namex optree absl-py rich markdown-it-py mdurl h5py ml_dtypes
#               python bench/pack_data.py          # .device/fer2013.npz, git-ignored
# Device run:   bash bench/device_check.sh         (carry: .whl .device)
# It prints the GPU, bench/throughput.py's table, a short real CNN training run, and a summary
# table last. The report's ImageDataGenerator pipeline needs TensorFlow, which that machine
# lacks, so the report column is empty there.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1
out=${OUT:-/tmp/device_out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

python3 bench/throughput.py --data .device/fer2013.npz --networks cnn dnn \
    --images 61440 --rounds 3 --large-batch cnn=1024 dnn=1024 | tee "$out/throughput.txt"

# A short real run: the packed rows as a CSV, five CNN epochs, then the public test score.
python3 - <<'PY'
import numpy as np
packed = np.load(".device/fer2013.npz")
with open("/tmp/train.csv", "w") as file:
    file.write("label,feature\n")
    for label, image in zip(packed["train_labels"], packed["train_images"]):
        file.write(f"{label},{' '.join(map(str, image.reshape(-1)))}\n")
with open("/tmp/test.csv", "w") as file:
    file.write("id,feature\n")
    for row_id, image in zip(packed["test_ids"], packed["test_images"]):
        file.write(f"{row_id},{' '.join(map(str, image.reshape(-1)))}\n")
with open("/tmp/public.csv", "w") as file:
    file.write("id,label\n")
    file.writelines(f"{i},{l}\n" for i, l in zip(packed["public_ids"], packed["public_labels"]))
PY
python3 train_cnn.py --data /tmp/train.csv --epochs 5 --batch-size 512 --out /tmp/runs \
    --name gpu --quiet | tee "$out/train.txt"
python3 predict.py /tmp/runs/gpu --test /tmp/test.csv --labels /tmp/public.csv \
    --blur 3.5 --out /tmp/sub.csv | tee "$out/predict.txt"

echo "== summary =="
cat "$out/gpu.txt"
grep -E "^(cnn|dnn) " "$out/throughput.txt"
python3 -c "import json; m = json.load(open('/tmp/runs/gpu/metrics.json')); \
print(f\"cnn training {m['train_images_per_second']:.0f} img/s, best val {m['best_val_accuracy']:.4f}\")"
grep accuracy "$out/predict.txt"
