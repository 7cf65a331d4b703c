"""`edgeblood predict` and edgeblood.inference on images written from the embedded sample."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeblood.errors import EdgebloodError
from edgeblood.framing import Framing
from edgeblood.imageio import CELL_CROP
from edgeblood.inference import open_model, predict_files
from exported_sample import exported, sample_images, write_pngs

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def run_dir(sample_run) -> Path:
    return Path(sample_run)


@pytest.fixture(scope="module")
def onnx_model(run_dir, tmp_path_factory) -> Path:
    return exported(run_dir, tmp_path_factory.getbasetemp(), ("onnx",))["onnx"]


@pytest.fixture(scope="module")
def cells(tmp_path_factory) -> Path:
    """16 sample PNGs + an odd-size RGBA copy of one, a corrupt PNG and a 5-channel TIFF, in one folder."""
    folder = tmp_path_factory.mktemp("cells")
    pngs = write_pngs(folder)
    first = np.asarray(Image.open(pngs[0]).convert("RGBA").resize((61, 50), Image.Resampling.NEAREST))
    Image.fromarray(first).save(folder / "odd_size_rgba.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    import tifffile

    tifffile.imwrite(folder / "five_channels.tif", np.zeros((28, 28, 5), np.uint8), photometric="minisblack", planarconfig="contig")
    return folder


def run_cli(*args, timeout: int = 180) -> subprocess.CompletedProcess:
    args = (*args, "--framing", "cell-crop") if "--framing" not in args else args  # the sample PNGs are framed cells
    return subprocess.run(
        [sys.executable, "-m", "edgeblood", "predict", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env={**__import__("os").environ, "COLUMNS": "200"},
    )


def test_probabilities_equal_the_array_pipeline(onnx_model, run_dir, cells):
    """PNG -> load_image -> runtime gives exactly what the in-memory sample gives, in ONNX and in PyTorch."""
    images, labels = sample_images()
    model = open_model(onnx_model)
    assert model.input_size == 28 and len(model.classes) == 8
    report = predict_files(model, sorted(cells.glob("cell_*.png")), top_k=8, framing=CELL_CROP)
    assert report.n_files == 16 and report.n_failed == 0
    got = np.array([[dict(r.top_k)[c] for c in model.classes] for r in report.rows])
    want = model.loaded.predict(images.transpose(0, 3, 1, 2).astype(np.float32))
    np.testing.assert_allclose(got, want, atol=1e-6)

    torch_report = predict_files(open_model(run_dir), sorted(cells.glob("cell_*.png")), top_k=8, framing=CELL_CROP)
    assert torch_report.runtime == "pytorch"
    got_torch = np.array([[dict(r.top_k)[c] for c in model.classes] for r in torch_report.rows])
    np.testing.assert_allclose(got_torch, got, atol=1e-4)
    assert [r.predicted for r in torch_report.rows] == [r.predicted for r in report.rows]


def test_bad_files_are_failed_rows_and_the_batch_goes_on(onnx_model, cells):
    report = predict_files(open_model(onnx_model), [cells], top_k=3, reject_below=0.5, framing=CELL_CROP)
    by_name = {Path(r.file).name: r for r in report.rows}
    assert report.n_files == 19 and report.n_failed == 2 and report.n_predicted == 17
    assert "corrupt.png: not an image" in by_name["corrupt.png"].error and by_name["corrupt.png"].predicted is None
    assert "5 channels" in by_name["five_channels.tif"].error
    odd = by_name["odd_size_rgba.png"]
    assert odd.error is None and odd.predicted in report.classes
    for r in report.rows:
        if r.error is None:
            probs = [p for _, p in r.top_k]
            assert len(probs) == 3 and probs == sorted(probs, reverse=True) and r.probability == probs[0]
            assert r.review == (r.probability < 0.5)


def test_cli_csv_top_k_and_review_flag(onnx_model, cells, run_dir):
    top = sorted(r.probability for r in predict_files(open_model(onnx_model), [cells], framing=CELL_CROP).rows if r.probability is not None)
    threshold = (top[len(top) // 2 - 1] + top[len(top) // 2]) / 2  # between two cells: some flagged, some not
    res = run_cli(onnx_model, cells, "--top-k", "2", "--format", "csv", "--reject-below", f"{threshold:.6f}")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(rows) == 19
    assert list(rows[0]) == ["file", "framing", "status", "predicted", "probability", "review", "top1_class", "top1_probability",
                             "top2_class", "top2_probability", "outside", "outside_cause", "error"]
    ok = [r for r in rows if r["status"] != "error"]
    flagged = [r for r in ok if r["review"] == "yes"]
    assert 0 < len(flagged) < len(ok)
    for r in ok:
        p = float(r["probability"])
        assert r["predicted"] == r["top1_class"] and float(r["top1_probability"]) >= float(r["top2_probability"])
        assert (r["review"] == "yes") == (p < threshold) and r["status"] == ("review" if p < threshold else "ok")
    errors = {Path(r["file"]).name: r["error"] for r in rows if r["status"] == "error"}
    assert set(errors) == {"corrupt.png", "five_channels.tif"}
    # the summary goes to stderr, so stdout stays clean CSV
    assert f"19 files: 17 predicted, {len(flagged)} flagged for review" in res.stderr and "2 failed" in res.stderr
    assert "onnxruntime/cpu" in res.stderr


def test_cli_json_to_file_and_table(onnx_model, cells, tmp_path):
    out = tmp_path / "predictions.json"
    res = run_cli(onnx_model, cells / "cell_00_class0.png", cells / "cell_01_class0.png", cells / "corrupt.png", "--out", out)
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    assert data["runtime"] == "onnxruntime" and data["input_size"] == 28 and data["top_k"] == 3
    assert data["summary"] == {**data["summary"], "files": 3, "predicted": 2, "failed": 1, "flagged": 0}
    ok = [p for p in data["predictions"] if p["status"] == "ok"]
    assert len(ok) == 2 and all(len(p["top_k"]) == 3 and p["top_k"][0]["class"] == p["predicted"] for p in ok)
    assert not list(tmp_path.glob(".predictions.json*"))  # atomic write left no temp file

    table = run_cli(onnx_model, cells / "cell_00_class0.png", "--reject-below", "1.0")
    assert table.returncode == 0 and "REVIEW" in table.stdout and "cell_00_class0.png" in table.stdout


@pytest.mark.parametrize(
    "case, expect",
    [
        ("empty_folder", "no images to classify"),
        ("unknown_format", "unknown model format"),
        ("table_to_file", "written as csv or json"),
        ("bad_top_k", "--top-k must be between 1 and 8"),
    ],
)
def test_bad_input_is_one_line(case, expect, onnx_model, cells, tmp_path):
    args = {
        "empty_folder": [onnx_model, tmp_path],
        "unknown_format": [cells / "cell_00_class0.png", cells],
        "table_to_file": [onnx_model, cells, "--out", tmp_path / "x.txt"],
        "bad_top_k": [onnx_model, cells, "--top-k", "9"],
    }[case]
    res = run_cli(*args)
    assert res.returncode == 2, res.stdout + res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expect in errors[0] and "Traceback" not in res.stderr


def test_empty_folder_beside_images_is_skipped_not_fatal(onnx_model, cells, tmp_path):
    (tmp_path / "empty").mkdir()
    report = predict_files(open_model(onnx_model), [tmp_path / "empty", cells / "cell_00_class0.png", tmp_path / "missing.png"], framing=CELL_CROP)
    assert report.n_predicted == 1
    assert [Path(p).name for p, _ in report.skipped_inputs] == ["empty", "missing.png"]
    assert "2 input path(s) skipped" in report.summary()


def test_library_errors(onnx_model, tmp_path):
    model = open_model(onnx_model)
    with pytest.raises(EdgebloodError, match="between 0 and 1"):
        predict_files(model, [tmp_path], reject_below=1.5)
    with pytest.raises(EdgebloodError, match="does not exist"):
        open_model(tmp_path / "nope.onnx")
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(EdgebloodError, match="could not load"):
        open_model(tmp_path / "broken.onnx")


# ----------------------------------------------------------------------------- framing and the guard
def test_model_framing_travels_in_the_artifact(onnx_model, run_dir):
    from edgeblood.runs import open_run

    model = open_model(onnx_model)
    assert model.framing == open_run(run_dir).framing and model.framing_recorded
    assert model.framing.kind == "window" and model.framing.window_px == 200 and model.framing.jpeg_quality == 75
    assert len(model.class_prior) == 8 and abs(sum(model.class_prior) - 1) < 1e-6


def test_default_framing_cuts_the_window_from_a_capture(onnx_model, tmp_path):
    """A whole 360x363 capture gives exactly what its framed array gives (window, bilinear, JPEG q75)."""
    rng = np.random.default_rng(5)
    capture = np.asarray(Image.fromarray(rng.integers(0, 256, (45, 46, 3), dtype=np.uint8)).resize((360, 363), Image.Resampling.BICUBIC))
    Image.fromarray(capture).save(tmp_path / "capture.png")
    model = open_model(onnx_model)
    report = predict_files(model, [tmp_path / "capture.png"], top_k=8)
    assert report.n_failed == 0 and report.framing_option == "model" and "200x200 px window" in report.summary()
    want = model.loaded.predict(model.framing.apply(capture, 28).transpose(2, 0, 1)[None].astype(np.float32))[0]
    got = dict(report.rows[0].top_k)
    np.testing.assert_allclose([got[c] for c in model.classes], want, atol=1e-6)


def test_a_framed_cell_under_the_models_window_fails_with_the_fix(onnx_model, cells):
    report = predict_files(open_model(onnx_model), [cells / "cell_00_class0.png"])
    assert report.n_failed == 1 and "smaller than the model's 200x200 px capture window" in report.rows[0].error
    assert "--framing cell-crop" in report.rows[0].error


def test_collapse_guard_warns_when_one_rare_class_dominates(onnx_model, cells, tmp_path):
    """25 copies of one cell: every prediction is one class, far above its training prior -> one warning line."""
    model = open_model(onnx_model)
    src = cells / "cell_00_class0.png"
    for i in range(25):
        (tmp_path / f"copy_{i:02d}.png").write_bytes(src.read_bytes())
    report = predict_files(model, [tmp_path], framing=CELL_CROP)
    predicted = report.rows[0].predicted
    prior = model.class_prior[model.classes.index(predicted)]
    if prior < 0.25:
        assert any(f"100 % of 25 images were predicted '{predicted}'" in w and "framing" in w for w in report.warnings)
    res = run_cli(onnx_model, tmp_path, "--format", "csv")
    assert res.returncode == 0 and ("warning:" in res.stderr) == (prior < 0.25)


def test_collapse_guard_rules():
    from edgeblood.inference import Prediction, PredictModel, collapse_warnings

    classes = [f"c{i}" for i in range(8)]
    model = PredictModel(loaded=None, path=Path("m.onnx"), classes=classes, input_size=28, class_prior=[0.05] * 7 + [0.65],
                         val_confidence=0.9)

    def rows(labels, p=0.9):
        return [Prediction(file=str(i), predicted=c, probability=p) for i, c in enumerate(labels)]

    mixed = [classes[i % 8] for i in range(40)]
    assert collapse_warnings(rows(mixed), model, "model") == []
    assert collapse_warnings(rows(["c0"] * 19), model, "model") == []  # too few to judge
    (line,) = collapse_warnings(rows(["c0"] * 36 + mixed[1:5]), model, "model")
    assert "90 % of 40 images were predicted 'c0' (it is 5 % of the training images)" in line and "--framing cell-crop" in line
    assert collapse_warnings(rows(["c7"] * 40), model, "model") == []  # a class that is common in training
    (low,) = collapse_warnings(rows(mixed, p=0.6), model, "window:150")
    assert "mean top probability 0.60 is far below the model's 0.90" in low and "try --framing model" in low


def test_cli_exits_non_zero_when_every_file_failed(onnx_model, cells):
    """28 px cells under the model's 200 px capture window: every row fails, so the exit code says so."""
    res = run_cli(onnx_model, cells / "cell_00_class0.png", cells / "cell_01_class0.png", "--framing", "model", "--format", "csv")
    assert res.returncode == 2, res.stderr
    assert "none of the 2 files could be classified" in res.stderr and "--framing cell-crop" in res.stderr


