"""Fault-injection findings of issue #19 that concern the CLI as a whole: each test fails on the old code."""

from __future__ import annotations

import importlib.util

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
    """D10: `train --resume RUN --epochs 5 --model resnet18 --lr 0.5` silently ignored the three options."""
    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / "some-run"), "--epochs", "5", "--model", "resnet18", "--lr", "0.5"])
    assert isinstance(result.exception, EdgebloodError)
    assert "so --epochs, --model, --lr would be ignored" in str(result.exception)


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

    from edgeblood.training import TrainConfig, train

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
    from edgeblood.training import TrainConfig, train

    out = tmp_path / "runs"
    (out / "other-training").mkdir(parents=True)  # started a moment ago, first epoch not done: no checkpoint yet
    try:
        train(TrainConfig(sample=True, out_dir=str(out), epochs=1, teacher=str(tmp_path / "no-such-teacher")))
    except EdgebloodError:
        pass
    else:
        raise AssertionError("a missing teacher was accepted")
    assert sorted(p.name for p in out.iterdir()) == ["other-training"]
