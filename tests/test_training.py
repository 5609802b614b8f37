"""Training runs on tiny synthetic data: the run folder, resuming, seeds, errors."""

import argparse
import contextlib
import csv
import glob
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import keras
import pytest
from conftest import REPOSITORY, make_train_csv

from ferkit import checkpoints, data, evaluation, files, runs, training
from ferkit import config as configuration
from ferkit.errors import FerError

RUN_FILES = {"command.txt", "config.json", "model.keras", "history.csv", "metrics.json"}


def tiny_config(train_csv, network="dnn", **overrides):
    values = {"data": train_csv, "epochs": 2, "batch_size": 32, "precision": "float32"}
    values.update(overrides)
    return configuration.resolve(network, overrides=values)


def history(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as file:
        return list(csv.DictReader(file))


@pytest.mark.parametrize("fails", [False, True])
def test_training_puts_back_the_callers_dtype_policy(train_csv, tmp_path, monkeypatch, fails):
    # A run in mixed_bfloat16 (precision auto on a CPU with bfloat16) left it set: the next
    # model built in the process, a notebook's or a test's, came out in bfloat16.
    def train_in_bfloat16(*arguments):
        keras.config.set_dtype_policy("mixed_bfloat16")
        if fails:
            raise FerError("stopped")
        return arguments[1]

    monkeypatch.setattr(training, "_train", train_in_bfloat16)
    with contextlib.suppress(FerError):
        training.train(tiny_config(train_csv), str(tmp_path / "run"), verbose=False)
    assert keras.config.dtype_policy().name == "float32"


def test_two_epochs_write_every_run_file(train_csv, tmp_path):
    run_dir = training.train(tiny_config(train_csv, "cnn"), str(tmp_path / "run"), verbose=False)
    assert set(os.listdir(run_dir)) >= RUN_FILES
    rows = history(run_dir)
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert set(rows[0]) == set(checkpoints.HISTORY_COLUMNS)
    metrics = json.loads(Path(os.path.join(run_dir, "metrics.json")).read_text())
    for key in (
        "best_epoch",
        "best_val_accuracy",
        "best_val_loss",
        "wall_seconds",
        "train_images_per_second",
    ):
        assert key in metrics
    # The saved model is the best epoch's, and reloading it gives the recorded accuracy.
    assert metrics["reloaded_val_accuracy"] == pytest.approx(metrics["best_val_accuracy"], abs=1e-6)
    config = json.loads(Path(os.path.join(run_dir, "config.json")).read_text())
    assert config["split"]["val_count"] == 7 and len(config["split"]["val_indices_sha256"]) == 16
    assert config["precision_resolved"] == "float32" and "keras" in config["versions"]
    # What --blur auto matches test faces to: the training faces' sharpness, not validation's.
    train_set, _, _ = runs.load_training_data(config)
    assert config["train_sharpness"] == round(evaluation.sharpness(train_set.images), 4)
    # The saved model is the bare network: augmentation belongs to training only.
    saved = runs.load_model(run_dir)
    assert saved.name == "cnn" and saved.count_params() == 3_532_743
    assert not any(layer.name in ("augmentation", "affine") for layer in saved.layers)


def test_progress_written_to_a_file_is_one_plain_line_per_epoch(train_csv, tmp_path, capfd):
    # "train_cnn.py ... > run.log" filled the log with the bar's colour codes and redrawings.
    config = tiny_config(train_csv, epochs=1, batch_size=16)
    training.train(config, str(tmp_path / "run"), verbose=True)
    out = capfd.readouterr().out
    assert "\x1b[" not in out and "\r" not in out and "\b" not in out
    assert re.search(r"^4/4 - \d+s - .*loss: ", out, re.MULTILINE), out


def test_quiet_training_still_prints_the_training_scores_each_epoch(train_csv, tmp_path, capfd):
    # --quiet dropped Keras' line, the only one that had the training loss and accuracy.
    training.train(tiny_config(train_csv, epochs=1), str(tmp_path / "run"), verbose=False)
    row = history(str(tmp_path / "run"))[0]
    line = f"  loss {float(row['loss']):.4f} accuracy {float(row['accuracy']):.4f} val_loss "
    assert line in capfd.readouterr().out


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    """A finished one-epoch DNN run, trained once: the tests that change it take a copy."""
    folder = tmp_path_factory.mktemp("one_epoch")
    train_csv = make_train_csv(folder / "train.csv")
    return training.train(tiny_config(train_csv, epochs=1), str(folder / "run"), verbose=False)


def copy_run(run_dir, destination, data_file=None):
    """A copy of ``run_dir``; with ``data_file`` (the same rows), the run as trained on that
    file would be: a run names its data only by the path and hash in config.json."""
    shutil.copytree(run_dir, destination)
    if data_file is not None:
        config_path = os.path.join(destination, runs.CONFIG_FILE)
        recorded = files.read_json(config_path)
        assert recorded["data_sha256"] == data.file_sha256(data_file)
        files.write_json(config_path, {**recorded, "data": os.path.abspath(data_file)})
    return str(destination)


def record_saved_on(run_dir, backend_name):
    """Make a run's state.json say its checkpoint was saved on ``backend_name``."""
    state_path = Path(run_dir, "checkpoint", "state.json")
    state_path.write_text(
        json.dumps({**json.loads(state_path.read_text()), "saved_on": backend_name})
    )
    return state_path


def interrupt_epoch_two(monkeypatch):
    """Make the second epoch's fit raise KeyboardInterrupt (as Ctrl-C); returns the real fit."""
    real_fit, calls = keras.Model.fit, []

    def fit_interrupted_in_epoch_two(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit_interrupted_in_epoch_two)
    return real_fit


def test_resume_after_interruption_ends_like_an_uninterrupted_run(train_csv, tmp_path, monkeypatch):
    config = tiny_config(train_csv, epochs=3)
    straight = training.train(config, str(tmp_path / "straight"), verbose=False)

    real_fit = interrupt_epoch_two(monkeypatch)
    resumed_dir = str(tmp_path / "resumed")
    with pytest.raises(FerError, match="interrupted during epoch 2; epoch 1 is saved"):
        training.train(config, resumed_dir, verbose=False)
    assert [row["epoch"] for row in history(resumed_dir)] == ["1"]
    monkeypatch.setattr(keras.Model, "fit", real_fit)
    training.train(training.resume_config(resumed_dir), resumed_dir, resume=True, verbose=False)
    command = Path(resumed_dir, "command.txt").read_text().splitlines()
    assert len(command) == 2 and command[1].startswith("# resumed after epoch 1: ")

    for expected, got in zip(history(straight), history(resumed_dir), strict=True):
        for column in ("loss", "val_loss", "val_accuracy"):
            assert float(got[column]) == pytest.approx(float(expected[column]), rel=1e-4)


def test_a_run_copied_without_its_command_txt_still_resumes_and_records_it(one_epoch_run, tmp_path):
    # A resume that read command.txt to add its line failed after config.json had recorded
    # the new --epochs, and so did every resume after it.
    run_dir = copy_run(one_epoch_run, tmp_path / "run")
    os.remove(os.path.join(run_dir, "command.txt"))
    config = training.resume_config(run_dir, argparse.Namespace(epochs=2))
    training.train(config, run_dir, resume=True, verbose=False)
    assert [row["epoch"] for row in history(run_dir)] == ["1", "2"]
    lines = Path(run_dir, "command.txt").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("# resumed after epoch 1: ")


def test_a_run_killed_after_stopping_early_finishes_without_training_more(one_epoch_run, tmp_path):
    run_dir = copy_run(one_epoch_run, tmp_path / "run")
    # As left by a kill after early stopping's last checkpoint, before metrics.json.
    os.remove(os.path.join(run_dir, "metrics.json"))
    state_path = os.path.join(run_dir, "checkpoint", "state.json")
    state = json.loads(Path(state_path).read_text())
    Path(state_path).write_text(json.dumps({**state, "early_wait": 30}))
    config = training.resume_config(run_dir, argparse.Namespace(epochs=4))
    training.train(config, run_dir, resume=True, verbose=False)
    assert [row["epoch"] for row in history(run_dir)] == ["1"]
    assert os.path.exists(os.path.join(run_dir, "metrics.json"))


def test_a_finished_run_trained_longer_drops_its_old_metrics(one_epoch_run, tmp_path, monkeypatch):
    run_dir = copy_run(one_epoch_run, tmp_path / "run")
    metrics = os.path.join(run_dir, "metrics.json")
    assert os.path.exists(metrics)

    def interrupted(*arguments, **keywords):
        raise KeyboardInterrupt

    # Interrupted in its next epoch, the old metrics.json named best epoch 1 and 1 epoch run
    # while model.keras and state.json moved on.
    monkeypatch.setattr(training, "_train_one_epoch", interrupted)
    config = training.resume_config(run_dir, argparse.Namespace(epochs=3))
    with pytest.raises(FerError):
        training.train(config, run_dir, resume=True, verbose=False)
    assert not os.path.exists(metrics)


def test_a_run_whose_data_file_moved_resumes_with_run_data(train_csv, one_epoch_run, tmp_path):
    own = str(shutil.copy(train_csv, tmp_path / "own.csv"))
    run_dir = copy_run(one_epoch_run, tmp_path / "run", data_file=own)
    # Carried to another machine, where the same rows are a gzipped file of another name.
    packed = tmp_path / "elsewhere.csv.gz"
    packed.write_bytes(gzip.compress(Path(own).read_bytes()))
    os.remove(own)
    with pytest.raises(FerError, match="own.csv: no such file; .*resuming reads it again"):
        config = training.resume_config(run_dir, argparse.Namespace(epochs=2, run_data=[]))
        training.train(config, run_dir, resume=True, verbose=False)
    moved = argparse.Namespace(epochs=2, run_data=[str(packed)])
    training.train(training.resume_config(run_dir, moved), run_dir, resume=True, verbose=False)
    assert [row["epoch"] for row in history(run_dir)] == ["1", "2"]
    assert json.loads(Path(run_dir, "config.json").read_text())["data"] == own  # as recorded


def test_a_resume_names_a_missing_val_data_file_as_what_it_validated_on(one_epoch_run, tmp_path):
    run_dir = copy_run(one_epoch_run, tmp_path / "run")
    config_path = os.path.join(run_dir, runs.CONFIG_FILE)
    recorded = files.read_json(config_path)
    gone = str(tmp_path / "val.csv")
    validated = {"val_data": gone, "val_data_sha256": "0" * 64}
    split = {"val_data": gone, "val_count": recorded["split"]["val_count"]}
    files.write_json(config_path, {**recorded, **validated, "split": split})
    # It said the run "was trained on" the file it chose its best epoch on.
    with pytest.raises(FerError, match="val.csv: no such file; .*was validated on it, and resum"):
        config = training.resume_config(run_dir, argparse.Namespace(epochs=2, run_data=[]))
        training.train(config, run_dir, resume=True, verbose=False)


def test_a_refused_resume_leaves_what_a_kill_left(train_csv, one_epoch_run, tmp_path):
    own = str(shutil.copy(train_csv, tmp_path / "own.csv"))
    run_dir = copy_run(one_epoch_run, tmp_path / "run", data_file=own)
    leftover = Path(run_dir, ".model.k2j4_x9q.tmp.keras")
    leftover.write_text("a killed write")
    os.remove(own)
    with pytest.raises(FerError, match="own.csv: no such file"):
        config = training.resume_config(run_dir, argparse.Namespace(epochs=2, run_data=[]))
        training.train(config, run_dir, resume=True, verbose=False)
    assert leftover.exists()  # cleared only by a resume that goes ahead


def test_a_data_file_cut_short_since_the_run_started_is_called_changed(
    train_csv, one_epoch_run, tmp_path
):
    own = str(shutil.copy(train_csv, tmp_path / "own.csv"))
    run_dir = copy_run(one_epoch_run, tmp_path / "run", data_file=own)
    text = Path(own).read_text()
    Path(own).write_text(text[: len(text) * 2 // 3])  # a copy cut short: "expected 2304 pixels"
    config = training.resume_config(run_dir, argparse.Namespace(epochs=2))
    with pytest.raises(FerError, match="own.csv: changed since the run started; cannot resume"):
        training.train(config, run_dir, resume=True, verbose=False)


def test_the_budget_timer_times_validation_done_by_predicting():
    # JAX's --distribute validates by predicting when a batch does not split: the traced
    # first validation step went untimed, and the budget planned too many epochs.
    timer = training._step_timer()
    timer.on_predict_batch_begin(0)
    timer.on_predict_batch_end(0)
    assert len(timer.step_seconds["test"]) == 1


def test_a_closed_stdout_is_not_taken_for_a_failed_write(train_csv, tmp_path, monkeypatch):
    def reader_gone(*arguments):
        raise BrokenPipeError(32, "Broken pipe")

    # "| head" closing the pipe was "run_dir: Broken pipe during epoch 1 ... resume with".
    monkeypatch.setattr(training, "_train_one_epoch", reader_gone)
    with pytest.raises(BrokenPipeError):
        training.train(tiny_config(train_csv), str(tmp_path / "run"), verbose=False)


def test_a_resume_refused_for_a_damaged_best_model_changes_nothing(one_epoch_run, tmp_path):
    run_dir = copy_run(one_epoch_run, tmp_path / "run")
    model = Path(run_dir, "model.keras")
    model.write_bytes(model.read_bytes()[:1000])  # a copy cut short
    config = training.resume_config(run_dir, argparse.Namespace(epochs=2))
    # Found only when the resumed run ended, after its metrics.json was removed.
    with pytest.raises(
        FerError, match="model.keras: the best epoch's model \\(1\\) is not a whole"
    ):
        training.train(config, run_dir, resume=True, verbose=False)
    assert Path(run_dir, "metrics.json").exists() and len(history(run_dir)) == 1


def test_a_resume_refused_for_a_damaged_checkpoint_changes_nothing(one_epoch_run, tmp_path):
    run_dir = copy_run(one_epoch_run, tmp_path / "run")
    checkpoint = Path(run_dir, "checkpoint", "epoch-0001.keras")
    checkpoint.write_bytes(checkpoint.read_bytes()[:5000])  # a copy cut short
    before = {path.name: path.read_bytes() for path in Path(run_dir).iterdir() if path.is_file()}
    config = training.resume_config(run_dir, argparse.Namespace(epochs=3))
    # Keras said "File not found", and config.json had its epochs raised to 3 already.
    with pytest.raises(FerError, match="epoch-0001.keras: cannot be loaded \\(not a whole"):
        training.train(config, run_dir, resume=True, verbose=False)
    after = {path.name: path.read_bytes() for path in Path(run_dir).iterdir() if path.is_file()}
    assert after == before


@pytest.mark.parametrize("name", ["history.csv", "metrics.json"])
def test_a_resume_refused_for_a_folder_in_the_way_changes_nothing(one_epoch_run, tmp_path, name):
    run_dir = copy_run(one_epoch_run, tmp_path / "run")
    os.remove(Path(run_dir, name))
    Path(run_dir, name).mkdir()
    before = {path.name: path.read_bytes() for path in Path(run_dir).iterdir() if path.is_file()}
    config = training.resume_config(run_dir, argparse.Namespace(epochs=2))
    # Refused only when history.csv was written, after config.json had recorded epochs 2.
    with pytest.raises(FerError, match=f"run/{name}: is a folder, expected a file$"):
        training.train(config, run_dir, resume=True, verbose=False)
    after = {path.name: path.read_bytes() for path in Path(run_dir).iterdir() if path.is_file()}
    assert after == before


@pytest.mark.parametrize(
    "network, mixup, holds", [("cnn", 0.0, "'cnn' with 1 input"), ("dnn", 0.2, "'dnn' with 2")]
)
def test_another_runs_checkpoint_is_not_resumed(
    train_csv, one_epoch_run, tmp_path, network, mixup, holds
):
    run_dir = copy_run(one_epoch_run, tmp_path / "run")
    foreign = tiny_config(train_csv, network, epochs=1, mixup=mixup)
    training.train(foreign, str(tmp_path / "other"), verbose=False)
    # Copied over this run's own: a CNN's was trained on as the DNN and replaced its model.
    checkpoint = Path(run_dir, "checkpoint", "epoch-0001.keras")
    shutil.copy(tmp_path / "other" / "checkpoint" / "epoch-0001.keras", checkpoint)
    before = Path(run_dir, "model.keras").read_bytes()
    config = training.resume_config(run_dir, argparse.Namespace(epochs=2))
    with pytest.raises(
        FerError, match=f"epoch-0001.keras: not this run's training model .*{holds}"
    ):
        training.train(config, run_dir, resume=True, verbose=False)
    assert Path(run_dir, "model.keras").read_bytes() == before


def test_a_run_recorded_without_train_count_is_refused_naming_the_reader_change(
    one_epoch_run, tmp_path
):
    run_dir = copy_run(one_epoch_run, tmp_path / "run")
    config_path = Path(run_dir, "config.json")
    recorded = json.loads(config_path.read_text())
    del recorded["train_count"]  # as recorded before the readers changed: a KeyError
    config_path.write_text(json.dumps(recorded))
    with pytest.raises(FerError, match="differ from the ones it recorded \\(it was recorded"):
        config = training.resume_config(run_dir, argparse.Namespace(epochs=2))
        training.train(config, run_dir, resume=True, verbose=False)


def test_a_val_data_run_whose_validation_file_moved_resumes_with_run_data(train_csv, tmp_path):
    val_path = make_train_csv(tmp_path / "val.csv", count=14, seed=3)
    config = tiny_config(train_csv, epochs=1, val_data=val_path)
    run_dir = training.train(config, str(tmp_path / "run"), verbose=False)
    moved = shutil.move(val_path, tmp_path / "faces.csv")
    # The rebuilt split names the file where it is now: the recorded one is kept.
    resumed = training.resume_config(run_dir, argparse.Namespace(epochs=2, run_data=[str(moved)]))
    training.train(resumed, run_dir, resume=True, verbose=False)
    assert [row["epoch"] for row in history(run_dir)] == ["1", "2"]


def test_a_run_that_cannot_resume_says_so_before_asking_for_its_data(
    train_csv, one_epoch_run, tmp_path
):
    own = str(shutil.copy(train_csv, tmp_path / "own.csv"))
    run_dir = copy_run(one_epoch_run, tmp_path / "run", data_file=own)
    shutil.rmtree(os.path.join(run_dir, "checkpoint"))
    os.remove(own)
    # It asked for the data first, and refused the run only once the data was found.
    config = training.resume_config(run_dir, argparse.Namespace(epochs=2))
    with pytest.raises(FerError, match="has model.keras but no checkpoint/state.json"):
        training.train(config, run_dir, resume=True, verbose=False)


def test_run_data_without_resume_is_refused(train_csv, tmp_path):
    parser = training.add_arguments(argparse.ArgumentParser(), "dnn")
    arguments = ["--data", train_csv, "--run-data", train_csv, "--out", str(tmp_path)]
    with pytest.raises(FerError, match="--run-data finds a resumed run's moved data: give it"):
        training.main(parser.parse_args(arguments), "dnn")


def test_a_pipe_as_data_is_refused_before_anything_is_read_or_made(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    parser = training.add_arguments(argparse.ArgumentParser(), "dnn")
    arguments = ["--data", str(tmp_path / "pipe"), "--out", str(tmp_path / "runs")]
    # It was read (opening it waits for a writer), then refused with an empty run folder made.
    with pytest.raises(FerError, match=r"pipe: not a regular file \(a pipe\?\)"):
        training.main(parser.parse_args(arguments), "dnn")
    assert not (tmp_path / "runs").exists()


def test_a_run_is_never_made_inside_another_run_s_checkpoint_folder(train_csv, tmp_path):
    (tmp_path / "base" / "checkpoint").mkdir(parents=True)
    (tmp_path / "base" / "config.json").write_text("{}")
    (tmp_path / "base" / "checkpoint" / "state.json").write_text("{}")
    parser = training.add_arguments(argparse.ArgumentParser(), "dnn")
    out = str(tmp_path / "base" / "checkpoint" / "runs")
    arguments = ["--data", train_csv, "--out", out, "--name", "x"]
    with pytest.raises(FerError, match="is inside .*base/checkpoint, a run's checkpoint folder"):
        training.main(parser.parse_args(arguments), "dnn")
    assert os.listdir(tmp_path / "base" / "checkpoint") == ["state.json"]


def test_ctrl_c_before_epoch_one_says_how_to_resume(train_csv, tmp_path, monkeypatch):
    def interrupted(config):
        raise KeyboardInterrupt

    # Ctrl-C while Keras starts or the model is built: it said only "interrupted".
    monkeypatch.setattr(training, "build_training_model", interrupted)
    parser = argparse.ArgumentParser()
    training.add_arguments(parser, "dnn")
    arguments = ["--data", train_csv, "--name", "r", "--out", str(tmp_path / "o"), "--quiet"]
    with pytest.raises(training.TrainingInterruptedError) as error:
        training.main(parser.parse_args(arguments), "dnn")
    run_dir = str(tmp_path / "o" / "r")
    running = keras.config.backend()
    environment = "" if running == "tensorflow" else f"KERAS_BACKEND={running} "
    assert str(error.value) == (
        f"interrupted before epoch 1; resume with: {environment}python train_dnn.py --resume "
        f"{run_dir}"
    )


@pytest.mark.skipif(sys.platform == "win32", reason="no flock")
def test_a_run_being_trained_is_not_resumed_by_another(one_epoch_run, tmp_path):
    import fcntl

    run_dir = copy_run(one_epoch_run, tmp_path / "run")
    before = {path.name: path.stat().st_mtime_ns for path in Path(run_dir).rglob("*")}
    # As another process training it holds it: two resumes replaced each other's checkpoints.
    descriptor = os.open(run_dir, os.O_RDONLY)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    try:
        config = training.resume_config(run_dir, argparse.Namespace(epochs=2))
        with pytest.raises(FerError, match="another process is training this run"):
            training.train(config, run_dir, resume=True, verbose=False)
    finally:
        os.close(descriptor)
    assert {path.name: path.stat().st_mtime_ns for path in Path(run_dir).rglob("*")} == before
    training.train(config, run_dir, resume=True, verbose=False)  # released: it resumes
    assert len(history(run_dir)) == 2


def test_ctrl_c_while_a_resume_starts_says_how_to_resume(one_epoch_run, tmp_path, monkeypatch):
    run_dir = copy_run(one_epoch_run, tmp_path / "run")

    def interrupted(*arguments):
        raise KeyboardInterrupt

    # Ctrl-C while the checkpoint loaded (seconds for the CNN) said only "interrupted".
    monkeypatch.setattr(training, "_load_checkpoint", interrupted)
    parser = training.add_arguments(argparse.ArgumentParser(), "dnn")
    arguments = ["--resume", run_dir, "--epochs", "2", "--quiet"]
    with pytest.raises(training.TrainingInterruptedError) as error:
        training.main(parser.parse_args(arguments), "dnn")
    assert str(error.value).startswith("interrupted before the resumed epochs began; resume with:")
    assert str(error.value).endswith(f"python train_dnn.py --resume {run_dir}")


def test_ctrl_c_while_a_resume_starts_names_the_backend_that_saved_the_checkpoint(
    one_epoch_run, tmp_path, monkeypatch
):
    # Begun on TensorFlow and resumed on PyTorch, a run printed a command without
    # KERAS_BACKEND (config.json's backend): on TensorFlow its checkpoint cannot load.
    run_dir = copy_run(one_epoch_run, tmp_path / "run")
    other = "jax" if keras.config.backend() == "torch" else "torch"
    record_saved_on(run_dir, other)

    def interrupted(*arguments):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "_load_checkpoint", interrupted)
    parser = training.add_arguments(argparse.ArgumentParser(), "dnn")
    with pytest.raises(training.TrainingInterruptedError) as error:
        training.main(parser.parse_args(["--resume", run_dir, "--epochs", "2"]), "dnn")
    assert str(error.value).endswith(
        f"KERAS_BACKEND={other} python train_dnn.py --resume {run_dir}"
    )


@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="TensorFlow's XLA")
def test_jit_on_with_augmentation_is_refused_on_tensorflow(train_csv, tmp_path):
    parser = training.add_arguments(argparse.ArgumentParser(), "dnn")
    arguments = ["--data", train_csv, "--out", str(tmp_path / "o"), "--jit", "on"]
    with pytest.raises(FerError, match="--jit on: TensorFlow's XLA cannot compile the augm"):
        training.main(parser.parse_args(arguments), "dnn")
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="TensorFlow's XLA")
def test_jit_on_without_an_affine_transform_is_not_refused_on_tensorflow():
    # Random erasing alone builds no RandomAffine, the one layer XLA cannot compile there.
    config = tiny_config("unread.csv", horizontal_flip=False, random_erasing=0.5, jit="on")
    for key in ("rotation_range", "width_shift_range", "height_shift_range", "zoom_range"):
        config[key] = 0.0
    training._check_backend(config)
    with pytest.raises(FerError, match="--jit on: TensorFlow's XLA cannot compile"):
        training._check_backend({**config, "horizontal_flip": True})


@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="TensorFlow's XLA")
@pytest.mark.parametrize("recorded_backend", ["jax", "tensorflow"])
def test_a_resumed_run_resolves_jit_for_the_backend_it_runs_on(
    one_epoch_run, tmp_path, monkeypatch, recorded_backend
):
    # A JAX run (XLA on) resumed on TensorFlow asked XLA of the augmentation: Keras warned,
    # and the other way round a TensorFlow run went on op by op on JAX. An augmented
    # TensorFlow GPU run recorded XLA on before it was known not to run there.
    run_dir = copy_run(one_epoch_run, tmp_path / "run")
    config_path = Path(run_dir, "config.json")
    recorded = json.loads(config_path.read_text())
    recorded["versions"]["backend"], recorded["jit_resolved"] = recorded_backend, True
    config_path.write_text(json.dumps(recorded))
    # Its checkpoint as JAX saved it: compiled with XLA.
    checkpoint = Path(run_dir, "checkpoint", "epoch-0001.keras")
    with zipfile.ZipFile(checkpoint) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    saved = json.loads(entries["config.json"])
    saved["compile_config"]["jit_compile"] = True
    entries["config.json"] = json.dumps(saved).encode()
    with zipfile.ZipFile(checkpoint, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    loaded = []
    load = training._load_checkpoint

    def recorded_load(*arguments):
        loaded.append(load(*arguments))
        return loaded[-1]

    monkeypatch.setattr(training, "_load_checkpoint", recorded_load)
    config = training.resume_config(run_dir, argparse.Namespace(epochs=2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        training.train(config, run_dir, resume=True, verbose=False)
    assert not [warning for warning in caught if "jit_compile" in str(warning.message)]
    assert loaded[0].jit_compile is False


def test_the_resume_command_names_a_backend_other_than_tensorflow():
    # Pasted without KERAS_BACKEND, a JAX run's resume went on on TensorFlow.
    config = {"network": "cnn", "versions": {"backend": "jax"}}
    assert training._resume_command(config, "models/r") == (
        "KERAS_BACKEND=jax python train_cnn.py --resume models/r"
    )
    config = {"network": "dnn", "versions": {"backend": "tensorflow"}}
    assert training._resume_command(config, "m") == "python train_dnn.py --resume m"


def test_the_resume_command_pastes_into_a_shell_with_the_moved_data(tmp_path):
    run = tmp_path / "My Drive" / "r"  # Colab's: "unrecognized arguments: Drive/r"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"data": "/old/train.csv", "val_data": None}))
    config = {"network": "dnn", "data": "/new place/train.csv", "val_data": None}
    assert training._resume_command(config, str(run)) == (
        f"python train_dnn.py --resume '{run}' --run-data '/new place/train.csv'"
    )


def test_a_checkpoint_another_backend_cannot_load_names_the_backend_it_was_saved_on(
    train_csv, tmp_path
):
    # A PyTorch run's checkpoint names PyTorch's optimizer class: elsewhere Keras cannot
    # import it, and said only that.
    checkpoint = tmp_path / "epoch-0001.keras"
    with zipfile.ZipFile(checkpoint, "w") as archive:
        archive.writestr("config.json", "{}")
    running = keras.config.backend()
    other = "jax" if running == "torch" else "torch"
    with pytest.raises(
        FerError, match=f"it was saved on {other}: resume with KERAS_BACKEND={other}$"
    ):
        training._load_checkpoint(str(checkpoint), tiny_config(train_csv), saved_on=other)
    with pytest.raises(FerError, match=r"cannot be loaded \(.*\)$"):  # same backend: no hint
        training._load_checkpoint(str(checkpoint), tiny_config(train_csv), saved_on=running)


@pytest.mark.parametrize("recorded_in", ["state.json", "config.json"])
def test_a_resume_names_the_backend_that_saved_the_checkpoint_not_the_one_the_run_began_on(
    one_epoch_run, tmp_path, recorded_in
):
    # Started here and resumed on PyTorch, a run's checkpoint names PyTorch's optimizer
    # class; config.json still names the backend it began on, so the hint was missing. A
    # state.json written before it named the backend: the one config.json names.
    run_dir = copy_run(one_epoch_run, tmp_path / "run")
    state_path = Path(run_dir, "checkpoint", "state.json")
    state = json.loads(state_path.read_text())
    other = "jax" if keras.config.backend() == "torch" else "torch"
    if recorded_in == "state.json":
        record_saved_on(run_dir, other)
    else:
        state_path.write_text(json.dumps({key: state[key] for key in state if key != "saved_on"}))
        config_path = Path(run_dir, "config.json")
        recorded = json.loads(config_path.read_text())
        recorded["versions"]["backend"] = other
        config_path.write_text(json.dumps(recorded))
    with zipfile.ZipFile(Path(run_dir, "checkpoint", state["checkpoint"]), "w") as archive:
        archive.writestr("config.json", "{}")  # as this backend finds the other's: unloadable
    config = training.resume_config(run_dir, argparse.Namespace(epochs=2))
    with pytest.raises(FerError, match=f"saved on {other}: resume with KERAS_BACKEND={other}$"):
        training.train(config, run_dir, resume=True, verbose=False)


def test_command_txt_names_the_backend_a_resume_ran_on_when_another_saved_it(
    one_epoch_run, tmp_path
):
    # command.txt's lines carry no KERAS_BACKEND: without this a resume on another backend
    # left no trace of it.
    run_dir = copy_run(one_epoch_run, tmp_path / "run")
    other = "tensorflow" if keras.config.backend() == "jax" else "jax"
    state_path = record_saved_on(run_dir, other)
    config = training.resume_config(run_dir, argparse.Namespace(epochs=2))
    training.train(config, run_dir, resume=True, verbose=False)
    resumed = Path(run_dir, "command.txt").read_text().splitlines()[-1]
    assert resumed.startswith(
        f"# resumed after epoch 1 on {keras.config.backend()} (saved on {other}): "
    )
    assert json.loads(state_path.read_text())["saved_on"] == keras.config.backend()


def test_ctrl_c_before_a_later_seed_started_names_it_too(train_csv, tmp_path, monkeypatch):
    def train(config, run_dir, **keywords):
        if config["seed"] == 1:  # finishes
            Path(run_dir, "config.json").write_text(json.dumps(config))
            return run_dir
        raise KeyboardInterrupt  # seed 2: before its config.json (its data being hashed)

    monkeypatch.setattr(training, "train", train)
    parser = argparse.ArgumentParser()
    training.add_arguments(parser, "dnn")
    arguments = ["--data", train_csv, "--seeds", "1", "2", "3", "--name", "r", "--epochs", "1"]
    with pytest.raises(training.TrainingInterruptedError) as error:
        training.main(parser.parse_args([*arguments, "--out", str(tmp_path / "o")]), "dnn")
    # Seed 2 was left out of the seeds not started, and "nothing was written" was said.
    assert str(error.value) == (
        f"interrupted before {tmp_path / 'o' / 'r_seed2'} started; seeds 2 3 did not start: "
        "give each the same options with --seed N --name FOLDER (r_seed2, r_seed3)"
    )
    assert os.listdir(tmp_path / "o") == ["r_seed1"]


@pytest.mark.parametrize("seeds", [[], ["--seeds", "1", "2"]])
def test_ctrl_c_before_the_first_run_started_names_no_seeds(
    seeds, train_csv, tmp_path, monkeypatch
):
    # It said "seed 1 did not start: give each ... --seed N --name FOLDER" of a single run,
    # though nothing was left and the same command runs again.
    def train(config, run_dir, **keywords):
        raise KeyboardInterrupt  # Keras starting

    monkeypatch.setattr(training, "train", train)
    parser = argparse.ArgumentParser()
    training.add_arguments(parser, "dnn")
    arguments = ["--data", train_csv, *seeds, "--name", "r", "--out", str(tmp_path / "o")]
    with pytest.raises(training.TrainingInterruptedError) as error:
        training.main(parser.parse_args(arguments), "dnn")
    first = "r_seed1" if seeds else "r"
    assert str(error.value) == f"interrupted before {tmp_path / 'o' / first} started"
    assert os.listdir(tmp_path / "o") == []


def test_ctrl_c_during_seeds_names_the_seeds_not_started(train_csv, tmp_path, monkeypatch):
    def interrupted(*arguments, **keywords):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "_train_one_epoch", interrupted)
    parser = argparse.ArgumentParser()
    training.add_arguments(parser, "dnn")
    arguments = ["--data", train_csv, "--seeds", "1", "2", "3", "--name", "r", "--epochs", "1"]
    with pytest.raises(training.TrainingInterruptedError) as error:
        training.main(
            parser.parse_args([*arguments, "--out", str(tmp_path / "o"), "--quiet"]), "dnn"
        )
    assert str(error.value).endswith(
        "; seeds 2 3 did not start: give each the same options with --seed N --name FOLDER "
        "(r_seed2, r_seed3)"
    )
    assert os.listdir(tmp_path / "o") == ["r_seed1"]


@pytest.mark.parametrize("option", [{"random_erasing": 0.5}, {"mixup": 0.4}])
def test_run_with_extra_augmentation_resumes_from_its_checkpoint(
    option, train_csv, tmp_path, monkeypatch
):
    # The checkpoint holds the training model, augmentation (and mixup's loss) included: it
    # must load again, and the saved model must still be the plain network.
    config = tiny_config(train_csv, "dnn", epochs=2, limit=64, **option)
    real_fit = interrupt_epoch_two(monkeypatch)
    run_dir = str(tmp_path / "run")
    with pytest.raises(FerError, match="interrupted during epoch 2"):
        training.train(config, run_dir, verbose=False)
    monkeypatch.setattr(keras.Model, "fit", real_fit)
    training.train(training.resume_config(run_dir), run_dir, resume=True, verbose=False)
    rows = history(run_dir)
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert all(0 <= float(row["val_accuracy"]) <= 1 for row in rows)
    ((key, value),) = option.items()
    assert json.loads(Path(run_dir, "config.json").read_text())[key] == value
    saved = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    assert saved.input_shape == (None, 48, 48, 1) and saved.output_shape == (None, 7)


def test_seeds_train_one_run_each(train_csv, tmp_path):
    parser = training.add_arguments(argparse.ArgumentParser(), "dnn")
    args = parser.parse_args(
        [
            "--data",
            train_csv,
            "--epochs",
            "1",
            "--seeds",
            "1",
            "2",
            "--out",
            str(tmp_path),
            "--name",
            "m",
            "--quiet",
            "--precision",
            "float32",
        ]
    )
    run_dirs = training.main(args, "dnn")
    assert [os.path.basename(path) for path in run_dirs] == ["m_seed1", "m_seed2"]
    seeds = [
        json.loads(Path(os.path.join(path, "config.json")).read_text())["seed"] for path in run_dirs
    ]
    splits = [
        json.loads(Path(os.path.join(path, "config.json")).read_text())["split"]
        for path in run_dirs
    ]
    assert seeds == [1, 2] and splits[0] == splits[1]
    # command.txt: the one command that made both, and which of its seeds each run is.
    second = Path(run_dirs[1], "command.txt").read_text().splitlines()
    assert second[1:] == ["# this run: --seed 2 of the --seeds above"]


def test_the_epochs_within_a_budget_discount_the_first_step_s_tracing():
    # Epoch 1: 100 s, of which the first training step took 30 s against 1 s for the others
    # and the first validation step 6 s against 1 s: later epochs take about 100 - 29 - 5 s.
    steps = {"train": [30.0] + [1.0] * 60, "test": [6.0, 1.0, 1.0]}
    epochs, later = training.epochs_within_budget(10, 100.0, steps, requested=28)
    assert later == pytest.approx(66.0)
    assert epochs == 1 + (configuration.BUDGET_PLANNED_SHARE * 600 - 100) // 66
    # Planned on 95% of it, a budget that the whole would just fit leaves out the last epoch.
    assert training.epochs_within_budget((100 + 7 * 66) / 60, 100.0, steps, requested=28)[0] == 7
    assert training.epochs_within_budget(1000, 100.0, steps, requested=28)[0] == 28
    assert training.epochs_within_budget(1, 100.0, steps, requested=28)[0] == 1
    # Validation in one batch: its traced 6 s counts as a 1 s training step.
    steps = {"train": [30.0] + [1.0] * 60, "test": [6.0]}
    assert training.epochs_within_budget(10, 100.0, steps, requested=28)[1] == pytest.approx(66.0)


def test_the_epochs_within_a_budget_discount_a_last_step_that_traces_again():
    # JAX compiles the smaller last batch again: the last training step took 20 s, and
    # validation's two batches 6 s and 5 s. Every traced step counts as a 1 s training step.
    steps = {"train": [30.0] + [1.0] * 59 + [20.0], "test": [6.0, 5.0]}
    assert training.epochs_within_budget(10, 100.0, steps, requested=28)[1] == pytest.approx(
        100 - (30 + 20 - 2) - (6 + 5 - 2)
    )
    # A smaller last batch that did not trace (TensorFlow) is faster and kept as measured.
    steps = {"train": [30.0] + [1.0] * 59 + [0.5], "test": [6.0, 1.0, 1.0]}
    assert training.epochs_within_budget(10, 100.0, steps, requested=28)[1] == pytest.approx(
        100 - 29 - 5
    )


def test_a_time_budget_lowers_the_epochs_and_records_them(train_csv, tmp_path):
    # Far less than one epoch: the first epoch runs, and no more.
    config = tiny_config(train_csv, epochs=3, time_budget=1e-6)
    run_dir = training.train(config, str(tmp_path / "run"), verbose=False)
    assert [row["epoch"] for row in history(run_dir)] == ["1"]
    recorded = json.loads(Path(run_dir, "config.json").read_text())
    assert recorded["epochs"] == 1 and recorded["time_budget"] == 1e-6
    assert json.loads(Path(run_dir, "metrics.json").read_text())["epochs_run"] == 1


def test_a_time_budget_of_0_times_and_lowers_nothing(train_csv, tmp_path, monkeypatch):
    monkeypatch.setattr(training, "_step_timer", lambda: pytest.fail("timed with no budget"))
    run_dir = training.train(
        tiny_config(train_csv, epochs=2, time_budget=0.0), str(tmp_path / "run"), verbose=False
    )
    assert [row["epoch"] for row in history(run_dir)] == ["1", "2"]


def test_a_time_budget_that_holds_every_epoch_changes_nothing(train_csv, tmp_path):
    config = tiny_config(train_csv, epochs=2, time_budget=600.0)
    run_dir = training.train(config, str(tmp_path / "run"), verbose=False)
    assert [row["epoch"] for row in history(run_dir)] == ["1", "2"]
    assert json.loads(Path(run_dir, "config.json").read_text())["epochs"] == 2


def test_existing_run_is_not_overwritten(train_csv, one_epoch_run, tmp_path):
    run_dir = copy_run(one_epoch_run, tmp_path / "r")
    before = {name: Path(run_dir, name).read_bytes() for name in ("config.json", "history.csv")}
    parser = training.add_arguments(argparse.ArgumentParser(), "dnn")
    arguments = ["--data", train_csv, "--out", str(tmp_path), "--name", "r", "--epochs", "3"]
    with pytest.raises(FerError, match="a run already exists there"):
        training.main(parser.parse_args(arguments), "dnn")
    assert {name: Path(run_dir, name).read_bytes() for name in before} == before


def test_a_named_folder_holding_a_users_files_is_not_trained_into(train_csv, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "model.keras").write_bytes(b"my own model")  # replaced without a word
    parser = training.add_arguments(argparse.ArgumentParser(), "dnn")
    arguments = ["--data", train_csv, "--out", str(tmp_path), "--name", "mine", "--epochs", "1"]
    with pytest.raises(FerError, match=r"mine: holds model.keras but no run: give another --name"):
        training.main(parser.parse_args(arguments), "dnn")
    assert (
        os.listdir(mine) == ["model.keras"]
        and (mine / "model.keras").read_bytes() == b"my own model"
    )


def test_a_run_is_not_written_into_its_image_folder_data(train_csv, tmp_path, monkeypatch):
    from ferkit import faces

    folder = faces.write_image_folder(data.read_csv(train_csv), str(tmp_path / "faces"))
    monkeypatch.chdir(folder)  # --data . and the default --out models: faces/models/…
    parser = training.add_arguments(argparse.ArgumentParser(), "dnn")
    # Its run folder then read as a class folder that is not one: not resumed, not read again.
    with pytest.raises(FerError, match=r"models/r: is inside the --data folder; give --out"):
        training.main(parser.parse_args(["--data", ".", "--name", "r", "--epochs", "1"]), "dnn")
    assert not os.path.exists(Path(folder, "models"))


def test_a_limit_that_cuts_classes_from_a_folder_read_by_class_starts_no_run(train_csv, tmp_path):
    from ferkit import faces

    # Named otherwise than by id, its faces are read class by class.
    folder = faces.write_image_folder(data.read_csv(train_csv), str(tmp_path / "faces"))
    for name in glob.glob(os.path.join(folder, "*", "*.png")):
        os.rename(name, name.replace(os.path.basename(name), "Training_" + os.path.basename(name)))
    parser = training.add_arguments(argparse.ArgumentParser(), "dnn")
    arguments = ["--data", folder, "--limit", "20", "--out", str(tmp_path / "m"), "--epochs", "1"]
    with pytest.raises(FerError, match=r"--limit 20: .*faces lists its faces class by class"):
        training.main(parser.parse_args(arguments), "dnn")
    assert not os.path.exists(tmp_path / "m")


def test_a_run_is_not_written_into_a_linked_class_folder_of_its_data(train_csv, tmp_path):
    from ferkit import faces

    folder = faces.write_image_folder(data.read_csv(train_csv), str(tmp_path / "faces"))
    os.rename(Path(folder, "happy"), tmp_path / "happy")
    Path(folder, "happy").symlink_to(tmp_path / "happy")  # linked, to save disk space
    parser = training.add_arguments(argparse.ArgumentParser(), "dnn")
    out = str(Path(folder, "happy"))  # its figures were then read as happy faces
    arguments = ["--data", folder, "--out", out, "--name", "r", "--epochs", "1"]
    with pytest.raises(FerError, match=r"happy/r: is inside the --data folder; give --out"):
        training.main(parser.parse_args(arguments), "dnn")


def run_script(*arguments, cwd=None):
    return subprocess.run(
        [sys.executable, *arguments],
        capture_output=True,
        text=True,
        cwd=cwd or REPOSITORY,
        timeout=300,
    )


def test_cli_bad_option_is_one_line_and_exit_2(train_csv):
    result = run_script("train_dnn.py", "--data", train_csv, "--epochs", "-3")
    assert result.returncode == 2
    assert result.stderr.strip() == "train_dnn.py: error: --epochs must be at least 1, got -3"


def test_a_new_run_that_diverges_in_epoch_1_is_removed_and_names_the_seeds_left(
    train_csv, tmp_path
):
    # Its folder made the same command with a lower --lr "a run already exists there", and
    # --resume, which keeps --lr, diverged again; seed 2 was dropped without a word.
    out = tmp_path / "o"
    result = run_script(
        "train_dnn.py", "--data", train_csv, "--out", out, "--name", "dv", "--seeds", "1", "2",
        "--epochs", "1", "--lr", "1e30", "--schedule", "constant", "--quiet",
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "train_dnn.py: error: training diverged: the loss became NaN at epoch 1; no epoch had "
        f"finished, so {out / 'dv_seed1'} is removed again; try a lower --lr (was 1e+30); "
        "seed 2 did not start: give each the same options with --seed N --name FOLDER (dv_seed2)"
    )
    assert os.listdir(out) == []


def test_a_bad_seed_of_seeds_is_named_as_seeds(train_csv):
    result = run_script("train_dnn.py", "--data", train_csv, "--seeds", "1", "99999999999")
    assert result.returncode == 2  # named --seed, which the command line did not give
    assert result.stderr.strip() == (
        "train_dnn.py: error: --seeds: each seed must be at most 4294967295, got 99999999999"
    )


def test_cli_bad_data_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("label,feature\n9," + " ".join(["0"] * 2304) + "\n")
    result = run_script("train_cnn.py", "--data", str(bad), "--out", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == f"train_cnn.py: error: {bad}: line 2: label 9 is outside 0-6"
    assert os.listdir(tmp_path) == ["bad.csv"]


def test_an_older_run_without_the_newer_options_resumes_for_more_epochs(train_csv, tmp_path):
    old = tiny_config(train_csv)
    for key in configuration.LATER_OPTIONS:
        old.pop(key)
    (tmp_path / "config.json").write_text(json.dumps(old))
    resumed = training.resume_config(str(tmp_path), argparse.Namespace(epochs=5))
    assert resumed["epochs"] == 5 and resumed["limit"] is None and resumed["distribute"] is False


def test_distribute_on_an_unsupported_backend_is_refused_before_a_run_is_written(
    train_csv, tmp_path, monkeypatch
):
    from ferkit import backend

    monkeypatch.setattr(backend, "name", lambda: "torch")
    parser = argparse.ArgumentParser()
    training.add_arguments(parser, "dnn")
    args = parser.parse_args(["--data", train_csv, "--distribute", "--out", str(tmp_path / "o")])
    with pytest.raises(FerError, match="--distribute is not available on the torch backend"):
        training.main(args, "dnn")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--resume", "models/r", "--out", "elsewhere"], "--out cannot be given with --resume"),
        (["--data", "t.csv", "--seed", "2", "--seeds", "1", "3"], "--seed and --seeds"),
        (["--data", "t.csv", "--val-data", "v.csv", "--val-split", "0.3"], "--val-split splits"),
        (["--data", "t.csv", "--val-data", "v.csv", "--split-seed", "2"], "--split-seed splits"),
        # "." wrote the run into --out itself.
        (["--data", "t.csv", "--name", "."], "--name '.': expected a folder name, without '/'"),
        (["--data", "t.csv", "--name", "a/b"], "--name 'a/b': expected a folder name"),
    ],
)
def test_options_that_would_be_ignored_are_refused(arguments, message):
    parser = argparse.ArgumentParser()
    training.add_arguments(parser, "dnn")
    with pytest.raises(FerError, match=message):
        training.main(parser.parse_args(arguments), "dnn")


def test_a_run_recorded_before_a_newer_combination_rule_still_resumes(train_csv, tmp_path):
    # Adam with weight decay was recorded before it was refused: the run resumes as it was,
    # while training it longer (--epochs) meets today's rules, as before.
    old = {**tiny_config(train_csv), "optimizer": "adam", "weight_decay": 0.05}
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert training.resume_config(str(tmp_path))["weight_decay"] == 0.05
    with pytest.raises(FerError, match="--weight-decay is for --optimizer adamw or sgd"):
        training.resume_config(str(tmp_path), argparse.Namespace(epochs=5))


def test_a_recorded_value_now_refused_names_the_run_s_config(train_csv, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**tiny_config(train_csv), "momentum": 1.5}))
    with pytest.raises(FerError, match=f"^{tmp_path / 'config.json'}: --momentum must be in"):
        training.resume_config(str(tmp_path), argparse.Namespace(epochs=5))


