"""Run folders: where a training run keeps everything, and how later tools read it back.

``models/<run>/`` holds ``command.txt``, ``config.json`` (every resolved option, the data
file and its hash, the validation split, versions), ``model.keras`` (the best epoch),
``history.csv``, ``metrics.json`` and ``checkpoint/`` (what ``--resume`` needs).
Downstream tools rebuild everything from these files, never from retyped options.
"""

import json
import math
import os
import zipfile

import numpy as np

from ferkit import config as configuration
from ferkit import data
from ferkit.errors import FerError, shown
from ferkit.files import is_inside, read_json

# Keras is imported inside load_model only: checking a path, reading a config or the data
# must not wait ~5 s for TensorFlow, so that scripts refuse bad input at once.

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"  # written when a run finishes: its absence means still training
COMMAND_FILE = "command.txt"
# A training model's name is its model's and this (models.with_augmentation): a checkpoint's
# epoch-NNNN.keras holds one, and is read as the model inside it.
TRAINING_SUFFIX = "_training"
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRETRAINED = os.path.join(REPOSITORY, "pretrained", "ferkit-cnn.keras")


def run_folder(out, name):
    """The path ``out/<name>`` for a new run, refusing one that holds a run; creates nothing."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise FerError(f"{out}: is a file, expected the folder that run folders go in (--out)")
    # "." wrote the run into --out itself, beside the other runs; a path belongs in --out.
    if name in ("", ".", "..") or os.sep in name or (os.altsep and os.altsep in name):
        raise FerError(f"--name {name!r}: expected a folder name, without '/' (--out: where)")
    path = os.path.join(out, name)
    if os.path.exists(os.path.join(path, CONFIG_FILE)):
        raise FerError(f"{path}: a run already exists there (use --resume {path} to continue it)")
    if os.path.exists(path) and not os.path.isdir(path):
        raise FerError(f"{path}: is a file, expected a run folder")
    return path


def claim_new_folder(path):
    """Create ``path``, or if it exists the first free ``path-2``, ``path-3``, ..., and return
    it. ``os.mkdir`` fails for all but one process, so runs started in the same second under
    the default timestamped name (a shell loop of ``&``) each get a folder of their own."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    candidate, number = path, 1
    while True:
        try:
            os.mkdir(candidate)
            return candidate
        except FileExistsError:
            number += 1
            candidate = f"{path}-{number}"


MODEL_EXTENSIONS = (".keras", ".h5", ".hdf5")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def model_path(path):
    """The model file of a run folder or a model file given directly (it exists)."""
    if os.path.isdir(path):
        refuse_checkpoint_folder(path)
        candidate = os.path.join(path, MODEL_FILE)
        if os.path.exists(candidate):
            return candidate
        # A finished run's folder holding one model under another name (pretrained/ holds
        # ferkit-cnn.keras beside its config.json and metrics.json) is that model. A run still
        # training has no metrics.json: a model file of the user's in its folder is not its own.
        others = sorted(
            name
            for name in os.listdir(path)
            if name.lower().endswith(MODEL_EXTENSIONS) and os.path.isfile(os.path.join(path, name))
        )
        if not os.path.exists(os.path.join(path, METRICS_FILE)):
            others = []
        if len(others) == 1:
            return os.path.join(path, others[0])
        if others:
            raise FerError(
                f"{path}: no {MODEL_FILE}, and {len(others)} model files "
                f"({', '.join(others)}): give one of them"
            )
        raise FerError(f"{path}: run folder has no {MODEL_FILE} (did its training finish?)")
    if not os.path.exists(path):
        raise FerError(f"{path}: no such run folder or model file")
    return path


