"""Fitting a run's domain profile: what its training inputs look like, and where "outside" begins.

The profile is fitted on the train split (features and pixel statistics of the images the model
learnt from, without augmentation) and its thresholds on the val split, a held-in set of the same
lab the model never trained on, at the quantile that flags ``flag_rate`` of it. Each of the two
scores gets half of that share, so together they flag at most ``flag_rate`` of in-domain images.

The tensors live in ``domain.pt`` beside the checkpoint (plain tensors, loaded with
``weights_only=True``); run.json's ``domain`` section has the thresholds, the image statistics'
means and spreads (an app or a person can read them), and the flagged shares measured on val.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeblood.atomic import atomic_path
from edgeblood.domain.scorer import IMAGE_STATS, SCORES, STAT_GROUP, DomainScorer, HeadSplit, image_statistics, nearest_mean_distance, split_at_head
from edgeblood.errors import EdgebloodError

DOMAIN_FILE = "domain.pt"
DEFAULT_FLAG_RATE = 0.04  # 0.05 flagged 5.2 % of the val captures of a 28 px se-cnn (4.8 % of val): a margin under 5 %
#: Principal components of the penultimate features kept for the Mahalanobis distance.
MAX_COMPONENTS = 64
#: Ridge added to the covariance, as a share of its mean eigenvalue (keeps tiny directions from dominating).
RIDGE = 1e-3


def extract(split: HeadSplit, images: np.ndarray, mean: list[float], std: list[float], batch_size: int = 512,
            progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features [N, D], image statistics [N, 8], probabilities [N, C]) for uint8 NHWC ``images``."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    feats, stats, probs = [], [], []
    split = split.eval()
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            raw = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size])).permute(0, 3, 1, 2).float()
            logits, f = split((raw / 255.0 - m) / s)
            feats.append(f.float().numpy())
            stats.append(image_statistics(raw).numpy())
            probs.append(torch.softmax(logits.float(), 1).numpy())
            if progress:
                progress(len(raw))
    return np.concatenate(feats), np.concatenate(stats), np.concatenate(probs)


def whitening(x: np.ndarray, groups: np.ndarray, max_components: int) -> tuple[np.ndarray, np.ndarray]:
    """(group means [G, D], whitening [K, D]) of the covariance shared by the groups, in its top K
    principal directions, ridge-regularised."""
    x = x.astype(np.float64)
    labels = np.unique(groups)
    means = np.stack([x[groups == g].mean(0) for g in labels])
    centred = x - means[np.searchsorted(labels, groups)]
    cov = centred.T @ centred / max(len(x) - len(labels), 1)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1][:max_components]
    ridge = RIDGE * max(float(values.mean()), 1e-12)
    whiten = vectors[:, order].T / np.sqrt(values[order] + ridge)[:, None]
    return means, whiten


def _distance(x: np.ndarray, means: np.ndarray, whiten: np.ndarray) -> np.ndarray:
    """The graph's own distance (scorer.nearest_mean_distance), in float64, so thresholds match what apps compute."""
    return nearest_mean_distance(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(means), torch.from_numpy(whiten)).numpy()


