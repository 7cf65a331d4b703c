"""--swa: the last epochs' weights averaged at a constant rate, the average validated and saved, and resumable."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from edgeblood.config import TrainConfig, config_from_recipe
from edgeblood.errors import ConfigError, EdgebloodError
from edgeblood.runs import CHECKPOINT, TRAIN_STATE, open_run
from edgeblood.training import train

SMALL = {"widths": [8, 16, 32, 64]}


def _cfg(tmp_path: Path, **kw) -> TrainConfig:
    base = dict(model="se-cnn", size=28, sample=True, epochs=4, batch_size=64, out_dir=str(tmp_path), name="r", model_cfg=SMALL,
                swa_epochs=2, precision="fp32")
    base.update(kw)
    return TrainConfig(**base)


def _rows(run_dir: Path) -> list[dict]:
    return list(csv.DictReader(open(run_dir / "history.csv")))


def test_the_saved_model_is_the_average_of_the_last_epochs_with_its_own_batchnorm_statistics(tmp_path, monkeypatch):
    import edgeblood.training.swa as swa

    snapshots = []
    real_end = swa.WeightAveraging.end_epoch

    def recording_end(self, model, stream, feed):
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return real_end(self, model, stream, feed)

    monkeypatch.setattr(swa.WeightAveraging, "end_epoch", recording_end)
    run_dir = train(_cfg(tmp_path, keep_state=True, lr=4e-3), evaluate=False)
    assert len(snapshots) == 2, "epochs 3 and 4 join the average, epochs 1 and 2 do not"
    saved = torch.load(run_dir / CHECKPOINT, weights_only=True)["state_dict"]
    conv = next(k for k in saved if k.endswith("weight") and saved[k].ndim == 4)
    assert torch.allclose(saved[conv], (snapshots[0][conv] + snapshots[1][conv]) / 2, atol=1e-6)
    assert not torch.allclose(saved[conv], snapshots[1][conv]), "the last epoch's own weights were saved, not the average"
    running = next(k for k in saved if k.endswith("running_mean"))
    assert not torch.allclose(saved[running], (snapshots[0][running] + snapshots[1][running]) / 2), \
        "the average's BatchNorm statistics are measured again, not averaged"
    state = torch.load(run_dir / TRAIN_STATE, weights_only=True)
    assert int(state["swa"]["average"]["n_averaged"]) == 2
    lrs = [float(r["lr"]) for r in _rows(run_dir)]
    assert lrs[2] == lrs[3] == pytest.approx(4e-3 * 0.1), "the averaged epochs run at --lr x 0.1 once the one-epoch anneal is done"
    assert lrs[1] < 4e-3 * 0.1 < lrs[0], "the run's own schedule anneals over the two epochs before the average"
    training = open_run(run_dir).metadata["training"]
    assert training["config"]["swa_epochs"] == 2 and training["kept_epoch"] == 4, "the final average is kept, whatever epoch val preferred"


def test_a_run_interrupted_while_averaging_resumes_to_the_same_weights(tmp_path, monkeypatch):
    import edgeblood.training.epochs as epochs

    real_write = epochs.write_history
    averaging = dict(epochs=5, swa_epochs=3, swa_lr=1e-3)

    def write_then_interrupt(run_dir, history):
        real_write(run_dir, history)
        if len(history) == 4:  # Ctrl-C while epoch 4 saves: the run resumes after epoch 3, the first averaged one
            raise KeyboardInterrupt

    monkeypatch.setattr(epochs, "write_history", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path, **averaging), evaluate=False)
    monkeypatch.setattr(epochs, "write_history", real_write)
    resumed = train(TrainConfig(), resume=tmp_path / "r", evaluate=False)
    straight = train(_cfg(tmp_path, name="straight", **averaging), evaluate=False)
    assert [(r["lr"], r["val_acc"]) for r in _rows(resumed)] == [(r["lr"], r["val_acc"]) for r in _rows(straight)]
    a, b = (torch.load(d / CHECKPOINT, weights_only=True)["state_dict"] for d in (resumed, straight))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_swa_options_are_checked_and_a_swa_run_is_not_trained_on(tmp_path):
    with pytest.raises(ConfigError, match="--swa"):
        config_from_recipe("se-cnn", 28, "default", epochs=10, swa_epochs=10).validate()
    with pytest.raises(ConfigError, match="--early-stopping"):
        config_from_recipe("se-cnn", 28, "default", swa_epochs=2, early_stopping=5).validate()
    with pytest.raises(ConfigError, match="--ema 0"):
        config_from_recipe("se-cnn", 64, "best", swa_epochs=10).validate()  # best keeps an EMA
    config_from_recipe("se-cnn", 64, "best", swa_epochs=10, ema_decay=0.0).validate()
    with pytest.raises(ConfigError, match="--freeze-backbone"):
        config_from_recipe("se-cnn", 28, "default", epochs=10, swa_epochs=3, freeze_backbone=8, init="x").validate()
    with pytest.raises(ConfigError, match="--progressive-resize"):
        config_from_recipe("se-cnn", 28, "default", epochs=10, swa_epochs=3, progressive=[[16, 8]]).validate()
    with pytest.raises(ConfigError, match="--swa-lr"):
        config_from_recipe("se-cnn", 28, "default", swa_epochs=2, swa_lr=-1.0).validate()
    run_dir = train(_cfg(tmp_path, epochs=3, swa_epochs=1, schedule="plateau", keep_state=True), evaluate=False)
    with pytest.raises(EdgebloodError, match=r"averages the weights of its last epochs \(--swa 1\)"):
        train(TrainConfig(), resume=run_dir, epochs=5, evaluate=False)


def test_a_frozen_encoders_batchnorm_statistics_survive_the_averaging(tmp_path, monkeypatch):
    """The autoclassifier trains its classifier on a frozen, pre-trained encoder kept in eval mode: measuring the
    average's statistics must leave the encoder's alone (torch's update_bn would reset them to mean 0, variance 1)."""
    import edgeblood.training.swa as swa

    encoders = []
    real_end = swa.WeightAveraging.end_epoch

    def recording_end(self, model, stream, feed):
        encoders.append({k: v.clone() for k, v in model.state_dict().items() if "encoder" in k and "running_var" in k})
        return real_end(self, model, stream, feed)

    monkeypatch.setattr(swa.WeightAveraging, "end_epoch", recording_end)
    run_dir = train(_cfg(tmp_path, model="autoclassifier", model_cfg={}, pretrain_epochs=1, epochs=3, swa_epochs=1), evaluate=False)
    saved = torch.load(run_dir / CHECKPOINT, weights_only=True)["state_dict"]
    (encoder,) = encoders
    assert encoder, "the autoclassifier's encoder has BatchNorm layers"
    for key, var in encoder.items():
        assert torch.equal(saved[key], var), f"{key}: the frozen encoder's statistics were measured again"
        assert not torch.allclose(var, torch.ones_like(var)), "a reset, never-measured layer would read variance 1"
