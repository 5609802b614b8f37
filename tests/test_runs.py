"""Which rows a run trains and validates on, read back from its configuration."""

import gzip
import json
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import make_train_csv, pixels, synthetic_images, write_csv

from ferkit import config as configuration
from ferkit import data, faces, runs
from ferkit.errors import FerError


def fer2013_csv(path, count=210):
    """fer2013.csv form: the three splits interleaved, so each holds every class."""
    images, labels = synthetic_images(count)
    usages = ["Training", "PublicTest", "PrivateTest"] * (count // 3)
    rows = [(label, pixels(image), usage) for image, label, usage in zip(images, labels, usages)]
    return write_csv(path, ("emotion", "pixels", "Usage"), rows)


def test_fer2013_csv_trains_and_validates_on_its_training_rows_only(tmp_path):
    path = fer2013_csv(tmp_path / "fer2013.csv")
    config = configuration.resolve("dnn", overrides={"data": path})
    train, validation, _ = runs.load_training_data(config)
    training_rows = data.read_csv(path, usage="Training")
    assert len(train) + len(validation) == len(training_rows) == 70
    assert set(train.ids) | set(validation.ids) == set(training_rows.ids)


def test_fer2013_csv_as_validation_file_gives_its_public_test_rows(tmp_path):
    path = fer2013_csv(tmp_path / "fer2013.csv")
    config = configuration.resolve("dnn", overrides={"data": path, "val_data": path})
    train, validation, split = runs.load_training_data(config)
    assert len(train) == 70 and split["val_count"] == len(validation) == 70
    np.testing.assert_array_equal(validation.images, data.read_csv(path, usage="PublicTest").images)


def test_image_folders_train_and_validate(tmp_path):
    folder = faces.write_image_folder(
        data.read_csv(make_train_csv(tmp_path / "train.csv", count=28)), str(tmp_path / "train")
    )
    validation_folder = faces.write_image_folder(
        data.read_csv(make_train_csv(tmp_path / "val.csv", count=14, seed=1)), str(tmp_path / "val")
    )
    config = configuration.resolve("dnn", overrides={"data": folder, "val_data": validation_folder})
    train, validation, _ = runs.load_training_data(config)
    assert len(train) == 28 and len(validation) == 14


@pytest.mark.parametrize("copy", [False, True])
def test_the_training_data_as_its_own_validation_data_is_refused(tmp_path, copy):
    path = make_train_csv(tmp_path / "train.csv", count=14)
    val_path = shutil.copy(path, tmp_path / "copy.csv") if copy else path
    config = configuration.resolve("dnn", overrides={"data": path, "val_data": str(val_path)})
    with pytest.raises(FerError, match="the same data as --data, so the run would validate"):
        runs.load_training_data(config)


def test_the_training_faces_under_another_name_are_refused_as_validation(tmp_path):
    # A gzipped copy has another size and hash: it trained and validated on the same faces.
    path = make_train_csv(tmp_path / "train.csv", count=14)
    packed = tmp_path / "train.csv.gz"
    packed.write_bytes(gzip.compress(Path(path).read_bytes()))
    config = configuration.resolve("dnn", overrides={"data": path, "val_data": str(packed)})
    with pytest.raises(FerError, match="14 of its 14 faces are in --data, so the run would"):
        runs.load_training_data(config)


def test_a_split_that_differs_from_the_recorded_one_names_the_reader_change(tmp_path):
    path = fer2013_csv(tmp_path / "fer2013.csv")
    config = configuration.resolve("dnn", overrides={"data": path})
    _, _, split = runs.load_training_data(config)
    run = tmp_path / "run"
    run.mkdir()
    # As recorded by a run that split all 210 rows, before only Training rows were read.
    recorded = {**config, "split": {**split, "val_count": 21}}
    (run / "config.json").write_text(json.dumps(recorded))
    with pytest.raises(FerError, match="read only a fer2013.csv's Training rows"):
        runs.validation_data(str(run))


@pytest.mark.parametrize(
    "text",
    [
        '{"model": "resnet50"}',
        "[1, 2]",
        '{"network": "cnn"}',
        # Cut down by hand: confusion.py and samples.py gave KeyErrors for its options.
        '{"network": "cnn", "data": "train.csv"}',
    ],
)
def test_a_config_json_that_training_did_not_write_is_refused(tmp_path, text):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(FerError, match="config.json: not a ferkit run's config.json"):
        runs.run_config(str(tmp_path / "model.keras"))


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"limit": "abc"}, "--limit must be a number, got 'abc'"),  # confusion.py: TypeError
        ({"val_split": 2}, "--val-split must be between 0 and 1"),
        # math.isfinite overflowed; the value, 401 digits, is cut short in the message.
        ({"seed": 10**400}, "--seed must be at most 4294967295, got 10000000000000000000… (401"),
        # What training recorded beside the options: resuming gave tracebacks for these, or
        # blamed the data file ("changed since the run started").
        ({"versions": "x"}, "versions must be a JSON object, got 'x'"),
        ({"precision_resolved": "bogus"}, "precision_resolved must be one of float32, "),
        ({"jit_resolved": "off"}, "jit_resolved must be true or false, got 'off'"),
        ({"data_sha256": 5}, "data_sha256 must be a SHA-256 or null, got 5"),
        ({"split": "x"}, "split must be a JSON object, got 'x'"),
        ({"train_count": "x"}, "train_count must be a whole number of at least 1, got 'x'"),
        ({"train_sharpness": -1}, "train_sharpness must be a number of at least 0, got -1"),
    ],
)
def test_a_config_json_edited_by_hand_is_refused_naming_it(tmp_path, edit, message):
    config = configuration.resolve("cnn", overrides={"data": "train.csv"})
    (tmp_path / "config.json").write_text(json.dumps({**config, **edit}))
    with pytest.raises(FerError, match=f"config.json: {re.escape(message)}"):
        runs.run_config(str(tmp_path / "model.keras"))


