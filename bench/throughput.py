"""Training throughput: the course report's pipeline against ferkit's, side by side.

    python bench/throughput.py                    # both networks, ../shared/fer2013
    python bench/throughput.py --networks cnn --images 5120 --rounds 5
    python bench/throughput.py --large-batch dnn=1024 cnn=256
    python bench/throughput.py --networks dnn --large-batch dnn=1024   # the DNN's own threads
    python bench/throughput.py --networks cnn --precision mixed_bfloat16   # where auto is fp32
    KERAS_BACKEND=jax python bench/throughput.py --data .device/fer2013.npz.xz   # lent GPU

In one process, alternating on the same real images:
- report: ImageDataGenerator(...).flow feeding fit, float32 (Keras' legacy class, any backend);
- ferkit: augmentation layers inside the training step, uint8 data, --precision auto, at
  the report's batch size and, with --large-batch, at a larger one (a separate column).
Prints training images/s over the training steps (fit's set-up and teardown shown apart),
their ratio, the CNN's achieved FLOP rate against a matrix-product peak measured in the
same precision, and inference images/s on the 7,178 test images.
TensorFlow's inter-op threads are set as train_cnn.py / train_dnn.py set them (one network
at a time for the DNN's: with both, the CNN's apply).
"""

import argparse
import importlib
import os
import platform
import resource
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ferkit  # noqa: E402
from ferkit import config as configuration  # noqa: E402
from ferkit import data, training  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pack_data  # noqa: E402

# Started by start_keras(), once the networks to measure are known.
keras = backend = None


def start_keras(networks):
    """Keras and ferkit.backend, with TensorFlow's threads set first as a training run of
    ``networks`` sets them, for both pipelines alike (both networks at once: the CNN's)."""
    global keras, backend
    threads = configuration.INTEROP_THREADS
    ferkit.use_interop_threads(threads[networks[0]] if len(set(networks)) == 1 else threads["cnn"])
    keras = importlib.import_module("keras")
    backend = importlib.import_module("ferkit.backend")


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


def matmul_peak(dtype, size=2048, repeats=20):
    """FLOP/s of a large matrix product in ``dtype`` (the best of 20: with 5 the peak on
    this CPU measured anywhere from 1,114 to 1,456 GFLOP/s)."""
    if backend.accelerator() == "gpu":
        size, repeats = 8192, 10  # a 2048 product is over in microseconds on a GPU
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
    """The report's pipeline: ImageDataGenerator.flow into fit, float32, on any backend."""
    # tf.keras.preprocessing.image.ImageDataGenerator *is* this class (TensorFlow 2.16 and
    # later export Keras 3's legacy code), so the report's pipeline also runs on JAX, on a
    # GPU machine without TensorFlow. Private path: this benchmark is its only user.
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    keras.config.set_dtype_policy("float32")
    config = configuration.resolve(network, overrides={"augment": False, "precision": "float32"})
    # The report's TensorFlow ran without XLA; JAX always compiles (eagerly it would crawl).
    config["jit_resolved"] = backend.name() == "jax"
    _, model = training.build_training_model(config)
    generator = ImageDataGenerator(
        rotation_range=10,
        width_shift_range=0.1,
        height_shift_range=0.1,
        zoom_range=0.1,
        horizontal_flip=True,
    )
    flow = generator.flow(images.astype("float32"), labels, batch_size=batch_size, seed=1)

    def run(count, clock):
        model.fit(flow, steps_per_epoch=count // batch_size, epochs=1, verbose=0, callbacks=[clock])
        return count - count % batch_size

    return run


def ferkit_trainer(network, images, labels, batch_size, precision):
    keras.config.set_dtype_policy(precision)
    config = configuration.resolve(network, overrides={"precision": precision})
    config["jit_resolved"] = backend.resolve_jit(config["jit"])
    model, training_model = training.build_training_model(config)

    def run(count, clock):
        count -= count % batch_size
        training_model.fit(
            **backend.batches(images[:count], labels[:count], batch_size),  # as train_*.py
            epochs=1,
            shuffle=False,
            verbose=0,
            callbacks=[clock],
        )
        return count

    return run, model


def timed(run, count):
    """(images/s over the training steps, seconds of fit's own set-up and teardown).

    The steps run from the first one's start to the last one's end, data loading and
    augmentation included. A fit call also makes and deletes its data iterator, which took
    up to 14 s for Keras' own tf.data pipelines, at random (bench/RESULTS.md; ferkit now
    avoids it, backend.batches): over the few steps of a measurement that, not the pipeline,
    decided the rate, so it is left out and shown apart (a training epoch pays it once). The
    batch-end callback also makes Keras wait for each step, so on JAX too the marks fall
    where the work is done.
    """
    marks = []  # perf_counter at the first step's start and at each step's end
    clock = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda batch, logs: (
            marks.append(time.perf_counter()) if batch == 0 else None
        ),
        on_train_batch_end=lambda batch, logs: marks.append(time.perf_counter()),
    )
    started = time.perf_counter()
    images = run(count, clock)
    whole = time.perf_counter() - started
    steps = marks[-1] - marks[0]
    return images / steps, whole - steps


