"""Calibrated confidence: temperature scaling fitted on the val split, folded into the classifier head.

Label smoothing leaves edgeblood's models under-confident: se-cnn 28 px had ECE 0.073, with most
correct predictions at a top probability near 0.92. Then a review threshold such as
``--reject-below 0.7`` does not flag the share of images a user expects. Temperature scaling (Guo et
al., 2017) divides the logits by one scalar T, fitted to minimise the val split's negative
log-likelihood. The argmax is unchanged, so accuracy is unchanged, and confidence matches accuracy
again.

T is folded into the last Linear layer (``W / T``, ``b / T``) instead of being kept as a separate
number. Every path then carries it with no extra op: PyTorch evaluation, every exported graph,
quantized variants (whose float Softmax sees the same scaled logits) and the parity references. The
run records it under ``calibration``, with ECE and NLL before and after on val. It also records the
review table: for each share of val images an app may send to a person, the top-probability
threshold that flags that share, and the accuracy on the images it accepts. ``edgeblood predict
--review-rate`` reads that table from the exported artifact.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
import torch.nn as nn

from edgeblood.errors import EdgebloodError
from edgeblood.run_metadata import CalibrationInfo

#: Shares of images sent for review that the table records (predict --review-rate interpolates between them).
REVIEW_RATES = tuple(round(0.01 * k, 2) for k in range(0, 51))
T_RANGE = (0.05, 20.0)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    z = torch.from_numpy(np.asarray(logits, np.float64)) / temperature
    return float(torch.nn.functional.cross_entropy(z, torch.from_numpy(np.asarray(labels, np.int64))))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in ``T_RANGE`` that minimises NLL(softmax(logits / T)): golden-section search on log T
    (NLL is unimodal in T), deterministic and dependency-free."""
    if len(labels) == 0:
        raise EdgebloodError("temperature scaling needs labelled val images; the val split is empty")
    lo, hi = math.log(T_RANGE[0]), math.log(T_RANGE[1])
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(logits, labels, math.exp(a)), nll(logits, labels, math.exp(b))
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(logits, labels, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(logits, labels, math.exp(b))
    return float(math.exp((lo + hi) / 2))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return torch.softmax(torch.from_numpy(np.asarray(logits, np.float64)) / temperature, dim=1).numpy()


def uncalibrated(probs: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities the model gave before ``temperature`` was folded in (softmax is shift-invariant)."""
    return softmax(np.log(np.clip(probs, 1e-30, None)), 1.0 / temperature)


def review_table(probs: np.ndarray, labels: np.ndarray, rates=REVIEW_RATES) -> list[dict]:
    """Per share of images flagged for review: the top-probability threshold that flags it, and the
    accuracy on the images accepted (those at or above the threshold)."""
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    order = np.sort(conf)
    rows = []
    for rate in rates:
        k = int(round(rate * len(conf)))
        threshold = float(order[k]) if k < len(order) else 1.0
        if k == 0:
            threshold = 0.0
        accepted = conf >= threshold
        rows.append({"review_rate": float(rate), "threshold": round(threshold, 6), "flagged": float(1 - accepted.mean()),
                     "accepted_accuracy": float(correct[accepted].mean()) if accepted.any() else None})
    return rows


def threshold_for_rate(table: list[dict], rate: float) -> float:
    """The threshold that flags ``rate`` of the val images (linear between the table's rows)."""
    if not 0 <= rate <= table[-1]["review_rate"]:
        raise EdgebloodError(f"--review-rate is the share of images to send for review, 0 to {table[-1]['review_rate']:g}; got {rate:g}")
    rates = [r["review_rate"] for r in table]
    return float(np.interp(rate, rates, [r["threshold"] for r in table]))


def fold_into_head(model: nn.Module, temperature: float, num_classes: int) -> str:
    """Divide the classifier head's weights and bias by ``temperature`` in place; returns the head's name."""
    from edgeblood.models.head import classifier_head

    head = classifier_head(model, num_classes)
    layer = model.get_submodule(head)
    with torch.no_grad():
        layer.weight.div_(temperature)
        if layer.bias is not None:
            layer.bias.div_(temperature)
    return head


def calibrate_run(run, data, *, device: str = "cpu", batch_size: int = 512) -> dict:
    """Fit T on ``data``'s val split, fold it into ``run``'s head, save the run and return the record.

    A run calibrated before is refitted on its already-scaled logits: the record keeps the product,
    the temperature relative to the trained (uncalibrated) network.
    """
    from edgeblood.evaluation.metrics import expected_calibration_error
    from edgeblood.evaluation.predict import predict_logits

    model = run.model
    images, labels = data.images("val"), data.labels("val")
    logits = predict_logits(model, images, run.mean, run.std, batch_size=batch_size, device=device)
    model.cpu()
    t = fit_temperature(logits, labels)
    before_total = run.meta.temperature
    ece_before, _ = expected_calibration_error(labels, softmax(logits * before_total))  # the trained network's own confidence
    ece_after, _ = expected_calibration_error(labels, softmax(logits, t))
    head = fold_into_head(model, t, len(run.classes))
    record = {
        "method": "temperature scaling: NLL on the val split, folded into the classifier head (W / T, b / T)",
        "temperature": round(before_total * t, 6),
        "fitted_on": "val",
        "images": int(len(labels)),
        "head": head,
        "val_ece_before": ece_before,
        "val_ece_after": ece_after,
        "val_nll_before": nll(logits * before_total, labels),
        "val_nll_after": nll(logits, labels, t),
        "review_thresholds": review_table(softmax(logits, t), labels),
    }
    run.meta = replace(run.meta, calibration=CalibrationInfo.from_dict(record))
    run.save(model)
    return record
