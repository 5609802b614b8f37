"""The figure scripts on a tiny DNN run (synthetic faces, one epoch): each writes a PNG of the
expected size that is not blank, and the confusion matrix adds up."""

import argparse
import json
import os
import runpy
import shutil
import sys

import matplotlib.figure
import matplotlib.image
import numpy as np
import pytest
from conftest import (
    REPOSITORY,
    make_test_csv,
    make_train_csv,
    pixels,
    record_sharpness,
    synthetic_images,
    write_csv,
)
from test_runs import _recorded_run
from test_training import tiny_config

from ferkit import cli, data, evaluation, plots, runs, training
from ferkit import config as configuration
from ferkit.errors import FerError


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("plots")


@pytest.fixture(scope="module")
def train_csv(folder):
    # 140 faces: the 10% validation split then holds two of each class.
    return make_train_csv(folder / "train.csv", count=140)


@pytest.fixture(scope="module")
def dnn_run(folder, train_csv):
    return training.train(
        tiny_config(train_csv, "dnn", epochs=1), str(folder / "dnn"), verbose=False
    )


def call_script(monkeypatch, script, *arguments):
    """Run a script's main() in this process (Keras is already started here)."""
    namespace = runpy.run_path(os.path.join(REPOSITORY, script))
    monkeypatch.setattr(sys, "argv", [script, *map(str, arguments)])
    namespace["main"]()


def script_status(monkeypatch, script, *arguments):
    """The exit status of a script run in this process as from a shell, its errors turned
    into one line and a status as its ``cli.run`` turns them."""
    namespace = runpy.run_path(os.path.join(REPOSITORY, script))
    monkeypatch.setattr(sys, "argv", [script, *map(str, arguments)])
    try:
        cli.run(namespace["main"])
    except SystemExit as stopped:
        return stopped.code
    return 0


def script_result(monkeypatch, capsys, script, *arguments):
    """(exit status, stdout, stderr) of ``script_status``'s run."""
    capsys.readouterr()  # what the test printed before
    status = script_status(monkeypatch, script, *arguments)
    stdout, stderr = capsys.readouterr()
    return status, stdout, stderr


def assert_drawn(path, width_inches, height_inches, variance=0.0, coloured=0.0):
    """The PNG has the figure's size in pixels, and is not blank: its grey levels vary more
    than empty axes do (0.01-0.03) or enough of it is in colour (curves, the matrix)."""
    image = matplotlib.image.imread(path)[..., :3]
    expected = (round(height_inches * plots.DPI), round(width_inches * plots.DPI))
    assert abs(image.shape[0] - expected[0]) <= 1 and abs(image.shape[1] - expected[1]) <= 1
    assert image.mean(axis=-1).var() > variance
    if coloured:
        assert (image.max(axis=-1) - image.min(axis=-1) > 0.3).mean() > coloured
    leftovers = [name for name in os.listdir(os.path.dirname(path)) if ".tmp" in name]
    assert leftovers == []


def write_history(folder, epochs):
    os.makedirs(folder, exist_ok=True)
    lines = ["epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds"]
    for epoch in range(1, epochs + 1):
        # Validation accuracy peaks at epoch 6 (0.6), then falls.
        validation = 0.6 - 0.02 * abs(epoch - 6)
        lines.append(f"{epoch},{2 / epoch:.4f},{0.3 + epoch / 40},1.5,{validation:.4f},0.001,9")
    (folder / "history.csv").write_text("\n".join(lines) + "\n")
    return str(folder)


def test_history_two_panels_in_the_run_folder(dnn_run, folder, monkeypatch, capsys):
    still_training = write_history(folder / "running", epochs=10)  # no metrics.json yet
    call_script(monkeypatch, "plot_history.py", dnn_run, still_training)
    path = os.path.join(dnn_run, "figures", "history.png")
    assert_drawn(path, 12, 4.6, coloured=0.003)
    output = capsys.readouterr().out
    assert "dnn: 1 epoch, best epoch 1" in output and "running: 10 epochs, best epoch 6" in output


def test_best_epoch_of_a_running_run_skips_nan(folder):
    run = write_history(folder / "diverged", epochs=3)
    lines = (folder / "diverged" / "history.csv").read_text().splitlines()
    lines[2] = "2,nan,nan,nan,nan,0.001,9"  # a diverged epoch
    (folder / "diverged" / "history.csv").write_text("\n".join(lines) + "\n")
    assert plots.best_epoch(run, plots.read_history(run)) == 3


@pytest.mark.parametrize("metrics", ["{}", "[1]", '{"best_epoch": null}'])
def test_best_epoch_refuses_a_metrics_json_training_did_not_write(folder, metrics):
    # These gave a KeyError and two TypeErrors in plot_history.py.
    run = write_history(folder / f"metrics{len(metrics)}", epochs=3)
    (folder / f"metrics{len(metrics)}" / "metrics.json").write_text(metrics)
    with pytest.raises(FerError, match="metrics.json: no best_epoch"):
        plots.best_epoch(run, plots.read_history(run))


