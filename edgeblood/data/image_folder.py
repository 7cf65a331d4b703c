"""A lab's labelled image folder as a training dataset: listed, split, framed once and cached.

Three layouts, as ``yolo classify``, timm's ImageFolder and OpenVINO Training Extensions read them::

    DIR/train/<class>/*  DIR/val/<class>/*  DIR/test/<class>/*     splits given
    DIR/<class>/*                                                 split here: stratified, deterministic
    labels.csv  with path,label[,split]                           paths relative to the CSV

A stratified split orders each class's files by a hash of (split seed, path relative to DIR), so it
depends on neither the machine nor the order the file system lists files, and a file keeps its split
when the folder is copied elsewhere. Class names come from the folder names (or the CSV labels),
sorted; when they are the classes of the run being fine-tuned, that run's order is kept so every
weight carries over. Every image goes through the one framing path (``edgeblood.framing``), and
the framed uint8 arrays are cached per (file list, sizes, input size, framing), so a second epoch,
run or evaluation does not decode JPEGs again.

Bad input is named, never silently used: an empty class folder, a class too small to split, a
class missing from train, a missing split folder and a mixed CSV are errors; unreadable files are
skipped and counted in the run; files that appear (same bytes) in two splits are a leakage warning.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeblood.atomic import atomic_path
from edgeblood.data.labelled_images import normalise_class_name
from edgeblood.data.split_arrays import SPLITS, SplitArrays
from edgeblood.errors import EdgebloodError
from edgeblood.framing import Framing
from edgeblood.imageio import IMAGE_EXTENSIONS, load_image
from edgeblood.run_metadata import FOLDER_SOURCE, DatasetInfo, RunMetadata, SplitSpec, as_run_metadata

DEFAULT_SPLIT = (0.8, 0.1, 0.1)
CACHE_FORMAT = 1
SOURCE = FOLDER_SOURCE  # dataset "source" of runs trained on an image folder (BloodMNIST runs: "full" or "sample")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "test": "test", "testing": "test"}


@dataclass
class FolderListing:
    """Files with their class name and (when the layout gives one) split, before any decoding."""

    root: Path
    layout: str  # "splits" | "classes" | "csv"
    files: list[Path]
    keys: list[str]  # path relative to the root (posix): what the split hash and the content hash use
    class_names: list[str]  # per file, as spelled in the folder name / CSV
    given_splits: list[str] | None
    non_images: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # CSV rows naming files that do not exist


@dataclass
class FolderDataset(SplitArrays):
    """The three splits of an image folder as uint8 NHWC arrays, plus what a run must record about them.

    Has the interface of ``BloodMNIST`` (``images``, ``labels``, ``framing``, ``metadata``, ``describe``)
    so training, evaluation, export parity and bench read either without knowing which.
    """

    size: int
    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    classes: list[str]
    root: Path
    layout: str
    split_spec: dict
    content_sha256: str
    n_files: int
    used_framing: Framing
    skipped: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    non_images: int = 0
    notes: list[str] = field(default_factory=list)
    split_files: dict[str, list[Path]] = field(default_factory=dict)  # the source file of every image, per split
    source: str = SOURCE
    variant: str = "image-folder"
    md5: str | None = None
    is_sample: bool = False

    @property
    def path(self) -> str:
        return str(self.root)

    @property
    def name(self) -> str:
        return self.root.stem if self.layout == "csv" else self.root.name

    @property
    def class_names_full(self) -> list[str]:
        return list(self.classes)

    def framing(self) -> Framing:
        return self.used_framing

    def describe(self) -> str:
        counts = "/".join(str(len(self.labels(s))) for s in SPLITS)
        how = "splits given" if self.split_spec["kind"] == "given" else \
            f"stratified split {','.join(f'{r:g}' for r in self.split_spec['ratios'])} (split seed {self.split_spec['seed']})"
        return f"image folder {self.root} ({len(self.classes)} classes, {counts} train/val/test, {how}, {self.size} px)"

    def metadata(self) -> dict:
        return {
            "name": self.name,
            "kind": "image-folder",
            "source": self.source,
            "size": self.size,
            "variant": self.variant,
            "file": self.path,
            "md5": None,
            "layout": self.layout,
            "files": self.n_files,
            "content_sha256": self.content_sha256,
            "split": dict(self.split_spec),
            "split_sizes": {s: int(len(self.labels(s))) for s in SPLITS},
            "train_class_counts": np.bincount(self.labels("train"), minlength=len(self.classes)).astype(int).tolist(),
            "classes": list(self.classes),
            "skipped_files": len(self.skipped),
            "skipped_examples": [reason for _, reason in self.skipped[:10]],
            "duplicates_across_splits": len(self.duplicates),
            "non_image_files": self.non_images,
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------------------------- listing
def list_image_folder(source: str | os.PathLike) -> FolderListing:
    """List a folder (either layout) or a CSV; nothing is decoded yet."""
    source = Path(source).expanduser()
    if not source.exists():
        raise EdgebloodError(f"{source}: no such folder or file; pass a folder (DIR/<class>/* or DIR/{{train,val,test}}/<class>/*) "
                             "or a CSV of path,label[,split]")
    if source.is_file():
        return _list_csv(source)
    subdirs = _subfolders(source)
    if not subdirs:
        raise EdgebloodError(f"{source} has no sub-folders; use DIR/<class>/<image>, DIR/{{train,val,test}}/<class>/<image> or a CSV of path,label[,split]")
    split_dirs = {_SPLIT_ALIASES[d.name.lower()]: d for d in subdirs if d.name.lower() in _SPLIT_ALIASES}
    if split_dirs:
        missing = [s for s in SPLITS if s not in split_dirs]
        if missing:
            raise EdgebloodError(f"{source} has {', '.join(sorted(split_dirs))} folders but no {', '.join(missing)}; add "
                                 f"{'/'.join(missing)}/<class>/ folders, or put the class folders directly under {source} and split with --split")
        others = [d.name for d in subdirs if d.name.lower() not in _SPLIT_ALIASES]
        if others:
            raise EdgebloodError(f"{source} mixes split folders with other folders ({', '.join(others)}); move them into train/val/test or out of {source}")
        listing = FolderListing(root=source, layout="splits", files=[], keys=[], class_names=[], given_splits=[])
        for split in SPLITS:
            _add_class_folders(listing, split_dirs[split], split)
        return listing
    listing = FolderListing(root=source, layout="classes", files=[], keys=[], class_names=[], given_splits=None)
    _add_class_folders(listing, source, None)
    return listing


def _subfolders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _add_class_folders(listing: FolderListing, folder: Path, split: str | None) -> None:
    classes = _subfolders(folder)
    if not classes:
        raise EdgebloodError(f"{folder} has no class sub-folders; put each class's images in {folder}/<class>/")
    for class_dir in classes:
        images, others = _walk_images(class_dir)
        if not images:
            raise EdgebloodError(f"{class_dir}: class folder holds no images ({', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder")
        listing.files += images
        listing.keys += [p.relative_to(listing.root).as_posix() for p in images]
        listing.class_names += [class_dir.name] * len(images)
        if split is not None:
            listing.given_splits += [split] * len(images)
        listing.non_images += others


def _walk_images(folder: Path) -> tuple[list[Path], list[Path]]:
    images, others = [], []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            (images if name.lower().endswith(IMAGE_EXTENSIONS) else others).append(Path(root) / name)
    return images, others


def _list_csv(path: Path) -> FolderListing:
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if r and "".join(r).strip()]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise EdgebloodError(f"{path}: cannot read it as a CSV ({type(exc).__name__}); save it as UTF-8 text with the columns path,label[,split]") from None
    if rows and [c.strip().lower() for c in rows[0][:3]][:2] == ["path", "label"]:
        rows = rows[1:]
    if not rows:
        raise EdgebloodError(f"{path}: no rows; the columns are path,label[,split] with paths relative to the CSV")
    with_split = {len(r) >= 3 and bool(r[2].strip()) for r in rows}
    if len(with_split) > 1:
        raise EdgebloodError(f"{path}: some rows have a split column and some do not; give train/val/test on every row or on none")
    listing = FolderListing(root=path, layout="csv", files=[], keys=[], class_names=[], given_splits=[] if True in with_split else None)
    for n, row in enumerate(rows, start=1):
        if len(row) < 2 or not row[1].strip():
            raise EdgebloodError(f"{path}, row {n}: expected path,label[,split], got {row!r}")
        file = Path(row[0].strip())
        file = file if file.is_absolute() else path.parent / file
        if not file.is_file():
            listing.missing.append(f"{file}: no such file (row {n} of {path.name})")
            continue
        listing.files.append(file)
        listing.keys.append(row[0].strip().replace(os.sep, "/"))
        listing.class_names.append(row[1].strip())
        if listing.given_splits is not None:
            split = _SPLIT_ALIASES.get(row[2].strip().lower())
            if split is None:
                raise EdgebloodError(f"{path}, row {n}: split '{row[2].strip()}' is not train, val or test")
            listing.given_splits.append(split)
    if not listing.files:
        raise EdgebloodError(f"{path}: none of the listed files exists ({listing.missing[0]}); paths are relative to the CSV")
    return listing


# ---------------------------------------------------------------------------------- classes and split
def class_order(names: Sequence[str], reference: Sequence[str] | None = None) -> tuple[list[str], dict[str, int]]:
    """(class names, normalised spelling -> index). Folder names sorted; ``reference``'s order when the
    folder holds exactly the reference classes (loose spelling: case, separators, plural ``s``)."""
    spelled: dict[str, str] = {}
    for name in names:
        spelled.setdefault(normalise_class_name(name), name)
    if reference is not None:
        ref_keys = [normalise_class_name(c) for c in reference]
        if set(ref_keys) == set(spelled):
            return list(reference), {k: i for i, k in enumerate(ref_keys)}
    keys = sorted(spelled, key=lambda k: spelled[k])
    return [spelled[k] for k in keys], {k: i for i, k in enumerate(keys)}


def parse_split(text: str | Sequence[float] | None) -> tuple[float, float, float]:
    """``--split 0.8,0.1,0.1`` (train,val,test shares; they must add up to 1)."""
    if text is None:
        return DEFAULT_SPLIT
    parts = [p for p in text.split(",")] if isinstance(text, str) else list(text)
    try:
        ratios = tuple(float(p) for p in parts)
    except ValueError:
        ratios = ()
    if len(ratios) != 3 or any(r <= 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise EdgebloodError(f"--split takes three positive train,val,test shares that add up to 1 (e.g. 0.8,0.1,0.1), got {text!r}")
    return ratios  # type: ignore[return-value]


def stratified_split(keys: Sequence[str], labels: np.ndarray, ratios: Sequence[float], seed: int, classes: Sequence[str]) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) per file; every class gets at least one file in each split."""
    out = np.zeros(len(keys), dtype=np.int64)
    for c, name in enumerate(classes):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 3:
            raise EdgebloodError(f"class '{name}' has {len(idx)} image{'s' if len(idx) != 1 else ''}; a train/val/test split needs at least "
                                 f"3 per class (one for each); add images of '{name}' or remove its folder")
        order = sorted(idx, key=lambda i: hashlib.sha256(f"{seed}:{keys[i]}".encode()).hexdigest())
        n_val = min(max(1, round(len(idx) * ratios[1])), len(idx) - 2)
        n_test = min(max(1, round(len(idx) * ratios[2])), len(idx) - 1 - n_val)
        n_train = len(idx) - n_val - n_test
        out[order[n_train : n_train + n_val]] = 1
        out[order[n_train + n_val :]] = 2
    return out


