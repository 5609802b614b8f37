"""Defaults, presets and command-line overrides resolve in that order."""

import json
import os

import pytest

from ferkit import config
from ferkit.errors import FerError


def test_defaults_include_the_network_dropout():
    resolved = config.resolve("dnn")
    assert resolved["epochs"] == 300 and resolved["dropout_dense"] == 0.3
    assert "dropout_conv" not in resolved


def test_preset_then_overrides(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "CONFIG_FOLDER", str(tmp_path))
    (tmp_path / "cnn_fast.json").write_text(json.dumps({"epochs": 5, "lr": 0.01}))
    resolved = config.resolve("cnn", "fast", {"lr": 0.002, "seed": None})
    assert resolved["epochs"] == 5 and resolved["lr"] == 0.002 and resolved["seed"] == 1
    assert resolved["preset"] == "fast"


def test_unknown_preset_lists_the_available_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "CONFIG_FOLDER", str(tmp_path))
    (tmp_path / "cnn_fast.json").write_text("{}")
    with pytest.raises(FerError, match=r"unknown preset 'slow' for the cnn \(available: fast\)"):
        config.resolve("cnn", "slow")


@pytest.mark.parametrize(
    "content, preset, overrides, message",
    [
        # A JSON list or string gave a TypeError or AttributeError.
        ("[1, 2]", "odd", {}, "cnn_odd.json: not a preset \\(not a JSON object of options\\)"),
        # The DNN script with a CNN's options: a KeyError after a run folder was made.
        ('{"network": "dnn"}', "odd", {}, "cnn_odd.json: unknown option 'network'"),
        ("{}", "", {}, "unknown preset '' for the cnn"),  # trained the defaults, no preset
        # A value the user never typed: the message says which file holds it.
        (
            '{"lr": "0.01"}',
            "odd",
            {},
            "\"lr\" must be a number, got '0.01' \\(from .*cnn_odd.json\\)",
        ),
        # Named as the file writes them: there is no --horizontal-flip, and no --no-augment
        # was typed.
        (
            '{"horizontal_flip": "no"}',
            "odd",
            {},
            "^\"horizontal_flip\" must be true or false, got 'no' \\(from .*cnn_odd.json\\)$",
        ),
        (
            '{"augment": "no"}',
            "odd",
            {},
            "^\"augment\" must be true or false, got 'no' \\(from .*cnn_odd.json\\)$",
        ),
        (
            '{"augment": false, "mixup": 0.2}',
            "odd",
            {},
            '^"mixup" is an augmentation, which "augment": false turns off, got 0.2 \\(from ',
        ),
        # --mixup typed over a preset that turns augmentation off: the file is named too.
        (
            '{"augment": false}',
            "odd",
            {"mixup": 0.2},
            '^--mixup is an augmentation, which "augment": false turns off, got 0.2 \\(from ',
        ),
        (
            '{"optimizer": "adamw", "weight_decay": 0.05}',
            "odd",
            {"optimizer": "adam"},
            '"weight_decay" is for --optimizer adamw or sgd .*got 0.05 \\(from .*cnn_odd.json\\)$',
        ),
    ],
)
def test_a_preset_file_s_mistakes_name_the_file(
    tmp_path, monkeypatch, content, preset, overrides, message
):
    monkeypatch.setattr(config, "CONFIG_FOLDER", str(tmp_path))
    (tmp_path / "cnn_odd.json").write_text(content)
    with pytest.raises(FerError, match=message):
        config.resolve("cnn", preset, overrides)


