"""edgeblood.runtimes: one interface over PyTorch, ONNX Runtime, OpenVINO and Core ML, on real artifacts."""

from __future__ import annotations

import platform

import numpy as np
import pytest

from edgeblood.data.bloodmnist import load_sample
from edgeblood.errors import EdgebloodError
from edgeblood.runtimes import LoadedModel, Runtime, get_runtime, list_runtimes, runtime_for_artifact, to_model_input
from export_runs import exported_once


@pytest.fixture(scope="module")
def report(sample_run, tmp_path_factory):
    return exported_once(sample_run, tmp_path_factory.mktemp("rt"))


@pytest.fixture(scope="module")
def images():
    return to_model_input(load_sample(28).images("test")[:7])


def test_registry_names_aliases_and_unknown():
    assert set(list_runtimes()) >= {"pytorch", "onnxruntime", "openvino", "coreml"}
    assert get_runtime("ort").name == "onnxruntime"
    assert get_runtime("OV").name == "openvino"
    assert isinstance(get_runtime("torch"), Runtime)
    with pytest.raises(EdgebloodError, match="unknown runtime 'tensorrt'.*onnxruntime"):
        get_runtime("tensorrt")


def test_runtimes_are_listed_in_a_fixed_order_whatever_was_imported_first():
    """bench plans its rows from list_runtimes(): an adapter imported early (an app importing OpenVINO's) must not reorder them."""
    import subprocess
    import sys

    code = ("import edgeblood.exporters.executorch.runtime, edgeblood.exporters.openvino.runtime\n"
            "from edgeblood.runtimes import list_runtimes\nprint(list_runtimes())")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    assert shown == str(list_runtimes()) and list_runtimes()[:3] == ["pytorch", "onnxruntime", "openvino"]


def test_runtime_for_artifact_by_extension(report, tmp_path):
    exp = report.export_dir
    assert runtime_for_artifact(exp / "model.onnx").name == "onnxruntime"
    assert runtime_for_artifact(exp / "openvino" / "model.xml").name == "openvino"
    assert runtime_for_artifact(exp / "model.mlpackage").name == "coreml"
    assert runtime_for_artifact(report.run_dir).name == "pytorch"
    assert runtime_for_artifact(report.run_dir / "checkpoint.pt").name == "pytorch"
    assert runtime_for_artifact(tmp_path / "model.tflite").name == "litert"
    assert runtime_for_artifact(tmp_path / "model.pte").name == "executorch"
    with pytest.raises(EdgebloodError, match="unknown model format 'model.engine'"):
        runtime_for_artifact(tmp_path / "model.engine")


@pytest.mark.parametrize("artifact", ["run", "model.onnx", "openvino/model.xml", "openvino/model-fp16.xml"])
def test_every_runtime_agrees_with_pytorch_at_batch_1_and_7(report, images, artifact):
    path = report.run_dir if artifact == "run" else report.export_dir / artifact
    ref = get_runtime("pytorch").load(report.run_dir).predict(images)  # no threads=: torch's setting is process-wide
    threads = None if artifact == "run" else 1
    model = runtime_for_artifact(path).load(path, device="cpu", threads=threads)
    assert isinstance(model, LoadedModel) and model.device == "cpu" and (threads is None or model.threads == 1)
    assert model.load_seconds > 0 and model.artifact == path
    tol = 1e-2 if "fp16" in artifact else 1e-4
    for n in (1, 7):
        probs = model.predict(images[:n])
        assert probs.shape == (n, 8) and probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
        np.testing.assert_allclose(probs, ref[:n], atol=tol)
    meta = model.metadata()
    assert meta["classes"][3] == "immature granulocyte" and len(meta["classes"]) == 8
    assert meta["input_size"] == "28" and meta["normalization"]["baked_in"] is True


def test_uint8_input_is_cast_and_chunking_changes_nothing(report, images):
    model = get_runtime("onnxruntime").load(report.export_dir / "model.onnx", threads=1)
    whole = model.predict(images)
    np.testing.assert_array_equal(model.predict(images.astype(np.uint8)), whole)
    np.testing.assert_allclose(model.predict(images, chunk=2), whole, atol=1e-6)


def test_wrong_input_shapes_are_one_line_errors(report, images):
    model = get_runtime("openvino").load(report.export_dir / "openvino" / "model.xml")
    with pytest.raises(EdgebloodError, match=r"\[N, 3, H, W\]"):
        model.predict(images.transpose(0, 2, 3, 1))
    with pytest.raises(EdgebloodError, match="takes 28x28 px"):
        model.predict(np.zeros((1, 3, 32, 32), np.float32))


def test_devices_and_unknown_device(report):
    assert get_runtime("pytorch").devices()[0] == "cpu"
    assert "cpu" in get_runtime("onnxruntime").devices()
    assert "cpu" in get_runtime("openvino").devices()
    with pytest.raises(EdgebloodError, match="no device 'tpu'.*cpu"):
        get_runtime("onnxruntime").load(report.export_dir / "model.onnx", device="tpu")
    with pytest.raises(EdgebloodError, match="threads must be >= 1"):
        get_runtime("onnxruntime").load(report.export_dir / "model.onnx", threads=0)


@pytest.mark.skipif(platform.system() == "Darwin", reason="Core ML predicts on macOS")
def test_coreml_unavailable_off_macos_says_why(report):
    rt = get_runtime("coreml")
    ok, why = rt.available()
    assert not ok and "macOS" in why
    assert rt.devices() == []
    with pytest.raises(EdgebloodError, match="coreml cannot run here: .*macOS"):
        rt.load(report.export_dir / "model.mlpackage")


def test_missing_and_corrupt_artifacts(tmp_path):
    with pytest.raises(EdgebloodError, match="does not exist; export it first"):
        get_runtime("onnxruntime").load(tmp_path / "nope.onnx")
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(EdgebloodError, match="onnxruntime could not load .*re-export"):
        get_runtime("onnxruntime").load(bad)
    xml = tmp_path / "model.xml"
    xml.write_text("<net>")
    with pytest.raises(EdgebloodError, match="openvino could not load"):
        get_runtime("openvino").load(xml)
