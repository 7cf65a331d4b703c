"""Artifacts exported once per test session from a run trained briefly on the embedded sample.

Shared by test_predict.py and test_examples.py through a plain module-level cache, so the ONNX
export (~10 s, torch.export) runs once however many test files use it. The export goes through
``export_run`` - the code behind ``edgeblood export`` - on a private copy of the run, so the
artifacts are exactly what users get (parity-checked, in manifest.json, with MODEL_CARD.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgeblood.data.bloodmnist import load_sample

_CACHE: dict[str, dict] = {}


def sample_images() -> tuple[np.ndarray, np.ndarray]:
    """Two test-split images per class (uint8 NHWC, 28 px) and their labels."""
    data = load_sample(28)
    x, y = data.images("test"), data.labels("test")
    idx = np.concatenate([np.flatnonzero(y == c)[:2] for c in range(8)])
    return x[idx], y[idx]


def write_pngs(folder: Path) -> list[Path]:
    """The sample images as lossless PNG files: predictions on them must equal the arrays'."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    images, labels = sample_images()
    paths = []
    for i, (img, label) in enumerate(zip(images, labels)):
        path = folder / f"cell_{i:02d}_class{label}.png"
        Image.fromarray(img).save(path)
        paths.append(path)
    return paths


def exported(run_dir: Path, work_dir: Path, targets: tuple[str, ...] = ("onnx",)) -> dict[str, Path]:
    """Export (a copy of) ``run_dir`` once per session; {"run": copy, target name: its fp32 artifact, ...}.

    A target that converts another one's artifact (OpenVINO from ONNX) brings that one along.
    """
    from edgeblood.exporters.run_export import export_run
    from edgeblood.targets import get_target

    entry = _CACHE.setdefault(str(run_dir), {})
    if "run" not in entry:
        copy = work_dir / "exported_run"
        shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("export"))
        entry["run"] = copy
    wanted = set(targets) | {get_target(t).source for t in targets if get_target(t).source}
    missing = sorted(t for t in wanted if t not in entry)
    if missing:
        export_run(entry["run"], missing, ["fp32"], simplify=False)
        for target in missing:
            entry[target] = entry["run"] / "export" / get_target(target).fp32_path
    return entry
