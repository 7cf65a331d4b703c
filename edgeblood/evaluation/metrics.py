"""Classification metrics from labels and probabilities, in plain numpy (no scikit-learn dependency).

Conventions follow scikit-learn so numbers can be compared with published tables:
- macro averages run over the classes that occur in ``y_true`` or in the predictions (sklearn's
  default label set); a class that is never predicted has precision 0 (sklearn's zero_division=0);
- balanced accuracy is the mean recall over classes present in ``y_true``;
- one-vs-rest AUC is the Mann-Whitney statistic with average ranks for ties; the macro AUC averages
  the classes that have both positives and negatives (a class without them has ``auc: null``);
- expected calibration error uses equal-width confidence bins (Guo et al. 2017), (lo, hi] per bin;
- the confusion matrix has true classes as rows and predicted classes as columns.

Everything returned is plain Python (floats, ints, lists, dicts), ready for ``json.dump``.
"""

from __future__ import annotations

import numpy as np

from edgeblood.errors import EdgebloodError

ECE_BINS = 15
TOP_CONFUSIONS = 10
_NLL_EPS = 1e-15


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [num_classes, num_classes]; rows are true classes, columns predicted classes."""
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def accuracy_and_macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None) -> tuple[float, float]:
    """The two headline numbers from hard predictions only (the fast path for bench/compress loops)."""
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if len(y_true) != len(y_pred) or len(y_true) == 0:
        raise EdgebloodError(f"need equally many labels and predictions (got {len(y_true)} and {len(y_pred)}); pass one prediction per image")
    k = int(num_classes or max(y_true.max(), y_pred.max()) + 1)
    cm = confusion_matrix(y_true, y_pred, k)
    _, _, f1, present = _per_class_prf(cm)
    return float(np.trace(cm) / cm.sum()), float(f1[present].mean())


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, class_names: list[str]) -> dict:
    """Every evaluation number edgeblood reports, from true labels [N] and probabilities [N, C]."""
    y_true, probs = _validated(y_true, probs, class_names)
    n, k = probs.shape
    y_pred = probs.argmax(1)
    cm = confusion_matrix(y_true, y_pred, k)
    precision, recall, f1, present = _per_class_prf(cm)
    support = cm.sum(1)
    tp = np.diag(cm)
    fp = cm.sum(0) - tp
    tn = n - support - fp
    specificity = _safe_div(tn, tn + fp)
    auc = [_binary_auc(probs[:, c], y_true == c) for c in range(k)]
    defined_auc = [a for a in auc if a is not None]
    in_true = support > 0
    weights = support / n
    ece, reliability = expected_calibration_error(y_true, probs, ECE_BINS)
    onehot = np.eye(k)[y_true]

    per_class = {
        name: {
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "specificity": float(specificity[c]),
            "f1": float(f1[c]),
            "support": int(support[c]),
            "predicted": int(cm[:, c].sum()),
            "auc": auc[c],
        }
        for c, name in enumerate(class_names)
    }
    return {
        "num_samples": int(n),
        "num_classes": int(k),
        "classes": list(class_names),
        "accuracy": float(tp.sum() / n),
        "balanced_accuracy": float(recall[in_true].mean()),
        "macro_precision": float(precision[present].mean()),
        "macro_recall": float(recall[present].mean()),
        "macro_f1": float(f1[present].mean()),
        "macro_specificity": float(specificity[present].mean()),
        "weighted_precision": float((precision * weights).sum()),
        "weighted_recall": float((recall * weights).sum()),
        "weighted_f1": float((f1 * weights).sum()),
        "macro_auc": float(np.mean(defined_auc)) if defined_auc else None,
        "ece": ece,
        # mean top probability: what `edgeblood predict` compares a batch with to notice wrong framing or input
        "mean_confidence": float(probs.max(1).mean()) if n else None,
        "ece_bins": ECE_BINS,
        "nll": float(-np.log(np.clip(probs[np.arange(n), y_true], _NLL_EPS, 1.0)).mean()),
        "brier": float(((probs - onehot) ** 2).sum(1).mean()),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_axes": "rows = true class, columns = predicted class (order of 'classes')",
        "top_confusions": top_confusions(cm, class_names),
        "reliability": reliability,
    }


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> tuple[float, dict]:
    """ECE over ``bins`` equal-width confidence bins, and the per-bin table for a reliability plot."""
    y_true = np.asarray(y_true).reshape(-1)
    conf = probs.max(1).astype(np.float64)
    correct = (probs.argmax(1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # (lo, hi] bins; a confidence of exactly 0 (impossible after softmax) joins the first bin.
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=bins)
    mean_conf = _safe_div(conf_sum, count)
    mean_acc = _safe_div(acc_sum, count)
    ece = float((np.abs(mean_acc - mean_conf) * count).sum() / max(len(conf), 1))
    table = {
        "bin_edges": edges.tolist(),
        "count": count.astype(int).tolist(),
        "confidence": mean_conf.tolist(),
        "accuracy": mean_acc.tolist(),
    }
    return ece, table


def top_confusions(cm: np.ndarray, class_names: list[str], limit: int = TOP_CONFUSIONS) -> list[dict]:
    """The most frequent (true, predicted) mistakes, largest first, as a share of the true class too."""
    cm = np.asarray(cm)
    rows = cm.sum(1)
    pairs = [(int(cm[t, p]), t, p) for t in range(len(cm)) for p in range(len(cm)) if t != p and cm[t, p] > 0]
    pairs.sort(key=lambda x: (-x[0], x[1], x[2]))
    return [
        {"true": class_names[t], "predicted": class_names[p], "count": c, "fraction_of_true": float(c / rows[t])}
        for c, t, p in pairs[:limit]
    ]


def _per_class_prf(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    tp = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(0), cm.sum(1)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * tp, predicted + support)  # = 2PR/(P+R), and 0 where both are 0
    present = (support > 0) | (predicted > 0)
    return precision, recall, f1, present


def _binary_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve = P(score of a positive > score of a negative), ties count half."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = average_ranks(scores.astype(np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (scipy.stats.rankdata 'average')."""
    order = np.argsort(x, kind="mergesort")
    _, inverse, counts = np.unique(x[order], return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    avg = ends - (counts - 1) / 2.0
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = avg[inverse]
    return ranks


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b != 0)


