"""Averaging, weights, greedy selection, TTA, the leak guard, and ensemble.py end to end."""

import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_test_csv, make_train_csv, record_sharpness
from test_plots import script_result
from test_training import tiny_config

from ferkit import config as configuration
from ferkit import data, ensemble, evaluation, models, runs, training
from ferkit.errors import FerError


def test_uniform_and_weighted_average_exactly():
    first = np.array([[0.2, 0.8, 0, 0, 0, 0, 0]])
    second = np.array([[0.6, 0.4, 0, 0, 0, 0, 0]])
    np.testing.assert_allclose(ensemble.average([first, second]), [[0.4, 0.6, 0, 0, 0, 0, 0]])
    np.testing.assert_allclose(
        ensemble.average([first, second], [3, 1]), [[0.3, 0.7, 0, 0, 0, 0, 0]]
    )
    with pytest.raises(FerError, match="non-negative weight per member"):
        ensemble.average([first, second], [1, -1])


@pytest.mark.filterwarnings("error")  # numpy's overflow warning reached the user's screen
def test_weights_too_large_to_sum_still_average():
    first = np.array([[0.2, 0.8, 0, 0, 0, 0, 0]])
    second = np.array([[0.6, 0.4, 0, 0, 0, 0, 0]])
    # Their sum overflowed to infinity: every weight 0, every probability 0, every label 0.
    combined = ensemble.average([first, second], ensemble.check_weights("1e308,1e308", None, 2))
    np.testing.assert_allclose(combined, [[0.4, 0.6, 0, 0, 0, 0, 0]])


def test_fitted_weights_favour_the_better_member():
    labels = np.arange(70) % 7
    good = np.full((70, 7), 0.02)
    good[np.arange(70), labels] = 0.88
    noise = np.random.default_rng(0).dirichlet(np.ones(7), size=70)
    weights = ensemble.fit_weights([noise, good], labels)
    assert weights.sum() == pytest.approx(1.0) and (weights >= 0).all()
    assert weights[1] > 0.8


def test_a_member_fitted_next_to_nothing_weighs_0_and_is_not_run():
    labels = np.arange(70) % 7
    good = np.full((70, 7), 0.02)
    good[np.arange(70), labels] = 0.88
    wrong = np.roll(good, 1, axis=1)  # confidently wrong on every face
    weights = ensemble.fit_weights([wrong, good], labels)
    # The softmax's 4e-5 was still run on the test faces.
    assert weights.tolist() == [0.0, 1.0]
    assert ensemble.weighted(["wrong", "good"], weights) == [1]


def test_greedy_selection_counts_rounds_and_prefers_the_good_member():
    labels = np.arange(14) % 7
    good = np.eye(7)[labels] * 0.9 + 0.1 / 7
    bad = np.roll(good, 1, axis=1)
    counts = ensemble.greedy_selection([bad, good], labels, rounds=5)
    assert counts.sum() == 5 and counts[1] == 5


def test_greedy_selection_adds_what_helps_the_ensemble_not_the_best_member_again():
    labels = np.arange(10) % 7

    def confident(correct):  # probability `correct` on each face's label, the rest shared
        return np.where(np.eye(7)[labels] == 1, correct[:, None], (1 - correct[:, None]) / 6)

    # Sharp: right and sure on nine faces, sure and wrong on one (log loss 0.47 alone).
    # Soft: 0.5 on every face's label (0.69 alone), but averaged with sharp 0.40.
    sharp = confident(np.where(np.arange(10) < 9, 0.99, 0.01))
    soft = confident(np.full(10, 0.5))
    assert ensemble.greedy_selection([sharp, soft], labels, rounds=2).tolist() == [1, 1]


class CountingModel:
    """A stand-in model whose prediction depends on the image, to check TTA arithmetic."""

    def predict(self, x, batch_size=None, verbose=0):
        # On TensorFlow, ferkit hands predict a tf.data dataset of (images,) batches.
        if hasattr(x, "as_numpy_iterator"):
            x = np.concatenate([images for (images,) in x.as_numpy_iterator()])
        images = x
        column_means = np.asarray(images, np.float64).mean(axis=(1, 3))  # (N, 48)
        scores = column_means[:, :7] + 1.0
        return scores / scores.sum(axis=1, keepdims=True)


