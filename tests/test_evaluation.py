"""Prediction: submissions, probability files, TTA, scoring, and predict.py end to end."""

import argparse
import csv
import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    REPOSITORY,
    make_test_csv,
    make_train_csv,
    pixels,
    record_sharpness,
    synthetic_images,
    write_csv,
)
from test_plots import call_script
from test_runs import _recorded_run
from test_training import run_script, tiny_config

from ferkit import data, evaluation, runs, training
from ferkit.errors import FerError


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    from conftest import make_train_csv

    train_csv = make_train_csv(folder / "train.csv")
    return training.train(tiny_config(train_csv, epochs=1), str(folder / "dnn"), verbose=False)


def test_submission_has_header_ids_and_rows(tmp_path):
    path = tmp_path / "sub.csv"
    probabilities = np.eye(7)[[3, 0, 6]]
    evaluation.write_submission(str(path), [10, 4, 7], probabilities)
    assert path.read_text() == "id,label\n10,3\n4,0\n7,6\n"


def test_outputs_named_gz_are_gzipped(tmp_path):
    # pandas and gunzip refused a plain-text sub.csv.gz as "Not a gzipped file".
    evaluation.write_submission(str(tmp_path / "sub.csv.gz"), [10, 4], np.eye(7)[[3, 0]])
    with gzip.open(tmp_path / "sub.csv.gz", "rt") as file:
        assert file.read() == "id,label\n10,3\n4,0\n"
    probabilities = np.eye(7)[[1, 2]]
    evaluation.write_probabilities(str(tmp_path / "p.CSV.GZ"), [5, 6], probabilities)
    assert (tmp_path / "p.CSV.GZ").read_bytes()[:2] == b"\x1f\x8b"
    ids, loaded = evaluation.read_probabilities(str(tmp_path / "p.CSV.GZ"))
    assert ids == ["5", "6"] and np.array_equal(loaded, probabilities)


def test_refuses_to_overwrite_without_force(tmp_path):
    path = tmp_path / "sub.csv"
    path.write_text("precious\n")
    with pytest.raises(FerError, match="already exists"):
        evaluation.write_submission(str(path), [0], np.eye(7)[:1])
    assert path.read_text() == "precious\n"
    evaluation.write_submission(str(path), [0], np.eye(7)[:1], force=True)
    assert path.read_text() == "id,label\n0,0\n"


def test_probability_file_round_trips(tmp_path):
    probabilities = np.random.default_rng(0).dirichlet(np.ones(7), size=5).astype(np.float32)
    evaluation.write_probabilities(str(tmp_path / "p.csv"), [5, 6, 7, 8, 9], probabilities)
    ids, loaded = evaluation.read_probabilities(str(tmp_path / "p.csv"))
    assert ids == ["5", "6", "7", "8", "9"]
    np.testing.assert_allclose(loaded, probabilities, atol=1e-6)


def test_probability_file_with_a_byte_order_mark_reads(tmp_path):
    path = tmp_path / "proba.csv"
    evaluation.write_probabilities(str(path), np.array([4, 9]), np.full((2, 7), 1 / 7))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # saved again by a spreadsheet
    keys, probabilities = evaluation.read_probabilities(str(path))
    assert keys == ["4", "9"] and probabilities.shape == (2, 7)


def test_probability_file_keeps_file_names_and_reads_gzipped(tmp_path):
    probabilities = np.full((3, 7), 1 / 7, dtype=np.float32)
    names = ["PrivateTest_1.jpg", "odd, name.png", 'line\nbreak "q".png']
    evaluation.write_probabilities(str(tmp_path / "p.csv"), names, probabilities)
    packed = tmp_path / "p.csv.gz"
    packed.write_bytes(gzip.compress((tmp_path / "p.csv").read_bytes()))
    for path in (tmp_path / "p.csv", packed):
        keys, loaded = evaluation.read_probabilities(str(path))
        assert keys == names
        np.testing.assert_allclose(loaded, probabilities, atol=1e-6)


