"""Faces in real photos and videos, and FER2013's image-folder form.

Every picture reaches a model through one function, ``to_model_input``: grayscale, resized
to 48x48 with ``cv2.INTER_AREA``, uint8 0-255 (the model's own Rescaling layer divides by
255). The image-folder reader, the face detector and ``detect.py`` all go through it, so a
photo is prepared exactly like the training images.

Faces are found with OpenCV's Haar cascade, which ships inside opencv-python 4.x. OpenCV 5
moved the cascade classifier out of its main wheel; ``load_detector`` then says what to do.

The image-folder form is the one the popular Kaggle copy of FER2013 uses::

    train/angry/im0.png  train/happy/im1.png  ...    labelled: one sub-folder per class
    test/0.png  test/1.png  ...                      unlabelled: images directly inside
"""

import concurrent.futures
import csv
import io
import math
import os
import re
import sys
import zlib

import numpy as np

# FFmpeg, inside OpenCV, prints its own lines ("moov atom not found") for a file it cannot
# decode; silenced so that a bad file is the one line read_image or video_frames gives.
# Read when the first video is opened; a user's own setting wins.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402

if "OPENCV_LOG_LEVEL" not in os.environ:
    # OpenCV's own warnings and errors about a file it cannot decode ("TIFFReadDirectory:
    # Failed to read directory", "Unexpected end of input stream") were more lines about a bad
    # file, which read_image names in one. A user's OPENCV_LOG_LEVEL wins.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_FATAL)

from ferkit import data, evaluation, runs
from ferkit.errors import FerError
from ferkit.files import atomic_path, check_utf8_name, check_writable, is_inside

IMAGE_EXTENSIONS = data.IMAGE_EXTENSIONS
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
# Annotated copies keep these names; any other photo's copy gets ".png" added.
ANNOTATED_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# An annotated frame's name, as annotated_name writes it: the video's prefix, then the number.
FRAME_NAME = re.compile(r"(.*\.frame)\d{6,}\.jpg")
CASCADE_FILE = "haarcascade_frontalface_default.xml"
# The cascade's box is about 0.93 of a FER2013 crop's side (measured on 200 pasted public-test
# faces), so 5% more on each side makes a detected face look like a training image.
DEFAULT_MARGIN = 0.05
# OpenCV's usual settings: on pasted FER2013 faces, smaller steps or fewer neighbours found a
# few more faces but many more false ones, and histogram equalisation made noise look like faces.
SCALE_FACTOR = 1.1
MIN_NEIGHBOURS = 5
MIN_FACE_SIZE = 24
# The detector searches a copy shrunk to at most this many pixels (about 8,200 x 8,200):
# OpenCV's cascade crashed the process (a segmentation fault) on a 324-megapixel photo, and
# faces in a photo that large are far above MIN_FACE_SIZE even at a quarter of the size.
MAX_DETECTION_PIXELS = 2**26

_GRAY_CODES = {
    ("bgr", 3): cv2.COLOR_BGR2GRAY,
    ("bgr", 4): cv2.COLOR_BGRA2GRAY,
    ("rgb", 3): cv2.COLOR_RGB2GRAY,
    ("rgb", 4): cv2.COLOR_RGBA2GRAY,
}


def to_gray(image, channel_order="bgr"):
    """A (H, W) uint8 view of a gray (H, W) or (H, W, 1), or colour (H, W, 3 or 4) image.

    ``channel_order`` is "bgr" for what OpenCV reads and "rgb" for what PIL or matplotlib
    give: the two weigh red and blue differently.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 2:
        return image
    code = _GRAY_CODES.get((channel_order, image.shape[2] if image.ndim == 3 else 0))
    if code is None:
        raise ValueError(
            f"expected a gray or BGR/RGB(A) image and channel_order bgr or rgb, got shape "
            f"{image.shape} and {channel_order!r}"
        )
    return cv2.cvtColor(image, code)


def to_model_input(image, channel_order="bgr"):
    """The model's input (48, 48, 1) uint8 from any image or face crop, of any size."""
    gray = to_gray(image, channel_order)
    size = (data.IMAGE_SIZE, data.IMAGE_SIZE)
    if gray.shape != size:  # a 48x48 image passes through bit for bit
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(gray)[:, :, np.newaxis]


