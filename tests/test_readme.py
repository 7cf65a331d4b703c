"""The README's commands do what it says (#30 items 1 and 6): the main command installs PyTorch's CPU build and
what `pipeline` uses, and its test command is the one .ci/run runs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _first_command(title: str) -> str:
    return re.search(r"```bash\n(.+?)\n```", _section(title), re.S).group(1).strip()


def _pip_installs(command: str) -> list[list[str]]:
    """The argument lists of each `pip install` in a `&&` chain."""
    return [shlex.split(part)[2:] for part in command.split(" && ") if shlex.split(part)[1:2] == ["install"]]


def test_the_main_command_installs_pytorchs_cpu_build_before_anything_else():
    """On PyPI, Linux torch 2.13.0 is the CUDA build (18 nvidia/cuda wheels): constraints.txt alone did not keep it off."""
    first, second = _pip_installs(_first_command("Install and run the main job"))
    pin = re.search(r"^torch==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M).group(1)
    assert f"torch=={pin}+cpu" in first  # the local version: pip stops instead of falling back to the CUDA build
    assert first[first.index("--extra-index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    assert "-e" in second and "--extra-index-url" not in second  # the rest from PyPI, the installed torch kept


def test_the_main_command_installs_what_the_pipeline_exports_and_nothing_more():
    """`.[all]` (2.9 GB with jax and ExecuTorch) while the pipeline exports three targets."""
    import typer

    from edgeblood.cli import app
    from edgeblood.targets import get_target

    _, second = _pip_installs(_first_command("Install and run the main job"))
    extras = set(re.search(r"\.\[([a-z,]+)\]", second[second.index("-e") + 1]).group(1).split(","))
    option = next(p for p in typer.main.get_command(app).commands["pipeline"].params if p.name == "targets")
    assert extras == {get_target(t).extra for t in option.default.split(",")}


def test_the_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    ran = ci[ci.index("# README test command:") + 1].strip()
    assert _first_command("Tests") == ran


def test_the_install_page_gives_the_readmes_commands_verbatim():
    """docs/install.md repeats the main and test commands with their explanation: the two copies must not drift."""
    page = (ROOT / "docs" / "install.md").read_text()
    blocks = re.findall(r"```bash\n(.+?)\n```", page, re.S)
    assert _first_command("Install and run the main job") in blocks
    assert _first_command("Tests") in blocks
