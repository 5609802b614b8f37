"""The fenced place for what differs between Keras backends (TensorFlow, JAX, PyTorch).

Everything else in ferkit uses ``keras`` and ``keras.ops`` only. Backend libraries are
imported inside the functions that need them, so a missing one costs nothing.
"""

import contextlib
import importlib.util
import os
import platform
import sys

import numpy as np

from ferkit.errors import FerError


@contextlib.contextmanager
def quiet_stderr():
    """Standard error silenced at the file-descriptor level, for what starts TensorFlow.

    TensorFlow 2.21 prints several C++ lines at start-up (absl, oneDNN, CUDA probing) that no
    setting turns off; they would bury the one line a user needs. An error raised inside is
    shown after stderr is restored.
    """
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def seed_everything(seed):
    """``keras.utils.set_random_seed``, quietly: on JAX and PyTorch it also seeds TensorFlow
    where that is installed, which imports it, start-up lines and all."""
    with quiet_stderr():
        keras.utils.set_random_seed(seed)


class _QuietTensorFlowImport:
    """On JAX or PyTorch, Keras still imports TensorFlow where it is installed, lazily (to
    serialise a model's configuration, as ``runs.load_model`` does): its start-up lines
    reached stderr from every script that loads a model. This finder silences that import
    as ``_start_quietly`` silences Keras'; it removes itself at the first ``tensorflow``."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            run = spec.loader.exec_module

            def exec_module(module):
                with quiet_stderr():
                    run(module)

            spec.loader.exec_module = exec_module
        return spec


def _not_retracing(record):
    return "triggered tf.function retracing" not in record.getMessage()


def _start_quietly():
    """Import Keras and start its backend with stderr silenced (``quiet_stderr``)."""
    with quiet_stderr():
        import keras

        if keras.config.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # CUDA probing prints here, once
            # Each model predicted in one process traces its own predict step, and from the
            # fifth ensemble member on TensorFlow warned of "retracing", as if in error.
            tf.get_logger().addFilter(_not_retracing)
            # Testing --distribute on one CPU: FERKIT_CPU_DEVICES=2 splits it in two.
            count = int(os.environ.get("FERKIT_CPU_DEVICES", "1"))
            if count > 1:
                cpu = tf.config.list_physical_devices("CPU")[0]
                tf.config.set_logical_device_configuration(
                    cpu, [tf.config.LogicalDeviceConfiguration()] * count
                )
        elif "tensorflow" not in sys.modules:
            sys.meta_path.insert(0, _QuietTensorFlowImport())


_start_quietly()

import keras  # noqa: E402


def name():
    return keras.config.backend()


def accelerator():
    """'gpu' when the backend sees a GPU, else 'cpu'."""
    backend = name()
    if backend == "jax":
        import jax

        return "gpu" if any(device.platform == "gpu" for device in jax.devices()) else "cpu"
    if backend == "torch":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    return "cpu"


def cpu_flags():
    """The CPU's feature flags (Linux); empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def resolve_precision(precision):
    """'auto' becomes bf16 where the hardware computes it natively, float32 elsewhere."""
    if precision != "auto":
        return precision
    if accelerator() == "gpu":
        return "mixed_bfloat16"
    if {"amx_bf16", "avx512_bf16"} & cpu_flags():
        return "mixed_bfloat16"
    return "float32"


def resolve_jit(jit, transforms=False):
    """XLA where it helps and can run: always on JAX, on a GPU with TensorFlow; off on a
    TensorFlow CPU (measured slower there for the CNN) and on PyTorch. TensorFlow's XLA has
    no kernel for the augmentation's image transform (``transforms``: one is built,
    ``config.transforms_faces``): Keras turned it off, warning, while config.json recorded
    it on (--jit on is refused there)."""
    backend = name()
    if backend == "tensorflow" and transforms:
        return False
    if jit != "auto":
        return jit == "on"
    if backend == "jax":
        return True
    return backend == "tensorflow" and accelerator() == "gpu"


