"""Schedule parameters: declarations, validation, step/epoch spellings, and ``k=v`` parsing."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from optbench.core.errors import ConfigError
from optbench.core.options import parse_options
from optbench.schedules.base import is_int, is_number

Kind = Literal["int", "float", "int_list", "choice", "bool", "str"]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: Default of a parameter that must be given.
REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Param:
    """One parameter of a schedule.

    Args:
        name: the keyword, e.g. ``"step_size"``.
        kind: ``int`` | ``float`` | ``int_list`` | ``choice`` | ``bool`` | ``str``.
        default: the value when not given; :data:`REQUIRED` when it must be given; ``None``
            when the builder derives it (e.g. ``decay_steps`` = the run's remaining steps).
        ok: range check of one value (after type coercion); ``None`` = any value of the kind.
        allowed: what ``ok`` accepts, for the error message.
        steps: a count of optimizer steps; then ``<name>_epochs`` (``warmup_steps`` ->
            ``warmup_epochs``) is accepted instead and multiplied by the steps per epoch.
        choices: the allowed strings of a ``choice``.
        doc: one line for ``optbench list schedules``.
    """

    name: str
    kind: Kind
    default: Any = REQUIRED
    ok: Callable[[Any], bool] | None = None
    allowed: str = ""
    steps: bool = False
    choices: tuple[str, ...] = ()
    doc: str = ""

    @property
    def epochs_name(self) -> str | None:
        """The epoch spelling of a step count (``warmup_epochs``, ``t0_epochs``), else None."""
        if not self.steps:
            return None
        return self.name[: -len("_steps")] + "_epochs" if self.name.endswith("_steps") else self.name + "_epochs"

    def describe(self) -> str:
        """``name=default`` (``auto`` when derived, ``name (required)``), with the epoch spelling."""
        if self.default is REQUIRED:
            text = f"{self.name} (required)"
        else:
            text = f"{self.name}={'auto' if self.default is None else repr(self.default)}"
        return text + (f" | {self.epochs_name}" if self.steps else "")

    def coerce(self, field: str, value: Any) -> Any:
        """``value`` checked for kind and range; lists become tuples, ints become floats where
        a float is expected.

        Raises:
            ConfigError: naming ``field``, when the kind or range is wrong.
        """
        allowed = self.allowed or _KIND_TEXT[self.kind]
        if self.kind == "int":
            good = is_int(value)
            value = int(value) if good else value
        elif self.kind == "float":
            good = is_number(value)
            value = float(value) if good else value
        elif self.kind == "int_list":
            if is_int(value):
                value = (value,)
            good = isinstance(value, list | tuple) and all(is_int(v) for v in value)
            value = tuple(int(v) for v in value) if good else value
        elif self.kind == "choice":
            good = value in self.choices
            allowed = self.allowed or ", ".join(self.choices)
        elif self.kind == "bool":
            good = isinstance(value, bool)
        else:
            good = isinstance(value, str) and value != ""
        if not good or (self.ok is not None and not self.ok(value)):
            raise ConfigError(field, value, allowed)
        return value

    def coerce_epochs(self, field: str, value: Any, steps_per_epoch: int | None) -> Any:
        """Check ``<name>_epochs`` (a number >= 0, or a list for ``int_list``) and, when
        ``steps_per_epoch`` is given, convert it to steps (``round(epochs * steps_per_epoch)``)
        and check the result as :meth:`coerce` would.

        Raises:
            ConfigError: naming ``field`` when the number of epochs or the converted steps are bad.
        """
        values = list(value) if self.kind == "int_list" and isinstance(value, list | tuple) else [value]
        if not all(is_number(v) and v >= 0 for v in values):
            raise ConfigError(field, value, "a number of epochs >= 0" + (" or a list of them"
                                                                        if self.kind == "int_list" else ""))
        if steps_per_epoch is None:
            return value
        steps = [int(round(v * steps_per_epoch)) for v in values]
        try:
            return self.coerce(field, steps if self.kind == "int_list" else steps[0])
        except ConfigError as exc:
            raise ConfigError(field, value, f"epochs whose steps (x {steps_per_epoch} per epoch) are "
                                            f"{exc.allowed}") from None


_KIND_TEXT = {"int": "an integer", "float": "a number", "int_list": "a list of integers",
              "choice": "", "bool": "true or false", "str": "a non-empty string"}


def resolve(schedule: str, declared: Iterable[Param], given: Mapping[str, Any],
            steps_per_epoch: int | None) -> dict[str, Any]:
    """Every declared parameter's value: given ones checked, the rest defaulted.

    Args:
        schedule: schedule name, for messages (``"cosine"``).
        declared: the schedule's parameters.
        given: user values; a step count may be given as ``<name>_epochs`` instead.
        steps_per_epoch: converts ``*_epochs`` values to steps; ``None`` only checks them
            (their value is then returned under the epochs name).

    Raises:
        ConfigError: an unknown name (listing the allowed ones), a parameter given in both
            spellings, a missing required one, or a bad value.
    """
    params = {p.name: p for p in declared}
    spellings = dict.fromkeys(params) | {p.epochs_name: p.name for p in params.values() if p.steps}
    for key in given:
        if key not in spellings:
            raise ConfigError(f"{schedule} schedule parameter", key, sorted(spellings))
    out: dict[str, Any] = {}
    for name, p in params.items():
        ename = p.epochs_name
        if name in given and ename is not None and ename in given:
            raise ConfigError(f"{schedule} {ename}", given[ename], f"either {name} or {ename}, not both")
        if name in given:
            out[name] = p.coerce(f"{schedule} {name}", given[name])
        elif ename is not None and ename in given:
            converted = p.coerce_epochs(f"{schedule} {ename}", given[ename], steps_per_epoch)
            out[name if steps_per_epoch is not None else ename] = converted
        elif p.default is REQUIRED:
            spelled = f"{name} or {ename}" if ename else name
            raise ConfigError(f"{schedule} {name}", None, f"required ({spelled}): {p.allowed or _KIND_TEXT[p.kind]}")
        else:
            out[name] = p.default
    return out


def parse_params(items: Iterable[str]) -> dict[str, Any]:
    """Parse CLI ``NAME=VALUE`` items into schedule parameters, by the literal rule of
    :mod:`optbench.core.options` (:func:`optbench.core.options.parse_options`).

    Values: integers (``30``), numbers (``0.1``, ``1e-3``), ``true``/``false``, lists as
    comma-separated numbers (``milestones=30,60,90`` -> ``[30, 60, 90]``), anything else a
    string (``mode=triangular2``). ``nan``/``inf`` stay strings (and are then rejected by the
    schedule's checks).

    Raises:
        ConfigError: for an item without ``=``, an empty name, or a name given twice.
    """
    return parse_options(items, field="schedule parameter", example="NAME=VALUE, e.g. gamma=0.5 or milestones=30,60")


__all__ = ["REQUIRED", "Param", "parse_params", "resolve"]
