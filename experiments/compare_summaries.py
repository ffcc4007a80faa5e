"""Compare the summary.json of runs made by two versions of da, field for field, timings aside.

A refactoring that should change nothing is checked so: run the same configs with the old commit
(from a git worktree) and with the new one, then

    python experiments/compare_summaries.py OLD_DIR NEW_DIR

where each folder holds one run folder per config (``OLD_DIR/dann/summary.json``, ...). It prints,
per run, ``same`` or the fields that differ (a list or a mapping is compared whole, and its first
differing entry is shown), and exits 1 when any run differs.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

#: Fields that measure time or the machine, not results (da.train.summary.TIMING_FIELDS and the torch build).
IGNORED = ("wall_s", "train_s", "train_imgs_per_s", "torch", "device")


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """Where ``a`` and ``b`` first differ (a dotted path, with the two values), or None when equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys(), key=str):
            found = first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if a == b else f"{path}: {a!r} -> {b!r}"


def compare(old: Path, new: Path) -> list[str]:
    """The fields of two summary.json files that differ (with their first difference)."""
    a, b = (json.loads((p / "summary.json").read_text()) for p in (old, new))
    out = []
    for key in sorted(a.keys() | b.keys()):
        if key in IGNORED:
            continue
        found = first_difference(a.get(key), b.get(key), key)
        if found:
            out.append(found)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    args = parser.parse_args()
    runs = sorted(p.name for p in args.old.iterdir() if (p / "summary.json").is_file() and (args.new / p.name / "summary.json").is_file())
    if not runs:
        print(f"no run folder with a summary.json in both {args.old} and {args.new}", file=sys.stderr)
        return 2
    differ = False
    for name in runs:
        found = compare(args.old / name, args.new / name)
        differ = differ or bool(found)
        print(f"{name}: " + ("same" if not found else f"{len(found)} fields differ"))
        for line in found:
            print(f"  {line[:300]}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
