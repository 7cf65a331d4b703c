"""The model zoo: every registered model builds, runs and has the size its study published.

Real forward passes run at 28 px for every model (the main use); at 64 and 128 px every model runs
on PyTorch's ``meta`` device (shapes only, no arithmetic) to keep the suite fast on 2 cores, and a
few representative models also run for real there. Parameter counts are read from meta-device
models, which ``test_meta_counts_equal_real_counts`` checks against real ones.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeblood.errors import EdgebloodError
from edgeblood.models import count_macs, count_params, create, get_entry, list_models
from edgeblood.models.blocks import (
    CBAM,
    DropPath,
    InceptionBlock,
    MBConv,
    ResidualBlock,
    SpatialAttention,
    SqueezeExcite,
    downsample_plan,
    make_attention,
)
from edgeblood.models.summary import profile, zoo_table

ALL = list_models()

EXPECTED = {
    "se-cnn", "sa-cnn", "cbam-cnn", "mbconv-se", "skip-cnn", "mlnn", "cnn-baseline", "vgg15", "se-vgg15",
    "sa-vgg15", "cbam-vgg15", "unet-encoder", "inception", "inception-skip", "padova-cnn", "simple-cnn",
    "resnet18", "resnet34", "efficientnet-lite", "autoclassifier", "edge-cnn", "edge-cnn-tiny",
    "se-cnn-compact", "se-cnn-compact-tiny",
}


def meta_model(name: str, in_size: int, **cfg) -> nn.Module:
    with torch.device("meta"):
        return create(name, in_size=in_size, **cfg)


def test_registry_lists_every_model_with_metadata():
    assert EXPECTED <= set(ALL)
    for name in ALL:
        entry = get_entry(name)
        assert entry.family and entry.description and entry.reference
        assert set(entry.published) <= {"params", "in_size", "accuracy"}


# --- forward passes ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_forward_28px_real(name):
    torch.manual_seed(0)
    model = create(name, in_size=28).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 28, 28))
    assert out.shape == (2, 8) and torch.isfinite(out).all()
    # the conventions Grad-CAM, pruning and export rely on
    if name != "mlnn":
        assert isinstance(model.features, nn.Module) and isinstance(model.head, nn.Module)


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("name", ALL)
def test_forward_shapes_64_128(name, size):
    model = meta_model(name, size).eval()
    out = model(torch.empty(2, 3, size, size, device="meta"))
    assert out.shape == (2, 8)


@pytest.mark.parametrize("name,size", [("mbconv-se", 64), ("edge-cnn", 64), ("skip-cnn", 64), ("autoclassifier", 128), ("se-cnn", 128)])
def test_forward_real_larger_inputs(name, size):
    model = create(name, in_size=size, num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size)).shape == (2, 5)


@pytest.mark.parametrize("name", ["edge-cnn-tiny", "skip-cnn", "cbam-cnn"])  # MBConv+SE, projections, CBAM
def test_training_step_updates_weights(name):
    torch.manual_seed(0)
    model = create(name, in_size=28).train()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = F.cross_entropy(model(torch.randn(4, 3, 28, 28)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_models_adapt_strides_to_small_inputs():
    """No over-downsampling: at 28 px the last feature map keeps a spatial extent."""
    for name, min_px in [("mbconv-se", 4), ("edge-cnn", 7), ("resnet18", 4), ("efficientnet-lite", 4), ("inception", 7)]:
        feats = meta_model(name, 28).features(torch.empty(1, 3, 28, 28, device="meta"))
        assert feats.shape[-1] >= min_px, name
    # ... while 224 px keeps the published schedules (ResNet-18: 7x7, EfficientNet stages: 14x14)
    assert meta_model("resnet18", 224).features(torch.empty(1, 3, 224, 224, device="meta")).shape[-1] == 7
    assert meta_model("mbconv-se", 224).features(torch.empty(1, 3, 224, 224, device="meta")).shape[-1] == 14


# --- parameter counts -------------------------------------------------------------------------

# Exact counts of our implementations (regression pins) at the size the study reports.
EXACT = {
    ("cnn-baseline", 28): 422_344,  # the published figure, exactly
    ("mlnn", 28): 2_785_988,  # 2352*1180+1180 + 1180*8+8
    ("padova-cnn", 128): 4_289_160,
    ("resnet18", 224): 11_180_616,  # torchvision's ResNet-18 with an 8-way head
    ("resnet34", 224): 21_288_776,
    ("skip-cnn", 28): 307_016,
    ("se-cnn", 64): 465_792,
    ("cbam-vgg15", 64): 7_342_684,
    ("efficientnet-lite", 224): 540_168,
    ("mbconv-se", 224): 423_868,
    ("simple-cnn", 224): 27_772_936,
    ("edge-cnn", 28): 402_920,
    ("edge-cnn-tiny", 28): 46_876,
    ("se-cnn-compact", 28): 299_520,
    ("se-cnn-compact-tiny", 28): 49_107,  # the <= 50 K class of the results table
}

# Published figures our reading of the study cannot reach (see the modules' docstrings).
KNOWN_MISMATCH = {
    "mbconv-se": "the described stages + 1280-ch head hold 0.42 M params, not the 1.84 M reported",
    "simple-cnn": "a 7x7x512 flatten into 1024 units alone is 25.7 M; no standard reading gives 26.08 M",
}

PUBLISHED = [n for n in ALL if "params" in get_entry(n).published]


@pytest.mark.parametrize("name,size", sorted(EXACT))
def test_exact_param_counts(name, size):
    assert count_params(meta_model(name, size)) == EXACT[(name, size)]


@pytest.mark.parametrize("name", PUBLISHED)
def test_param_count_matches_published(name, request):
    if name in KNOWN_MISMATCH:
        request.applymarker(pytest.mark.xfail(reason=KNOWN_MISMATCH[name], strict=True))
    pub = get_entry(name).published
    size = pub.get("in_size", 28)
    ours = count_params(meta_model(name, size))
    tol = 0 if name == "cnn-baseline" else 0.02  # the study gives 422,344 exactly; others are rounded
    assert abs(ours - pub["params"]) <= tol * pub["params"], f"{name}: ours {ours:,} vs published {pub['params']:,}"


def test_param_count_depends_on_size_only_for_flatten_models():
    for name in ("mbconv-se", "edge-cnn", "skip-cnn", "vgg15", "simple-cnn", "inception"):
        assert count_params(meta_model(name, 28)) == count_params(meta_model(name, 128)), name
    assert count_params(meta_model("mlnn", 64)) == 64 * 64 * 3 * 1180 + 1180 + 1180 * 8 + 8


def test_compact_models_for_headline_training():
    assert count_params(meta_model("edge-cnn-tiny", 28)) <= 50_000
    assert 300_000 <= count_params(meta_model("edge-cnn", 28)) <= 500_000
    small = count_params(meta_model("edge-cnn", 28, width_mult=0.5))
    assert small < count_params(meta_model("edge-cnn", 28)) / 3
    assert count_params(meta_model("mbconv-se", 28, width_mult=0.5)) < count_params(meta_model("mbconv-se", 28))
    assert count_params(meta_model("mbconv-se", 28, depth_mult=2.0)) > count_params(meta_model("mbconv-se", 28))


def test_meta_counts_equal_real_counts():
    for name in ("se-cnn", "mbconv-se", "cnn-baseline", "vgg15"):
        real = create(name, in_size=28)
        assert profile(name, 28) == {"params": count_params(real), "macs": count_macs(real, 28)}


def test_count_macs_matches_hand_count():
    """conv 3->4 (3x3, pad 1) on 8x8: 8*8*4 outputs x 3*3*3 MACs = 6,912; linear 256->5: 1,280.
    BatchNorm, ReLU, bias adds and pooling are not multiply-accumulates of the convention."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    assert count_macs(model, 8) == 8 * 8 * 4 * 3 * 3 * 3 + 4 * 8 * 8 * 5 == 8_192
    # a strided conv + global pool + linear: 4*4 outputs x 6 channels x (3*3*3) + 6*2
    model = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 2))
    assert count_macs(model, 8) == 4 * 4 * 6 * 27 + 6 * 2


