"""Find the faces in photos, folders of photos or videos, and classify their expressions.

    python detect.py photo.jpg --model models/cnn_a                   # rows printed as CSV
    python detect.py photos/ --model models/cnn_a --csv faces.csv --out annotated/
    python detect.py clip.mp4 --every 10 --model models/cnn_a models/cnn_b --tta flip \\
        --csv clip.csv                          # two models averaged, one frame in ten
    python detect.py crops/ --no-detect --csv crops.csv    # images that are already faces
    python detect.py photo.jpg                  # the shipped pretrained CNN

One row per face: file, frame (video frame number, empty for a photo), box x, y, w, h in
pixels, label, and the seven class probabilities; a picture without a face gets one row with
an empty box and the label "no face". Annotated copies (--out) keep the file's name; a video's
frames become clip.mp4.frame000120.jpg. A file that cannot be read is one line on stderr, the
others are still processed, and the exit status is then 2. --margin widens each face box by
that fraction of its size on every side. Faces are found with OpenCV's Haar cascade, part of
opencv-python-headless 4.x: OpenCV 5's wheels lack it (install 'opencv-python-headless<5').
--blur auto (the default) blurs all the faces found, when they are much sharper than the faces
the model trained on, with the one sigma that makes them as sharp on average (a first pass
finds them); --blur 0 leaves them as they are.
"""

import os
import sys

from ferkit import cli, evaluation, faces, files, runs
from ferkit.errors import FerError


def main():
    parser = cli.ArgumentParser(description=__doc__, formatter_class=cli.RawHelp)
    parser.add_argument("input", help="an image, a video, or a folder of them (and sub-folders)")
    parser.add_argument("--model", nargs="+", help="run folders or .keras files (averaged)")
    parser.add_argument("--csv", help="write the rows to this file (default: print them)")
    parser.add_argument("--out", help="folder for annotated copies: boxes and labels drawn")
    parser.add_argument("--every", type=int, default=1, help="videos: one frame in N (default 1)")
    parser.add_argument("--tta", default="none", choices=evaluation.TTA_MODES, help="as predict.py")
    evaluation.add_blur_argument(parser, "face crops")
    parser.add_argument("--no-detect", action="store_true", help="each image is one face crop")
    margin = faces.DEFAULT_MARGIN
    parser.add_argument("--margin", type=float, help=f"per side (default {margin})")
    parser.add_argument("--cascade", help="a Haar cascade XML instead of OpenCV's own")
    parser.add_argument("--force", action="store_true", help="overwrite --csv, annotated copies")
    parser.add_argument("--unsafe", action="store_true", help="allow models holding code (Lambda)")
    args = parser.parse_args()
    for option, value, least in (("--every", args.every, 1), ("--margin", args.margin, 0)):
        if value is not None and not least <= value < float("inf"):
            raise FerError(f"{option} must be a finite number of at least {least}, got {value}")
    # The detector's options, typed with --no-detect, were ignored (a missing cascade too).
    unused = [name for name in ("cascade", "margin") if getattr(args, name) is not None]
    if args.no_detect and unused:
        raise FerError(
            f"--{unused[0]} is for the face detector; --no-detect takes each image as a face"
        )
    if args.margin is None:
        args.margin = margin
    evaluation.check_blur(args.blur)
    media = faces.find_media(args.input, skip=args.out)
    root = args.input if os.path.isdir(args.input) else os.path.dirname(args.input) or "."
    # Every model checked by its first bytes before OpenCV's detector or Keras is started.
    model_files = [runs.checked_model_path(path) for path in args.model or [runs.PRETRAINED]]
    faces.check_outputs(media, root, args.csv, args.out, args.force, model_files, args.cascade)
    for path in model_files:
        runs.recorded_sharpness(path)  # refused if hand-edited wrong, before faces are found
    detector = None if args.no_detect else faces.load_detector(args.cascade)
    if not args.model:
        print(f"No model given: using the pretrained CNN {runs.PRETRAINED}", file=sys.stderr)
    blur, known_boxes = args.blur, None
    if blur == evaluation.AUTO_BLUR:  # a first pass: the faces' sharpness, and their boxes
        blur, known_boxes = faces.pooled_blur(media, args.every, detector, args.margin, model_files)
    models = [runs.load_model(path, unsafe=args.unsafe) for path in model_files]

    stream = faces.read_media(media, args.every)
    results = faces.analyse(
        stream, models, detector, args.tta, args.margin, blur=blur, boxes=known_boxes
    )
    table, pictures, found, failed = faces.record_results(results, args.out, root)
    if args.csv:
        files.write_text(args.csv, table, force=True)
        print(f"wrote {args.csv}: {found} face(s) in {pictures} picture(s)", file=sys.stderr)
    else:
        sys.stdout.write(table)
    if failed:
        raise FerError(f"{failed} of {len(media)} files could not be read (listed above)")


if __name__ == "__main__":
    cli.run(main)
