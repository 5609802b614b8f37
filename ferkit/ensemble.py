"""Ensembles: averaging members' class probabilities, fitted weights and greedy selection.

Weights and selection are fitted on validation images that no member trained on: every
member must be a run folder whose recorded split (data file hash and validation indices)
is the same as the others'. Members that differ only in ``--seed`` share it by default;
members trained on two files with the same rows (gzipped or not) share it too.
"""

import hashlib
import os

import numpy as np
from scipy import optimize

from ferkit import config as configuration
from ferkit import data, evaluation, runs
from ferkit.errors import FerError

# Greedy selection's largest --greedy: counts of a thousand rounds set weights to 0.001,
# finer than a validation split can tell apart; 10**17 rounds never finished.
MAX_GREEDY_ROUNDS = 1000


def average(member_probabilities, weights=None):
    """The weighted mean of (members, N, 7) probabilities; uniform weights by default."""
    stacked = np.asarray(member_probabilities, dtype=np.float64)
    if weights is None:
        weights = np.full(len(stacked), 1.0 / len(stacked))
    weights = np.asarray(weights, dtype=np.float64)
    if not valid_weights(weights, len(stacked)):
        raise FerError(f"need one non-negative weight per member, got {weights.tolist()}")
    # Scaled by the largest first: --weights 1e308,1e308 summed to infinity, which made every
    # weight 0 and every probability 0.
    weights = weights / weights.max()
    return np.tensordot(weights / weights.sum(), stacked, axes=1)


def valid_weights(weights, count):
    """One finite, non-negative weight per member, not all zero (NaN passed every
    comparison and averaged into NaN probabilities: every prediction class 0)."""
    return (
        weights.shape == (count,)
        and np.isfinite(weights).all()
        and (weights >= 0).all()
        and weights.max(initial=0) > 0  # not the sum: 1e308 + 1e308 overflows
    )


# A fitted weight below this is the softmax's tail, not a choice: it becomes 0.
FITTED_WEIGHT_FLOOR = 1e-3


def weighted(member_paths, weights, everyone=False):
    """Indices of the members the test faces are run through: all but models of weight 0
    (all with uniform ``weights``, None, or ``everyone``, when the faces are scored), the
    others named on the way. A probability file costs nothing to read, and is still checked
    against the test file."""
    if weights is None or everyone:
        return list(range(len(member_paths)))
    skipped = [
        index
        for index, (path, weight) in enumerate(zip(member_paths, weights))
        if weight == 0 and not is_probability_file(path)
    ]
    if skipped:
        names = ", ".join(member_paths[index] for index in skipped)
        print(f"Weighted 0, so not run on the test faces: {names}")
    return [index for index in range(len(member_paths)) if index not in skipped]


def fit_weights(member_probabilities, labels):
    """Non-negative weights summing to 1 that minimise the ensemble's log loss on ``labels``.

    Weights are a softmax of free parameters, so the optimiser needs no constraints.
    """
    stacked = np.asarray(member_probabilities, dtype=np.float64)

    def weights_of(parameters):
        exponentials = np.exp(parameters - parameters.max())
        return exponentials / exponentials.sum()

    def loss(parameters):
        return evaluation.log_loss(average(stacked, weights_of(parameters)), labels)

    result = optimize.minimize(loss, np.zeros(len(stacked)), method="L-BFGS-B")
    weights = weights_of(result.x)
    # The softmax never reaches 0: a member fitted 0.00004 was still run on the test faces
    # (minutes with --tta full) for nothing a prediction could show.
    weights[weights < FITTED_WEIGHT_FLOOR] = 0.0
    return weights / weights.sum()


def greedy_selection(member_probabilities, labels, rounds):
    """Caruana-style forward selection with replacement: each round adds the member that
    lowers the ensemble's log loss most. Returns how often each member was chosen."""
    stacked = np.asarray(member_probabilities, dtype=np.float64)
    counts = np.zeros(len(stacked), dtype=np.int64)
    total = np.zeros_like(stacked[0])
    for round_index in range(rounds):
        losses = [
            evaluation.log_loss((total + member) / (round_index + 1), labels) for member in stacked
        ]
        best = int(np.argmin(losses))
        counts[best] += 1
        total += stacked[best]
    return counts


