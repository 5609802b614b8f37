"""How the training faces were blurred: their spectrum against the test faces', no labels.

    python bench/blur_spectrum.py                  # ../shared/fer2013
    python bench/blur_spectrum.py --train data/train.csv --test data/test.csv

The training faces of ../shared/fer2013 are blurred and the test faces are not, so
``--blur SIGMA`` blurs test faces before prediction. This prints, per spatial frequency,
sqrt(training power / test power) — a blur's transfer function if one blur was applied to all
faces — beside Gaussians' (exp(-2 pi^2 sigma^2 f^2)), the sigma that fits best, and for a few
sigmas the test faces' sharpness and contrast once blurred, against the training faces'.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ferkit import data, evaluation  # noqa: E402

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fer2013")


def radial_power(images):
    """Mean power spectrum of (N, 48, 48) faces by integer radius (0-24 cycles per face)."""
    faces = images - images.mean(axis=(1, 2), keepdims=True)
    window = np.outer(np.hanning(48), np.hanning(48))  # against the edges' leakage
    power = (np.abs(np.fft.fftshift(np.fft.fft2(faces * window), axes=(1, 2))) ** 2).mean(0)
    rows, columns = np.indices(power.shape) - 24
    radius = np.sqrt(rows**2 + columns**2).round().astype(int)
    return np.array([power[radius == k].mean() for k in range(25)])


def sharpness(faces):
    """evaluation.sharpness for each of (N, 48, 48) faces: mean |vertical neighbour step|."""
    return np.abs(np.diff(faces, axis=1)).mean(axis=(1, 2))


def gaussian_response(sigma, frequency):
    return np.exp(-2 * np.pi**2 * sigma**2 * frequency**2)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", default=os.path.join(SHARED, "train.csv.gz"))
    parser.add_argument("--test", default=os.path.join(SHARED, "test.csv.gz"))
    parser.add_argument("--faces", type=int, default=6000, help="training faces to use")
    args = parser.parse_args()
    train = data.read_csv(args.train).images[: args.faces, :, :, 0].astype(np.float32)
    test_uint8 = data.read_csv(args.test).images
    test = test_uint8[:, :, :, 0].astype(np.float32)  # (N, 48, 48)

    ratio = np.sqrt(radial_power(train) / radial_power(test))
    frequency = np.arange(25) / 48  # cycles per pixel
    # Fit over 1-7 cycles per face: above that the training faces hold only rounding noise.
    fitted = np.arange(1, 8)
    sigmas = np.arange(1.5, 5.0, 0.01)
    errors = [
        np.sum((np.log(ratio[fitted]) - np.log(gaussian_response(s, frequency[fitted]))) ** 2)
        for s in sigmas
    ]
    print("cycles/face  train/test amplitude  Gaussian 2.5  3.0  3.5")
    for k in range(13):
        gauss = "  ".join(f"{gaussian_response(s, frequency[k]):.3f}" for s in (2.5, 3.0, 3.5))
        print(f"{k:11d}  {ratio[k]:20.3f}  {gauss}")
    print(f"best-fitting Gaussian over 1-7 cycles per face: sigma {sigmas[np.argmin(errors)]:.2f}")
    print(
        f"training faces: sharpness median {np.median(sharpness(train)):.2f}, "
        f"contrast (pixel std) {train.std(axis=(1, 2)).mean():.1f}"
    )
    for sigma in (0.0, 2.5, 3.0, 3.2, 3.5):
        blurred = evaluation.blur_images(test_uint8, sigma)[:, :, :, 0].astype(np.float32)
        median = np.median(sharpness(blurred))
        print(
            f"test faces, --blur {sigma:.1f}: sharpness median {median:.2f}, "
            f"contrast {blurred.std(axis=(1, 2)).mean():.1f}"
        )
    percentiles = (1, 50, 99)
    train_sharpness = np.percentile(sharpness(train), percentiles)
    test_sharpness = np.percentile(sharpness(test), percentiles)
    print(
        "sharpness percentiles 1/50/99: training "
        + "/".join(f"{value:.2f}" for value in train_sharpness)
        + ", test "
        + "/".join(f"{value:.2f}" for value in test_sharpness)
        + ", ratio "
        + "/".join(f"{a / b:.2f}" for a, b in zip(train_sharpness, test_sharpness))
    )


if __name__ == "__main__":
    main()