def test_the_recorded_training_sharpness_is_read_for_a_run_or_its_model_file(tmp_path):
    config = configuration.resolve("cnn", overrides={"data": "train.csv"})
    model_file = str(tmp_path / "model.keras")
    assert runs.recorded_sharpness(model_file) is None  # no config.json: a bare model
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert runs.recorded_sharpness(str(tmp_path)) is None  # trained before it was recorded
    (tmp_path / "config.json").write_text(json.dumps({**config, "train_sharpness": 2.9}))
    assert runs.recorded_sharpness(str(tmp_path)) == runs.recorded_sharpness(model_file) == 2.9
    # A checkpoint's model file reads its run's record.
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "state.json").write_text("{}")
    assert runs.recorded_sharpness(str(tmp_path / "checkpoint" / "epoch-0003.keras")) == 2.9
    for value, shown in (("sharp", "'sharp'"), (None, "None")):  # as read_run_config says
        (tmp_path / "config.json").write_text(json.dumps({**config, "train_sharpness": value}))
        with pytest.raises(FerError, match=f"train_sharpness must be a number .*, got {shown}"):
            runs.recorded_sharpness(model_file)
        with pytest.raises(FerError, match=f"train_sharpness must be a number .*, got {shown}"):
            runs.run_config(model_file)
    (tmp_path / "config.json").write_text("[1, 2]")  # another tool's file beside a model
    assert runs.recorded_sharpness(model_file) is None


@pytest.mark.parametrize("optimizer, loads", [("adam", True), ("adamw", True), ("sgd", False)])
def test_a_recorded_momentum_outside_sgds_range_matters_only_for_sgd(tmp_path, optimizer, loads):
    # Recorded before --momentum's range was checked: Adam ignored it, so its run still loads.
    config = configuration.resolve("cnn", overrides={"data": "train.csv", "optimizer": optimizer})
    (tmp_path / "config.json").write_text(json.dumps({**config, "momentum": 1.0}))
    if loads:
        assert runs.run_config(str(tmp_path / "model.keras"))["momentum"] == 1.0
    else:
        with pytest.raises(FerError, match=r"config.json: --momentum must be in \[0, 1\)"):
            runs.run_config(str(tmp_path / "model.keras"))


