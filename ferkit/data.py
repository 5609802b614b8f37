"""Reading FER2013 in the forms people have it, and carving the validation split.

Three CSV forms are accepted, plain or gzipped:

- Kaggle's in-class competition: ``train.csv`` (``label,feature``) and ``test.csv``
  (``id,feature``);
- the original ``fer2013.csv`` (``emotion,pixels,Usage``, Usage being Training, PublicTest
  or PrivateTest);
- ``icml_face_data.csv`` (the same, with a space before each column name).

Every reader returns uint8 images of shape (N, 48, 48, 1). Pixels stay 0-255 here: the
division by 255 happens in exactly one place, the model's own ``Rescaling`` layer.
"""

import gzip
import hashlib
import mmap
import os
import re
import signal
import sys
import warnings
import zlib
from dataclasses import dataclass

import numpy as np

from ferkit.errors import FerError, counted, shown
from ferkit.files import check_utf8_name, is_inside

IMAGE_SIZE = 48
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE
CLASS_NAMES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
NUM_CLASSES = len(CLASS_NAMES)
USAGES = ("Training", "PublicTest", "PrivateTest")

# Column names of each form, after stripping the spaces icml_face_data.csv puts in front.
LABEL_COLUMNS = ("label", "emotion")
PIXEL_COLUMNS = ("feature", "pixels")
# The files an image folder's faces may be in (ferkit.faces reads them with OpenCV).
# OpenCV reads each (a .gif's first frame); a face saved as one was left out without a word.
IMAGE_EXTENSIONS = (
    *(".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".pgm", ".ppm", ".tif", ".tiff"),
    *(".webp", ".gif"),
)


def file_stem(name):
    """An image's file name less its folders and extension: 'sad/12.png' gives '12'."""
    return name.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def numbered_names(names):
    """Whether every image file name (less folders and extension) is a number, no two the
    same: then the numbers are the images' ids (Kaggle's test faces saved as 0.png, 1.png…)."""
    stems = [file_stem(name) for name in names]
    # isdecimal, not isdigit: '²' is a digit that int() refuses.
    if not all(stem.isdecimal() for stem in stems):
        return False
    numbers = [int(stem) for stem in stems]
    # Ids are int64: a larger number is a name (it overflowed sorting the ids).
    return max(numbers, default=0) < 2**63 and len(set(numbers)) == len(numbers)


@dataclass
class FerData:
    """Images from one file: ``labels`` is None for an unlabelled (test) file."""

    images: np.ndarray  # (N, 48, 48, 1) uint8
    labels: np.ndarray | None  # (N,) int64 in 0..6
    ids: np.ndarray  # (N,) int64: the file's ids, or row numbers where it has none
    path: str
    # The image-folder form (ferkit.faces.read_image_folder) keys images by file name: their
    # paths relative to the folder. None for CSVs; a default, so existing calls stay valid.
    names: list | None = None

    def __len__(self):
        return len(self.images)


def _gzip_twin(path):
    """' (there is data/train.csv.gz)' where the file missing is a CSV kept gzipped (or the
    other way round): the README's commands say data/train.csv, and both are read alike."""
    twin = path[: -len(".gz")] if path.endswith(".gz") else path + ".gz"
    return f" (there is {twin})" if os.path.isfile(twin) else ""


def _read_bytes(path):
    """The file's bytes, gunzipped where it is gzip (by content, not by name)."""
    if not os.path.exists(path):
        raise FerError(f"{path}: no such file{_gzip_twin(path)}")
    if os.path.isdir(path):
        raise FerError(f"{path}: is a directory, expected a CSV file")
    # By name: an ASCII PGM holds no NUL byte, and was read as a CSV with no pixel column.
    if os.fspath(path).lower().endswith(IMAGE_EXTENSIONS):
        raise FerError(f"{path}: is one image; expected a CSV file or a folder of images")
    with open(path, "rb") as file:
        raw = file.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = _gunzip(raw)
        except (EOFError, OSError, zlib.error):
            raise FerError(f"{path}: gzip file is truncated or corrupt") from None
        if raw[:2] == b"\x1f\x8b":  # was "not a CSV text file (it holds NUL bytes …)"
            raise FerError(f"{path}: is gzipped twice: gunzip it once")
    if b"\x00" in raw[:4096]:  # text has none; a model file given as --test printed 32 KB
        raise FerError(
            f"{path}: not a CSV text file (it holds NUL bytes: binary data, or UTF-16 text "
            "to be saved as UTF-8)"
        )
    return raw


def _gunzip(raw, limit=None):
    """The text of gzip bytes ``raw``, or its first ``limit`` bytes."""
    # isal decompresses about 2.5x faster than zlib; both give the same bytes.
    try:
        from isal import igzip, isal_zlib
    except ImportError:
        igzip, isal_zlib = gzip, zlib
    try:
        if limit is None:
            return igzip.decompress(raw)
        return isal_zlib.decompressobj(31).decompress(raw, limit)  # 31: a gzip header
    except isal_zlib.error as error:  # isal's is no zlib.error: a corrupt file was a traceback
        raise zlib.error(str(error)) from None


def file_sha256(path):
    """SHA-256 of a file; of an image folder, of its images' relative paths and contents
    (other files, such as .DS_Store, do not count)."""
    digest = hashlib.sha256()
    if os.path.isdir(path):
        for relative in sorted(images_under(path)):
            if not os.path.isfile(os.path.join(path, relative)):
                continue  # a broken link: no face, and reading the folder skipped it
            digest.update(relative.encode("utf-8") + b"\0")
            digest.update(file_sha256(os.path.join(path, relative)).encode("ascii"))
        return digest.hexdigest()
    check_hashable(path)
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_hashable(path):
    """Refuse a data file that is neither a file nor a folder: a pipe, which ``file_sha256``
    would find empty after the data was read from it."""
    if os.path.exists(path) and not (os.path.isfile(path) or os.path.isdir(path)):
        raise FerError(
            f"{path}: not a regular file (a pipe?): its SHA-256 is recorded, and it is read "
            "again later: save it as a file first"
        )


def content_sha256s(path, file_digest=None):
    """The SHA-256s that identify ``path``'s rows: ``file_sha256`` (``file_digest`` when the
    caller has it) and, for a gzip file, that of its text too, since a gzipped copy of the CSV
    a run recorded holds the same rows."""
    digests = {file_digest or file_sha256(path)}
    if os.path.isfile(path):
        with open(path, "rb") as file:
            gzipped = file.read(2) == b"\x1f\x8b"
        if gzipped:
            digests.add(_text_sha256(path))
    return digests


# Unpacking FER2013's train.csv.gz to hash its text takes seconds, and one command can ask
# for it once per member (an ensemble's --run-data, then each member's validation split).
_TEXT_SHA256S = {}


def _text_sha256(path):
    """SHA-256 of a gzip file's text, remembered while the file is unchanged."""
    status = os.stat(path)
    key = (os.path.realpath(path), status.st_ino, status.st_size, status.st_mtime_ns)
    if key not in _TEXT_SHA256S:
        _TEXT_SHA256S[key] = hashlib.sha256(_read_bytes(path)).hexdigest()
    return _TEXT_SHA256S[key]


def holds_sha256(path, digest, file_digest=None):
    """Whether ``path``'s rows are those recorded as ``digest`` (see ``content_sha256s``).
    The file's own hash first: only a file that differs is unpacked to hash its text."""
    file_digest = file_digest or file_sha256(path)
    return digest == file_digest or digest in content_sha256s(path, file_digest)


def is_image_entry(entry):
    """Whether a ``os.scandir`` entry is named as an image and is a file, or a broken link
    (read, it is skipped as unreadable); not a pipe or a device, nor a link to one, which
    reading would wait on. The entry's cached type spares a file a stat of its own: one each
    added a quarter to reading a folder of FER2013's 28,709 faces."""
    if not entry.name.lower().endswith(IMAGE_EXTENSIONS):
        return False
    return entry.is_file() or (entry.is_symlink() and not os.path.exists(entry.path))


# Class folders as an image folder names them, in any case.
CLASS_FOLDERS = frozenset(name.lower() for name in CLASS_NAMES)


def is_linked_class_folder(entry):
    """Whether an ``os.scandir`` entry of an image folder is a class folder that links
    elsewhere (to save disk space): reading follows it, so hashing and output checks do."""
    return entry.name.lower() in CLASS_FOLDERS and entry.is_symlink() and entry.is_dir()


def is_inside_images(path, folder):
    """Whether ``path`` is inside the image folder ``folder``, or inside one of its class
    folders that link elsewhere (``is_linked_class_folder``; no other link: a hidden link
    to its parent refused every output beside it)."""
    if not folder or not os.path.isdir(folder):
        return False
    with os.scandir(folder) as entries:
        linked = [entry.path for entry in entries if is_linked_class_folder(entry)]
    return any(is_inside(path, place) for place in [folder, *linked])


def check_outside_images(path, folder, where, writes="it", advice="", named=None):
    """Refuse an output ``path`` (``named`` in the message) inside the image folder
    ``folder`` (described as ``where``): it would replace one of its faces (with --force)
    or be read as a new one the next time."""
    if is_inside_images(path, folder):
        raise FerError(
            f"{named or path}: is inside {where}, whose images {writes} would replace or join; "
            f"{advice}"
        )


def images_under(folder):
    """Paths, relative to ``folder``, of the image files at any depth below it
    (``is_image_entry``; as os.walk, not below a link to a folder, but for a class folder
    linked to save disk space, which reading follows; nor in a folder that cannot be
    listed); a name below it that is not UTF-8 text is refused (its SHA-256, ids and CSV
    rows are written as UTF-8)."""
    pending = [""]
    while pending:
        below = pending.pop()
        try:
            entries = list(os.scandir(os.path.join(folder, below)))
        except OSError:
            continue
        for entry in entries:
            relative = os.path.join(below, entry.name)
            # Linked class folders were hashed as nothing: every such folder had one SHA-256.
            # Only those: a link to its parent, or to /usr, walked all of it.
            if entry.is_dir(follow_symlinks=False) or not below and is_linked_class_folder(entry):
                pending.append(relative)
            elif is_image_entry(entry):
                if not relative.isascii():
                    check_utf8_name(entry.path, below=folder)
                yield relative


def holds_training_rows(path):
    """Whether a fer2013.csv (one with a Usage column) has Training rows: pixels and labels
    are digits, so the word appears only as a Usage value."""
    return has_usage_column(path) and b"Training" in _read_bytes(path)


def has_usage_column(path):
    """Whether a CSV file's header names a Usage column (fer2013.csv's three splits), from its
    first 64 KiB; False for anything else, whose problems read_csv names."""
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as file:
        start = file.read(1 << 16)
    if start[:2] == b"\x1f\x8b":
        try:
            start = _gunzip(start, limit=1 << 16)
        except (EOFError, OSError, zlib.error):
            return False
    return "Usage" in _columns(start.split(b"\n", 1)[0])


def read_any(path, usage=None, require_labels=None):
    """``read_csv`` for a file, ``ferkit.faces.read_image_folder`` for a folder.

    A separate entry point, so that ``read_csv`` keeps refusing a folder with its own message.
    """
    if not os.path.isdir(path):
        return read_csv(path, usage=usage, require_labels=require_labels)
    from ferkit import faces  # imported here: faces imports this module, and OpenCV

    if usage is not None:
        raise FerError(f"{path}: --usage needs a fer2013.csv file, not an image folder")
    dataset = faces.read_image_folder(path)
    if require_labels and dataset.labels is None:
        raise FerError(
            f"{path}: has no class sub-folders (angry/, happy/, ...): this looks like a test "
            "folder, but labelled images are needed here"
        )
    return dataset


def read_csv(path, usage=None, require_labels=None):
    """Read any of the three CSV forms.

    ``usage`` (fer2013.csv forms only) keeps the rows of one split, or of several given as a
    list. ``require_labels`` True refuses a test file, False refuses nothing, None takes
    either. Raises FerError with the file, line and problem for bad input.
    """
    early = _EarlyParse.start(path)
    try:
        return _read_csv(path, usage, require_labels, early)
    finally:
        if early is not None:
            early.close()


def _read_csv(path, usage, require_labels, early):
    raw = _read_bytes(path)
    if _blank(raw):
        raise FerError(f"{path}: file is empty")
    try:
        text_start = raw.index(b"\n") + 1
    except ValueError:
        if b"\r" in raw.strip():  # an old Mac's line ends: was "a header but no rows"
            raise FerError(f"{path}: its lines end in CR only: save it with LF line ends") from None
        raise FerError(f"{path}: has a header but no rows") from None
    if _blank(raw[:text_start]):  # was "no pixel column: … found " (nothing)
        raise FerError(f"{path}: line 1 is blank: the first line must name the columns")
    # CR line ends then a last LF: the whole file is one line (a quoted "\r" in a header
    # with rows after it is not).
    if b"\r" in raw[:text_start].rstrip() and _blank(raw[text_start:]):
        raise FerError(f"{path}: its lines end in CR only: save it with LF line ends")
    columns = _columns(raw[:text_start])
    if columns[0].lstrip("-").isdigit():
        raise FerError(
            f"{path}: line 1: no header: the first line must name the columns "
            "(label,feature or id,feature or emotion,pixels,Usage)"
        )
    if _blank(raw[text_start : text_start + 4096]) and _blank(raw[text_start:]):
        raise FerError(f"{path}: has a header but no rows")
    pixel_column = next((name for name in PIXEL_COLUMNS if name in columns), None)
    label_column = next((name for name in LABEL_COLUMNS if name in columns), None)
    if pixel_column is None:
        raise FerError(
            f"{path}: no pixel column: expected 'feature' or 'pixels', found {_listed(columns)}"
        )
    if require_labels and label_column is None:
        raise FerError(
            f"{path}: has no label column (found {_listed(columns)}): this looks like a test "
            "file, but labelled images (label,feature or emotion,pixels) are needed here"
        )
    if usage is not None and "Usage" not in columns:
        raise FerError(f"{path}: --usage needs a 'Usage' column, found {_listed(columns)}")
    # Before the rows are parsed (seconds for FER2013), as every mistake in the header is.
    wanted = [usage] if isinstance(usage, str) else list(usage or [])
    unknown = [name for name in wanted if name not in USAGES]
    if unknown:
        raise FerError(f"unknown usage {unknown[0]!r}: expected one of {', '.join(USAGES)}")
    first_name = columns[0]
    if label_column is not None and first_name != label_column:
        raise FerError(f"{path}: the label column must come first, found {_listed(columns)}")
    if label_column is None and "id" in columns and first_name != "id":
        # Its ids were left unread: the submission numbered the rows 0, 1, 2 instead.
        raise FerError(f"{path}: the id column must come first, found {_listed(columns)}")

    fast = columns in FAST_COLUMNS and raw.find(b'"', text_start) < 0
    values = _parse_two_numeric_columns(raw, text_start, early) if fast else None
    if values is not None:
        first_column, images = values
        usages = None
    else:
        first_column, images, usages = _parse_rows(path, raw[text_start:], columns, pixel_column)

    labels = None
    if label_column is not None:
        labels = first_column
        bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
        if bad.size:
            line = _line_of_row(raw[text_start:], bad[0])
            raise FerError(
                f"{path}: line {line}: label {labels[bad[0]]} is outside 0-{NUM_CLASSES - 1}"
            )
        ids = np.arange(len(images), dtype=np.int64)
    elif first_name == "id":
        ids = first_column
        unique_ids, first_index, counts = np.unique(ids, return_index=True, return_counts=True)
        if (counts > 1).any():
            duplicate = unique_ids[counts > 1][0]
            second = np.flatnonzero(ids == duplicate)[1]
            line = _line_of_row(raw[text_start:], second)
            raise FerError(f"{path}: line {line}: duplicate id {duplicate}")
    else:
        ids = np.arange(len(images), dtype=np.int64)

    if usage is not None:
        keep = np.isin(usages, wanted)
        if not keep.any():
            raise FerError(f"{path}: no rows with Usage {' or '.join(wanted)}")
        images, ids = images[keep], ids[keep]
        labels = labels[keep] if labels is not None else None
    return FerData(images=images, labels=labels, ids=ids, path=str(path))


def _line_of_row(body, row):
    """The line number (the header's is 1) of data row ``row`` (0 first) of ``body``, the text
    after the header: the parsers skip blank lines, which a row's index does not count."""
    rows = -1
    # Decoded, as the careful parser reads it: a line of a no-break space is blank there.
    for line_number, line in enumerate(body.decode("utf-8", "replace").split("\n"), start=2):
        if line.strip():
            rows += 1
            if rows == row:
                return line_number
    return row + 2


def _blank(text):
    """``not text.strip()`` without copying: strip() copies hundreds of MB to find one byte."""
    return not text or text.isspace()


KNOWN_COLUMNS = {name.lower(): name for name in (*LABEL_COLUMNS, *PIXEL_COLUMNS, "id", "Usage")}
FAST_COLUMNS = (["label", "feature"], ["id", "feature"], ["emotion", "pixels"])
# Files of this much text have their first part parsed by a forked process while this one
# decompresses the whole file and parses the rest: np.fromstring holds the GIL, so threads
# would take turns, and gunzip is serial. The child's share balances its parse against
# this process's gunzip plus parse (bench/RESULTS.md).
PARALLEL_BYTES = 16 * 2**20
CHILD_SHARE = 0.55


def _listed(columns, limit=80):
    """Columns as a message shows them: joined, control characters escaped, cut short."""
    text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in ", ".join(columns))
    return text if len(text) <= limit else text[:limit] + "..."


