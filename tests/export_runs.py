"""Tiny run directories for the export/runtime tests (used until/besides conftest's ``sample_run``).

A small se-cnn trained for a few steps on the embedded sample: enough to give non-trivial,
input-dependent probabilities, so parity checks compare something real, in about a second.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from edgeblood.data.batches import Normalizer, channel_stats, to_tensor_nchw
from edgeblood.data.bloodmnist import load_sample
from edgeblood.info import CLASS_NAMES, CREDIT, LICENSE, SHORT_CLASS_NAMES
from edgeblood.models import count_macs, count_params, create
from edgeblood.runs import save_checkpoint

TINY_CONFIG = {"widths": [8, 16, 32, 32]}


def make_tiny_run(run_dir: Path, *, seed: int = 0, steps: int = 25) -> Path:
    """Train se-cnn (narrow widths) for ``steps`` Adam steps on the sample and save a run directory."""
    data = load_sample(28)
    torch.manual_seed(seed)
    model = create("se-cnn", in_size=28, **TINY_CONFIG)
    mean, std = channel_stats(data.images("train"))
    x_all = to_tensor_nchw(data.images("train")).float().div_(255.0)
    x_all = Normalizer(mean, std)(x_all)
    y_all = torch.from_numpy(data.labels("train"))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x_all), (64,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x_all[idx]), y_all[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        xt = Normalizer(mean, std)(to_tensor_nchw(data.images("test")).float().div_(255.0))
        acc = (model(xt).argmax(1).numpy() == data.labels("test")).mean()
    metadata = {
        "model": {"name": "se-cnn", "config": model.edgeblood_config, "params": count_params(model), "macs": count_macs(model, 28)},
        "classes": list(SHORT_CLASS_NAMES),
        "class_names_full": list(CLASS_NAMES),
        "input": {"size": 28, "channels": 3, "channel_order": "RGB", "layout": "NCHW", "dtype": "float32", "range": [0, 255], "mean": mean, "std": std},
        "dataset": data.metadata(),
        "training": {"command": "tests/export_runs.py", "seed": seed, "steps": steps},
        "metrics": {"test": {"accuracy": float(acc)}},
        "license": LICENSE,
        "credit": CREDIT,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(run_dir, model, metadata)
    return run_dir


def copy_run(src: Path, dst: Path) -> Path:
    """A private copy (checkpoint + run.json only) so tests can export into it freely."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("checkpoint.pt", "run.json"):
        shutil.copy2(Path(src) / name, dst / name)
    return dst
