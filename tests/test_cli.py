"""How every script ends: one line on stderr and a documented exit status, never a traceback."""

import os
import subprocess
import sys

import pytest
from conftest import REPOSITORY

from ferkit import cli, training
from ferkit.errors import FerError


@pytest.mark.parametrize(
    "raised, status, line",
    [
        (FerError("data.csv: line 3: label 9 is outside 0-6"), 2,
         "x.py: error: data.csv: line 3: label 9 is outside 0-6"),
        (OSError(28, "No space left on device", "/full/sub.csv"), 2,
         "x.py: error: /full/sub.csv: No space left on device"),
        (KeyboardInterrupt(), 130, "x.py: interrupted"),
        (training.TrainingInterruptedError("interrupted during epoch 2; epoch 1 is saved."), 130,
         "x.py: interrupted during epoch 2; epoch 1 is saved."),
    ],
)  # fmt: skip
def test_scripts_end_in_one_line_and_a_documented_status(monkeypatch, capsys, raised, status, line):
    def main():
        raise raised

    monkeypatch.setattr(sys, "argv", ["/somewhere/x.py"])
    with pytest.raises(SystemExit) as exit_:
        cli.run(main)
    assert exit_.value.code == status
    assert capsys.readouterr().err.splitlines() == [line]


@pytest.mark.parametrize(
    "then, line",
    [
        (None, "x.py: terminated"),
        # Training's own message (where to resume), with SIGTERM's status.
        (training.TrainingInterruptedError("interrupted during epoch 2; resume with: …"),
         "x.py: interrupted during epoch 2; resume with: …"),
    ],
)  # fmt: skip
def test_sigterm_stops_a_script_as_ctrl_c_does_with_status_143(
    monkeypatch, capsys, then, line, ctrl_c_handled
):
    # A job scheduler's time limit (SIGTERM) ended a run silently, its resume command unsaid.
    import signal

    def main():
        try:
            signal.raise_signal(signal.SIGTERM)
        except KeyboardInterrupt:
            if then is None:
                raise
            raise then from None

    monkeypatch.setattr(sys, "argv", ["/somewhere/x.py"])
    with pytest.raises(SystemExit) as exit_:
        cli.run(main)
    assert exit_.value.code == 143
    assert capsys.readouterr().err.splitlines() == [line]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # as it was
    with pytest.raises(SystemExit) as exit_:  # a later Ctrl-C is a Ctrl-C again
        cli.run(lambda: signal.raise_signal(signal.SIGINT))
    assert exit_.value.code == 130


def test_a_value_starting_with_a_dash_is_shown_how_to_give_it(monkeypatch, capsys):
    parser = cli.ArgumentParser(prog="ensemble.py")
    parser.add_argument("--weights")
    monkeypatch.setattr(sys, "argv", ["ensemble.py", "--weights", "-1,2"])
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args()
    # argparse took -1,2 for an option and said only that the value was missing.
    assert exit_.value.code == 2 and capsys.readouterr().err == (
        "ensemble.py: error: argument --weights: expected one argument (a value that starts "
        "with '-' is given as --weights=-1,2)\n"
    )


@pytest.mark.parametrize(
    "arguments, name",
    [
        (["--val-data", ""], "--val-data"),
        (["--run-data", "a.csv", ""], "--run-data"),
        ([""], "RUN"),
        (["--val-data", "  "], "--val-data"),  # --name "  " made a folder of two spaces
    ],
)
def test_an_empty_value_is_refused_not_taken_for_no_option(capsys, arguments, name):
    parser = cli.ArgumentParser(prog="train_dnn.py")
    parser.add_argument("run", metavar="RUN", nargs="?")
    parser.add_argument("--val-data")
    parser.add_argument("--run-data", nargs="+")
    # "--val-data $VAL" with VAL unset validated on a split of --data instead, silently.
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(arguments)
    assert exit_.value.code == 2 and capsys.readouterr().err == (
        f"train_dnn.py: error: {name}: an empty value; give one, or leave the option out\n"
    )


@pytest.mark.parametrize(
    "body",
    [
        "    for number in range(10**6):\n        print(number)\n",  # while main() runs
        # Buffered until the script ends (stdout to a pipe is block-buffered): written by
        # Python's flush at exit, which said "Exception ignored ... BrokenPipeError", status 120.
        "    time.sleep(1)\n    print('a short answer')\n",
        "    time.sleep(1)\n    cli.ArgumentParser(description='x').parse_args(['-h'])\n",
    ],
)
def test_a_reader_that_stops_early_ends_the_script_quietly(body):
    # "confusion.py ... | head -1" printed "error: Broken pipe" with status 2 ("nothing
    # written") after writing its figure; with 2>&1, a Python message and status 1.
    script = f"import time\nfrom ferkit import cli\ndef main():\n{body}cli.run(main)\n"
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPOSITORY,
        env=environment,
    )
    process.stdout.close()  # as head does once it has its lines
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == cli.PIPE_CLOSED, stderr
    assert stderr == b""
