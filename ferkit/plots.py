"""The report's figures: training curves, confusion matrices and grids of faces or maps.

Figures are ``matplotlib.figure.Figure`` objects, never pyplot's: no GUI backend is ever
started (PNG is drawn by Agg, PDF and SVG by their own renderers) and no figure lingers in a
global list. Files are written atomically, so an interrupted script leaves no broken PNG.
The helpers at the end are what the figure scripts share: where a figure goes by default and
which images it is drawn on. Keras is not imported at the top (it takes seconds to start), so
a script refuses a bad option or file at once.
"""

import csv
import os
import textwrap
import zlib
from dataclasses import dataclass

import matplotlib.figure
import matplotlib.lines
import numpy as np
from matplotlib import ticker

from ferkit import config as configuration
from ferkit import data, evaluation, runs
from ferkit.errors import FerError, shown
from ferkit.files import atomic_path, check_writable, read_json

FORMATS = (".png", ".pdf", ".svg")
DPI = 120
TRAINING_COLOUR = "tab:blue"
VALIDATION_COLOUR = "tab:orange"
# One per run of a history figure: the four named ones, then dash patterns (on, off, ...).
LINE_STYLES = (
    "-",
    "--",
    ":",
    "-.",
    (0, (8, 2, 1, 2, 1, 2)),
    (0, (1, 4)),
    (0, (12, 3)),
    (0, (4, 1, 4, 4)),
)
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")