def checked_model_path(path):
    """``model_path``, and the file checked to be a .keras zip or an HDF5 .h5 by its name and
    first bytes only, so that a wrong file is refused before Keras is started."""
    path = model_path(path)
    extension = os.path.splitext(path)[1].lower()
    if extension not in MODEL_EXTENSIONS:
        raise FerError(
            f"{path}: not a model file: expected a run folder, a .keras file or a legacy .h5 file"
        )
    if extension == ".keras":
        if not zipfile.is_zipfile(path):
            raise FerError(
                f"{path}: not a Keras model (a .keras file is a zip archive, this is not)"
            )
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                raise FerError(f"{path}: not a Keras model (the zip archive has no config.json)")
    else:
        with open(path, "rb") as file:
            if file.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
                raise FerError(
                    f"{path}: not a Keras model (a {extension} file is HDF5, this is not)"
                )
    return path


def saved_layers(path):
    """[(class name, layer name)] of a .keras file's network (of a checkpoint, the model's
    inside its training model), read from the config.json in its zip archive without
    starting Keras (so that a mistyped layer is refused at once); None for an .h5 file, whose
    layers only Keras reads."""
    path = model_path(path)
    if not path.lower().endswith(".keras"):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            saved = json.loads(archive.read("config.json"))["config"]
        inner = saved["name"].removesuffix(TRAINING_SUFFIX)
        for layer in saved["layers"] if saved["name"].endswith(TRAINING_SUFFIX) else ():
            if layer["class_name"] == "Functional" and layer["config"]["name"] == inner:
                saved = layer["config"]
        return [(layer["class_name"], layer["config"]["name"]) for layer in saved["layers"]]
    except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile):
        return None  # Keras, loading it, will say what is wrong


def run_config(path):
    """The config.json of a model's run (a run folder, a model file inside one or in its
    checkpoint folder), or None."""
    config_path = os.path.join(model_run_folder(path), CONFIG_FILE)
    return read_run_config(config_path) if os.path.exists(config_path) else None


def recorded_sharpness(path):
    """The mean sharpness of the faces the model at ``path`` (a run folder or a model file)
    trained on, as its run's config.json records it; None where nothing is: a model without
    a run, a run trained before ferkit recorded it, another tool's config.json."""
    config_path = os.path.join(model_run_folder(path), CONFIG_FILE)
    try:
        config = read_json(config_path)
    except (FerError, OSError):
        return None
    if not isinstance(config, dict) or "train_sharpness" not in config:
        return None
    value = config["train_sharpness"]
    is_valid, requirement = RECORDED_FACTS["train_sharpness"]
    if not is_valid(value):  # as read_run_config refuses it
        raise FerError(f"{config_path}: train_sharpness must be {requirement}, got {shown(value)}")
    return float(value)


def is_checkpoint_folder(folder):
    """Whether ``folder`` is a run's checkpoint folder: named so, beside the run's
    config.json, and holding its state.json or beside its history.csv (a folder of that name
    beside another tool's config.json is not one)."""
    from ferkit import checkpoints  # here: checkpoints imports this module

    folder = os.path.normpath(os.path.abspath(folder))
    run = os.path.dirname(folder)
    return (
        os.path.basename(folder) == checkpoints.FOLDER
        and os.path.isdir(folder)
        and os.path.exists(os.path.join(run, CONFIG_FILE))
        and (
            os.path.exists(os.path.join(folder, checkpoints.STATE_FILE))
            or os.path.exists(os.path.join(run, HISTORY_FILE))
        )
    )


def model_run_folder(path):
    """The run folder whose config.json describes the model at ``path`` (a run folder, or a
    model file: its own folder's, or for a checkpoint's epoch-NNNN.keras its run's)."""
    from ferkit import checkpoints  # here: checkpoints imports this module

    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    # Only a checkpoint's name, in a run's checkpoint folder: a run may itself be named
    # "checkpoint", and a copied file be kept in a folder of that name.
    if (
        not os.path.isdir(path)
        and checkpoints.CHECKPOINT_NAME.match(os.path.basename(path))
        and is_checkpoint_folder(folder)
    ):
        return os.path.dirname(folder)
    return folder