@pytest.mark.parametrize("epoch", ["nan", "inf", "0", "2.5"])
def test_a_history_epoch_that_is_not_a_count_is_named_by_its_line(folder, epoch):
    # nan and inf gave a ValueError and an OverflowError choosing the best epoch.
    run = write_history(folder / f"epoch_{epoch}", epochs=3)
    lines = (folder / f"epoch_{epoch}" / "history.csv").read_text().splitlines()
    lines[3] = epoch + lines[3][lines[3].index(",") :]
    (folder / f"epoch_{epoch}" / "history.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(FerError, match=f"history.csv: line 4: epoch '{epoch}' is not 1, 2, …"):
        plots.read_history(run)


@pytest.mark.parametrize(
    "row, message",
    [
        # Said "column 'loss' holds a value that is not a number", "column None …" and
        # "column 'seconds' …", naming no line.
        ("3,abc,0.4,1.5,0.5,0.001,9", "line 5: loss 'abc' is not a number"),
        ("3,1,0.4,1.5,0.5,0.001,9,7", "line 5: 8 values for 7 columns"),
        ("3,1,0.4,1.5,0.5,0.001", "line 5: 6 values for 7 columns"),
    ],
)
def test_an_edited_history_row_is_named_by_its_line(tmp_path, row, message):
    run = write_history(tmp_path, epochs=3)
    lines = (tmp_path / "history.csv").read_text().splitlines()
    lines[3] = row
    lines.insert(1, "")  # a blank line counts: the row is on line 5
    (tmp_path / "history.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(FerError, match=f"history.csv: {message}"):
        plots.read_history(run)


def test_a_history_whose_epochs_start_again_is_named_by_its_line(tmp_path):
    run = write_history(tmp_path, epochs=3)
    lines = (tmp_path / "history.csv").read_text().splitlines()
    (tmp_path / "history.csv").write_text("\n".join([*lines, *lines[2:]]) + "\n")  # 1 2 3 2 3
    with pytest.raises(FerError, match="history.csv: line 5: epoch 2 follows epoch 3 .* rise$"):
        plots.read_history(run)


def test_a_history_saved_with_a_byte_order_mark_reads(tmp_path):
    run = write_history(tmp_path, epochs=3)
    text = (tmp_path / "history.csv").read_bytes()
    (tmp_path / "history.csv").write_bytes(b"\xef\xbb\xbf" + text)  # "no 'epoch' column"
    assert plots.read_history(run)["epoch"].tolist() == [1, 2, 3]


def test_a_model_file_is_named_by_its_run_without_reading_its_config(tmp_path):
    for content in ('{"other": "tool"}', "{not json"):
        (tmp_path / "config.json").write_text(content)
        # Titles read the config.json: another tool's, or a broken one, failed after the model
        # had run, while the folder itself was drawn.
        assert plots.run_name(str(tmp_path / "m.keras")) == f"{tmp_path.name} m"
    os.remove(tmp_path / "config.json")
    assert plots.run_name(str(tmp_path / "m.keras")) == "m.keras"


def test_another_model_file_in_a_run_folder_has_figures_of_its_own(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "model.keras", "finetuned.keras"):
        (run / name).write_text("{}")
    # finetuned.keras was titled as the run and replaced its best model's confusion.png.
    assert plots.run_name(str(run / "finetuned.keras")) == "run finetuned"
    assert plots.figure_path(str(run / "finetuned.keras"), "confusion").endswith(
        "figures/confusion_finetuned.png"
    )
    for source in (run, run / "model.keras"):
        assert plots.run_name(str(source)) == "run"
        assert plots.figure_path(str(source), "confusion").endswith("run/figures/confusion.png")


@pytest.mark.parametrize("best", [10**400, 7])
def test_a_best_epoch_that_history_does_not_hold_is_refused(folder, best):
    run = write_history(folder / f"best_{len(str(best))}", epochs=3)
    (folder / f"best_{len(str(best))}" / "metrics.json").write_text(f'{{"best_epoch": {best}}}')
    with pytest.raises(FerError, match="metrics.json: best_epoch .* is not an epoch of .*history"):
        plots.best_epoch(run, plots.read_history(run))  # 10**400: OverflowError drawing it


def test_history_figure_layout_and_colours(folder):
    history = plots.read_history(write_history(folder / "layout", epochs=10))
    figure = plots.history_figure([("a", history, 6), ("b", history, 6)], "two runs")
    accuracy, loss = figure.axes
    assert len(figure.axes) == 2
    assert accuracy.get_title() == "Accuracy" and loss.get_title() == "Loss"
    curves = [line for line in accuracy.get_lines() if len(line.get_xdata()) == 10]
    colours = [line.get_color() for line in curves]
    styles = [line.get_linestyle() for line in curves]
    assert colours == ["tab:blue", "tab:orange"] * 2 and styles == ["-", "-", "--", "--"]
    # Training is the blue curve, validation the orange one, each over the epochs.
    np.testing.assert_allclose(curves[0].get_ydata(), history["accuracy"])
    np.testing.assert_allclose(curves[1].get_ydata(), history["val_accuracy"])
    # The best epoch is marked where it is: a vertical line and a dot on the validation curve.
    lines = accuracy.get_lines()
    vertical = [list(line.get_xdata()) for line in lines if len(line.get_xdata()) == 2]
    dots = [
        (list(line.get_xdata()), list(line.get_ydata()))
        for line in lines
        if len(line.get_xdata()) == 1
    ]
    assert vertical == [[6, 6]] * 2 and dots == [([6], [0.6])] * 2
    # Several runs share one legend below the panels: runs by line style, curves by colour.
    assert accuracy.get_legend() is None and loss.get_legend() is None
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert labels == [
        "a (best epoch 6)",
        "b (best epoch 6)",
        "training",
        "validation",
        "best epoch (validation)",
    ]
    single = plots.history_figure([("a", history, 6)], "one run")
    labels = [text.get_text() for text in single.axes[0].get_legend().get_texts()]
    assert labels == ["training", "validation", "best epoch 6"] and not single.legends


def test_every_run_of_a_history_figure_has_its_own_line_style(folder):
    history = plots.read_history(write_history(folder / "styles", epochs=10))
    count = len(plots.LINE_STYLES)
    figure = plots.history_figure([(f"r{n}", history, 6) for n in range(count)], "all")
    # The fifth run was drawn as the first: two runs alike, one legend entry each.
    handles = figure.legends[0].legend_handles[:count]
    dashes = {(handle.get_linestyle(), str(handle._dash_pattern)) for handle in handles}
    assert len(dashes) == count
    with pytest.raises(FerError, match=f"{count + 1} runs: a history figure holds at most"):
        plots.history_figure([(f"r{n}", history, 6) for n in range(count + 1)], "too many")


def test_confusion_on_the_run_s_own_training_file_says_so(dnn_run, monkeypatch, capsys):
    trained_on = runs.run_config(dnn_run)["data"]
    call_script(monkeypatch, "confusion.py", dnn_run, "--data", trained_on, "--blur", "0")
    assert f"Note: {dnn_run} trained on these faces of {trained_on}" in capsys.readouterr().out


def test_confusion_rows_sum_to_one_and_counts_to_the_images(dnn_run):
    validation = runs.validation_data(dnn_run)
    model = runs.load_model(dnn_run)
    predictions = evaluation.predict_probabilities(model, validation.images).argmax(axis=1)
    counts = plots.confusion_counts(validation.labels, predictions)
    assert counts.shape == (7, 7) and counts.sum() == len(validation) == 14
    assert np.allclose(plots.row_rates(counts).sum(axis=1), 1.0)
    assert np.array_equal(
        counts.diagonal(), [np.sum((validation.labels == c) & (predictions == c)) for c in range(7)]
    )


def test_most_confused_pairs_are_named_with_their_share():
    counts = np.diag([10] * 7)
    fear, sad, neutral = (data.CLASS_NAMES.index(name) for name in ("Fear", "Sad", "Neutral"))
    counts[fear] = 0
    counts[fear, fear], counts[fear, sad], counts[fear, neutral] = 72, 18, 10
    assert plots.most_confused(counts) == ["Fear → Sad 18%", "Fear → Neutral 10%"]


def test_a_share_never_rounds_to_none_or_all():
    assert [plots.percent(rate) for rate in (0, 1 / 300, 0.005, 0.5, 199 / 200, 1)] == [
        "0%",
        "<1%",
        "<1%",
        "50%",
        ">99%",
        "100%",
    ]
    counts = np.diag([10] * 7)
    counts[2, 2], counts[2, 5] = 299, 1
    assert plots.most_confused(counts) == ["Fear → Surprise <1%"]  # was "… 0%"
    figure = plots.confusion_figure(counts, "t")
    cells = [text.get_text() for text in figure.axes[0].texts]
    assert ">99%\n299" in cells and "<1%\n1" in cells


def test_confusion_script_figure_and_report(dnn_run, monkeypatch, capsys):
    views = []
    predict = evaluation.predict_probabilities

    def counted(model, images, tta="none", *arguments, **keywords):
        views.append(tta)
        return predict(model, images, tta, *arguments, **keywords)

    monkeypatch.setattr(evaluation, "predict_probabilities", counted)
    call_script(monkeypatch, "confusion.py", dnn_run, "--tta", "flip")
    assert views == ["flip"]  # the title said "TTA flip" while predicting without it
    assert_drawn(
        os.path.join(dnn_run, "figures", "confusion_tta-flip.png"), 8.5, 7.5, coloured=0.02
    )
    output = capsys.readouterr().out
    assert "14 images, accuracy" in output and "TTA flip" in output
    assert "precision" in output and "Neutral" in output  # scikit-learn's report
    figure = plots.confusion_figure(np.diag([2] * 7), "title")
    assert len(figure.axes) == 2  # the matrix and its colour bar


def test_a_checkpoint_s_figure_is_drawn_on_its_run_s_validation_faces_under_its_name(
    dnn_run, monkeypatch, capsys
):
    # Its run's config.json was not found beside it ("give --data CSV"), and its figure
    # would have gone into the checkpoint folder, named like the best model's.
    checkpoint = os.path.join(dnn_run, "checkpoint", "epoch-0001.keras")
    call_script(monkeypatch, "confusion.py", checkpoint)
    assert os.path.exists(os.path.join(dnn_run, "figures", "confusion_epoch-0001.png"))
    assert (
        f"{os.path.basename(dnn_run)} epoch-0001 on validation split of train.csv: 14 images"
        in (capsys.readouterr().out)
    )
    # Nor may an output replace its run's files (its best model too), nor go into its
    # checkpoint folder.
    for name, said in (("config.json", "the configuration"), ("model.keras", "the model.keras")):
        with pytest.raises(FerError, match=f"{name}: is {said} of the model"):
            evaluation.check_prediction_arguments(
                argparse.Namespace(
                    model=checkpoint,
                    out=os.path.join(dnn_run, name),
                    proba=None,
                    labels=None,
                    blur="auto",
                    test="t.csv",
                    usage=None,
                    force=True,
                    run_data=[],
                )
            )
    with pytest.raises(FerError, match="cm.png: is in the checkpoint folder of .*write --out"):
        out = os.path.join(os.path.dirname(checkpoint), "cm.png")
        call_script(monkeypatch, "confusion.py", checkpoint, "--out", out)
    # The checkpoint folder itself is no model: said so.
    with pytest.raises(FerError, match="is a run's checkpoint folder: give the run folder"):
        call_script(monkeypatch, "confusion.py", os.path.dirname(checkpoint))


def test_a_file_is_a_checkpoint_only_by_its_name_in_a_run_s_checkpoint_folder(tmp_path):
    # A run named "checkpoint" was read as its parent's checkpoint, and so was a copy.
    run = tmp_path / "models" / "checkpoint"
    (run / "checkpoint").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "checkpoint" / "state.json").write_text("{}")
    assert runs.model_run_folder(str(run / "model.keras")) == str(run)
    loose = tmp_path / "copies" / "checkpoint"
    loose.mkdir(parents=True)
    assert runs.model_run_folder(str(loose / "epoch-0001.keras")) == str(loose)
    assert runs.model_run_folder(str(run / "checkpoint" / "epoch-0001.keras")) == str(run)
    assert runs.model_run_folder(str(run / "checkpoint" / "mine.keras")) == str(run / "checkpoint")
    # Beside another tool's config.json, a folder of that name is no run's: written into.
    (tmp_path / "copies" / "config.json").write_text("{}")
    assert runs.model_run_folder(str(loose / "epoch-0001.keras")) == str(loose)
    runs.check_outside_checkpoints(str(loose / "s.png"), str(tmp_path / "copies"), "--out")
    with pytest.raises(FerError, match="is in the checkpoint folder of"):
        runs.check_outside_checkpoints(str(run / "checkpoint" / "s.png"), str(run), "--out")


def test_figures_of_data_faces_are_named_after_them(tmp_path):
    # saliency.py --data x.csv --index 3 replaced the figure of the run's validation face 3.
    given = {"data": None, "usage": None, "blur": "auto"}
    assert plots.data_suffix(argparse.Namespace(**given)) == ""
    given["data"] = "data/fer2013.csv"
    assert plots.data_suffix(argparse.Namespace(**given)) == "_fer2013_blur-auto"
    given.update(usage="PrivateTest", blur=2.0)
    assert plots.data_suffix(argparse.Namespace(**given)) == "_fer2013_PrivateTest_blur2"
    # Two versions of one file were both "faces"; a gzipped copy is the same faces.
    names = ["faces.v1.csv", "faces.v2.CSV", "faces.v1.csv.gz", "faces/"]
    assert [plots.data_name(name) for name in names] == [
        "faces.v1",
        "faces.v2",
        "faces.v1",
        "faces",
    ]


def test_samples_of_two_usages_of_one_file_are_two_figures(tmp_path, monkeypatch):
    # --usage PublicTest's samples replaced the Training ones: both were samples_fer2013.png.
    images, labels = synthetic_images(14)
    usages = ["Training"] * 7 + ["PublicTest"] * 7
    rows = [(label, pixels(image), usage) for image, label, usage in zip(images, labels, usages)]
    fer2013 = write_csv(tmp_path / "fer2013.csv", ("emotion", "pixels", "Usage"), rows)
    monkeypatch.chdir(tmp_path)
    for usage in ("PublicTest", "Training"):
        call_script(
            monkeypatch, "samples.py", "--data", fer2013, "--usage", usage, "--per-class", 1
        )
    assert sorted(os.listdir(tmp_path / "models" / "figures")) == [
        "samples_fer2013_PublicTest.png",
        "samples_fer2013_Training.png",
    ]


def test_confusion_on_a_data_file_with_labels(dnn_run, folder, train_csv, monkeypatch, capsys):
    # An id,feature file labelled by an id,label file, as the public test set comes.
    images, labels = data.read_csv(train_csv).images[:20], data.read_csv(train_csv).labels[:20]
    pixels = [" ".join(map(str, image.reshape(-1))) for image in images]
    test = folder / "unlabelled.csv"
    test.write_text("id,feature\n" + "".join(f"{i + 100},{p}\n" for i, p in enumerate(pixels)))
    labels_file = folder / "labels.csv"
    labels_file.write_text("id,label\n" + "".join(f"{i + 100},{v}\n" for i, v in enumerate(labels)))
    out = folder / "confusion.svg"
    call_script(
        monkeypatch, "confusion.py", dnn_run, "--data", test, "--labels", labels_file, "--out", out
    )
    assert out.read_text().lstrip().startswith("<?xml") and "20 images" in capsys.readouterr().out
    # As predict.py --blur: the faces blurred first (sharp test faces, blurred training ones).
    arguments = ("--data", test, "--labels", labels_file, "--blur", 3.5)
    call_script(monkeypatch, "confusion.py", dnn_run, *arguments)
    assert "unlabelled.csv labelled by labels.csv, blurred (sigma 3.5)" in capsys.readouterr().out
    assert os.path.exists(os.path.join(dnn_run, "figures", "confusion_unlabelled_blur3.5.png"))
    # --blur auto, the default, is named too: --blur 0 would otherwise replace its figure.
    call_script(monkeypatch, "confusion.py", dnn_run, "--data", test, "--labels", labels_file)
    assert os.path.exists(os.path.join(dnn_run, "figures", "confusion_unlabelled_blur-auto.png"))


def test_saliency_script_one_row_per_face(dnn_run, train_csv, monkeypatch):
    call_script(monkeypatch, "saliency.py", dnn_run, "--index", 0, 5, 9)
    # Three rows of face, map and masked face, plus the row labels and the title.
    assert_drawn(
        os.path.join(dnn_run, "figures", "saliency_0-5-9.png"),
        3 * 1.7 + 0.9,
        3 * 1.7 + 0.7,
        variance=0.05,
    )
    # Faces of --data are other faces: their figure does not replace that one.
    call_script(monkeypatch, "saliency.py", dnn_run, "--index", 0, "--data", train_csv)
    assert os.path.exists(os.path.join(dnn_run, "figures", "saliency_0_train_blur-auto.png"))


def test_saliency_script_passes_its_target_noise_and_keep_on(dnn_run, monkeypatch):
    from ferkit import explain

    calls = {}
    saliency, mask = explain.saliency, explain.mask_low_saliency

    def recorded_saliency(model, images, classes, samples, noise):
        calls["saliency"] = (list(classes), samples, noise)
        return saliency(model, images, classes, samples, noise)

    def recorded_mask(images, maps, keep):
        calls["keep"] = keep
        return mask(images, maps, keep)

    monkeypatch.setattr(explain, "saliency", recorded_saliency)
    monkeypatch.setattr(explain, "mask_low_saliency", recorded_mask)
    arguments = ["--index", 0, 5, "--target", "true", "--smoothgrad", 2, "--noise", 0.05]
    call_script(monkeypatch, "saliency.py", dnn_run, *arguments, "--keep", 0.3, "--force")
    true_labels = runs.validation_data(dnn_run).labels[[0, 5]].tolist()
    assert calls == {"saliency": (true_labels, 2, 0.05), "keep": 0.3}


def test_saliency_figures_that_show_other_maps_have_other_names():
    def name(**options):
        defaults = dict(index=[0, 5], per_class=None, target="predicted", smoothgrad=0)
        defaults.update(noise=configuration.SMOOTHGRAD_NOISE, keep=configuration.SALIENCY_KEEP)
        return plots.saliency_name(argparse.Namespace(**{**defaults, **options, "data": None}))

    assert name() == "saliency_0-5"
    assert name(per_class=2, index=None) == "saliency_per-class-2"
    # Each replaced the one before: another class's gradient, noise, share or faces.
    others = [
        name(target="true"),
        name(smoothgrad=3),
        name(smoothgrad=3, noise=0.3),
        name(keep=0.3),
        name(index=[0, 1, 2, 3, 4, 5, 6]),
        name(index=[0, 1, 2, 3, 4, 5, 9]),
        name(index=[0, 1, 2, 3, 4, 5]),
    ]
    assert len({name(), *others}) == 1 + len(others)
    assert others[0] == "saliency_0-5_target-true" and others[3] == "saliency_0-5_keep-0.3"


def test_target_true_names_the_face_its_labels_file_does_not_label(dnn_run, tmp_path, monkeypatch):
    test_csv = make_test_csv(tmp_path / "test.csv", count=6)
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n0,3\n1,4\n")
    arguments = ["--data", test_csv, "--labels", labels, "--index", 0, 5, "--target", "true"]
    # "needs labelled images: give --labels too", with --labels given.
    with pytest.raises(FerError, match="labels.csv has no label for --index 5"):
        call_script(monkeypatch, "saliency.py", dnn_run, *arguments, "--out", tmp_path / "s.png")


def test_a_class_without_faces_keeps_its_row_label():
    face = plots.Panel(np.zeros((48, 48, 1)))
    figure = plots.grid_figure([[face, face], [], [None]], "t", row_labels=["a", "b", "c"])
    axes = np.array(figure.axes).reshape(3, 2)
    # Turning the axis off hid the label: a blank, unlabelled row for an absent class.
    assert [axis.get_ylabel() for axis in axes[:, 0]] == ["a", "b", "c"]
    assert all(axis.axison for axis in axes[:, 0]) and not axes[1, 1].axison
    assert [text.get_text() for text in axes[1, 0].texts] == ["none"]


def test_samples_script_two_grids(train_csv, folder, monkeypatch):
    out = folder / "samples.png"
    call_script(monkeypatch, "samples.py", "--data", train_csv, "--per-class", 3, "--out", out)
    # The settings line, wrapped to the figure's width, takes one more line of 0.2 inches.
    assert_drawn(str(out), 2 * 3 * 1.3 + 1.5, 7 * 1.3 + 1.2 + 0.2, variance=0.05)


def test_samples_script_augments_with_the_run_s_settings_and_the_seed(
    dnn_run, train_csv, folder, monkeypatch
):
    run = folder / "rotated_run"
    shutil.copytree(dnn_run, run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "rotation_range": 25.0}))
    calls = []
    augmented = plots.augmented

    def recorded(images, settings, seed):
        calls.append((settings["rotation_range"], seed))
        return augmented(images, settings, seed)

    monkeypatch.setattr(plots, "augmented", recorded)
    arguments = ["--data", train_csv, "--run", run, "--seed", 7, "--out", folder / "s.png"]
    call_script(monkeypatch, "samples.py", *arguments, "--per-class", 1)
    assert calls == [(25.0, 7)]