def test_file_names_are_quoted_where_they_hold_a_comma_or_a_line_break(tmp_path):
    names = ["a,b.png", "line\nbreak.png", "carriage\rreturn.png"]
    probabilities = np.eye(7)[[1, 2, 3]]
    evaluation.write_submission(str(tmp_path / "sub.csv"), names, probabilities)
    evaluation.write_probabilities(str(tmp_path / "p.csv"), names, probabilities)
    # Unquoted, a,b.png was three cells, and the line break made two rows of one.
    with open(tmp_path / "sub.csv", newline="") as file:
        assert list(csv.reader(file))[1:] == [
            [name, str(label)] for name, label in zip(names, [1, 2, 3])
        ]
    with open(tmp_path / "p.csv", newline="") as file:
        assert [row[0] for row in csv.reader(file)][1:] == names
    # A file written before, unquoted, still reads (its name's commas counted from the right).
    old = tmp_path / "old.csv"
    old.write_text("id," + ",".join(data.CLASS_NAMES) + "\na,b.png,1,0,0,0,0,0,0\n")
    assert evaluation.read_probabilities(str(old))[0] == ["a,b.png"]
    # Line numbers count the lines of a quoted name (a lone "\r" ends one too).
    bad = tmp_path / "bad.csv"
    bad.write_bytes((tmp_path / "p.csv").read_bytes() + b"x,2,0,0,0,0,0,0\n")
    with pytest.raises(FerError, match="bad.csv: line 7: expected an id"):
        evaluation.read_probabilities(str(bad))


@pytest.mark.parametrize(
    "row",
    ["3,nan,0,0,0,0,0,1", "3,0.5,0.5", "3,2,0,0,0,0,0,0", "3,,0,0,0,0,0,1", "3,x,0,0,0,0,0,1"],
)
def test_probability_file_bad_row_names_its_line(tmp_path, row):
    path = tmp_path / "p.csv"
    path.write_text("id," + ",".join(data.CLASS_NAMES) + "\n2,1,0,0,0,0,0,0\n" + row + "\n")
    with pytest.raises(FerError, match="p.csv: line 3: expected an id and 7 probabilities"):
        evaluation.read_probabilities(str(path))


def test_labels_by_id_refuse_a_folder_whose_faces_are_not_named_by_id():
    labels = {0: 3, 2: 1}
    # Numbered names are ids: face 2 is 2.png, wherever it sits.
    positions, _ = evaluation.labelled_subset(
        np.array([0, 2]), labels, "l.csv", "f", ["0.png", "2.png"]
    )
    assert positions.tolist() == [0, 1]
    # Otherwise its ids were row numbers: im2.png scored as id 1, the shift unseen.
    for names, why in (
        (["im0.png", "im2.png"], "such as im0.png"),
        (["2.png", "02.png"], "two name one"),
    ):
        with pytest.raises(
            FerError, match=f"l.csv: labels faces by id, .* in f are not each face's id \\({why}"
        ):
            evaluation.labelled_subset(np.array([0, 1]), labels, "l.csv", "f", names)
    # Numbered names whose ids are row numbers (a labelled folder's, a Thumbs.png unread).
    with pytest.raises(FerError, match="could not be read made them row numbers"):
        evaluation.labelled_subset(np.array([0, 1]), {0: 3}, "l.csv", "f", ["5.png", "7.png"])


def test_labelled_subset_and_unknown_ids():
    positions, labels = evaluation.labelled_subset(np.array([10, 4, 7]), {7: 2, 10: 1}, "l.csv")
    assert positions.tolist() == [2, 0] and labels.tolist() == [2, 1]
    with pytest.raises(FerError, match="l.csv: 1 id"):
        evaluation.labelled_subset(np.array([1]), {2: 0}, "l.csv")


def test_full_tta_is_each_shift_of_the_image_and_of_its_mirror():
    images = np.random.default_rng(0).integers(0, 256, (3, 48, 48, 1)).astype(np.uint8)
    views = evaluation.tta_views(images, "full")
    mirrored = images[:, :, ::-1, :]
    assert len(views) == 10
    # Built here, not from TTA_SHIFTS: the test took any shifts the code had, none too.
    # Each view and its mirror, moved 2 pixels down, up, right and left, edges repeated.
    np.testing.assert_array_equal(views[0], images)
    np.testing.assert_array_equal(views[1], mirrored)
    for start, view in enumerate((images, mirrored)):
        down, up, right, left = views[2 + start :: 2]
        np.testing.assert_array_equal(down[:, 2:], view[:, :-2])
        np.testing.assert_array_equal(down[:, :2], np.repeat(view[:, :1], 2, axis=1))
        np.testing.assert_array_equal(up[:, :-2], view[:, 2:])
        np.testing.assert_array_equal(right[:, :, 2:], view[:, :, :-2])
        np.testing.assert_array_equal(left[:, :, :-2], view[:, :, 2:])


