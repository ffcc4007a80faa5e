"""What a data set is to ``da``: a typed record in ``da.registry.DATASETS``, registered one way.

Every name ``data.source`` / ``data.target`` takes stands for a ``DatasetEntry``. An in-memory data
set (``mnist``, the generated digit domains) carries the function that loads it; a named image
folder (``amazon``) carries its folder spec, read through the backbone's input configuration
(``da.data.image_domain``). ``register_dataset`` (a decorator on a loader) and
``register_image_folder`` both make one and put it in the registry; a separate package does the
same from a module named in the ``da.datasets`` entry-point group. An inline ``{folder: DIR}`` in a
config is an unregistered entry of its own (``dataset_entry``). An in-memory data set may take
options, declared as keyword-only parameters of its loader (``da.data.dataset_options``); a config
gives them beside its name, ``{name: mnist_c, corruption: fog}`` (``dataset_spec``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from da.data.dataset_options import DatasetOption, check_options, declared_options, domain_name, split_spec
from da.data.domain import DomainData
from da.data.image_domain import ImageOptions, describe, load_image_domain
from da.data.label_sets import split_classes
from da.errors import DAError
from da.models.pretrained import IMAGENET, PretrainedCfg
from da.registry import DATASETS, Record, doc_line

#: ``loader(root, download, role, **options) -> DomainData``: ``root`` is the data root, ``download``
#: whether it may fetch missing files, ``role`` ``"source"`` or ``"target"`` (a synthetic pair draws
#: each side); keyword-only parameters after them are the data set's options (``da.data.dataset_options``).
Loader = Callable[..., DomainData]


@dataclass(frozen=True)
class DatasetEntry(Record):
    """A registered data set: how to load it, and what is known of it before loading.

    Exactly one of ``loader`` (in memory) and ``image_spec`` (a folder or list: the keys of
    ``da.data.image_domain.SPEC_KEYS``) is set.
    """

    name: str
    #: One line for listings and messages (by default the loader's docstring's first line).
    description: str
    loader: Loader | None = None
    image_spec: Mapping[str, Any] | None = None
    #: The number of classes, when known before loading; None: counted when loaded (image folders).
    num_classes: int | None = None
    #: Built and cached under the data root on first use (syndigits, mnist_m, optdigits): a dry run
    #: does not build it, since a first build can take a minute.
    generated: bool = False
    #: The options a config may give beside the name (the loader's keyword-only parameters).
    options: tuple[DatasetOption, ...] = ()

    def __post_init__(self) -> None:
        if (self.loader is None) == (self.image_spec is None):
            raise DAError(f"dataset {self.name!r} needs exactly one of a loader (an in-memory data set) and an "
                          f"image_spec (a folder or list)")
        if self.generated and self.image_spec is not None:
            raise DAError(f"dataset {self.name!r} is an image folder: it is read from disk, not generated")

    @property
    def origin(self) -> str:
        if self.loader is None:
            return f"the image folder {describe(dict(self.image_spec))} ({self.name})"
        return f"{self.loader.__module__}.{self.loader.__qualname__}"

    def load(self, root: Path, role: str, download: bool = False, input_cfg: PretrainedCfg = IMAGENET,
             options: ImageOptions | None = None, kwargs: Mapping[str, Any] | None = None) -> DomainData:
        """The domain's train and test splits. ``input_cfg`` (the backbone's input) and ``options``
        (the ``data`` keys of file-backed domains) shape an image folder's splits; an in-memory
        loader needs neither. ``kwargs`` are the data set's options (checked here; a domain loaded
        with options other than the defaults is named after them, ``mnist_c/fog/5``). A declared
        ``num_classes`` is checked against the data."""
        if self.image_spec is not None:
            check_options(self.name, (), kwargs or {}, f"data.{role}")
            data = load_image_domain(dict(self.image_spec), f"data.{role}", root, input_cfg, options or ImageOptions())
        else:
            values = check_options(self.name, self.options, kwargs or {}, f"data.{role}")
            data = self.loader(root, download, role, **values)
            name = domain_name(self.name, self.options, values)
            if name != self.name:
                data = dataclasses.replace(data, name=name)
        if self.num_classes is not None and data.num_classes != self.num_classes:
            raise DAError(f"dataset {self.name} is registered with {self.num_classes} classes but its data under "
                          f"{root} has {data.num_classes}; check the files, or the registration's num_classes")
        return data


def register_dataset(name: str, *, num_classes: int | None = None, generated: bool = False,
                     description: str | None = None) -> Callable[[Loader], Loader]:
    """Decorator: register ``loader(root, download, role, *, option=default, ...) -> DomainData`` as the
    in-memory data set ``name`` (a ``DatasetEntry``); its keyword-only parameters are the options a
    config may give (``da.data.dataset_options``). Returns the loader unchanged. A name already
    taken is a DAError."""

    def decorate(loader: Loader) -> Loader:
        entry = DatasetEntry(name, description if description is not None else doc_line(loader),
                             loader=loader, num_classes=num_classes, generated=generated,
                             options=declared_options(loader))
        DATASETS.register(name)(entry)
        return loader

    return decorate


def register_image_folder(name: str, folder: str, *, num_classes: int | None = None,
                          description: str | None = None, **spec: Any) -> DatasetEntry:
    """Register ``name`` as the image folder ``folder`` (relative to the data root, or absolute);
    ``spec`` takes the other keys of an inline spec (``test_fraction``, ``classes``, ...)."""
    where = f"<data root>/{folder}" if not Path(folder).is_absolute() else folder
    entry = DatasetEntry(name, description if description is not None else f"Image folder {where}",
                         image_spec={"folder": folder, **spec}, num_classes=num_classes)
    DATASETS.register(name)(entry)
    return entry


def dataset_entry(value: str | Mapping[str, Any]) -> DatasetEntry:
    """The entry ``data.source`` / ``data.target`` stands for: a registered name's (a name, or
    ``{name: NAME, option: value}``), or, for an inline spec (``{folder: DIR}``), an unregistered
    entry named after its folder or list. Its options are not checked here (``dataset_spec`` does)."""
    value, _ = split_classes(value)
    if isinstance(value, Mapping) and "name" not in value:
        return DatasetEntry(describe(dict(value)), "an image folder or list given in the config",
                            image_spec=dict(value))
    return DATASETS.get(value["name"] if isinstance(value, Mapping) else value)


def dataset_spec(value: str | Mapping[str, Any], key: str = "data.source") -> tuple[DatasetEntry, dict[str, Any]]:
    """The entry ``value`` (a ``data.source`` / ``data.target`` at ``key``) stands for, and its
    options checked, every one of them (defaults filled in): ``mnist`` gives (mnist's entry, {}),
    ``{name: mnist_c, corruption: fog}`` (mnist_c's, {corruption: fog, severity: 5}), and an inline
    image spec (an unregistered entry, {}). A ``classes`` list (``da.data.label_sets``) is not an
    option: it is set aside here. Errors are one line naming the key."""
    value, _ = split_classes(value)
    if isinstance(value, Mapping) and "name" not in value:
        return dataset_entry(value), {}
    if not isinstance(value, Mapping):
        entry = DATASETS.get(value)
        return entry, check_options(value, entry.options, {}, key)
    name, given = split_spec(value, key)
    try:
        entry = DATASETS.get(name)
    except DAError as exc:
        raise DAError(f"config key {key}.name: {exc}") from None
    folder = [k for k in given if k in ("folder", "list") and k not in {o.name for o in entry.options}]
    if folder:
        raise DAError(f"config key {key} has both name (a registered data set) and {folder[0]} (an image folder "
                      f"or list); give one of them")
    return entry, check_options(name, entry.options, given, key)


def spec_label(value: str | Mapping[str, Any] | list) -> str:
    """``data.source`` / ``data.target`` in a message: ``mnist``, ``mnist_c/fog/5``, a folder's name,
    several sources joined by ``+``."""
    if isinstance(value, list):
        return "+".join(spec_label(v) for v in value)
    entry, options = dataset_spec(value)
    return domain_name(entry.name, entry.options, options)
