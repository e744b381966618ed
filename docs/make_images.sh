#!/bin/sh
# Regenerate the README images under docs/ with optbench itself (about 2-3 minutes on 2 CPU cores).
# Usage: sh docs/make_images.sh      (from anywhere; uses the project's .venv unless OPTBENCH/PYTHON are set)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
OPTBENCH=${OPTBENCH:-"$root/.venv/bin/optbench"}
PYTHON=${PYTHON:-"$root/.venv/bin/python"}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Trajectories: every built-in demo (PNG + GIF + JSON); keep the Rosenbrock and saddle pictures.
"$OPTBENCH" trajectory --demo all --dpi 100 --out-dir "$tmp/demos"
cp "$tmp/demos/rosenbrock.png" docs/trajectory_rosenbrock.png
cp "$tmp/demos/saddle.png" docs/trajectory_saddle.png
cp "$tmp/demos/saddle.gif" docs/trajectory_saddle.gif

# Theory check: SGD on a noisy strongly convex quadratic against its bounds.
"$PYTHON" - <<'PY'
from optbench.report.plots import save_figure
from optbench.testfns.theory import plot_theory, theory_check

check = theory_check()
print(f"theory check: max measured/bound ratio {check.max_ratio:.3f}")
save_figure(plot_theory(check), "docs/theory_sgd.png", dpi=100)
PY

# Learning curves of a small comparison study.
"$OPTBENCH" compare --task mnist1d_cnn --optimizers sgd,momentum,adam --epochs 10 --seeds 3 --lr 0.01 \
    --out "$tmp/compare" --quiet
cp "$tmp/compare/curves.png" docs/curves.png

# The compression sweep's accuracy against nonzero parameters (95 short runs, about 1-2 minutes).
"$OPTBENCH" study run examples/studies/compression.toml --workers 2 --store "$tmp/compression.db" \
    --out "$tmp/compression" >/dev/null
cp "$tmp/compression/figures/cost_mnist1d_mlp_model_cost-nonzero_parameters.png" docs/compression_pareto.png

ls -l docs/*.png docs/*.gif
