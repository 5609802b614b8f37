"""A run's resumable state on disk: the checkpoint pair, history.csv, and clean-up on resume."""

import json
import os

import pytest

from ferkit import checkpoints
from ferkit import config as configuration
from ferkit.errors import FerError


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


def test_resume_removes_a_checkpoint_that_state_json_does_not_name(tmp_path):
    state = checkpoints.initial_state(config())
    state["epoch"] = 1
    checkpoints.save(str(tmp_path), FakeTrainingModel(state), state)
    # A kill after writing the next checkpoint but before state.json named it.
    (tmp_path / checkpoints.FOLDER / "epoch-0002.keras").write_text("half a step ahead")
    resumed = checkpoints.resume_state(str(tmp_path), config())
    assert resumed["epoch"] == 1 and resumed["checkpoint"] == "epoch-0001.keras"
    assert not (tmp_path / checkpoints.FOLDER / "epoch-0002.keras").exists()


def test_resume_refuses_a_state_whose_checkpoint_is_missing(tmp_path):
    state = checkpoints.initial_state(config())
    state["epoch"] = 1
    checkpoints.save(str(tmp_path), FakeTrainingModel(state), state)
    os.remove(tmp_path / checkpoints.FOLDER / "epoch-0001.keras")
    with pytest.raises(FerError, match="epoch-0001.keras, which is missing"):
        checkpoints.resume_state(str(tmp_path), config())


def test_history_has_the_columns_in_order_and_six_significant_digits(tmp_path):
    row = {column: 0.123456789 for column in checkpoints.HISTORY_COLUMNS}
    row["epoch"] = 1
    checkpoints.write_history(str(tmp_path), [row])
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert lines[0] == ",".join(checkpoints.HISTORY_COLUMNS)
    assert lines[1] == "1," + ",".join(["0.123457"] * (len(checkpoints.HISTORY_COLUMNS) - 1))
