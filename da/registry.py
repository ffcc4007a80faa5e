"""Name -> entry registries for adapters, stages, datasets and backbones, with entry-point plugins.

Modelled on timm's ``@register_model``, but a duplicate name is an error, and third-party packages
can add entries through ``importlib.metadata`` entry points: groups ``da.adapters``, ``da.stages``,
``da.datasets`` and ``da.backbones``. Adapters and stages are registered as classes; data sets and
backbones as typed records (``Record`` subclasses: ``da.data.dataset_entry.DatasetEntry``,
``da.models.backbone_entry.BackboneEntry``), made by ``register_dataset`` / ``register_backbone``.
"""
from __future__ import annotations

import difflib
import importlib.metadata
import warnings
from typing import Callable, Generic, Iterator, TypeVar

from da.errors import DAError

T = TypeVar("T")


class Record:
    """Base of the typed records a registry holds for a data set or a backbone.

    A record names the function that makes its object (``origin``), so that a name registered
    twice is reported as where each registration came from.
    """

    name: str

    @property
    def origin(self) -> str:
        """Where the record comes from, for messages: its loader's or factory's ``module.qualname``,
        or the folder it names."""
        raise NotImplementedError


class Registry(Generic[T]):
    """A mapping from names to registered objects (classes, or ``Record``s)."""

    def __init__(self, kind: str, entry_point_group: str | None = None, maker: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        #: For a registry of records: the decorator that makes them (a bare function is refused).
        self.maker = maker
        self._entries: dict[str, T] = {}
        self._plugins_loaded = False
        self.plugin_errors: list[str] = []
        #: ``prefix -> resolver``: names ``prefix/rest`` made on demand (``timm/convnext_tiny``).
        self._families: dict[str, Callable[[str], T]] = {}
        self._resolved: dict[str, T] = {}  # family names asked for so far (not listed by names())

    def add_family(self, prefix: str, resolver: Callable[[str], T]) -> None:
        """Names ``prefix/<rest>`` resolve through ``resolver(rest)`` when first asked for (timm's and
        open_clip's thousands of models are not listed one by one); it raises a one-line DAError
        for a rest it does not know."""
        if prefix in self._families and self._families[prefix] is not resolver:
            raise DAError(f"{self.kind} family {prefix!r} is already registered")
        self._families[prefix] = resolver

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")``. Raises DAError if the name is taken."""

        def decorate(obj: T) -> T:
            if self.maker is not None and not isinstance(obj, Record):
                raise DAError(f"{self.kind} {name!r} ({_where(obj)}) is not a record; register it with "
                              f"@{self.maker}({name!r}, ...)")
            if name in self._entries and not _same(self._entries[name], obj):
                previous = self._entries[name]
                raise DAError(
                    f"{self.kind} name {name!r} is already registered by "
                    f"{_where(previous)}; {_where(obj)} must pick another name"
                )
            self._entries[name] = obj
            return obj

        return decorate

    def get(self, name: str) -> T:
        """The entry called ``name``; a DAError listing the valid names if there is none."""
        self.load_plugins()
        prefix, slash, rest = name.partition("/")
        if name not in self._entries and slash and prefix in self._families:
            if name not in self._resolved:
                self._resolved[name] = self._families[prefix](rest)
            return self._resolved[name]
        if name not in self._entries:
            hint = difflib.get_close_matches(name, self._entries, n=1)
            near = f" (did you mean {hint[0]!r}?)" if hint else ""
            families = "".join(f", {p}/<name>" for p in self._families)
            raise DAError(f"unknown {self.kind} {name!r}{near}; valid names: {', '.join(self.names())}{families}")
        return self._entries[name]

    def names(self) -> list[str]:
        self.load_plugins()
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        for name in self.names():
            yield name, self._entries[name]

    def __contains__(self, name: object) -> bool:
        self.load_plugins()
        if isinstance(name, str) and name not in self._entries and name.partition("/")[0] in self._families:
            try:
                self.get(name)
            except DAError:
                return False
            return True
        return name in self._entries

    def load_plugins(self) -> None:
        """Import every entry point of the group once; a broken plugin is reported, not fatal."""
        if self._plugins_loaded or self.entry_point_group is None:
            return
        self._plugins_loaded = True
        for ep in importlib.metadata.entry_points(group=self.entry_point_group):
            package = ep.dist.name if ep.dist is not None else ep.value
            try:
                ep.load()
            except Exception as exc:  # a plugin's bug must not take the working adapters down
                message = f"{self.kind} plugin {ep.name!r} from package {package!r} failed to load: {exc}"
                self.plugin_errors.append(message)
                warnings.warn(message, stacklevel=2)


def doc_line(obj: object) -> str:
    """The first line of ``obj``'s docstring ('' for none): a registered entry's default description."""
    lines = (obj.__doc__ or "").strip().splitlines()
    return lines[0].strip() if lines else ""


def _same(registered: object, obj: object) -> bool:
    """The same class or function, or an equal record (the same registration made again)."""
    return registered is obj or (isinstance(obj, Record) and registered == obj)


def _where(obj: object) -> str:
    if isinstance(obj, Record):
        return obj.origin
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


ADAPTERS: Registry = Registry("adapter", entry_point_group="da.adapters")
#: ``da.data.dataset_entry.DatasetEntry`` records, registered with ``da.data.register_dataset``.
DATASETS: Registry = Registry("dataset", entry_point_group="da.datasets", maker="register_dataset")
#: ``da.models.backbone_entry.BackboneEntry`` records, registered with ``da.models.register_backbone``.
BACKBONES: Registry = Registry("backbone", entry_point_group="da.backbones", maker="register_backbone")
STAGES: Registry = Registry("stage", entry_point_group="da.stages")

register_adapter = ADAPTERS.register


def register_stage(name: str):
    """Decorator for a ``da.stages.base.Stage`` subclass: registers it and sets its ``name``."""
    def decorate(cls):
        cls.name = name
        return STAGES.register(name)(cls)

    return decorate
