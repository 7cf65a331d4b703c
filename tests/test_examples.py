"""examples/: the standalone apps run as written on models exported from the embedded sample, and
the Swift snippet uses exactly the names of the exported Core ML model."""

from __future__ import annotations

import ast
import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from edgeblood.imageio import CELL_CROP
from edgeblood.inference import open_model, predict_files
from exported_sample import exported, write_pngs

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ALLOWED_IMPORTS = {"__future__", "argparse", "csv", "io", "json", "sys", "pathlib", "numpy", "PIL"}


@pytest.fixture(scope="module")
def run_dir(sample_run) -> Path:
    return Path(sample_run)


@pytest.fixture(scope="module")
def cells(tmp_path_factory) -> Path:
    """Sample PNGs, an odd-size RGBA copy (must be cropped/resized like edgeblood does) and a corrupt file."""
    folder = tmp_path_factory.mktemp("example_cells")
    pngs = write_pngs(folder / "slide_a")
    big = Image.open(pngs[3]).convert("RGBA").resize((61, 47), Image.Resampling.BICUBIC)
    (folder / "slide_b").mkdir()
    big.save(folder / "slide_b" / "odd_size.png")
    (folder / "slide_b" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * 30)
    return folder


def run_example(script: str, *args) -> subprocess.CompletedProcess:
    """Run an example with `import edgeblood` made impossible, proving it needs only its runtime."""
    code = (
        "import runpy, sys; sys.modules['edgeblood'] = None; "
        f"sys.argv = {[script, *map(str, args)]!r}; runpy.run_path({str(EXAMPLES / script)!r}, run_name='__main__')"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> Path:
    """Uncropped captures as a microscope gives them: synthetic 360x363 / 366x369 frames, plus a few PBC originals when here."""
    import numpy as np
    from conftest import pbc_originals_dir

    folder = tmp_path_factory.mktemp("captures")
    rng = np.random.default_rng(3)
    for i, (h, w) in enumerate([(363, 360), (369, 366), (360, 360)]):
        base = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
        Image.fromarray(base).resize((w, h), Image.Resampling.BICUBIC).save(folder / f"capture_{i}.png")
    originals = pbc_originals_dir("val")
    if originals is not None:
        for src in sorted(originals.glob("*/*.jpg"))[::300]:
            (folder / src.name).write_bytes(src.read_bytes())
    return folder


def check_against_edgeblood(res: subprocess.CompletedProcess, model_path: Path, cells: Path, threshold: float, framing=CELL_CROP,
                            expect_rows: int = 17) -> None:
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    reference = {Path(r.file).resolve(): r for r in predict_files(open_model(model_path), [cells], top_k=3, reject_below=threshold, framing=framing).rows}
    ok_ref = {p: r for p, r in reference.items() if r.error is None}
    assert len(rows) == len(ok_ref) == expect_rows
    for row in rows:
        ref = ok_ref[Path(row["file"]).resolve()]
        assert row["predicted"] == ref.predicted
        assert float(row["probability"]) == pytest.approx(ref.probability, abs=2e-6)
        assert [t.split(":")[0] for t in row["top_k"].split(";")] == [c for c, _ in ref.top_k]
        assert row["review"] == ("yes" if ref.review else "no")
        if "outside" in row and ref.outside is not None:  # the domain check (issue #26): same flag as edgeblood predict
            assert row["outside"] == ("yes" if ref.outside else "no")
    if expect_rows == 17:
        assert "corrupt.jpg" in res.stderr and "1 unreadable" in res.stderr


def test_examples_import_only_their_runtime():
    for script, runtime in (("onnx_app.py", "onnxruntime"), ("openvino_app.py", "openvino"), ("litert_app.py", "ai_edge_litert")):
        tree = ast.parse((EXAMPLES / script).read_text())
        roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        roots |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert roots - ALLOWED_IMPORTS == {runtime}, f"{script} imports {sorted(roots)}"


def test_onnx_app_matches_edgeblood_predict(run_dir, cells, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    model = exported(run_dir, tmp_path_factory.getbasetemp(), ("onnx",))["onnx"]
    res = run_example("onnx_app.py", model, cells, "--top-k", "3", "--reject-below", "0.3", "--framing", "cell-crop")
    check_against_edgeblood(res, model, cells, 0.3)
    assert "8 classes, 28 px input" in res.stderr
    assert {r["outside"] for r in csv.DictReader(io.StringIO(res.stdout))} <= {"yes", "no"}, "the example app shows the domain flag"


@pytest.mark.parametrize("script, target", [("onnx_app.py", "onnx"), ("openvino_app.py", "openvino")])
def test_apps_frame_captures_like_edgeblood_by_default(script, target, run_dir, captures, tmp_path_factory):
    """Whole captures: the app applies the model's framing (200 px window, bilinear, JPEG q75) exactly as predict does."""
    pytest.importorskip("onnxruntime" if target == "onnx" else "openvino")
    model = exported(run_dir, tmp_path_factory.getbasetemp(), (target,))[target]
    res = run_example(script, model, captures, "--reject-below", "0.3")
    n = len(list(captures.iterdir()))
    check_against_edgeblood(res, model, captures, 0.3, framing=None, expect_rows=n)
    assert "framing: centred 200x200 px window" in res.stderr and "JPEG q75" in res.stderr


def test_openvino_app_matches_edgeblood_predict(run_dir, cells, tmp_path_factory):
    pytest.importorskip("openvino")
    model = exported(run_dir, tmp_path_factory.getbasetemp(), ("openvino",))["openvino"]
    res = run_example("openvino_app.py", model, cells, "--reject-below", "0.3", "--framing", "cell-crop")
    check_against_edgeblood(res, model, cells, 0.3)


def swift_constants(source: str) -> dict[str, str]:
    return dict(re.findall(r'static let (\w+) = "([^"]*)"', source))


def test_swift_snippet_matches_exported_coreml_spec(run_dir, tmp_path_factory):
    pytest.importorskip("coremltools")
    from edgeblood.exporters.coreml.export import inspect_coreml

    package = exported(run_dir, tmp_path_factory.getbasetemp(), ("coreml",))["coreml"]
    spec = inspect_coreml(package)
    source = (EXAMPLES / "CoreMLVision.swift").read_text()
    names = swift_constants(source)

    # the input the app feeds: one RGB image of the model's size, under the name the snippet uses
    assert [i["name"] for i in spec["inputs"]] == [names["inputName"]]
    assert spec["inputs"][0]["type"] == "imageType" and spec["inputs"][0]["color_space"] == "RGB"
    # the outputs it reads: classLabel (string), the probabilities dictionary (what Vision turns into observations)
    # and the domain check (an array; the sample run has a domain profile)
    outputs = {o["name"]: o["type"] for o in spec["outputs"]}
    assert outputs == {names["labelOutput"]: "stringType", names["probabilitiesOutput"]: "dictionaryType",
                       names["domainOutput"]: "multiArrayType"}
    assert spec["predicted_feature"] == names["labelOutput"]
    assert spec["predicted_probabilities"] == names["probabilitiesOutput"]
    # the metadata it reads: class names (JSON list equal to the classifier's labels) and input size
    meta = spec["user_defined_metadata"]
    assert json.loads(meta[names["classesKey"]]) == spec["labels"] and len(spec["labels"]) == 8
    assert int(meta[names["inputSizeKey"]]) == spec["inputs"][0]["width"] == spec["inputs"][0]["height"]

    # every EdgebloodCoreML.<name> the code uses is one of the checked constants; Vision classification is used
    used = set(re.findall(r"EdgebloodCoreML\.(\w+)", source))
    assert used and used <= set(names)
    for api in ("VNCoreMLRequest", "VNClassificationObservation", "regionOfInterest", "imageCropAndScaleOption = .scaleFill", ".creatorDefinedKey"):
        assert api in source
    # the framing it decodes is the one the model carries (kind, window, fraction, JPEG keys of edgeblood.framing)
    framing = json.loads(meta[names["framingKey"]])
    assert framing["kind"] == "window" and framing["window_px"] == 200
    for key in ("kind", "window_px", "fraction", "jpeg_quality"):
        assert f"let {key}:" in source and key in framing
    # no class name or input size is hard-coded in the app
    assert not any(f'"{label}"' in source for label in spec["labels"])
    assert f"{spec['inputs'][0]['width']}" not in re.sub(r"//.*", "", source)
