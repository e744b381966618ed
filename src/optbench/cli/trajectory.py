"""`optbench trajectory`: optimizer paths on 2-D test functions (JSON, contour PNG, animated GIF), built-in demos."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from optbench.cli.common import handle_errors
from optbench.core.errors import ConfigError, require_positive

if TYPE_CHECKING:
    from optbench.testfns import TestFunction, Trajectory

DEFAULT_LR = 1e-3


def _parse_rates(items: list[str]) -> tuple[float, dict[str, float]]:
    rates: dict[str, float] = {}
    default = DEFAULT_LR
    for item in items:
        name, sep, value = item.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError("--lr", item, "a number or NAME=NUMBER") from None
        if sep:
            rates[name] = number
        else:
            default = number
    return default, rates


def _parse_start(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError("--start", text, "two numbers X,Y") from None
    return x, y


def _payload(f: TestFunction, paths: list[Trajectory], steps: int, noise: float, extra: dict) -> dict:
    return {"function": f.name, "formula": f.formula, "minima": f.minima, "start": f.start, "bounds": f.bounds,
            "steps": steps, "noise": noise, **extra,
            "trajectories": [{"optimizer": t.optimizer, "hyperparams": t.hyperparams, "diverged": t.diverged,
                              "tuned": bool(t.notes.get("tuned")), "points": t.points.tolist(),
                              "values": t.values.tolist()} for t in paths]}


def _write(f: TestFunction, paths: list[Trajectory], payload: dict, *, json_path: Path | None,
           png: Path | None, gif: Path | None, frames: int, dpi: int, title: str | None = None) -> None:
    import json

    from optbench.core.fileio import atomic_write_text
    from optbench.report.plots import save_figure
    from optbench.report.trajectories import animate_trajectories, plot_trajectories

    if png is not None:
        save_figure(plot_trajectories(f, paths, title=title), png, dpi=dpi)
        typer.echo(str(png))
    if gif is not None:
        animate_trajectories(f, paths, gif, frames=frames, title=title)
        typer.echo(str(gif))
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(payload))
        typer.echo(str(json_path))


def _check_image_path(field: str, path: Path | None, suffixes: tuple[str, ...]) -> None:
    if path is not None and path.suffix.lower() not in suffixes:
        raise ConfigError(field, str(path), f"a path ending in {' or '.join(suffixes)}")


def _run_demos(names: str, *, tune: bool, steps: int | None, out_dir: Path, frames: int, dpi: int) -> None:
    from optbench.testfns.demos import demos, run_demo

    chosen = demos.names() if names == "all" else [demos.canonical(n.strip()) for n in names.split(",") if n.strip()]
    if not chosen:
        raise ConfigError("--demo", names, ["all", *demos.names()])
    for name in chosen:
        result = run_demo(name, tune=tune, steps=steps)
        typer.echo(f"demo {name}: {result.demo.title}")
        for opt, m in result.metrics.items():
            extra = f" escape_step={m['escape_step']:g}" if result.function.minima == () else \
                f" distance={m['distance']:.3g}"
            typer.echo(f"  {opt:<12} lr={m['lr']:<8.3g}{' (tuned)' if opt in result.tuning else ''} "
                       f"final f={m['final_value']:.4g}{extra}")
        n = result.paths[0].points.shape[0] - 1
        payload = _payload(result.function, result.paths, n, result.demo.noise,
                           {"demo": name, "expectation": result.demo.expectation, "metrics": result.metrics})
        _write(result.function, result.paths, payload, json_path=out_dir / f"{name}.json",
               png=out_dir / f"{name}.png", gif=out_dir / f"{name}.gif", frames=frames, dpi=dpi,
               title=result.demo.title)


def trajectory_command(
    function: Annotated[str | None, typer.Option(help="2-D test function (rosenbrock, beale, rastrigin, himmelblau, "
                                                      "saddle, monkey_saddle, ill_conditioned_quadratic); "
                                                      "default rosenbrock.")] = None,
    optimizers: Annotated[str | None, typer.Option(help="Comma-separated optimizer names; default "
                                                        "sgd,momentum,adam.")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps (default 500; with --demo: overrides "
                                                   "the demo's).")] = None,
    lr: Annotated[list[str] | None, typer.Option(help="Learning rate: a number for all, or NAME=VALUE per "
                                                      "optimizer (repeatable); default 0.001.")] = None,
    tune: Annotated[bool, typer.Option("--tune", help="Tune each optimizer's lr on the function (log grid "
                                                      "1e-4..1, lowest final value without divergence).")] = False,
    noise: Annotated[float | None, typer.Option(help="Std of Gaussian noise added to each gradient "
                                                     "(default 0).")] = None,
    condition: Annotated[float | None, typer.Option(help="Condition number (ill_conditioned_quadratic).")] = None,
    start: Annotated[str | None, typer.Option(help="Start point X,Y (default: the function's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the gradient noise.")] = 0,
    out: Annotated[Path, typer.Option(help="JSON file with the paths.")] = Path("trajectories.json"),
    png: Annotated[Path | None, typer.Option(help="Contour plot with the paths (.png or .svg).")] = None,
    gif: Annotated[Path | None, typer.Option(help="Animated GIF of the paths growing (.gif).")] = None,
    frames: Annotated[int, typer.Option(help="Frames of the GIF.")] = 60,
    dpi: Annotated[int, typer.Option(help="Resolution of the PNG (the figure is 7 x 5.6 inches).")] = 120,
    demo: Annotated[str | None, typer.Option(help="Built-in demo(s): saddle, rosenbrock, "
                                                  "ill_conditioned_quadratic, rastrigin, or all; writes "
                                                  "NAME.png, NAME.gif and NAME.json into --out-dir.")] = None,
    out_dir: Annotated[Path, typer.Option(help="Folder of the --demo files.")] = Path("optbench-trajectories"),
) -> None:
    """Run optimizers on a 2-D test function: paths as JSON, a contour plot (--png) and an animation (--gif)."""
    from optbench.study.compare import parse_optimizers
    from optbench.testfns import get_function, trajectory
    from optbench.testfns.tuning import tune_lr

    _check_image_path("--png", png, (".png", ".svg"))
    _check_image_path("--gif", gif, (".gif",))
    require_positive("--dpi", dpi, integer=True)
    require_positive("--frames", frames, integer=True)
    if demo is not None:
        given = [flag for flag, value in (("--function", function), ("--optimizers", optimizers), ("--lr", lr),
                                          ("--noise", noise), ("--condition", condition), ("--start", start),
                                          ("--png", png), ("--gif", gif)) if value]
        if given:
            raise ConfigError("--demo", demo, f"not combined with {', '.join(given)} (a demo fixes them; "
                                              "allowed with it: --steps, --tune, --frames, --dpi, --out-dir)")
        _run_demos(demo, tune=tune, steps=steps, out_dir=out_dir, frames=frames, dpi=dpi)
        return
    if tune and lr:
        raise ConfigError("--lr", ", ".join(lr), "no --lr together with --tune")
    f = get_function(function or "rosenbrock", **({"condition": condition} if condition is not None else {}))
    names = parse_optimizers(optimizers or "sgd,momentum,adam")
    n = 500 if steps is None else steps
    default, rates = _parse_rates(lr or [])
    common = {"steps": n, "start": _parse_start(start), "noise": noise or 0.0, "seed": seed}
    paths = []
    for name in names:
        rate = tune_lr(f, name, **common).lr if tune else rates.get(name, default)
        t = trajectory(f, name, lr=rate, **common)
        t.notes["tuned"] = tune
        paths.append(t)
        typer.echo(f"{name:<12} lr={rate:<8.3g}{' (tuned)' if tune else ''} final f={t.final_value:.4g}"
                   f"{'  (diverged)' if t.diverged else ''}")
    _write(f, paths, _payload(f, paths, n, common["noise"], {}), json_path=out, png=png, gif=gif, frames=frames,
           dpi=dpi)


def register(app: typer.Typer, errors: Callable = handle_errors) -> None:
    """Add ``trajectory`` to ``app`` (``errors``: the decorator turning optbench errors into exit codes)."""
    app.command("trajectory")(errors(trajectory_command))
