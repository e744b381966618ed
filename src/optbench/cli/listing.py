"""``optbench list KIND``: the catalogues, one line each (techniques: a line and an indented one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from optbench.cli.common import handle_errors
from optbench.core.errors import ConfigError

#: What ``optbench list`` lists; ``regularizers`` is another name of ``techniques`` (the same table).
KINDS = ("optimizers", "schedules", "techniques", "regularizers", "tasks", "datasets", "protocols", "samplers",
         "pruners")



def _task_description(name: str) -> str:
    """A task's description; for a task on the user's data (a required ``root``), its factory's summary."""
    from optbench.core.errors import ConfigError
    from optbench.tasks import get_task, tasks

    try:
        return get_task(name).description
    except ConfigError:
        doc = (tasks.get(name).__doc__ or "").strip().splitlines()
        return f"{doc[0] if doc else name} (give root=...)"

def _with_contracts(spec: object) -> str:
    """An optimizer's family followed by its contracts (``preset · partition hidden_matrices``)."""
    caps = spec.capabilities()  # type: ignore[attr-defined]
    words = [spec.family]  # type: ignore[attr-defined]
    words += [f"partition {caps.partition}"] if caps.partition else []
    words += ["train/eval modes"] if caps.train_eval_modes else []
    words += ["lr-free"] if caps.learning_rate_free else []
    words += ["closure"] if caps.needs_closure else []
    words += ["create_graph"] if caps.create_graph else []
    return " · ".join(words)


def _catalogue_rows(kind: str) -> list[tuple[str, str, str]]:
    """(name, family, source or description) rows of a catalogue, sorted by name."""
    if kind == "optimizers":
        from optbench.optim import optimizers

        specs = [optimizers.get(n) for n in optimizers.names()]
        return [(s.name, _with_contracts(s), s.source.splitlines()[0] if s.source else "") for s in specs]
    if kind == "schedules":
        from optbench.schedules import schedules

        return [(n, "schedule", schedules.get(n).source) for n in schedules.names()]
    if kind == "tasks":
        from optbench.tasks import tasks

        return [(n, "task", _task_description(n)) for n in tasks.names()]
    if kind == "samplers":
        from optbench.search import samplers

        return [(n, "sampler", samplers.get(n).description) for n in samplers.names()]
    if kind == "pruners":
        from optbench.search import pruners

        return [(n, "pruner", pruners.get(n).description) for n in pruners.names()]
    if kind == "protocols":
        from optbench.study.protocols import protocols

        return [(n, "protocol", f"{protocols.get(n).summary} ({protocols.get(n).source})") for n in protocols.names()]
    from optbench.data import list_datasets

    return [(d.name, "dataset", d.description) for d in list_datasets()]


def technique_lines() -> list[str]:
    """The techniques table: per registered technique a line ``name  family  engines  parameters``
    (``name=default``, or ``name (required)``), then an indented line with its description and source."""
    from optbench.core.options import format_literal
    from optbench.techniques.registry import engines_of, parameters, techniques

    rows = []
    for name in techniques.names():
        cls = techniques.get(name)
        params = ", ".join(f"{p.name} (required)" if p.required else f"{p.name}={format_literal(p.default)}"
                           for p in parameters(cls)) or "-"
        rows.append((name, cls.family, ",".join(engines_of(name)), params, cls.description, cls.source))
    header = ("name", "family", "engines", "parameters")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    lines = ["  ".join(f"{h:<{w}}" for h, w in zip(header[:3], widths, strict=True)) + "  " + header[3]]
    for name, family, engines, params, description, source in rows:
        lines.append(f"{name:<{widths[0]}}  {family:<{widths[1]}}  {engines:<{widths[2]}}  {params}")
        lines.append(f"    {description} (source: {source})" if source else f"    {description}")
    return lines


def list_command(
    kind: Annotated[str, typer.Argument(help="What to list: " + ", ".join(KINDS) + " (regularizers: the "
                                              "techniques table).")],
) -> None:
    """List a catalogue, one line each: name, family, source. Techniques: name, family, engines and
    parameters (name=default, or required), then the description and source; use them with
    --technique NAME:key=value,... or in a study file's techniques list."""
    if kind not in KINDS:
        raise ConfigError("kind", kind, KINDS)
    if kind in ("techniques", "regularizers"):
        for line in technique_lines():
            typer.echo(line)
        return
    rows = _catalogue_rows(kind)
    width = max(len(name) for name, _, _ in rows)
    family_width = max(len(family) for _, family, _ in rows)
    for name, family, source in rows:
        typer.echo(f"{name:<{width}}  {family:<{family_width}}  {source}")


def register(app: typer.Typer, errors: Callable = handle_errors) -> None:
    """Add ``list`` to ``app`` (``errors``: the decorator turning optbench errors into exit codes)."""
    app.command("list")(errors(list_command))


__all__ = ["KINDS", "list_command", "register", "technique_lines"]