def test_a_value_typed_over_a_preset_is_blamed_on_the_option(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "CONFIG_FOLDER", str(tmp_path))
    (tmp_path / "cnn_odd.json").write_text('{"lr": 0.01}')
    with pytest.raises(FerError, match="^--lr must be positive, got -1.0$"):
        config.resolve("cnn", "odd", {"lr": -1.0})


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"epochs": -1}, "--epochs must be at least 1, got -1"),
        ({"val_split": 1.0}, "--val-split must be between 0 and 1"),
        ({"val_split": 0.0}, "--val-split must be between 0 and 1"),
        ({"precision": "fp8"}, "--precision must be one of auto, float32"),
        ({"lr": 0.0}, "--lr must be positive"),
        ({"dropout_conv": 1.5}, "--dropout-conv must be in"),
        ({"random_erasing": 1.5}, "--random-erasing must be a probability"),
        ({"mixup": -0.2}, "--mixup \\(the Beta distribution's alpha\\) must not be negative"),
        ({"momentum": 1.5}, "--momentum must be in \\[0, 1\\), got 1.5"),
        # Accepted, then a "diverged" run (float32 overflow) and a traceback in samples.py.
        ({"rotation_range": 1e300}, "--rotation-range must be at most 360 \\(degrees"),
        ({"width_shift_range": 49.0}, "--width-shift-range must be at most 48 \\(pixels"),
        ({"height_shift_range": 1e100}, "--height-shift-range must be at most 48"),
        ({"seed": -1}, "--seed must not be negative, got -1"),
        ({"split_seed": -1}, "--split-seed must not be negative"),
        # Keras' set_random_seed refused these after the run folder was made.
        ({"seed": 2**32}, "--seed must be at most 4294967295, got 4294967296"),
        ({"split_seed": 10**20}, "--split-seed must be at most 4294967295"),
        ({"weight_decay": -0.1}, "--weight-decay must not be negative"),
        ({"weight_decay": 0.05}, "--weight-decay is for --optimizer adamw or sgd \\(give 0 with"),
        ({"early_stop_patience": 0}, "--early-stop-patience must be at least 1, got 0"),
        ({"plateau_factor": 1.0}, "--plateau-factor must be between 0 and 1"),
        ({"augment": False, "mixup": 0.2}, "--mixup is an augmentation, which --no-augment"),
        ({"augment": False, "random_erasing": 0.5}, "--random-erasing is an augmentation"),
        ({"weight_decay": float("nan")}, "--weight-decay must be a finite number, got nan"),
        ({"lr": float("inf")}, "--lr must be a finite number, got inf"),
        ({"zoom_range": float("nan")}, "--zoom-range must be a finite number"),
        ({"lr": "0.1"}, "--lr must be a number, got '0.1'"),
        ({"horizontal_flip": 1}, "--horizontal-flip must be true or false"),
        ({"epochs": 2.5}, "--epochs must be a whole number, got 2.5"),
        ({"lr": 1e-7}, "--min-lr must not exceed --lr \\(1e-07\\): give a lower --min-lr"),
        (
            {"time_budget": -1.0},
            "--time-budget must be a number of minutes, at most 525600 \\(0: none, as without "
            "the option\\), got -1.0",
        ),
        ({"time_budget": float("inf")}, "--time-budget must be a number of minutes"),
        ({"time_budget": "45"}, "--time-budget must be a number .*, got '45'"),
        # Planned as seconds, 1e307 minutes overflowed to infinity after epoch 1.
        ({"time_budget": 1e307}, "--time-budget must be a number of minutes, at most"),
        ({"time_budget": 10**400}, "--time-budget must be a number of minutes, at most"),
        ({"lr": 10**400}, "--lr must be a finite number, got 1000000000"),
        # Drew NaN in float32, called a diverged run "try a lower --lr"; or overflowed.
        ({"mixup": 1e-300}, "--mixup must be 0 \\(off\\) or from 0.001 to 1000, got 1e-300"),
        ({"mixup": 1e300}, "--mixup must be 0 \\(off\\) or from 0.001 to 1000"),
        (
            {"optimizer": "adamw", "weight_decay": 1e300},
            "--weight-decay times --lr \\(0.001\\) must be below 1, got 1e\\+300",
        ),
        # Typed, but nothing reads them: printed and recorded as if they trained.
        ({"momentum": 0.5}, "--momentum is not used when optimizer is adam: leave it out"),
        ({"schedule": "cosine", "plateau_patience": 3}, "--plateau-patience is not used when"),
        ({"schedule": "cosine", "plateau_factor": 0.2}, "--plateau-factor is not used when"),
        ({"schedule": "constant", "min_lr": 1e-5}, "--min-lr is not used when schedule is con"),
        ({"augment": False, "rotation_range": 20.0}, "--rotation-range is not used when augm"),
        ({"augment": False, "horizontal_flip": False}, "--no-flip is not used when augment is"),
    ],
)
def test_options_out_of_range(overrides, message):
    with pytest.raises(FerError, match=message):
        config.resolve("cnn", overrides=overrides)


def test_a_recorded_mixup_outside_the_new_range_still_loads_and_resumes():
    # Trained with 0.0005 before the range was checked: refused, its run could not resume,
    # with --epochs (which checks the combinations) or without.
    recorded = {**config.resolve("dnn"), "mixup": 0.0005}
    config.validate(recorded, combinations=False)
    config.validate(recorded)
    with pytest.raises(FerError, match="--mixup must be 0 \\(off\\) or from 0.001"):
        config.resolve("dnn", overrides={"mixup": 0.0005})


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_whole_numbers_for_rates_build_an_optimizer(optimizer):
    from ferkit import training

    # A preset's "lr": 1 or "momentum": 0 passed the checks, then Keras refused them.
    momentum = {"momentum": 0} if optimizer == "sgd" else {}  # Adam has none
    resolved = config.resolve("cnn", overrides={"optimizer": optimizer, "lr": 1, **momentum})
    built = training._optimizer(resolved)
    assert float(built.learning_rate) == 1.0
    if momentum:  # Keras refused the int 0
        assert resolved["momentum"] == 0.0 and isinstance(resolved["momentum"], float)