def test_samples_of_a_fer2013_csv_are_its_training_rows(folder, monkeypatch):
    images, labels = synthetic_images(21)
    usages = ["Training"] * 14 + ["PublicTest"] * 7
    rows = [(label, pixels(image), usage) for image, label, usage in zip(images, labels, usages)]
    path = write_csv(folder / "fer2013.csv", ("emotion", "pixels", "Usage"), rows)
    drawn = {}

    def capture(original_rows, changed_rows, row_labels, title):
        drawn.update(rows=original_rows, title=title)
        return matplotlib.figure.Figure()

    monkeypatch.setattr(plots, "sample_figure", capture)
    call_script(monkeypatch, "samples.py", "--data", path, "--out", folder / "fer.png")
    assert drawn["title"].startswith("fer2013.csv (Training)")
    assert sum(len(row) for row in drawn["rows"]) == 14  # 2 per class, none from PublicTest


def test_augmented_faces_differ_from_the_originals_unless_augmentation_is_off():
    images = synthetic_images(4)[0][..., None].astype(np.float32)
    changed = plots.augmented(images, configuration.DEFAULTS, seed=0)
    assert changed.shape == images.shape and not np.allclose(changed, images, atol=1)
    off = plots.augmented(images, {**configuration.DEFAULTS, "augment": False}, seed=0)
    np.testing.assert_array_equal(off, images)