def cascade_path():
    """OpenCV's bundled frontal-face cascade, or None where this OpenCV has none."""
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not folder or not hasattr(cv2, "CascadeClassifier"):
        return None
    path = os.path.join(folder, CASCADE_FILE)
    return path if os.path.exists(path) else None


def load_detector(path=None):
    """A cv2.CascadeClassifier for frontal faces: OpenCV's own, or the cascade file given."""
    if not hasattr(cv2, "CascadeClassifier"):
        raise FerError(
            f"OpenCV {cv2.__version__} has no Haar cascade face detector (OpenCV 5 moved it "
            "out of opencv-python): pip install 'opencv-python-headless>=4.9,<5', or pass "
            "--no-detect for images that are already face crops"
        )
    if path is not None and os.path.isdir(path):
        raise FerError(f"{path}: is a folder, expected a cascade file (.xml)")
    if path is not None and not os.path.isfile(path):
        # Checked here: OpenCV would print its own error line before ours.
        raise FerError(f"{path}: no such cascade file")
    if path is not None:
        check_utf8_name(path)
    path = path or cascade_path()
    if path is None:
        raise FerError(
            f"OpenCV {cv2.__version__} ships no {CASCADE_FILE}: pip install "
            "'opencv-python-headless>=4.9,<5', or pass --no-detect for face crops"
        )
    try:
        detector = cv2.CascadeClassifier(path)
    except (cv2.error, SystemError):  # an XML file that is not a cascade raises inside OpenCV
        detector = None
    if detector is None or detector.empty():
        raise FerError(f"{path}: not a cascade file OpenCV can load")
    return detector


def detect_faces(image, detector, margin=DEFAULT_MARGIN, channel_order="bgr"):
    """Square boxes (x, y, w, h) around the faces in ``image``, left to right."""
    gray = to_gray(image, channel_order)
    scale = min(1.0, math.sqrt(MAX_DETECTION_PIXELS / gray.size))
    searched = gray
    if scale < 1:
        size = (max(1, int(gray.shape[1] * scale)), max(1, int(gray.shape[0] * scale)))
        searched = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)  # (h', w')
    found = detector.detectMultiScale(
        searched, SCALE_FACTOR, MIN_NEIGHBOURS, minSize=(MIN_FACE_SIZE, MIN_FACE_SIZE)
    )
    # Boxes back in the full image's pixels: the faces are cropped from the full image.
    found = [[round(value / scale) for value in box] for box in found]
    boxes = [square_box(box, margin, gray.shape) for box in found]
    return sorted(boxes)


def square_box(box, margin, shape):
    """``box`` grown by ``margin`` of its size on each side, made square, kept in the image.

    At an edge the square is shifted inward rather than cut, so the face is never squashed
    when the crop is resized to 48x48; it is smaller only where the image itself is.
    """
    x, y, width, height = (int(value) for value in box)
    image_height, image_width = shape[:2]
    # Limited to the image before rounding: any margin, however large, is the whole image.
    side = max(1, round(min(max(width, height) * (1 + 2 * margin), image_width, image_height)))
    left = round(x + width / 2 - side / 2)
    top = round(y + height / 2 - side / 2)
    left = min(max(left, 0), image_width - side)
    top = min(max(top, 0), image_height - side)
    return (left, top, side, side)


def crop(image, box):
    x, y, width, height = box
    return image[y : y + height, x : x + width]


def read_image(path, flags=cv2.IMREAD_COLOR):
    """An image file as a uint8 array; FerError where it is not one OpenCV can read."""
    try:
        # Python reads the bytes and OpenCV decodes them: unlike cv2.imread this opens
        # non-ASCII paths on Windows, names why a file cannot be opened, and refuses a
        # truncated JPEG instead of returning it half gray. It is as fast (np.fromfile is not).
        with open(path, "rb", buffering=0) as file:
            raw = file.readall()
        if raw.startswith(PNG_SIGNATURE) and not _png_intact(raw):
            # Cut short (a download that stopped) or damaged: libpng, inside OpenCV, printed a
            # line of its own to stderr ("PNG input buffer is incomplete", "bad adaptive
            # filter value") that no log level silences.
            raise FerError(f"{path}: cannot read (a PNG file cut short or damaged)")
        image = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), flags) if raw else None
    except OSError as error:
        raise FerError(f"{path}: cannot read ({error.strerror or error})") from None
    except cv2.error:
        image = None
    if image is None:
        raise FerError(f"{path}: cannot read (not an image OpenCV can decode)")
    return image


