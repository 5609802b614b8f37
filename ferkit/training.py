"""Training shared by train_cnn.py and train_dnn.py.

One epoch at a time: the epoch's shuffle comes from (seed, epoch) and the augmentation's
random state is saved with the model, so a resumed run continues exactly where it stopped.
After every epoch the run folder holds a resumable checkpoint, the history and, when the
epoch improved validation accuracy, the new best model; everything is written atomically.
"""

import math
import os
import shlex
import sys
import time

import keras
import numpy as np

from ferkit import backend, data, models, runs
from ferkit import config as configuration
from ferkit.errors import FerError
from ferkit.files import atomic_path, read_json, write_json, write_text

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")
CHECKPOINT_FOLDER = "checkpoint"
STATE_FILE = "state.json"


def add_arguments(parser, network):
    """The training options; every default is None so that only what was typed overrides."""
    defaults = {**configuration.DEFAULTS, **configuration.NETWORK_DEFAULTS[network]}

    def option(name, kind, help_text, **extra):
        key = name.lstrip("-").replace("-", "_")
        shown = f" (default {defaults[key]})" if key in defaults else ""
        parser.add_argument(name, type=kind, default=None, help=help_text + shown, **extra)

    parser.add_argument(
        "--data", help="training CSV (train.csv, fer2013.csv or icml_face_data.csv)"
    )
    parser.add_argument("--val-data", help="labelled CSV to validate on instead of a split")
    parser.add_argument("--preset", help=f"recipe from configs/ ({network}_<NAME>.json)")
    parser.add_argument("--resume", metavar="RUN", help="continue an interrupted run folder")
    parser.add_argument("--out", default="models", help="folder for run folders (default models)")
    parser.add_argument("--name", help="run folder name (default <network>_<timestamp>)")
    parser.add_argument("--seeds", type=int, nargs="+", help="train one run per seed")
    option("--epochs", int, "maximum epochs")
    option("--batch-size", int, "images per step")
    option("--lr", float, "initial learning rate")
    option("--optimizer", str, "optimiser", choices=configuration.CHOICES["optimizer"])
    option("--momentum", float, "SGD momentum (Nesterov)")
    option("--weight-decay", float, "decoupled weight decay (adamw, sgd)")
    option("--schedule", str, "learning-rate schedule", choices=configuration.CHOICES["schedule"])
    option("--plateau-patience", int, "epochs without val_loss improvement before halving")
    option("--plateau-factor", float, "learning-rate factor on a plateau")
    option("--min-lr", float, "lowest learning rate")
    option("--early-stop-patience", int, "epochs without val_accuracy improvement before stopping")
    option("--label-smoothing", float, "label smoothing")
    option("--rotation-range", float, "random rotation, degrees")
    option(
        "--width-shift-range", float, "random horizontal shift, fraction of width (pixels if >= 1)"
    )
    option(
        "--height-shift-range", float, "random vertical shift, fraction of height (pixels if >= 1)"
    )
    option("--zoom-range", float, "random zoom in [1 - z, 1 + z]")
    parser.add_argument(
        "--no-flip",
        dest="horizontal_flip",
        action="store_const",
        const=False,
        help="no random horizontal flip",
    )
    parser.add_argument(
        "--no-augment",
        dest="augment",
        action="store_const",
        const=False,
        help="no augmentation at all",
    )
    for key in configuration.NETWORK_DEFAULTS[network]:
        option("--" + key.replace("_", "-"), float, "dropout rate")
    option("--val-split", float, "fraction of the training CSV held out for validation")
    option("--split-seed", int, "seed of the validation split (fixed, so members share it)")
    option("--seed", int, "seed of initialisation, shuffling and augmentation")
    option(
        "--precision",
        str,
        "auto: bf16 on AMX/AVX512-BF16 CPUs and GPUs",
        choices=configuration.CHOICES["precision"],
    )
    option("--jit", str, "XLA compilation", choices=configuration.CHOICES["jit"])
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(args, network):
    """Train as the parsed command line says: a new run, several seeds, or a resume."""
    if args.resume:
        return train(
            resume_config(args.resume, args), args.resume, resume=True, verbose=not args.quiet
        )
    if not args.data:
        raise FerError("--data is required (or --resume RUN)")
    overrides = {key: getattr(args, key) for key in _config_keys(network) if hasattr(args, key)}
    overrides["data"] = os.path.abspath(args.data)
    overrides["val_data"] = os.path.abspath(args.val_data) if args.val_data else None
    seeds = args.seeds or [None]
    run_dirs = []
    for seed in seeds:
        if seed is not None:
            overrides["seed"] = seed
        config = configuration.resolve(network, args.preset, overrides)
        name = args.name
        if name and len(seeds) > 1:
            name = f"{name}_seed{seed}"
        run_dir = runs.new_run_dir(args.out, network, name)
        if len(seeds) > 1 and not args.name:
            run_dir = _rename_with_seed(run_dir, seed)
        run_dirs.append(train(config, run_dir, verbose=not args.quiet))
    return run_dirs


