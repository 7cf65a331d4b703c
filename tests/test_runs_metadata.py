"""The typed run metadata (edgeblood.run_metadata, issue #15 item 3): every run.json edgeblood wrote reads
into RunMetadata and writes back byte for byte; a file from elsewhere with a wrong type fails at open with
one line naming the key."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from edgeblood.errors import EdgebloodError
from edgeblood.framing import bloodmnist_framing
from edgeblood.models import create
from edgeblood.run_metadata import CalibrationInfo, DatasetInfo, RunMetadata, TrainingInfo
from edgeblood.runs import CHECKPOINT, RUN_JSON, open_run, save_checkpoint

# run.json as edgeblood first wrote it (the training engine of commit 5fa4069): no framing, no
# calibration, empty metrics; BloodMNIST's official 28 px file.
OLD_RUN_JSON = {
    "schema": "edgeblood.run/1",
    "created": "2026-11-22T10:00:00+00:00",
    "model": {"name": "se-cnn", "config": {"name": "se-cnn", "num_classes": 8, "in_size": 28, "widths": [8, 16, 32, 32]},
              "params": 1000, "macs": 2000},
    "classes": ["basophil", "eosinophil", "erythroblast", "immature granulocyte", "lymphocyte", "monocyte", "neutrophil", "platelet"],
    "class_names_full": ["basophil", "eosinophil", "erythroblast", "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
                         "lymphocyte", "monocyte", "neutrophil", "platelet"],
    "input": {"size": 28, "channels": 3, "channel_order": "RGB", "layout": "NCHW", "dtype": "float32", "range": [0, 255],
              "mean": [0.794, 0.661, 0.696], "std": [0.22, 0.244, 0.118], "normalisation": "(x / 255 - mean) / std, mean/std of the train split"},
    "dataset": {"name": "bloodmnist", "size": 28, "source": "full", "variant": "official", "file": "/data/bloodmnist.npz",
                "md5": "7053d0359d879ad8a5505303e11de1dc", "split_sizes": {"train": 11959, "val": 1712, "test": 3421},
                "train_class_counts": [852, 2181, 1085, 2026, 849, 993, 2330, 1643], "notes": []},
    "training": {"command": "edgeblood train --model se-cnn", "recipe": "default", "config": {"epochs": 30}, "seed": 0, "device": "cpu",
                 "precision": "fp32", "started": "2026-11-22T10:00:00+00:00", "epochs_run": 30, "best_epoch": 27,
                 "best_val_accuracy": 0.95, "wall_time_s": 600.0, "status": "complete"},
    "versions": {"python": "3.11.7", "torch": "2.5.0"},
    "edgeblood_version": "0.1.0",
    "git_commit": None,
    "metrics": {},
    "license": "model weights: Apache-2.0; training data: CC BY 4.0",
    "credit": "BloodMNIST ...",
}


def _old_run(tmp_path: Path, metadata: dict) -> Path:
    """A run directory whose checkpoint carries ``metadata`` as written (weights of the described model)."""
    cfg = dict(metadata["model"]["config"])
    model = create(cfg.pop("name"), **cfg)
    run_dir = tmp_path / "old-run"
    run_dir.mkdir()
    save_checkpoint(run_dir, model, metadata)
    return run_dir


def test_a_real_training_run_json_round_trips_byte_for_byte(sample_run):
    text = (Path(sample_run) / RUN_JSON).read_text()
    d = json.loads(text)
    meta = RunMetadata.from_dict(d)
    assert meta.to_dict() == d
    assert json.dumps(meta.to_dict(), indent=2) + "\n" == text  # key order too
    # and typed: what evaluate/export read
    assert meta.model.name == "se-cnn" and meta.input.size == 28 and meta.classes[0] == "basophil"
    assert meta.input.framing == bloodmnist_framing(28) and meta.input.framing_recorded
    assert meta.dataset.source == "sample" and not meta.dataset.is_folder
    assert isinstance(meta.training, TrainingInfo) and meta.training.status == "complete" and meta.training.epochs_run == 6
    # the CPU that trained it, as the bench reads it (a bf16 run's weights and time depend on it)
    from edgeblood.cpu import cpu_info, cpu_label

    here = cpu_info()
    assert meta.training.cpu["model"] == here["model"] and meta.training.cpu["isa"] == here["isa"]
    assert cpu_label(meta.training.cpu).startswith(here["model"])
    assert isinstance(meta.calibration, CalibrationInfo) and meta.temperature == meta.calibration.temperature != 1.0
    assert meta.review_thresholds[0].review_rate == 0.0
    assert meta.metric("test", "accuracy") == d["metrics"]["test"]["accuracy"]


def test_opening_and_saving_a_real_run_leaves_its_files_unchanged(sample_run, copy_run):
    run_dir = copy_run(sample_run)
    before = (run_dir / RUN_JSON).read_bytes()
    run = open_run(run_dir)
    assert run.meta.to_dict() == json.loads(before)
    run.save()
    assert (run_dir / RUN_JSON).read_bytes() == before
    payload = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    assert payload["metadata"] == json.loads(before)


def test_a_run_json_of_the_first_schema_round_trips_and_gets_the_dataset_framing(tmp_path):
    meta = RunMetadata.from_dict(copy.deepcopy(OLD_RUN_JSON))
    assert meta.to_dict() == OLD_RUN_JSON
    assert list(meta.to_dict()) == list(OLD_RUN_JSON) and list(meta.to_dict()["input"]) == list(OLD_RUN_JSON["input"])
    assert meta.framing == bloodmnist_framing(28, "official") and meta.framing.jpeg_quality == 75
    assert not meta.input.framing_recorded and "framing" not in meta.to_dict()["input"]
    assert meta.calibration is None and meta.temperature == 1.0 and meta.review_thresholds == ()

    regenerated = copy.deepcopy(OLD_RUN_JSON)
    regenerated["input"]["size"] = regenerated["dataset"]["size"] = 64
    regenerated["dataset"]["variant"] = "regenerated"
    assert RunMetadata.from_dict(regenerated).framing == bloodmnist_framing(64, "regenerated")  # no JPEG step at 64 px

    # through the run directory: opened, saved (as evaluate does), and still the old file
    run_dir = _old_run(tmp_path, OLD_RUN_JSON)
    before = (run_dir / RUN_JSON).read_bytes()
    run = open_run(run_dir)
    assert run.framing == bloodmnist_framing(28) and run.in_size == 28 and run.mean == OLD_RUN_JSON["input"]["mean"]
    run.save()
    assert (run_dir / RUN_JSON).read_bytes() == before


def test_a_minimal_hand_made_run_keeps_its_unknown_keys():
    """The smallest metadata edgeblood can rebuild a model from (tests/export_runs.py writes one like it)."""
    d = {"model": {"name": "se-cnn", "config": {"name": "se-cnn", "num_classes": 8, "in_size": 28}},
         "classes": list("abcdefgh"),
         "input": {"size": 28, "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]},
         "dataset": {"name": "bloodmnist", "size": 28, "source": "sample", "lab_note": {"who": "me"}},
         "training": {"command": "tests", "seed": 1, "steps": 25},
         "site": "lab 3"}
    meta = RunMetadata.from_dict(copy.deepcopy(d))
    assert meta.to_dict() == d and list(meta.to_dict()) == list(d)
    assert meta.training.extra == {"steps": 25} and meta.dataset.extra == {"lab_note": {"who": "me"}} and meta.extra == {"site": "lab 3"}
    assert meta.input.layout == "NCHW" and meta.input.value_range == (0, 255)  # the contract's defaults, not written back
    assert meta.metrics == {} and meta.training.status is None and meta.class_names == list("abcdefgh")


def test_folder_dataset_keys_are_typed_and_the_rest_kept():
    d = {"name": "lab", "kind": "image-folder", "source": "folder", "size": 28, "variant": "folder", "file": "/x/lab", "md5": None,
         "layout": "class-folders", "files": 40, "content_sha256": "ab" * 32, "split": {"kind": "stratified", "ratios": [0.6, 0.2, 0.2], "seed": 3},
         "split_sizes": {"train": 24, "val": 8, "test": 8}, "train_class_counts": [3, 3], "classes": ["a", "b"], "skipped_files": 1,
         "skipped_examples": ["a.png: empty file"], "duplicates_across_splits": 0, "non_image_files": 2, "notes": []}
    ds = DatasetInfo.from_dict(copy.deepcopy(d))
    assert ds.to_dict() == d and list(ds.to_dict()) == list(d)
    assert ds.is_folder and ds.split.kind == "stratified" and ds.split.ratios == (0.6, 0.2, 0.2) and ds.split.seed == 3
    assert ds.md5 is None and ds.skipped_files == 1
    assert ds.extra == {"classes": ["a", "b"], "skipped_examples": ["a.png: empty file"], "non_image_files": 2}


def test_changes_are_written_in_place_and_new_keys_last(tmp_path):
    run_dir = _old_run(tmp_path, OLD_RUN_JSON)
    run = open_run(run_dir)
    record = {"method": "temperature scaling", "temperature": 1.5, "images": 10, "head": "head.1",
              "review_thresholds": [{"review_rate": 0.05, "threshold": 0.6, "flagged": 0.05, "accepted_accuracy": 0.97}]}
    run.meta = replace(run.meta, metrics={"test": {"accuracy": 0.9}}, calibration=CalibrationInfo.from_dict(record))
    run.save()
    written = json.loads((run_dir / RUN_JSON).read_text())
    assert list(written) == list(OLD_RUN_JSON) + ["calibration"]  # metrics stays where it was, calibration is appended
    assert written["metrics"] == {"test": {"accuracy": 0.9}} and written["calibration"] == record
    assert open_run(run_dir).meta.review_thresholds[0].threshold == 0.6

    # a pruned run's structure is removed by setting it to None (not written as null)
    pruned = replace(run.meta, model=replace(run.meta.model, structure={"stage.0": 4}))
    assert list(pruned.to_dict()["model"]) == ["name", "config", "params", "macs", "structure"]
    unpruned = RunMetadata.from_dict(pruned.to_dict())
    assert "structure" not in replace(unpruned, model=replace(unpruned.model, structure=None)).to_dict()["model"]


def test_edits_to_the_transition_dict_are_saved(tmp_path):
    """The training engine still edits ``run.metadata`` (a dict) and calls save(): that must keep working."""
    run_dir = _old_run(tmp_path, OLD_RUN_JSON)
    run = open_run(run_dir)
    run.metadata["training"].update(status="interrupted", resumed_with="edgeblood train --resume x")
    assert run.meta.training.status == "interrupted"
    run.save()
    written = json.loads((run_dir / RUN_JSON).read_text())
    assert written["training"]["status"] == "interrupted" and list(written["training"])[-1] == "resumed_with"


@pytest.mark.parametrize("edit, key, what", [
    (lambda d: d.update(classes=[1, 2, 3, 4, 5, 6, 7, 8]), "'classes'", "a list of strings"),
    (lambda d: d["input"].update(size="28"), "'input.size'", "a whole number"),
    (lambda d: d["input"].update(size=28.0), "'input.size'", "a whole number"),
    (lambda d: d["input"].update(mean=[0.5, 0.5]), "'input.mean'", "3 numbers"),
    (lambda d: d["input"].update(framing={"kind": "circle"}), "'input.framing'", "unknown framing kind 'circle'"),
    (lambda d: d["model"]["config"].pop("name"), "'model.config.name'", "the registry name"),
    (lambda d: d["training"].update(best_epoch="27"), "'training.best_epoch'", "a whole number"),
    (lambda d: d.update(calibration={"temperature": "hot"}), "'calibration.temperature'", "a number"),
    (lambda d: d.update(calibration={"review_thresholds": [{"review_rate": 0.1}]}), "'calibration.review_thresholds[0].threshold'", "lacks"),
    (lambda d: d.pop("input"), "'input'", "lacks"),
    (lambda d: d.update(dataset=["bloodmnist"]), "'dataset'", "a mapping"),
])
def test_a_checkpoint_with_a_wrong_type_fails_at_open_naming_the_key(tmp_path, edit, key, what):
    bad = copy.deepcopy(OLD_RUN_JSON)
    edit(bad)
    run_dir = tmp_path / "foreign"
    run_dir.mkdir()
    model = create("se-cnn", widths=[8, 16, 32, 32])
    torch.save({"format": "edgeblood-checkpoint", "version": 1, "state_dict": model.state_dict(), "metadata": bad}, run_dir / CHECKPOINT)
    with pytest.raises(EdgebloodError) as info:
        open_run(run_dir)
    message = str(info.value)
    assert "\n" not in message and key in message and what in message and str(run_dir / CHECKPOINT) in message, message


def test_the_cli_reports_a_foreign_checkpoint_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from edgeblood.cli import app

    bad = copy.deepcopy(OLD_RUN_JSON)
    bad["input"]["size"] = "twenty-eight"
    run_dir = tmp_path / "foreign"
    run_dir.mkdir()
    torch.save({"format": "edgeblood-checkpoint", "version": 1, "state_dict": {}, "metadata": bad}, run_dir / CHECKPOINT)
    result = CliRunner().invoke(app, ["export", str(run_dir), "--target", "onnx"])
    assert isinstance(result.exception, EdgebloodError)
    assert "'input.size' must be a whole number, not str 'twenty-eight'" in str(result.exception)
