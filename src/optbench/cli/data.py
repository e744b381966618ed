"""``optbench data list|fetch|info``: the datasets, their cache and their checksums."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console

from optbench.cli.common import handle_errors


def data_list() -> None:
    """List the datasets, their sizes, whether they need a download and whether they are cached."""
    from rich.table import Table

    from optbench.data import cache_dir, is_cached, list_datasets

    table = Table(title=f"datasets (cache: {cache_dir()})")
    for column in ("name", "train", "test", "shape", "classes", "download", "cached", "description"):
        table.add_column(column)
    for info in list_datasets():
        table.add_row(info.name, f"{info.n_train:,}", f"{info.n_test:,}", "x".join(map(str, info.shape)) or "token",
                      str(info.classes), "yes" if info.needs_download else "no",
                      "yes" if is_cached(info.name) else "no", info.description)
    Console().print(table)


def data_fetch(name: Annotated[str, typer.Argument(help="Dataset name (see `optbench data list`).")]) -> None:
    """Download a dataset into the cache and verify its checksums."""
    from optbench.data import datasets, fetch

    datasets.canonical(name)
    console = Console(stderr=True)
    path = fetch(name, log=lambda message: console.print(message))
    typer.echo(str(path))


def data_info(name: Annotated[str, typer.Argument(help="Dataset name (see `optbench data list`).")]) -> None:
    """Describe a dataset: sizes, shape, classes (per-class counts when cached), checksum status of
    the cached files (verified / missing / corrupt; reads them, never downloads), where they are, sources."""
    from optbench.data import describe

    report = describe(name)
    unit = "tokens" if report.kind == "text" else "examples"
    lines = [f"name:        {report.name} ({report.kind})", f"description: {report.description}",
             "sizes:       " + ", ".join(f"{split} {count:,}" for split, count in report.sizes.items()) + f" {unit}",
             "example:     " + ("one token id" if report.kind == "text" else f"shape {report.shape}")]
    if report.kind == "text":
        lines.append(f"vocabulary:  {report.classes:,} tokens")
    else:
        lines.append(f"classes:     {report.classes}")
        for split, counts in (report.class_counts or {}).items():
            lines.append(f"  {split + ':':<6} " + " ".join(f"{i}:{c}" for i, c in enumerate(counts)))
        if report.class_counts is None:
            lines.append(f"  (per-class counts once the data is cached: `optbench data fetch {report.name}`)")
    lines += [f"checksums:   {report.status}", f"directory:   {report.directory}"]
    lines += [f"  {f.path.name}  {'-' if f.size is None else f'{f.size:,} bytes'}  {f.status}" for f in report.files]
    lines += ["sources:"] + [f"  {i}. {source}" for i, source in enumerate(report.sources, 1)]
    for line in lines:
        typer.echo(line)


def register(app: typer.Typer, errors: Callable = handle_errors) -> None:
    """Add the ``data`` group (``list``, ``fetch``, ``info``) to ``app``."""
    data_app = typer.Typer(help="Datasets: list them, fetch them into the cache, describe one.", no_args_is_help=True)
    data_app.command("list")(errors(data_list))
    data_app.command("fetch")(errors(data_fetch))
    data_app.command("info")(errors(data_info))
    app.add_typer(data_app, name="data")


__all__ = ["data_fetch", "data_info", "data_list", "register"]