@pytest.mark.parametrize(
    "spec, greedy, message",
    [
        ("uniform", 0, "--greedy must be from 1 to 1000 rounds, got 0"),
        ("uniform", -1, "--greedy must be from 1 to 1000 rounds"),
        ("uniform", 10**17, "--greedy must be from 1 to 1000 rounds, got 10"),  # never ended
        ("2,1", 3, "--greedy chooses the weights: give it without --weights"),
    ],
)
def test_greedy_options_that_cannot_work_are_refused(spec, greedy, message):
    with pytest.raises(FerError, match=message):
        ensemble.choose_weights(["a", "b"], spec, greedy)


def test_tta_flip_is_the_mean_of_image_and_mirror():
    images = np.random.default_rng(1).integers(0, 255, (3, 48, 48, 1)).astype(np.uint8)
    model = CountingModel()
    expected = (model.predict(images) + model.predict(images[:, :, ::-1, :])) / 2
    np.testing.assert_allclose(
        evaluation.predict_probabilities(model, images, "flip"), expected, rtol=1e-6
    )


def test_tta_of_a_symmetric_image_equals_the_plain_prediction():
    half = np.random.default_rng(2).integers(0, 255, (2, 48, 24, 1)).astype(np.uint8)
    symmetric = np.concatenate([half, half[:, :, ::-1, :]], axis=2)
    model = models.build_cnn()
    plain = evaluation.predict_probabilities(model, symmetric, "none")
    np.testing.assert_allclose(
        evaluation.predict_probabilities(model, symmetric, "flip"), plain, atol=1e-6
    )


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    folder = tmp_path_factory.mktemp("members")
    train_csv = make_train_csv(folder / "train.csv", count=70)
    made = [
        training.train(
            tiny_config(train_csv, epochs=1, seed=seed), str(folder / f"m{seed}"), verbose=False
        )
        for seed in (1, 2)
    ]
    other = training.train(
        tiny_config(train_csv, epochs=1, split_seed=5), str(folder / "other"), verbose=False
    )
    return made, other, make_test_csv(folder / "test.csv", count=15)


def test_leak_guard_refuses_members_with_different_splits(members):
    (first, _), other, _ = members
    ensemble.shared_split([first, members[0][1]])
    with pytest.raises(FerError, match="validated on different images"):
        ensemble.shared_split([first, other])


def test_the_leak_guard_names_the_option_that_differs_and_what_works_instead(tmp_path):
    train_csv = make_train_csv(tmp_path / "train.csv", count=70)
    whole = _hand_recorded(tmp_path / "whole", train_csv)
    cut = _hand_recorded(tmp_path / "cut", train_csv, options={"limit": 50})
    # --limit chose the other split: the message named only --split-seed and --val-split.
    refused = (
        f"--limit: none for {whole}, 50 for {cut}\\); refusing to fit on them. Train members "
        "with the same --split-seed, --val-split and --limit .* or leave out --weights fit "
        "and --greedy"
    )
    with pytest.raises(FerError, match=refused):
        ensemble.shared_split([whole, cut])


def test_members_that_cannot_share_validation_images_are_refused_before_the_test_file(
    members, tmp_path, monkeypatch, capsys
):
    (first, _), other, _ = members
    absent = tmp_path / "absent.csv"  # read first, it would say "no such file"
    status, _, stderr = script_result(
        monkeypatch,
        capsys,
        "ensemble.py",
        first,
        other,
        "--weights",
        "fit",
        "--test",
        str(absent),
        "--out",
        str(tmp_path / "sub.csv"),
    )
    assert status == 2 and "validated on different images" in stderr, stderr


def _hand_recorded(folder, data_path, model=None, **changes):
    """A run folder's config.json as training writes it (or as an older ferkit did, with
    ``changes``), without training; ``model``: a model file to copy in as its model."""
    options = {"data": data_path, **changes.pop("options", {})}
    config = configuration.resolve("dnn", overrides=options)
    train_set, _, split = runs.load_training_data(config)
    folder.mkdir()
    recorded = {**config, "split": split, "train_count": len(train_set)}
    recorded.update({"data_sha256": data.file_sha256(data_path), **changes})
    if options.get("val_data"):
        recorded.setdefault("val_data_sha256", data.file_sha256(options["val_data"]))
    (folder / "config.json").write_text(json.dumps(recorded))
    if model:
        shutil.copy(model, folder / "model.keras")
    return str(folder)


