"""Faces in photos and videos (detect.py), the shared preprocessing, the image-folder form."""

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import PIL.Image
import pytest
from conftest import (
    REPOSITORY,
    make_test_csv,
    make_train_csv,
    record_sharpness,
    synthetic_images,
)
from test_plots import script_status
from test_training import tiny_config

from ferkit import data, evaluation, faces, runs, training
from ferkit.errors import FerError

NO_CASCADE = faces.cascade_path() is None
NO_CASCADE_REASON = (
    f"OpenCV {cv2.__version__} ships no Haar cascade (opencv-python-headless<5 does)"
)
# Public-test faces the cascade finds when pasted at 150 px (IoU 0.8 to 0.9 with the paste).
FACE_IDS = (0, 11, 12, 14, 19)
FACE_BOX = (90, 70, 150, 150)  # x, y, w, h of the paste


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny DNN, one epoch on synthetic faces: enough to compare predictions."""
    folder = tmp_path_factory.mktemp("model")
    train_csv = make_train_csv(folder / "train.csv")
    config = tiny_config(train_csv, epochs=1)
    return training.train(config, str(folder / "run"), verbose=False)


@pytest.fixture(scope="module")
def model(model_dir):
    return runs.load_model(model_dir)


@pytest.fixture
def no_model_load(monkeypatch):
    """Fails a test whose mistake is refused only after the model was loaded (too late)."""

    def started(*arguments, **keywords):
        raise AssertionError("a model was loaded before the mistake was refused")

    monkeypatch.setattr(runs, "load_model", started)


def run_detect(monkeypatch, *arguments):
    """detect.py's exit status, run in this process (no second TensorFlow start-up)."""
    return script_status(monkeypatch, "detect.py", *arguments)


def read_rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def iou(first, second):
    (ax, ay, aw, ah), (bx, by, bw, bh) = first, second
    width = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    height = max(0, min(ay + ah, by + bh) - max(ay, by))
    return width * height / (aw * ah + bw * bh - width * height)


def background(height=320, width=320, seed=0):
    # Blurred noise: no face in it, and nothing the cascade mistakes for one.
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 3)


def paste(canvas, face, box):
    x, y, width, height = box
    resized = cv2.resize(face[:, :, 0], (width, height), interpolation=cv2.INTER_CUBIC)
    canvas[y : y + height, x : x + width] = resized[:, :, np.newaxis]
    return canvas


# The shared preprocessing.