# --- configuration round trip and errors ------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_config_round_trips_through_json(name):
    model = meta_model(name, 64)
    cfg = json.loads(json.dumps(model.edgeblood_config))
    assert cfg["name"] == name and cfg["in_size"] == 64
    rebuilt = meta_model(cfg.pop("name"), cfg.pop("in_size"), **cfg)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_options_are_json_values_and_rebuild_real_weights():
    model = create("edge-cnn", in_size=28, width_mult=0.75, depth_mult=1.5, stages=[[1, 16, 1, 3, 1], [4, 32, 2, 3, 2], [4, 64, 2, 5, 2]])
    cfg = json.loads(json.dumps(model.edgeblood_config))
    rebuilt = create(cfg.pop("name"), **cfg)
    rebuilt.load_state_dict(model.state_dict())  # strict: same layers, same shapes
    x = torch.randn(2, 3, 28, 28)
    assert torch.allclose(model.eval()(x), rebuilt.eval()(x))


def test_bad_options_are_one_line_errors():
    with pytest.raises(EdgebloodError, match="does not take these options"):
        create("skip-cnn", depth=3)
    with pytest.raises(EdgebloodError, match="at 8 px"):
        create("se-cnn", in_size=8)
    with pytest.raises(EdgebloodError, match="attention"):
        create("vgg15", attention="transformer")
    with pytest.raises(EdgebloodError, match="unknown model"):
        create("vgg19")


# --- blocks -----------------------------------------------------------------------------------


def test_downsample_plan():
    assert [downsample_plan(s, 5) for s in (28, 64, 128, 224)] == [3, 4, 5, 5]
    assert downsample_plan(28, 3, min_final=7) == 2
    assert downsample_plan(64, 4, min_final=4) == 4