def shared_split(member_paths, moved=(), blur=evaluation.AUTO_BLUR):
    """The split all run-folder members share; refuses members whose splits differ, and
    --run-data files (``moved``) that hold none of the files the command reads (with ``blur``
    auto, also the training data of a member that recorded no sharpness of its faces).

    Members trained on different files holding the same faces (train.csv.gz here, the same
    CSV unpacked on a GPU machine) share it too: their decoded rows are compared."""
    configs = {}
    for path in member_paths:
        config = runs.run_config(path) if not is_probability_file(path) else None
        if config is None or not config.get("split"):
            raise FerError(
                f"{path}: has no recorded validation split (a probability file or a bare "
                f"model), so weights cannot be fitted on validation images: {WITHOUT_FITTING}"
            )
        configs[path] = config
    # Runs recorded before hashes were kept have none: their rows are compared instead.
    # Members of one file with other --limit values need no comparison: their validation
    # indices differ (refused below), or name the same rows of the same file.
    files = {config.get("data_sha256") for config in configs.values()}
    compare_rows = len(files) > 1 or None in files
    # The files this reads, where --run-data says they are now: every member's data when
    # rows are compared, and the first member's validation file (choose_weights reads it).
    first, first_config = next(iter(configs.items()))
    reads = {path: ("data",) if compare_rows else () for path in configs}
    reads[first] = (*reads[first], "val_data" if first_config.get("val_data") else "data")
    if blur == evaluation.AUTO_BLUR:  # evaluation.sigma_for computes what a run left out
        for path, config in configs.items():
            if runs.lacks_sharpness(config) and "data" not in reads[path]:
                reads[path] = (*reads[path], "data")
    found = runs.relocated(configs, moved, keys=reads)
    contents = _data_contents(found, configs, moved) if compare_rows else {}
    validation_files = {path: _validation_file(path, found[path]) for path in configs}
    # A gzip file read here is keyed by its text; a member whose copy of the same gzip file
    # was not read (moved, or only the first member's is looked for) recorded its bytes' hash.
    texts = {
        configs[path].get("val_data_sha256"): key
        for path, key in validation_files.items()
        if configs[path].get("val_data_sha256") not in (None, key)
    }
    records = {
        path: (
            contents.get(path, config.get("data_sha256")),
            config["split"].get("val_indices_sha256"),
            texts.get(validation_files[path], validation_files[path]),
        )
        for path, config in configs.items()
    }
    if len(set(records.values())) > 1:
        if len({record[1:] for record in records.values()}) == 1:
            names = ", ".join(
                f"{path}: {os.path.basename(configs[path]['data'])}" for path in configs
            )
            raise FerError(
                f"members trained on different rows ({names}, or other --limit values): one "
                "member's validation images may be another's training images; refusing to "
                f"fit on them: {WITHOUT_FITTING}"
            )
        listing = "; ".join(
            f"{path}: validation file {config['split']['val_data']}"
            if config["split"].get("val_data")
            else f"{path}: split {config['split'].get('val_indices_sha256')}"
            for path, config in configs.items()
        )
        raise FerError(
            "members were validated on different images, so some validation images were "
            f"training images of another member ({listing}{_differing_options(configs)}); "
            "refusing to fit on them. Train members with the same --split-seed, --val-split "
            f"and --limit (or the same --val-data file), or {WITHOUT_FITTING}"
        )
    return records


# What a user whose members cannot share validation images can do instead.
WITHOUT_FITTING = (
    "leave out --weights fit and --greedy (uniform or given weights; --labels still scores "
    "the ensemble)"
)


def _differing_options(configs):
    """'; --limit: 700 for a, none for b' for the recorded options that choose a validation
    split and differ between the members, or ''."""
    parts = []
    for key in ("split_seed", "val_split", "limit", "val_data"):
        values = {path: config.get(key) for path, config in configs.items()}
        if len({repr(value) for value in values.values()}) > 1:
            listed = ", ".join(
                f"{'none' if value is None else value} for {path}" for path, value in values.items()
            )
            parts.append(f"{configuration.option_name(key)}: {listed}")
    return "".join(f"; {part}" for part in parts)


def _validation_file(path, config):
    """What identifies a --val-data member's validation file (None for a split member): the
    SHA-256 it recorded, or for a run recorded before hashes were kept, that of its file now;
    for a gzip file still as recorded, that of its text, so that a member validated on
    val.csv.gz shares the split of one validated on the same val.csv."""
    if not config["split"].get("val_data"):
        return None
    source = config["val_data"]
    digest = config.get("val_data_sha256")
    if not digest and not os.path.exists(source):
        raise FerError(
            f"{path}: recorded no SHA-256 of its --val-data file {source}, which is not here, "
            "so its validation images cannot be compared with the other members'"
        )
    if not os.path.exists(source):
        return digest  # moved: only the first member's file is looked for (--run-data)
    file_digest = data.file_sha256(source)
    if digest and digest != file_digest:
        return digest  # changed since: the recorded hash, which no other file can match
    text_digests = data.content_sha256s(source, file_digest) - {file_digest}  # gzip: its text
    return text_digests.pop() if text_digests else file_digest


