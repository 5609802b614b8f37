"""Does finding the face first cost accuracy? Public-test faces pasted into larger pictures.

    python bench/detect_check.py models/cnn_a                # data/test.csv and its labels
    python bench/detect_check.py models/cnn_a/model.keras --count 500 --tta flip
    python bench/detect_check.py models/cnn_a --margin 0 0.05 0.1 0.2    # compare margins

Takes the first COUNT labelled public-test faces (test.csv.gz or test.csv with
public_test_labels.csv, from --data: ../shared/fer2013 where it is, else data/), upscales
each to a random 96-200 px, and pastes it at a random place into a 400x400 picture (a random
colour gradient with noise). detect.py's pipeline (faces.analyse) then finds and classifies
the faces. Printed:

- detection rate: pictures whose largest face found overlaps the pasted one (IoU > 0.5);
- accuracy on the original 48x48 crops, as predict.py would score them;
- accuracy through detection, a missed face counting as wrong;
- both accuracies on the detected faces only, which tells a harder-to-detect subset
  (lower original accuracy there) from crops that lose detail (lower pipeline accuracy).

The pictures depend only on --seed, so runs with different models or margins compare.
"""

import argparse
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ferkit import cli, data, evaluation, faces, runs  # noqa: E402

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fer2013")
# The project's own copy where it is, else the README's data/ (a user's clone has no shared/).
DEFAULT_DATA = SHARED if os.path.isdir(SHARED) else "data"


def test_csv_path(folder):
    """The folder's test.csv.gz, or its test.csv: Kaggle's file, packed or not."""
    packed = os.path.join(folder, "test.csv.gz")
    return packed if os.path.exists(packed) else os.path.join(folder, "test.csv")


CANVAS = 400
SMALLEST, LARGEST = 96, 200


def iou(first, second):
    (ax, ay, aw, ah), (bx, by, bw, bh) = first, second
    width = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    height = max(0, min(ay + ah, by + bh) - max(ay, by))
    return width * height / (aw * ah + bw * bh - width * height)


def make_picture(face, rng):
    """(BGR picture, box of the pasted face): a gradient between two colours, plus noise."""
    angle = rng.uniform(0, 2 * np.pi)
    rows, columns = np.mgrid[0:CANVAS, 0:CANVAS] / CANVAS
    ramp = (np.cos(angle) * columns + np.sin(angle) * rows + 1.5) / 3  # 0..1 along a direction
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    picture = start + ramp[:, :, np.newaxis] * (end - start)
    picture += rng.normal(0, 12, picture.shape)
    picture = np.clip(picture, 0, 255).astype(np.uint8)
    size = int(rng.integers(SMALLEST, LARGEST + 1))
    x, y = (int(value) for value in rng.integers(0, CANVAS - size + 1, 2))
    resized = cv2.resize(face[:, :, 0], (size, size), interpolation=cv2.INTER_CUBIC)
    picture[y : y + size, x : x + size] = resized[:, :, np.newaxis]
    return picture, (x, y, size, size)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="run folder or .keras file")
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder with FER2013's test files")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tta", default="none", choices=evaluation.TTA_MODES)
    parser.add_argument(
        "--blur", type=float, default=0.0, help="Gaussian blur sigma for the pictures (0: none)"
    )
    parser.add_argument("--margin", type=float, nargs="+", default=[faces.DEFAULT_MARGIN])
    args = parser.parse_args()
    test = data.read_csv(test_csv_path(args.data))
    labels_by_id = data.read_labels(os.path.join(args.data, "public_test_labels.csv"))
    positions, labels = evaluation.labelled_subset(test.ids, labels_by_id, "public test labels")
    positions, labels = positions[: args.count], labels[: args.count]
    originals = test.images[positions]
    model = runs.load_model(args.model)
    detector = faces.load_detector()

    rng = np.random.default_rng(args.seed)
    pictures, pasted = zip(*(make_picture(face, rng) for face in originals))
    original_correct = evaluation.predict_probabilities(
        model, evaluation.blur_images(originals, args.blur), args.tta
    ).argmax(1)
    original_correct = original_correct == labels
    print(
        f"{len(labels)} public-test faces (ids {test.ids[positions[0]]}..), pasted at "
        f"{SMALLEST}-{LARGEST} px into {CANVAS}x{CANVAS} pictures, seed {args.seed}, "
        f"model {args.model}, TTA {args.tta}"
    )
    print(f"accuracy on the original crops:        {original_correct.mean():.4f}")
    for margin in args.margin:
        started = time.perf_counter()
        stream = ((f"face{index}", None, picture) for index, picture in enumerate(pictures))
        results = list(faces.analyse(stream, [model], detector, args.tta, margin, blur=args.blur))
        seconds = time.perf_counter() - started
        found = np.zeros(len(labels), dtype=bool)
        pipeline_correct = np.zeros(len(labels), dtype=bool)
        overlaps, extra = [], 0
        for index, (_, _, _, boxes, probabilities) in enumerate(results):
            if not boxes:
                continue
            largest = max(range(len(boxes)), key=lambda i: boxes[i][2] * boxes[i][3])
            overlap = iou(boxes[largest], pasted[index])
            extra += sum(iou(box, pasted[index]) <= 0.5 for box in boxes)
            if overlap > 0.5:
                found[index] = True
                overlaps.append(overlap)
                pipeline_correct[index] = probabilities[largest].argmax() == labels[index]
        print(
            f"margin {margin}: detection rate {found.mean():.4f} ({found.sum()}/{len(labels)}, "
            f"median IoU {np.median(overlaps) if overlaps else 0:.2f}, {extra} other boxes), "
            f"{seconds:.1f} s"
        )
        print(f"  accuracy through detection (missed = wrong): {pipeline_correct.mean():.4f}")
        if found.any():
            print(
                f"  on the {found.sum()} detected faces: original crops "
                f"{original_correct[found].mean():.4f}, detected crops "
                f"{pipeline_correct[found].mean():.4f}"
            )


if __name__ == "__main__":
    cli.run(main)  # a FerError (no cascade in this OpenCV, a bad model file) is one line