def test_model_input_from_any_image():
    images, _ = synthetic_images(1)
    face = images[0]
    # A 48x48 gray image passes through bit for bit, with or without its channel axis.
    np.testing.assert_array_equal(faces.to_model_input(face)[:, :, 0], face)
    np.testing.assert_array_equal(faces.to_model_input(face[:, :, None])[:, :, 0], face)
    colour = np.random.default_rng(0).integers(0, 256, (120, 90, 3), dtype=np.uint8)
    result = faces.to_model_input(colour)
    assert result.shape == (48, 48, 1) and result.dtype == np.uint8
    gray = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)
    expected = cv2.resize(gray, (48, 48), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(result[:, :, 0], expected)
    # RGB weighs the channels the other way round; RGBA's alpha is ignored.
    swapped = colour[:, :, ::-1]
    np.testing.assert_array_equal(faces.to_model_input(swapped, "rgb"), result)
    with_alpha = np.dstack([colour, np.full(colour.shape[:2], 7, np.uint8)])
    np.testing.assert_array_equal(faces.to_model_input(with_alpha), result)
    with pytest.raises(ValueError, match="uint8"):
        faces.to_model_input(colour.astype(np.float32))


def test_square_box_grows_and_stays_inside_the_image():
    assert faces.square_box((100, 100, 50, 50), 0.1, (400, 400)) == (95, 95, 60, 60)
    # At the edge the square is shifted inward, not cut: it stays square.
    assert faces.square_box((0, 5, 50, 50), 0.2, (400, 400)) == (0, 0, 70, 70)
    assert faces.square_box((350, 350, 50, 50), 0.2, (400, 400)) == (330, 330, 70, 70)
    # Smaller only where the image itself is.
    assert faces.square_box((0, 0, 60, 60), 0.5, (80, 200)) == (0, 0, 80, 80)
    # Any margin, however large, is the whole image (1e308 overflowed int() before).
    assert faces.square_box((100, 100, 50, 50), 1e308, (400, 300)) == (0, 0, 300, 300)


# The image-folder form.


def test_labelled_folder_reads_like_the_csv(tmp_path):
    csv_form = data.read_csv(make_train_csv(tmp_path / "train.csv", count=21))
    # Class folders in any case; file names are the CSV's row numbers.
    folder_names = ["ANGRY", "Disgust", "fear", "Happy", "sad", "SurPrise", "neutral"]
    for index, (image, label) in enumerate(zip(csv_form.images, csv_form.labels)):
        os.makedirs(tmp_path / "train" / folder_names[label], exist_ok=True)
        cv2.imwrite(str(tmp_path / "train" / folder_names[label] / f"{index}.png"), image)
    folder_form = data.read_any(str(tmp_path / "train"), require_labels=True)
    np.testing.assert_array_equal(folder_form.images, csv_form.images)
    np.testing.assert_array_equal(folder_form.labels, csv_form.labels)
    np.testing.assert_array_equal(folder_form.ids, csv_form.ids)
    assert folder_form.images.dtype == np.uint8 and folder_form.names[0] == "ANGRY/0.png"


def test_written_folders_round_trip(tmp_path):
    for dataset in (
        data.read_csv(make_train_csv(tmp_path / "train.csv", count=14)),
        data.read_csv(make_test_csv(tmp_path / "test.csv", count=12)),
    ):
        folder = faces.write_image_folder(dataset, str(tmp_path / f"folder{len(dataset)}"))
        again = faces.read_image_folder(folder)
        np.testing.assert_array_equal(again.images, dataset.images)
        np.testing.assert_array_equal(again.ids, dataset.ids)
        if dataset.labels is None:
            assert again.labels is None and again.names[:3] == ["0.png", "1.png", "2.png"]
        else:
            np.testing.assert_array_equal(again.labels, dataset.labels)


def test_images_are_written_into_a_folder_whose_name_is_not_utf8(tmp_path):
    # cv2.imwrite died with a segmentation fault on such a path: run where a crash is seen.
    folder = os.path.join(os.fsencode(tmp_path), b"caf\xe9")
    script = (
        "import sys, os, numpy as np\n"
        "from ferkit import faces\n"
        "folder = os.fsdecode(sys.argv[1].encode('utf-8', 'surrogateescape'))\n"
        "os.mkdir(folder)\n"
        "faces.write_image(os.path.join(folder, 'x.png'), np.full((8, 8), 7, np.uint8))\n"
        "print(faces.read_image(os.path.join(folder, 'x.png')).mean())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, os.fsdecode(folder)],
        capture_output=True,
        cwd=REPOSITORY,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.split()[-1] == b"7.0"


@pytest.mark.parametrize("form", ["folder", "media"])
def test_an_image_whose_name_is_not_utf8_is_refused_in_one_line(tmp_path, form):
    encoded = cv2.imencode(".png", synthetic_images(1)[0][0])[1].tobytes()
    for name in (b"0.png", b"caf\xe9.png"):  # not cv2.imwrite: it crashes on the second
        with open(os.path.join(os.fsencode(tmp_path), name), "wb") as file:
            file.write(encoded)
    # Its name could not be written into a submission or detect.py's CSV (UnicodeEncodeError),
    # and OpenCV crashed opening such a video.
    with pytest.raises(FerError, match=r"caf\\xe9.png: its name is not UTF-8 text; rename it"):
        if form == "folder":
            faces.read_image_folder(str(tmp_path))
        else:
            faces.find_media(str(tmp_path))


def test_unlabelled_folder_is_keyed_by_file_name(tmp_path):
    images, _ = synthetic_images(3)
    colour = np.random.default_rng(1).integers(0, 256, (96, 64, 3), dtype=np.uint8)
    for name, image in zip(("face_b.png", "face_10.png", "face_2.png"), images):
        cv2.imwrite(str(tmp_path / name), image)
    cv2.imwrite(str(tmp_path / "photo.png"), colour)
    (tmp_path / "notes.txt").write_text("not an image, and not one by its name either")
    loaded = faces.read_image_folder(str(tmp_path))
    assert loaded.names == ["face_2.png", "face_10.png", "face_b.png", "photo.png"]
    assert loaded.labels is None and loaded.ids.tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(loaded.images[0, :, :, 0], images[2])
    # Any size and colour goes through the one preprocessing function that detect.py uses.
    np.testing.assert_array_equal(loaded.images[3], faces.to_model_input(colour))


def test_names_that_sort_alike_keep_one_order_and_gif_and_jfif_faces_are_read(tmp_path):
    images, _ = synthetic_images(5)
    names = ("face1.png", "Face1.png", "face01.png", "b.gif", "c.jfif")
    for name, image in zip(names, images):
        # Real GIF and JPEG bytes (Pillow comes with matplotlib; OpenCV writes no grey GIF).
        PIL.Image.fromarray(image).save(
            tmp_path / name, format=name.split(".")[-1].upper().replace("JFIF", "JPEG")
        )
    loaded = faces.read_image_folder(str(tmp_path))
    # Tied by their natural keys, the three were in the file system's listing order.
    assert loaded.names[-3:] == ["Face1.png", "face01.png", "face1.png"]
    # Both were left out without a word.
    assert "c.jfif" in loaded.names and len(loaded.names) == len(os.listdir(tmp_path))


def test_a_file_name_with_a_superscript_digit_is_a_name_not_a_number(tmp_path):
    # "²" is a digit to str.isdigit that int() refuses: numbering and sorting gave tracebacks.
    images, _ = synthetic_images(2)
    for name, image in zip(("1\u00b22.png", "3.png"), images):
        cv2.imwrite(str(tmp_path / name), image)
    loaded = faces.read_image_folder(str(tmp_path))
    assert loaded.names == ["1\u00b22.png", "3.png"] and loaded.ids.tolist() == [0, 1]


def test_a_file_number_too_large_for_an_id_is_a_name(tmp_path):
    images, _ = synthetic_images(2)
    for name, image in zip(("99999999999999999999.png", "3.png"), images):
        cv2.imwrite(str(tmp_path / name), image)
    loaded = faces.read_image_folder(str(tmp_path))  # an OverflowError sorting the ids
    assert loaded.names == ["3.png", "99999999999999999999.png"] and loaded.ids.tolist() == [0, 1]


def test_bad_file_is_one_line_and_the_rest_are_read(tmp_path, capsys):
    images, _ = synthetic_images(3)
    os.makedirs(tmp_path / "happy")
    for index, image in enumerate(images):
        cv2.imwrite(str(tmp_path / "happy" / f"{index}.png"), image)
    (tmp_path / "happy" / "3.png").write_bytes(b"\x89PNG truncated")
    (tmp_path / "happy" / "4.jpg").write_bytes(b"")
    loaded = faces.read_image_folder(str(tmp_path))
    assert loaded.ids.tolist() == [0, 1, 2] and loaded.labels.tolist() == [3, 3, 3]
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.endswith(": skipped") for line in errors)
    assert "3.png: cannot read" in errors[0] and "4.jpg: cannot read" in errors[1]


def test_numbered_images_keep_their_ids_when_a_named_file_is_skipped(tmp_path, capsys):
    images, _ = synthetic_images(3)
    for name, image in zip(("10.png", "5.png", "6.png"), images):
        cv2.imwrite(str(tmp_path / name), image)
    (tmp_path / "thumbs.png").write_text("not an image")  # skipped, with a line on stderr
    cv2.imwrite(str(tmp_path / "._5.png"), images[0])  # macOS's copy: hidden, not read
    loaded = faces.read_image_folder(str(tmp_path))
    # The names left are numbers: ids 0, 1, 2 (row numbers) went into the submission.
    assert loaded.names == ["5.png", "6.png", "10.png"] and loaded.ids.tolist() == [5, 6, 10]
    assert evaluation.submission_keys(loaded).tolist() == [5, 6, 10]
    np.testing.assert_array_equal(loaded.images[2, :, :, 0], images[0])
    assert capsys.readouterr().err.count("skipped") == 1


@pytest.mark.parametrize(
    "layout, message",
    [
        ({"happy/0.png": 1, "contempt/1.png": 1}, "sub-folder 'contempt' is not a class"),
        ({"happy/0.png": 1, "loose.png": 1}, "holds both class folders and images"),
        ({"happy/0.png": 1, "Happy/1.png": 1}, "two folders for one class"),
        ({"train/happy/0.png": 1, "test/0.png": 1}, "give one of them"),
        ({"happiness/0.png": 1}, "its sub-folders \\(happiness\\) are not classes"),
        ({"notes.txt": 0}, "no images"),
        # These were left out without a word.
        ({"happy/0.png": 1, "happy/more/1.png": 1}, "more/1.png: would not be read: images go in"),
        ({"0.png": 1, "sub/1.png": 1}, "sub/1.png: would not be read: images go directly in"),
    ],
)
def test_folder_mistakes_are_named(tmp_path, layout, message):
    image = synthetic_images(1)[0][0]
    for name, is_image in layout.items():
        os.makedirs((tmp_path / name).parent, exist_ok=True)
        if is_image:
            cv2.imwrite(str(tmp_path / name), image)
        else:
            (tmp_path / name).write_text("x")
    with pytest.raises(FerError, match=message):
        faces.read_image_folder(str(tmp_path))


def test_a_broken_link_is_skipped_in_one_line_and_a_pipe_is_not_read(tmp_path, capsys):
    images, _ = synthetic_images(2)
    for index, image in enumerate(images):
        cv2.imwrite(str(tmp_path / f"{index}.png"), image)
    digest = data.file_sha256(str(tmp_path))
    (tmp_path / "2.png").symlink_to(tmp_path / "gone.png")
    os.mkfifo(tmp_path / "pipe")  # reading it would wait for a writer
    (tmp_path / "3.png").symlink_to(tmp_path / "pipe")  # was read: it hung
    os.mkfifo(tmp_path / "4.png")
    # The broken link was refused as "would not be read: ... not deeper", the whole folder
    # with it, and its SHA-256 raised FileNotFoundError.
    loaded = faces.read_image_folder(str(tmp_path))
    assert loaded.ids.tolist() == [0, 1]
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and "2.png: cannot read" in errors[0]
    assert data.file_sha256(str(tmp_path)) == digest


def test_a_labelled_folder_keeps_the_row_order_its_runs_recorded(tmp_path, capsys):
    images, _ = synthetic_images(4)
    for index, image in enumerate(images):
        os.makedirs(tmp_path / ("happy" if index % 2 == 0 else "sad"), exist_ok=True)
        cv2.imwrite(str(tmp_path / ("happy" if index % 2 == 0 else "sad") / f"{index}.png"), image)
    (tmp_path / "happy" / "._0.png").write_bytes(b"macOS's resource fork")
    # Grouped by class, as before: sorted by number once ._0.png was left out, the rows'
    # order changed, and so did the split that runs trained on this folder had recorded.
    loaded = faces.read_image_folder(str(tmp_path))
    assert loaded.names == ["happy/0.png", "happy/2.png", "sad/1.png", "sad/3.png"]
    assert "._0.png: cannot read" in capsys.readouterr().err


def test_hidden_and_macos_zip_copies_are_not_counted_as_unread_images(tmp_path):
    image = synthetic_images(1)[0][0]
    for name in ("happy/0.png", "happy/.thumbnails/0.png", "__MACOSX/happy/._0.png"):
        os.makedirs((tmp_path / name).parent, exist_ok=True)
        cv2.imwrite(str(tmp_path / name), image)
    assert faces.read_image_folder(str(tmp_path)).labels.tolist() == [3]


def test_read_any_dispatches_and_keeps_csv_messages(tmp_path):
    cv2.imwrite(str(tmp_path / "0.png"), synthetic_images(1)[0][0])
    assert len(data.read_any(str(tmp_path))) == 1
    with pytest.raises(FerError, match="labelled images are needed here"):
        data.read_any(str(tmp_path), require_labels=True)
    with pytest.raises(FerError, match="not an image folder"):
        data.read_any(str(tmp_path), usage="Training")
    with pytest.raises(FerError, match="no such file"):
        data.read_any(str(tmp_path / "nope.csv"))
    with pytest.raises(FerError, match="is a directory"):
        data.read_csv(str(tmp_path))


# Detection and detect.py.


@pytest.mark.skipif(NO_CASCADE, reason=NO_CASCADE_REASON)
def test_pasted_real_faces_are_found_and_classified_like_their_crop(real_data, model, tmp_path):
    test = data.read_csv(os.path.join(real_data, "test.csv.gz"))
    for index in FACE_IDS:
        picture = paste(background(), test.images[index], FACE_BOX)
        cv2.imwrite(str(tmp_path / f"face{index}.png"), picture)  # PNG: lossless
    cv2.imwrite(str(tmp_path / "no_face.png"), background())
    media = faces.find_media(str(tmp_path))
    assert [os.path.basename(file) for file, _ in media][-1] == "no_face.png"
    results = list(faces.analyse(faces.read_media(media), [model], faces.load_detector()))
    assert [len(boxes) for _, _, _, boxes, _ in results] == [1] * len(FACE_IDS) + [0]
    for (_, _, picture, boxes, probabilities), index in zip(results, FACE_IDS):
        assert iou(boxes[0], FACE_BOX) > 0.5
        crop = faces.to_model_input(faces.crop(picture, boxes[0]))[np.newaxis]
        np.testing.assert_allclose(
            probabilities, evaluation.predict_probabilities(model, crop), atol=1e-5
        )
        # Detected, re-cropped and resized, the face still looks like the original to the model.
        original = evaluation.predict_probabilities(model, test.images[index : index + 1])
        np.testing.assert_allclose(probabilities, original, atol=0.05)


@pytest.mark.skipif(NO_CASCADE, reason=NO_CASCADE_REASON)
def test_detect_writes_rows_and_annotated_copies(real_data, model_dir, tmp_path, monkeypatch):
    test = data.read_csv(os.path.join(real_data, "test.csv.gz"))
    photos = tmp_path / "photos"
    os.makedirs(photos)
    two = paste(background(320, 480), test.images[0], (20, 60, 150, 150))
    cv2.imwrite(str(photos / "two.png"), paste(two, test.images[11], (280, 90, 150, 150)))
    cv2.imwrite(str(photos / "empty.png"), background())
    status = run_detect(
        monkeypatch, photos, "--model", model_dir, "--csv", tmp_path / "f.csv", "--out", tmp_path
    )
    assert status == 0
    rows = read_rows(tmp_path / "f.csv")
    assert [(os.path.basename(row["file"]), row["label"] == "no face") for row in rows] == [
        ("empty.png", True),
        ("two.png", False),
        ("two.png", False),
    ]
    assert rows[0]["x"] == "" and rows[0]["Happy"] == ""
    assert int(rows[1]["x"]) < int(rows[2]["x"])  # left to right
    total = sum(float(rows[1][name]) for name in data.CLASS_NAMES)
    assert total == pytest.approx(1, abs=1e-4)
    annotated = cv2.imread(str(tmp_path / "two.png"))
    assert annotated.shape == (320, 480, 3)


def test_auto_blur_gives_all_the_pictures_one_sigma_for_the_model_s_training_faces(
    model_dir, tmp_path, monkeypatch, capsys
):
    photos = tmp_path / "photos"
    photos.mkdir()
    sharp, _ = synthetic_images(3)  # (3, 48, 48)
    for index, image in enumerate(sharp):
        cv2.imwrite(str(photos / f"{index}.png"), image)
    crops = sharp[..., np.newaxis]  # each picture is its face: (3, 48, 48, 1)
    run = tmp_path / "run"
    shutil.copytree(model_dir, run)
    record_sharpness(run, evaluation.sharpness(evaluation.blur_images(crops, 2.0)))
    media = faces.find_media(str(photos))
    sigmas, boxes = faces.pooled_blur(media, 1, None, faces.DEFAULT_MARGIN, [str(run)])
    assert sigmas == [2.0]  # one sigma for the three, not one each
    assert boxes == {(file, None): [(0, 0, 48, 48)] for file, _ in media}
    capsys.readouterr()
    assert run_detect(monkeypatch, photos, "--no-detect", "--model", run) == 0
    printed = capsys.readouterr()
    assert "blurred with sigma 2 " in printed.err  # not among the rows on stdout
    rows = list(csv.DictReader(io.StringIO(printed.out)))
    model = runs.load_model(str(run))
    expected = evaluation.predict_probabilities(model, evaluation.blur_images(crops, 2.0))
    written = np.array([[float(row[name]) for name in data.CLASS_NAMES] for row in rows])
    np.testing.assert_allclose(written, expected, atol=1e-5)


def test_detect_passes_its_tta_margin_and_blur_on(model_dir, tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "0.png"), synthetic_images(1)[0][0])
    calls = []
    analyse = faces.analyse

    def recorded(pictures, models, detector, tta, margin, **keywords):
        calls.append((tta, margin, keywords["blur"]))
        return analyse(pictures, models, detector, tta, margin, **keywords)

    monkeypatch.setattr(faces, "analyse", recorded)
    arguments = ["--model", model_dir, "--tta", "flip", "--margin", 0.3, "--blur", 2]
    assert run_detect(monkeypatch, photos, *arguments, "--csv", tmp_path / "f.csv") == 0
    assert calls == [("flip", 0.3, 2.0)]