def save(figure, path):
    """Write ``figure`` to ``path`` (PNG, PDF or SVG by its extension), atomically."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMATS:
        raise FerError(f"{path}: figures are written as {', '.join(FORMATS)}, not {extension!r}")
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=DPI, format=extension[1:])
    return path


# Training history


def read_history(source):
    """history.csv of a run (folder or a model file inside it) as {column: float array}."""
    if not os.path.exists(source):  # else a mistyped run would be looked for in its parent
        raise FerError(f"{source}: no such run folder or model file")
    runs.refuse_checkpoint_folder(source)
    path = os.path.join(run_folder(source), runs.HISTORY_FILE)
    try:
        # utf-8-sig: saved again by a spreadsheet, it begins with a byte-order mark.
        with open(path, encoding="utf-8-sig", newline="") as file:
            reader = csv.reader(file)
            header = next(reader, [])
            rows, lines = [], []  # each row's cells, and its line number
            for cells in reader:
                if any(cell.strip() for cell in cells):
                    rows.append(cells)
                    lines.append(reader.line_num)
    except FileNotFoundError:
        raise FerError(f"{path}: no such file (has the run finished an epoch?)") from None
    except (UnicodeDecodeError, csv.Error):
        raise FerError(f"{path}: not a ferkit history (not UTF-8 CSV text)") from None
    if not rows:
        raise FerError(f"{path}: has no epochs yet")
    missing = [column for column in HISTORY_COLUMNS if column not in header]
    if missing:
        raise FerError(f"{path}: no {missing[0]!r} column")
    history = {column: np.empty(len(rows)) for column in header}
    for row, (line, cells) in enumerate(zip(lines, rows)):
        if len(cells) != len(header):  # named no line, or the column None
            raise FerError(f"{path}: line {line}: {len(cells)} values for {len(header)} columns")
        for column, cell in zip(header, cells):
            try:
                history[column][row] = float(cell)
            except ValueError:
                raise FerError(f"{path}: line {line}: {column} {cell!r} is not a number") from None
        # The epochs mark the best one and are read as whole numbers: nan or inf was a traceback.
        epoch = history["epoch"][row]
        if not (np.isfinite(epoch) and epoch >= 1 and epoch == int(epoch)):
            raise FerError(
                f"{path}: line {line}: epoch {cells[header.index('epoch')]!r} is not 1, 2, …"
            )
        if row and epoch <= history["epoch"][row - 1]:  # drawn zig-zag, "6 epochs" of 4
            raise FerError(
                f"{path}: line {line}: epoch {epoch:.0f} follows epoch "
                f"{history['epoch'][row - 1]:.0f} (two histories joined?): epochs must rise"
            )
    return history


def best_epoch(source, history):
    """The epoch whose model was kept: metrics.json's, or for a run still training the first
    epoch with the highest validation accuracy (the rule training keeps by)."""
    metrics = os.path.join(run_folder(source), runs.METRICS_FILE)
    if os.path.exists(metrics):
        best = read_json(metrics)
        best = best.get("best_epoch") if isinstance(best, dict) else None
        if isinstance(best, bool) or not isinstance(best, int):
            raise FerError(f"{metrics}: no best_epoch (not a ferkit run's metrics.json)")
        if best not in history["epoch"].tolist():  # 10**400 was a traceback drawing its line
            history_path = os.path.join(run_folder(source), runs.HISTORY_FILE)
            raise FerError(f"{metrics}: best_epoch {shown(best)} is not an epoch of {history_path}")
        return best
    accuracy = np.asarray(history["val_accuracy"], dtype=float)
    if np.isnan(accuracy).all():
        raise FerError(f"{run_folder(source)}: no epoch has a validation accuracy yet")
    # nanargmax, as training keeps by: argmax took a diverged epoch's nan for the best.
    return int(history["epoch"][int(np.nanargmax(accuracy))])


def history_figure(histories, title):
    """Accuracy (left) and loss (right) per epoch, training blue and validation orange.

    ``histories`` is a list of (name, history, best epoch); several runs are overlaid with a
    line style each, and each run's best epoch is marked on its validation curves. One run
    gets a legend in each panel; several share one below the panels: runs by line style,
    training and validation by colour.
    """
    figure = matplotlib.figure.Figure(figsize=(12, 4.6), layout="constrained")
    axes = figure.subplots(1, 2)
    several = len(histories) > 1
    if len(histories) > len(LINE_STYLES):  # two runs drawn alike could not be told apart
        raise FerError(
            f"{len(histories)} runs: a history figure holds at most {len(LINE_STYLES)}, each "
            "in its own line style; draw them in several figures"
        )
    run_handles = []
    for number, (name, history, best) in enumerate(histories):
        style = LINE_STYLES[number]
        label = f"{name} (best epoch {best})"
        run_handles.append(
            matplotlib.lines.Line2D([], [], linestyle=style, color="black", label=label)
        )
        epochs = history["epoch"]
        # Dots only where there are few epochs: a single epoch is otherwise invisible.
        line = {"marker": "o" if len(epochs) <= 30 else None, "markersize": 3}
        for axis, metric in zip(axes, ("accuracy", "loss")):
            axis.plot(
                epochs,
                history[metric],
                linestyle=style,
                color=TRAINING_COLOUR,
                label="training",
                **line,
            )
            validation = history[f"val_{metric}"]
            axis.plot(
                epochs,
                validation,
                linestyle=style,
                color=VALIDATION_COLOUR,
                label="validation",
                **line,
            )
            at_best = validation[np.flatnonzero(epochs == best)]
            axis.axvline(best, color="grey", linestyle=style, linewidth=0.8)
            axis.plot(
                [best] * len(at_best),
                at_best,
                "*",
                color=VALIDATION_COLOUR,
                markersize=12,
                markeredgecolor="black",
                label=f"best epoch {best}",
            )
    for axis, metric in zip(axes, ("Accuracy", "Loss")):
        axis.set_title(metric)
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric.lower())
        axis.set_xlim(left=0)  # also gives whole-epoch ticks to a run of one epoch
        axis.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        if not several:
            axis.legend(fontsize="small")
    if several:
        # One legend for both panels, below them: a legend per panel naming every run's
        # three curves covered the curves once there were three or four runs.
        handles = [
            *run_handles,
            matplotlib.lines.Line2D([], [], color=TRAINING_COLOUR, label="training"),
            matplotlib.lines.Line2D([], [], color=VALIDATION_COLOUR, label="validation"),
            matplotlib.lines.Line2D(
                [],
                [],
                marker="*",
                linestyle="none",
                color=VALIDATION_COLOUR,
                markersize=12,
                markeredgecolor="black",
                label="best epoch (validation)",
            ),
        ]
        figure.legend(
            handles=handles,
            loc="outside lower center",
            ncols=min(len(handles), 4),
            fontsize="small",
        )
    # Wrapped, not cut off at the figure's edges when several long run names make it long.
    figure.suptitle(textwrap.fill(title, 110))
    return figure


# Confusion matrix


def confusion_counts(labels, predictions):
    """counts[true, predicted], 7 x 7."""
    pairs = np.asarray(labels) * data.NUM_CLASSES + np.asarray(predictions)
    counts = np.bincount(pairs, minlength=data.NUM_CLASSES**2)
    return counts.reshape(data.NUM_CLASSES, data.NUM_CLASSES)


def row_rates(counts):
    """Each row divided by its total: the fraction of a true class given each prediction."""
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)


def percent(rate):
    """A share as a whole percentage that never rounds to the wrong side of 0 or 100: a cell
    holding one mistake in 300 said 0%, and its class's row 100% right."""
    text = f"{rate:.0%}"  # decided on the rounded text: 1/200 rounds (half to even) to 0%
    if rate > 0 and text == "0%":
        return "<1%"
    if rate < 1 and text == "100%":
        return ">99%"
    return text


