"""Prediction, test-time augmentation, scoring, and the files predictions are written to.

Submissions are Kaggle's ``id,label``; probability files are ``id,Angry,...,Neutral`` so
that ensembles can be tried without running the models again.
"""

import argparse
import csv
import gzip
import io
import os
import zlib

import numpy as np

from ferkit import data, runs
from ferkit.config import PREDICTION_BATCH_SIZE
from ferkit.data import CLASS_NAMES, NUM_CLASSES
from ferkit.errors import FerError
from ferkit.files import check_writable, read_json, write_bytes

TTA_MODES = ("none", "flip", "full")
# --blur's default: match the faces' sharpness to the model's training faces'.
AUTO_BLUR = "auto"
# How much sharper than the training faces faces must be before --blur auto blurs them; the
# blurred training set's faces were 4.4 times less sharp than its test faces, and faces from
# one source differ by far less on average.
AUTO_BLUR_RATIO = 1.5
# A sigma of a face's width already blurs it to one grey; OpenCV's kernel grows with the
# sigma (over a minute for five faces at 1e6, an OpenCV assertion at 1e9).
MAX_BLUR = 48
# The shifts of --tta full, in pixels (rows, columns), each also mirrored.
TTA_SHIFTS = ((0, 0), (2, 0), (-2, 0), (0, 2), (0, -2))


def shift_images(images, rows, columns):
    """Shift a batch (N, 48, 48, 1) by whole pixels, repeating the edge pixels."""
    if rows == 0 and columns == 0:
        return images
    pad = max(abs(rows), abs(columns))
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    top, left = pad - rows, pad - columns
    return padded[:, top : top + images.shape[1], left : left + images.shape[2], :]


def sharpness(images):
    """Mean absolute difference between vertically neighbouring pixels: about 3 for the
    blurred faces of ../shared/fer2013/train.csv.gz, about 13 for its sharp test faces."""
    images = np.asarray(images)
    total, count = 0.0, 0
    # In chunks: a training set's float32 copy and its differences are 240 MB each at once.
    for start in range(0, len(images), 4096):
        chunk = images[start : start + 4096].astype(np.float32)
        differences = np.abs(np.diff(chunk, axis=1))  # along the rows of (N, 48, 48[, 1])
        total += float(differences.sum(dtype=np.float64))
        count += differences.size
    return total / count if count else float("nan")


def check_blur(sigma):
    """--blur is a Gaussian's sigma in pixels, 0 to MAX_BLUR, or auto (None is off)."""
    if sigma is None or sigma == AUTO_BLUR:
        return
    if not 0 <= sigma <= MAX_BLUR:  # nan fails both comparisons
        raise FerError(f"--blur must be auto or a sigma from 0 to {MAX_BLUR} pixels, got {sigma:g}")


def blur_argument(text):
    """argparse's type for --blur: ``auto`` or a sigma in pixels."""
    if text == AUTO_BLUR:
        return AUTO_BLUR
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected auto or a sigma in pixels, got {text!r}"
        ) from None


def blur_images(images, sigma):
    """Gaussian-blur each (48, 48, 1) image, to match test faces to blurred training faces.

    A model trained only on blurred faces fails on sharp ones (measured: 0.18 instead of
    0.45); blurring the test faces until their ``sharpness`` matches the training faces'
    closes that gap without looking at any test label.
    """
    check_blur(sigma)
    if sigma == AUTO_BLUR:
        raise FerError("blur_images needs a sigma: sigma_for turns --blur auto into one")
    if not sigma or len(images) == 0:
        return images
    import cv2  # imported here: only this option needs OpenCV

    # OpenCV blurs each channel of an image alone: faces laid side by side as the channels of
    # one (48, 48, faces) image are blurred exactly as one by one (a test), many times faster
    # (bench/RESULTS.md). At most 512 channels to an image (CV_CN_MAX).
    faces = np.moveaxis(np.asarray(images)[..., 0], 0, -1)  # (N, 48, 48, 1) -> (48, 48, N)
    blurred = [
        cv2.GaussianBlur(np.ascontiguousarray(faces[:, :, start : start + 512]), (0, 0), sigma)
        for start in range(0, faces.shape[-1], 512)
    ]
    height, width = faces.shape[:2]
    # One channel comes back as (48, 48): each part reshaped to (48, 48, its faces).
    joined = np.concatenate([part.reshape(height, width, -1) for part in blurred], axis=-1)
    return np.moveaxis(joined, -1, 0)[..., np.newaxis].astype(images.dtype)  # (N, 48, 48, 1)


