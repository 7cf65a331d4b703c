"""LiteRT (.tflite) and ExecuTorch (.pte): exported through the target registry, checked by the one parity
judge, quantized to int8 and re-measured by their own runtimes, benchmarked beside the others, and
used by a standalone app / an Android snippet whose names match the file (issue #16)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from edgeblood import manifest as mf
from edgeblood.runtimes import get_runtime, runtime_for_artifact
from exported_sample import exported

pytest.importorskip("ai_edge_litert")
pytest.importorskip("litert_torch")
pytest.importorskip("executorch")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def mobile(sample_run, tmp_path_factory) -> dict:
    return exported(Path(sample_run), tmp_path_factory.getbasetemp(), ("litert", "executorch"))


def test_both_exports_pass_parity_and_carry_the_contract(mobile):
    run_dir = mobile["run"]
    run_json = json.loads((run_dir / "run.json").read_text())
    for target, rel, runtime in (("litert", "model.tflite", "litert"), ("executorch", "model.pte", "executorch")):
        entry = mf.find_artifact(run_dir / "export", rel)
        assert entry["target"] == target and entry["runtime"] == runtime and entry["precision"] == "fp32"
        parity = entry["parity"]
        assert parity["status"] == "ok" and parity["agreement"] == 1.0 and parity["max_abs_diff"] < 1e-4, parity
        assert parity["runtime"] == runtime and parity["n_images"] >= 64
        meta = runtime_for_artifact(mobile[target]).load(mobile[target]).metadata()
        assert meta["classes"] == run_json["classes"] and meta["input_size"] == "28" and meta["target"] == target
        assert meta["framing"]["kind"] == "window" and meta["normalization"]["baked_in"] is True


def test_litert_file_layout_is_what_the_readme_says(mobile):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(mobile["litert"]))
    sigs = interpreter.get_signature_list()
    assert set(sigs) == {"serving_default", "batch64"}
    for name, batch in (("serving_default", 1), ("batch64", 64)):
        runner = interpreter.get_signature_runner(name)
        (inp,) = runner.get_input_details().values()
        assert list(inp["shape"]) == [batch, 3, 28, 28] and inp["dtype"] == np.float32
        out = runner(image=np.full((batch, 3, 28, 28), 128.0, np.float32))
        assert out["probabilities"].shape == (batch, 8) and out["probabilities"].dtype == np.float32
        assert out["label"].dtype == np.int32 and np.array_equal(out["label"], out["probabilities"].argmax(1))


def test_executorch_program_has_fixed_batch_methods_and_metadata(mobile):
    loaded = get_runtime("executorch").load(mobile["executorch"])
    program = loaded.handle
    assert set(program.method_names) == {"forward", "forward_batch64", "edgeblood_metadata"}
    x = np.random.default_rng(0).uniform(0, 255, (70, 3, 28, 28)).astype(np.float32)
    probs = loaded.predict(x)  # 64 through forward_batch64, 6 one by one
    single = np.concatenate([loaded.predict(x[i : i + 1]) for i in range(70)])
    assert probs.shape == (70, 8) and np.allclose(probs, single, atol=1e-5)
    assert loaded.timed_call(64)[1] == "static" and loaded.timed_call(8)[1] == "batch-1 calls"


@pytest.fixture(scope="module")
def int8_reports(mobile, tmp_path_factory):
    """(run copy, reports): compressed in a copy, so the shared exported sample keeps only its fp32 artifacts."""
    import shutil

    from edgeblood.compression.compress_run import CompressOptions, compress

    run_dir = tmp_path_factory.mktemp("mobile-int8") / "run"
    shutil.copytree(mobile["run"], run_dir)
    return run_dir, compress(run_dir, CompressOptions(quantize=("int8",), targets=("litert", "executorch"), calibration_images=64))


def test_int8_variants_are_remeasured_by_their_own_runtime(int8_reports):
    from edgeblood.data.bloodmnist import load_sample
    from edgeblood.runtimes import to_model_input

    run_dir, (report,) = int8_reports
    rows = {f"{r.target} {r.variant}": r for r in report.rows}
    test = load_sample(28)
    images, labels = to_model_input(test.images("test")), test.labels("test")
    for label, rel, runtime in (("litert int8 full-integer", "model-int8.tflite", "litert"), ("executorch int8 PT2E", "model-int8.pte", "executorch")):
        row = rows[label]
        path = run_dir / "export" / rel
        from test_compress import _domain_float_bytes

        fp32_size = (run_dir / "export" / rel.replace("-int8", "")).stat().st_size  # both int8 programs keep the domain check in float
        allowance = 100 * _domain_float_bytes(run_dir) / fp32_size
        assert row.path == rel and row.size_pct < 45 + allowance, f"{rel} is {row.size_pct:.0f} % of fp32"
        loaded = get_runtime(runtime).load(path)
        probs = loaded.predict(images)
        # the signature returns probabilities, not int8 codes (ai-edge-quantizer leaves it on the int8 tensor; we repoint it)
        assert probs.dtype == np.float32 and np.allclose(probs.sum(1), 1.0, atol=2e-2) and probs.min() >= 0
        assert row.measured["runtime"] == runtime and row.measured["n_images"] == len(labels)
        assert row.measured["accuracy"] == pytest.approx(float((probs.argmax(1) == labels).mean()))
        assert row.measured["status"] in ("ok", "mismatch") and row.delta is not None and len(row.delta["per_class_recall_pt"]) == 8
        entry = mf.find_artifact(run_dir / "export", rel)
        assert entry["precision"] == "int8" and entry["runtime"] == runtime and entry["compression"]["calibration"]["images"] == 64
        assert loaded.metadata()["precision"] == "int8"
    assert rows["litert int8 full-integer"].measured["parity"]["thresholds"]["min_agreement"] == 0.90  # the one judge's "quantized" row


@pytest.mark.parametrize("rel", ["model-int8.tflite", "model-int8.pte"])
def test_int8_mobile_programs_carry_the_domain_check_in_float(int8_reports, rel):
    """The int8 .tflite and .pte keep the domain output (computed in float on int8 features): an app on the phone
    still learns that an image is unlike training, and it flags what the fp32 program flags."""
    from edgeblood.data.bloodmnist import load_sample
    from edgeblood.runtimes import to_model_input

    run_dir = int8_reports[0]
    int8 = runtime_for_artifact(run_dir / "export" / rel).load(run_dir / "export" / rel)
    fp32 = runtime_for_artifact(run_dir / "export" / rel.replace("-int8", "")).load(run_dir / "export" / rel.replace("-int8", ""))
    domain = int8.metadata()["domain"]
    assert int8.has_domain and (json.loads(domain) if isinstance(domain, str) else domain)["thresholds"]
    images = load_sample(28).images("test")
    x = to_model_input(np.concatenate([images, images[:, :, :, ::-1]]))  # BGR-swapped copies: another "lab"
    flags_int8, flags_fp32 = (int8.domain(x) > 1).any(1), (fp32.domain(x) > 1).any(1)
    assert np.mean(flags_int8 == flags_fp32) >= 0.9
    assert int8._joint_run is not None, "the runtime fetches both outputs of one invoke"
    probabilities, domain = int8.predict_with_domain(x[:67])  # predict's one invoke for both: a batch-64 call, 3 single ones
    np.testing.assert_allclose(probabilities, int8.predict(x[:67]), atol=1e-6)
    np.testing.assert_allclose(domain, int8.domain(x[:67]), atol=1e-6)
    half = len(images)  # the swapped copies are as foreign to the int8 program as to the fp32 one
    assert flags_int8[half:].mean() >= flags_fp32[half:].mean() - 0.05 and flags_int8[:half].mean() <= flags_fp32[:half].mean() + 0.1


def test_litert_int8_keeps_float_io_and_int8_kernels(int8_reports):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(int8_reports[0] / "export" / "model-int8.tflite"))
    (inp,) = interpreter.get_signature_runner("serving_default").get_input_details().values()
    assert inp["dtype"] == np.float32  # the app feeds the same float pixels as for fp32
    dtypes = [d["dtype"] for d in interpreter.get_tensor_details()]
    assert sum(d == np.int8 for d in dtypes) > 20  # weights and activations in int8


def test_bench_times_litert_and_executorch_rows(mobile, tmp_path):
    from edgeblood.bench.measure import TimingConfig
    from edgeblood.bench.runner import BenchConfig, bench_runs

    tiny = TimingConfig(warmup_s=0.02, warmup_min_iters=2, block_s=0.01, min_block_iters=3, window=3, max_s=0.1)
    report = bench_runs([mobile["run"]], BenchConfig(runtimes=["litert", "executorch"], batches=[1, 8], threads=[1], timing=tiny))
    rows = [r for r in report["rows"] if r["precision"] == "fp32"]
    assert {r["runtime"] for r in rows} == {"litert", "executorch"}
    for r in rows:
        assert r["status"] == "ok", r
        assert r["latency_input_shape"] == ("static" if r["batch"] == 1 else "batch-1 calls")
        assert r["latency_ms"]["p50"] > 0 and r["accuracy"] is not None
    assert any("batch-1 calls" in n for n in report["notes"])


def test_litert_app_runs_with_only_its_runtime(mobile, tmp_path):
    from test_examples import check_against_edgeblood, run_example, write_pngs

    cells = tmp_path / "cells"
    write_pngs(cells)
    res = run_example("litert_app.py", mobile["litert"], cells, "--top-k", "3", "--reject-below", "0.3", "--framing", "cell-crop")
    check_against_edgeblood(res, mobile["litert"], cells, 0.3, expect_rows=16)
    assert "8 classes, 28 px input" in res.stderr


def test_kotlin_snippet_names_match_the_exported_file(mobile):
    from ai_edge_litert.interpreter import Interpreter

    from edgeblood.exporters.litert.metadata import read_litert_metadata

    source = (EXAMPLES / "android" / "EdgebloodClassifier.kt").read_text()
    const = dict(re.findall(r'const val (\w+) = "?([^"\n]*)"?', source))
    interpreter = Interpreter(model_path=str(mobile["litert"]))
    runner = interpreter.get_signature_runner(const["SIGNATURE"])
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    assert list(inputs) == [const["INPUT_NAME"]]
    shape = list(inputs[const["INPUT_NAME"]]["shape"])
    assert const["INPUT_LAYOUT"] == "NCHW" and shape[:2] == [int(const["INPUT_BATCH"]), 3]
    assert set(outputs) == {const["PROBABILITIES_OUTPUT"], const["LABEL_OUTPUT"], const["DOMAIN_OUTPUT"]}
    assert list(outputs[const["DOMAIN_OUTPUT"]]["shape"]) == [1, 2]
    assert list(outputs[const["PROBABILITIES_OUTPUT"]]["shape"]) == [1, int(const["NUM_CLASSES"])]
    assert outputs[const["LABEL_OUTPUT"]]["dtype"] == np.int32 and "IntArray(INPUT_BATCH)" in source
    assert read_litert_metadata(mobile["litert"]) and const["METADATA_ENTRY"] == "edgeblood"