def check_outside_checkpoints(path, source, option, role=None):
    """Refuse an output ``path`` (``option``'s) in the checkpoint folder of the model at
    ``source`` (named ``role``), which --resume reads and tidies."""
    from ferkit import checkpoints  # here: checkpoints imports this module

    folder = os.path.join(model_run_folder(source), checkpoints.FOLDER)
    if path and is_checkpoint_folder(folder) and is_inside(path, folder):
        raise FerError(
            f"{path}: is in the checkpoint folder of {role or source}, which --resume reads; "
            f"write {option} elsewhere"
        )


def checkpoint_folder_around(path):
    """The run's checkpoint folder that ``path`` is (or is below), or None."""
    folder = os.path.realpath(path)
    while True:
        if is_checkpoint_folder(folder):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def refuse_checkpoint_folder(path):
    """A run's checkpoint folder given where a model or a run is meant: said so, not that
    it lacks the run's files."""
    if is_checkpoint_folder(path):
        raise FerError(
            f"{path}: is a run's checkpoint folder: give the run folder (its best model) or "
            "the epoch-NNNN.keras in it (its last epoch)"
        )


class MovedDataError(FerError):
    """A data file a run recorded is gone or changed where it was, and the run recorded its
    SHA-256: ``--run-data`` can say where a file with those contents is now."""


# Computed sharpness by (data file, its recorded SHA-256, limit, split): an ensemble's
# members trained on one file and split share it, and reading FER2013 takes seconds.
_COMPUTED_SHARPNESS = {}


def computed_sharpness(path, moved=()):
    """For a run trained before ferkit recorded ``recorded_sharpness``: (the mean sharpness of
    the faces the model at ``path`` trained on, the data file it was computed from), rebuilt
    from the run's recorded data file (or its copy in ``moved``, ``--run-data``) and split,
    as training computes it. A FerError says why it cannot be (no run, the file gone or
    changed)."""
    from ferkit import evaluation  # here: evaluation imports this module

    config_path = os.path.join(model_run_folder(path), CONFIG_FILE)
    if not os.path.exists(config_path):
        raise FerError("no run's config.json beside it")
    config = read_run_config(config_path)
    found = relocated({path: config}, moved, keys=("data",), strict=False)[path]
    source, digest = found["data"], config.get("data_sha256")
    if not os.path.exists(source):
        if not digest:  # nothing to find a copy by
            raise FerError(
                f"its training data {source} is not there, and with no SHA-256 of it "
                "recorded, only that file can be used: put it back"
            )
        raise MovedDataError(f"its training data {source} is not there")
    if source == config["data"]:  # a --run-data copy was checked when it was found
        check_unchanged(source, digest, path)
    recorded_split = config.get("split")
    key = (os.path.realpath(source), digest, config.get("limit"), repr(recorded_split))
    if key not in _COMPUTED_SHARPNESS:
        if config.get("val_data"):  # it validated on --val-data: it trained on all of --data
            train_images = labelled_rows(found).images
        else:
            train, _, split = load_training_data(found)
            if split != recorded_split:
                raise FerError(
                    f"{source}: the training split rebuilt from it differs from the one "
                    f"{path} recorded (the file changed, or {CHANGED_READER})"
                )
            train_images = train.images
        _COMPUTED_SHARPNESS[key] = round(float(evaluation.sharpness(train_images)), 4)
    return _COMPUTED_SHARPNESS[key], source