def test_pdf_output_and_refused_formats(dnn_run, folder, monkeypatch):
    call_script(monkeypatch, "plot_history.py", dnn_run, "--out", folder / "history.pdf")
    assert (folder / "history.pdf").read_bytes().startswith(b"%PDF")
    with pytest.raises(FerError, match=r"history\.jpg: figures are written as \.png, \.pdf, \.svg"):
        call_script(monkeypatch, "plot_history.py", dnn_run, "--out", folder / "history.jpg")


def test_confusion_never_draws_over_its_labels_file(dnn_run, folder, monkeypatch):
    test_csv = make_test_csv(folder / "labelled_by_file.csv", count=4)
    labels = folder / "labels.png"  # a name a figure could have
    labels.write_text("id,label\n0,3\n1,4\n")
    arguments = ["--data", test_csv, "--labels", labels, "--out", labels, "--force"]
    with pytest.raises(FerError, match=r"labels\.png: is the --labels file; --out must not"):
        call_script(monkeypatch, "confusion.py", dnn_run, *arguments)
    assert labels.read_text() == "id,label\n0,3\n1,4\n"


def test_a_file_where_the_figures_folder_goes_is_refused_before_the_model_runs(tmp_path):
    (tmp_path / "figures").write_text("in the way")
    with pytest.raises(FerError, match=r"figures/confusion\.png: cannot be written \(.*figures is"):
        plots.figure_path(str(tmp_path), "confusion")


