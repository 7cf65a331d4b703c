"""Regenerate the embedded sample (edgeblood/data/sample/) from the official 28 px BloodMNIST file.

    python scripts/make_sample.py ../shared/data/bloodmnist.npz

Stratified: a fixed number of images per class from each official split, chosen with a fixed seed,
so the file is reproducible byte for byte.
"""

import sys
from pathlib import Path

import numpy as np

PER_CLASS = {"train": 40, "val": 12, "test": 12}


def main(src: str) -> None:
    rng = np.random.default_rng(20261122)
    out, index = {}, {}
    with np.load(src, allow_pickle=False) as npz:
        for split, per_class in PER_CLASS.items():
            labels = npz[f"{split}_labels"].reshape(-1)
            chosen = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(8)]))
            out[f"{split}_images"] = npz[f"{split}_images"][chosen]
            out[f"{split}_labels"] = npz[f"{split}_labels"][chosen]
            index[f"{split}_index"] = chosen.astype(np.int32)  # positions in the official split
    dest = Path(__file__).resolve().parents[1] / "edgeblood" / "data" / "sample" / "bloodmnist_sample_28.npz"
    dest.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(dest, **out, **index)
    print(f"wrote {dest} ({dest.stat().st_size} bytes)")


if __name__ == "__main__":
    main(sys.argv[1])
