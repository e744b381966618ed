"""What ``optbench scale`` adds to its measurements: the cost model's prediction of every multi-process
job made before the job runs (calibrated on this machine) and checked after it, and, with
``--predict --reference``, the reference distributed experiment's setting (16 K80 GPUs, 25 Gbit/s)
set beside that experiment's conclusions. Numbers come from :mod:`optbench.analysis.reference_scaling`;
this module only measures the link and renders tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def count_parameters(task_obj: Any) -> int:
    """Parameters of the task's model, built on the meta device (no memory) where the factory allows."""
    import torch

    try:
        with torch.device("meta"):
            model = task_obj.make_model()
    except Exception:  # a factory that cannot build on the meta device: build it for real
        model = task_obj.make_model()
    return sum(p.numel() for p in model.parameters())


def calibrate(task_obj: Any, timeout: float) -> Any:
    """Measure the local transport (2-process ping-pong of a message of the model's gradient size, at
    least 4 MiB so that the transfer time stands out of the latency, at most 64 MiB) and return the
    :class:`~optbench.analysis.reference_scaling.Calibration`."""
    from optbench.analysis.reference_scaling import Calibration
    from optbench.engine.distributed.probe import probe_link

    parameters = count_parameters(task_obj)
    link = probe_link(nbytes=min(max(parameters * 4, 4 << 20), 64 << 20), repeats=10, timeout=min(timeout, 300.0))
    return Calibration(latency=link.latency, bandwidth=link.bandwidth, parameters=parameters)


def prediction_table(task: str, checks: Sequence[Any], calibration: Any) -> Any:
    """A rich table of :class:`~optbench.analysis.reference_scaling.PredictionCheck` rows."""
    from rich.table import Table

    table = Table(title=f"{task}: cost model (calibrated on 1 process; link {calibration.latency * 1e6:.0f} us, "
                        f"{calibration.bandwidth / 1e9:.2f} GB/s; {calibration.parameters:,} parameters) "
                        "against the measurement")
    for column in ("mode", "workers", "predicted samples/s", "measured samples/s", "error"):
        table.add_column(column, justify="right")
    for c in checks:
        measured = "-" if math.isnan(c.measured) else f"{c.measured:,.0f}"
        error = "-" if math.isnan(c.error) else f"{c.error:+.0%}"
        table.add_row(c.mode, str(c.nproc), f"{c.predicted:,.0f}", measured, error)
    return table


def reference_tables(*, overlap: float, nprocs: Sequence[int] = (1, 2, 4, 8, 16),
                     measured_async_over_sync: float | None = None) -> list[Any]:
    """The reference setting's predicted images/s (efficiency) of the five networks, all-reduce and
    one parameter server, and the reference's conclusions point by point."""
    from rich.table import Table

    from optbench.analysis.reference_scaling import (
        K80_IMAGES_PER_SECOND,
        K80_SOURCE,
        REFERENCE_BATCH,
        REFERENCE_GBPS,
        reference_findings,
        reference_predictions,
    )

    preds = {(p.model, p.algorithm, p.n): p for p in reference_predictions(nprocs, overlap=overlap)}
    table = Table(title=f"reference setting: K80 GPUs, {REFERENCE_GBPS:g} Gbit/s, batch {REFERENCE_BATCH} per GPU "
                        f"(overlap {overlap:g}); predicted images/s (efficiency)")
    table.add_column("network")
    table.add_column("K80 images/s", justify="right")
    table.add_column("algorithm")
    for n in nprocs:
        table.add_column(f"{n} GPU", justify="right")
    for name, ips in K80_IMAGES_PER_SECOND.items():
        for algorithm in ("allreduce", "ps"):
            table.add_row(name, f"{ips:.1f}", algorithm,
                          *(f"{preds[(name, algorithm, n)].samples_per_second:,.0f} "
                            f"({preds[(name, algorithm, n)].efficiency:.0%})" for n in nprocs))
    findings = Table(title="the reference's conclusions against the model (16 GPUs)")
    for column in ("reference", "model", "same shape"):
        findings.add_column(column)
    for f in reference_findings(overlap=overlap, measured_async_over_sync=measured_async_over_sync):
        findings.add_row(f.claim, f.predicted, {True: "yes", False: "no", None: "-"}[f.agrees])
    table.caption = f"compute: {K80_SOURCE}; VGG-19 and Inception-v4 scaled by forward FLOPs"
    return [table, findings]


__all__ = ["calibrate", "count_parameters", "prediction_table", "reference_tables"]
