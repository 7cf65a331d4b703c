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
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from edgeblood import __version__
from edgeblood.info import CREDIT, LICENSE
from edgeblood.run_metadata import InputContract, RunMetadata, as_run_metadata

CONTRACT = "edgeblood.artifact/1"

# Tensor names every artifact uses (Core ML renames the label output: see exporters/coreml/export.py).
INPUT_NAME = "image"
PROB_NAME = "probabilities"
LABEL_NAME = "label"
DOMAIN_NAME = "domain"
#: Targets whose graphs carry the ``domain`` output when the run has a domain profile (edgeblood.domain).
DOMAIN_TARGETS = frozenset({"onnx", "openvino", "coreml", "litert", "executorch", "pytorch"})

# Keys whose values are JSON (everything else is a plain string).
JSON_KEYS = frozenset({"domain", "classes", "class_names_full", "model_config", "input_range", "input_shape", "normalization", "outputs",
                       "framing", "train_class_prior", "review_thresholds"})

DESCRIPTION = (
    "Blood-cell classifier (BloodMNIST, 8 classes) for research and decision support; not a diagnostic device. "
    "Input: RGB pixels 0-255, normalisation is inside the model. Frame captures as the 'framing' entry says "
    "(BloodMNIST: a centred 200x200 px window of a 360x363 px capture, bilinear resize) before feeding them."
)


def artifact_metadata(run_metadata: RunMetadata | Mapping[str, Any], *, precision: str = "fp32", target: str = "",
                      run_name: str = "", domain: bool = True) -> dict[str, str]:
    """The flat string map stored in an artifact, built from a run's metadata (``Run.meta``)."""
    run_meta = as_run_metadata(run_metadata)
    if not domain:  # an artifact built without the domain output
        run_meta = replace(run_meta, domain=None)
    inp, ds = run_meta.input, run_meta.dataset
    counts = list(ds.train_class_counts or [])
    size = int(inp.size)
    val_confidence, test = run_meta.metric("val", "mean_confidence"), run_meta.metrics.get("test") or {}
    meta: dict[str, Any] = {
        "edgeblood_contract": CONTRACT,
        "edgeblood_version": __version__,
        "model_name": run_meta.model.name,
        "model_config": run_meta.model.config,
        "source_run": run_name,
        "git_commit": run_meta.git_commit or "",
        "target": target,
        "precision": precision,
        "classes": list(run_meta.classes),
        "class_names_full": run_meta.class_names,
        **input_entries(inp),
        "train_class_prior": [round(c / sum(counts), 6) for c in counts] if counts and sum(counts) else [],
        "val_mean_confidence": "" if val_confidence is None else f"{float(val_confidence):.6f}",
        # temperature scaling folded into the graph's head (edgeblood.evaluation.temperature); 1 = not calibrated
        "temperature": f"{run_meta.temperature:.6f}",
        # [share of val images flagged, top-probability threshold, val accuracy on the rest]: predict --review-rate
        "review_thresholds": [[r.review_rate, r.threshold, r.accepted_accuracy] for r in run_meta.review_thresholds],
        "outputs": [PROB_NAME, LABEL_NAME] + ([DOMAIN_NAME] if _has_domain(run_meta, target) else []),
        # the domain check (edgeblood.domain): what the graph's domain output means and its reference statistics
        **({"domain": domain_entry(run_meta.domain)} if _has_domain(run_meta, target) else {}),
        "dataset": ds.name or "bloodmnist",
        "dataset_size": str(size if ds.size is None else ds.size),
        "dataset_source": ds.source or "",
        "dataset_variant": ds.variant or "",
        "dataset_md5": ds.md5 or "",
        "test_accuracy": "" if test.get("accuracy") is None else f"{float(test['accuracy']):.6f}",
        "test_macro_f1": "" if test.get("macro_f1") is None else f"{float(test['macro_f1']):.6f}",
        "license": f"model: Apache-2.0 (edgeblood); training data: {run_meta.license or LICENSE}",
        "credit": run_meta.credit or CREDIT,
        "description": DESCRIPTION,
    }
    return {k: json.dumps(v) if k in JSON_KEYS else str(v) for k, v in meta.items()}


def _has_domain(run_meta: RunMetadata, target: str) -> bool:
    return bool(run_meta.domain) and target in DOMAIN_TARGETS


def domain_entry(domain: Mapping[str, Any]) -> dict[str, Any]:
    """The domain section an app needs: the output's meaning, thresholds, val flag share, image statistics (for the cause)."""
    keys = ("output", "scores", "method", "flag_rate_target", "val_flagged", "thresholds", "image_stats")
    return {k: domain[k] for k in keys if k in domain}


def input_entries(inp: InputContract) -> dict[str, Any]:
    """The input contract's keys in an artifact (the run's ``InputContract``, flattened; mean/std are baked into the graph)."""
    size = int(inp.size)
    return {
        "input_name": INPUT_NAME,
        "input_size": str(size),
        "input_shape": ["N", inp.channels, size, size],
        "input_layout": inp.layout,
        "input_channel_order": inp.channel_order,
        "input_dtype": inp.dtype,
        "input_range": list(inp.value_range),
        "normalization": {"baked_in": True, "mean": list(inp.mean), "std": list(inp.std), "scale": "0-1"},
        # how a training image was cut from its source capture: apply it to captures (edgeblood.framing)
        "framing": inp.framing.to_dict(),
    }


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