def most_confused(counts, top=3):
    """The ``top`` largest off-diagonal rates, as 'Fear → Sad 18%'."""
    rates = row_rates(counts)
    np.fill_diagonal(rates, 0)
    order = np.argsort(-rates, axis=None, kind="stable")[:top]  # ties in class order
    pairs = [np.unravel_index(position, rates.shape) for position in order]
    names = data.CLASS_NAMES
    return [
        f"{names[true]} → {names[predicted]} {percent(rates[true, predicted])}"
        for true, predicted in pairs
        if rates[true, predicted] > 0
    ]


def confusion_figure(counts, title):
    """The row-normalised matrix, each cell its percentage and count, with a colour bar."""
    rates = row_rates(counts)
    figure = matplotlib.figure.Figure(figsize=(8.5, 7.5), layout="constrained")
    axis = figure.subplots()
    image = axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for true in range(data.NUM_CLASSES):
        for predicted in range(data.NUM_CLASSES):
            rate = rates[true, predicted]
            axis.text(
                predicted,
                true,
                f"{percent(rate)}\n{counts[true, predicted]}",
                ha="center",
                va="center",
                fontsize=9,
                color="white" if rate > 0.5 else "black",
            )
    ticks = np.arange(data.NUM_CLASSES)
    totals = counts.sum(axis=1)
    axis.set_xticks(ticks, data.CLASS_NAMES, rotation=30, ha="right")
    axis.set_yticks(ticks, [f"{name} ({total})" for name, total in zip(data.CLASS_NAMES, totals)])
    axis.set_xlabel("predicted")
    axis.set_ylabel("true (images)")
    figure.colorbar(image, ax=axis, label="fraction of the true class", shrink=0.85)
    axis.set_title(title)
    return figure


# Grids of images


@dataclass
class Panel:
    """One image of a grid: gray faces on 0-255 by default; vmin/vmax None scale to the image."""

    image: np.ndarray
    title: str = ""
    cmap: str = "gray"
    vmin: float | None = 0
    vmax: float | None = 255


