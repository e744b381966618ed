"""2-D test functions with known minima, optimizer trajectories on them, built-in demos,
learning-rate tuning on a function, and the SGD theory check."""

from optbench.testfns.demos import demos, run_demo
from optbench.testfns.functions import TestFunction, functions, get_function, ill_conditioned_quadratic
from optbench.testfns.theory import plot_theory, theory_check
from optbench.testfns.trajectory import Trajectory, trajectory
from optbench.testfns.tuning import tune_lr

__all__ = ["TestFunction", "Trajectory", "demos", "functions", "get_function", "ill_conditioned_quadratic",
           "plot_theory", "run_demo", "theory_check", "trajectory", "tune_lr"]