def test_a_hand_recorded_run_records_its_data_as_training_does(members, tmp_path):
    # The tests below write config.json by hand instead of training: what the ensemble's
    # leak guard reads of it must be what a trained run records.
    (first, _), _, _ = members
    trained = json.loads(Path(first, "config.json").read_text())
    hand = _hand_recorded(tmp_path / "hand", trained["data"])
    recorded = json.loads(Path(hand, "config.json").read_text())
    for key in ("data", "data_sha256", "val_data", "val_data_sha256", "split", "train_count"):
        assert recorded.get(key) == trained.get(key), key


def test_members_trained_on_a_gzipped_copy_share_the_split_and_changed_rows_do_not(
    members, tmp_path
):
    (first, _), _, _ = members
    config = json.loads(Path(first, "config.json").read_text())
    text = Path(config["data"]).read_bytes()
    lines = text.split(b"\n")
    label, pixels = lines[1].split(b",")
    pixels = pixels.split()
    pixels[0] = b"0" if pixels[0] != b"0" else b"1"  # one pixel: the same labels and split
    lines[1] = label + b"," + b" ".join(pixels)
    copies = {"same": text, "changed": b"\n".join(lines)}
    for name, content in copies.items():
        with gzip.open(tmp_path / f"{name}.csv.gz", "wb") as file:
            file.write(content)
        _hand_recorded(tmp_path / name, str(tmp_path / f"{name}.csv.gz"))
    ensemble.shared_split([first, str(tmp_path / "same")])
    with pytest.raises(
        FerError, match="trained on different rows .*changed.csv.gz, or other --limit"
    ):
        ensemble.shared_split([first, str(tmp_path / "changed")])
    os.remove(tmp_path / "same.csv.gz")
    with pytest.raises(FerError, match="same.csv.gz, which is not here"):
        ensemble.shared_split([first, str(tmp_path / "same")])


def test_a_member_whose_data_file_moved_is_found_by_run_data(members, tmp_path):
    (first, _), _, _ = members
    text = Path(json.loads(Path(first, "config.json").read_text())["data"]).read_bytes()
    with gzip.open(tmp_path / "train.csv.gz", "wb") as file:
        file.write(text)  # another file than the first member's: its rows are compared
    run = _hand_recorded(tmp_path / "run", str(tmp_path / "train.csv.gz"))
    os.rename(tmp_path / "train.csv.gz", tmp_path / "moved.csv.gz")
    with pytest.raises(FerError, match="train.csv.gz, which is not here.*as --run-data"):
        ensemble.shared_split([first, run])
    ensemble.shared_split([first, run], moved=[str(tmp_path / "moved.csv.gz")])
    # A file that holds neither member's data is refused, not ignored.
    with pytest.raises(
        FerError, match="config.json: not a file this command reads for .*m1, .*run "
    ):
        ensemble.shared_split(
            [first, run], moved=[str(tmp_path / "moved.csv.gz"), first + "/config.json"]
        )


def test_members_whose_data_files_moved_each_to_its_own_place_fit_weights(members, tmp_path):
    (first, _), _, _ = members
    text = Path(json.loads(Path(first, "config.json").read_text())["data"]).read_bytes()
    made, moved = [], []
    for level in (1, 9):  # the same rows in two gzip files of different bytes
        path = tmp_path / f"train{level}.csv.gz"
        path.write_bytes(gzip.compress(text, compresslevel=level))
        model = os.path.join(first, "model.keras")
        made.append(_hand_recorded(tmp_path / f"run{level}", str(path), model=model))
        moved.append(str(shutil.move(path, tmp_path / f"moved{level}.csv.gz")))
    # Fitting refused the file that only the second member recorded.
    weights = ensemble.choose_weights(made, "fit", moved=moved)
    assert len(weights) == 2


def test_runs_recorded_without_hashes_on_other_rows_do_not_share_a_split(tmp_path):
    first = make_train_csv(tmp_path / "a.csv", count=70)
    other = make_train_csv(tmp_path / "b.csv", count=70, seed=4)  # the same labels, other faces
    old_a = _hand_recorded(tmp_path / "old_a", first, data_sha256=None)
    old_b = _hand_recorded(tmp_path / "old_b", other, data_sha256=None)
    new_a = _hand_recorded(tmp_path / "new_a", first)
    ensemble.shared_split([old_a, new_a])
    # Both old runs had the key (None, None): only a.csv was read, and b.csv passed as it;
    # without a hashed member the rows were not compared at all.
    for members in ([old_a, old_b, new_a], [old_a, old_b]):
        with pytest.raises(FerError, match="trained on different rows .*old_a: a.csv, .*b.csv"):
            ensemble.shared_split(members)


