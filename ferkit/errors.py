"""The one exception type for a user's mistake: scripts print its message and exit 2."""


class FerError(Exception):
    """Bad input or options: the message names the file (and line) and the problem."""


def shown(value):
    """A bad value as a message shows it: quoted if text ("0.1" from a file), and cut short
    if long, so that the message stays one readable line (10**400 has 401 digits)."""
    text = repr(value)
    if len(text) <= 40:
        return text
    if isinstance(value, str):  # its own characters counted, and cut whole: not "\x0…"
        cut = value[:19]
        while len(repr(cut)) > 22:  # escaped characters take 4 or more each
            cut = cut[:-1]
        return f"{cut!r}… ({len(value)} characters)"
    return f"{text[:20]}… ({len(text)} characters)"


def counted(count, noun):
    """'1 epoch', '2 epochs': a count as a message says it."""
    return f"{count} {noun}{'s' if count != 1 else ''}"
