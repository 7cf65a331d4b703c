"""Data loading, validation, download errors, augmentation, class weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeblood.config import AugmentConfig
from edgeblood.data import load_bloodmnist, md5sum
from edgeblood.data.augment import augment_batch, random_resized_crop
from edgeblood.data.batches import BatchStream, balanced_class_weights, channel_stats, to_tensor_nchw
from edgeblood.data.bloodmnist import load_sample
from edgeblood.data.download import download_bloodmnist
from edgeblood.errors import EdgebloodError
from edgeblood.info import CLASS_NAMES, FILES, SPLIT_SIZES


def test_info_matches_medmnist():
    medmnist = pytest.importorskip("medmnist")
    info = medmnist.INFO["bloodmnist"]
    assert tuple(info["label"][str(i)] for i in range(8)) == CLASS_NAMES
    assert info["n_samples"] == SPLIT_SIZES
    assert FILES[28]["url"] == info["url"] and FILES[28]["md5"] == info["MD5"]
    for size in (64, 128, 224):
        assert FILES[size]["url"] == info[f"url_{size}"] and FILES[size]["md5"] == info[f"MD5_{size}"]


def test_sample_is_stratified_and_valid():
    data = load_sample(28)
    assert data.is_sample and "SAMPLE" in data.describe()
    for split, per_class in (("train", 40), ("val", 12), ("test", 12)):
        x, y = data.images(split), data.labels(split)
        assert x.dtype == np.uint8 and x.shape[1:] == (28, 28, 3)
        assert np.bincount(y, minlength=8).tolist() == [per_class] * 8


def test_sample_resizes_for_other_sizes():
    data = load_sample(64)
    assert data.images("val").shape[1:] == (64, 64, 3)
    assert any("upsampled" in n for n in data.notes)


def test_missing_file_names_places_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEBLOOD_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setattr("edgeblood.data.bloodmnist.MEDMNIST_DEFAULT_DIR", tmp_path / "medmnist")
    with pytest.raises(EdgebloodError) as err:
        load_bloodmnist(28, data_dir=tmp_path)
    msg = str(err.value)
    assert "bloodmnist.npz" in msg and str(tmp_path) in msg and "--download" in msg and "\n" not in msg


def test_sample_auto_falls_back(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGEBLOOD_DATA", raising=False)
    monkeypatch.setattr("edgeblood.data.bloodmnist.MEDMNIST_DEFAULT_DIR", tmp_path / "medmnist")
    assert load_bloodmnist(28, data_dir=tmp_path, sample="auto").is_sample


def _write_fake(path, size=28, n=10, label_max=7, dtype=np.uint8):
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, size, size, 3)).astype(dtype)
        arrays[f"{split}_labels"] = rng.integers(0, label_max + 1, (n, 1)).astype(np.uint8)
    np.savez(path, **arrays)


def test_wrong_md5_is_refused_unless_told(tmp_path):
    _write_fake(tmp_path / "bloodmnist.npz")
    with pytest.raises(EdgebloodError, match="MD5") as err:
        load_bloodmnist(28, data_dir=tmp_path)
    # the fix it names is one the CLI has (no `--no-verify-md5` exists; it was named before)
    assert "--download" in str(err.value) and "--no-verify-md5" not in str(err.value)
    data = load_bloodmnist(28, data_dir=tmp_path, verify_md5=False)
    assert data.variant == "unverified" and len(data.labels("train")) == 10


def test_corrupt_and_malformed_files(tmp_path):
    (tmp_path / "bloodmnist.npz").write_bytes(b"not a zip")
    with pytest.raises(EdgebloodError, match="not a readable npz"):
        load_bloodmnist(28, data_dir=tmp_path, verify_md5=False)
    _write_fake(tmp_path / "bloodmnist.npz", label_max=9)
    with pytest.raises(EdgebloodError, match="labels must be"):
        load_bloodmnist(28, data_dir=tmp_path, verify_md5=False)
    _write_fake(tmp_path / "bloodmnist.npz", size=32)
    with pytest.raises(EdgebloodError, match="expected uint8 images"):
        load_bloodmnist(28, data_dir=tmp_path, verify_md5=False)


def test_unsupported_size():
    with pytest.raises(EdgebloodError, match="28, 64, 128, 224"):
        load_bloodmnist(32)


def test_offline_download_fails_cleanly(tmp_path, monkeypatch):
    # A URL on a closed local port: the real download code path, no network needed.
    monkeypatch.setitem(FILES, 28, dict(FILES[28], url="http://127.0.0.1:9/bloodmnist.npz"))
    with pytest.raises(EdgebloodError, match="could not download"):
        download_bloodmnist(28, tmp_path, timeout=2)
    assert not list(tmp_path.iterdir()), "no partial file may be left behind"


@pytest.mark.realdata
def test_real_files_load_and_verify(data_dir):
    d28 = load_bloodmnist(28, data_dir=data_dir)
    assert d28.variant == "official" and d28.md5 == FILES[28]["md5"]
    assert {s: len(d28.labels(s)) for s in ("train", "val", "test")} == SPLIT_SIZES
    if (data_dir / "bloodmnist_64.npz").is_file():
        d64 = load_bloodmnist(64, data_dir=data_dir)
        assert d64.variant == "regenerated" and "regenerated" in d64.describe()
        assert np.array_equal(d64.labels("test"), d28.labels("test")), "64 px file must keep the official order"


def test_md5sum_known_value(tmp_path):
    import hashlib

    payload = bytes(range(256)) * 5000  # spans several read chunks
    (tmp_path / "f").write_bytes(payload)
    assert md5sum(tmp_path / "f", chunk=4096) == hashlib.md5(payload).hexdigest()


def test_augmentations_preserve_shape_range_and_content():
    x = torch.rand(16, 3, 28, 28)
    g = torch.Generator().manual_seed(0)
    out = augment_batch(x, AugmentConfig(color_jitter=0.2), g)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    # rot90 + flips only permute pixels: the multiset of values per image is unchanged
    out = augment_batch(x, AugmentConfig(crop_area=(1.0, 1.0)), g)
    assert torch.allclose(out.flatten(1).sort(1).values, x.flatten(1).sort(1).values)
    assert not torch.allclose(out, x)


def test_random_resized_crop_full_area_is_identity():
    x = torch.rand(4, 3, 28, 28)
    out = random_resized_crop(x, (1.0, 1.0), (1.0, 1.0))
    assert torch.allclose(out, x, atol=1e-5)


def test_class_weights_match_sklearn_formula():
    labels = np.array([0, 0, 0, 1, 2, 2])
    w = balanced_class_weights(labels, 3)
    assert torch.allclose(w, torch.tensor([6 / (3 * 3), 6 / (3 * 1), 6 / (3 * 2)]))


def test_channel_stats_and_batches():
    data = load_sample(28)
    mean, std = channel_stats(data.images("train"))
    assert all(0 < m < 1 for m in mean) and all(0 < s < 0.5 for s in std)
    x, y = to_tensor_nchw(data.images("train")), torch.from_numpy(data.labels("train"))
    stream = BatchStream(x, y, 64, augment=None, seed=1)
    seen = torch.cat([yb for _, yb in stream])
    assert sorted(seen.tolist()) == sorted(y.tolist())  # one epoch = every sample once
    shards = [torch.cat([yb for _, yb in BatchStream(x, y, 64, rank=r, world_size=2, seed=1)]) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == len(y) // 2
