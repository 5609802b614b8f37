"""Where a training step's time goes: TensorFlow's per-op profile, grouped by layer kind.

    python bench/op_profile.py                     # the CNN, batch 128, precision as auto
    python bench/op_profile.py --network dnn --batch-size 512
    python bench/op_profile.py --keras-batch-norm  # without ferkit's fused batch norm

Traces a few training steps on random faces with the TensorFlow profiler, converts the trace
to per-op statistics with the profiler's own converter (no TensorBoard needed), and prints
each layer kind's share of the busy time (idle time of the thread pools left out).
TensorFlow backend only.
"""

import argparse
import collections
import glob
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ferkit  # noqa: E402
from ferkit import config as configuration  # noqa: E402
from ferkit import training  # noqa: E402

# Layer kinds, found in the op names Keras gives (layer names from ferkit/models.py).
KINDS = (
    ("_bn", "BatchNorm"),
    ("prelu", "PReLU"),
    ("dropout", "dropout"),
    ("augmentation", "augmentation"),
    ("pool", "max pooling"),
    ("adam", "optimizer update"),
    ("sgd", "optimizer update"),
)


def kind(op_type, op_name):
    if "conv" in op_type.lower() or "matmul" in op_type.lower():
        return "convolution / matrix product"
    for part, label in KINDS:
        if part in op_name.lower():
            return label
    if op_type.startswith("ResourceApply") or op_type == "AssignVariableOp":
        return "optimizer update"
    return f"other ({op_type})"


def op_rows(trace_folder):
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    path = sorted(glob.glob(os.path.join(trace_folder, "**", "*.xplane.pb"), recursive=True))[-1]
    converted, _ = plugin.xspace_to_tools_data([path], "framework_op_stats", {})
    table = json.loads(converted)[0]
    columns = [column["id"] for column in table["cols"]]
    for row in table["rows"]:
        values = dict(zip(columns, [cell.get("v") if cell else None for cell in row["c"]]))
        if values["host_or_device"] == "Host" and values["type"] != "IDLE":
            yield values


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--network", choices=("cnn", "dnn"), default="cnn")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--keras-batch-norm", action="store_true")
    args = parser.parse_args()
    # The threads train_cnn.py / train_dnn.py use, set before TensorFlow starts.
    ferkit.use_interop_threads(configuration.INTEROP_THREADS[args.network])
    from ferkit import backend

    if backend.name() != "tensorflow":
        sys.exit("op_profile.py: the per-op profile needs the TensorFlow backend")
    import keras
    import tensorflow as tf

    precision = backend.resolve_precision("auto")
    keras.config.set_dtype_policy(precision)
    config = configuration.resolve(args.network, overrides={"batch_size": args.batch_size})
    config["jit_resolved"] = False
    if args.keras_batch_norm:
        backend.fuse_batch_norm = lambda model: 0
    _, training_model = training.build_training_model(config)
    count = args.batch_size * args.steps
    faces = np.random.default_rng(0).integers(0, 256, (count, 48, 48, 1)).astype("uint8")
    labels = keras.utils.to_categorical(np.arange(count) % 7, 7)
    fit = dict(
        **backend.batches(faces, labels, args.batch_size), epochs=1, shuffle=False, verbose=0
    )
    training_model.fit(**fit)  # trace the step outside the profile
    with tempfile.TemporaryDirectory() as folder:
        tf.profiler.experimental.start(folder)
        training_model.fit(**fit)
        tf.profiler.experimental.stop()
        rows = list(op_rows(folder))
    by_kind = collections.Counter()
    for row in rows:
        by_kind[kind(row["type"], row["operation"])] += row["total_self_time"]
    busy = sum(by_kind.values())
    print(
        f"{args.network}, batch {args.batch_size}, {precision}, {args.steps} steps, "
        f"batch norm: {'Keras' if args.keras_batch_norm else 'fused'}; "
        f"busy time {busy / 1000:.0f} ms (summed over threads)"
    )
    small = 0.0
    for label, time in by_kind.most_common():
        if time / busy < 0.01:
            small += time
            continue
        print(f"  {label:36s} {time / busy:6.1%}")
    print(f"  {'the rest (each under 1%)':36s} {small / busy:6.1%}")


if __name__ == "__main__":
    main()