def _png_intact(raw):
    """Whether a PNG file's chunks are all there, up to its end chunk, each with the CRC-32
    its data gives (about 1 ms a megabyte; decoding takes longer)."""
    view = memoryview(raw)
    position = len(PNG_SIGNATURE)
    while position + 12 <= len(raw):  # length (4 bytes), type (4), data, CRC (4)
        length = int.from_bytes(view[position : position + 4], "big")
        end = position + 8 + length
        if end + 4 > len(raw):
            return False
        if zlib.crc32(view[position + 4 : end]) != int.from_bytes(view[end : end + 4], "big"):
            return False
        if view[position + 4 : position + 8] == b"IEND":
            return True
        position = end + 4
    return False


def encode_image(path, image):
    """``image`` as the bytes of a file in the format ``path``'s extension names. Python
    writes them, not cv2.imwrite, which crashed on a folder name that is not UTF-8 text."""
    try:
        encoded, buffer = cv2.imencode(os.path.splitext(path)[1], image)
    except cv2.error:  # raised, not returned, for an extension it has no writer for
        encoded = False
    if not encoded:
        raise FerError(f"{path}: OpenCV cannot write this kind of image")
    return buffer.tobytes()


def write_image(path, image):
    """Write an image atomically, in the format its extension names."""
    encoded = encode_image(path, image)
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        file.write(encoded)