def test_video_gives_one_row_per_sampled_frame(model_dir, tmp_path, monkeypatch):
    images, _ = synthetic_images(10)
    video = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 96))
    for image in images:
        writer.write(cv2.cvtColor(cv2.resize(image, (96, 96)), cv2.COLOR_GRAY2BGR))
    writer.release()
    arguments = ("--model", model_dir, "--no-detect", "--every", 3, "--csv", tmp_path / "v.csv")
    assert run_detect(monkeypatch, video, *arguments, "--out", tmp_path / "frames") == 0
    rows = read_rows(tmp_path / "v.csv")
    assert [row["frame"] for row in rows] == ["0", "3", "6", "9"]
    assert all(row["file"] == video and row["w"] == "96" for row in rows)
    assert sorted(os.listdir(tmp_path / "frames")) == [
        f"clip.avi.frame{frame:06d}.jpg" for frame in (0, 3, 6, 9)
    ]


def test_truncated_video_is_one_line_on_stderr(tmp_path, capfd):
    images, _ = synthetic_images(10)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 96))
    for image in images:
        writer.write(cv2.cvtColor(cv2.resize(image, (96, 96)), cv2.COLOR_GRAY2BGR))
    writer.release()
    video.write_bytes(video.read_bytes()[:300])  # the header, cut short
    assert list(faces.read_media([(str(video), True)])) == [(str(video), None, None)]
    # OpenCV's own MJPEG reader wrote "Unexpected element…" to the file descriptor itself.
    errors = capfd.readouterr().err.strip().splitlines()
    assert errors == [f"{video}: cannot read (not a video OpenCV can decode)"]


