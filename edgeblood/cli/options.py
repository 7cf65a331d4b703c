"""Option-value helpers shared by the CLI commands (comma-separated lists, file sizes).

Kept in one place so every command reads ``--target onnx,openvino`` or ``--batch 1,64`` the same
way and says the same thing when a value is wrong.
"""

from __future__ import annotations

from edgeblood.errors import EdgebloodError

#: --red-cell-px, the same on predict, evaluate --images and adapt (edgeblood.pixel_scale.choose_scale reads it).
RED_CELL_HELP = ("Your captures' red-cell diameter in pixels (e.g. 40; training captures: about 73), or 'auto' to estimate it "
                 "from the images: the model's capture window is rescaled to cover the same area of the smear.")
UM_PER_PX_HELP = "Your camera's pixel size in micrometres (alternative to --red-cell-px)."


def split_list(text: str | None) -> list[str]:
    """``"onnx, openvino,"`` -> ``["onnx", "openvino"]``: comma-separated, stripped, blanks dropped (None -> [])."""
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def positive_ints(text: str, option: str) -> list[int]:
    """Comma-separated positive integers for ``option`` (e.g. ``--batch 1,64``), or one EdgebloodError line."""
    try:
        values = [int(t) for t in split_list(text)]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise EdgebloodError(f"{option} takes positive integers separated by commas, e.g. {option} 1,2 (got {text!r})")
    return values


def file_size(n: int | None) -> str:
    """Bytes as a table cell: '1.23 MB' or '456 kB' ('-' when unknown)."""
    if n is None:
        return "-"
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def status_cell(status: str) -> str:
    """A parity/measurement status word (edgeblood.parity) as a table cell."""
    return {"ok": "[green]ok[/]", "mismatch": "[bold red]MISMATCH[/]", "failed": "[bold red]FAILED[/]"}.get(status, "[yellow]skipped[/]")


def target_help(what: str = "") -> str:
    """The --target help: the registered targets (edgeblood.targets) and 'all'."""
    from edgeblood.targets import choices_text

    return f"{choices_text()} (comma-separated list allowed){what}."
