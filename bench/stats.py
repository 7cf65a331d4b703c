"""Is an artifact's test accuracy distinguishable from the PyTorch fp32 reference's? Intervals the report can rank by.

On 3,421 test images one standard error of a ~96 % accuracy is ~0.33 points, so differences of a
tenth of a point between artifacts are noise and must not be ranked. Every bench row that predicts
the full test split carries the 2x2 table of its per-image correctness against the reference's on the
same images (``paired_counts``); the difference artifact - reference gets a 95 % interval:

* paired (the default): Newcombe's hybrid score interval for the difference of paired proportions
  (Newcombe 1998, Statistics in Medicine 17:2635-2650, method 10; with the continuity-corrected
  correlation phi as in Fagerland, Lydersen & Laake 2017, "Statistical Analysis of Contingency
  Tables", ch. 8). Both models see the same images, so only the images one of them gets right and
  the other wrong carry the comparison: far tighter than treating the two accuracies as independent.
* independent (fallback, when a row has no paired counts: reports from before they were recorded):
  Newcombe's interval for the difference of independent proportions (Newcombe 1998, Statistics in
  Medicine 17:873-890, method 10), built from the same Wilson score intervals; wider (conservative).

An artifact is *indistinguishable* from the reference when the interval contains 0; *lower* or *higher*
otherwise. This says "no detectable difference", not "proven equal": the interval is printed beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # two-sided 95 %
PAIRED = "Newcombe paired score interval (method 10)"
INDEPENDENT = "Newcombe score interval for independent proportions (method 10)"
INDISTINGUISHABLE, LOWER, HIGHER = "indistinguishable", "lower", "higher"


@dataclass(frozen=True)
class Difference:
    """Accuracy of an artifact minus the reference's, with its 95 % interval (fractions, not points)."""

    delta: float
    low: float
    high: float
    method: str
    n: int

    @property
    def verdict(self) -> str:
        return LOWER if self.high < 0 else HIGHER if self.low > 0 else INDISTINGUISHABLE

    def to_dict(self) -> dict:
        return {"delta": round(self.delta, 6), "ci95": [round(self.low, 6), round(self.high, 6)], "method": self.method,
                "n_images": self.n, "verdict": self.verdict}


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of the proportion k/n."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_counts(reference_correct: np.ndarray, artifact_correct: np.ndarray) -> dict[str, int]:
    """The 2x2 table of per-image correctness: both right, only the reference, only the artifact, neither."""
    ref, art = np.asarray(reference_correct, bool), np.asarray(artifact_correct, bool)
    return {"both": int((ref & art).sum()), "reference_only": int((ref & ~art).sum()),
            "artifact_only": int((~ref & art).sum()), "neither": int((~ref & ~art).sum())}


def paired_difference(counts: dict[str, int], z: float = Z95) -> Difference:
    """Artifact accuracy - reference accuracy on the same images, Newcombe's paired method 10."""
    a, b, c, d = counts["both"], counts["reference_only"], counts["artifact_only"], counts["neither"]
    n = a + b + c + d
    p_art, p_ref = (a + c) / n, (a + b) / n
    l_art, u_art = wilson(a + c, n, z)
    l_ref, u_ref = wilson(a + b, n, z)
    margins = (a + c) * (b + d) * (a + b) * (c + d)
    phi = 0.0
    if margins:
        cross = a * d - b * c
        phi = (cross - n / 2) / math.sqrt(margins) if cross > n / 2 else min(cross, 0) / math.sqrt(margins)
    delta = p_art - p_ref
    low = delta - math.sqrt(max(0.0, (p_art - l_art) ** 2 + (u_ref - p_ref) ** 2 - 2 * phi * (p_art - l_art) * (u_ref - p_ref)))
    high = delta + math.sqrt(max(0.0, (u_art - p_art) ** 2 + (p_ref - l_ref) ** 2 - 2 * phi * (u_art - p_art) * (p_ref - l_ref)))
    return Difference(delta, max(-1.0, low), min(1.0, high), PAIRED, n)


def independent_difference(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> Difference:
    """k1/n1 - k2/n2 for two independent samples, Newcombe's method 10."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    delta = p1 - p2
    return Difference(delta, delta - math.hypot(p1 - l1, u2 - p2), delta + math.hypot(u1 - p1, p2 - l2), INDEPENDENT, min(n1, n2))


def difference_vs_reference(accuracy: float | None, n: int | None, reference_accuracy: float | None,
                            counts: dict[str, int] | None) -> Difference | None:
    """The row's difference from the reference: paired when its counts are known, else independent; None without figures."""
    if counts and sum(counts.values()) > 0:
        return paired_difference(counts)
    if accuracy is None or reference_accuracy is None or not n:
        return None
    return independent_difference(round(accuracy * n), n, round(reference_accuracy * n), n)