SPLIT = {"val_split": 0.1, "split_seed": 0, "val_count": 3, "val_indices_sha256": "a13aae0e"}


@pytest.mark.parametrize(
    "edit, message",
    [
        # ensemble.py --weights fit read config["val_data"]: a KeyError.
        ({"split": {**SPLIT, "val_data": "x.csv"}}, "split has val_data, which a run split from"),
        ({"val_data": "v.csv"}, "split lacks val_data, which a --val-data run records"),
        # Refused on --resume as rows rebuilt differently, blaming the data reader.
        ({"split": {"val_split": 0.1}}, "split lacks split_seed, which a run split from --data"),
        ({"split": {**SPLIT, "val_count": True}}, "split's val_count is not what a run split"),
    ],
)
def test_a_hand_edited_split_is_refused_naming_it(tmp_path, edit, message):
    config = configuration.resolve("cnn", overrides={"data": "train.csv"})
    recorded = {**config, "split": SPLIT, "train_count": 20, **edit}
    (tmp_path / "config.json").write_text(json.dumps(recorded))
    with pytest.raises(FerError, match=f"config.json: {re.escape(message)}"):
        runs.run_config(str(tmp_path / "model.keras"))


def _recorded_run(tmp_path, data_path, val_path=None):
    config = configuration.resolve("dnn", overrides={"data": data_path, "val_data": val_path})
    train_set, _, split = runs.load_training_data(config)
    run = tmp_path / "run"
    run.mkdir()
    recorded = {**config, "split": split, "train_count": len(train_set)}
    recorded["data_sha256"] = data.file_sha256(data_path)
    if val_path:
        recorded["val_data_sha256"] = data.file_sha256(val_path)
    (run / "config.json").write_text(json.dumps(recorded))
    return str(run)


def test_a_missing_validation_file_is_named_as_what_the_run_validated_on(tmp_path):
    train_csv = make_train_csv(tmp_path / "train.csv", count=70)
    val_csv = make_train_csv(tmp_path / "val.csv", count=14, seed=3)
    run = _recorded_run(tmp_path, train_csv, val_csv)
    os.remove(val_csv)
    # It said "trained on" of the file the run chose its best epoch on.
    with pytest.raises(FerError, match=r"val.csv: no such file; .*run was validated on it, and"):
        runs.validation_data(run)


def change_last_pixel(path):
    """One pixel changed: the same labels, so the same split indices, but another image."""
    head, last_pixel = Path(path).read_text().rstrip("\n").rsplit(" ", 1)
    Path(path).write_text(f"{head} {'7' if last_pixel != '7' else '8'}\n")


@pytest.mark.parametrize(
    "rebuild, missing",
    [
        (runs.validation_data, "train.csv: no such file; .*run was trained on it"),
        # --blur auto's training sharpness for a run that did not record it.
        (runs.computed_sharpness, "its training data .*train.csv is not there"),
    ],
)
def test_nothing_is_rebuilt_from_a_changed_or_missing_data_file(tmp_path, rebuild, missing):
    path = make_train_csv(tmp_path / "train.csv", count=70)
    run = _recorded_run(tmp_path, path)
    rebuild(run)
    change_last_pixel(path)
    with pytest.raises(FerError, match="train.csv: changed since .*run was trained"):
        rebuild(run)
    os.remove(path)
    with pytest.raises(FerError, match=missing):
        rebuild(run)


def test_a_val_data_run_s_validation_images_need_only_that_file(tmp_path):
    path = make_train_csv(tmp_path / "train.csv", count=28)
    val_path = make_train_csv(tmp_path / "val.csv", count=14, seed=3)
    run = _recorded_run(tmp_path, path, val_path)
    os.remove(path)  # the training file is not where its validation images come from
    assert len(runs.validation_data(run)) == 14