def test_shift_images_moves_content_and_repeats_edges():
    images = np.arange(48 * 48, dtype=np.float32).reshape(1, 48, 48, 1)
    shifted = evaluation.shift_images(images, 2, -1)
    assert shifted[0, 5, 5, 0] == images[0, 3, 6, 0]
    assert shifted[0, 0, 47, 0] == images[0, 0, 47, 0]  # edge repeated


def test_predict_cli_writes_submission_and_scores(trained_run, tmp_path):
    test_csv = make_test_csv(tmp_path / "test.csv", count=12)
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"{i},{i % 7}\n" for i in range(0, 12, 2)))
    out = tmp_path / "sub.csv"
    result = run_script(
        "predict.py",
        trained_run,
        "--test",
        test_csv,
        "--out",
        str(out),
        "--labels",
        str(labels),
        "--proba",
        str(tmp_path / "p.csv"),
    )
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "id,label" and len(lines) == 13
    assert [line.split(",")[0] for line in lines[1:]] == [str(i) for i in range(12)]
    # The score is the submission's agreement with the labels of the ids that have one.
    predicted = [int(line.split(",")[1]) for line in lines[1:]]
    agreed = np.mean([predicted[i] == i % 7 for i in range(0, 12, 2)])
    assert f"accuracy on 6 labelled ids of {labels}: {agreed:.4f}" in result.stdout


def test_predict_cli_refuses_a_folder_name_for_proba_and_keeps_out(trained_run, tmp_path):
    out = tmp_path / "sub.csv"
    out.write_text("precious\n")
    proba = f"{tmp_path / 'new'}/"  # not there yet: --out was replaced, then --proba failed
    test_csv = make_test_csv(tmp_path / "test.csv", count=3)
    arguments = ["--test", test_csv, "--out", str(out), "--proba", proba, "--force"]
    result = run_script("predict.py", trained_run, *arguments)
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        f"{proba}: ends with '/', a folder's name; expected a file name"
    )
    assert out.read_text() == "precious\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "sub.csv",
        "test.csv",
    ]


def test_predict_cli_refuses_a_run_without_model(tmp_path):
    result = run_script(
        "predict.py", str(tmp_path), "--test", "x.csv", "--out", "y.csv", cwd=REPOSITORY
    )
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        "run folder has no model.keras (did its training finish?)"
    )


def test_predict_on_an_image_folder_keys_the_submission_by_file_name(trained_run, tmp_path):
    import cv2

    folder = tmp_path / "faces"
    folder.mkdir()
    images, _ = __import__("conftest").synthetic_images(3)
    for name, image in zip(("anna", "ben", "cleo"), images):
        cv2.imwrite(str(folder / f"{name}.png"), image)
    out = tmp_path / "sub.csv"
    result = run_script("predict.py", trained_run, "--test", str(folder), "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "id,label"
    assert [line.split(",")[0] for line in lines[1:]] == ["anna.png", "ben.png", "cleo.png"]


def test_negative_blur_is_refused_before_the_test_file_is_read(tmp_path):
    # The test file does not exist: the --blur error must come first.
    result = run_script(
        "predict.py", "--test", str(tmp_path / "absent.csv"), "--blur", "-1", "--labels", "x"
    )
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        "--blur must be auto or a sigma from 0 to 48 pixels, got -1"
    )


def test_blur_lowers_sharpness_and_keeps_shape_and_type():
    images = np.random.default_rng(3).integers(0, 255, (4, 48, 48, 1)).astype(np.uint8)
    blurred = evaluation.blur_images(images, 2.0)
    assert blurred.shape == images.shape and blurred.dtype == np.uint8
    assert evaluation.sharpness(blurred) < evaluation.sharpness(images) / 3
    assert evaluation.blur_images(images, 0) is images
    assert evaluation.blur_images(images, 48).shape == images.shape  # the largest sigma
    # inf, nan and 1e9 reached OpenCV's assertion; 1e6 took over a minute.
    for sigma in (-1, 48.5, 1e6, 1e9, float("inf"), float("nan")):
        with pytest.raises(FerError, match="--blur must be auto or a sigma from 0 to 48 pixels"):
            evaluation.blur_images(images, sigma)