def read_run_config(config_path):
    """A run's config.json, with the options added since it was trained; refuses a
    config.json that training did not write (another tool's, beside a downloaded model)."""
    config = read_json(config_path)
    if (
        not isinstance(config, dict)
        or config.get("network") not in configuration.NETWORK_DEFAULTS
        or not isinstance(config.get("data"), str)
    ):
        raise FerError(f"{config_path}: not a ferkit run's config.json (no network and data)")
    config = configuration.recorded(config)
    # Every option training records, so that the scripts reading one find it (a config.json
    # cut down by hand gave a KeyError for val_split or rotation_range).
    network = config["network"]
    recorded = [*configuration.DEFAULTS, *configuration.NETWORK_DEFAULTS[network]]
    missing = [key for key in recorded if key not in config]
    if missing:
        raise FerError(f"{config_path}: not a ferkit run's config.json (no {missing[0]})")
    try:
        # Each value's type and range, for every script that reads a run (a hand-edited
        # "limit": "abc" gave confusion.py a TypeError), as resume checks them; the rules on
        # combinations (Adam with weight decay) are left out, so that a run recorded before
        # them still loads (so does an Adam run with a --momentum outside SGD's range, which
        # Adam ignores).
        configuration.validate(config, combinations=False)
    except FerError as error:
        raise FerError(f"{config_path}: {error}") from None
    for key, (is_valid, requirement) in RECORDED_FACTS.items():
        if key in config and not is_valid(config[key]):  # older runs lack some of them
            raise FerError(f"{config_path}: {key} must be {requirement}, got {shown(config[key])}")
    if "split" in config:
        _check_split(config_path, config)
    return config


def _check_split(config_path, config):
    """The split record is one of the two that training writes, and agrees with --val-data:
    ensembles and resumes compare it, and read the validation file it names."""
    split, val_data = config["split"], config.get("val_data")
    if val_data is not None:
        expected = {"val_data": lambda value: value == val_data, "val_count": is_whole}
    else:
        expected = {
            "val_split": lambda value: is_number(value) and 0 < value < 1,
            "split_seed": lambda value: is_whole(value, minimum=0),
            "val_count": is_whole,
            "val_indices_sha256": lambda value: isinstance(value, str),
        }
    kind = "a --val-data run" if val_data is not None else "a run split from --data"
    for key in expected:
        if key not in split:
            raise FerError(f"{config_path}: split lacks {key}, which {kind} records")
        if not expected[key](split[key]):
            got = shown(split[key])
            raise FerError(f"{config_path}: split's {key} is not what {kind} records, got {got}")
    extra = sorted(set(split) - set(expected))
    if extra:
        raise FerError(f"{config_path}: split has {extra[0]}, which {kind} does not record")


def is_whole(value, minimum=1):
    """A recorded whole number (JSON's true is not one) of at least ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def is_number(value):
    """A recorded JSON number that is a float too (10**400 passed, then failed once training
    ran)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _is_sha256(value):
    return isinstance(value, str) and len(value) == 64 and set(value) <= set("0123456789abcdef")


# What training records beside the options (how the run computed, what it read), which a
# resume and the other scripts use again: a hand-edited "versions": "x" gave a traceback,
# and "data_sha256": 5 or "split": "x" blamed the data file.
RECORDED_FACTS = {
    # null: recorded before hashes were kept.
    "data_sha256": (lambda value: value is None or _is_sha256(value), "a SHA-256 or null"),
    "val_data_sha256": (lambda value: value is None or _is_sha256(value), "a SHA-256 or null"),
    "split": (lambda value: isinstance(value, dict), "a JSON object"),
    "train_count": (is_whole, "a whole number of at least 1"),
    "precision_resolved": (
        lambda value: value in configuration.CHOICES["precision"][1:],
        "one of " + ", ".join(configuration.CHOICES["precision"][1:]),
    ),
    "jit_resolved": (lambda value: isinstance(value, bool), "true or false"),
    "versions": (lambda value: isinstance(value, dict), "a JSON object"),
    # evaluation.sharpness of the training faces, which --blur auto matches test faces to.
    # 0 for a training set of flat faces, which auto then blurs faces to match.
    "train_sharpness": (
        lambda value: is_number(value) and 0 <= value < math.inf,
        "a number of at least 0",
    ),
}


