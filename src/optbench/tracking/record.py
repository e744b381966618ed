"""What the trackers log of a run, the same in TensorBoard and MLflow (see docs/architecture.md,
Layers: ``tracking/``): per-epoch scalars, the recipe as parameters and the task as tags.

* scalars (step = the 1-based epoch): every epoch metric as ``split/metric`` (``train_loss`` ->
  ``train/loss``, ``valid_accuracy`` -> ``valid/accuracy``), the learning rate at the end of the
  epoch as ``train/lr`` and the training throughput (examples per second) as
  ``train/samples_per_second``;
* parameters: ``optimizer``, ``hyperparams.<name>``, ``batch_size``, ``epochs``, ``train_size``
  (``all`` for all), ``schedule``, ``schedule_params.<name>``, ``precision``, ``techniques`` (in
  order, comma-separated, ``none`` for none), ``max_train_seconds`` when set, and ``seed``;
* tags: ``optbench.task``, ``optbench.run_id``, ``optbench.study`` and ``optbench.status``
  (``running`` while a run trains, then its stored status).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from optbench.core.spec import EpochRecord, Recipe, RunResult
from optbench.runs.plan import RunSpec

SPLITS = ("train", "valid", "test")
#: The tag holding the optbench run id: what the trackers look a run up by (never logged twice).
RUN_ID_TAG = "optbench.run_id"
RUNNING = "running"

Param = str | int | float | bool


def scalar_tag(key: str) -> str:
    """The scalar tag of an epoch metric key: ``valid_accuracy`` -> ``valid/accuracy``; a key
    without a split prefix is kept."""
    split, sep, metric = key.partition("_")
    return f"{split}/{metric}" if sep and split in SPLITS and metric else key


def epoch_scalars(record: EpochRecord) -> dict[str, float]:
    """The scalars of one epoch: its metrics (:func:`scalar_tag`), ``train/lr`` and
    ``train/samples_per_second``."""
    out = {scalar_tag(k): float(v) for k, v in record.metrics.items()}
    out["train/lr"] = float(record.lr)
    out["train/samples_per_second"] = float(record.samples_per_second)
    return out


def _value(value: object) -> Param:
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def recipe_params(recipe: Recipe, seed: int) -> dict[str, Param]:
    """The run's recipe and seed as flat parameters (numbers stay numbers, lists become JSON text)."""
    out: dict[str, Param] = {"optimizer": recipe.optimizer}
    out.update({f"hyperparams.{k}": _value(v) for k, v in recipe.hyperparams.items()})
    out.update({"batch_size": recipe.batch_size, "epochs": recipe.epochs,
                "train_size": "all" if recipe.train_size is None else recipe.train_size,
                "schedule": recipe.schedule})
    out.update({f"schedule_params.{k}": _value(v) for k, v in recipe.schedule_params.items()})
    out["precision"] = recipe.precision
    out["techniques"] = ",".join(str(t) for t in recipe.techniques) or "none"
    if recipe.max_train_seconds is not None:
        out["max_train_seconds"] = recipe.max_train_seconds
    out["seed"] = seed
    return out


@dataclass(frozen=True)
class RunInfo:
    """What identifies a run to the trackers: its id, task name, recipe and seed."""

    run_id: str
    task: str
    recipe: Recipe
    seed: int

    @classmethod
    def of(cls, run: RunSpec | RunResult) -> RunInfo:
        """The info of a planned or a stored run."""
        return cls(run.run_id, run.task, run.recipe, run.seed)

    def tags(self, study: str, status: str) -> dict[str, str]:
        """The tags of the run: task name, run id, study and status."""
        return {"optbench.task": self.task, RUN_ID_TAG: self.run_id, "optbench.study": study,
                "optbench.status": status}

    def params(self) -> dict[str, Param]:
        """:func:`recipe_params` of the run."""
        return recipe_params(self.recipe, self.seed)

    @property
    def name(self) -> str:
        """A display name: ``<optimizer> seed <seed> (<run id>)``."""
        return f"{self.recipe.label} seed {self.seed} ({self.run_id})"


def safe_name(text: str) -> str:
    """``text`` as one portable path component (characters other than letters, digits, ``.``,
    ``_``, ``=`` and ``-`` become ``_``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("._")
    return cleaned or "_"


__all__ = ["RUNNING", "RUN_ID_TAG", "SPLITS", "RunInfo", "epoch_scalars", "recipe_params", "safe_name", "scalar_tag"]
