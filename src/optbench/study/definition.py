"""A validated study definition and its sections (budget, search, execution), as
:func:`optbench.study.config.load_study` builds them from a study file."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from optbench.core.errors import ConfigError
from optbench.core.spec import Recipe


@dataclass(frozen=True)
class BudgetConfig:
    """The per-run budget of a study.

    Attributes:
        epochs: passes over the training split per run.
        train_size: training examples per run (a seeded subset), None for all.
        seconds: wall-clock training seconds per run (``Recipe.max_train_seconds``), None for none.
        trials: tuning trials per search (protocols that tune).
    """

    epochs: int = 1
    train_size: int | None = None
    seconds: float | None = None
    trials: int = 16

    def apply(self, recipe: Recipe) -> Recipe:
        """``recipe`` with this budget's epochs, train_size and max_train_seconds."""
        return replace(recipe, epochs=self.epochs, train_size=self.train_size, max_train_seconds=self.seconds)


@dataclass(frozen=True)
class ExecutionConfig:
    """The ``[execution]`` section: how runs execute (it never changes a run's numbers or id).

    Attributes:
        checkpoints: save per-epoch checkpoints, so that a run interrupted (SIGKILL included)
            continues from its last finished epoch when the study is started again (in a file:
            default true when ``checkpoint_dir`` is given, else false).
        checkpoint_dir: where (relative paths: to the current directory); None: ``<store>.checkpoints``
            next to a SQLite store (required for a PostgreSQL store).
        save_weights: store every finished run's final weights (:mod:`optbench.runs.weights`), so
            that later runs can start from or learn from them (``init_from``, ``lwf``, ``ewc``).
        weights_dir: the weights directory; None: ``<store>.weights`` next to a SQLite store
            (required for a PostgreSQL store). Runs load stored weights from it whenever it is known;
            they save there only with ``save_weights``.
    """

    checkpoints: bool = False
    checkpoint_dir: str | None = None
    save_weights: bool = False
    weights_dir: str | None = None

    def weights(self, store: str | Path, *, save: bool = False, directory: str | Path | None = None) -> Any:
        """The :class:`~optbench.runs.weights.WeightsDir` of runs stored in ``store`` (None when there is
        no directory: a PostgreSQL store without ``weights_dir``), saving when ``save_weights`` or
        ``save``; ``directory`` overrides ``weights_dir``.

        Raises:
            ConfigError: saving without a directory, or a directory that is a file.
        """
        from optbench.runs.weights import weights_for

        chosen = directory if directory is not None else self.weights_dir
        return weights_for(store, chosen, saving=self.save_weights or save)

    def directory(self, store: str | Path) -> Path | None:
        """The checkpoint directory for results in ``store`` (None when checkpoints are off).

        Raises:
            ConfigError: checkpoints on, no ``checkpoint_dir`` and a store that is not a SQLite file.
        """
        if not self.checkpoints:
            return None
        from optbench.runs.store import sqlite_file

        if self.checkpoint_dir is not None:
            return Path(self.checkpoint_dir)
        path = sqlite_file(str(store))
        if path is None or path.name in ("", ":memory:"):
            raise ConfigError("execution.checkpoint_dir", None,
                              "a directory for checkpoints (required unless the store is a SQLite file)")
        return Path(f"{path}.checkpoints")


