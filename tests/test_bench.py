"""The benchmark scripts in bench/ that work on data files, run on small synthetic ones."""

import contextlib
import gzip
import importlib.util
import io
import json
import os
import re
import shutil
import sys

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


def test_pack_data_unpacks_the_very_bytes_of_files_written_as_fer2013_is(
    shared_folder, tmp_path, monkeypatch
):
    # "byte for byte the same on every machine": a run trained on the unpacked train.csv
    # records its SHA-256, which an evaluation elsewhere checks. FER2013's CSVs (and these)
    # are written as the unpacked ones are: one header line, plain numbers, "\n" line ends.
    monkeypatch.chdir(tmp_path)  # --out without a folder was a FileNotFoundError
    run_script("pack_data", ["--shared", str(shared_folder), "--out", "fer2013.npz.xz"])
    run_script("pack_data", ["--out", "fer2013.npz.xz", "--unpack", "unpacked"])
    for name in ("train.csv", "test.csv"):
        source = gzip.decompress((shared_folder / f"{name}.gz").read_bytes())
        assert (tmp_path / "unpacked" / name).read_bytes() == source
    labels = (shared_folder / "public_test_labels.csv").read_bytes()
    assert (tmp_path / "unpacked" / "public_test_labels.csv").read_bytes() == labels


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


def test_run_summary_reads_a_run_from_its_own_files(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    (run / "command.txt").write_text("python train_dnn.py --epochs 1 --seed 3\n")
    # Trained from another program (pytest's command line): a StopIteration ended the table.
    other = shutil.copytree(tiny_run, tmp_path / "other")
    (other / "command.txt").write_text("trainer --epochs 1\n")
    # history.csv without config.json: a TypeError ended it.
    partial = shutil.copytree(tiny_run, tmp_path / "partial")
    (partial / "config.json").unlink()
    absent = tmp_path / "absent"
    printed, _ = run_script("run_summary", [str(run), str(other), str(partial), str(absent)])
    best = json.loads((run / "metrics.json").read_text())["best_val_accuracy"]
    lines = printed.splitlines()
    assert lines[0].startswith("run: 1 epochs (finished) in ")
    assert f"best val {best:.4f} at epoch 1" in lines[0]
    assert lines[0].endswith("[--epochs 1 --seed 3]")
    assert lines[1].startswith("other: 1 epochs") and lines[1].endswith("[trainer --epochs 1]")
    assert lines[2] == f"{partial}: no config.json: not a whole run folder"
    assert lines[3] == f"{absent}: no run folder (the run never started)"


def test_tta_modes_scores_each_mode_as_predict_does(tiny_run, tmp_path):
    test_images, labels = synthetic_images(21, seed=3)
    rows = [(index, pixels(image)) for index, image in enumerate(test_images)]
    test = write_csv(tmp_path / "test.csv", ("id", "feature"), rows)
    # Ids 20 down to 7 are "public", listed out of order: the scores must use those faces.
    public = list(range(20, 6, -1))
    labels_path = write_csv(
        tmp_path / "labels.csv", ("id", "label"), [(i, labels[i]) for i in public]
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
                (test_images[public, :, :, np.newaxis], labels[public]),
            )
        ]
        assert (validation_score, public_score) == (f"{expected[0]:.4f}", f"{expected[1]:.4f}")