# ------------------------------------------------------------------------------------ decode and cache
def default_cache_dir() -> Path:
    """``$EDGEBLOOD_CACHE`` or ``~/.cache/edgeblood``: framed arrays live outside the lab's folder."""
    return Path(os.environ.get("EDGEBLOOD_CACHE") or Path("~/.cache/edgeblood").expanduser()) / "image-folders"


def content_hash(listing: FolderListing, labels: Sequence[str]) -> str:
    """sha256 of the sorted (relative path, byte size, label, split) lines: the dataset's identity in the run."""
    splits = listing.given_splits or [""] * len(listing.files)
    lines = sorted(f"{k}\t{f.stat().st_size}\t{lab}\t{s}" for k, f, lab, s in zip(listing.keys, listing.files, labels, splits))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _decode(files: Sequence[Path], size: int, framing: Framing, progress: Callable[[int], None] | None):
    images = np.zeros((len(files), size, size, 3), dtype=np.uint8)
    ok = np.zeros(len(files), dtype=bool)
    digests, reasons = [], []
    for i, file in enumerate(files):
        try:
            digests.append(hashlib.sha1(file.read_bytes()).hexdigest())
            images[i] = load_image(file, size, framing=framing)
            ok[i] = True
            reasons.append("")
        except (EdgebloodError, OSError) as exc:
            reasons.append(str(exc) if isinstance(exc, EdgebloodError) else f"{file}: {exc.strerror or type(exc).__name__}")
            digests.extend([""] * (i + 1 - len(digests)))
        if progress is not None:
            progress(1)
    return images, ok, np.asarray(digests, dtype="U40"), np.asarray(reasons, dtype=str)