@pytest.mark.parametrize(
    "names, expected",
    [
        (["7.png", "12.png"], [7, 12]),  # Kaggle's numbered test faces: the numbers
        (["happy/5.png", "sad/5.png", "sad/9.png"], ["happy/5.png", "sad/5.png", "sad/9.png"]),
        (["1.png", "01.png"], ["1.png", "01.png"]),  # the same number twice: the names
        (["a.png", "2.png"], ["a.png", "2.png"]),
    ],
)
def test_submission_keys_are_file_numbers_only_when_they_identify_the_images(names, expected):
    ids = np.array(expected if isinstance(expected[0], int) else range(len(names)))
    dataset = data.FerData(
        images=np.zeros((len(names), 48, 48, 1), np.uint8),
        labels=None,
        ids=ids,
        path="folder",
        names=names,
    )
    assert list(evaluation.submission_keys(dataset)) == expected


def test_an_input_reached_through_a_linked_folder_is_not_overwritten(tmp_path):
    (tmp_path / "faces").mkdir()
    test_csv = make_test_csv(tmp_path / "faces" / "test.csv", count=3)
    (tmp_path / "link").symlink_to(tmp_path / "faces")
    out = str(tmp_path / "link" / "test.csv")  # --force replaced the test file through it
    with pytest.raises(FerError, match="is the --test file; --out must not overwrite it"):
        evaluation.check_outputs(out, None, True, {"the --test file": test_csv})


def test_an_output_in_an_image_folder_given_as_input_is_refused(tmp_path):
    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / "5.png").write_bytes(b"")
    inputs = {"the --test file": str(tmp_path / "faces")}
    # --force replaced 5.png with the submission; a new 6.png would be read as a face.
    for name in ("5.png", "sub/6.PNG"):
        refused = f"{name}: is inside .*faces \\(the --test file\\), whose"
        with pytest.raises(FerError, match=refused):
            evaluation.check_outputs(str(tmp_path / "faces" / name), None, True, inputs)
    evaluation.check_outputs(str(tmp_path / "faces" / "sub.csv"), None, True, inputs)


@pytest.mark.parametrize(
    "out, message",
    [
        ("history.csv", "is the history.csv of the model .*; --out must not overwrite it"),
        ("metrics.json", "is the metrics.json of the model"),
        ("checkpoint/state.json", "is in the checkpoint folder of the model .*, which --resume"),
        ("checkpoint/p.csv", "is in the checkpoint folder of the model"),
    ],
)
def test_force_does_not_overwrite_what_training_wrote(tmp_path, out, message):
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "checkpoint" / "state.json").write_text("{}")
    (run / "model.keras").write_bytes(b"")
    (run / "config.json").write_text("{}")
    args = argparse.Namespace(
        model=str(run), test="test.csv", usage=None, labels=None, blur=0.0, proba=None, force=True,
        out=str(run / out),
    )  # fmt: skip
    # Replaced with --force, they broke a later --resume (state.json) or the figures.
    with pytest.raises(FerError, match=message):
        evaluation.check_prediction_arguments(args)


def test_a_recorded_data_path_holding_nul_is_no_file_to_protect(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"")
    (run / "config.json").write_text(json.dumps({"data": "/tmp/x\0y"}))  # edited by hand
    args = argparse.Namespace(
        model=str(run), test="test.csv", usage=None, labels=None, blur=0.0, proba=None, force=False,
        out=str(tmp_path / "sub.csv"),
    )  # fmt: skip
    evaluation.check_prediction_arguments(args)  # realpath raised "embedded null byte"