def _columns(header_line):
    """A header's column names, the known ones spelled as FER2013's files do whatever their
    case: a lowercase "usage" column was not seen, and its test rows were trained on."""
    header = header_line.decode("utf-8", "replace").strip().lstrip("\ufeff")
    names = [name.strip().strip('"').strip() for name in header.split(",")]
    return [KNOWN_COLUMNS.get(name.lower(), name) for name in names]


def _parse_two_numeric_columns(raw, text_start, early=None):
    """The fast path for 'number,pixels' rows after ``text_start``: (first column, images)
    or None, in which case the careful row-by-row parser finds and names the problem.

    ``early``: an ``_EarlyParse`` whose child has parsed the rows that start in
    ``raw[:early.prefix]``; only the rest is parsed here.
    """
    cut = early.cut(raw) if early is not None else None
    if cut is None or cut <= text_start:
        return _parse_numeric_chunk(raw[text_start:])
    own = _parse_numeric_chunk(raw[cut:])
    theirs = early.result(cut) if own is not None else None
    if theirs is None and own is not None:
        # The child found a problem, or could not read what this process did (a gzip file
        # of several members): its share is parsed here, and a problem there goes on to
        # the careful parser.
        theirs = _parse_numeric_chunk(raw[text_start:cut])
    if own is None or theirs is None:
        return None
    return np.concatenate([theirs[0], own[0]]), np.concatenate([theirs[1], own[1]])