def test_a_run_without_a_record_has_its_training_sharpness_computed_as_training_does(tmp_path):
    from ferkit import evaluation

    path = make_train_csv(tmp_path / "train.csv", count=70)
    run = _recorded_run(tmp_path, path)
    train_set, validation, _ = runs.load_training_data(runs.run_config(run))
    expected = round(evaluation.sharpness(train_set.images), 4)
    # Of the 63 training faces only, as training records it, not of all 70 rows.
    everything = np.concatenate([train_set.images, validation.images])
    assert expected != round(evaluation.sharpness(everything), 4)
    assert runs.computed_sharpness(run) == (expected, path)
    # A checkpoint's model file is described by its run's config.json.
    os.makedirs(os.path.join(run, "checkpoint"))
    Path(run, "checkpoint", "state.json").write_text("{}")  # as a run's checkpoint folder holds
    assert (
        runs.computed_sharpness(os.path.join(run, "checkpoint", "epoch-0002.keras"))[0] == expected
    )


def test_a_val_data_run_s_training_sharpness_is_that_of_all_of_its_data(tmp_path):
    from ferkit import evaluation

    path = make_train_csv(tmp_path / "train.csv", count=28)
    val_path = make_train_csv(tmp_path / "val.csv", count=14, seed=3)
    run = _recorded_run(tmp_path, path, val_path)
    everything = data.read_csv(path).images
    assert runs.computed_sharpness(run) == (round(evaluation.sharpness(everything), 4), path)


def test_training_sharpness_is_computed_from_a_moved_data_file_or_not_at_all(tmp_path):
    path = make_train_csv(tmp_path / "train.csv", count=70)
    run = _recorded_run(tmp_path, path)
    expected = runs.computed_sharpness(run)[0]
    text = Path(path).read_bytes()
    os.remove(path)
    with pytest.raises(runs.MovedDataError, match="its training data .*train.csv is not there"):
        runs.computed_sharpness(run)
    packed = tmp_path / "fer.csv.gz"  # where --run-data says it is now
    packed.write_bytes(gzip.compress(text))
    assert runs.computed_sharpness(run, [str(packed)]) == (expected, str(packed))
    with pytest.raises(FerError, match="no run's config.json beside it"):
        runs.computed_sharpness(str(tmp_path / "bare.keras"))


def test_a_moved_data_file_is_found_by_the_recorded_hash_gzipped_or_not(tmp_path):
    path = make_train_csv(tmp_path / "train.csv", count=70)
    run = _recorded_run(tmp_path, path)
    expected = runs.validation_data(run).images
    text = Path(path).read_bytes()
    os.remove(path)
    with pytest.raises(FerError, match="train.csv: no such file; .*give where it is now as --run"):
        runs.validation_data(run)
    (tmp_path / "elsewhere").mkdir()
    renamed = tmp_path / "elsewhere" / "fer.csv"
    renamed.write_bytes(text)
    packed = tmp_path / "elsewhere" / "fer.csv.gz"
    packed.write_bytes(gzip.compress(text))
    for moved in ([str(renamed)], [str(packed)]):
        np.testing.assert_array_equal(runs.validation_data(run, moved).images, expected)


def test_run_data_with_other_rows_is_refused_moved_file_or_not(tmp_path):
    path = make_train_csv(tmp_path / "train.csv", count=70)
    run = _recorded_run(tmp_path, path)
    other = make_train_csv(tmp_path / "other.csv", count=70, seed=4)
    # With the recorded file still there it was ignored: the figure said nothing.
    refused = "other.csv: not a file this command reads for .*run .train.csv: the SHA-256"
    with pytest.raises(FerError, match=refused):
        runs.validation_data(run, [other])
    os.remove(path)
    with pytest.raises(FerError, match=refused):
        runs.validation_data(run, [other])
    with pytest.raises(FerError, match="--run-data .*absent.csv: no such file"):
        runs.validation_data(run, [str(tmp_path / "absent.csv")])


