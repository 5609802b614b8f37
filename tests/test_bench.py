"""The benchmark scripts in bench/ that work on data files, run on small synthetic ones."""

import contextlib
import importlib.util
import io
import os
import re
import sys

import numpy as np
import pytest
from conftest import REPOSITORY, make_train_csv, pixels, synthetic_images, write_csv

from ferkit import data, evaluation


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
