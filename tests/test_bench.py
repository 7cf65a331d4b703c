"""edgeblood bench and report merge: real runtimes, real workers, a small model on the embedded sample."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeblood.bench.machine import peak_gmacs, peak_macs_per_cycle
from edgeblood.bench.measure import TimingConfig, measure_latency
from edgeblood.bench.report import load_schema, merge_reports, validate_report, write_report
from edgeblood.bench.runner import SCHEMA, BenchConfig, bench_runs, pareto_front
from edgeblood.errors import EdgebloodError

TINY = TimingConfig(warmup_s=0.02, warmup_min_iters=2, block_s=0.01, min_block_iters=3, window=3, max_s=0.1)


@pytest.fixture(scope="module")
def exported_run(sample_run, tmp_path_factory) -> Path:
    """A copy of the sample run with ONNX and OpenVINO fp32 artifacts (exported by edgeblood.exporters)."""
    from edgeblood.exporters.run_export import export_run

    dest = tmp_path_factory.mktemp("bench") / "run"
    shutil.copytree(sample_run, dest)
    export_run(dest, ("onnx", "openvino"), ("fp32",), parity_images=32)
    return dest


@pytest.fixture(scope="module")
def cli_report(exported_run, tmp_path_factory) -> Path:
    """`edgeblood bench` through the CLI: 3 runtimes x batch 1, 8 x 1 thread, plus Core ML (skipped here)."""
    from typer.testing import CliRunner

    from edgeblood.cli import app

    out = tmp_path_factory.mktemp("report")
    result = CliRunner().invoke(app, [
        "bench", str(exported_run), "--runtimes", "pytorch,onnxruntime,openvino,coreml", "--batch", "1,8",
        "--threads", "1", "--quick", "--out", str(out), "--label", "laptop",
    ])
    assert result.exit_code == 0, result.output
    assert "report:" in result.output
    return out


def _rows(report: dict, **match) -> list[dict]:
    return [r for r in report["rows"] if all(r[k] == v for k, v in match.items())]


def test_bench_rows_accuracy_and_measurements(cli_report, exported_run):
    report = json.loads((cli_report / "report.json").read_text())
    ref = report["runs"][0]["reference"]
    for runtime in ("pytorch", "onnxruntime", "openvino"):
        rows = _rows(report, runtime=runtime)
        assert sorted(r["batch"] for r in rows) == [1, 8]
        for r in rows:
            assert r["status"] == "ok", r
            assert r["threads"] == 1 and r["device"] == "cpu" and r["split"] == "test"
            # fp32 artifacts predict the same classes as PyTorch: same accuracy on the full (sample) test split
            assert r["accuracy"] == pytest.approx(ref["accuracy"], abs=1e-9)
            assert r["n_images"] == report["runs"][0]["evaluated_on"]["images"]
            assert r["agreement"] == 1.0 and r["max_abs_diff"] < 1e-3
            lat = r["latency_ms"]
            assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"]
            assert r["throughput_ips"] == pytest.approx(r["batch"] * 1000 / lat["p50"], rel=1e-3)
            assert r["peak_rss_mb"] > r["runtime_rss_mb"] > 0
            assert r["size_bytes"] > 1000 and r["params"] > 0 and r["macs"] > 0
            assert r["gmacs"] > 0 and (r["peak_gmacs"] is None or r["peak_fraction"] > 0)
            # OpenVINO latency is timed on a model compiled for the row's batch (checked against the dynamic one)
            assert r["latency_input_shape"] == ("static" if runtime == "openvino" else "dynamic")
            # which kernels ran: OpenVINO's execution graph names them after their ISA (jit_avx2_f32, brgconv_avx512_...)
            if runtime == "openvino":
                assert r["kernels"] and any("avx" in k or "sse" in k or "amx" in k for k in r["kernels"]), r["kernels"]
            else:
                assert r["kernels"] is None
    assert any("compiled (OpenVINO)" in n for n in report["notes"])
    # only batch-1 ok rows can be on the Pareto front, and at least one is
    front = [r for r in report["rows"] if r["pareto"]]
    assert front and all(r["batch"] == 1 and r["status"] == "ok" for r in front)
    assert _rows(report, runtime="pytorch", batch=1)[0]["speedup_vs_pytorch"] == 1.0


ISA_NAMES = ("AVX2", "AVX-512", "VNNI", "vnni", "BF16", "AMX", "NEON", "SSE")


def test_peak_fraction_never_above_one_on_real_rows(cli_report):
    """Every measured CPU row is compared with the ceiling measured at bench start (or the theoretical one, if larger):
    its fraction is in (0, 1], its basis names the ISA and the kernel, and the machine records the micro-kernels."""
    report = json.loads((cli_report / "report.json").read_text())
    (machine,) = report["machines"]
    for precs in machine["peak"]["threads"].values():
        assert precs["fp32"]["gmacs"] > 0 and precs["int8"]["gmacs"] > 0
    measured = [r for r in report["rows"] if r["status"] == "ok" and r["device"] == "cpu"]
    assert measured
    for r in measured:
        assert 0 < r["peak_fraction"] <= 1.0, r
        assert r["peak_gmacs"] == max(x for x in (r["peak_measured_gmacs"], r["peak_theoretical_gmacs"]) if x)
        assert any(isa in r["peak_basis"] for isa in ISA_NAMES) and "/core" in r["peak_basis"], r["peak_basis"]
        assert r["peak_note"] is None or r["peak_fraction"] == 1.0
    md = (cli_report / "report.md").read_text()
    assert "Measured peak GMAC/s" in md
    assert not re.search(r"\b(1\d\d|[2-9]\d\d)\.\d % of", md)  # no cell above 100 %


def test_peak_micro_kernels_and_a_row_above_its_ceiling():
    from edgeblood.bench.machine import cpu_info
    from edgeblood.bench.peak import ABOVE_PEAK, ceiling, fraction, gemm_gmacs, measure_peaks
    from edgeblood.bench.report import peak_text

    assert gemm_gmacs(lambda: np.dot(np.ones((64, 64), np.float32), np.ones((64, 64), np.float32)), 64**3, 0.02) > 0
    peaks = measure_peaks([1], kernel_s=0.03)
    assert all(peaks["threads"]["1"][p]["gmacs"] > 0 for p in ("fp32", "bf16", "int8"))
    top = ceiling(cpu_info(), peaks, "int8", 1)
    assert top["peak_gmacs"] >= top["measured_gmacs"] > 0 and "int8" in top["basis"]
    # a row faster than its ceiling (fewer real multiplies than counted MACs) is capped and says so in its cell
    assert fraction(50.0, 100.0) == (0.5, None)
    frac, note = fraction(142.0, 100.0)
    assert frac == 1.0 and note.startswith(ABOVE_PEAK) and "1.42x" in note
    assert peak_text({"peak_fraction": frac, "peak_note": note}).startswith(" (≥ peak")
    assert "%" not in peak_text({"peak_fraction": 1.42, "peak_note": None})  # an older report's figure above 100 %
    assert peak_text({"peak_fraction": 0.5, "peak_note": None}) == " (50 %)"


def test_unusable_runtime_is_a_skipped_row_with_reason(cli_report):
    report = json.loads((cli_report / "report.json").read_text())
    (row,) = _rows(report, runtime="coreml")
    assert row["status"] == "skipped"
    assert "macOS" in row["reason"] or "coreml" in row["reason"]
    assert row["latency_ms"] is None and row["accuracy"] is None


def test_report_files_follow_the_schema(cli_report):
    import jsonschema

    report = json.loads((cli_report / "report.json").read_text())
    jsonschema.validate(report, load_schema())
    assert report["schema"] == SCHEMA and report["machines"][0]["label"] == "laptop"
    md = (cli_report / "report.md").read_text()
    assert "| p50 ms |" in md and "skipped" in md and "★" in md and "Machine: laptop" in md
    assert "Kernels of openvino fp32 (openvino execution graph): jit_" in md and "Kernels of onnxruntime, pytorch: not reported" in md
    page = (cli_report / "report.html").read_text()
    assert page.count("<svg") >= 2 and "Pareto front" in page and "test split, batch 1, 1 thread(s), device cpu" in page
    assert "http://" not in page and "https://" not in page  # self-contained: nothing to fetch


def test_merge_two_machines_and_schema_mismatch(cli_report, tmp_path):
    report = json.loads((cli_report / "report.json").read_text())
    other = json.loads(json.dumps(report).replace('"laptop"', '"cuda-box"'))
    for row in other["rows"]:
        row["id"] = row["id"].replace("laptop/", "cuda-box/", 1)
    (tmp_path / "cuda-box.json").write_text(json.dumps(other))
    merged = merge_reports([cli_report / "report.json", tmp_path / "cuda-box.json"])
    validate_report(merged)
    assert {m["label"] for m in merged["machines"]} == {"laptop", "cuda-box"}
    assert len(merged["rows"]) == 2 * len(report["rows"])
    assert {r["machine"] for r in merged["rows"] if r["pareto"]} == {"laptop", "cuda-box"}  # a front per machine
    paths = write_report(merged, tmp_path / "fleet")
    assert "| machine |" in paths["md"].read_text()

    # the same label twice stays two machines
    twice = merge_reports([cli_report / "report.json", cli_report / "report.json"])
    assert [m["label"] for m in twice["machines"]] == ["laptop", "laptop#2"]

    other["schema"] = "edgeblood.bench/0"
    (tmp_path / "old.json").write_text(json.dumps(other))
    proc = subprocess.run([sys.executable, "-m", "edgeblood", "report", "merge", str(cli_report / "report.json"),
                           str(tmp_path / "old.json"), "--out", str(tmp_path / "m")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "edgeblood.bench/0" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "m").exists()

    # D6: a report with a missing key is one line in every install (jsonschema is a base dependency now)
    broken = json.loads(json.dumps(report))
    del broken["rows"][0]["latency_ms"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    proc = subprocess.run([sys.executable, "-m", "edgeblood", "report", "merge", str(cli_report / "report.json"),
                           str(tmp_path / "broken.json"), "--out", str(tmp_path / "b")], capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "latency_ms" in lines[0] and "KeyError" not in proc.stderr, proc.stderr
    from importlib.metadata import requires

    assert any(r.startswith("jsonschema") and "extra" not in r for r in requires("edgeblood"))


def test_wrong_outputs_are_flagged_and_a_corrupt_file_fails_alone(exported_run, tmp_path):
    import torch

    from edgeblood.runs import open_run, save_checkpoint

    run_dir = tmp_path / "run"
    shutil.copytree(exported_run, run_dir)
    # The exported ONNX model no longer matches the run's weights: its outputs are wrong for this run.
    run = open_run(run_dir)
    model = run.model
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * p.std().clamp(min=1e-3))
    save_checkpoint(run_dir, model, run.metadata)
    # and the OpenVINO weights are garbage
    (run_dir / "export" / "openvino" / "model.bin").write_bytes(b"\0garbage" * 10)

    report = bench_runs([run_dir], BenchConfig(runtimes=["pytorch", "onnxruntime", "openvino"], batches=[4], threads=[1], timing=TINY))
    by_rt = {r["runtime"]: r for r in report["rows"]}
    assert by_rt["pytorch"]["status"] == "ok"
    assert by_rt["onnxruntime"]["status"] == "mismatch"
    assert "agree" in by_rt["onnxruntime"]["reason"] and by_rt["onnxruntime"]["latency_ms"] is not None
    assert by_rt["openvino"]["status"] == "failed" and by_rt["openvino"]["reason"]
    assert "sha256" in by_rt["openvino"]["reason"]
    validate_report(report)


def test_no_exported_artifacts_offers_export(sample_run):
    with pytest.raises(EdgebloodError, match=r"edgeblood export .* --target all"):
        bench_runs([sample_run], BenchConfig(timing=TINY))


def test_latency_measurement_blocks_and_percentiles():
    x = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    stats = measure_latency(lambda: x @ x, batch=1, config=TINY)
    assert stats.blocks >= TINY.window and stats.iterations >= TINY.window * TINY.min_block_iters
    assert 0 < stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms
    assert stats.converged == (stats.block_spread <= TINY.spread_target)


def test_peak_model_and_pareto_front():
    avx512 = ["avx2", "fma", "avx512f", "avx512_vnni"]
    assert peak_macs_per_cycle(avx512, "fp32")[0] == 32
    assert peak_macs_per_cycle(avx512, "int8")[0] == 128
    assert peak_macs_per_cycle(["avx2", "fma"], "fp32")[0] == 16
    # AMX (Sapphire Rapids): the tile unit is the int8/bf16 peak, 2048 int8 / 1024 bf16 ops per cycle per core
    amx = [*avx512, "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"]
    assert peak_macs_per_cycle(amx, "int8") == (1024, "int8 AMX tiles: 1024 MAC/cycle/core (2048 int8 ops, Intel 4th Gen Xeon)")
    assert peak_macs_per_cycle(amx, "bf16")[0] == 512 and peak_macs_per_cycle(amx, "fp16")[0] == 32  # fp16 tiles need amx_fp16
    assert peak_macs_per_cycle(amx, "fp32")[0] == 32 and "not used for this precision" in peak_macs_per_cycle(amx, "fp32")[1]
    # Zen 4 runs 512-bit ops on 256-bit units; AVX512_BF16 (vdpbf16ps) doubles the fp32 rate without AMX
    assert peak_macs_per_cycle(avx512, "fp32", split_512=True)[0] == 16
    assert peak_macs_per_cycle([*avx512, "avx512_bf16"], "bf16")[0] == 64
    peak, basis = peak_gmacs({"isa": avx512, "clock_mhz": 2000.0, "clock_source": "test"}, "fp32", 2)
    assert peak == 128.0 and "2 core(s)" in basis
    # (latency, accuracy): b is slower and less accurate than a; c is slowest but most accurate
    assert pareto_front([(1.0, 0.90), (2.0, 0.85), (3.0, 0.95), (1.0, 0.90)]) == [True, False, True, True]


def test_images_column_is_each_runtimes_own_accuracy_on_framed_files(exported_run, tmp_path):
    """bench --images: every accuracy row predicts the labelled files itself; equal to edgeblood evaluate --images."""
    from PIL import Image

    from edgeblood.evaluation.evaluate import evaluate_images
    from edgeblood.runs import open_run
    from exported_sample import sample_images

    images, labels = sample_images()
    run = open_run(exported_run)
    for i, (img, label) in enumerate(zip(images, labels)):
        (tmp_path / "cells" / run.classes[label]).mkdir(parents=True, exist_ok=True)
        # upscaled into the 200 px window of a 360x363 frame, so the run's own framing applies
        frame = np.full((363, 360, 3), img[0, 0], np.uint8)
        frame[82:282, 80:280] = np.asarray(Image.fromarray(img).resize((200, 200), Image.Resampling.BILINEAR))
        Image.fromarray(frame).save(tmp_path / "cells" / run.classes[label] / f"{i:02d}.png")
    report = bench_runs([exported_run], BenchConfig(runtimes=["pytorch", "onnxruntime", "openvino"], batches=[1], threads=[1], timing=TINY,
                                                    images=str(tmp_path / "cells"), interleave=None))
    rows = [r for r in report["rows"] if r["status"] == "ok"]
    assert {r["runtime"] for r in rows} == {"pytorch", "onnxruntime", "openvino"}
    expected = evaluate_images(open_run(shutil.copytree(exported_run, tmp_path / "copy")), tmp_path / "cells", plots=False)["accuracy"]
    for r in rows:
        assert r["images_n"] == 16 and r["images_accuracy"] == pytest.approx(expected, abs=1 / 16)
    assert report["runs"][0]["images"]["files"] == 16 and "200x200 px window" in report["runs"][0]["images"]["framing"]
    validate_report(report)


def test_a_busy_machine_is_noticed_and_its_rows_measured_again(exported_run):
    """Another process burning a core while rows run: every row says how many cores others used, the
    disturbed ones are measured again, and the report says so in one line."""
    import subprocess
    import sys

    from edgeblood.bench.runner import BenchConfig, bench_runs

    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        report = bench_runs([exported_run], BenchConfig(runtimes=["onnxruntime"], batches=[1], threads=[1], timing=TINY))
    finally:
        burner.kill()
        burner.wait()
    rows = [r for r in report["rows"] if r["status"] == "ok"]
    assert rows
    for r in rows:
        assert r["load"]["remeasured"] is True and r["load"]["first_foreign_cores"] > 0.5, r["load"]
        assert r["load"]["loadavg_1m"] is not None
    assert any(n.startswith("machine load: ") and "measured again" in n for n in report["notes"])


def test_foreign_cores_subtracts_the_bench_own_cpu_time():
    from edgeblood.bench.load import Snapshot, foreign_cores, is_disturbed

    before = Snapshot(wall=10.0, busy_s=100.0, own_s=5.0, loadavg_1m=1.0)
    after = Snapshot(wall=12.0, busy_s=103.0, own_s=7.0, loadavg_1m=1.2)  # 3 busy core-seconds in 2 s, 2 of them ours
    assert foreign_cores(before, after) == 0.5 and is_disturbed(0.5) and not is_disturbed(0.1)
    assert foreign_cores(before, Snapshot(12.0, None, 7.0, None)) is None


def test_headline_is_the_interleaved_ratio_of_the_fastest_ok_artifact(cli_report):
    """#19: report.md's headline is the interleaved A/B ratio (median of per-round ratios, one process,
    same threads, batch 1) of the fastest ok artifact vs PyTorch eager fp32; the row ratios say they are not."""
    report = json.loads((cli_report / "report.json").read_text())
    h = report["runs"][0]["interleaved"]
    assert h["status"] == "ok" and h["reason"] is None, h
    fastest = min(_rows(report, batch=1, status="ok", threads=1), key=lambda r: r["latency_ms"]["p50"] if r["runtime"] != "pytorch" else 1e9)
    assert (h["variant"], h["runtime"]) == (fastest["variant"], fastest["runtime"]) and h["baseline"] == "pytorch fp32"
    assert h["threads"] == 1 and h["batch"] == 1 and h["rounds"] == 5 and h["calls_per_round"] >= 10  # --quick: 5 rounds
    assert len(h["round_ratios"]) == h["rounds"] == len(h["round_p50_ms"]["baseline"]) == len(h["round_p50_ms"]["artifact"])
    assert h["ratio"] == np.median(h["round_ratios"]) and h["ratio_range"] == [min(h["round_ratios"]), max(h["round_ratios"])]
    for b, a, ratio in zip(h["round_p50_ms"]["baseline"], h["round_p50_ms"]["artifact"], h["round_ratios"]):
        assert ratio == pytest.approx(b / a, rel=1e-5)
    md = (cli_report / "report.md").read_text()
    headline = md.split("## Headline: interleaved A/B latency, batch 1")[1].split("\n## ")[0]
    assert f"is {h['ratio']:.2f}× as fast as PyTorch eager fp32" in headline and f"median of {h['rounds']} per-round ratios" in headline
    assert f"{h['calls_per_round']} timed calls" in headline and "1 thread(s)" in headline
    assert md.index("## Headline") < md.index("## Batch 1") and "| × vs PyTorch (non-interleaved) |" in md


def test_headline_skips_failed_mismatched_and_absent_runtimes():
    from edgeblood.bench.interleave import pick_pair

    def row(runtime, variant, status, p50, threads=1, batch=1, reason=None):
        return {"id": f"{variant}/t{threads}/b{batch}", "runtime": runtime, "variant": variant, "precision": variant.split()[1],
                "status": status, "reason": reason, "batch": batch, "threads": threads, "device": "cpu",
                "latency_ms": {"p50": p50} if status in ("ok", "mismatch") else None}

    torch_ok = row("pytorch", "pytorch fp32", "ok", 1.0)
    rows = [torch_ok, row("onnxruntime", "onnx int8", "mismatch", 0.05), row("openvino", "openvino fp32", "ok", 0.2),
            row("onnxruntime", "onnx fp32", "ok", 0.1, threads=2), row("onnxruntime", "onnx fp32", "ok", 0.3)]
    base, fast, why = pick_pair(rows)  # the mismatched int8 and the 2-thread row are not candidates
    assert base is torch_ok and fast["variant"] == "openvino fp32" and why is None
    _, fast, why = pick_pair([row("pytorch", "pytorch fp32", "failed", None, reason="worker crashed"), *rows[1:]])
    assert fast is None and "failed: worker crashed" in why
    _, fast, why = pick_pair(rows[1:])
    assert fast is None and "add pytorch to --runtimes" in why
    _, fast, why = pick_pair([torch_ok, row("onnxruntime", "onnx fp32", "failed", None, reason="x")])
    assert fast is None and "no other artifact" in why


def test_ece_column_is_edgebloods_ece_of_each_artifacts_own_probabilities(cli_report, exported_run):
    from edgeblood.data.bloodmnist import load_sample
    from edgeblood.evaluation.metrics import ECE_BINS, expected_calibration_error
    from edgeblood.runtimes import get_runtime, to_model_input

    report = json.loads((cli_report / "report.json").read_text())
    data = load_sample(28)
    images, labels = data.images("test"), data.labels("test")
    for runtime, path in (("onnxruntime", exported_run / "export" / "model.onnx"), ("openvino", exported_run / "export" / "openvino" / "model.xml")):
        rows = _rows(report, runtime=runtime)
        full = [r for r in rows if r["accuracy_measured_at"] == {"threads": r["threads"], "batch": r["batch"]}]
        (measured,) = full
        model = get_runtime(runtime).load(path, threads=1)
        probs = np.concatenate([model.predict(to_model_input(images[i : i + 8]), chunk=8) for i in range(0, len(images), 8)])
        expected, _ = expected_calibration_error(labels, probs, ECE_BINS)
        assert ECE_BINS == 15 and measured["ece"] == pytest.approx(expected, abs=1e-6)
        assert all(r["ece"] == measured["ece"] for r in rows)  # every row of the artifact carries it
    ref = report["runs"][0]["reference"]
    (torch_row,) = [r for r in _rows(report, runtime="pytorch") if r["batch"] == 8]
    assert ref["ece"] == pytest.approx(torch_row["ece"], abs=1e-6)
    md = (cli_report / "report.md").read_text()
    assert "| macro-F1 | ECE |" in md and f"| {torch_row['ece']:.4f} |" in md


def test_rows_sample_the_cpu_clock_and_the_report_has_a_load_section(cli_report):
    from edgeblood.bench.load import NOT_READABLE, cpu_mhz

    report = json.loads((cli_report / "report.json").read_text())
    here, source = cpu_mhz()
    for r in _rows(report, status="ok"):
        load = r["load"]
        assert load["cpu_mhz_source"] == source and load["foreign_cores"] is not None and load["loadavg_1m"] is not None
        if here is None:
            assert load["cpu_mhz"] is None and source == NOT_READABLE
        else:
            assert load["cpu_mhz_samples"] >= 1 and load["cpu_mhz_range"][0] <= load["cpu_mhz"] <= load["cpu_mhz_range"][1]
    section = report["runs"][0]["load"]
    assert section["measurements"] == len(_rows(report, status="ok")) + 1  # the rows and the interleaved headline
    assert section["cpu_mhz_source"] == source
    md = (cli_report / "report.md").read_text()
    lines = md.split("## Machine load while measuring")[1].split("\n## ")[0]
    assert "other processes used" in lines and ("CPU clock " + ("not readable" if here is None else "")) in lines


def test_cpu_clock_from_cpufreq_then_cpuinfo_else_not_readable(tmp_path):
    from edgeblood.bench.load import NOT_READABLE, cpu_mhz

    sys_cpu, cpuinfo = tmp_path / "cpu", tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\ncpu MHz\t\t: 2400.000\nprocessor\t: 1\ncpu MHz\t\t: 2600.000\n")
    assert cpu_mhz(sys_cpu, cpuinfo) == (2500.0, "/proc/cpuinfo cpu MHz")
    for i, khz in enumerate((3000000, 3400000)):
        (sys_cpu / f"cpu{i}" / "cpufreq").mkdir(parents=True)
        (sys_cpu / f"cpu{i}" / "cpufreq" / "scaling_cur_freq").write_text(f"{khz}\n")
    assert cpu_mhz(sys_cpu, cpuinfo) == (3200.0, "cpufreq scaling_cur_freq")
    assert cpu_mhz(tmp_path / "none", tmp_path / "missing") == (None, NOT_READABLE)


def test_bench_prints_a_line_per_row_while_it_runs_when_not_on_a_terminal(exported_run, tmp_path):
    """D20: piped to a file or another program, bench printed nothing until it ended."""
    proc = subprocess.Popen([sys.executable, "-m", "edgeblood", "bench", str(exported_run), "--runtimes", "pytorch,onnxruntime",
                             "--batch", "1,8", "--threads", "1", "--quick", "--rounds", "0", "--out", str(tmp_path / "r")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        first = proc.stdout.readline()
        if first.startswith("measuring the CPU peak"):  # the stage line of the peak micro-kernels comes before the rows
            first = proc.stdout.readline()
        running_after_first_row = proc.poll() is None
        rest = proc.stdout.read()
        assert proc.wait(timeout=600) == 0, rest
    finally:
        proc.kill()
    assert first.startswith("row 1/4 ok: ") and "batch 8" in first and "p50 " in first, first
    assert running_after_first_row  # the line came while the other three rows were still to run
    assert [line.split(":")[0] for line in rest.splitlines() if line.startswith("row ")] == ["row 2/4 ok", "row 3/4 ok", "row 4/4 ok"]
    assert "headline (interleaved)" not in rest and json.loads((tmp_path / "r" / "report.json").read_text())["runs"][0]["interleaved"] is None


# ---------------------------------------------------------------------------------- which file to ship (#30 item 5)
def test_rows_carry_the_paired_comparison_with_fp32_and_the_report_says_which_file_to_ship(cli_report, exported_run):
    from edgeblood.bench.stats import INDISTINGUISHABLE, PAIRED

    report = json.loads((cli_report / "report.json").read_text())
    n = report["runs"][0]["evaluated_on"]["images"]
    for r in _rows(report, status="ok"):
        counts, diff = r["paired_vs_reference"], r["accuracy_vs_fp32"]
        assert sum(counts.values()) == n and counts["reference_only"] == counts["artifact_only"] == 0  # fp32 artifacts: same answers
        assert diff["method"] == PAIRED and diff["verdict"] == INDISTINGUISHABLE and diff["ci95"][0] < 0 < diff["ci95"][1]
    md = (cli_report / "report.md").read_text()
    ship = md.split("## Which file to ship")[1].split("\n## ")[0]
    assert md.index("## Which file to ship") < md.index("## Headline")
    paths = re.findall(r"`([^`]+)`", ship)
    assert paths and all(Path(p).exists() for p in paths), ship  # real files, named by path
    assert "95 % CI" in ship and PAIRED in ship
    table = md.split("## Batch 1:")[1]
    assert "| file |" in table and "| export/model.onnx |" in table and "| checkpoint.pt |" in table
    assert "Δ pts vs fp32, 95 % CI" in table and "≈ [" in table


def test_a_skipped_row_is_not_reported_as_a_failure(cli_report):
    """Core ML (no artifact here) is skipped: listed as not measured, with its reason, never under failures."""
    md = (cli_report / "report.md").read_text()
    assert "not ok" not in md and "## Rows that failed or mismatched" not in md
    skipped = md.split("## Not measured here (skipped, with the reason)")[1].split("\n## ")[0]
    assert "| coreml |" in skipped and "| skipped |" in skipped


def test_the_html_report_fits_a_laptop_screen(cli_report, tmp_path):
    """1366 px wide in headless Chromium: no horizontal scrolling of the page or of any table (cut off at 1400 px before)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no headless Chromium here (apt-get install chromium)")
    probe = ("<script>addEventListener('load',()=>{const d=document.documentElement;let s=[...document.querySelectorAll('.scroll')]"
             ".map(e=>e.scrollWidth-e.clientWidth);document.body.dataset.overflow=Math.max(d.scrollWidth-d.clientWidth,...s)})</script>")
    page = tmp_path / "report.html"
    page.write_text((cli_report / "report.html").read_text().replace("</body>", probe + "</body>"))
    out = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--window-size=1366,900", "--virtual-time-budget=3000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    overflow = re.search(r'data-overflow="(-?\d+)"', out.stdout)
    assert overflow, out.stderr[-2000:]
    assert int(overflow.group(1)) <= 0, f"the page is {overflow.group(1)} px wider than a 1366 px window"


def test_cpu_label_names_the_widest_isa_tier_a_training_or_int8_kernel_can_use():
    from edgeblood.cpu import cpu_label

    assert cpu_label({"model": "AMD EPYC", "isa": ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"]}) == "AMD EPYC, AVX-512 BF16"
    assert cpu_label({"model": "Intel Xeon", "isa": ["avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"]}) == "Intel Xeon, AMX"
    assert cpu_label({"model": "AMD EPYC", "isa": ["avx2", "fma"]}) == "AMD EPYC, AVX2"
    assert cpu_label({"model": "Apple M2", "isa": ["neon", "asimddp"]}) == "Apple M2, NEON dot"
    assert cpu_label({"model": "riscv", "isa": []}) == "riscv"
    assert cpu_label(None) is None and cpu_label({"isa": ["avx2"]}) is None  # a run from before training.cpu
