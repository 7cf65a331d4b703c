"""The docs site (issue #27 item 4): it builds strictly, the quickstart's code runs as written, the CLI
reference is what the app says, the README stays a front page, and no page names a machine's own paths."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import real_data_path, script_module

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
QUICKSTART = DOCS / "quickstart.md"
ORIGINALS = "pbc-originals/val"
MARK = re.compile(r"<!-- docs-test: (skip|needs [\w./-]+) \((.+?)\) -->")
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.M | re.S)


def _blocks(page: Path) -> list[tuple[str, str, str | None]]:
    """(language, code, mark) of each fenced block; the mark is the ``docs-test`` comment on the line above."""
    text = page.read_text()
    out = []
    for m in FENCE.finditer(text):
        above = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = MARK.fullmatch(above.strip())
        out.append((m.group(1), m.group(2), mark.group(1) if mark else None))
    return out


def _run_block(lang: str, code: str, cwd: Path, env: dict[str, str]) -> None:
    if lang == "bash":
        cmd = ["bash", "-euo", "pipefail", "-c", code]
    elif lang == "python":
        cmd = [sys.executable, "-c", code]
    else:
        raise AssertionError(f"a quickstart block in {lang!r}: only bash and python blocks can be run; mark it skip with a reason")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"quickstart block failed ({lang}):\n{code}\n--- output ---\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def _env(tmp_path: Path, data: Path | None) -> dict[str, str]:
    """The reader's shell: this venv's `edgeblood` first on PATH, a private cache for the pretrained copy."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["EDGEBLOOD_HOME"] = str(tmp_path / "home")
    env["EDGEBLOOD_CACHE"] = str(tmp_path / "cache")
    if data is not None:
        env["EDGEBLOOD_DATA"] = str(data)
    return env


def test_every_quickstart_block_is_run_or_says_why_not():
    blocks = _blocks(QUICKSTART)
    assert sum(1 for _, _, mark in blocks if mark is None) >= 4
    for lang, code, mark in blocks:
        assert mark is not None or lang in ("bash", "python"), f"unmarked {lang} block cannot be run:\n{code}"
    skipped = [code for _, code, mark in blocks if mark == "skip"]
    assert len(skipped) <= 1, "only the install block may be left out"


def test_the_quickstart_runs_as_written(tmp_path):
    """Every unmarked block, in page order, in one empty folder: models, sample images, predict, evaluate, Python."""
    work = tmp_path / "work"
    work.mkdir()
    env = _env(tmp_path, None)
    ran = 0
    for lang, code, mark in _blocks(QUICKSTART):
        if mark is None:
            _run_block(lang, code, work, env)
            ran += 1
    assert ran >= 4
    rows = (work / "predictions.csv").read_text().splitlines()
    assert len(rows) == 97 and rows[0].startswith("file")  # a header and the 96 sample test images


def _data_dir() -> Path | None:
    """The data folder ($EDGEBLOOD_DATA, then ../shared/data) that holds the val captures, via conftest's resolver."""
    return real_data_path(*ORIGINALS.split("/"), parent=True)


def test_the_quickstarts_capture_blocks_run_on_a_subset_of_the_pbc_originals(tmp_path):
    """The blocks that read ``$EDGEBLOOD_DATA/pbc-originals/val`` run on 3 captures per class (seconds, not minutes)."""
    source = _data_dir()
    if source is None:
        pytest.skip(f"no {ORIGINALS} under $EDGEBLOOD_DATA or ../shared/data: the quickstart's capture blocks need it")
    subset = tmp_path / "data"
    for class_dir in sorted(p for p in (source / ORIGINALS).iterdir() if p.is_dir()):
        dest = subset / ORIGINALS / class_dir.name
        dest.mkdir(parents=True)
        for f in sorted(class_dir.glob("*.jpg"))[:3]:
            shutil.copy(f, dest / f.name)
    work = tmp_path / "work"
    work.mkdir()
    blocks = [(lang, code) for lang, code, mark in _blocks(QUICKSTART) if mark == f"needs {ORIGINALS}"]
    assert blocks, "the quickstart shows no command on the captures any more: drop this test or the mark"
    for lang, code in blocks:
        _run_block(lang, code, work, _env(tmp_path, subset))


def _script(name: str):
    return script_module(name)


def test_the_cli_reference_is_what_the_app_says():
    cli_reference = _script("cli_reference")
    assert (DOCS / "cli.md").read_text() == cli_reference.render(), "docs/cli.md is stale: run python scripts/cli_reference.py"
    text = (DOCS / "cli.md").read_text()
    for command in ("train", "predict", "adapt", "export", "compress", "bench", "pipeline", "report merge"):
        assert f"## `edgeblood {command}`" in text
    assert "| `--red-cell-px " in text  # an option of predict, evaluate and adapt


