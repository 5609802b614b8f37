"""Training shared by train_cnn.py and train_dnn.py.

One epoch at a time: the epoch's shuffle comes from (seed, epoch) and the augmentation's
random state is saved with the model, so a resumed run continues exactly where it stopped.
After every epoch the run folder holds a resumable checkpoint, the history and, when the
epoch improved validation accuracy, the new best model; everything is written atomically.

Every option, the data and the run folder are checked before anything is written, and
before Keras is imported (inside the functions that need it): TensorFlow takes about 5 s to
start, and a typo should be refused at once.
"""

import contextlib
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
import warnings
import zipfile

import numpy as np

import ferkit
from ferkit import checkpoints, data, evaluation, runs
from ferkit import config as configuration
from ferkit.errors import FerError, shown
from ferkit.files import read_json, write_json, write_text

# Environment variables that change the numbers a run computes, recorded with its versions.
NUMERIC_ENVIRONMENT = (
    "KERAS_BACKEND",
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_NUM_INTEROP_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_DETERMINISTIC_OPS",
    "OMP_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "XLA_FLAGS",
)
# What --resume may be given besides the run: it trains on with the run's recorded options.
RESUME_OPTIONS = ("epochs", "quiet")


class TrainingInterruptedError(FerError):
    """Ctrl-C during training: the last finished epoch is saved; exit status 130, not 2."""

    exit_status = 130


class TrainingDivergedError(FerError):
    """The loss became NaN or infinite. ``saved``: whether any epoch was kept."""

    def __init__(self, epoch, lr, kept, saved):
        super().__init__(
            f"training diverged: the loss became NaN at epoch {epoch}; {kept}; try a lower "
            f"--lr (was {lr:g})"
        )
        self.epoch, self.lr, self.saved = epoch, lr, saved


