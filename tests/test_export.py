"""edgeblood export: every target from a run trained on the embedded sample, checked against PyTorch.

One `edgeblood export --target all --precision fp32,fp16` (shared with test_runtimes.py through
export_runs.exported_once) feeds most tests; bad-input tests run the real CLI entry point in-process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys

import numpy as np
import pytest
import torch

from edgeblood import manifest as mf
from edgeblood.errors import EdgebloodError
from edgeblood.parity import check_parity, load_parity_data, require_parity, select_indices
from edgeblood.preprocess import wrap_for_deployment
from edgeblood.runs import open_run
from export_runs import copy_run, exported_once, perturbed_copy

CORE_ML_SKIP = "numeric check skipped: Core ML predictions need macOS"


@pytest.fixture(scope="module")
def report(sample_run, tmp_path_factory):
    return exported_once(sample_run, tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def reference(report):
    """Seven real test images (float32 NCHW 0-255) and the PyTorch probabilities for them."""
    from edgeblood.data.bloodmnist import load_sample
    from edgeblood.runtimes import to_model_input

    run = open_run(report.run_dir)
    x = to_model_input(load_sample(28).images("test")[:7])
    with torch.no_grad():
        probs, label = wrap_for_deployment(run.model, run.metadata)(torch.from_numpy(x))
    return run, x, probs.numpy(), label.numpy()


def test_cli_prints_one_row_per_artifact_and_records_the_manifest(report):
    out = report.notes[0]
    for name in ("onnx", "openvino", "coreml", "model.onnx", "model.mlpackage"):
        assert name in out
    assert "100.00" in out and "manifest:" in out and CORE_ML_SKIP in out
    assert "64 test images (embedded sample)" in out
    paths = [a["path"] for a in report.artifacts]
    assert paths == ["model.onnx", "openvino/model.xml", "openvino/model-fp16.xml", "model.mlpackage", "model-fp16.mlpackage",
                     "model.tflite", "model.pte", "model-capture.onnx", "openvino/model-capture.xml"]
    leftovers = [p.name for p in report.run_dir.iterdir() if p.name.startswith(".export-staging")]
    assert leftovers == []


def test_manifest_entries_match_the_files_and_parity_thresholds(report):
    manifest = json.loads((report.export_dir / "manifest.json").read_text())
    assert manifest["schema"] == mf.SCHEMA
    for a in manifest["artifacts"]:
        path = report.export_dir / a["path"]
        assert path.exists()
        assert a["size_bytes"] == mf.artifact_size(path) > 10_000
        assert a["sha256"] == mf.artifact_sha256(path)
        assert a["export_seconds"] > 0 and a["created"]
        p = a["parity"]
        if a.get("variant") == "capture":  # whole frames: judged on captures against the Python framing path
            assert p["status"] == "ok" and p["split"] == "captures" and p["agreement"] >= 0.995 and p["n_images"] >= 64
            assert a["input"] == {"name": "capture", "shape": ["N", "H", "W", 3], "layout": "NHWC", "dtype": "uint8",
                                  "range": [0, 255], "channel_order": "RGB"}
            continue
        if a["target"] == "coreml":
            assert p["status"] == "skipped" and CORE_ML_SKIP in p["reason"] and "spec validated" in p["reason"]
            continue
        assert p["status"] == "ok" and p["n_images"] == 64 and p["split"] == "test"
        if a["precision"] == "fp32":
            assert p["agreement"] == 1.0 and p["max_abs_diff"] < 1e-4
        else:
            assert p["decisive_agreement"] >= 0.995 and p["agreement"] >= 0.95
        assert p["artifact_accuracy"] == pytest.approx(p["reference_accuracy"], abs=1 / 64)
    ir = {a["path"]: a for a in manifest["artifacts"]}
    assert ir["openvino/model.xml"]["files"] == ["openvino/model.xml", "openvino/model.bin"]
    fp32_bin = (report.export_dir / "openvino" / "model.bin").stat().st_size
    fp16_bin = (report.export_dir / "openvino" / "model-fp16.bin").stat().st_size
    assert fp16_bin < 0.6 * fp32_bin


def test_onnx_graph_carries_the_contract(report, reference):
    import onnx
    import onnxruntime as ort

    run, x, probs, label = reference
    path = report.export_dir / "model.onnx"
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 21
    (inp,) = proto.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "image" and inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert isinstance(dims[0], str) and dims[1:] == [3, 28, 28]
    outs = {o.name: o.type.tensor_type.elem_type for o in proto.graph.output}
    assert outs == {"probabilities": onnx.TensorProto.FLOAT, "label": onnx.TensorProto.INT64, "domain": onnx.TensorProto.FLOAT}
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["classes"]) == run.classes
    assert meta["input_size"] == "28" and meta["input_layout"] == "NCHW" and json.loads(meta["input_range"]) == [0, 255]
    assert meta["model_name"] == "se-cnn" and json.loads(meta["model_config"])["widths"] == [16, 32, 64, 128]
    assert meta["dataset"] == "bloodmnist" and len(meta["dataset_md5"]) == 32
    assert float(meta["test_accuracy"]) == pytest.approx(run.metadata["metrics"]["test"]["accuracy"], abs=1e-6)
    assert "CC BY 4.0" in meta["license"] and "MedMNIST" in meta["credit"] and meta["edgeblood_version"]
    assert "/work/" not in path.read_bytes().decode("latin-1")  # no stack traces with build paths
    from edgeblood.exporters.onnx.quantize import domain_only_nodes

    domain_nodes = set(domain_only_nodes(proto.graph))  # the domain check's own means are ReduceMeans (float, not pooled)
    assert domain_nodes and "domain" in [o.name for o in proto.graph.output]
    ops = [n.op_type for n in proto.graph.node if n.name not in domain_nodes]
    assert ops.count("GlobalAveragePool") == 4 and "ReduceMean" not in ops  # the 4 SE squeezes, quantizable as int8 pools
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 7):
        p, lab = sess.run(["probabilities", "label"], {"image": x[:n]})
        np.testing.assert_allclose(p, probs[:n], atol=1e-5)
        np.testing.assert_array_equal(lab, label[:n])


def test_openvino_ir_dynamic_batch_label_and_rt_info(report, reference):
    import openvino as ov

    run, x, probs, label = reference
    core = ov.Core()
    for name, tol in (("model.xml", 1e-5), ("model-fp16.xml", 5e-3)):
        model = core.read_model(str(report.export_dir / "openvino" / name))
        shape = model.input(0).get_partial_shape()
        assert shape[0].is_dynamic and [shape[i].get_length() for i in (1, 2, 3)] == [3, 28, 28]
        assert model.input(0).get_any_name() == "image"
        assert model.get_rt_info(["edgeblood", "classes"]).astype(str) == json.dumps(run.classes)
        assert model.get_rt_info(["edgeblood", "precision"]).astype(str) == ("fp16" if "fp16" in name else "fp32")
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        for n in (1, 7):
            out = compiled({0: x[:n]})
            np.testing.assert_allclose(out[compiled.output("probabilities")], probs[:n], atol=tol)
            # fp16 may flip a near-tie (top-2 margin within its tolerance), as the parity judge allows
            top2 = np.sort(probs[:n], axis=1)[:, -2:]
            clear = (top2[:, 1] - top2[:, 0]) > 2 * tol
            np.testing.assert_array_equal(out[compiled.output("label")][clear], label[:n][clear])


def test_coreml_spec_is_a_vision_ready_classifier(report):
    from edgeblood.exporters.coreml.export import inspect_coreml, validate_coreml

    run = open_run(report.run_dir)
    infos = {}
    for name in ("model.mlpackage", "model-fp16.mlpackage"):
        info = validate_coreml(report.export_dir / name, run.classes, 28)
        assert info["type"] == "mlProgram"
        assert info["inputs"] == [{"name": "image", "type": "imageType", "width": 28, "height": 28, "color_space": "RGB"}]
        # the domain check rides along (issue #26), as in the other formats' graphs
        assert {o["name"]: o["type"] for o in info["outputs"]} == {"classLabel": "stringType", "probabilities": "dictionaryType",
                                                                  "domain": "multiArrayType"}
        assert (info["predicted_feature"], info["predicted_probabilities"]) == ("classLabel", "probabilities")
        assert info["labels"] == run.classes
        assert info["author"].startswith("edgeblood") and "CC BY 4.0" in info["license"]
        assert "not a diagnostic device" in info["description"] and info["version"].startswith("se-cnn")
        udm = info["user_defined_metadata"]
        assert json.loads(udm["classes"]) == run.classes and udm["input_size"] == "28"
        assert json.loads(udm["outputs"])[-1] == "domain" and json.loads(udm["domain"])["thresholds"] == run.meta.domain["thresholds"]
        infos[name] = info
    assert infos["model-fp16.mlpackage"]["user_defined_metadata"]["precision"] == "fp16"
    sizes = {a["path"]: a["size_bytes"] for a in report.artifacts}
    assert sizes["model-fp16.mlpackage"] < 0.75 * sizes["model.mlpackage"]
    details = next(a for a in report.artifacts if a["path"] == "model.mlpackage")["details"]
    assert details["format"] == "mlprogram" and details["minimum_deployment_target"] == "iOS16"
    assert inspect_coreml(report.export_dir / "model.mlpackage")["specification_version"] == 7  # iOS16


def test_coreml_min_target_and_spec_validation_failures(report):
    from edgeblood.exporters.coreml.export import deployment_target, validate_coreml

    run = open_run(report.run_dir)
    out = report.export_dir / "model.mlpackage"
    assert deployment_target("ios17").name == "iOS17"  # case-insensitive, as typed on the command line
    with pytest.raises(EdgebloodError, match="labels should be"):
        validate_coreml(out, list(reversed(run.classes)), 28)
    with pytest.raises(EdgebloodError, match="RGB 64x64"):
        validate_coreml(out, run.classes, 64)
    with pytest.raises(EdgebloodError, match="metadata keys missing: not_there"):
        validate_coreml(out, run.classes, 28, {"not_there": "x"})
    with pytest.raises(EdgebloodError, match="iOS15/macOS12 or newer, not iOS14"):
        deployment_target("iOS14")
    with pytest.raises(EdgebloodError, match="unknown Core ML deployment target 'iOS99'"):
        deployment_target("iOS99")


def test_parity_check_fails_on_a_different_models_artifact(report, tmp_path):
    """The exported artifacts belong to the trained run; judged against re-drawn weights they must fail."""
    other = open_run(perturbed_copy(report.run_dir, tmp_path / "other"))
    data = load_parity_data(other, 64)
    for artifact, precision in (("model.onnx", "fp32"), ("openvino/model-fp16.xml", "fp16")):
        result = check_parity(report.export_dir / artifact, data, precision=precision)
        assert result.status == "mismatch" and result.agreement < 0.995
        assert "agreement" in result.reason
        with pytest.raises(EdgebloodError, match=r"does not match the PyTorch model: agreement .*% top-1 agreement .*max \|dp\|"):
            require_parity(result, artifact)
    same = check_parity(report.export_dir / "model.onnx", load_parity_data(open_run(report.run_dir), 64))
    assert same.status == "ok" and same.agreement == 1.0


def test_verify_marks_stale_artifacts_mismatched_in_the_manifest(report, tmp_path):
    from edgeblood.exporters.run_export import verify_exports

    run_dir = perturbed_copy(report.run_dir, tmp_path / "stale")  # the checkpoint changed under its exports
    shutil.copytree(report.export_dir, run_dir / "export")
    with pytest.raises(EdgebloodError, match="does not match the PyTorch model"):
        verify_exports(run_dir, parity_images=32)
    status = {a["path"]: a["parity"]["status"] for a in mf.load_manifest(run_dir / "export")["artifacts"]}
    assert status["model.onnx"] == status["openvino/model.xml"] == status["openvino/model-fp16.xml"] == "mismatch"
    assert status["model.mlpackage"] == "skipped"  # spec still valid; numbers need macOS


def test_record_artifact_replaces_by_path_and_load_manifest(tmp_path):
    (tmp_path / "model-int8.onnx").write_bytes(b"x" * 100)
    mf.record_artifact(tmp_path, {"target": "onnx", "precision": "int8", "path": "model-int8.onnx", "parity": {"status": "ok"}})
    mf.record_artifact(tmp_path, {"target": "onnx", "precision": "int8", "path": "model-int8.onnx", "parity": {"status": "failed"}})
    (entry,) = mf.load_manifest(tmp_path)["artifacts"]
    assert entry["parity"]["status"] == "failed" and entry["size_bytes"] == 100 and len(entry["sha256"]) == 64
    assert mf.load_manifest(tmp_path / "nothing-here") == {"schema": mf.SCHEMA, "artifacts": []}
    with pytest.raises(ValueError, match="parity status"):
        mf.record_artifact(tmp_path, {"target": "onnx", "precision": "int8", "path": "x", "parity": {"status": "meh"}})
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(EdgebloodError, match="unreadable"):
        mf.load_manifest(tmp_path)


def test_near_ties_are_reported_but_only_decisive_flips_fail():
    from edgeblood.parity import ParityData, compare, thresholds_for

    ref = np.array([[0.5, 0.3, 0.2], [0.4002, 0.3998, 0.2], [0.6, 0.2, 0.2]] * 70, dtype=np.float32)
    data = ParityData(images=np.zeros((len(ref), 3, 1, 1), np.float32), labels=np.zeros(len(ref), int), reference=ref,
                      split="test", source="sample", description="synthetic")
    flipped = ref.copy()
    flipped[1] = [0.3999, 0.4001, 0.2]  # a near-tie (margin 4e-4 < 1e-3) flips: fp16 rounding, not an error
    r = compare(flipped, data, thresholds_for("fp16"))
    assert r.status == "ok" and r.near_tie_flips == 1 and r.agreement < 1.0 and r.decisive_agreement == 1.0
    assert "near-tie" in r.summary()
    assert compare(flipped, data, thresholds_for("fp32")).status == "mismatch"  # fp32 ties must be within 1e-6
    flipped[0] = [0.3, 0.5, 0.2]
    flipped[2] = [0.2, 0.6, 0.2]
    r = compare(flipped, data, thresholds_for("fp16"))
    assert r.status == "mismatch" and r.disagreements == 3 and r.near_tie_flips == 1


def test_stratified_selection_takes_classes_in_turn():
    labels = np.array([0, 0, 0, 1, 1, 2, 0, 2])
    assert select_indices(labels, 3).tolist() == [0, 3, 5]
    assert select_indices(labels, None).tolist() == list(range(8))
    assert np.bincount(labels[select_indices(labels, 6)]).tolist() == [2, 2, 2]


# ----------------------------------------------------------------------------------------- bad input
def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    from edgeblood.cli import main

    monkeypatch.setattr(sys, "argv", ["edgeblood", "export", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err.strip()
    return exc.value.code, err


def _assert_one_line(code: int, err: str, pattern: str) -> None:
    import re

    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert re.search(pattern, err), err


def test_bad_input_is_one_line_and_writes_nothing(report, sample_run, tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    _assert_one_line(*run_main(monkeypatch, capsys, str(empty)), r"has no checkpoint\.pt; train")
    _assert_one_line(*run_main(monkeypatch, capsys, str(tmp_path / "missing")), "does not exist")

    fresh = copy_run(sample_run, tmp_path / "fresh")
    _assert_one_line(*run_main(monkeypatch, capsys, str(fresh), "--target", "tensorrt"),
                     "unknown target 'tensorrt'; choose onnx, openvino, coreml, litert, executorch or all")
    _assert_one_line(*run_main(monkeypatch, capsys, str(fresh), "--precision", "int8"), "int8 comes from `edgeblood compress")
    _assert_one_line(*run_main(monkeypatch, capsys, str(fresh), "--parity-images", "0"), "--parity-images must be")
    _assert_one_line(*run_main(monkeypatch, capsys, str(fresh), "--target", "coreml", "--min-target", "iOS13"), "need iOS15")
    # the choices listed are deployment targets (not the enum's int methods), and aliases like macOS13 are accepted
    code, err = run_main(monkeypatch, capsys, str(fresh), "--target", "coreml", "--min-target", "iOS99")
    _assert_one_line(code, err, "choose one of: iOS15, iOS16")
    assert "bit_count" not in err and "macOS13" in err
    from edgeblood.exporters.coreml.export import deployment_target

    assert deployment_target("macOS13") == deployment_target("iOS16")
    for opset in ("7", "16", "22"):
        _assert_one_line(*run_main(monkeypatch, capsys, str(fresh), "--opset", opset), r"--opset must be between 18 and 21")

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real_find_spec(name, *a))
    _assert_one_line(*run_main(monkeypatch, capsys, str(fresh), "--target", "openvino"), r'pip install "edgeblood\[openvino\]"')
    monkeypatch.setattr(importlib.util, "find_spec", real_find_spec)

    (fresh / "export").write_text("a file where the export folder should be")
    _assert_one_line(*run_main(monkeypatch, capsys, str(fresh)), "is a file, not a folder")
    (fresh / "export").unlink()
    assert sorted(p.name for p in fresh.iterdir()) == ["checkpoint.pt", "domain.pt", "run.json"]  # nothing half-written

    before = (report.export_dir / "manifest.json").read_bytes()
    _assert_one_line(*run_main(monkeypatch, capsys, str(report.run_dir), "--target", "onnx"), r"model\.onnx already exists; pass --force")
    assert (report.export_dir / "manifest.json").read_bytes() == before


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write to read-only folders")
def test_unwritable_run_folder(sample_run, tmp_path, monkeypatch, capsys):
    ro = copy_run(sample_run, tmp_path / "ro")
    ro.chmod(0o555)
    try:
        _assert_one_line(*run_main(monkeypatch, capsys, str(ro)), "cannot write to .*permission denied")
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("rel", ["model-capture.onnx", "openvino/model-capture.xml"])
def test_capture_variant_frames_any_capture_inside_the_graph(report, rel):
    """A 360x363 and a 366x369 frame straight in: the same prediction as edgeblood's Python framing + PyTorch."""
    from edgeblood.exporters.capture import capture_predictor, replace_jpeg

    run = open_run(report.run_dir)
    runtime, predict = capture_predictor(report.export_dir / rel)
    module = wrap_for_deployment(run.model, run.metadata, with_label=False)
    framing = replace_jpeg(run.framing)
    rng = np.random.default_rng(11)
    from PIL import Image

    for h, w in ((363, 360), (369, 366)):
        frame = np.asarray(Image.fromarray(rng.integers(0, 256, (h // 9, w // 9, 3), dtype=np.uint8)).resize((w, h), Image.Resampling.BICUBIC))
        x = framing.apply(frame, run.in_size).transpose(2, 0, 1)[None].astype(np.float32)
        with torch.inference_mode():
            want = module(torch.from_numpy(x)).numpy()[0]
        got = predict(frame)
        assert got.argmax() == want.argmax() and np.abs(got - want).max() < 0.05, (runtime, h, w)


def test_a_failed_capture_check_refuses_in_one_line_not_a_type_error(tmp_path):
    """The capture check writes a ``reference`` key into its parity record; a strict export of a capture
    variant that failed parity raised ``TypeError: ... unexpected keyword argument 'reference'``."""
    from edgeblood.parity import ParityResult

    record = {"status": "mismatch", "n_images": 256, "split": "captures", "data": "PBC val originals", "runtime": "onnxruntime",
              "device": "cpu", "agreement": 0.9, "max_abs_diff": 0.41, "artifact_accuracy": 0.88, "reference_accuracy": 0.96,
              "reference": "Python path: centred 200x200 px window, then PyTorch fp32", "thresholds": {"min_agreement": 0.995},
              "seconds": 1.2, "reason": "agreement 90.00 % < 99.5 %"}  # the keys exporters/capture.py writes
    result = ParityResult.from_dict(record)
    assert result.status == "mismatch" and result.agreement == 0.9
    with pytest.raises(EdgebloodError, match="do not ship it"):
        require_parity(result, tmp_path / "model-capture.onnx")
