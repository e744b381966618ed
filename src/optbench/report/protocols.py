"""Render protocol results (:mod:`optbench.analysis.protocols`) as Markdown and terminal tables.

:func:`protocol_tables` turns a result into :class:`ProtocolTable` cells (the one place that
formats numbers); :func:`protocol_markdown` and :func:`protocol_rich_tables` lay them out.
Metrics named ``accuracy`` are shown in percent; seconds with 3 significant digits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optbench.analysis.continual import ContinualResult
from optbench.analysis.protocols import (
    AlgoperfResult,
    CrowdedValleyResult,
    DeepobsResult,
    SearchResult,
    Seed004Result,
    Setting,
)
from optbench.analysis.stats import Summary
from optbench.core.errors import ConfigError
from optbench.report.tables import ranking_cells


@dataclass(frozen=True)
class ProtocolTable:
    """One table: title, header cells, rows of cells and notes shown after it."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()


def _percent(key: str) -> bool:
    return key.endswith("accuracy")


def _num(value: float, key: str) -> str:
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "never" if value > 0 else "-inf"
    return f"{100 * value:.2f}%" if _percent(key) else f"{value:.4g}"


def _mean_std(s: Summary, key: str) -> str:
    if s.n == 0:
        return "n/a"
    return _num(s.mean, key) + ("" if math.isnan(s.std) else f" ± {_num(s.std, key)}")


def _ci(s: Summary, key: str) -> str:
    return "n/a" if math.isnan(s.ci_low) else f"[{_num(s.ci_low, key)}, {_num(s.ci_high, key)}]"


def _cost(value: float, name: str) -> str:
    """A search cost objective (:mod:`optbench.search.objectives`): counts with separators, latency in ms."""
    if math.isnan(value):
        return "n/a"
    return f"{value:.3g} ms" if name == "latency" else f"{value:,.0f}"


def _params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))


def _seed004(result: Seed004Result) -> list[ProtocolTable]:
    out = []
    for task, summaries in result.summaries.items():
        keys = result.keys[task]
        headers, rows = ranking_cells(list(summaries), final_label=f"final {keys.test_key}",
                                      best_label=f"best {keys.valid_key}",
                                      final_as_percent=_percent(keys.test_key),
                                      best_as_percent=_percent(keys.valid_key))
        out.append(ProtocolTable(f"{task}: same hyperparameters, ranked by final {keys.test_key}",
                                 tuple(headers), tuple(tuple(r) for r in rows)))
    return out


def _deepobs(result: DeepobsResult) -> list[ProtocolTable]:
    rows = []
    for r in result.rows:
        keys = result.keys[r.task]
        lost = sum(p.n_lost for p in r.grid)
        rows.append((r.task, r.label, "n/a" if r.best_lr is None else f"{r.best_lr:.3g}",
                     _num(r.best_valid, keys.valid_key), _mean_std(r.test, keys.test_key), _ci(r.test, keys.test_key),
                     str(r.test.n), f"{lost}/{sum(p.n for p in r.grid)}"))
    key = next(iter(result.keys.values())).test_key if result.keys else "test metric"
    return [ProtocolTable("DeepOBS: best learning rate per optimizer (tuned on validation), test over seeds",
                          ("task", "optimizer", "best lr", "valid at best lr", f"final {key}", "95% CI", "seeds",
                           "grid runs lost"), tuple(rows),
                          (("best lr: the grid point with the best mean final validation metric over the tuning "
                            "seeds; lost: failed runs or runs without any epoch"),))]


def _setting_row(s: Setting, key: str, valid_key: str) -> tuple[str, ...]:
    return (s.label, "tuned" if s.tuned else "default", _params(s.hyperparams), _mean_std(s.valid, valid_key),
            _mean_std(s.test, key), _ci(s.test, key))


def _crowded_valley(result: CrowdedValleyResult) -> list[ProtocolTable]:
    out = []
    for task, keys in result.keys.items():
        settings = [*result.defaults.get(task, ()), *result.tuned.get(task, ())]
        out.append(ProtocolTable(f"{task}: one-shot defaults and random search ({result.trials} trials) per setting",
                                 ("setting", "kind", "hyperparameters", f"final {keys.valid_key}",
                                  f"final {keys.test_key}", "95% CI"),
                                 tuple(_setting_row(s, keys.test_key, keys.valid_key) for s in settings)))
        rows = tuple((c.tuned.label, _mean_std(c.tuned.test, keys.test_key), c.best_default.label,
                      _mean_std(c.best_default.test, keys.test_key), _num(c.gain, keys.test_key),
                      "n/a" if math.isnan(c.p_value) else f"{c.p_value:.3g}")
                     for c in result.comparisons.get(task, ()))
        out.append(ProtocolTable(f"{task}: one optimizer tuned versus the best of several at their defaults",
                                 ("tuned setting", f"tuned {keys.test_key}", "best default (by validation)",
                                  f"default {keys.test_key}", "gain of tuning", "Welch p"), rows,
                                 (("gain > 0: tuning beat the best default; best default selected by mean final "
                                   "validation metric (Schmidt et al. 2021)"),)))
    return out


