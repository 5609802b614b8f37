"""What a short training run costs before its steps: building the optimizer eagerly or not.

    python bench/run_start.py                          # DNN and CNN, 4 rounds
    python bench/run_start.py --networks dnn --rounds 8

In one process, alternating: a one-epoch run on 70 synthetic faces (63 train, 7 validation,
two batches of 32 and 31), with the optimizer's slot variables created as ferkit creates them
(``training._build_optimizer``, before fit) and as Keras would by itself (inside fit's first
traced step, ``_build_optimizer`` made a no-op). Prints each run's seconds and the medians.
Such runs are what most of the test suite trains, and every new run starts the same way.
"""

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPOSITORY)
sys.path.insert(0, os.path.join(REPOSITORY, "tests"))
from conftest import make_train_csv  # noqa: E402  (the tests' synthetic faces)

from ferkit import config as configuration  # noqa: E402
from ferkit import training  # noqa: E402


def one_run(train_csv, network, folder, eager):
    build = training._build_optimizer
    if not eager:
        training._build_optimizer = lambda training_model: None
    config = configuration.resolve(
        network, overrides={"data": train_csv, "epochs": 1, "precision": "float32"}
    )
    started = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            training.train(config, os.path.join(folder, f"{network}-{started}"), verbose=False)
    finally:
        training._build_optimizer = build
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--networks", nargs="+", default=["dnn", "cnn"], choices=["dnn", "cnn"])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        train_csv = make_train_csv(os.path.join(folder, "train.csv"), count=70)
        one_run(train_csv, "dnn", folder, eager=True)  # warm-up: imports, first graph
        for network in args.networks:
            seconds = {True: [], False: []}
            for round_index in range(args.rounds):
                # Alternate which goes first, so drift in the machine's speed hits both.
                for eager in (True, False) if round_index % 2 == 0 else (False, True):
                    seconds[eager].append(one_run(train_csv, network, folder, eager))
            for eager, label in ((True, "optimizer built before fit"), (False, "built in fit")):
                runs = ", ".join(f"{value:.2f}" for value in seconds[eager])
                print(
                    f"{network} {label}: median {statistics.median(seconds[eager]):.2f} s ({runs})"
                )
            saved = statistics.median(seconds[False]) - statistics.median(seconds[True])
            print(f"{network}: {saved:.2f} s saved per run")


if __name__ == "__main__":
    main()
