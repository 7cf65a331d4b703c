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
