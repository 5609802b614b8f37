"""Average several models' class probabilities into one Kaggle submission.

    python ensemble.py models/cnn_a models/cnn_b models/dnn_c --test data/test.csv --out sub.csv
    python ensemble.py a_proba.csv b_proba.csv --test data/test.csv --out sub.csv
    python ensemble.py models/cnn_s1 models/cnn_s2 models/cnn_s3 --weights fit --tta flip \\
        --test data/test.csv --labels data/public_test_labels.csv --out sub.csv
    python ensemble.py models/cnn_s* --greedy 10 --test data/test.csv --out sub.csv

Members are run folders, .keras files, or probability files from predict.py --proba.
--weights fit and --greedy use the members' shared validation images (not their training
rows) and refuse members whose validation splits differ. A member's data file
that has moved since it trained is found with --run-data (the shipped model recorded
/tmp/fer2013/train.csv), for those validation images and, with --blur auto, for a member
whose run recorded no sharpness of its training faces:

    python ensemble.py pretrained/ferkit-cnn.keras models/cnn_a --weights fit \\
        --run-data data/train.csv --test data/test.csv --out sub.csv
"""

from ferkit import cli, data, ensemble, evaluation, runs


def main():
    parser = cli.ArgumentParser(description=__doc__, formatter_class=cli.RawHelp)
    parser.add_argument("members", nargs="+", help="run folders, model files, probability files")
    evaluation.add_prediction_arguments(parser)
    parser.add_argument(
        "--weights",
        default="uniform",
        help="uniform, fit (log loss on shared validation images) or w1,w2,...",
    )
    parser.add_argument(
        "--greedy", type=int, metavar="N", help="N rounds of greedy selection (1 to 1000)"
    )
    runs.add_run_data_argument(parser)
    args = parser.parse_args()
    evaluation.check_prediction_arguments(args)
    # Members and weights are checked before the test file is read or Keras is started.
    ensemble.check_members(args.members)
    ensemble.check_weights(args.weights, args.greedy, len(args.members))
    ensemble.check_run_data(args.run_data, args.weights, args.greedy, args.blur, args.members)
    fitting = args.weights == "fit" or bool(args.greedy)
    if fitting:  # members that cannot share validation images: refused before the test file
        ensemble.shared_split(args.members, args.run_data, args.blur)
    made = [path for path in args.members if ensemble.is_probability_file(path)]
    if made and (args.tta != "none" or evaluation.is_set(args.blur)):
        print(f"Note: --tta and --blur apply to model members only, not to {', '.join(made)}")
    labels_by_id = data.read_labels(args.labels) if args.labels else None
    test = evaluation.read_test(args)
    scored = evaluation.scored_faces(test, labels_by_id, args.labels)
    models = [path for path in args.members if path not in made]
    if scored is not None:  # a score on faces a member learned is no test of it
        for note in evaluation.trained_on_notes(args.test, args.usage, models):
            print(note)

    keys = evaluation.submission_keys(test)
    # Probability files are read and checked before any model runs (minutes each, --tta full).
    made = {path: ensemble.read_probability_file(path, keys) for path in made}
    weights = ensemble.choose_weights(
        args.members, args.weights, args.greedy, args.tta, args.unsafe, args.run_data, fitting
    )
    # A member weighted 0 (one --greedy never chose) changes nothing: run only to be scored.
    running = ensemble.weighted(args.members, weights, everyone=scored is not None)
    if not fitting:
        ensemble.check_run_data_read(args.run_data, args.members, running, args.blur)
    members = [
        ensemble.member_probabilities(
            args.members[index],
            test.images,
            keys,
            args.tta,
            unsafe=args.unsafe,
            blur=args.blur,
            moved=args.run_data,
            made=made,
        )
        for index in running
    ]
    combined = ensemble.average(members, None if weights is None else weights[running])
    if scored is not None:
        positions, labels, described = scored
        print(f"On {described}:")
        picked = [member[positions] for member in members]
        table = ensemble.score_table(args.members, picked, combined[positions], labels)
        print("\n".join(table))
    evaluation.write_outputs(args.out, args.proba, test, combined, args.force)


if __name__ == "__main__":
    cli.run(main)