def load_model(path, unsafe=False, keep_precision=False):
    """Load a run's best model (or a .keras/.h5 file) with Keras' safe mode, checked for shape.

    Safe mode refuses a Lambda layer, which would run arbitrary code; ``unsafe`` allows it.
    Keras 3 applies safe mode to legacy .h5 files too (tests/test_reliability.py checks).
    A model saved in mixed bfloat16 or float16 computes in float32 where ``--precision auto``
    would train in float32 (no native bfloat16), unless ``keep_precision`` (``_in_float32``).
    """
    file = checked_model_path(path)  # a wrong path or file without waiting for Keras
    import keras

    from ferkit import models  # here: it imports Keras

    try:
        # ferkit's layers: a checkpoint (checkpoint/epoch-NNNN.keras) holds the training
        # model, augmentation around the model, whose weights are the epoch's.
        model = keras.saving.load_model(
            file, compile=False, safe_mode=not unsafe, custom_objects=models.CUSTOM_OBJECTS
        )
    except Exception as error:  # Keras raises many types for a file that is not a model.
        if "safe_mode" in str(error) or "Lambda" in str(error):
            raise FerError(
                f"{file}: holds a Lambda layer (arbitrary code); refused, pass --unsafe "
                "only if you trust where this file came from"
            ) from None
        raise FerError(f"{file}: not a Keras model ({_first_line(error)})") from None
    model = models.inner_model(model)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise FerError(
            f"{file}: model has {len(model.inputs)} inputs and {len(model.outputs)} outputs, "
            "expected one (48, 48, 1) image input and one 7-class output"
        )
    input_shape = tuple(model.inputs[0].shape[1:])
    if input_shape != (data.IMAGE_SIZE, data.IMAGE_SIZE, 1):
        raise FerError(f"{file}: model input is {input_shape}, expected (48, 48, 1)")
    classes = model.outputs[0].shape[-1]
    if classes != data.NUM_CLASSES:
        raise FerError(f"{file}: model outputs {classes} classes, expected {data.NUM_CLASSES}")
    from ferkit import backend

    if keep_precision or backend.resolve_precision("auto") != "float32":
        return model
    return _in_float32(model)


# 16-bit policies a CPU without native bfloat16 runs slower than float32 (bench/RESULTS.md).
HALF_PRECISION_POLICIES = ("mixed_bfloat16", "bfloat16", "mixed_float16", "float16")


def _in_float32(model):
    """The same model and weights computing in float32. Without native bfloat16 (a CPU
    without AMX or AVX512-BF16) it is emulated: the shipped CNN predicted 3.7 times slower
    than in float32, and each backend rounded it differently; a CNN in mixed float16
    predicted 1.3 times slower there (bench/RESULTS.md)."""
    from ferkit import models

    def float32_policies(value):
        if isinstance(value, dict):
            if value.get("class_name") == "DTypePolicy" and (
                value.get("config", {}).get("name") in HALF_PRECISION_POLICIES
            ):
                return {**value, "config": {**value["config"], "name": "float32"}}
            return {key: float32_policies(item) for key, item in value.items()}
        if isinstance(value, list):
            return [float32_policies(item) for item in value]
        return value

    config = model.get_config()
    converted = float32_policies(config)
    if converted == config:
        return model  # already float32
    try:
        rebuilt = model.__class__.from_config(converted, custom_objects=models.CUSTOM_OBJECTS)
        rebuilt.set_weights(model.get_weights())  # mixed precision keeps weights in float32
    except Exception:  # a model Keras cannot rebuild from its config: as saved, only slower
        return model
    return rebuilt


def _first_line(error):
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


# Why a run's rows can differ from an unchanged data file: the one change to the readers.
CHANGED_READER = (
    "it was recorded before ferkit read only a fer2013.csv's Training rows, and its PublicTest "
    "rows as --val-data, and used them all"
)


