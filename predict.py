"""Predict FER2013 test images with a trained model and write a Kaggle submission.

    python predict.py models/cnn_20261128-101500 --test data/test.csv --out submission.csv
    python predict.py models/cnn_a/model.keras --test data/test.csv --out sub.csv --tta flip
    python predict.py models/cnn_a --test data/test.csv --out sub.csv \\
        --labels data/public_test_labels.csv --proba cnn_a_proba.csv
    python predict.py --test data/test.csv --out submission.csv      # the shipped pretrained CNN
    python predict.py models/cnn_a --test data/test.csv --out sub.csv --blur 3.5

--blur auto (the default) blurs test faces that are much sharper than the faces the model
trained on until they are alike (the FER2013 copy this project was given has blurred
training faces and sharp test faces); --blur 0 leaves them as they are. A run trained before
ferkit recorded its training faces' sharpness has it computed from its data file: --run-data
says where that file is now, if it moved.

Writes ``id,label`` (one row per test id, in the file's order), atomically, and never over
an existing file without --force.
"""

import os

from ferkit import cli, data, evaluation, runs
from ferkit import config as configuration
from ferkit.errors import FerError


def main():
    parser = cli.ArgumentParser(description=__doc__, formatter_class=cli.RawHelp)
    parser.add_argument(
        "model", nargs="?", help="run folder or .keras/.h5 file (default: pretrained)"
    )
    evaluation.add_prediction_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=configuration.PREDICTION_BATCH_SIZE)
    runs.add_run_data_argument(parser)
    args = parser.parse_args()
    evaluation.check_prediction_arguments(args)
    if args.batch_size < 1:
        raise FerError(f"--batch-size must be at least 1, got {args.batch_size}")
    # Everything that can be checked without Keras is checked first: starting TensorFlow
    # takes seconds, and loading a model more.
    if not args.model and not os.path.exists(runs.PRETRAINED):
        raise FerError(
            f"no model given and the pretrained CNN {runs.PRETRAINED} is not there: "
            "give a run folder or a model file"
        )
    model_source = args.model or runs.PRETRAINED
    runs.checked_model_path(model_source)
    runs.recorded_sharpness(model_source)  # a hand-edited record is refused now, not later
    evaluation.check_run_data(args.run_data, args.blur, [model_source])
    test = evaluation.read_test(args)
    labels_by_id = data.read_labels(args.labels) if args.labels else None
    scored = evaluation.scored_faces(test, labels_by_id, args.labels)
    if scored is not None:  # a score on faces the model learned is no test of it
        for note in evaluation.trained_on_notes(args.test, args.usage, [model_source]):
            print(note)
    if not args.model:
        print(f"No model given: using the pretrained CNN {runs.PRETRAINED}")
    model = runs.load_model(model_source, unsafe=args.unsafe)
    images = evaluation.blurred_for(model_source, test.images, args.blur, args.run_data)
    evaluation.say_predicting(model_source, len(images), args.tta)
    probabilities = evaluation.predict_probabilities(model, images, args.tta, args.batch_size)
    if scored is not None:
        positions, labels, described = scored
        score = evaluation.accuracy(probabilities[positions], labels)
        print(f"accuracy on {described}: {score:.4f}")
    evaluation.write_outputs(args.out, args.proba, test, probabilities, args.force)


if __name__ == "__main__":
    cli.run(main)
