"""evaluate_run / `edgeblood evaluate`: the right data, honest metrics.json, run.json headline, plots."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from edgeblood.data.bloodmnist import load_sample
from edgeblood.errors import EdgebloodError
from edgeblood.evaluation.evaluate import evaluate_run, read_metrics
from edgeblood.evaluation.predict import predict_probs
from edgeblood.runs import open_run


def test_training_evaluated_val_and_test_with_plots(sample_run):
    """conftest's sample_run is trained with evaluate=True, i.e. through evaluate_run."""
    metrics = read_metrics(sample_run)
    assert list(metrics) == ["val", "test"]
    run = open_run(sample_run)
    data = load_sample(28)
    for split in ("val", "test"):
        entry = metrics[split]
        assert entry["runtime"] == "pytorch" and entry["device"] == "cpu" and entry["split"] == split
        assert entry["data"]["source"] == "sample" and "SAMPLE" in entry["data"]["description"]
        assert entry["num_samples"] == len(data.labels(split)) == sum(entry["per_class"][c]["support"] for c in run.classes)
        # Recompute independently from the checkpoint: the stored numbers are these predictions' numbers.
        probs = predict_probs(run.model, data.images(split), run.mean, run.std)
        assert entry["accuracy"] == pytest.approx(float((probs.argmax(1) == data.labels(split)).mean()))
        assert np.array_equal(np.array(entry["confusion_matrix"]).sum(1), np.bincount(data.labels(split), minlength=8))
        headline = run.metadata["metrics"][split]
        assert {k: headline[k] for k in ("accuracy", "macro_f1", "balanced_accuracy")} == {
            k: entry[k] for k in ("accuracy", "macro_f1", "balanced_accuracy")
        }
        for name in (f"confusion_{split}.png", f"confusion_{split}_normalized.png", f"per_class_{split}.png",
                     f"reliability_{split}.png", f"samples_{split}.png"):
            assert f"plots/{name}" in entry["plots"]
            with Image.open(sample_run / "plots" / name) as img:
                assert img.format == "PNG" and min(img.size) > 200
    assert (sample_run / "plots" / "curves.png").is_file()
    assert not list(sample_run.rglob(".*.tmp")) and not list(sample_run.rglob(".*.png"))  # no atomic leftovers


def test_entries_merge_and_stale_entries_are_dropped(sample_run, copy_run):
    run_dir = copy_run(sample_run)
    before = read_metrics(run_dir)
    entry = evaluate_run(run_dir, "val", plots=False)
    after = read_metrics(run_dir)
    assert set(after) == {"val", "test"} and after["test"] == before["test"]  # same weights: test entry kept
    assert entry["accuracy"] == pytest.approx(before["val"]["accuracy"])
    # New weights (e.g. retrained or fine-tuned): the old val entry no longer describes this model.
    run = open_run(run_dir)
    with torch.no_grad():
        run.model.head[-1].bias.add_(torch.linspace(-3, 3, 8))
    run.save(run.model)
    evaluate_run(run_dir, "test", plots=False)
    assert list(read_metrics(run_dir)) == ["test"]
    assert read_metrics(run_dir)["test"]["weights_sha256"] != before["test"]["weights_sha256"]
    assert open_run(run_dir).metadata["metrics"]["test"]["accuracy"] == read_metrics(run_dir)["test"]["accuracy"]


def test_concurrent_evaluations_keep_both_splits(sample_run, copy_run):
    """An evaluation that reads metrics.json while another is merging waits for it instead of dropping its split."""
    from edgeblood.atomic import exclusive_lock, write_json

    run_dir = copy_run(sample_run)
    before = read_metrics(run_dir)
    code = f"from edgeblood.evaluation.evaluate import evaluate_run; evaluate_run({str(run_dir)!r}, 'test', plots=False)"
    with exclusive_lock(run_dir / ".metrics.json.lock"):
        child = subprocess.Popen([sys.executable, "-c", code])
        try:  # the child evaluates, then blocks on the lock before it reads metrics.json
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        assert child.poll() is None, "the child merged metrics.json while another process held its lock"
        # meanwhile this process merges "val" (what a concurrent `edgeblood evaluate --split val` does)
        write_json(run_dir / "metrics.json", {"val": dict(before["val"], note="written under the lock")})
    assert child.wait(timeout=120) == 0
    merged = read_metrics(run_dir)
    assert set(merged) == {"val", "test"} and merged["val"]["note"] == "written under the lock"
    assert set(open_run(run_dir).metadata["metrics"]) == {"val", "test"}  # run.json's headline is rebuilt from the merge


def test_full_data_run_is_never_evaluated_on_the_sample(sample_run, copy_run, tmp_path, monkeypatch):
    run_dir = copy_run(sample_run)
    meta = json.loads((run_dir / "run.json").read_text())
    run = open_run(run_dir)
    run.metadata["dataset"] = {**meta["dataset"], "source": "full", "file": "bloodmnist.npz"}
    run.save()
    metrics_before = (run_dir / "metrics.json").read_bytes()
    monkeypatch.setenv("EDGEBLOOD_DATA", str(tmp_path / "empty"))
    monkeypatch.setattr("edgeblood.data.bloodmnist.MEDMNIST_DEFAULT_DIR", tmp_path / "empty")
    with pytest.raises(EdgebloodError, match="embedded sample"):
        evaluate_run(run_dir, "test", sample=True)
    with pytest.raises(EdgebloodError, match="trained on the full data.*--download"):
        evaluate_run(run_dir, "test", data_dir=tmp_path / "empty")
    assert (run_dir / "metrics.json").read_bytes() == metrics_before  # nothing half-written
    with pytest.raises(EdgebloodError, match="unknown split"):
        evaluate_run(run_dir, "tset")


def test_cli_prints_data_table_and_files(sample_run, copy_run):
    from typer.testing import CliRunner

    from edgeblood.cli import app

    run_dir = copy_run(sample_run)
    result = CliRunner().invoke(app, ["evaluate", str(run_dir), "--split", "val", "--no-plots"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # rich wraps at the terminal width
    assert "SAMPLE" in out and "val split, 96 images" in out and "runtime pytorch" in out and "device cpu" in out
    assert "basophil" in out and "platelet" in out and "balanced accuracy" in out
    assert str(run_dir / "metrics.json") in out


def test_cli_error_is_one_line_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgeblood", "evaluate", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.realdata
def test_sample_trained_run_on_the_full_test_split(sample_run, copy_run, data_dir):
    run_dir = copy_run(sample_run)
    entry = evaluate_run(run_dir, "test", data_dir=data_dir, sample=False, plots=False)
    assert entry["data"]["source"] == "full" and entry["data"]["md5"] == "7053d0359d879ad8a5505303e11de1dc"
    assert entry["num_samples"] == 3421
    assert any("trained on the sample" in n for n in entry["data"]["notes"])
    assert entry["accuracy"] > 0.2  # better than chance (12.5 %) even after a few epochs on 320 images