def labelled_rows(config, new=False):
    """Every labelled row a run's config trains and validates on (before the split); for a
    ``new`` run, a --limit that keeps some classes out of data in class order is refused."""
    everything = _read_labelled(config["data"], "Training")
    limit = config.get("limit")
    if limit and limit < len(everything):
        kept = _subset(everything, np.arange(limit))
        # An image folder not named by id is read class by class: its first rows were Angry
        # and Disgust only (a validation accuracy of 1.0). Asked of new runs only.
        in_class_order = new and np.all(np.diff(everything.labels) >= 0)
        lost = np.setdiff1d(everything.labels, kept.labels) if in_class_order else []
        if len(lost):
            names = ", ".join(data.CLASS_NAMES[label] for label in lost)
            raise FerError(
                f"--limit {limit}: {config['data']} lists its faces class by class, so its "
                f"first {limit} rows hold no {names} faces: leave --limit out"
            )
        everything = kept
    return everything


def load_training_data(config, new=False):
    """(train FerData, validation FerData, split record) as a run's config describes them
    (``new``: for a run about to start, see ``labelled_rows``)."""
    everything = labelled_rows(config, new)
    if config.get("val_data"):
        _refuse_validating_on_training_rows(config["data"], config["val_data"])
        try:
            validation = _read_labelled(config["val_data"], "PublicTest")
        except FerError as error:
            raise FerError(f"--val-data {error}") from None
        _refuse_training_faces_as_validation(everything, validation, config["val_data"])
        train_indices = np.arange(len(everything))
        validation_indices = None
        split = {"val_data": config["val_data"], "val_count": len(validation)}
    else:
        try:
            train_indices, validation_indices = data.stratified_split(
                everything.labels, config["val_split"], config["split_seed"]
            )
        except FerError as error:
            # It blamed --val-split alone for the rows --limit kept (where it kept fewer
            # than the file has: a file of five rows is too small with or without it).
            limit = config.get("limit")
            if limit is None or len(_read_labelled(config["data"], "Training")) <= limit:
                raise
            raise FerError(f"{error}: --limit {limit} keeps too few") from None
        validation = _subset(everything, validation_indices)
        split = {
            "val_split": config["val_split"],
            "split_seed": config["split_seed"],
            "val_count": int(len(validation_indices)),
            "val_indices_sha256": data.indices_hash(validation_indices),
        }
    return _subset(everything, train_indices), validation, split


def _refuse_training_faces_as_validation(training, validation, val_path):
    """The same faces under another name (a gzipped copy, a subset of the rows) validate on
    training images as much as the same file does. FER2013's own splits share a few faces
    (duplicates in the original collection), so only a majority is refused."""
    seen = {image.tobytes() for image in training.images}
    shared = sum(image.tobytes() in seen for image in validation.images)
    if shared > len(validation) / 2:
        raise FerError(
            f"--val-data {val_path}: {shared} of its {len(validation)} faces are in --data, "
            "so the run would validate on its own training images"
        )


def _refuse_validating_on_training_rows(data_path, val_path):
    """Only a fer2013.csv splits itself (Training rows against PublicTest rows): any other
    file or folder given as both --data and --val-data would validate, choose the best epoch
    and later fit ensemble weights on its own training images."""
    if data.has_usage_column(data_path):
        return
    try:
        folders = os.path.isdir(data_path), os.path.isdir(val_path)
        # Sizes first, so two different files are told apart without hashing them.
        comparable = folders == (True, True) or (
            folders == (False, False) and os.path.getsize(data_path) == os.path.getsize(val_path)
        )
        same = os.path.realpath(data_path) == os.path.realpath(val_path) or (
            comparable and data.file_sha256(data_path) == data.file_sha256(val_path)
        )
    except OSError:
        return  # a missing or unreadable path: the readers name the problem
    if same:
        raise FerError(
            f"--val-data {val_path}: the same data as --data, so the run would validate on "
            "its own training images (leave --val-data out to split off a validation part)"
        )