def annotate(image, boxes, labels):
    """A colour copy of ``image`` with each box drawn and its label written above it."""
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 400))
    for (x, y, width, height), label in zip(boxes, labels):
        cv2.rectangle(canvas, (x, y), (x + width, y + height), (0, 255, 0), thickness)
        scale = max(0.4, width / 200)
        text_y = y - 4 if y >= 20 else y + height + round(16 * scale)
        # A dark outline under the green text keeps it readable on light backgrounds.
        for colour, width in (((0, 0, 0), thickness + 2), ((0, 255, 0), thickness)):
            cv2.putText(canvas, label, (x, text_y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, width)
    return canvas


def video_frames(path, every=1):
    """(frame number, BGR frame) of every ``every``-th frame of a video file."""
    # FFmpeg decodes every format OpenCV's other backends do. Left to choose (CAP_ANY),
    # OpenCV falls back to its own MJPEG reader after FFmpeg refuses a truncated .avi, and
    # that reader prints a line of its own to stderr ("Unexpected element…") that no log
    # level silences. A build without FFmpeg still gets OpenCV's choice.
    backend = cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else cv2.CAP_ANY
    capture = cv2.VideoCapture(path, backend)
    try:
        if not capture.isOpened():
            raise FerError(f"{path}: cannot read (not a video OpenCV can decode)")
        number = 0
        while True:
            # grab() skips decoding, so the frames between samples cost little.
            if not capture.grab():
                break
            if number % every == 0:
                ok, frame = capture.retrieve()
                if ok:
                    yield number, frame
            number += 1
        if number == 0:
            raise FerError(f"{path}: cannot read (a video with no frames OpenCV can decode)")
    finally:
        capture.release()


def find_media(path, skip=None):
    """[(file, is it a video)]: the file given, or the images and videos in a folder tree,
    less the folder ``skip`` (annotated copies written inside the input are not inputs)."""
    if os.path.isfile(path):
        check_utf8_name(path)
        return [(path, path.lower().endswith(VIDEO_EXTENSIONS))]
    if os.path.exists(path) and not os.path.isdir(path):  # a pipe or a device: reading waits
        raise FerError(f"{path}: not a file or folder (a pipe or a device?)")
    if not os.path.isdir(path):
        raise FerError(f"{path}: no such file or folder")
    skipped = os.path.realpath(skip) if skip else None
    found = []
    for folder, subfolders, names in os.walk(path):
        subfolders[:] = sorted(
            name
            for name in subfolders
            if not name.startswith(".") and os.path.realpath(os.path.join(folder, name)) != skipped
        )
        for name in sorted(names, key=_natural_key):
            file = os.path.join(folder, name)
            # A pipe named x.png waited for a writer forever; a broken link is read, and named.
            special = os.path.exists(file) and not os.path.isfile(file)
            if name.lower().endswith(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS) and not special:
                check_utf8_name(file)
                found.append((file, name.lower().endswith(VIDEO_EXTENSIONS)))
    if not found:
        raise FerError(f"{path}: no images or videos in this folder")
    return found


def read_media(media, every=1, quiet=False):
    """Yield (file, frame, image) for ``find_media``'s list: a photo's frame is None.

    Videos give every ``every``-th frame. A file that cannot be read is one line on stderr
    (unless ``quiet``) and yields (file, None, None), so that the caller can count it; the
    others go on.
    """
    for file, is_video in media:
        try:
            if is_video:
                for frame, image in video_frames(file, every):
                    yield file, frame, image
            else:
                yield file, None, read_image(file)
        except FerError as error:
            if not quiet:
                print(error, file=sys.stderr)
            yield file, None, None


def analyse(
    pictures,
    models,
    detector=None,
    tta="none",
    margin=DEFAULT_MARGIN,
    batch=32,
    blur=0.0,
    boxes=None,
):
    """Yield (file, frame, image, boxes, probabilities (faces, 7)) for each picture.

    ``pictures`` yields (file, frame, image), as ``read_media`` does; an image None (a file
    that could not be read) is passed on with boxes and probabilities None. With
    ``detector`` None each picture is taken as one face crop; ``boxes``, {(file, frame):
    boxes} from ``pooled_blur``, saves finding the faces again. The faces of ``batch``
    pictures are classified together, one prediction per model rather than one per face.
    ``blur`` Gaussian-blurs the crops first, as ``predict.py --blur`` does: one sigma, or a
    list of one per model.
    """
    pending = []
    sigmas = blur if isinstance(blur, list) else [blur] * len(models)

    def classify_pending():
        crops = [
            to_model_input(crop(image, box)) for _, _, image, boxes in pending for box in boxes
        ]
        probabilities = np.zeros((0, data.NUM_CLASSES), dtype=np.float32)
        if crops:
            faces_in = np.stack(crops)  # (faces, 48, 48, 1)
            total = sum(
                evaluation.predict_probabilities(
                    model, evaluation.blur_images(faces_in, sigma), tta
                )
                for model, sigma in zip(models, sigmas)
            )
            probabilities = total / len(models)  # the models' average
        start = 0
        for file, frame, image, boxes in pending:
            yield file, frame, image, boxes, probabilities[start : start + len(boxes)]
            start += len(boxes)
        pending.clear()

    for file, frame, image in pictures:
        if image is None:
            yield from classify_pending()  # keeps the rows in the order of the files
            yield file, frame, None, None, None
            continue
        found = boxes.get((file, frame)) if boxes is not None else None
        if found is None:  # no first pass, or the file was unreadable then: searched now
            found = picture_boxes(image, detector, margin)
        pending.append((file, frame, image, found))
        if len(pending) >= batch:
            yield from classify_pending()
    yield from classify_pending()


def pooled_blur(media, every, detector, margin, sources):
    """detect.py's --blur auto: one sigma per model (``sources``) for all the faces in
    ``media``, matched to the training faces' sharpness its run recorded (printed), and the
    {(file, frame): boxes} found on the way. One sigma for all, as predict.py uses one for a
    test file: the training set was blurred alike, and a face's own sharpness is a poor
    guide (a sigma per face, for 600 Kaggle test faces, ranged 1.9 to 4.9 over the middle
    80% and changed 39% of the shipped CNN's answers; bench/RESULTS.md). One photo of one
    face is matched alone; a folder of them, or a video, together.
    """
    boxes, crops = {}, []
    for file, frame, image in read_media(media, every, quiet=True):  # named in the next pass
        if image is None:
            continue
        found = boxes[(file, frame)] = picture_boxes(image, detector, margin)
        crops += [to_model_input(crop(image, box)) for box in found]
    faces_in = np.stack(crops) if crops else np.zeros((0, data.IMAGE_SIZE, data.IMAGE_SIZE, 1))
    # On stderr: without --csv, detect.py's rows go to stdout.
    auto = evaluation.AUTO_BLUR
    sigmas = [
        evaluation.sigma_for(source, faces_in, auto, out=sys.stderr, moved=None)  # no --run-data
        for source in sources
    ]
    return sigmas, boxes


def picture_boxes(image, detector, margin):
    """The face boxes in a picture, or with ``detector`` None the whole picture as one."""
    if detector is None:
        return [(0, 0, image.shape[1], image.shape[0])]
    return detect_faces(image, detector, margin)


def _natural_key(name):
    # "im2" before "im10", as a person numbering files expects.
    # isdecimal: a part of digits int() reads ('²' is a digit, not decimal, and is kept as text).
    return [int(part) if part.isdecimal() else part.lower() for part in re.split(r"(\d+)", name)]


def _image_files(folder, hidden=True):
    """The image files' names, in no particular order (read_image_folder sorts them once);
    with ``hidden`` False not hidden ones: macOS leaves a ``._5.png`` beside each ``5.png``.
    A broken link is listed, to be skipped with a line as any unreadable image is; a pipe
    named x.png (or a link to one) is not: reading it would wait for a writer."""
    with os.scandir(folder) as entries:
        return [
            entry.name
            for entry in entries
            if data.is_image_entry(entry) and (hidden or not entry.name.startswith("."))
        ]


def _class_folders(path):
    """({label: folder name} of the class sub-folders, the other sub-folders' names).

    Other sub-folders beside class folders are refused: dropping a class silently (FER+'s
    "contempt", say) would change what the model learns.
    """
    wanted = {name.lower(): label for label, name in enumerate(data.CLASS_NAMES)}
    with os.scandir(path) as entries:
        folders = sorted(
            entry.name
            for entry in entries
            if entry.is_dir() and not entry.name.startswith((".", "__"))
        )
    found, unknown = {}, []
    for name in folders:
        label = wanted.get(name.lower())
        if label is None:
            unknown.append(name)
        elif label in found:
            raise FerError(f"{path}: two folders for one class: {found[label]} and {name}")
        else:
            found[label] = name
    if unknown and found:
        raise FerError(
            f"{path}: sub-folder {unknown[0]!r} is not a class: expected "
            f"{', '.join(name.lower() for name in data.CLASS_NAMES)}"
        )
    if unknown and {"train", "test"} & {name.lower() for name in unknown}:
        raise FerError(f"{path}: holds {', '.join(unknown)}: give one of them, e.g. {path}/train")
    return found, unknown


def read_image_folder(path, workers=None):
    """Read the image-folder form: class sub-folders (labelled) or images directly inside.

    Any image size or colour goes through ``to_model_input``. Ids are the file names' numbers
    where every name is one (``0.png``, ``17.png``; the order is then by id, as in a CSV),
    otherwise row numbers; ``names`` always holds the paths relative to ``path``. A file that
    cannot be read is one line on stderr and is left out.
    """
    if not os.path.exists(path):
        raise FerError(f"{path}: no such folder")
    if not os.path.isdir(path):
        raise FerError(f"{path}: not a folder")
    class_folders, other_folders = _class_folders(path)
    # Hidden files are left out of a test folder, whose ids a ._5.png made row numbers. A
    # labelled folder reads them as before (skipped, unreadable): its runs recorded the
    # order of its rows, which their number or name set.
    loose = _image_files(path, hidden=False)
    if class_folders and loose:
        raise FerError(
            f"{path}: holds both class folders and images ({loose[0]}): put the images in "
            "their class folder, or give a folder of unlabelled images only"
        )
    names, labels = loose, None
    if class_folders:
        names, labels = [], []
        for label, folder in sorted(class_folders.items()):
            files = _image_files(os.path.join(path, folder))
            names += [f"{folder}/{name}" for name in files]
            labels += [label] * len(files)
    if not names and other_folders:
        raise FerError(
            f"{path}: no images, and its sub-folders ({', '.join(other_folders)}) are not "
            f"classes: expected {', '.join(name.lower() for name in data.CLASS_NAMES)}"
        )
    if not names:
        raise FerError(f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)}) found")
    # Images deeper down (happy/more/x.png) or in other sub-folders were left out without a
    # word, while the folder's SHA-256 counted them.
    # (Hidden files and folders and a zip's __MACOSX/ copies are no one's images.)
    read = set(names)
    unread = sorted(
        name
        for name in data.images_under(path)
        if name.replace(os.sep, "/") not in read
        and not any(part.startswith((".", "__MACOSX")) for part in name.split(os.sep))
    )
    if unread:
        where = "in class folders" if class_folders else "directly in the folder"
        raise FerError(
            f"{os.path.join(path, unread[0])}: would not be read: images go {where}, not "
            "deeper or in other sub-folders"
        )

    # The order is settled before reading, so every image is decoded straight into its place.
    numbered = data.numbered_names(names)
    if numbered:
        stems = [data.file_stem(name) for name in names]
        order = np.argsort(np.array([int(stem) for stem in stems], dtype=np.int64), kind="stable")
    else:
        # Then by the name itself: face1, Face1 and face01 tie, and were in the order the
        # file system listed them (another validation split for a copy of one folder).
        order = np.array(
            sorted(range(len(names)), key=lambda index: (_natural_key(names[index]), names[index]))
        )
        if labels is not None:  # grouped by class, in CLASS_NAMES order
            order = order[np.argsort(np.array(labels)[order], kind="stable")]
    names = [names[index] for index in order.tolist()]
    labels = np.array(labels, dtype=np.int64)[order] if labels is not None else None

    images, readable = _read_images([os.path.join(path, name) for name in names], workers)
    if not readable.any():
        raise FerError(f"{path}: none of its {len(names)} images could be read")
    if not readable.all():
        names = [name for name, keep in zip(names, readable.tolist()) if keep]
        images = images[readable]
        labels = labels[readable] if labels is not None else None
    # Ids from the images read: a skipped thumbs.png beside 5.png and 6.png made them row
    # numbers, while a submission took the names left for ids (and wrote 0, 1 for 5, 6).
    # Not in a labelled folder, whose ids nothing reads and whose order its runs recorded.
    if labels is None and not numbered and data.numbered_names(names):
        numbered = True
        order = np.argsort(np.array([int(data.file_stem(name)) for name in names]), kind="stable")
        names = [names[index] for index in order.tolist()]
        images = images[order]
    if numbered:
        ids = np.array([int(data.file_stem(name)) for name in names], dtype=np.int64)
    else:
        ids = np.arange(len(names), dtype=np.int64)
    return data.FerData(images=images, labels=labels, ids=ids, path=str(path), names=names)