@dataclass(frozen=True)
class SearchSettings:
    """The ``[search]`` section.

    Attributes:
        sampler / pruner: ``optbench.search`` registry names (the protocol ``search`` uses them;
            ``crowded-valley`` uses random search and ``algoperf-lite`` quasirandom search).
        seed: the sampler's seed.
        grid_points: points per parameter of the ``grid`` sampler (None: its default).
        space: the parsed ``optbench.search.SearchSpace`` (None when not parsed).
        space_table: ``[search.space]`` as written (stored with the study).
        optuna_storage: also write every search's trials into this Optuna RDB storage (an
            SQLAlchemy URL, or ``"store"`` for the results database) for ``optuna-dashboard``;
            None: not (:mod:`optbench.search.storage`). How runs are recorded, never what they
            compute: not stored with the study.
        objectives: ``[search] objectives`` as written (empty: the task's validation metric alone;
            :func:`optbench.search.objectives.parse_objectives`); protocol ``search`` only.
    """

    sampler: str = "tpe"
    pruner: str = "none"
    seed: int = 0
    grid_points: int | None = None
    space: Any = None
    space_table: Mapping[str, Any] = field(default_factory=dict)
    optuna_storage: str | None = field(default=None, repr=False)  # a URL may hold a password
    objectives: tuple[str, ...] = ()

    def search_config(self, *, n_trials: int, objective: str, direction: Any, sampler: str | None = None,
                      pruner: str | None = None, seed: int | None = None) -> Any:
        """The ``optbench.search.SearchConfig`` of one search (``objective`` is a validation metric key; the
        costs of :attr:`objectives` are its further objectives)."""
        from optbench.search import SearchConfig
        from optbench.search.objectives import parse_objectives

        extra: dict[str, Any] = {} if self.grid_points is None else {"grid_points": self.grid_points}
        costs = parse_objectives(list(self.objectives)).costs
        if costs:
            extra["costs"] = costs
        if self.optuna_storage is not None:
            extra["optuna_storage"] = self.optuna_storage
        return SearchConfig(space=self.space, sampler=sampler or self.sampler, pruner=pruner or self.pruner,
                            n_trials=n_trials, seed=self.seed if seed is None else seed, objective=objective,
                            direction=direction, **extra)


@dataclass(frozen=True)
class StudyConfig:
    """A validated study definition (build with :func:`load_study` or :func:`study_from_dict`).

    Attributes:
        name: study name in the store.
        protocol: registered protocol name (:data:`optbench.study.protocols.protocols`).
        tasks: task references.
        seeds: the seeds results are reported over.
        recipes: one :class:`~optbench.core.spec.Recipe` per setting, budget applied.
        budget: the per-run budget.
        target: overrides each task's target value (None: the task's own).
        search: the ``[search]`` section, or None.
        options: the protocol's options with defaults filled in.
        execution: the ``[execution]`` section (checkpoints).
        description: free text.
        source: the file it came from (``"<api>"`` for a dict).
    """

    name: str
    protocol: str
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    recipes: tuple[Recipe, ...]
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    target: float | None = None
    search: SearchSettings | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = "<api>"
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)

    def with_budget(self, **changes: Any) -> StudyConfig:
        """A copy with budget fields changed (``epochs=1, train_size=300``) and applied to every recipe.

        Raises:
            ConfigError: a value the recipes reject (e.g. ``epochs=0``).
        """
        budget = replace(self.budget, **changes)
        return replace(self, budget=budget, recipes=tuple(budget.apply(r) for r in self.recipes))

    def with_optuna_storage(self, url: str) -> StudyConfig:
        """A copy whose searches also write their trials into the Optuna RDB storage ``url`` (an
        SQLAlchemy URL or ``"store"``; ``optbench study run --optuna-storage``).

        Raises:
            ConfigError: (field ``--optuna-storage``) a study without searches, or another value.
        """
        from optbench.search.storage import check_storage

        if self.search is None:
            raise ConfigError("--optuna-storage", url, "a study with a [search] section (protocols search, "
                                                       "crowded-valley, algoperf-lite)")
        return replace(self, search=replace(self.search, optuna_storage=check_storage(url, "--optuna-storage")))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (stored with the study in the results database)."""
        search = None if self.search is None else {
            "sampler": self.search.sampler, "pruner": self.search.pruner, "seed": self.search.seed,
            "grid_points": self.search.grid_points, "space": _jsonable(self.search.space_table)}
        if self.search is not None and self.search.objectives:
            search["objectives"] = list(self.search.objectives)
        return {"name": self.name, "protocol": self.protocol, "tasks": list(self.tasks), "seeds": list(self.seeds),
                "target": self.target, "budget": vars(self.budget).copy(),
                "recipes": [r.to_dict() for r in self.recipes],
                "search": search, "options": _jsonable(self.options), "description": self.description,
                "source": self.source, "execution": vars(self.execution).copy()}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


__all__ = ["BudgetConfig", "ExecutionConfig", "SearchSettings", "StudyConfig"]
