"""Grad-CAM for a user's own image files (`edgeblood explain RUN IMAGES...`).

Images are read exactly as `edgeblood predict` reads them (edgeblood.imageio with the run's framing,
or the one the caller chooses). For each image one PNG (image | overlay) is written;
when the images sit in folders named after classes (``basophil/``, ``platelet/``, ...) the true
class is known and a grid per class puts correct and misclassified examples side by side,
otherwise one overview grid is written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeblood.data.labelled_images import class_lookup, normalise_class_name
from edgeblood.errors import EdgebloodError
from edgeblood.runs import Run, open_run


@dataclass
class ExplainResult:
    run: Run
    files: list[Path]
    probs: np.ndarray
    targets: np.ndarray  # class each map explains
    layer: str
    on_cell: np.ndarray  # share of each map's mass on the stained cell (NaN: empty map)
    overlays: list[Path]
    grids: list[Path]
    labels: np.ndarray | None  # true classes from folder names, when every folder is a class name
    out_dir: Path
    device: str = "cpu"
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    framing: str = ""  # Framing.describe() of what was applied

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(1)


def explain_images(
    run_dir: str | os.PathLike | Run,
    inputs: Iterable[str | os.PathLike],
    *,
    out_dir: str | os.PathLike | None = None,
    layer: str | None = None,
    target: str | None = None,
    device: str = "cpu",
    framing=None,
    per_side: int = 4,
    progress: Callable[[int], None] | None = None,
) -> ExplainResult:
    """Grad-CAM overlays and grids for image files/folders; bad files are skipped and reported.

    ``target``: explain this class (short or full name) for every image instead of the prediction.
    ``out_dir`` defaults to RUN/plots/explain. ``framing`` (an ``edgeblood.framing.Framing``)
    defaults to the run's own.
    """
    from edgeblood.evaluation.gradcam import explain
    from edgeblood.evaluation.gradcam_checks import cell_mask, mass_on_mask
    from edgeblood.evaluation.plots import plot_overview_grid, save_overlay, write_class_grids
    from edgeblood.imageio import iter_image_files, load_image

    run = run_dir if isinstance(run_dir, Run) else open_run(run_dir)
    framing = framing or run.framing
    out = Path(out_dir) if out_dir is not None else run.plots_dir / "explain"
    skipped: list[tuple[Path, str]] = []
    files, images = [], []
    for path in iter_image_files(inputs, problems=skipped):
        try:
            images.append(load_image(path, run.in_size, framing=framing))
            files.append(path)
        except EdgebloodError as exc:
            skipped.append((path, str(exc)))
    if not images:
        why = "; ".join(msg for _, msg in skipped[:3])
        raise EdgebloodError(f"no readable images to explain{f' ({why})' if why else ''}; pass image files or folders of them")
    batch = np.stack(images)

    targets = None
    if target is not None:
        targets = np.full(len(batch), _class_index(target, run), dtype=np.int64)
    from edgeblood.devices import resolve_device

    device = str(resolve_device(device))
    expl = explain(run.model, batch, run.mean, run.std, targets=targets, layer=layer, device=device)
    run.model.cpu()
    on_cell = mass_on_mask(expl.cams, cell_mask(batch))

    overlays = []
    used: set[str] = set()
    for i, path in enumerate(files):
        stem = _unique(re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem), used)
        overlays.append(save_overlay(batch[i], expl.cams[i], out / f"{stem}_gradcam_{run.classes[expl.targets[i]].replace(' ', '_')}.png"))
        if progress is not None:
            progress(1)

    labels = folder_labels(files, run)
    label = f"{run.name} ({run.model_name}) · {len(files)} images · pytorch {device}"
    if labels is not None:
        grids = write_class_grids(batch, labels, expl, run.classes, out, prefix="gradcam", per_side=per_side, label=label)
    else:
        grids = [plot_overview_grid(batch, expl, run.classes, [p.name for p in files], out / "gradcam_overview.png",
                                    title=f"Grad-CAM ({expl.layer}) of {'class ' + target if target else 'the predicted class'}\n{label}")]
    return ExplainResult(run=run, files=files, probs=expl.probs, targets=expl.targets, layer=expl.layer, on_cell=on_cell,
                         overlays=overlays, grids=grids, labels=labels, out_dir=out, device=device, skipped=skipped,
                         framing=framing.describe())


def folder_labels(files: list[Path], run: Run) -> np.ndarray | None:
    """True classes from parent-folder names (e.g. ``cells/platelet/x.png``) when every file has one."""
    lookup = _name_lookup(run)
    labels = [lookup.get(normalise_class_name(p.parent.name)) for p in files]
    return None if any(lbl is None for lbl in labels) else np.asarray(labels, dtype=np.int64)


def _class_index(name: str, run: Run) -> int:
    idx = _name_lookup(run).get(normalise_class_name(name))
    if idx is None:
        raise EdgebloodError(f"unknown class '{name}'; use one of: {', '.join(run.classes)}")
    return idx


def _name_lookup(run: Run) -> dict[str, int]:
    return class_lookup(run.classes, run.meta.class_names)


def _unique(stem: str, used: set[str]) -> str:
    candidate, k = stem, 2
    while candidate in used:
        candidate, k = f"{stem}_{k}", k + 1
    used.add(candidate)
    return candidate