def draw_grid(container, rows, row_labels=None, column_titles=None):
    """Draw ``rows`` (lists of Panel or None) into a Figure or SubFigure; returns the axes."""
    columns = max(len(row) for row in rows)
    axes = container.subplots(len(rows), columns, squeeze=False)
    for row_number, row in enumerate(rows):
        for column in range(columns):
            axis = axes[row_number, column]
            axis.set_xticks([])
            axis.set_yticks([])
            panel = row[column] if column < len(row) else None
            if panel is None and column == 0 and row_labels and not any(row):
                # A row with nothing to show (a class absent from the data) keeps its label:
                # turning the axis off hid it and left a blank row.
                for spine in axis.spines.values():
                    spine.set_visible(False)
                axis.text(0.5, 0.5, "none", ha="center", va="center", transform=axis.transAxes)
                continue
            if panel is None:
                axis.set_axis_off()
                continue
            axis.imshow(np.squeeze(panel.image), cmap=panel.cmap, vmin=panel.vmin, vmax=panel.vmax)
            axis.set_title(panel.title, fontsize=8)
        if row_labels:
            axes[row_number, 0].set_ylabel(row_labels[row_number], fontsize=8)
    if column_titles:
        for column, text in enumerate(column_titles):
            axes[0, column].set_title(f"{text}\n{axes[0, column].get_title()}".strip(), fontsize=9)
    return axes


def grid_figure(rows, title, row_labels=None, column_titles=None, cell=1.7):
    columns = max(len(row) for row in rows)
    width = columns * cell + (0.9 if row_labels else 0)
    # Wrapped to the figure's width, as sample_figure's: a grid three faces wide cut a title
    # naming the run, the data and the blur at both edges.
    title = "\n".join(textwrap.fill(line, int(width * 10)) for line in title.splitlines())
    figure = matplotlib.figure.Figure(
        # Room for two lines of title; 0.2 inches for each line more.
        figsize=(width, len(rows) * cell + 0.7 + 0.2 * max(0, title.count("\n") - 1)),
        layout="constrained",
    )
    draw_grid(figure, rows, row_labels, column_titles)
    figure.suptitle(title)
    return figure


def augmented(images, settings, seed):
    """``images`` as training's augmentation (with a run's ``settings``) changes them."""
    # Keras only here: the other figures' scripts check their options before it starts.
    import keras

    from ferkit import models

    augmentation = models.build_augmentation(
        **{key: settings[key] for key in configuration.AUGMENTATION_OPTIONS}, seed=seed
    )
    if augmentation is None or not settings.get("augment", True):
        return np.asarray(images)
    changed = augmentation(np.asarray(images, dtype=np.float32), training=True)
    return keras.ops.convert_to_numpy(changed)


def sample_figure(original_rows, changed_rows, row_labels, title, cell=1.3):
    """Two grids side by side: the faces as they are, and as the augmentation changes them."""
    columns = max(len(row) for row in original_rows)
    width = 2 * columns * cell + 1.5
    # Wrapped to the figure's width (about ten characters an inch at the title's size): a
    # narrow figure, few faces per class, clipped the augmentation's settings.
    title = "\n".join(textwrap.fill(line, int(width * 10)) for line in title.splitlines())
    figure = matplotlib.figure.Figure(
        # Room for two lines of title; 0.2 inches for each line more.
        figsize=(width, len(original_rows) * cell + 1.2 + 0.2 * max(0, title.count("\n") - 1)),
        layout="constrained",
    )
    for part, rows, heading in zip(
        figure.subfigures(1, 2), (original_rows, changed_rows), ("original", "augmented")
    ):
        draw_grid(part, rows, row_labels)
        part.suptitle(heading)
    figure.suptitle(title)
    return figure


def square_rows(panels):
    """Panels laid out in rows of about sqrt(count) each."""
    width = int(np.ceil(np.sqrt(len(panels))))
    return [panels[start : start + width] for start in range(0, len(panels), width)]


# Shared by the figure scripts


def run_folder(source):
    """The run folder of a run folder or of a model file (the file's own folder, or for a
    checkpoint's epoch-NNNN.keras its run's)."""
    return runs.model_run_folder(source)


