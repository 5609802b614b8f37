"""The benchmark scripts in bench/ that work on data files, run on small synthetic ones."""

import contextlib
import importlib.util
import io
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPOSITORY, make_train_csv, pixels, synthetic_images, write_csv

from ferkit import config as configuration
from ferkit import data, evaluation, runs, training


def run_script(name, arguments):
    """What ``python bench/NAME.py ARGUMENTS`` prints, run in this process (no second start
    of Python and NumPy); the script module is returned too, for its helpers."""
    path = os.path.join(REPOSITORY, "bench", f"{name}.py")
    specification = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(specification)
    specification.loader.exec_module(module)
    printed = io.StringIO()
    saved_argv = sys.argv
    sys.argv = [path, *arguments]
    try:
        with contextlib.redirect_stdout(printed):
            module.main()
    finally:
        sys.argv = saved_argv
    return printed.getvalue(), module


@pytest.fixture
def shared_folder(tmp_path):
    """A folder laid out like ../shared/fer2013: train.csv.gz, test.csv.gz, the labels."""
    folder = tmp_path / "shared"
    folder.mkdir()
    make_train_csv(folder / "train.csv.gz", count=30, compress=True)
    test_images, _ = synthetic_images(12, seed=1)
    rows = [(index, pixels(image)) for index, image in enumerate(test_images)]
    write_csv(folder / "test.csv.gz", ("id", "feature"), rows, compress=True)
    write_csv(folder / "public_test_labels.csv", ("id", "label"), [(i, i % 7) for i in range(6)])
    return folder


def test_pack_data_unpacks_the_same_faces_labels_and_ids(shared_folder, tmp_path):
    # The GPU runs train on the unpacked CSVs: they must hold the rows of the shared files.
    packed = tmp_path / "device" / "fer2013.npz.xz"
    run_script("pack_data", ["--shared", str(shared_folder), "--out", str(packed)])
    unpacked = tmp_path / "unpacked"
    printed, _ = run_script("pack_data", ["--out", str(packed), "--unpack", str(unpacked)])
    assert "wrote" in printed
    for name in ("train", "test"):
        original = data.read_csv(str(shared_folder / f"{name}.csv.gz"))
        copy = data.read_csv(str(unpacked / f"{name}.csv"))
        assert np.array_equal(original.images, copy.images)
        if name == "train":
            assert np.array_equal(original.labels, copy.labels)
        else:
            assert np.array_equal(original.ids, copy.ids)
    labels = data.read_labels(str(unpacked / "public_test_labels.csv"))
    assert labels == data.read_labels(str(shared_folder / "public_test_labels.csv"))


def test_pack_data_writes_the_same_bytes_each_time(shared_folder, tmp_path):
    # "byte for byte the same on every machine": a run trained on the unpacked train.csv
    # records its SHA-256, which an evaluation elsewhere checks.
    packed = tmp_path / "fer2013.npz.xz"
    run_script("pack_data", ["--shared", str(shared_folder), "--out", str(packed)])
    contents = []
    for folder in ("first", "second"):
        run_script("pack_data", ["--out", str(packed), "--unpack", str(tmp_path / folder)])
        contents.append((tmp_path / folder / "train.csv").read_bytes())
    assert contents[0] == contents[1]
    assert contents[0].startswith(b"label,feature\n0,")


def test_parse_csv_compares_the_two_parsers_on_the_same_rows(tmp_path):
    path = make_train_csv(tmp_path / "train.csv", count=20)
    printed, _ = run_script("parse_csv", [path, "--repeats", "1"])
    assert f"file: {path} (20 rows)" in printed
    assert re.search(r"ratio \d+\.\dx \(identical arrays\)", printed)


def test_blur_spectrum_finds_the_sigma_the_training_faces_were_blurred_with(tmp_path):
    # Its fit is how the project knows the given training faces were blurred with one
    # Gaussian (sigma about 3.0): on faces blurred with a known sigma it must find that one.
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, size=(200, 48, 48, 1), dtype=np.uint8)
    blurred = evaluation.blur_images(sharp, 2.5)
    train = write_csv(
        tmp_path / "train.csv",
        ("label", "feature"),
        [(index % 7, pixels(image)) for index, image in enumerate(blurred)],
    )
    test = write_csv(
        tmp_path / "test.csv",
        ("id", "feature"),
        [(i, pixels(image)) for i, image in enumerate(sharp)],
    )
    printed, _ = run_script("blur_spectrum", ["--train", train, "--test", test])
    fitted = float(re.search(r"per face: sigma (\d+\.\d+)", printed).group(1))
    assert fitted == pytest.approx(2.5, abs=0.15)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished one-epoch DNN run on synthetic faces, trained once for these tests."""
    folder = tmp_path_factory.mktemp("bench_run")
    train_csv = make_train_csv(folder / "train.csv")
    overrides = {"data": train_csv, "epochs": 1, "batch_size": 32, "precision": "float32"}
    config = configuration.resolve("dnn", overrides=overrides)
    return training.train(config, str(folder / "run"), verbose=False)


def test_run_summary_reads_a_run_from_its_own_files(tiny_run):
    printed, _ = run_script("run_summary", [tiny_run, str(Path(tiny_run).parent / "absent")])
    best = json.loads(Path(tiny_run, "metrics.json").read_text())["best_val_accuracy"]
    first, second = printed.splitlines()
    assert first.startswith("run: 1 epochs (finished) in ")
    assert f"best val {best:.4f} at epoch 1" in first
    assert second.endswith("absent: no run folder (the run never started)")


def test_tta_modes_scores_each_mode_as_predict_does(tiny_run, tmp_path):
    test_images, labels = synthetic_images(21, seed=3)
    rows = [(index, pixels(image)) for index, image in enumerate(test_images)]
    test = write_csv(tmp_path / "test.csv", ("id", "feature"), rows)
    # The first 14 faces are "public": the scores must use only those, in id order.
    labels_path = write_csv(
        tmp_path / "labels.csv", ("id", "label"), [(i, labels[i]) for i in range(14)]
    )
    printed, _ = run_script("tta_modes", [tiny_run, "--test", test, "--labels", labels_path])
    model = runs.load_model(tiny_run)
    validation = runs.validation_data(tiny_run)
    lines = printed.splitlines()[1:]
    assert [line.split()[1] for line in lines] == list(evaluation.TTA_MODES)
    for line in lines:
        mode, validation_score, public_score = line.split()[1], line.split()[3], line.split()[4]
        expected = [
            evaluation.accuracy(evaluation.predict_probabilities(model, images, mode), truth)
            for images, truth in (
                (validation.images, validation.labels),
                (test_images[:14, :, :, np.newaxis], labels[:14]),
            )
        ]
        assert (validation_score, public_score) == (f"{expected[0]:.4f}", f"{expected[1]:.4f}")
