"""A run's resumable state: the checkpoint folder, state.json and history.csv.

After every epoch training saves the training model (optimizer and augmentation random
state included) as ``checkpoint/epoch-NNNN.keras``, then ``checkpoint/state.json`` naming it
(epoch, best so far, schedule and early-stopping counters, history). Each file is written
atomically and state.json last, so a kill at any moment leaves a consistent pair to resume.
A new best model waits as ``checkpoint/best-epoch-NNNN.keras`` until state.json records its
epoch, and only then becomes the run's model.keras.
"""

import math
import os
import re
import zipfile

import ferkit
from ferkit import runs
from ferkit.errors import FerError, counted, shown
from ferkit.files import atomic_path, read_json, remove_leftovers, write_json, write_text

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")
FOLDER = "checkpoint"
STATE_FILE = "state.json"
CHECKPOINT_NAME = re.compile(r"^epoch-\d{4,}\.keras$")
STAGED_BEST_NAME = re.compile(r"^best-epoch-\d{4,}\.keras$")


def initial_state(config):
    """The state of a run before its first epoch."""
    return {
        "epoch": 0,
        "best_epoch": 0,
        "best_val_accuracy": -1.0,
        "best_val_loss": None,
        "plateau_best": math.inf,
        "plateau_wait": 0,
        "early_wait": 0,
        "lr": config["lr"],
        "history": [],
        "checkpoint": None,
    }


def _checked_state(state_path, state):
    """state.json as training writes it: a foreign or hand-edited one is refused in one line
    (a JSON list or a missing epoch gave tracebacks)."""
    if not isinstance(state, dict):
        raise FerError(f"{state_path}: not a ferkit checkpoint state (not a JSON object)")
    missing = [key for key in initial_state({"lr": None}) if key not in state]
    if missing:
        raise FerError(f"{state_path}: not a ferkit checkpoint state (no {missing[0]})")
    for key in ("epoch", "best_epoch", "plateau_wait", "early_wait"):
        value = state[key]
        if not runs.is_whole(value, minimum=0):
            raise FerError(f"{state_path}: {key} must be a whole number, got {shown(value)}")
    for key in ("best_val_accuracy", "best_val_loss", "plateau_best", "lr"):
        value = state[key]
        # Only the best loss is unknown (null) until an epoch has one; plateau_best starts
        # as Infinity, which JSON reads back as a float.
        if not runs.is_number(value) and not (key == "best_val_loss" and value is None):
            raise FerError(f"{state_path}: {key} must be a number, got {shown(value)}")
        if key in ("lr", "best_val_accuracy") and not math.isfinite(value):
            raise FerError(f"{state_path}: {key} must be a finite number, got {value}")
    if not isinstance(state["checkpoint"], str) or not isinstance(state["history"], list):
        raise FerError(f"{state_path}: not a ferkit checkpoint state (checkpoint or history)")
    if "saved_on" in state and state["saved_on"] not in ferkit.KERAS_BACKEND_PACKAGES:
        # It goes into the hint to resume with KERAS_BACKEND= and into command.txt.
        raise FerError(
            f"{state_path}: saved_on must be a backend's name "
            f"({', '.join(ferkit.KERAS_BACKEND_PACKAGES)}), got {shown(state['saved_on'])}"
        )
    if not CHECKPOINT_NAME.match(state["checkpoint"]):
        # Resuming removes every other checkpoint: "../model.keras" cost the run its last one.
        raise FerError(
            f"{state_path}: checkpoint must name a file epoch-NNNN.keras beside it, "
            f"got {shown(state['checkpoint'])}"
        )
    for row in state["history"]:
        if not isinstance(row, dict) or any(column not in row for column in HISTORY_COLUMNS):
            raise FerError(f"{state_path}: a history row lacks {', '.join(HISTORY_COLUMNS)}")
        wrong = [column for column in HISTORY_COLUMNS if not runs.is_number(row[column])]
        if wrong:
            raise FerError(f"{state_path}: a history row's {wrong[0]} must be a number")
        # Kept in state.json only; the images per second divide by it when the run ends (a
        # missing one was a KeyError, 0 a ZeroDivisionError).
        seconds = row.get("train_seconds")
        if not (runs.is_number(seconds) and 0 < seconds < math.inf):
            got = shown(seconds) if "train_seconds" in row else "none"
            raise FerError(
                f"{state_path}: a history row's train_seconds must be a positive number, got {got}"
            )
    return state


