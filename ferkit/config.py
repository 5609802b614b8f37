"""Training defaults, in one place, and how presets and the command line override them.

The order is: ``DEFAULTS`` (with the network's own dropout), then the preset file
``configs/<network>_<name>.json`` (only what differs), then options given on the command line.
"""

import math
import numbers
import os
import re

from ferkit.data import IMAGE_SIZE
from ferkit.errors import FerError, shown
from ferkit.files import read_json

CONFIG_FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")

# The course report trained 300 epochs with Adam; keeping the best epoch by validation
# accuracy, halving the learning rate on plateaus and stopping after a long plateau make
# that practical without changing what is learnt.
DEFAULTS = {
    "epochs": 300,
    "batch_size": 128,
    "optimizer": "adam",
    "lr": 1e-3,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "schedule": "plateau",
    "plateau_patience": 10,
    "plateau_factor": 0.5,
    "min_lr": 1e-6,
    "early_stop_patience": 30,
    "label_smoothing": 0.0,
    "augment": True,
    "rotation_range": 10.0,
    "width_shift_range": 0.1,
    "height_shift_range": 0.1,
    "zoom_range": 0.1,
    "horizontal_flip": True,
    "random_erasing": 0.0,
    "mixup": 0.0,
    "val_split": 0.1,
    "split_seed": 0,
    "seed": 1,
    "precision": "auto",
    "jit": "auto",
    "limit": None,
    "distribute": False,
    # Minutes: after epoch 1, --epochs shrinks to what fits (None: no budget; see training).
    "time_budget": None,
}
# The augmentation's options, as models.build_augmentation takes them: the affine ones
# (ImageDataGenerator's) and random erasing.
AFFINE_OPTIONS = (
    "rotation_range",
    "width_shift_range",
    "height_shift_range",
    "zoom_range",
    "horizontal_flip",
)
AUGMENTATION_OPTIONS = (*AFFINE_OPTIONS, "random_erasing")


def transforms_faces(config):
    """Whether training builds the augmentation's affine transform (``models.RandomAffine``:
    a flip or any geometric range), which TensorFlow's XLA cannot compile."""
    return bool(config.get("augment")) and any(config.get(key) for key in AFFINE_OPTIONS)


# --time-budget plans the epochs for this share of the budget: on one CPU, a CNN epoch of the
# same work took 135-154 s within one run, and set-up and the final evaluation add about
# 20 s (bench/RESULTS.md); with the whole budget planned, such a run ended 18 s over it.
BUDGET_PLANNED_SHARE = 0.95
# --time-budget's largest value in minutes: a year, longer than any run this is for.
MAX_TIME_BUDGET = 525_600
# keras.utils.set_random_seed takes seeds from 0 to 2**32 - 1; a larger --seed failed only
# after the run folder was made.
MAX_SEED = 2**32 - 1
# --mixup's alpha: beyond these, float32 draws NaN (1e-300) or overflows (1e300).
MIXUP_RANGE = (1e-3, 1e3)
# Prediction's batch (predict.py, confusion.py, ensemble.py): large enough to keep a CPU's
# cores busy; it changes speed and memory, not results.
PREDICTION_BATCH_SIZE = 512
# The figure scripts' defaults. SmoothGrad's noise (saliency.py --noise) as a fraction of the
# pixel range, the paper's recommended 10-20%; the share of most salient pixels a masked face
# keeps; faces per class in samples.py; visualize_filters.py's gradient ascent.
SMOOTHGRAD_NOISE = 0.15
SALIENCY_KEEP = 0.25
SAMPLES_PER_CLASS = 6
FILTER_ASCENT = {"filters": 16, "steps": 50, "step_size": 3.0}
# Options added after runs were first recorded, with the value that turns each off: a run
# whose config.json lacks one was trained without it.
LATER_OPTIONS = {
    "random_erasing": 0.0,
    "mixup": 0.0,
    "limit": None,
    "distribute": False,
    "time_budget": None,
}
NETWORK_DEFAULTS = {
    "cnn": {"dropout_conv": 0.25, "dropout_dense": 0.5},
    "dnn": {"dropout_dense": 0.3},
}
# TensorFlow inter-op threads per network on the CPU: the CNN's few large ops train faster
# with one (the cores go to each op), the DNN's many small independent ops with two
# (bench/RESULTS.md). A user's TF_NUM_INTEROP_THREADS wins.
INTEROP_THREADS = {"cnn": 1, "dnn": 2}
CHOICES = {
    "optimizer": ("adam", "adamw", "sgd"),
    "schedule": ("plateau", "cosine", "constant"),
    "precision": ("auto", "float32", "mixed_bfloat16", "mixed_float16"),
    "jit": ("auto", "on", "off"),
}


def preset_path(network, preset):
    return os.path.join(CONFIG_FOLDER, f"{network}_{preset}.json")


def available_presets(network):
    if not os.path.isdir(CONFIG_FOLDER):
        return []
    prefix = f"{network}_"
    return sorted(
        name[len(prefix) : -len(".json")]
        for name in os.listdir(CONFIG_FOLDER)
        if name.startswith(prefix) and name.endswith(".json")
    )