def _read_labelled(path, usage):
    """The labelled rows of ``path``: of a fer2013.csv only those of ``usage``.

    fer2013.csv holds all three splits, so training reads its Training rows and a validation
    file its PublicTest rows; other CSVs and image folders have no splits and are read whole.
    """
    if not data.has_usage_column(path):
        return data.read_any(path, require_labels=True)
    return data.read_csv(path, usage=usage, require_labels=True)


def _subset(dataset, indices):
    return data.FerData(
        images=dataset.images[indices],
        labels=dataset.labels[indices],
        ids=dataset.ids[indices],
        path=dataset.path,
    )


def check_unchanged(source, digest, run):
    """Refuse a data file whose SHA-256 is no longer the ``digest`` recorded when ``run`` was
    trained on it (runs recorded before hashes were kept have none, and pass)."""
    if digest and not data.holds_sha256(source, digest):
        raise MovedDataError(f"{source}: changed since {run} was trained on it")


def relocated(configs, moved, keys=("data", "val_data"), strict=True):
    """``configs`` ({run: config}) with each data file they record replaced by the file of
    ``moved`` (``--run-data``) holding the same contents, found by the recorded SHA-256.

    Data files move (a fresh clone, another machine, a gzipped copy), and a run's
    validation images are rebuilt from them: the shipped model recorded /tmp/fer2013/train.csv.
    ``keys``: the files the caller reads (or {run: keys}). A ``moved`` file that is none of
    them is refused, not ignored (``strict``: an ensemble checks that once, for all members).
    """
    check_run_data_exist(moved)
    digests = {}
    for candidate in moved:  # each hashed once: that reads the whole file
        try:
            digests[candidate] = data.content_sha256s(candidate)
        except FerError as error:
            raise FerError(f"--run-data {error}") from None
    read = {run: keys[run] if isinstance(keys, dict) else keys for run in configs}
    used, changed = set(), {}
    for run, config in configs.items():
        config = dict(config)
        for key in read[run]:
            digest = config.get(f"{key}_sha256")
            matches = [c for c in moved if config.get(key) and digest in digests[c]]
            if digest and matches:
                config[key] = matches[0]
                used.update(matches)  # the same file twice, or a gzipped copy of it
        changed[run] = config
    unused = [candidate for candidate in moved if candidate not in used]
    if strict and unused:
        recorded = [
            (run, config[key], config.get(f"{key}_sha256"))
            for run, config in configs.items()
            for key in dict.fromkeys(read[run])
            if config.get(key)
        ]
        raise _unmatched(unused[0], recorded, len(digests[unused[0]]) > 1)
    return changed


def _unmatched(candidate, recorded, gzipped):
    """The error for a --run-data file that holds none of the ``recorded`` files, given as
    (run, path, SHA-256 or None for a run recorded before hashes were kept)."""
    unhashed = [(run, path) for run, path, digest in recorded if not digest]
    if unhashed and len(unhashed) == len(recorded):
        # The file that is gone, if one is: that is the one a --run-data was meant for.
        run, path = next(((r, p) for r, p in unhashed if not os.path.exists(p)), unhashed[0])
        remedy = "put that file back where it was"
        if os.path.exists(path):
            remedy = "it is where it was, and is read there: leave out --run-data"
        return FerError(
            f"--run-data {candidate}: {run} recorded no SHA-256 of {path}, so no file can be "
            f"checked to hold its rows: {remedy}"
        )
    runs = ", ".join(dict.fromkeys(run for run, _, _ in recorded))
    names = ", ".join(
        dict.fromkeys(os.path.basename(path) for _, path, digest in recorded if digest)
    )
    message = (
        f"--run-data {candidate}: not a file this command reads for {runs} ({names}: the "
        "SHA-256 differs)"
    )
    if unhashed:
        message += (
            f"; {', '.join(path for _, path in unhashed)} was recorded without a SHA-256, so "
            "only the file where it was can be used"
        )
    if (
        not gzipped
        and not os.path.isdir(candidate)
        and any(path.endswith(".gz") for _, path, _ in recorded)
    ):
        # Only a gzip file's text is hashed as well: a plain copy cannot match one.
        message += "; for a run trained on a .gz file, give that .gz file"
    return FerError(message)


