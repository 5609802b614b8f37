"""--distribute on a CPU split into two logical devices matches single-device training."""

import csv
import json
import math
import os
import subprocess
import sys

import keras
import pytest
from conftest import REPOSITORY, make_train_csv

# Not bit-identical: BatchNorm normalises each replica's half batch on its own, which moves
# the training-mode loss (measured: 2% in epoch 1, up to 60% once the tiny set is memorised),
# while the model itself, judged by validation loss in inference mode, stays within 1%.
# Dropout is off, since each replica would draw its own masks.
VALIDATION_TOLERANCE = 0.02
FIRST_EPOCH_LOSS_TOLERANCE = 0.05


def start(tmp_path, train_csv, name, *extra, devices="1"):
    """A training run in its own process (the logical devices are set before TensorFlow
    starts); ``finish`` waits for it. Runs started together share the cores."""
    environment = {
        **os.environ,
        "FERKIT_CPU_DEVICES": devices,  # TensorFlow's; JAX's is XLA's flag
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    }
    command = [
        sys.executable,
        "train_dnn.py",
        "--data",
        train_csv,
        "--epochs",
        "3",
        "--batch-size",
        "64",
        "--dropout-dense",
        "0",
        "--lr",
        "0.0003",
        "--precision",
        "float32",
        "--out",
        str(tmp_path),
        "--name",
        name,
        "--quiet",
        "--no-augment",
        *extra,
    ]
    process = subprocess.Popen(
        command,
        cwd=REPOSITORY,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, tmp_path / name


def finish(started):
    """(process, run folder, stdout, stderr) once the run has ended."""
    process, run_dir = started
    stdout, stderr = process.communicate(timeout=600)
    return process, run_dir, stdout, stderr


def succeeded(finished_run):
    """(history rows, stdout, config) of a run that must have ended well."""
    process, run_dir, stdout, stderr = finished_run
    assert process.returncode == 0, stderr[-2000:]
    with open(run_dir / "history.csv") as file:
        history = list(csv.DictReader(file))
    return history, stdout, json.loads((run_dir / "config.json").read_text())


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The three runs below, started together, each as ``finish`` gives it."""
    folder = tmp_path_factory.mktemp("distribute")
    # 141 faces: 127 to train on, in batches of 64 and a last one of 63 that the replicas
    # split 32/31.
    train_csv = make_train_csv(folder / "train.csv", count=141)
    # 63 training faces and --batch-size 128: one batch split 32/31 ended in a traceback;
    # batches that left a replica no faces made the loss NaN.
    small_csv = make_train_csv(folder / "small.csv", count=70)
    larger_batch = ["--distribute", "--batch-size", "128", "--epochs", "1"]  # the last wins
    # 5 training faces and 3 validation faces: no batch size splits them over 2 TensorFlow
    # replicas without leaving one empty (batches of 2, then 1).
    five_csv = make_train_csv(folder / "five.csv", count=5)
    tiny_validation = ["--val-data", make_train_csv(folder / "val.csv", count=3, seed=5)]
    started = {
        "single": start(folder, train_csv, "single"),
        "distributed": start(folder, train_csv, "distributed", "--distribute", devices="2"),
        "odd": start(folder, small_csv, "odd", *larger_batch, devices="2"),
        "few": start(folder, five_csv, "few", *larger_batch, *tiny_validation, devices="2"),
    }
    return {name: finish(run) for name, run in started.items()}


def test_two_logical_cpus_match_one(finished):
    single, _, config = succeeded(finished["single"])
    distributed, output, _ = succeeded(finished["distributed"])
    assert config["train_count"] == 127
    engine = "MirroredStrategy" if keras.config.backend() == "tensorflow" else "DataParallel"
    assert f"--distribute: 2 replicas ({engine})" in output  # both devices were used
    for one, two in zip(single, distributed, strict=True):
        assert float(two["val_loss"]) == pytest.approx(
            float(one["val_loss"]), rel=VALIDATION_TOLERANCE
        )
    assert float(distributed[0]["loss"]) == pytest.approx(
        float(single[0]["loss"]), rel=FIRST_EPOCH_LOSS_TOLERANCE
    )


def test_a_batch_larger_than_the_training_set_trains_on_two_logical_cpus(finished):
    history, output, config = succeeded(finished["odd"])
    assert config["train_count"] == 63 and "2 replicas" in output
    # Recorded as 128 (63 here): the batches it trained in are said.
    assert "--distribute: training batches of 60, to split over 2 replicas" in output
    assert len(history) == 1 and float(history[0]["loss"]) > 0


def test_five_training_and_three_validation_faces_train_on_two_logical_cpus(finished):
    history, _, config = succeeded(finished["few"])
    assert config["train_count"] == 5 and config["split"]["val_count"] == 3
    assert math.isfinite(float(history[0]["loss"]))
    assert math.isfinite(float(history[0]["val_loss"]))
    # Each face counted once: a dropped or padded face would give another fraction.
    assert float(history[0]["val_accuracy"]) * 3 == pytest.approx(
        round(float(history[0]["val_accuracy"]) * 3), abs=1e-4
    )
