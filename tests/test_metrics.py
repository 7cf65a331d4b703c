"""Metrics against cases worked out by hand, degenerate predictions, and scikit-learn when present."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from edgeblood.errors import EdgebloodError
from edgeblood.evaluation.metrics import (
    accuracy_and_macro_f1,
    compute_metrics,
    expected_calibration_error,
    format_metrics_table,
)

CLASSES3 = ["a", "b", "c"]
# true:  a a b b c c ; predicted: a b b b c a
Y3 = np.array([0, 0, 1, 1, 2, 2])
P3 = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.4, 0.5, 0.1],
        [0.1, 0.8, 0.1],
        [0.3, 0.6, 0.1],
        [0.2, 0.2, 0.6],
        [0.5, 0.1, 0.4],
    ]
)


def test_hand_computed_three_class_case():
    m = compute_metrics(Y3, P3, CLASSES3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    pc = m["per_class"]
    assert [pc[c]["precision"] for c in CLASSES3] == pytest.approx([1 / 2, 2 / 3, 1.0])
    assert [pc[c]["recall"] for c in CLASSES3] == pytest.approx([1 / 2, 1.0, 1 / 2])
    assert [pc[c]["f1"] for c in CLASSES3] == pytest.approx([1 / 2, 0.8, 2 / 3])
    # specificity = TN / (TN + FP): a has FP 1 (the c predicted as a), TN 3; b FP 1, TN 3; c FP 0.
    assert [pc[c]["specificity"] for c in CLASSES3] == pytest.approx([3 / 4, 3 / 4, 1.0])
    assert [pc[c]["support"] for c in CLASSES3] == [2, 2, 2]
    assert [pc[c]["predicted"] for c in CLASSES3] == [2, 3, 1]
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["macro_precision"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert m["weighted_f1"] == pytest.approx(m["macro_f1"])  # equal supports
    # AUC(a): positives score 0.7, 0.4 vs negatives 0.1 0.3 0.2 0.5 -> 7 of 8 pairs ordered.
    assert [pc[c]["auc"] for c in CLASSES3] == pytest.approx([7 / 8, 1.0, 1.0])
    assert m["macro_auc"] == pytest.approx((7 / 8 + 2) / 3)
    assert m["nll"] == pytest.approx(-np.mean(np.log([0.7, 0.4, 0.8, 0.6, 0.6, 0.4])))
    assert m["top_confusions"] == [
        {"true": "a", "predicted": "b", "count": 1, "fraction_of_true": 0.5},
        {"true": "c", "predicted": "a", "count": 1, "fraction_of_true": 0.5},
    ]
    assert accuracy_and_macro_f1(Y3, P3.argmax(1)) == pytest.approx((m["accuracy"], m["macro_f1"]))
    json.dumps(m, allow_nan=False)  # strict JSON


def test_ece_by_hand():
    # confidences 0.95 (right), 0.95 (wrong) -> bin (14/15, 1]: |0.5 - 0.95|; 0.55 twice, right -> |1 - 0.55|
    y = np.array([0, 1, 0, 0])
    p = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.55, 0.45]])
    ece, table = expected_calibration_error(y, p, 15)
    assert ece == pytest.approx(0.5 * 0.45 + 0.5 * 0.45)
    assert table["count"][14] == 2 and table["count"][8] == 2 and sum(table["count"]) == 4
    assert table["accuracy"][14] == pytest.approx(0.5) and table["confidence"][8] == pytest.approx(0.55)
    # A calibrated predictor: 80 % confident and right 4 times out of 5.
    y = np.array([0, 0, 0, 0, 1])
    p = np.tile([0.8, 0.2], (5, 1))
    assert expected_calibration_error(y, p, 15)[0] == pytest.approx(0.0, abs=1e-12)


def test_auc_ties_count_half():
    m = compute_metrics(np.array([0, 1, 0, 1]), np.array([[0.5, 0.5]] * 4), ["x", "y"])
    assert m["per_class"]["x"]["auc"] == pytest.approx(0.5)
    assert m["macro_auc"] == pytest.approx(0.5)


def test_perfect_predictions():
    y = np.arange(8).repeat(5)
    m = compute_metrics(y, np.eye(8)[y], [f"c{i}" for i in range(8)])
    assert m["accuracy"] == m["balanced_accuracy"] == m["macro_f1"] == m["weighted_f1"] == 1.0
    assert m["macro_auc"] == 1.0 and m["macro_specificity"] == 1.0
    assert m["ece"] == pytest.approx(0.0) and m["nll"] == pytest.approx(0.0) and m["brier"] == pytest.approx(0.0)
    assert m["top_confusions"] == []
    assert np.array_equal(np.array(m["confusion_matrix"]), np.diag([5] * 8))


def test_degenerate_constant_prediction_and_single_class():
    y = np.array([0, 1, 2, 2])
    p = np.tile([0.1, 0.1, 0.8], (4, 1))  # always "c"
    m = compute_metrics(y, p, CLASSES3)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["per_class"]["a"]["precision"] == 0.0 and m["per_class"]["a"]["f1"] == 0.0  # zero_division -> 0
    assert m["per_class"]["c"]["precision"] == pytest.approx(0.5) and m["per_class"]["c"]["specificity"] == 0.0
    assert m["balanced_accuracy"] == pytest.approx(1 / 3)
    assert m["per_class"]["a"]["auc"] == pytest.approx(0.5)  # constant scores: every pair tied
    # Only one class present: AUC is undefined everywhere and reported as null, not NaN.
    m1 = compute_metrics(np.array([1, 1, 1]), np.tile([0.2, 0.7, 0.1], (3, 1)), CLASSES3)
    assert m1["macro_auc"] is None and all(r["auc"] is None for r in m1["per_class"].values())
    assert m1["accuracy"] == 1.0 and m1["macro_f1"] == 1.0  # macro over classes seen in truth or prediction
    json.dumps(m1, allow_nan=False)


def test_bad_inputs_raise_one_clear_error():
    with pytest.raises(EdgebloodError, match="shape"):
        compute_metrics(Y3, P3[:, :2], CLASSES3)
    with pytest.raises(EdgebloodError, match="one probability row per label"):
        compute_metrics(Y3[:3], P3, CLASSES3)
    with pytest.raises(EdgebloodError, match="NaN"):
        compute_metrics(Y3, np.full_like(P3, np.nan), CLASSES3)
    with pytest.raises(EdgebloodError, match="labels"):
        compute_metrics(Y3 + 1, P3, CLASSES3)
    with pytest.raises(EdgebloodError, match="softmax"):
        compute_metrics(Y3, np.log(P3), CLASSES3)  # logits instead of probabilities
    compute_metrics(Y3, P3.astype(np.float16) * 1.01, CLASSES3)  # rounding of low-precision runtimes is fine


def test_table_renders_every_class():
    from rich.console import Console

    console = Console(width=120, record=True)
    console.print(format_metrics_table(compute_metrics(Y3, P3, CLASSES3), title="test split"))
    text = console.export_text()
    assert "test split" in text and "66.67%" in text and "macro" in text and "ECE" in text


def test_the_title_and_headline_lines_do_not_wrap_at_the_table_width():
    """They used to be the table's title and caption and wrapped at its width: "NLL" and its value landed on two lines."""
    from rich.console import Console

    console = Console(width=200, record=True)
    title = "se-cnn-compact-28-seed0 (se-cnn-compact) · /work/shared/data/pbc-originals/val, 1712 images · runtime pytorch · device cpu"
    console.print(format_metrics_table(compute_metrics(Y3, P3, CLASSES3), title=title))
    lines = console.export_text().splitlines()
    headline = [line for line in lines if line.startswith("accuracy")]
    assert len(headline) == 1 and re.search(r"NLL \d+\.\d{4}$", headline[0].rstrip()), headline
    assert lines[0].rstrip() == title, "the title wrapped at the table's width"


def test_matches_scikit_learn_on_random_eight_class_predictions():
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 8, 600)
    logits = rng.normal(size=(600, 8)) + 2.0 * np.eye(8)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    p = np.round(p, 2)  # create ties for the AUC ranks
    p /= p.sum(1, keepdims=True)
    m = compute_metrics(y, p, [f"c{i}" for i in range(8)])
    pred = p.argmax(1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    for avg in ("macro", "weighted"):
        prec, rec, f1, _ = skm.precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
        assert (m[f"{avg}_precision"], m[f"{avg}_recall"], m[f"{avg}_f1"]) == pytest.approx((prec, rec, f1))
    assert m["macro_auc"] == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert m["nll"] == pytest.approx(skm.log_loss(y, p), rel=1e-6)
    assert np.array_equal(np.array(m["confusion_matrix"]), skm.confusion_matrix(y, pred))
    assert accuracy_and_macro_f1(y, pred) == pytest.approx((m["accuracy"], skm.f1_score(y, pred, average="macro")))