def _parse_numeric_chunk(text):
    """The fast path for whole 'number,pixels' rows of text, in this process.

    Turning each comma into ' -1 ' makes the text one stream of integers,
    ``first, -1, 2304 pixels`` per row, which numpy parses in one call. The -1 marks every
    row's start, so a row with a pixel too many or too few shifts the next marker and is
    caught; negative pixels are caught by the range check.

    numpy is told how many numbers to expect (one comma per row): without ``count`` it grows
    its output as it goes, which took 2-3x as long. With it, numpy stops at that many and, if
    the text holds fewer, fills the rest with uninitialised memory instead of raising. A row
    too short or too long anywhere but last misplaces the next row's marker; the last row,
    which no marker follows, is counted on its own. numpy also stops inside the very last
    number, reading '3.5' or '1e2' as 3 or 1 with nothing left to complain about, so that one
    must be all digits.
    """
    stream = text.replace(b",", b" -1 ")
    # Each comma became four bytes: the rows counted without another pass over the text.
    rows = (len(stream) - len(text)) // 3
    last_row = text[text.rindex(b",") + 1 :].split() if rows else []
    if len(last_row) != NUM_PIXELS or not last_row[-1].isdigit():
        return None
    # One line per row: numbers read as one stream took a row whose pixels wrapped onto a
    # second line for a whole row (the careful parser refuses it). Blank lines go there too.
    end = len(text)
    while end and text[end - 1 : end].isspace():  # not rstrip(): that copies the text
        end -= 1
    if text.count(b"\n", 0, end) != rows - 1:
        return None
    # One comma per line: a trailing comma on one row and none on a later one (whose first
    # pixel is -1) kept both counts, and the rows were read shifted.
    start = 0
    for _ in range(rows):
        comma = text.find(b",", start)
        line_end = text.find(b"\n", comma) if comma >= 0 else -1
        line_end = len(text) if line_end < 0 else line_end
        if comma < 0 or text.find(b"\n", start, comma) >= 0:
            return None
        if text.find(b",", comma + 1, line_end) >= 0:
            return None
        start = line_end + 1
    row_length = NUM_PIXELS + 2
    # int64, not int32: numpy wraps a number too large for its type without a word, so an
    # id of 3,000,000,000 came back negative and a 10-digit pixel could wrap into 0-255.
    with warnings.catch_warnings():
        # numpy warns (instead of raising) when it meets a token it cannot parse.
        warnings.simplefilter("error", DeprecationWarning)
        try:
            values = np.fromstring(stream, dtype=np.int64, sep=" ", count=rows * row_length)
        except (DeprecationWarning, ValueError):  # ValueError: fewer numbers than expected
            return None
    values = values.reshape(-1, row_length)  # (N, first column + marker + 2304 pixels)
    pixels = values[:, 2:]
    # Seen as unsigned, a negative pixel is huge: one pass checks both ends of 0-255.
    if (values[:, 1] != -1).any() or pixels.view(np.uint64).max() > 255:
        return None
    # numpy clamps a number too large for int64 to its limits: the careful parser names it.
    limits = np.iinfo(np.int64)
    if np.isin(values[:, 0], (limits.min, limits.max)).any():
        return None
    images = pixels.astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 1)  # (N, 48, 48, 1)
    return values[:, 0].copy(), images  # a copy: a view would keep all of ``values`` alive