def _read_images(paths, workers=None):
    """(images (N, 48, 48, 1), readable (N,) bool), decoding in threads.

    OpenCV releases the GIL while it reads and decodes, so threads scale; each thread fills
    its own slice of one preallocated array.
    """
    images = np.zeros((len(paths), data.IMAGE_SIZE, data.IMAGE_SIZE, 1), dtype=np.uint8)
    readable = np.zeros(len(paths), dtype=bool)
    # More threads than cores only queue up on the GIL's Python part of each image.
    workers = workers or min(8, os.cpu_count() or 1)
    errors = [None] * len(paths)

    def read_slice(start, stop):
        for index in range(start, stop):
            try:
                image = read_image(paths[index], cv2.IMREAD_ANYCOLOR)
                images[index] = to_model_input(image)
                readable[index] = True
            except FerError as error:
                errors[index] = str(error)

    bounds = np.linspace(0, len(paths), workers * 4 + 1).astype(int)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        jobs = [pool.submit(read_slice, start, stop) for start, stop in zip(bounds, bounds[1:])]
        for job in jobs:
            job.result()
    for message in errors:
        if message:
            print(f"{message}: skipped", file=sys.stderr)
    return images, readable


def write_image_folder(dataset, path, extension=".png", workers=None):
    """Write ``dataset`` in the image-folder form, file names being its ids.

    Labelled data goes to ``path/<class>/<id>.png``, unlabelled to ``path/<id>.png``;
    ``read_image_folder`` gives back the same arrays, in id order. PNG is lossless.
    """
    if dataset.labels is not None:
        for name in data.CLASS_NAMES:
            os.makedirs(os.path.join(path, name.lower()), exist_ok=True)
    else:
        os.makedirs(path, exist_ok=True)

    def target(index):
        name = f"{dataset.ids[index]}{extension}"
        if dataset.labels is None:
            return os.path.join(path, name)
        return os.path.join(path, data.CLASS_NAMES[dataset.labels[index]].lower(), name)

    def write_slice(start, stop):
        for index in range(start, stop):
            encoded = encode_image(target(index), dataset.images[index])
            with open(target(index), "wb") as file:
                file.write(encoded)

    workers = workers or min(8, os.cpu_count() or 1)
    bounds = np.linspace(0, len(dataset), workers * 4 + 1).astype(int)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        jobs = [pool.submit(write_slice, start, stop) for start, stop in zip(bounds, bounds[1:])]
        for job in jobs:
            job.result()
    return path