def _algoperf(result: AlgoperfResult) -> list[ProtocolTable]:
    entries = tuple((e.task, e.submission, _num(e.seconds, "s"), _num(e.steps, "steps"),
                     f"{sum(1 for s in e.studies if math.isfinite(s.seconds))}/{len(e.studies)}",
                     str(sum(s.n_trials for s in e.studies))) for e in result.entries)
    p, q = result.profiles, result.steps_profiles
    scores = tuple((label, f"{p.score[label]:.3f}", f"{q.score[label]:.3f}", f"{p.mean_rank[label]:.2f}")
                   for label in sorted(p.labels, key=lambda s: (-p.score[s], s)))
    return [ProtocolTable("AlgoPerf-lite: median over studies of the fastest trial's time to target",
                          ("task", "submission", "median seconds", "median steps", "studies reaching", "trials"),
                          entries, ("never: fewer than half of the studies reached the target",)),
            ProtocolTable("AlgoPerf-lite: integrated performance profile score (tau in [1, 4])",
                          ("submission", "score (seconds)", "score (steps)", "mean rank (seconds)"), scores,
                          (("score: area under the performance profile over tau in [1, 4] divided by 3 "
                            "(Dahl et al. 2023); 1 = fastest on every task"),))]


def _search(result: SearchResult) -> list[ProtocolTable]:
    out = []
    for t in result.tasks:
        keys = result.keys.get(t.task)
        key = keys.valid_key if keys else result.objective
        costs = t.objectives[1:]
        front = {r.number for r in t.front}
        rows = tuple((str(r.number), _params(r.params), _num(r.value, key),
                      *(_cost(v, c) for v, c in zip(r.values[1:], costs, strict=False)), r.status,
                      "best" if t.best is not None and r.number == t.best.number else
                      "front, retrained" if r.number in front else "") for r in t.trials)
        notes = [f"{t.epochs_spent} epochs spent"]
        for f in t.front:
            notes.append(f"trial {f.number} {f.task} retrained on {f.valid.n} seeds: {key} "
                         f"{_mean_std(f.valid, key)} (search {_num(f.search_value, key)}), test "
                         f"{_mean_std(f.test, key)}")
        if t.tau is not None:
            notes.append(f"Kendall's tau, search-time vs retrained {key}: "
                         + ("n/a" if math.isnan(t.tau.tau) else f"{t.tau.tau:.3f} (p = {t.tau.p_value:.3g})")
                         + f" over {t.tau.n} architectures")
        if t.rerun_test is not None and keys is not None:
            notes.append(f"best re-run on {t.rerun_test.n} seeds: final {keys.test_key} "
                         f"{_mean_std(t.rerun_test, keys.test_key)} {_ci(t.rerun_test, keys.test_key)}")
            for b in t.baselines:
                notes.append(f"baseline {b.task}, same recipe and seeds: {_mean_std(b.test, keys.test_key)} "
                             f"{_ci(b.test, keys.test_key)}, Welch p = {b.p_value:.3g} against the best")
        out.append(ProtocolTable(f"{t.task}: search of {t.label} on {', '.join(t.objectives) or key}",
                                 ("trial", "parameters", key, *costs, "status", ""), rows, tuple(notes)))
    return out


def _continual(r: ContinualResult) -> list[ProtocolTable]:
    headers, rows, notes = r.table()
    return [ProtocolTable(f"continual learning over {len(r.tasks)} tasks", tuple(headers),
                          tuple(tuple(row) for row in rows), tuple(notes))]


_RENDERERS = {Seed004Result: _seed004, DeepobsResult: _deepobs, CrowdedValleyResult: _crowded_valley,
              AlgoperfResult: _algoperf, SearchResult: _search, ContinualResult: _continual}


def protocol_tables(result: Any) -> list[ProtocolTable]:
    """The tables of a protocol result.

    Raises:
        ConfigError: ``result`` is not a protocol result of :mod:`optbench.analysis.protocols`.
    """
    render = _RENDERERS.get(type(result))
    if render is None:
        raise ConfigError("protocol result", type(result).__name__, [t.__name__ for t in _RENDERERS])
    return render(result)


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def table_markdown(table: ProtocolTable) -> str:
    """One table as a GitHub Markdown table with its title as a heading and notes after it."""
    lines = [f"### {table.title}", "", "| " + " | ".join(_md_cell(h) for h in table.headers) + " |",
             "| " + " | ".join("---" for _ in table.headers) + " |"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    lines += [""] + [f"{note}\n" for note in table.notes]
    return "\n".join(lines) + "\n"


def protocol_markdown(result: Any, *, context: Mapping[str, str] | None = None) -> str:
    """``protocol.md``: the context lines (``- item: text``) then every table of ``result``."""
    parts = [f"# optbench study: {getattr(result, 'protocol', 'protocol')}\n"]
    if context:
        parts.append("\n".join(f"- {_md_cell(k)}: {_md_cell(v)}" for k, v in context.items()) + "\n")
    parts += [table_markdown(t) for t in protocol_tables(result)]
    return "\n".join(parts)


def protocol_rich_tables(result: Any) -> Sequence[Any]:
    """The tables of ``result`` as :class:`rich.table.Table` objects for the terminal."""
    from rich.markup import escape
    from rich.table import Table

    out = []
    for t in protocol_tables(result):  # escaped: task names such as nas_cnn[block=plain] are not markup
        table = Table(title=escape(t.title), caption=escape(" ".join(t.notes)) or None)
        for i, header in enumerate(t.headers):
            table.add_column(escape(header), justify="left" if i < 2 else "right")
        for row in t.rows:
            table.add_row(*map(escape, row))
        out.append(table)
    return out


__all__ = ["ProtocolTable", "protocol_markdown", "protocol_rich_tables", "protocol_tables", "table_markdown"]
