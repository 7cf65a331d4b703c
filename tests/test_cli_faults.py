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
