"""Evaluation plots as PNG files: training curves, confusion matrices, per-class bars, calibration,
a grid of sample predictions, and the Grad-CAM overlays and grids (``edgeblood explain`` / ``evaluate --explain``).

Figures are built with ``matplotlib.figure.Figure`` (Agg canvas) rather than pyplot, so nothing
touches global GUI state and plotting is safe inside training loops and threads. Every file is
written atomically (a reader never sees half a PNG).
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeblood.atomic import atomic_path

if TYPE_CHECKING:
    from edgeblood.evaluation.gradcam import Explanation

DISPLAY_PX = 168  # Grad-CAM overlays are upscaled so a 28 px cell is visible
DPI = 110
ERROR_RED = "#d62728"
CORRECT_GREEN = "#2ca02c"


#: matplotlib's warning for a character its font lacks (CJK run or class names with DejaVu Sans): it is
#: drawn as a box in the PNG, and the warning, once per character and figure, would flood the CLI's output.
MISSING_GLYPH_WARNING = r"Glyph \d+ .*missing from font"


def save_figure(fig, dest: str | os.PathLike) -> Path:
    """Write a matplotlib Figure to ``dest`` as PNG, atomically (the text is drawn here, so glyph warnings are silenced here)."""
    dest = Path(dest)
    with atomic_path(dest, suffix=".png") as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=MISSING_GLYPH_WARNING, category=UserWarning)
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    return dest


def _figure(width: float, height: float, *, grid: bool = False):
    """A Figure; ``grid=True`` for image mosaics, laid out by fixed spacing because constrained
    layout costs ~2.5x the rendering time on grids of many small axes."""
    from matplotlib.figure import Figure

    if grid:
        fig = Figure(figsize=(width, height))
        fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.75 / height, wspace=0.08, hspace=0.45)
        return fig
    return Figure(figsize=(width, height), layout="constrained")


def read_history(path: str | os.PathLike) -> dict[str, list[float]]:
    """history.csv -> {column: values}; empty cells become NaN so gaps show as gaps."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            if key is None:
                continue
            try:
                columns.setdefault(key, []).append(float(value) if value not in (None, "") else math.nan)
            except ValueError:
                columns.setdefault(key, []).append(math.nan)
    return columns


def plot_history(history: str | os.PathLike | dict, dest: str | os.PathLike, title: str = "") -> Path | None:
    """Loss and accuracy per epoch for train and val (and the learning rate when logged).

    Returns None when the history has no epochs yet (nothing worth drawing).
    """
    h = read_history(history) if not isinstance(history, dict) else history
    epochs = h.get("epoch") or list(range(1, 1 + max((len(v) for v in h.values()), default=0)))
    if not epochs:
        return None
    has_lr = bool(h.get("lr")) and not all(math.isnan(v) for v in h["lr"])
    fig = _figure(13 if has_lr else 9, 3.6)
    axes = fig.subplots(1, 3 if has_lr else 2)
    for ax, metric, label in ((axes[0], "loss", "loss"), (axes[1], "acc", "accuracy")):
        for split, style in (("train", "-"), ("val", "-o")):
            values = h.get(f"{split}_{metric}")
            if values:
                ax.plot(epochs[: len(values)], values, style, ms=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    val_acc = h.get("val_acc")
    if val_acc and not all(math.isnan(v) for v in val_acc):
        best = int(np.nanargmax(val_acc))
        for ax in axes[:2]:
            ax.axvline(epochs[best], color="grey", ls="--", lw=1)
        axes[1].annotate(f"best val {val_acc[best]:.4f}\n(epoch {epochs[best]:g})", (epochs[best], val_acc[best]),
                         textcoords="offset points", xytext=(-10, -30), ha="right", fontsize=8)
    if has_lr:
        axes[2].plot(epochs[: len(h["lr"])], h["lr"])
        axes[2].set_title("learning rate")
        axes[2].set_xlabel("epoch")
        axes[2].grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return save_figure(fig, dest)


def plot_confusion(cm, classes: list[str], dest: str | os.PathLike, *, normalize: bool = False, title: str = "") -> Path:
    """Heatmap of counts, or of row-normalised rates (recall on the diagonal) with ``normalize``."""
    cm = np.asarray(cm, dtype=np.float64)
    values = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
    k = len(classes)
    fig = _figure(1.0 + 0.75 * k, 0.6 + 0.65 * k)
    ax = fig.subplots()
    im = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else max(values.max(), 1))
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of true class" if normalize else "images")
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = values.max() / 2
    for t in range(k):
        for p in range(k):
            v = values[t, p]
            if cm[t, p] == 0:
                continue
            text = f"{v:.2f}" if normalize else f"{int(v)}"
            ax.text(p, t, text, ha="center", va="center", fontsize=8, color="white" if v > threshold else "black")
    ax.set_title(title or ("confusion matrix (row-normalised)" if normalize else "confusion matrix (counts)"))
    return save_figure(fig, dest)


