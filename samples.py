"""Show training faces of every class, and the same faces as the augmentation changes them.

    python samples.py --data data/train.csv
    python samples.py --data data/fer2013.csv --usage Training --per-class 8 --seed 3
    python samples.py --data data/train.csv --run models/cnn_quick_seed1  # that run's settings

The augmentation is the one training uses (ferkit.models.build_augmentation, called with
training=True), with the default settings or those recorded in --run's config.json. The
figure goes to models/figures/samples_<data>.png, or <run>/figures/ with --run, or --out.
"""

import os

import numpy as np

from ferkit import cli, data, plots, runs
from ferkit import config as configuration
from ferkit.errors import FerError
from ferkit.files import check_writable


def main():
    parser = cli.ArgumentParser(description=__doc__, formatter_class=cli.RawHelp)
    parser.add_argument("--data", required=True, help="labelled FER2013 CSV or image folder")
    parser.add_argument("--usage", help="fer2013.csv: Training (default), PublicTest, PrivateTest")
    per_class = configuration.SAMPLES_PER_CLASS
    parser.add_argument("--per-class", type=int, default=per_class, metavar="N", help="per class")
    parser.add_argument("--seed", type=int, default=0, help="which faces, and the augmentation")
    parser.add_argument("--run", help="take the augmentation settings from this run's config")
    plots.add_out_arguments(parser)
    args = parser.parse_args()
    if args.per_class < 1:
        raise FerError(f"--per-class must be at least 1, got {args.per_class}")
    if not 0 <= args.seed <= configuration.MAX_SEED:
        raise FerError(f"--seed must be from 0 to {configuration.MAX_SEED}, got {args.seed}")
    if args.run:
        runs.refuse_checkpoint_folder(args.run)
    settings = runs.run_config(args.run) if args.run else None
    if args.run and settings is None:
        raise FerError(f"{args.run}: no config.json there")
    settings = settings or configuration.DEFAULTS
    # --usage in the name: a fer2013.csv's PublicTest samples replaced its Training ones.
    name = f"samples_{plots.data_name(args.data)}" + (f"_{args.usage}" if args.usage else "")
    if args.out:
        path = plots.figure_path(args.run or ".", "samples", args.out, args.force, args.data)
    elif args.run:
        path = plots.figure_path(args.run, name, data_path=args.data)
    else:
        path = os.path.join("models", "figures", f"{name}.png")
        plots.check_outside_data(path, args.data)
        check_writable(path)  # a file named models was found only after the faces were read
    # Of a fer2013.csv, the faces training sees (its Training rows) unless --usage says.
    usage = args.usage or ("Training" if data.has_usage_column(args.data) else None)
    table = data.read_any(args.data, usage=usage, require_labels=True)
    rng = np.random.default_rng(args.seed)
    chosen = [
        rng.permutation(np.flatnonzero(table.labels == label))[: args.per_class]
        for label in range(data.NUM_CLASSES)
    ]
    faces = table.images[np.concatenate(chosen)]
    changed = plots.augmented(faces, settings, args.seed)
    original_rows, changed_rows, start = [], [], 0
    for indices in chosen:
        stop = start + len(indices)
        original_rows.append([plots.Panel(face) for face in faces[start:stop]])
        changed_rows.append([plots.Panel(face) for face in changed[start:stop]])
        start = stop
    row_labels = [
        f"{name} ({np.sum(table.labels == label)})" for label, name in enumerate(data.CLASS_NAMES)
    ]
    described = os.path.basename(os.path.normpath(args.data)) + (f" ({usage})" if usage else "")
    settings_text = ", ".join(f"{key} {settings[key]}" for key in configuration.AFFINE_OPTIONS)
    if settings["random_erasing"]:
        settings_text += f", random_erasing {settings['random_erasing']}"
    if settings["mixup"]:
        settings_text += f" (mixup {settings['mixup']} also blends faces in pairs: not shown)"
    if not settings.get("augment", True):
        settings_text = "off (--no-augment)"
    figure = plots.sample_figure(
        original_rows,
        changed_rows,
        row_labels,
        f"{described}: up to {args.per_class} faces per class (images in the file)\n"
        f"augmentation{' of ' + plots.run_name(args.run) if args.run else ''}: {settings_text}",
    )
    plots.save(figure, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    cli.run(main)