@pytest.mark.parametrize("extension", [".png", ".tif", ".bmp", ".pgm"])
def test_a_truncated_image_is_one_line_on_stderr(tmp_path, capfd, extension):
    picture = cv2.cvtColor(cv2.resize(background(), (640, 640)), cv2.COLOR_BGR2GRAY)
    path = tmp_path / f"cut{extension}"
    encoded = cv2.imencode(extension, picture)[1].tobytes()
    path.write_bytes(encoded[: len(encoded) // 2])
    assert list(faces.read_media([(str(path), False)])) == [(str(path), None, None)]
    # libpng ("PNG input buffer is incomplete") and OpenCV's TIFF and bitstream readers
    # wrote lines of their own to the file descriptor.
    errors = capfd.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"{path}: cannot read (")


def test_a_damaged_png_is_one_line_on_stderr(tmp_path, capfd):
    picture = cv2.cvtColor(cv2.resize(background(), (640, 640)), cv2.COLOR_BGR2GRAY)
    encoded = bytearray(cv2.imencode(".png", picture)[1].tobytes())
    encoded[len(encoded) // 2] ^= 0x55  # one byte of its image data changed
    path = tmp_path / "damaged.png"
    path.write_bytes(bytes(encoded))
    assert list(faces.read_media([(str(path), False)])) == [(str(path), None, None)]
    # libpng wrote "libpng error: bad adaptive filter value" to the file descriptor itself.
    errors = capfd.readouterr().err.strip().splitlines()
    assert errors == [f"{path}: cannot read (a PNG file cut short or damaged)"]
    # Any PNG OpenCV writes passes the check (one of the sizes a face folder holds, too).
    for image in (picture, synthetic_images(1)[0][0]):
        raw = cv2.imencode(".png", image)[1].tobytes()
        assert faces._png_intact(raw) and faces._png_intact(raw + b"trailing bytes")


def test_unreadable_file_exits_2_after_the_others(model_dir, tmp_path):
    images, _ = synthetic_images(2)
    for index, image in enumerate(images):
        cv2.imwrite(str(tmp_path / f"{index}.png"), image)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    result = subprocess.run(
        [sys.executable, "detect.py", str(tmp_path), "--model", model_dir, "--no-detect"],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        timeout=300,
    )
    assert result.returncode == 2
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 3 and errors[-1] == (
        "detect.py: error: 2 of 4 files could not be read (listed above)"
    )
    assert "broken.jpg: cannot read" in result.stderr and "broken.mp4: cannot read" in result.stderr
    rows = list(csv.DictReader(result.stdout.splitlines()))
    assert [os.path.basename(row["file"]) for row in rows] == ["0.png", "1.png"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (("--every", 0), "--every must be a finite number of at least 1, got 0"),
        (("--margin", "inf"), "--margin must be a finite number of at least 0, got inf"),
        (("--csv", "{existing}"), "already exists"),
        (("--out", "{folder}"), "is the input's folder"),
        (("--blur", "inf"), "--blur must be auto or a sigma from 0 to 48 pixels, got inf"),
        (("--csv", "{folder}", "--force"), "is a folder, expected a file name for --csv"),
        (("--out", "{annotated}"), "0.png: already exists (pass --force to overwrite the"),
        # These wrote over the photo, or failed after the model had run.
        (("--csv", "{photo}", "--force"), "0.png: is one of the inputs; --csv must not"),
        (("--out", "{existing}"), "is a file, expected a folder for the annotated copies"),
        (("--csv", "{existing}/rows.csv"), "existing.csv is a file, not a folder)"),
        (("--model", "{existing}"), "existing.csv: not a model file"),
        # Both were ignored with --no-detect, a cascade that is not there too.
        (("--cascade", "nosuch.xml"), "--cascade is for the face detector; --no-detect takes"),
        (("--margin", "0.2"), "--margin is for the face detector; --no-detect takes each"),
    ],
)
def test_mistakes_are_one_line_exit_2(
    arguments, message, tmp_path, monkeypatch, capsys, no_model_load
):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "0.png"), synthetic_images(1)[0][0])
    (tmp_path / "existing.csv").write_text("keep me")
    (tmp_path / "annotated").mkdir()
    (tmp_path / "annotated" / "0.png").write_text("keep me")
    places = {
        "existing": tmp_path / "existing.csv",
        "folder": photos,
        "annotated": tmp_path / "annotated",
        "photo": photos / "0.png",
    }
    photo = (photos / "0.png").read_bytes()
    arguments = [str(value).format(**places) for value in arguments]
    assert run_detect(monkeypatch, photos, "--no-detect", *arguments) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("detect.py: error: ") and message in error and "\n" not in error
    assert (tmp_path / "existing.csv").read_text() == "keep me"
    assert (tmp_path / "annotated" / "0.png").read_text() == "keep me"
    assert (photos / "0.png").read_bytes() == photo


