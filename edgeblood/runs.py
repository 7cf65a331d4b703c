"""The run directory: the one contract everything downstream reads (see DESIGN.md).

    runs/<name>/checkpoint.pt   {"format", "version", "state_dict", "metadata"} - tensors + JSON only,
                                loaded with torch.load(weights_only=True) so opening it never runs code
    runs/<name>/run.json        the metadata alone, human-readable
    runs/<name>/history.csv     per-epoch curves;  metrics.json; plots/; export/; bench/
    runs/<name>/train_state.pt  optimizer/scheduler/EMA/RNG state for --resume (removed when training completes)

The metadata is typed: ``Run.meta`` is an ``edgeblood.run_metadata.RunMetadata`` (model, input contract with
the framing, classes, dataset, training, calibration, metrics), validated when the checkpoint is opened.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from edgeblood.atomic import atomic_path, write_json
from edgeblood.errors import EdgebloodError, RunError
from edgeblood.run_metadata import SCHEMA, RunMetadata, as_run_metadata

CHECKPOINT = "checkpoint.pt"
RUN_JSON = "run.json"
TRAIN_STATE = "train_state.pt"
CHECKPOINT_FORMAT = "edgeblood-checkpoint"
CHECKPOINT_VERSION = 1
METADATA_SCHEMA = SCHEMA


def save_checkpoint(run_dir: str | os.PathLike, model: nn.Module, metadata: RunMetadata | Mapping[str, Any]) -> Path:
    """Write checkpoint.pt and run.json atomically (a crash leaves the previous pair intact).

    ``metadata`` is a RunMetadata, or (from writers not yet converted) the run.json dict, written as it is.
    """
    run_dir = Path(run_dir)
    if isinstance(metadata, RunMetadata):
        metadata = metadata.to_dict()
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "state_dict": state, "metadata": _jsonable(metadata)}
    with atomic_path(run_dir / CHECKPOINT) as tmp:
        torch.save(payload, tmp)
    write_json(run_dir / RUN_JSON, metadata)
    return run_dir / CHECKPOINT


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], RunMetadata]:
    """Load and validate a checkpoint file (and its metadata's types) without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"no checkpoint at {path}; train one with `edgeblood train` or pass a run directory")
    try:
        with warnings.catch_warnings():  # torch warns about weights_only defaults; the outcome is reported below
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses code objects; a truncated file fails to unzip
        raise RunError(f"{path} is not a valid edgeblood checkpoint: {_why_unreadable(exc)}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path} is not an edgeblood checkpoint (no '{CHECKPOINT_FORMAT}' header); retrain or re-save it with edgeblood")
    if payload.get("version", 0) > CHECKPOINT_VERSION:
        raise RunError(f"{path} was written by a newer edgeblood (checkpoint v{payload['version']}); upgrade edgeblood")
    metadata = payload.get("metadata")
    if not isinstance(metadata, dict):
        raise RunError(f"{path} carries no metadata (model, classes, input, dataset); it cannot be rebuilt: retrain it")
    return payload["state_dict"], RunMetadata.from_dict(metadata, where=str(path))  # checks each key's type, names a missing one


def build_model(metadata: RunMetadata | Mapping[str, Any], state_dict: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Rebuild the network described by ``metadata.model.config`` and load its weights."""
    from edgeblood.models import create

    meta = as_run_metadata(metadata)
    cfg = dict(meta.model.config)
    name = cfg.pop("name")
    model = create(name, **cfg)
    structure = meta.model.structure
    if structure and state_dict is not None:  # a channel-pruned run (edgeblood compress --prune)
        from edgeblood.models.structure import apply_structure

        apply_structure(model, structure, state_dict)
    if state_dict is not None:
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as exc:
            # torch's first line is only "Error(s) in loading state_dict for X:"; the first mismatch follows it
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            detail = (lines[1] if len(lines) > 1 else lines[0]).rstrip(".")
            commit = meta.git_commit or "unknown"
            raise EdgebloodError(
                f"checkpoint weights do not fit model '{name}' ({detail[:240]}); the model code changed since this run "
                f"was trained (git commit {commit}): retrain it, or open it with that edgeblood version"
            ) from None
    return model.eval()


METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
# One set of columns for every history.csv (training and the fine-tune of a pruned run): a column a
# writer does not measure stays empty, so readers never guess which writer made the file.
# train_px: the training image size of the epoch (below the run's size during --progressive-resize stages).
HISTORY_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s", "train_px")


def read_metrics(run_dir: str | os.PathLike) -> dict:
    """metrics.json of a run: one entry per split ({} when absent or unreadable)."""
    path = Path(run_dir) / METRICS_FILE
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def write_history(run_dir: str | os.PathLike, history: list[dict]) -> Path:
    """history.csv (atomically): one row per epoch, the HISTORY_FIELDS columns."""
    import csv
    import io

    from edgeblood.atomic import write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS)
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k) for k in HISTORY_FIELDS})
    return write_text(Path(run_dir) / HISTORY_FILE, buf.getvalue())


def read_history(run_dir: str | os.PathLike) -> list[dict]:
    """history.csv as dicts of floats (epoch as int; empty cells None); [] when absent."""
    import csv

    path = Path(run_dir) / HISTORY_FILE
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        for raw in csv.DictReader(f):
            row = {k: (float(v) if v not in ("", None) else None) for k, v in raw.items() if k}
            if row.get("epoch") is not None:
                row["epoch"] = int(row["epoch"])
            rows.append(row)
    return rows


class Run:
    """An opened run directory. ``model`` is rebuilt on first use, in eval mode on the CPU.

    The run contract in one place: run.json / checkpoint.pt (``meta``, ``save``), metrics.json
    (``metrics()``), history.csv (``history()``) and export/manifest.json (``manifest()``); every other
    module reads those files through these, and each has one writer (edgeblood.evaluation for metrics,
    ``write_history``, edgeblood.manifest for the manifest). To change the metadata, assign
    ``run.meta = dataclasses.replace(run.meta, ...)`` and ``save()``.
    """

    def __init__(self, dir: Path, meta: RunMetadata, _state_dict: dict | None = None):
        self.dir = Path(dir)
        self._meta = meta
        self._state_dict = _state_dict
        self._model: nn.Module | None = None
        self._legacy: dict | None = None

    def __repr__(self) -> str:
        return f"Run({str(self.dir)!r}, model={self.model_name!r})"

    @property
    def meta(self) -> RunMetadata:
        if self._legacy is not None:  # the dict handed out by ``metadata`` may have been edited
            self._meta = RunMetadata.from_dict(self._legacy, where=str(self.dir / RUN_JSON))
        return self._meta

    @meta.setter
    def meta(self, value: RunMetadata) -> None:
        self._meta = value
        self._legacy = None

    @property
    def metadata(self) -> dict:
        """run.json as a dict, for the modules not yet converted to ``meta`` (training engine, fine-tune,
        compress, bench runner). Edits to it are saved by ``save()`` until ``meta`` is assigned."""
        if self._legacy is None:
            self._legacy = self._meta.to_dict()
        return self._legacy

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def model(self) -> nn.Module:
        if self._model is None:
            self._model = build_model(self.meta, self._state_dict)
        return self._model

    @property
    def model_name(self) -> str:
        return self.meta.model.name

    @property
    def classes(self) -> list[str]:
        return list(self.meta.classes)

    @property
    def in_size(self) -> int:
        return int(self.meta.input.size)

    @property
    def mean(self) -> list[float]:
        return list(self.meta.input.mean)

    @property
    def std(self) -> list[float]:
        return list(self.meta.input.std)

    @property
    def framing(self):
        """How a training image was cut from its capture (edgeblood.framing); derived from the dataset for older runs."""
        return self.meta.input.framing

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / CHECKPOINT

    @property
    def export_dir(self) -> Path:
        return self.dir / "export"

    @property
    def bench_dir(self) -> Path:
        return self.dir / "bench"

    @property
    def plots_dir(self) -> Path:
        return self.dir / "plots"

    def metrics(self) -> dict:
        return read_metrics(self.dir)

    def history(self) -> list[dict]:
        return read_history(self.dir)

    def manifest(self) -> dict:
        """export/manifest.json ({"schema", "artifacts": []} when nothing was exported yet)."""
        from edgeblood.manifest import load_manifest

        return load_manifest(self.export_dir)

    def save(self, model: nn.Module | None = None) -> None:
        """Persist (possibly updated) metadata, and weights when ``model`` is given."""
        save_checkpoint(self.dir, model if model is not None else self.model, self.meta)


def open_run(path: str | os.PathLike) -> Run:
    """Open a run directory (or the checkpoint.pt inside one), validating it before use."""
    from edgeblood.pretrained import resolve

    path = resolve(path)  # a pretrained model's name (edgeblood.pretrained) or a path
    if path.is_file() and path.name == CHECKPOINT:
        path = path.parent
    if not path.exists():
        raise RunError(f"run directory {path} does not exist; pass the folder `edgeblood train` created (runs/<name>)")
    if not path.is_dir():
        raise RunError(f"{path} is not a run directory; pass the folder `edgeblood train` created (runs/<name>)")
    if not (path / CHECKPOINT).is_file():
        hint = " (training was interrupted before the first epoch ended; resume with `edgeblood train --resume`)" if (path / TRAIN_STATE).exists() else ""
        raise RunError(f"{path} has no {CHECKPOINT}{hint}; train with `edgeblood train` first")
    state, meta = load_checkpoint(path / CHECKPOINT)
    return Run(path, meta, _state_dict=state)


def _why_unreadable(exc: BaseException) -> str:
    """torch.load's failure as one whole sentence with the fix (its own messages run to many lines)."""
    text = str(exc)
    if "Weights only load failed" in text or "weights_only" in text:
        return ("it holds Python objects, not plain tensors, and loading them could run code, so edgeblood refuses it; "
                "use a checkpoint written by `edgeblood train` (tensors + JSON metadata), or retrain")
    if "zip archive" in text or "central directory" in text or isinstance(exc, EOFError):
        return "the file is truncated or damaged (not a complete checkpoint archive); copy it again or retrain"
    first = text.splitlines()[0].strip() if text.strip() else type(exc).__name__
    return f"{type(exc).__name__}: {first}; use a checkpoint written by `edgeblood train`, or retrain"


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