@pytest.mark.parametrize("case", ["under_a_file", "onto_a_folder"])
def test_bad_out_path_fails_before_any_prediction(case, onnx_model, cells, tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "existing_dir.csv").mkdir()
    out = tmp_path / "afile" / "p.csv" if case == "under_a_file" else tmp_path / "existing_dir.csv"
    res = run_cli(onnx_model, cells, "--out", out)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and ("is a file, so nothing can be written below it" in errors[0] or "is a folder; name a file" in errors[0])
    assert "classifying" not in res.stderr and "files:" not in res.stderr  # refused before the batch ran


# ----------------------------------------------------------------------------- capture variants (#30 item 2)
@pytest.fixture(scope="module")
def capture_models(run_dir, tmp_path_factory) -> dict[str, Path]:
    """The capture variants `edgeblood export` writes beside the plain ONNX and OpenVINO models."""
    entry = exported(run_dir, tmp_path_factory.getbasetemp(), ("onnx", "openvino"))
    export_dir = entry["run"] / "export"
    return {"onnx": export_dir / "model-capture.onnx", "openvino": export_dir / "openvino" / "model-capture.xml",
            "plain": entry["onnx"]}


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> Path:
    """Two smooth whole frames of different sizes (PBC's 360x363 and 366x369) and one too small for the 200 px window."""
    folder = tmp_path_factory.mktemp("captures")
    rng = np.random.default_rng(30)
    for name, (h, w) in {"a_360x363.png": (363, 360), "b_366x369.png": (369, 366), "c_small.png": (150, 150)}.items():
        small = rng.integers(0, 256, (h // 9, w // 9, 3), dtype=np.uint8)
        Image.fromarray(np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))).save(folder / name)
    return folder