def test_the_docs_build_strictly(tmp_path):
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None:
        pytest.skip("mkdocs/mkdocstrings are not installed (pip install -e '.[docs]')")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("api.classifier.Classifier", "api.runs.load", "api.runs.train", "api.runs.Run", "api.runs.Run.export",
                 "errors.EdgebloodError", "errors.MissingExtraError"):
        assert f'id="edgeblood.{name}"' in api, name  # rendered from the docstrings, not typed by hand
    assert (tmp_path / "site" / "framing.png").is_file()


def test_the_readme_is_a_front_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for page in ("quickstart", "install", "cli", "api", "architecture", "results"):
        assert f"docs/{page}.md" in readme, f"the README does not link docs/{page}.md"


# A machine's own paths: the development box's work tree and home folders (a docs reader has neither).
MACHINE_PATH = re.compile(r"(?<![\w.])(/work/|/home/\w|/root/|/Users/\w|[A-Z]:\\Users\\)")


def _published_text() -> list[Path]:
    return [ROOT / "README.md", ROOT / "mkdocs.yml", *sorted(p for p in DOCS.rglob("*") if p.suffix in (".md", ".yml", ".html", ".txt"))]


def test_no_machine_specific_paths_in_the_docs():
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()[:120]}"
             for path in _published_text() for n, line in enumerate(path.read_text().splitlines(), 1) if MACHINE_PATH.search(line)]
    assert not found, "machine paths in the docs:\n" + "\n".join(found)


def test_the_machine_path_check_catches_what_it_is_for():
    for line in ("--out /work/runs/s9", "cd /home/alice/edgeblood", "see /root/.cache", "C:\\Users\\bob"):
        assert MACHINE_PATH.search(line), line
    for line in ("../lab-data/captures/val", "runs/se-cnn-28/export", "~/.cache/edgeblood", "https://x.org/work/y"):
        assert not MACHINE_PATH.search(line), line


def _between(text: str, name: str) -> str:
    return text.split(f"<!-- {name}:begin -->\n", 1)[1].split(f"\n<!-- {name}:end -->", 1)[0]


def test_the_results_tables_are_what_bench_results_json_renders():
    """README's headline and docs/results.md's full table are generated: `python scripts/results_table.py render`."""
    import json

    table = _script("results_table")
    rows = json.loads((ROOT / "bench" / "results.json").read_text())["rows"]
    assert _between((DOCS / "results.md").read_text(), "results") == table.render(rows)
    headline = _between((ROOT / "README.md").read_text(), "results-headline")
    assert headline == table.render_headline(rows)
    assert len(headline.splitlines()) == 2 + 10


def test_the_headline_keeps_the_best_plain_run_of_each_model():
    table = _script("results_table")
    base = {"size": 28, "data": "28 px official", "params": 1000, "macs": 1e6, "model_config": {}}
    rows = [{**base, "run": "a", "model": "m1", "fp32_accuracy": 0.95},
            {**base, "run": "b", "model": "m1", "fp32_accuracy": 0.96},
            {**base, "run": "c", "model": "m1", "fp32_accuracy": 0.99, "derived": "structured-channel-pruning of b"},
            {**base, "run": "d", "model": "m2", "fp32_accuracy": 0.97, "teacher": "t (m1 @ 64 px)"},
            {**base, "run": "e", "model": "m2", "fp32_accuracy": 0.90}]
    assert [r["run"] for r in table.headline_rows(rows)] == ["b", "e"]
    assert len(table.headline_rows([{**base, "run": str(i), "model": f"m{i}", "fp32_accuracy": i / 100} for i in range(20)])) == 10


def test_sections_are_replaced_between_their_markers_and_missing_markers_are_an_error():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from doc_sections import portable_command, replace_section
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    page = "intro\n<!-- t:begin -->\nold\n<!-- t:end -->\noutro\n"
    assert replace_section(page, "t", "new\n") == "intro\n<!-- t:begin -->\nnew\n<!-- t:end -->\noutro\n"
    with pytest.raises(SystemExit, match="no single"):
        replace_section("no markers here", "t", "new")
    command = "edgeblood train --data /srv/x/pbc-originals/val --init /srv/runs/aug-se-cnn-28 --out /srv/runs/s9 --data-dir /srv/data --epochs 2"
    assert portable_command(command) == "edgeblood train --data pbc-originals/val --init runs/aug-se-cnn-28 --epochs 2"
