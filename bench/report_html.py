"""The bench report as one self-contained HTML page that fits a laptop screen (1366 px wide, checked in headless
Chromium): charts as inline SVG, no external URL, so it opens offline and can be mailed as one file.

The measured rows are split in two narrow tables instead of one 26-column one (cut off at 1400 px): accuracy
once per artifact, runtime and device (it is measured once, on the full split) with the file to ship and the
95 % interval of its difference to fp32; then speed and memory per thread count and batch. Long paths wrap.
"""

from __future__ import annotations

import html
import io
import re
from typing import Any

from edgeblood.bench.recommend import recommendation_lines
from edgeblood.bench.report import (
    DELTA_HEADER,
    RATIO_HEADER,
    SHIP_TITLE,
    _columns,
    _dataset_line,
    _machine_lines,
    _method_lines,
    _multi_machine,
    _peak_notes,
    _sections,
    headline_lines,
    load_lines,
    unmeasured_sections,
)
from edgeblood.bench.results import pareto_front, ranked_accuracy
from edgeblood.parity import FAILED, MISMATCH, OK, SKIPPED

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1rem 1.25rem;color:#222;max-width:1320px}
table{border-collapse:collapse;font-size:.78rem;margin:.5rem 0 1.5rem;max-width:100%}
th,td{border:1px solid #ccc;padding:.2rem .4rem;text-align:right;white-space:nowrap}
th{background:#f2f2f2;white-space:normal;vertical-align:bottom} td.l{text-align:left}
td.wrap{white-space:normal;overflow-wrap:anywhere;text-align:left;min-width:10ch;max-width:34ch}
tr.pareto td{background:#e8f6e8;font-weight:600} tr.mismatch td{background:#fff4d6} tr.failed td{background:#fde2e2}
tr.skipped td{color:#777} .scroll{max-width:100%;overflow-x:auto}
.fig{display:inline-block;margin:0 1rem 1rem 0;vertical-align:top;max-width:100%} .fig svg{max-width:100%;height:auto}
code{background:#f4f4f4;padding:0 .2rem;overflow-wrap:anywhere} li{margin:.2rem 0}
"""
#: The columns of the accuracy table (one row per artifact, runtime and device) and of the speed tables (per threads x batch).
ACCURACY_COLUMNS = ("machine", "run", "variant", "file", "runtime", "device", "status", "test acc %", DELTA_HEADER, "images acc %",
                    "macro-F1", "ECE", "size", "params", "MACs")
SPEED_COLUMNS = ("", "machine", "run", "variant", "runtime", "device", "threads", "status", "p50 ms", "p90 ms", "p99 ms", "mean ± std ms",
                 RATIO_HEADER, "img/s", "GMAC/s (% of peak)", "peak RSS MB (runtime)", "load s")
LEFT = ("run", "variant", "runtime", "device", "status", "machine")
WRAP = ("file", "reason", DELTA_HEADER)


def html_report(report: dict[str, Any]) -> str:
    """A single HTML file: what to ship, the headline, charts, accuracy and speed tables, machine and method sections."""
    runs = ", ".join(sorted({r["name"] for r in report["runs"]}))
    esc = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
             f"<title>edgeblood bench: {esc(runs)}</title><style>{_CSS}</style></head><body>", f"<h1>edgeblood bench: {esc(runs)}</h1>",
             f"<p>Written {esc(report['created'])} by edgeblood {esc(report['edgeblood_version'])}.</p>", _list(_dataset_line(report))]
    if recommendation_lines(report):
        parts += [f"<h2>{esc(SHIP_TITLE)}</h2>", _list(recommendation_lines(report))]
    if headline_lines(report):
        parts += ["<h2>Headline: interleaved A/B latency, batch 1</h2>", _list(headline_lines(report))]
    parts.append("<h2>Figures</h2>")
    for title, svg in charts(report):
        parts.append(f"<div class='fig'><figure>{svg}<figcaption>{esc(title)}</figcaption></figure></div>")
    measured = [r for _, rows in _sections(report) for r in rows]
    if measured:
        parts += ["<h2>Accuracy — test split, one row per artifact, runtime and device</h2>",
                  _table(report, ACCURACY_COLUMNS, _one_per_artifact(measured))]
    for title, rows in _sections(report):
        parts += [f"<h2>{esc(title)} — speed and memory</h2>", _table(report, SPEED_COLUMNS, rows)]
    for title, rows in unmeasured_sections(report):
        parts.append(f"<h2>{esc(title)}</h2><div class='scroll'><table><tr>" + "".join(
            f"<th>{h}</th>" for h in ("machine", "run", "variant", "runtime", "device", "threads", "batch", "status", "reason")) + "</tr>")
        for r in rows:
            cls = {MISMATCH: "mismatch", FAILED: "failed", SKIPPED: "skipped"}[r["status"]]
            cells = [r["machine"], r["run"], r["variant"] or "-", r["runtime"], r["device"], r["threads"] or "-", r["batch"] or "-", r["status"]]
            parts.append(f"<tr class='{cls}'>" + "".join(f"<td class='l'>{esc(str(c))}</td>" for c in cells)
                         + f"<td class='wrap'>{esc(r['reason'] or '')}</td></tr>")
        parts.append("</table></div>")
    for m in report["machines"]:
        parts += [f"<h2>Machine: {esc(m['label'])}</h2>", _list(_machine_lines(m), markdown=False)]
    if load_lines(report):
        parts += ["<h2>Machine load while measuring</h2>", _list(load_lines(report), markdown=False)]
    parts += ["<h2>How it was measured</h2>", _list(_method_lines(report))]
    notes = report["notes"] + _peak_notes(report)
    if notes:
        parts += ["<h2>Notes</h2>", _list(notes, markdown=False)]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _table(report: dict[str, Any], wanted: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    """One table of the measured rows with the ``wanted`` columns (machine and run only where they vary)."""
    esc = html.escape
    vary = {k: len({r[k] for r in report["rows"]}) > 1 for k in ("machine", "run")}
    cols = [(h, f) for h, f in _columns(report) if h in wanted and vary.get(h, True) and (h != "machine" or _multi_machine(report))]
    out = ["<div class='scroll'><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h, _ in cols) + "</tr>"]
    for r in rows:
        cls = "pareto" if r["pareto"] and "" in wanted else ("mismatch" if r["status"] == MISMATCH else "")
        cells = "".join(f"<td class='{'wrap' if h in WRAP else 'l' if h in LEFT else ''}'>{esc(f(r))}</td>" for h, f in cols)
        title_attr = f" title='{esc(r['reason'])}'" if r["reason"] else ""
        out.append(f"<tr class='{cls}'{title_attr}>{cells}</tr>")
    return "\n".join(out + ["</table></div>"])


def _one_per_artifact(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The row that measured each (machine, run, artifact, runtime, device) group's accuracy (the others inherit it)."""
    picked: dict[tuple, dict] = {}
    for r in rows:
        key = (r["machine"], r["run"], r["artifact"], r["runtime"], r["device"])
        at = r.get("accuracy_measured_at") or {}
        if key not in picked or (at.get("threads"), at.get("batch")) == (r["threads"], r["batch"]):
            picked[key] = r
    return sorted(picked.values(), key=lambda r: (r["machine"], r["run"], -(r["accuracy"] or 0), r["size_bytes"] or 0))


def _list(items: list[str], *, markdown: bool = True) -> str:
    return "<ul>" + "".join(f"<li>{_md_inline(x) if markdown else html.escape(x)}</li>" for x in items) + "</ul>"


def _md_inline(text: str) -> str:
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def charts(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(caption, inline SVG): accuracy vs batch-1 latency per machine and thread count, then file sizes."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    out: list[tuple[str, str]] = []
    ok_rows = [r for r in report["rows"] if r["status"] in (OK, MISMATCH) and r["batch"] == 1 and r["accuracy"] is not None and r["latency_ms"]]
    markers = {"fp32": "o", "fp16": "s", "int8": "^"}
    for machine in [m["label"] for m in report["machines"]]:
        for threads in sorted({r["threads"] or 0 for r in ok_rows if r["machine"] == machine}):
            rows = [r for r in ok_rows if r["machine"] == machine and (r["threads"] or 0) == threads]
            if not rows:
                continue
            runtimes = sorted({r["runtime"] for r in rows})
            devices = sorted({r["device"] for r in rows})
            fig, ax = plt.subplots(figsize=(7.2, 4.6))
            cmap = plt.get_cmap("tab10")
            multi_run = len({x["run"] for x in rows}) > 1
            # alternate label offsets along the latency axis so neighbouring labels do not overprint
            offsets = {id(r): (4, 4 if k % 2 == 0 else -10) for k, r in enumerate(sorted(rows, key=lambda r: r["latency_ms"]["p50"]))}
            for i, rt in enumerate(runtimes):
                for r in (r for r in rows if r["runtime"] == rt):
                    m = markers.get(str(r["precision"]).lower().split("-")[0], "D")
                    face = cmap(i) if r["status"] == OK else "none"
                    ax.scatter(r["latency_ms"]["p50"], r["accuracy"] * 100, marker=m, s=60, color=cmap(i), facecolors=face, zorder=3)
                    ax.annotate(f"{r['run']}: {r['variant']}" if multi_run else r["variant"], (r["latency_ms"]["p50"], r["accuracy"] * 100),
                                fontsize=7, xytext=offsets[id(r)], textcoords="offset points")
                ax.scatter([], [], color=cmap(i), label=rt)
            ok = [r for r in rows if r["status"] == OK]
            flags = pareto_front([(r["latency_ms"]["p50"], ranked_accuracy(r)) for r in ok])  # ties within the noise, as in the tables
            front = sorted((r for r, f in zip(ok, flags) if f), key=lambda r: r["latency_ms"]["p50"])
            if front:
                xs, ys = [r["latency_ms"]["p50"] for r in front], [r["accuracy"] * 100 for r in front]
                ax.step(xs, ys, where="post", color="green", lw=1.5, alpha=.7, zorder=2, label="Pareto front (this figure)")
                ax.scatter(xs, ys, s=180, facecolors="none", edgecolors="green", lw=1.5, zorder=4)
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(ticker.FormatStrFormatter("%g"))
            ax.tick_params(axis="x", which="minor", labelsize=7)
            ax.set_xlabel("p50 latency per image, batch 1 (ms, log scale)")
            ax.set_ylabel("test-split accuracy (%)")
            ax.grid(alpha=.3, which="both")
            ax.legend(fontsize=8, loc="lower right")
            title = (f"Accuracy vs latency — test split, batch 1, {threads or '-'} thread(s), device {', '.join(devices)}, "
                     f"runtimes {', '.join(runtimes)}, machine {machine}")
            ax.set_title(_wrap(title), fontsize=9)
            out.append((title + ". Filled: ok; hollow: mismatch. Marker: ○ fp32, □ fp16, △ int8, ◇ other.", _svg(fig)))
            plt.close(fig)
    sizes: dict[tuple[str, str], int] = {}
    for r in report["rows"]:
        if r["size_bytes"] and r["variant"]:
            sizes[(r["run"], r["variant"])] = r["size_bytes"]
    if sizes:
        items = sorted(sizes.items(), key=lambda kv: kv[1])
        fig, ax = plt.subplots(figsize=(7.2, 0.35 * len(items) + 1.2))
        multi = len({k[0] for k in sizes}) > 1
        labels = [f"{run}: {variant}" if multi else variant for (run, variant), _ in items]
        ax.barh(labels, [v / 1e6 for _, v in items], color="#4c72b0")
        for y, (_, v) in enumerate(items):
            ax.text(v / 1e6, y, f" {v / 1e6:.2f}", va="center", fontsize=7)
        ax.set_xlabel("file size (MB; OpenVINO = .xml + .bin, Core ML = package folder)")
        title = "Artifact file sizes (all runtimes and devices; size does not depend on threads or batch)"
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
        fig.tight_layout()
        out.append((title, _svg(fig)))
        plt.close(fig)
    return out


def _wrap(text: str, width: int = 95) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _svg(fig) -> str:
    """An SVG string fit for inlining in HTML: no XML prolog, DOCTYPE, metadata or namespace URLs."""
    buf = io.StringIO()
    with __import__("matplotlib").rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    return re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg)
