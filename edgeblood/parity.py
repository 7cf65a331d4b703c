"""The one parity judge: does an artifact, run by its own runtime, say what the PyTorch model says?

Export, compress and bench all judge with :func:`compare` and the one table below, and all speak
the same four status words. The reference is the run's PyTorch model wrapped with the deployment
contract, fed the same float32 NCHW 0-255 pixels as the artifact, on real images of the run's dataset.

Thresholds, by precision class (:func:`precision_class`):

    fp32       100 % top-1 agreement, max |p_artifact - p_torch| < 1e-4
    fp16       >= 99.5 % agreement (bf16 too); the max difference is reported, not bounded
    quantized  >= 90 % agreement and at most 3 points of accuracy lost (int8 is expected to differ
               from fp32: its accuracy deltas, measured on the full test split, are the real verdict)
    capture    >= 99.5 % agreement with the Python framing path (the graph's resize rounds like PIL's
               to within one grey level, which flips a few near-ties)

Near-ties: an image whose two most probable classes differ by less than ``tie_margin`` in the
PyTorch output (below the format's own rounding) can flip between those two classes without the
artifact being wrong. Such flips are counted (``near_tie_flips``) and left out of
``decisive_agreement``, which the thresholds judge; the raw ``agreement`` is always reported too.

Status words: ``ok``; ``mismatch`` (it ran, and its outputs are beyond the thresholds: exported but
wrong, do not ship); ``failed`` (no outputs: missing file, invalid spec, load or predict error);
``skipped`` (cannot run here, with the reason). :func:`require_parity` turns a mismatch or failure
into an EdgebloodError carrying the numbers.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from edgeblood.errors import EdgebloodError
from edgeblood.parity_status import FAILED, MISMATCH, NOT_SHIPPABLE, OK, SKIPPED

DEFAULT_IMAGES = 256
THRESHOLDS: dict[str, dict[str, float | None]] = {
    "fp32": {"min_agreement": 1.0, "max_abs_diff": 1e-4, "tie_margin": 1e-6, "max_accuracy_drop": None},
    # fp16: 2e-3, the largest |dp| fp16 artifacts showed (1.5e-3 on a calibrated, i.e. sharper, sample model) rounded up:
    # a flip whose top-2 margin is below the precision's own noise says nothing about the artifact
    "fp16": {"min_agreement": 0.995, "max_abs_diff": None, "tie_margin": 2e-3, "max_accuracy_drop": None},
    "quantized": {"min_agreement": 0.90, "max_abs_diff": None, "tie_margin": 1e-3, "max_accuracy_drop": 0.03},
    "capture": {"min_agreement": 0.995, "max_abs_diff": None, "tie_margin": 1e-3, "max_accuracy_drop": None},
}


def precision_class(precision: str | None) -> str:
    """The row of THRESHOLDS that judges an artifact of ``precision`` (int8, int8-dynamic, palettized-4bit -> quantized)."""
    p = (precision or "fp32").lower()
    if p in ("fp32", "float32", "f32"):
        return "fp32"
    if p in ("fp16", "float16", "f16", "bf16", "bfloat16"):
        return "fp16"
    if p == "capture":
        return "capture"
    return "quantized"


@dataclass
class ParityData:
    """Test images in the deployment layout and the PyTorch reference probabilities for them."""

    images: np.ndarray | None  # float32 NCHW 0-255 (None where the caller runs the artifact itself, e.g. bench workers)
    labels: np.ndarray
    reference: np.ndarray  # PyTorch probabilities [N, C]
    split: str
    source: str  # "full" or "sample"
    description: str
    # Set when these are not the run's own data (its file was not found here): said loudly, never silently substituted.
    warning: str | None = None


@dataclass
class ParityResult:
    status: str  # ok | mismatch | failed | skipped
    n_images: int | None = None
    split: str = ""
    data: str = ""
    runtime: str = ""
    device: str = ""
    agreement: float | None = None
    decisive_agreement: float | None = None
    near_tie_flips: int | None = None
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    disagreements: int | None = None
    artifact_accuracy: float | None = None
    reference_accuracy: float | None = None
    thresholds: dict = field(default_factory=dict)
    reason: str = ""
    seconds: float | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, "", {})}

    @classmethod
    def from_dict(cls, d: dict) -> ParityResult:
        """The verdict of a manifest entry; keys a checker adds for readers (the capture check's
        ``reference`` path) are not fields, and must not turn a parity refusal into a TypeError."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def summary(self) -> str:
        """One line saying what was measured, on what, with which runtime."""
        if self.status == SKIPPED:
            return self.reason
        ties = f" ({self.near_tie_flips} near-tie flips; {self.decisive_agreement * 100:.2f} % excluding them)" if self.near_tie_flips else ""
        return (
            f"{self.agreement * 100:.2f} % top-1 agreement with PyTorch{ties}, max |dp| {self.max_abs_diff:.2e} "
            f"on {self.n_images} {self.split} images ({self.data}; {self.runtime}/{self.device})"
        )


