"""Draw a model's confusion matrix: rows are true classes, normalised to 1, each cell with
its percentage and count; print scikit-learn's report and the three most confused pairs.

    python confusion.py models/cnn_quick_seed1                      # its own validation images
    python confusion.py models/cnn_quick_seed1 --tta flip
    python confusion.py models/cnn_a --data data/test.csv --labels data/public_test_labels.csv
    python confusion.py models/cnn_a --data data/fer2013.csv --usage PrivateTest --out cm.pdf

The validation images are rebuilt from the split recorded in the run's config.json. The
figure goes to <run>/figures/confusion[<data>][_tta-<mode>].png unless --out says otherwise,
<data> naming --data's faces: _<file>[_<usage>][_blur<sigma>|_blur-auto] (they are blurred
with --blur auto unless --blur 0 or a sigma is given).
"""

from sklearn import metrics

from ferkit import cli, data, evaluation, plots, runs
from ferkit import config as configuration
from ferkit.errors import FerError


def main():
    parser = cli.ArgumentParser(description=__doc__, formatter_class=cli.RawHelp)
    parser.add_argument("model", metavar="RUN", help="run folder or .keras file")
    plots.add_data_arguments(parser, usage_default="all, unless it holds Training rows")
    parser.add_argument("--tta", default="none", choices=evaluation.TTA_MODES)
    parser.add_argument("--batch-size", type=int, default=configuration.PREDICTION_BATCH_SIZE)
    plots.add_out_arguments(parser)
    args = parser.parse_args()
    if args.batch_size < 1:
        raise FerError(f"--batch-size must be at least 1, got {args.batch_size}")
    # Everything that can be checked is checked before Keras starts (seconds).
    runs.checked_model_path(args.model)
    if args.data and not args.usage and data.holds_training_rows(args.data):
        # All its rows would score the run partly on its own training faces.
        raise FerError(
            f"{args.data}: holds Training rows: choose the rows with --usage (PublicTest or "
            "PrivateTest to score on test faces)"
        )
    if args.data:  # a score on faces the model learned is no test of it (as predict.py says)
        for note in evaluation.trained_on_notes(args.data, args.usage, [args.model]):
            print(note)
    name = "confusion" + plots.data_suffix(args)
    if args.tta != "none":
        name += f"_tta-{args.tta}"
    path = plots.figure_path(
        args.model, name, args.out, args.force, args.data, args.labels, run_data=args.run_data
    )
    images, labels, described = plots.figure_images(args.model, args)
    model = runs.load_model(args.model, unsafe=args.unsafe)
    probabilities = evaluation.predict_probabilities(model, images, args.tta, args.batch_size)
    predictions = probabilities.argmax(axis=1)
    counts = plots.confusion_counts(labels, predictions)
    accuracy = evaluation.accuracy(probabilities, labels)
    tta = "" if args.tta == "none" else f", TTA {args.tta}"
    title = (
        f"{plots.run_name(args.model)} on {described}\n"
        f"{len(labels)} images, accuracy {accuracy:.1%}{tta}"
    )
    plots.save(plots.confusion_figure(counts, title), path)
    print(title.replace("\n", ": "))
    print(
        metrics.classification_report(
            labels,
            predictions,
            labels=range(data.NUM_CLASSES),
            target_names=data.CLASS_NAMES,
            digits=3,
            zero_division=0,
        )
    )
    print("Most confused (share of the true class):")
    for line in plots.most_confused(counts):
        print(f"  {line}")
    print(f"wrote {path}")


if __name__ == "__main__":
    cli.run(main)
