# Sourced (from the repository root) by bench/device_check.sh and bench/device_recipes.sh:
# everything printed also goes to $OUT/log.txt; the carried wheels (WHEELS, default .whl;
# empty on a machine that has Keras) are installed; JAX is the backend; the GPU's name goes
# to $OUT/gpu.txt; the packed data is unpacked to /tmp/fer2013 as CSVs.
out=${OUT:-/tmp/device_out}
mkdir -p "$out"
exec > >(tee -a "$out/log.txt") 2>&1
wheels=${WHEELS-.whl}
if [ -n "$wheels" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$wheels"/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    >"$out/gpu.txt" 2>/dev/null || echo "no GPU: $(uname -m)" >"$out/gpu.txt"
cat "$out/gpu.txt"
python3 bench/pack_data.py --out .device/fer2013.npz.xz --unpack /tmp/fer2013 || exit 1