def test_an_older_member_does_not_hide_validation_files_that_differ(tmp_path):
    train_csv = make_train_csv(tmp_path / "train.csv", count=28)
    validation = make_train_csv(tmp_path / "val.csv", count=14, seed=3)
    options = {"val_data": validation}
    first = _hand_recorded(tmp_path / "first", train_csv, options=options)
    older = _hand_recorded(tmp_path / "older", train_csv, options=options, val_data_sha256=None)
    make_train_csv(validation, count=14, seed=5)  # rewritten: other faces under that name
    second = _hand_recorded(tmp_path / "second", train_csv, options=options)
    # With one member recorded without hashes, all were compared by path alone.
    with pytest.raises(FerError, match="validated on different images.*validation file"):
        ensemble.shared_split([older, first, second])


def test_members_of_one_file_with_other_limits_share_the_validation_file(tmp_path):
    # Each trained on rows of train.csv and validated on val.csv, checked against its own
    # rows when it trained: no validation face is either member's training face.
    train_csv = make_train_csv(tmp_path / "train.csv", count=70)
    validation = make_train_csv(tmp_path / "val.csv", count=14, seed=3)
    cut = _hand_recorded(tmp_path / "cut", train_csv, options={"val_data": validation, "limit": 35})
    whole = _hand_recorded(tmp_path / "whole", train_csv, options={"val_data": validation})
    os.remove(train_csv)  # not needed: only the validation file is read
    ensemble.shared_split([cut, whole])


def test_members_recorded_without_hashes_whose_file_is_gone_are_told_to_put_it_back(tmp_path):
    first = make_train_csv(tmp_path / "a.csv", count=70)
    made = [_hand_recorded(tmp_path / name, first, data_sha256=None) for name in ("p", "q")]
    os.remove(first)
    # --run-data cannot find a file by a hash that was never recorded.
    with pytest.raises(FerError, match="a.csv: no such file; .*recorded no SHA-256 of it, so only"):
        ensemble.shared_split(made)


def test_fitting_reads_the_first_member_s_validation_file_where_run_data_found_it(tmp_path):
    train_csv = make_train_csv(tmp_path / "train.csv", count=28)
    validation = make_train_csv(tmp_path / "val.csv", count=14, seed=3)
    made = [
        _hand_recorded(tmp_path / name, train_csv, options={"val_data": validation})
        for name in "pq"
    ]
    moved = [str(shutil.move(validation, tmp_path / "faces.csv"))]
    ensemble.shared_split(made, moved)
    assert len(runs.validation_data(made[0], moved, strict=False)) == 14


def test_run_data_that_fitting_would_not_read_is_refused(tmp_path):
    # --val-data members with the same training data: only the validation file is read...
    train_csv = make_train_csv(tmp_path / "train.csv", count=28)
    options = {"val_data": make_train_csv(tmp_path / "val.csv", count=14, seed=3)}
    made = [_hand_recorded(tmp_path / name, train_csv, options=options) for name in "pq"]
    copy = shutil.copy(train_csv, tmp_path / "copy.csv")
    with pytest.raises(FerError, match="copy.csv: not a file this command reads for .*p .val.csv"):
        ensemble.shared_split(made, moved=[str(copy)], blur=0)
    # ...and with --blur auto the training data of a member that recorded no sharpness.
    ensemble.shared_split(made, moved=[str(copy)])
    record_sharpness(made[0], 3.0)
    record_sharpness(made[1], 3.0)
    with pytest.raises(FerError, match="copy.csv: not a file this command reads"):
        ensemble.shared_split(made, moved=[str(copy)])


def test_an_older_val_data_run_without_its_hash_shares_the_same_file(tmp_path):
    train_csv = make_train_csv(tmp_path / "train.csv", count=28)
    options = {"val_data": make_train_csv(tmp_path / "val.csv", count=14, seed=3)}
    older = _hand_recorded(tmp_path / "older", train_csv, options=options, val_data_sha256=None)
    newer = _hand_recorded(tmp_path / "newer", train_csv, options=options)
    ensemble.shared_split([older, newer])


