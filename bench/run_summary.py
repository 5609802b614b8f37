"""One line per training run, from its own files: for the device scripts' last table.

    python bench/run_summary.py /tmp/runs/cnn_best_seed1 /tmp/runs/v_adam_lowdrop

Epochs run and whether the run finished (metrics.json written) or was stopped (during training
or in the final evaluation), the wall time (first epoch, which compiles, and the median of the
rest with its training images/s), the kept epoch's validation accuracy, the last epoch's
training accuracy, and the options typed.
"""

import os
import shlex
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ferkit import plots, runs  # noqa: E402
from ferkit.errors import FerError  # noqa: E402


def summary(run):
    if not os.path.isdir(run):
        return f"{run}: no run folder (the run never started)"
    history = plots.read_history(run)
    best = plots.best_epoch(run, history)
    seconds = history["seconds"]
    later = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    config = runs.run_config(run)
    if config is None:  # history.csv alone: a TypeError stopped the whole table
        raise FerError(f"no {runs.CONFIG_FILE}: not a whole run folder")
    if os.path.exists(os.path.join(run, runs.METRICS_FILE)):
        finished = "finished"
    elif len(seconds) >= config["epochs"]:
        # Every epoch trained, but the deadline came during the reload and evaluation of the
        # best model: the run is whole, only metrics.json is missing.
        finished = "all trained, stopped before its final evaluation"
    else:
        finished = "STOPPED"
    train_count = config["train_count"]
    with open(os.path.join(run, runs.COMMAND_FILE)) as file:
        command = shlex.split(file.readline())  # the command; resumes follow as comments
    # The options after the script (a run trained from another program: the whole line).
    script = next((i for i, word in enumerate(command) if word.endswith(".py")), -1)
    options = shlex.join(command[script + 1 :])
    if "--seeds" in command:  # one command made several runs: which one this is
        options += f" (this run: seed {config['seed']})"
    return (
        f"{plots.run_name(run)}: {len(seconds)} epochs ({finished}) in {seconds.sum():.0f} s "
        f"(first {seconds[0]:.1f} s, then {later:.2f} s each = {train_count / later:.0f} img/s), "
        f"best val {history['val_accuracy'][history['epoch'] == best][0]:.4f} at epoch {best}, "
        f"last train accuracy {history['accuracy'][-1]:.4f}  [{options}]"
    )


def main():
    for run in sys.argv[1:]:
        try:
            print(summary(run))
        except (FerError, OSError) as error:
            print(f"{run}: {error}")


if __name__ == "__main__":
    main()