def model_label(source):
    """What sets a model file's figures and title apart from those of its folder's own model:
    'epoch-0040' for a checkpoint's, 'finetuned' for finetuned.keras copied into a run folder,
    'mine' for a mine.keras outside any run (two of them in one folder shared figures); None
    for a run folder or its own model."""
    if os.path.isdir(source):
        return None
    label = os.path.splitext(os.path.basename(source))[0]
    folder = run_folder(source)
    if folder != os.path.dirname(os.path.abspath(source)):  # a checkpoint's epoch-NNNN.keras
        return label
    try:
        own = runs.model_path(folder)
    except FerError:  # no model.keras, or several others: none of them is the folder's own
        own = None
    # Another model file in a run folder replaced its best model's figures, under its name.
    if own and os.path.realpath(own) == os.path.realpath(source):
        return None
    return label


def run_name(source):
    """How titles name a model: its run folder's name (and a checkpoint's epoch), or the file
    name for a loose file."""
    # Only whether it has a run: reading a foreign or broken config.json beside a model file
    # failed here, after the model had run (the run folder itself was drawn).
    folder = run_folder(source)
    if os.path.isdir(source) or os.path.isfile(os.path.join(folder, runs.CONFIG_FILE)):
        name = os.path.basename(os.path.normpath(os.path.abspath(folder)))
        label = model_label(source)
        return f"{name} {label}" if label else name
    return os.path.basename(source)


def add_out_arguments(parser):
    """--out and --force, as every figure script takes them."""
    parser.add_argument("--out", help="figure file (.png, .pdf or .svg)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out")


def data_name(path):
    """A data file's name as a figure's name holds it: less .gz and .csv, so faces.v1.csv
    and faces.v2.csv stay apart (both were "faces") and a gzipped copy shares its CSV's."""
    name = os.path.basename(os.path.normpath(path))  # "faces" for "faces/" too
    for extension in (".gz", ".csv"):
        if name.lower().endswith(extension):
            name = name[: -len(extension)]
    return name


def saliency_name(args):
    """A saliency figure's name: ``saliency_<indices>`` or ``saliency_per-class-<N>``, then
    each option that changes what it shows, so that one figure never replaces another."""
    if args.index is None:
        name = f"saliency_per-class-{args.per_class}"
    else:
        name = "saliency_" + "-".join(map(str, args.index[:6]))
        if len(args.index) > 6:  # the rest by a checksum: 0 1 2 3 4 5 6 and … 9 differ
            listed = " ".join(map(str, args.index)).encode()
            name += f"-and-{len(args.index) - 6}-more-{zlib.crc32(listed):08x}"
    if args.target != "predicted":  # another class's gradient: another map
        name += f"_target-{args.target}"
    if args.smoothgrad:
        name += f"_smoothgrad-{args.smoothgrad}"
        if args.noise != configuration.SMOOTHGRAD_NOISE:
            name += f"_noise-{args.noise:g}"
    if args.keep != configuration.SALIENCY_KEEP:
        name += f"_keep-{args.keep:g}"
    return name + data_suffix(args)  # index 3 of --data is another face than the run's own


def data_suffix(args):
    """'_<data>[_<usage>][_blur<sigma>|_blur-auto]' naming a figure of --data faces, so that it
    does not replace the same figure of the run's validation faces, nor of a file named
    otherwise; '' for those."""
    if not args.data:
        return ""
    suffix = "_" + data_name(args.data)
    if args.usage:
        suffix += f"_{args.usage}"
    if evaluation.is_set(args.blur):
        suffix += f"_blur{args.blur:g}"
    elif args.blur == evaluation.AUTO_BLUR:  # its sigma is in the title
        suffix += "_blur-auto"
    return suffix