def test_run_data_matching_only_a_val_data_run_s_training_file_is_refused(tmp_path):
    # Its validation images come from --val-data's file: the training file given went unused.
    path = make_train_csv(tmp_path / "train.csv", count=28)
    val_path = make_train_csv(tmp_path / "val.csv", count=14, seed=3)
    run = _recorded_run(tmp_path, path, val_path)
    with pytest.raises(
        FerError, match="train.csv: not a file this command reads for .*run .val.csv"
    ):
        runs.validation_data(run, [path])


def test_the_same_file_twice_or_gzipped_is_not_refused_as_unmatched(tmp_path):
    path = make_train_csv(tmp_path / "train.csv", count=70)
    run = _recorded_run(tmp_path, path)
    packed = tmp_path / "train.csv.gz"
    packed.write_bytes(gzip.compress(Path(path).read_bytes()))
    spelled = str(tmp_path / "." / "train.csv")
    assert len(runs.validation_data(run, [path, str(packed), spelled])) == 7


def test_run_data_for_a_run_that_recorded_no_hash_says_so(tmp_path):
    path = make_train_csv(tmp_path / "train.csv", count=70)
    run = _recorded_run(tmp_path, path)
    config_path = Path(run, "config.json")
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "data_sha256": None}))
    copy = shutil.copy(path, tmp_path / "copy.csv")
    # The file is still where it was: it is read there, and the option is not needed.
    with pytest.raises(FerError, match="SHA-256 of .*train.csv, so .*: it is where it was, and"):
        runs.validation_data(run, [str(copy)])
    os.remove(path)
    with pytest.raises(
        FerError,
        match="copy.csv: .*run recorded no SHA-256 of .*train.csv, so.*"
        "put that file back where it was",
    ):
        runs.validation_data(run, [str(copy)])
    # Nor is one offered for --blur auto: only that file can be used.
    with pytest.raises(
        FerError, match="train.csv is not there, and with no SHA-256 of it"
    ) as found:
        runs.computed_sharpness(run)
    assert not isinstance(found.value, runs.MovedDataError)


def test_an_unmatched_run_data_file_names_the_file_recorded_without_a_hash(tmp_path):
    # Among hashed runs it was listed as if its SHA-256 had differed.
    configs = {
        "hashed": {"data": "/gone/a.csv", "data_sha256": "0" * 64},
        "older": {"data": "/gone/d.csv", "data_sha256": None},
    }
    other = make_train_csv(tmp_path / "other.csv", count=14)
    with pytest.raises(FerError, match=r"\(a.csv: the SHA-256 differs\); /gone/d.csv was recorded"):
        runs.relocated(configs, [other])


def test_a_plain_copy_of_a_gzipped_training_file_is_refused_with_the_reason(tmp_path):
    # Only a gzip file's text is hashed too: a run that recorded a .gz file needs that file.
    text = Path(make_train_csv(tmp_path / "plain.csv", count=70)).read_bytes()
    packed = tmp_path / "train.csv.gz"
    packed.write_bytes(gzip.compress(text))
    run = _recorded_run(tmp_path, str(packed))
    with pytest.raises(FerError, match="for a run trained on a .gz file, give that .gz file"):
        runs.validation_data(run, [str(tmp_path / "plain.csv")])
    faces = tmp_path / "faces"  # an image folder: no gzipped file is meant
    (faces / "happy").mkdir(parents=True)
    with pytest.raises(FerError, match=r"the SHA-256 differs\)$"):
        runs.validation_data(run, [str(faces)])