def _rename_with_seed(run_dir, seed):
    target = f"{run_dir}_seed{seed}"
    os.rename(run_dir, target)
    return target


def _config_keys(network):
    return list(configuration.DEFAULTS) + list(configuration.NETWORK_DEFAULTS[network])


def resume_config(run_dir, args=None):
    config = read_json(os.path.join(run_dir, runs.CONFIG_FILE))
    if args is not None and args.epochs is not None:
        config["epochs"] = args.epochs  # the one option a resume may change: train longer
    return config


def train(config, run_dir, resume=False, verbose=True):
    """Train one run into ``run_dir``; returns ``run_dir``."""
    config = dict(config)
    precision = backend.resolve_precision(config["precision"])
    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(config["seed"])
    train_set, validation, split = runs.load_training_data(config)
    config.update(
        precision_resolved=precision,
        jit_resolved=backend.resolve_jit(config["jit"]),
        data_sha256=data.file_sha256(config["data"]),
        train_count=len(train_set),
        split=split,
        versions=backend.versions(),
    )
    checkpoint_dir = os.path.join(run_dir, CHECKPOINT_FOLDER)
    if resume:
        if config["data_sha256"] != _recorded(run_dir, "data_sha256"):
            raise FerError(f"{config['data']}: changed since the run started; cannot resume")
        state = read_json(os.path.join(checkpoint_dir, STATE_FILE))
        training_model = keras.saving.load_model(os.path.join(checkpoint_dir, state["checkpoint"]))
        model = _inner_model(training_model, config["network"])
        print(f"Resuming {run_dir} after epoch {state['epoch']}")
    else:
        write_text(
            os.path.join(run_dir, "command.txt"), shlex.join([sys.executable, *sys.argv]) + "\n"
        )
        write_json(os.path.join(run_dir, runs.CONFIG_FILE), config)
        model, training_model = build_training_model(config)
        state = {
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
    print(f"Run {run_dir}\n{configuration.describe(config)}")
    model.summary()
    train_labels = keras.utils.to_categorical(train_set.labels, data.NUM_CLASSES)
    validation_labels = keras.utils.to_categorical(validation.labels, data.NUM_CLASSES)
    for epoch in range(state["epoch"], config["epochs"]):
        state["lr"] = _scheduled_lr(config, state, epoch)
        training_model.optimizer.learning_rate.assign(state["lr"])
        _reseed(training_model, config["seed"], epoch)
        print(f"Epoch {epoch + 1}/{config['epochs']}")
        # The epoch's order depends only on (seed, epoch): a resumed run sees the same batches.
        order = np.random.default_rng([config["seed"], epoch]).permutation(len(train_set))
        epoch_start = time.perf_counter()
        try:
            result = training_model.fit(
                train_set.images[order],
                train_labels[order],
                batch_size=config["batch_size"],
                epochs=1,
                shuffle=False,
                verbose=1 if verbose else 0,
            )
        except KeyboardInterrupt:
            _interrupted(run_dir, state, config)
        train_seconds = time.perf_counter() - epoch_start
        scores = training_model.evaluate(
            validation.images,
            validation_labels,
            batch_size=max(256, config["batch_size"]),
            verbose=0,
            return_dict=True,
        )
        row = {
            "epoch": epoch + 1,
            "loss": result.history["loss"][-1],
            "accuracy": result.history["accuracy"][-1],
            "val_loss": scores["loss"],
            "val_accuracy": scores["accuracy"],
            "lr": state["lr"],
            "seconds": time.perf_counter() - epoch_start,
            "train_seconds": train_seconds,
        }
        if not all(math.isfinite(row[key]) for key in ("loss", "val_loss")):
            _write_history(run_dir, state["history"])
            raise FerError(
                f"training diverged: the loss became NaN at epoch {epoch + 1}; the best model so "
                f"far (epoch {state['best_epoch']}) is kept in {run_dir}; try a lower --lr "
                f"(was {state['lr']:g})"
            )
        state["history"].append(row)
        print(
            f"  val_loss {row['val_loss']:.4f} "
            f"val_accuracy {row['val_accuracy']:.4f} lr {row['lr']:.2g} "
            f"({len(train_set) / train_seconds:.0f} images/s)"
        )
        stop = _end_of_epoch(run_dir, model, training_model, state, row, config)
        if stop:
            print(
                f"No val_accuracy improvement for {config['early_stop_patience']} epochs: stopping"
            )
            break
    return _finish(run_dir, config, state, validation)


def _recorded(run_dir, key):
    return read_json(os.path.join(run_dir, runs.CONFIG_FILE)).get(key)


def build_training_model(config):
    """(model that is saved, compiled model that is trained: augmentation + model)."""
    network = config["network"]
    options = {key: config[key] for key in configuration.NETWORK_DEFAULTS[network]}
    model = models.BUILDERS[network](**options)
    augmentation = None
    if config["augment"]:
        augmentation = models.build_augmentation(
            rotation_range=config["rotation_range"],
            width_shift_range=config["width_shift_range"],
            height_shift_range=config["height_shift_range"],
            zoom_range=config["zoom_range"],
            horizontal_flip=config["horizontal_flip"],
            seed=config["seed"],
        )
    training_model = models.with_augmentation(model, augmentation)
    training_model.compile(
        optimizer=_optimizer(config),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config["label_smoothing"]),
        metrics=["accuracy"],
        jit_compile=config["jit_resolved"],
    )
    return model, training_model


