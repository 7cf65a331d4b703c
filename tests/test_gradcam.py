"""Grad-CAM: exact on a model where it has a closed form, robust to in-place activations, and
meaningful on a trained model (cell focus + model-randomisation check, Adebayo et al. 2018)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from edgeblood.data.bloodmnist import load_sample
from edgeblood.errors import EdgebloodError
from edgeblood.evaluation.gradcam import GradCAM, default_target_layer, explain
from edgeblood.evaluation.gradcam_checks import cell_mask, randomized_copy, sanity_check, spearman
from edgeblood.imageio import CELL_CROP
from edgeblood.models import create


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A narrow se-cnn trained 60 Adam steps on the sample (~57-59 % test accuracy, ~15 s CPU).

    Not conftest's ``sample_run``: that one is trained so briefly (~40 %) that its maps still
    mostly reflect the architecture, which is exactly what the randomisation check must not see.
    """
    from export_runs import make_tiny_run

    return make_tiny_run(tmp_path_factory.mktemp("gradcam") / "tiny-se-cnn", seed=0, steps=60)


@pytest.fixture(scope="module")
def sample():
    return load_sample(28)


class _GapNet(nn.Module):
    """conv-ReLU unit -> global average pool -> linear: Grad-CAM reduces to CAM (Zhou et al. 2016)."""

    def __init__(self):
        super().__init__()
        self.unit = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=True))
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(self.unit(x).mean((2, 3)))


def test_equals_closed_form_cam_on_gap_linear_model():
    torch.manual_seed(0)
    net = _GapNet().eval()
    x = torch.randn(5, 3, 12, 12)
    assert default_target_layer(net, 12) == "unit"  # the rectified unit, not the raw conv
    maps, logits = GradCAM(net, 12)(x)
    with torch.no_grad():
        a = net.unit(x)  # [5, 6, 12, 12]
    target = logits.argmax(1)
    # d y_c / d A_kij = W[c, k] / (H W), so the map is ReLU(sum_k W[c, k] A_k) up to scale.
    expected = torch.relu(torch.einsum("nk,nkhw->nhw", net.fc.weight[target].detach(), a))
    expected = expected / expected.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    torch.testing.assert_close(maps, expected, rtol=1e-5, atol=1e-6)
    # Explaining another class gives that class's map.
    maps2, _ = GradCAM(net, 12)(x, torch.full((5,), 3))
    exp2 = torch.relu(torch.einsum("k,nkhw->nhw", net.fc.weight[3].detach(), a))
    exp2 = exp2 / exp2.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    torch.testing.assert_close(maps2, exp2, rtol=1e-5, atol=1e-6)


def test_default_layer_is_last_spatial_conv_stage_and_layers_can_be_chosen():
    model = create("se-cnn", in_size=28, widths=[8, 16, 32, 32])
    # 28 -> 14 -> 7 -> 3: the 4th conv block still has a 3x3 map; the SE 1x1 convs run on 1x1 maps.
    assert default_target_layer(model, 28) == "features.9"
    assert default_target_layer(create("se-cnn", in_size=64, widths=[8, 16, 32, 32]), 64) == "features.9"
    x = torch.zeros(2, 3, 28, 28)
    maps, _ = GradCAM(model, 28, layer="features.6.0")(x)
    assert maps.shape == (2, 28, 28)
    with pytest.raises(EdgebloodError, match="no layer 'nope'"):
        GradCAM(model, 28, layer="nope")
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 28 * 28, 8))
    with pytest.raises(EdgebloodError, match="no convolution"):
        default_target_layer(mlp, 28)


@pytest.mark.slow
def test_every_conv_model_in_the_registry_gets_a_spatial_default_layer():
    from edgeblood.models import list_models

    explained = 0
    for name in list_models():
        model = create(name, in_size=28)
        if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
            with pytest.raises(EdgebloodError, match="no convolution"):
                default_target_layer(model, 28)
            continue
        layer = default_target_layer(model, 28)
        shapes = []
        hook = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: shapes.append(o.shape))
        maps, logits = GradCAM(model, 28, layer=layer)(torch.rand(2, 3, 28, 28) * 2 - 1)
        hook.remove()
        assert len(shapes[0]) == 4 and shapes[0][1] > 1 and shapes[0][2] * shapes[0][3] > 1, (name, layer, shapes)
        assert maps.shape == (2, 28, 28) and torch.isfinite(maps).all() and logits.shape == (2, 8), name
        explained += 1
    assert explained >= 1


def test_in_place_activation_after_the_hooked_layer_does_not_corrupt_maps(trained_run, sample):
    from edgeblood.runs import open_run

    run = open_run(trained_run)
    images = sample.images("test")[:16]
    # features.9.1 is a BatchNorm whose output the next ReLU(inplace=True) overwrites.
    got = explain(run.model, images, run.mean, run.std, layer="features.9.1").cams
    safe = copy.deepcopy(run.model)
    for m in safe.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    want = explain(safe, images, run.mean, run.std, layer="features.9.1").cams
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got.max() > 0


