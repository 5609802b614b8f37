"""Reliability (issue 5): bad input, interruptions, reproducibility and safe loading.

The scripts run as users run them: subprocesses of this Python, in the repository. Options,
paths and data are checked before Keras is imported, so most bad-input cases take well under
a second; the few that must load a model pay the ~5 s that TensorFlow takes to start.
Everything trains the DNN on small synthetic data (tests/conftest.py), never real data.
"""

import argparse
import csv
import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from conftest import REPOSITORY, make_test_csv, make_train_csv, pixels, synthetic_images
from test_training import tiny_config

import ferkit
from ferkit import checkpoints, data, files, models, runs, training
from ferkit import config as configuration
from ferkit.errors import FerError

SCRIPT_TIMEOUT = 300
ONES = " ".join(["1"] * 2304)


def run_script(*arguments):
    return subprocess.run(
        [sys.executable, *arguments],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        timeout=SCRIPT_TIMEOUT,
    )


def snapshot(folder):
    """Every file under ``folder`` with the SHA-256 of its bytes."""
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            found[os.path.relpath(path, folder)] = hashlib.sha256(
                Path(path).read_bytes()
            ).hexdigest()
    return found


def argparse_message(network, arguments):
    """What argparse itself says about ``arguments`` (its wording varies across Pythons)."""
    parser = argparse.ArgumentParser(exit_on_error=False)
    training.add_arguments(parser, network)
    try:
        parser.parse_args(arguments)
    except argparse.ArgumentError as error:
        return str(error)
    raise AssertionError(f"argparse accepted {arguments}")


def small_model(input_shape=(48, 48, 1), classes=7, lambda_layer=False):
    inputs = keras.Input(shape=input_shape, name="pixels")
    tensor = inputs
    if lambda_layer:
        tensor = keras.layers.Lambda(lambda images: images / 255.0, name="scale")(tensor)
    tensor = keras.layers.Flatten()(tensor)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(tensor))