def _data_contents(configs, recorded, moved=()):
    """Per member, a hash of the labels and pixels it was trained on (after ``--limit``),
    read from its data file, which must still be the file it trained on (``recorded``: the
    configs as written, before --run-data files replaced their data files)."""
    by_file, contents = {}, {}
    for path, config in configs.items():
        source = config["data"]
        if not os.path.exists(source) and (moved or not config.get("data_sha256")):
            raise runs.missing_data(source, path, config.get("data_sha256"), moved)
        if not os.path.exists(source):
            raise FerError(
                f"{path}: trained on {source}, which is not here; the members' data files "
                "differ, so their rows must be compared to know they share a split (give "
                "where it is now as --run-data)"
            )
        # Runs recorded before hashes were kept are told apart by their files.
        key = (config.get("data_sha256") or os.path.realpath(source), config.get("limit"))
        if key not in by_file:
            if source == recorded[path]["data"]:  # a --run-data file was checked when found
                runs.check_unchanged(source, config.get("data_sha256"), path)
            rows = runs.labelled_rows(config)
            digest = hashlib.sha256(rows.labels.astype(np.int64).tobytes())
            digest.update(np.ascontiguousarray(rows.images).tobytes())
            by_file[key] = digest.hexdigest()
        contents[path] = by_file[key]
    return contents


# What predict.py --proba writes: an ensemble member of this name is a probability file.
PROBABILITY_EXTENSIONS = (".csv", ".csv.gz")


def is_probability_file(path):
    return os.path.isfile(path) and path.lower().endswith(PROBABILITY_EXTENSIONS)


def member_probabilities(
    path,
    images,
    keys,
    tta,
    batch_size=configuration.PREDICTION_BATCH_SIZE,
    unsafe=False,
    blur=0,
    moved=(),
    made=None,
):
    """One member's probabilities for ``images``: from its model, the images blurred for it as
    ``blur`` says (``evaluation.blurred_for``; ``moved``: --run-data), or from its file
    (``made``: those already read by ``read_probability_file``)."""
    if is_probability_file(path):
        return made[path] if made and path in made else read_probability_file(path, keys)
    model = runs.load_model(path, unsafe=unsafe)
    images = evaluation.blurred_for(path, images, blur, moved)
    evaluation.say_predicting(path, len(images), tta)
    return evaluation.predict_probabilities(model, images, tta, batch_size)


def read_probability_file(path, keys):
    """A probability file's probabilities, whose rows must be ``keys`` (the submission's ids
    or file names) in order."""
    file_keys, probabilities = evaluation.read_probabilities(path)
    if len(file_keys) != len(keys):
        raise FerError(f"{path}: has {len(file_keys)} rows, the test file has {len(keys)}")
    if file_keys != [str(key) for key in keys]:
        raise FerError(f"{path}: its ids differ from the test file's (another test file?)")
    return probabilities


def score_table(names, member_probabilities, ensemble_probabilities, labels):
    """Lines of a table: each member's accuracy and log loss, the ensemble's, and its gain."""
    width = max(len(name) for name in [*names, "ensemble"])
    lines = [f"{'member':<{width}}  accuracy  log loss"]
    accuracies = []
    for name, probabilities in zip(names, member_probabilities):
        accuracies.append(evaluation.accuracy(probabilities, labels))
        lines.append(
            f"{name:<{width}}  {accuracies[-1]:8.4f}  "
            f"{evaluation.log_loss(probabilities, labels):8.4f}"
        )
    ensemble_accuracy = evaluation.accuracy(ensemble_probabilities, labels)
    lines.append(
        f"{'ensemble':<{width}}  {ensemble_accuracy:8.4f}  "
        f"{evaluation.log_loss(ensemble_probabilities, labels):8.4f}"
    )
    lines.append(f"gain over the best member: {ensemble_accuracy - max(accuracies):+.4f}")
    return lines


