"""Saliency, gradient ascent and activation maps on a tiny CNN run (synthetic faces, one
epoch), checked against gradients known in closed form, on TensorFlow and, where it is
installed, JAX."""

import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import REPOSITORY, make_train_csv
from keras import layers
from test_plots import assert_drawn, call_script
from test_training import tiny_config

from ferkit import explain, models, runs, training
from ferkit.errors import FerError


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("explain")


@pytest.fixture(scope="module")
def cnn_run(folder):
    train_csv = make_train_csv(folder / "train.csv", count=140)
    return training.train(
        tiny_config(train_csv, "cnn", epochs=1), str(folder / "cnn"), verbose=False
    )


@pytest.fixture(scope="module")
def cnn(cnn_run):
    return runs.load_model(cnn_run)


@pytest.fixture(scope="module")
def faces(cnn_run):
    return runs.validation_data(cnn_run).images[:3]


def linear_model(seed=0):
    """pixels -> Dense 'logits' -> softmax: the score's gradient is a column of the weights."""
    inputs = keras.Input(shape=(48, 48, 1), name="pixels")
    logits = layers.Dense(7, name="logits")(layers.Flatten()(inputs))
    model = keras.Model(inputs, layers.Activation("softmax", name="probabilities")(logits))
    weights = np.random.default_rng(seed).normal(size=(48 * 48, 7)).astype("float32")
    model.get_layer("logits").set_weights([weights, np.zeros(7, "float32")])
    return model, weights


def test_saliency_is_the_score_gradient_not_the_probability_gradient():
    model, weights = linear_model()
    images = np.random.default_rng(1).integers(0, 255, (2, 48, 48, 1)).astype("float32")
    maps = explain.saliency(model, images, [3, 5])
    for map_, column in zip(maps, (3, 5)):
        expected = np.abs(weights[:, column]) / np.abs(weights[:, column]).max()
        assert np.allclose(map_.reshape(-1), expected, atol=1e-5)


