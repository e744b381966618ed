"""The training harness: data splitting, the one training loop, environment capture."""

from optbench.engine.data import split_data
from optbench.engine.environment import environment
from optbench.engine.loop import Pruned, evaluate, train

__all__ = ["Pruned", "environment", "evaluate", "split_data", "train"]
