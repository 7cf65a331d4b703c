"""Pretrained runs shipped inside the package: a model to use the minute edgeblood is installed.

Each one is a complete run directory (checkpoint.pt, run.json, domain.pt, metrics.json,
MODEL_CARD.md) under ``edgeblood/pretrained_models/<name>/``, listed in ``index.json`` with the
SHA-256 of every file. Wherever a run directory is accepted (``predict``, ``export``, ``bench``,
``explain``, ``evaluate``, ``adapt``, ``train --init``) its name is accepted too:

    edgeblood predict se-cnn-28 captures/
    edgeblood export se-cnn-28 --target onnx

A name resolves to a copy in the user's cache (``$EDGEBLOOD_HOME/pretrained/<name>``, default
``~/.cache/edgeblood``): commands write into a run directory (exports, evaluations) and the
installed package must stay untouched. The copy is made only after every packaged file matches its
checksum, and is checked again on each use, so a damaged or altered file is refused in one line;
loading itself goes through ``torch.load(weights_only=True)`` like every run. No download: offline-safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from edgeblood.errors import EdgebloodError

PACKAGE_DIR = Path(__file__).resolve().parent / "pretrained_models"
INDEX = "index.json"
#: Checked in the cached copy on every use (the rest, run.json and metrics.json, change when a user evaluates it).
WEIGHTS = ("checkpoint.pt", "domain.pt")


def index() -> dict[str, dict[str, Any]]:
    """name -> entry (model, size, recipe, metrics, licence, files with their SHA-256) of every shipped run."""
    path = PACKAGE_DIR / INDEX
    if not path.is_file():
        return {}
    return {e["name"]: e for e in json.loads(path.read_text())["models"]}


def names() -> list[str]:
    return sorted(index())


def is_pretrained_name(text: str | os.PathLike) -> bool:
    """True for a bare name in the index (no path separators); a folder of that name in the working directory wins."""
    s = str(text)
    return s in index() and not Path(s).exists()


def cache_root() -> Path:
    return Path(os.environ.get("EDGEBLOOD_HOME") or Path.home() / ".cache" / "edgeblood") / "pretrained"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verify(folder: Path, files: dict[str, str], name: str, where: str) -> None:
    for rel, digest in files.items():
        path = folder / rel
        if not path.is_file():
            raise EdgebloodError(f"pretrained '{name}': {where} lacks {rel}; reinstall edgeblood (pip install --force-reinstall edgeblood)")
        if sha256(path) != digest:
            raise EdgebloodError(f"pretrained '{name}': {where} {rel} does not match its SHA-256 in the package index; "
                                 "the file is damaged or was altered: reinstall edgeblood")


def pretrained_run_dir(name: str) -> Path:
    """The writable run directory of a shipped run, copied from the package after checking every file."""
    entries = index()
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none in this install"
        raise EdgebloodError(f"no pretrained model '{name}'; shipped: {known}")
    files = entries[name]["files"]
    dest = cache_root() / name
    try:
        _verify(dest, {k: v for k, v in files.items() if k in WEIGHTS}, name, str(dest))
        return dest
    except EdgebloodError:
        pass  # not copied yet, or changed in the cache: copy afresh from the package
    source = PACKAGE_DIR / name
    _verify(source, files, name, "the installed package's copy of")
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for rel in files:
        shutil.copy2(source / rel, tmp / rel)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def resolve(path: str | os.PathLike) -> Path:
    """A run directory path as given, or the cached copy of the pretrained run of that name."""
    return pretrained_run_dir(str(path)) if is_pretrained_name(path) else Path(path).expanduser()