def _cached_decode(listing: FolderListing, identity: str, size: int, framing: Framing, cache_dir: Path | None,
                   progress_factory: Callable[[int, str], Callable[[int], None]] | None):
    framing_key = {k: v for k, v in framing.to_dict().items() if k not in ("description", "source")}
    key = hashlib.sha256(json.dumps({"v": CACHE_FORMAT, "content": identity, "size": size, "framing": framing_key}, sort_keys=True).encode()).hexdigest()
    path = (cache_dir or default_cache_dir()) / f"{key[:24]}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as npz:
                cached = npz["images"], npz["ok"], npz["digests"], npz["reasons"]
            if cached[0].shape == (len(listing.files), size, size, 3) and cached[0].dtype == np.uint8 and len(cached[1]) == len(listing.files):
                return cached, path, True
        except (OSError, ValueError, KeyError):
            pass  # a damaged or foreign cache file is rebuilt, never trusted
    progress = progress_factory(len(listing.files), f"reading and framing {len(listing.files)} images (cached for next time)") if progress_factory else None
    decoded = _decode(listing.files, size, framing, progress)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, images=decoded[0], ok=decoded[1], digests=decoded[2], reasons=decoded[3])
    except OSError:
        pass  # no writable cache: the next run decodes again, nothing else changes
    return decoded, path, False