def matching_blur(images, trained_sharpness):
    """The sigma, to 0.1 pixel, whose blur brings ``images``' mean ``sharpness`` down to
    ``trained_sharpness`` (that of the faces a model trained on); 0 unless they are more
    than AUTO_BLUR_RATIO times sharper, since a blur cannot sharpen and faces like the
    training ones need none. One sigma for all: the blurred training set was blurred alike
    (bench/RESULTS.md), and a sigma per face would also flatten the faces' own differences.
    """
    if trained_sharpness is None or len(images) == 0:
        return 0.0
    if sharpness(images) <= AUTO_BLUR_RATIO * trained_sharpness:
        return 0.0

    def too_sharp(sigma):
        return sharpness(blur_images(images, sigma)) > trained_sharpness

    low, high = 0.0, 1.0
    while high < MAX_BLUR and too_sharp(high):
        low, high = high, min(2 * high, MAX_BLUR)
    while high - low > 0.02:  # bisection: sharpness falls as sigma grows
        middle = (low + high) / 2
        low, high = (middle, high) if too_sharp(middle) else (low, middle)
    return round((low + high) / 2, 1)


def sigma_for(source, images, blur, out=None, moved=()):
    """The sigma the model at ``source`` is to see ``images`` blurred with: --blur's, or with
    --blur auto ``matching_blur``'s, from the training faces' sharpness its run recorded
    (printed to ``out``, stdout by default). A run trained before that was recorded has it
    computed from its training data (``moved``: ``--run-data``; None where the command has
    no such option), with a note; where that cannot be, 0, with a note saying why."""
    if blur != AUTO_BLUR:
        return blur or 0.0
    trained = runs.recorded_sharpness(source)
    if trained is None:
        try:
            trained, read = runs.computed_sharpness(source, moved or ())
        except FerError as error:
            remedy = "--blur SIGMA if it trained on blurred faces"
            if moved is not None and isinstance(error, runs.MovedDataError):
                remedy = f"the file it trained on, wherever it is now, as --run-data, or {remedy}"
            print(
                f"Note: {source} records no sharpness of its training faces and it cannot be "
                f"computed ({error}), so --blur auto leaves the faces as they are (give {remedy})",
                file=out,
            )
            return 0.0
        print(
            f"Note: {source} records no sharpness of its training faces: {trained:.2f}, "
            f"computed from {read}",
            file=out,
        )
    sigma = matching_blur(images, trained)
    if sigma:
        print(
            f"--blur auto: faces of sharpness {sharpness(images):.2f}, {source} trained on "
            f"{trained:.2f}: blurred with sigma {sigma:g} (--blur 0 leaves them)",
            file=out,
        )
    return sigma


def check_run_data(moved, blur, sources):
    """``--run-data`` where only ``--blur auto`` reads it (predict.py, ensemble.py without
    fitting, a figure of --data faces): the training data of a model at ``sources`` whose run
    recorded no sharpness of its faces. Refused where nothing would read it (no such model,
    another --blur) and where it holds none of those runs' data, checked by SHA-256 before
    the test file is read or Keras is started."""
    runs.check_run_data_exist(moved)
    if not moved:
        return
    computing = runs.without_sharpness(sources)
    if not computing:
        raise FerError(
            f"--run-data {moved[0]}: nothing here reads it (it finds the training data of a "
            "run that recorded no sharpness of its faces, for --blur auto; no model given is one)"
        )
    if blur != AUTO_BLUR:
        raise FerError(
            "--run-data finds the data a run trained on, which here only --blur auto reads: "
            f"give it without --blur {blur or 0:g}"
        )
    runs.relocated(computing, moved, keys=("data",))


def blurred_for(source, images, blur, moved=()):
    """``images`` as the model at ``source`` is to see them (``sigma_for``)."""
    return blur_images(images, sigma_for(source, images, blur, moved=moved))


def is_set(blur):
    """Whether --blur names a sigma to blur with (not 0, auto or left out)."""
    return blur not in (None, 0, AUTO_BLUR)


