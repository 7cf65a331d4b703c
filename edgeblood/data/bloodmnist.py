"""Finding, validating and loading BloodMNIST npz files (or the embedded sample).

Search order for a file: ``--data-dir``, then ``$EDGEBLOOD_DATA``, then medmnist's default folder
(``~/.medmnist``). Files are opened with ``allow_pickle=False`` and checked (keys, shapes, dtypes,
labels, MD5) before anything uses them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeblood.data.download import download_bloodmnist, md5sum
from edgeblood.data.split_arrays import SPLITS, SplitArrays
from edgeblood.errors import EdgebloodError
from edgeblood.info import CLASS_NAMES, DATASET, FILES, KNOWN_REGENERATED_MD5, SHORT_CLASS_NAMES, SUPPORTED_SIZES

SAMPLE_FILE = Path(__file__).with_name("sample") / "bloodmnist_sample_28.npz"
MEDMNIST_DEFAULT_DIR = Path("~/.medmnist").expanduser()


@dataclass
class BloodMNIST(SplitArrays):
    """The three official splits as uint8 NHWC images and int64 labels, plus where they came from."""

    size: int
    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    source: str  # "full" or "sample"
    path: str | None = None
    md5: str | None = None
    variant: str = "official"
    notes: list[str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return list(SHORT_CLASS_NAMES)

    @property
    def class_names_full(self) -> list[str]:
        return list(CLASS_NAMES)

    @property
    def is_sample(self) -> bool:
        return self.source == "sample"

    def describe(self) -> str:
        counts = "/".join(str(len(self.labels(s))) for s in SPLITS)
        if self.is_sample:
            return f"embedded BloodMNIST SAMPLE ({counts} train/val/test images, {self.size} px) - not the full dataset"
        return f"BloodMNIST {self.size} px {self.variant} ({counts} train/val/test) from {self.path}"

    def framing(self):
        """How this file's images were cut from the PBC captures (edgeblood.framing)."""
        from edgeblood.framing import bloodmnist_framing

        return bloodmnist_framing(self.size, self.variant)

    def metadata(self) -> dict:
        return {
            "name": DATASET,
            "size": self.size,
            "source": self.source,
            "variant": self.variant,
            "file": self.path,
            "md5": self.md5,
            "split_sizes": {s: int(len(self.labels(s))) for s in SPLITS},
            "train_class_counts": np.bincount(self.labels("train"), minlength=len(CLASS_NAMES)).astype(int).tolist(),
            "notes": list(self.notes),
        }


def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    dirs: list[Path] = []
    if data_dir:
        dirs.append(Path(data_dir).expanduser())
    if os.environ.get("EDGEBLOOD_DATA"):
        dirs.append(Path(os.environ["EDGEBLOOD_DATA"]).expanduser())
    dirs.append(MEDMNIST_DEFAULT_DIR)
    return dirs


def find_dataset_file(size: int, data_dir: str | os.PathLike | None = None) -> Path | None:
    _check_size(size)
    name = FILES[size]["name"]
    for folder in candidate_dirs(data_dir):
        if (folder / name).is_file():
            return folder / name
    return None


def load_bloodmnist(
    size: int = 28,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = False,
    sample: bool | str = False,
    verify_md5: bool = True,
) -> BloodMNIST:
    """Load BloodMNIST at ``size`` px.

    ``sample=True`` uses the embedded sample; ``sample="auto"`` uses the full file when one is found
    and the sample otherwise (the caller should print ``describe()`` so users see which).
    """
    _check_size(size)
    if sample is True:
        return load_sample(size)
    path = find_dataset_file(size, data_dir)
    if path is None and download:
        target = Path(data_dir).expanduser() if data_dir else candidate_dirs()[0]
        path = download_bloodmnist(size, target)
    if path is None:
        if sample == "auto":
            return load_sample(size)
        looked = ", ".join(str(d) for d in candidate_dirs(data_dir))
        raise EdgebloodError(
            f"BloodMNIST {size} px ({FILES[size]['name']}) not found in: {looked}; "
            "add --download, point --data-dir or EDGEBLOOD_DATA at the folder, or use --sample for the embedded sample"
        )
    return _load_file(path, size, verify_md5=verify_md5)


def _check_size(size: int) -> None:
    if size not in FILES:
        raise EdgebloodError(f"BloodMNIST comes at {', '.join(map(str, SUPPORTED_SIZES))} px, not {size}; pass --size with one of them")


def _load_file(path: Path, size: int, *, verify_md5: bool) -> BloodMNIST:
    digest = md5sum(path)
    variant = "official"
    if digest in KNOWN_REGENERATED_MD5:
        variant = "regenerated"
    elif digest != FILES[size]["md5"]:
        if verify_md5:
            raise EdgebloodError(
                f"{path} has MD5 {digest}, expected {FILES[size]['md5']} (official {size} px file); "
                "the file is corrupt or not the official one: delete it and fetch the official file with --download "
                "(edgeblood reads only the official files and the known regenerated 64 px file, so results stay comparable)"
            )
        variant = "unverified"
    splits = _read_npz(path, size)
    notes = [KNOWN_REGENERATED_MD5[digest]] if variant == "regenerated" else []
    return BloodMNIST(size=size, splits=splits, source="full", path=str(path), md5=digest, variant=variant, notes=notes)


def _read_npz(path: Path, size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            raw = {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as exc:
        raise EdgebloodError(f"{path} is not a readable npz file ({exc}); delete it and use --download") from None
    splits = {}
    for split in SPLITS:
        images, labels = raw.get(f"{split}_images"), raw.get(f"{split}_labels")
        if images is None or labels is None:
            raise EdgebloodError(f"{path} has no {split}_images/{split}_labels arrays; it is not a MedMNIST file, use --download")
        splits[split] = _validated(images, labels, size, f"{path}:{split}")
    return splits


def _validated(images: np.ndarray, labels: np.ndarray, size: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (size, size, 3):
        raise EdgebloodError(f"{where}: expected uint8 images of shape (N, {size}, {size}, 3), got {images.dtype} {images.shape}")
    labels = labels.reshape(-1).astype(np.int64)
    if len(labels) != len(images):
        raise EdgebloodError(f"{where}: {len(images)} images but {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise EdgebloodError(f"{where}: labels must be 0..{len(CLASS_NAMES) - 1}")
    return np.ascontiguousarray(images), labels


def load_sample(size: int = 28) -> BloodMNIST:
    """The embedded stratified sample of the official 28 px file (resized when another size is asked)."""
    _check_size(size)
    splits = _read_npz(SAMPLE_FILE, 28)
    notes = ["embedded sample drawn from the official 28 px file (see edgeblood/data/sample/README.md)"]
    if size != 28:
        splits = {s: (resize_images(x, size), y) for s, (x, y) in splits.items()}
        notes.append(f"upsampled from 28 px to {size} px (bilinear) - only for smoke tests")
    return BloodMNIST(size=size, splits=splits, source="sample", path=str(SAMPLE_FILE), md5=md5sum(SAMPLE_FILE), notes=notes)


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        out[i] = np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR))
    return out