def _can_fork():
    # Linux only: a forked child costs little there, and elsewhere (macOS system libraries)
    # forking a process that runs threads is not safe. With one core there is no gain.
    return sys.platform == "linux" and len(os.sched_getaffinity(0)) > 1


class _EarlyParse:
    """A forked child that reads the first CHILD_SHARE of a large CSV's text itself and
    parses the rows in it while the parent reads the whole file. Its result comes back
    through shared memory: the cut (where its rows end) and row count, its first column
    (int64), then its pixels."""

    def __init__(self, child, shared, prefix, capacity):
        self.child, self.shared, self.prefix, self.capacity = child, shared, prefix, capacity
        self.status = None

    @classmethod
    def start(cls, path):
        if not os.path.isfile(path):  # a pipe: what this read would be lost to the parent
            return None
        try:
            size = os.path.getsize(path)
            with open(path, "rb") as file:
                gzipped = file.read(2) == b"\x1f\x8b"
                if gzipped:  # gzip's trailer holds the text's size (modulo 4 GiB): a hint
                    file.seek(-4, os.SEEK_END)
                    # A cut-short file's last 4 bytes are any number (3.7 GB for 2 MB): the
                    # hint is held to 64 times the gzip (FER2013's text is 4.3 times; a hint
                    # too low only gives the child less to parse).
                    size = min(int.from_bytes(file.read(4), "little"), 64 * size)
        except OSError:
            return None  # the parent's own read names the problem
        if size < PARALLEL_BYTES or not _can_fork():
            return None
        prefix = int(size * CHILD_SHARE)
        capacity = prefix // (2 * NUM_PIXELS) + 1  # rows: each pixel takes 2 bytes or more
        try:
            shared = mmap.mmap(-1, 16 + capacity * (8 + NUM_PIXELS))
        except OSError:  # a memory limit (ulimit -v): one process reads it all
            return None
        with warnings.catch_warnings():
            # Python 3.12+ (DeprecationWarning) and JAX, once started (RuntimeWarning), warn
            # that a forked child of a process running threads may deadlock if it uses what
            # those threads hold. This child uses only NumPy's parser and leaves with os._exit.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            child = os.fork()
        if child == 0:
            code = 1
            try:
                code = cls._child(path, gzipped, prefix, capacity, shared)
            finally:
                os._exit(code)  # no cleanup: the parent's files and handlers are not ours
        return cls(child, shared, prefix, capacity)

    @staticmethod
    def _child(path, gzipped, prefix, capacity, shared):
        with open(path, "rb") as file:
            text = _gunzip(file.read(), prefix) if gzipped else file.read(prefix)
        text_start, cut = text.find(b"\n") + 1, text.rfind(b"\n") + 1
        if len(text) < prefix or not 0 < text_start < cut:
            return 1
        parsed = _parse_numeric_chunk(text[text_start:cut])
        if parsed is None or len(parsed[0]) > capacity:
            return 1
        rows = len(parsed[0])
        shared[:16] = np.array([cut, rows], dtype=np.int64).tobytes()
        shared[16 : 16 + rows * 8] = parsed[0].tobytes()
        pixels_at = 16 + capacity * 8
        shared[pixels_at : pixels_at + rows * NUM_PIXELS] = parsed[1].tobytes()
        return 0

    def cut(self, raw):
        """Where the child's rows end in ``raw``, as it computes it; None if it cannot have
        read the same text (a file shorter than its hint)."""
        if len(raw) < self.prefix:
            return None
        return raw.rfind(b"\n", 0, self.prefix) + 1

    def result(self, cut):
        """The child's (first column, images), or None if it found a problem."""
        _, status = os.waitpid(self.child, 0)
        self.status = os.waitstatus_to_exitcode(status)
        if self.status != 0:
            return None
        child_cut, rows = np.frombuffer(self.shared, dtype=np.int64, count=2)
        if child_cut != cut:
            return None
        first = np.frombuffer(self.shared, dtype=np.int64, count=rows, offset=16)
        pixels = np.frombuffer(
            self.shared, dtype=np.uint8, count=rows * NUM_PIXELS, offset=16 + self.capacity * 8
        )
        images = pixels.reshape(rows, IMAGE_SIZE, IMAGE_SIZE, 1)  # (N, 48, 48, 1)
        return first.copy(), images.copy()

    def close(self):
        """Stop and reap the child if no result was asked for (the parent failed first)."""
        if self.status is None:
            os.kill(self.child, signal.SIGKILL)
            os.waitpid(self.child, 0)
            self.status = -1


