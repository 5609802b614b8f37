"""Time ``evaluation.blur_images`` against blurring one face at a time, side by side.

    python bench/blur_speed.py                          # the 7,178 faces of test.csv.gz
    python bench/blur_speed.py --faces 2000 --rounds 5  # random faces, no data needed

``blur_images`` lays the faces side by side as the channels of one image (OpenCV blurs each
channel alone); the one-at-a-time loop is what it replaced. Both give the same pixels (checked
here each round, and by tests/test_evaluation.py). Rounds alternate, so that a noisy machine
slows both alike; the ratio is the figure to compare.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ferkit import data, evaluation  # noqa: E402

TEST_CSV = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fer2013", "test.csv.gz")


def one_at_a_time(images, sigma):
    import cv2

    blurred = [cv2.GaussianBlur(image[:, :, 0], (0, 0), sigma) for image in images]
    return np.stack(blurred)[..., np.newaxis]  # (N, 48, 48, 1)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--faces", type=int, help="random faces instead of test.csv.gz")
    parser.add_argument("--sigma", type=float, default=3.3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.faces:
        images = np.random.default_rng(0).integers(0, 256, (args.faces, 48, 48, 1), dtype=np.uint8)
        source = f"{args.faces} random faces"
    else:
        images = data.read_csv(TEST_CSV).images
        source = f"{len(images)} faces of test.csv.gz"
    print(f"{source}, sigma {args.sigma}, {args.rounds} alternating rounds")
    timings = {"one at a time": [], "side by side": []}
    for _ in range(args.rounds):
        start = time.perf_counter()
        slow = one_at_a_time(images, args.sigma)
        timings["one at a time"].append(time.perf_counter() - start)
        start = time.perf_counter()
        fast = evaluation.blur_images(images, args.sigma)
        timings["side by side"].append(time.perf_counter() - start)
        assert np.array_equal(slow, fast), "the two ways differ"
    start = time.perf_counter()
    trained = 2.9151  # the shipped CNN's recorded training faces
    sigma = evaluation.matching_blur(images, trained)
    matching = time.perf_counter() - start
    for name, seconds in timings.items():
        print(f"{name:>14}: " + ", ".join(f"{value:.3f}" for value in seconds) + " s")
    ratios = [slow / fast for slow, fast in zip(*timings.values())]
    print("ratio: " + ", ".join(f"{ratio:.1f}" for ratio in ratios))
    print(f"matching_blur to sharpness {trained}: sigma {sigma:g} in {matching:.2f} s")


if __name__ == "__main__":
    main()
