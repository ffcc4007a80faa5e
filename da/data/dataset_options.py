"""Options of a registered in-memory data set: ``data.target: {name: mnist_c, corruption: fog, severity: 3}``.

A loader declares its options as keyword-only parameters after ``(root, download, role)``: the
annotation is the option's type (``Literal[...]`` for a fixed set of values), a default makes it
optional. There is no other declaration to keep in step with the loader::

    @register_dataset("mnist_c", num_classes=10, generated=True)
    def mnist_c(root, download, role, *, corruption: Corruption, severity: Severity = 5) -> DomainData: ...

A config names the data set and gives its options beside the name; a bare name is the data set
with every option at its default (and is refused when an option has none). Each value is checked
against its option's type before a run folder exists; every error is one line naming the key.

The domain a set of options gives is named after them (``domain_name``): ``mnist_c/fog/3``, so that
two option sets of one data set stay apart when several domains are pooled (``da.data.multi_source``).
"""
from __future__ import annotations

import difflib
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

from da.config.types import check_type, show_value
from da.errors import DAError

#: The default of an option that has none: a config must give it.
REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class DatasetOption:
    """One option a loader declares: its name, its type (a ``Literal`` lists its values) and its default."""

    name: str
    hint: Any = Any
    default: Any = REQUIRED

    @property
    def choices(self) -> tuple | None:
        """The values a ``Literal`` option takes; None for any other type."""
        return typing.get_args(self.hint) if typing.get_origin(self.hint) is Literal else None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def describe(self) -> str:
        """``severity: 1|2|3|4|5 = 5``: the name, the values or type, and the default if there is one."""
        choices = self.choices
        kind = "|".join(map(str, choices)) if choices else _type_name(self.hint)
        return f"{self.name}: {kind}" + ("" if self.required else f" = {self.default!r}")

    def check(self, value: Any, path: str) -> Any:
        """``value`` checked against the option's type (a one-line DAError naming ``path`` if it does not fit)."""
        choices = self.choices
        if choices is None:
            return check_type(value, self.hint, path)
        for choice in choices:  # True is not 1, nor "5" 5: the type must match too
            if type(choice) is type(value) and choice == value:
                return value
        near = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1) if isinstance(value, str) else []
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise DAError(f"config key {path} must be one of {', '.join(map(str, choices))}; got {show_value(value)}{hint}")


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def declared_options(loader: Callable[..., Any]) -> tuple[DatasetOption, ...]:
    """The options of ``loader``: its keyword-only parameters, with their annotations and defaults."""
    params = [p for p in inspect.signature(loader).parameters.values() if p.kind is p.KEYWORD_ONLY]
    hints = typing.get_type_hints(loader) if params else {}
    return tuple(DatasetOption(p.name, hints.get(p.name, Any), p.default) for p in params)


def check_options(dataset: str, declared: tuple[DatasetOption, ...], given: Mapping[str, Any], key: str) -> dict[str, Any]:
    """Every option of ``dataset``, in declared order: the value ``given`` (checked), else the default.

    ``key`` is where the options sit in the config (``data.target``), for the messages: an option the
    data set does not take, one given to a data set that takes none, a value of the wrong type or
    outside the option's values, and a required option left out are each a one-line DAError.
    """
    by_name = {o.name: o for o in declared}
    for name in given:
        if not by_name:
            raise DAError(f"config key {key}.{name}: dataset {dataset} takes no options; give its name alone "
                          f"({key}: {dataset})")
        if name not in by_name:
            near = difflib.get_close_matches(str(name), by_name, n=1, cutoff=0.5)
            hint = f"did you mean {key}.{near[0]}? " if near else ""
            raise DAError(f"config key {key}.{name} is not an option of dataset {dataset}; {hint}it takes: "
                          f"{'; '.join(o.describe() for o in declared)}")
    out = {}
    for option in declared:
        if option.name in given:
            out[option.name] = option.check(given[option.name], f"{key}.{option.name}")
        elif option.required:
            example = ", ".join(f"{o.name}: {_example(o)}" for o in declared if o.required)
            raise DAError(f"config key {key}.{option.name} is missing: dataset {dataset} needs it ({option.describe()}); "
                          f"give it beside the name, e.g. {key}: {{name: {dataset}, {example}}}")
        else:
            out[option.name] = option.default
    return out


def _example(option: DatasetOption) -> str:
    choices = option.choices
    return str(choices[0]) if choices else "..."


def domain_name(dataset: str, declared: tuple[DatasetOption, ...], options: Mapping[str, Any]) -> str:
    """The name of the domain ``options`` give: ``dataset`` when every option is at its default, else
    the data set's name and every option's value in declared order (``mnist_c/fog/5``; a list's
    items joined by commas: ``usps/0,1,2``)."""
    if all(not o.required and options.get(o.name, o.default) == o.default for o in declared):
        return dataset
    values = [options.get(o.name, o.default) for o in declared]
    return "/".join([dataset, *(",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v) for v in values)])


def show_options(options: Mapping[str, Any]) -> str:
    """``corruption=fog, severity=5``: options as messages and listings show them."""
    return ", ".join(f"{k}={v}" for k, v in options.items())


def split_spec(value: Mapping[str, Any], key: str) -> tuple[str, dict[str, Any]]:
    """``{name: NAME, option: value, ...}`` as (NAME, its options); the name must be a string."""
    options = dict(value)
    name = options.pop("name")
    if not isinstance(name, str):
        raise DAError(f"config key {key}.name must be a dataset name (a string), got {show_value(name)}")
    return name, options
