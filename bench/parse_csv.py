"""CSV parsing: the naive per-row parse against ferkit's, side by side, alternating.

    python bench/parse_csv.py                      # ../shared/fer2013/train.csv.gz
    python bench/parse_csv.py data/train.csv --repeats 3

The naive way is what most FER2013 code does: pandas reads the CSV, then every row's pixel
string is split and converted on its own (``np.array(row.split())``).
"""

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ferkit import data  # noqa: E402

DEFAULT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fer2013", "train.csv.gz")


def naive(path):
    frame = pd.read_csv(path)
    images = np.array([np.array(row.split(), dtype=np.uint8) for row in frame["feature"]])
    return images.reshape(-1, 48, 48, 1), frame["label"].to_numpy()


def ferkit_parse(path):
    loaded = data.read_csv(path)
    return loaded.images, loaded.labels


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path", nargs="?", default=DEFAULT)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times = {"naive": [], "ferkit": []}
    for _ in range(args.repeats):
        for name, function in (("naive", naive), ("ferkit", ferkit_parse)):
            started = time.perf_counter()
            images, labels = function(args.path)
            times[name].append(time.perf_counter() - started)
    reference, ours = naive(args.path), ferkit_parse(args.path)
    assert np.array_equal(reference[0], ours[0]) and np.array_equal(reference[1], ours[1])
    naive_median, ours_median = (
        statistics.median(times["naive"]),
        statistics.median(times["ferkit"]),
    )
    machine = platform.processor() or platform.machine()
    print(f"file: {args.path} ({len(labels)} rows); machine: {machine}")
    print(f"naive  median {naive_median:.2f} s  ({', '.join(f'{t:.2f}' for t in times['naive'])})")
    print(f"ferkit median {ours_median:.2f} s  ({', '.join(f'{t:.2f}' for t in times['ferkit'])})")
    print(f"ratio {naive_median / ours_median:.1f}x (identical arrays)")


if __name__ == "__main__":
    main()