def test_val_data_members_share_a_validation_file_kept_at_different_paths(tmp_path):
    train_csv = make_train_csv(tmp_path / "train.csv", count=28)
    validation = make_train_csv(tmp_path / "val.csv", count=14, seed=3)
    copy = str(shutil.copy(validation, tmp_path / "faces.csv"))
    made = [
        _hand_recorded(tmp_path / f"run{number}", train_csv, options={"val_data": path})
        for number, path in enumerate((validation, copy))
    ]
    ensemble.shared_split(made)  # refused before: the recorded paths differ


def test_val_data_members_share_a_validation_file_gzipped_for_one(tmp_path):
    train_csv = make_train_csv(tmp_path / "train.csv", count=28)
    validation = make_train_csv(tmp_path / "val.csv", count=14, seed=3)
    packed = tmp_path / "val.csv.gz"
    packed.write_bytes(gzip.compress(Path(validation).read_bytes()))
    made = [
        _hand_recorded(tmp_path / f"run{number}", train_csv, options={"val_data": str(path)})
        for number, path in enumerate((validation, packed))
    ]
    ensemble.shared_split(made)  # refused before: the two files' hashes differ
    other = make_train_csv(tmp_path / "other.csv", count=14, seed=5)  # other faces, gzipped
    other_packed = tmp_path / "other.csv.gz"
    other_packed.write_bytes(gzip.compress(Path(other).read_bytes()))
    options = {"val_data": str(other_packed)}
    made.append(_hand_recorded(tmp_path / "run2", train_csv, options=options))
    with pytest.raises(FerError, match="validated on different images"):
        ensemble.shared_split(made)


def test_members_validated_on_one_moved_gzip_file_share_it(tmp_path):
    train_csv = make_train_csv(tmp_path / "train.csv", count=28)
    packed = make_train_csv(tmp_path / "val.csv.gz", count=14, seed=3, compress=True)
    options = {"val_data": packed}
    made = [_hand_recorded(tmp_path / name, train_csv, options=options) for name in "pq"]
    moved = [str(shutil.move(packed, tmp_path / "moved.csv.gz"))]
    # Only the first member's file is looked for: its text's hash against the second's
    # recorded gzip hash refused the two.
    ensemble.shared_split(made, moved)


def test_run_data_is_refused_where_nothing_reads_it(tmp_path):
    train_csv = make_train_csv(tmp_path / "train.csv", count=70)
    made = [_hand_recorded(tmp_path / name, train_csv) for name in "pq"]
    moved = [str(shutil.move(train_csv, tmp_path / "moved.csv"))]
    # Uniform weights read no validation images; only --blur auto reads the training data.
    with pytest.raises(FerError, match="only --blur auto reads: give it without --blur 2"):
        ensemble.check_run_data(moved, "uniform", None, 2.0, made)
    ensemble.check_run_data(moved, "uniform", None, evaluation.AUTO_BLUR, made)
    other = make_train_csv(tmp_path / "other.csv", count=70, seed=4)
    with pytest.raises(FerError, match="other.csv: not a file this command reads for .*p, .*q "):
        ensemble.check_run_data([other], "uniform", None, evaluation.AUTO_BLUR, made)
    with pytest.raises(FerError, match="--run-data .*nothing.csv: no such file"):
        ensemble.check_run_data([str(tmp_path / "nothing.csv")], "fit", None)
    ensemble.check_run_data([other], "uniform", 3, 2.0, made)  # --greedy: shared_split checks
    # Probability files only: nothing reads it, whatever --blur says.
    for blur in (evaluation.AUTO_BLUR, 0):
        with pytest.raises(FerError, match="moved.csv: nothing here reads it .*no model given"):
            ensemble.check_run_data(moved, "uniform", None, blur, ["a_proba.csv"])
    # Nor for members that recorded their training faces' sharpness: none is computed.
    for member in made:
        record_sharpness(member, 3.0)
    with pytest.raises(FerError, match="moved.csv: nothing here reads it"):
        ensemble.check_run_data(moved, "uniform", None, evaluation.AUTO_BLUR, made)