def _validated(y_true: np.ndarray, probs: np.ndarray, class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64)
    k = len(class_names)
    if probs.ndim != 2 or probs.shape[1] != k:
        raise EdgebloodError(f"expected probabilities of shape (N, {k}) for {k} classes, got {probs.shape}; the model's outputs do not match its class list")
    if len(y_true) != len(probs) or len(y_true) == 0:
        raise EdgebloodError(f"need one probability row per label (got {len(probs)} rows for {len(y_true)} labels); evaluate on a non-empty split")
    if not np.all(np.isfinite(probs)):
        raise EdgebloodError("the model produced NaN/inf probabilities; the weights or the export are broken - re-train or re-export")
    sums = probs.sum(1)
    # Loose bounds: int8/fp16 runtimes round probabilities; logits (the usual mistake) are far off.
    if probs.min() < -1e-3 or np.abs(sums - 1.0).max() > 0.05:
        raise EdgebloodError(
            f"expected probabilities (rows summing to 1, none negative), got rows summing to {sums.min():.3g}..{sums.max():.3g}; "
            "apply softmax to the model's logits first"
        )
    if y_true.dtype.kind not in "iu" or y_true.min() < 0 or y_true.max() >= k:
        raise EdgebloodError(f"labels must be integers 0..{k - 1}; got {y_true.dtype} in [{y_true.min()}, {y_true.max()}]")
    return y_true.astype(np.int64), probs


def format_metrics_table(metrics: dict, title: str | None = None):
    """A compact rich Table, one row per class, and the headline numbers on one line under it.

    The title and the headline are lines of their own, not the table's title and caption: those wrap at
    the table's width, which split "NLL 0.1157" and a long image-folder title over two lines in logs.
    """
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("class", no_wrap=True)
    for col in ("support", "precision", "recall", "specificity", "F1", "AUC"):
        table.add_column(col, justify="right")
    for name, row in metrics["per_class"].items():
        weak = row["support"] > 0 and row["recall"] < 0.8
        table.add_row(
            f"[red]{name}[/]" if weak else name,
            str(row["support"]),
            _pct(row["precision"]),
            _pct(row["recall"]),
            _pct(row["specificity"]),
            _pct(row["f1"]),
            "-" if row["auc"] is None else f"{row['auc']:.4f}",
        )
    table.add_section()
    table.add_row(
        "[bold]macro[/]", str(metrics["num_samples"]), _pct(metrics["macro_precision"]), _pct(metrics["macro_recall"]),
        _pct(metrics["macro_specificity"]), _pct(metrics["macro_f1"]),
        "-" if metrics["macro_auc"] is None else f"{metrics['macro_auc']:.4f}",
    )
    table.add_row(
        "[bold]weighted[/]", "", _pct(metrics["weighted_precision"]), _pct(metrics["weighted_recall"]), "", _pct(metrics["weighted_f1"]), ""
    )
    headline = Text.from_markup(
        f"accuracy [bold]{_pct(metrics['accuracy'])}[/]  balanced accuracy {_pct(metrics['balanced_accuracy'])}  "
        f"macro F1 {_pct(metrics['macro_f1'])}  ECE({metrics['ece_bins']} bins) {metrics['ece']:.4f}  NLL {metrics['nll']:.4f}",
        overflow="fold",
    )
    return Group(*([Text(title, style="italic", overflow="fold")] if title else []), table, headline)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"