def test_a_val_data_run_s_moved_validation_file_is_found_by_run_data(tmp_path):
    path = make_train_csv(tmp_path / "train.csv", count=28)
    val_path = make_train_csv(tmp_path / "val.csv", count=14, seed=3)
    run = _recorded_run(tmp_path, path, val_path)
    moved = shutil.move(val_path, tmp_path / "faces.csv")
    # The split records the --val-data path it was trained with, not where the file is now.
    assert len(runs.validation_data(run, [str(moved)])) == 14


def test_a_folder_with_one_model_under_another_name_is_that_model(tmp_path):
    # As pretrained/ holds ferkit-cnn.keras beside its config.json and metrics.json.
    (tmp_path / "ferkit-cnn.keras").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a model")
    # Without metrics.json it may be a run still training beside a model of the user's.
    with pytest.raises(FerError, match="run folder has no model.keras .did its training finish"):
        runs.model_path(str(tmp_path))
    (tmp_path / "metrics.json").write_text("{}")
    assert runs.model_path(str(tmp_path)) == str(tmp_path / "ferkit-cnn.keras")
    (tmp_path / "older.h5").write_bytes(b"")
    with pytest.raises(FerError, match=r"no model.keras, and 2 model files \(ferkit-cnn.keras, "):
        runs.model_path(str(tmp_path))
    (tmp_path / "model.keras").write_bytes(b"")  # a run folder's own model comes first
    assert runs.model_path(str(tmp_path)) == str(tmp_path / "model.keras")


def test_a_taken_default_run_folder_gives_the_next_free_one(tmp_path):
    path = str(tmp_path / "models" / "cnn_20261129-051000")
    assert runs.claim_new_folder(path) == path
    assert runs.claim_new_folder(path) == path + "-2"  # another run, started the same second
    assert runs.claim_new_folder(path) == path + "-3"
    assert sorted(os.listdir(tmp_path / "models"))[-1].endswith("-3")


def test_limit_and_val_split_choose_the_rows_and_the_validation_share(tmp_path):
    train_csv = make_train_csv(tmp_path / "train.csv", count=70)
    overrides = {"data": train_csv, "limit": 42, "val_split": 0.3}
    config = configuration.resolve("dnn", overrides=overrides)
    training, validation, split = runs.load_training_data(config)
    first_rows = data.read_csv(train_csv).images[:42]
    # The first 42 rows only, split by class: 30% of each class's faces validate.
    assert len(training) + len(validation) == 42
    used = [image.tobytes() for image in np.concatenate([training.images, validation.images])]
    assert sorted(used) == sorted(image.tobytes() for image in first_rows)
    counts = np.bincount(data.read_csv(train_csv).labels[:42])
    assert len(validation) == split["val_count"] == sum(round(count * 0.3) for count in counts)
    # Too few rows kept: --limit is named, not --val-split alone.
    config = configuration.resolve("dnn", overrides={**overrides, "limit": 1})
    with pytest.raises(FerError, match=r"validation \(1 image\): --limit 1 keeps too few$"):
        runs.load_training_data(config)
    # A file too small with or without it: --limit is not blamed.
    config = configuration.resolve("dnn", overrides={**overrides, "limit": 1000, "val_split": 0.01})
    with pytest.raises(FerError, match=r"validation \(70 images; .* rounds to 0\)$"):
        runs.load_training_data(config)


def test_limit_that_keeps_classes_out_of_a_folder_read_class_by_class_is_refused(tmp_path):
    images, labels = synthetic_images(70)
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = tmp_path / "faces" / data.CLASS_NAMES[label].lower()
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"Training_{index}.png"), image)
    config = configuration.resolve("dnn", overrides={"data": str(tmp_path / "faces"), "limit": 21})
    # Its first 21 rows were angry, disgust and fear faces only: a validation accuracy of 1.0.
    refused = r"--limit 21: .*faces lists its faces class by class, so its first 21 rows hold "
    with pytest.raises(FerError, match=refused + "no Happy, Sad, Surprise, Neutral faces"):
        runs.load_training_data(config, new=True)
    # A run that trained so still rebuilds its rows (to resume, or for its figures).
    kept = runs.labelled_rows(config)
    assert len(kept) == 21 and set(kept.labels.tolist()) == {0, 1, 2}
    # Rows in mixed order keep their first N, classes missing or not (a quick check).
    train_csv = make_train_csv(tmp_path / "t.csv")
    config = configuration.resolve("dnn", overrides={"data": train_csv, "limit": 3})
    assert runs.labelled_rows(config, new=True).labels.tolist() == [0, 1, 2]