def resume_state(run_dir, config):
    """The saved state of an interrupted run, checked; an empty state where no epoch finished.

    Only reads: ``tidy`` clears what a kill left behind, once every other check of the
    resume has passed too, so that a refused resume leaves the folder as it found it.
    """
    checkpoint_dir = os.path.join(run_dir, FOLDER)
    state_path = os.path.join(checkpoint_dir, STATE_FILE)
    if not os.path.exists(state_path):
        trained = [
            name
            for name in (runs.MODEL_FILE, runs.METRICS_FILE)
            if os.path.exists(os.path.join(run_dir, name))
        ]
        if trained:  # checkpoint/ deleted to save space: epoch 1 again would replace them
            raise FerError(
                f"{run_dir}: has {trained[0]} but no {FOLDER}/{STATE_FILE} to resume from; "
                "start a new run to train again"
            )
        state = initial_state(config)
    else:
        state = _checked_state(state_path, read_json(state_path))
        if not os.path.exists(os.path.join(checkpoint_dir, str(state.get("checkpoint")))):
            raise FerError(
                f"{state_path}: names the checkpoint {state.get('checkpoint')}, which is missing"
            )
    finished = os.path.exists(os.path.join(run_dir, runs.METRICS_FILE))
    if finished and state["early_wait"] >= config["early_stop_patience"]:
        raise FerError(
            f"{run_dir}: already finished: it stopped early at epoch {state['epoch']} after "
            f"{state['early_wait']} epochs without val_accuracy improvement"
        )
    if state["epoch"] > config["epochs"]:
        raise FerError(
            f"--epochs {config['epochs']}: {run_dir} has already trained "
            f"{counted(state['epoch'], 'epoch')}"
        )
    if finished and state["epoch"] >= config["epochs"]:
        raise FerError(
            f"{run_dir}: already finished its {counted(state['epoch'], 'epoch')} (give "
            "--epochs with more to train it longer)"
        )
    # What resuming writes: a folder in the way was found only after config.json had
    # recorded a new --epochs.
    written = (
        runs.MODEL_FILE,
        runs.CONFIG_FILE,
        runs.HISTORY_FILE,
        runs.METRICS_FILE,
        runs.COMMAND_FILE,
    )
    for name in written:
        if os.path.isdir(os.path.join(run_dir, name)):
            raise FerError(f"{os.path.join(run_dir, name)}: is a folder, expected a file")
    best = state["best_epoch"]
    # A kill after state.json recorded a new best, before its move: tidy finishes the move.
    model_files = (os.path.join(run_dir, runs.MODEL_FILE), _staged_best(run_dir, best))
    if best and not any(map(os.path.exists, model_files)):
        raise FerError(
            f"{run_dir}: {runs.MODEL_FILE} (the best epoch, {best}) is missing; cannot resume"
        )
    return state


def check_best_model(run_dir, state):
    """Refuse a resume whose best model is not a whole .keras file: one cut short was found
    only when the resumed run ended, its metrics.json already removed."""
    best = state["best_epoch"]
    model_files = (os.path.join(run_dir, runs.MODEL_FILE), _staged_best(run_dir, best))
    present = [path for path in model_files if os.path.isfile(path)]  # staged: the newer
    if best and present and not zipfile.is_zipfile(present[-1]):
        raise FerError(
            f"{present[-1]}: the best epoch's model ({best}) is not a whole .keras zip archive "
            "(damaged?): put back a whole copy to resume"
        )


