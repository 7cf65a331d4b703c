"""Export checks parity on the run's own data, found through run.json, or says plainly that it could not (#30 item 7).

A run trained on the full BloodMNIST and exported on a machine without the file used to be checked on the
96-image embedded sample, and the only trace was "(embedded sample)" at the end of one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeblood.cli import app
from edgeblood.parity import load_parity_data
from edgeblood.runs import open_run


def _as_full_data_run(run_dir: Path, file: str) -> Path:
    """The run's metadata says it was trained on the full BloodMNIST file ``file``."""
    run = open_run(run_dir)
    run.metadata["dataset"] = {**run.metadata["dataset"], "source": "full", "file": file}
    run.save()
    return run_dir


@pytest.fixture
def no_data_here(tmp_path, monkeypatch) -> Path:
    """Neither $EDGEBLOOD_DATA nor ~/.medmnist holds BloodMNIST."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("EDGEBLOOD_DATA", str(empty))
    monkeypatch.setattr("edgeblood.data.bloodmnist.MEDMNIST_DEFAULT_DIR", empty)
    return empty


def test_export_without_the_runs_data_says_loudly_that_parity_ran_on_the_sample(sample_run, copy_run, no_data_here):
    pytest.importorskip("onnxruntime")
    run_dir = _as_full_data_run(copy_run(sample_run), "/nowhere/data/bloodmnist.npz")
    result = CliRunner().invoke(app, ["export", str(run_dir), "--target", "onnx", "--no-capture", "--parity-images", "32"],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    warning = next(line for line in result.output.splitlines() if line.startswith("WARNING:"))
    assert "parity ran on the embedded sample's 32 test images, NOT on the data this run was trained on" in warning
    assert "/nowhere/data/bloodmnist.npz" in warning and "--data-dir" in warning
    (entry,) = json.loads((run_dir / "export" / "manifest.json").read_text())["artifacts"]
    assert "NOT the run's own data" in entry["parity"]["data"]  # the manifest says it too, not only the terminal


def test_a_sample_run_gets_no_warning(sample_run, no_data_here):
    data = load_parity_data(open_run(sample_run), 16)
    assert data.description == "embedded sample" and data.warning is None


@pytest.mark.realdata
def test_parity_finds_the_runs_own_data_where_run_json_says_it_lies(sample_run, copy_run, data_dir, no_data_here):
    """Nothing points at the data ($EDGEBLOOD_DATA is empty, no --data-dir): the file run.json records is used."""
    run_dir = _as_full_data_run(copy_run(sample_run), str(data_dir / "bloodmnist.npz"))
    data = load_parity_data(open_run(run_dir), 64)
    assert data.source == "full" and data.description == "BloodMNIST 28 px official" and data.warning is None
    assert len(data.labels) == 64