def resolve(network, preset=None, overrides=None):
    """The full configuration: defaults, then the preset, then ``overrides`` (not None)."""
    config = {"network": network, **DEFAULTS, **NETWORK_DEFAULTS[network]}
    values = {}
    if preset is not None:  # --preset "" is a mistake too, not "no preset"
        path = preset_path(network, preset)
        if not os.path.exists(path):
            names = ", ".join(available_presets(network)) or "none"
            raise FerError(f"unknown preset {preset!r} for the {network} (available: {names})")
        values = read_json(path)
        if not isinstance(values, dict):
            raise FerError(f"{path}: not a preset (not a JSON object of options)")
        values.pop("description", None)
        # The network is the script's: a preset naming it would build the other one's options.
        unknown = sorted(set(values) - set(config) | {"network"} & set(values))
        if unknown:
            raise FerError(f"{path}: unknown option {unknown[0]!r}")
        config.update(values)
        config["preset"] = preset
    typed = {key for key, value in (overrides or {}).items() if value is not None}
    for key in typed:
        config[key] = overrides[key]
    try:
        validate(config)
        # New runs only: an alpha of 1e-300 drew NaN (float32), called a diverged run, and
        # 1e300 overflowed; a recorded run with another (0.0005 trained) still resumes.
        if config["mixup"] and not MIXUP_RANGE[0] <= config["mixup"] <= MIXUP_RANGE[1]:
            low, high = MIXUP_RANGE
            error = FerError(
                f"--mixup must be 0 (off) or from {low:g} to {high:g}, got {shown(config['mixup'])}"
            )
            error.option = "mixup"  # named as the preset file writes it, when it came from one
            raise error
        # Typed, but ignored: --momentum with Adam was printed and recorded as if it trained.
        for key, reason in unused_options(config).items():
            if key in typed:
                name = SWITCHES_OFF.get(key) or option_name(key)  # --no-flip typed, not --flip
                raise FerError(f"{name} is not used when {reason}: leave it out")
    except FerError as error:
        from_preset = set(values) - typed  # values the user did not type: say where they are
        message = _as_written_in_preset(str(error), from_preset)
        if getattr(error, "option", None) in from_preset or message != str(error):
            raise FerError(f"{message} (from {preset_path(network, preset)})") from None
        raise
    return config


# The command line's switches that turn a key true by default off (--no-flip sets
# horizontal_flip false): named here for training's parser and for messages about them.
SWITCHES_OFF = {"horizontal_flip": "--no-flip", "augment": "--no-augment"}


def option_name(key):
    """The command-line option of a configuration key: --val-split for val_split."""
    return "--" + key.replace("_", "-")


def _as_written_in_preset(message, keys):
    """``message`` with the options whose values came from a preset file named as the file
    names them: "horizontal_flip" where the message said --horizontal-flip, an option the
    command line does not have (it has --no-flip), and "augment": false for --no-augment."""
    # A switch's value of the wrong type is named "--augment", which is no option either.
    spelled = {
        key: [(switch, f'"{key}": false'), (option_name(key), f'"{key}"')]
        for key, switch in SWITCHES_OFF.items()
    }
    for key in keys:
        for option, written in spelled.get(key, [(option_name(key), f'"{key}"')]):
            message = re.sub(rf"{re.escape(option)}(?![\w-])", written, message)
    return message