def figure_path(
    source,
    name,
    out=None,
    force=False,
    data_path=None,
    labels_path=None,
    others=(),
    run_data=(),
):
    """``--out`` when given (an existing file only with ``force``, checked before any work),
    else ``<run folder>/figures/<name>.png``, which is drawn afresh each time; never one of
    the images of ``data_path`` (--data), nor a new file in its folder, nor ``labels_path``
    (--labels), nor in the image folder that the run at ``source`` (or at ``others``, the
    other runs of one figure) trained or validated on, or that ``run_data`` names, nor in
    one of those runs' checkpoint folders."""
    if out:
        extension = os.path.splitext(out)[1].lower()
        if extension not in FORMATS:
            raise FerError(f"{out}: figures are written as {', '.join(FORMATS)}")
        check_outside_data(out, data_path)
        # An existing file may be a figure for a report.
        inputs = {"the --data file": data_path, "the --labels file": labels_path}
        # x.png in the image folder a run trained on changed its SHA-256: the run could no
        # longer be resumed, nor its validation images rebuilt.
        for each in (source, *others):
            runs.check_outside_checkpoints(out, each, "--out", f"the run {each}")
            inputs.update(evaluation.recorded_data_inputs(each, f"the run {each}"))
        for index, path in enumerate(run_data):
            inputs[f"the --run-data file {index + 1}"] = path
        evaluation.check_outputs(out, None, force, inputs=inputs)
        return out
    label = model_label(source)
    if label:  # beside the best model's figures, not over them
        name += f"_{label}"
    path = os.path.join(run_folder(source), "figures", f"{name}.png")
    check_outside_data(path, data_path)
    check_writable(path)  # a file named figures was found only after the model had run
    return path


def check_outside_data(path, data_path):
    """A figure written into an image folder would replace one of its faces (--force) or be
    read as a new one the next time."""
    where = f"the --data folder {data_path}"
    data.check_outside_images(path, data_path, where, advice="write the figure elsewhere")