def tta_views(images, mode="flip"):
    """The images a prediction averages over: the image, its mirror and, in full, shifts."""
    if mode in (None, "none"):
        return [images]
    mirrored = images[:, :, ::-1, :]  # flip the width axis of (N, 48, 48, 1)
    if mode == "flip":
        return [images, mirrored]
    if mode == "full":
        return [shift_images(view, *shift) for shift in TTA_SHIFTS for view in (images, mirrored)]
    raise FerError(f"unknown --tta {mode!r}: expected one of {', '.join(TTA_MODES)}")


# Views per face of each --tta mode (tta_views): what a prediction's time grows with.
TTA_VIEW_COUNTS = {"none": 1, "flip": 2, "full": 2 * len(TTA_SHIFTS)}


def say_predicting(source, count, tta):
    """One line before a prediction that takes a while (7,178 faces: 25 s on a 2-core CPU,
    45 s with the mirror, three minutes with ten views), so that the wait is explained."""
    views = TTA_VIEW_COUNTS.get(tta, 1)
    each = f", {views} views each (--tta {tta})" if views > 1 else ""
    print(f"{source}: predicting {count} faces{each}", flush=True)


def predict_probabilities(model, images, tta="none", batch_size=PREDICTION_BATCH_SIZE):
    """Class probabilities (N, 7), averaged over the TTA views."""
    from ferkit import backend  # here: the model given means Keras has started

    views = tta_views(images, tta)
    total = np.zeros((len(images), NUM_CLASSES), dtype=np.float64)
    replicas = backend.replica_count(model)
    for view in views:
        batches = backend.batches(view, batch_size=batch_size, replicas=replicas)
        # [:len(view)]: the copies a last batch was padded with for the replicas.
        predicted = model.predict(**batches, verbose=0)[: len(view)]
        total += np.asarray(predicted, dtype=np.float64)
    return (total / len(views)).astype(np.float32)


def accuracy(probabilities, labels):
    return float((np.asarray(probabilities).argmax(axis=1) == np.asarray(labels)).mean())


def log_loss(probabilities, labels):
    picked = np.asarray(probabilities, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, 1e-12, 1.0)).mean())


def _why_not_ids(ids, names):
    """Why an image folder's faces (``names``, ``ids``) have no ids a labels file can name,
    or None: its ids are its file names' numbers only where each name is another number and
    every image was read (a labelled folder's are row numbers when a Thumbs.png was not)."""
    named = [name for name in names if not data.file_stem(name).isdecimal()]
    if named:
        return f"such as {named[0]}"
    if not data.numbered_names(names):
        return "two name one number"
    if [int(row_id) for row_id in ids] != [int(data.file_stem(name)) for name in names]:
        return "an image that could not be read made them row numbers"
    return None


def labelled_subset(ids, labels_by_id, labels_path, data_path="the test file", names=None):
    """(positions in ``ids``, labels) of the ids that ``labels_by_id`` labels; ``ids`` are
    those of the faces at ``data_path`` (an image folder's ``names``: its files' names)."""
    why = _why_not_ids(ids, names) if names is not None else None
    if why:
        # Matched by row number, one missing file shifted every label after it: the shipped
        # CNN scored 0.16 for 0.61, without a word.
        raise FerError(
            f"{labels_path}: labels faces by id, and the file names in {data_path} are not "
            f"each face's id ({why}): name each face <id>.png to score it"
        )
    positions = {int(row_id): position for position, row_id in enumerate(ids)}
    missing = [row_id for row_id in labels_by_id if row_id not in positions]
    if missing:
        raise FerError(
            f"{labels_path}: {len(missing)} id(s) not in {data_path}, the first being {missing[0]}"
        )
    chosen = np.array([positions[row_id] for row_id in labels_by_id], dtype=np.int64)
    return chosen, np.array(list(labels_by_id.values()), dtype=np.int64)


def scored_faces(test, labels_by_id, labels_path):
    """(positions, labels, description) of the test faces a prediction is scored on: those
    --labels labels by id, else a labelled file's own (fer2013.csv's PublicTest rows, a
    train.csv), else None. Unknown ids are refused here, before any model runs."""
    if labels_by_id is not None:
        positions, labels = labelled_subset(
            test.ids, labels_by_id, labels_path, test.path, test.names
        )
        return positions, labels, f"{len(labels)} labelled ids of {labels_path}"
    if test.labels is not None:
        described = f"the {len(test)} faces of {test.path}, by the file's own labels"
        return np.arange(len(test)), test.labels, described
    return None


