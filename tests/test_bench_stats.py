"""bench.stats and bench.recommend: accuracy differences inside the noise are not ranked, and the report names
the file to ship (#30 item 5). Published values pin the intervals; synthetic rows pin the ranking."""

from __future__ import annotations

import pytest

from edgeblood.bench.recommend import delta_text, recommendation_lines
from edgeblood.bench.results import add_comparisons, mark_pareto
from edgeblood.bench.stats import (
    INDISTINGUISHABLE,
    LOWER,
    PAIRED,
    independent_difference,
    paired_counts,
    paired_difference,
    wilson,
)


def test_wilson_and_newcombe_reproduce_the_published_examples():
    # Newcombe 1998 (Stat Med 17:857), 81/263: 0.2553 to 0.3662
    assert wilson(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    # Newcombe 1998 (Stat Med 17:873), method 10, 56/70 - 48/80: 0.0524 to 0.3339
    d = independent_difference(56, 70, 48, 80)
    assert (d.low, d.high) == pytest.approx((0.0524, 0.3339), abs=5e-5) and d.delta == pytest.approx(0.2)


def test_the_paired_interval_uses_the_pairs():
    """Same images: 20 discordant pairs out of 3,421 decide it, so it is far tighter than the independent one."""
    counts = {"both": 3270, "reference_only": 12, "artifact_only": 8, "neither": 131}
    paired = paired_difference(counts)
    independent = independent_difference(3278, 3421, 3282, 3421)
    assert paired.method == PAIRED and paired.delta == pytest.approx(-4 / 3421)
    assert paired.low < paired.delta < paired.high and paired.verdict == INDISTINGUISHABLE
    assert paired.high - paired.low < (independent.high - independent.low) / 2
    swapped = paired_difference({**counts, "reference_only": 8, "artifact_only": 12})  # the same table seen from the other side
    assert (swapped.low, swapped.high) == pytest.approx((-paired.high, -paired.low))
    worse = paired_difference({"both": 3200, "reference_only": 82, "artifact_only": 8, "neither": 131})
    assert worse.verdict == LOWER and worse.high < 0
    assert paired_counts([True, True, False, False], [True, False, True, False]) == {"both": 1, "reference_only": 1, "artifact_only": 1, "neither": 1}


def _row(variant, runtime, p50, size, counts, accuracy):
    return {"id": variant, "machine": "laptop", "run": "se-cnn", "variant": variant, "artifact": f"runs/se-cnn/export/{variant}",
            "runtime": runtime, "precision": variant.split(".")[0].split("-")[0], "device": "cpu", "threads": 1, "batch": 1, "status": "ok",
            "reason": None, "accuracy": accuracy, "n_images": 3421, "latency_ms": {"p50": p50}, "size_bytes": size,
            "paired_vs_reference": counts, "pareto": False}


def _report():
    ref = 3282 / 3421
    rows = [
        _row("fp32-pytorch", "pytorch", 1.0, 1_800_000, {"both": 3282, "reference_only": 0, "artifact_only": 0, "neither": 139}, ref),
        _row("fp32.onnx", "onnxruntime", 0.30, 1_780_000, {"both": 3282, "reference_only": 0, "artifact_only": 0, "neither": 139}, ref),
        # 0.12 pt below fp32 and the fastest: within the noise, so it is as good a choice as fp32
        _row("int8.xml", "openvino", 0.20, 520_000, {"both": 3270, "reference_only": 12, "artifact_only": 8, "neither": 131}, 3278 / 3421),
        # 0.06 pt above, slower than int8.xml: not 'more accurate' — it must not take a place on the front for 0.06 pt
        _row("int8.onnx", "onnxruntime", 0.25, 490_000, {"both": 3276, "reference_only": 6, "artifact_only": 8, "neither": 131}, 3284 / 3421),
        # 2.2 pt below: not equivalent
        _row("int4.xml", "openvino", 0.10, 300_000, {"both": 3200, "reference_only": 82, "artifact_only": 8, "neither": 131}, 3208 / 3421),
    ]
    runs = [{"machine": "laptop", "name": "se-cnn", "path": "runs/se-cnn", "reference": {"accuracy": ref},
             "evaluated_on": {"images": 3421, "source": "full"}}]
    add_comparisons(rows, runs)
    mark_pareto(rows)
    return {"machines": [{"label": "laptop"}], "runs": runs, "rows": rows}


def test_differences_inside_the_noise_are_not_ranked():
    rows = {r["variant"]: r for r in _report()["rows"]}
    assert delta_text(rows["int8.onnx"], interval=False) == "+0.06 ≈" and delta_text(rows["int4.xml"], interval=False) == "-2.16 ↓"
    # int8.onnx is 0.06 pt above int8.xml but slower: with raw accuracies both were on the front
    assert [v for v, r in rows.items() if r["pareto"]] == ["int8.xml", "int4.xml"]


def test_the_recommendation_names_the_smallest_and_the_fastest_equivalent_file():
    lines = recommendation_lines(_report())
    choice = lines[0]
    assert choice.startswith("**se-cnn, cpu**: smallest: `runs/se-cnn/export/int8.onnx` (onnxruntime, int8, 0.49 MB")
    assert "fastest: `runs/se-cnn/export/int8.xml` (openvino, int8, 0.52 MB, p50 0.2 ms at batch 1, 1 thread(s)" in choice
    assert "95 % CI" in choice and "int4.xml" not in choice  # 2.2 pt below: not offered as equivalent ...
    assert "not equivalent" in lines[1] and "int4.xml" in lines[1]  # ... but named, with its interval
    assert PAIRED in lines[2] and "3421 test images" in lines[2] and "0.34 pt" in lines[2]