def test_an_existing_out_is_refused_untouched_unless_forced(dnn_run, folder, monkeypatch):
    out = folder / "report_figure.png"
    out.write_bytes(b"precious")
    with pytest.raises(FerError, match=r"report_figure\.png: already exists \(pass --force"):
        call_script(monkeypatch, "plot_history.py", dnn_run, "--out", out)
    assert out.read_bytes() == b"precious"
    call_script(monkeypatch, "plot_history.py", dnn_run, "--out", out, "--force")
    assert out.read_bytes().startswith(b"\x89PNG")


def test_user_mistakes_are_one_line_errors(dnn_run, folder, monkeypatch):
    with pytest.raises(FerError, match="history.csv: no such file"):
        call_script(monkeypatch, "plot_history.py", str(folder))
    with pytest.raises(FerError, match="typo: no such run folder or model file"):
        call_script(monkeypatch, "plot_history.py", str(folder / "typo"))
    with pytest.raises(FerError, match="--index 14: validation split of train.csv has images 0-13"):
        call_script(monkeypatch, "saliency.py", dnn_run, "--index", 14)
    with pytest.raises(FerError, match="--labels labels a --data file"):
        call_script(monkeypatch, "confusion.py", dnn_run, "--labels", "x.csv")
    with pytest.raises(FerError, match="--blur blurs --data's faces"):
        call_script(monkeypatch, "confusion.py", dnn_run, "--blur", 2)