def trained_on_notes(test_path, usage, sources):
    """Lines warning that a score counts faces a model trained on, or the validation faces
    its best epoch was chosen on: ``test_path`` (its ``usage`` rows) is a file the run of one
    of ``sources`` recorded (a train.csv given as --test scored 0.9 with no word of why)."""
    configs = {source: _readable_config(source) for source in sources}
    recorded = {source: config for source, config in configs.items() if config}
    # A pipe cannot be hashed after it was read (nor was it what a run recorded).
    if not recorded or not (os.path.isfile(test_path) or os.path.isdir(test_path)):
        return []
    # Training reads a fer2013.csv's Training rows, and validates on --val-data's PublicTest
    # (all of a file without Training rows: one with them needs --usage).
    has_usage = data.has_usage_column(test_path)
    held = data.content_sha256s(test_path)  # a gzip file's text too
    contents = {}  # an ensemble's members record one file: hashed once
    notes = []
    for source, config in recorded.items():
        for key, rows, what in (
            ("data", "Training", "trained on"),
            ("val_data", "PublicTest", "chose its best epoch on"),
        ):
            path, digest = config.get(key), config.get(f"{key}_sha256")
            if has_usage and usage not in (None, rows) or not isinstance(digest, str):
                continue  # other rows; or recorded before hashes were kept, or hand-edited
            recorded_file = (path if isinstance(path, str) else None, digest)
            if recorded_file not in contents:
                contents[recorded_file] = _recorded_contents(*recorded_file)
            if held & contents[recorded_file]:
                notes.append(
                    f"Note: {source} {what} these faces of {test_path}: its score on them "
                    "overstates how it does on faces it has not seen"
                )
    return notes


def _recorded_contents(path, digest):
    """The SHA-256s of the rows a run's config records as ``path`` and ``digest`` (its data
    or val_data): the recorded one and, where the file is still there holding them gzipped,
    its text's (a run trained on train.csv.gz, tested on train.csv)."""
    if path and os.path.isfile(path) and data.file_sha256(path) == digest:
        return data.content_sha256s(path, digest)
    return {digest}


def submission_keys(dataset):
    """The id column of a submission: the file's ids, or for an image folder whose file
    names are not all different numbers (its ids are then row numbers), the file names."""
    if dataset.names is None or data.numbered_names(dataset.names):
        return dataset.ids
    return list(dataset.names)


def add_prediction_arguments(parser):
    """The options predict.py and ensemble.py share: what to predict, what to write, how."""
    parser.add_argument(
        "--test", required=True, help="test CSV (id,feature), any FER2013 CSV or image folder"
    )
    parser.add_argument(
        "--usage",
        help="fer2013.csv only: PublicTest, PrivateTest or Training (default: all, unless it "
        "holds Training rows)",
    )
    parser.add_argument("--out", help="submission CSV to write")
    parser.add_argument("--proba", help="also write the class probabilities here")
    parser.add_argument("--labels", help="id,label CSV: print accuracy on the labelled ids")
    add_blur_argument(parser, "test faces")
    parser.add_argument(
        "--tta",
        default="none",
        choices=TTA_MODES,
        help="test-time augmentation: mirror (flip), or mirror and shifts (full)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")
    parser.add_argument("--unsafe", action="store_true", help="allow models holding code (Lambda)")


def add_blur_argument(parser, faces):
    parser.add_argument(
        "--blur",
        type=blur_argument,
        default=AUTO_BLUR,
        metavar="SIGMA",
        help=f"Gaussian-blur the {faces} first; auto (the default) matches their sharpness to "
        "the model's training faces', 0 leaves them",
    )


def read_test(args):
    """The test faces that ``--test`` (and ``--usage``) name, as the file holds them (each
    model blurs them as ``--blur`` says: ``blurred_for``)."""
    test = data.read_any(args.test, usage=args.usage)
    print(f"{args.test}: {len(test)} faces, sharpness {sharpness(test.images):.2f}")
    return test