# A whole number as numpy's fast path reads one: ASCII digits, an optional sign. int() alone
# also took "1_0" and "٣", and str.isdigit "²", which int() then refused with a traceback.
WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


def _row_pixels(path, line_number, tokens):
    """One row's 2,304 pixel tokens as uint8, or a one-line error naming the first bad one."""
    text = "".join(tokens)
    if text.isascii() and text.isdecimal():  # digits only, as in almost every row: one check
        try:
            values = np.array(tokens, dtype=np.int64)
        except OverflowError:  # 20 digits or more: named below
            values = None
        if values is not None and values.max() <= 255:
            return values.astype(np.uint8)
    for token in tokens:  # a sign, or a problem: the first bad token is named
        whole = token.isascii() and WHOLE_NUMBER.fullmatch(token)
        if not whole or not 0 <= int(token) <= 255:
            # shown: a copy ending in zero bytes made one "pixel" of 100 KB.
            raise FerError(
                f"{path}: line {line_number}: pixel {shown(token)} is not an integer in 0-255"
            )
    return np.array([int(token) for token in tokens], dtype=np.uint8)


def _parse_rows(path, body, columns, pixel_column):
    """The careful parser: one row at a time, naming the first problem it meets."""
    pixel_index = columns.index(pixel_column)
    usage_index = columns.index("Usage") if "Usage" in columns else None
    lines = body.decode("utf-8", "replace").split("\n")
    first_column, images, usages = [], [], []
    for line_number, line in enumerate(lines, start=2):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = [field.strip().strip('"') for field in line.split(",")]
        if len(fields) != len(columns):
            raise FerError(
                f"{path}: line {line_number}: expected {len(columns)} fields "
                f"({_listed(columns)}), found {len(fields)}"
            )
        first = fields[0]
        if pixel_index != 0:
            if not first.strip():
                raise FerError(f"{path}: line {line_number}: {columns[0]} is empty")
            if not WHOLE_NUMBER.fullmatch(first):
                raise FerError(
                    f"{path}: line {line_number}: {columns[0]} {shown(first)} is not an integer"
                )
            value = int(first)
            if not -(2**63) <= value < 2**63:  # ids and labels are kept as int64
                raise FerError(
                    f"{path}: line {line_number}: {columns[0]} {shown(first)} is too large"
                )
            first_column.append(value)
        tokens = fields[pixel_index].split()
        if len(tokens) != NUM_PIXELS:
            raise FerError(
                f"{path}: line {line_number}: expected {NUM_PIXELS} pixels, found {len(tokens)}"
            )
        images.append(_row_pixels(path, line_number, tokens))
        if usage_index is not None:
            if fields[usage_index] not in USAGES:  # "training" rows were dropped without a word
                raise FerError(
                    f"{path}: line {line_number}: Usage {shown(fields[usage_index])} is not one of "
                    f"{', '.join(USAGES)}"
                )
            usages.append(fields[usage_index])
    if not images:
        raise FerError(f"{path}: has a header but no rows")
    images = np.stack(images).reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 1)  # (N, 48, 48, 1)
    first = np.array(first_column, dtype=np.int64) if first_column else np.zeros(0, np.int64)
    return first, images, np.array(usages) if usages else None