# detect.py's table: one row per face found, or one "no face" row per picture.
RESULT_COLUMNS = ("file", "frame", "x", "y", "w", "h", "label", *data.CLASS_NAMES)


def result_rows(file, frame, boxes, probabilities):
    """The RESULT_COLUMNS rows of one picture (a video frame has its number, a photo none)."""
    frame_text = "" if frame is None else str(frame)
    rows = [
        [file, frame_text, *box, data.CLASS_NAMES[row.argmax()], *(f"{value:.6f}" for value in row)]
        for box, row in zip(boxes, probabilities)
    ]
    return rows or [[file, frame_text, "", "", "", "", "no face"] + [""] * data.NUM_CLASSES]


def record_results(results, out, root):
    """detect.py's table for ``analyse``'s results, and with ``out`` an annotated copy of
    each picture written there as it comes (a video's frames are not all kept). Returns (the
    CSV text, pictures read, faces found, files that could not be read)."""
    table, pictures, found, failed = io.StringIO(), 0, 0, 0
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    for file, frame, image, boxes, probabilities in results:
        if image is None:
            failed += 1
            continue
        pictures, found = pictures + 1, found + len(boxes)
        writer.writerows(result_rows(file, frame, boxes, probabilities))
        if out:
            labels = [data.CLASS_NAMES[row.argmax()] for row in probabilities]
            captions = [f"{label} {row.max():.0%}" for label, row in zip(labels, probabilities)]
            write_image(
                os.path.join(out, annotated_name(file, frame, root)),
                annotate(image, boxes, captions),
            )
    return table.getvalue(), pictures, found, failed


