"""Evaluating a run on labelled image files: class folders or a CSV, framed like training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeblood.data.labelled_images import read_labelled_images
from edgeblood.errors import EdgebloodError
from edgeblood.evaluation.evaluate import evaluate_images
from edgeblood.evaluation.predict import predict_probs
from edgeblood.imageio import CELL_CROP
from edgeblood.runs import open_run
from exported_sample import sample_images

FOLDERS = ["basophil", "Eosinophils", "erythroblast", "immature_granulocyte", "lymphocyte", "monocyte", "neutrophil", "platelet"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """The sample's 16 test images as PNGs in class folders spelled the way labs spell them, plus junk."""
    root = tmp_path_factory.mktemp("labelled")
    images, labels = sample_images()
    for i, (img, label) in enumerate(zip(images, labels)):
        (root / FOLDERS[label]).mkdir(exist_ok=True)
        Image.fromarray(img).save(root / FOLDERS[label] / f"{i:02d}.png")
    (root / "platelet" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (root / "platelet" / "notes.txt").write_text("not an image")
    return root


def test_folder_layout_matches_class_names_loosely(labelled, sample_run):
    run = open_run(sample_run)
    items = read_labelled_images(labelled, run.classes, run.metadata.get("class_names_full"))
    _, labels = sample_images()
    assert items.layout == "folders" and len(items.files) == 17  # 16 + the broken PNG (decoding says it is broken)
    assert sorted(items.labels.tolist()) == sorted(labels.tolist() + [7])


def test_evaluate_images_equals_the_array_path(labelled, sample_run, copy_run):
    run = open_run(copy_run(sample_run))
    entry = evaluate_images(run, labelled, framing=CELL_CROP, plots=True)
    images, labels = sample_images()
    probs = predict_probs(run.model, images, run.mean, run.std)
    assert entry["split"] == "images-labelled0" or entry["split"].startswith("images-labelled")
    assert entry["num_samples"] == 16 and entry["accuracy"] == pytest.approx(float((probs.argmax(1) == labels).mean()))
    assert [s["file"].endswith("broken.png") for s in entry["data"]["skipped_files"]] == [True]
    assert entry["data"]["framing"]["kind"] == "square" and "framed as: largest centred square" in entry["data"]["description"]
    stored = json.loads((run.dir / "metrics.json").read_text())
    assert entry["split"] in stored and "test" in stored  # beside the official splits, not instead of them
    assert any(p.startswith(f"plots/{entry['split']}") or entry["split"] in p for p in entry["plots"])


def test_csv_layout_with_names_and_indices(labelled, sample_run, copy_run, tmp_path):
    run = open_run(copy_run(sample_run))
    rows = ["path,label"]
    for i, f in enumerate(sorted(labelled.glob("*/*.png"))):
        if f.name != "broken.png":
            rows.append(f"{f.relative_to(labelled)},{f.parent.name if i % 2 else FOLDERS.index(f.parent.name)}")
    csv_path = labelled / "labels.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    entry = evaluate_images(run, csv_path, framing=CELL_CROP, plots=False)
    assert entry["num_samples"] == 16 and entry["data"]["layout"] == "csv"


@pytest.mark.parametrize("case, expect", [
    ("unknown_folder", "match no class of the model"),
    ("no_folders", "no class sub-folders"),
    ("bad_label", "is no class of the model"),
    ("missing", "no such folder or file"),
])
def test_bad_layouts_are_one_clear_line(case, expect, sample_run, tmp_path):
    run = open_run(sample_run)
    if case == "unknown_folder":
        (tmp_path / "blasts").mkdir()
        source = tmp_path
    elif case == "no_folders":
        source = tmp_path
    elif case == "bad_label":
        Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(tmp_path / "a.png")
        (tmp_path / "l.csv").write_text("path,label\na.png,blast\n")
        source = tmp_path / "l.csv"
    else:
        source = tmp_path / "nope"
    with pytest.raises(EdgebloodError, match=expect):
        read_labelled_images(source, run.classes)


def test_cli_evaluate_images_prints_framing_and_table(labelled, sample_run, copy_run):
    run_dir = copy_run(sample_run)
    res = subprocess.run([sys.executable, "-m", "edgeblood", "evaluate", str(run_dir), "--images", str(labelled), "--framing", "cell-crop",
                          "--no-plots"], capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    assert "framed as: largest centred square" in res.stdout and "16 images" in res.stdout
    assert "broken.png" in res.stderr


@pytest.mark.realdata
def test_pbc_originals_evaluate_with_the_models_framing(originals_dir, sample_run, copy_run):
    """A few real captures through the default framing: every file reads and frames (window fits)."""
    run = open_run(copy_run(sample_run))
    entry = evaluate_images(run, originals_dir, plots=False)
    assert entry["num_samples"] == 1712 and not entry["data"]["skipped_files"]
    assert "200x200 px window" in entry["data"]["description"]


def test_explain_and_evaluate_refuse_output_paths_under_files(sample_run, copy_run, labelled, tmp_path):
    run_dir = copy_run(sample_run)
    (tmp_path / "afile").write_text("x")
    env = {**__import__("os").environ, "COLUMNS": "200"}
    res = subprocess.run([sys.executable, "-m", "edgeblood", "explain", str(run_dir), str(labelled), "--framing", "cell-crop",
                          "--out", str(tmp_path / "afile" / "ex")], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 2 and "is a file, so nothing can be written below it" in res.stderr and "Traceback" not in res.stderr
    import shutil

    shutil.rmtree(run_dir / "plots", ignore_errors=True)
    (run_dir / "plots").write_text("a file where the plots folder should be")
    res = subprocess.run([sys.executable, "-m", "edgeblood", "evaluate", str(run_dir)], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 2 and "is a file, not a folder" in res.stderr and "Traceback" not in res.stderr