def test_maps_do_not_depend_on_batching(trained_run, sample):
    from edgeblood.runs import open_run

    run = open_run(trained_run)
    images = sample.images("val")[:24]
    one = explain(run.model, images, run.mean, run.std, batch_size=1)
    many = explain(run.model, images, run.mean, run.std, batch_size=24)
    np.testing.assert_allclose(one.cams, many.cams, atol=1e-5)
    assert np.array_equal(one.targets, many.probs.argmax(1))
    assert one.cams.shape == (24, 28, 28) and 0.0 <= one.cams.min() and one.cams.max() <= 1.0


def test_cell_mask_finds_the_stained_cell(sample):
    images = sample.images("test")
    masks = cell_mask(images)
    centre = masks[:, 12:16, 12:16].mean()
    corners = np.concatenate([masks[:, :3, :3], masks[:, :3, -3:], masks[:, -3:, :3], masks[:, -3:, -3:]], 1).mean()
    assert centre > 0.8 and corners < 0.1
    platelets = masks[sample.labels("test") == 7].mean()
    assert platelets < 0.2  # the small platelet only, not the red cells around it


def test_spearman():
    a = np.arange(16.0).reshape(4, 4)
    assert spearman(a, a * 3 + 1) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, np.zeros_like(a)) == 0.0


def test_sanity_trained_model_looks_at_the_cell_and_randomised_model_differs(trained_run, sample):
    from edgeblood.runs import open_run

    run = open_run(trained_run)
    result = sanity_check(run.model, sample.images("test"), run.mean, run.std)
    # Majority of test images: the map is denser on the stained cell than on the background.
    assert result["share_images_cell_enriched"] > 0.5, result
    assert result["cam_mass_on_cell_mean"] > result["cell_area_share_mean"], result
    # Model randomisation: maps of a re-initialised copy are (rank-)uncorrelated with the trained ones.
    assert result["randomised_spearman_median"] < 0.5, result
    assert result["passed"] and result["empty_maps"] == 0
    # ... and the randomised model really has different weights, and its own maps miss the cell more often.
    rand = randomized_copy(run.model, seed=0)
    assert not torch.equal(rand.features[0][0].weight, run.model.features[0][0].weight)
    rand_result = sanity_check(rand, sample.images("test"), run.mean, run.std)
    assert rand_result["share_images_peak_on_cell"] < result["share_images_peak_on_cell"]


def test_explain_cli_on_class_folders(trained_run, sample, tmp_path):
    from typer.testing import CliRunner

    from edgeblood.cli import app

    images, labels = sample.images("test"), sample.labels("test")
    for cls, folder in ((7, "platelet"), (6, "neutrophils")):  # plural folder names are recognised too
        (tmp_path / "cells" / folder).mkdir(parents=True)
        for i in np.flatnonzero(labels == cls)[:3]:
            Image.fromarray(images[i]).resize((90, 120)).save(tmp_path / "cells" / folder / f"cell{i}.png")
    (tmp_path / "cells" / "platelet" / "broken.png").write_text("not a png")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["explain", str(trained_run), str(tmp_path / "cells"), "--out", str(out),
                                        "--framing", "cell-crop"])  # the files are framed cells, not captures
    assert result.exit_code == 0, result.output
    assert "broken.png" in result.output and "skipped" in result.output
    assert "map on stained" in result.output and "features.9" in result.output and "largest centred square" in result.output
    overlays = sorted(out.glob("cell*_gradcam_*.png"))
    assert len(overlays) == 6
    assert Image.open(overlays[0]).size == (2 * 168 + 4, 168)
    assert {p.name for p in out.glob("gradcam_*.png")} == {"gradcam_platelet.png", "gradcam_neutrophil.png"}


def test_explain_images_target_and_unlabelled_overview(trained_run, sample, tmp_path):
    from edgeblood.evaluation.explain import explain_images

    for i in range(4):
        Image.fromarray(sample.images("val")[i]).save(tmp_path / f"img{i}.png")
    res = explain_images(trained_run, [tmp_path], out_dir=tmp_path / "out", target="Platelets", framing=CELL_CROP)
    assert res.labels is None and list(res.targets) == [7] * 4
    assert [p.name for p in res.grids] == ["gradcam_overview.png"]
    assert all(p.name.endswith("_gradcam_platelet.png") for p in res.overlays)
    with pytest.raises(EdgebloodError, match="unknown class"):
        explain_images(trained_run, [tmp_path], out_dir=tmp_path / "out", target="macrophage", framing=CELL_CROP)


def test_evaluate_explain_writes_class_grids_and_sanity(trained_run, tmp_path):
    import shutil

    from edgeblood.evaluation.evaluate import evaluate_run

    run_dir = shutil.copytree(trained_run, tmp_path / "run")
    entry = evaluate_run(run_dir, "test", plots=False, explain=True)
    grids = sorted((run_dir / "plots" / "gradcam").glob("gradcam_test_*.png"))
    assert len(grids) == 8 and entry["plots"] == [str(p.relative_to(run_dir)) for p in grids]
    assert entry["gradcam"]["layer"] == "features.9" and entry["gradcam"]["sanity"]["passed"]
