"""MODEL_CARD.md: written by `edgeblood export` from run.json, metrics.json and manifest.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edgeblood.exporters.model_card import MODEL_CARD, render_model_card, write_model_card
from edgeblood.info import CREDIT
from exported_sample import exported


@pytest.fixture(scope="module")
def exported_run(sample_run, tmp_path_factory) -> Path:
    return exported(Path(sample_run), tmp_path_factory.getbasetemp(), ("onnx",))["run"]


def test_export_writes_the_card_beside_the_artifacts(exported_run):
    card = (exported_run / "export" / MODEL_CARD).read_text()
    metrics = json.loads((exported_run / "metrics.json").read_text())
    manifest = json.loads((exported_run / "export" / "manifest.json").read_text())
    test = metrics["test"]

    assert "not a diagnostic device" in card.lower() and "decision support" in card
    assert "embedded 512-image sample" in card  # sample-trained runs are labelled as such
    assert CREDIT in card and "CC BY 4.0" in card
    # per-class metrics: one row per class, numbers from metrics.json
    for cls, row in test["per_class"].items():
        assert re.search(rf"^\| {re.escape(cls)} \| {row['support']} \| {100 * row['precision']:.2f} % \| {100 * row['recall']:.2f} % \|", card, re.M)
    assert f"accuracy **{100 * test['accuracy']:.2f} %**" in card
    # known confusions: the largest off-diagonal pair first
    if test["top_confusions"]:
        top = test["top_confusions"][0]
        assert f"- {top['true']} -> {top['predicted']}: {top['count']} images" in card
    assert f"Expected calibration error {test['ece']:.4f}" in card
    assert "Normal cells only" in card and "One laboratory's staining" in card and "28 x 28 px" in card
    # every artifact of the manifest, with its parity figures
    for entry in manifest["artifacts"]:  # Core ML (added when test_examples ran first) is "skipped" off macOS
        parity = "ok, top-1 agreement 100.00 %" if entry["parity"]["status"] == "ok" else entry["parity"]["status"]
        assert re.search(rf"^\| `{re.escape(entry['path'])}` \| {entry['target']} \| fp32 \| .* \| {parity}", card, re.M)
    assert any(e["parity"]["status"] == "ok" for e in manifest["artifacts"])
    assert "was not pruned or quantized" in card


def test_card_without_metrics_or_manifest_says_what_is_missing(sample_run, tmp_path):
    from edgeblood.runs import open_run

    run = open_run(sample_run)
    path = write_model_card(run, tmp_path / "export")
    card = path.read_text()
    assert path == tmp_path / "export" / MODEL_CARD
    assert "No export/manifest.json yet" in card
    assert "per_class" not in card and "| basophil |" in card  # metrics.json of the run is still read
    no_metrics = render_model_card(run.metadata, run.name, None, None)
    assert "No metrics.json in the run" in no_metrics and "edgeblood evaluate" in no_metrics
    assert not list((tmp_path / "export").glob(".*"))  # atomic write left no temp file


def test_card_reports_compression_and_derives_confusions(sample_run):
    from edgeblood.runs import open_run

    run = open_run(sample_run)
    meta = dict(run.metadata, compression={"method": "structured pruning", "channel_ratio": 0.5, "macs": {"before": 2820480, "after": 1410240}})
    metrics = {"test": {"accuracy": 0.5, "num_samples": 4, "classes": ["a", "b"], "confusion_matrix": [[1, 2], [0, 1]], "per_class": {}}}
    manifest = {"artifacts": [{"path": "model-int8.onnx", "target": "onnx", "precision": "int8", "size_bytes": 31000,
                               "parity": {"status": "ok", "agreement": 0.99, "max_abs_diff": 0.02, "n_images": 256, "split": "test"}}]}
    card = render_model_card(meta, run.name, metrics, manifest)
    assert "- method: structured pruning" in card and "- channel_ratio: 0.5" in card and "  - after: 1410240" in card
    assert "- a -> b: 2 images (66.67 % of all a)" in card
    assert "| `model-int8.onnx` | onnx | int8 | 31 kB | ok, top-1 agreement 99.00 %, max prob. diff 2.0e-02, 256 test images |" in card
    assert "Not measured" in card  # no ECE in these metrics