def versions():
    import numpy

    found = {
        "ferkit": __import__("ferkit").__version__,
        "keras": keras.__version__,
        "backend": name(),
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    backend = name()
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(backend)
    if module:
        found[module] = __import__(module).__version__
    found["cpu_count"] = os.cpu_count()
    return found


def fuse_batch_norm(model):
    """On TensorFlow, train ``model``'s BatchNormalization layers with the fused kernel.

    Keras 3 computes batch normalisation portably: moments, then five element-wise passes,
    and their gradients, each a separate pass over the activations. In the CNN that was 47%
    of a training step on the CPU (per-op profile, bench/RESULTS.md). TensorFlow's
    FusedBatchNormV3 (oneDNN on CPUs, cuDNN on GPUs) does the same in one pass each way.
    The layers stay Keras' own, so saved models are unchanged and load anywhere; only their
    training-mode forward pass on feature maps is replaced, with the same moving-average
    update. Inference, dense activations, masks and other backends keep Keras' code.
    Returns the number of layers changed.
    """
    if name() != "tensorflow":
        return 0
    from ferkit import models

    changed = 0
    for layer in models.all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization) and not layer.renorm:
            layer.call = _fused_call(layer, layer.call)
            changed += 1
    return changed


def _fused_call(layer, keras_call):
    import tensorflow as tf

    def call(inputs, training=None, mask=None):
        # Feature maps only: on (N, C) dense activations reshaped to (N, 1, 1, C) the fused
        # kernel trained the DNN 2.8x slower than Keras' own code (bench/RESULTS.md).
        fusable = training and layer.trainable and mask is None and len(inputs.shape) == 4
        if not fusable or layer.axis not in (-1, 3):
            return keras_call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        scale = layer.gamma if layer.scale else tf.ones((channels,))
        offset = layer.beta if layer.center else tf.zeros((channels,))
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs,
            tf.cast(scale, "float32"),
            tf.cast(offset, "float32"),
            epsilon=layer.epsilon,
            is_training=True,
        )
        # The kernel returns the unbiased batch variance; Keras averages the biased one.
        count = tf.cast(tf.size(inputs) // channels, "float32")
        variance = variance * (count - 1.0) / tf.maximum(count, 2.0)
        momentum = layer.momentum
        layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1.0 - momentum))
        layer.moving_variance.assign(layer.moving_variance * momentum + variance * (1.0 - momentum))
        return outputs

    return call


def batches(inputs, targets=None, batch_size=32, replicas=1):
    """Keyword arguments for fit/evaluate/predict that feed arrays in order, in batches.

    On TensorFlow, Keras feeds arrays through a tf.data pipeline with autotuning on, and
    deleting its iterator when the call returns waits for the autotuning thread to wake
    (gdb: ``~RootDataset::Iterator`` blocked in ``~LogicalThreadWrapper`` while
    ``Model::OptimizeLoop`` sleeps). That took up to 14 s per call, at random, in every
    training epoch, validation and prediction (bench/RESULTS.md). The same batches from a
    pipeline with autotuning off end at once. Other backends take the arrays as they are.
    ``inputs`` may be a list (a model with several inputs); ``replica_batch_size`` sizes the
    batches. ``replicas``: the model's replicas under ``--distribute`` (``replica_count``).
    """
    count = len(inputs[0] if isinstance(inputs, list) else inputs)
    requested, batch_size = batch_size, replica_batch_size(batch_size, count, replicas)
    if not splits_over_replicas(count, batch_size, replicas):
        # A last batch that does not split (JAX), or one with fewer faces than devices
        # (TensorFlow: 5 over 2, or 1 face): padded or cut to a multiple of the replicas.
        padded = _padded_for_replicas(inputs, targets, count, replicas)
        inputs, targets = padded["x"], padded.get("y")
        count = len(inputs[0] if isinstance(inputs, list) else inputs)
        if batch_size < replicas:  # fewer faces than devices, now one for each
            batch_size = replica_batch_size(requested, count, replicas)
    if name() != "tensorflow":
        arguments = {"x": inputs, "batch_size": batch_size}
        return arguments if targets is None else {**arguments, "y": targets}
    import tensorflow as tf

    def as_array(array):
        # float64 (to_categorical's labels) becomes float32, as in Keras' own adapter.
        array = np.asarray(array)
        return array.astype("float32") if array.dtype == np.float64 else array

    inputs = tf.nest.map_structure(as_array, tuple(inputs) if isinstance(inputs, list) else inputs)
    # Keras reads a bare tuple as (x, y): several inputs without targets go in as (x,).
    elements = (inputs,) if targets is None else (inputs, as_array(targets))
    counts = {len(array) for array in tf.nest.flatten(elements)}
    if len(counts) != 1:
        raise ValueError(f"arrays of different lengths: {sorted(counts)}")
    full = count - count % batch_size

    def full_batches(array):  # (N, ...) -> (N // batch_size, batch_size, ...)
        return array[:full].reshape(-1, batch_size, *array.shape[1:])

    # One slice per batch, not per image: a copy per image made the DNN's pipeline slower.
    dataset = tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(full_batches, elements))
    if full < count:
        last = tf.nest.map_structure(lambda array: array[full:], elements)
        dataset = dataset.concatenate(tf.data.Dataset.from_tensors(last))
    options = tf.data.Options()
    options.autotune.enabled = False
    # As Keras' own pipeline: several machines split the batches, not (absent) files.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return {"x": dataset.prefetch(1).with_options(options)}


