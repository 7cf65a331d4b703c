"""Fault-injection findings of issue #19 that concern the CLI as a whole: each test fails on the old code."""

from __future__ import annotations

import importlib.util

import pytest
from typer.testing import CliRunner

from edgeblood.cli import app
from edgeblood.errors import EdgebloodError


def test_pipeline_checks_the_export_extras_before_training(tmp_path, monkeypatch):
    """D12: a core-only install used to train first and then print `pip install "edgeblood"` (the extra eaten as markup)."""
    real = importlib.util.find_spec
    missing = {"onnx", "onnxruntime", "openvino", "coremltools"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a))
    result = CliRunner().invoke(app, ["pipeline", "--sample", "--out", str(tmp_path / "runs")])
    assert isinstance(result.exception, EdgebloodError)
    assert 'pip install "edgeblood[onnx,openvino,coreml]"' in str(result.exception)
    assert not (tmp_path / "runs").exists()  # nothing trained


def test_ctrl_c_before_the_first_epoch_exits_130_and_leaves_no_empty_run_dir(tmp_path):
    """D16: used to exit 2 and leave an empty run folder (so the next run was named `-2`)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "edgeblood", "train", "--sample", "--epochs", "50", "--out", str(runs)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (runs.is_dir() and any(runs.iterdir())):
        time.sleep(0.05)  # the run folder appears once data and model are ready: interrupt right then
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:]
    left = [p for p in runs.iterdir()] if runs.exists() else []
    assert all((p / "checkpoint.pt").exists() for p in left), f"empty run folder left: {left}\n{out[-1000:]}"
    assert "Traceback" not in out


def test_resume_refuses_options_it_would_ignore(tmp_path):
    """D10: `train --resume RUN --epochs 5 --model resnet18 --lr 0.5` silently ignored the three options. --epochs
    now trains a run on (--keep-state), so only the other two are refused."""
    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / "some-run"), "--epochs", "5", "--model", "resnet18", "--lr", "0.5"])
    assert isinstance(result.exception, EdgebloodError)
    assert "so --model, --lr would be ignored" in str(result.exception) and "--epochs N alone trains on" in str(result.exception)


def test_version_and_short_help():
    """D19: no --version and no -h."""
    from edgeblood import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"edgeblood {__version__}"
    result = CliRunner().invoke(app, ["predict", "-h"])
    assert result.exit_code == 0 and "--framing" in result.output


class _RunsCode:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_unsafe_or_truncated_checkpoints_are_one_whole_sentence(sample_run, copy_run, tmp_path):
    """D18: the message was cut at 160 characters mid-sentence with no fix, and leaked a torch UserWarning."""
    import warnings

    import torch

    from edgeblood.runs import open_run

    run_dir = copy_run(sample_run)
    good = (run_dir / "checkpoint.pt").read_bytes()
    marker = tmp_path / "code-ran"
    torch.save({"format": "edgeblood-checkpoint", "payload": _RunsCode(marker)}, run_dir / "checkpoint.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning may leak to the user
        try:
            open_run(run_dir)
        except EdgebloodError as exc:
            unsafe = str(exc)
    assert not marker.exists()
    assert "loading them could run code" in unsafe and unsafe.endswith("or retrain")
    (run_dir / "checkpoint.pt").write_bytes(good[: len(good) // 2])
    try:
        open_run(run_dir)
    except EdgebloodError as exc:
        assert "truncated or damaged" in str(exc) and str(exc).endswith("retrain")
    else:
        raise AssertionError("a truncated checkpoint was accepted")


def test_piped_output_is_not_cut_at_80_columns():
    """D20: output to a file or pipe was cut at rich's 80-column default ('+0.…', reasons one word per line)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    code = "from edgeblood.cli.app import console, err_console; print(console.width, err_console.width)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert res.stdout.split() == ["200", "200"], res.stdout + res.stderr
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={**env, "COLUMNS": "120"})
    assert res.stdout.split() == ["120", "120"]  # an explicit COLUMNS still wins