# ------------------------------------------------------------------------------------------- loading
def load_image_folder(
    source: str | os.PathLike,
    size: int,
    *,
    framing: Framing,
    split: Sequence[float] | None = None,
    split_seed: int = 0,
    reference_classes: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    cache_dir: Path | None = None,
    progress_factory: Callable[[int, str], Callable[[int], None]] | None = None,
) -> FolderDataset:
    """Read ``source`` as a dataset at ``size`` px through ``framing``.

    ``split``: train/val/test shares for a folder without split folders (default 0.8,0.1,0.1);
    refused when the layout gives the splits. ``reference_classes``: keep that class order when the
    folder has exactly those classes (fine-tuning). ``classes``: the exact classes a trained run
    expects (evaluation); a folder with other classes is an error. ``progress_factory(total, label)``
    returns a callback advanced per decoded image (only called when the cache misses).
    """
    if size < 8:
        raise EdgebloodError(f"--size {size} px is too small for an image classifier; use 28 px or more")
    listing = list_image_folder(source)
    if listing.given_splits is not None and split is not None:
        raise EdgebloodError(f"{listing.root} gives its own train/val/test split; drop --split (it only applies to a folder of class folders)")
    names, lookup = class_order(listing.class_names, classes if classes is not None else reference_classes)
    if classes is not None and names != list(classes):
        found = sorted({normalise_class_name(n) for n in listing.class_names})
        raise EdgebloodError(f"{listing.root} holds the classes {', '.join(found)}, but the run was trained on {', '.join(classes)}; "
                             "evaluate it on a folder with the same classes (or use --images for a folder named after the run's classes)")
    labels = np.asarray([lookup[normalise_class_name(n)] for n in listing.class_names], dtype=np.int64)
    identity = content_hash(listing, [names[i] for i in labels])
    ratios = parse_split(split)
    if listing.given_splits is not None:
        split_of = np.asarray([SPLITS.index(s) for s in listing.given_splits], dtype=np.int64)
        spec = {"kind": "given"}
    else:
        split_of = stratified_split(listing.keys, labels, ratios, split_seed, names)
        spec = {"kind": "stratified", "ratios": list(ratios), "seed": int(split_seed)}
    (images, ok, digests, reasons), cache_path, hit = _cached_decode(listing, identity, size, framing, cache_dir, progress_factory)
    skipped = [(k, str(r)) for k, good, r in zip(listing.keys, ok, reasons) if not good] + [(m, m) for m in listing.missing]
    notes = [f"framed arrays {'read from' if hit else 'cached in'} {cache_path}"]
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    split_files: dict[str, list[Path]] = {}
    for s, split_name in enumerate(SPLITS):
        keep = ok & (split_of == s)
        splits[split_name] = (np.ascontiguousarray(images[keep]), labels[keep])
        split_files[split_name] = [listing.files[i] for i in np.flatnonzero(keep)]
    _check_class_coverage(splits, names, listing.root, notes)
    duplicates = _duplicates_across_splits(listing.keys, digests, ok, split_of)
    if listing.non_images:
        notes.append(f"ignored {len(listing.non_images)} non-image file(s), e.g. {listing.non_images[0]}")
    if skipped:
        notes.append(f"skipped {len(skipped)} unreadable file(s), e.g. {skipped[0][1]}")
    if duplicates:
        a, b = duplicates[0]
        notes.append(f"LEAKAGE: {len(duplicates)} file(s) appear with the same bytes in two splits (e.g. {a} = {b}); "
                     "remove the copies, or val/test accuracy is inflated")
    return FolderDataset(size=size, splits=splits, classes=names, root=listing.root.resolve(), layout=listing.layout, split_spec=spec,
                         content_sha256=identity, n_files=len(listing.files), used_framing=framing, skipped=skipped,
                         duplicates=duplicates, non_images=len(listing.non_images), notes=notes, split_files=split_files)


