"""Temperature scaling (issue 19, item 1): fitted on val, folded into the head, argmax untouched,
ECE lower, review thresholds that flag the share asked for, carried into every artifact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edgeblood.cli import app
from edgeblood.data.bloodmnist import load_sample
from edgeblood.errors import EdgebloodError
from edgeblood.evaluation.metrics import expected_calibration_error
from edgeblood.evaluation.predict import predict_logits, predict_probs
from edgeblood.evaluation.temperature import calibrate_run, fit_temperature, nll, review_table, softmax, threshold_for_rate, uncalibrated
from edgeblood.runs import open_run


def _synthetic(n=4000, classes=8, sharpness=1.0, seed=0):
    """Logits from a well-calibrated source, then blunted (x 0.4): an under-confident model, as label smoothing leaves."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, classes))
    labels = np.array([rng.choice(classes, p=p) for p in softmax(logits)])
    return logits * sharpness, labels


def test_fit_recovers_the_temperature_and_lowers_nll_and_ece():
    logits, labels = _synthetic(sharpness=0.4)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(0.4, rel=0.08)  # the blunting undone
    assert nll(logits, labels, t) < nll(logits, labels) - 0.05
    assert expected_calibration_error(labels, softmax(logits, t))[0] < 0.5 * expected_calibration_error(labels, softmax(logits))[0]
    assert np.array_equal(softmax(logits, t).argmax(1), logits.argmax(1))
    assert np.allclose(uncalibrated(softmax(logits, t), t), softmax(logits), atol=1e-6)


def test_review_thresholds_flag_the_share_asked_for():
    logits, labels = _synthetic(seed=1)
    probs = softmax(logits)
    table = review_table(probs, labels)
    for rate in (0.05, 0.1, 0.2):
        row = next(r for r in table if r["review_rate"] == rate)
        assert (probs.max(1) < row["threshold"]).mean() == pytest.approx(rate, abs=0.002)
        assert row["accepted_accuracy"] > (probs.argmax(1) == labels).mean()  # the flagged ones were the doubtful ones
    assert threshold_for_rate(table, 0.075) == pytest.approx((table[7]["threshold"] + table[8]["threshold"]) / 2, rel=0.02)
    with pytest.raises(EdgebloodError, match="--review-rate is the share"):
        threshold_for_rate(table, 0.9)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_calibrating_a_run_leaves_every_prediction_and_lowers_val_nll(sample_runs, copy_run, precision):
    """What holds by construction on any CPU and either precision: the argmax stays, the fitted T is the
    NLL minimum (within the search tolerance), and val NLL does not rise. ECE is not asserted here: on
    96 val images it can rise after a correct NLL fit (seen on AVX-512 BF16: 0.144 -> 0.165, issue #29);
    the ECE claim is tested on 4,000 synthetic predictions above."""
    run_dir = copy_run(sample_runs(precision))
    run = open_run(run_dir)
    data = load_sample(28)
    assert run.metadata["calibration"]["fitted_on"] == "val"  # training calibrates every run it finishes
    prior = run.metadata["calibration"]["temperature"]
    before = predict_logits(run.model, data.images("test"), run.mean, run.std)
    val_logits = predict_logits(run.model, data.images("val"), run.mean, run.std)
    record = calibrate_run(run, data)
    after_run = open_run(run_dir)
    after = predict_probs(after_run.model, data.images("test"), after_run.mean, after_run.std)
    assert np.array_equal(after.argmax(1), before.argmax(1)), "temperature must not move the argmax"
    assert np.allclose(after, softmax(before, record["temperature"] / prior), atol=1e-5)
    assert record["val_nll_after"] <= record["val_nll_before"] + 1e-9 and record["fitted_on"] == "val"
    t_rel = record["temperature"] / prior  # the temperature fitted on top of the one already folded in
    best = nll(val_logits, data.labels("val"), t_rel)
    for step in (0.97, 1.03):
        assert best <= nll(val_logits, data.labels("val"), t_rel * step) + 1e-6, "the fitted T is the val-NLL minimum"
    assert after_run.metadata["calibration"]["temperature"] == record["temperature"]
    # refitting a calibrated run finds (nearly) nothing left to fix: the recorded temperature is the product
    assert record["temperature"] == pytest.approx(prior, rel=0.02)


def test_exported_model_carries_the_temperature_and_predict_review_rate(sample_run, copy_run, tmp_path):
    from PIL import Image

    run_dir = copy_run(sample_run)
    result = CliRunner().invoke(app, ["evaluate", str(run_dir), "--calibrate", "--split", "test", "--no-plots"])
    assert result.exit_code == 0, result.output
    entry = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert entry["calibration"]["calibrated"] and "ece_uncalibrated" in entry["calibration"]
    assert CliRunner().invoke(app, ["export", str(run_dir), "--target", "onnx"]).exit_code == 0
    import onnx

    props = {p.key: p.value for p in onnx.load(str(run_dir / "export" / "model.onnx")).metadata_props}
    t = open_run(run_dir).metadata["calibration"]["temperature"]
    assert float(props["temperature"]) == pytest.approx(t, abs=1e-6) and len(json.loads(props["review_thresholds"])) == 51
    assert "Temperature" in (run_dir / "export" / "MODEL_CARD.md").read_text()
    images = load_sample(28).images("val")
    for i, img in enumerate(images):
        Image.fromarray(img).save(tmp_path / f"{i:03d}.png")
    out = tmp_path / "p.json"
    result = CliRunner().invoke(app, ["predict", str(run_dir / "export" / "model.onnx"), str(tmp_path), "--framing", "cell-crop",
                                      "--review-rate", "0.2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["predictions"]
    flagged = sum(r["review"] for r in rows) / len(rows)
    assert flagged == pytest.approx(0.2, abs=0.03), "the val images themselves: the share flagged is the share asked for"
    result = CliRunner().invoke(app, ["predict", str(run_dir / "export" / "model.onnx"), str(tmp_path), "--review-rate", "0.1", "--reject-below", "0.5"])
    assert isinstance(result.exception, EdgebloodError) and "not both" in str(result.exception)


def test_head_folding_is_exact_for_a_linear_head():
    from edgeblood.evaluation.temperature import fold_into_head
    from edgeblood.models import create

    model = create("se-cnn", num_classes=8, in_size=28, widths=[8, 16, 16, 16]).eval()
    x = torch.randn(4, 3, 28, 28)
    with torch.no_grad():
        ref = model(x)
        fold_into_head(model, 0.5, 8)
        assert torch.allclose(model(x), ref / 0.5, atol=1e-5)
