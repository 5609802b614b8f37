"""Atomic writes: a crash or a full disk never leaves a half-written file where a good one was.

Everything is written to a temporary file in the destination's folder and renamed over it
with ``os.replace``, which is atomic on POSIX and Windows.
"""

import contextlib
import json
import os
import tempfile

from ferkit.errors import FerError


@contextlib.contextmanager
def atomic_path(path, force=True):
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    With ``force`` False an existing ``path`` is refused before anything is written.
    """
    path = os.fspath(path)
    if not force and os.path.exists(path):
        raise FerError(f"{path}: already exists (pass --force to overwrite it)")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base, extension = os.path.splitext(os.path.basename(path))
    # Keep the extension: Keras and matplotlib choose the format from it.
    handle, temporary = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{extension}", dir=folder)
    os.close(handle)
    try:
        yield temporary
        # mkstemp makes the file private; give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_text(path, text, force=True):
    with (
        atomic_path(path, force=force) as temporary,
        open(temporary, "w", encoding="utf-8") as file,
    ):
        file.write(text)


def write_json(path, data, force=True):
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n", force=force)


def read_json(path):
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except FileNotFoundError:
        raise FerError(f"{path}: no such file") from None
    except json.JSONDecodeError as error:
        raise FerError(f"{path}: line {error.lineno}: not valid JSON ({error.msg})") from None