def fake_run(folder, train_csv, epochs_trained, early_wait=0, checkpoint_present=True):
    """A run folder as training leaves it, without training: for resume's refusals, which
    all happen before a checkpoint is opened."""
    os.makedirs(os.path.join(folder, "checkpoint"))
    config = configuration.resolve("dnn", overrides={"data": train_csv, "epochs": 2})
    config["data_sha256"] = data.file_sha256(train_csv)
    Path(folder, "config.json").write_text(json.dumps(config))
    if epochs_trained:
        state = {**checkpoints.initial_state(config), "epoch": epochs_trained}
        state.update(checkpoint=f"epoch-{epochs_trained:04d}.keras", early_wait=early_wait)
        Path(folder, "checkpoint", "state.json").write_text(json.dumps(state))
        if checkpoint_present:
            Path(folder, "checkpoint", state["checkpoint"]).write_bytes(b"not read")
        Path(folder, "metrics.json").write_text("{}")
    return folder


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Every input file the bad-input table refers to, made once."""
    folder = tmp_path_factory.mktemp("inputs")
    train_csv = make_train_csv(folder / "train.csv")
    make_test_csv(folder / "test.csv", count=5)

    def bad(name, row, columns="label,feature"):
        # A good row, the bad row (line 3), a good row: the problem is not at an edge.
        (folder / name).write_text(f"{columns}\n0,{ONES}\n{row}\n1,{ONES}\n")

    short = " ".join(["1"] * 2303)
    bad("pixels_2303.csv", f"0,{short}")
    bad("pixels_2305.csv", f"0,{short} 1 1")
    for name, token in (("minus", "-1"), ("256", "256"), ("fraction", "12.5"), ("word", "abc")):
        bad(f"pixel_{name}.csv", f"0,{short} {token}")
    bad("label_7.csv", f"7,{ONES}")
    bad("label_minus.csv", f"-1,{ONES}")
    bad("label_empty.csv", f",{ONES}")
    bad("misnamed.csv", f"0,{ONES}", columns="label,pixel")
    bad("labels_only.csv", "0", columns="label")
    # A file cut mid-row, as by an interrupted download: no newline, 1,001 of 2,304 pixels.
    text = Path(train_csv).read_text()
    (folder / "truncated.csv").write_text(text + "3," + " ".join(["7"] * 1001))
    (folder / "no_header.csv").write_text(text.split("\n", 1)[1])
    (folder / "empty.csv").write_bytes(b"")
    packed = gzip.compress(text.encode())
    (folder / "cut.csv.gz").write_bytes(packed[: len(packed) // 2])
    images, _ = synthetic_images(3)
    rows = "".join(f"{row_id},{pixels(image)}\n" for row_id, image in zip((1, 2, 1), images))
    (folder / "duplicate_ids.csv").write_text("id,feature\n" + rows)
    (folder / "labels.csv").write_text("id,label\n0,3\n4,1\n")
    (folder / "labels_unknown_id.csv").write_text("id,label\n0,3\n99,1\n")
    (folder / "proba.csv").write_text("id," + ",".join(data.CLASS_NAMES) + "\n0" + ",0" * 7 + "\n")
    (folder / "not_a_model.keras").write_text("hello\n")
    (folder / "not_a_model.h5").write_text("hello\n")
    (folder / "folder").mkdir()
    (folder / "a_file").write_text("not a folder\n")
    (folder / "run_without_model").mkdir()
    (folder / "foreign_run").mkdir()  # another tool's config.json
    (folder / "foreign_run" / "config.json").write_text('{"model": "resnet50"}\n')
    small_model().save(folder / "model.keras")
    small_model(input_shape=(32, 32, 1)).save(folder / "input_32.keras")
    small_model(classes=10).save(folder / "output_10.keras")
    small_model(lambda_layer=True).save(folder / "lambda.keras")
    fake_run(folder / "finished", train_csv, epochs_trained=2)
    fake_run(folder / "stopped", train_csv, epochs_trained=2, early_wait=30)
    fake_run(folder / "lost_checkpoint", train_csv, epochs_trained=1, checkpoint_present=False)
    # checkpoint/ deleted to save space after the run finished: resuming retrained it.
    fake_run(folder / "no_checkpoint", train_csv, epochs_trained=0)
    (folder / "no_checkpoint" / "model.keras").write_bytes(b"the trained model")
    lost = fake_run(folder / "lost_model", train_csv, epochs_trained=1)
    state = json.loads(Path(lost, "checkpoint", "state.json").read_text())
    Path(lost, "checkpoint", "state.json").write_text(json.dumps({**state, "best_epoch": 1}))
    os.remove(Path(lost, "metrics.json"))
    edited = fake_run(folder / "edited_config", train_csv, epochs_trained=0)
    config = json.loads(Path(edited, "config.json").read_text())
    Path(edited, "config.json").write_text(json.dumps({**config, "seed": 2**40}))
    changed = fake_run(folder / "changed_data", train_csv, epochs_trained=0)
    config = json.loads(Path(changed, "config.json").read_text())
    Path(changed, "config.json").write_text(json.dumps({**config, "data_sha256": "0" * 64}))
    return str(folder)


IN = "{inputs}"  # the inputs fixture's folder
OUT = "{out}"  # a fresh folder per case, holding existing.csv ("precious\n")
TRAIN = ("--out", f"{OUT}/runs", "--name", "r", "--quiet")
PREDICT = (f"{IN}/model.keras", "--test", f"{IN}/test.csv")
OVER_EXISTING = ("--test", f"{IN}/test.csv", "--out", f"{OUT}/existing.csv", "--force")
FIT = "(found id, feature): this looks like a test file, but labelled images (label,feature or "

# (id, script, arguments, the exact message after "script: error: ").
# fmt: off
CASES = [
    ("truncated last line", "train_dnn.py", ["--data", f"{IN}/truncated.csv", *TRAIN],
     f"{IN}/truncated.csv: line 72: expected 2304 pixels, found 1001"),
    ("2303 pixels", "train_dnn.py", ["--data", f"{IN}/pixels_2303.csv", *TRAIN],
     f"{IN}/pixels_2303.csv: line 3: expected 2304 pixels, found 2303"),
    ("2305 pixels", "train_cnn.py", ["--data", f"{IN}/pixels_2305.csv", *TRAIN],
     f"{IN}/pixels_2305.csv: line 3: expected 2304 pixels, found 2305"),
    ("pixel -1", "train_dnn.py", ["--data", f"{IN}/pixel_minus.csv", *TRAIN],
     f"{IN}/pixel_minus.csv: line 3: pixel '-1' is not an integer in 0-255"),
    ("pixel 256", "train_dnn.py", ["--data", f"{IN}/pixel_256.csv", *TRAIN],
     f"{IN}/pixel_256.csv: line 3: pixel '256' is not an integer in 0-255"),
    ("pixel 12.5", "train_dnn.py", ["--data", f"{IN}/pixel_fraction.csv", *TRAIN],
     f"{IN}/pixel_fraction.csv: line 3: pixel '12.5' is not an integer in 0-255"),
    ("pixel abc", "train_cnn.py", ["--data", f"{IN}/pixel_word.csv", *TRAIN],
     f"{IN}/pixel_word.csv: line 3: pixel 'abc' is not an integer in 0-255"),
    ("label 7", "train_dnn.py", ["--data", f"{IN}/label_7.csv", *TRAIN],
     f"{IN}/label_7.csv: line 3: label 7 is outside 0-6"),
    ("label -1", "train_dnn.py", ["--data", f"{IN}/label_minus.csv", *TRAIN],
     f"{IN}/label_minus.csv: line 3: label -1 is outside 0-6"),
    ("label empty", "train_dnn.py", ["--data", f"{IN}/label_empty.csv", *TRAIN],
     f"{IN}/label_empty.csv: line 3: label is empty"),
    ("pixel column misnamed", "train_dnn.py", ["--data", f"{IN}/misnamed.csv", *TRAIN],
     f"{IN}/misnamed.csv: no pixel column: expected 'feature' or 'pixels', found label, pixel"),
    ("pixel column missing", "train_dnn.py", ["--data", f"{IN}/labels_only.csv", *TRAIN],
     f"{IN}/labels_only.csv: no pixel column: expected 'feature' or 'pixels', found label"),
    pytest.param(
        "no header line", "train_dnn.py", ["--data", f"{IN}/no_header.csv", *TRAIN],
        f"{IN}/no_header.csv: line 1: no header: the first line must name the columns "
        "(label,feature or id,feature or emotion,pixels,Usage)",
        id="no header line",
    ),
    ("empty file", "train_dnn.py", ["--data", f"{IN}/empty.csv", *TRAIN],
     f"{IN}/empty.csv: file is empty"),
    ("gzip cut short", "train_dnn.py", ["--data", f"{IN}/cut.csv.gz", *TRAIN],
     f"{IN}/cut.csv.gz: gzip file is truncated or corrupt"),
    ("data does not exist", "train_dnn.py", ["--data", f"{IN}/nowhere.csv", *TRAIN],
     f"{IN}/nowhere.csv: no such file"),
    ("data is a folder without images", "train_dnn.py", ["--data", f"{IN}/folder", *TRAIN],
     f"{IN}/folder: no images (.png, .jpg, .jpeg, .jpe, .jfif, .bmp, .pgm, .ppm, .tif, "
     ".tiff, .webp, .gif) found"),
    ("test file as training data", "train_dnn.py", ["--data", f"{IN}/test.csv", *TRAIN],
     f"{IN}/test.csv: has no label column {FIT}emotion,pixels) are needed here"),
    ("test file as validation data", "train_dnn.py",
     ["--data", f"{IN}/train.csv", "--val-data", f"{IN}/test.csv", *TRAIN],
     f"--val-data {IN}/test.csv: has no label column {FIT}emotion,pixels) are needed here"),
    ("negative epochs", "train_dnn.py", ["--data", f"{IN}/train.csv", "--epochs", "-3", *TRAIN],
     "--epochs must be at least 1, got -3"),
    ("zero batch size", "train_dnn.py",
     ["--data", f"{IN}/train.csv", "--batch-size", "0", *TRAIN],
     "--batch-size must be at least 1, got 0"),
    ("zero learning rate", "train_cnn.py", ["--data", f"{IN}/train.csv", "--lr", "0", *TRAIN],
     "--lr must be positive, got 0.0"),
    ("val fraction 0", "train_dnn.py", ["--data", f"{IN}/train.csv", "--val-split", "0", *TRAIN],
     "--val-split must be between 0 and 1 (exclusive), got 0.0"),
    ("val fraction 1", "train_dnn.py", ["--data", f"{IN}/train.csv", "--val-split", "1", *TRAIN],
     "--val-split must be between 0 and 1 (exclusive), got 1.0"),
    ("val fraction leaving no validation", "train_dnn.py",
     ["--data", f"{IN}/train.csv", "--val-split", "0.001", *TRAIN],
     "--val-split 0.001 leaves no images for validation (70 images)"),
    ("unknown precision", "train_dnn.py",
     ["--data", f"{IN}/train.csv", "--precision", "fp8", *TRAIN],
     argparse_message("dnn", ["--precision", "fp8"])),
    ("epochs not a number", "train_dnn.py",
     ["--data", f"{IN}/train.csv", "--epochs", "ten", *TRAIN],
     argparse_message("dnn", ["--epochs", "ten"])),
    ("unknown preset", "train_dnn.py", ["--data", f"{IN}/train.csv", "--preset", "nope", *TRAIN],
     "unknown preset 'nope' for the dnn (available: "
     f"{', '.join(configuration.available_presets('dnn')) or 'none'})"),
    ("no data", "train_dnn.py", [*TRAIN], "--data is required (or --resume RUN)"),
    ("seed given twice", "train_dnn.py",
     ["--data", f"{IN}/train.csv", "--seeds", "1", "2", "1", *TRAIN],
     "--seeds: seed 1 is given twice"),
    ("run folder exists", "train_dnn.py",
     ["--data", f"{IN}/train.csv", "--out", OUT, "--name", "earlier", "--quiet"],
     f"{OUT}/earlier: a run already exists there (use --resume {OUT}/earlier to continue it)"),
    ("--out is a file", "train_dnn.py",
     ["--data", f"{IN}/train.csv", "--out", f"{OUT}/existing.csv", "--quiet"],
     f"{OUT}/existing.csv: is a file, expected the folder that run folders go in (--out)"),
    ("resume a missing run", "train_dnn.py", ["--resume", f"{IN}/nowhere"],
     f"{IN}/nowhere: no such run folder"),
    ("resume a folder that is no run", "train_dnn.py", ["--resume", f"{IN}/folder"],
     f"{IN}/folder: not a run folder (it has no config.json)"),
    ("resume a folder with another tool's config.json", "train_dnn.py",
     ["--resume", f"{IN}/foreign_run"],
     f"{IN}/foreign_run/config.json: not a ferkit run's config.json (no network and data)"),
    ("resume with another option", "train_dnn.py",
     ["--resume", f"{IN}/finished", "--lr", "0.1"],
     f"--lr cannot be given with --resume: a resumed run keeps the options in "
     f"{IN}/finished/config.json (only --epochs, --quiet and --run-data may be given)"),
    ("resume with a switch", "train_dnn.py", ["--resume", f"{IN}/finished", "--no-flip"],
     f"--no-flip cannot be given with --resume: a resumed run keeps the options in "
     f"{IN}/finished/config.json (only --epochs, --quiet and --run-data may be given)"),
    ("resume a finished run", "train_dnn.py", ["--resume", f"{IN}/finished"],
     f"{IN}/finished: already finished its 2 epochs (give --epochs with more to train it longer)"),
    ("resume with fewer epochs", "train_dnn.py", ["--resume", f"{IN}/finished", "--epochs", "1"],
     f"--epochs 1: {IN}/finished has already trained 2 epochs"),
    ("resume without checkpoint/", "train_dnn.py", ["--resume", f"{IN}/no_checkpoint"],
     f"{IN}/no_checkpoint: has model.keras but no checkpoint/state.json to resume from; "
     "start a new run to train again"),
    ("resume without model.keras", "train_dnn.py", ["--resume", f"{IN}/lost_model"],
     f"{IN}/lost_model: model.keras (the best epoch, 1) is missing; cannot resume"),
    ("resume a config.json edited by hand", "train_dnn.py", ["--resume", f"{IN}/edited_config"],
     f"{IN}/edited_config/config.json: --seed must be at most 4294967295, got 1099511627776"),
    ("resume with zero epochs", "train_dnn.py", ["--resume", f"{IN}/finished", "--epochs", "0"],
     "--epochs must be at least 1, got 0"),
    ("resume with the other network's script", "train_cnn.py", ["--resume", f"{IN}/finished"],
     f"{IN}/finished: is a DNN run; resume it with train_dnn.py"),
    ("resume an early-stopped run", "train_dnn.py", ["--resume", f"{IN}/stopped"],
     f"{IN}/stopped: already finished: it stopped early at epoch 2 after 30 epochs without "
     "val_accuracy improvement"),
    ("resume without its checkpoint", "train_dnn.py", ["--resume", f"{IN}/lost_checkpoint"],
     f"{IN}/lost_checkpoint/checkpoint/state.json: names the checkpoint epoch-0001.keras, "
     "which is missing"),
    ("resume after the data changed", "train_dnn.py", ["--resume", f"{IN}/changed_data"],
     f"{IN}/train.csv: changed since the run started; cannot resume {IN}/changed_data"),
    ("nothing to do", "predict.py", [*PREDICT],
     "nothing to do: give --out, --proba or --labels (a test file with its own labels is "
     "scored on them when --out or --proba is given)"),
    ("submission exists", "predict.py", [*PREDICT, "--out", f"{OUT}/existing.csv"],
     f"{OUT}/existing.csv: already exists (pass --force to overwrite it)"),
    # Refused before the model runs: refused when written, new.csv was already there.
    ("probability file exists", "predict.py",
     [*PREDICT, "--out", f"{OUT}/new.csv", "--proba", f"{OUT}/existing.csv"],
     f"{OUT}/existing.csv: already exists (pass --force to overwrite it)"),
    ("--out is a folder", "predict.py", [*PREDICT, "--out", OUT, "--force"],
     f"{OUT}: is a folder, expected a file name for --out"),
    ("--out is the test file", "predict.py", [*PREDICT, "--out", f"{IN}/test.csv", "--force"],
     f"{IN}/test.csv: is the --test file; --out must not overwrite it"),
    ("--out is the model file", "predict.py",
     [*PREDICT, "--out", f"{IN}/model.keras", "--force"],
     f"{IN}/model.keras: is the model {IN}/model.keras; --out must not overwrite it"),
    ("--proba is a member", "ensemble.py",
     [f"{IN}/proba.csv", f"{IN}/model.keras", "--test", f"{IN}/test.csv", "--proba",
      f"{IN}/proba.csv", "--force"],
     f"{IN}/proba.csv: is member {IN}/proba.csv; --proba must not overwrite it"),
    ("--weights not finite", "ensemble.py",
     [f"{IN}/model.keras", f"{IN}/model.keras", "--test", f"{IN}/test.csv", "--weights",
      "nan,1", "--out", f"{OUT}/s.csv"],
     "--weights: need one finite, non-negative weight per member, not all zero, got nan,1"),
    # Checked before the test file is read or Keras started (the test file is missing).
    ("--weights count before the test file", "ensemble.py",
     [f"{IN}/model.keras", f"{IN}/proba.csv", "--test", f"{IN}/nowhere.csv", "--weights",
      "1,2,3", "--out", f"{OUT}/s.csv"],
     "--weights gives 3 weights for 2 members"),
    ("member that is not a model", "ensemble.py",
     [f"{IN}/model.keras", f"{IN}/not_a_model.keras", "--test", f"{IN}/nowhere.csv", "--out",
      f"{OUT}/s.csv"],
     f"{IN}/not_a_model.keras: not a Keras model (a .keras file is a zip archive, this is not)"),
    ("member that is neither model nor probabilities", "ensemble.py",
     [f"{IN}/model.keras", f"{IN}/a_file", "--test", f"{IN}/nowhere.csv", "--out",
      f"{OUT}/s.csv"],
     f"{IN}/a_file: not a member: expected a run folder, a .keras or .h5 model or a "
     "probability file (.csv) from predict.py --proba"),
    # Before the model runs: --out used to be written, then --proba failed, naming a
    # hidden temporary file.
    ("--proba in a folder that is a file", "predict.py",
     [*PREDICT, "--out", f"{OUT}/s.csv", "--proba", f"{OUT}/existing.csv/p.csv"],
     f"{OUT}/existing.csv/p.csv: cannot be written ({OUT}/existing.csv is a file, not a "
     "folder)"),
    ("--out is --proba", "predict.py",
     [*PREDICT, "--out", f"{OUT}/s.csv", "--proba", f"{OUT}/s.csv"],
     f"{OUT}/s.csv: given as both --out and --proba"),
    ("zero batch size (predict)", "predict.py",
     [*PREDICT, "--out", f"{OUT}/s.csv", "--batch-size", "0"],
     "--batch-size must be at least 1, got 0"),
    ("model does not exist", "predict.py",
     [f"{IN}/nowhere.keras", "--test", f"{IN}/test.csv", "--out", f"{OUT}/s.csv"],
     f"{IN}/nowhere.keras: no such run folder or model file"),
    ("run folder without a model", "predict.py",
     [f"{IN}/run_without_model", "--test", f"{IN}/test.csv", "--out", f"{OUT}/s.csv"],
     f"{IN}/run_without_model: run folder has no model.keras (did its training finish?)"),
    ("model file that is text", "predict.py",
     [f"{IN}/not_a_model.keras", "--test", f"{IN}/test.csv", "--out", f"{OUT}/s.csv"],
     f"{IN}/not_a_model.keras: not a Keras model (a .keras file is a zip archive, this is not)"),
    ("h5 model that is text", "predict.py",
     [f"{IN}/not_a_model.h5", "--test", f"{IN}/test.csv", "--out", f"{OUT}/s.csv"],
     f"{IN}/not_a_model.h5: not a Keras model (a .h5 file is HDF5, this is not)"),
    ("data file given as model", "predict.py",
     [f"{IN}/train.csv", "--test", f"{IN}/test.csv", "--out", f"{OUT}/s.csv"],
     f"{IN}/train.csv: not a model file: expected a run folder, a .keras file or a legacy "
     ".h5 file"),
    ("duplicate test ids", "predict.py",
     [f"{IN}/model.keras", "--test", f"{IN}/duplicate_ids.csv", "--out", f"{OUT}/s.csv"],
     f"{IN}/duplicate_ids.csv: line 4: duplicate id 1"),
    ("test file does not exist", "predict.py",
     [f"{IN}/model.keras", "--test", f"{IN}/nowhere.csv", "--out", f"{OUT}/s.csv"],
     f"{IN}/nowhere.csv: no such file"),
    ("labels file given as test file", "predict.py",
     [f"{IN}/model.keras", "--test", f"{IN}/labels.csv", "--out", f"{OUT}/s.csv"],
     f"{IN}/labels.csv: no pixel column: expected 'feature' or 'pixels', found id, label"),
    ("test file given as labels", "predict.py",
     [*PREDICT, "--labels", f"{IN}/test.csv"],
     f"{IN}/test.csv: expected the columns id,label, found id, feature"),
    ("probabilities given as labels", "predict.py",
     [*PREDICT, "--labels", f"{IN}/proba.csv"],
     f"{IN}/proba.csv: expected the columns id,label, found id, {', '.join(data.CLASS_NAMES)}"),
    ("labels with ids not in the test file", "predict.py",
     [*PREDICT, "--labels", f"{IN}/labels_unknown_id.csv", "--out", f"{OUT}/s.csv"],
     f"{IN}/labels_unknown_id.csv: 1 id(s) not in {IN}/test.csv, the first being 99"),
    ("labels with ids not in the --data file", "confusion.py",
     [f"{IN}/model.keras", "--data", f"{IN}/test.csv", "--labels", f"{IN}/labels_unknown_id.csv"],
     f"{IN}/labels_unknown_id.csv: 1 id(s) not in {IN}/test.csv, the first being 99"),
    ("usage of a file without Usage", "predict.py",
     [*PREDICT, "--usage", "PublicTest", "--out", f"{OUT}/s.csv"],
     f"{IN}/test.csv: --usage needs a 'Usage' column, found id, feature"),
    # The three that must start Keras to see the model; --force: the old file must survive.
    ("model input 32x32", "predict.py",
     [f"{IN}/input_32.keras", *OVER_EXISTING],
     f"{IN}/input_32.keras: model input is (32, 32, 1), expected (48, 48, 1)"),
    ("model output 10 classes", "predict.py",
     [f"{IN}/output_10.keras", *OVER_EXISTING],
     f"{IN}/output_10.keras: model outputs 10 classes, expected 7"),
    ("model with a Lambda layer", "predict.py",
     [f"{IN}/lambda.keras", *OVER_EXISTING],
     f"{IN}/lambda.keras: holds a Lambda layer (arbitrary code); refused, pass --unsafe only "
     "if you trust where this file came from"),
]
# fmt: on
CASES = [case if hasattr(case, "marks") else pytest.param(*case, id=case[0]) for case in CASES]


@pytest.mark.parametrize("case_id, script, arguments, message", CASES)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    inputs, tmp_path, case_id, script, arguments, message
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "existing.csv").write_bytes(b"precious\n")
    if case_id == "run folder exists":
        (out / "earlier").mkdir()
        (out / "earlier" / "config.json").write_text('{"epochs": 1}\n')
    before, inputs_before = snapshot(out), snapshot(inputs)

    def fill(text):
        return text.replace(IN, inputs).replace(OUT, str(out))

    result = run_script(script, *map(fill, arguments))

    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.splitlines() == [f"{script}: error: {fill(message)}"]
    # Nothing new and nothing changed: no run folder, no output, inputs untouched.
    assert snapshot(out) == before
    assert snapshot(inputs) == inputs_before


# --- Interruptions and reproducibility -------------------------------------------------------
#
# Three runs of the same command start together (together is faster than one after another
# where there are cores to share): one runs to the end, one is killed with SIGKILL and one gets
# Ctrl-C (SIGINT), each 0.3 s after epoch 2 of 3 starts. On the 2-core machine these tests
# were written on an epoch takes 1-3 s (900 images in batches of 8), so the signal lands in
# the middle of epoch 2; on a faster machine it may land in epoch 3, which tests the same
# promise.
# The tests work out from the saved state which epoch was interrupted.

EPOCHS = 3
SIGNAL_AFTER = f"Epoch 2/{EPOCHS}"


class Background:
    """A script running in the background, its output going to files that can be polled."""

    def __init__(self, folder, name, *arguments):
        self.stdout_path = os.path.join(folder, f"{name}.stdout")
        self.stderr_path = os.path.join(folder, f"{name}.stderr")
        with open(self.stdout_path, "w") as stdout, open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, *arguments],
                cwd=REPOSITORY,
                stdout=stdout,
                stderr=stderr,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                # A shell starting pytest in the background leaves SIGINT ignored, and
                # Python then never raises KeyboardInterrupt: give the script the default.
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )
        self.signalled_at = None

    def printed(self, line):
        # The script is still writing: the file can end mid-line, even inside a multi-byte
        # character (a table rule once split at byte 8,191 and failed to decode). Only lines
        # already ended by a newline count.
        written = Path(self.stdout_path).read_bytes()
        complete = written[: written.rfind(b"\n") + 1]
        return line in complete.decode("utf-8", errors="replace").splitlines()

    def wait(self):
        self.process.wait(timeout=SCRIPT_TIMEOUT)
        return self.process.returncode, Path(self.stderr_path).read_text()


def history(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as file:
        return list(csv.DictReader(file))


def state(run_dir):
    return json.loads(Path(run_dir, "checkpoint", "state.json").read_text())


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("interrupted"))
    # Enough rows that epochs 2 and 3 outlast the signal's delay even with the fast CPU
    # training step (with 350 a run once finished before its Ctrl-C arrived).
    train_csv = make_train_csv(os.path.join(folder, "train.csv"), count=1000)
    command = ["train_dnn.py", "--data", train_csv, "--epochs", str(EPOCHS), "--batch-size", "8"]
    # Cosine: the learning rate changes between the epochs, so resuming must restore it.
    command += ["--schedule", "cosine", "--precision", "float32", "--seed", "3", "--quiet"]
    command += ["--out", folder]
    runs_by_name = {
        name: Background(folder, name, *command, "--name", name)
        for name in ("straight", "killed", "stopped")
    }
    pending = {"killed": signal.SIGKILL, "stopped": signal.SIGINT}
    deadline = time.monotonic() + SCRIPT_TIMEOUT
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            run = runs_by_name[name]
            if run.process.poll() is not None:
                pending.pop(name)  # ended before epoch 2: the tests below say how
                continue
            if run.signalled_at is None and run.printed(SIGNAL_AFTER):
                run.signalled_at = time.monotonic() + 0.3  # into epoch 2's steps
            if run.signalled_at is not None and time.monotonic() >= run.signalled_at:
                run.process.send_signal(pending.pop(name))
        time.sleep(0.05)
    results = {name: run.wait() for name, run in runs_by_name.items()}
    assert results["straight"][0] == 0, results["straight"][1][-3000:]
    # Read now, before a test resumes the run and rewrites them.
    killed = os.path.join(folder, "killed")
    after_kill = {"history": history(killed), "state": state(killed)}
    return {"folder": folder, "results": results, "after_kill": after_kill}


COMPARED = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr")
# Resuming continues bit for bit on this CPU (measured); 1e-6 leaves room for a backend
# whose kernels reorder sums between processes.
RESUME_TOLERANCE = 1e-6


def comparable_state(run_dir):
    """state.json without what may differ between equal runs: times and file names."""
    saved = state(run_dir)
    saved.pop("checkpoint")
    for row in saved["history"]:
        row.pop("seconds")
        row.pop("train_seconds")
    return saved


def test_sigkill_mid_epoch_then_resume_ends_like_an_uninterrupted_run(interrupted):
    folder = interrupted["folder"]
    killed, straight = os.path.join(folder, "killed"), os.path.join(folder, "straight")
    code, _ = interrupted["results"]["killed"]
    assert code == -signal.SIGKILL
    # Killed during epoch 2 or 3: the epochs before it are saved whole, it not at all. (A
    # kill between writing history.csv and the checkpoint leaves history one row ahead.)
    saved = interrupted["after_kill"]["state"]["epoch"]
    assert saved in (1, 2)
    assert len(interrupted["after_kill"]["history"]) in (saved, saved + 1)

    result = run_script("train_dnn.py", "--resume", killed, "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Resuming {killed} after epoch {saved}" in result.stdout

    # The optimiser's moments, the schedule, the random state, best model and history all
    # carried over: the resumed run ends as the uninterrupted one did.
    expected, got = comparable_state(straight), comparable_state(killed)
    assert got.keys() == expected.keys()
    for key in got:
        if key != "history":
            assert got[key] == pytest.approx(expected[key], rel=RESUME_TOLERANCE), key
    for expected_row, got_row in zip(expected["history"], got["history"], strict=True):
        for column in COMPARED:
            assert got_row[column] == pytest.approx(expected_row[column], rel=RESUME_TOLERANCE)
    assert [row["lr"] for row in history(killed)] == [row["lr"] for row in history(straight)]
    assert len({row["lr"] for row in history(killed)}) == EPOCHS  # the schedule did move
    images = synthetic_images(16, seed=9)[0][..., None]
    np.testing.assert_allclose(
        runs.load_model(killed).predict(images, verbose=0),
        runs.load_model(straight).predict(images, verbose=0),
        rtol=RESUME_TOLERANCE,
        atol=1e-7,
    )
    left = os.listdir(killed) + os.listdir(os.path.join(killed, "checkpoint"))
    assert not [name for name in left if ".tmp" in name]
    assert sorted(os.listdir(os.path.join(killed, "checkpoint"))) == [
        f"epoch-{EPOCHS:04d}.keras",
        "state.json",
    ]


def test_ctrl_c_stops_with_status_130_after_saving_and_says_how_to_resume(interrupted):
    stopped = os.path.join(interrupted["folder"], "stopped")
    code, stderr = interrupted["results"]["stopped"]
    assert code == 130
    saved = state(stopped)
    assert saved["epoch"] in (1, 2)
    finished = saved["epoch"]
    resume = f"epoch {finished} is saved. Resume with: python train_dnn.py --resume {stopped}"
    assert stderr.splitlines() in (
        [f"train_dnn.py: interrupted during epoch {finished + 1}; {resume}"],
        # Ctrl-C just after the checkpoint was written, before the next epoch began.
        [f"train_dnn.py: interrupted after epoch {finished}; {resume}"],
    )
    # Stopped cleanly: the state, the checkpoint it names, history and best model agree.
    assert os.path.exists(os.path.join(stopped, "checkpoint", saved["checkpoint"]))
    assert len(history(stopped)) == saved["epoch"]
    assert os.path.exists(os.path.join(stopped, "model.keras"))
    assert not os.path.exists(os.path.join(stopped, "metrics.json"))


def test_same_seed_same_machine_gives_the_same_history(interrupted):
    folder = interrupted["folder"]
    straight = state(os.path.join(folder, "straight"))["history"]
    # Exact: three fresh processes, same data, options, seed and backend (measured on the
    # TensorFlow CPU backend with oneDNN: bit-identical, full float precision in state.json).
    # The epochs the interrupted runs finished before their signal are the straight run's.
    stopped = state(os.path.join(folder, "stopped"))["history"]
    killed = interrupted["after_kill"]["state"]["history"]
    for rows in (stopped, killed):
        assert rows, "no epoch finished before the signal"
        for row, expected in zip(rows, straight):
            assert {column: row[column] for column in COMPARED} == {
                column: expected[column] for column in COMPARED
            }


def test_config_records_what_reproducing_a_run_needs(interrupted):
    run_dir = os.path.join(interrupted["folder"], "straight")
    config = json.loads(Path(run_dir, "config.json").read_text())
    assert config["data_sha256"] == data.file_sha256(config["data"])
    assert config["precision"] == "float32" and config["precision_resolved"] == "float32"
    assert config["seed"] == 3 and config["split"]["val_indices_sha256"]
    versions = config["versions"]
    for key in ("ferkit", "keras", "backend", "numpy", "python", "machine", "cpu_count"):
        assert versions[key], key
    assert versions.get(versions["backend"]), "the backend library's own version"
    # The DNN's own two threads, though this pytest process's ferkit set one for itself.
    threads = ferkit._USER_INTEROP_THREADS or str(configuration.INTEROP_THREADS["dnn"])
    assert config["environment"]["TF_NUM_INTEROP_THREADS"] == threads
    # The commit it was trained from, where the code is a git checkout (CI's is; a copy of
    # the files without .git records none).
    head = None
    if shutil.which("git"):
        git = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=runs.REPOSITORY, capture_output=True, text=True
        )
        head = git.stdout.strip() if git.returncode == 0 else None
    assert (config["source"] or {}).get("commit") == head
    assert Path(run_dir, "command.txt").read_text().split()[1:3] == ["train_dnn.py", "--data"]


# --- Atomic writes ----------------------------------------------------------------------------


def leftovers(folder):
    return [name for name in os.listdir(folder) if files.LEFTOVER.match(name)]


def test_checkpoint_write_failing_mid_way_keeps_the_last_good_one(train_csv, tmp_path, monkeypatch):
    run_dir = str(tmp_path / "run")
    real_save = keras.Model.save

    def save_failing_on_epoch_two_checkpoint(self, path, *args, **kwargs):
        # The checkpoint's temporary name only: the staged best of the epoch
        # (.best-epoch-0002...) is saved before it and must not fail in its place.
        if os.path.basename(path).lstrip(".").startswith("epoch-0002"):
            Path(path).write_bytes(b"PK\x03\x04 a third of a zip")  # then the disk fills
            raise OSError(28, "No space left on device")
        return real_save(self, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", save_failing_on_epoch_two_checkpoint)
    with pytest.raises(FerError) as error:
        training.train(tiny_config(train_csv), run_dir, verbose=False)
    # It said only "No space left on device": no file, no epoch, no way on.
    assert str(error.value).startswith(
        f"{run_dir}: No space left on device during epoch 2; epoch 1 is saved. Once it is "
        "fixed, resume with: "
    )
    checkpoint = os.path.join(run_dir, "checkpoint")
    assert state(run_dir)["epoch"] == 1
    assert len(history(run_dir)) == 1  # as the checkpoint saved: it had epoch 2 already
    # A best model staged in epoch 2 may wait there; state.json does not name it.
    kept = [name for name in os.listdir(checkpoint) if not name.startswith("best-epoch-")]
    assert sorted(kept) == ["epoch-0001.keras", "state.json"]
    assert leftovers(run_dir) == [] and leftovers(checkpoint) == []
    keras.saving.load_model(os.path.join(checkpoint, "epoch-0001.keras"))  # whole


# --- Divergence -------------------------------------------------------------------------------


def test_nan_loss_stops_naming_the_epoch_and_keeps_the_best_model(train_csv, tmp_path):
    run_dir = str(tmp_path / "run")
    # Adam at a learning rate of a million: epoch 1's loss is huge, epoch 2's NaN (on this
    # CPU; the assertions allow the NaN to come in another epoch elsewhere).
    config = tiny_config(train_csv, epochs=4, lr=1e6)
    with pytest.raises(FerError) as error:
        training.train(config, run_dir, verbose=False)
    finished = len(history(run_dir))
    epoch = finished + 1
    if finished:
        best = state(run_dir)["best_epoch"]
        kept = f"the best model so far (epoch {best}) is kept in {run_dir}"
        model = runs.load_model(run_dir)
        assert np.isfinite(model.predict(synthetic_images(4)[0][..., None], verbose=0)).all()
    else:
        kept = f"no epoch had finished, so no model was saved: remove {run_dir} and start again"
    assert str(error.value) == (
        f"training diverged: the loss became NaN at epoch {epoch}; {kept}; "
        "try a lower --lr (was 1e+06)"
    )
    assert not os.path.exists(os.path.join(run_dir, "metrics.json"))


# --- Safe loading -----------------------------------------------------------------------------


def test_lambda_layer_refused_unless_unsafe_in_keras_and_h5_files(tmp_path):
    model = small_model(lambda_layer=True)
    for name in ("lambda.keras", "lambda.h5"):
        path = str(tmp_path / name)
        model.save(path)
        with pytest.raises(FerError, match=r"holds a Lambda layer \(arbitrary code\); refused"):
            runs.load_model(path)
        assert runs.load_model(path, unsafe=True).output_shape == (None, 7)


def test_predict_runs_a_lambda_model_only_with_unsafe(tmp_path):
    path = str(tmp_path / "lambda.keras")
    small_model(lambda_layer=True).save(path)
    test_csv = make_test_csv(tmp_path / "test.csv", count=4)
    result = run_script(
        "predict.py", path, "--test", test_csv, "--out", str(tmp_path / "s.csv"), "--unsafe"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 5


KERAS_3_ONLY = {"module", "registered_name", "build_config", "optional", "quantization_config"}


def as_keras_2(value):
    """A Keras 3 model config in the shape Keras 2 (tf.keras 2.15) wrote it."""
    if isinstance(value, list):
        return [as_keras_2(item) for item in value]
    if not isinstance(value, dict):
        return value
    if value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
        return value["config"]["name"]  # Keras 2 wrote the dtype as a plain string
    converted = {}
    for key, item in value.items():
        if key in KERAS_3_ONLY:
            continue
        if key == "batch_shape":
            key = "batch_input_shape"
        if key == "inbound_nodes" and item:
            # Keras 2's nodes: [[[layer, node index, tensor index, kwargs], ...], ...]
            item = [
                [[*arg["config"]["keras_history"], {}] for arg in node["args"]] for node in item
            ]
        converted[key] = as_keras_2(item)
    return converted


def save_keras_2_h5(model, path):
    """``model`` as a Keras 2 .h5 file: Keras 3's legacy writer, then Keras 2's config shape,
    version and weight names ("kernel:0")."""
    model.save(path)
    with h5py.File(path, "r+") as file:
        file.attrs["model_config"] = json.dumps(as_keras_2(json.loads(file.attrs["model_config"])))
        file.attrs["keras_version"] = file["model_weights"].attrs["keras_version"] = "2.15.0"
        for layer in file["model_weights"].values():
            names = [
                name.decode() if isinstance(name, bytes) else name
                for name in layer.attrs.get("weight_names", [])
            ]
            for name in names:
                layer.move(name, f"{name}:0")
            layer.attrs["weight_names"] = [f"{name}:0".encode() for name in names]


def test_legacy_keras_2_h5_loads_and_predicts_the_same(tmp_path):
    model = models.build_dnn()
    # Trained-looking weights: random batch-norm statistics, so that every weight matters.
    for weight in model.weights:
        values = np.random.default_rng(len(weight.path)).normal(0.5, 0.1, weight.shape)
        weight.assign(np.abs(values).astype("float32"))
    keras_path, h5_path = str(tmp_path / "dnn.keras"), str(tmp_path / "dnn.h5")
    model.save(keras_path)
    save_keras_2_h5(model, h5_path)
    with h5py.File(h5_path) as file:
        assert file.attrs["keras_version"] == "2.15.0"
        assert "batch_input_shape" in file.attrs["model_config"]
    images = synthetic_images(12, seed=5)[0][..., None]
    expected = runs.load_model(keras_path).predict(images, verbose=0)
    np.testing.assert_array_equal(runs.load_model(h5_path).predict(images, verbose=0), expected)

    test_csv = make_test_csv(tmp_path / "test.csv", count=12, seed=5)
    result = run_script(
        "predict.py", h5_path, "--test", test_csv, "--proba", str(tmp_path / "p.csv")
    )
    assert result.returncode == 0, result.stderr[-2000:]
    from ferkit import evaluation

    ids, probabilities = evaluation.read_probabilities(str(tmp_path / "p.csv"))
    assert ids == [str(row_id) for row_id in range(12)]
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)