@pytest.mark.parametrize(
    "target, message",
    [
        ("run/config.json", "is the configuration of the model"),
        ("run/history.csv", "is the history.csv of the model"),
        ("run/checkpoint/state.json", "is in the checkpoint folder of the model"),
        ("run/train.csv", "is the data file of the model"),
        ("cascade.xml", "is the --cascade file; --csv must not overwrite it"),
        ("annotated/0.png", "is where --out puts an annotated copy; give another --csv"),
    ],
)
def test_csv_never_replaces_a_run_its_data_the_cascade_or_a_copy(
    target, message, model_dir, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"
    shutil.copytree(model_dir, run)  # a copy, with its recorded data file beside it
    config = json.loads((run / "config.json").read_text())
    shutil.copy(config["data"], run / "train.csv")
    (run / "config.json").write_text(json.dumps({**config, "data": str(run / "train.csv")}))
    shutil.copy(os.path.join(cv2.data.haarcascades, faces.CASCADE_FILE), tmp_path / "cascade.xml")
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "0.png"), synthetic_images(1)[0][0])
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    arguments = ["--model", run, "--cascade", tmp_path / "cascade.xml", "--out"]
    arguments += [tmp_path / "annotated", "--csv", tmp_path / target, "--force"]
    # Replaced with --force: a run's config.json or state.json broke its --resume.
    assert run_detect(monkeypatch, photos, *arguments) == 2
    assert message in capsys.readouterr().err
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before


