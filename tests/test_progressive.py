"""Progressive resizing (#18): early epochs on downscaled images, the last ones, val and test at full size."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

import edgeblood.training.job as job
from edgeblood.cli import app
from edgeblood.config import TrainConfig
from edgeblood.config.stages import describe_stages, parse_stages, size_at_epoch
from edgeblood.data.batches import downscale
from edgeblood.errors import EdgebloodError
from edgeblood.training import train


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(model="se-cnn-compact-tiny", size=28, sample=True, epochs=3, batch_size=64, out_dir=str(tmp_path), name="r")
    return TrainConfig(**{**base, **kw})


def test_stages_parse_and_say_which_epoch_trains_at_which_size():
    stages = parse_stages("32:40, 48:10")
    assert stages == [[32, 40], [48, 10]]
    assert [size_at_epoch(stages, e) for e in (1, 40, 41, 50, 51, 60)] == [32, 32, 48, 48, None, None]
    assert describe_stages(stages, 64, 60) == "32 px for epochs 1-40, 48 px for epochs 41-50, then 64 px for epochs 51-60"
    for bad in ("32", "32:x", "a:3", ""):
        with pytest.raises(EdgebloodError, match="SIZE:EPOCHS"):
            parse_stages(bad)


@pytest.mark.parametrize("stages, epochs, why", [
    ([[28, 1]], 3, "below --size 28"),          # not smaller than the model's size
    ([[20, 1], [16, 1]], 4, "grow stage by stage"),
    ([[16, 3]], 3, "leave at least one epoch at full size"),
    ([[16, 0]], 3, "at least 1 epoch"),
])
def test_stages_that_do_not_fit_the_run_are_refused_in_one_line(tmp_path, stages, epochs, why):
    with pytest.raises(EdgebloodError, match=why):
        _cfg(tmp_path, progressive=stages, epochs=epochs).validate()


def test_downscaling_is_antialiased():
    """A 1-px checkerboard halved must turn grey; plain bilinear sampling keeps a pattern that was never in the image."""
    board = ((torch.arange(28)[:, None] + torch.arange(28)[None, :]) % 2).float().expand(1, 3, 28, 28)
    small = downscale(board, 14)
    assert small.shape == (1, 3, 14, 14)
    assert torch.allclose(small, torch.full_like(small, 0.5), atol=0.05)


def test_the_model_trains_small_first_and_is_validated_and_saved_at_full_size(tmp_path, monkeypatch):
    seen: list[tuple[bool, int]] = []
    real_create = job.create

    def recording_create(*args, **kwargs):
        model = real_create(*args, **kwargs)
        model.register_forward_pre_hook(lambda module, inputs: seen.append((module.training, inputs[0].shape[-1])))
        return model

    monkeypatch.setattr(job, "create", recording_create)
    run_dir = train(_cfg(tmp_path, progressive=[[16, 1], [20, 1]], epochs=3), evaluate=False)
    trained_sizes = [px for training, px in seen if training]
    batches = len(trained_sizes) // 3
    assert trained_sizes == [16] * batches + [20] * batches + [28] * batches
    first_step = seen.index((True, 16))
    startup, rest = seen[:first_step], seen[first_step:]
    assert (False, 16) in startup and (False, 20) in startup, "the model is tried at each stage's size before training"
    assert {px for training, px in rest if not training} == {28}, "val must run at --size in every epoch"
    from edgeblood.runs import open_run, read_history

    assert [row["train_px"] for row in read_history(run_dir)] == [16, 20, 28], "history.csv says which size each epoch trained at"
    run = open_run(run_dir)
    assert run.meta.input.size == 28 and run.metadata["training"]["config"]["progressive"] == [[16, 1], [20, 1]]


@pytest.mark.parametrize("stage", ["16:1", "20:1"])  # at 20 px se-cnn's ceil pooling reaches the same 2x2 grid and a forward pass runs
def test_a_model_whose_head_fits_one_size_is_refused_before_training(tmp_path, stage):
    result = CliRunner().invoke(app, ["train", "--sample", "--model", "se-cnn", "--epochs", "3", "--progressive-resize", stage,
                                      "--out", str(tmp_path / "runs"), "--no-evaluate"])
    assert isinstance(result.exception, EdgebloodError), "a user-fixable error: main() prints it as one line"
    assert "se-cnn flattens its feature map" in str(result.exception) and "e.g. se-cnn-compact" in str(result.exception)
    assert "epoch 1" not in result.output, "refused before the first epoch"
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir()), "no empty run directory is left"


def test_the_same_family_with_global_pooling_is_accepted():
    from edgeblood.models import create
    from edgeblood.training.progressive import check_model_takes

    check_model_takes(create("se-cnn", in_size=28, head="gap"), "se-cnn", [[16, 1], [20, 1]])
    check_model_takes(create("se-cnn-compact-tiny", in_size=28), "se-cnn-compact-tiny", [[12, 1]])


def test_early_stopping_waits_for_the_full_size_epochs(tmp_path):
    """Patience counted during the small stages would stop a run before it ever trained at --size."""
    run_dir = train(_cfg(tmp_path, progressive=[[16, 4]], epochs=6, early_stopping=1, lr=1e-6), evaluate=False)
    from edgeblood.runs import read_history

    history = read_history(run_dir)
    assert len(history) >= 5, f"stopped after {len(history)} epochs, inside the 16 px stage"
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir()), "no empty run directory is left"
