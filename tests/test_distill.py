"""Knowledge distillation (--teacher) and test-time augmentation (--tta)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgeblood.config import TrainConfig
from edgeblood.data.batches import BatchStream
from edgeblood.data.bloodmnist import load_sample
from edgeblood.errors import EdgebloodError
from edgeblood.evaluation.evaluate import evaluate_run
from edgeblood.evaluation.predict import dihedral_views, predict_logits, predict_probs
from edgeblood.info import SHORT_CLASS_NAMES
from edgeblood.runs import open_run
from edgeblood.training import train
from edgeblood.training.distill import cache_path, distillation_loss, teacher_logits


def test_distillation_loss_is_scaled_kl_and_zero_at_the_teacher():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    t = 3.0
    p_t = F.softmax(teacher / t, 1)
    expected = (p_t * (p_t.log() - F.log_softmax(student / t, 1))).sum(1).mean() * t * t
    assert torch.allclose(distillation_loss(student, teacher, t), expected, atol=1e-6)
    assert distillation_loss(teacher, teacher, t).abs() < 1e-6
    # shifting all logits of a row changes nothing (softmax is shift-invariant)
    assert torch.allclose(distillation_loss(student + 5.0, teacher, t), distillation_loss(student, teacher, t), atol=1e-5)


def test_indexed_batches_carry_the_sample_index():
    images = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1).expand(50, 3, 4, 4).contiguous()
    labels = torch.arange(50) % 8
    seen = []
    for x, y, idx in BatchStream(images, labels, 16, seed=3).indexed():
        assert torch.equal(y, labels[idx])
        assert torch.allclose(x[:, 0, 0, 0] * 255, idx.float())  # the pixel value is the index
        seen += idx.tolist()
    assert sorted(seen) == list(range(50))


def test_tta_prediction_is_invariant_to_rotating_and_flipping_the_input(sample_run):
    run = open_run(sample_run)
    images = load_sample(28).images("test")[:32]
    turned = np.ascontiguousarray(np.rot90(images, 1, axes=(1, 2))[:, :, ::-1])  # a rotation and a flip, NHWC
    single = predict_probs(run.model, images, run.mean, run.std)
    single_turned = predict_probs(run.model, turned, run.mean, run.std)
    tta = predict_probs(run.model, images, run.mean, run.std, tta=True)
    tta_turned = predict_probs(run.model, turned, run.mean, run.std, tta=True)
    assert np.abs(single - single_turned).max() > 1e-3, "the model itself is not invariant, so this test can tell"
    assert np.abs(tta - tta_turned).max() < 1e-4
    assert len({tuple(v.flatten()[:20].tolist()) for v in dihedral_views(torch.rand(1, 3, 5, 5))}) == 8


def test_evaluate_reports_tta_apart_from_single_pass(sample_run, copy_run):
    run_dir = copy_run(sample_run)
    entry = evaluate_run(run_dir, "test", plots=False, tta=True)
    assert entry["tta"]["views"] == 8 and 0 <= entry["tta"]["accuracy"] <= 1
    run = open_run(run_dir)
    probs = predict_probs(run.model, load_sample(28).images("test"), run.mean, run.std, tta=True)
    assert entry["tta"]["accuracy"] == pytest.approx(float((probs.argmax(1) == load_sample(28).labels("test")).mean()))
    assert json.loads((run_dir / "metrics.json").read_text())["test"]["tta"] == entry["tta"]
    assert run.metadata["metrics"]["test"]["accuracy"] == entry["accuracy"], "headline stays single-pass"


def test_student_distils_from_a_teacher_of_another_size(tmp_path, sample_run, copy_run):
    teacher_dir = copy_run(sample_run)
    cfg = TrainConfig(model="se-cnn", size=64, sample=True, epochs=2, batch_size=64, out_dir=str(tmp_path), name="student",
                      model_cfg={"widths": [8, 16, 32, 64]}, teacher=str(teacher_dir), kd_alpha=0.9, kd_temperature=3.0, mixup=0.2)
    run = open_run(train(cfg, evaluate=False))
    info = run.metadata["training"]["teacher"]
    assert info["in_size"] == 28 and info["views"] == 8 and info["model"] == "se-cnn" and len(info["weights_sha256"]) == 64
    assert Path(info["run"]).is_absolute()
    teacher = open_run(teacher_dir)
    sample = load_sample(28)
    logits = predict_logits(teacher.model, sample.images("train"), teacher.mean, teacher.std, tta=True)
    assert info["train_accuracy_tta"] == pytest.approx(float((logits.argmax(1) == sample.labels("train")).mean()), abs=1e-6)
    assert run.metadata["training"]["config"]["kd_alpha"] == 0.9


def test_teacher_logits_are_cached_by_weights_and_data(sample_run, copy_run):
    teacher_dir = copy_run(sample_run)
    labels = load_sample(28).labels("train")
    first, _ = teacher_logits(teacher_dir, labels, list(SHORT_CLASS_NAMES), sample=True)
    cache = cache_path(teacher_dir, load_sample(28).md5)  # the cache file of the data the teacher read
    assert cache.is_file()
    stored = torch.load(cache, weights_only=True)
    torch.save({"key": stored["key"], "logits": stored["logits"] + 1.0}, cache)  # a marked cache entry is what comes back
    again, _ = teacher_logits(teacher_dir, labels, list(SHORT_CLASS_NAMES), sample=True)
    assert torch.allclose(again, first + 1.0)
    torch.save({"key": {**stored["key"], "weights_sha256": "other"}, "logits": stored["logits"] + 1.0}, cache)
    fresh, _ = teacher_logits(teacher_dir, labels, list(SHORT_CLASS_NAMES), sample=True)
    assert torch.allclose(fresh, first), "a cache from other weights is recomputed"


def test_teacher_with_misaligned_data_is_refused(sample_run):
    labels = load_sample(28).labels("train")
    with pytest.raises(EdgebloodError, match="same order"):
        teacher_logits(sample_run, np.roll(labels, 1), list(SHORT_CLASS_NAMES), sample=True)
    with pytest.raises(EdgebloodError, match="classes"):
        teacher_logits(sample_run, labels, list(reversed(SHORT_CLASS_NAMES)), sample=True)
    with pytest.raises(EdgebloodError, match="embedded sample"):
        teacher_logits(sample_run, labels, list(SHORT_CLASS_NAMES), sample=False)


def test_resume_refuses_a_retrained_teacher(sample_run, copy_run):
    from dataclasses import replace

    from edgeblood.run_metadata import TeacherInfo
    from edgeblood.runs import open_run
    from edgeblood.training.job import check_same_teacher

    student = open_run(copy_run(sample_run))
    student.meta = replace(student.meta, training=replace(student.meta.training, teacher=TeacherInfo(run="t", weights_sha256="aaa")))
    student.save()
    check_same_teacher(student.dir, {"run": "t", "weights_sha256": "aaa"})  # same weights: fine
    with pytest.raises(EdgebloodError, match="other weights"):
        check_same_teacher(student.dir, {"run": "t", "weights_sha256": "bbb"})
