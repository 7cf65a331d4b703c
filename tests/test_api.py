"""The Python API (issue #27 item 2): edgeblood.train / load / Classifier / Run, the recipe applied in the
library (CLI and Python train the same weights), and the typed error family."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import edgeblood
from edgeblood.data.bloodmnist import load_sample
from edgeblood.errors import (
    ConfigError,
    DataError,
    EdgebloodError,
    ExportError,
    MissingExtraError,
    ModelError,
    RunError,
    missing_extra,
)

WIDTHS = [8, 16, 32, 64]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """Pretrained names resolve to a copy under $EDGEBLOOD_HOME: a temporary one, never the user's cache."""
    monkeypatch.setenv("EDGEBLOOD_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # a folder named like the model in the working directory would win
    return tmp_path / "home"


@pytest.fixture
def pngs(tmp_path):
    """16 embedded-sample test images (28 px single-cell crops) saved as PNG, with their labels."""
    data = load_sample(28)
    images, labels = data.images("test")[:16], data.labels("test")[:16]
    folder = tmp_path / "cells"
    folder.mkdir()
    paths = []
    for i, img in enumerate(images):
        paths.append(folder / f"{i:02d}.png")
        Image.fromarray(img).save(paths[-1])
    return paths, images, labels


def test_import_edgeblood_stays_light():
    """`import edgeblood` (and so the CLI's --help) must not import torch; the API loads on first use."""
    code = ("import sys, edgeblood; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert edgeblood.__version__; edgeblood.Classifier; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert {"train", "load", "Classifier", "Run"} <= set(dir(edgeblood))


def test_quickstart_on_a_pretrained_name(home, pngs):
    paths, images, labels = pngs
    clf = edgeblood.Classifier("se-cnn-28", framing="cell-crop")
    preds = clf.predict([str(p) for p in paths])
    assert len(preds) == len(paths) and [p.file for p in preds] == [str(p) for p in paths]
    names = clf.classes
    accuracy = np.mean([names.index(p.predicted) == int(y) for p, y in zip(preds, labels)])
    assert accuracy >= 0.8, accuracy
    first = preds[0]
    assert 0 < first.probability <= 1 and len(first.top_k) == 3 and first.top_k[0] == (first.predicted, first.probability)
    assert all(isinstance(p.outside, bool) for p in preds), "the pretrained run carries the domain check"
    # the same images as arrays, a batch array, PIL images and the folder give the same answers
    as_arrays = clf.predict(list(images))
    assert [p.predicted for p in as_arrays] == [p.predicted for p in preds]
    assert [p.predicted for p in clf.predict(np.stack(images))] == [p.predicted for p in preds]
    assert [p.predicted for p in clf.predict([Image.open(p) for p in paths])] == [p.predicted for p in preds]
    assert [p.predicted for p in clf.predict(paths[0].parent)] == [p.predicted for p in preds]
    single = clf.predict(images[0])
    assert len(single) == 1 and single[0].probability == pytest.approx(as_arrays[0].probability, abs=1e-6)


def test_classifier_frames_with_the_models_contract_by_default(home):
    clf = edgeblood.Classifier(edgeblood.load("se-cnn-28"))
    assert clf.framing == clf.model.framing and clf.input_size == 28
    assert edgeblood.Classifier("se-cnn-28", framing="cell-crop").framing.kind == "square"


def test_cli_and_python_train_bit_identical_weights(tmp_path):
    """Same seed and recipe -> the same weights, whether trained by `edgeblood train` or edgeblood.train()."""
    from edgeblood.cli import app

    args = ["train", "--sample", "--epochs", "1", "--batch-size", "64", "--precision", "fp32", "--threads", "1", "--seed", "3",
            "--model-opt", f"widths={json.dumps(WIDTHS)}", "--no-evaluate", "--out", str(tmp_path), "--name", "cli"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    api = edgeblood.train("se-cnn", 28, "default", sample=True, epochs=1, batch_size=64, precision="fp32", threads=1, seed=3,
                          model_cfg={"widths": WIDTHS}, evaluate=False, out_dir=str(tmp_path), name="api")
    cli = edgeblood.load(tmp_path / "cli")
    assert isinstance(api, edgeblood.Run) and api.dir == tmp_path / "api"
    config = {k: v for k, v in cli.metadata["training"]["config"].items() if k != "name"}
    assert config == {k: v for k, v in api.metadata["training"]["config"].items() if k != "name"}
    assert config["channels_last"] is True and config["augment"]["jpeg_prob"] == 0.5, "the default recipe was applied"
    a, b = cli.model.state_dict(), api.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


def test_config_from_recipe_layers_the_recipe_under_the_callers_choices():
    from edgeblood.config import FINETUNE_LR_FACTOR, TrainConfig, config_from_recipe

    cfg = config_from_recipe("se-cnn", 28, epochs=2, augment={"jpeg_prob": 0.0, "crop_area": (0.8, None)})
    assert cfg.channels_last and cfg.epochs == 2 and cfg.augment.jpeg_prob == 0.0 and cfg.augment.stain == 0.05
    assert tuple(cfg.augment.crop_area) == (0.8, 1.1), "LOW alone keeps the recipe's upper bound"
    assert not TrainConfig(recipe="default").channels_last, "a bare TrainConfig does not apply its recipe"
    assert config_from_recipe(init="runs/x").lr == pytest.approx(3e-3 * FINETUNE_LR_FACTOR)
    assert config_from_recipe(init="runs/x", lr=1e-3).lr == 1e-3
    assert not config_from_recipe("resnet18").channels_last
    with pytest.raises(ConfigError, match="unknown training option"):
        config_from_recipe(epoch=3)
    with pytest.raises(ConfigError, match="unknown augmentation option"):
        config_from_recipe(augment={"rotate": True})
    with pytest.raises(ConfigError, match="unknown recipe"):
        config_from_recipe(recipe="fastest")


def test_train_export_and_classify_through_the_api(tmp_path, pngs):
    pytest.importorskip("onnxruntime")
    run = edgeblood.train(sample=True, epochs=1, batch_size=64, model_cfg={"widths": WIDTHS}, precision="fp32", threads=1,
                          evaluate=False, out_dir=str(tmp_path), name="api")
    entry = run.evaluate("val")
    assert entry["split"] == "val" and 0 <= entry["accuracy"] <= 1
    report = run.export("onnx", parity_images=32, capture=False)
    onnx = run.export_dir / "model.onnx"
    assert onnx.is_file() and [a["target"] for a in report.artifacts] == ["onnx"]
    paths = [str(p) for p in pngs[0]]
    from_onnx = edgeblood.Classifier(onnx, framing="cell-crop").predict(paths)
    from_torch = run.classifier(framing="cell-crop").predict(paths)
    assert [p.predicted for p in from_onnx] == [p.predicted for p in from_torch]
    with pytest.raises(EdgebloodError, match="already exist"):
        run.export("onnx")


def test_errors_are_catchable_by_kind(tmp_path, home):
    for kind in (ConfigError, DataError, RunError, ModelError, ExportError, MissingExtraError):
        assert issubclass(kind, EdgebloodError)
    with pytest.raises(RunError, match="does not exist"):
        edgeblood.load(tmp_path / "no-such-run")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="no checkpoint.pt"):
        edgeblood.load(tmp_path / "empty")
    with pytest.raises(ModelError, match="does not exist"):
        edgeblood.Classifier(tmp_path / "missing.onnx")
    clf = edgeblood.Classifier("se-cnn-28")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        clf.predict([broken])
    with pytest.raises(DataError, match="smaller than the model's"):
        clf.predict(np.zeros((20, 20, 3), np.uint8))  # a crop under the capture window needs framing="cell-crop"
    with pytest.raises(DataError, match="pass a file path"):
        clf.predict([3.5])
    pretrained = edgeblood.load("se-cnn-28")
    with pytest.raises(EdgebloodError, match="nothing to do"):
        pretrained.compress(quantize=())  # options are checked before any work, as in `edgeblood compress`
    with pytest.raises(EdgebloodError, match="no exported artifacts"):
        pretrained.bench(out=tmp_path / "bench", batches=[1], threads=[1])
    err = missing_extra("openvino", "openvino")
    assert isinstance(err, MissingExtraError) and err.extra == "openvino" and 'edgeblood[openvino]' in str(err)


def test_the_first_releases_quiet_switch_still_works_with_a_deprecation_warning(tmp_path, capsys):
    with pytest.warns(DeprecationWarning, match="progress=True"):
        run = edgeblood.train(sample=True, epochs=1, batch_size=64, model_cfg={"widths": WIDTHS}, precision="fp32", threads=1,
                              evaluate=False, out_dir=str(tmp_path), name="quiet", quiet=True)
    assert (run.dir / "checkpoint.pt").is_file() and "epoch" not in capsys.readouterr().out
