"""The bench report in three forms from one JSON document: Markdown (printed with rich and saved),
JSON (versioned by ``report.schema.json``, mergeable across machines) and a self-contained HTML page
with inline SVG charts (``bench.report_html``: no external URLs, so it opens offline and can be mailed as one file).
Each starts with which file to ship (``bench.recommend``).

Every table and figure names the split, runtime, device, threads and batch it shows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from edgeblood.atomic import write_json, write_text
from edgeblood.bench.load import DISTURBED_CORES
from edgeblood.bench.peak import ABOVE_PEAK
from edgeblood.bench.recommend import delta_text, recommendation_lines
from edgeblood.bench.results import SCHEMA, add_comparisons, mark_pareto, sort_rows
from edgeblood.bench.stats import PAIRED
from edgeblood.errors import EdgebloodError
from edgeblood.parity import FAILED, MISMATCH, OK, SKIPPED

SCHEMA_FILE = Path(__file__).with_name("report.schema.json")
REPORT_FILES = {"json": "report.json", "md": "report.md", "html": "report.html"}
# The rows' speed-ups compare two rows measured at different times (one worker each): say so wherever they appear.
RATIO_HEADER = "× vs PyTorch (non-interleaved)"
# The accuracy difference to the PyTorch fp32 reference: ≈ within the noise (its 95 % interval contains 0), ↓/↑ beyond it.
DELTA_HEADER = "Δ pts vs fp32, 95 % CI"
SHIP_TITLE = "Which file to ship"
FAILED_TITLE = "Rows that failed or mismatched"
SKIPPED_TITLE = "Not measured here (skipped, with the reason)"


# ------------------------------------------------------------------------------------ schema, loading
@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text())


def validate_report(report: dict[str, Any], source: str = "report") -> None:
    """Raise EdgebloodError (one line) unless ``report`` follows this edgeblood's report schema."""
    found = report.get("schema") if isinstance(report, dict) else None
    if found != SCHEMA:
        raise EdgebloodError(
            f"{source} has report schema {found!r}, this edgeblood reads {SCHEMA!r}; "
            "re-run `edgeblood bench` with the same edgeblood version on every machine"
        )
    import jsonschema  # a base dependency: a file from another machine is validated before use

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(load_schema()).iter_errors(report))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise EdgebloodError(f"{source} does not follow {SCHEMA} at {where}: {error.message[:200]}; re-run `edgeblood bench` to regenerate it")


