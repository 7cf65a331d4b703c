"""Knowledge distillation from a trained edgeblood run (``edgeblood train --teacher runs/<name>``).

The teacher may be trained at a larger input size than the student: the BloodMNIST files of every
size hold the same samples in the same order, so the teacher labels sample *i* of the student's
train split from its own, sharper copy of sample *i* (a 64 px teacher for a 28 px student is the
intended use). The teacher's logits are computed once, averaged over the 8 rotations/flips of each
image (cells have no orientation, so the average is a better-calibrated target than one view), and
looked up by sample index during training - the teacher never runs inside the training loop, so
distillation costs 8 passes over the train split once per teacher (measured: ~6 min for a 64 px SE-CNN
on one busy CPU core); later students and seeds read the cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgeblood.atomic import atomic_path
from edgeblood.data import load_bloodmnist
from edgeblood.errors import EdgebloodError
from edgeblood.evaluation.predict import TTA_VIEWS, predict_logits
from edgeblood.runs import open_run


def cache_path(teacher_dir: Path, data_md5: str | None) -> Path:
    """One cache file per data file (named by its MD5) in the teacher's run directory, so a student on the
    embedded sample and one on the full data do not overwrite each other's teacher logits."""
    return Path(teacher_dir) / f"teacher_logits-{data_md5[:12] if data_md5 else 'unhashed'}.pt"


def teacher_logits(
    teacher_dir: str | os.PathLike,
    student_labels: np.ndarray,
    student_classes: list[str],
    *,
    data_dir: str | os.PathLike | None = None,
    sample: bool = False,
    download: bool = False,
    device: str | torch.device = "cpu",
    progress=None,
) -> tuple[torch.Tensor, dict]:
    """Dihedral-averaged logits [N, C] of the teacher on the train split, aligned with the student's.

    Returns (logits, description); fails with one line when the teacher is not a BloodMNIST run,
    has other classes, or its data does not hold the student's samples in the same order.
    """
    teacher = open_run(teacher_dir)
    if list(teacher.classes) != list(student_classes):
        raise EdgebloodError(f"teacher {teacher.name} predicts {teacher.classes}, not the student's classes; pick a BloodMNIST run as --teacher")
    trained_on = teacher.meta.dataset.source or "full"
    if trained_on == "sample" and not sample:
        raise EdgebloodError(f"teacher {teacher.name} was trained on the embedded sample; distil from a run trained on the full data")
    data = load_bloodmnist(teacher.in_size, data_dir, sample=sample, download=download)
    labels = data.labels("train")
    if len(labels) != len(student_labels) or not np.array_equal(labels, student_labels):
        raise EdgebloodError(
            f"the {teacher.in_size} px train split does not list the student's samples in the same order "
            f"({len(labels)} vs {len(student_labels)} images); the teacher needs the matching BloodMNIST file of its size"
        )
    logits, fingerprint = _cached_logits(teacher, data, device, progress)
    teacher_acc = float((logits.argmax(1) == labels).mean())
    info = {"run": str(Path(teacher.dir).resolve()), "weights_sha256": fingerprint, "model": teacher.model_name, "in_size": teacher.in_size,
            "params": teacher.meta.model.params,
            "test_accuracy": teacher.meta.metric("test", "accuracy"),
            "train_accuracy_tta": round(teacher_acc, 6), "views": TTA_VIEWS}
    return torch.from_numpy(logits), info


def _cached_logits(teacher, data, device, progress) -> tuple[np.ndarray, str]:
    """The teacher's train-split logits, cached in the teacher's run directory (seeds and students reuse them).

    The cache is keyed by the teacher's weight fingerprint and the data file's MD5, so retraining the
    teacher or swapping the data invalidates it; a read-only teacher directory just skips caching.
    """
    from edgeblood.evaluation.evaluate import weights_fingerprint

    model = teacher.model
    key = {"weights_sha256": weights_fingerprint(model), "data_md5": str(data.md5), "views": TTA_VIEWS}
    path = cache_path(teacher.dir, data.md5)
    if path.is_file():
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
            if cached.get("key") == key and cached["logits"].shape[0] == len(data.labels("train")):
                if progress is not None:
                    progress(len(data.labels("train")))
                return cached["logits"].numpy(), key["weights_sha256"]
        except Exception:  # an unreadable cache is recomputed, never trusted
            pass
    logits = predict_logits(model, data.images("train"), teacher.mean, teacher.std, device=device, tta=True, progress=progress)
    try:
        with atomic_path(path) as tmp:
            torch.save({"key": key, "logits": torch.from_numpy(logits)}, tmp)
    except (OSError, RuntimeError):  # read-only or full disk: caching is an optimisation only
        pass
    return logits, key["weights_sha256"]


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s soft-target term: T^2 * KL(softmax(t / T) || softmax(s / T)), mean over the batch.

    The T^2 factor keeps its gradient on the scale of the hard-label loss, so ``--kd-alpha`` means
    the same thing at every temperature.
    """
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)