def check_members(member_paths):
    """Each member a probability file, or a model checked by its first bytes (and its run's
    recorded sharpness): a wrong one is refused before the test file is read or Keras is
    started."""
    for path in member_paths:
        if is_probability_file(path):
            continue
        if not os.path.exists(path) and path.lower().endswith(PROBABILITY_EXTENSIONS):
            raise FerError(f"{path}: no such probability file")  # not "no such run folder"
        if os.path.isfile(path) and not path.lower().endswith(runs.MODEL_EXTENSIONS):
            raise FerError(
                f"{path}: not a member: expected a run folder, a .keras or .h5 model or a "
                "probability file (.csv) from predict.py --proba"
            )
        runs.checked_model_path(path)
        runs.recorded_sharpness(path)  # what --blur auto reads, refused if hand-edited wrong


def check_run_data(moved, spec, greedy, blur=evaluation.AUTO_BLUR, member_paths=()):
    """--run-data locates the data members trained on: their validation images, which only
    fitting uses, and with --blur auto the training faces of a member whose run recorded no
    sharpness of them. Checked before the test file is read or Keras is started."""
    if spec == "fit" or greedy:
        runs.check_run_data_exist(moved)  # shared_split matches them to the members' files
        return
    models = [path for path in member_paths if not is_probability_file(path)]
    evaluation.check_run_data(moved, blur, models)


def check_run_data_read(moved, member_paths, running, blur=evaluation.AUTO_BLUR):
    """--run-data once the weights are known: ``check_run_data`` let it through for a member
    of weight 0, which is not run (unless the faces are scored), so nothing would read it."""
    if len(running) == len(member_paths):  # every member runs: check_run_data's word stands
        return
    models = [member_paths[index] for index in running]
    models = [path for path in models if not is_probability_file(path)]
    if moved and blur == evaluation.AUTO_BLUR and not runs.without_sharpness(models):
        raise FerError(
            f"--run-data {moved[0]}: nothing reads it: the members whose runs recorded no "
            "sharpness of their faces have weight 0, and a member of weight 0 is not run "
            "(unless --labels scores it)"
        )
    evaluation.check_run_data(moved, blur, models)


def check_weights(spec, greedy, count):
    """--weights and --greedy checked before any data is read: the weights given as numbers,
    or None (uniform, fit or greedy: chosen later)."""
    if greedy is not None and not 1 <= greedy <= MAX_GREEDY_ROUNDS:
        raise FerError(f"--greedy must be from 1 to {MAX_GREEDY_ROUNDS} rounds, got {greedy}")
    if greedy and spec != "uniform":
        raise FerError("--greedy chooses the weights: give it without --weights")
    if spec not in ("uniform", "fit"):
        try:
            weights = np.array([float(value) for value in spec.split(",")])
        except ValueError:
            raise FerError(f"--weights {spec!r}: expected uniform, fit or numbers") from None
        if len(weights) != count:
            raise FerError(
                f"--weights gives {len(weights)} weight{'s' if len(weights) > 1 else ''} for "
                f"{count} members"
            )
        if not valid_weights(weights, count):
            raise FerError(
                "--weights: need one finite, non-negative weight per member, not all zero, "
                f"got {spec}"
            )
        return weights
    return None


def choose_weights(
    member_paths,
    spec="uniform",
    greedy=None,
    tta="none",
    unsafe=False,
    moved=(),
    split_checked=False,
):
    """Weights from ``--weights`` and ``--greedy``: None (uniform), numbers given as
    'w1,w2,...', or fitted on the members' shared validation images (printed as a table).
    ``split_checked``: the caller has called ``shared_split`` (seconds) already."""
    weights = check_weights(spec, greedy, len(member_paths))
    if weights is not None:
        return weights
    if spec == "uniform" and not greedy:
        return None
    if not split_checked:
        shared_split(member_paths, moved)
    # shared_split has refused --run-data files no member recorded; some are other members'.
    validation = runs.validation_data(member_paths[0], moved, strict=False)
    members = [
        member_probabilities(path, validation.images, validation.ids, tta, unsafe=unsafe)
        for path in member_paths
    ]
    if greedy:
        counts = greedy_selection(members, validation.labels, greedy)
        weights = counts / counts.sum()
        print(
            f"greedy selection ({greedy} rounds, each adding the member that lowers the "
            f"log loss most) on {len(validation)} shared validation images: counts "
            f"{counts.tolist()}"
        )
    else:
        weights = fit_weights(members, validation.labels)
        print(
            f"fitted weights on {len(validation)} shared validation images: "
            + ", ".join(f"{weight:.3f}" for weight in weights)
        )
    table = score_table(member_paths, members, average(members, weights), validation.labels)
    print("\n".join(table))
    return weights
