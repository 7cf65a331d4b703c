"""Training: the run directory contract, resume after Ctrl-C, DDP on 2 CPU processes, bad input."""

from __future__ import annotations

import csv
import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from edgeblood.config import TrainConfig, get_recipe
from edgeblood.errors import EdgebloodError
from edgeblood.runs import CHECKPOINT, TRAIN_STATE, open_run
from edgeblood.training import train

SMALL = {"widths": [8, 16, 32, 64]}


def _cfg(tmp_path: Path, **kw) -> TrainConfig:
    base = dict(model="se-cnn", size=28, sample=True, epochs=2, batch_size=64, out_dir=str(tmp_path), name="r", model_cfg=SMALL)
    base.update(kw)
    return TrainConfig(**base)


def test_sample_run_directory_contract(sample_run):
    for name in (CHECKPOINT, "run.json", "history.csv", "metrics.json"):
        assert (sample_run / name).is_file(), name
    assert not (sample_run / TRAIN_STATE).exists(), "train_state.pt is removed once training completes"
    run = open_run(sample_run)
    meta = run.metadata
    assert meta["dataset"]["source"] == "sample"
    assert meta["input"]["size"] == 28 and len(meta["input"]["mean"]) == 3 and meta["input"]["channel_order"] == "RGB"
    assert meta["training"]["status"] == "complete" and meta["training"]["best_epoch"] >= 1
    assert len(meta["classes"]) == 8 and meta["model"]["params"] > 0 and meta["model"]["macs"] > 0
    assert 0 <= meta["metrics"]["test"]["accuracy"] <= 1
    rows = list(csv.DictReader(open(sample_run / "history.csv")))
    assert len(rows) == 6 and {"train_loss", "val_acc", "lr", "seconds"} <= set(rows[0])
    best = max(float(r["val_acc"]) for r in rows)
    assert meta["training"]["best_val_accuracy"] == pytest.approx(best)
    assert json.loads((sample_run / "run.json").read_text())["model"]["name"] == "se-cnn"
    # the saved weights load with weights_only=True and reproduce the model
    payload = torch.load(sample_run / CHECKPOINT, weights_only=True)
    assert set(payload["state_dict"]) == set(run.model.state_dict())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_learns_on_sample(tmp_path, precision):
    """Both precision paths on every machine (bf16 autocast runs emulated where the CPU lacks it)."""
    run_dir = train(_cfg(tmp_path, epochs=8, lr=5e-3, precision=precision), evaluate=False)
    assert open_run(run_dir).metadata["training"]["precision"] == precision
    rows = list(csv.DictReader(open(run_dir / "history.csv")))
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"]) * 0.8
    assert float(rows[-1]["train_acc"]) > 0.4  # 8 classes: chance is 0.125


@pytest.fixture
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield 1
    torch.set_num_threads(before)


def test_the_engine_prefetches_only_with_a_spare_core_and_trains_the_same_weights_either_way(tmp_path, monkeypatch, one_torch_thread):
    import edgeblood.training.job as job

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert job.prefetch_pays(False) and not job.prefetch_pays(True)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert not job.prefetch_pays(False), "one core: the batch thread would only compete with the model"

    used = []
    real_stream = job.BatchStream

    def recording_stream(*args, **kwargs):
        used.append(kwargs["prefetch"])
        return real_stream(*args, **kwargs)

    monkeypatch.setattr(job, "BatchStream", recording_stream)
    weights = {}
    for cores in ({0}, {0, 1}):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, cores=cores: cores, raising=False)
        run_dir = train(_cfg(tmp_path, name=f"cores{len(cores)}", threads=one_torch_thread), evaluate=False)
        weights[len(cores)] = torch.load(run_dir / CHECKPOINT, weights_only=True)["state_dict"]
    assert used == [False, True]
    assert all(torch.equal(weights[1][k], weights[2][k]) for k in weights[1]), "prefetching changed the training"


def _interrupt_after_epoch(monkeypatch, epoch: int):
    """Ctrl-C right after epoch ``epoch`` is saved (its history written); returns the real writer to restore."""
    import edgeblood.training.epochs as epochs

    real_write = epochs.write_history

    def write_then_interrupt(run_dir, history):
        real_write(run_dir, history)
        if len(history) == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(epochs, "write_history", write_then_interrupt)
    return real_write

