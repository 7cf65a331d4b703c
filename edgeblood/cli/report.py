"""`edgeblood report merge`: bench reports from several machines in one table with a machine column."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeblood.cli.app import EdgebloodTyper, FlagHelpGroup, app, console

report_app = EdgebloodTyper(help="Work with bench reports (report.json written by `edgeblood bench`).", no_args_is_help=True, cls=FlagHelpGroup)
app.add_typer(report_app, name="report")


@report_app.command("merge")
def merge(
    reports: list[Path] = typer.Argument(..., help="report.json files (or the folders holding them) from `edgeblood bench` on each machine."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the merged report.md, report.json and report.html."),
) -> None:
    """Merge bench reports from several machines (laptop, CUDA box, Mac) into one report.

    Rows keep the machine they were measured on (the `--label` given to `edgeblood bench`, else
    the hostname); the Pareto front is marked per machine. Reports must share the schema version.

        edgeblood report merge laptop.json cuda-box.json --out reports/fleet
    """
    from edgeblood.bench.report import check_writable, merge_reports, rich_tables, write_report

    merged = merge_reports(reports)
    check_writable(out)
    paths = write_report(merged, out)
    for table in rich_tables(merged):
        console.print(table)
    machines = ", ".join(m["label"] for m in merged["machines"])
    console.print(f"merged {len(reports)} reports ({machines}; {len(merged['rows'])} rows)", highlight=False)
    console.print(f"report: {paths['md']}  {paths['json']}  {paths['html']}", highlight=False, soft_wrap=True)
