"""Loading the image-folder form: ferkit's threaded reader against a plain cv2.imread loop.

    python bench/image_folder.py                    # ../shared/fer2013/train.csv.gz, 28,709 faces
    python bench/image_folder.py data/train.csv --repeats 5 --workers 2

Writes the CSV's faces as PNGs in the Kaggle layout (``<class>/<id>.png``) to a temporary
folder under /tmp, times reading it back, checks the arrays equal the CSV's exactly, and
removes the folder (unless --keep). The files were just written, so they are read from the
page cache: a first read from a cold disk is slower, by however slow the disk is.
"""

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ferkit import data, faces  # noqa: E402

DEFAULT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fer2013", "train.csv.gz")


def plain_loop(dataset, folder):
    """What most code does: one cv2.imread after another, in one thread."""
    images = np.empty_like(dataset.images)
    for index, (row_id, label) in enumerate(zip(dataset.ids, dataset.labels)):
        name = os.path.join(folder, data.CLASS_NAMES[label].lower(), f"{row_id}.png")
        images[index, :, :, 0] = cv2.imread(name, cv2.IMREAD_GRAYSCALE)
    return images


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("path", nargs="?", default=DEFAULT, help="a labelled FER2013 CSV")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, help="threads (default: cores, at most 8)")
    parser.add_argument("--keep", action="store_true", help="leave the folder in /tmp")
    args = parser.parse_args()
    dataset = data.read_csv(args.path, require_labels=True)
    folder = tempfile.mkdtemp(prefix="ferkit-image-folder-", dir="/tmp")
    try:
        started = time.perf_counter()
        faces.write_image_folder(dataset, folder, workers=args.workers)
        write_seconds = time.perf_counter() - started
        size = sum(
            entry.stat().st_size
            for name in os.listdir(folder)
            for entry in os.scandir(os.path.join(folder, name))
        )
        # Alternating the two readers shares out fairly whatever else the machine is doing.
        read_seconds, plain_seconds = [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            loaded = faces.read_image_folder(folder, workers=args.workers)
            read_seconds.append(time.perf_counter() - started)
            started = time.perf_counter()
            plain = plain_loop(dataset, folder)
            plain_seconds.append(time.perf_counter() - started)
    finally:
        if not args.keep:
            shutil.rmtree(folder)
    # The folder must give back exactly the CSV's arrays, in the CSV's order.
    assert np.array_equal(loaded.images, dataset.images) and np.array_equal(plain, dataset.images)
    assert np.array_equal(loaded.labels, dataset.labels) and np.array_equal(loaded.ids, dataset.ids)

    median, plain_median = statistics.median(read_seconds), statistics.median(plain_seconds)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f}, Python {platform.python_version()}, OpenCV {cv2.__version__}"
    )
    kept = f", kept in {folder}" if args.keep else ""
    print(f"folder: {len(dataset)} PNGs, {size / 2**20:.1f} MiB{kept}")
    print(f"write (write_image_folder):    {write_seconds:6.2f} s")
    for name, seconds in (
        ("read_image_folder", read_seconds),
        ("plain cv2.imread loop", plain_seconds),
    ):
        middle = statistics.median(seconds)
        each = ", ".join(f"{value:.2f}" for value in seconds)
        print(
            f"read  ({name + '):':<23}{middle:6.2f} s median ({each}), "
            f"{len(dataset) / middle:,.0f} images/s"
        )
    print(
        f"read_image_folder takes {median / plain_median:.2f}x the plain loop's time; "
        "arrays identical to the CSV's"
    )


if __name__ == "__main__":
    main()
