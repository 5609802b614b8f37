"""Training throughput: the course report's pipeline against ferkit's, side by side.

    python bench/throughput.py                    # both networks, ../shared/fer2013
    python bench/throughput.py --networks cnn --steps 40 --rounds 3
    KERAS_BACKEND=jax python bench/throughput.py  # on a GPU machine (no ImageDataGenerator)

In one process, alternating on the same real images:
- report: ImageDataGenerator(...).flow feeding fit, float32 (TensorFlow backend only);
- ferkit: augmentation layers inside the training step, uint8 data, --precision auto.
Prints training images/s, their ratio, the CNN's achieved FLOP rate against a matrix-product
peak measured in the same precision, and inference images/s on the 7,178 test images.
"""

import argparse
import os
import platform
import resource
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import keras  # noqa: E402

from ferkit import backend, data, training  # noqa: E402
from ferkit import config as configuration  # noqa: E402

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fer2013")


def forward_flops(model):
    """Multiply-adds x 2 of the convolution and dense layers, counted from their shapes."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            height, width, filters = layer.output.shape[1:]
            kernel_height, kernel_width, channels, _ = layer.kernel.shape
            total += 2 * height * width * filters * kernel_height * kernel_width * channels
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * int(np.prod(layer.kernel.shape))
    return total


def matmul_peak(dtype, size=2048, repeats=5):
    """FLOP/s of a large matrix product in ``dtype`` (the best of a few)."""
    left = keras.ops.cast(keras.random.normal((size, size)), dtype)
    right = keras.ops.cast(keras.random.normal((size, size)), dtype)
    keras.ops.convert_to_numpy(keras.ops.cast(keras.ops.matmul(left, right), "float32"))
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        keras.ops.convert_to_numpy(
            keras.ops.cast(keras.ops.sum(keras.ops.matmul(left, right)), "float32")
        )
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def report_trainer(network, images, labels, batch_size):
    """The report's pipeline: ImageDataGenerator.flow into fit, float32. TensorFlow only."""
    if backend.name() != "tensorflow":
        return None
    import tensorflow as tf  # the legacy generator exists only in tf.keras

    keras.config.set_dtype_policy("float32")
    config = configuration.resolve(network, overrides={"augment": False, "precision": "float32"})
    config["jit_resolved"] = False
    _, model = training.build_training_model(config)
    generator = tf.keras.preprocessing.image.ImageDataGenerator(
        rotation_range=10,
        width_shift_range=0.1,
        height_shift_range=0.1,
        zoom_range=0.1,
        horizontal_flip=True,
    )
    flow = generator.flow(images.astype("float32"), labels, batch_size=batch_size, seed=1)

    def run(steps):
        model.fit(flow, steps_per_epoch=steps, epochs=1, verbose=0)

    return run


def ferkit_trainer(network, images, labels, batch_size, precision):
    keras.config.set_dtype_policy(precision)
    config = configuration.resolve(network, overrides={"precision": precision})
    config["jit_resolved"] = backend.resolve_jit(config["jit"])
    model, training_model = training.build_training_model(config)

    def run(steps):
        count = steps * batch_size
        training_model.fit(
            images[:count],
            labels[:count],
            batch_size=batch_size,
            epochs=1,
            shuffle=False,
            verbose=0,
        )

    return run, model


def timed(run, steps, batch_size):
    started = time.perf_counter()
    run(steps)
    return steps * batch_size / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--networks", nargs="+", default=["cnn", "dnn"])
    parser.add_argument("--steps", type=int, default=30, help="training steps per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating measurements each")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--data", default=os.path.join(SHARED, "train.csv.gz"))
    parser.add_argument("--test", default=os.path.join(SHARED, "test.csv.gz"))
    args = parser.parse_args()

    precision = backend.resolve_precision("auto")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"backend {backend.name()} on {backend.accelerator()}, auto precision {precision}"
    )
    if args.data.endswith(".npz"):  # packed by bench/pack_data.py for a lent GPU
        packed = np.load(args.data)
        train = data.FerData(packed["train_images"], packed["train_labels"], None, args.data)
        test_images = packed["test_images"]
    else:
        train, test_images = data.read_csv(args.data), data.read_csv(args.test).images
    needed = args.steps * args.batch_size
    images, labels = train.images[:needed], keras.utils.to_categorical(train.labels[:needed], 7)
    results = {}
    for network in args.networks:
        report = report_trainer(network, images, labels, args.batch_size)
        # ferkit in float32 too, to separate the pipeline's gain from the precision's.
        ours_float32 = None
        if precision != "float32":
            ours_float32, _ = ferkit_trainer(network, images, labels, args.batch_size, "float32")
        ours, model = ferkit_trainer(network, images, labels, args.batch_size, precision)
        trainers = {"report": report, "ferkit_float32": ours_float32, "ferkit": ours}
        trainers = {name: run for name, run in trainers.items() if run}
        for run in trainers.values():
            run(3)  # trace and warm up outside the timing
        measured = {name: [] for name in trainers}
        for _ in range(args.rounds):  # alternating, so drifts in machine load hit all alike
            for name, run in trainers.items():
                measured[name].append(timed(run, args.steps, args.batch_size))
        results[network] = {
            name: statistics.median(values) for name, values in measured.items() if values
        }
        results[network]["flops"] = forward_flops(model)
        started = time.perf_counter()
        model.predict(test_images, batch_size=512, verbose=0)
        results[network]["inference"] = len(test_images) / (time.perf_counter() - started)

    compute_dtype = "bfloat16" if "bfloat16" in precision else "float32"
    peak = matmul_peak(compute_dtype)
    print(f"matrix-product peak ({compute_dtype}): {peak / 1e9:.0f} GFLOP/s")
    print(
        "network  report img/s  ferkit fp32 img/s  ferkit img/s  ratio  fwd GFLOP/img  "
        "achieved  of peak  inference img/s"
    )
    for network, result in results.items():
        achieved = 3 * result["flops"] * result["ferkit"]  # forward + backward ~ 3x forward
        report_rate = result.get("report", float("nan"))
        print(
            f"{network:<7}  {report_rate:12.0f}  "
            f"{result.get('ferkit_float32', float('nan')):17.0f}  {result['ferkit']:12.0f}  "
            f"{result['ferkit'] / report_rate:5.2f}  {result['flops'] / 1e9:13.3f}  "
            f"{achieved / 1e9:7.0f}G  {achieved / peak:7.1%}  {result['inference']:15.0f}"
        )
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak_rss:.0f} MiB")


if __name__ == "__main__":
    main()