def replica_batch_size(batch_size, count, replicas=1):
    """The batch size ``batches`` feeds ``count`` images in. A batch size above the number
    of images is one batch of them all (--batch-size 10**20 made an impossible reshape).
    MirroredStrategy split a batch of a known odd size unevenly and then failed (AddN of
    [32,48,48,1] and [31,48,48,1]): with replicas, the batches of known size are a multiple
    of them, and the rest is a last batch of unknown size, which it handles if every
    replica gets an image of it (a replica with none made the loss NaN)."""
    batch_size = max(1, min(batch_size, count))
    if replicas > 1 and count >= replicas:
        # A batch smaller than the devices left one without a face (JAX: IndivisibleError).
        batch_size = max(batch_size, replicas)
    if replicas > 1 and batch_size > replicas:
        batch_size -= batch_size % replicas
        while 0 < count % batch_size < replicas and batch_size > replicas:
            batch_size -= replicas
    # Down to the replica count and still a short last batch (63 faces in batches of 2):
    # the nearest larger multiple that leaves none, where there is one.
    larger = batch_size + replicas
    while replicas > 1 and 0 < count % batch_size < replicas and larger <= count:
        if not 0 < count % larger < replicas:
            batch_size = larger
        larger += replicas
    return batch_size


def splits_over_replicas(count, batch_size, replicas):
    """Whether ``count`` faces in batches of ``batch_size`` (``replica_batch_size``'s) give
    every replica faces of every batch as the backend needs: JAX's DataParallel splits each
    batch evenly (or fails); TensorFlow's MirroredStrategy splits one unevenly, but a replica
    with no face makes the loss NaN."""
    if replicas == 1:
        return True
    if batch_size < replicas:  # fewer faces than devices: one batch of them all
        return False
    rest = count % batch_size
    return rest == 0 or (rest >= replicas if name() == "tensorflow" else rest % replicas == 0)


def _padded_for_replicas(inputs, targets, count, replicas):
    """JAX's DataParallel splits every batch evenly over the devices, and a last batch that
    does not split failed (IndivisibleError: 55 validation images over 2 GPUs). Training
    (with ``targets``) leaves out the last few images, fewer than the devices (each epoch's
    order differs, so none is always left out); ``predict`` gets copies of the last image,
    whose rows its caller drops (``evaluation.predict_probabilities``). Fewer training faces
    than devices are padded too: cut, none would be left."""
    rest = count % replicas

    def each_input(transform):  # a model may take several inputs, as a list
        return [transform(a) for a in inputs] if isinstance(inputs, list) else transform(inputs)

    if targets is not None and count >= replicas:

        def cut(array):
            return np.asarray(array)[: count - rest]

        return {"x": each_input(cut), "y": cut(targets)}

    def padded(array):
        array = np.asarray(array)
        return np.concatenate([array, np.repeat(array[-1:], replicas - rest, axis=0)])

    arguments = {"x": each_input(padded)}
    return arguments if targets is None else {**arguments, "y": padded(targets)}


