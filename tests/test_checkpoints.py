"""A run's resumable state on disk: the checkpoint pair, history.csv, and clean-up on resume."""

import json
import os

import keras
import pytest

from ferkit import checkpoints
from ferkit import config as configuration
from ferkit.errors import FerError

COLUMNS = checkpoints.HISTORY_COLUMNS


class FakeTrainingModel:
    """Stands in for a Keras model: ``save`` writes the epoch it was saved at."""

    def __init__(self, state):
        self.state = state

    def save(self, path):
        with open(path, "w") as file:
            file.write(f"epoch {self.state['epoch']}")


def config():
    return configuration.resolve("dnn", overrides={"epochs": 5})


def test_save_writes_the_model_then_the_state_naming_it_and_drops_the_previous(tmp_path):
    state = checkpoints.initial_state(config())
    model = FakeTrainingModel(state)
    for epoch in (1, 2):
        state["epoch"] = epoch
        checkpoints.save(str(tmp_path), model, state)
    folder = tmp_path / checkpoints.FOLDER
    assert sorted(os.listdir(folder)) == ["epoch-0002.keras", checkpoints.STATE_FILE]
    saved = json.loads((folder / checkpoints.STATE_FILE).read_text())
    assert saved["checkpoint"] == "epoch-0002.keras" and saved["epoch"] == 2
    assert (folder / "epoch-0002.keras").read_text() == "epoch 2"
    # A resume on another backend needs to know which one wrote the checkpoint.
    assert saved["saved_on"] == keras.config.backend()


def test_resume_removes_a_checkpoint_that_state_json_does_not_name(tmp_path):
    state = checkpoints.initial_state(config())
    state["epoch"] = 1
    checkpoints.save(str(tmp_path), FakeTrainingModel(state), state)
    # A kill after writing the next checkpoint but before state.json named it.
    (tmp_path / checkpoints.FOLDER / "epoch-0002.keras").write_text("half a step ahead")
    resumed = checkpoints.resume_state(str(tmp_path), config())
    checkpoints.tidy(str(tmp_path), resumed)
    assert resumed["epoch"] == 1 and resumed["checkpoint"] == "epoch-0001.keras"
    assert not (tmp_path / checkpoints.FOLDER / "epoch-0002.keras").exists()


def _best_at(tmp_path, epoch):
    """A run whose state.json records ``epoch`` as its last and best, model.keras from it."""
    state = checkpoints.initial_state(config())
    state.update(epoch=epoch, best_epoch=epoch)
    checkpoints.stage_best(str(tmp_path), FakeTrainingModel(state), epoch)
    checkpoints.save(str(tmp_path), FakeTrainingModel(state), state)
    return state


def test_a_new_best_model_becomes_model_keras_once_state_json_records_it(tmp_path):
    _best_at(tmp_path, 1)
    assert (tmp_path / "model.keras").read_text() == "epoch 1"
    assert sorted(os.listdir(tmp_path / checkpoints.FOLDER)) == [
        "epoch-0001.keras",
        checkpoints.STATE_FILE,
    ]


def test_resume_drops_a_best_model_staged_for_an_epoch_state_json_lacks(tmp_path):
    state = _best_at(tmp_path, 1)
    # A kill after epoch 2's better model was staged, before state.json recorded epoch 2.
    checkpoints.stage_best(str(tmp_path), FakeTrainingModel({**state, "epoch": 2}), 2)
    resumed = checkpoints.resume_state(str(tmp_path), config())
    checkpoints.tidy(str(tmp_path), resumed)
    assert resumed["best_epoch"] == 1 and (tmp_path / "model.keras").read_text() == "epoch 1"
    assert not (tmp_path / checkpoints.FOLDER / "best-epoch-0002.keras").exists()


@pytest.mark.parametrize("earlier", ["epoch 1", None])  # None: the run's first best model
def test_resume_finishes_moving_the_best_model_state_json_records(tmp_path, earlier):
    state = _best_at(tmp_path, 1)
    # A kill after state.json recorded epoch 2 as the best, before its model was moved.
    state.update(epoch=2, best_epoch=2)
    checkpoints.stage_best(str(tmp_path), FakeTrainingModel(state), 2)
    checkpoints.save(str(tmp_path), FakeTrainingModel(state), state)
    (tmp_path / checkpoints.FOLDER / "best-epoch-0002.keras").write_text("epoch 2")
    if earlier:
        (tmp_path / "model.keras").write_text(earlier)
    else:
        os.remove(tmp_path / "model.keras")  # was refused as a missing model.keras
    resumed = checkpoints.resume_state(str(tmp_path), config())
    checkpoints.tidy(str(tmp_path), resumed)
    assert resumed["best_epoch"] == 2 and (tmp_path / "model.keras").read_text() == "epoch 2"
    assert not (tmp_path / checkpoints.FOLDER / "best-epoch-0002.keras").exists()


