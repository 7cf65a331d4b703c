"""Classifying a user's image files with an exported model: the library behind ``edgeblood predict``.

    model = open_model("runs/x/export/model.onnx")              # any exported artifact or a run directory
    report = predict_files(model, ["cells/"], top_k=3, reject_below=0.7)
    report.summary()                                             # files, flagged for review, failed

The model's own metadata (written into every artifact by ``edgeblood export``) supplies the class
names, input size and framing (how a training image was cut from its capture), so nothing here is
hard-coded to one model. Images are framed by ``edgeblood.imageio.load_image`` with the model's
framing unless the caller chooses another one (``--framing cell-crop`` for single-cell crops).
A file that cannot be read becomes a failed row with its reason; the rest of the batch still runs.

A batch whose predictions collapse onto one class, or whose confidence falls far below the model's
val confidence, gets a warning: that is what a wrong framing looks like (whole 360x363 frames fed to
a BloodMNIST model: 21-25 % accuracy on the val originals, 58-88 % "platelet", measured).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeblood.errors import EdgebloodError, ModelError
from edgeblood.framing import Framing, bloodmnist_framing, stored_or_dataset_framing
from edgeblood.imageio import iter_image_files, load_image, read_pixels, to_rgb_uint8
from edgeblood.pixel_scale import is_rescaled

DEFAULT_BATCH = 64
#: The collapse guard: at least this many predictions, one class above COLLAPSE_SHARE of them while its
#: training prior is below COLLAPSE_PRIOR, or a mean top probability CONFIDENCE_GAP below the val mean.
#: Measured on the 1,712 val originals fed as whole frames: 58-88 % "platelet" (prior 14 %) and a mean
#: top probability 0.72-0.77 against 0.88-0.89 on val; framed correctly: at most 20 % one class, 0.88.
GUARD_MIN_IMAGES = 20
COLLAPSE_SHARE = 0.50
COLLAPSE_PRIOR = 0.25
CONFIDENCE_GAP = 0.15
#: Whole captures are batched up to this many uint8 values (64 frames of 512 x 512 RGB): memory stays bounded
#: however large the camera's frames are.
FRAME_BATCH_VALUES = 64 * 512 * 512 * 3


@dataclass
class PredictModel:
    """A loaded runtime model plus what prediction needs from its metadata."""

    loaded: Any  # edgeblood.runtimes.LoadedModel
    path: Path
    classes: list[str]
    input_size: int
    framing: Framing = field(default_factory=lambda: bloodmnist_framing(28))
    framing_recorded: bool = True  # False: an artifact older than the framing contract (BloodMNIST's assumed)
    class_prior: list[float] = field(default_factory=list)  # share of each class in the training split
    val_confidence: float | None = None  # mean top probability on the val split
    review_table: list[dict] = field(default_factory=list)  # val review shares -> thresholds (calibrated runs)
    domain_info: dict = field(default_factory=dict)  # the artifact's domain section (edgeblood.domain), {} without one

    @property
    def runtime(self) -> str:
        return self.loaded.runtime

    @property
    def device(self) -> str:
        return self.loaded.device

    @property
    def takes_captures(self) -> bool:
        """A capture variant (model-capture.onnx, openvino/model-capture.xml): whole frames in, framed inside its graph."""
        return bool(getattr(self.loaded, "takes_frames", False))

    def describe(self) -> str:
        if self.takes_captures:
            return (f"{self.path.name} on {self.runtime}/{self.device} (whole captures in, framed inside the graph to "
                    f"{self.input_size} px; {len(self.classes)} classes)")
        return f"{self.path.name} on {self.runtime}/{self.device} ({self.input_size} px input, {len(self.classes)} classes)"

    def check_framing(self, framing: Framing) -> None:
        """A capture variant applies its own framing in the graph: another one cannot be honoured, so it is refused."""
        if self.takes_captures and framing != self.framing:
            raise EdgebloodError(f"{self.path.name} frames each capture inside its graph ({self.framing.describe()}); another framing "
                                 f"({framing.describe()}) needs the plain model: predict with model.onnx or openvino/model.xml instead")


@dataclass
class Prediction:
    """One file's result: either a prediction (``error`` is None) or the reason it failed."""

    file: str
    predicted: str | None = None
    probability: float | None = None
    top_k: list[tuple[str, float]] = field(default_factory=list)
    review: bool = False
    error: str | None = None
    outside: bool | None = None  # unlike the training data (the artifact's domain output); None: the artifact has no check
    domain: tuple[float, float] | None = None  # (feature, image) distance / threshold
    cause: str | None = None  # likely cause when outside: colour, focus, scale or content

    @property
    def status(self) -> str:
        return "error" if self.error else "review" if self.review else "ok"

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "status": self.status,
            "predicted": self.predicted,
            "probability": None if self.probability is None else round(self.probability, 6),
            "review": self.review,
            "top_k": [{"class": c, "probability": round(p, 6)} for c, p in self.top_k],
            "outside": self.outside,
            "domain": None if self.domain is None else {"features": round(self.domain[0], 4), "image": round(self.domain[1], 4)},
            "outside_cause": self.cause,
            "error": self.error,
        }


