"""Which --tta to use: each mode's accuracy on the runs' validation split, then on the public ids.

    python bench/tta_modes.py models/h200_v_adamw_nodrop models/cnn_quick_adamw_nodrop_seed1 \\
        --test ../shared/fer2013/test.csv.gz --labels ../shared/fer2013/public_test_labels.csv \\
        --blur 3.5

The choice is made on validation (blurred like training, so no --blur there); the public
score is printed beside it for the record, as predict.py --tta MODE --labels would give it.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ferkit import cli, data, evaluation, runs  # noqa: E402


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", help="run folders")
    parser.add_argument("--test", required=True, help="test CSV holding the labelled ids")
    parser.add_argument("--labels", required=True, help="id,label CSV (public leaderboard)")
    parser.add_argument("--blur", type=float, default=0.0, help="blur the test faces (sigma)")
    args = parser.parse_args()
    test = data.read_csv(args.test)
    positions, public_labels = evaluation.labelled_subset(
        test.ids, data.read_labels(args.labels), args.labels
    )
    public_images = evaluation.blur_images(test.images[positions], args.blur)
    print(f"{'run':<34} {'tta':<5} {'views':>5} {'validation':>10} {'public':>7}")
    for run in args.runs:
        validation = runs.validation_data(run)
        model = runs.load_model(run)
        for mode in evaluation.TTA_MODES:
            views = len(evaluation.tta_views(validation.images[:1], mode))
            scores = [
                evaluation.accuracy(evaluation.predict_probabilities(model, images, mode), labels)
                for images, labels in (
                    (validation.images, validation.labels),
                    (public_images, public_labels),
                )
            ]
            print(
                f"{os.path.basename(run):<34} {mode:<5} {views:>5} {scores[0]:>10.4f} "
                f"{scores[1]:>7.4f}",
                flush=True,
            )


if __name__ == "__main__":
    cli.run(main)
