"""Pack FER2013 as one compressed array file for a machine without the CSVs (a lent GPU).

    python bench/pack_data.py                 # writes .device/fer2013.npz (git-ignored)

The GPU machine cannot read ../shared; the working tree travels there, so the data goes as
uint8 arrays (about a third of the gzipped CSVs' unpacked size) in an ignored folder.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ferkit import data  # noqa: E402

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fer2013")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", default=SHARED)
    parser.add_argument("--out", default=".device/fer2013.npz")
    parser.add_argument(
        "--train-rows",
        type=int,
        default=10000,
        help="training rows to keep (the working tree travels in 64 MiB)",
    )
    args = parser.parse_args()
    train = data.read_csv(os.path.join(args.shared, "train.csv.gz"))
    test = data.read_csv(os.path.join(args.shared, "test.csv.gz"))
    labels = data.read_labels(os.path.join(args.shared, "public_test_labels.csv"))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    np.savez_compressed(
        args.out,
        train_images=train.images,
        train_labels=train.labels,
        test_images=test.images,
        test_ids=test.ids,
        public_ids=np.array(list(labels)),
        public_labels=np.array(list(labels.values())),
    )
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