def read_labels(path):
    """A labels file ``id,label`` (for example the public leaderboard): {id: label}."""
    raw = _read_bytes(path)
    # utf-8-sig: a spreadsheet's export may begin with a byte-order mark. Split at line ends
    # (an old Mac's CR too) only: splitlines also broke at a form feed, miscounting lines.
    lines = re.split(r"\r\n|\r|\n", raw.decode("utf-8-sig", "replace"))
    if not lines[0].strip():
        if any(line.strip() for line in lines):  # as read_csv says: was "file is empty"
            raise FerError(f"{path}: line 1 is blank: the first line must name the columns")
        raise FerError(f"{path}: file is empty")
    columns = _columns(lines[0].encode("utf-8"))  # R's write.csv quotes them: "id","label"
    if columns[:2] != ["id", "label"]:
        raise FerError(f"{path}: expected the columns id,label, found {_listed(columns)}")
    labels = {}
    for line_number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = [field.strip().strip('"') for field in line.split(",")]
        # int() alone took "1_0" as 10 and "٣" as 3, which read_csv refuses; a row of more
        # fields than the header names was read as if it had two.
        numbers = all(WHOLE_NUMBER.fullmatch(field) for field in fields[:2])
        if len(fields) != len(columns) or not numbers:
            raise FerError(f"{path}: line {line_number}: expected two integers id,label")
        row_id, label = int(fields[0]), int(fields[1])
        if not 0 <= label < NUM_CLASSES:
            raise FerError(
                f"{path}: line {line_number}: label {label} is outside 0-{NUM_CLASSES - 1}"
            )
        if row_id in labels:
            raise FerError(f"{path}: line {line_number}: duplicate id {row_id}")
        labels[row_id] = label
    if not labels:
        raise FerError(f"{path}: has a header but no rows")
    return labels


