"""Reading the three CSV forms, the fast parser's agreement with the careful one, bad input."""

import gzip
import hashlib
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import make_train_csv, pixels, synthetic_images, write_csv

from ferkit import data
from ferkit.errors import FerError


def test_train_form_gives_uint8_images_and_labels(tmp_path):
    path = make_train_csv(tmp_path / "train.csv", count=14)
    loaded = data.read_csv(path)
    images, labels = synthetic_images(14)
    assert loaded.images.shape == (14, 48, 48, 1) and loaded.images.dtype == np.uint8
    np.testing.assert_array_equal(loaded.images[..., 0], images)
    np.testing.assert_array_equal(loaded.labels, labels)


def test_gzipped_file_reads_the_same(tmp_path):
    plain = data.read_csv(make_train_csv(tmp_path / "a.csv", count=7))
    packed = data.read_csv(make_train_csv(tmp_path / "a.csv.gz", count=7, compress=True))
    np.testing.assert_array_equal(plain.images, packed.images)


def test_a_gzip_file_s_text_is_unpacked_to_hash_once_while_unchanged(tmp_path, monkeypatch):
    packed = Path(make_train_csv(tmp_path / "a.csv.gz", count=7, compress=True))
    plain = Path(make_train_csv(tmp_path / "a.csv", count=7))
    unpacked = []
    read_bytes = data._read_bytes
    monkeypatch.setattr(data, "_read_bytes", lambda path: unpacked.append(path) or read_bytes(path))
    first = data.content_sha256s(str(packed))
    assert data.content_sha256s(str(packed)) == first and len(unpacked) == 1
    assert data.file_sha256(str(plain)) in first  # the text's hash: a gzipped copy matches
    packed.write_bytes(gzip.compress(plain.read_bytes().replace(b"\n", b"\r\n")))
    assert data.content_sha256s(str(packed)) != first and len(unpacked) == 2  # changed: again


def test_test_form_keeps_ids_in_file_order(tmp_path):
    images, _ = synthetic_images(3)
    rows = [(row_id, pixels(image)) for row_id, image in zip((10, 4, 7), images)]
    loaded = data.read_csv(write_csv(tmp_path / "test.csv", ("id", "feature"), rows))
    assert loaded.labels is None
    assert loaded.ids.tolist() == [10, 4, 7]


def test_ids_beyond_32_bits_are_kept(tmp_path):
    images, _ = synthetic_images(2)
    rows = [(row_id, pixels(image)) for row_id, image in zip((3_000_000_000, 1), images)]
    loaded = data.read_csv(write_csv(tmp_path / "test.csv", ("id", "feature"), rows))
    assert loaded.ids.tolist() == [3_000_000_000, 1]


