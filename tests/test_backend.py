"""The same code on another Keras backend, and the backend-specific choices."""

import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import REPOSITORY, make_test_csv

from ferkit import backend
from ferkit.errors import FerError

JAX_SCRIPT = """
import numpy as np, keras
from ferkit import config, models, training
assert keras.config.backend() == "jax"
for network in ("cnn", "dnn"):
    settings = config.resolve(network, overrides={"precision": "float32"})
    settings["jit_resolved"] = True
    model, training_model = training.build_training_model(settings)
    assert models.count_parameters(model)[0] in (3532743, 3533188)
    images = np.random.default_rng(0).integers(0, 255, (8, 48, 48, 1)).astype("uint8")
    labels = keras.utils.to_categorical(np.arange(8) % 7, 7)
    logs = training_model.train_on_batch(images, labels, return_dict=True)
    assert np.isfinite(logs["loss"]), logs
print("ok")
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_build_and_one_training_step_on_jax():
    environment = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": REPOSITORY}
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


# The only module that may touch a backend directly: device and distribution choices, fused
# batch norm, and the gradients the explanation figures need. bench/ is outside the rule on
# purpose: it runs the report's tf.keras pipeline and TensorFlow's profiler to measure them.
FENCED = {backend.__file__}


def test_no_tensorflow_import_outside_the_fenced_module():
    offenders = []
    for folder, _, files in os.walk(REPOSITORY):
        # The folder's own path below the repository: a checkout under /home/tests/ is checked.
        parts = Path(folder).relative_to(REPOSITORY).parts
        if set(parts) & {".git", "bench", "tests", "__pycache__", ".venv", "venv"}:
            continue
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(".py") and path not in FENCED:
                text = Path(path).read_text(encoding="utf-8")
                if any(sign in text for sign in ("import tensorflow", "from tensorflow", "tf.")):
                    offenders.append(os.path.relpath(path, REPOSITORY))
    assert offenders == []


def test_precision_auto_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(backend, "accelerator", lambda: "cpu")
    monkeypatch.setattr(backend, "cpu_flags", lambda: {"avx2", "amx_bf16"})
    assert backend.resolve_precision("auto") == "mixed_bfloat16"
    monkeypatch.setattr(backend, "cpu_flags", lambda: {"avx2"})
    assert backend.resolve_precision("auto") == "float32"
    assert backend.resolve_precision("mixed_float16") == "mixed_float16"


@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="TensorFlow's XLA")
def test_jit_is_resolved_off_where_tensorflow_cannot_compile_the_augmentation(monkeypatch):
    # Keras turned XLA off with a warning while config.json recorded it on.
    monkeypatch.setattr(backend, "accelerator", lambda: "gpu")
    assert backend.resolve_jit("auto") is True
    assert backend.resolve_jit("auto", transforms=True) is False
    assert backend.resolve_jit("on", transforms=True) is False


@pytest.mark.parametrize("shape", [(16, 6, 6, 5), (16, 7)])  # the fused kernel; Keras' own
def test_fused_batch_norm_trains_like_keras_own(shape, monkeypatch):
    if backend.name() != "tensorflow":
        pytest.skip("the fused kernel is TensorFlow's; other backends keep Keras' code")
    import tensorflow as tf

    fused_calls = []
    kernel = tf.compat.v1.nn.fused_batch_norm

    def counted_kernel(*arguments, **keywords):
        fused_calls.append(arguments[0].shape)
        return kernel(*arguments, **keywords)

    monkeypatch.setattr(tf.compat.v1.nn, "fused_batch_norm", counted_kernel)

    def one_layer_model():
        inputs = keras.Input(shape[1:])
        return keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.9)(inputs))

    keras_model, fused_model = one_layer_model(), one_layer_model()
    assert backend.fuse_batch_norm(fused_model) == 1
    images = tf.constant(np.random.default_rng(0).normal(2, 3, shape).astype("float32"))
    weights = tf.constant(np.random.default_rng(1).normal(size=shape).astype("float32"))
    results = []
    for model in (keras_model, fused_model):
        with tf.GradientTape() as tape:
            tape.watch(images)
            outputs = model(images, training=True)
            loss = tf.reduce_sum(outputs * weights)
        gradients = tape.gradient(loss, [images, *model.trainable_weights])
        results.append([outputs, *gradients, *model.non_trainable_weights])  # + moving stats
    for expected, got in zip(*results):
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-4)
    # Feature maps went through the fused kernel (once, in training), dense activations not.
    assert fused_calls == ([shape] if len(shape) == 4 else [])
    # Inference is Keras' own code path, and the saved layer is Keras' own class.
    np.testing.assert_allclose(fused_model(images), keras_model(images), atol=1e-5)
    assert type(fused_model.layers[1]) is keras.layers.BatchNormalization


def test_value_and_gradient_of_a_known_function():
    inputs = np.random.default_rng(0).normal(size=(2, 48, 48, 1)).astype("float32")
    weights = keras.ops.convert_to_tensor(
        np.arange(2 * 48 * 48, dtype="float32").reshape(inputs.shape)
    )
    values, gradients = backend.value_and_gradient(
        lambda tensor: keras.ops.sum(keras.ops.square(tensor) * weights, axis=(1, 2, 3)), inputs
    )
    expected_weights = keras.ops.convert_to_numpy(weights)
    assert np.allclose(values, (inputs**2 * expected_weights).sum(axis=(1, 2, 3)), rtol=1e-4)
    assert np.allclose(gradients, 2 * inputs * expected_weights, rtol=1e-4)


@pytest.mark.parametrize("count, sizes", [(7, [3, 3, 1]), (6, [3, 3]), (2, [2])])
def test_batches_keep_order_and_partial_batch_without_autotuning(count, sizes):
    images = np.arange(count * 2, dtype="uint8").reshape(count, 2)
    labels = np.arange(count, dtype="float32")
    arguments = backend.batches([images, labels], labels, batch_size=3)
    if backend.name() != "tensorflow":
        assert arguments["batch_size"] == min(3, count) and arguments["y"] is labels
        return
    dataset = arguments["x"]
    # Autotuning off: deleting an autotuned iterator stalled each epoch for seconds.
    assert dataset.options().autotune.enabled is False
    batches = list(dataset.as_numpy_iterator())
    assert [len(targets) for _, targets in batches] == sizes
    got_images = np.concatenate([inputs[0] for inputs, _ in batches])
    got_labels = np.concatenate([inputs[1] for inputs, _ in batches])
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    np.testing.assert_array_equal(np.concatenate([targets for _, targets in batches]), labels)


def test_batch_size_above_the_image_count_is_one_batch():
    images = np.arange(5 * 2, dtype="uint8").reshape(5, 2)
    # 10**20 made an impossible reshape; 2**63 - 1 one of size 0.
    for batch_size in (10**20, 2**63 - 1, 6):
        arguments = backend.batches(images, batch_size=batch_size)
        if backend.name() != "tensorflow":
            assert arguments["batch_size"] == 5
            continue
        batches = list(arguments["x"].as_numpy_iterator())
        assert len(batches) == 1
        np.testing.assert_array_equal(batches[0][0], images)


@pytest.mark.parametrize(
    "count, batch_size, sizes",
    [(63, 128, [60, 3]), (21, 256, [18, 3]), (260, 128, [128, 128, 4])],
)
def test_batches_for_two_replicas_are_even_and_leave_none_empty(count, batch_size, sizes):
    if backend.name() != "tensorflow":
        pytest.skip("only TensorFlow's MirroredStrategy splits the batches it is given")
    images = np.zeros((count, 2), "uint8")
    arguments = backend.batches(images, np.zeros(count, "float32"), batch_size, replicas=2)
    # One batch of 63 split 32/31 failed (AddN); a last batch of 1 left a replica empty (NaN).
    assert [len(targets) for _, targets in arguments["x"].as_numpy_iterator()] == sizes


def test_a_batch_smaller_than_the_replicas_gives_each_a_face():
    # --batch-size 1 over 2 JAX devices: IndivisibleError, a traceback; and on TensorFlow a
    # last batch of 1 (63 faces in 2s) left a replica empty: the loss became NaN.
    assert backend.replica_batch_size(1, 70, replicas=2) == 2
    assert backend.replica_batch_size(1, 63, replicas=2) == 4
    assert backend.replica_batch_size(4, 70, replicas=8) == 24  # 70 = 2 * 24 + 22
    assert backend.replica_batch_size(1, 70) == 1
    for count, batch_size, replicas in ((63, 1, 2), (9, 4, 2), (70, 4, 8), (141, 64, 2)):
        chosen = backend.replica_batch_size(batch_size, count, replicas)
        assert chosen % replicas == 0 and not 0 < count % chosen < replicas


@pytest.mark.parametrize("keras_backend", ["tensorflow", "jax"])
def test_splits_over_replicas_as_each_backend_needs(monkeypatch, keras_backend):
    monkeypatch.setattr(backend, "name", lambda: keras_backend)
    assert backend.splits_over_replicas(7, 3, 1)  # one device takes any batch
    assert backend.splits_over_replicas(8, 4, 2)
    assert not backend.splits_over_replicas(5, 2, 2)  # a last batch of 1: a device without
    assert not backend.splits_over_replicas(1, 1, 2)  # fewer faces than devices
    # A last batch of 3 over 2: TensorFlow splits it 2/1, JAX cannot split it.
    assert backend.splits_over_replicas(7, 4, 2) is (keras_backend == "tensorflow")


def test_faces_no_batch_splits_over_the_replicas_are_padded_or_cut():
    # 5 faces over 2 TensorFlow replicas went in batches of 2, 2 and 1, and the last left
    # a replica without a face (NaN); one face over 2 left one empty too.
    if backend.name() != "tensorflow":
        pytest.skip("the arrays go to Keras as they are, with a batch size")
    images = np.arange(5 * 2, dtype="uint8").reshape(5, 2)
    arguments = backend.batches(images, np.arange(5, dtype="float32"), 128, replicas=2)
    # Training leaves out the last face (another each epoch, as the order changes).
    batches = [list(targets) for _, targets in arguments["x"].as_numpy_iterator()]
    assert batches == [[0, 1], [2, 3]]
    # One face over two devices: cut, none would be left; it is given twice instead.
    arguments = backend.batches(images[:1], np.zeros(1, "float32"), 128, replicas=2)
    assert [len(targets) for _, targets in arguments["x"].as_numpy_iterator()] == [2]
    for count, sizes in ((5, [2, 2, 2]), (1, [2])):
        arguments = backend.batches(images[:count], batch_size=128, replicas=2)
        batches = np.concatenate([inputs for (inputs,) in arguments["x"].as_numpy_iterator()])
        assert [len(inputs) for (inputs,) in arguments["x"].as_numpy_iterator()] == sizes
        # Prediction pads with copies of the last face, whose answers its caller drops.
        np.testing.assert_array_equal(batches[:count], images[:count])
        np.testing.assert_array_equal(batches[count:], images[count - 1 : count])


def test_padding_for_jax_devices_keeps_the_batch_size_chosen_for_the_faces(monkeypatch):
    # A JAX --distribute run resumed after the padding rule changed trained in batches of
    # 32 instead of its 30 (129 faces over 2 devices): "a resumed run sees the same batches".
    monkeypatch.setattr(backend, "name", lambda: "jax")
    images = np.zeros((129, 2), "uint8")
    arguments = backend.batches(images, np.zeros(129, "float32"), 32, replicas=2)
    assert arguments["batch_size"] == 30 and len(arguments["x"]) == 128
    arguments = backend.batches(images[:1], np.zeros(1, "float32"), 32, replicas=2)
    assert arguments["batch_size"] == 2 and len(arguments["y"]) == 2


def test_batches_without_targets_keep_several_inputs_together():
    images = np.arange(5 * 2, dtype="uint8").reshape(5, 2)
    labels = np.eye(5)[:, :3]  # float64, as keras.utils.to_categorical gives
    arguments = backend.batches([images, labels], batch_size=2)
    if backend.name() != "tensorflow":
        pytest.skip("a tf.data pipeline is TensorFlow's; other backends batch arrays as given")
    # One element per batch: a 1-tuple holding both inputs, not an (x, y) pair.
    batches = list(arguments["x"].as_numpy_iterator())
    assert [len(batch) for batch in batches] == [1, 1, 1]
    got_images = np.concatenate([inputs[0] for (inputs,) in batches])
    got_labels = np.concatenate([inputs[1] for (inputs,) in batches])
    np.testing.assert_array_equal(got_images, images)
    assert got_labels.dtype == np.float32  # as Keras' own adapter casts float64
    np.testing.assert_array_equal(got_labels, labels)


def test_batches_refuse_arrays_of_different_lengths():
    if backend.name() != "tensorflow":
        pytest.skip("the arrays go to Keras as they are")
    with pytest.raises(ValueError, match="different lengths"):
        backend.batches(np.zeros((4, 2)), np.zeros(3), batch_size=2)


def test_an_unknown_backend_is_named_without_importing_keras(monkeypatch, tmp_path):
    import ferkit

    monkeypatch.setenv("KERAS_BACKEND", "tensorflw")
    assert ferkit.keras_backend_problem() == (
        "KERAS_BACKEND: backend 'tensorflw' is not one ferkit runs on (tensorflow, jax, torch)"
    )
    # Without KERAS_BACKEND, Keras reads keras.json, and so does the check.
    monkeypatch.delenv("KERAS_BACKEND")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "keras.json").write_text('{"backend": "torch"}')
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert ferkit.keras_backend_problem() == (
        f"{tmp_path / 'keras.json'}: backend 'torch' needs the torch package, which is not "
        "installed (install it, or choose another backend)"
    )


def test_training_with_a_missing_backend_is_one_line_and_makes_no_run(tmp_path):
    environment = {**os.environ, "KERAS_BACKEND": "tensorflw"}
    result = subprocess.run(
        [sys.executable, "train_dnn.py", "--data", "unread.csv", "--out", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        env=environment,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("train_dnn.py: error: KERAS_BACKEND: backend")
    assert not (tmp_path / "runs").exists()


def predict_on(keras_backend, tmp_path):
    """predict.py (the shipped CNN) on three faces, on ``keras_backend``, in its own process."""
    test_csv = make_test_csv(tmp_path / "test.csv", count=3)
    return subprocess.run(
        [sys.executable, "predict.py", "--test", str(test_csv), "--out", str(tmp_path / "s.csv")],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        env={**os.environ, "KERAS_BACKEND": keras_backend},
        timeout=300,
    )


def test_a_backend_keras_has_but_ferkit_does_not_run_on_is_refused_in_predicting(tmp_path):
    # Keras starts on numpy: predict.py wrote a submission, saliency.py failed late.
    result = predict_on("numpy", tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "predict.py: error: KERAS_BACKEND: backend 'numpy' is not one ferkit runs on "
        "(tensorflow, jax, torch)\n"
    )
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_loading_a_model_on_jax_prints_nothing_on_stderr(tmp_path):
    # Keras imports TensorFlow lazily to serialise the model's config: six start-up lines.
    result = predict_on("jax", tmp_path)
    assert result.returncode == 0 and result.stderr == ""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_distributed_jax_training_takes_batches_that_do_not_split_over_the_devices(tmp_path):
    # 63 training and 7 validation images over 2 devices: IndivisibleError, a traceback.
    from conftest import make_train_csv

    train_csv = make_train_csv(tmp_path / "train.csv", count=70)
    environment = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    arguments = ["--data", str(train_csv), "--out", str(tmp_path), "--name", "run"]
    result = subprocess.run(
        [sys.executable, "train_dnn.py", *arguments, "--batch-size", "16", "--epochs", "1",
         "--distribute", "--quiet"],
        capture_output=True, text=True, cwd=REPOSITORY, env=environment, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--distribute: 2 replicas (DataParallel)" in result.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # Validated on the 7 images, not on padding: the reloaded model scores the same.
    assert metrics["best_val_accuracy"] == metrics["reloaded_val_accuracy"]


@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="TF_CONFIG is TensorFlow's")
@pytest.mark.parametrize("value", ["not json", "[1]", '{"cluster": 3}'])
def test_a_malformed_tf_config_is_refused_before_distributed_training(monkeypatch, value):
    monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(FerError, match='TF_CONFIG: expected JSON like {"cluster"'):
        backend.check_distribute()


@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="TensorFlow's own warning")
def test_predicting_with_many_models_gives_no_retracing_warning():
    import tensorflow as tf

    from ferkit import evaluation

    warnings = []
    handler = logging.Handler()
    handler.emit = warnings.append
    tf.get_logger().addHandler(handler)
    images = np.zeros((4, 48, 48, 1), dtype="float32")
    try:
        for _ in range(7):  # an ensemble of seven members: the fifth warned
            inputs = keras.Input((48, 48, 1))
            outputs = keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(inputs))
            evaluation.predict_probabilities(keras.Model(inputs, outputs), images, "flip")
    finally:
        tf.get_logger().removeHandler(handler)
    assert not [record for record in warnings if "retracing" in record.getMessage()]


def test_seeding_starts_no_tensorflow_lines_on_stderr(monkeypatch, capfd):
    # On JAX, Keras' set_random_seed imports TensorFlow where it is installed, and its C++
    # start-up lines (written to file descriptor 2, not sys.stderr) came before "Run ...".
    seeded = []

    def set_random_seed(seed):
        os.write(2, b"I0000 oneDNN custom operations are on.\n")
        seeded.append(seed)

    monkeypatch.setattr(keras.utils, "set_random_seed", set_random_seed)
    backend.seed_everything(7)
    assert seeded == [7] and capfd.readouterr().err == ""


def test_a_ctrl_c_while_keras_imports_is_raised_after_it(ctrl_c_handled):
    # JAX's garbage-collection callback, run while TensorFlow imported JAX, swallowed the
    # KeyboardInterrupt ("Exception ignored"): the run then trained to its end.
    import contextlib
    import signal

    import ferkit

    def swallowing_callback():
        # As Python ignores an exception raised in a gc callback.
        with contextlib.suppress(BaseException):
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt), ferkit._interrupts_after():
        swallowing_callback()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with ferkit._interrupts_after():  # nothing received: nothing raised
        pass
