"""Plot training curves: accuracy (left) and loss (right), training blue, validation orange.

    python plot_history.py models/cnn_quick_seed1
    python plot_history.py models/cnn_a models/cnn_b models/dnn_a --out docs/figures/history.pdf

Reads each run's history.csv and marks its best epoch (metrics.json, or the best validation
accuracy so far for a run still training). Several runs are overlaid, one line style each.
The figure goes to <first run>/figures/history.png unless --out says otherwise.
"""

import os

from ferkit import cli, plots
from ferkit.errors import FerError, counted


def main():
    parser = cli.ArgumentParser(description=__doc__, formatter_class=cli.RawHelp)
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders (or their model files)")
    plots.add_out_arguments(parser)
    args = parser.parse_args()
    seen = set()
    for source in filter(os.path.exists, args.runs):  # a missing one: read_history names it
        folder = os.path.realpath(plots.run_folder(source))
        if folder in seen:  # drawn twice, the curves hid each other under two line styles
            raise FerError(f"{source}: the same run is given twice")
        seen.add(folder)
    histories = []
    for source in args.runs:
        history = plots.read_history(source)
        histories.append((plots.run_name(source), history, plots.best_epoch(source, history)))
    names = ", ".join(name for name, _, _ in histories)
    path = plots.figure_path(args.runs[0], "history", args.out, args.force, others=args.runs[1:])
    plots.save(plots.history_figure(histories, f"Training history: {names}"), path)
    for name, history, best in histories:
        rows = (history["epoch"] == best).nonzero()[0]
        scores = ""
        if len(rows):
            scores = (
                f" (val_accuracy {history['val_accuracy'][rows[0]]:.4f}, "
                f"val_loss {history['val_loss'][rows[0]]:.4f})"
            )
        epochs = counted(len(history["epoch"]), "epoch")
        print(f"{name}: {epochs}, best epoch {best}{scores}")
    print(f"wrote {path}")


if __name__ == "__main__":
    cli.run(main)