def fit_profile(model: torch.nn.Module, num_classes: int, mean: list[float], std: list[float], train: tuple[np.ndarray, np.ndarray | None],
                val_images: np.ndarray, *, flag_rate: float = DEFAULT_FLAG_RATE, max_train: int = 20000,
                progress: Callable[[int], None] | None = None, seed: int = 0) -> tuple[DomainScorer, dict[str, Any]]:
    """The profile of ``model`` (trained on ``train`` = (images, labels)), thresholds from ``val_images``.

    ``train`` labels only group the features into classes for the nearest-class-mean distance; None
    (``edgeblood adapt``: unlabelled images) groups them by the model's own predictions.
    """
    split = split_at_head(model, num_classes)
    if split is None:
        raise EdgebloodError(f"{type(model).__name__}: its classifier head is not its last operation, so its features cannot be scored")
    if not 0 < flag_rate < 0.5:
        raise EdgebloodError(f"the domain check's flag rate is the share of in-domain images flagged, in (0, 0.5); got {flag_rate}")
    images, labels = train
    if len(images) > max_train:
        keep = np.sort(np.random.default_rng(seed).choice(len(images), max_train, replace=False))
        images, labels = images[keep], None if labels is None else labels[keep]
    if len(images) < 20 or len(val_images) < 10:
        raise EdgebloodError(f"the domain profile needs at least 20 train and 10 val images, got {len(images)} and {len(val_images)}")
    f_train, s_train, p_train = extract(split, images, mean, std, progress=progress)
    f_val, s_val, _ = extract(split, val_images, mean, std, progress=progress)
    labels = p_train.argmax(1) if labels is None else np.asarray(labels).reshape(-1)
    f_means, f_whiten = whitening(f_train, labels, min(MAX_COMPONENTS, f_train.shape[1]))
    s_means, s_whiten = whitening(s_train, np.zeros(len(s_train), int), s_train.shape[1])
    raw_val = np.stack([_distance(f_val, f_means, f_whiten), _distance(s_val, s_means, s_whiten)], 1)
    thresholds = np.quantile(raw_val, 1 - flag_rate / 2, axis=0)
    scorer = DomainScorer(torch.from_numpy(f_means), torch.from_numpy(f_whiten), torch.from_numpy(s_means),
                          torch.from_numpy(s_whiten), torch.from_numpy(thresholds))
    flagged = raw_val / thresholds
    summary = {
        "method": ("Mahalanobis distance to the nearest class mean of the penultimate features (shared covariance, top "
                   f"{f_whiten.shape[0]} principal components) and of 8 pixel statistics; each divided by its threshold"),
        "scores": list(SCORES),
        "output": "domain: [N, 2] float32 = (features, image) distance / threshold; an image is outside when either is > 1",
        "flag_rate_target": flag_rate,
        "thresholds": {"features": float(thresholds[0]), "image": float(thresholds[1])},
        "fitted_on": {"profile": f"train ({len(images)} images)", "thresholds": f"val ({len(val_images)} images)"},
        "val_flagged": float((flagged > 1).any(1).mean()),
        "image_stats": {"names": list(IMAGE_STATS), "groups": [STAT_GROUP[n] for n in IMAGE_STATS],
                        "mean": s_train.mean(0).round(6).tolist(), "std": s_train.std(0).round(6).tolist()},
        "feature_dim": int(f_train.shape[1]),
    }
    return scorer, summary


def save_profile(run_dir: str | os.PathLike, scorer: DomainScorer) -> Path:
    """Write domain.pt atomically (plain tensors)."""
    path = Path(run_dir) / DOMAIN_FILE
    with atomic_path(path) as tmp:
        torch.save({k: v.detach().cpu().clone() for k, v in scorer.state_dict().items()}, tmp)
    return path


def load_profile(run_dir: str | os.PathLike) -> DomainScorer | None:
    """The run's DomainScorer, None when it has no profile; a damaged file is one clear error."""
    path = Path(run_dir) / DOMAIN_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return DomainScorer.from_state(state)
    except Exception as exc:
        raise EdgebloodError(f"{path} is not a valid domain profile ({type(exc).__name__}); refit it with "
                             "`edgeblood evaluate RUN --calibrate` or delete the file") from None


def fit_run_profile(run, data, *, flag_rate: float = DEFAULT_FLAG_RATE, progress: Callable[[int], None] | None = None) -> dict[str, Any] | None:
    """Fit ``run``'s profile on ``data`` (its train split; thresholds on val), write domain.pt and the
    run.json ``domain`` section; returns the summary, or None for a model whose features cannot be scored."""
    from dataclasses import replace

    if split_at_head(run.model, len(run.classes)) is None or len(data.labels("train")) < 20 or len(data.labels("val")) < 10:
        return None
    scorer, summary = fit_profile(run.model, len(run.classes), run.mean, run.std, (data.images("train"), data.labels("train")),
                                  data.images("val"), flag_rate=flag_rate, progress=progress)
    save_profile(run.dir, scorer)
    run.meta = replace(run.meta, domain=summary)
    run.save()
    return summary
