"""Learning-curve extrapolation as an Optuna pruner (Domhan, Springenberg & Hutter 2015, IJCAI).

After ``min_epochs`` epochs of a trial, its validation objective is extrapolated to the last epoch
of the budget by the parametric family of :mod:`optbench.search.curves`, and the trial is stopped
when an optimistic prediction (mean + ``k`` standard deviations in the better direction) is
worse than the best value of the completed trials — Domhan et al.'s rule "stop when the
probability of beating the best seen so far is below delta" with a Gaussian predictive
distribution: ``k = 1.645`` is their delta = 5%, ``k = 0`` (the default) delta = 50%, i.e. stop
when the predicted final value is below the best.

Why ``k = 0`` by default (measured with ``bench/tuning_efficiency.py``, MNIST-1D, TPE, 36 trials of
27 epochs; README "Tuning efficiency"): Domhan et al.'s ``k = 1.645``, the first default, kept
every trial whose curve was within the noise of the best one (a third of the trials ran to the
end) and spent 49% of the grid's epochs; ``k`` was then chosen among 0, 0.5 and 1 on search seeds
0-9 (``k = 0``: 18.5% of the epochs, the target met in 8/10 seeds) and checked on seeds 10-19
(7/10, against 1/10 for ``k = 1.645``).

How a trial is extrapolated (see :mod:`optbench.search.curves`): with complete trials in the
study, each member's shape parameters are fitted on their curves and only the level parameters
on the partial curve (:func:`~optbench.search.curves.extrapolate_with_shapes`, the noise variance
taken from the complete curves' residuals); without any, the whole family is fitted to the
partial curve alone (:func:`~optbench.search.curves.extrapolate`). A trial is never pruned before
a trial has completed, when its own best value already matches the best, or when no
extrapolation can be made (a failed fit keeps the trial running).

The step is the epoch (1-based), as every optbench pruner (:mod:`optbench.search.samplers`).
"""

from __future__ import annotations

import math

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optbench.core.errors import ConfigError
from optbench.search.curves import Shape, curve_shapes, extrapolate, extrapolate_with_shapes

#: Fewest epochs of a complete trial whose curve gives shapes (a 3-parameter member needs 4 points).
MIN_REFERENCE_EPOCHS = 4


class LearningCurvePruner(optuna.pruners.BasePruner):
    """Stop a trial whose extrapolated final objective cannot beat the best completed trial.

    Args:
        min_epochs: epochs (reported steps) a trial runs before it may be pruned (>= 1; 3 by
            default; fewer than 2 points are never extrapolated, hence never pruned).
        max_epochs: the last epoch of a trial's budget (T, the epoch predicted; >= min_epochs).
        k: standard deviations of optimism (>= 0; 0 by default: prune when the predicted mean is
            worse than the best; 1.645: Domhan et al.'s 5% rule).

    Raises:
        ConfigError: for a bad ``min_epochs``, ``max_epochs`` or ``k``.

    The decision is a function of the study's trials and the trial's intermediate values; the
    shapes fitted on a complete trial's curve are remembered by trial number in this instance
    (a complete trial's curve never changes).
    """

    def __init__(self, *, min_epochs: int = 3, max_epochs: int, k: float = 0.0) -> None:
        if isinstance(min_epochs, bool) or not isinstance(min_epochs, int) or min_epochs < 1:
            raise ConfigError("curve pruner min_epochs", min_epochs, "an integer >= 1")
        if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < min_epochs:
            raise ConfigError("curve pruner max_epochs", max_epochs, f"an integer >= min_epochs ({min_epochs})")
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k) or k < 0:
            raise ConfigError("curve pruner k", k, "a finite number >= 0")
        self.min_epochs = min_epochs
        self.max_epochs = max_epochs
        self.k = float(k)
        self._shapes: dict[int, list[Shape]] = {}

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Whether ``trial`` should stop now (Optuna's ``BasePruner`` contract).

        Args:
            study: the study (its direction and completed trials).
            trial: the running trial; ``trial.intermediate_values`` is ``{epoch: objective}``.

        Returns:
            True when ``optimistic(prediction at max_epochs)`` is worse than the best completed value.
        """
        sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        points = sorted((step, v) for step, v in trial.intermediate_values.items() if math.isfinite(v))
        if len(points) < self.min_epochs or points[-1][0] >= self.max_epochs:
            return False
        complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                    if t.value is not None and math.isfinite(t.value) and t.number != trial.number]
        if not complete:
            return False
        best = max(sign * t.value for t in complete)  # type: ignore[operator]
        epochs = [float(step) for step, _ in points]
        values = [v for _, v in points]
        if max(sign * v for v in values) >= best:
            return False
        shapes = [s for t in complete for s in self._trial_shapes(t, sign)]
        if shapes:
            forecast = extrapolate_with_shapes(epochs, values, self.max_epochs, shapes, sign=sign)
        else:
            forecast = extrapolate(epochs, values, self.max_epochs, sign=sign)
        if forecast is None or not math.isfinite(forecast.mean) or not math.isfinite(forecast.std):
            return False
        return sign * forecast.optimistic(self.k, sign) < best

    def _trial_shapes(self, trial: FrozenTrial, sign: float) -> list[Shape]:
        if trial.number not in self._shapes:
            points = sorted((step, v) for step, v in trial.intermediate_values.items() if math.isfinite(v))
            self._shapes[trial.number] = [] if len(points) < MIN_REFERENCE_EPOCHS else curve_shapes(
                [float(step) for step, _ in points], [v for _, v in points], sign=sign)
        return self._shapes[trial.number]


__all__ = ["MIN_REFERENCE_EPOCHS", "LearningCurvePruner"]