def plot_per_class(metrics: dict, dest: str | os.PathLike, title: str = "") -> Path:
    """Precision and recall bars per class, with each class's support under its name."""
    names = list(metrics["per_class"])
    rows = [metrics["per_class"][n] for n in names]
    x = np.arange(len(names))
    fig = _figure(1.2 + 0.9 * len(names), 3.8)
    ax = fig.subplots()
    w = 0.38
    prec = [r["precision"] for r in rows]
    rec = [r["recall"] for r in rows]
    ax.bar(x - w / 2, prec, w, label="precision")
    ax.bar(x + w / 2, rec, w, label="recall (sensitivity)")
    for xi, (p, r) in enumerate(zip(prec, rec)):
        ax.text(xi - w / 2, p + 0.01, f"{p:.2f}", ha="center", fontsize=7)
        ax.text(xi + w / 2, r + 0.01, f"{r:.2f}", ha="center", fontsize=7)
    ax.set_xticks(x, [f"{n}\n(n={r['support']})" for n, r in zip(names, rows)], rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.axhline(metrics["accuracy"], color="grey", ls="--", lw=1, label=f"accuracy {metrics['accuracy']:.3f}")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or "per-class precision and recall")
    return save_figure(fig, dest)


def plot_reliability(metrics: dict, dest: str | os.PathLike, title: str = "") -> Path:
    """Reliability diagram (Guo et al. 2017): accuracy per confidence bin, the gap to the bin's mean
    confidence in red, and the number of images above each bin."""
    rel = metrics["reliability"]
    edges = np.asarray(rel["bin_edges"])
    count = np.asarray(rel["count"])
    centres = (edges[:-1] + edges[1:]) / 2
    fig = _figure(4.6, 4.2)
    ax = fig.subplots()
    filled = count > 0
    width = np.diff(edges)[filled]
    acc = np.asarray(rel["accuracy"])[filled]
    conf = np.asarray(rel["confidence"])[filled]
    ax.bar(centres[filled], acc, width=width, edgecolor="black", alpha=0.75, label="accuracy in bin")
    ax.bar(centres[filled], conf - acc, bottom=acc, width=width, color=ERROR_RED, alpha=0.3, edgecolor=ERROR_RED,
           hatch="//", label="gap to mean confidence")
    for x, a, c, n in zip(centres[filled], acc, conf, count[filled]):
        ax.text(x, max(a, c) + 0.01, str(int(n)), ha="center", fontsize=6, color="dimgrey")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.06)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or f"reliability (ECE {metrics['ece']:.4f}, {metrics['ece_bins']} bins)")
    return save_figure(fig, dest)


def pick_examples(y_true: np.ndarray, y_pred: np.ndarray, n: int, seed: int = 0, error_share: float = 0.5) -> np.ndarray:
    """Indices of ``n`` examples: up to ``error_share`` of them mistakes, the rest correct, class-mixed."""
    rng = np.random.default_rng(seed)
    wrong = np.flatnonzero(y_true != y_pred)
    right = np.flatnonzero(y_true == y_pred)
    n = min(n, len(y_true))
    n_wrong = min(len(wrong), int(round(n * error_share)))
    chosen = list(rng.choice(wrong, n_wrong, replace=False)) if n_wrong else []
    chosen += list(rng.choice(right, min(len(right), n - n_wrong), replace=False)) if len(right) else []
    chosen = np.asarray(chosen, dtype=np.int64)
    return chosen[np.lexsort((chosen, y_true[chosen]))] if len(chosen) else chosen


