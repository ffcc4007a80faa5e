"""Which classes each domain holds, and the setting the two sets give.

A data spec may name the classes a domain keeps: ``data.target: {name: usps, classes: [0, 1, 2, 3, 4]}``
(class indices or names for an in-memory data set, folder names for an image folder). The two sets
give the setting (Panareda Busto & Gall, ICCV 2017, for open-set; Cao et al., ECCV 2018, for partial;
You et al., CVPR 2019, for universal domain adaptation):

- ``closed``: the same classes on both sides;
- ``partial``: the target's classes are a strict subset of the source's (source-private classes);
- ``open_set``: the target also holds classes the source lacks (target-private), to be predicted
  as "unknown";
- ``universal``: both sides hold private classes.

The head predicts the source's classes, in the source's label order. A target image of a shared
class is labelled with that class's source index; an image of a target-private class is labelled
``unknown`` (the number of source classes): that is all a run keeps of it. Its own class is read
once, here, to drop it or to make it unknown, and never after.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import torch

from da.data.domain import DomainData
from da.errors import DAError
from da.registry import DATASETS

Setting = Literal["closed", "partial", "open_set", "universal"]
SETTINGS: tuple[str, ...] = ("closed", "partial", "open_set", "universal")
#: The settings in which a target image may belong to no source class.
OPEN_SETTINGS: tuple[str, ...] = ("open_set", "universal")


@dataclass(frozen=True)
class LabelSets:
    """The classes of each domain (names), the source's in label order."""

    source: tuple[str, ...]
    target: tuple[str, ...]

    @property
    def shared(self) -> tuple[str, ...]:
        return tuple(c for c in self.source if c in self.target)

    @property
    def source_private(self) -> tuple[str, ...]:
        return tuple(c for c in self.source if c not in self.target)

    @property
    def target_private(self) -> tuple[str, ...]:
        return tuple(c for c in self.target if c not in self.source)

    @property
    def setting(self) -> Setting:
        partial, open_ = bool(self.source_private), bool(self.target_private)
        return "universal" if partial and open_ else "open_set" if open_ else "partial" if partial else "closed"

    @property
    def open(self) -> bool:
        """True when a target image may belong to no source class (open-set and universal)."""
        return self.setting in OPEN_SETTINGS

    @property
    def unknown(self) -> int:
        """The label of a target-private image, and the model's 'unknown' prediction: the number of source classes."""
        return len(self.source)

    def target_indices(self) -> list[int]:
        """The labels the target test split holds: its shared classes' source indices, then ``unknown`` if open."""
        known = [self.source.index(c) for c in self.shared]
        return known + ([self.unknown] if self.open else [])

    def record(self) -> dict[str, Any]:
        """What summary.json and ``da data`` show."""
        return {"setting": self.setting, "source": list(self.source), "target": list(self.target),
                "shared": list(self.shared), "source_private": list(self.source_private),
                "target_private": list(self.target_private)}

    def describe(self) -> str:
        """One line: the setting and the shared and private classes."""
        parts = [f"setting {self.setting}: {len(self.shared)} shared classes ({show(self.shared)})"]
        if self.source_private:
            parts.append(f"source-private {show(self.source_private)}")
        if self.target_private:
            parts.append(f"target-private {show(self.target_private)} (predicted as unknown)")
        return "; ".join(parts)


def show(names: Sequence[str], most: int = 12) -> str:
    return ", ".join(names[:most]) + (f" ... ({len(names)})" if len(names) > most else "")


def split_classes(value: Any) -> tuple[Any, list | None]:
    """``{name: usps, classes: [0, 1]}`` -> (``usps``, [0, 1]); a spec without ``classes``, an image
    folder's spec (its ``classes`` is its own key), a data set whose loader takes an option named
    ``classes`` and a list of data sets come back unchanged, with None."""
    if not isinstance(value, Mapping) or "name" not in value or "classes" not in value:
        return value, None
    if value["name"] in DATASETS and "classes" in {o.name for o in DATASETS.get(value["name"]).options}:
        return value, None
    rest = {k: v for k, v in value.items() if k != "classes"}
    return (rest["name"] if len(rest) == 1 else rest), value["classes"]


def class_names(domain: DomainData) -> list[str]:
    """A domain's classes in label order: an image folder's names, else ``0`` .. ``num_classes - 1``."""
    names = getattr(domain, "classes", None)
    return list(names) if names else [str(i) for i in range(domain.num_classes)]


