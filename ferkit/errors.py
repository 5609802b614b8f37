"""The one exception type for a user's mistake: scripts print its message and exit 2."""


class FerError(Exception):
    """Bad input or options: the message names the file (and line) and the problem."""