def test_resume_state_only_reads_what_a_kill_left(tmp_path):
    _best_at(tmp_path, 1)
    folder = tmp_path / checkpoints.FOLDER
    (folder / "epoch-0002.keras").write_text("half a step ahead")
    (folder / ".epoch-0002.k2j4_x9q.tmp.keras").write_text("a killed write")
    before = sorted(os.listdir(folder))
    # A resume refused after this check (a moved data file) cleared these first.
    checkpoints.resume_state(str(tmp_path), config())
    assert sorted(os.listdir(folder)) == before


def test_resume_refuses_a_state_whose_checkpoint_is_missing(tmp_path):
    state = checkpoints.initial_state(config())
    state["epoch"] = 1
    checkpoints.save(str(tmp_path), FakeTrainingModel(state), state)
    os.remove(tmp_path / checkpoints.FOLDER / "epoch-0001.keras")
    with pytest.raises(FerError, match="epoch-0001.keras, which is missing"):
        checkpoints.resume_state(str(tmp_path), config())


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda state: [], "not a JSON object"),
        (lambda state: {key: state[key] for key in state if key != "epoch"}, "no epoch"),
        (lambda state: {**state, "epoch": "3"}, "epoch must be a whole number, got '3'"),
        (lambda state: {**state, "early_wait": -1}, "early_wait must be a whole number, got -1"),
        (lambda state: {**state, "history": None}, "checkpoint or history"),
        (lambda state: {**state, "best_val_accuracy": "x"}, "best_val_accuracy must be a number"),
        (lambda state: {**state, "history": [{"epoch": 1}]}, "a history row lacks epoch, loss"),
        # These gave tracebacks once training started; "../model.keras" lost the run its
        # last checkpoint too, as one state.json did not name.
        (lambda state: {**state, "lr": None}, "lr must be a number, got None"),
        (lambda state: {**state, "best_val_accuracy": None}, "best_val_accuracy must be a number"),
        (lambda state: {**state, "plateau_best": None}, "plateau_best must be a number"),
        # Whole numbers too big for a float, and a rate that is not finite, failed in Keras.
        (lambda state: {**state, "lr": 10**400}, "lr must be a number, got 10000000000000"),
        (lambda state: {**state, "lr": float("nan")}, "lr must be a finite number, got nan"),
        (
            lambda state: {**state, "history": [{**dict.fromkeys(COLUMNS, 1), "loss": 10**400}]},
            "a history row's loss must be a number",
        ),
        (
            lambda state: {**state, "history": [{**dict.fromkeys(COLUMNS, 1), "loss": "x"}]},
            "a history row's loss must be a number",
        ),
        # Used only when the run ends: a KeyError and a ZeroDivisionError there.
        (
            lambda state: {**state, "history": [dict.fromkeys(COLUMNS, 1)]},
            "a history row's train_seconds must be a positive number, got none",
        ),
        (
            lambda state: {**state, "history": [dict.fromkeys([*COLUMNS, "train_seconds"], 0)]},
            "a history row's train_seconds must be a positive number, got 0",
        ),
        (lambda state: {**state, "saved_on": 3}, "saved_on must be a backend's name"),
        (
            lambda state: {**state, "saved_on": "theano\nx"},
            "saved_on must be a backend's name (tensorflow, jax, torch), got 'theano\\nx'",
        ),
        (
            lambda state: {**state, "checkpoint": "../model.keras"},
            "checkpoint must name a file epoch-NNNN.keras beside it, got '../model.keras'",
        ),
    ],
)
def test_resume_refuses_a_state_json_training_did_not_write(tmp_path, change, message):
    # A JSON list gave an AttributeError, a missing epoch a KeyError.
    state = checkpoints.initial_state(config())
    state["epoch"] = 1
    checkpoints.save(str(tmp_path), FakeTrainingModel(state), state)
    state_path = tmp_path / checkpoints.FOLDER / checkpoints.STATE_FILE
    state_path.write_text(json.dumps(change(json.loads(state_path.read_text()))))
    with pytest.raises(FerError) as error:
        checkpoints.resume_state(str(tmp_path), config())
    assert str(error.value).startswith(f"{state_path}: ") and message in str(error.value)


def test_history_has_the_columns_in_order_and_six_significant_digits(tmp_path):
    row = {column: 0.123456789 for column in checkpoints.HISTORY_COLUMNS}
    row["epoch"] = 1
    checkpoints.write_history(str(tmp_path), [row])
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert lines[0] == ",".join(checkpoints.HISTORY_COLUMNS)
    assert lines[1] == "1," + ",".join(["0.123457"] * (len(checkpoints.HISTORY_COLUMNS) - 1))