def _optimizer(config):
    if config["optimizer"] == "sgd":
        return keras.optimizers.SGD(
            config["lr"],
            momentum=config["momentum"],
            nesterov=True,
            weight_decay=config["weight_decay"] or None,
        )
    if config["optimizer"] == "adamw":
        return keras.optimizers.AdamW(config["lr"], weight_decay=config["weight_decay"])
    return keras.optimizers.Adam(config["lr"])


def _inner_model(training_model, network):
    """The saved model inside a training model (they are the same without augmentation)."""
    try:
        return training_model.get_layer(network)
    except ValueError:
        return training_model


def _reseed(training_model, seed, epoch):
    """Give every random layer (augmentation, dropout) a state that depends only on (seed,
    epoch, layer), so an epoch draws the same random numbers whether or not the run was
    resumed. The second word counts the layer's calls within the epoch."""
    generators = [v for v in training_model.variables if "seed_generator_state" in v.path]
    for index, state in enumerate(generators):
        first = np.random.default_rng([seed, index]).integers(1, 2**31)
        state.assign(np.array([first, epoch * 1_000_000], dtype=state.dtype))


def _scheduled_lr(config, state, epoch):
    if config["schedule"] == "cosine":
        progress = epoch / max(1, config["epochs"])
        return config["min_lr"] + 0.5 * (config["lr"] - config["min_lr"]) * (
            1 + math.cos(math.pi * progress)
        )
    return state["lr"]