def test_samples_show_a_runs_random_erasing():
    # A run trained with random erasing (and nothing else) shows erased faces.
    settings = {key: 0.0 for key in configuration.AFFINE_OPTIONS}
    settings.update(horizontal_flip=False, random_erasing=1.0)
    faces = np.full((4, 48, 48, 1), 128, dtype=np.uint8)
    changed = plots.augmented(faces, settings, seed=0)
    assert all(np.any(face != 128) for face in changed)
    assert np.array_equal(plots.augmented(faces, {**settings, "random_erasing": 0.0}, 0), faces)


def test_figures_describe_a_val_data_run_s_validation_faces_by_their_file(tmp_path):
    # They said "validation split of train.csv" for faces from another file.
    train_path = make_train_csv(tmp_path / "train.csv", count=28)
    val_path = make_train_csv(tmp_path / "faces.csv", count=14, seed=1)
    run = _recorded_run(tmp_path, train_path, val_path)
    options = argparse.Namespace(labels=None, data=None, usage=None, blur=None, run_data=[])
    images, _, described = plots.figure_images(run, options)
    assert len(images) == 14 and described == "validation data faces.csv"


def test_figures_draw_a_run_s_validation_faces_from_its_moved_data_file(tmp_path, capsys):
    train_path = make_train_csv(tmp_path / "train.csv", count=70)
    run = _recorded_run(tmp_path, train_path)
    moved = shutil.move(train_path, tmp_path / "kaggle.csv")
    options = argparse.Namespace(labels=None, data=None, usage=None, blur=None, run_data=[moved])
    images, _, described = plots.figure_images(run, options)
    assert len(images) == 7 and described == "validation split of kaggle.csv"
    # With --data, only --blur auto reads it: for a run that recorded no training sharpness.
    faces_csv = make_train_csv(tmp_path / "faces.csv", count=7, seed=2)
    with pytest.raises(FerError, match="--run-data .* only --blur auto reads: give it without"):
        plots.figure_images(run, argparse.Namespace(**{**vars(options), "data": faces_csv}))
    auto = argparse.Namespace(**{**vars(options), "data": faces_csv, "blur": "auto"})
    plots.figure_images(run, auto)
    assert f"computed from {moved}" in capsys.readouterr().out