@pytest.mark.parametrize("out", ["train.csv", "val.csv", "moved.csv.gz"])
def test_force_does_not_overwrite_a_member_s_data_or_a_run_data_file(tmp_path, out):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"")
    recorded = {"data": str(tmp_path / "train.csv"), "val_data": str(tmp_path / "val.csv")}
    (run / "config.json").write_text(json.dumps(recorded))
    args = argparse.Namespace(
        members=[str(run)], test="test.csv", usage=None, labels=None, blur=0.0, proba=None,
        force=True, out=str(tmp_path / out), run_data=[str(tmp_path / "moved.csv.gz")],
    )  # fmt: skip
    # ensemble.py --out train.csv --force replaced the rows its members' splits come from.
    # Each named for what it is: "(data|val-data|--run-data)" took any for any.
    what = {"train.csv": "data", "val.csv": "val-data", "moved.csv.gz": "--run-data"}[out]
    with pytest.raises(FerError, match=f"{out}: is the {what} .*must not"):
        evaluation.check_prediction_arguments(args)


def test_blur_images_blurs_each_face_as_alone():
    # Faces are blurred side by side as one image's channels: none may bleed into another.
    images = np.random.default_rng(4).integers(0, 255, (515, 48, 48, 1)).astype(np.uint8)
    import cv2

    for dtype in (np.uint8, np.float32):
        faces = images.astype(dtype)
        one_by_one = [cv2.GaussianBlur(face[:, :, 0], (0, 0), 2.5) for face in faces]
        expected = np.stack(one_by_one)[..., np.newaxis]
        np.testing.assert_array_equal(evaluation.blur_images(faces, 2.5), expected)


def test_blur_argument_takes_auto_or_a_sigma():
    assert evaluation.blur_argument("auto") == evaluation.AUTO_BLUR
    assert evaluation.blur_argument("3.5") == 3.5
    with pytest.raises(argparse.ArgumentTypeError, match="expected auto or a sigma in pixels"):
        evaluation.blur_argument("strong")


def test_matching_blur_makes_faces_as_sharp_as_the_training_faces():
    images = synthetic_images(400)[0][..., np.newaxis]  # (400, 48, 48, 1)
    trained = evaluation.sharpness(evaluation.blur_images(images, 2.0))
    assert evaluation.matching_blur(images, trained) == 2.0
    # Half as sharp again as the training faces is left alone; so is anything without a record.
    assert evaluation.matching_blur(images, evaluation.sharpness(images) / 1.4) == 0
    assert evaluation.matching_blur(images, None) == 0


