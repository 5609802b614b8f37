"""Train the parameter-matched fully connected network (3,533,188 parameters) on FER2013.

    python train_dnn.py --data data/train.csv
    python train_dnn.py --data data/fer2013.csv --epochs 50 --batch-size 256
    python train_dnn.py --data data/train.csv --preset best --seeds 1 2 3
    python train_dnn.py --resume models/dnn_20261128-101500

Each run lands in models/<run>/: command.txt, config.json, model.keras (best epoch),
history.csv, metrics.json and a checkpoint for --resume.
"""

from ferkit import cli, training


def main():
    parser = cli.ArgumentParser(description=__doc__, formatter_class=cli.RawHelp)
    training.add_arguments(parser, "dnn")
    training.main(parser.parse_args(), "dnn")


if __name__ == "__main__":
    cli.run(main)