def test_figure_faces_of_a_data_file_are_blurred_with_blur(tmp_path):
    faces_csv = make_train_csv(tmp_path / "faces.csv", count=7)
    options = argparse.Namespace(labels=None, data=str(faces_csv), usage=None, run_data=[])
    sharp, labels, _ = plots.figure_images(None, argparse.Namespace(**vars(options), blur=None))
    blurred, same_labels, described = plots.figure_images(
        None, argparse.Namespace(**vars(options), blur=3.5)
    )
    # The faces drawn on and predicted are blurred, not only the figure's title.
    np.testing.assert_array_equal(blurred, evaluation.blur_images(sharp, 3.5))
    assert not np.array_equal(blurred, sharp) and np.array_equal(labels, same_labels)
    assert described == "faces.csv, blurred (sigma 3.5)"


def test_figure_faces_are_blurred_by_auto_to_the_run_s_training_faces_only_from_data(tmp_path):
    train_path = make_train_csv(tmp_path / "train.csv", count=70)
    run = _recorded_run(tmp_path, train_path)
    faces_csv = make_train_csv(tmp_path / "faces.csv", count=7, seed=2)
    sharp = data.read_csv(faces_csv).images
    record_sharpness(run, evaluation.sharpness(evaluation.blur_images(sharp, 2.0)))
    options = argparse.Namespace(labels=None, usage=None, run_data=[], blur="auto")
    blurred, _, described = plots.figure_images(
        run, argparse.Namespace(**vars(options), data=faces_csv)
    )
    np.testing.assert_array_equal(blurred, evaluation.blur_images(sharp, 2.0))
    assert described == "faces.csv, blurred (sigma 2)"
    # The run's validation faces are its training faces' kind: auto leaves them.
    validation, _, described = plots.figure_images(
        run, argparse.Namespace(**vars(options), data=None)
    )
    np.testing.assert_array_equal(validation, runs.validation_data(run).images)
    assert described == "validation split of train.csv"


def test_confusion_on_a_fer2013_csv_with_training_rows_needs_usage(dnn_run, folder, monkeypatch):
    # Without it the matrix scored all three splits, the run's own training faces among them.
    images, labels = synthetic_images(6)
    usages = ["Training", "PrivateTest"] * 3
    rows = [(label, pixels(image), usage) for image, label, usage in zip(images, labels, usages)]
    path = write_csv(folder / "fer2013.csv", ("emotion", "pixels", "Usage"), rows)
    with pytest.raises(FerError, match="fer2013.csv: holds Training rows: choose the rows with"):
        call_script(monkeypatch, "confusion.py", dnn_run, "--data", path)
    # Test rows only: scored as they are.
    private = write_csv(folder / "private.csv", ("emotion", "pixels", "Usage"), rows[1::2])
    call_script(monkeypatch, "confusion.py", dnn_run, "--data", private, "--out", folder / "p.png")
    assert os.path.exists(folder / "p.png")


def test_history_that_is_not_utf8_text_is_one_line(folder):
    run = folder / "binary_history"
    run.mkdir()
    (run / "history.csv").write_bytes(
        b"epoch,loss,accuracy,val_loss,val_accuracy\n1,\xff\xfe,0.2\n"
    )
    with pytest.raises(
        FerError, match="history.csv: not a ferkit history \\(not UTF-8 CSV text\\)"
    ):
        plots.read_history(str(run))  # a UnicodeDecodeError before


def test_plot_history_refuses_one_run_given_twice(dnn_run, monkeypatch):
    # Drawn twice, under two line styles whose curves hid each other.
    model = os.path.join(dnn_run, "model.keras")
    with pytest.raises(FerError, match="model.keras: the same run is given twice"):
        call_script(monkeypatch, "plot_history.py", dnn_run, model)