def test_run_data_only_a_member_of_weight_0_would_read_is_refused(
    members, tmp_path, monkeypatch, capsys
):
    (first, _), _, test_csv = members
    train_csv = make_train_csv(tmp_path / "train.csv", count=70)
    model = os.path.join(first, "model.keras")
    unsharp = _hand_recorded(tmp_path / "unsharp", train_csv, model=model)
    moved = str(shutil.move(train_csv, tmp_path / "moved.csv"))
    arguments = [first, unsharp, "--test", test_csv, "--run-data", moved]
    out = str(tmp_path / "sub.csv")
    # Weighted 0, the member without a recorded sharpness is not run: nothing reads the file.
    status, stdout, stderr = script_result(
        monkeypatch, capsys, "ensemble.py", *arguments, "--weights", "1,0", "--out", out
    )
    assert status == 2 and "Traceback" not in stderr
    assert f"--run-data {moved}: nothing reads it: the members whose runs" in stderr
    assert not os.path.exists(out)
    status, _, stderr = script_result(
        monkeypatch, capsys, "ensemble.py", *arguments, "--weights", "1,1", "--out", out
    )
    assert status == 0, stderr
    assert os.path.exists(out)


def test_ensemble_cli_writes_a_valid_submission_from_runs_and_probability_files(
    members, tmp_path, monkeypatch, capsys
):
    (first, second), _, test_csv = members
    proba = tmp_path / "second.csv"
    status, stdout, stderr = script_result(
        monkeypatch, capsys, "predict.py", second, "--test", test_csv, "--proba", str(proba)
    )
    assert status == 0, stderr
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"{i},{i % 7}\n" for i in range(15)))
    out = tmp_path / "sub.csv"
    status, stdout, stderr = script_result(
        monkeypatch,
        capsys,
        "ensemble.py",
        first,
        str(proba),
        "--test",
        test_csv,
        "--out",
        str(out),
        "--labels",
        str(labels),
        "--weights",
        "fit",
        "--tta",
        "flip",
    )
    assert status == 2 and "no recorded validation split" in stderr
    status, stdout, stderr = script_result(
        monkeypatch,
        capsys,
        "ensemble.py",
        first,
        second,
        "--test",
        test_csv,
        "--out",
        str(out),
        "--labels",
        str(labels),
        "--weights",
        "fit",
        "--tta",
        "flip",
        "--proba",
        str(tmp_path / "combined.csv"),
    )
    assert status == 0, stderr
    assert "fitted weights on 7 shared validation images" in stdout
    assert "gain over the best member" in stdout
    lines = Path(out).read_text().splitlines()
    assert lines[0] == "id,label" and len(lines) == 16
    # The submission is the members' mean with the printed weights, not the uniform mean.
    printed = stdout.split("validation images: ")[1].split("\n")[0]
    weights = np.array([float(weight) for weight in printed.split(", ")])
    test = data.read_csv(test_csv)
    keys = evaluation.submission_keys(test)
    views = [
        ensemble.member_probabilities(run, test.images, keys, "flip") for run in (first, second)
    ]
    combined = evaluation.read_probabilities(str(tmp_path / "combined.csv"))[1]
    np.testing.assert_allclose(combined, np.tensordot(weights, views, axes=1), atol=1e-4)
    assert np.abs(combined - np.mean(views, axis=0)).max() > 1e-3, weights
    # Probability files as members (uniform weights): the submission is their mean's argmax.
    first_proba = tmp_path / "first.csv"
    status, stdout, stderr = script_result(
        monkeypatch, capsys, "predict.py", first, "--test", test_csv, "--proba", str(first_proba)
    )
    assert status == 0, stderr
    status, stdout, stderr = script_result(
        monkeypatch,
        capsys,
        "ensemble.py",
        str(first_proba),
        str(proba),
        "--test",
        test_csv,
        "--out",
        str(out),
        "--force",
        "--tta",
        "flip",
    )
    assert status == 0, stderr
    assert "--tta and --blur apply to model members only, not to" in stdout
    mean = (
        evaluation.read_probabilities(str(first_proba))[1]
        + evaluation.read_probabilities(str(proba))[1]
    ) / 2
    written = [int(line.split(",")[1]) for line in Path(out).read_text().splitlines()[1:]]
    assert written == mean.argmax(axis=1).tolist()


