"""--max-drop (issue 19, item 2): an int8 artifact that loses more val accuracy than allowed falls back
(ONNX Runtime: the most harmful layers stay float; OpenVINO: NNCF accuracy control), and the record
says which layers and why. The fault is provoked the way it happens in the field: activation ranges
calibrated on images brighter than the model will see (here 40x the pixel range), so int8 steps are
too coarse for real images."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeblood.compression.calibration import stratified_indices, to_contract
from edgeblood.compression.compress_run import CompressOptions, Row, accuracy_control_line
from edgeblood.compression.measure_and_record import Baseline, Recorder
from edgeblood.compression.steps import Steps
from edgeblood.data.bloodmnist import load_sample
from edgeblood.runs import open_run

WRECK = 40.0


@pytest.fixture(scope="module")
def exported(sample_run, tmp_path_factory):
    from exported_sample import exported as export

    return Path(export(sample_run, tmp_path_factory.mktemp("exported"), ("onnx", "openvino"))["run"])


def _data():
    data = load_sample(28)
    idx = stratified_indices(data.labels("train"), 64, 0)
    bad_calibration = to_contract(data.images("train")[idx]) * WRECK
    return bad_calibration, (to_contract(data.images("val")), data.labels("val"))


def test_onnx_runtime_keeps_the_harmful_layers_in_float_until_the_val_drop_fits(exported, tmp_path):
    from edgeblood.exporters.onnx.quantize import quantize_static, val_accuracy

    calibration, (images, labels) = _data()
    fp32 = open_run(exported).export_dir / "model.onnx"
    plain = quantize_static(fp32, tmp_path / "plain.onnx", calibration)
    assert "accuracy_control" not in plain
    fp32_acc = val_accuracy(fp32, images, labels)
    assert 100 * (fp32_acc - val_accuracy(tmp_path / "plain.onnx", images, labels)) > 5, "the provoked fault must hurt without the bound"

    details = quantize_static(fp32, tmp_path / "bounded.onnx", calibration, max_drop=2.0, validation=(images, labels))
    record = details["accuracy_control"]
    assert record["fell_back"] and record["met"] and record["split"] == "val" and record["drop_pt_all_layers"] > 5
    assert record["float_nodes"] and all(n["why"].startswith("val accuracy") and n["op"] for n in record["float_nodes"])
    assert 100 * (fp32_acc - val_accuracy(tmp_path / "bounded.onnx", images, labels)) <= 2.0
    assert record["val_accuracy_int8"] == pytest.approx(val_accuracy(tmp_path / "bounded.onnx", images, labels))
    assert "kept" in accuracy_control_line(record) and "in float" in accuracy_control_line(record)
    import onnx

    saved = onnx.load(str(tmp_path / "bounded.onnx"))
    quantized_inputs = {i for n in saved.graph.node if n.op_type == "DequantizeLinear" for i in n.output}
    # A float conv keeps float weights, so ONNX Runtime cannot fuse it into an int8 kernel (its input may still pass
    # through the Q/DQ pair of an int8 neighbour: that pair belongs to the neighbour's output).
    for kept in record["float_nodes"]:
        node = next(n for n in saved.graph.node if n.name == kept["node"])
        assert node.op_type != "Conv" or node.input[1] not in quantized_inputs, f"{kept['node']} has int8 weights"
    # The second pass tried to give back to int8 every layer the first pass's ranking had swept into float: each
    # is now either kept (needed) or returned, never both. How many come back depends on the int8 kernels'
    # rounding (AVX2, VNNI, AMX) and on the sample model, so the count is not asserted: on one AVX-512 VNNI EPYC,
    # 3 came back with this file run alone and none in the full CI run.
    returned = record.get("returned_to_int8", [])
    kept_names = {n["node"] for n in record["float_nodes"]}
    assert len(kept_names) + len(returned) == record["first_pass_float"] and not set(returned) & kept_names
    convs_back = [n for n in saved.graph.node if n.name in returned and n.op_type == "Conv"]
    assert all(n.input[1] in quantized_inputs for n in convs_back), "a conv said to be back in int8 still has float weights"


def test_openvino_falls_back_to_accuracy_control_only_when_the_drop_is_too_big(exported):
    from edgeblood.exporters.openvino.quantize import quantize

    calibration, validation = _data()
    xml = open_run(exported).export_dir / "openvino" / "model.xml"
    out = open_run(exported).export_dir / "openvino" / "bounded-int8.xml"
    _, info = quantize(xml, out, calibration, max_drop=2.0, validation=validation)
    record = info.accuracy_control
    assert record["drop_pt_all_layers"] > 2.0, "the provoked fault must hurt without the bound"
    assert record["fell_back"] and record["fake_quantize_ops"]["after"] < record["fake_quantize_ops"]["all_layers"]
    assert record["drop_pt"] < record["drop_pt_all_layers"]
    assert record["float_nodes"] and all(n["op"] and "accuracy control" in n["why"] for n in record["float_nodes"])
    import openvino as ov

    saved = ov.Core().read_model(str(out))
    fed_by_fake_quantize = {t.get_node().get_friendly_name() for op in saved.get_ops() if op.get_type_name() == "FakeQuantize"
                            for o in op.outputs() for t in o.get_target_inputs()}
    assert not {n["node"] for n in record["float_nodes"]} & fed_by_fake_quantize, "a layer named as float still reads int8 data"
    good = to_contract(load_sample(28).images("train")[:64])
    _, fine = quantize(xml, out, good, max_drop=50.0, validation=validation)
    assert fine.accuracy_control["fell_back"] is False and fine.method == "nncf.quantize"


def test_a_class_losing_more_than_two_points_of_recall_is_named():
    def measured(recalls):
        return {"status": "ok", "n_images": 100, "accuracy": 0.9, "macro_f1": 0.9, "per_class_recall": recalls}

    recorder = Recorder(source=None, data=None, steps=Steps(None))
    recorder.baselines["onnx"] = Baseline(measured({"monocyte": 0.90, "platelet": 1.0, "basophil": 0.95}), 1000, "onnx fp32 of run")
    row = Row("int8", "onnx", "int8", "model-int8.onnx", 250, None, 1, 1, measured({"monocyte": 0.85, "platelet": 0.99, "basophil": 0.92}), None)
    recorder.compare(row, "onnx")
    assert row.notes == ["WARNING: monocyte recall -5.0 pt, basophil recall -3.0 pt on the test split (more than 2 pt lost against onnx fp32 of run)"]


def test_max_drop_is_on_by_default_and_bounded():
    from edgeblood.errors import EdgebloodError

    assert CompressOptions().max_drop == 0.3
    with pytest.raises(EdgebloodError, match=r"must be in \(0, 100\]"):
        CompressOptions(quantize=("int8",), max_drop=0).validate()