def _end_of_epoch(run_dir, model, training_model, state, row, config):
    """Update best model, plateau and early stopping; save the resumable state. True: stop."""
    state["epoch"] = row["epoch"]
    if row["val_accuracy"] > state["best_val_accuracy"]:
        state.update(
            best_epoch=row["epoch"],
            best_val_accuracy=row["val_accuracy"],
            best_val_loss=row["val_loss"],
            early_wait=0,
        )
        with atomic_path(os.path.join(run_dir, runs.MODEL_FILE)) as temporary:
            model.save(temporary)
    else:
        state["early_wait"] += 1
    if config["schedule"] == "plateau":
        if row["val_loss"] < state["plateau_best"]:
            state.update(plateau_best=row["val_loss"], plateau_wait=0)
        else:
            state["plateau_wait"] += 1
            if state["plateau_wait"] >= config["plateau_patience"]:
                state["lr"] = max(config["min_lr"], state["lr"] * config["plateau_factor"])
                state["plateau_wait"] = 0
    _write_history(run_dir, state["history"])
    _save_checkpoint(run_dir, training_model, state)
    return state["early_wait"] >= config["early_stop_patience"]


def _save_checkpoint(run_dir, training_model, state):
    """The training model (optimizer and augmentation random state included), then state.json
    naming it: a kill between the two leaves the previous pair intact."""
    checkpoint_dir = os.path.join(run_dir, CHECKPOINT_FOLDER)
    os.makedirs(checkpoint_dir, exist_ok=True)
    previous = state["checkpoint"]
    state["checkpoint"] = f"epoch-{state['epoch']:04d}.keras"
    with atomic_path(os.path.join(checkpoint_dir, state["checkpoint"])) as temporary:
        training_model.save(temporary)
    write_json(os.path.join(checkpoint_dir, STATE_FILE), state)
    if previous and previous != state["checkpoint"]:
        os.remove(os.path.join(checkpoint_dir, previous))


def _write_history(run_dir, history):
    lines = [",".join(HISTORY_COLUMNS)]
    lines += [",".join(f"{row[column]:.6g}" for column in HISTORY_COLUMNS) for row in history]
    write_text(os.path.join(run_dir, "history.csv"), "\n".join(lines) + "\n")


def _interrupted(run_dir, state, config):
    script = "train_cnn.py" if config["network"] == "cnn" else "train_dnn.py"
    raise FerError(
        f"interrupted during epoch {state['epoch'] + 1}; epoch {state['epoch']} is saved. "
        f"Resume with: python {script} --resume {run_dir}"
    )


def _finish(run_dir, config, state, validation):
    """Reload the best model, evaluate it, and write metrics.json."""
    history = state["history"]
    if not history or state["best_epoch"] == 0:
        raise FerError(f"{run_dir}: no epoch finished, nothing to evaluate")
    best = runs.load_model(run_dir)
    probabilities = best.predict(validation.images, batch_size=512, verbose=0)
    reloaded_accuracy = float((probabilities.argmax(axis=1) == validation.labels).mean())
    # Throughput over the epochs after the first, which also pays for tracing the graph.
    timed = history[1:] or history
    images_per_second = (
        config["train_count"] * len(timed) / sum(row["train_seconds"] for row in timed)
    )
    metrics = {
        "best_epoch": state["best_epoch"],
        "best_val_accuracy": state["best_val_accuracy"],
        "best_val_loss": state["best_val_loss"],
        "reloaded_val_accuracy": reloaded_accuracy,
        "epochs_run": state["epoch"],
        # Summed over epochs, so a resumed run counts only the time spent training.
        "wall_seconds": sum(row["seconds"] for row in history),
        "train_images_per_second": images_per_second,
        "precision": config["precision_resolved"],
        "backend": config["versions"]["backend"],
    }
    write_json(os.path.join(run_dir, "metrics.json"), metrics)
    print(
        f"Best epoch {state['best_epoch']}: val_accuracy {state['best_val_accuracy']:.4f} "
        f"(reloaded model: {reloaded_accuracy:.4f}); run saved in {run_dir}"
    )
    return run_dir
