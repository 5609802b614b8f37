"""ferkit: train, evaluate, explain and ensemble facial-expression classifiers on FER2013."""

import os

# On a 2-core CPU, TensorFlow's default of running independent ops in parallel on top of
# 2 intra-op threads oversubscribes the cores: one inter-op thread trained the CNN 1.6x faster
# (bench/RESULTS.md). Set before TensorFlow is imported; a user's own setting wins.
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ferkit import backend  # noqa: E402  (loads Keras and its backend, quietly)

__version__ = "0.1.0"
__all__ = ["backend"]
