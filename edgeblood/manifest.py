"""``runs/<name>/export/manifest.json``: every artifact of a run, its checksum and its parity result.

Several commands write it (export, compress), possibly at once, so updates are a locked
read-modify-write followed by an atomic replace; an entry is identified by its ``path`` (relative
to the export folder) and replaced when the same path is recorded again.

    {"schema": "edgeblood.export-manifest/1", "updated": "...",
     "artifacts": [{"target": "onnx", "precision": "fp32", "path": "model.onnx", "files": [...],
                    "size_bytes": 78413, "sha256": "...", "runtime": "onnxruntime",
                    "parity": {"status": "ok", "agreement": 1.0, "max_abs_diff": 1.2e-07,
                               "n_images": 256, "split": "test", ...},
                    "export_seconds": 5.1, "created": "...", "details": {...}}]}

Parity ``status``: the judge's words (edgeblood.parity): "ok", "mismatch" (exported but wrong: do not
ship), "failed" (could not be run: missing, invalid or unloadable), or "skipped" (with ``reason``).

Part of the run directory's contract, so it sits in the core of the package: export and compress
write it, bench reads it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from edgeblood.atomic import exclusive_lock, write_json
from edgeblood.errors import EdgebloodError
from edgeblood.parity_status import STATUSES
from edgeblood.provenance import utc_now

MANIFEST = "manifest.json"
SCHEMA = "edgeblood.export-manifest/1"
PARITY_STATUSES = STATUSES


def load_manifest(export_dir: str | os.PathLike) -> dict:
    """The manifest of ``export_dir`` (an empty one when the folder has none yet)."""
    path = Path(export_dir) / MANIFEST
    if not path.is_file():
        return {"schema": SCHEMA, "artifacts": []}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EdgebloodError(f"{path} is unreadable ({type(exc).__name__}); delete it and re-run `edgeblood export --force`") from None
    if not isinstance(data, dict) or not isinstance(data.get("artifacts"), list):
        raise EdgebloodError(f"{path} is not an edgeblood manifest; delete it and re-run `edgeblood export --force`")
    return data


def record_artifact(export_dir: str | os.PathLike, entry: dict[str, Any]) -> dict:
    """Add ``entry`` to the manifest (replacing the entry with the same ``path``); returns the manifest.

    Required keys: target, precision, path. ``size_bytes``/``sha256``/``files``/``created`` are
    filled in from the files on disk when absent.
    """
    export_dir = Path(export_dir)
    for key in ("target", "precision", "path"):
        if key not in entry:
            raise ValueError(f"manifest entry needs '{key}'")
    entry = dict(entry)
    artifact = export_dir / entry["path"]
    if artifact.exists():
        entry.setdefault("files", [str(p.relative_to(export_dir)) for p in artifact_files(artifact)])
        entry.setdefault("size_bytes", artifact_size(artifact))
        entry.setdefault("sha256", artifact_sha256(artifact))
    entry.setdefault("created", utc_now())
    status = (entry.get("parity") or {}).get("status")
    if status is not None and status not in PARITY_STATUSES:
        raise ValueError(f"parity status must be one of {PARITY_STATUSES}, not {status!r}")
    with exclusive_lock(export_dir / ".manifest.lock"):
        manifest = load_manifest(export_dir)
        manifest["schema"] = SCHEMA
        manifest["artifacts"] = [a for a in manifest["artifacts"] if a.get("path") != entry["path"]] + [entry]
        manifest["updated"] = utc_now()
        write_json(export_dir / MANIFEST, manifest)
    return manifest


def find_artifact(export_dir: str | os.PathLike, path: str) -> dict | None:
    return next((a for a in load_manifest(export_dir)["artifacts"] if a.get("path") == path), None)


def artifact_files(path: str | os.PathLike) -> list[Path]:
    """The files that make up an artifact: the file itself, an IR's .xml+.bin, or every file of a .mlpackage."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    files = [path]
    if path.suffix == ".xml" and path.with_suffix(".bin").exists():
        files.append(path.with_suffix(".bin"))
    return files


def artifact_size(path: str | os.PathLike) -> int:
    return sum(p.stat().st_size for p in artifact_files(path))


def artifact_sha256(path: str | os.PathLike) -> str:
    """sha256 of the file; for multi-file artifacts, of each file's relative name and bytes in order."""
    path = Path(path)
    files = artifact_files(path)
    base = path if path.is_dir() else path.parent
    digest = hashlib.sha256()
    for f in files:
        if len(files) > 1:
            digest.update(f.relative_to(base).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