def check_classes(classes: Any, available: list[str], domain: str, key: str) -> list[str]:
    """The names ``classes`` (a config's list) picks from ``available``, in ``available``'s order."""
    if not isinstance(classes, list) or not classes:
        raise DAError(f"config key {key}.classes must be a non-empty list of class indices or names, got {classes!r}")
    names = []
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, (int, str)):
            raise DAError(f"config key {key}.classes holds {c!r}: give class indices (0, 1, ...) or class names")
        names.append(str(c))
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DAError(f"config key {key}.classes names class {twice[0]} twice; list each class once")
    missing = [n for n in names if n not in available]
    if missing:
        raise DAError(f"config key {key}.classes names {', '.join(missing[:5])}, which {domain} does not have "
                      f"(its classes: {show(available)})")
    return [n for n in available if n in names]


def resolve(source: list[str], target: list[str], declared: str | None, explicit: bool, where: str) -> LabelSets:
    """The label sets of a run, checked: a shared class at least, and the setting ``declared``
    (``data.setting``) if one is. Two domains whose own classes differ when no ``classes`` list was
    given (``explicit`` False) and no setting declared is an error, as a misnamed folder would be."""
    sets = LabelSets(tuple(source), tuple(target))
    if not sets.shared:
        raise DAError(f"source and target share no class ({where}: source {show(source)}; target {show(target)}); "
                      f"the classes lists must overlap")
    if declared is not None and declared != sets.setting:
        reason = {"closed": "the two class sets are the same",
                  "partial": f"target lacks source classes {show(sets.source_private)}",
                  "open_set": f"target classes {show(sets.target_private)} are not in the source",
                  "universal": f"target lacks source classes {show(sets.source_private)} and its classes "
                               f"{show(sets.target_private)} are not in the source"}[sets.setting]
        raise DAError(f"config key data.setting is {declared}, but {reason}: that is the {sets.setting} setting; set "
                      f"data.setting: {sets.setting}, or change the classes lists")
    if declared is None and not explicit and sets.setting != "closed":
        raise DAError(f"source and target classes differ ({where}): source lacks {show(sets.target_private) or 'none'}, "
                      f"target lacks {show(sets.source_private) or 'none'}; for a label-set shift say so with "
                      f"data.setting: {sets.setting} (or list each domain's classes), else fix the class folders")
    return sets


def relabel(domain: DomainData, names: list[str], new_label: Mapping[str, int]) -> DomainData:
    """``domain`` with only the images of the classes ``names`` (each split), labelled ``new_label[name]``."""
    own = class_names(domain)
    lut = torch.full((len(own),), -1, dtype=torch.long)
    for name in names:
        lut[own.index(name)] = new_label[name]

    def keep(split):
        y = split.y.cpu()
        index = torch.nonzero((y >= 0) & (lut[y.clamp(min=0)] >= 0)).squeeze(1)
        part = split.subset(index)
        return dataclasses.replace(part, y=lut[part.y.cpu()].to(part.y.device))

    return dataclasses.replace(domain, train=keep(domain.train), test=keep(domain.test))


def restrict(source: DomainData, target: DomainData, source_classes: list | None, target_classes: list | None,
             declared: str | None, explicit: bool = False) -> tuple[DomainData, DomainData, LabelSets]:
    """Source and target keeping the classes their specs list, labelled in the source's label space
    (target-private classes as ``unknown``), and their label sets. ``explicit``: a spec listed its
    classes itself (an image folder's ``classes``), so differing sets are meant."""
    source_names, target_names = class_names(source), class_names(target)
    src = check_classes(source_classes, source_names, source.name, "data.source") if source_classes else source_names
    tgt = check_classes(target_classes, target_names, target.name, "data.target") if target_classes else target_names
    sets = resolve(src, tgt, declared, explicit or bool(source_classes or target_classes), f"{source.name} -> {target.name}")
    if sets.setting == "closed" and src == source_names and tgt == target_names and src == tgt:
        return source, target, sets  # nothing to drop or map
    source_label = {c: i for i, c in enumerate(sets.source)}
    target_label = {c: source_label.get(c, sets.unknown) for c in sets.target}
    source = dataclasses.replace(relabel(source, src, source_label), num_classes=len(src))
    target = dataclasses.replace(relabel(target, tgt, target_label), num_classes=len(src))
    return source, target, sets
