"""Re-measuring every variant: full test split, its own runtime, deltas against fp32.

A compressed model's accuracy is never assumed from the fp32 figure. ``measure_artifact`` loads the
artifact with the runtime that reads it (ONNX Runtime, OpenVINO, Core ML on macOS) and predicts
the whole split; ``measure_model`` does the same for a PyTorch model (pruned runs). ``delta``
compares two measurements class by class, because which cell types lose recall matters
clinically (monocytes vs immature granulocytes are the classic confusion).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch.nn as nn

from edgeblood.errors import EdgebloodError
from edgeblood.parity import MISMATCH, OK


def data_for_run(run, data_dir: str | os.PathLike | None = None):
    """The data the run was trained on (the evaluation module's rules: a full-data run never falls back to the sample)."""
    from edgeblood.evaluation.evaluate import load_eval_data

    return load_eval_data(run, data_dir=data_dir)


def test_split_with_reference(run, data):
    """The FULL test split in the deployment layout, with the run's PyTorch probabilities (what the parity judge compares with)."""
    import torch

    from edgeblood.parity import ParityData
    from edgeblood.preprocess import wrap_for_deployment
    from edgeblood.runtimes import to_model_input

    images = to_model_input(data.images("test"))
    module = wrap_for_deployment(run.model, run.meta, with_label=False)
    with torch.inference_mode():
        ref = torch.cat([module(torch.from_numpy(images[i : i + 512])) for i in range(0, len(images), 512)]).numpy()
    desc = "embedded sample" if data.is_sample else data.describe() if data.source == "folder" else \
        f"BloodMNIST {run.in_size} px {data.variant}"
    return ParityData(images=images, labels=data.labels("test"), reference=ref, split="test", source=data.source, description=desc)


def summarize(labels: np.ndarray, probs: np.ndarray, classes: list[str], **context) -> dict:
    """The figures compress records per variant: accuracy, macro-F1, per-class recall (+ where measured)."""
    from edgeblood.evaluation.metrics import compute_metrics

    m = compute_metrics(labels, probs, classes)
    return {
        "status": "ok",
        **context,
        "n_images": int(m["num_samples"]),
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "balanced_accuracy": m["balanced_accuracy"],
        "per_class_recall": {name: row["recall"] for name, row in m["per_class"].items()},
        "ece": m["ece"],  # each artifact's own calibration error (int8 inherits the temperature folded into the fp32 head)
        "predictions": probs.argmax(1),  # dropped before writing JSON; used for agreement figures
    }


def measure_artifact(
    path: str | os.PathLike, images: np.ndarray, labels: np.ndarray, classes: list[str], *,
    split: str = "test", device: str = "cpu", threads: int | None = None,
) -> dict:
    """Predict ``images`` (float32 NCHW 0-255) with the artifact's own runtime; 'skipped' with a reason where it cannot run."""
    from edgeblood.runtimes import runtime_for_artifact

    runtime = runtime_for_artifact(path)
    ok, why = runtime.available()
    context = {"split": split, "runtime": runtime.name, "device": device}
    if not ok:
        return {"status": "skipped", "reason": why, **context}
    model = runtime.load(path, device=device, threads=threads)
    probs = model.predict(images)
    if probs.shape != (len(labels), len(classes)) or not np.all(np.isfinite(probs)):
        return {"status": "failed", "reason": f"outputs of shape {probs.shape} (finite: {bool(np.all(np.isfinite(probs)))}), "
                f"expected ({len(labels)}, {len(classes)})", **context}
    return summarize(labels, probs, classes, **context)


def measure_model(model: nn.Module, images_u8_nhwc: np.ndarray, labels: np.ndarray, classes: list[str], mean, std, *,
                  split: str = "test", device: str = "cpu") -> dict:
    """PyTorch predictions of ``model`` (normalised inputs) on uint8 NHWC ``images``."""
    from edgeblood.evaluation.predict import predict_probs

    probs = predict_probs(model, images_u8_nhwc, mean, std, device=device)
    return summarize(labels, probs, classes, split=split, runtime="pytorch", device=device)


def refit_temperature(val_probs: np.ndarray, val_labels: np.ndarray, test_probs: np.ndarray, test_labels: np.ndarray) -> dict:
    """The temperature that would minimise an artifact's own val NLL, and the test ECE it would give.

    A quantized artifact inherits the temperature fitted for the fp32 model (folded into its head), but
    int8 rounding can sharpen or blunt its confidence. Dividing the log-probabilities by T and
    re-normalising is softmax(logits / T) (softmax is shift-invariant), so T is fitted by the run's own
    fitter on what the artifact outputs; T = 1 means the inherited calibration is already the best.
    T is relative to the artifact's outputs (which already carry the run's ``calibration.temperature``;
    the product is the temperature relative to the trained network). Recorded, not applied: the
    artifact on disk is unchanged.
    """
    from edgeblood.evaluation.metrics import expected_calibration_error
    from edgeblood.evaluation.temperature import fit_temperature, nll, softmax

    val_logits, test_logits = _log_probs(val_probs), _log_probs(test_probs)
    t = fit_temperature(val_logits, val_labels)
    return {
        "temperature": round(t, 6),
        "fitted_on": "val",
        "images": int(len(val_labels)),
        "val_nll": nll(val_logits, val_labels),
        "val_nll_refit": nll(val_logits, val_labels, t),
        "test_ece": expected_calibration_error(test_labels, test_probs)[0],
        "test_ece_refit": expected_calibration_error(test_labels, softmax(test_logits, t))[0],
        "applied": False,
    }


def _log_probs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, np.float64), 1e-30, None))


def delta(variant: dict, baseline: dict) -> dict | None:
    """Percentage-point changes of ``variant`` vs ``baseline``; None unless both were measured (a
    mismatch was measured too: its deltas say how wrong it is)."""
    measured = (OK, MISMATCH)
    if variant.get("status") not in measured or baseline.get("status") not in measured:
        return None
    if variant["n_images"] != baseline["n_images"]:
        raise EdgebloodError("variant and fp32 were measured on different image sets; re-run compress on one split")
    per_class = {c: 100 * (variant["per_class_recall"][c] - baseline["per_class_recall"][c]) for c in baseline["per_class_recall"]}
    worst = min(per_class, key=per_class.get)
    out = {
        "accuracy_pt": 100 * (variant["accuracy"] - baseline["accuracy"]),
        "macro_f1_pt": 100 * (variant["macro_f1"] - baseline["macro_f1"]),
        "per_class_recall_pt": per_class,
        "worst_class": worst,
        "worst_class_recall_pt": per_class[worst],
    }
    if "predictions" in variant and "predictions" in baseline:
        out["top1_agreement"] = float(np.mean(np.asarray(variant["predictions"]) == np.asarray(baseline["predictions"])))
    return out


def jsonable(measurement: dict) -> dict:
    """A measurement without its raw predictions (for manifests and reports)."""
    return {k: v for k, v in measurement.items() if k != "predictions"}


def gzip_size(path: str | os.PathLike) -> int:
    """Bytes of the artifact's files after gzip -9 (what sparsity buys in a compressed download)."""
    import gzip

    from edgeblood.manifest import artifact_files

    return sum(len(gzip.compress(p.read_bytes(), compresslevel=9, mtime=0)) for p in artifact_files(Path(path)))
