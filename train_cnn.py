"""Train the report's VGG-style CNN (3,532,743 parameters) on FER2013.

    python train_cnn.py --data data/train.csv
    python train_cnn.py --data data/fer2013.csv --epochs 50 --batch-size 256
    python train_cnn.py --data data/train.csv --preset best --seeds 1 2 3
    python train_cnn.py --resume models/cnn_20261128-101500

Each run lands in models/<run>/: command.txt, config.json, model.keras (best epoch),
history.csv, metrics.json and a checkpoint for --resume.
"""

from ferkit import cli, training


def main():
    parser = cli.ArgumentParser(description=__doc__, formatter_class=cli.RawHelp)
    training.add_arguments(parser, "cnn")
    training.main(parser.parse_args(), "cnn")


if __name__ == "__main__":
    cli.run(main)