def test_cosine_schedule_falls_from_lr_to_min_lr():
    config = {"schedule": "cosine", "epochs": 10, "lr": 0.01, "min_lr": 0.0001}
    rates = [training._scheduled_lr(config, {}, epoch) for epoch in range(11)]
    assert rates[0] == pytest.approx(0.01) and rates[10] == pytest.approx(0.0001)
    assert rates[5] == pytest.approx((0.01 + 0.0001) / 2)
    assert all(later < earlier for earlier, later in zip(rates, rates[1:]))


def test_plateau_halves_the_rate_and_early_stopping_ends_the_run(monkeypatch):
    # Only the bookkeeping of _end_of_epoch: no model is saved.
    for name in ("stage_best", "write_history", "save"):
        monkeypatch.setattr(checkpoints, name, lambda *arguments: None)
    config = {
        "schedule": "plateau",
        "lr": 0.01,
        "min_lr": 0.002,
        "plateau_patience": 2,
        "plateau_factor": 0.5,
        "early_stop_patience": 4,
    }
    state = checkpoints.initial_state(config)
    rates, stops = [], []
    # Epoch 1 is the best; every later epoch is worse on both accuracy and loss.
    for epoch, (accuracy, loss) in enumerate([(0.5, 1.0)] + [(0.4, 1.2)] * 6, start=1):
        row = {"epoch": epoch, "val_accuracy": accuracy, "val_loss": loss}
        stops.append(training._end_of_epoch("run", None, None, state, row, config))
        rates.append(state["lr"])
    # Halved after every two epochs without a lower loss, but never below min_lr.
    assert rates == [0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025, 0.002]
    assert stops == [False, False, False, False, True, True, True]  # four epochs past the best
    assert state["best_epoch"] == 1