def test_predict_blurs_test_faces_to_the_sharpness_the_run_trained_on(
    trained_run, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    test_csv = make_test_csv(tmp_path / "test.csv", count=30)
    test_images = data.read_csv(test_csv).images
    # As if it had trained on faces blurred with sigma 1.5: auto blurs the test faces so.
    record_sharpness(run, evaluation.sharpness(evaluation.blur_images(test_images, 1.5)))
    seen = []
    predict = evaluation.predict_probabilities

    def recorded(model, images, tta="none", batch_size=None):
        seen.append(images)
        return predict(model, images, tta, batch_size)

    monkeypatch.setattr(evaluation, "predict_probabilities", recorded)
    (tmp_path / "labels.csv").write_text("id,label\n0,3\n")
    arguments = ["--test", test_csv, "--labels", tmp_path / "labels.csv"]
    call_script(monkeypatch, "predict.py", run, *arguments)
    assert "--blur auto: faces of sharpness" in capsys.readouterr().out
    call_script(monkeypatch, "predict.py", run, *arguments, "--blur", "0")
    np.testing.assert_array_equal(seen[0], evaluation.blur_images(test_images, 1.5))
    np.testing.assert_array_equal(seen[1], test_images)


def test_auto_computes_the_training_sharpness_a_run_did_not_record(tmp_path, capsys):
    images, labels = synthetic_images(70)
    blurred = evaluation.blur_images(images[..., np.newaxis], 1.5)[..., 0]  # (70, 48, 48)
    rows = [(label, pixels(image)) for image, label in zip(blurred, labels)]
    path = write_csv(tmp_path / "train.csv", ("label", "feature"), rows)
    run = _recorded_run(tmp_path, path)  # recorded before train_sharpness was
    test_images = synthetic_images(30, seed=1)[0][..., np.newaxis]  # (30, 48, 48, 1)
    trained = runs.computed_sharpness(run)[0]
    sigma = evaluation.sigma_for(run, test_images, evaluation.AUTO_BLUR)
    assert sigma == evaluation.matching_blur(test_images, trained) and sigma > 0
    assert f"records no sharpness of its training faces: {trained:.2f}, computed from" in (
        capsys.readouterr().out
    )
    os.remove(path)  # nothing to compute it from: left as they are, saying why
    assert evaluation.sigma_for(run, test_images, evaluation.AUTO_BLUR) == 0
    said = capsys.readouterr().out
    assert "cannot be computed (its training data" in said and "as --run-data" in said
    # detect.py has no --run-data: its note does not offer one.
    assert evaluation.sigma_for(run, test_images, evaluation.AUTO_BLUR, moved=None) == 0
    assert "--run-data" not in capsys.readouterr().out


def test_predict_finds_a_moved_training_file_for_auto_with_run_data(
    trained_run, tmp_path, monkeypatch, capsys
):
    images, labels = synthetic_images(70)
    blurred = evaluation.blur_images(images[..., np.newaxis], 1.5)[..., 0]  # (70, 48, 48)
    rows = [(label, pixels(image)) for image, label in zip(blurred, labels)]
    path = write_csv(tmp_path / "train.csv", ("label", "feature"), rows)
    run = _recorded_run(tmp_path, path)  # recorded before train_sharpness was
    shutil.copy(os.path.join(trained_run, "model.keras"), run)
    moved = shutil.move(path, tmp_path / "kaggle.csv")
    test_csv = make_test_csv(tmp_path / "test.csv", count=30)
    arguments = [run, "--test", test_csv, "--proba", tmp_path / "p.csv", "--force"]
    call_script(monkeypatch, "predict.py", *arguments)
    said = capsys.readouterr().out
    assert "give the file it trained on, wherever it is now, as --run-data, or --blur SIGMA" in said
    assert "--blur auto: faces of sharpness" not in said
    call_script(monkeypatch, "predict.py", *arguments, "--run-data", moved)
    said = capsys.readouterr().out
    assert f"computed from {moved}" in said and "blurred with sigma" in said
    with pytest.raises(FerError, match="only --blur auto reads: give it without --blur 0"):
        call_script(monkeypatch, "predict.py", *arguments, "--run-data", moved, "--blur", "0")
    with pytest.raises(FerError, match="--run-data .*test.csv: not a file this command reads"):
        call_script(monkeypatch, "predict.py", *arguments, "--run-data", test_csv)


def test_a_hand_edited_training_sharpness_is_refused_before_the_test_file_is_read(
    trained_run, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    record_sharpness(run, "abc")
    absent = tmp_path / "absent.csv"  # read first, it would say "no such file"
    for script in ("predict.py", "ensemble.py"):
        with pytest.raises(FerError, match="train_sharpness must be a number of at least 0"):
            call_script(monkeypatch, script, run, "--test", absent, "--labels", absent)


def test_a_labelled_test_file_is_scored_on_its_own_labels(
    trained_run, tmp_path, monkeypatch, capsys
):
    # fer2013.csv's PublicTest rows carry their labels; --labels wants ids the file has not.
    labelled = make_train_csv(tmp_path / "labelled.csv", count=14, seed=2)
    faces = data.read_csv(labelled)
    call_script(monkeypatch, "predict.py", trained_run, "--test", labelled, "--out", tmp_path / "s")
    written = [int(line.split(",")[1]) for line in (tmp_path / "s").read_text().splitlines()[1:]]
    expected = float(np.mean(np.array(written) == faces.labels))
    out = capsys.readouterr().out
    assert (
        f"accuracy on the 14 faces of {labelled}, by the file's own labels: {expected:.4f}" in out
    )
    assert "Note:" not in out  # faces the run never saw


def test_predict_notes_a_score_on_the_faces_the_run_trained_on(
    trained_run, tmp_path, monkeypatch, capsys
):
    trained_on = runs.run_config(trained_run)["data"]
    out = tmp_path / "s.csv"
    call_script(monkeypatch, "predict.py", trained_run, "--test", trained_on, "--out", out)
    assert f"Note: {trained_run} trained on these faces of {trained_on}" in capsys.readouterr().out


def _fer2013_csv(path, count=9):
    images, labels = synthetic_images(count)
    usages = ["Training", "PublicTest", "PrivateTest"] * (count // 3)
    rows = [(label, pixels(image), usage) for image, label, usage in zip(images, labels, usages)]
    return write_csv(path, ("emotion", "pixels", "Usage"), rows)


def test_a_test_file_with_training_rows_needs_usage(trained_run, tmp_path, monkeypatch):
    fer2013 = _fer2013_csv(tmp_path / "fer2013.csv")
    out = tmp_path / "s.csv"
    for script in ("predict.py", "ensemble.py"):
        with pytest.raises(FerError, match="holds Training rows: choose the rows with --usage"):
            call_script(monkeypatch, script, trained_run, "--test", fer2013, "--out", out)
    assert not out.exists()


def test_trained_on_notes_follow_the_rows_each_file_gave(tmp_path):
    # A run trained on one file's Training rows, validated on another's PublicTest rows.
    trained_on = _fer2013_csv(tmp_path / "fer2013.csv")
    validated_on = _fer2013_csv(tmp_path / "public.csv", count=12)
    run = tmp_path / "run"
    run.mkdir()
    config = {
        "data_sha256": data.file_sha256(trained_on),
        "val_data_sha256": data.file_sha256(validated_on),
    }
    (run / runs.CONFIG_FILE).write_text(json.dumps(config))
    notes = evaluation.trained_on_notes
    assert notes(str(trained_on), "PublicTest", [str(run)]) == []
    assert "trained on these faces" in notes(str(trained_on), "Training", [str(run)])[0]
    assert notes(str(validated_on), "PrivateTest", [str(run)]) == []
    assert "chose its best epoch on" in notes(str(validated_on), "PublicTest", [str(run)])[0]
    assert notes(str(trained_on), "Training", [str(tmp_path / "bare.keras")]) == []
    # A file of PublicTest rows alone needs no --usage: all of it validated the run.
    public = tmp_path / "public_only.csv"
    lines = Path(validated_on).read_text().splitlines(keepends=True)
    public.write_text("".join(line for line in lines if "Training" not in line))
    config["val_data_sha256"] = data.file_sha256(public)
    (run / runs.CONFIG_FILE).write_text(json.dumps(config))
    assert "chose its best epoch on" in notes(str(public), None, [str(run)])[0]


def test_trained_on_notes_match_a_plain_copy_of_a_gzipped_file_and_skip_a_pipe(tmp_path):
    packed = Path(make_train_csv(tmp_path / "train.csv.gz", compress=True))
    plain = tmp_path / "train.csv"
    plain.write_bytes(gzip.decompress(packed.read_bytes()))
    run = tmp_path / "run"
    run.mkdir()
    recorded = {"data": str(packed), "data_sha256": data.file_sha256(packed)}
    (run / runs.CONFIG_FILE).write_text(json.dumps(recorded))
    # Trained on train.csv.gz and tested on its unpacked train.csv: the same faces, noted.
    assert "trained on these faces" in evaluation.trained_on_notes(str(plain), None, [str(run)])[0]
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)  # hashed after it was read: "not a regular file", the score lost
    assert evaluation.trained_on_notes(str(pipe), None, [str(run)]) == []


def test_predict_cli_predicts_with_its_tta_blur_and_batch_size(
    trained_run, tmp_path, monkeypatch, capsys
):
    test_csv = make_test_csv(tmp_path / "test.csv", count=5)
    calls = []
    predict = evaluation.predict_probabilities

    def recorded(model, images, tta="none", batch_size=None):
        calls.append((tta, batch_size, evaluation.sharpness(images)))
        return predict(model, images, tta, batch_size)

    monkeypatch.setattr(evaluation, "predict_probabilities", recorded)
    arguments = ["--test", test_csv, "--out", tmp_path / "sub.csv", "--tta", "full"]
    arguments += ["--batch-size", "3", "--blur", "2"]
    call_script(monkeypatch, "predict.py", trained_run, *arguments)
    blurred = evaluation.blur_images(data.read_csv(test_csv).images, 2)
    assert calls == [("full", 3, pytest.approx(evaluation.sharpness(blurred)))]
    # Said before the wait, which for Kaggle's test file and ten views is minutes.
    assert f"{trained_run}: predicting 5 faces, 10 views each (--tta full)\n" in (
        capsys.readouterr().out
    )