def conv_layer_name(names, which=None, source="model"):
    """Of a model's conv layer ``names``: the one named ``which``, or at position ``which``
    (0 first, -1 last), or by default the middle one (explain.choose_conv_layer)."""
    if not names:
        raise FerError(
            f"{source}: has no Conv2D layers (a DNN?); filters can only be drawn for a CNN"
        )
    if which is None:
        return names[len(names) // 2]
    if which in names:
        return which
    try:
        return names[int(which)]
    except (ValueError, IndexError):
        raise FerError(
            f"{source}: no conv layer {which!r}: give a name ({', '.join(names)}) "
            f"or a position 0-{len(names) - 1}"
        ) from None


def add_data_arguments(parser, usage_default="all"):
    parser.add_argument(
        "--data", help="CSV or image folder to draw on instead of the run's validation images"
    )
    parser.add_argument(
        "--labels",
        help="id,label CSV: labels of --data's faces by id (in place of its own, if it has any)",
    )
    parser.add_argument(
        "--usage",
        help=f"fer2013.csv only: PublicTest, PrivateTest or Training (default: {usage_default})",
    )
    evaluation.add_blur_argument(parser, "--data faces")
    parser.add_argument("--unsafe", action="store_true", help="allow models holding code (Lambda)")
    runs.add_run_data_argument(parser)


def check_ascent_options(args):
    """visualize_filters.py's --filters, --steps, --step-size and --seed, each refused
    naming its value; the last three, the gradient ascent's, refused with --image (which
    draws activation maps instead) and otherwise set to their defaults where not given."""
    ascent = {"--steps": args.steps, "--step-size": args.step_size, "--seed": args.seed}
    given = [option for option, value in ascent.items() if value is not None]
    if args.image is not None and given:  # ignored without a word
        raise FerError(
            f"{given[0]} is for the filters' gradient ascent; --image draws a face's "
            "activation maps instead: leave it out"
        )
    defaults = configuration.FILTER_ASCENT
    args.steps = defaults["steps"] if args.steps is None else args.steps
    args.step_size = defaults["step_size"] if args.step_size is None else args.step_size
    args.seed = 0 if args.seed is None else args.seed
    if args.filters < 1:
        raise FerError(f"--filters must be at least 1, got {args.filters}")
    if args.steps < 0:
        raise FerError(f"--steps must be at least 0, got {args.steps}")
    # not 0 < step_size < inf: nan passes a plain comparison and drew blank panels.
    if not 0 < args.step_size < float("inf"):
        raise FerError(f"--step-size must be a positive number, got {args.step_size}")
    if not 0 <= args.seed <= configuration.MAX_SEED:
        raise FerError(f"--seed must be from 0 to {configuration.MAX_SEED}, got {args.seed}")


def check_face_options(args):
    """visualize_filters.py: the options that choose a face mean nothing without --image."""
    chosen = (args.data, args.labels, args.usage, evaluation.is_set(args.blur), args.run_data)
    if args.image is None and any(chosen):
        raise FerError(
            "--data, --labels, --usage, --blur and --run-data choose the face for --image: "
            "give --image"
        )


def figure_images(source, args, labelled_only=True):
    """(images, labels, description) a figure is drawn on: the run's own validation images,
    or ``--data`` (labelled by its own column or by ``--labels``).

    With ``labelled_only`` False every row of --data is kept and an unknown label is -1.
    """
    if args.labels and not args.data:
        raise FerError("--labels labels a --data file: give --data too")
    blur = getattr(args, "blur", None)
    evaluation.check_blur(blur)
    if not args.data:
        if args.usage:
            raise FerError("--usage selects rows of --data: give --data too")
        if evaluation.is_set(blur):
            raise FerError("--blur blurs --data's faces (validation faces are like training's)")
        config = runs.run_config(source)
        if config is None:
            raise FerError(f"{source}: no config.json beside it, so give --data CSV")
        validation = runs.validation_data(source, args.run_data)
        # validation.path: the file read, where --run-data may have found it.
        described = f"validation split of {os.path.basename(validation.path)}"
        if config.get("val_data"):  # --val-data's faces, not a split of --data
            described = f"validation data {os.path.basename(validation.path)}"
            if data.has_usage_column(validation.path):
                described += " (PublicTest)"
        return validation.images, validation.labels, described
    # With --data, the run's data is read only for --blur auto (predict.py's rule).
    evaluation.check_run_data(args.run_data, blur, [source])
    table = data.read_any(args.data, usage=args.usage)
    # From all of its faces, as predict.py's for the same file, not only the labelled ones.
    sigma = evaluation.sigma_for(source, table.images, blur, moved=args.run_data)
    described = os.path.basename(args.data) + (f" ({args.usage})" if args.usage else "")
    images, labels = table.images, table.labels
    if args.labels:
        positions, known = evaluation.labelled_subset(
            table.ids, data.read_labels(args.labels), args.labels, args.data, table.names
        )
        described += f" labelled by {os.path.basename(args.labels)}"
        if labelled_only:
            images, labels = table.images[positions], known
        else:
            labels = np.full(len(table), -1, dtype=np.int64)
            labels[positions] = known
    elif labels is None:
        if labelled_only:
            raise FerError(f"{args.data}: has no labels: give --labels id,label CSV too")
        labels = np.full(len(table), -1, dtype=np.int64)
    if sigma:  # the faces drawn on, once chosen
        images = evaluation.blur_images(images, sigma)
        described += f", blurred (sigma {sigma:g})"
    return images, labels, described


def saliency_rows(faces, maps, masked, indices, labels, probabilities):
    """saliency.py's figure rows: each face, its map and its most salient pixels, labelled
    with the face's position, its true class ("?" when unknown) and the prediction."""
    rows, row_labels = [], []
    for row, index in enumerate(indices):
        predicted = int(probabilities[row].argmax())
        true = data.CLASS_NAMES[labels[index]] if labels[index] >= 0 else "?"
        row_labels.append(
            f"#{index} true {true}\n"
            f"pred {data.CLASS_NAMES[predicted]} {probabilities[row, predicted]:.0%}"
        )
        rows.append(
            [
                Panel(faces[row]),
                Panel(maps[row], cmap="inferno", vmin=0, vmax=1),
                Panel(masked[row]),
            ]
        )
    return rows, row_labels