def test_shipped_presets_resolve():
    for network in ("cnn", "dnn"):
        names = config.available_presets(network)
        assert {"report", "quick", "best"} <= set(names)
        for name in names:
            assert config.resolve(network, name)["preset"] == name


def test_preset_reaches_the_run_config_and_the_command_line_overrides_it(train_csv, tmp_path):
    import argparse

    from ferkit import training

    parser = training.add_arguments(argparse.ArgumentParser(), "dnn")
    args = parser.parse_args(
        [
            "--data",
            train_csv,
            "--preset",
            "quick",
            "--epochs",
            "1",
            "--lr",
            "0.005",
            "--out",
            str(tmp_path),
            "--name",
            "p",
            "--quiet",
            "--precision",
            "float32",
        ]
    )
    (run_dir,) = training.main(args, "dnn")
    recorded = json.loads((tmp_path / "p" / "config.json").read_text())
    assert run_dir.endswith("p") and recorded["preset"] == "quick"
    assert recorded["schedule"] == "cosine" and recorded["label_smoothing"] == 0.1  # preset
    assert recorded["epochs"] == 1 and recorded["lr"] == 0.005  # command line


def test_a_run_recorded_before_an_option_existed_had_it_off():
    old = {"network": "cnn", "epochs": 3}
    later = {
        "random_erasing": 0.0,
        "mixup": 0.0,
        "limit": None,
        "distribute": False,
        "time_budget": None,
    }
    assert config.recorded(old) == {**old, **later}
    assert config.recorded({**old, "mixup": 0.4})["mixup"] == 0.4
    assert list(config.recorded(old))[:2] == ["network", "epochs"]  # printed in their order


def test_a_network_s_inter_op_threads_are_set_unless_the_user_set_them(monkeypatch):
    import sys

    import ferkit

    monkeypatch.setenv("TF_NUM_INTEROP_THREADS", "1")
    monkeypatch.setenv(ferkit._MARK, "1")
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)  # as before Keras starts
    monkeypatch.setattr(ferkit, "_USER_INTEROP_THREADS", None)
    ferkit.use_interop_threads(config.INTEROP_THREADS["dnn"])
    assert os.environ["TF_NUM_INTEROP_THREADS"] == "2"
    monkeypatch.setenv("TF_NUM_INTEROP_THREADS", "5")
    monkeypatch.setattr(ferkit, "_USER_INTEROP_THREADS", "5")
    ferkit.use_interop_threads(config.INTEROP_THREADS["dnn"])
    assert os.environ["TF_NUM_INTEROP_THREADS"] == "5"  # the user's own wins


def test_whole_numbers_from_a_preset_become_ints_and_constant_rates_ignore_min_lr():
    resolved = config.resolve("cnn", overrides={"epochs": 10.0, "seed": 2.0})
    assert resolved["epochs"] == 10 and isinstance(resolved["epochs"], int)
    assert isinstance(resolved["seed"], int)
    # A constant rate never goes down to --min-lr, so a rate below it is no mistake.
    assert config.resolve("cnn", overrides={"lr": 5e-7, "schedule": "constant"})["lr"] == 5e-7


def test_a_time_budget_of_0_turns_the_quick_preset_s_budget_off():
    # Refused before: a user on a slow CPU who wanted all 28 epochs typed a year of minutes.
    assert config.resolve("cnn", "quick")["time_budget"] == 45
    assert config.resolve("cnn", "quick", {"time_budget": 0.0})["time_budget"] == 0


def test_a_run_validating_on_val_data_says_its_split_options_are_unused():
    # It printed "val_split 0.1" for a run that --val-data validated: no split was drawn.
    resolved = config.resolve("dnn", overrides={"val_data": "faces.csv"})
    lines = [" ".join(line.split()) for line in config.describe(resolved).splitlines()]
    assert "val_split 0.1 (not used: validates on val_data)" in lines
    assert "split_seed 0 (not used: validates on val_data)" in lines
    assert "not used" not in config.describe(config.resolve("dnn", overrides={"optimizer": "sgd"}))


def test_options_a_preset_or_default_leaves_unused_are_said_so():
    # The quick preset's cosine schedule and AdamW: momentum and the plateau's options were
    # printed as if they trained.
    described = config.describe(config.resolve("cnn", "quick")).splitlines()
    lines = [" ".join(line.split()) for line in described]
    assert "momentum 0.9 (not used: optimizer is adamw)" in lines
    assert "plateau_patience 10 (not used: schedule is cosine)" in lines
    assert "plateau_factor 0.5 (not used: schedule is cosine)" in lines
    assert "min_lr 1e-05" in lines
    # Nor are the augmentation's ranges with --no-augment.
    lines = config.describe(config.resolve("dnn", overrides={"augment": False})).splitlines()
    lines = [" ".join(line.split()) for line in lines]
    assert "zoom_range 0.1 (not used: augment is off)" in lines
    assert "horizontal_flip True (not used: augment is off)" in lines
