"""A lab's own labelled images: a folder of class sub-folders (ImageFolder layout) or a CSV of path,label.

    cells/basophil/*.jpg  cells/platelet/*.png ...     folder names are class names
    labels.csv            path,label  (paths relative to the CSV; label = class name or index)

Class names are matched loosely against the model's (case, spaces/underscores/hyphens, a plural
``s``, and the long BloodMNIST names all match), so ``immature_granulocyte/`` is class 3. A folder
or label that matches no class is an error that lists the model's classes, never a silent skip.
This module only lists files and labels; decoding and framing happen in ``edgeblood.imageio``.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeblood.errors import EdgebloodError
from edgeblood.imageio import iter_image_files, load_image


def normalise_class_name(name: str) -> str:
    return re.sub(r"[\s_-]+", " ", name.strip().lower()).rstrip("s")


def class_lookup(classes: Sequence[str], full_names: Sequence[str] | None = None) -> dict[str, int]:
    """Every accepted spelling of each class -> its index."""
    lookup: dict[str, int] = {}
    for i, names in enumerate(zip(classes, full_names or classes)):
        for name in names:
            key = normalise_class_name(name)
            lookup[key] = i
            lookup[normalise_class_name(key.split("(")[0])] = i  # "immature granulocytes(myelocytes, ...)"
    return lookup


@dataclass
class LabelledImages:
    """Image files with their class index, in a stable order (sorted folders / CSV order)."""

    root: Path
    layout: str  # "folders" or "csv"
    files: list[Path]
    labels: np.ndarray
    classes: list[str]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.root.stem if self.layout == "csv" else self.root.name

    def describe(self) -> str:
        return f"{len(self.files)} labelled images from {self.root} ({'class folders' if self.layout == 'folders' else 'CSV path,label'})"


def read_labelled_images(source: str | os.PathLike, classes: Sequence[str], full_names: Sequence[str] | None = None) -> LabelledImages:
    """List ``source`` (a folder of class folders, or a CSV) against the model's ``classes``."""
    source = Path(source).expanduser()
    if not source.exists():
        raise EdgebloodError(f"{source}: no such folder or file; pass a folder of class sub-folders or a CSV of path,label")
    lookup = class_lookup(classes, full_names)
    if source.is_file():
        return _from_csv(source, lookup, list(classes))
    return _from_folders(source, lookup, list(classes))


def _from_folders(root: Path, lookup: dict[str, int], classes: list[str]) -> LabelledImages:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise EdgebloodError(f"{root} has no class sub-folders; use the layout DIR/<class>/<image> (class names: {', '.join(classes)}) or a CSV of path,label")
    unknown = [p.name for p in folders if normalise_class_name(p.name) not in lookup]
    if unknown:
        raise EdgebloodError(f"{root}: folder(s) {', '.join(unknown)} match no class of the model; rename them to one of: {', '.join(classes)}")
    files, labels, skipped = [], [], []
    for folder in folders:
        found = list(iter_image_files([folder], problems=skipped))
        files += found
        labels += [lookup[normalise_class_name(folder.name)]] * len(found)
    if not files:
        raise EdgebloodError(f"{root}: the class folders hold no images ({', '.join(f.name for f in folders)})")
    return LabelledImages(root=root, layout="folders", files=files, labels=np.asarray(labels, np.int64), classes=classes, skipped=skipped)


def _from_csv(path: Path, lookup: dict[str, int], classes: list[str]) -> LabelledImages:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise EdgebloodError(f"{path}: cannot read it as a CSV ({type(exc).__name__}); save it as UTF-8 text with the columns path,label") from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    files, labels, skipped = [], [], []
    for n, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise EdgebloodError(f"{path}, row {n}: expected path,label, got {row!r}")
        file, label = Path(row[0].strip()), row[1].strip()
        file = file if file.is_absolute() else path.parent / file
        idx = _label_index(label, lookup, len(classes))
        if idx is None:
            raise EdgebloodError(f"{path}, row {n}: label '{label}' is no class of the model; use one of: {', '.join(classes)} (or 0-{len(classes) - 1})")
        if not file.is_file():
            skipped.append((file, f"{file}: no such file (row {n} of {path.name})"))
            continue
        files.append(file)
        labels.append(idx)
    if not files:
        raise EdgebloodError(f"{path}: no existing image files listed; the columns are path,label with paths relative to the CSV")
    return LabelledImages(root=path, layout="csv", files=files, labels=np.asarray(labels, np.int64), classes=classes, skipped=skipped)


def _label_index(label: str, lookup: dict[str, int], n_classes: int) -> int | None:
    if label.isdigit():
        return int(label) if int(label) < n_classes else None
    return lookup.get(normalise_class_name(label))


def load_framed(items: LabelledImages, size: int, framing, progress: Callable[[int], None] | None = None
                ) -> tuple[np.ndarray, np.ndarray, list[Path], list[tuple[Path, str]]]:
    """Decode and frame every listed image: (uint8 NHWC batch, labels, files kept, (file, reason) skipped)."""
    images, labels, kept, skipped = [], [], [], list(items.skipped)
    for file, label in zip(items.files, items.labels):
        try:
            images.append(load_image(file, size, framing=framing))
            labels.append(int(label))
            kept.append(file)
        except EdgebloodError as exc:
            skipped.append((file, str(exc)))
        if progress is not None:
            progress(1)
    if not images:
        why = "; ".join(msg for _, msg in skipped[:2])
        raise EdgebloodError(f"none of the {len(items.files)} images could be read ({why})")
    return np.stack(images), np.asarray(labels, np.int64), kept, skipped
