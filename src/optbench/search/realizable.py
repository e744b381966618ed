"""Spaces no trial could run, found before any trial: every combination of a search space's task
values is built (docs/architecture.md, "Architecture search"). A space none of whose points a task
realizes, or a value the task refuses at every point (a block type that does not exist, a budget no
point meets), is a bad space; a value unrealizable only on this input (too many stages for the image)
stays a point the search records as a failed trial.
"""

from __future__ import annotations

from typing import Any

from optbench.search.space import (
    SearchSpace,
    applies,
    has_task_paths,
    is_task_path,
    same_value,
    split_values,
    trial_task,
)

#: At most this many combinations of task values are built by :func:`realizability_problems`.
MAX_CHECKED_POINTS = 512


def task_points(space: SearchSpace) -> list[dict[str, Any]] | None:
    """Every combination of the task parameters' values (a categorical's choices, a range's ends),
    honouring ``when`` conditions; None when a condition names a recipe path or there are more than
    :data:`MAX_CHECKED_POINTS` combinations."""
    points: list[dict[str, Any]] = [{}]
    for param in space:
        if not is_task_path(param.path):
            continue
        if any(not is_task_path(path) for path, _ in param.when):
            return None
        values = param.choices if param.kind == "categorical" else (
            (int(param.low), int(param.high)) if param.kind == "int" else (param.low, param.high))  # type: ignore[arg-type]
        points = [extended for point in points
                  for extended in ([{**point, param.path: v} for v in values] if applies(param, point) else [point])]
        if len(points) > MAX_CHECKED_POINTS:
            return None
    return points


def realizability_problems(space: SearchSpace, task_ref: str, build: Any) -> list[tuple[str, str]]:
    """``(key path, message)`` for what no trial of ``space`` on ``task_ref`` could ever run, found by
    building (``build(ref)``, e.g. ``get_task``) every combination of the task values
    (:func:`task_points`) before any trial: a space none of whose points can be realized (e.g. a
    parameter budget no architecture meets), and a value outside its parameter's domain (the task
    refuses the value itself, e.g. a block type that does not exist) or a budget value no point meets.
    A value unrealizable only on this input (too many stages for the image) stays a point the search
    records as a failed trial."""
    from optbench.core.errors import ConfigError

    points = task_points(space)
    if not points or points == [{}]:
        return []
    failures: dict[int, ConfigError] = {}
    for i, point in enumerate(points):
        ref, _ = trial_task(task_ref, task_ref, split_values(point)[0])
        try:
            build(ref)
        except ConfigError as exc:
            failures[i] = exc
    if not failures:
        return []
    if len(failures) == len(points):
        return [("search.space", f"no point of the space can be realized for task {task_ref} ({len(points)} "
                 f"combinations built), e.g.: {failures[0]}")]
    problems = []
    for param in space:
        if not is_task_path(param.path) or param.kind != "categorical":
            continue
        name = param.path.partition(".")[2]
        for value in param.choices or ():
            with_value = [i for i, point in enumerate(points)
                          if param.path in point and same_value(point[param.path], value)]
            if not with_value or not all(i in failures for i in with_value):
                continue
            exc = failures[with_value[0]]
            if str(exc.field).split()[-1] == name and same_value(exc.value, value):
                problems.append((f"search.space.{param.path}", f"{value!r} is refused by task {task_ref} at every "
                                 f"point of the space: {exc}"))
    return problems




def study_realizability_problems(tasks: tuple[str, ...], space: SearchSpace) -> list[tuple[str, str]]:
    """:func:`realizability_problems` of ``space`` for every study task (built by ``get_task``); a task
    that cannot be built at all is skipped (reported where the tasks are checked)."""
    from optbench.core.errors import OptbenchError
    from optbench.tasks import get_task

    if not has_task_paths(space):
        return []
    found: list[tuple[str, str]] = []
    for ref in tasks:
        try:
            found += realizability_problems(space, ref, get_task)
        except OptbenchError:
            continue
    return found


__all__ = ["MAX_CHECKED_POINTS", "realizability_problems", "study_realizability_problems", "task_points"]