def load_report(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_FILES["json"]
    if not path.is_file():
        raise EdgebloodError(f"no bench report at {path}; pass the report.json that `edgeblood bench` wrote")
    try:
        report = json.loads(path.read_text())
    except ValueError as exc:
        raise EdgebloodError(f"{path} is not valid JSON ({exc}); pass the report.json that `edgeblood bench` wrote") from None
    validate_report(upgrade_report(report), str(path))
    return report


def upgrade_report(report: Any) -> Any:
    """A report of schema edgeblood.bench/1 read as /2 (in place): only the status word changed,
    "output mismatch" -> "mismatch" (the parity judge's word). Other schemas are left for validation."""
    if isinstance(report, dict) and report.get("schema") == "edgeblood.bench/1":
        report["schema"] = SCHEMA
        for row in report.get("rows") or []:
            if isinstance(row, dict) and row.get("status") == "output mismatch":
                row["status"] = "mismatch"
    return report


# ------------------------------------------------------------------------------------------- merging
def merge_reports(paths: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """One report from several (typically one per machine); rows keep their machine label.

    Machines with the same label are renamed ``label#2``... so their rows stay apart.
    """
    from edgeblood import __version__
    from edgeblood.provenance import command_line, git_commit, utc_now

    if len(paths) < 2:
        raise EdgebloodError("report merge needs at least two report.json files, e.g. laptop.json cuda-box.json")
    reports = [(str(p), load_report(p)) for p in paths]
    merged: dict[str, Any] = {
        "schema": SCHEMA, "created": utc_now(), "edgeblood_version": __version__, "git_commit": git_commit(),
        "command": command_line(), "split": "test", "merged_from": [p for p, _ in reports],
        "machines": [], "runs": [], "rows": [], "notes": [],
    }
    used: set[str] = set()
    for source, rep in reports:
        rename: dict[str, str] = {}
        for machine in rep["machines"]:
            label = new = machine["label"]
            k = 2
            while new in used:
                new, k = f"{label}#{k}", k + 1
            used.add(new)
            rename[label] = new
            merged["machines"].append(machine | {"label": new})
        for run in rep["runs"]:
            merged["runs"].append(run | {"machine": rename.get(run["machine"], run["machine"])})
        for row in rep["rows"]:
            m = rename.get(row["machine"], row["machine"])
            merged["rows"].append(row | {"machine": m, "id": m + row["id"][len(row["machine"]):]})
        merged["notes"] += [f"[{Path(source).name}] {n}" for n in rep["notes"]]
    add_comparisons(merged["rows"], merged["runs"])  # first: the Pareto front ranks by its accuracy intervals
    mark_pareto(merged["rows"])
    merged["rows"] = sort_rows(merged["rows"])
    return merged


# ------------------------------------------------------------------------------------------- writing
def check_writable(out_dir: str | os.PathLike) -> None:
    """Fail before a long bench, not after it, when the report folder cannot be written (creates nothing)."""
    out_dir = Path(out_dir).absolute()
    existing = next((p for p in (out_dir, *out_dir.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        what = "is not a folder" if existing is not None and not existing.is_dir() else "is not writable"
        raise EdgebloodError(f"cannot write the report to {out_dir} ({existing} {what}); pass a writable folder with --out")


def write_report(report: dict[str, Any], out_dir: str | os.PathLike) -> dict[str, Path]:
    """report.json, report.md and report.html in ``out_dir`` (each written atomically)."""
    validate_report(report, "the new report")
    out_dir = Path(out_dir)
    check_writable(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgebloodError(f"cannot create {out_dir} ({exc.strerror or exc}); pass a writable folder with --out") from None
    return {
        "json": write_json(out_dir / REPORT_FILES["json"], report),
        "md": write_text(out_dir / REPORT_FILES["md"], markdown_report(report)),
        "html": write_text(out_dir / REPORT_FILES["html"], html_report(report)),
    }


def html_report(report: dict[str, Any]) -> str:
    """The self-contained HTML page (bench.report_html; imported here so callers keep one module to ask)."""
    from edgeblood.bench.report_html import html_report as render

    return render(report)


# ------------------------------------------------------------------------------------------ columns
def _multi_machine(report: dict[str, Any]) -> bool:
    return len(report["machines"]) > 1


def _fmt_ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _count(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e9:.2f} G" if n >= 1e9 else f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def artifact_file(report: dict[str, Any], row: dict[str, Any]) -> str:
    """The row's file relative to its run directory (export/openvino/model.xml; checkpoint.pt for PyTorch): what to ship."""
    art = row.get("artifact")
    if not art:
        return "-"
    run_path = next((r.get("path") for r in report["runs"] if r["name"] == row["run"] and r["machine"] == row["machine"]), None)
    if run_path and art == run_path:
        return "checkpoint.pt"
    if run_path and art.startswith(run_path.rstrip("/") + "/"):
        return art[len(run_path.rstrip("/")) + 1:]
    return art


def _columns(report: dict[str, Any]) -> list[tuple[str, Any]]:
    """(header, row -> cell text) for the measured-rows table; shared by Markdown, rich and HTML."""
    def lat(key):
        return lambda r: _fmt_ms(r["latency_ms"][key]) if r["latency_ms"] else "-"

    def mean_std(r):
        if not r["latency_ms"]:
            return "-"
        lat_ms = r["latency_ms"]
        return f"{_fmt_ms(lat_ms['mean'])} ± {_fmt_ms(lat_ms['std'])}" + ("" if lat_ms["converged"] else " ~")

    def acc(r):
        return "-" if r["accuracy"] is None else f"{r['accuracy'] * 100:.2f}"

    def gmacs(r):
        return "-" if r["gmacs"] is None else f"{r['gmacs']:.1f}" + peak_text(r, f" ({{}} of {r['peak_gmacs'] or 0:.0f})", ".1f")

    cols: list[tuple[str, Any]] = [("", lambda r: "★" if r["pareto"] else "")]
    if _multi_machine(report):
        cols.append(("machine", lambda r: r["machine"]))
    cols += [
        ("run", lambda r: r["run"]),
        ("variant", lambda r: r["variant"] or "-"),
        ("file", lambda r: artifact_file(report, r)),
        ("runtime", lambda r: r["runtime"]),
        ("device", lambda r: r["device"]),
        ("threads", lambda r: str(r["threads"]) if r["threads"] else "-"),
        ("batch", lambda r: str(r["batch"]) if r["batch"] else "-"),
        ("status", lambda r: r["status"]),
        ("test acc %", acc),
        (DELTA_HEADER, lambda r: delta_text(r) if r["accuracy"] is not None else "-"),
        *([("images acc %", lambda r: f"{r['images_accuracy'] * 100:.2f}" if r.get("images_accuracy") is not None else "-")]
          if any(r.get("images_accuracy") is not None for r in report["rows"]) else []),
        ("macro-F1", lambda r: f"{r['macro_f1']:.4f}" if r["macro_f1"] is not None else "-"),
        ("ECE", lambda r: f"{r['ece']:.4f}" if r.get("ece") is not None else "-"),
        ("p50 ms", lat("p50")),
        ("p90 ms", lat("p90")),
        ("p99 ms", lat("p99")),
        ("mean ± std ms", mean_std),
        (RATIO_HEADER, lambda r: f"{r['speedup_vs_pytorch']:.2f}×" if r.get("speedup_vs_pytorch") else "-"),
        ("img/s", lambda r: f"{r['throughput_ips']:.0f}" if r["throughput_ips"] else "-"),
        ("GMAC/s (% of peak)", gmacs),
        ("peak RSS MB (runtime)", lambda r: f"{r['peak_rss_mb']:.0f} ({r['runtime_rss_mb']:.0f})" if r["peak_rss_mb"] is not None else "-"),
        ("load s", lambda r: f"{r['load_s']:.3f}" if r["load_s"] is not None else "-"),
        ("size", lambda r: _size(r["size_bytes"])),
        ("params", lambda r: _count(r["params"])),
        ("MACs", lambda r: _count(r["macs"])),
    ]
    return cols


def peak_text(r: dict[str, Any], template: str = " ({})", fmt: str = ".0f") -> str:
    """The row's share of its ceiling for a GMAC/s cell, never above 100 %: a row beyond the ceiling (or one from an
    older report that printed more) says so in words instead of a percentage."""
    frac = r.get("peak_fraction")
    if frac is None:
        return ""
    if r.get("peak_note") or frac > 1.0:
        return template.format(r.get("peak_note") or ABOVE_PEAK)
    return template.format(f"{frac * 100:{fmt}} %")


def _peak_notes(report: dict[str, Any]) -> list[str]:
    """A note when some rows exceeded their ceiling: what the cell means and why it can happen."""
    above = [r for r in report["rows"] if r.get("peak_note") or (r.get("peak_fraction") or 0) > 1.0]
    if not above:
        return []
    names = sorted({f"{r['variant'] or r['runtime']} ({r['runtime']}, {r['threads']} thr, batch {r['batch']})" for r in above})
    return [f"{len(above)} row(s) ran above their ceiling and show '{ABOVE_PEAK}' instead of a percentage: {', '.join(names[:6])}"
            + (" ..." if len(names) > 6 else "") + ". GMAC/s counts the model's MACs (direct convolution); a runtime that does fewer real "
            "multiplies (Winograd or FFT convolution, fused or skipped layers) or uses more cores than its thread setting can exceed "
            "the measured GEMM peak. The fraction is capped at 1.0 in report.json (peak_note says why)."]


def _sections(report: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Measured rows per batch size (batch 1 = latency, larger = throughput), then the rest."""
    measured = [r for r in report["rows"] if r["status"] in (OK, MISMATCH)]
    sections = []
    for batch in sorted({r["batch"] for r in measured}):
        rows = [r for r in measured if r["batch"] == batch]
        what = "latency (accuracy vs latency; ★ = Pareto front)" if batch == 1 else f"throughput (latency columns are per call of {batch} images)"
        sections.append((f"Batch {batch}: {what}", rows))
    return sections


def _dataset_line(report: dict[str, Any]) -> str:
    parts = []
    for run in report["runs"]:
        ev = run["evaluated_on"]
        src = {"full": "full BloodMNIST", "folder": ev.get("describe", "image folder")}.get(ev["source"], "embedded SAMPLE (not the full dataset)")
        ref = run["reference"]
        where = f" on {run['machine']}" if _multi_machine(report) else ""
        parts.append(
            f"**{run['name']}** ({run['model']}, {run['input_size']} px){where}: {ev['split']} split, {ev['images']} images, {src}; "
            f"PyTorch fp32 CPU reference accuracy {ref['accuracy'] * 100:.2f} %, macro-F1 {ref['macro_f1']:.4f}"
            + (f", ECE {ref['ece']:.4f}" if ref.get("ece") is not None else "")
            + (f"; images acc %: {run['images']['files']} labelled files from {run['images']['source']}, framed as: "
               f"{run['images']['framing']}, each predicted by the row's own runtime" if run.get("images") else "")
        )
    return parts


def headline_lines(report: dict[str, Any]) -> list[str]:
    """One line per run: the interleaved A/B ratio of its fastest ok artifact vs PyTorch eager fp32, or why there is none."""
    lines = []
    for run in report["runs"]:
        h = run.get("interleaved")
        where = f" on {run['machine']}" if _multi_machine(report) else ""
        if not h:
            continue
        if h["status"] != OK:
            lines.append(f"{run['name']}{where}: no interleaved headline ({h['status']}: {h['reason']})")
            continue
        lo, hi = h["ratio_range"]
        lines.append(
            f"**{run['name']}{where}: {h['variant']} ({h['runtime']}) is {h['ratio']:.2f}× as fast as PyTorch eager fp32** at batch 1, "
            f"{h['threads']} thread(s), CPU: median of {h['rounds']} per-round ratios (range {lo:.2f}–{hi:.2f}×), {h['calls_per_round']} "
            f"timed calls per runtime per round after {h['warmup_calls']} warm-up calls, both runtimes alternated in one process; "
            f"p50 {_fmt_ms(h['p50_ms']['artifact'])} vs {_fmt_ms(h['p50_ms']['baseline'])} ms"
            + (f" (the rows' non-interleaved ratio: {h['non_interleaved_ratio']:.2f}×)" if h.get("non_interleaved_ratio") else "")
        )
    return lines


def load_lines(report: dict[str, Any]) -> list[str]:
    """One line per run: how many cores other processes used while it was measured, the load average and the CPU clock."""
    lines = []
    for run in report["runs"]:
        ld = run.get("load")
        if not ld:
            continue
        where = f" on {run['machine']}" if _multi_machine(report) else ""
        cores = (f"other processes used {ld['foreign_cores_median']:.2f} cores (median of {ld['measurements']} measurements), "
                 f"at most {ld['foreign_cores_max']:.2f}") if ld["foreign_cores_median"] is not None else "other processes' CPU use: unknown (no /proc/stat)"
        avg = ld.get("loadavg_1m_range")
        clock = ld["cpu_mhz_range"]
        lines.append(
            f"{run['name']}{where}: {cores}; {ld['disturbed']} above {DISTURBED_CORES:g} cores (disturbed), {ld.get('remeasured', 0)} measured again"
            + (f"; 1-minute load average {avg[0]:.2f}–{avg[1]:.2f}" if avg else "")
            + (f"; CPU clock {clock[0]:.0f}–{clock[1]:.0f} MHz ({ld['cpu_mhz_source']})" if clock else f"; CPU clock {ld['cpu_mhz_source']}")
        )
    return lines


def _machine_lines(m: dict[str, Any]) -> list[str]:
    cpu = m["cpu"]
    gpus = ", ".join(f"{g['name']} ({g['backend']})" for g in m["gpu"]) or "none"
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items())
    settings = m["bench"]["settings"]
    env = ", ".join(f"{k}={v}" for k, v in m["threads"]["env"].items()) or "none set"
    clock = f"{cpu['clock_mhz']:.0f} MHz ({cpu['clock_source']})" if cpu.get("clock_mhz") else "unknown"
    return [
        f"CPU: {cpu['model']} ({cpu['arch']}), {cpu['logical_cores']} logical / {cpu.get('physical_cores')} physical cores, "
        f"{m['threads']['cores_available']} available to the bench; clock {clock}",
        f"ISA: {', '.join(cpu['isa']) or 'unknown'}",
        f"GPU: {gpus}; OS: {m['os']}",
        f"Libraries: {libs}",
        *_peak_lines(m),
        f"Threads benchmarked: {', '.join(map(str, settings['threads']))} (runtime thread pools pinned per row; thread env of the bench: {env}); "
        f"batches: {', '.join(map(str, settings['batches']))}; devices: {', '.join(settings['devices'])}",
    ]


def _peak_lines(m: dict[str, Any]) -> list[str]:
    """The measured ceiling per thread count and precision (GMAC/s, per core, kernel) when the bench measured one."""
    peak = m.get("peak")
    if not peak:
        return []
    parts = []
    for threads, precs in peak["threads"].items():
        figures = [f"{p} {v['gmacs']:.0f} ({v['gmacs'] / int(threads):.0f}/core, {v['kernel']})" for p, v in precs.items() if v.get("gmacs")]
        parts.append(f"{threads} thread(s): " + "; ".join(figures or ["no kernel ran"]))
    return [f"Measured peak GMAC/s ({peak['method']}): " + " | ".join(parts)]


def _method_lines(report: dict[str, Any]) -> list[str]:
    timing = report["machines"][0]["bench"]["settings"]["timing"]
    return [
        "Each row runs in its own process (`python -m edgeblood.bench.worker`): load, predict, time; peak RSS is that process's "
        "high-water mark, '(runtime)' is the part above python + numpy + the test images.",
        f"Latency: the runtime's own inference call on a batch prepared beforehand; {timing['warmup_s']} s warm-up, then blocks of "
        f"~{timing['block_s']} s until the medians of {timing['window']} consecutive blocks agree within {timing['spread_target'] * 100:.0f} % "
        f"(budget {timing['max_s']} s; '~' marks rows that did not get there). img/s = batch / p50.",
        "Accuracy and macro-F1: the full test split predicted by that runtime (once per artifact/runtime/device, at the largest batch "
        "and thread count); every row is also checked against the PyTorch fp32 reference (top-1 agreement, max |Δp|).",
        "GMAC/s = MACs per image x batch / p50; '% of' = the share of the row's ceiling (its precision, its thread count), never "
        "above 100 %. The ceiling is measured at bench start: the best of a few short blocks of a compute-bound 1024³ GEMM per "
        "precision and thread count through the runtimes' libraries (torch.mm fp32/bf16 via oneDNN/MKL; int8: torch._int_mm and "
        "ONNX Runtime's MLAS MatMulInteger u8s8, which reaches AMX where the CPU has it), or the theoretical figure if that is larger: "
        "MAC/cycle/core (fp32 AVX-512 2 FMA x 16 lanes, AVX2 2 x 8, halved on cores that split 512-bit ops; int8 VNNI 4x fp32; "
        "bf16 AVX512_BF16 2x fp32; AMX int8 1024 / bf16 512) x threads x the clock (the reported one, or the one the fp32 kernel "
        "implies when higher: a VM's reported clock is not its boost clock). Each row's peak_basis names both figures.",
        "Headline: after the rows, the fastest ok batch-1 CPU artifact and PyTorch eager fp32 are loaded in ONE process with the same "
        "thread count (the smallest PyTorch was measured at) and alternated round by round on one test image: each round warms a "
        "runtime up, times a fixed number of calls and keeps their median; the ratio is the median of the per-round ratios. The "
        f"'{RATIO_HEADER}' column divides two rows measured at different times in different processes.",
        "ECE: 15-bin expected calibration error of each artifact's own probabilities on the full test split (edgeblood.evaluation).",
        f"{DELTA_HEADER}: the artifact's test accuracy minus PyTorch fp32's on the same images, with the 95 % interval of that "
        f"difference: {PAIRED} (Newcombe 1998, Stat Med 17:2635) on the per-image 2x2 table of who got each image right "
        "(report.json: paired_vs_reference, accuracy_vs_fp32). ≈: the interval contains 0, the two are statistically "
        "indistinguishable and are not ranked against each other (the Pareto front and the recommendation treat them as equal); "
        "↓/↑: lower/higher beyond the noise.",
        "Machine load: around every row, the machine's busy CPU time (/proc/stat) minus the bench's own (parent + that row's worker) "
        f"gives the cores other processes used; a row above {DISTURBED_CORES:g} cores is measured again after the others and the quieter "
        "measurement kept (report.json: load.foreign_cores, loadavg_1m, remeasured); the CPU clock is read every 0.2 s while a row "
        "runs (cpufreq scaling_cur_freq, else /proc/cpuinfo's cpu MHz, which in a VM is often the host's nominal clock).",
        *_kernel_lines(report),
        "Compare ratios within one report; absolute times from different runs or machines are not comparable.",
    ]


def _kernel_lines(report: dict[str, Any]) -> list[str]:
    """Which kernels (and so which instruction set) each runtime used, where the runtime says so."""
    seen: dict[tuple[str, str], dict[str, int]] = {}
    for r in report["rows"]:
        if r.get("kernels"):
            seen.setdefault((r["runtime"], r["variant"] or r["precision"]), r["kernels"])
    lines = [f"Kernels of {variant} ({rt} execution graph): " + ", ".join(f"{k} x{n}" for k, n in kernels.items())
             for (rt, variant), kernels in sorted(seen.items())]
    silent = sorted({r["runtime"] for r in report["rows"] if r["status"] == OK} - {rt for rt, _ in seen})
    if silent:
        lines.append(f"Kernels of {', '.join(silent)}: not reported by the runtime (XNNPACK, ONNX Runtime's MLAS and PyTorch's oneDNN "
                     "pick their ISA at run time without telling the Python API); the machine section lists what the CPU offers.")
    return lines


# ------------------------------------------------------------------------------------------ markdown
def markdown_report(report: dict[str, Any]) -> str:
    runs = ", ".join(sorted({r["name"] for r in report["runs"]}))
    lines = [f"# edgeblood bench: {runs}", "", f"Written {report['created']} by edgeblood {report['edgeblood_version']}"
             + (f" (git {report['git_commit']})" if report.get("git_commit") else "") + ".", ""]
    lines += [f"- {p}" for p in _dataset_line(report)] + [""]
    if recommendation_lines(report):
        lines += [f"## {SHIP_TITLE}", ""] + [f"- {x}" for x in recommendation_lines(report)] + [""]
    if headline_lines(report):
        lines += ["## Headline: interleaved A/B latency, batch 1", ""] + [f"- {x}" for x in headline_lines(report)] + [""]
    cols = _columns(report)
    for title, rows in _sections(report):
        lines += [f"## {title}", "", _md_row([h for h, _ in cols]), _md_row(["---"] * len(cols))]
        lines += [_md_row([f(r) for _, f in cols]) for r in rows]
        lines.append("")
    for title, rows in unmeasured_sections(report):
        lines += [f"## {title}", "", _md_row(["machine", "run", "variant", "runtime", "device", "threads", "batch", "status", "reason"]),
                  _md_row(["---"] * 9)]
        lines += [_md_row([r["machine"], r["run"], r["variant"] or "-", r["runtime"], r["device"], str(r["threads"] or "-"),
                           str(r["batch"] or "-"), r["status"], r["reason"] or ""]) for r in rows]
        lines.append("")
    for m in report["machines"]:
        lines += [f"## Machine: {m['label']}", ""] + [f"- {x}" for x in _machine_lines(m)] + [""]
    if load_lines(report):
        lines += ["## Machine load while measuring", ""] + [f"- {x}" for x in load_lines(report)] + [""]
    lines += ["## How it was measured", ""] + [f"- {x}" for x in _method_lines(report)] + [""]
    notes = report["notes"] + _peak_notes(report)
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def unmeasured_sections(report: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(title, rows) for rows that failed or mismatched, then rows not measured here (skipped: runtime not installed,
    device absent, no artifact of that runtime): a skipped row is not a failure and is not listed as one."""
    failed = [r for r in report["rows"] if r["status"] in (FAILED, MISMATCH)]
    skipped = [r for r in report["rows"] if r["status"] == SKIPPED]
    return [(title, rows) for title, rows in ((FAILED_TITLE, failed), (SKIPPED_TITLE, skipped)) if rows]


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


# ---------------------------------------------------------------------------------------------- rich
def rich_tables(report: dict[str, Any]) -> list[Any]:
    """Compact console tables (one per batch size, then the rows that are not ok).

    Columns that hold one value for every row (run, device, threads, machine) move into the title so
    the table fits a terminal; the saved Markdown/HTML keep every column.
    """
    from rich import box
    from rich.table import Table

    out: list[Any] = []
    rows_all = report["rows"]
    for title, rows in _sections(report):
        const = {k: {r[k] for r in rows} for k in ("machine", "run", "device", "threads")}
        fixed = [f"{k} {next(iter(v)) if v != {None} else '-'}" for k, v in const.items() if len(v) == 1]
        spec: list[tuple[str, Any]] = [("", lambda r: "★" if r["pareto"] else "")]
        spec += [(k if k != "threads" else "thr", (lambda k: lambda r: str(r[k] if r[k] is not None else "-"))(k))
                 for k, v in const.items() if len(v) > 1]
        spec.append(("variant", lambda r: r["variant"] or "-"))
        runtimes_per_target: dict[Any, set] = {}
        for r in rows:
            runtimes_per_target.setdefault(r["target"], set()).add(r["runtime"])
        if any(len(v) > 1 for v in runtimes_per_target.values()):  # else the variant's target names the runtime
            spec.append(("runtime", lambda r: r["runtime"]))
        spec += [
            ("status", lambda r: "MISMATCH" if r["status"] == MISMATCH else r["status"]),
            ("acc %", lambda r: f"{r['accuracy'] * 100:.2f}" if r["accuracy"] is not None else "-"),
            *([("images %", lambda r: f"{r['images_accuracy'] * 100:.2f}" if r.get("images_accuracy") is not None else "-")]
              if any(r.get("images_accuracy") is not None for r in rows_all) else []),
            ("Δ pt", lambda r: delta_text(r, interval=False) if r["accuracy"] is not None else "-"),
            ("ECE", lambda r: f"{r['ece']:.3f}" if r.get("ece") is not None else "-"),
            ("p50 ms", lambda r: _fmt_ms(r["latency_ms"]["p50"]) + ("" if r["latency_ms"]["converged"] else "~") if r["latency_ms"] else "-"),
            ("× torch*", lambda r: f"{r['speedup_vs_pytorch']:.2f}" if r.get("speedup_vs_pytorch") else "-"),
            ("img/s", lambda r: f"{r['throughput_ips']:.0f}" if r["throughput_ips"] else "-"),
            ("GMAC/s (peak)", lambda r: "-" if r["gmacs"] is None else f"{r['gmacs']:.1f}" + peak_text(r, " ({})")),
            ("RSS MB", lambda r: f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] is not None else "-"),
            ("size MB", lambda r: f"{r['size_bytes'] / 1e6:.2f}" if r["size_bytes"] else "-"),
        ]
        table = Table(title=f"{title}\ntest split; {', '.join(fixed)}", title_justify="left", header_style="bold",
                      box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, caption_justify="left",
                      caption="Δ pt vs PyTorch fp32: ≈ within the noise (its 95 % interval contains 0), ↓/↑ beyond it\n"
                              "* not interleaved: two rows measured one after the other (the headline below is interleaved)")
        for header, _ in spec:
            table.add_column(header, justify="left" if header in ("variant", "runtime", "status", "machine", "run", "device") else "right",
                             no_wrap=True, min_width=len(header) or 1)
        for r in rows:
            style = "bold green" if r["pareto"] else ("yellow" if r["status"] == MISMATCH else None)
            table.add_row(*[f(r) for _, f in spec], style=style)
        out.append(table)
    for title, rows in unmeasured_sections(report):
        table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
        for h in ("run", "variant", "runtime", "device", "thr", "batch", "status"):
            table.add_column(h, no_wrap=True)
        table.add_column("reason", overflow="fold", ratio=1)
        for r in rows:
            table.add_row(r["run"], r["variant"] or "-", r["runtime"], r["device"], str(r["threads"] or "-"), str(r["batch"] or "-"),
                          r["status"], r["reason"] or "", style={FAILED: "red", SKIPPED: "dim", MISMATCH: "yellow"}[r["status"]])
        out.append(table)
    return out