def test_annotated_copies_never_go_into_a_model_s_checkpoint_folder(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "checkpoint" / "state.json").write_text("{}")
    media = [(str(tmp_path / "0.png"), False)]
    with pytest.raises(FerError, match="is in the checkpoint folder of the model .*write --out"):
        faces.check_outputs(media, str(tmp_path), None, str(run / "checkpoint"), True, [str(run)])


def test_a_huge_photo_is_searched_shrunk_and_its_boxes_mapped_back(monkeypatch):
    class Detector:
        def detectMultiScale(self, image, *arguments, **options):  # noqa: N802 (OpenCV's name)
            self.shape = image.shape
            return [(10, 20, 30, 30)]  # in the shrunk copy's pixels

    # OpenCV's cascade crashed the process on a 324-megapixel photo; this limit stands for it.
    monkeypatch.setattr(faces, "MAX_DETECTION_PIXELS", 100 * 100)
    detector = Detector()
    boxes = faces.detect_faces(np.zeros((400, 800, 3), np.uint8), detector, margin=0)
    assert detector.shape == (70, 141) and 70 * 141 <= 100 * 100
    scale = np.sqrt(100 * 100 / (400 * 800))
    assert boxes == [(round(10 / scale), round(20 / scale), round(30 / scale), round(30 / scale))]


