"""The metadata every exported artifact carries, as one flat string map.

ONNX ``metadata_props``, OpenVINO ``rt_info`` and Core ML ``user_defined_metadata`` all hold
string -> string pairs, so the contract is written once here and stored identically in each format.
Scalars are plain strings (readable in Netron or Xcode as they are); lists and dicts are JSON
(``JSON_KEYS``). An app reads ``classes`` and ``input_size`` from the model and never hard-codes them.

Part of the run/artifact contract, so it sits in the core of the package: the exporters write it and
``edgeblood.runtimes`` (for predict, compress, parity and bench) reads it back.
"""

from __future__ import annotations

import json
from typing import Any

from edgeblood import __version__
from edgeblood.info import CREDIT, LICENSE

CONTRACT = "edgeblood.artifact/1"

# Tensor names every artifact uses (Core ML renames the label output: see exporters/coreml.py).
INPUT_NAME = "image"
PROB_NAME = "probabilities"
LABEL_NAME = "label"

# Keys whose values are JSON (everything else is a plain string).
JSON_KEYS = frozenset({"classes", "class_names_full", "model_config", "input_range", "input_shape", "normalization", "outputs",
                       "framing", "train_class_prior", "review_thresholds"})

DESCRIPTION = (
    "Blood-cell classifier (BloodMNIST, 8 classes) for research and decision support; not a diagnostic device. "
    "Input: RGB pixels 0-255, normalisation is inside the model. Frame captures as the 'framing' entry says "
    "(BloodMNIST: a centred 200x200 px window of a 360x363 px capture, bilinear resize) before feeding them."
)


def artifact_metadata(run_metadata: dict, *, precision: str = "fp32", target: str = "", run_name: str = "") -> dict[str, str]:
    """The flat string map stored in an artifact, built from a run's metadata (run.json)."""
    from edgeblood.framing import framing_of

    inp = run_metadata["input"]
    ds = run_metadata.get("dataset", {})
    test = (run_metadata.get("metrics") or {}).get("test") or {}
    val = (run_metadata.get("metrics") or {}).get("val") or {}
    counts = ds.get("train_class_counts") or []
    size = int(inp["size"])
    meta: dict[str, Any] = {
        "edgeblood_contract": CONTRACT,
        "edgeblood_version": __version__,
        "model_name": run_metadata["model"]["name"],
        "model_config": run_metadata["model"].get("config", {}),
        "source_run": run_name,
        "git_commit": run_metadata.get("git_commit") or "",
        "target": target,
        "precision": precision,
        "classes": list(run_metadata["classes"]),
        "class_names_full": list(run_metadata.get("class_names_full") or run_metadata["classes"]),
        "input_name": INPUT_NAME,
        "input_size": str(size),
        "input_shape": ["N", 3, size, size],
        "input_layout": inp.get("layout", "NCHW"),
        "input_channel_order": inp.get("channel_order", "RGB"),
        "input_dtype": inp.get("dtype", "float32"),
        "input_range": list(inp.get("range", [0, 255])),
        "normalization": {"baked_in": True, "mean": list(inp["mean"]), "std": list(inp["std"]), "scale": "0-1"},
        # how a training image was cut from its source capture: apply it to captures (edgeblood.framing)
        "framing": framing_of(run_metadata)[0].to_dict(),
        "train_class_prior": [round(c / sum(counts), 6) for c in counts] if counts and sum(counts) else [],
        "val_mean_confidence": "" if val.get("mean_confidence") is None else f"{float(val['mean_confidence']):.6f}",
        # temperature scaling folded into the graph's head (edgeblood.evaluation.temperature); 1 = not calibrated
        "temperature": f"{float((run_metadata.get('calibration') or {}).get('temperature', 1.0)):.6f}",
        # [share of val images flagged, top-probability threshold, val accuracy on the rest]: predict --review-rate
        "review_thresholds": [[r["review_rate"], r["threshold"], r["accepted_accuracy"]]
                              for r in (run_metadata.get("calibration") or {}).get("review_thresholds", [])],
        "outputs": [PROB_NAME, LABEL_NAME],
        "dataset": ds.get("name", "bloodmnist"),
        "dataset_size": str(ds.get("size", size)),
        "dataset_source": ds.get("source", ""),
        "dataset_variant": ds.get("variant", ""),
        "dataset_md5": ds.get("md5") or "",
        "test_accuracy": "" if test.get("accuracy") is None else f"{float(test['accuracy']):.6f}",
        "test_macro_f1": "" if test.get("macro_f1") is None else f"{float(test['macro_f1']):.6f}",
        "license": f"model: Apache-2.0 (edgeblood); training data: {run_metadata.get('license') or LICENSE}",
        "credit": run_metadata.get("credit") or CREDIT,
        "description": DESCRIPTION,
    }
    return {k: json.dumps(v) if k in JSON_KEYS else str(v) for k, v in meta.items()}


def decode_metadata(flat: dict[str, str]) -> dict[str, Any]:
    """Inverse of :func:`artifact_metadata`: JSON keys parsed, the rest left as strings."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if key in JSON_KEYS and isinstance(value, str):
            try:
                out[key] = json.loads(value)
                continue
            except ValueError:
                pass
        out[key] = value
    return out


def nchw_input(size: int) -> dict:
    """The manifest's ``input`` entry of a tensor artifact: the README's layout rule, raw 0-255 RGB pixels."""
    return {"name": INPUT_NAME, "shape": ["N", 3, size, size], "layout": "NCHW", "dtype": "float32", "range": [0, 255], "channel_order": "RGB"}


def fixed_batch_input(size: int, entry_points: dict[str, int], kind: str) -> dict:
    """The ``input`` entry of an artifact with fixed batch sizes (LiteRT signatures, ExecuTorch methods):
    the tensor contract at batch 1, plus each entry point and the batch it takes."""
    return {**nchw_input(size), "shape": [1, 3, size, size], kind: dict(entry_points)}
