"""Average several models' class probabilities into one Kaggle submission.

    python ensemble.py models/cnn_a models/cnn_b models/dnn_c --test data/test.csv --out sub.csv
    python ensemble.py a_proba.csv b_proba.csv --test data/test.csv --out sub.csv
    python ensemble.py models/cnn_s1 models/cnn_s2 models/cnn_s3 --weights fit --tta flip \\
        --test data/test.csv --labels data/public_test_labels.csv --out sub.csv
    python ensemble.py models/cnn_s* --greedy 10 --test data/test.csv --out sub.csv

Members are run folders, .keras files, or probability files from predict.py --proba.
--weights fit and --greedy use the members' shared validation images (never images any
member trained on) and refuse members whose validation splits differ.
"""

from ferkit import cli, data, ensemble, evaluation, runs
from ferkit.errors import FerError


def main():
    parser = cli.ArgumentParser(description=__doc__, formatter_class=cli.RawHelp)
    parser.add_argument("members", nargs="+", help="run folders, model files, probability files")
    parser.add_argument("--test", required=True, help="test CSV (id,feature) or any FER2013 CSV")
    parser.add_argument("--usage", help="fer2013.csv only: PublicTest, PrivateTest or Training")
    parser.add_argument("--out", help="submission CSV to write")
    parser.add_argument("--proba", help="also write the ensemble's probabilities here")
    parser.add_argument("--labels", help="id,label CSV: print a score table on the labelled ids")
    parser.add_argument(
        "--weights",
        default="uniform",
        help="uniform, fit (log loss on shared validation images) or w1,w2,...",
    )
    parser.add_argument("--greedy", type=int, metavar="N", help="N rounds of greedy selection")
    parser.add_argument(
        "--blur",
        type=float,
        default=0.0,
        metavar="SIGMA",
        help="Gaussian-blur test faces first (to match blurred training faces)",
    )
    parser.add_argument("--tta", default="none", choices=evaluation.TTA_MODES)
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")
    parser.add_argument("--unsafe", action="store_true", help="allow models holding code (Lambda)")
    args = parser.parse_args()
    if not (args.out or args.proba or args.labels):
        raise FerError("nothing to do: give --out, --proba or --labels")
    evaluation.check_outputs(
        args.out, args.proba, args.force, {"--test": args.test, "--labels": args.labels}
    )
    for path in args.members:
        runs.model_path(path)  # a missing member is found before any slow work
    labels_by_id = data.read_labels(args.labels) if args.labels else None
    test = data.read_any(args.test, usage=args.usage)
    test.images = evaluation.blur_images(test.images, args.blur)
    print(f"{args.test}: {len(test)} faces, sharpness {evaluation.sharpness(test.images):.2f}")

    weights = ensemble.choose_weights(
        args.members, args.weights, args.greedy, args.tta, args.unsafe
    )
    members = [
        ensemble.member_probabilities(path, test.images, test.ids, args.tta, unsafe=args.unsafe)
        for path in args.members
    ]
    combined = ensemble.average(members, weights)
    if labels_by_id is not None:
        positions, labels = evaluation.labelled_subset(test.ids, labels_by_id, args.labels)
        print(f"On {len(labels)} labelled ids of {args.labels}:")
        print(
            "\n".join(
                ensemble.score_table(
                    args.members, [m[positions] for m in members], combined[positions], labels
                )
            )
        )
    evaluation.write_outputs(args.out, args.proba, test, combined, args.force)


if __name__ == "__main__":
    cli.run(main)