def check_prediction_arguments(args):
    """Refuse a command with nothing to do or outputs that would overwrite something."""
    if not (args.out or args.proba or args.labels):
        raise FerError(
            "nothing to do: give --out, --proba or --labels (a test file with its own labels "
            "is scored on them when --out or --proba is given)"
        )
    check_blur(args.blur)  # before the test file is read, not after
    if not args.usage and data.holds_training_rows(args.test):
        # Every row would be predicted and scored, the training faces among them.
        raise FerError(
            f"{args.test}: holds Training rows: choose the rows with --usage (PublicTest or "
            "PrivateTest for test faces)"
        )
    inputs = {"the --test file": args.test, "the --labels file": args.labels}
    # predict.py's model (the pretrained CNN when none is given) or ensemble.py's members,
    # with the config.json each is rebuilt from: --force must not replace those either.
    for source in getattr(args, "members", None) or [getattr(args, "model", None)]:
        source = source or runs.PRETRAINED
        role = f"member {source}" if hasattr(args, "members") else f"the model {source}"
        inputs.update(model_inputs(source, role, {"--out": args.out, "--proba": args.proba}))
    moved = getattr(args, "run_data", None) or []
    for index, path in enumerate(moved):
        number = f" {index + 1} of {len(moved)}" if len(moved) > 1 else ""
        inputs[f"the --run-data file{number}"] = path
    check_outputs(args.out, args.proba, args.force, inputs)


def model_inputs(source, role, outputs):
    """{what: path} of what an output must not replace even with --force, for one model (a run
    folder or a model file, named ``role``): the model, the files training wrote beside it
    and the data files its config.json records. Refuses any of ``outputs`` ({option: path})
    that would go into its checkpoint folder."""
    folder = runs.model_run_folder(source)  # a checkpoint's epoch-NNNN.keras: its run's
    inputs = {role: runs.model_path(source) if os.path.isdir(source) else source}
    inputs[f"the configuration of {role}"] = os.path.join(folder, runs.CONFIG_FILE)
    # The rest of what training wrote beside it (a checkpoint's run's best model too):
    # replacing one broke a later --resume.
    for name in (runs.MODEL_FILE, runs.COMMAND_FILE, runs.HISTORY_FILE, runs.METRICS_FILE):
        inputs[f"the {name} of {role}"] = os.path.join(folder, name)
    for option, path in outputs.items():
        runs.check_outside_checkpoints(path, source, option, role)
    inputs.update(recorded_data_inputs(source, role))
    return inputs


def recorded_data_inputs(source, role):
    """{what: path} of the files the run of the model at ``source`` trained and validated on,
    as its config.json records them: fitted weights rebuild its validation images from
    them, and so does every later script that reads the run."""
    return {
        f"the {key.replace('_', '-')} file of {role}": path
        for key, path in _recorded_data(source).items()
    }


def _readable_config(source):
    """The config.json of the run of the model at ``source`` as a dict, or None where there
    is no readable one (a bare model, a probability file, another tool's file)."""
    try:
        config = read_json(os.path.join(runs.model_run_folder(source), runs.CONFIG_FILE))
    except (FerError, OSError):
        return None
    return config if isinstance(config, dict) else None


def _recorded_data(source):
    """{"data": path, "val_data": path} as the run of the model at ``source`` records them,
    of those it has; none where it has no readable config.json."""
    config = _readable_config(source) or {}
    # A path holding NUL (a hand-edited config.json) names no file, so nothing can overwrite
    # it; realpath raised a ValueError on it.
    return {
        key: config[key]
        for key in ("data", "val_data")
        if isinstance(config.get(key), str) and "\0" not in config[key]
    }


def check_outputs(out, proba, force, inputs):
    """Refuse, before any work, outputs that would overwrite something: an existing file
    without ``force``, a folder, one of the ``inputs`` ({what it is: path}), or --out =
    --proba."""
    for option, path in {"--out": out, "--proba": proba}.items():
        if not path:
            continue
        if os.path.isdir(path):
            raise FerError(f"{path}: is a folder, expected a file name for {option}")
        for what, input_path in inputs.items():
            # realpath: the same file reached through a linked folder is still the input.
            if input_path and os.path.realpath(path) == os.path.realpath(input_path):
                raise FerError(f"{path}: is {what}; {option} must not overwrite it")
            # An image folder's 5.png was replaced by a CSV with --force, or joined by one.
            if path.lower().endswith(data.IMAGE_EXTENSIONS):
                advice = f"give {option} a name outside it"
                data.check_outside_images(path, input_path, f"{input_path} ({what})", advice=advice)
        if os.path.exists(path) and not force:
            raise FerError(f"{path}: already exists (pass --force to overwrite it)")
        check_writable(path)
    if out and proba and os.path.realpath(out) == os.path.realpath(proba):
        raise FerError(f"{out}: given as both --out and --proba")


