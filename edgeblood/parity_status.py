"""The four words every parity verdict uses: ``ok``, ``mismatch``, ``failed``, ``skipped``.

They belong to the judge (``edgeblood.parity`` explains each), but the manifest that records verdicts
checks them too. Kept here, below both, so that reading a manifest does not import the judge, and
through it the runtimes and the run loader: that chain (runs -> manifest -> parity -> runtimes -> runs)
was an import cycle.
"""

from __future__ import annotations

OK, MISMATCH, FAILED, SKIPPED = "ok", "mismatch", "failed", "skipped"
STATUSES = (OK, MISMATCH, FAILED, SKIPPED)
NOT_SHIPPABLE = (MISMATCH, FAILED)  # exported but wrong, or no outputs at all: do not ship