def add_arguments(parser, network):
    """The training options; every default is None so that only what was typed overrides."""
    defaults = {**configuration.DEFAULTS, **configuration.NETWORK_DEFAULTS[network]}

    def option(name, kind, help_text, **extra):
        key = name.lstrip("-").replace("-", "_")
        # An option off by default (--limit, --time-budget) says nothing, not "(default None)".
        shown_default = key in defaults and defaults[key] is not None
        default_text = f" (default {defaults[key]})" if shown_default else ""
        parser.add_argument(name, type=kind, default=None, help=help_text + default_text, **extra)

    parser.add_argument(
        "--data",
        help="training CSV (train.csv, fer2013.csv or icml_face_data.csv) or image folder",
    )
    parser.add_argument(
        "--val-data", help="labelled data to validate on, not a split (fer2013.csv: PublicTest)"
    )
    parser.add_argument("--preset", help=f"recipe from configs/ ({network}_<NAME>.json)")
    parser.add_argument("--resume", metavar="RUN", help="continue an interrupted run folder")
    parser.add_argument("--out", help="folder for run folders (default models)")
    parser.add_argument("--name", help="run folder name (default <network>_<timestamp>)")
    parser.add_argument("--seeds", type=int, nargs="+", help="train one run per seed")
    option("--epochs", int, "maximum epochs")
    option("--batch-size", int, "images per step")
    option("--lr", float, "initial learning rate")
    option("--optimizer", str, "optimiser", choices=configuration.CHOICES["optimizer"])
    option("--momentum", float, "SGD momentum (Nesterov)")
    option("--weight-decay", float, "decoupled weight decay (adamw, sgd)")
    option("--schedule", str, "learning-rate schedule", choices=configuration.CHOICES["schedule"])
    option("--plateau-patience", int, "epochs without val_loss improvement before the rate is cut")
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
    option("--random-erasing", float, "probability of erasing a random rectangle of a face")
    option("--mixup", float, "mixup's alpha: blend faces and labels in pairs (0: off)")
    parser.add_argument(
        configuration.SWITCHES_OFF["horizontal_flip"],
        dest="horizontal_flip",
        action="store_const",
        const=False,
        help="no random horizontal flip",
    )
    parser.add_argument(
        configuration.SWITCHES_OFF["augment"],
        dest="augment",
        action="store_const",
        const=False,
        help="no augmentation at all",
    )
    for key in configuration.NETWORK_DEFAULTS[network]:
        option(configuration.option_name(key), float, "dropout rate")
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
    option("--limit", int, "use only the first N rows of --data (quick checks)")
    option(
        "--time-budget",
        float,
        "minutes: after epoch 1, train only as many epochs as fit (the schedule follows); "
        "0 turns a preset's budget off",
        metavar="MINUTES",
    )
    parser.add_argument(
        "--distribute",
        action="store_const",
        const=True,
        help="data-parallel over every local device (GPUs; several machines via TF_CONFIG)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    runs.add_run_data_argument(parser)
    return parser


def main(args, network):
    """Train as the parsed command line says: a new run, several seeds, or a resume."""
    ferkit.use_interop_threads(configuration.INTEROP_THREADS[network])
    ferkit.check_keras_backend()  # before any run folder is made
    if args.resume:
        _refuse_options_given_with_resume(args, network)
        config = resume_config(args.resume, args)
        if config.get("network") != network:  # a DNN run resumed by train_cnn.py, say
            raise FerError(
                f"{args.resume}: is a {str(config.get('network')).upper()} run; resume it with "
                f"train_{config.get('network')}.py"
            )
        _check_backend(config, resume=True)
        try:
            return train(config, args.resume, resume=True, verbose=not args.quiet)
        except KeyboardInterrupt:  # while the checkpoint loads (seconds): nothing changed yet
            # config.json names the backend the run started on; the one that saved the
            # checkpoint can load it (else the one this command ran on: nothing changed).
            running = checkpoints.saved_on(args.resume) or ferkit.keras_backend_choice()[0]
            command = _resume_command(config, args.resume, running)
            raise TrainingInterruptedError(
                f"interrupted before the resumed epochs began; resume with: {command}"
            ) from None
    if args.run_data:
        raise FerError("--run-data finds a resumed run's moved data: give it with --resume")
    if not args.data:
        raise FerError("--data is required (or --resume RUN)")
    for path in (args.data, args.val_data):
        if path:  # a pipe was refused only after it was read, with the run folder made
            data.check_hashable(path)
    seeds = args.seeds or [None]
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise FerError(f"--seeds: seed {repeated[0]} is given twice")
    if args.seeds and args.seed is not None:
        raise FerError("--seed and --seeds: give one or the other")
    for option in ("val_split", "split_seed"):
        if args.val_data and getattr(args, option) is not None:
            name = configuration.option_name(option)
            raise FerError(f"{name} splits --data, which --val-data replaces: give one of them")
    overrides = {key: getattr(args, key) for key in _config_keys(network) if hasattr(args, key)}
    overrides["data"] = os.path.abspath(args.data)
    overrides["val_data"] = os.path.abspath(args.val_data) if args.val_data else None
    # Every option and every run folder first, then the data, and only then is anything
    # written: a mistake anywhere leaves no half-made run behind.
    plans = []
    stamp = f"{network}_{time.strftime('%Y%m%d-%H%M%S')}"
    for seed in seeds:
        if seed is not None:
            overrides["seed"] = seed
        try:
            config = configuration.resolve(network, args.preset, overrides)
        except FerError as error:
            if args.seeds and getattr(error, "option", None) == "seed":  # not --seed: --seeds
                raise FerError(
                    f"--seeds: each seed {error.requirement}, got {shown(seed)}"
                ) from None
            raise
        name = args.name or stamp
        if len(seeds) > 1:
            name = f"{name}_seed{seed}"
        run_dir = runs.run_folder(args.out or "models", name)
        held = sorted(os.listdir(run_dir)) if args.name and os.path.isdir(run_dir) else []
        if held:  # a user's own files, which the run's would replace (model.keras, …)
            raise FerError(f"{run_dir}: holds {held[0]} but no run: give another --name")
        for option in ("data", "val_data"):
            folder = overrides[option]
            # Read as a class folder that is not one: neither resumed nor read again.
            if data.is_inside_images(run_dir, folder):
                flag = configuration.option_name(option)
                raise FerError(f"{run_dir}: is inside the {flag} folder; give --out elsewhere")
        checkpoint_folder = runs.checkpoint_folder_around(run_dir)
        if checkpoint_folder:  # --resume tidies that folder, and its tools read it
            raise FerError(
                f"{run_dir}: is inside {checkpoint_folder}, a run's checkpoint folder; give "
                "--out elsewhere"
            )
        plans.append((config, run_dir))
    _check_backend(plans[0][0])
    loaded = runs.load_training_data(plans[0][0], new=True)  # the seeds share data and split
    run_dirs = []
    for number, (config, run_dir) in enumerate(plans):
        if args.name:  # the user's name: an empty folder of that name may be made beforehand
            made = not os.path.exists(run_dir)  # by this command (a user's own is kept)
            os.makedirs(run_dir, exist_ok=True)
        else:
            run_dir, made = runs.claim_new_folder(run_dir), True
        try:
            seeds_run = len(plans) > 1
            run_dirs.append(
                train(config, run_dir, verbose=not args.quiet, loaded=loaded, of_seeds=seeds_run)
            )
        except KeyboardInterrupt:  # before the epochs (Keras starting, the model built)
            error, started = _interrupted_before_training(run_dir, made)
            if started or number:  # else nothing is left: the same command runs again
                _name_seeds_not_started(error, plans[number + 1 if started else number :])
            raise error from None
        except TrainingInterruptedError as error:
            _name_seeds_not_started(error, plans[number + 1 :])
            raise
        except TrainingDivergedError as error:
            if not error.saved:  # else its folder blocked the same command with a lower --lr
                _discard(run_dir, made)
                kept = f"no epoch had finished, so {run_dir} is removed again"
                error = TrainingDivergedError(error.epoch, error.lr, kept, saved=False)
            _name_seeds_not_started(error, plans[number + 1 :])
            raise error from None
    return run_dirs


def _discard(run_dir, made):
    """Remove what a run that kept no epoch wrote: the folder, where this command made it
    (a --name folder made beforehand was empty, and is left so)."""
    if made:
        shutil.rmtree(run_dir)
        return
    for name in os.listdir(run_dir):
        path = os.path.join(run_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def _interrupted_before_training(run_dir, made):
    """Ctrl-C before epoch 1 began (it only printed "interrupted" and left the folder): the
    error to raise, and whether the run had started (its config.json written)."""
    config_path = os.path.join(run_dir, runs.CONFIG_FILE)
    if os.path.exists(config_path):
        command = _resume_command(read_json(config_path), run_dir)
        return TrainingInterruptedError(f"interrupted before epoch 1; resume with: {command}"), True
    if made and os.path.isdir(run_dir) and not os.listdir(run_dir):
        os.rmdir(run_dir)  # made by this command a moment ago, still empty
    return TrainingInterruptedError(f"interrupted before {run_dir} started"), False


def _name_seeds_not_started(error, rest):
    """Ctrl-C (or a divergence) during one of --seeds: the message also names the seeds that
    never started (rerunning the whole command is refused, as the first run folder exists)."""
    if rest:
        seeds = " ".join(str(config["seed"]) for config, _ in rest)
        folders = ", ".join(os.path.basename(run_dir) for _, run_dir in rest)
        error.args = (
            f"{error}; {'seed' if len(rest) == 1 else 'seeds'} {seeds} did not start: give "
            f"each the same options with --seed N --name FOLDER ({folders})",
        )


def _check_backend(config, resume=False):
    """What the backend cannot do, refused before anything is written. A resumed run trains
    as ``backend.resolve_jit`` can on this backend."""
    running = ferkit.keras_backend_choice()[0]
    transforms = configuration.transforms_faces(config)
    if not resume and config["jit"] == "on" and transforms and running == "tensorflow":
        raise FerError(
            "--jit on: TensorFlow's XLA cannot compile the augmentation: give --no-augment, "
            "or run on JAX (KERAS_BACKEND=jax)"
        )
    if config["distribute"]:  # Keras (seconds to import) only when the option is given
        from ferkit import backend

        backend.check_distribute()


def _config_keys(network):
    return list(configuration.DEFAULTS) + list(configuration.NETWORK_DEFAULTS[network])


def _refuse_options_given_with_resume(args, network):
    """A resumed run keeps its recorded options; silently ignoring a typed one would mislead."""
    typed = [
        key
        for key in [*_config_keys(network), "data", "val_data", "preset", "name", "seeds", "out"]
        if key not in RESUME_OPTIONS and getattr(args, key, None) is not None
    ]
    if typed and typed[0] in ("out", "name"):
        raise FerError(
            f"--{typed[0]} cannot be given with --resume: the run stays in {args.resume}"
        )
    if typed:
        option = configuration.SWITCHES_OFF.get(typed[0]) or configuration.option_name(typed[0])
        raise FerError(
            f"{option} cannot be given with --resume: a resumed run keeps the options in "
            f"{os.path.join(args.resume, runs.CONFIG_FILE)} (only --epochs, --quiet and "
            "--run-data may be given)"
        )


def resume_config(run_dir, args=None):
    """The recorded configuration of ``run_dir``; ``args.epochs`` may raise its epochs."""
    if not os.path.exists(run_dir):
        raise FerError(f"{run_dir}: no such run folder")
    if not os.path.isdir(run_dir):
        raise FerError(f"{run_dir}: is a file, expected a run folder")
    config_path = os.path.join(run_dir, runs.CONFIG_FILE)
    if not os.path.exists(config_path):
        raise FerError(f"{run_dir}: not a run folder (it has no {runs.CONFIG_FILE})")
    config = runs.read_run_config(config_path)
    moved = getattr(args, "run_data", None) or []
    config = runs.relocated({run_dir: config}, moved)[run_dir]  # data files found by --run-data
    if args is not None and args.epochs is not None:
        if args.epochs < 1:
            raise FerError(f"--epochs must be at least 1, got {args.epochs}")
        config["epochs"] = args.epochs  # the one option a resume may change: train longer
        try:
            # read_run_config checked each value's type and range; the rules on combinations
            # added since (Adam with weight decay) only when --epochs changes the run, so that
            # a run recorded before them still resumes as it was.
            configuration.validate(config)
        except FerError as error:
            raise FerError(f"{config_path}: {error}") from None
    return config


def train(config, run_dir, resume=False, verbose=True, loaded=None, of_seeds=False):
    """Train one run into ``run_dir``; returns ``run_dir``.

    ``loaded``: the (train, validation, split) that ``runs.load_training_data(config)`` gives,
    when the caller has read them already. ``of_seeds``: one of a --seeds command's runs.
    """
    with _held(run_dir), _dtype_policy_kept():
        return _train(config, run_dir, resume, verbose, loaded, of_seeds)


@contextlib.contextmanager
def _dtype_policy_kept():
    """Keras' global dtype policy as the caller had it, put back once the run ends: training
    sets it to the run's precision, and the next model a notebook (or a test) built came out
    in mixed_bfloat16 on a CPU with bfloat16."""
    keras = sys.modules.get("keras")  # not imported here: checks come first (see _train)
    before = keras.config.dtype_policy() if keras else "float32"  # Keras' own default
    try:
        yield
    finally:
        keras = sys.modules.get("keras")
        if keras:
            keras.config.set_dtype_policy(before)


@contextlib.contextmanager
def _held(run_dir):
    """The run folder held by this process while it trains: two resumes of one run (another
    terminal, a cluster job requeued while the old one lived) replaced each other's
    checkpoints, and one crashed leaving files that disagreed. Released when the process
    ends, however it ends; where flock is missing (Windows), not held."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    os.makedirs(run_dir, exist_ok=True)  # as training would make it
    descriptor = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FerError(
                f"{run_dir}: another process is training this run; let it finish or stop it "
                "(Ctrl-C saves), then resume"
            ) from None
        except OSError:
            pass  # a file system without locks (ENOLCK): trained as before, not held
        yield
    finally:
        os.close(descriptor)


def _train(config, run_dir, resume, verbose, loaded, of_seeds):
    config = dict(config)
    state = checkpoints.resume_state(run_dir, config) if resume else None
    if resume:
        checkpoints.check_best_model(run_dir, state)
    for key in ("data", "val_data") if resume else ():  # once the run is known to resume
        if config.get(key) and not os.path.exists(config[key]):
            use = "resuming reads it again"
            digest, role = config.get(f"{key}_sha256"), runs.ROLES[key]
            raise runs.missing_data(config[key], run_dir, digest, (), use, role)
    # A resumed run computes as it started, even where "auto" would now choose otherwise.
    recorded = read_json(os.path.join(run_dir, runs.CONFIG_FILE)) if resume else config
    # Checked before the rows are read: a data file cut short since the run started was
    # "line 45: expected 2304 pixels", not "changed".
    digests = {}
    for key in ("data", "val_data"):
        path, digest_key = config.get(key), f"{key}_sha256"
        digests[digest_key] = data.file_sha256(path) if path else None
        if resume and path and recorded.get(digest_key) is not None:
            # A gzipped copy found by --run-data holds the recorded text.
            if not data.holds_sha256(path, recorded[digest_key], digests[digest_key]):
                raise FerError(f"{path}: changed since the run started; cannot resume {run_dir}")
            digests[digest_key] = recorded[digest_key]
    train_set, validation, split = loaded or runs.load_training_data(config)
    config.update(
        **digests,
        train_count=len(train_set),
        split=split,
        # What --blur auto matches test faces to (a training set blurred like the one this
        # project was given scores 0.18 on sharp faces left as they are).
        train_sharpness=round(evaluation.sharpness(train_set.images), 4),
    )
    if resume and "val_data" in split:  # the path it started with; the contents are checked
        split = config["split"] = {**split, "val_data": recorded.get("val_data")}
    rows = (config["train_count"], config["split"])
    # A run recorded before the reader change has a split but no train_count: it differs.
    before = (recorded.get("train_count"), recorded.get("split"))
    if resume and recorded.get("split") and before != rows:
        raise FerError(
            f"{run_dir}: the training and validation rows rebuilt from {config['data']} differ "
            f"from the ones it recorded ({runs.CHANGED_READER}); cannot resume it"
        )

    # Everything is checked: only from here on is Keras needed.
    import keras

    from ferkit import backend, models

    precision = recorded.get("precision_resolved") or backend.resolve_precision(config["precision"])
    jit = recorded.get("jit_resolved")
    transforms = configuration.transforms_faces(config)
    if recorded.get("versions", {}).get("backend") not in (None, backend.name()):
        jit = None  # resumed on another backend: XLA as this one runs it (JAX ran op by op)
    elif jit and not backend.resolve_jit("on", transforms):
        jit = False  # an augmented TensorFlow run recorded on before XLA was known not to run
    versions = backend.versions()
    recorded_versions = recorded.get("versions", {})
    for key, value in versions.items():
        before = recorded_versions.get(key)
        if resume and before not in (None, value):
            print(f"Note: {key} was {before} when the run started, now {value}; results may differ")
    config.update(
        precision_resolved=precision,
        jit_resolved=backend.resolve_jit(config["jit"], transforms) if jit is None else jit,
        versions=versions,
        environment={key: os.environ[key] for key in NUMERIC_ENVIRONMENT if key in os.environ},
        source=_source_revision(),
    )
    keras.config.set_dtype_policy(precision)
    backend.seed_everything(config["seed"])
    training_model = None
    if state is not None and state["checkpoint"]:
        checkpoint = os.path.join(run_dir, checkpoints.FOLDER, state["checkpoint"])
        # Runs saved before state.json named the backend were saved on the one they started on.
        saved_on = state.get("saved_on") or recorded_versions.get("backend")
        training_model = _load_checkpoint(checkpoint, config, saved_on)
    if state is not None:  # the resume goes ahead: only from here is the run folder changed
        checkpoints.tidy(run_dir, state)
        if recorded.get("epochs") != config["epochs"]:
            # --epochs given with --resume: recorded, so that a later resume trains as far.
            _record_epochs(run_dir, config["epochs"])
    if training_model is not None:
        _train_faster(training_model)
        model = models.inner_model(training_model)
        # A kill may have left history.csv one row ahead of the checkpoint.
        checkpoints.write_history(run_dir, state["history"])
        print(f"Resuming {run_dir} after epoch {state['epoch']}")
        resumed = f"resumed after epoch {state['epoch']}"
        if saved_on and saved_on != backend.name():  # command.txt's line lacks KERAS_BACKEND
            resumed += f" on {backend.name()} (saved on {saved_on})"
        _record_command(run_dir, resumed=resumed)
        metrics_path = os.path.join(run_dir, runs.METRICS_FILE)
        if os.path.exists(metrics_path) and state["early_wait"] < config["early_stop_patience"]:
            # A finished run trained longer: its metrics are rewritten when it finishes again,
            # and until then would name a best epoch and epochs the run has moved past.
            os.remove(metrics_path)
    else:
        if state is None:
            _record_command(run_dir, config["seed"] if of_seeds else None)
            write_json(os.path.join(run_dir, runs.CONFIG_FILE), config)
        else:
            print(f"Resuming {run_dir}: no epoch had finished, starting at epoch 1")
            _record_command(run_dir, resumed="resumed before any epoch had finished")
        model, training_model = build_training_model(config)
        state = checkpoints.initial_state(config)
    print(f"Run {run_dir}\n{configuration.describe(config)}")
    replicas = backend.replica_count(training_model)
    batch_size = backend.replica_batch_size(config["batch_size"], len(train_set), replicas)
    if batch_size != min(config["batch_size"], len(train_set)):  # said 128, trained on 126
        print(f"--distribute: training batches of {batch_size}, to split over {replicas} replicas")
    model.summary()
    train_labels = keras.utils.to_categorical(train_set.labels, data.NUM_CLASSES)
    validation_labels = keras.utils.to_categorical(validation.labels, data.NUM_CLASSES)
    epoch = state["epoch"]
    try:
        if state["early_wait"] >= config["early_stop_patience"]:
            # Stopped early and killed before finishing: more epochs would change its model.
            print("It had stopped early; finishing it")
            return _finish(run_dir, config, state, validation)
        for epoch in range(state["epoch"], config["epochs"]):
            stop = _train_one_epoch(
                run_dir,
                config,
                state,
                epoch,
                (model, training_model),
                (train_set, train_labels, validation, validation_labels),
                verbose,
            )
            if stop:
                print(
                    f"No val_accuracy improvement for {config['early_stop_patience']} epochs: "
                    "stopping"
                )
                break
            if epoch + 1 >= config["epochs"]:  # --time-budget may have lowered the epochs
                break
        return _finish(run_dir, config, state, validation)
    except KeyboardInterrupt:
        _interrupted(run_dir, config, epoch)
    except BrokenPipeError:  # stdout's reader went away: cli.run ends quietly, status 141
        raise
    except OSError as error:  # a full disk: it said only "No space left on device"
        _write_failed(run_dir, config, epoch, error)


def _record_command(run_dir, seed=None, resumed=None):
    """command.txt: the command line that started the run (``seed``: which of its --seeds this
    run is), then a comment line for each --resume, so that the file says how the run was
    made (its first line stays the command, as tools read it)."""
    path = os.path.join(run_dir, runs.COMMAND_FILE)
    command = shlex.join([sys.executable, *sys.argv])
    if resumed is None:
        text = command + "\n"
        if seed is not None:  # one command, several runs
            text += f"# this run: --seed {seed} of the --seeds above\n"
        write_text(path, text)
        return
    before = ""
    if os.path.exists(path):  # a run folder copied without it still resumes
        with open(path) as file:
            before = file.read()
    write_text(path, f"{before}# {resumed}: {command}\n")


def _progress_mode():
    """Keras' progress bar on a terminal; one plain line per epoch where the output goes to a
    file or a pipe (``> run.log``), which the bar filled with colour codes and redrawings."""
    is_terminal = getattr(sys.stdout, "isatty", None)  # a replaced stdout may not say
    return 1 if is_terminal and is_terminal() else 2


def _train_one_epoch(run_dir, config, state, epoch, models_pair, arrays, verbose):
    """Train, validate and save one epoch; True when early stopping says to stop."""
    from ferkit import backend

    model, training_model = models_pair
    train_set, train_labels, validation, validation_labels = arrays
    state["lr"] = _scheduled_lr(config, state, epoch)
    training_model.optimizer.learning_rate.assign(state["lr"])
    _reseed(training_model, config["seed"], epoch)
    print(f"Epoch {epoch + 1}/{config['epochs']}", flush=True)
    # The epoch's order depends only on (seed, epoch): a resumed run sees the same batches.
    order = np.random.default_rng([config["seed"], epoch]).permutation(len(train_set))
    # The budget is fitted once, from the first epoch of a run, before anything is saved.
    timer = _step_timer() if epoch == 0 and config.get("time_budget") else None
    callbacks = [timer] if timer else []
    epoch_start = time.perf_counter()
    epoch_labels = train_labels[order]
    result = training_model.fit(
        **backend.batches(
            training_inputs(config, train_set.images[order], epoch_labels),
            epoch_labels,
            config["batch_size"],
            backend.replica_count(training_model),
        ),
        epochs=1,
        shuffle=False,
        verbose=_progress_mode() if verbose else 0,
        callbacks=callbacks,
    )
    train_seconds = time.perf_counter() - epoch_start
    scores = _validate(
        training_model,
        config,
        training_inputs(config, validation.images, validation_labels),
        validation_labels,
        callbacks,
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
        _diverged(run_dir, state, epoch)
    state["history"].append(row)
    # The training scores too: --quiet (or a log) has no Keras line to read them from.
    print(
        f"  loss {row['loss']:.4f} accuracy {row['accuracy']:.4f} val_loss {row['val_loss']:.4f} "
        f"val_accuracy {row['val_accuracy']:.4f} lr {row['lr']:.2g} "
        f"({len(train_set) / train_seconds:.0f} images/s)",
        flush=True,
    )
    if timer:
        _fit_epochs_to_budget(run_dir, config, row["seconds"], timer.step_seconds)
    return _end_of_epoch(run_dir, model, training_model, state, row, config)


def _step_timer():
    """A callback timing each training and validation step (for --time-budget)."""
    import keras

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.step_seconds = {"train": [], "test": []}

        def on_train_batch_begin(self, batch, logs=None):
            self.started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.step_seconds["train"].append(time.perf_counter() - self.started)

        def on_test_batch_begin(self, batch, logs=None):
            self.started = time.perf_counter()

        def on_test_batch_end(self, batch, logs=None):
            self.step_seconds["test"].append(time.perf_counter() - self.started)

        # JAX's --distribute validates by predicting when a batch does not split (_validate).
        on_predict_batch_begin = on_test_batch_begin
        on_predict_batch_end = on_test_batch_end

    return StepTimer()


def epochs_within_budget(budget_minutes, first_epoch_seconds, step_seconds, requested):
    """How many epochs fit in the budget, given the first epoch's time and its steps' times.

    The first step of training and of validation also traces (compiles) the step, which later
    epochs do not pay again; so may the last, when its smaller batch is a new shape (JAX
    compiles it again, 2.8 s against 0.04 s for a DNN step here; TensorFlow does not). Each
    phase's steady step is the median of the steps between its first and last; the first
    counts as one, and the last as one at most. A phase too short for a steady step (one or
    two batches of validation) uses the training's. Epochs vary, so only
    ``BUDGET_PLANNED_SHARE`` of the budget is planned. Always at least 1 (the first epoch
    has run), at most ``requested``.
    """
    train = step_seconds.get("train", [])
    steady_train = _steady_step(train)
    if steady_train is None and len(train) > 1:
        steady_train = float(np.median(train[1:]))
    later_epoch_seconds = first_epoch_seconds
    for seconds in step_seconds.values():
        steady = _steady_step(seconds)
        if steady is None:
            # On 140 faces, 0.1 s epochs were put at 5 s: validation's one or two traced
            # batches count as typical training steps.
            steady = steady_train
        if not seconds or steady is None:
            continue
        traced = seconds[0] + (seconds[-1] if len(seconds) > 1 else 0.0)
        untraced = steady + (min(seconds[-1], steady) if len(seconds) > 1 else 0.0)
        later_epoch_seconds -= max(0.0, traced - untraced)
    left = configuration.BUDGET_PLANNED_SHARE * budget_minutes * 60 - first_epoch_seconds
    more = math.floor(left / max(later_epoch_seconds, 1e-9)) if left > 0 else 0
    return max(1, min(requested, 1 + more)), later_epoch_seconds


def _steady_step(seconds):
    """The median step between a phase's first and last (either may trace); None if none."""
    between = seconds[1:-1]
    return float(np.median(between)) if between else None


def _where_it_ends(config):
    # Only a cosine schedule is planned for the epochs: a plateau or constant one has no end.
    return "the cosine schedule ends" if config["schedule"] == "cosine" else "the run ends"


def _fit_epochs_to_budget(run_dir, config, first_epoch_seconds, step_seconds):
    """Lower the run's epochs to what --time-budget allows, recorded in its config.json.

    Decided after epoch 1, whose learning rate does not depend on the number of epochs, so
    the recorded run is exactly the one --epochs N would train."""
    requested = config["epochs"]
    epochs, later_epoch_seconds = epochs_within_budget(
        config["time_budget"], first_epoch_seconds, step_seconds, requested
    )
    print(
        f"Time budget {config['time_budget']:g} min, "
        f"{configuration.BUDGET_PLANNED_SHARE:.0%} of it planned: "
        f"epoch 1 took {first_epoch_seconds:.0f} s, "
        f"later epochs about {later_epoch_seconds:.0f} s, so {epochs} of {requested} epochs fit"
        + (f" ({_where_it_ends(config)} there)" if epochs < requested else ""),
        flush=True,
    )
    if epochs < requested:
        _record_epochs(run_dir, epochs)
        config["epochs"] = epochs


def _load_checkpoint(checkpoint, config, saved_on=None):
    """The training model a resumed run saved; a damaged file is one line. ``saved_on``: the
    backend the run recorded (a PyTorch checkpoint names PyTorch's optimizer class, which no
    other backend can load)."""
    import keras

    from ferkit import backend, models

    # Written atomically, so a damaged disk or a copy cut short: Keras calls that
    # "File not found".
    if not zipfile.is_zipfile(checkpoint):
        raise FerError(f"{checkpoint}: cannot be loaded (not a whole .keras zip archive)")
    try:
        # A --distribute run's variables must be made inside its strategy, as when built.
        with backend.distribution_scope(config["distribute"]), warnings.catch_warnings():
            # A checkpoint saved on JAX asks XLA of TensorFlow's augmentation, which Keras
            # refuses with a warning: set below as this backend runs it.
            warnings.filterwarnings("ignore", "Model doesn't support `jit_compile=True`")
            loaded = keras.saving.load_model(checkpoint, custom_objects=models.CUSTOM_OBJECTS)
    except Exception as error:
        hint = ""
        if saved_on and saved_on != backend.name():
            hint = f"; it was saved on {saved_on}: resume with KERAS_BACKEND={saved_on}"
        raise FerError(f"{checkpoint}: cannot be loaded ({error}){hint}") from None
    # Another run's checkpoint copied in: a CNN's trained on as this DNN run and replaced
    # its model.keras.
    network = loaded.name.removesuffix(runs.TRAINING_SUFFIX)  # models.with_augmentation's
    inputs = 2 if config["mixup"] else 1  # with mixup the labels are an input too
    if network != config["network"] or len(loaded.inputs) != inputs:
        mixup = " with mixup" if config["mixup"] else " without mixup"
        raise FerError(
            f"{checkpoint}: not this run's training model (it holds {network!r} with "
            f"{len(loaded.inputs)} input(s); the run trains {config['network']!r}{mixup}); "
            "cannot resume"
        )
    # As saved: a TensorFlow checkpoint resumed on JAX trained op by op, 20 times slower.
    loaded.jit_compile = config["jit_resolved"]
    return loaded


def _validate(training_model, config, inputs, labels, callbacks):
    """{"loss", "accuracy"} of the training model on the validation images."""
    import keras

    from ferkit import backend, models

    batch_size = max(256, config["batch_size"])
    replicas = backend.replica_count(training_model)
    count = len(labels)
    if backend.splits_over_replicas(
        count, backend.replica_batch_size(batch_size, count, replicas), replicas
    ):
        arguments = backend.batches(inputs, labels, batch_size, replicas)
        return training_model.evaluate(
            **arguments, verbose=0, return_dict=True, callbacks=callbacks
        )
    # A last batch that does not split over the devices (JAX), or leaves one without a face
    # (TensorFlow): evaluate's would be cut, leaving faces out, so predict's is padded
    # (backend.batches) and the scores are computed as evaluate would.
    arguments = backend.batches(inputs, None, batch_size, replicas)
    predictions = training_model.predict(**arguments, verbose=0, callbacks=callbacks)
    predictions = predictions[: len(labels)]
    loss = keras.ops.convert_to_numpy(training_model.loss(labels, predictions))
    if config["mixup"]:
        hits = keras.ops.convert_to_numpy(models.own_label_accuracy(labels, predictions))
    else:
        hits = predictions.argmax(axis=1) == labels.argmax(axis=1)
    return {"loss": float(loss), "accuracy": float(np.mean(hits))}


def _record_epochs(run_dir, epochs):
    """Change the epochs in the run's config.json, which a later --resume trains to."""
    config_path = os.path.join(run_dir, runs.CONFIG_FILE)
    write_json(config_path, {**read_json(config_path), "epochs": epochs})


def _diverged(run_dir, state, epoch):
    """The loss is NaN or infinite: stop, keeping the best model and the last checkpoint.
    A new run with no epoch to keep is removed by ``main`` (``_discard``)."""
    checkpoints.write_history(run_dir, state["history"])
    if state["best_epoch"]:
        kept = f"the best model so far (epoch {state['best_epoch']}) is kept in {run_dir}"
    else:
        # --resume keeps the run's --lr: only a new run can lower it.
        kept = f"no epoch had finished, so no model was saved: remove {run_dir} and start again"
    raise TrainingDivergedError(epoch + 1, state["lr"], kept, saved=bool(state["best_epoch"]))


def _source_revision():
    """The git commit of the code that trained (and whether it had changes), where known."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=runs.REPOSITORY,
            capture_output=True,
            text=True,
            timeout=10,
        )
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "ferkit", "*.py"],
            cwd=runs.REPOSITORY,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode != 0:
        return None
    return {"commit": commit.stdout.strip(), "modified": bool(changes.stdout.strip())}


def build_training_model(config):
    """(model that is saved, compiled model that is trained: augmentation + model).

    With --distribute both are built inside the backend's data-parallel scope."""
    from ferkit import backend

    with backend.distribution_scope(config["distribute"]):
        return _build_training_model(config)


def _build_training_model(config):
    import keras

    from ferkit import models

    network = config["network"]
    options = {key: config[key] for key in configuration.NETWORK_DEFAULTS[network]}
    model = models.BUILDERS[network](**options)
    augmentation = None
    if config["augment"]:
        augmentation = models.build_augmentation(
            **{key: config[key] for key in configuration.AUGMENTATION_OPTIONS}, seed=config["seed"]
        )
    if config["mixup"]:
        training_model = models.with_mixup(model, augmentation, config["mixup"], config["seed"])
        loss = models.MixedTargetCrossentropy(label_smoothing=config["label_smoothing"])
        accuracy = keras.metrics.MeanMetricWrapper(models.own_label_accuracy, name="accuracy")
    else:
        training_model = models.with_augmentation(model, augmentation)
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=config["label_smoothing"])
        accuracy = "accuracy"
    _train_faster(training_model)
    training_model.compile(
        optimizer=_optimizer(config),
        loss=loss,
        metrics=[accuracy],
        jit_compile=config["jit_resolved"],
    )
    _build_optimizer(training_model)
    return model, training_model


def _build_optimizer(training_model):
    """Create the optimizer's slot variables now, not inside fit's first traced step, where
    TensorFlow lifts each out of the graph: 23 ms a variable, 1.7 s for the DNN's 74 under the
    profiler, about 1 s off every new run's start (bench/RESULTS.md). A resumed run's
    optimizer comes built from its checkpoint."""
    training_model.optimizer.build(training_model.trainable_variables)


def training_inputs(config, images, one_hot_labels):
    """What the training model takes: the pixels, and with mixup the labels too."""
    return [images, one_hot_labels] if config["mixup"] else images


def _train_faster(training_model):
    """Faster ways to compute the same layers in training, for a built or a resumed model;
    the saved model keeps Keras' own layers (bench/RESULTS.md)."""
    from ferkit import backend, models

    backend.fuse_batch_norm(training_model)
    models.speed_up_prelu(training_model)


def _optimizer(config):
    import keras

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
        checkpoints.stage_best(run_dir, model, row["epoch"])  # model.keras after state.json
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
    checkpoints.write_history(run_dir, state["history"])
    checkpoints.save(run_dir, training_model, state)
    return state["early_wait"] >= config["early_stop_patience"]


def _interrupted(run_dir, config, epoch):
    """Ctrl-C: the checkpoint on disk is whole (written atomically); say how to go on."""
    finished = _back_to_checkpoint(run_dir, config)
    where = f"during epoch {epoch + 1}" if finished <= epoch else f"after epoch {finished}"
    kept = f"epoch {finished} is saved" if finished else "no epoch had finished"
    raise TrainingInterruptedError(
        f"interrupted {where}; {kept}. Resume with: {_resume_command(config, run_dir)}"
    ) from None


def _write_failed(run_dir, config, epoch, error):
    """A write failed (a full disk): the last checkpoint is whole, as after Ctrl-C."""
    try:
        finished = _back_to_checkpoint(run_dir, config)
    except OSError:  # still full: --resume rewrites history.csv from the checkpoint
        finished = None
    kept = f"; epoch {finished} is saved" if finished else ""
    raise FerError(
        f"{error.filename or run_dir}: {error.strerror or error} during epoch {epoch + 1}{kept}. "
        f"Once it is fixed, resume with: {_resume_command(config, run_dir)}"
    ) from None


def _back_to_checkpoint(run_dir, config):
    """The epoch the checkpoint on disk saved, with history.csv made to agree with it (it is
    written just before the checkpoint)."""
    state_path = os.path.join(run_dir, checkpoints.FOLDER, checkpoints.STATE_FILE)
    if os.path.exists(state_path):
        saved = read_json(state_path)
    else:
        saved = checkpoints.initial_state(config)
    checkpoints.write_history(run_dir, saved["history"])
    return saved["epoch"]


def _resume_command(config, run_dir, running=None):
    """The command that resumes ``run_dir``. Pasted as printed, it must run: on the run's
    backend (``running``, else the one ``config`` names; without KERAS_BACKEND a JAX run went
    on on TensorFlow, and a PyTorch one could not be loaded there), with its moved data, and
    in a shell (Colab's "My Drive")."""
    running = running or config.get("versions", {}).get("backend", "tensorflow")
    environment = "" if running == "tensorflow" else f"KERAS_BACKEND={running} "
    command = f"{environment}python train_{config['network']}.py --resume {shlex.quote(run_dir)}"
    # A data file this resume found with --run-data: config.json keeps where it started.
    try:
        recorded = read_json(os.path.join(run_dir, runs.CONFIG_FILE))
    except (FerError, OSError):
        recorded = {}
    moved = [
        config[key]
        for key in ("data", "val_data")
        if config.get(key) and isinstance(recorded, dict) and recorded.get(key) != config[key]
    ]
    # One file that is both --data and --val-data is named once.
    return command + "".join(f" --run-data {shlex.quote(path)}" for path in dict.fromkeys(moved))


def _finish(run_dir, config, state, validation):
    """Reload the best model, evaluate it, and write metrics.json."""
    history = state["history"]
    if not history or state["best_epoch"] == 0:
        raise FerError(f"{run_dir}: no epoch finished, nothing to evaluate")
    best = runs.load_model(run_dir, keep_precision=True)  # evaluated as it was trained
    probabilities = evaluation.predict_probabilities(best, validation.images)
    reloaded_accuracy = evaluation.accuracy(probabilities, validation.labels)
    # The median epoch after the first: the first epoch of every process (the run's, and each
    # resume's) also pays for tracing the graph, 20 times a later one's on small data.
    timed = history[1:] or history
    images_per_second = config["train_count"] / float(
        np.median([row["train_seconds"] for row in timed])
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
    write_json(os.path.join(run_dir, runs.METRICS_FILE), metrics)
    print(
        f"Best epoch {state['best_epoch']}: val_accuracy {state['best_val_accuracy']:.4f} "
        f"(reloaded model: {reloaded_accuracy:.4f}); run saved in {run_dir}"
    )
    return run_dir