def stratified_split(labels, fraction, seed):
    """Indices (train, validation) of a stratified split, the same for the same arguments."""
    if not 0 < fraction < 1:
        raise FerError(f"--val-split must be between 0 and 1 (exclusive), got {fraction}")
    rng = np.random.default_rng(seed)
    validation = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = int(round(len(members) * fraction))
        validation.append(rng.permutation(members)[:count])
    validation = np.sort(np.concatenate(validation))
    if validation.size == 0 or validation.size == len(labels):
        none = validation.size == 0
        why = ""
        if 0 < round(len(labels) * fraction) < len(labels):
            # Per class, rounded: 10% of 35 faces, 5 a class, is 0 (0.5 rounds to even).
            sizes = np.bincount(labels)[np.unique(labels)]
            size = int(sizes.max() if none else sizes.min())
            shares = f"{fraction:g} of each class's at {'most' if none else 'least'}"
            why = (
                f"; taken class by class, {shares} {counted(size, 'image')} rounds to "
                f"{'0' if none else 'all'}"
            )
        raise FerError(
            f"--val-split {fraction} leaves no images for "
            f"{'validation' if none else 'training'} ({counted(len(labels), 'image')}{why})"
        )
    train = np.setdiff1d(np.arange(len(labels)), validation)
    return train, validation


def indices_hash(indices):
    """A short fingerprint of a set of row indices, recorded so tools can tell splits apart."""
    ordered = np.sort(np.asarray(indices, dtype=np.int64))
    return hashlib.sha256(ordered.tobytes()).hexdigest()[:16]