def test_finished_run_messages_point_to_what_works(sample_run, copy_run):
    """D17: a run whose final evaluation was cut off said "nothing to resume" (and `--name X` suggested --resume)."""
    import json

    from edgeblood.config import TrainConfig
    from edgeblood.training import train

    run_dir = copy_run(sample_run)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").write_text(json.dumps({"val": metrics["val"]}))  # Ctrl-C hit during the test evaluation
    try:
        train(TrainConfig(), resume=run_dir)
    except EdgebloodError as exc:
        assert f"edgeblood evaluate {run_dir} --split test" in str(exc)
    else:
        raise AssertionError("resume of a finished run was accepted")
    try:
        train(TrainConfig(sample=True, out_dir=str(run_dir.parent), name=run_dir.name, epochs=1))
    except EdgebloodError as exc:
        assert "--resume" not in str(exc) and "nothing to resume" in str(exc)
    else:
        raise AssertionError("a finished run's name was reused")


def test_a_failed_start_removes_only_its_own_empty_run_folder(tmp_path):
    """The clean-up after a failed start must not touch another training's fresh folder in the same --out."""
    from edgeblood.config import TrainConfig
    from edgeblood.training import train

    out = tmp_path / "runs"
    (out / "other-training").mkdir(parents=True)  # started a moment ago, first epoch not done: no checkpoint yet
    try:
        train(TrainConfig(sample=True, out_dir=str(out), epochs=1, teacher=str(tmp_path / "no-such-teacher")))
    except EdgebloodError:
        pass
    else:
        raise AssertionError("a missing teacher was accepted")
    assert sorted(p.name for p in out.iterdir()) == ["other-training"]