def tidy(run_dir, state):
    """Clear what a kill left in a run that ``resume_state`` gave ``state``: temporary files
    of an interrupted write, a checkpoint or best model of an epoch that state.json does not
    record (written just before the kill), and a recorded best model not yet moved."""
    checkpoint_dir = os.path.join(run_dir, FOLDER)
    for folder in (run_dir, checkpoint_dir):
        for name in remove_leftovers(folder):
            print(f"Removed {os.path.join(folder, name)}, left by an interrupted write")
    if not os.path.isdir(checkpoint_dir):
        return
    publish_best(run_dir, state)
    for name in os.listdir(checkpoint_dir):
        unnamed = CHECKPOINT_NAME.match(name) and name != state["checkpoint"]
        if unnamed or STAGED_BEST_NAME.match(name):  # from an epoch state.json lacks
            os.remove(os.path.join(checkpoint_dir, name))


def _staged_best(run_dir, epoch):
    return os.path.join(run_dir, FOLDER, f"best-epoch-{epoch:04d}.keras")


def stage_best(run_dir, model, epoch):
    """Save a new best model beside the checkpoint; ``save`` makes it the run's model.keras
    once state.json records its epoch, so that model.keras is never from an epoch the state
    does not know (a kill in between, then a resumed epoch that scores lower, would leave it)."""
    os.makedirs(os.path.join(run_dir, FOLDER), exist_ok=True)
    with atomic_path(_staged_best(run_dir, epoch)) as temporary:
        model.save(temporary)


def publish_best(run_dir, state):
    """Move the best model that ``state`` records to model.keras, if it is still staged."""
    staged = _staged_best(run_dir, state["best_epoch"])
    if os.path.exists(staged):
        os.replace(staged, os.path.join(run_dir, runs.MODEL_FILE))


def save(run_dir, training_model, state):
    """The training model (optimizer and augmentation random state included), then state.json
    naming it: a kill between the two leaves the previous pair intact. Then a staged best
    model of the epoch state.json now records becomes model.keras."""
    checkpoint_dir = os.path.join(run_dir, FOLDER)
    os.makedirs(checkpoint_dir, exist_ok=True)
    previous = state["checkpoint"]
    state["checkpoint"] = f"epoch-{state['epoch']:04d}.keras"
    # The backend that wrote it, which a resume elsewhere needs: a PyTorch checkpoint names
    # PyTorch's optimizer class (config.json keeps the backend the run started on).
    state["saved_on"] = _backend_name()
    with atomic_path(os.path.join(checkpoint_dir, state["checkpoint"])) as temporary:
        training_model.save(temporary)
    write_json(os.path.join(checkpoint_dir, STATE_FILE), state)
    if previous and previous != state["checkpoint"]:
        os.remove(os.path.join(checkpoint_dir, previous))
    publish_best(run_dir, state)


def saved_on(run_dir):
    """The backend that saved the run's last checkpoint, as its state.json names it; None
    where it does not (no epoch finished, or saved before state.json named it)."""
    try:
        state = read_json(os.path.join(run_dir, FOLDER, STATE_FILE))
    except (FerError, OSError):
        return None
    backend = state.get("saved_on") if isinstance(state, dict) else None
    return backend if backend in ferkit.KERAS_BACKEND_PACKAGES else None


def _backend_name():
    import keras  # only a run that trains saves, and it has loaded Keras already

    return keras.config.backend()


def write_history(run_dir, history):
    """history.csv from the state's rows (one per finished epoch), 6 significant digits."""
    lines = [",".join(HISTORY_COLUMNS)]
    lines += [",".join(f"{row[column]:.6g}" for column in HISTORY_COLUMNS) for row in history]
    write_text(os.path.join(run_dir, runs.HISTORY_FILE), "\n".join(lines) + "\n")
