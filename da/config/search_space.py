"""Hyperparameter distributions for ``da tune``: each adapter and stage declares, beside its defaults,
the range a search draws each hyperparameter from (DomainBed's ``hparams_registry`` idea, Gulrajani &
Lopez-Paz 2021, kept on the class it belongs to). ``--space KEY=SPEC`` gives or replaces one."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import yaml

from da.errors import DAError


@dataclass(frozen=True)
class Param:
    """A distribution: ``log`` (log-uniform on [low, high]), ``uniform``, ``int`` (integers in
    [low, high]) or ``choice`` (one of ``values``)."""

    kind: str
    low: float = 0.0
    high: float = 0.0
    values: tuple[Any, ...] = ()

    def suggest(self, trial: Any, name: str) -> Any:
        """The value an Optuna trial draws for ``name``."""
        if self.kind == "choice":
            return trial.suggest_categorical(name, list(self.values))
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high))
        return trial.suggest_float(name, self.low, self.high, log=self.kind == "log")

    def middle(self) -> Any:
        """A value inside the range (the config is checked with it before a search starts)."""
        if self.kind == "choice":
            return self.values[0]
        if self.kind == "int":
            return int(self.low)
        return (self.low * self.high) ** 0.5 if self.kind == "log" else (self.low + self.high) / 2

    def describe(self) -> str:
        return f"choice {list(self.values)}" if self.kind == "choice" else f"{self.kind} [{self.low:g}, {self.high:g}]"


def log_uniform(low: float, high: float) -> Param:
    return Param("log", low, high)


def uniform(low: float, high: float) -> Param:
    return Param("uniform", low, high)


def integers(low: int, high: int) -> Param:
    return Param("int", low, high)


def choice(values: Sequence[Any]) -> Param:
    return Param("choice", values=tuple(values))


def check_param(key: str, param: Param) -> Param:
    """``param`` if its range is not empty; else a one-line error naming ``key``."""
    if param.kind == "choice":
        if not param.values:
            raise DAError(f"search space {key}: choice has no value; give at least one, e.g. {key}=choice:0.1,1")
    elif not param.low < param.high:
        raise DAError(f"search space {key}: empty range [{param.low:g}, {param.high:g}]; give low < high, "
                      f"e.g. {key}=log:0.1:10")
    elif param.kind == "log" and param.low <= 0:
        raise DAError(f"search space {key}: a log range must be positive, got [{param.low:g}, {param.high:g}]")
    return param


def parse_space_flag(flag: str) -> tuple[str, Param]:
    """``KEY=log:LOW:HIGH``, ``KEY=uniform:LOW:HIGH``, ``KEY=int:LOW:HIGH`` or ``KEY=choice:A,B,...``."""
    key, sep, spec = flag.partition("=")
    kind, _, rest = spec.partition(":")
    example = "e.g. --space adapter.weight=log:0.1:10"
    if not sep or not key.strip() or kind not in ("log", "uniform", "int", "choice"):
        raise DAError(f"--space {flag!r} must look like KEY=log:LOW:HIGH, KEY=uniform:LOW:HIGH, KEY=int:LOW:HIGH "
                      f"or KEY=choice:A,B; {example}")
    key = key.strip()
    if kind == "choice":
        return key, check_param(key, choice([yaml.safe_load(v) for v in rest.split(",") if v.strip()]))
    bounds = rest.split(":")
    try:
        low, high = (float(b) for b in bounds)
    except ValueError:
        raise DAError(f"--space {flag!r}: {kind} needs two numbers LOW:HIGH; {example}") from None
    return key, check_param(key, Param(kind, low, high))