def test_attention_blocks_gate_without_changing_shape():
    x = torch.randn(2, 16, 7, 7)
    for block in (SqueezeExcite(16), SpatialAttention(), CBAM(16, ratio=4), make_attention("none", 16)):
        y = block(x)
        assert y.shape == x.shape
    # gates are in (0, 1): CBAM can only shrink magnitudes
    assert (CBAM(16, 4)(x).abs() <= x.abs() + 1e-6).all()


def test_drop_path_is_identity_at_eval_and_drops_whole_samples_in_training():
    torch.manual_seed(0)
    dp = DropPath(0.5)
    x = torch.ones(64, 4, 3, 3)
    assert torch.equal(dp.eval()(x), x)
    y = dp.train()(x)
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert 10 < int((per_sample[:, 0] == 0).sum()) < 54


def test_mbconv_and_residual_shortcuts():
    same = MBConv(16, 16, expand=4, drop_path=0.2)
    assert same.use_residual and isinstance(same.drop_path, DropPath)
    assert not MBConv(16, 24, stride=2).use_residual
    assert MBConv(16, 24, stride=2)(torch.randn(2, 16, 8, 8)).shape == (2, 24, 4, 4)
    proj = ResidualBlock(16, 32, stride=2)
    assert isinstance(proj.shortcut, nn.Sequential) and proj.shortcut[0].kernel_size == (1, 1)
    assert isinstance(ResidualBlock(16, 16).shortcut, nn.Identity)
    assert isinstance(ResidualBlock(16, 16, project=True).shortcut, nn.Sequential)
    assert proj(torch.randn(2, 16, 8, 8)).shape == (2, 32, 4, 4)


def test_inception_block_widths_and_residual():
    block = InceptionBlock(32, 8, 8, 16, 4, 8, 8, residual=True)
    assert block.out_channels == 40
    assert block(torch.randn(2, 32, 7, 7)).shape == (2, 40, 7, 7)


# --- autoclassifier interface ------------------------------------------------------------------


def test_autoclassifier_two_phase_interface():
    torch.manual_seed(0)
    model = create("autoclassifier", in_size=28)
    x = torch.randn(4, 3, 28, 28)
    assert model.reconstruct(x).shape == x.shape
    assert model.encoder(x).shape == (4, 64, 7, 7)  # latent: 64 channels
    # the autoencoder view shares the model's parameters and the state dict lists them once
    ae_params = {id(p) for p in model.autoencoder.parameters()}
    assert ae_params <= {id(p) for p in model.parameters()}
    assert len(model.state_dict()) == len(set(model.state_dict()))
    assert not any(k.startswith("_autoencoder") for k in model.state_dict())
    twin = copy.deepcopy(model)  # EMA and pruning deep-copy models: the view must follow the copy
    assert twin.autoencoder.encoder is twin.encoder and twin.autoencoder.decoder is twin.decoder

    # phase 1: reconstruction training lowers the loss
    opt = torch.optim.Adam(model.autoencoder.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(4):
        opt.zero_grad()
        loss = model.reconstruction_loss(x)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]

    # phase 2: the encoder is frozen (weights and BatchNorm statistics), the head learns
    model.freeze_encoder()
    model.train()
    assert not model.encoder.training and model.features.neck.training
    enc_state = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    head_before = model.head[-1].weight.detach().clone()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in model.classifier_parameters()}
    opt = torch.optim.SGD(trainable, lr=0.1)
    F.cross_entropy(model(x), torch.arange(4)).backward()
    opt.step()
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in enc_state.items())
    assert not torch.equal(head_before, model.head[-1].weight)
    model.unfreeze_encoder()
    assert all(p.requires_grad for p in model.parameters())


# --- the zoo table and `edgeblood models` -------------------------------------------------------


def test_zoo_table_rows():
    rows = zoo_table(["cnn-baseline", "edge-cnn-tiny"], sizes=(28, 64))
    base = rows[0]
    assert base["sizes"]["28"]["params"] == 422_344 and base["published"]["params"] == 422_344
    assert base["sizes"]["28"]["macs"] > 0
    assert zoo_table(["se-cnn"], sizes=(8,))[0]["sizes"]["8"] is None  # cannot take 8 px: n/a, not a crash


def test_cli_models_json_and_table():
    from typer.testing import CliRunner

    from edgeblood.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["models", "--family", "edge-cnn", "--json", "--sizes", "28,64,128"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {r["name"] for r in rows} == {"edge-cnn", "edge-cnn-tiny"}
    assert set(rows[0]["sizes"]) == {"28", "64", "128"}

    result = runner.invoke(app, ["models", "--family", "plain-cnn"])
    assert result.exit_code == 0, result.output
    assert "cnn-baseline" in result.output and "422K" in result.output and "@64px" in result.output

    result = runner.invoke(app, ["models", "--family", "nope"])
    assert isinstance(result.exception, EdgebloodError)