def large_batches(pairs):
    """``["dnn=1024", "cnn=256"]`` -> {"dnn": 1024, "cnn": 256}."""
    sizes = {}
    for pair in pairs:
        network, _, size = pair.partition("=")
        sizes[network] = int(size)
    return sizes


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--networks", nargs="+", choices=("cnn", "dnn"), default=["cnn", "dnn"])
    parser.add_argument("--images", type=int, default=3840, help="images per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurements each")
    parser.add_argument("--batch-size", type=int, default=128, help="the report's batch size")
    parser.add_argument(
        "--large-batch", nargs="*", default=[], help="NETWORK=SIZE: ferkit also at this batch"
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "float32", "mixed_bfloat16"),
        help="ferkit's precision (float32 is measured beside any other)",
    )
    parser.add_argument("--data", default=os.path.join(SHARED, "train.csv.gz"))
    parser.add_argument("--test", default=os.path.join(SHARED, "test.csv.gz"))
    args = parser.parse_args()
    large = large_batches(args.large_batch)
    if args.images < max([args.batch_size, *large.values()]):
        parser.error("--images must be at least the largest batch size: one step per measurement")
    start_keras(args.networks)

    precision = backend.resolve_precision(args.precision)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"backend {backend.name()} on {backend.accelerator()}, auto precision "
        f"{backend.resolve_precision('auto')}, measured {precision}, "
        f"{os.environ['TF_NUM_INTEROP_THREADS']} inter-op threads, "
        f"{args.images} images x {args.rounds} rounds"
    )
    if args.data.endswith(".xz"):  # packed by bench/pack_data.py for a lent GPU
        packed = pack_data.load(args.data)
        train = data.FerData(packed["train_images"], packed["train_labels"], None, args.data)
        test_images = packed["test_images"]
    else:
        train, test_images = data.read_csv(args.data), data.read_csv(args.test).images
    images = train.images[: args.images]
    labels = keras.utils.to_categorical(train.labels[: args.images], 7)
    results = {}
    for network in args.networks:
        trainers = {"report": report_trainer(network, images, labels, args.batch_size)}
        # ferkit in float32 too, to separate the pipeline's gain from the precision's.
        if precision != "float32":
            trainers["ferkit_float32"], _ = ferkit_trainer(
                network, images, labels, args.batch_size, "float32"
            )
        trainers["ferkit"], model = ferkit_trainer(
            network, images, labels, args.batch_size, precision
        )
        if network in large:
            trainers["ferkit_large"], _ = ferkit_trainer(
                network, images, labels, large[network], precision
            )
        trainers = {name: run for name, run in trainers.items() if run}
        for run in trainers.values():
            timed(run, large.get(network, args.batch_size) * 2)  # trace and warm up, untimed
        measured = {name: [] for name in trainers}
        for _ in range(args.rounds):  # alternating, so drifts in machine load hit all alike
            for name, run in trainers.items():
                measured[name].append(timed(run, args.images))
        for name, values in measured.items():
            rates = ", ".join(f"{rate:.0f}" for rate, _ in values)
            overheads = ", ".join(f"{overhead * 1000:.0f}" for _, overhead in values)
            print(f"  {network} {name}: {rates} img/s; set-up and teardown {overheads} ms")
        results[network] = {
            name: statistics.median(rate for rate, _ in values) for name, values in measured.items()
        }
        results[network]["flops"] = forward_flops(model)
        # Once untimed: the first call compiles for each batch shape (the last batch is
        # smaller), which takes seconds on a GPU, more than the work itself.
        model.predict(**backend.batches(test_images, batch_size=512), verbose=0)
        started = time.perf_counter()
        model.predict(**backend.batches(test_images, batch_size=512), verbose=0)
        results[network]["inference"] = len(test_images) / (time.perf_counter() - started)

    compute_dtype = "bfloat16" if "bfloat16" in precision else "float32"
    peak = matmul_peak(compute_dtype)
    print(f"matrix-product peak ({compute_dtype}): {peak / 1e9:.0f} GFLOP/s")
    print("training images/s over the steps, medians; ratio = ferkit / report")
    print(
        "network  report  ferkit fp32  ferkit  ratio  ferkit large batch  ratio  "
        "fwd GFLOP/img  achieved  of peak  inference img/s"
    )
    nan = float("nan")
    for network, result in results.items():
        best = max(result["ferkit"], result.get("ferkit_large", 0))
        achieved = 3 * result["flops"] * best  # forward + backward ~ 3x forward
        report_rate = result.get("report", nan)
        large_rate = result.get("ferkit_large", nan)
        large_text = f"{large_rate:.0f} (batch {large[network]})" if network in large else "-"
        print(
            f"{network:<7}  {report_rate:6.0f}  {result.get('ferkit_float32', nan):11.0f}  "
            f"{result['ferkit']:6.0f}  {result['ferkit'] / report_rate:5.2f}  "
            f"{large_text:>18}  {large_rate / report_rate:5.2f}  {result['flops'] / 1e9:13.3f}  "
            f"{achieved / 1e9:7.0f}G  {achieved / peak:7.1%}  {result['inference']:15.0f}"
        )
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak_rss:.0f} MiB")


if __name__ == "__main__":
    main()
