"""``edgeblood adapt``: fit a trained run to another lab's images without a single label.

Three things can be re-estimated from a lab's unlabelled captures, and each is written into a new run
whose exports carry it (nothing for an app to re-implement):

* **pixel scale** - the capture window that covers the same area of the smear as training did
  (edgeblood.pixel_scale: given as --red-cell-px / --um-per-px, or estimated from the images);
* **colour** - the input normalisation baked into every graph is set to the lab's per-channel mean and
  spread, so the lab's pixels reach the first layer with the first two moments the training pixels had
  (a per-channel colour standardisation at zero run-time cost);
* **BatchNorm statistics** - re-estimated on the lab's images (AdaBN, Li et al. 2016): the layers'
  running means and variances become the lab's, with every learnt weight unchanged.

The new run's domain profile is refitted on the lab's images (pseudo-labels group the features), with
thresholds on a held-out fifth of them, so its check answers "is this like *this lab's* images".
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from edgeblood.domain.profile import DEFAULT_FLAG_RATE, fit_profile, save_profile
from edgeblood.errors import EdgebloodError
from edgeblood.framing import Framing

MIN_IMAGES = 30
HELD_OUT_SHARE = 0.2


def lab_statistics(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 NHWC images on 0-1 pixels (the contract's units)."""
    x = images.reshape(-1, 3).astype(np.float64) / 255.0
    return x.mean(0).round(6).tolist(), np.maximum(x.std(0), 1e-3).round(6).tolist()


def reestimate_batchnorm(model: nn.Module, images: np.ndarray, mean: Sequence[float], std: Sequence[float], *, batch_size: int = 128,
                         passes: int = 2, progress: Callable[[int], None] | None = None) -> int:
    """AdaBN: reset every BatchNorm's running statistics and re-estimate them (cumulative average) on
    ``images`` under the 8 rot90/flip views (cells have no orientation; more samples per statistic).
    Returns the number of BatchNorm layers re-estimated; weights are untouched."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    saved = {m: m.momentum for m in norms}
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts equally
    model.eval()
    for m in norms:
        m.train()
    m_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for _ in range(passes):
            order = rng.permutation(len(images))
            for i in range(0, len(order), batch_size):
                batch = images[np.sort(order[i:i + batch_size])]
                x = (torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255.0 - m_t) / s_t
                for k in range(8):  # the 8 rot90/flip views
                    view = torch.rot90(x, k % 4, dims=(-2, -1))
                    model(view.flip(-1) if k >= 4 else view)
                if progress:
                    progress(len(batch))
    for m in norms:
        m.momentum = saved[m]
    model.eval()
    return len(norms)


def split_held_out(n: int, share: float = HELD_OUT_SHARE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(adaptation indices, held-out indices): the held-out share sets the domain thresholds."""
    order = np.random.default_rng(seed).permutation(n)
    k = max(10, int(round(n * share)))
    return np.sort(order[k:]), np.sort(order[:k])


def adapt_run(run, images: np.ndarray, files: Sequence[Path], *, framing: Framing, out_dir: Path, colour: bool = True,
              batchnorm: bool = True, scale_note: dict[str, Any] | None = None, progress: Callable[[int], None] | None = None) -> dict:
    """Write the adapted copy of ``run`` to ``out_dir``; returns the adaptation record (also in its run.json)."""
    from edgeblood.runs import save_checkpoint

    if len(images) < MIN_IMAGES:
        raise EdgebloodError(f"adapt needs at least {MIN_IMAGES} readable images of the lab, got {len(images)}; "
                             "point --images at a folder of the lab's captures")
    model = run.model
    fit_idx, held_idx = split_held_out(len(images))
    mean, std = (lab_statistics(images[fit_idx]) if colour else (list(run.mean), list(run.std)))
    n_bn = reestimate_batchnorm(model, images[fit_idx], mean, std, progress=progress) if batchnorm else 0
    scorer, summary = fit_profile(model, len(run.classes), mean, std, (images[fit_idx], None), images[held_idx],
                                  flag_rate=DEFAULT_FLAG_RATE)
    summary["fitted_on"] = {"profile": f"{len(fit_idx)} unlabelled images of the lab (pseudo-labels)",
                            "thresholds": f"{len(held_idx)} held-out images of the lab"}
    record = {
        "method": "unlabelled adaptation: " + ", ".join(
            p for p, on in (("pixel scale (framing window)", scale_note is not None), ("colour (input mean/std = the lab's)", colour),
                            (f"BatchNorm statistics re-estimated (AdaBN, {n_bn} layers, 8 views, 2 passes)", batchnorm)) if on),
        "parent": str(run.dir),
        "images": len(images),
        "images_used": len(fit_idx),
        "held_out": len(held_idx),
        "folder_digest": hashlib.sha256("\n".join(sorted(os.path.basename(str(f)) for f in files)).encode()).hexdigest()[:16],
        "colour": colour,
        "batchnorm_layers": n_bn,
        "framing": framing.to_dict(),
        "pixel_scale": scale_note,
        "parent_mean": list(run.mean),
        "parent_std": list(run.std),
    }
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    meta = run.meta
    inp = replace(meta.input, mean=tuple(mean), std=tuple(std), framing=framing, framing_recorded=True,
                  normalisation="(x / 255 - mean) / std, mean/std of the lab's images (edgeblood adapt)" if colour else meta.input.normalisation)
    extra = dict(meta.extra)
    extra["adaptation"] = record
    new_meta = replace(meta, input=inp, domain=summary, metrics={}, extra=extra)
    save_checkpoint(tmp, model, new_meta)
    save_profile(tmp, scorer)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return record
