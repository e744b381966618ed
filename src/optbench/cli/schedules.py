"""``optbench schedules plot``: a learning-rate schedule as a PNG."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from optbench.cli.common import check_count, check_lr, handle_errors


def schedules_plot(
    name: Annotated[str, typer.Argument(help="Schedule name (optbench list schedules).")],
    params: Annotated[list[str] | None, typer.Argument(help="Parameters NAME=VALUE, e.g. gamma=0.5.")] = None,
    lr: Annotated[float, typer.Option(help="Base learning rate.")] = 0.1,
    steps: Annotated[int, typer.Option(help="Total optimizer steps.")] = 1000,
    steps_per_epoch: Annotated[int, typer.Option(help="Steps per epoch (for *_epochs parameters).")] = 100,
    out: Annotated[Path, typer.Option(help="PNG file to write.")] = Path("schedule.png"),
) -> None:
    """Write a PNG of learning rate versus step for a schedule."""
    from optbench.core.spec import Direction
    from optbench.report import save_figure
    from optbench.schedules import make_schedule, parse_params, plot_schedule, schedule_values

    check_count("--steps", steps)
    check_count("--steps-per-epoch", steps_per_epoch)
    check_lr(lr)
    schedule = make_schedule(name, lr, total_steps=steps, steps_per_epoch=steps_per_epoch,
                             direction_of=lambda key: Direction.MINIMIZE, **parse_params(params or []))
    figure = plot_schedule(schedule_values(schedule, steps), repr(schedule), steps_per_epoch=steps_per_epoch)
    typer.echo(str(save_figure(figure, out)))


def register(app: typer.Typer, errors: Callable = handle_errors) -> None:
    """Add the ``schedules`` group (``plot``) to ``app``."""
    schedules_app = typer.Typer(help="Learning-rate schedules.", no_args_is_help=True)
    schedules_app.command("plot")(errors(schedules_plot))
    app.add_typer(schedules_app, name="schedules")


__all__ = ["register", "schedules_plot"]