JAX_SCRIPT = """
import numpy as np, keras
from ferkit import explain
from tests.test_explain import linear_model
assert keras.config.backend() == "jax"
model, weights = linear_model()
images = np.random.default_rng(1).integers(0, 255, (2, 48, 48, 1)).astype("float32")
maps = explain.saliency(model, images, [3, 5])
expected = np.abs(weights[:, 3]) / np.abs(weights[:, 3]).max()
assert np.allclose(maps[0].reshape(-1), expected, atol=1e-5)
print("ok")
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_saliency_on_jax():
    environment = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "PYTHONPATH": os.pathsep.join([REPOSITORY, os.path.join(REPOSITORY, "tests")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT],
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPOSITORY,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_smoothgrad_noise_is_the_given_share_of_the_pixel_range(monkeypatch):
    differences = []

    def gradients(scores, batch, classes):
        differences.append(batch - 100.0)  # the noise added to faces of 100 everywhere
        return None, np.ones_like(batch)

    monkeypatch.setattr(explain, "class_gradients", gradients)
    images = np.full((4, 48, 48, 1), 100.0, np.float32)
    explain.saliency(linear_model()[0], images, [0, 1, 2, 3], samples=5, noise=0.1)
    # Five noisy copies of each face, noise of standard deviation 0.1 x 255 pixel levels.
    assert len(differences) == 5
    assert np.std(differences) == pytest.approx(25.5, rel=0.02)


def test_saliency_map_has_the_input_shape_and_is_not_zero(cnn, faces):
    for samples in (0, 3):
        maps = explain.saliency(cnn, faces, [0, 1, 2], samples=samples)
        assert maps.shape == faces.shape
        assert maps.min() >= 0 and np.allclose(maps.reshape(3, -1).max(axis=1), 1.0)
        assert (maps > 0).mean() > 0.5


def test_mask_keeps_the_most_salient_share():
    rng = np.random.default_rng(0)
    images = np.full((2, 48, 48, 1), 200, dtype=np.uint8)
    maps = rng.random((2, 48, 48, 1)).astype("float32")
    masked = explain.mask_low_saliency(images, maps, keep=0.25)
    assert masked.dtype == np.uint8
    assert np.allclose((masked > 0).mean(axis=(1, 2, 3)), 0.25, atol=0.01)
    for kept, saliency in zip(masked > 0, maps):
        assert saliency[kept].min() >= saliency[~kept].max()
    with pytest.raises(FerError, match="--keep must be in"):
        explain.mask_low_saliency(images, maps, keep=0)


def test_pick_per_class_takes_right_then_wrong_of_each_class():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    predictions = np.array([0, 1, 0, 1, 0, 3, 4, 2])  # class 0: two right; class 2: two wrong
    assert explain.pick_per_class(labels, predictions, 1) == [0, 1, 3, 4, 7, 5]
    assert explain.pick_per_class(labels, predictions, 2) == [0, 2, 1, 3, 4, 7, 5, 6]


def test_conv_layer_choice(cnn):
    assert explain.choose_conv_layer(cnn).name == "block2b_conv"  # the middle of six
    assert explain.choose_conv_layer(cnn, "block1a_conv").name == "block1a_conv"
    assert explain.choose_conv_layer(cnn, "-1").name == "block3b_conv"
    with pytest.raises(FerError, match=r"no conv layer 'fc1_dense': give a name \(block1a_conv"):
        explain.choose_conv_layer(cnn, "fc1_dense")
    with pytest.raises(FerError, match="has no Conv2D layers"):
        explain.choose_conv_layer(models.build_dnn())


def test_a_keras_file_s_conv_layers_are_read_without_keras(cnn, tmp_path):
    cnn.save(tmp_path / "cnn.keras")
    saved = runs.saved_layers(str(tmp_path / "cnn.keras"))
    names = [name for kind, name in saved if kind == "Conv2D"]
    assert names == [layer.name for layer in explain.conv_layers(cnn)]
    # visualize_filters.py refuses a mistyped --layer before Keras is imported.
    program = (
        "import runpy, sys\n"
        f"sys.argv = ['visualize_filters.py', {str(tmp_path / 'cnn.keras')!r}, '--layer', 'nope']\n"
        "try:\n    runpy.run_path('visualize_filters.py', run_name='__main__')\n"
        "except SystemExit as stop:\n    print(stop.code, 'keras' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=REPOSITORY, capture_output=True, text=True
    )
    assert result.stdout.split() == ["2", "False"], result.stderr[-2000:]
    assert "no conv layer 'nope'" in result.stderr


def test_gradient_ascent_raises_each_filters_activation(cnn):
    layer = explain.choose_conv_layer(cnn)
    images, start, final = explain.gradient_ascent(cnn, layer, [0, 1, 2, 3], steps=8)
    assert images.shape == (4, 48, 48, 1) and images.min() >= 0 and images.max() <= 255
    assert (final > start).all(), (start, final)


def test_gradient_ascent_starts_from_the_seed_s_noise_and_steps_step_size_pixels(cnn):
    layer = explain.choose_conv_layer(cnn)
    first = explain.gradient_ascent(cnn, layer, [0, 1], steps=0, seed=3)[0]
    assert np.array_equal(first, explain.gradient_ascent(cnn, layer, [0, 1], steps=0, seed=3)[0])
    assert not np.array_equal(first, explain.gradient_ascent(cnn, layer, [0, 1], steps=0)[0])
    # One step moves each image by step_size pixels, root mean square (grey 128 +- 10 is
    # far from the 0-255 clip).
    stepped = explain.gradient_ascent(cnn, layer, [0, 1], steps=1, step_size=2.0, seed=3)[0]
    moved = np.sqrt(np.mean((stepped - first) ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(moved, [2.0, 2.0], rtol=1e-3)


def test_filter_script_passes_its_steps_step_size_and_seed_on(cnn_run, monkeypatch):
    calls = []
    ascent = explain.gradient_ascent

    def recorded(model, layer, filters, steps, step_size, seed):
        calls.append((len(filters), steps, step_size, seed))
        return ascent(model, layer, filters, steps, step_size, seed)

    monkeypatch.setattr(explain, "gradient_ascent", recorded)
    arguments = ["--filters", 2, "--steps", 1, "--step-size", 1.5, "--seed", 4, "--force"]
    call_script(monkeypatch, "visualize_filters.py", cnn_run, *arguments)
    assert calls == [(2, 1, 1.5, 4)]


def test_activation_maps_have_the_layers_size(cnn, faces):
    maps = explain.activation_maps(cnn, cnn.get_layer("block2b_conv"), faces[0], [0, 5, 7])
    assert maps.shape == (3, 24, 24) and maps.std() > 0
    # The filters asked for, in that order: the layer's channels 0, 5 and 7.
    layer_output = keras.Model(cnn.input, cnn.get_layer("block2b_conv").output)
    every_filter = keras.ops.convert_to_numpy(layer_output(faces[0][None].astype("float32")))
    np.testing.assert_allclose(maps, np.moveaxis(every_filter[0][..., [0, 5, 7]], -1, 0), atol=1e-5)
    with pytest.raises(FerError, match="block1a_conv has filters 0-63, not 64"):
        explain.activation_maps(cnn, cnn.get_layer("block1a_conv"), faces[0], [64])


def test_filter_script_draws_a_grid(cnn_run, monkeypatch):
    call_script(monkeypatch, "visualize_filters.py", cnn_run, "--filters", 4, "--steps", 3)
    # Four filters: a 2 x 2 grid, 3.4 inches wide, so the title wraps to three lines more
    # (0.2 inches each) than the two the figure leaves room for.
    assert_drawn(
        os.path.join(cnn_run, "figures", "filters_block2b_conv.png"),
        2 * 1.7,
        2 * 1.7 + 0.7 + 3 * 0.2,
        0.05,
    )
    call_script(monkeypatch, "visualize_filters.py", cnn_run, "--image", 1, "--filters", 5)
    # The face and five maps: a 3 x 2 grid.
    assert_drawn(
        os.path.join(cnn_run, "figures", "activations_block2b_conv_1.png"),
        3 * 1.7,
        2 * 1.7 + 0.7,
        0.05,
    )


def test_saliency_script_per_class(cnn_run, monkeypatch, capsys):
    call_script(monkeypatch, "saliency.py", cnn_run, "--per-class", 1, "--smoothgrad", 2)
    path = os.path.join(cnn_run, "figures", "saliency_per-class-1_smoothgrad-2.png")
    rows = int(capsys.readouterr().out.split("(")[-1].split()[0])
    assert 7 <= rows <= 14  # one right and one wrong face per class, where there is one
    # The title wraps to one line more than the two the figure leaves room for (0.2 inches).
    assert_drawn(path, 3 * 1.7 + 0.9, rows * 1.7 + 0.7 + 0.2, 0.05)


def test_filter_script_on_the_dnn_exits_2_with_one_line(folder):
    path = str(folder / "dnn.keras")
    models.build_dnn().save(path)
    result = subprocess.run(
        [sys.executable, "visualize_filters.py", path],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"visualize_filters.py: error: {path}: has no Conv2D layers (a DNN?); "
        "filters can only be drawn for a CNN"
    )


def test_filter_script_refuses_a_face_source_without_image(monkeypatch, folder):
    path = str(folder / "cnn.keras")
    models.build_cnn().save(path)
    for source in (("--data", "faces.csv"), ("--blur", "3.5"), ("--run-data", "train.csv")):
        with pytest.raises(FerError, match="choose the face for --image: give --image"):
            call_script(monkeypatch, "visualize_filters.py", path, *source)
    # The ascent's options with --image were ignored without a word.
    for option in (("--steps", 9), ("--step-size", 2), ("--seed", 5)):
        with pytest.raises(FerError, match=f"{option[0]} is for the filters' gradient ascent"):
            call_script(monkeypatch, "visualize_filters.py", path, "--image", 0, *option)


@pytest.mark.parametrize(
    "script, option, message",
    [
        # nan passed the plain comparisons: blank panels, an all-black map, exit 0.
        ("visualize_filters.py", ("--step-size", "nan"), "--step-size must be a positive number"),
        ("visualize_filters.py", ("--step-size", "inf"), "--step-size must be a positive number"),
        # One message for three options named none of the values.
        ("visualize_filters.py", ("--filters", "0"), "--filters must be at least 1, got 0"),
        ("visualize_filters.py", ("--steps", "-1"), "--steps must be at least 0, got -1"),
        ("saliency.py", ("--smoothgrad", 2, "--noise", "nan"), "--noise must be finite and"),
        ("saliency.py", ("--smoothgrad", 2, "--noise", "inf"), "--noise must be finite and"),
        # A plain gradient adds no noise: --noise was ignored.
        ("saliency.py", ("--noise", "0.5"), "--noise is SmoothGrad's: give it with --smoothgrad"),
        ("visualize_filters.py", ("--seed", 2**32), "--seed must be from 0 to 4294967295"),
        ("samples.py", ("--seed", 10**20), "--seed must be from 0 to 4294967295"),
    ],
)
def test_figure_scripts_refuse_nan_noise_steps_and_huge_seeds(
    monkeypatch, tmp_path, script, option, message
):
    # Refused before the model or the data (neither exists) is looked at.
    source = {
        "samples.py": ("--data", tmp_path / "absent.csv"),
        "saliency.py": (tmp_path, "--index", 0),
        "visualize_filters.py": (tmp_path,),
    }[script]
    with pytest.raises(FerError, match=message):
        call_script(monkeypatch, script, *source, *option)