def validate(config, combinations=True):
    """Refuse option values that cannot work, with the option's command-line name; with
    ``combinations`` False, only each value on its own (a recorded run being resumed)."""

    def refuse(key, requirement):
        error = FerError(f"{option_name(key)} {requirement}, got {shown(config[key])}")
        error.option = key  # resolve names the preset file where the value came from
        error.requirement = requirement  # train_cnn.py --seeds words it for each seed
        raise error

    for key, choices in CHOICES.items():
        if config[key] not in choices:
            refuse(key, f"must be one of {', '.join(choices)}")
    # Types first (a preset file can hold anything JSON can), then finiteness: argparse's
    # float() accepts "nan" and "inf", which pass every comparison below or fail late.
    defaults = {**DEFAULTS, **NETWORK_DEFAULTS["cnn"]}  # the type each option has
    for key, value in config.items():
        default = defaults.get(key)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                refuse(key, "must be true or false")
        elif isinstance(default, numbers.Real) or key == "limit":
            if value is None and key == "limit":
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                refuse(key, "must be a number")
            if isinstance(value, float) and not math.isfinite(value):  # 10**400 is an int
                refuse(key, "must be a finite number")
            if isinstance(default, int) or key == "limit":  # counts and seeds
                if value != int(value):
                    refuse(key, "must be a whole number")
                config[key] = int(value)  # 10.0 from a preset file works as range(10)
            else:
                try:  # Keras refuses a preset's "lr": 1 or "momentum": 0 as not floats
                    config[key] = float(value)
                except OverflowError:  # 10**400
                    refuse(key, "must be a finite number")
    budget = config.get("time_budget")
    if budget is not None and (
        isinstance(budget, bool)
        or not isinstance(budget, numbers.Real)
        or not 0 <= budget <= MAX_TIME_BUDGET  # NaN too; 1e307 minutes overflowed as seconds
    ):
        refuse(
            "time_budget",
            f"must be a number of minutes, at most {MAX_TIME_BUDGET} (0: none, as without "
            "the option)",
        )
    for key in ("epochs", "batch_size", "limit"):
        if config[key] is not None and int(config[key]) < 1:
            refuse(key, "must be at least 1")
    if not config["lr"] > 0:
        refuse("lr", "must be positive")
    for key in ("plateau_patience", "early_stop_patience"):
        if int(config[key]) < 1:
            refuse(key, "must be at least 1")
    for key in ("seed", "split_seed", "weight_decay", "min_lr"):
        if config[key] < 0:
            refuse(key, "must not be negative")
    for key in ("seed", "split_seed"):
        if config[key] > MAX_SEED:
            refuse(key, f"must be at most {MAX_SEED}")
    if combinations and config["optimizer"] == "adam" and config["weight_decay"]:
        # Adam would train without it while config.json recorded it as used.
        refuse("weight_decay", "is for --optimizer adamw or sgd (give 0 with adam)")
    if combinations and config["schedule"] != "constant" and config["min_lr"] > config["lr"]:
        # Plateaus and the cosine schedule would otherwise raise the rate, not lower it.
        refuse("min_lr", f"must not exceed --lr ({config['lr']}): give a lower --min-lr")
    # Adam and AdamW ignore --momentum, so a recorded Adam run from before this range was
    # checked still loads and resumes; a new run is refused, as for SGD.
    uses_momentum = config["optimizer"] == "sgd"
    if (combinations or uses_momentum) and not 0 <= config["momentum"] < 1:
        refuse("momentum", "must be in [0, 1)")
    if not 0 < config["plateau_factor"] < 1:
        refuse("plateau_factor", "must be between 0 and 1 (exclusive)")
    for key in ("dropout_conv", "dropout_dense", "label_smoothing"):
        if key in config and not 0 <= config[key] < 1:
            refuse(key, "must be in [0, 1)")
    if not 0 <= config["random_erasing"] <= 1:
        refuse("random_erasing", "must be a probability in [0, 1]")
    if not config["mixup"] >= 0:
        refuse("mixup", "(the Beta distribution's alpha) must not be negative")
    if combinations and config["weight_decay"] * config["lr"] >= 1:
        # Decoupled decay takes lr * weight_decay of each weight a step: all of it, or more.
        refuse("weight_decay", f"times --lr ({config['lr']:g}) must be below 1")
    if not 0 < config["val_split"] < 1:
        refuse("val_split", "must be between 0 and 1 (exclusive)")
    for key in ("rotation_range", "width_shift_range", "height_shift_range", "zoom_range"):
        if config[key] < 0:
            refuse(key, "must not be negative")
    # Larger values mean nothing more, and 1e300 failed late (float32 overflow), called a
    # diverged run or, in samples.py, a traceback.
    if config["rotation_range"] > 360:
        refuse("rotation_range", "must be at most 360 (degrees: a full turn)")
    for key in ("width_shift_range", "height_shift_range"):
        if config[key] > IMAGE_SIZE:
            refuse(key, f"must be at most {IMAGE_SIZE} (pixels from 1 on: the whole face)")
    if config["zoom_range"] >= 1:
        refuse("zoom_range", "must be below 1")
    if combinations and not config["augment"]:
        # --no-augment means none at all: erasing used to be dropped silently, mixup kept.
        for key in ("random_erasing", "mixup"):
            if config[key]:
                refuse(key, f"is an augmentation, which {SWITCHES_OFF['augment']} turns off")


def unused_options(config):
    """{key: why it means nothing} for the options the rest of ``config`` leaves unused."""
    unused = {}
    if config.get("val_data"):
        unused.update(dict.fromkeys(("val_split", "split_seed"), "validates on val_data"))
    if config.get("augment") is False:
        unused.update(dict.fromkeys(AFFINE_OPTIONS, "augment is off"))
    if config.get("optimizer", "sgd") != "sgd":  # Adam's betas are not --momentum
        unused["momentum"] = f"optimizer is {config['optimizer']}"
    if config.get("schedule", "plateau") != "plateau":
        reason = f"schedule is {config['schedule']}"
        unused.update(dict.fromkeys(("plateau_patience", "plateau_factor"), reason))
    if config.get("schedule") == "constant":
        unused["min_lr"] = "schedule is constant"
    return unused


def recorded(config):
    """A run's recorded configuration, with the options added since it was trained (off).

    Added after the recorded keys, so a resumed run prints its options in their old order."""
    added = {key: value for key, value in LATER_OPTIONS.items() if key not in config}
    return {**config, **added}


def describe(config):
    """The configuration as aligned 'key  value' lines, printed at the start of a run."""
    shown = dict(config)
    # Recorded as resolved, but another option makes them mean nothing.
    for key, reason in unused_options(config).items():
        if key in shown:
            shown[key] = f"{shown[key]} (not used: {reason})"
    width = max(len(key) for key in shown)
    return "\n".join(f"  {key:<{width}}  {value}" for key, value in shown.items())