def check_outputs(media, root, csv_path, out, force, model_files=(), cascade=None):
    """Refuse, before any model is loaded, outputs that would destroy something or could not
    be written: a --csv that is a folder, an input picture, an annotated copy, the cascade, a
    model or what its run holds (even with ``force``), or an existing file without ``force``;
    an --out that is a file or the input's own folder; an annotated copy that two inputs would
    share, that would replace an input (even with ``force``), or that exists without
    ``force``."""
    if csv_path:
        if os.path.isdir(csv_path):
            raise FerError(f"{csv_path}: is a folder, expected a file name for --csv")
        csv_real = os.path.realpath(csv_path)
        if csv_real in {os.path.realpath(file) for file, _ in media}:
            raise FerError(f"{csv_path}: is one of the inputs; --csv must not overwrite it")
        # As predict.py's --out: a run's config.json or state.json replaced broke a resume.
        protected = {"the --cascade file": cascade}
        for path in model_files:
            protected.update(
                evaluation.model_inputs(path, f"the model {path}", {"--csv": csv_path})
            )
        for what, path in protected.items():
            if path and csv_real == os.path.realpath(path):
                raise FerError(f"{csv_path}: is {what}; --csv must not overwrite it")
        if os.path.exists(csv_path) and not force:
            raise FerError(f"{csv_path}: already exists (pass --force to overwrite it)")
        check_writable(csv_path)
    if not out:
        return
    if os.path.exists(out) and not os.path.isdir(out):
        raise FerError(f"--out {out}: is a file, expected a folder for the annotated copies")
    if os.path.realpath(out) == os.path.realpath(root):
        raise FerError(f"--out {out}: is the input's folder; annotating would overwrite it")
    for path in model_files:
        runs.check_outside_checkpoints(out, path, "--out", f"the model {path}")
        # As predict.py's outputs: a copy replaced a face the model trained on, or joined them.
        for what, folder in evaluation.recorded_data_inputs(path, f"the model {path}").items():
            writes, advice = "the annotated copies", "give another --out"
            where = f"{folder} ({what})"
            data.check_outside_images(out, folder, where, writes, advice, named=f"--out {out}")
    # x.pgm is annotated as x.pgm.png (a PNG shows colour): beside an x.pgm.png, one copy
    # would silently replace the other. So would a photo clip.mp4.frame000000.jpg beside
    # clip.mp4, whose first frame is annotated under that name.
    sources = {}
    videos = {_frame_prefix(file, root): file for file, is_video in media if is_video}
    for file, is_video in media:
        if is_video:
            continue
        name = annotated_name(file, None, root)
        frame = FRAME_NAME.fullmatch(name)
        clash = sources.get(name) or (videos.get(frame.group(1)) if frame else None)
        if clash:
            target = os.path.join(out, name)
            raise FerError(f"{clash} and {file}: both would be annotated as {target}")
        sources[name] = file

    def copied_to(path):
        """The input whose annotated copy (a video's: one of its frames) goes at ``path``."""
        if not is_inside(path, out):
            return None
        name = os.path.relpath(os.path.realpath(path), os.path.realpath(out))
        frame = FRAME_NAME.fullmatch(name)
        return sources.get(name) or (videos.get(frame.group(1)) if frame else None)

    if csv_path and copied_to(csv_path):
        raise FerError(f"{csv_path}: is where --out puts an annotated copy; give another --csv")
    # An --out above the input folder: pics/pics/x.png's copy replaced the input pics/x.png.
    for file, _ in media:
        source = copied_to(file)
        if source:
            raise FerError(
                f"{file}: is an input, where --out {out} would put the annotated copy of "
                f"{source}; give another --out"
            )
    # Each copy's place, before the models run: a file where a sub-folder goes, or a folder
    # where a copy goes, failed after the work, with the copies before it written.
    copies = [os.path.join(out, name) for name in sources]
    copies += [os.path.join(out, annotated_name(file, 0, root)) for file in videos.values()]
    first_copies = {}  # folder: the first copy going there (a video: its first frame)
    for copy in copies:
        first_copies.setdefault(os.path.dirname(copy), copy)
    for copy in first_copies.values():
        check_writable(copy)
    for name, file in sources.items():
        if os.path.isdir(os.path.join(out, name)):
            target = os.path.join(out, name)
            raise FerError(f"{target}: is a folder, expected the annotated copy of {file}")
    if force:
        return
    for file, is_video in media:
        # A video's copies are its frames, NAME.frame000120.jpg: any one of them counts.
        name = _frame_prefix(file, root) if is_video else annotated_name(file, None, root)
        folder, prefix = os.path.split(os.path.join(out, name))
        taken = sorted(
            name
            for name in (os.listdir(folder) if os.path.isdir(folder) else [])
            if name.startswith(prefix) and (is_video or name == prefix)
        )
        if taken:
            raise FerError(
                f"{os.path.join(folder, taken[0])}: already exists (pass --force to overwrite "
                "the annotated copies)"
            )


def annotated_name(file, frame, root):
    """Where an annotated copy goes under --out: the file's path below the input folder, a
    video frame as NAME.frame000120.jpg, and a photo as PNG unless its own format shows colour
    and OpenCV writes it (a PGM is grey only; photo.jfif or a name with no extension has no
    writer, and .exr's writer is disabled)."""
    if frame is not None:
        return f"{_frame_prefix(file, root)}{frame:06d}.jpg"
    name = os.path.relpath(file, root)
    return name if name.lower().endswith(ANNOTATED_EXTENSIONS) else f"{name}.png"


def _frame_prefix(file, root):
    """The start of every annotated frame's name of a video: NAME.frame (then 000120.jpg)."""
    return os.path.relpath(file, root) + ".frame"
