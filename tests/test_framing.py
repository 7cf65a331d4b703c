"""edgeblood.framing: the field of view of the training images, applied to captures of any size."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from edgeblood.errors import EdgebloodError
from edgeblood.framing import Framing, bloodmnist_framing, framing_of, jpeg_round_trip
from edgeblood.imageio import load_image


def _capture(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _bilinear(a: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.BILINEAR))


@pytest.mark.parametrize(("h", "w", "top", "left"), [(363, 360, 82, 80), (369, 366, 84, 83), (360, 360, 80, 80), (360, 359, 80, 80)])
def test_window_is_fixed_in_source_pixels_with_rounded_offsets(h, w, top, left):
    """A 366x369 capture still gives a 200 px window (not 203), offsets rounded half to even."""
    cap = _capture(h, w)
    out = Framing(kind="window", window_px=200).apply(cap, 64)
    np.testing.assert_array_equal(out, _bilinear(cap[top : top + 200, left : left + 200], 64))


def test_window_larger_than_image_is_one_clear_error_naming_the_fix(tmp_path):
    Image.fromarray(_capture(28, 28)).save(tmp_path / "small.png")
    with pytest.raises(EdgebloodError, match=r"small\.png: image is 28x28 px, smaller than the model's 200x200 px capture window.*--framing cell-crop"):
        load_image(tmp_path / "small.png", 28, framing=bloodmnist_framing(28))


def test_fraction_and_square_kinds():
    cap = _capture(100, 120)
    np.testing.assert_array_equal(Framing(kind="fraction", window_px=None, fraction=0.5).apply(cap, 50), cap[25:75, 35:85])
    np.testing.assert_array_equal(Framing(kind="square", window_px=None).apply(cap, 100), cap[:, 10:110])


def test_jpeg_step_of_the_official_28px_file_only():
    assert bloodmnist_framing(28).jpeg_quality == 75
    assert bloodmnist_framing(28, "regenerated").jpeg_quality is None
    assert bloodmnist_framing(64, "regenerated").jpeg_quality is None
    smooth = _bilinear(_capture(8, 8), 28)
    out = Framing(kind="square", window_px=None, jpeg_quality=75).apply(smooth, 28)
    np.testing.assert_array_equal(out, jpeg_round_trip(smooth, 75))
    assert not np.array_equal(out, smooth)


@pytest.mark.parametrize("text", ["model", "cell-crop", "window:200", "fraction:0.5556", "window:180+jpeg:90", "model+no-jpeg"])
def test_parse_round_trips_through_short(text):
    model = bloodmnist_framing(28)
    parsed = Framing.parse(text, model)
    assert Framing.parse(parsed.short(), model) == parsed


def test_parse_jpeg_step_only_with_the_models_framing_or_when_asked():
    model = bloodmnist_framing(28)
    assert Framing.parse("model", model) == model
    assert Framing.parse("window:200", model) == Framing.parse("model+no-jpeg", model)
    assert Framing.parse("window:220", model).jpeg_quality is None
    assert Framing.parse("model+no-jpeg", model).jpeg_quality is None
    assert Framing.parse("cell-crop+jpeg:60", model).jpeg_quality == 60


@pytest.mark.parametrize("bad", ["window:0", "window:abc", "fraction:0", "fraction:1.5", "zoom:2", "model+sharpen", "model+jpeg:101"])
def test_parse_rejects_bad_options_with_the_fix(bad):
    with pytest.raises(EdgebloodError, match="framing|fraction|window|JPEG"):
        Framing.parse(bad, bloodmnist_framing(28))


def test_stored_framing_round_trips_and_old_runs_get_the_dataset_framing():
    f = bloodmnist_framing(28)
    assert Framing.from_dict(f.to_dict()) == f
    assert "200x200 px window" in f.to_dict()["description"] and "JPEG q75" in f.describe()
    assert framing_of({"input": {"size": 28, "framing": f.to_dict()}}) == (f, True)
    assert framing_of({"input": {"size": 64}, "dataset": {"size": 64, "variant": "regenerated"}}) == (bloodmnist_framing(64, "regenerated"), False)
    with pytest.raises(EdgebloodError):
        Framing.from_dict({"kind": "window", "window_px": -3})


# ------------------------------------------------------------------------- real PBC originals
def _originals(limit=None):
    from conftest import pbc_originals_dir

    val = pbc_originals_dir("val")
    index = val.parent / "val_index.csv" if val is not None else None
    if index is None or not index.is_file():
        pytest.skip("pbc-originals/val_index.csv not found under $EDGEBLOOD_DATA or ../shared/data")
    root = index.parent
    with open(index, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return root, rows[:limit] if limit else rows


@pytest.mark.realdata
def test_rebuilds_the_regenerated_64px_val_images_from_the_originals(data_dir):
    """The framing reproduces ../shared/data/bloodmnist_64.npz val images exactly for >= 95 % of them."""
    root, rows = _originals()
    ref = np.load(data_dir / "bloodmnist_64.npz")["val_images"]
    framing = bloodmnist_framing(64, "regenerated")
    exact = sum(np.array_equal(load_image(root / r["file"], 64, framing=framing), ref[int(r["val_index"])]) for r in rows)
    assert exact / len(rows) >= 0.95, f"{exact} of {len(rows)} rebuilt exactly"


@pytest.mark.realdata
def test_official_28px_framing_with_jpeg_is_closest_to_the_npz(data_dir):
    """The JPEG q75 step brings originals to within ~1.5 grey levels of the official 28 px arrays."""
    root, rows = _originals(limit=120)
    ref = np.load(data_dir / "bloodmnist.npz")["val_images"]
    framing = bloodmnist_framing(28)

    def mad(f):
        return np.mean([np.abs(load_image(root / r["file"], 28, framing=f).astype(int) - ref[int(r["val_index"])]).mean() for r in rows])

    with_jpeg, without = mad(framing), mad(Framing.parse("model+no-jpeg", framing))
    assert with_jpeg < 2.0 and without > 2 * with_jpeg, (with_jpeg, without)


def test_real_pixel_augmentation_jpeg_share_and_validation():
    import torch

    from edgeblood.config import AugmentConfig
    from edgeblood.data.augment import augment_batch

    x = torch.rand(64, 3, 28, 28)
    cfg = AugmentConfig(rot90=False, flips=False, crop_area=(1.0, 1.0), jpeg_prob=0.5, jpeg_quality=(60, 60))
    out = augment_batch(x, cfg, torch.Generator().manual_seed(0))
    changed = (out - x).abs().flatten(1).max(1).values > 2 / 255  # beyond the uint8 rounding
    assert 16 <= int(changed.sum()) <= 48  # about half the batch went through JPEG
    for bad in (dict(crop_area=(2.0, 2.0)), dict(crop_area=(0.0, 1.0)), dict(jpeg_prob=1.5), dict(stain=-0.1), dict(color_jitter=-1.0)):
        with pytest.raises(EdgebloodError):
            AugmentConfig(**bad).validate()


def test_default_recipe_trains_for_real_pixels():
    from edgeblood.config import get_recipe

    aug = get_recipe("default", "se-cnn", 28)["augment"]
    assert aug["jpeg_prob"] > 0 and aug["stain"] > 0 and aug["crop_area"][1] > 1.0 and aug["crop_shift"] > 0


def test_crop_area_option_keeps_the_recipes_zoom_out_unless_given():
    from edgeblood.cli.train import _area_range, build_config

    def cfg(area):
        return build_config(model="se-cnn", size=28, recipe="default", model_opts={}, overrides={},
                            augment_overrides=dict(crop_area=None if area is None else _area_range(area)), fixed={})

    assert cfg(None).augment.crop_area == (0.9, 1.1)
    assert cfg("0.8").augment.crop_area == (0.8, 1.1)
    assert cfg("0.9,1.0").augment.crop_area == (0.9, 1.0)
    with pytest.raises(EdgebloodError, match="LOW or LOW,HIGH"):
        _area_range("big")
    with pytest.raises(EdgebloodError, match="--crop-area must be"):
        cfg("2,2").validate()


@pytest.mark.parametrize("args, expect", [
    (["--mixup", "-1"], "--mixup"), (["--early-stopping", "-1"], "--early-stopping"), (["--threads", "-2"], "--threads"),
    (["--color-jitter", "-1"], "--color-jitter"), (["--crop-area", "0"], "--crop-area"), (["--crop-area", "2,1"], "--crop-area"),
    (["--kd-alpha", "0.5"], "need --teacher"),
])
def test_bad_training_options_fail_before_any_data_or_run_dir(args, expect, tmp_path):
    """An EdgebloodError naming the option (main() prints it as one line, exit 2), and no run directory left behind."""
    from typer.testing import CliRunner

    from edgeblood.cli import app

    result = CliRunner().invoke(app, ["train", "--sample", "--out", str(tmp_path / "runs"), *args])
    assert isinstance(result.exception, EdgebloodError) and expect in str(result.exception), result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