def _check_class_coverage(splits: dict[str, tuple[np.ndarray, np.ndarray]], classes: list[str], root: Path, notes: list[str]) -> None:
    counts = {s: np.bincount(y, minlength=len(classes)) for s, (_, y) in splits.items()}
    absent_train = [classes[c] for c in range(len(classes)) if counts["train"][c] == 0]
    if absent_train:
        raise EdgebloodError(f"{root}: class(es) {', '.join(absent_train)} have no readable train images; add train images of them or remove their folders")
    for split in ("val", "test"):
        absent = [classes[c] for c in range(len(classes)) if counts[split][c] == 0]
        if absent:
            notes.append(f"the {split} split has no images of {', '.join(absent)}: their recall is not measured on {split}")


def _duplicates_across_splits(keys: Sequence[str], digests: np.ndarray, ok: np.ndarray, split_of: np.ndarray) -> list[tuple[str, str]]:
    first: dict[str, int] = {}
    pairs = []
    for i, digest in enumerate(digests):
        if not ok[i] or not digest:
            continue
        j = first.setdefault(str(digest), i)
        if j != i and split_of[j] != split_of[i]:
            pairs.append((keys[j], keys[i]))
    return pairs


def is_folder_dataset(dataset: DatasetInfo | dict | None) -> bool:
    """Was a run trained on an image folder? (``DatasetInfo.is_folder``; the dict form for callers holding run.json as a dict)"""
    if isinstance(dataset, DatasetInfo):
        return dataset.is_folder
    return (dataset or {}).get("source") == SOURCE


def load_folder_for_run(metadata: RunMetadata | dict, progress_factory=None) -> FolderDataset:
    """The image folder a run was trained on (``Run.meta``), split and framed exactly as in training (for evaluate/export/bench)."""
    meta = as_run_metadata(metadata)
    ds = meta.dataset
    if not ds.file:
        raise EdgebloodError("the run's metadata names no image folder (dataset.file); evaluate it on a folder with `edgeblood evaluate RUN --images DIR`")
    path = Path(ds.file)
    if not path.exists():
        raise EdgebloodError(f"run was trained on the image folder {path}, which is not here; put it back at that path "
                             "(or evaluate on a folder elsewhere with `edgeblood evaluate RUN --images DIR`)")
    spec = ds.split or SplitSpec(kind="given")
    ratios = list(spec.ratios) if spec.kind == "stratified" and spec.ratios is not None else None
    data = load_image_folder(path, int(meta.input.size), framing=meta.framing, split=ratios, split_seed=int(spec.seed or 0),
                             classes=list(meta.classes), progress_factory=progress_factory)
    if ds.content_sha256 and ds.content_sha256 != data.content_sha256:
        data.notes.append(f"the folder changed since training ({ds.files} files then, {data.n_files} now; content hash differs): "
                          "the splits are re-derived from today's files, so figures are not comparable with the run's own")
    return data