def test_a_pipe_named_like_an_image_is_not_read(tmp_path):
    cv2.imwrite(str(tmp_path / "0.png"), synthetic_images(1)[0][0])
    os.mkfifo(tmp_path / "1.png")  # opening it waited for a writer forever
    assert faces.find_media(str(tmp_path)) == [(str(tmp_path / "0.png"), False)]
    with pytest.raises(FerError, match=r"1\.png: not a file or folder \(a pipe or a device\?\)"):
        faces.find_media(str(tmp_path / "1.png"))


@pytest.mark.parametrize(
    "in_the_way, message",
    [
        ("sub", r"out/sub/1\.png: cannot be written \(.*out/sub is a file"),
        ("0.png/", "0.png: is a folder"),
    ],
)
def test_a_copy_that_cannot_be_written_is_refused_before_the_work(
    in_the_way, message, tmp_path, monkeypatch, capsys, no_model_load
):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    cv2.imwrite(str(photos / "0.png"), synthetic_images(1)[0][0])
    cv2.imwrite(str(photos / "sub" / "1.png"), synthetic_images(1)[0][0])
    out = tmp_path / "out"
    out.mkdir()
    if in_the_way.endswith("/"):
        (out / in_the_way).mkdir()
    else:
        (out / in_the_way).write_text("in the way")
    # Before the fix 0.png's copy was written, then this one failed: no_model_load catches it.
    arguments = ["--no-detect", "--out", out, "--force"]
    assert run_detect(monkeypatch, photos, *arguments) == 2
    assert re.search(message, capsys.readouterr().err)
    assert sorted(os.listdir(out)) == [in_the_way.rstrip("/")]


def test_two_inputs_with_one_annotated_name_are_refused(tmp_path, monkeypatch, capsys):
    # x.pgm is annotated as x.pgm.png (a PNG shows coloured boxes): one copy replaced the other.
    photos = tmp_path / "photos"
    photos.mkdir()
    face = synthetic_images(1)[0][0]
    cv2.imwrite(str(photos / "x.pgm"), face)
    cv2.imwrite(str(photos / "x.pgm.png"), face)
    assert run_detect(monkeypatch, photos, "--no-detect", "--out", tmp_path / "annotated") == 2
    error = capsys.readouterr().err.strip()
    assert error.endswith("both would be annotated as " + str(tmp_path / "annotated" / "x.pgm.png"))
    assert not (tmp_path / "annotated").exists()