def plot_sample_predictions(
    images: np.ndarray,
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    dest: str | os.PathLike,
    *,
    n: int = 32,
    seed: int = 0,
    title: str = "",
) -> Path:
    """A grid of images with true and predicted class; mistakes get a red frame and red text."""
    y_pred = probs.argmax(1)
    idx = pick_examples(y_true, y_pred, n, seed)
    cols = 8
    rows = max(1, math.ceil(len(idx) / cols))
    fig = _figure(cols * 1.55, rows * 1.85 + 0.5, grid=True)
    axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)
    for ax in axes:
        ax.axis("off")
    for ax, i in zip(axes, idx):
        ok = y_pred[i] == y_true[i]
        colour = CORRECT_GREEN if ok else ERROR_RED
        ax.imshow(images[i], interpolation="nearest")
        ax.axis("on")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color(colour)
            spine.set_linewidth(1 if ok else 3)
        ax.set_title(f"true {classes[y_true[i]]}\npred {classes[y_pred[i]]} {probs[i, y_pred[i]]:.2f}", fontsize=6.5,
                     color="black" if ok else ERROR_RED)
    n_err = int((y_pred[idx] != y_true[idx]).sum())
    fig.suptitle(title or f"sample predictions ({n_err} of {len(idx)} shown are errors, in red)", fontsize=10)
    return save_figure(fig, dest)


def write_evaluation_plots(
    plots_dir: str | os.PathLike,
    split: str,
    metrics: dict,
    images: np.ndarray,
    y_true: np.ndarray,
    probs: np.ndarray,
    *,
    history: str | os.PathLike | None = None,
    label: str = "",
    run_name: str = "",
) -> list[Path]:
    """All evaluation plots for one split into ``plots_dir``; returns the files written.

    ``label`` (e.g. "se-cnn · test · pytorch cpu") goes into every title so a PNG on its own still
    says what it shows.
    """
    plots_dir = Path(plots_dir)
    classes = metrics["classes"]
    suffix = f"\n{label}" if label else ""
    out = [
        plot_confusion(metrics["confusion_matrix"], classes, plots_dir / f"confusion_{split}.png",
                       title=f"confusion matrix, counts{suffix}"),
        plot_confusion(metrics["confusion_matrix"], classes, plots_dir / f"confusion_{split}_normalized.png", normalize=True,
                       title=f"confusion matrix, row-normalised{suffix}"),
        plot_per_class(metrics, plots_dir / f"per_class_{split}.png", title=f"per-class precision / recall{suffix}"),
        plot_reliability(metrics, plots_dir / f"reliability_{split}.png",
                         title=f"reliability, ECE {metrics['ece']:.4f}{suffix}"),
        plot_sample_predictions(images, y_true, probs, classes, plots_dir / f"samples_{split}.png",
                                title=f"sample predictions, errors in red{suffix}"),
    ]
    if history is not None and Path(history).is_file():
        curves = plot_history(history, plots_dir / "curves.png", title=f"training curves - {run_name}" if run_name else "training curves")
        if curves is not None:
            out.append(curves)
    return out


# ------------------------------------------------------------------------------ Grad-CAM pictures

def overlay(image: np.ndarray, cam: np.ndarray, *, alpha: float = 0.45, size: int = DISPLAY_PX, cmap: str = "jet") -> np.ndarray:
    """The cell image with the Grad-CAM map blended on top, upscaled to ``size`` px (uint8 HxWx3)."""
    import matplotlib
    from PIL import Image

    base = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    import torch
    import torch.nn.functional as F

    heat = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))[None, None]
    heat = F.interpolate(heat, size=(size, size), mode="bilinear", align_corners=False)[0, 0].clamp(0, 1).numpy()
    colour = matplotlib.colormaps[cmap](heat)[..., :3] * 255.0
    return np.clip((1 - alpha) * base + alpha * colour, 0, 255).astype(np.uint8)


def save_overlay(image: np.ndarray, cam: np.ndarray, dest: str | os.PathLike, *, size: int = DISPLAY_PX) -> Path:
    """PNG with the image and its overlay side by side (no text: the file name says what it is)."""
    from PIL import Image

    from edgeblood.atomic import atomic_path

    big = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))
    pair = np.concatenate([big, np.full((size, 4, 3), 255, np.uint8), overlay(image, cam, size=size)], axis=1)
    dest = Path(dest)
    with atomic_path(dest, suffix=".png") as tmp:
        Image.fromarray(pair).save(tmp, format="PNG")
    return dest


