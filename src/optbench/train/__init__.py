"""The training harness: data splitting, the one training loop, environment capture."""

from optbench.train.data import split_data
from optbench.train.environment import environment
from optbench.train.loop import Pruned, evaluate, train

__all__ = ["Pruned", "environment", "evaluate", "split_data", "train"]