def test_a_member_weighted_zero_is_not_run_on_the_test_faces_unless_scored(
    members, tmp_path, monkeypatch, capsys
):
    (first, second), _, test_csv = members
    run = []
    original = ensemble.member_probabilities

    def recorded(path, *arguments, **options):
        run.append(path)
        return original(path, *arguments, **options)

    monkeypatch.setattr(ensemble, "member_probabilities", recorded)
    out, alone = tmp_path / "sub.csv", tmp_path / "alone.csv"
    arguments = ["--test", test_csv, "--weights", "1,0", "--out", str(out)]
    status, stdout, stderr = script_result(
        monkeypatch, capsys, "ensemble.py", first, second, *arguments
    )
    assert status == 0, stderr
    assert run == [first] and f"Weighted 0, so not run on the test faces: {second}" in stdout
    status, _, stderr = script_result(
        monkeypatch, capsys, "ensemble.py", first, "--test", test_csv, "--out", str(alone)
    )
    assert status == 0, stderr
    assert out.read_text() == alone.read_text()  # the same submission as the first alone
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n0,3\n")
    run.clear()  # --labels scores every member, so each is run
    status, _, stderr = script_result(
        monkeypatch,
        capsys,
        "ensemble.py",
        first,
        second,
        *arguments,
        "--force",
        "--labels",
        str(labels),
    )
    assert status == 0, stderr
    assert run == [first, second]


def test_a_probability_file_weighted_zero_is_still_read_and_checked(tmp_path, capsys):
    proba = tmp_path / "a_proba.csv"
    proba.write_text("id,Angry\n")  # read cheaply, and refused if its ids are wrong
    paths = [str(proba), str(tmp_path / "model_run"), str(tmp_path / "other_run")]
    assert ensemble.weighted(paths, np.array([0.0, 0.0, 1.0])) == [0, 2]
    assert f"not run on the test faces: {paths[1]}\n" in capsys.readouterr().out


def test_each_model_member_sees_the_test_faces_blurred_for_its_own_training_faces(
    members, tmp_path
):
    (first, _), _, test_csv = members
    test = data.read_csv(test_csv)
    keys = evaluation.submission_keys(test)
    # The same model, recorded as trained on faces as smooth as the test faces at sigma 1.5.
    smooth = tmp_path / "smooth"
    shutil.copytree(first, smooth)
    record_sharpness(smooth, evaluation.sharpness(evaluation.blur_images(test.images, 1.5)))

    def probabilities(run, blur):
        return ensemble.member_probabilities(str(run), test.images, keys, "none", blur=blur)

    auto = [probabilities(run, "auto") for run in (first, smooth)]
    np.testing.assert_allclose(auto[0], probabilities(first, 0), atol=1e-6)
    np.testing.assert_allclose(auto[1], probabilities(smooth, 1.5), atol=1e-6)
    assert np.abs(auto[0] - auto[1]).max() > 1e-3


def test_probability_file_of_an_image_folder_matches_its_file_names(tmp_path):
    names = ["a.png", "b.png"]
    proba = tmp_path / "names.csv"
    evaluation.write_probabilities(str(proba), names, np.eye(7)[:2])
    loaded = ensemble.member_probabilities(str(proba), None, names, "none")
    np.testing.assert_array_equal(loaded, np.eye(7)[:2])
    with pytest.raises(FerError, match="its ids differ from the test file's"):
        ensemble.member_probabilities(str(proba), None, ["b.png", "a.png"], "none")


def test_probability_file_with_wrong_row_count_is_refused(members, tmp_path):
    (first, _), _, test_csv = members
    proba = tmp_path / "short.csv"
    evaluation.write_probabilities(str(proba), [0, 1], np.full((2, 7), 1 / 7))
    with pytest.raises(FerError, match="has 2 rows, the test file has 15"):
        ensemble.member_probabilities(str(proba), None, np.arange(15), "none")


def test_a_probability_file_member_is_checked_before_any_model_runs(
    members, tmp_path, monkeypatch, capsys
):
    # A short file was found only after every model before it had predicted (minutes each).
    (first, _), _, test_csv = members
    proba = tmp_path / "short.csv"
    evaluation.write_probabilities(str(proba), [0, 1], np.full((2, 7), 1 / 7))
    status, stdout, stderr = script_result(
        monkeypatch, capsys, "ensemble.py", first, proba, "--test", test_csv,
        "--out", tmp_path / "sub.csv",
    )  # fmt: skip
    assert status == 2 and "short.csv: has 2 rows, the test file has 15" in stderr
    assert "predicting" not in stdout and not (tmp_path / "sub.csv").exists()


def test_a_missing_member_is_named_as_what_it_looks_like(tmp_path):
    with pytest.raises(FerError, match="proba.csv: no such probability file$"):
        ensemble.check_members([str(tmp_path / "proba.csv")])
    with pytest.raises(FerError, match="--weights gives 1 weight for 2 members$"):
        ensemble.check_weights("1", None, 2)
