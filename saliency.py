"""Draw saliency maps: which pixels move the class score most (Simonyan et al., 2014).

    python saliency.py models/cnn_quick_seed1 --per-class 2             # validation images
    python saliency.py models/cnn_quick_seed1 --index 0 5 17 --smoothgrad 30 --noise 0.15
    python saliency.py models/cnn_a --data data/test.csv --index 3 4 --out saliency.pdf

Each face gets a row: the face, |d score / d pixel| scaled to [0, 1], and the face with all
but its most salient pixels (--keep) blacked out. --per-class N shows N correctly and N
wrongly classified validation faces of every class. --smoothgrad N averages the maps of N
copies with Gaussian noise (std --noise x 255). The figure goes to <run>/figures/ by default.
"""

import numpy as np

from ferkit import cli, data, evaluation, plots, runs
from ferkit import config as configuration
from ferkit.errors import FerError, counted


def main():
    parser = cli.ArgumentParser(description=__doc__, formatter_class=cli.RawHelp)
    parser.add_argument("model", metavar="RUN", help="run folder or .keras file")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--index", type=int, nargs="+", metavar="I", help="image positions")
    which.add_argument("--per-class", type=int, metavar="N", help="N right, N wrong per class")
    plots.add_data_arguments(parser)
    parser.add_argument("--target", choices=("predicted", "true"), default="predicted")
    parser.add_argument("--smoothgrad", type=int, default=0, metavar="N", help="noisy copies")
    noise = configuration.SMOOTHGRAD_NOISE
    parser.add_argument("--noise", type=float, help=f"SmoothGrad's noise std / 255 ({noise})")
    keep = configuration.SALIENCY_KEEP
    parser.add_argument("--keep", type=float, default=keep, help=f"share of pixels kept ({keep})")
    plots.add_out_arguments(parser)
    args = parser.parse_args()
    if args.noise is not None and not args.smoothgrad:  # a plain gradient adds no noise
        raise FerError("--noise is SmoothGrad's: give it with --smoothgrad N")
    args.noise = noise if args.noise is None else args.noise
    # not 0 <= noise < inf: nan passes a plain comparison and drew an all-black map.
    if args.smoothgrad < 0 or not 0 <= args.noise < float("inf") or not 0 < args.keep <= 1:
        raise FerError(
            "--smoothgrad must not be negative, --noise must be finite and not negative, "
            "--keep must be in (0, 1]"
        )
    if args.per_class is not None and args.per_class < 1:
        raise FerError(f"--per-class must be at least 1, got {args.per_class}")
    runs.checked_model_path(args.model)
    name = plots.saliency_name(args)
    path = plots.figure_path(
        args.model, name, args.out, args.force, args.data, args.labels, run_data=args.run_data
    )
    images, labels, described = plots.figure_images(args.model, args, labelled_only=False)
    for index in args.index or []:
        if not 0 <= index < len(images):
            raise FerError(f"--index {index}: {described} has images 0-{len(images) - 1}")
    if args.per_class and (labels < 0).all():
        raise FerError("--per-class needs labelled images: give --labels or a labelled --data")
    unknown = [index for index in args.index or [] if labels[index] < 0]
    if args.target == "true" and unknown:
        where = f"{args.labels} has no label for" if args.labels else "give --labels for"
        raise FerError(f"--target true needs each face's label: {where} --index {unknown[0]}")
    from ferkit import explain  # here, not at the top: it starts Keras (seconds)

    model = runs.load_model(args.model, unsafe=args.unsafe)
    indices = args.index
    if args.per_class:
        predictions = evaluation.predict_probabilities(model, images).argmax(axis=1)
        known = np.where(labels < 0, data.NUM_CLASSES, labels)  # an unknown label: no class
        indices = explain.pick_per_class(known, predictions, args.per_class)
        if not indices:
            raise FerError(f"{described}: no labelled images to pick from")
    chosen = images[indices]
    probabilities = evaluation.predict_probabilities(model, chosen)
    classes = labels[indices] if args.target == "true" else probabilities.argmax(axis=1)
    maps = explain.saliency(model, chosen, classes, args.smoothgrad, args.noise)
    masked = explain.mask_low_saliency(chosen, maps, args.keep)
    rows, row_labels = plots.saliency_rows(chosen, maps, masked, indices, labels, probabilities)
    method = "gradient"
    if args.smoothgrad:
        method = f"SmoothGrad ({args.smoothgrad} copies, noise {args.noise:g})"
    title = (
        f"{plots.run_name(args.model)} on {described}\n{method} of the {args.target} class score"
    )
    columns = ("face", "saliency", f"top {args.keep * 100:g}% pixels")  # 0.4%, not 0%
    plots.save(plots.grid_figure(rows, title, row_labels, columns), path)
    print(f"wrote {path} ({counted(len(indices), 'face')})")


if __name__ == "__main__":
    cli.run(main)