def plot_class_grid(
    images: np.ndarray,
    y_true: np.ndarray,
    expl: Explanation,
    classes: list[str],
    cls: int,
    dest: str | os.PathLike,
    *,
    per_side: int = 4,
    seed: int = 0,
    title: str = "",
) -> Path:
    """One class: correctly classified examples (left) and misclassified ones (right), each as
    image + Grad-CAM overlay of the class the model predicted."""
    from edgeblood.evaluation.plots import ERROR_RED, _figure, save_figure

    rng = np.random.default_rng(seed)
    of_class = y_true == cls
    right = np.flatnonzero(of_class & (expl.preds == y_true))
    wrong = np.flatnonzero(of_class & (expl.preds != y_true))
    right = np.sort(rng.choice(right, min(per_side, len(right)), replace=False)) if len(right) else right
    wrong = np.sort(rng.choice(wrong, min(per_side, len(wrong)), replace=False)) if len(wrong) else wrong
    rows = max(1, len(right), len(wrong))
    fig = _figure(8.2, 2.1 * rows + 0.8, grid=True)
    axes = np.asarray(fig.subplots(rows, 4)).reshape(rows, 4)
    for ax in axes.ravel():
        ax.axis("off")
    for col, picked, ok in ((0, right, True), (2, wrong, False)):
        if len(picked) == 0:
            axes[0, col].text(0.5, 0.5, "none" if ok else "no mistakes", ha="center", va="center", transform=axes[0, col].transAxes)
        for r, i in enumerate(picked):
            p = expl.preds[i]
            axes[r, col].imshow(images[i], interpolation="bicubic")
            axes[r, col].set_title("correct" if ok else f"true {classes[cls]}", fontsize=7)
            axes[r, col + 1].imshow(overlay(images[i], expl.cams[i]))
            axes[r, col + 1].set_title(f"pred {classes[p]} {expl.probs[i, p]:.2f}", fontsize=7, color="black" if ok else ERROR_RED)
    n_cls = int(of_class.sum())
    fig.suptitle(
        title or f"Grad-CAM, {classes[cls]}: {len(right)} correct (left) / {len(wrong)} misclassified (right) shown of {n_cls}; layer {expl.layer}",
        fontsize=9,
    )
    return save_figure(fig, dest)


def write_class_grids(
    images: np.ndarray,
    y_true: np.ndarray,
    expl: Explanation,
    classes: list[str],
    out_dir: str | os.PathLike,
    *,
    prefix: str = "gradcam",
    per_side: int = 4,
    label: str = "",
) -> list[Path]:
    """One grid PNG per class present in ``y_true`` (``{prefix}_{class}.png``)."""
    out_dir = Path(out_dir)
    paths = []
    for cls in np.unique(y_true):
        slug = classes[cls].replace(" ", "_")
        title = f"Grad-CAM ({expl.layer}), true class {classes[cls]}: correct left, misclassified right (map of the predicted class)"
        if label:
            title += f"\n{label}"
        paths.append(plot_class_grid(images, y_true, expl, classes, int(cls), out_dir / f"{prefix}_{slug}.png", per_side=per_side, title=title))
    return paths


def plot_overview_grid(
    images: np.ndarray,
    expl: Explanation,
    classes: list[str],
    names: list[str],
    dest: str | os.PathLike,
    *,
    limit: int = 24,
    title: str = "",
) -> Path:
    """Unlabelled images: image and Grad-CAM overlay pairs, titled with file name and prediction."""
    from edgeblood.evaluation.plots import _figure, save_figure

    n = min(len(images), limit)
    pairs_per_row = 3
    rows = max(1, math.ceil(n / pairs_per_row))
    fig = _figure(2.0 * 2 * pairs_per_row, 2.2 * rows + 0.8, grid=True)
    axes = np.asarray(fig.subplots(rows, 2 * pairs_per_row)).reshape(rows, 2 * pairs_per_row)
    for ax in axes.ravel():
        ax.axis("off")
    for k in range(n):
        r, c = divmod(k, pairs_per_row)
        t = expl.targets[k]
        axes[r, 2 * c].imshow(images[k], interpolation="bicubic")
        axes[r, 2 * c].set_title(names[k][:28], fontsize=7)
        axes[r, 2 * c + 1].imshow(overlay(images[k], expl.cams[k]))
        axes[r, 2 * c + 1].set_title(f"{classes[t]} {expl.probs[k, t]:.2f}", fontsize=7)
    more = f" (first {n} of {len(images)})" if len(images) > n else ""
    fig.suptitle(title or f"Grad-CAM, layer {expl.layer}{more}", fontsize=9)
    return save_figure(fig, dest)