@pytest.mark.parametrize("variant", ["onnx", "openvino"])
def test_predict_feeds_whole_captures_to_the_capture_variants(variant, capture_models, captures, tmp_path):
    """#30: `predict model-capture.onnx capture.jpg` said "the model takes 3x3 px, got 28x28". The capture variant
    gets each whole frame (any size; the graph frames it) and says what the plain model says for the framing in its graph."""
    if variant == "openvino":
        pytest.importorskip("openvino")
    out = tmp_path / "captures.json"
    res = run_cli(capture_models[variant], captures, "--top-k", "8", "--out", out, "--framing", "model")
    assert res.returncode == 0, res.stderr
    assert "whole captures in, framed inside the graph to 28 px" in res.stderr and "(inside the model's graph)" in res.stderr
    data = json.loads(out.read_text())
    rows = {Path(p["file"]).name: p for p in data["predictions"]}
    assert data["summary"]["predicted"] == 2 and data["summary"]["failed"] == 1
    assert "smaller than the model's 200x200 px capture window" in rows["c_small.png"]["error"]  # one frame fails alone

    plain = open_model(capture_models["plain"])
    in_graph = Framing.parse("window:200+no-jpeg", plain.framing)  # the graph holds the window and the resize, not the JPEG step
    assert open_model(capture_models[variant]).framing == in_graph
    want = predict_files(plain, [captures / "a_360x363.png", captures / "b_366x369.png"], top_k=8, framing=in_graph)
    for row in want.rows:
        got = {c["class"]: c["probability"] for c in rows[Path(row.file).name]["top_k"]}
        assert rows[Path(row.file).name]["predicted"] == row.predicted
        assert max(abs(got[c] - p) for c, p in row.top_k) < 0.05  # the graph's resize rounds like PIL's to within a grey level


def test_a_capture_variant_refuses_another_framing_in_one_line(capture_models, captures):
    res = run_cli(capture_models["onnx"], captures, "--framing", "cell-crop")
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.returncode == 2 and len(errors) == 1 and "frames each capture inside its graph" in errors[0]
    assert res.stderr.startswith("error:")  # refused before the model and framing lines
    with pytest.raises(EdgebloodError, match="takes whole captures"):
        open_model(capture_models["onnx"]).loaded.predict(np.zeros((1, 3, 28, 28), np.float32))