def write_outputs(out, proba, dataset, probabilities, force):
    """The submission (``out``) and the probability file (``proba``), whichever are given."""
    keys = submission_keys(dataset)
    if out:
        write_submission(out, keys, probabilities, force=force)
        print(f"wrote {out} ({len(dataset)} rows)")
    if proba:
        write_probabilities(proba, keys, probabilities, force=force)
        print(f"wrote {proba}")


def write_submission(path, ids, probabilities, force=False):
    """Kaggle's format: ``id,label``, one row per id, in the given order."""
    predictions = np.asarray(probabilities).argmax(axis=1)
    rows = [[row_id, label] for row_id, label in zip(ids, predictions)]
    _write_csv(path, ["id", "label"], rows, force=force)


def write_probabilities(path, ids, probabilities, force=False):
    rows = [[row_id, *(f"{value:.6f}" for value in row)] for row_id, row in zip(ids, probabilities)]
    _write_csv(path, ["id", *CLASS_NAMES], rows, force=force)


def _write_csv(path, header, rows, force=False):
    """Rows as CSV, quoted where a cell needs it: an image folder's file name, the id of its
    faces, may hold a comma or a line break (a,b.png was three cells)."""
    text = io.StringIO()
    # csv quotes a cell holding "\n", not one holding "\r" (a line end to most readers):
    # a file with one has every cell quoted.
    carriage = any("\r" in str(cell) for row in rows for cell in row[:1])
    writer = csv.writer(
        text, lineterminator="\n", quoting=csv.QUOTE_ALL if carriage else csv.QUOTE_MINIMAL
    )
    writer.writerow(header)
    writer.writerows(rows)
    content = text.getvalue().encode("utf-8")
    if os.fspath(path).lower().endswith(".gz"):  # as named: gunzip and pandas read it
        content = gzip.compress(content, mtime=0)
    write_bytes(path, content, force=force)


def read_probabilities(path):
    """(keys, probabilities (N, 7)) from a file written by ``write_probabilities``, plain or
    gzipped. Keys are the first column's text: ids, or an image folder's file names."""
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except FileNotFoundError:
        raise FerError(f"{path}: no such file") from None
    except OSError as error:
        raise FerError(f"{path}: cannot be read ({error.strerror})") from None
    try:
        # utf-8-sig: a spreadsheet's export begins with a byte-order mark, as data files may.
        text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8-sig")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as error:
        raise FerError(f"{path}: not a probability file ({error})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = ",".join(next(reader, [])).strip()
        if header != "id," + ",".join(CLASS_NAMES):
            raise FerError(f"{path}: not a probability file (header {header[:60]!r})")
        keys, rows = [], []
        number = reader.line_num + 1
        for fields in reader:
            if not "".join(fields).strip():
                number = reader.line_num + 1
                continue
            if len(fields) > NUM_CLASSES + 1:
                # Unquoted, as ferkit wrote it before: a file name holding commas.
                fields = [",".join(fields[:-NUM_CLASSES]), *fields[-NUM_CLASSES:]]
            try:
                values = [float(value) for value in fields[1:]]
            except ValueError:  # a blank or text cell
                values = None
            if (
                values is None
                or len(fields) != NUM_CLASSES + 1
                or not all(0 <= value <= 1 for value in values)
            ):
                raise FerError(
                    f"{path}: line {number}: expected an id and {NUM_CLASSES} probabilities "
                    f"in [0, 1], found {','.join(fields)[:60]!r}"
                )
            keys.append(fields[0])
            rows.append(values)
            number = reader.line_num + 1
    except csv.Error as error:
        raise FerError(
            f"{path}: line {reader.line_num}: not a probability file ({error})"
        ) from None
    return keys, np.array(rows, dtype=np.float32).reshape(-1, NUM_CLASSES)
