"""2-D test functions with known minima and optimizer trajectories on them."""

from optbench.testfns.functions import TestFunction, functions, get_function, ill_conditioned_quadratic
from optbench.testfns.trajectory import Trajectory, trajectory

__all__ = ["TestFunction", "Trajectory", "functions", "get_function", "ill_conditioned_quadratic", "trajectory"]