@dataclass
class PredictionReport:
    """All rows of a batch, the inputs that were skipped before decoding, and how it was run."""

    model: str
    runtime: str
    device: str
    input_size: int
    classes: list[str]
    top_k: int
    reject_below: float | None
    rows: list[Prediction]
    skipped_inputs: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): missing, empty folder
    seconds: float = 0.0
    framing: str = ""  # Framing.describe() of what was applied
    framing_option: str = ""  # its --framing spelling
    warnings: list[str] = field(default_factory=list)  # the collapse guard's lines

    @property
    def n_files(self) -> int:
        return len(self.rows)

    @property
    def n_predicted(self) -> int:
        return sum(r.error is None for r in self.rows)

    @property
    def n_flagged(self) -> int:
        return sum(r.review for r in self.rows)

    @property
    def n_outside(self) -> int | None:
        """Images the domain check put outside the training data; None when the artifact has no check."""
        checked = [r for r in self.rows if r.outside is not None]
        return sum(r.outside for r in checked) if checked else None

    @property
    def n_failed(self) -> int:
        return sum(r.error is not None for r in self.rows)

    def summary(self) -> str:
        flag = f", {self.n_flagged} flagged for review (top probability < {self.reject_below:.2f})" if self.reject_below is not None else ""
        skipped = f"; {len(self.skipped_inputs)} input path(s) skipped" if self.skipped_inputs else ""
        outside = f", {self.n_outside} unlike the training data (domain check)" if self.n_outside is not None else ""
        return (
            f"{self.n_files} files: {self.n_predicted} predicted{flag}{outside}, {self.n_failed} failed{skipped} - "
            f"{self.model} on {self.runtime}/{self.device}, {self.input_size} px, framing {self.framing_option} "
            f"({self.framing}), {self.seconds:.2f} s"
        )

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "runtime": self.runtime,
            "device": self.device,
            "input_size": self.input_size,
            "classes": list(self.classes),
            "top_k": self.top_k,
            "reject_below": self.reject_below,
            "framing": {"option": self.framing_option, "description": self.framing},
            "warnings": list(self.warnings),
            "summary": {
                "files": self.n_files,
                "predicted": self.n_predicted,
                "flagged": self.n_flagged,
                "outside": self.n_outside,
                "failed": self.n_failed,
                "skipped_inputs": len(self.skipped_inputs),
                "seconds": round(self.seconds, 4),
            },
            "predictions": [r.as_dict() for r in self.rows],
            "skipped_inputs": [{"path": p, "reason": why} for p, why in self.skipped_inputs],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2) + "\n"

    def to_csv(self) -> str:
        """One row per file: status, prediction, probability, review flag, top-k as column pairs, error."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        header = ["file", "framing", "status", "predicted", "probability", "review"]
        for i in range(1, self.top_k + 1):
            header += [f"top{i}_class", f"top{i}_probability"]
        writer.writerow(header + ["outside", "outside_cause", "error"])  # outside: the domain check (empty: the artifact has none)
        for r in self.rows:
            row: list[Any] = [r.file, self.framing_option, r.status, r.predicted or "", _fmt(r.probability),
                              "yes" if r.review else "no" if r.error is None else ""]
            for i in range(self.top_k):
                row += [r.top_k[i][0], _fmt(r.top_k[i][1])] if i < len(r.top_k) else ["", ""]
            writer.writerow(row + ["" if r.outside is None else "yes" if r.outside else "no", r.cause or "", r.error or ""])
        return buf.getvalue()


#: What ``open_model`` reads, as ``edgeblood predict --help`` and its errors name it.
ARTIFACT_EXAMPLES = ("model.onnx, openvino/model.xml, model.tflite, model.pte, model.mlpackage on macOS, or a capture variant "
                     "(model-capture.onnx, openvino/model-capture.xml: whole captures in)")


def open_model(path: str | os.PathLike, device: str = "cpu", threads: int | None = None) -> PredictModel:
    """Load any exported artifact (.onnx, OpenVINO .xml, .tflite, .pte, .mlpackage on macOS) or a run directory."""
    from edgeblood.pretrained import resolve
    from edgeblood.runtimes import runtime_for_artifact

    path = resolve(path)  # a pretrained model's name or a path
    if not path.exists():
        raise ModelError(f"model {path} does not exist; pass an exported artifact ({ARTIFACT_EXAMPLES}) or a run directory")
    loaded = runtime_for_artifact(path).load(path, device=device, threads=threads)
    meta = loaded.metadata()
    classes = meta.get("classes")
    if not isinstance(classes, list) or not classes:
        raise ModelError(f"{path} carries no class names in its metadata (not an edgeblood export); re-export it with `edgeblood export RUN`")
    size = meta.get("input_size") or loaded.input_size
    try:
        size = int(size)
    except (TypeError, ValueError):
        raise EdgebloodError(f"{path} has no usable input size in its metadata ({size!r}); re-export it with `edgeblood export RUN`") from None
    framing, recorded = _framing_from_metadata(meta, path)
    if getattr(loaded, "takes_frames", False):  # the graph holds the framing without its JPEG step (exporters/capture.py)
        framing = dataclasses.replace(framing, jpeg_quality=None)
    prior = meta.get("train_class_prior")
    prior = [float(p) for p in prior] if isinstance(prior, list) and len(prior) == len(classes) else []
    try:
        val_conf = float(meta.get("val_mean_confidence") or "nan")
    except (TypeError, ValueError):
        val_conf = float("nan")
    table = meta.get("review_thresholds")
    table = [{"review_rate": float(r), "threshold": float(t), "accepted_accuracy": a} for r, t, a in table] \
        if isinstance(table, list) and all(isinstance(x, list) and len(x) == 3 for x in table) else []
    domain = meta.get("domain")
    return PredictModel(loaded=loaded, path=path, classes=[str(c) for c in classes], input_size=size, framing=framing,
                        framing_recorded=recorded, class_prior=prior, val_confidence=None if val_conf != val_conf else val_conf,
                        review_table=table, domain_info=domain if isinstance(domain, dict) else {})


def _framing_from_metadata(meta: dict, path: Path) -> tuple[Framing, bool]:
    """The artifact's framing; artifacts exported before the framing contract get BloodMNIST's (recorded=False)."""
    try:
        return stored_or_dataset_framing(meta.get("framing"), meta.get("dataset_size") or meta.get("input_size"), meta.get("dataset_variant"))
    except EdgebloodError as exc:
        raise EdgebloodError(f"{path}: its framing metadata is invalid ({exc}); re-export it with `edgeblood export RUN --force`") from None


def predict_files(
    model: PredictModel,
    inputs: Iterable[str | os.PathLike],
    *,
    top_k: int = 3,
    reject_below: float | None = None,
    batch_size: int = DEFAULT_BATCH,
    framing: Framing | None = None,
    progress: Callable[[int], None] | None = None,
) -> PredictionReport:
    """Predict every image under ``inputs``; unreadable files become failed rows, never an abort.

    ``framing``: None applies the model's own (what its training images were cut with).

    Raises ``EdgebloodError`` only when there is nothing to predict (no files at all) or an option is invalid
    (a --framing a capture variant cannot apply included).
    """
    _check_options(model, top_k, reject_below, batch_size)
    skipped: list[tuple[Path, str]] = []
    files = list(iter_image_files(inputs, problems=skipped))
    if not files:
        reasons = "; ".join(why for _, why in skipped) or "no inputs given"
        raise EdgebloodError(f"no images to classify ({reasons})")

    framing = framing or model.framing
    model.check_framing(framing)
    t0 = time.perf_counter()
    rows: list[Prediction] = []
    pending: list[tuple[Prediction, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        classify_batch(model, [row for row, _ in pending], np.stack([img for _, img in pending]), top_k, reject_below)
        if progress is not None:
            progress(len(pending))
        pending.clear()

    for file in files:
        row = Prediction(file=str(file))
        rows.append(row)
        try:
            image = _model_input(model, file, framing)
        except EdgebloodError as exc:
            row.error = str(exc)
            if progress is not None:
                progress(1)
            continue
        if pending and image.shape != pending[0][1].shape:  # capture variants: one frame size per runtime call
            flush()
        pending.append((row, image))
        if len(pending) >= batch_size or sum(img.size for _, img in pending) > FRAME_BATCH_VALUES:
            flush()
    flush()
    option = "model" if framing == model.framing else framing.short()
    warnings = [] if model.framing_recorded else [
        f"{model.path.name} predates the framing contract; assumed BloodMNIST's ({model.framing.describe()}) - re-export it to record it"]
    rescaled_now = option != "model" and is_rescaled(framing)  # an adapted run's own window is not a choice made in this call
    warnings += collapse_warnings(rows, model, option, rescaled=rescaled_now)
    warnings += domain_warnings(rows, model)
    return PredictionReport(
        model=str(model.path), runtime=model.runtime, device=model.device, input_size=model.input_size,
        classes=list(model.classes), top_k=top_k, reject_below=reject_below, rows=rows,
        skipped_inputs=[(str(p), why) for p, why in skipped], seconds=time.perf_counter() - t0,
        framing=framing.describe(), framing_option=option, warnings=warnings,
    )


def _check_options(model: PredictModel, top_k: int, reject_below: float | None, batch_size: int) -> None:
    """The options ``predict_files`` takes, judged before any file is read."""
    if not 1 <= top_k <= len(model.classes):
        raise EdgebloodError(f"--top-k must be between 1 and {len(model.classes)} (the model's class count), got {top_k}")
    if reject_below is not None and not 0.0 <= reject_below <= 1.0:
        raise EdgebloodError(f"--reject-below is a probability between 0 and 1, got {reject_below}")
    if batch_size < 1:
        raise EdgebloodError(f"batch size must be >= 1, got {batch_size}")


def _model_input(model: PredictModel, file: Path, framing: Framing) -> np.ndarray:
    """One file as the model takes it: framed to its input size, or, for a capture variant, the whole frame
    (checked against the graph's window here, so a frame too small fails alone instead of the batch)."""
    if not model.takes_captures:
        return load_image(file, model.input_size, framing=framing)
    rgb = to_rgb_uint8(read_pixels(file), file)
    try:
        framing.square_box(rgb.shape[1], rgb.shape[0])
    except EdgebloodError as exc:
        raise EdgebloodError(f"{file}: {exc}") from None
    return rgb


def classify_batch(model: PredictModel, rows: list[Prediction], batch: np.ndarray, top_k: int, reject_below: float | None) -> None:
    """Fill ``rows`` from their uint8 NHWC ``batch``: probabilities, top-k, review flag and the domain check, the
    probabilities and the domain output from one pass where the runtime allows (LoadedModel.predict_with_domain).
    The one place `predict` and the Python API classify."""
    from edgeblood.runtimes import to_model_input

    x = domain = None
    if model.takes_captures:  # whole frames, framed inside the graph: no domain output
        probs = model.loaded.predict_frames(batch)
    else:
        x = to_model_input(batch)  # once: the model's input and the domain check's pixel statistics
        probs, domain = model.loaded.predict_with_domain(x) if model.loaded.has_domain else (model.loaded.predict(x), None)
    if probs.ndim != 2 or probs.shape[1] != len(model.classes):
        raise EdgebloodError(f"{model.path} returned probabilities shaped {probs.shape} for {len(model.classes)} classes; re-export the model")
    for row, p in zip(rows, probs):
        _fill(row, p, model.classes, top_k, reject_below)
    if domain is not None:
        _check_domain(model, rows, x, domain)


def _check_domain(model: PredictModel, rows: list[Prediction], x: np.ndarray, domain: np.ndarray) -> None:
    """Fill each row's outside flag, scores and cause from the artifact's ``domain`` output for the model input ``x``."""
    from edgeblood.domain.verdict import check_images

    stats = None
    if model.domain_info.get("image_stats"):
        import torch

        from edgeblood.domain.scorer import image_statistics

        stats = image_statistics(torch.from_numpy(x)).numpy()
    check = check_images(domain, stats, model.domain_info)
    for row, scores, out, cause in zip(rows, check.scores, check.outside, check.causes):
        row.domain, row.outside, row.cause = (float(scores[0]), float(scores[1])), bool(out), cause


def domain_warnings(rows: list[Prediction], model: PredictModel) -> list[str]:
    """The folder-level verdict (edgeblood.domain.verdict), or a note that the artifact cannot tell."""
    done = [r for r in rows if r.error is None]
    if not done:
        return []
    if all(r.outside is None for r in done):
        why = "a capture variant" if model.takes_captures else "exported before the domain check or from a model without one"
        return [f"{model.path.name} cannot tell whether these images are like its training data ({why}); "
                "predict with model.onnx / openvino/model.xml / model.tflite of a current export to get the check"]
    from edgeblood.domain.verdict import folder_verdict

    val = model.domain_info.get("val_flagged")
    line = folder_verdict([bool(r.outside) for r in done], [r.cause for r in done], float(val) if val is not None else None)
    return [line] if line else []


def collapse_warnings(rows: list[Prediction], model: PredictModel, framing_option: str, rescaled: bool = False) -> list[str]:
    """One line when a batch looks like wrong framing or wrong input (see the module docstring)."""
    done = [r for r in rows if r.error is None]
    if len(done) < GUARD_MIN_IMAGES:
        return []
    if rescaled:
        fix = ("the window was rescaled to the pixel scale given (--red-cell-px / --um-per-px): check that scale; if it is right, "
               "the stain or camera differs from training: adapt the model to this lab (`edgeblood adapt`)")
    elif framing_option == "model":
        fix = ("check the framing: captures need the model's framing (--framing model), single-cell crops framed like "
               "training images --framing cell-crop")
    else:
        fix = f"the framing '{framing_option}' differs from the model's ({model.framing.short()}); try --framing model"
    out = []
    counts: dict[str, int] = {}
    for r in done:
        counts[r.predicted] = counts.get(r.predicted, 0) + 1
    top_class, top_n = max(counts.items(), key=lambda kv: kv[1])
    share = top_n / len(done)
    prior = model.class_prior[model.classes.index(top_class)] if model.class_prior and top_class in model.classes else None
    if share > COLLAPSE_SHARE and (prior is None or prior < COLLAPSE_PRIOR):
        of_training = f" (it is {100 * prior:.0f} % of the training images)" if prior is not None else ""
        out.append(f"{100 * share:.0f} % of {len(done)} images were predicted '{top_class}'{of_training}: the framing or the input is "
                   f"probably wrong; {fix}")
    mean_conf = sum(r.probability for r in done) / len(done)
    if model.val_confidence is not None and mean_conf < model.val_confidence - CONFIDENCE_GAP:
        out.append(f"mean top probability {mean_conf:.2f} is far below the model's {model.val_confidence:.2f} on its val split: the framing "
                   f"or the input is probably wrong; {fix}")
    return out


def count_files(inputs: Iterable[str | os.PathLike]) -> int:
    """How many files ``predict_files`` will visit (for a progress bar's total)."""
    return sum(1 for _ in iter_image_files(inputs, problems=[]))


def _fill(row: Prediction, probs: np.ndarray, classes: list[str], top_k: int, reject_below: float | None) -> None:
    order = np.argsort(-probs, kind="stable")[:top_k]
    row.top_k = [(classes[i], float(probs[i])) for i in order]
    row.predicted, row.probability = row.top_k[0]
    row.review = reject_below is not None and row.probability < reject_below


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.6f}"
