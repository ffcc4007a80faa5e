"""The figures of each label-set setting, from a confusion matrix over the target test split.

- closed and partial: accuracy over the target's images (``target_test_acc``); partial counts only
  the target's classes, since its images hold no other.
- open-set and universal (``da.data.label_sets``; ``unknown`` is one more class, the last row):
  OS, the mean per-class accuracy with unknown as a class, and OS*, the same over the known
  (shared) classes alone (Saito et al., "Open set domain adaptation by backpropagation", ECCV 2018);
  UNK, the unknown class's accuracy; and the H-score, the harmonic mean of OS* and UNK (Fu et al.,
  "Learning to detect open classes for universal domain adaptation", ECCV 2020), which the field now
  reports for both settings because OS rewards a model that calls nothing unknown.
"""
from __future__ import annotations

from torch import Tensor

#: summary.json's and metrics.jsonl's fields for the open settings.
OPEN_METRICS: tuple[str, ...] = ("os", "os_star", "unknown_acc", "h_score")


def open_set_metrics(confusion: Tensor, known: list[int], unknown: int) -> dict[str, float]:
    """OS, OS*, UNK and H-score from ``confusion`` (rows: true class, columns: prediction) over the
    target's ``known`` classes (their indices) and the ``unknown`` class. A class without images is
    left out of the means."""
    def recall(c: int) -> float | None:
        n = confusion[c].sum().item()
        return confusion[c, c].item() / n if n else None

    known_acc = [a for a in (recall(c) for c in known) if a is not None]
    unk = recall(unknown)
    os_star = sum(known_acc) / len(known_acc) if known_acc else 0.0
    every = known_acc + ([unk] if unk is not None else [])
    unk = unk if unk is not None else 0.0
    h = 2 * os_star * unk / (os_star + unk) if os_star + unk > 0 else 0.0
    return {"os": sum(every) / len(every) if every else 0.0, "os_star": os_star, "unknown_acc": unk, "h_score": h}