def check_run_data_exist(moved):
    for path in moved:
        if not os.path.exists(path):
            raise FerError(f"--run-data {path}: no such file")


def without_sharpness(sources):
    """{source: its run's config} of the models at ``sources`` whose run recorded no
    sharpness of its training faces: those ``--blur auto`` computes it for, from their data."""
    configs = {source: run_config(source) for source in sources}
    return {source: config for source, config in configs.items() if lacks_sharpness(config)}


def lacks_sharpness(config):
    """Whether a run's config (None: no run) is of a run trained before ferkit recorded the
    sharpness of its training faces, which ``--blur auto`` computes from its data instead."""
    return config is not None and "train_sharpness" not in config


def add_run_data_argument(parser):
    parser.add_argument(
        "--run-data",
        action="append",
        default=[],
        metavar="FILE",
        help="where the data a run trained on is now, if it moved: found by the SHA-256 the "
        "run recorded (a gzipped copy of a plain file too); repeat for several",
    )


# What a run did with each data file it recorded, as its messages say it.
ROLES = {"data": "trained on", "val_data": "validated on"}


def missing_data(
    source,
    run,
    digest,
    moved,
    use="its validation images are rebuilt from it",
    role=ROLES["data"],
):
    """The error for a data file (or image folder) ``run`` trained or validated on
    (``role``) that is not where it recorded it."""
    if not digest:  # a run recorded before hashes were kept: nothing to find a copy by
        return FerError(
            f"{source}: no such file; {run} was {role} it and recorded no SHA-256 of it, "
            "so only that file can be used: put it back"
        )
    if moved:
        return FerError(
            f"{source}: no such file, {run} was {role} it, and no --run-data holds its "
            f"contents (SHA-256 {digest[:16]}...)"
        )
    return FerError(
        f"{source}: no such file; {run} was {role} it, and {use} (put it back, or give "
        "where it is now as --run-data)"
    )


def validation_data(path, moved=(), strict=True):
    """A run's own validation images, rebuilt from its recorded split; the data files are
    checked against the hashes recorded when it was trained. ``moved``: data files found
    elsewhere (``--run-data``), used for recorded files with the same contents."""
    config = run_config(path)
    if config is None:
        raise FerError(
            f"{path}: no config.json beside the model, so its validation split is unknown"
        )
    recorded_val_data = config.get("val_data")  # as the split records it, wherever it is now
    key = "val_data" if recorded_val_data else "data"
    found = relocated({path: config}, moved, keys=(key,), strict=strict)[path]
    # The validation images come from --val-data when the run had one, else from --data.
    source, digest = found[key], config.get(f"{key}_sha256")
    if not os.path.exists(source):
        raise missing_data(source, path, digest, moved, role=ROLES[key])
    if source == config[key]:  # a --run-data file was checked when it was found
        # The split is recorded as row indices: a file edited in place with as many rows
        # would give other images (perhaps training ones) under the same indices.
        check_unchanged(source, digest, path)
    config = found
    if key == "val_data":  # read on its own: --data is not needed for it
        validation = _read_labelled(source, "PublicTest")
        split = {"val_data": recorded_val_data, "val_count": len(validation)}
    else:
        _, validation, split = load_training_data(config)
    recorded = config.get("split", {})
    if split != recorded:
        raise FerError(
            f"{source}: the validation split rebuilt from this file differs from the one "
            f"recorded in the run (the file changed, or {CHANGED_READER})"
        )
    return validation
