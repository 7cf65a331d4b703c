"""scripts/train_queue.py (issue #28 item 3): a queue of trainings that an interruption does not lose.

Real trainings on the embedded sample: one run interrupted after its first epoch (Ctrl-C, as a session that
ends leaves it), one never started, one line the queue cannot place. Running the queue finishes both runs, the
interrupted one by `--resume`; running it again trains nothing.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import script_module

from edgeblood.config.train import TrainConfig
from edgeblood.runs import CHECKPOINT, TRAIN_STATE, open_run
from edgeblood.training import train


@pytest.fixture(scope="module")
def queue_tool():
    return script_module("train_queue")


def _interrupted_run(out: Path, monkeypatch) -> Path:
    import edgeblood.training.epochs as epochs

    real_write = epochs.write_history

    def write_then_interrupt(run_dir, history):
        real_write(run_dir, history)
        if len(history) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(epochs, "write_history", write_then_interrupt)
    cfg = TrainConfig(model="se-cnn-compact-tiny", size=28, sample=True, epochs=3, batch_size=64, out_dir=str(out), name="cut", seed=0,
                      threads=1)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, evaluate=False)
    monkeypatch.setattr(epochs, "write_history", real_write)
    return out / "cut"


def test_the_queue_resumes_the_interrupted_run_starts_the_new_one_and_then_has_nothing_to_do(queue_tool, tmp_path, monkeypatch, capsys):
    out = tmp_path / "runs"
    cut = _interrupted_run(out, monkeypatch)
    assert (cut / TRAIN_STATE).is_file() and not (cut / "metrics.json").exists()
    queue = tmp_path / "queue.txt"
    queue.write_text("# two sample runs and a line without a name\n"
                     "--model se-cnn-compact-tiny --size 28 --sample --epochs 3 --seed 0 --threads 1 --name cut\n"
                     "--model se-cnn-compact-tiny --size 28 --sample --epochs 1 --seed 0 --threads 1 --name new  # fresh\n"
                     "--model se-cnn --size 28 --sample\n", encoding="utf-8")

    steps = [queue_tool.plan(options, out) for options in queue_tool.read_queue(queue)]
    assert [(s.name, s.action) for s in steps] == [("cut", "resume"), ("new", "start"), ("?", "blocked")]
    assert steps[0].argv == ["train", "--resume", str(cut)] and "--name" in steps[2].why

    assert queue_tool.run_queue(queue, out, tmp_path / "logs") == 1  # the nameless line stays open
    for name, epochs in (("cut", 3), ("new", 1)):
        run = open_run(out / name)
        assert (out / name / "metrics.json").is_file() and run.metadata["training"]["status"] == "complete", name
        with open(out / name / "history.csv", encoding="utf-8") as fh:
            assert [int(r["epoch"]) for r in csv.DictReader(fh)] == list(range(1, epochs + 1)), name
    assert "--resume" in open_run(cut).metadata["training"]["resumed_with"] and not (cut / TRAIN_STATE).exists()
    assert (tmp_path / "logs" / "new.log").read_text(encoding="utf-8").strip()  # the training's own output, kept

    stamps = {name: (out / name / CHECKPOINT).stat().st_mtime_ns for name in ("cut", "new")}
    capsys.readouterr()
    assert queue_tool.run_queue(queue, out, tmp_path / "logs") == 1
    printed = capsys.readouterr().out
    assert "cut: done" in printed and "new: done" in printed
    assert stamps == {name: (out / name / CHECKPOINT).stat().st_mtime_ns for name in ("cut", "new")}  # nothing retrained


def test_a_run_folder_the_queue_cannot_judge_is_named_not_overwritten(queue_tool, tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "run.json").write_text("{}", encoding="utf-8")
    step = queue_tool.plan(["--model", "se-cnn", "--name", "half"], tmp_path)
    assert step.action == "blocked" and "remove it" in step.why and (tmp_path / "half" / "run.json").is_file()


def test_a_queue_line_with_broken_quoting_is_one_line_naming_it(queue_tool, tmp_path):
    queue = tmp_path / "queue.txt"
    queue.write_text('--model se-cnn --name ok\n--model se-cnn --name "half\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"queue.txt:2: No closing quotation .*fix the quoting"):
        queue_tool.read_queue(queue)


def test_raising_a_lines_epochs_trains_a_run_that_kept_its_state_on(queue_tool, tmp_path, capsys):
    """A published recipe cut short to fit a session (plateau schedule) is trained on later, not started again:
    --keep-state keeps train_state.pt, and the queue line's larger --epochs becomes `train --resume RUN --epochs N`."""
    out, queue = tmp_path / "runs", tmp_path / "queue.txt"
    line = "--model se-cnn-compact-tiny --size 28 --sample --schedule plateau --keep-state --seed 0 --threads 1 --name cut-short --epochs {}\n"
    queue.write_text(line.format(1), encoding="utf-8")
    assert queue_tool.run_queue(queue, out, tmp_path / "logs") == 0
    run_dir = out / "cut-short"
    assert (run_dir / TRAIN_STATE).is_file() and queue_tool.plan(queue_tool.read_queue(queue)[0], out).action == "done"
    first_test = json.loads((run_dir / "metrics.json").read_text())["test"]

    queue.write_text(line.format(2), encoding="utf-8")
    step = queue_tool.plan(queue_tool.read_queue(queue)[0], out)
    assert (step.action, step.argv) == ("resume", ["train", "--resume", str(run_dir), "--epochs", "2"])
    assert queue_tool.run_queue(queue, out, tmp_path / "logs") == 0
    with open(run_dir / "history.csv", encoding="utf-8") as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [1, 2]
    run = open_run(run_dir)
    assert run.metadata["training"]["config"]["epochs"] == 2 and run.metadata["training"]["epochs_run"] == 2
    assert "--epochs 2" in run.metadata["training"]["resumed_with"]
    assert json.loads((run_dir / "metrics-epoch1.json").read_text())["test"] == first_test  # the earlier weights' figures, set aside
    assert json.loads((run_dir / "metrics.json").read_text())["test"]["evaluated_at"] > first_test["evaluated_at"]
    capsys.readouterr()
    assert queue_tool.run_queue(queue, out, tmp_path / "logs") == 0 and "cut-short: done" in capsys.readouterr().out
