"""Atomic writes: a crash or a full disk never leaves a half-written file where a good one was.

Everything is written to a temporary file in the destination's folder, flushed to disk and
renamed over it with ``os.replace``, which is atomic on POSIX and Windows. A process killed
mid-write (SIGKILL, power cut) can leave only a hidden temporary ``.<name>.<random>.tmp<ext>``
beside the destination, never a damaged destination; ``remove_leftovers`` clears those.
"""

import contextlib
import json
import os
import re
import tempfile

from ferkit.errors import FerError

# The names atomic_path gives its temporary files: ".<base>.<random>.tmp<extension>".
LEFTOVER = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")


@contextlib.contextmanager
def atomic_path(path, force=True):
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    With ``force`` False an existing ``path`` is refused before anything is written. If the
    block raises (or is interrupted), ``path`` is untouched and the temporary file removed.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise FerError(f"{path}: is a folder, expected a file name")
    _refuse_folder_name(path)
    if not force and os.path.exists(path):
        raise FerError(f"{path}: already exists (pass --force to overwrite it)")
    folder = os.path.dirname(os.path.abspath(path))
    base, extension = os.path.splitext(os.path.basename(path))
    try:
        os.makedirs(folder, exist_ok=True)
        # Keep the extension: Keras and matplotlib choose the format from it.
        handle, temporary = tempfile.mkstemp(
            prefix=f".{base}.", suffix=f".tmp{extension}", dir=folder
        )
    except OSError as error:  # named by the user's path, not the hidden temporary one
        raise FerError(f"{path}: cannot be written ({error.strerror or error})") from None
    os.close(handle)
    try:
        yield temporary
        # mkstemp makes the file private; give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        # Without the flush a power cut soon after the rename can leave an empty file.
        _flush_to_disk(temporary)
        os.replace(temporary, path)
        _flush_to_disk(folder)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def check_utf8_name(path, below=None):
    """Refuse a path that is not UTF-8 text (Python keeps such bytes as surrogates), or only
    its part below the folder ``below``, naming the first file or folder at fault: OpenCV
    crashed opening it (a segmentation fault), and a CSV row naming it could not be written."""
    path = os.fspath(path)
    try:
        (os.path.relpath(path, below) if below else path).encode("utf-8")
        return
    except UnicodeEncodeError:
        pass
    parts = path.split(os.sep)
    for count in range(1, len(parts) + 1):
        named = os.sep.join(parts[:count])
        try:
            named.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(named).decode("utf-8", "backslashreplace")
            raise FerError(f"{shown}: its name is not UTF-8 text; rename it") from None


def is_inside(path, folder):
    """Whether ``path`` is ``folder`` or below it, links resolved."""
    folder = os.path.realpath(folder)
    return os.path.commonpath([folder, os.path.realpath(path)]) == folder


def check_writable(path):
    """Refuse, before any work, a file that could not be written later: one whose folder
    is a file, or whose nearest existing folder cannot be written in (tried with a nameless
    temporary file, which permission bits alone do not tell for root or a read-only disk)."""
    _refuse_folder_name(path)
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):  # the missing folders are made when it is written
        if os.path.dirname(folder) == folder:  # a missing drive or share is its own parent
            raise FerError(f"{path}: cannot be written (no such drive or folder)")
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise FerError(f"{path}: cannot be written ({folder} is a file, not a folder)")
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        raise FerError(f"{path}: cannot be written in {folder} ({error.strerror})") from None


def _refuse_folder_name(path):
    # "new/" names a folder that is not there yet: abspath drops the slash, so the file was
    # written beside it and the rename failed after the work, naming the temporary file.
    path = os.fspath(path)
    if path.endswith(tuple(separator for separator in (os.sep, os.altsep) if separator)):
        raise FerError(f"{path}: ends with {path[-1]!r}, a folder's name; expected a file name")


def _flush_to_disk(path):
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:  # a folder cannot be opened on Windows; the rename is still atomic
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def remove_leftovers(folder):
    """Delete temporary files that a killed atomic write left in ``folder``; their names."""
    removed = []
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            if LEFTOVER.match(name) and os.path.isfile(os.path.join(folder, name)):
                os.remove(os.path.join(folder, name))
                removed.append(name)
    return removed


def write_text(path, text, force=True):
    with (
        atomic_path(path, force=force) as temporary,
        open(temporary, "w", encoding="utf-8") as file,
    ):
        file.write(text)


def write_bytes(path, content, force=True):
    with atomic_path(path, force=force) as temporary, open(temporary, "wb") as file:
        file.write(content)


def write_json(path, data, force=True):
    # Serialised before the file is opened: an unserialisable value leaves nothing behind.
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n", force=force)


def read_json(path):
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except FileNotFoundError:
        raise FerError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise FerError(f"{path}: is a folder, expected a JSON file") from None
    except UnicodeDecodeError:
        raise FerError(f"{path}: not a JSON file (not UTF-8 text)") from None
    except json.JSONDecodeError as error:
        raise FerError(f"{path}: line {error.lineno}: not valid JSON ({error.msg})") from None
