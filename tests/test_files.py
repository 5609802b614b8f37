"""Atomic writes: a failed or killed write never damages the file it replaces."""

import os
import stat
from pathlib import Path

import pytest

from ferkit import files
from ferkit.errors import FerError


def leftovers(folder):
    return [name for name in os.listdir(folder) if files.LEFTOVER.match(name)]


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path, failure):
    target = tmp_path / "model.keras"
    target.write_bytes(b"the good old model")
    with pytest.raises(type(failure)), files.atomic_path(target) as temporary:
        Path(temporary).write_bytes(b"half a mod")
        raise failure
    assert target.read_bytes() == b"the good old model"
    assert leftovers(tmp_path) == [] and os.listdir(tmp_path) == ["model.keras"]


def test_failed_json_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "state.json"
    files.write_json(target, {"epoch": 1})
    before = target.read_bytes()
    with pytest.raises(TypeError):
        files.write_json(target, {"epoch": 2, "unserialisable": object()})
    assert target.read_bytes() == before and leftovers(tmp_path) == []


def test_leftovers_of_a_killed_write_are_recognised(tmp_path):
    for name in (".model.k2j4_x9q.tmp.keras", ".history.abcdefgh.tmp.csv", ".state.a1b2c3d4.tmp"):
        (tmp_path / name).write_text("partial")
    for name in ("model.keras", ".hidden", "notes.tmp.txt"):
        (tmp_path / name).write_text("keep")
    removed = files.remove_leftovers(tmp_path)
    assert removed == [
        ".history.abcdefgh.tmp.csv",
        ".model.k2j4_x9q.tmp.keras",
        ".state.a1b2c3d4.tmp",
    ]
    assert sorted(os.listdir(tmp_path)) == [".hidden", "model.keras", "notes.tmp.txt"]


def test_a_write_that_cannot_start_names_the_destination_not_the_temporary(tmp_path):
    (tmp_path / "a_file").write_text("in the way")
    target = tmp_path / "a_file" / "sub" / "out.csv"
    with pytest.raises(FerError, match=f"^{target}: cannot be written \\("):
        files.write_text(target, "rows")


def test_check_writable_refuses_a_file_in_the_path_and_makes_nothing(tmp_path):
    (tmp_path / "a_file").write_text("in the way")
    target = tmp_path / "a_file" / "sub" / "out.csv"
    with pytest.raises(FerError) as error:
        files.check_writable(target)
    assert (
        str(error.value)
        == f"{target}: cannot be written ({tmp_path / 'a_file'} is a file, not a folder)"
    )
    files.check_writable(tmp_path / "new" / "folders" / "out.csv")  # made when written
    assert sorted(os.listdir(tmp_path)) == ["a_file"]


def test_a_path_ending_in_a_slash_is_refused_as_a_folder_name(tmp_path):
    target = f"{tmp_path / 'new'}/"
    message = f"^{target}: ends with '/', a folder's name; expected a file name$"
    with pytest.raises(FerError, match=message):
        files.check_writable(target)
    with pytest.raises(FerError, match=message):  # wrote beside it, then the rename failed
        files.write_text(target, "rows")
    assert os.listdir(tmp_path) == []


def test_check_writable_ends_at_a_missing_drive(tmp_path, monkeypatch):
    # On Windows a missing drive's root (Q:\\) is its own parent and does not exist: the
    # search for the nearest existing folder never ended.
    monkeypatch.setattr(files.os.path, "exists", lambda path: False)
    with pytest.raises(FerError, match="cannot be written \\(no such drive or folder\\)"):
        files.check_writable(tmp_path / "out.csv")


def test_check_writable_tries_the_folder_itself(tmp_path, monkeypatch):
    # Permission bits do not tell for root or a read-only disk: a nameless file is tried.
    def refused(**_):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files.tempfile, "TemporaryFile", refused)
    with pytest.raises(FerError) as error:
        files.check_writable(tmp_path / "out.csv")
    assert (
        str(error.value)
        == f"{tmp_path / 'out.csv'}: cannot be written in {tmp_path} (Permission denied)"
    )


def test_an_atomic_write_gets_the_permissions_a_plain_open_gives(tmp_path):
    plain = tmp_path / "plain.csv"
    plain.write_text("x")  # open() creates it as 0o666 less the umask
    with files.atomic_path(tmp_path / "atomic.csv") as temporary:
        Path(temporary).write_text("x")
    # mkstemp's own 0o600 would hide a submission or a run from the user's group.
    assert stat.S_IMODE(os.stat(tmp_path / "atomic.csv").st_mode) == stat.S_IMODE(
        os.stat(plain).st_mode
    )


def test_a_name_that_is_not_utf8_is_named_where_it_is_at_fault(tmp_path):
    folder = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"caf\xe9"))
    path = os.path.join(folder, "0.png")
    # Below a folder of such a name, 0.png itself is fine: only the part below it is checked.
    files.check_utf8_name(path, below=folder)
    with pytest.raises(FerError, match=r"caf\\xe9: its name is not UTF-8 text; rename it$"):
        files.check_utf8_name(path)  # it blamed 0.png