@pytest.mark.parametrize(
    "options",
    [
        {"optimizer": "sgd", "momentum": 0.8, "weight_decay": 0.001, "label_smoothing": 0.2},
        {"optimizer": "adamw", "weight_decay": 0.03, "label_smoothing": 0.15, "mixup": 0.3},
    ],
)
def test_the_configuration_reaches_the_model_loss_and_optimizer(train_csv, options):
    config = tiny_config(train_csv, "cnn", dropout_conv=0.15, dropout_dense=0.35, **options)
    config["jit_resolved"] = False  # resolved by train(), which this skips
    model, training_model = training.build_training_model(config)
    rates = {layer.name: layer.rate for layer in model.layers if "dropout" in layer.name}
    assert rates["block1_dropout"] == 0.15 and rates["fc2_dropout"] == 0.35
    assert training_model.loss.label_smoothing == pytest.approx(options["label_smoothing"])
    optimizer = training_model.optimizer
    assert optimizer.weight_decay == pytest.approx(options["weight_decay"])
    if options["optimizer"] == "sgd":
        assert optimizer.momentum == pytest.approx(0.8) and optimizer.nesterov
    else:
        # PyTorch's Keras puts its own subclass in its place.
        assert isinstance(optimizer, keras.optimizers.AdamW)
        assert training_model.get_layer("mixup").alpha == pytest.approx(0.3)
    # Built before fit: created inside fit's first traced step, its slot variables cost 1-2 s
    # of every run's start. One momentum per weight with SGD; AdamW keeps two.
    moments = 1 if options["optimizer"] == "sgd" else 2
    assert optimizer.built
    assert len(optimizer.variables) >= moments * len(training_model.trainable_variables)


def test_help_shows_no_default_for_options_that_are_off():
    parser = training.add_arguments(argparse.ArgumentParser(), "cnn")
    help_text = " ".join(parser.format_help().split())  # argparse wraps lines anywhere
    assert "default None" not in help_text and "(default 300)" in help_text