def test_a_photo_named_as_a_video_s_annotated_frame_is_refused(tmp_path):
    video, photo = tmp_path / "clip.mp4", tmp_path / "clip.mp4.frame000000.jpg"
    media = [(str(video), True), (str(photo), False)]
    # The photo's copy and the video's first frame were written to one file, unnoticed.
    with pytest.raises(FerError, match="clip.mp4 and .*clip.mp4.frame000000.jpg: both would be"):
        faces.check_outputs(media, str(tmp_path), None, str(tmp_path / "out"), True)
    media[1] = (str(tmp_path / "clip.mp4.frame0.jpg"), False)  # never a frame's name: kept
    faces.check_outputs(media, str(tmp_path), None, str(tmp_path / "out"), True)


def test_an_annotated_copy_that_would_replace_an_input_is_refused_even_with_force(tmp_path):
    root = tmp_path / "pics"
    (root / "pics").mkdir(parents=True)
    media = [(str(root / "x.png"), False), (str(root / "pics" / "x.png"), False)]
    for file, _ in media:
        cv2.imwrite(file, synthetic_images(1)[0][0])
    # --out above the input folder: pics/pics/x.png's copy went over the input pics/x.png.
    with pytest.raises(FerError, match=r"pics/x.png: is an input, where --out .* would put the"):
        faces.check_outputs(media, str(root), None, str(tmp_path), True)
    faces.check_outputs(media, str(root), None, str(tmp_path / "elsewhere"), True)


def test_annotated_copies_never_go_into_the_folder_a_model_trained_on(tmp_path):
    faces_folder = tmp_path / "faces"
    (faces_folder / "happy").mkdir(parents=True)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": str(faces_folder)}))
    media = [(str(tmp_path / "0.png"), False)]
    # --force replaced a face the model trained on; without it a new face joined them.
    with pytest.raises(FerError, match=r"is inside .*faces \(the data file of the model"):
        faces.check_outputs(
            media, str(tmp_path), None, str(faces_folder / "happy"), True, [str(run)]
        )


def test_annotated_copies_inside_the_input_folder_are_not_read_as_input(
    model_dir, tmp_path, monkeypatch
):
    cv2.imwrite(str(tmp_path / "0.png"), synthetic_images(1)[0][0])
    (tmp_path / "annotated").mkdir()
    cv2.imwrite(str(tmp_path / "annotated" / "0.png"), synthetic_images(1)[0][0])
    arguments = ("--model", model_dir, "--no-detect", "--csv", tmp_path / "rows.csv")
    assert run_detect(monkeypatch, tmp_path, *arguments, "--out", tmp_path / "annotated",
                      "--force") == 0  # fmt: skip
    assert [row["file"] for row in read_rows(tmp_path / "rows.csv")] == [str(tmp_path / "0.png")]


@pytest.mark.parametrize("name", ["photo", "photo.jfif", "photo.exr"])  # .exr: writer disabled
def test_a_photo_named_without_an_image_extension_is_annotated_as_png(
    name, model_dir, tmp_path, monkeypatch
):
    photo = tmp_path / "photos" / name
    photo.parent.mkdir()
    photo.write_bytes(cv2.imencode(".jpg", synthetic_images(1)[0][0])[1].tobytes())
    arguments = ("--model", model_dir, "--no-detect", "--out", tmp_path / "annotated")
    # OpenCV raised for the copy's name (no writer for it): a traceback, and no --csv rows.
    assert run_detect(monkeypatch, photo, *arguments) == 0
    assert cv2.imread(str(tmp_path / "annotated" / f"{name}.png")) is not None


def test_a_video_s_existing_annotated_frames_are_kept_without_force(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "clip.avi.frame000000.jpg").write_bytes(b"an earlier copy")
    media = [(str(tmp_path / "clip.avi"), True)]
    # Looked for as clip.avi.png.frame* once names without an image writer got .png added.
    with pytest.raises(FerError, match="clip.avi.frame000000.jpg: already exists"):
        faces.check_outputs(media, str(tmp_path), None, str(tmp_path / "out"), False)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such cascade file"),
        ("<opencv_storage></opencv_storage>", "not a cascade file"),
        ("folder", "cascade.xml: is a folder, expected a cascade file"),  # "no such cascade file"
    ],
)
def test_a_bad_cascade_file_is_named(tmp_path, content, message):
    path = tmp_path / "cascade.xml"
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    with pytest.raises(FerError, match=message):
        faces.load_detector(str(path))