def test_interrupt_then_resume_loses_at_most_one_epoch(tmp_path, monkeypatch):
    import edgeblood.training.epochs as epochs

    real_write = _interrupt_after_epoch(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path, epochs=5), evaluate=False)
    run_dir = tmp_path / "r"
    assert (run_dir / CHECKPOINT).is_file() and (run_dir / TRAIN_STATE).is_file()
    assert open_run(run_dir).metadata["training"]["status"] == "interrupted"
    state = torch.load(run_dir / TRAIN_STATE, weights_only=True)
    assert state["epoch"] == 2  # the interrupted epoch 3 is the only one lost

    monkeypatch.setattr(epochs, "write_history", real_write)
    started = open_run(run_dir).metadata["training"]["started"]
    monkeypatch.setattr("edgeblood.training.run_record.utc_now", lambda: "2031-01-01T00:00:00+00:00")  # resumed later
    train(TrainConfig(), resume=run_dir, evaluate=False)
    rows = list(csv.DictReader(open(run_dir / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    assert not (run_dir / TRAIN_STATE).exists()
    training = open_run(run_dir).metadata["training"]
    assert training["status"] == "complete" and training["resumed_with"]
    assert training["started"] == started, "the run's start time is when it began, not when it was resumed"


def test_a_train_state_older_than_its_start_time_resumes_with_the_one_in_run_json(tmp_path, monkeypatch):
    import edgeblood.training.epochs as epochs

    real_write = _interrupt_after_epoch(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path, epochs=4), evaluate=False)
    run_dir = tmp_path / "r"
    state = torch.load(run_dir / TRAIN_STATE, weights_only=True)
    del state["started"]  # as train_state.pt was written before it kept the start time
    torch.save(state, run_dir / TRAIN_STATE)
    started = open_run(run_dir).metadata["training"]["started"]
    monkeypatch.setattr(epochs, "write_history", real_write)
    monkeypatch.setattr("edgeblood.training.run_record.utc_now", lambda: "2031-01-01T00:00:00+00:00")
    train(TrainConfig(), resume=run_dir, evaluate=False)
    assert open_run(run_dir).metadata["training"]["started"] == started


def test_resume_errors(tmp_path, sample_run):
    with pytest.raises(EdgebloodError, match="finished training"):
        train(TrainConfig(), resume=sample_run)
    with pytest.raises(EdgebloodError, match="no train_state.pt"):
        train(TrainConfig(), resume=tmp_path)


@pytest.mark.parametrize("saved, state, epochs, message", [
    (dict(schedule="cosine"), dict(epoch=2, stale=0), 4, "shaped by the epoch count"),  # the lr already applied would differ
    (dict(schedule="onecycle"), dict(epoch=1, stale=0), 4, "shaped by the epoch count"),
    (dict(schedule="plateau", early_stopping=2), dict(epoch=2, stale=2), 4, "early stopping"),
    (dict(schedule="plateau"), dict(epoch=2, stale=0), None, "add --epochs N"),  # finished: nothing left without more epochs
    (dict(schedule="plateau", early_stopping=2), dict(epoch=1, stale=2), None, "ended by early stopping"),
    (dict(schedule="plateau"), dict(epoch=2, stale=0), 2, "more than that"),
])
def test_training_on_is_refused_where_it_would_not_continue_the_same_run(tmp_path, saved, state, epochs, message):
    from edgeblood.training.checkpointing import extend_epochs

    with pytest.raises(EdgebloodError, match=message):
        extend_epochs(tmp_path, state, _cfg(tmp_path, **saved), epochs)


def test_training_on_sets_the_epochs_and_sets_the_old_metrics_aside(tmp_path):
    from edgeblood.training.checkpointing import extend_epochs

    (tmp_path / "metrics.json").write_text("{}")
    cfg = extend_epochs(tmp_path, dict(epoch=2, stale=1), _cfg(tmp_path, schedule="constant", early_stopping=3), 5)
    assert cfg.epochs == 5 and (tmp_path / "metrics-epoch2.json").is_file() and not (tmp_path / "metrics.json").exists()
    assert extend_epochs(tmp_path, dict(epoch=1, stale=0), _cfg(tmp_path, schedule="cosine"), None).epochs == 2  # interrupted: as saved


def test_existing_named_run_is_refused(tmp_path, sample_run):
    cfg = _cfg(sample_run.parent, name=sample_run.name)
    with pytest.raises(EdgebloodError, match="already exists"):
        train(cfg)


def test_ema_mixup_bf16_options_run(tmp_path):
    run_dir = train(_cfg(tmp_path, epochs=1, ema_decay=0.9, mixup=0.2, cutmix=1.0, precision="bf16", channels_last=True,
                         schedule="cosine", class_weights="balanced", weighted_sampler=True, grad_clip=1.0), evaluate=False)
    assert open_run(run_dir).metadata["training"]["config"]["ema_decay"] == 0.9


@pytest.mark.parametrize("bad", [dict(optimizer="lion"), dict(schedule="step"), dict(epochs=0), dict(precision="fp8"), dict(keep="median"),
                                 dict(keep="last", early_stopping=3), dict(recipe="finetune")])
def test_invalid_config_is_one_clear_error(tmp_path, bad):
    with pytest.raises(EdgebloodError):
        train(_cfg(tmp_path, **bad))


def test_recipes_layering():
    assert get_recipe("default", "se-cnn", 28)["schedule"] == "onecycle"
    assert get_recipe("published", "cnn-baseline", 28)["augment"]["rot90"] is False
    # a model@size entry beats the family-wide one: the tiny model's best is the default recipe, longer
    # (the same TrainConfig as `--recipe default --epochs 150`, the command its results-table rows ran)
    from edgeblood.cli.train import build_config

    def resolved(model, recipe, **overrides):
        cfg = build_config(model=model, size=28, recipe=recipe, model_opts={}, overrides=overrides,
                           augment_overrides={}, fixed={})
        return {k: v for k, v in cfg.to_dict().items() if k != "recipe"}

    for model in ("se-cnn-compact-tiny", "se-cnn-compact"):
        assert resolved(model, "best") == resolved(model, "default", epochs=150)
    assert get_recipe("best", "se-cnn-compact-tiny", 64) == get_recipe("best", "se-cnn", 64)
    with pytest.raises(EdgebloodError, match="unknown recipe"):
        get_recipe("fastest", "se-cnn", 28)


def test_cli_bad_input_is_one_line(tmp_path):
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-m", "edgeblood", "train", "--model", "nope", "--sample", "--out", str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2
    assert "unknown model 'nope'" in out.stderr and "Traceback" not in out.stderr


def test_torchrun_ddp_two_cpu_processes(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "edgeblood", "train",
           "--sample", "--epochs", "1", "--batch-size", "32", "--no-evaluate", "--out", str(tmp_path), "--name", "ddp",
           "--model-opt", "widths=[8,16,32,64]", "--threads", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr[-2000:]
    run = open_run(tmp_path / "ddp")
    assert run.metadata["training"]["epochs_run"] == 1
    rows = list(csv.DictReader(open(tmp_path / "ddp" / "history.csv")))
    assert len(rows) == 1


@pytest.mark.realdata
@pytest.mark.slow
def test_one_epoch_on_full_28px_reaches_60_percent(tmp_path, data_dir):
    cfg = TrainConfig(model="se-cnn", size=28, epochs=1, data_dir=str(data_dir), out_dir=str(tmp_path), name="real")
    run_dir = train(cfg, evaluate=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.60


def test_the_trainer_loads_its_evaluator_at_start_so_an_upgrade_mid_training_cannot_break_the_final_evaluation():
    """A fresh interpreter: importing the trainer must already hold every module the final evaluation uses."""
    code = ("import sys, edgeblood.training.engine; "
            "need = ['edgeblood.evaluation.evaluate', 'edgeblood.evaluation.metrics', 'edgeblood.evaluation.predict', "
            "'edgeblood.evaluation.plots']; print([m for m in need if m not in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_torchrun_ddp_two_phase_model_pretrains_one_shared_autoencoder(tmp_path):
    """Phase 1 (reconstruction) runs DDP-wrapped too: the MSE printed is over both ranks' shards."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "edgeblood", "train",
           "--model", "autoclassifier", "--sample", "--pretrain-epochs", "1", "--epochs", "1", "--batch-size", "32",
           "--no-evaluate", "--out", str(tmp_path), "--name", "ddp-ae", "--threads", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "reconstruction MSE" in out.stdout and "(all 2 ranks)" in out.stdout, out.stdout[-2000:]
    run = open_run(tmp_path / "ddp-ae")
    assert run.metadata["training"]["pretrain_seconds"] > 0 and run.metadata["training"]["epochs_run"] == 1


# --------------------------------------------------------------------------- D11: a disk that fills up during training

ZIP_WRITER_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 3804032 vs 3803920"  # torch.save on a full disk


def _full_disk_at(what: str, epoch: int, error: BaseException):
    """torch.save that fails like a full disk on ``what`` ('train_state' or 'checkpoint') of ``epoch``, leaving half a file behind.

    A full disk cannot be made in a test; the failing call is the filesystem write itself, everything around it is real.
    """
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        is_state = isinstance(obj, dict) and "optimizer" in obj
        is_checkpoint = isinstance(obj, dict) and "state_dict" in obj
        epoch_of = obj.get("epoch") if is_state else (obj.get("metadata", {}).get("training", {}).get("epochs_run") if is_checkpoint else None)
        if epoch_of == epoch and (is_state if what == "train_state" else is_checkpoint):
            Path(f).write_bytes(b"PK\x03\x04" + bytes(4096))  # what the zip writer had written when the disk filled
            raise error
        return real_save(obj, f, *args, **kwargs)

    return save


def _history(run_dir: Path) -> list[dict]:
    """history.csv without the timing columns (they differ between any two runs)."""
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in csv.DictReader(open(run_dir / "history.csv"))]


def test_a_full_disk_at_the_first_epoch_stops_with_one_line_and_resume_continues(tmp_path):
    """D11 as a user met it: the first train_state.pt write hit a full disk -> a zip-writer traceback, a checkpoint.pt
    without train_state.pt, and `--resume` then said the run had finished training."""
    code = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_training import _full_disk_at, ZIP_WRITER_FULL
        torch.save = _full_disk_at("train_state", 1, RuntimeError(ZIP_WRITER_FULL))
        sys.argv = ["edgeblood", "train", "--sample", "--epochs", "2", "--batch-size", "64", "--model-opt", "widths=[8,16,32,64]",
                    "--threads", "1", "--no-evaluate", "--out", {str(tmp_path)!r}, "--name", "r"]
        from edgeblood.cli import main
        main()
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=dict(os.environ, COLUMNS="400"))
    run_dir = tmp_path / "r"
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stdout + out.stderr
    error = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(error) == 1 and error[0].startswith("error: could not save epoch 1")
    assert "free space" in error[0] and f"edgeblood train --resume {run_dir}" in error[0]
    assert not list(run_dir.glob(".*.tmp")), "the half-written file is removed"
    assert torch.load(run_dir / TRAIN_STATE, weights_only=True)["epoch"] == 0  # written before epoch 1, still whole

    resumed = train(TrainConfig(), resume=run_dir, evaluate=False)
    config = open_run(resumed).metadata["training"]["config"]
    straight = train(TrainConfig.from_dict({**config, "name": "straight"}), evaluate=False)
    assert [int(r["epoch"]) for r in _history(resumed)] == [1, 2]
    assert _history(resumed) == _history(straight)  # epoch 1 is redone exactly
    assert not (resumed / TRAIN_STATE).exists() and open_run(resumed).metadata["training"]["status"] == "complete"


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), RuntimeError(ZIP_WRITER_FULL)], ids=["ENOSPC", "zip-writer"])
def test_a_full_disk_later_keeps_the_last_saved_epoch_and_resume_finishes(tmp_path, monkeypatch, error):
    monkeypatch.setattr(torch, "save", _full_disk_at("train_state", 2, error))
    with pytest.raises(EdgebloodError) as err:
        train(_cfg(tmp_path, epochs=3), evaluate=False)
    run_dir = tmp_path / "r"
    message = str(err.value)
    assert "\n" not in message and "could not save epoch 2" in message and f"continue with: edgeblood train --resume {run_dir}" in message
    assert ("No space left on device" if isinstance(error, OSError) else "could not be written to the end") in message
    assert torch.load(run_dir / TRAIN_STATE, weights_only=True)["epoch"] == 1
    assert open_run(run_dir).metadata["training"]["epochs_run"] >= 1  # checkpoint.pt loads: whole
    assert not list(run_dir.glob(".*.tmp"))

    monkeypatch.undo()
    train(TrainConfig(), resume=run_dir, evaluate=False)
    assert [int(r["epoch"]) for r in _history(run_dir)] == [1, 2, 3]
    assert not (run_dir / TRAIN_STATE).exists()


def test_a_full_disk_before_the_first_checkpoint_keeps_nothing_and_says_run_again(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", _full_disk_at("checkpoint", 1, OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(EdgebloodError, match="nothing was kept - free space on that disk, then run the command again"):
        train(_cfg(tmp_path, epochs=2), evaluate=False)
    assert not (tmp_path / "r").exists()  # no half run left to confuse --resume or the next run's name


def test_a_write_bug_is_not_reported_as_a_full_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", _full_disk_at("train_state", 1, RuntimeError("Tensors must be contiguous")))
    with pytest.raises(RuntimeError, match="contiguous"):
        train(_cfg(tmp_path, epochs=2), evaluate=False)


def test_a_two_phase_model_resumes(tmp_path, monkeypatch):
    """Resuming --pretrain-epochs runs failed: the encoder was not frozen again, so the optimizer state (saved over the
    classifier's parameters only) did not fit ("parameter group that doesn't match the size")."""
    import edgeblood.training.epochs as epochs

    real_write = _interrupt_after_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path, model="autoclassifier", model_cfg={}, pretrain_epochs=1, epochs=3), evaluate=False)
    assert torch.load(tmp_path / "r" / TRAIN_STATE, weights_only=True)["pretrain_seconds"] > 0, "train_state.pt carries the phase's time"
    monkeypatch.setattr(epochs, "write_history", real_write)
    run_dir = train(TrainConfig(), resume=tmp_path / "r", evaluate=False)
    straight = train(_cfg(tmp_path, model="autoclassifier", model_cfg={}, pretrain_epochs=1, epochs=3, name="straight"), evaluate=False)
    assert [int(r["epoch"]) for r in _history(run_dir)] == [1, 2, 3]
    assert _history(run_dir) == _history(straight)
    pretrain_s = open_run(run_dir).meta.training.pretrain_seconds
    assert pretrain_s is not None and pretrain_s > 0, "the resumed run lost the time of the phase it did before the interrupt"


def test_a_resumed_mixup_and_cutmix_run_draws_the_same_mixes_as_an_uninterrupted_one(tmp_path, monkeypatch):
    """Mixup/CutMix draw from Python's and NumPy's generators; train_state.pt used to keep torch's only, so the
    epochs after a resume mixed other pairs with other weights than the uninterrupted run."""
    import edgeblood.training.epochs as epochs

    mixing = dict(mixup=0.4, cutmix=0.4, epochs=4)
    real_write = _interrupt_after_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path, **mixing), evaluate=False)
    monkeypatch.setattr(epochs, "write_history", real_write)
    resumed = train(TrainConfig(), resume=tmp_path / "r", evaluate=False)
    straight = train(_cfg(tmp_path, name="straight", **mixing), evaluate=False)

    def losses(run_dir):
        return [(r["train_loss"], r["val_acc"]) for r in _history(run_dir)]

    assert len(losses(resumed)) == 4 and losses(resumed) == losses(straight)
    a, b = (torch.load(d / CHECKPOINT, weights_only=True)["state_dict"] for d in (resumed, straight))
    assert all(torch.equal(a[k], b[k]) for k in a)



def test_keep_last_saves_the_final_epochs_weights(tmp_path):
    """--keep last (a few-shot fine-tune whose val images are its training images): checkpoint.pt takes every
    epoch's weights, so it ends as the last epoch's model whatever epoch val accuracy peaked at."""
    from edgeblood.training.callbacks import Callback

    def weights() -> dict:
        return torch.load(tmp_path / "r" / CHECKPOINT, weights_only=True)["state_dict"]

    class CheckpointWatcher(Callback):
        def __init__(self):
            self.seen: list[dict] = []

        def on_epoch_end(self, event) -> None:
            self.seen.append(weights())

    watcher = CheckpointWatcher()
    train(_cfg(tmp_path, epochs=3, keep="last"), callbacks=[watcher], evaluate=False)
    first, last, final = watcher.seen[0], watcher.seen[-1], weights()
    assert any(not torch.equal(first[k], last[k]) for k in first), "a new checkpoint after every epoch"
    changed = [k for k in final if not torch.equal(final[k], last[k])]
    assert len(changed) <= 2 and all(k.startswith(changed[0].rsplit(".", 1)[0]) for k in changed), \
        f"only the head differs (the fitted temperature is folded into it): {changed}"
    training = open_run(tmp_path / "r").metadata["training"]
    assert training["config"]["keep"] == "last" and training["kept_epoch"] == 3
