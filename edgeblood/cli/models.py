"""`edgeblood models`: the registry with params and MACs."""

from __future__ import annotations

import json

import typer

from edgeblood.cli.app import app, console


def _human(n: int | None) -> str:
    """3 significant digits with a K/M/G suffix: 422344 -> '422K', 7342684 -> '7.34M'."""
    if n is None:
        return "n/a"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            v = n / div
            return f"{v:.3g}{unit}" if v < 1000 else f"{v:.0f}{unit}"
    return str(n)


def _parse_sizes(text: str) -> list[int]:
    from edgeblood.errors import EdgebloodError

    try:
        sizes = [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise EdgebloodError(f"--sizes must be comma-separated pixel sizes such as 28,64,128 (got '{text}')") from None
    if not sizes or any(s < 8 or s > 1024 for s in sizes):
        raise EdgebloodError(f"--sizes must list input sizes between 8 and 1024 px, e.g. 28,64,128 (got '{text}')")
    return sizes


@app.command()
def models(
    sizes: str = typer.Option("28,64", "--sizes", help="Input sizes (px) to count params and MACs at, comma-separated, e.g. 28,64,128."),
    family: str = typer.Option(None, "--family", help="Only models of this family (e.g. resnet, vgg, edge-cnn)."),
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON (machine-readable) instead of a rich table."),
) -> None:
    """List the model zoo: family, parameters and MACs (multiply-accumulates per image) at each input
    size, the published figures and the study each reference model reproduces.

    Pretrained models shipped with the package are named in the "pretrained" column (test accuracy on
    BloodMNIST); use the name wherever a run directory goes: `edgeblood predict se-cnn-28 captures/`.

    Create any of them with `edgeblood train --model NAME` or, in Python, `edgeblood.models.create(NAME, in_size=...)`.
    """
    from edgeblood.errors import EdgebloodError
    from edgeblood.models import list_models
    from edgeblood.models.summary import zoo_table

    size_list = _parse_sizes(sizes)
    names = list_models()
    if family:
        from edgeblood.models import get_entry

        names = [n for n in names if get_entry(n).family == family]
        if not names:
            families = sorted({get_entry(n).family for n in list_models()})
            raise EdgebloodError(f"no model of family '{family}'; families: {', '.join(families)}")

    from edgeblood.pretrained import index

    shipped = index()
    if as_json:
        rows = zoo_table(names, size_list)
        for row in rows:
            row["pretrained"] = [{k: e[k] for k in ("name", "size", "test_accuracy", "val_captures_accuracy")}
                                 for e in shipped.values() if e["model"] == row["name"]]
        typer.echo(json.dumps(rows, indent=2))
        return

    from rich.progress import Progress
    from rich.table import Table

    with Progress(transient=True, console=console) as progress:
        task = progress.add_task("counting params and MACs", total=len(names))
        rows = zoo_table(names, size_list, on_model=lambda _: progress.advance(task))

    table = Table(
        title="edgeblood model zoo",
        caption="params and MACs (conv + linear multiply-accumulates) of one RGB image at each input size, "
        "counted on the built model; published = the study's figure",
    )
    table.add_column("model", style="bold cyan", no_wrap=True)
    table.add_column("family", no_wrap=True)
    for s in size_list:
        table.add_column(f"params\n@{s}px", justify="right", no_wrap=True)
        table.add_column(f"MACs\n@{s}px", justify="right", no_wrap=True)
    table.add_column("pretrained", no_wrap=True)
    table.add_column("published", no_wrap=True)
    table.add_column("study", overflow="fold")
    for row in rows:
        cells = [row["name"], row["family"]]
        for s in size_list:
            stats = row["sizes"][str(s)]
            cells += [_human(stats and stats["params"]), _human(stats and stats["macs"])]
        cells.append("\n".join(f"{e['name']} ({e['test_accuracy']:.2%})" for e in shipped.values() if e["model"] == row["name"]) or "-")
        pub = row["published"]
        bits = []
        if "params" in pub:
            bits.append(_human(pub["params"]))
        if "accuracy" in pub:
            bits.append(f"{pub['accuracy']}%")
        if "in_size" in pub:
            bits.append(f"@{pub['in_size']}px")
        cells += [" ".join(bits) or "-", row["reference"].split(":")[0] or "-"]
        table.add_row(*cells)
    if console.is_terminal:
        console.print(table)
    else:  # piped or redirected: rich would squeeze the table into 80 columns
        from rich.console import Console

        Console(width=max(console.width, 150), file=console.file, no_color=console.no_color).print(table)