def test_grid_titles_are_wrapped_to_the_figure():
    face = plots.Panel(np.zeros((48, 48, 1)))
    title = "a_long_run_name_seed1 on test.csv.gz labelled by public_test_labels.csv, blurred"
    figure = plots.grid_figure([[face, face, face]], title)
    lines = figure.get_suptitle().splitlines()
    # Three cells of 1.7 inches hold about 51 characters a line: it ran off both edges.
    assert len(lines) == 2 and " ".join(lines) == title
    assert figure.get_size_inches()[1] == pytest.approx(1.7 + 0.7)


def test_a_figure_is_never_written_into_the_data_folder(tmp_path):
    faces = tmp_path / "faces"
    (faces / "happy").mkdir(parents=True)
    (faces / "happy" / "0.png").write_bytes(b"a face")
    for out in (faces / "happy" / "0.png", faces / "figure.png"):  # replaced, or read as a face
        with pytest.raises(FerError, match="is inside the --data folder"):
            plots.figure_path(str(tmp_path), "confusion", str(out), True, str(faces))
    assert (faces / "happy" / "0.png").read_bytes() == b"a face"
    assert plots.figure_path(str(tmp_path), "x", str(tmp_path / "x.png"), True, str(faces))


def test_a_figure_is_never_written_where_a_run_s_data_or_checkpoints_are(tmp_path):
    faces = tmp_path / "faces"
    (faces / "happy").mkdir(parents=True)
    (faces / "happy" / "0.png").write_bytes(b"a face")
    runs_made = []
    for name in ("first", "second"):
        (tmp_path / name / "checkpoint").mkdir(parents=True)
        (tmp_path / name / "config.json").write_text(json.dumps({"data": str(faces)}))
        (tmp_path / name / "checkpoint" / "state.json").write_text("{}")
        runs_made.append(str(tmp_path / name))
    first, second = runs_made
    # Written with --force over a face the run trained on, or beside them as a new face: the
    # run's data changed, so it could not be resumed nor its validation images rebuilt.
    for out in (faces / "happy" / "0.png", faces / "happy" / "figure.png"):
        refused = r"is inside .*faces \(the data file of the run .*first\), whose"
        with pytest.raises(FerError, match=refused):
            plots.figure_path(first, "confusion", str(out), True)
    assert (faces / "happy" / "0.png").read_bytes() == b"a face"
    moved = tmp_path / "moved"
    moved.mkdir()
    with pytest.raises(FerError, match=r"is inside .*moved \(the --run-data file 1\), whose"):
        plots.figure_path(first, "x", str(moved / "x.png"), True, run_data=[str(moved)])
    # plot_history.py's other runs: only the first run's checkpoint folder was refused.
    with pytest.raises(FerError, match="checkpoint folder of the run .*second"):
        plots.figure_path(first, "history", f"{second}/checkpoint/h.png", True, others=[second])
    assert plots.figure_path(first, "history", str(tmp_path / "h.png"), True, others=[second])


def test_samples_of_the_current_folder_are_not_drawn_into_it(tmp_path, monkeypatch):
    (tmp_path / "happy").mkdir()
    cv2 = pytest.importorskip("cv2")
    cv2.imwrite(str(tmp_path / "happy" / "0.png"), synthetic_images(1)[0][0])
    monkeypatch.chdir(tmp_path)
    # The default models/figures/samples_.png landed in the folder: a class named models.
    with pytest.raises(FerError, match="is inside the --data folder"):
        call_script(monkeypatch, "samples.py", "--data", ".", "--per-class", 1)
    assert not (tmp_path / "models").exists()


def test_samples_refuse_an_unwritable_figure_and_a_checkpoint_folder_before_reading(
    tmp_path, monkeypatch
):
    train_csv = make_train_csv(tmp_path / "train.csv", count=14)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").write_text("a file where the figures' folder goes")

    def unread(*args, **kwargs):
        raise AssertionError("the data was read before the mistake was found")

    monkeypatch.setattr(data, "read_any", unread)
    with pytest.raises(FerError, match="models/figures/samples_train.png: cannot be written"):
        call_script(monkeypatch, "samples.py", "--data", train_csv)
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "checkpoint" / "state.json").write_text("{}")
    with pytest.raises(FerError, match="checkpoint: is a run's checkpoint folder: give the run"):
        call_script(monkeypatch, "samples.py", "--data", train_csv, "--run", run / "checkpoint")


def test_samples_of_a_folder_given_with_a_slash_are_named_by_it(tmp_path, monkeypatch):
    cv2 = pytest.importorskip("cv2")
    (tmp_path / "faces" / "happy").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "faces" / "happy" / "0.png"), synthetic_images(1)[0][0])
    monkeypatch.chdir(tmp_path)
    # "faces/" gave samples_.png, which the next folder's samples replaced.
    call_script(monkeypatch, "samples.py", "--data", "faces/", "--per-class", 1)
    assert os.listdir(tmp_path / "models" / "figures") == ["samples_faces.png"]


def test_a_running_run_s_best_epoch_is_the_first_of_tied_ones(folder):
    # Training keeps a new best only when validation accuracy rises: a tie keeps the first.
    run = folder / "tied"
    run.mkdir()
    rows = ["epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds"]
    rows += [
        f"{epoch},1,0.5,1,{accuracy},0.001,9"
        for epoch, accuracy in [(1, 0.3), (2, 0.5), (3, 0.5), (4, 0.4)]
    ]
    (run / "history.csv").write_text("\n".join(rows) + "\n")
    assert plots.best_epoch(str(run), plots.read_history(str(run))) == 2