def save_dnn_in(policy_name, path):
    """A DNN saved as a run in that precision saves it."""
    import keras

    from ferkit import models

    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy_name)
    try:
        model = models.build_dnn()
    finally:
        keras.config.set_dtype_policy(policy)
    model.save(path)
    return path


@pytest.fixture
def bfloat16_model_file(tmp_path):
    return save_dnn_in("mixed_bfloat16", str(tmp_path / "bf16.keras"))


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_a_half_precision_model_predicts_in_float32_without_native_bfloat16(
    policy, tmp_path, monkeypatch
):
    from ferkit import backend

    path = save_dnn_in(policy, str(tmp_path / "model.keras"))
    images = synthetic_images(8)[0][..., None]
    monkeypatch.setattr(backend, "accelerator", lambda: "cpu")
    monkeypatch.setattr(backend, "cpu_flags", lambda: {"avx512_bf16"})
    native = runs.load_model(path)  # computed as saved
    assert policy in {layer.dtype_policy.name for layer in native.layers}
    # Emulated there, bfloat16 predicted 3.7 times slower than float32, and float16 (trained
    # on a GPU, say) 1.3 times.
    monkeypatch.setattr(backend, "cpu_flags", lambda: set())
    model = runs.load_model(path)
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    assert model.name == "dnn" and model.count_params() == native.count_params()
    for mine, theirs in zip(model.weights, native.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    probabilities = model.predict(images, verbose=0)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, native.predict(images, verbose=0), atol=0.05)
    # Training evaluates its reloaded best model as it was trained.
    kept = runs.load_model(path, keep_precision=True)
    assert policy in {layer.dtype_policy.name for layer in kept.layers}


def test_a_model_that_cannot_be_rebuilt_in_float32_is_used_as_saved(
    bfloat16_model_file, monkeypatch
):
    import keras

    from ferkit import backend

    def refuse(*arguments, **keywords):
        raise ValueError("the rebuilt model's weights do not fit")

    monkeypatch.setattr(backend, "accelerator", lambda: "cpu")
    monkeypatch.setattr(backend, "cpu_flags", lambda: set())
    monkeypatch.setattr(keras.Model, "set_weights", refuse)  # loading itself does not call it
    model = runs.load_model(bfloat16_model_file)  # no traceback: slower, still right
    assert "mixed_bfloat16" in {layer.dtype_policy.name for layer in model.layers}


@pytest.mark.parametrize("mixup", [0.0, 0.2])
def test_a_checkpoint_loads_as_the_model_it_trains(tmp_path, mixup):
    # predict.py given checkpoint/epoch-0003.keras said "not a Keras model": Keras knew
    # nothing of ferkit's augmentation layers, and the model inside them was not taken out.
    from ferkit import models

    model = models.build_dnn()
    augmentation = models.build_augmentation()
    if mixup:
        training_model = models.with_mixup(model, augmentation, mixup)
    else:
        training_model = models.with_augmentation(model, augmentation)
    path = str(tmp_path / "epoch-0003.keras")
    training_model.save(path)
    loaded = runs.load_model(path)
    assert loaded.name == "dnn" and len(loaded.inputs) == 1
    # visualize_filters.py read the training model's layers: "no Conv2D layers (a DNN?)".
    expected = [(type(layer).__name__, layer.name) for layer in model.layers]
    assert runs.saved_layers(path) == expected
    images = synthetic_images(4)[0][..., None]  # (4, 48, 48, 1)
    np.testing.assert_allclose(
        loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6
    )
