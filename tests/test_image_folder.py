"""Training and fine-tuning on a folder of labelled images (issue 17): layouts, splits, cache, bad input,
the run contract downstream, and fine-tuning on the real val originals."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from edgeblood.cli import app
from edgeblood.config import TrainConfig
from edgeblood.data.image_folder import load_folder_for_run, load_image_folder, stratified_split
from edgeblood.errors import EdgebloodError
from edgeblood.framing import Framing
from edgeblood.imageio import CELL_CROP
from edgeblood.runs import open_run
from edgeblood.training import train
from edgeblood.training.init_from import ParentInit, init_from_parent, set_backbone_frozen

# Three classes a small CNN tells apart only by shape: a disc, a ring and a bar, in random colours.
CLASSES = ("bar", "disc", "ring")


def _cell(kind: str, rng: np.random.Generator, side: int) -> np.ndarray:
    yy, xx = np.mgrid[:side, :side] / side - 0.5
    r = np.hypot(yy + rng.uniform(-0.05, 0.05), xx + rng.uniform(-0.05, 0.05))
    mask = {"disc": r < 0.3, "ring": (r > 0.2) & (r < 0.32), "bar": (np.abs(yy) < 0.08) & (np.abs(xx) < 0.35)}[kind]
    img = np.full((side, side, 3), 230, np.float64) + rng.normal(0, 6, (side, side, 3))
    img[mask] = rng.uniform(60, 180, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_folder(root: Path, per_class: int = 20, classes=CLASSES, splits: tuple[str, ...] | None = None, seed: int = 0) -> Path:
    """PNGs (and a few JPEGs) of mixed sizes in DIR/<class>/ or DIR/<split>/<class>/."""
    rng = np.random.default_rng(seed)
    for split in splits or (None,):
        for k, c in enumerate(classes):
            folder = root / split / c if split else root / c
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                ext = "jpg" if i % 5 == 0 else "png"
                Image.fromarray(_cell(CLASSES[k % 3], rng, int(rng.integers(40, 72)))).save(folder / f"{c}_{i:03d}.{ext}", quality=95)
    return root


@pytest.fixture(scope="module")
def cells(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("cells") / "cells")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("EDGEBLOOD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ------------------------------------------------------------------------------------- layouts
def test_class_folders_are_split_stratified_and_deterministically(cells, cache, tmp_path):
    data = load_image_folder(cells, 28, framing=CELL_CROP, split=(0.6, 0.2, 0.2), split_seed=3)
    assert data.classes == list(CLASSES) and data.layout == "classes"
    for split, share in (("train", 12), ("val", 4), ("test", 4)):
        assert np.bincount(data.labels(split), minlength=3).tolist() == [share] * 3, split
    # a copy elsewhere (another absolute path) gets the same split and the same content hash
    moved = shutil.copytree(cells, tmp_path / "elsewhere" / "cells")
    again = load_image_folder(moved, 28, framing=CELL_CROP, split=(0.6, 0.2, 0.2), split_seed=3)
    assert again.content_sha256 == data.content_sha256
    assert all(np.array_equal(again.images(s), data.images(s)) for s in ("train", "val", "test"))
    other_seed = load_image_folder(cells, 28, framing=CELL_CROP, split=(0.6, 0.2, 0.2), split_seed=4)
    assert not np.array_equal(other_seed.images("test"), data.images("test"))


def test_split_puts_every_class_in_every_split_even_when_small():
    labels = np.repeat([0, 1, 2], [3, 4, 50])
    keys = [f"f{i}.png" for i in range(len(labels))]
    out = stratified_split(keys, labels, (0.8, 0.1, 0.1), 0, ["a", "b", "c"])
    for c in range(3):
        assert sorted(set(out[labels == c].tolist())) == [0, 1, 2]
    assert np.bincount(out[labels == 2]).tolist() == [40, 5, 5]


def test_given_splits_and_csv_layouts(tmp_path, cache):
    given = make_folder(tmp_path / "given", per_class=4, splits=("train", "val", "test"))
    data = load_image_folder(given, 32, framing=CELL_CROP)
    assert data.split_spec == {"kind": "given"} and [len(data.labels(s)) for s in ("train", "val", "test")] == [12, 12, 12]
    with pytest.raises(EdgebloodError, match="drop --split"):
        load_image_folder(given, 32, framing=CELL_CROP, split=(0.8, 0.1, 0.1))

    files = sorted((tmp_path / "given").rglob("*.png"))
    rows = ["path,label,split"] + [f"{f.relative_to(tmp_path).as_posix()},{f.parent.name},{f.parent.parent.name}" for f in files]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    from_csv = load_image_folder(tmp_path / "labels.csv", 32, framing=CELL_CROP)
    assert from_csv.layout == "csv" and from_csv.classes == list(CLASSES)
    assert sum(len(from_csv.labels(s)) for s in ("train", "val", "test")) == len(files)
    (tmp_path / "mixed.csv").write_text("\n".join(rows[:3] + [rows[3].rsplit(",", 1)[0]]) + "\n")
    with pytest.raises(EdgebloodError, match="some rows have a split column"):
        load_image_folder(tmp_path / "mixed.csv", 32, framing=CELL_CROP)


# ------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("damage, message", [
    (lambda r: (r / "empty").mkdir(), "empty: class folder holds no images"),
    (lambda r: [p.unlink() for p in sorted((r / "bar").iterdir())[1:]], "class 'bar' has 1 image; a train/val/test split needs at least 3"),
    (lambda r: (r / "bar").rename(r / "train"), "has train folders but no val, test"),
])
def test_bad_folders_are_one_clear_error(tmp_path, cache, damage, message):
    root = make_folder(tmp_path / "cells", per_class=5)
    damage(root)
    with pytest.raises(EdgebloodError, match=message.replace("(", r"\(")):
        load_image_folder(root, 28, framing=CELL_CROP)


def test_class_missing_from_a_split(tmp_path, cache):
    root = make_folder(tmp_path / "given", per_class=3, splits=("train", "val", "test"))
    shutil.rmtree(root / "test" / "ring")
    data = load_image_folder(root, 28, framing=CELL_CROP)
    assert any("the test split has no images of ring" in n for n in data.notes)
    shutil.rmtree(root / "train" / "disc")
    with pytest.raises(EdgebloodError, match="disc have no readable train images"):
        load_image_folder(root, 28, framing=CELL_CROP)


def test_unreadable_non_image_and_duplicate_files_are_named_and_counted(tmp_path, cache):
    root = make_folder(tmp_path / "given", per_class=4, splits=("train", "val", "test"))
    (root / "train" / "disc" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (root / "train" / "disc" / "README.txt").write_text("scanner settings")
    shutil.copy(root / "train" / "ring" / "ring_001.png", root / "test" / "ring" / "copy_of_train.png")
    data = load_image_folder(root, 28, framing=CELL_CROP)
    meta = data.metadata()
    assert meta["skipped_files"] == 1 and "broken.png" in meta["skipped_examples"][0]
    assert meta["non_image_files"] == 1 and meta["duplicates_across_splits"] == 1
    assert data.duplicates == [("train/ring/ring_001.png", "test/ring/copy_of_train.png")]
    assert any(n.startswith("LEAKAGE: 1 file(s)") for n in data.notes)
    assert len(data.labels("train")) == 12  # the broken file is not in the split


def test_framed_arrays_are_cached_and_a_bad_cache_is_rebuilt(cells, cache):
    first = load_image_folder(cells, 28, framing=CELL_CROP)
    assert "cached in" in first.notes[0]
    second = load_image_folder(cells, 28, framing=CELL_CROP)
    assert "read from" in second.notes[0] and np.array_equal(second.images("train"), first.images("train"))
    other_framing = load_image_folder(cells, 28, framing=Framing.parse("fraction:0.8"))
    assert "cached in" in other_framing.notes[0]
    [cache_file] = [p for p in (cache / "image-folders").iterdir() if p.name in first.notes[0]]
    cache_file.write_bytes(b"not an npz")
    rebuilt = load_image_folder(cells, 28, framing=CELL_CROP)
    assert "cached in" in rebuilt.notes[0] and np.array_equal(rebuilt.images("train"), first.images("train"))


def test_cli_bad_data_is_one_line(tmp_path):
    """The CLI entry point prints an EdgebloodError as one line (tests/test_cli_faults.py); here: which error."""
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "nowhere"), "--epochs", "1"])
    assert isinstance(result.exception, EdgebloodError) and "nowhere: no such folder or file" in str(result.exception)
    result = CliRunner().invoke(app, ["train", "--split", "0.8,0.1,0.1", "--sample", "--epochs", "1"])
    assert isinstance(result.exception, EdgebloodError) and "--split divides an image folder; it needs --data DIR" in str(result.exception)
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------- training end to end
@pytest.fixture(scope="module")
def folder_run(cells, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("folder-runs")
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEBLOOD_CACHE", str(out / "cache"))
    try:
        cfg = TrainConfig(model="se-cnn", size=28, data=str(cells), split=[0.6, 0.2, 0.2], epochs=12, batch_size=16, out_dir=str(out),
                          framing="cell-crop", model_cfg={"widths": [16, 32, 64, 128]}, threads=2)
        return train(cfg)
    finally:
        mp.undo()


def test_a_folder_run_has_the_full_run_contract(folder_run, cells):
    run = open_run(folder_run)
    assert run.classes == list(CLASSES) and run.framing == CELL_CROP
    ds = run.metadata["dataset"]
    assert ds["source"] == "folder" and ds["files"] == 60 and ds["split_sizes"] == {"train": 36, "val": 12, "test": 12}
    assert ds["split"] == {"kind": "stratified", "ratios": [0.6, 0.2, 0.2], "seed": 0} and len(ds["content_sha256"]) == 64
    # normalisation statistics of the folder's own train split, not BloodMNIST's
    data = load_folder_for_run(run.metadata)
    x = data.images("train").reshape(-1, 3) / 255.0
    assert run.mean == pytest.approx(x.mean(0).tolist(), abs=1e-5)
    test = run.metrics()["test"]
    assert test["num_samples"] == 12 and test["data"]["source"] == "folder"
    assert test["accuracy"] > 0.6, "three shapes should be learnt in 12 epochs"  # chance is 0.33


def test_downstream_commands_read_a_folder_run(folder_run, copy_run, tmp_path, cells):
    run_dir = copy_run(folder_run)
    result = CliRunner().invoke(app, ["evaluate", str(run_dir), "--split", "val", "--no-plots"])
    assert result.exit_code == 0, result.output
    assert "image folder" in result.output and "12 images" in result.output
    result = CliRunner().invoke(app, ["export", str(run_dir), "--target", "onnx"])
    assert result.exit_code == 0, result.output
    art = [a for a in open_run(run_dir).manifest()["artifacts"] if a["path"].endswith(".onnx")][0]
    assert art["parity"]["status"] == "ok"
    assert "Image folder" in (run_dir / "export" / "MODEL_CARD.md").read_text()
    result = CliRunner().invoke(app, ["predict", str(run_dir / "export" / "model.onnx"), str(cells / "disc"), "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert len(rows) == 21 and sum(",disc," in r for r in rows) >= 12


def test_a_changed_folder_is_noted_when_evaluating(folder_run, copy_run, cells, tmp_path, monkeypatch):
    run_dir = copy_run(folder_run)
    moved = shutil.copytree(cells, tmp_path / "cells-now")
    run = open_run(run_dir)
    run.metadata["dataset"]["file"] = str(moved)
    run.save()
    Image.fromarray(np.full((50, 50, 3), 200, np.uint8)).save(moved / "ring" / "late.png")
    data = load_folder_for_run(open_run(run_dir).metadata)
    assert any("the folder changed since training (60 files then, 61 now" in n for n in data.notes)
    shutil.rmtree(moved)
    with pytest.raises(EdgebloodError, match="which is not here"):
        load_folder_for_run(open_run(run_dir).metadata)


# ------------------------------------------------------------------------------------ fine-tuning
def test_other_classes_reinitialise_the_head_and_copy_matching_rows(sample_run, tmp_path, cache):
    parent = open_run(sample_run)
    lab = make_folder(tmp_path / "lab", per_class=6, classes=("Basophils", "platelet", "smudge cell"))
    config = {k: v for k, v in parent.metadata["model"]["config"].items() if k not in ("name", "num_classes", "in_size")}
    cfg = TrainConfig(model="se-cnn", size=28, data=str(lab), init=str(sample_run), epochs=1, batch_size=8, out_dir=str(tmp_path / "runs"),
                      framing="cell-crop", model_cfg=config)
    run = open_run(train(cfg, evaluate=False))
    record = run.metadata["training"]["parent"]
    assert record["loaded"] == "backbone" and record["copied_head_classes"] == ["Basophils", "platelet"]
    assert record["weights_sha256"] and record["run"] == str(Path(sample_run).resolve())
    assert run.classes == ["Basophils", "platelet", "smudge cell"]


def test_same_classes_load_every_weight_and_foreign_shapes_are_refused(sample_run):
    parent = open_run(sample_run)
    from edgeblood.models import create

    config = {k: v for k, v in parent.metadata["model"]["config"].items() if k not in ("name", "num_classes", "in_size")}
    child = create("se-cnn", num_classes=8, in_size=28, **config)
    record = init_from_parent(child, parent, [c.upper() for c in parent.classes])
    assert record.loaded == "all" and "all weights" in ParentInit(**record.to_dict()).message()
    assert all(torch.equal(a, b) for a, b in zip(child.state_dict().values(), parent.model.state_dict().values()))
    wider = create("se-cnn", num_classes=8, in_size=28)
    with pytest.raises(EdgebloodError, match="does not fit this model"):
        init_from_parent(wider, parent, parent.classes)


def test_cli_init_keeps_the_parent_architecture(sample_run, cells):
    result = CliRunner().invoke(app, ["train", "--data", str(cells), "--init", str(sample_run), "--model", "mlnn", "--epochs", "1"])
    assert isinstance(result.exception, EdgebloodError) and "is a se-cnn run, not mlnn; drop --model" in str(result.exception)


def test_frozen_backbone_trains_only_the_head(sample_run):
    model = open_run(sample_run).model
    head = "head.1"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    set_backbone_frozen(model, head, frozen=True)
    opt = torch.optim.AdamW([p for p in model.parameters()], lr=1e-2)
    loss = model(torch.randn(8, 3, 28, 28)).logsumexp(1).mean()
    loss.backward()
    opt.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith(head + ".") for k in changed), changed
    set_backbone_frozen(model, head, frozen=False)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.realdata
def test_fine_tuning_on_the_val_originals_beats_the_bloodmnist_model(data_dir, originals_dir, tmp_path, monkeypatch):
    """A one-epoch BloodMNIST run, then 15 epochs on 60 % of the originals: better on the held-out 20 %
    (measured: 85.96 % -> 88.30 %; 6 epochs at 1e-3 moved val 86.5 -> 89.5 % but left test level)."""
    from edgeblood.evaluation.predict import predict_probs

    monkeypatch.setenv("EDGEBLOOD_CACHE", str(tmp_path / "cache"))
    base = train(TrainConfig(model="se-cnn", size=28, epochs=1, data_dir=str(data_dir), out_dir=str(tmp_path), name="base", threads=2,
                             model_cfg={"widths": [16, 32, 64, 128]}), evaluate=False)
    parent = open_run(base)
    split = [0.6, 0.2, 0.2]
    held_out = load_image_folder(originals_dir, 28, framing=parent.framing, split=split, reference_classes=parent.classes)
    before = float((predict_probs(parent.model, held_out.images("test"), parent.mean, parent.std).argmax(1) == held_out.labels("test")).mean())
    tuned = train(TrainConfig(model="se-cnn", size=28, epochs=15, lr=3e-3, data=str(originals_dir), split=split, init=str(base), out_dir=str(tmp_path),
                              name="tuned", threads=2, model_cfg={"widths": [16, 32, 64, 128]}))
    run = open_run(tuned)
    after = run.metrics()["test"]["accuracy"]
    assert run.metadata["training"]["parent"]["loaded"] == "all" and run.framing == parent.framing
    assert run.metrics()["test"]["num_samples"] == len(held_out.labels("test")) == 342
    assert after > before + 0.005, f"fine-tuned {after:.4f} vs BloodMNIST model {before:.4f} on the held-out originals"
