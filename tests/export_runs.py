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
    """A private copy (checkpoint, run.json and the domain profile) so tests can export into it freely."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("checkpoint.pt", "run.json", "domain.pt"):  # domain.pt: the domain profile, where the run has one
        if (Path(src) / name).exists():
            shutil.copy2(Path(src) / name, dst / name)
    return dst


_EXPORTS: dict[str, object] = {}


def exported_once(run_dir: Path, workdir: Path):
    """``edgeblood export COPY --target all --precision fp32,fp16 --parity-images 64`` through the CLI, on a
    private copy of ``run_dir``, once per session however many test files ask. Returns the ExportReport
    rebuilt from manifest.json, with the command's printed output in ``report.notes[0]``."""
    from typer.testing import CliRunner

    from edgeblood.cli import app
    from edgeblood.exporters.run_export import ExportReport
    from edgeblood.manifest import load_manifest

    key = str(run_dir)
    if key not in _EXPORTS:
        run_copy = copy_run(run_dir, Path(workdir) / "exported-run")
        result = CliRunner().invoke(app, ["export", str(run_copy), "--target", "all", "--precision", "fp32,fp16", "--parity-images", "64"])
        if result.exit_code != 0:
            raise RuntimeError(f"edgeblood export failed: {result.output}") from result.exception
        export_dir = run_copy / "export"
        _EXPORTS[key] = ExportReport(run_copy, export_dir, load_manifest(export_dir)["artifacts"], notes=[result.output])
    return _EXPORTS[key]


def perturbed_copy(run_dir: Path, dst: Path, seed: int = 1) -> Path:
    """A copy of ``run_dir`` whose weights are re-drawn: the same architecture and metadata, a different model."""
    from edgeblood.runs import open_run, save_checkpoint

    dst = copy_run(run_dir, dst)
    run = open_run(dst)
    model = run.model
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * p.std().clamp(min=1e-3))
    save_checkpoint(dst, model, run.metadata)
    return dst
