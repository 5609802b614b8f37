"""What every script shares: one-line errors with exit status 2, never a traceback.

Exit statuses: 0 done; 2 bad input or options (``prog: error: message``, nothing written);
130 stopped by Ctrl-C (SIGINT), the shell's convention, so that ``a && b`` stops too and
a wrapper can tell an interruption from a mistake; 143 stopped by SIGTERM (``kill``, a job
scheduler's time limit), which stops a run as Ctrl-C does, saying how to resume it; 141 the
reader of its output went away (``| head``), quietly, as the shell reports a program stopped
by SIGPIPE.
"""

import argparse
import os
import re
import signal
import sys
import threading

from ferkit.errors import FerError

INTERRUPTED = 130
TERMINATED = 143
PIPE_CLOSED = 141
# The SIGTERMs received, which end a run as a Ctrl-C does, with their own status.
_terminations = []


def _terminate(number, frame):
    _terminations.append(number)
    raise KeyboardInterrupt  # training keeps the last epoch and says how to resume


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr (exit status 2), like any FerError."""

    def error(self, message):
        # "--weights -1,2": argparse takes -1,2 for an option and reports the value missing.
        match = re.fullmatch(r"argument (--[\w-]+)(/-\w)?: expected one argument", message)
        arguments = sys.argv[1:]
        if match and match.group(1) in arguments:
            option = match.group(1)
            after = arguments[arguments.index(option) + 1 :]
            if after and after[0].startswith("-"):
                message += f" (a value that starts with '-' is given as {option}={after[0]})"
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_args(self, args=None, namespace=None):
        parsed = super().parse_args(args, namespace)
        # An empty value ("--val-data $VAL" with VAL unset) read as the option left out: the
        # run validated on a split of --data instead, and --out "" wrote to ./models.
        # Blank too: --name "  " made a folder named with two spaces.
        for action in self._actions:
            value = getattr(parsed, action.dest, None)
            values = value if isinstance(value, list) else [value]
            if any(isinstance(item, str) and not item.strip() for item in values):
                name = "/".join(action.option_strings) or action.metavar or action.dest
                self.error(f"{name}: an empty value; give one, or leave the option out")
        return parsed


def run(main):
    """Call ``main()``; a FerError becomes ``prog: error: message`` and exit status 2.

    An error that carries its own ``exit_status`` (training's interruption, 130) is printed
    as ``prog: message``: it reports what happened, it is not the user's mistake.
    """
    _terminations.clear()
    catching = threading.current_thread() is threading.main_thread()
    catching = catching and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    if catching:
        signal.signal(signal.SIGTERM, _terminate)
    try:
        try:
            _run(main)
        except SystemExit:  # an error's status, or argparse's --help
            sys.stdout.flush()
            raise
        # Output still buffered (stdout to a pipe is block-buffered) is written here, where
        # a reader gone away is caught, not in Python's flush at exit ("Exception ignored").
        sys.stdout.flush()
    except BrokenPipeError:
        # "confusion.py ... | head -1": the figure was written, and the reader wanted no more
        # lines. Not "error: Broken pipe" (status 2 says nothing was written), and stdout
        # pointed elsewhere so that Python's flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(PIPE_CLOSED)
    finally:
        if catching:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run(main):
    prog = sys.argv[0].rsplit("/", 1)[-1]
    try:
        main()
    except FerError as error:
        status = getattr(error, "exit_status", 2)
        prefix = "error: " if status == 2 else ""
        print(f"{prog}: {prefix}{error}", file=sys.stderr)
        sys.exit(TERMINATED if status == INTERRUPTED and _terminations else status)
    except KeyboardInterrupt:
        print(f"{prog}: {'terminated' if _terminations else 'interrupted'}", file=sys.stderr)
        sys.exit(TERMINATED if _terminations else INTERRUPTED)
    except BrokenPipeError:
        raise  # run's: not a user's mistake
    except OSError as error:
        # A full disk or a folder without write permission: the system's words, one line.
        where = f"{error.filename}: " if error.filename else ""
        print(f"{prog}: error: {where}{error.strerror or error}", file=sys.stderr)
        sys.exit(2)


# Keep the docstrings' example command lines as they are written.
RawHelp = argparse.RawDescriptionHelpFormatter