def select_indices(labels: np.ndarray, n: int | None) -> np.ndarray:
    """First ``n`` images, stratified: classes taken in turn, each in file order (``None`` = all)."""
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    if n < 1:
        raise EdgebloodError(f"--parity-images must be >= 1 or 'all' (got {n})")
    per_class = [list(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    picked: list[int] = []
    while len(picked) < n:
        for queue in per_class:
            if queue and len(picked) < n:
                picked.append(queue.pop(0))
    return np.sort(np.asarray(picked))


def load_parity_data(run, n_images: int | None = DEFAULT_IMAGES, *, data_dir: str | os.PathLike | None = None, split: str = "test") -> ParityData:
    """Real ``split`` images from the run's dataset and the run's PyTorch probabilities for them.

    The run's own file is looked for in ``data_dir``, $EDGEBLOOD_DATA, ~/.medmnist and then where run.json says it
    was trained from; the embedded sample is used when the run was trained on it, or, with ``warning`` set, when
    the run's file is nowhere here (a parity check on 96 sample images is not one on the run's 3,421)."""
    import torch

    from edgeblood.data import load_bloodmnist
    from edgeblood.data.bloodmnist import load_sample
    from edgeblood.data.image_folder import load_folder_for_run
    from edgeblood.preprocess import wrap_for_deployment
    from edgeblood.runtimes import to_model_input

    size = run.in_size
    if run.meta.dataset.is_folder:
        data = load_folder_for_run(run.meta)
    elif run.meta.dataset.source == "sample":
        data = load_sample(size)
    else:
        data = load_bloodmnist(size, own_data_dir(run, data_dir), sample="auto")
    labels = data.labels(split)
    idx = select_indices(labels, n_images)
    images = to_model_input(data.images(split)[idx])
    module = wrap_for_deployment(run.model, run.meta, with_label=False)
    with torch.inference_mode():
        reference = torch.cat([module(torch.from_numpy(images[i : i + 256])) for i in range(0, len(images), 256)]).numpy()
    desc = "embedded sample" if data.is_sample else data.describe() if data.source == "folder" else f"BloodMNIST {size} px {data.variant}"
    warning = None
    if data.is_sample and run.meta.dataset.source != "sample":
        recorded = run.meta.dataset.file or f"BloodMNIST {size} px"
        warning = (f"parity ran on the embedded sample's {len(idx)} {split} images, NOT on the data this run was trained on "
                   f"({recorded}, not found here); pass --data-dir DIR or set EDGEBLOOD_DATA to check it on its own {split} split")
        desc = f"embedded sample - NOT the run's own data ({recorded} not found here)"
    return ParityData(images=images, labels=labels[idx], reference=reference, split=split, source=data.source, description=desc,
                      warning=warning)


def own_data_dir(run, data_dir: str | os.PathLike | None = None) -> str | os.PathLike | None:
    """The folder to load the run's BloodMNIST file from: ``data_dir`` (or $EDGEBLOOD_DATA, ~/.medmnist) when one
    of them has it, else the folder of the file run.json records, when that file is here."""
    from edgeblood.data.bloodmnist import find_dataset_file

    if find_dataset_file(run.in_size, data_dir) is not None:
        return data_dir
    recorded = run.meta.dataset.file
    if recorded and Path(recorded).expanduser().is_file():
        return Path(recorded).expanduser().parent
    return data_dir


def thresholds_for(precision: str) -> dict[str, float | None]:
    return dict(THRESHOLDS[precision_class(precision)])


def compare(probs: np.ndarray, data: ParityData, thresholds: dict[str, float | None], runtime: str = "", device: str = "", *,
            check_accuracy: bool = True) -> ParityResult:
    """Agreement and probability differences of ``probs`` against the reference, judged by ``thresholds``.

    ``check_accuracy=False`` leaves out the accuracy-drop rule (a slice of a few dozen images says
    too little about accuracy; bench judges accuracy only on the rows that predict the whole split).
    """
    ref = data.reference
    if probs.shape != ref.shape:
        return ParityResult(status=MISMATCH, n_images=len(ref), split=data.split, data=data.description, runtime=runtime, device=device,
                            thresholds=thresholds, reason=f"output shape {probs.shape} != PyTorch {ref.shape}")
    top = np.argsort(ref, 1)[:, ::-1]
    pred = np.argmax(probs, 1)
    agree = pred == top[:, 0]
    margin = np.take_along_axis(ref, top[:, :1], 1)[:, 0] - np.take_along_axis(ref, top[:, 1:2], 1)[:, 0]
    tie_margin = thresholds.get("tie_margin") or 0.0
    ties = ~agree & (pred == top[:, 1]) & (margin < tie_margin)
    diff = np.abs(probs.astype(np.float64) - ref.astype(np.float64))
    result = ParityResult(
        status=OK, n_images=len(ref), split=data.split, data=data.description, runtime=runtime, device=device,
        agreement=float(agree.mean()), decisive_agreement=float((agree | ties).mean()), near_tie_flips=int(ties.sum()),
        max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()),
        disagreements=int((~agree).sum()),
        artifact_accuracy=float((pred == data.labels).mean()),
        reference_accuracy=float((top[:, 0] == data.labels).mean()),
        thresholds=thresholds,
    )
    problems = []
    if not np.all(np.isfinite(probs)):
        problems.append("non-finite probabilities")
    if thresholds.get("min_agreement") is not None and result.decisive_agreement < thresholds["min_agreement"]:
        problems.append(f"agreement {result.decisive_agreement * 100:.2f} % < {thresholds['min_agreement'] * 100:.1f} %")
    if thresholds.get("max_abs_diff") is not None and not result.max_abs_diff < thresholds["max_abs_diff"]:
        problems.append(f"max |dp| {result.max_abs_diff:.2e} >= {thresholds['max_abs_diff']:.0e}")
    drop_allowed = thresholds.get("max_accuracy_drop")
    if check_accuracy and drop_allowed is not None and result.reference_accuracy - result.artifact_accuracy > drop_allowed:
        problems.append(f"accuracy {result.artifact_accuracy:.2%} is {(result.reference_accuracy - result.artifact_accuracy) * 100:.1f} "
                        f"points below PyTorch fp32 ({result.reference_accuracy:.2%})")
    if problems:
        result.status, result.reason = MISMATCH, "; ".join(problems)
    return result


def check_parity(
    artifact: str | os.PathLike,
    data: ParityData,
    *,
    precision: str = "fp32",
    thresholds: dict | None = None,
    device: str = "cpu",
) -> ParityResult:
    """Run ``artifact`` with its own runtime (edgeblood.runtimes) on ``data`` and compare with PyTorch.

    Returns status "skipped" (with the reason) when the artifact's runtime cannot predict here,
    e.g. Core ML on Linux. Never raises for a mismatch: see :func:`require_parity`.
    """
    from edgeblood.runtimes import runtime_for_artifact

    thresholds = thresholds if thresholds is not None else thresholds_for(precision)
    runtime = runtime_for_artifact(Path(artifact))
    ok, why = runtime.available()
    if not ok:
        reason = "numeric check skipped: Core ML predictions need macOS" if runtime.name == "coreml" and "macOS" in why else f"numeric check skipped: {why}"
        return ParityResult(status=SKIPPED, runtime=runtime.name, reason=reason, thresholds=thresholds)
    if runtime.name == "coreml":
        device = "cpu_only"  # the reference numerics; GPU/ANE run in fp16
    t0 = time.perf_counter()
    try:
        probs = runtime.load(artifact, device=device).predict(data.images)
    except Exception as exc:  # a file the runtime cannot load or run is a result (failed), recorded like any other
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        return ParityResult(status=FAILED, runtime=runtime.name, device=device, thresholds=thresholds,
                            reason=f"{runtime.name} could not run it: {first_line}")
    result = compare(probs, data, thresholds, runtime=runtime.name, device=device)
    result.seconds = round(time.perf_counter() - t0, 3)
    return result


def require_parity(result: ParityResult, artifact: str | os.PathLike, fix: str = "report the model config or try another --precision/target") -> None:
    """Raise an EdgebloodError with the numbers when ``result`` is a mismatch or a failure."""
    if result.status in NOT_SHIPPABLE:
        figures = f" ({result.summary()})" if result.agreement is not None else ""
        raise EdgebloodError(
            f"{artifact} does not match the PyTorch model: {result.reason}{figures}; it is marked {result.status} in manifest.json "
            f"- do not ship it; {fix}"
        )
