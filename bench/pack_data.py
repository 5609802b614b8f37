"""Pack FER2013 as one compressed array file for a machine without the CSVs (a lent GPU).

    python bench/pack_data.py                 # writes .device/fer2013.npz.xz (git-ignored)
    python bench/pack_data.py --unpack /tmp/fer2013    # train.csv, test.csv, labels, from it

The GPU machine cannot read ../shared, and the working tree travels there in 64 MiB. The
arrays go as an uncompressed .npz inside an xz stream with a byte-delta filter: neighbouring
pixels are alike, so the deltas compress to about 40% of the pixels (zlib's .npz: 76%, too
big to travel beside the repository). ``load`` reads it back; ``--unpack`` writes it out as
plain CSVs, byte for byte the same on every machine, so a run trained on the GPU machine from
/tmp/fer2013/train.csv records the same data_sha256 as one evaluated here from the same path.
"""

import argparse
import io
import lzma
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ferkit import data  # noqa: E402

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fer2013")
# Delta of each byte from the one before it, then LZMA2: measured 34 MB for all FER2013.
FILTERS = [{"id": lzma.FILTER_DELTA, "dist": 1}, {"id": lzma.FILTER_LZMA2, "preset": 9}]


def load(path):
    """The arrays ``main`` packed, as a dict of NumPy arrays."""
    with lzma.open(path) as file:
        packed = np.load(io.BytesIO(file.read()))
        return {name: packed[name] for name in packed.files}


def write_csvs(packed, folder):
    """train.csv, test.csv and public_test_labels.csv in ../shared's format, deterministically."""
    os.makedirs(folder, exist_ok=True)
    numbers = [str(value).encode() for value in range(256)]  # each pixel's text, looked up

    def write(name, header, keys, images):
        with open(os.path.join(folder, name), "wb") as file:
            file.write(header)
            for key, image in zip(keys, images):
                pixels = b" ".join(numbers[value] for value in image.reshape(-1).tolist())
                file.write(b"%d,%s\n" % (key, pixels))

    write("train.csv", b"label,feature\n", packed["train_labels"], packed["train_images"])
    write("test.csv", b"id,feature\n", packed["test_ids"], packed["test_images"])
    with open(os.path.join(folder, "public_test_labels.csv"), "w") as file:
        file.write("id,label\n")
        file.writelines(f"{i},{k}\n" for i, k in zip(packed["public_ids"], packed["public_labels"]))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", default=SHARED)
    parser.add_argument("--out", default=".device/fer2013.npz.xz")
    parser.add_argument("--unpack", metavar="FOLDER", help="write --out's arrays here as CSVs")
    args = parser.parse_args()
    if args.unpack:
        write_csvs(load(args.out), args.unpack)
        print(f"wrote {args.unpack}/train.csv, test.csv and public_test_labels.csv")
        return
    train = data.read_csv(os.path.join(args.shared, "train.csv.gz"))
    test = data.read_csv(os.path.join(args.shared, "test.csv.gz"))
    labels = data.read_labels(os.path.join(args.shared, "public_test_labels.csv"))
    buffer = io.BytesIO()
    np.savez(
        buffer,
        train_images=train.images,
        train_labels=train.labels.astype(np.uint8),
        test_images=test.images,
        test_ids=test.ids.astype(np.int32),
        public_ids=np.array(list(labels), dtype=np.int32),
        public_labels=np.array(list(labels.values()), dtype=np.uint8),
    )
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)  # --out fer.npz.xz: here
    with lzma.open(args.out, "wb", format=lzma.FORMAT_XZ, filters=FILTERS) as file:
        file.write(buffer.getvalue())
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
