"""scripts/results_table.py: rows come from run directories, never from hand-typed numbers."""

from __future__ import annotations

import json

import pytest
from conftest import script_module

from edgeblood.evaluation.evaluate import evaluate_run


@pytest.fixture(scope="module")
def table():
    return script_module("results_table")


def test_row_and_seed_summary_come_from_the_runs(table, sample_run, copy_run):
    run_dir = copy_run(sample_run)
    evaluate_run(run_dir, "test", plots=False, tta=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    row = table.collect(run_dir)
    assert row["fp32_accuracy"] == metrics["test"]["accuracy"] and row["tta_accuracy"] == metrics["test"]["tta"]["accuracy"]
    assert row["published"].startswith("97.92 % @ 64 px")  # se-cnn's own study figure, from the registry
    assert row["teacher"] is None and row["data"] == "embedded sample"

    other = run_dir.parent / "other-seed"
    other.mkdir()
    meta = json.loads((run_dir / "run.json").read_text())
    meta["training"]["seed"] = meta["training"]["config"]["seed"] = 1
    (other / "run.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="no finished"):
        table.seed_summary([run_dir, other])
    (other / "metrics.json").write_text((run_dir / "metrics.json").read_text())
    with pytest.raises(SystemExit, match="share a seed"):
        table.seed_summary([run_dir, run_dir])
    m = json.loads((other / "metrics.json").read_text())
    m["test"]["accuracy"] = row["fp32_accuracy"] - 0.02
    (other / "metrics.json").write_text(json.dumps(m))
    summary = table.seed_summary([run_dir, other])
    assert summary["n"] == 2 and summary["mean"] == pytest.approx(row["fp32_accuracy"] - 0.01)
    assert summary["std"] == pytest.approx(0.02 / 2**0.5) and summary["runs"] == [run_dir.name, "other-seed"]

    older = json.loads(json.dumps(meta))  # a run made before --swa existed: it trained without, like a new run that leaves it off
    del older["training"]["config"]["swa_epochs"], older["training"]["config"]["swa_lr"], older["training"]["config"]["augment"]["zoom"]
    (other / "run.json").write_text(json.dumps(older))
    assert table.seed_summary([run_dir, other])["n"] == 2
    older["training"]["config"]["swa_epochs"] = 5
    (other / "run.json").write_text(json.dumps(older))
    with pytest.raises(SystemExit, match="differs in: swa_epochs"):
        table.seed_summary([run_dir, other])

    meta["training"]["config"]["lr"] *= 2
    (other / "run.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="differs in: lr"):
        table.seed_summary([run_dir, other])

    row["seeds"] = summary
    text = table.render([row])
    line = next(line for line in text.splitlines() if line.startswith("| se-cnn"))
    assert f"{100 * row['fp32_accuracy']:.2f} % (mean {100 * summary['mean']:.2f} ± {100 * summary['std']:.2f}, 2 seeds)" in line
    assert f"{100 * row['tta_accuracy']:.2f} %" in line
    cal = metrics["test"]["calibration"]
    assert row["ece"] == {"calibrated": metrics["test"]["ece"], "uncalibrated": cal["ece_uncalibrated"], "temperature": cal["temperature"]}
    assert f"| {metrics['test']['ece']:.3f} ({cal['ece_uncalibrated']:.3f}) |" in line


def test_a_pending_system_leaves_the_not_yet_trained_list_once_it_has_a_row(table):
    row = {"model": "vgg15", "size": 28, "fp32_accuracy": 0.9, "params": 7_320_000, "macs": 219e6, "data": "28 px official",
           "macro_f1": 0.9, "train_minutes": 1.0, "epochs": 1, "train_device": "cpu", "train_precision": "fp32", "command": "x"}
    marker = "Systems of the cited studies with no trained row yet"
    before = table.render([]).split(marker)[1]
    after = table.render([row]).split(marker)[1]
    assert "| vgg15 |" in before and "| se-vgg15 |" in before
    assert "| vgg15 |" not in after and "| se-vgg15 |" in after and "| unet-encoder |" in after


def test_a_path_that_is_no_run_and_help_get_a_line_not_a_traceback(table, tmp_path, capsys):
    with pytest.raises(SystemExit, match="not a run directory"):
        table.main(["add", str(tmp_path)])
    table.main(["add", "--help"])
    assert "results_table.py add" in capsys.readouterr().out


def test_a_weight_averaged_run_is_labelled_and_kept_out_of_the_headline(table, sample_run, copy_run):
    run_dir = copy_run(sample_run)
    evaluate_run(run_dir, "test", plots=False)
    run = json.loads((run_dir / "run.json").read_text())
    run["training"]["config"]["swa_epochs"] = 3
    (run_dir / "run.json").write_text(json.dumps(run))
    row = table.collect(run_dir)
    assert row["derived"] == "weights averaged over the last 3 epochs (--swa)"
    assert "\\[weights averaged over the last 3 epochs (--swa)\\]" in table.render([row])
    as_real = dict(row, data="28 px official")  # the sample's rows never reach the headline, whatever their label
    assert table.headline_rows([as_real]) == [] and table.headline_rows([dict(as_real, derived=None)])