def _fer2013_rows(count=9):
    images, labels = synthetic_images(count)
    usages = ["Training", "PublicTest", "PrivateTest"] * (count // 3)
    return [(label, pixels(image), usage) for image, label, usage in zip(images, labels, usages)]


def test_fer2013_form_selects_a_usage(tmp_path):
    path = write_csv(tmp_path / "fer2013.csv", ("emotion", "pixels", "Usage"), _fer2013_rows())
    every = data.read_csv(path)
    public = data.read_csv(path, usage="PublicTest")
    assert len(every) == 9 and len(public) == 3
    np.testing.assert_array_equal(public.images, every.images[1::3])


def test_an_unknown_usage_value_is_named_not_dropped(tmp_path):
    # Rows of "training" (lower case) were left out of --usage Training without a word.
    rows = _fer2013_rows()
    rows[3] = (rows[3][0], rows[3][1], "training")
    path = write_csv(tmp_path / "fer2013.csv", ("emotion", "pixels", "Usage"), rows)
    message = "line 5: Usage 'training' is not one of Training, PublicTest, PrivateTest"
    with pytest.raises(FerError, match=message):
        data.read_csv(path, usage="Training")
    rows[3] = (rows[3][0], rows[3][1], "x" * 300)  # shown short, as every bad value is
    path = write_csv(tmp_path / "fer2013.csv", ("emotion", "pixels", "Usage"), rows)
    with pytest.raises(FerError, match=r"line 5: Usage 'x{19}'… \(300 characters\) is not"):
        data.read_csv(path, usage="Training")


def test_icml_form_with_spaced_column_names(tmp_path):
    path = write_csv(
        tmp_path / "icml.csv",
        ("emotion", " Usage", " pixels"),
        [(label, usage, pixel_text) for label, pixel_text, usage in _fer2013_rows(6)],
    )
    loaded = data.read_csv(path, usage=["Training", "PrivateTest"])
    assert len(loaded) == 4 and loaded.labels.tolist() == [0, 2, 3, 5]


def test_careful_parser_agrees_with_fast_one(tmp_path):
    path = make_train_csv(tmp_path / "train.csv", count=10)
    fast = data.read_csv(path)
    body = Path(path).read_bytes().split(b"\n", 1)[1]
    assert data._parse_numeric_chunk(body) is not None  # the fast path took these rows
    labels, images, _ = data._parse_rows(path, body, ["label", "feature"], "feature")
    np.testing.assert_array_equal(fast.images, images)
    np.testing.assert_array_equal(fast.labels, labels)


def test_the_parsers_agree_on_signed_numbers(tmp_path):
    # numpy reads "+5" and "-0"; the careful parser (quoted or fer2013.csv files, or any
    # file with a problem elsewhere) refused them.
    pixels = " ".join(["+5", "-0", *["1"] * 2302])
    path = tmp_path / "signed.csv"
    path.write_text(f"label,feature\n+3,{pixels}\n0,{pixels}\n")
    fast = data.read_csv(str(path))
    body = path.read_bytes().split(b"\n", 1)[1]
    labels, images, _ = data._parse_rows(str(path), body, ["label", "feature"], "feature")
    np.testing.assert_array_equal(fast.images, images)
    assert labels.tolist() == fast.labels.tolist() == [3, 0] and images[0, 0, :2, 0].tolist() == [
        5,
        0,
    ]


def test_one_image_given_as_a_data_file_is_named_as_such(tmp_path):
    import cv2

    path = tmp_path / "face.png"
    cv2.imwrite(str(path), np.zeros((48, 48), np.uint8))
    # Said "not a CSV text file (it holds NUL bytes: binary data, or UTF-16 text …)".
    with pytest.raises(FerError, match="face.png: is one image; expected a CSV file or a folder"):
        data.read_csv(str(path))
    # An ASCII PGM holds no NUL byte: "no pixel column: expected 'feature' or 'pixels', found P2".
    (tmp_path / "face.pgm").write_text("P2\n2 1\n255\n0 255\n")
    with pytest.raises(FerError, match="face.pgm: is one image; expected a CSV file or a folder"):
        data.read_csv(str(tmp_path / "face.pgm"))


def _with_row(tmp_path, row_text, columns="label,feature", name="bad.csv"):
    good = " ".join(["1"] * 2304)
    path = tmp_path / name
    path.write_text(f"{columns}\n0,{good}\n{row_text}\n1,{good}\n")
    return str(path)


GOOD = " ".join(["1"] * 2303)
BAD_ROWS = [
    (f"0,{GOOD}", "line 3: expected 2304 pixels, found 2303"),
    (f"0,{GOOD} 1 1", "line 3: expected 2304 pixels, found 2305"),
    (f"0,{GOOD} -1", "line 3: pixel '-1' is not an integer in 0-255"),
    (f"0,{GOOD} 256", "line 3: pixel '256' is not an integer in 0-255"),
    (f"0,{GOOD} 12.5", "line 3: pixel '12.5' is not an integer in 0-255"),
    (f"0,{GOOD} abc", "line 3: pixel 'abc' is not an integer in 0-255"),
    # A digit to str.isdigit that int() refuses: a ValueError traceback.
    (f"0,{GOOD} \u00b2", "line 3: pixel '\u00b2' is not an integer in 0-255"),
    # int() reads these as 3 and 10; numpy does not, so they were accepted only sometimes.
    (f"0,{GOOD} \u0663", "line 3: pixel '\u0663' is not an integer in 0-255"),
    (f"1_0,{GOOD} 1", "line 3: label '1_0' is not an integer"),
    (f"7,{GOOD} 1", "line 3: label 7 is outside 0-6"),
    (f"-1,{GOOD} 1", "line 3: label -1 is outside 0-6"),
    # 2**32 + 3 and 2**32: numbers that an int32 parse wrapped into the valid range.
    (f"4294967299,{GOOD} 1", "line 3: label 4294967299 is outside 0-6"),
    (f"0,{GOOD} 4294967296", "line 3: pixel '4294967296' is not an integer in 0-255"),
    (f",{GOOD} 1", "line 3: label is empty"),
    (f"99999999999999999999,{GOOD} 1", "line 3: label '99999999999999999999' is too large"),
    (f"0,1,{GOOD}", "line 3: expected 2 fields (label, feature), found 3"),
    # Shown short: a copy ending in zero bytes made one pixel of 100 KB, a one-line error.
    (
        f"0,{GOOD} {'9' * 300}",
        "line 3: pixel '9999999999999999999'… (300 characters) is not an integer in 0-255",
    ),
    (
        f"{'x' * 300},{GOOD} 1",
        "line 3: label 'xxxxxxxxxxxxxxxxxxx'… (300 characters) is not an integer",
    ),
    (f"{'9' * 300},{GOOD} 1", "line 3: label '9999999999999999999'… (300 characters) is too large"),
]


@pytest.mark.parametrize("row, message", BAD_ROWS)
def test_bad_row_names_file_line_and_problem(tmp_path, row, message):
    path = _with_row(tmp_path, row)
    with pytest.raises(FerError) as error:
        data.read_csv(path)
    assert str(error.value) == f"{path}: {message}"


# The fast parser stops after one row's worth of numbers per comma; what follows the last
# marker it checks must still be caught, and named by the careful parser.
LAST_ROW_PROBLEMS = [
    (f"0,{GOOD} 1 1\n", "line 3: expected 2304 pixels, found 2305"),
    (f"0,{GOOD} 1\n5\n", "line 4: expected 2 fields (label, feature), found 1"),
    (f"0,{GOOD}\n", "line 3: expected 2304 pixels, found 2303"),
    # numpy stops inside the file's last number and reads these as 3, 1, 255 and 0.
    (f"0,{GOOD} 3.5\n", "line 3: pixel '3.5' is not an integer in 0-255"),
    (f"0,{GOOD} 1e2", "line 3: pixel '1e2' is not an integer in 0-255"),
    (f"0,{GOOD} 255abc\n", "line 3: pixel '255abc' is not an integer in 0-255"),
    (f"0,{GOOD} 0x10\n", "line 3: pixel '0x10' is not an integer in 0-255"),
]


@pytest.mark.parametrize("last, message", LAST_ROW_PROBLEMS)
def test_problems_after_the_last_row_start_are_caught(tmp_path, last, message):
    path = tmp_path / "tail.csv"
    path.write_text(f"label,feature\n0,{GOOD} 1\n{last}")
    with pytest.raises(FerError) as error:
        data.read_csv(str(path))
    assert str(error.value) == f"{path}: {message}"


@pytest.fixture
def two_processes(monkeypatch):
    """Small files through the two-process parse that files of 16 MB of text and more take;
    returns the list of children started."""
    if not data._can_fork():
        pytest.skip("the two-process parse runs on Linux with two or more cores")
    children = []
    original = data._EarlyParse.start
    monkeypatch.setattr(data, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(
        data._EarlyParse, "start", lambda path: children.append(original(path)) or children[-1]
    )
    return children


def test_two_process_parse_gives_the_same_arrays(tmp_path, two_processes):
    path = make_train_csv(tmp_path / "train.csv", count=11)
    both = data.read_csv(path)
    assert len(two_processes) == 1 and two_processes[0].status == 0  # the child's rows used
    images, labels = synthetic_images(11)
    np.testing.assert_array_equal(both.images[..., 0], images)
    np.testing.assert_array_equal(both.labels, labels)


@pytest.mark.parametrize("bad_row", [1, 2, 3, 4])
def test_two_process_parse_catches_a_bad_row_in_either_half(tmp_path, two_processes, bad_row):
    rows = [f"{row % 7},{GOOD} 1" for row in range(4)]
    rows[bad_row - 1] += " 1"
    path = tmp_path / "bad.csv"
    path.write_text("label,feature\n" + "\n".join(rows) + "\n")
    with pytest.raises(FerError) as error:
        data.read_csv(str(path))
    assert str(error.value) == f"{path}: line {bad_row + 1}: expected 2304 pixels, found 2305"
    assert two_processes[0].status is not None  # reaped


@pytest.mark.parametrize("bad_row", [1, 2, 3, 4])
def test_two_process_parse_catches_a_bad_last_pixel_in_either_half(
    tmp_path, two_processes, bad_row
):
    # Each half's text ends in a last number that numpy would read as 3.
    rows = [f"{row % 7},{GOOD} 1" for row in range(4)]
    rows[bad_row - 1] = rows[bad_row - 1][:-1] + "3.5"
    path = tmp_path / "bad.csv"
    path.write_text("label,feature\n" + "\n".join(rows) + "\n")
    with pytest.raises(FerError) as error:
        data.read_csv(str(path))
    assert str(error.value) == f"{path}: line {bad_row + 1}: pixel '3.5' is not an integer in 0-255"
    # Found with the child started (and reaped), not by the one-process parse alone.
    assert len(two_processes) == 1 and two_processes[0] is not None
    assert two_processes[0].status is not None


def test_a_cut_short_gzip_s_size_hint_is_held_to_its_compressed_size(
    tmp_path, two_processes, monkeypatch
):
    whole = gzip.compress(Path(make_train_csv(tmp_path / "t.csv", 7)).read_bytes())
    path = tmp_path / "cut.csv.gz"
    # Its last four bytes, read as gzip's size field, claim 4 GiB of text.
    path.write_bytes(whole[: len(whole) // 2] + b"\xff\xff\xff\xff")
    sizes = []
    original = data.mmap.mmap
    monkeypatch.setattr(data.mmap, "mmap", lambda *a: sizes.append(a[1]) or original(*a))
    with pytest.raises(FerError, match="cut.csv.gz: gzip file is truncated or corrupt"):
        data.read_csv(str(path))
    assert sizes and max(sizes) < 64 * path.stat().st_size


def test_no_memory_for_the_two_process_parse_reads_in_one(tmp_path, two_processes, monkeypatch):
    def refused(*args):
        raise OSError(12, "Cannot allocate memory")  # as under ulimit -v

    monkeypatch.setattr(data.mmap, "mmap", refused)
    read = data.read_csv(make_train_csv(tmp_path / "train.csv", count=5))
    assert len(read.images) == 5 and two_processes == [None]


def test_missing_pixel_column(tmp_path):
    path = _with_row(tmp_path, "0,1", columns="label,image")
    with pytest.raises(FerError, match="no pixel column: expected 'feature' or 'pixels'"):
        data.read_csv(path)


def test_duplicate_test_ids(tmp_path):
    images, _ = synthetic_images(3)
    rows = [(row_id, pixels(image)) for row_id, image in zip((1, 2, 1), images)]
    path = write_csv(tmp_path / "test.csv", ("id", "feature"), rows)
    with pytest.raises(FerError, match="line 4: duplicate id 1"):
        data.read_csv(path)


def test_a_row_whose_pixels_wrap_onto_a_second_line_is_refused(tmp_path):
    # The fast parser read the numbers as one stream and took the two lines for one row.
    images, labels = synthetic_images(2)
    first, second = (f"{label},{pixels(image)}" for image, label in zip(images, labels))
    head, tail = first[:2000], first[2000:]
    wrapped = head[: head.rindex(" ")] + "\n" + head[head.rindex(" ") + 1 :] + tail
    path = tmp_path / "train.csv"
    path.write_text(f"label,feature\n{wrapped}\n{second}\n")
    with pytest.raises(FerError, match="train.csv: line 2: expected 2304 pixels, found"):
        data.read_csv(str(path))
    path.write_text(f"label,feature\n{first}\n{second}\n\n \n")  # blank lines at the end
    assert len(data.read_csv(str(path))) == 2


@pytest.mark.parametrize("quoted", [False, True])  # the fast parser, and the careful one
def test_a_row_s_line_counts_the_blank_lines_before_it(tmp_path, quoted):
    # Both said "line 4" of a label on line 6: a row's index does not count blank lines.
    images, labels = synthetic_images(3)
    lines = [
        f'{label},"{pixels(image)}"' if quoted else f"{label},{pixels(image)}"
        for image, label in zip(images, labels)
    ]
    lines[2] = "7" + lines[2][1:]
    path = tmp_path / "train.csv"
    # A no-break space is blank to the parsers too.
    body = lines[0] + "\n\r\n\u00a0\n" + "\n".join(lines[1:]) + "\n"
    path.write_text("label,feature\n\n" + body, encoding="utf-8")
    with pytest.raises(FerError, match="train.csv: line 7: label 7 is outside 0-6"):
        data.read_csv(str(path))
    test_lines = [line.replace(line.split(",")[0], "1", 1) for line in lines]
    path.write_text("id,feature\n" + test_lines[0] + "\n\n\n" + test_lines[1] + "\n")
    with pytest.raises(FerError, match="line 5: duplicate id 1"):
        data.read_csv(str(path))


def test_test_file_where_labels_are_needed(tmp_path):
    path = write_csv(tmp_path / "test.csv", ("id", "feature"), [(0, GOOD + " 1")])
    with pytest.raises(FerError, match="this looks like a test file"):
        data.read_csv(path, require_labels=True)


@pytest.mark.parametrize(
    "content, message",
    [(b"", "file is empty"), (b"label,feature\n", "has a header but no rows")],
)
def test_empty_files(tmp_path, content, message):
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(FerError, match=message):
        data.read_csv(str(path))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FerError, match="nope.csv: no such file$"):
        data.read_csv(str(tmp_path / "nope.csv"))
    # The README's data/train.csv where the user kept Kaggle's train.csv.gz, or the reverse.
    make_train_csv(tmp_path / "train.csv.gz", count=7, compress=True)
    with pytest.raises(FerError, match=r"train.csv: no such file \(there is .*train.csv.gz\)$"):
        data.read_csv(str(tmp_path / "train.csv"))
    make_train_csv(tmp_path / "test.csv", count=7)
    with pytest.raises(FerError, match=r"test.csv.gz: no such file \(there is .*test.csv\)$"):
        data.read_csv(str(tmp_path / "test.csv.gz"))
    with pytest.raises(FerError, match="is a directory"):
        data.read_csv(str(tmp_path))


def test_truncated_gzip(tmp_path):
    whole = gzip.compress(Path(make_train_csv(tmp_path / "t.csv", 7)).read_bytes())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(FerError, match="gzip file is truncated or corrupt"):
        data.read_csv(str(path))


def test_corrupt_gzip_is_named_as_such(tmp_path):
    corrupt = bytearray(gzip.compress(Path(make_train_csv(tmp_path / "t.csv", 7)).read_bytes()))
    corrupt[len(corrupt) // 2] ^= 0x55  # a flipped byte inside the deflate stream
    path = tmp_path / "corrupt.csv.gz"
    path.write_bytes(bytes(corrupt))
    # isal's IsalError is no zlib.error: a traceback, where zlib's error was named.
    with pytest.raises(FerError, match="corrupt.csv.gz: gzip file is truncated or corrupt"):
        data.read_csv(str(path))
    assert not data.has_usage_column(str(path))


def test_labels_file(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("id,label\n0,3\n5,6\n")
    assert data.read_labels(str(path)) == {0: 3, 5: 6}
    path.write_bytes(b"\xef\xbb\xbfid,label\r\n0,3\r\n")  # as a spreadsheet saves it
    assert data.read_labels(str(path)) == {0: 3}
    path.write_bytes(b"id,label\r0,3\r1,2\r")  # an old Mac's line ends
    assert data.read_labels(str(path)) == {0: 3, 1: 2}
    path.write_text("id,label\n0,9\n")
    with pytest.raises(FerError, match="line 2: label 9 is outside 0-6"):
        data.read_labels(str(path))


def test_a_labels_file_beginning_with_a_blank_line_is_not_called_empty(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("\nid,label\n0,3\n")
    with pytest.raises(FerError, match="labels.csv: line 1 is blank: the first line must name"):
        data.read_labels(str(path))
    path.write_text("\n\n")
    with pytest.raises(FerError, match="labels.csv: file is empty"):
        data.read_labels(str(path))


def test_labels_file_quoted_as_r_writes_it_reads(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text('"id","label"\n0,3\n"1","2"\n')  # R's write.csv quotes the header
    assert data.read_labels(str(path)) == {0: 3, 1: 2}


@pytest.mark.parametrize(
    "rows, line",
    [
        ("1_0,3\n", 2),  # int() read 10
        ("1,\u0663\n", 2),  # an Arabic-Indic three, read as 3
        ("1,3,9\n", 2),  # the third field was ignored
        ("1,3\x0c\n2,x\n", 3),  # a form feed split the line: "line 4"
    ],
)
def test_a_labels_row_read_csv_would_refuse_is_named_by_its_line(tmp_path, rows, line):
    path = tmp_path / "labels.csv"
    path.write_text("id,label\n" + rows, encoding="utf-8")
    with pytest.raises(FerError, match=f"labels.csv: line {line}: expected two integers id,label"):
        data.read_labels(str(path))


def test_split_is_stratified_seeded_and_disjoint():
    labels = np.repeat(np.arange(7), 20)
    train, validation = data.stratified_split(labels, 0.1, seed=3)
    again_train, again_validation = data.stratified_split(labels, 0.1, seed=3)
    np.testing.assert_array_equal(validation, again_validation)
    assert np.bincount(labels[validation]).tolist() == [2] * 7
    assert not set(train) & set(validation) and len(train) + len(validation) == 140
    assert data.indices_hash(validation) != data.indices_hash(
        data.stratified_split(labels, 0.1, seed=4)[1]
    )


@pytest.mark.parametrize("fraction", [0, 1, -0.5])
def test_split_fraction_out_of_range(fraction):
    with pytest.raises(FerError, match="--val-split"):
        data.stratified_split(np.arange(10) % 7, fraction, seed=0)


def test_a_split_that_rounds_each_class_to_nothing_says_so():
    # 10% of 35 is 3.5, so "leaves no images for validation (35 images)" read as wrong.
    with pytest.raises(
        FerError,
        match=r"\(35 images; .*0.1 of each class's at most 5 images rounds to 0",
    ):
        data.stratified_split(np.repeat(np.arange(7), 5), 0.1, seed=0)
    with pytest.raises(
        FerError,
        match=r"training \(21 images; .* 0.9 of each class's at least 3 images rounds to all\)$",
    ):
        data.stratified_split(np.repeat(np.arange(7), 3), 0.9, seed=0)


def test_a_folder_hash_follows_its_files_names_and_contents(tmp_path):
    folder = tmp_path / "faces"
    (folder / "happy").mkdir(parents=True)
    (folder / "happy" / "0.png").write_bytes(b"one")
    (folder / "sad").mkdir()
    (folder / "sad" / "1.png").write_bytes(b"two")
    before = data.file_sha256(str(folder))
    (folder / ".DS_Store").write_bytes(b"not an image")
    assert data.file_sha256(str(folder)) == before
    (folder / "sad" / "1.png").write_bytes(b"TWO")
    changed = data.file_sha256(str(folder))
    (folder / "sad" / "1.png").rename(folder / "happy" / "1.png")
    moved = data.file_sha256(str(folder))
    assert len({before, changed, moved}) == 3


def test_a_folder_of_linked_class_folders_is_hashed_by_their_images(tmp_path):
    hashes = []
    for name, content in (("a", b"one"), ("b", b"two")):
        (tmp_path / f"real_{name}").mkdir()
        (tmp_path / f"real_{name}" / "0.png").write_bytes(content)
        (tmp_path / name).mkdir()
        (tmp_path / name / "happy").symlink_to(tmp_path / f"real_{name}")
        (tmp_path / name / "happy" / "loop").symlink_to(tmp_path / name)  # walked once
        assert sorted(data.images_under(str(tmp_path / name))) == [os.path.join("happy", "0.png")]
        hashes.append(data.file_sha256(str(tmp_path / name)))
    # Both were the SHA-256 of nothing: --val-data refused as --data, a changed folder resumed.
    assert hashes[0] != hashes[1] != hashlib.sha256().hexdigest()
    # Other links are not followed: one to its parent walked (and refused) the parent's faces.
    (tmp_path / "a" / "up").symlink_to(tmp_path)
    assert sorted(data.images_under(str(tmp_path / "a"))) == [os.path.join("happy", "0.png")]


def test_an_output_inside_a_linked_class_folder_is_inside_the_image_folder(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    faces = tmp_path / "faces"
    faces.mkdir()
    (faces / "happy").symlink_to(tmp_path / "elsewhere")
    # Written through the link, it joined the folder's faces and changed its SHA-256.
    with pytest.raises(FerError, match="happy/c.png: is inside the faces, whose images"):
        data.check_outside_images(str(faces / "happy" / "c.png"), str(faces), "the faces")
    # Another link is not the folder's: a hidden one to its parent refused every output.
    (faces / ".up").symlink_to(tmp_path)
    data.check_outside_images(str(tmp_path / "runs" / "c.png"), str(faces), "the faces")
    assert not data.is_inside_images(str(tmp_path / "c.png"), str(faces))


def test_usage_column_is_found_from_the_header_of_plain_and_gzipped_files(tmp_path):
    fer2013 = write_csv(
        tmp_path / "f.csv.gz", ("emotion", "pixels", "Usage"), _fer2013_rows(), True
    )
    assert data.has_usage_column(fer2013)
    assert not data.has_usage_column(make_train_csv(tmp_path / "train.csv", count=7))
    assert not data.has_usage_column(str(tmp_path / "missing.csv"))


@pytest.mark.parametrize(
    "content",
    [
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256)) * 100,  # a .keras model
        "label,feature\n0,1 2 3\n".encode("utf-16"),  # a spreadsheet's UTF-16 export
    ],
)
def test_a_binary_or_utf16_file_is_one_short_line(tmp_path, content):
    # A model given as --test printed a 32 KB "line" of zip bytes as its columns.
    path = tmp_path / "not_text.csv"
    path.write_bytes(content)
    for read in (data.read_csv, data.read_labels):
        with pytest.raises(FerError) as error:
            read(str(path))
        assert str(error.value) == (
            f"{path}: not a CSV text file (it holds NUL bytes: binary data, or UTF-16 text to "
            "be saved as UTF-8)"
        )


def test_a_long_or_odd_header_is_shown_short_and_escaped(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"column{index}" for index in range(100)) + "\x07\n1\n")
    with pytest.raises(FerError) as error:
        data.read_csv(str(path))
    message = str(error.value)
    assert message.startswith(f"{path}: no pixel column: expected 'feature' or 'pixels', found ")
    shown = message.split(" found ", 1)[1]
    assert shown.startswith("column0, column1, ") and shown.endswith("...") and len(shown) == 83
    path.write_text("label,pix\x07els\n1\n")
    with pytest.raises(FerError, match=r"found label, pix\\x07els$"):
        data.read_csv(str(path))


def test_columns_are_known_whatever_their_case(tmp_path):
    images, labels = synthetic_images(4)
    rows = [(100 + index, pixels(image)) for index, image in enumerate(images)]
    upper = write_csv(tmp_path / "upper.csv", ("ID", "Feature"), rows)
    # Row numbers 0-3 went into the submission as ids.
    assert data.read_csv(upper).ids.tolist() == [100, 101, 102, 103]
    usages = ["Training", "Training", "PublicTest", "PrivateTest"]
    rows = [(label, pixels(image), usage) for image, label, usage in zip(images, labels, usages)]
    lower = write_csv(tmp_path / "lower.csv", ("emotion", "pixels", "usage"), rows)
    # Not seen as fer2013.csv's Usage column: its test rows were trained on.
    assert data.has_usage_column(lower)
    assert len(data.read_csv(lower, usage="Training")) == 2


def test_an_id_column_that_is_not_first_is_refused(tmp_path):
    images, _ = synthetic_images(2)
    rows = [(pixels(image), 100 + index) for index, image in enumerate(images)]
    path = write_csv(tmp_path / "test.csv", ("feature", "id"), rows)
    with pytest.raises(FerError, match="test.csv: the id column must come first, found feature"):
        data.read_csv(path)


def test_header_mistakes_are_found_before_the_rows_are_parsed(tmp_path, monkeypatch):
    images, labels = synthetic_images(2)
    rows = [(pixels(image), label, "Training") for image, label in zip(images, labels)]
    path = write_csv(tmp_path / "fer2013.csv", ("pixels", "emotion", "Usage"), rows)

    def parsed(*args, **kwargs):
        raise AssertionError("the rows were parsed first: seconds for FER2013")

    monkeypatch.setattr(data, "_parse_rows", parsed)
    monkeypatch.setattr(data, "_parse_two_numeric_columns", parsed)
    with pytest.raises(FerError, match="unknown usage 'publictest': expected one of"):
        data.read_csv(path, usage="publictest")
    with pytest.raises(FerError, match="fer2013.csv: the label column must come first"):
        data.read_csv(path)


@pytest.mark.parametrize(
    "content, message",
    [
        # Each was named otherwise: "has a header but no rows", "no pixel column: … found "
        # and "not a CSV text file (it holds NUL bytes …)".
        (b"label,feature\r3,1 2\r", "its lines end in CR only: save it with LF line ends"),
        # A last LF made the whole file its header: "has a header but no rows".
        (b"label,feature\r3,1 2\r\n", "its lines end in CR only: save it with LF line ends"),
        (b"\nlabel,feature\n3,1 2\n", "line 1 is blank: the first line must name the columns"),
        (gzip.compress(gzip.compress(b"label,feature\n")), "is gzipped twice: gunzip it once"),
    ],
)
def test_a_malformed_file_is_named_for_what_it_is(tmp_path, content, message):
    path = tmp_path / "odd.csv"
    path.write_bytes(content)
    with pytest.raises(FerError, match=f"odd.csv: {message}"):
        data.read_csv(str(path))


def test_a_header_holding_a_quoted_carriage_return_still_reads(tmp_path):
    path = tmp_path / "quoted.csv"
    path.write_text(f'"label\r",feature\n3,{GOOD} 1\n', newline="")
    assert data.read_csv(str(path)).labels.tolist() == [3]


def test_a_csv_from_a_pipe_is_read_whole_and_not_hashed(tmp_path, monkeypatch):
    images, _ = synthetic_images(3)
    rows = [(100 + index, pixels(image)) for index, image in enumerate(images)]
    text = Path(write_csv(tmp_path / "test.csv", ("id", "feature"), rows)).read_bytes()
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    # As for a large file: the early parse read the pipe's start, which the parse then lacked.
    monkeypatch.setattr(data, "PARALLEL_BYTES", 0)
    writer = threading.Thread(target=pipe.write_bytes, args=(text,))
    writer.start()
    assert data.read_csv(str(pipe)).ids.tolist() == [100, 101, 102]
    writer.join()
    with pytest.raises(FerError, match=r"pipe: not a regular file \(a pipe\?\)"):
        data.file_sha256(str(pipe))


def test_a_trailing_comma_and_a_row_without_one_are_not_read_shifted(tmp_path):
    images, _ = synthetic_images(3)
    rows = [pixels(image) for image in images]
    # Both counts (commas, lines) hold: the fast parser read ids 5, -1, 7.
    text = f"id,feature\n5,{rows[0]},\n-1 {rows[1]}\n7,{rows[2]}\n"
    (tmp_path / "test.csv").write_text(text)
    with pytest.raises(FerError, match="test.csv: line 2: expected 2 fields"):
        data.read_csv(str(tmp_path / "test.csv"))