def replica_count(model=None):
    """How many replicas a model computes on: TensorFlow's strategy's (of a model built in
    it), JAX's global distribution's, else 1."""
    if name() == "jax":
        distribution = keras.distribution.distribution()
        return len(distribution.device_mesh.devices.flatten()) if distribution else 1
    strategy = getattr(model, "distribute_strategy", None) if name() == "tensorflow" else None
    return strategy.num_replicas_in_sync if strategy is not None else 1


def distribution_scope(enabled):
    """Data-parallel training over every local device, with the backend's own engine.

    TensorFlow: MirroredStrategy, or MultiWorkerMirroredStrategy when TF_CONFIG names
    several machines. JAX: Keras' DataParallel distribution. Build and compile inside.
    """
    import contextlib

    if not enabled:
        return contextlib.nullcontext()
    check_distribute()
    if name() == "tensorflow":
        import tensorflow as tf

        if _tensorflow_machines() > 1:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        else:
            devices = [device.name for device in tf.config.list_logical_devices("GPU")]
            devices = devices or [device.name for device in tf.config.list_logical_devices("CPU")]
            strategy = tf.distribute.MirroredStrategy(devices)
        replicas = strategy.num_replicas_in_sync
        print(f"--distribute: {replicas} replicas ({type(strategy).__name__})")
        return strategy.scope()
    # JAX: a global distribution, which Keras applies to what is built and compiled next.
    devices = keras.distribution.list_devices()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    print(f"--distribute: {len(devices)} replicas (DataParallel)")
    return contextlib.nullcontext()


def check_distribute():
    """Refuse --distribute where it cannot run (training calls this before writing a run)."""
    if name() not in ("tensorflow", "jax"):
        raise FerError(
            f"--distribute is not available on the {name()} backend (use tensorflow or jax)"
        )
    if name() == "tensorflow":
        _tensorflow_machines()  # a malformed TF_CONFIG is refused here, not mid-run


def _tensorflow_machines():
    """How many machines the TF_CONFIG environment variable names (0 without it)."""
    import json

    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
        return sum(len(addresses) for addresses in cluster.values())
    except (ValueError, AttributeError, TypeError):  # not JSON, or not the right shape
        raise FerError(
            'TF_CONFIG: expected JSON like {"cluster": {"worker": [addresses]}, ...}'
        ) from None


def value_and_gradient(function, inputs):
    """(``function(inputs)``, gradient of its sum with respect to ``inputs``), as numpy.

    ``function`` maps a batch to one value per image. The images do not interact (models run
    in inference mode), so the gradient of the sum is each image's own gradient, and one
    backward pass serves the whole batch.
    """
    inputs = np.asarray(inputs, dtype=np.float32)
    backend = name()
    # Imported here, not at the top: only the running backend's library is needed.
    if backend == "tensorflow":
        import tensorflow as tf

        tensor = tf.convert_to_tensor(inputs)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            values = function(tensor)
            total = tf.reduce_sum(values)
        gradients = tape.gradient(total, tensor)
    elif backend == "jax":
        import jax

        def total_and_values(tensor):
            values = function(tensor)
            return jax.numpy.sum(values), values

        (_, values), gradients = jax.value_and_grad(total_and_values, has_aux=True)(
            jax.numpy.asarray(inputs)
        )
    elif backend == "torch":
        # Not in CI (torch is not in requirements.txt); run by hand with torch 2.13 on a CPU
        # (saliency.py and visualize_filters.py, bench/RESULTS.md).
        tensor = keras.ops.convert_to_tensor(inputs).detach().requires_grad_(True)
        values = function(tensor)
        values.sum().backward()
        gradients = tensor.grad
        values = values.detach()
    else:
        raise FerError(f"gradients are not supported on the {backend} backend")
    return keras.ops.convert_to_numpy(values), keras.ops.convert_to_numpy(gradients)