def _tiny_openvino_ir(folder):
    """A real OpenVINO IR (model.xml + model.bin with weights), written by OpenVINO itself."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    image = ops.parameter([1, 3, 4, 4], np.float32, name="image")
    scaled = ops.multiply(image, ops.constant(np.linspace(0.5, 1.5, 48, dtype=np.float32).reshape(1, 3, 4, 4)))
    xml = folder / "model.xml"
    ov.save_model(ov.Model([ops.softmax(ops.reshape(scaled, [1, 48], False), 1)], [image], "tiny"), xml, compress_to_fp16=False)
    return xml


def test_openvino_load_failures_give_the_reason_and_the_fix(tmp_path):
    """D18: every broken IR said only `Exception from src/inference/src/cpp/core.cpp:84:`."""
    import os
    import subprocess
    import sys

    from edgeblood.runtimes import get_runtime

    def failure(folder) -> str:
        try:
            get_runtime("openvino").load(folder / "model.xml")
        except EdgebloodError as exc:
            return str(exc)
        raise AssertionError(f"{folder} loaded")

    cases = {}
    for name in ("no-bin", "short-bin", "short-xml", "garbage-xml"):
        (tmp_path / name).mkdir()
        xml = _tiny_openvino_ir(tmp_path / name)
        cases[name] = xml
    get_runtime("openvino").load(cases["no-bin"])  # the intact IR loads
    cases["no-bin"].with_suffix(".bin").unlink()
    cases["short-bin"].with_suffix(".bin").write_bytes(cases["short-bin"].with_suffix(".bin").read_bytes()[:100])
    cases["short-xml"].write_text(cases["short-xml"].read_text()[:700])
    cases["garbage-xml"].write_text("<garbage")

    expect = {"no-bin": "model.bin is missing or empty", "short-bin": "model.bin does not match model.xml",
              "short-xml": "not a complete OpenVINO IR", "garbage-xml": "not a complete OpenVINO IR"}
    for name, fix in expect.items():
        msg = failure(tmp_path / name)
        assert fix in msg and "re-export" in msg, msg
        assert "core.cpp" not in msg and "\n" not in msg, msg
    # through the CLI: one line, and no parse error printed by another OpenVINO frontend (tensorflow.GraphDef)
    (tmp_path / "x.png").write_bytes(b"")
    res = subprocess.run([sys.executable, "-m", "edgeblood", "predict", str(cases["garbage-xml"]), str(tmp_path / "x.png")],
                         capture_output=True, text=True, timeout=180, env={**os.environ, "COLUMNS": "300"})
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: openvino could not load"), res.stderr


def test_a_loose_pt_file_is_refused_with_the_run_directory_fix(sample_run, tmp_path):
    """D18: the unknown-format message listed `.pt`, yet a loose .pt was refused as 'not a run directory'."""
    import shutil

    from edgeblood.inference import open_model
    from edgeblood.runtimes import runtime_for_artifact

    loose = tmp_path / "model.pt"
    shutil.copy(sample_run / "checkpoint.pt", loose)
    try:
        open_model(loose)
    except EdgebloodError as exc:
        assert "a PyTorch checkpoint is read from its run directory" in str(exc) and "runs/<name>" in str(exc)
    else:
        raise AssertionError("a loose .pt was accepted")
    try:
        runtime_for_artifact(tmp_path / "model.h5")
    except EdgebloodError as exc:
        listed = str(exc).split("pass a file ending in ")[1].split(", or a run directory")[0]
        assert ".onnx" in listed and ".pt" not in listed.split(", ")
        assert "a .pt checkpoint is read from its run directory" in str(exc)
    else:
        raise AssertionError("an unknown format was accepted")
    assert open_model(sample_run / "checkpoint.pt").classes  # the checkpoint inside its run directory still opens


@pytest.mark.parametrize("args, expect", [
    (["--framing", "fraction:0"], "a fraction framing needs a fraction in (0, 1]"),
    (["--framing", "window:abc"], "needs a whole number"),
    (["--top-k", "0"], "--top-k"),
    (["--batch-size", "0"], "--batch-size"),
    (["--threads", "0"], "--threads"),
    (["--reject-below", "2"], "--reject-below"),
    (["--review-rate", "-0.1"], "--review-rate"),
])
def test_predict_option_errors_come_before_the_model_loads(args, expect, tmp_path):
    """D15: `--crop-fraction 0` (now `--framing fraction:0`) failed every file one by one; an option error is the user's, at parse time.

    The model path does not exist: the old code loaded the model first and said so, the option never judged.
    """
    (tmp_path / "cell.png").write_bytes(b"")
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "missing.onnx"), str(tmp_path / "cell.png"), *args])
    assert isinstance(result.exception, EdgebloodError) and expect in str(result.exception), result.output


def test_bench_row_timeout_must_be_positive(tmp_path):
    """D9: `bench --row-timeout 0` was accepted: every row failed on its timeout and the command exited 0."""
    result = CliRunner().invoke(app, ["bench", str(tmp_path / "some-run"), "--row-timeout", "0"])
    assert isinstance(result.exception, EdgebloodError) and "--row-timeout takes a positive number of seconds" in str(result.exception)


def test_opset_outside_the_supported_range_says_why():
    """D14: --opset 7/16 became 18 silently; the refusal must name the range and why it starts at 18."""
    from edgeblood.exporters.onnx.export import check_opset
    from edgeblood.targets import ExportOptions

    for opset in (7, 16, 22):
        with pytest.raises(EdgebloodError) as err:
            check_opset(ExportOptions(opset=opset))
        msg = str(err.value)
        assert msg.startswith(f"--opset must be between 18 and 21 (got {opset})") and "Resize with antialias" in msg
    check_opset(ExportOptions(opset=18))


def _help(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "300", "TERMINAL_WIDTH": "300"})
    assert result.exit_code == 0, result.output
    return result.output


def test_help_shows_no_value_type_for_flags():
    """D19: `--download <bool>` (and `--channels-last <bool>`) read as though `--channels-last true` worked; click refuses it."""
    import typer

    group = typer.main.get_command(app)
    commands = [[name] for name in group.commands if name != "report"] + [["report", "merge"]]
    for command in commands:
        text = _help(*command)
        assert "<bool>" not in text, f"edgeblood {' '.join(command)} --help:\n{text}"
    train = _help("train")
    assert "<int>" in train and "<path>" in train  # options that take a value keep their type
    line = next(ln for ln in train.splitlines() if "--channels-last" in ln)
    assert "<" not in line.split("--channels-last")[1].split("Use")[0]
    assert "<bool>" not in _help()


def test_help_text_has_no_raw_markup_and_says_the_defaults():
    """D19: raw ``` `` ``` in `models --help`, no sizes in `pipeline --size`, recipe defaults hidden (and rich ate `[default: 0.7]`)."""
    assert "``" not in _help("models")
    assert "28, 64, 128 or 224" in next(ln for ln in _help("pipeline").splitlines() if "--size" in ln)
    train = {ln.split()[1]: ln for ln in _help("train").splitlines() if ln.startswith("│ --")}
    assert "[default: from --recipe; 60 in the default recipe]" in train["--epochs"]
    assert "[default: from --recipe; 0.003 in the default recipe]" in train["--lr"]
    assert "[default: from --recipe; 128 in the default recipe]" in train["--batch-size"]
    assert "[default: 0.7]" in train["--kd-alpha"] and "[default: 2]" in train["--kd-temperature"]


def test_the_recipe_defaults_in_train_help_are_the_default_recipes():
    """The values written into `train --help` (which must not import torch) are what the default recipe sets."""
    from edgeblood.cli.train import DEFAULT_RECIPE_VALUES, build_config

    cfg = build_config(model="se-cnn", size=28, recipe="default", model_opts={}, overrides={}, augment_overrides={}, fixed={})
    aug = cfg.augment
    on = {True: "on", False: "off"}
    actual = {
        "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "optimizer": cfg.optimizer, "schedule": cfg.schedule,
        "weight_decay": cfg.weight_decay, "label_smoothing": cfg.label_smoothing, "class_weights": cfg.class_weights,
        "weighted_sampler": on[cfg.weighted_sampler], "oversample": on[cfg.oversample_minority], "mixup": cfg.mixup, "cutmix": cfg.cutmix,
        "ema": cfg.ema_decay, "swa": cfg.swa_epochs, "swa_lr": cfg.swa_lr, "grad_clip": cfg.grad_clip, "early_stopping": cfg.early_stopping, "keep": cfg.keep,
        "rot90": on[aug.rot90], "flips": on[aug.flips],
        "crop_area": ",".join(f"{v:g}" for v in aug.crop_area), "color_jitter": aug.color_jitter, "crop_shift": aug.crop_shift,
        "stain_jitter": aug.stain, "jpeg_aug": aug.jpeg_prob, "hed_scale": aug.hed_scale, "hed_shift": aug.hed_shift,
        "white_balance": aug.white_balance, "brightness": aug.brightness, "gamma": aug.gamma, "zoom": ",".join(f"{v:g}" for v in aug.zoom),
        "blur": aug.blur, "lab_aug": aug.lab_prob, "pretrain_epochs": cfg.pretrain_epochs, "channels_last": on[cfg.channels_last],
    }
    shown = {k: v.split(" (")[0] for k, v in DEFAULT_RECIPE_VALUES.items()}
    assert shown == {k: v if isinstance(v, str) else f"{v:g}" for k, v in actual.items()}
    auto = build_config(model="autoclassifier", size=28, recipe="default", model_opts={}, overrides={}, augment_overrides={}, fixed={})
    assert f"{auto.pretrain_epochs} for autoclassifier" in DEFAULT_RECIPE_VALUES["pretrain_epochs"]
    for model in ("mlnn", "resnet18", "resnet34"):  # the families channels_last does not speed up stay NCHW
        assert not build_config(model=model, size=28, recipe="default", model_opts={}, overrides={}, augment_overrides={}, fixed={}).channels_last
        assert model in DEFAULT_RECIPE_VALUES["channels_last"]


def test_evaluate_and_explain_default_to_the_same_device_as_train():
    """D19: `evaluate` defaulted to cpu while `train` used auto (cuda, then mps, then cpu)."""
    import typer

    group = typer.main.get_command(app)
    defaults = {name: next(p.default for p in group.commands[name].params if p.name == "device") for name in ("train", "evaluate", "explain")}
    assert defaults == {"train": "auto", "evaluate": "auto", "explain": "auto"}


def test_missing_glyph_warnings_stay_out_of_the_output(tmp_path):
    """D20: a run or class name in CJK made matplotlib print `Glyph 34880 ... missing from font(s)` once per character and plot."""
    import warnings

    from matplotlib.figure import Figure

    from edgeblood.evaluation.plots import save_figure

    def figure():
        fig = Figure(figsize=(3, 2))
        fig.add_subplot().set_title("血液细胞 (blood cells)")
        return fig

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figure().savefig(tmp_path / "plain.png")
    if not any("missing from font" in str(w.message) for w in caught):
        pytest.skip("this machine's default font draws CJK: matplotlib has nothing to warn about")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning reaching the user fails the test
        filters = list(warnings.filters)
        assert save_figure(figure(), tmp_path / "plot.png").stat().st_size > 0
        assert warnings.filters == filters  # the filter covered the drawing only, nothing else in the process


def test_loading_coremltools_prints_nothing():
    """D20: every Core ML export printed torch's `_pytree.py:630] <enum 'KernelPreference'> ...` line (coremltools imports torchao)."""
    import subprocess
    import sys

    pytest.importorskip("coremltools")
    code = "import torch\nfrom edgeblood.exporters.coreml.export import require_coremltools\nrequire_coremltools()\nprint('loaded')"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout == "loaded\n", res.stdout + res.stderr
    assert res.stderr == "", res.stderr
