"""What every script shares: one-line errors with exit status 2, never a traceback."""

import argparse
import sys

from ferkit.errors import FerError


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr (exit status 2), like any FerError."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def run(main):
    """Call ``main()``; a FerError becomes ``prog: error: message`` and exit status 2."""
    try:
        main()
    except FerError as error:
        print(f"{sys.argv[0].rsplit('/', 1)[-1]}: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


# Keep the docstrings' example command lines as they are written.
RawHelp = argparse.RawDescriptionHelpFormatter
