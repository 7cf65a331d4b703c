"""`edgeblood pipeline`, the README's main command, end to end on the embedded sample (#30 items 4, 6 and 8)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edgeblood.cli import app
from edgeblood.errors import EdgebloodError


def test_a_wrong_model_name_is_refused_before_the_banner(tmp_path):
    """`pipeline --model SE-CNN` printed the sample banner and the train rule, then its error."""
    result = CliRunner().invoke(app, ["pipeline", "--model", "SE-CNN", "--sample", "--out", str(tmp_path / "runs")])
    assert isinstance(result.exception, EdgebloodError) and "unknown model 'SE-CNN'" in str(result.exception)
    assert result.output == "" and not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """The whole path on the sample: 1 epoch, ONNX only, quick timing (about 2 minutes on 2 busy cores)."""
    pytest.importorskip("onnxruntime")
    out = tmp_path_factory.mktemp("pipeline")
    result = CliRunner().invoke(app, ["pipeline", "--sample", "--epochs", "1", "--targets", "onnx", "--quick-bench", "--out", str(out),
                                      "--name", "p"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return result.output, out / "p" / "bench"


def test_the_pipeline_prints_the_interleaved_headline_it_promises(pipeline_run):
    """Its table caption says 'the headline below is interleaved'; the headline line used to be missing."""
    output, _ = pipeline_run
    assert "the headline below is interleaved" in output
    headline = [line for line in output.splitlines() if line.startswith("headline (interleaved):")]
    assert len(headline) == 1 and "as fast as PyTorch eager fp32" in headline[0], output[-3000:]


def test_the_pipeline_benches_what_it_exported_and_reports_no_skipped_row_as_a_failure(pipeline_run):
    """It exported ONNX only; LiteRT and ExecuTorch used to be listed under 'rows that are not ok'."""
    output, bench_dir = pipeline_run
    report = json.loads((bench_dir / "report.json").read_text())
    assert {r["runtime"] for r in report["rows"]} == {"pytorch", "onnxruntime"}
    assert all(r["status"] == "ok" for r in report["rows"]), [r["reason"] for r in report["rows"] if r["status"] != "ok"]
    md = (bench_dir / "report.md").read_text()
    assert "not ok" not in md and "failed" not in md.split("## How it was measured")[0].lower()
    assert "litert" not in output.lower() and "executorch" not in output.lower()


def test_the_pipeline_says_which_file_to_ship(pipeline_run):
    output, bench_dir = pipeline_run
    ship = [line for line in output.splitlines() if line.startswith("ship:")]
    assert ship and "export/model" in ship[0] and "95 % CI" in ship[0]
    assert "## Which file to ship" in (bench_dir / "report.md").read_text()
