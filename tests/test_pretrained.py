"""Pretrained models shipped in the package (issue #27 item 1): usable by name, verified, never run as code."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import pbc_originals_dir, script_module
from PIL import Image
from typer.testing import CliRunner

from edgeblood import pretrained
from edgeblood.cli import app
from edgeblood.data.bloodmnist import load_sample
from edgeblood.errors import EdgebloodError
from edgeblood.runs import open_run


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEBLOOD_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # a folder named like the model in the working directory would win
    return tmp_path / "home"


def test_every_shipped_model_matches_its_checksums_and_opens(home):
    assert "se-cnn-28" in pretrained.names()
    for name, entry in pretrained.index().items():
        run = open_run(name)
        assert run.dir == home / "pretrained" / name and run.model_name == entry["model"] and run.in_size == entry["size"]
        assert run.meta.domain and entry["test_accuracy"] >= 0.95, "shipped models are accurate and carry the domain check"
        assert "/work/" not in (run.dir / "run.json").read_text(), "no machine paths in the shipped metadata"


def test_a_damaged_package_file_is_refused_in_one_line(home, tmp_path, monkeypatch):
    fake = tmp_path / "pkg"
    shutil.copytree(pretrained.PACKAGE_DIR, fake)
    monkeypatch.setattr(pretrained, "PACKAGE_DIR", fake)
    with open(fake / "se-cnn-28" / "checkpoint.pt", "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(EdgebloodError, match="does not match its SHA-256"):
        open_run("se-cnn-28")


def test_a_changed_cached_copy_is_replaced_from_the_package(home):
    run_dir = pretrained.pretrained_run_dir("se-cnn-28")
    (run_dir / "domain.pt").write_bytes(b"not the profile")
    again = pretrained.pretrained_run_dir("se-cnn-28")
    assert pretrained.sha256(again / "domain.pt") == pretrained.index()["se-cnn-28"]["files"]["domain.pt"]


def test_predict_and_export_take_a_pretrained_name(home, tmp_path):
    images = load_sample(28).images("test")[:24]
    for i, img in enumerate(images):
        Image.fromarray(img).save(tmp_path / f"{i:02d}.png")
    out = tmp_path / "p.json"
    result = CliRunner().invoke(app, ["predict", "se-cnn-28", str(tmp_path), "--framing", "cell-crop", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["predictions"]
    labels = load_sample(28).labels("test")[:24]
    classes = open_run("se-cnn-28").classes
    assert np.mean([classes.index(r["predicted"]) == y for r, y in zip(sorted(rows, key=lambda r: r["file"]), labels)]) >= 0.85
    result = CliRunner().invoke(app, ["export", "se-cnn-28", "--target", "onnx"])
    assert result.exit_code == 0, result.output
    assert (home / "pretrained" / "se-cnn-28" / "export" / "model.onnx").is_file()
    assert not (pretrained.PACKAGE_DIR / "se-cnn-28" / "export").exists(), "the installed package stays untouched"


def test_models_marks_the_pretrained_ones():
    result = CliRunner().invoke(app, ["models", "--json"])
    rows = {r["name"]: r for r in json.loads(result.output)}
    shipped = {m["name"]: m["model"] for m in json.loads((pretrained.PACKAGE_DIR / pretrained.INDEX).read_text())["models"]}
    for model in set(shipped.values()):
        assert sorted(p["name"] for p in rows[model]["pretrained"]) == sorted(n for n, m in shipped.items() if m == model)
    assert {"se-cnn-28", "se-cnn-64"} <= set(shipped) and rows["vgg15"]["pretrained"] == []


@pytest.mark.realdata
def test_se_cnn_28_on_the_val_captures_with_no_training(home):
    captures = pbc_originals_dir("val")
    if captures is None:
        pytest.skip("pbc-originals/val not here")
    from edgeblood.evaluation.evaluate import evaluate_images

    entry = evaluate_images("se-cnn-28", captures, plots=False)
    assert entry["accuracy"] >= 0.96


def test_the_readme_lists_every_shipped_model_with_its_cards_figures(monkeypatch):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(root / "scripts"))
    script = script_module("package_pretrained")
    models = json.loads((pretrained.PACKAGE_DIR / pretrained.INDEX).read_text())["models"]
    readme = (root / "README.md").read_text()
    assert script.pretrained_table(models) in readme, "README is stale: python scripts/package_pretrained.py --render"
    for m in models:
        card = (pretrained.PACKAGE_DIR / m["name"] / "MODEL_CARD.md").read_text()
        assert f"{m['test_accuracy']:.2%}" in card and f"`{m['name']}`" in readme
