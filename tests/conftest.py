"""Shared fixtures: small FER2013-shaped CSVs made on the fly, and the real data if present."""

import gzip
import json
import os
import signal

import numpy as np
import pytest

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fer2013")
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def synthetic_images(count, seed=0):
    """Learnable fake faces: each class brightens its own horizontal band, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 7
    images = rng.integers(0, 80, size=(count, 48, 48), dtype=np.int64)
    for index, label in enumerate(labels):
        images[index, label * 6 : label * 6 + 6, :] += 150
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_csv(path, columns, rows, compress=False):
    text = ",".join(columns) + "\n" + "".join(",".join(map(str, row)) + "\n" for row in rows)
    opener = gzip.open if compress else open
    with opener(path, "wt") as file:
        file.write(text)
    return str(path)


def pixels(image):
    return " ".join(map(str, np.asarray(image).reshape(-1)))


def make_train_csv(path, count=70, seed=0, compress=False):
    images, labels = synthetic_images(count, seed)
    rows = [(label, pixels(image)) for image, label in zip(images, labels)]
    return write_csv(path, ("label", "feature"), rows, compress)


def make_test_csv(path, count=20, seed=1):
    images, _ = synthetic_images(count, seed)
    return write_csv(
        path, ("id", "feature"), [(i, pixels(image)) for i, image in enumerate(images)]
    )


def record_sharpness(run, value):
    """Edit a run's config.json to record ``value`` as its training faces' sharpness, which
    --blur auto matches faces to (a run of synthetic faces records theirs, which are sharp)."""
    config_path = os.path.join(run, "config.json")
    with open(config_path) as file:
        config = json.load(file)
    with open(config_path, "w") as file:
        json.dump({**config, "train_sharpness": value}, file)


@pytest.fixture
def ctrl_c_handled():
    """Ctrl-C raising KeyboardInterrupt, as in a terminal: a shell starts a job in the
    background (``nohup pytest … &`` from a script) with SIGINT ignored."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.fixture
def train_csv(tmp_path):
    return make_train_csv(tmp_path / "train.csv")


@pytest.fixture
def test_csv(tmp_path):
    return make_test_csv(tmp_path / "test.csv")


@pytest.fixture
def real_data():
    if not os.path.exists(os.path.join(SHARED, "train.csv.gz")):
        pytest.skip("real FER2013 not found at ../shared/fer2013")
    return os.path.abspath(SHARED)
