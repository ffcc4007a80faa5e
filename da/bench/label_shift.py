"""results.md's section for the open label-set settings (open-set, universal): per direction, each
adapter's OS, OS*, UNK and H-score at the last checkpoint and at each label-free pick
(``da.train.label_metrics``), mean ± std over seeds. The main tables' target accuracy counts
"unknown" as one more class there; the H-score is the figure the field compares."""
from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any, Sequence

from da.train.label_metrics import OPEN_METRICS

HEADERS = {"os": "OS", "os_star": "OS*", "unknown_acc": "UNK", "h_score": "H-score"}


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    mean = 100 * statistics.fmean(values)
    std = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {std:.1f}" if len(values) > 1 else f"{mean:.1f}"


def label_shift_section(rows: Sequence[dict[str, Any]], selections: Sequence[str] = ("last", "source_val")) -> list[str]:
    """Markdown lines (empty when no row has an H-score)."""
    open_rows = [r for r in rows if r.get("h_score") not in (None, "")]
    if not open_rows:
        return []
    lines = ["## Open-set and universal figures", "",
             "OS (mean per-class accuracy, unknown as one class), OS* (the known classes), UNK (the unknown class) "
             "and the H-score (harmonic mean of OS* and UNK, Fu et al. 2020), %, mean ± std over seeds. "
             "`oracle` picks by H-score here and reads target labels: an upper bound only.", ""]
    for direction in sorted({r["direction"] for r in open_rows}):
        cells: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        for r in open_rows:
            if r["direction"] == direction:
                for key in OPEN_METRICS:
                    cells[r["adapter"], r["selection"], key].append(float(r[key]))
        adapters = sorted({a for a, _, _ in cells}, key=lambda a: (a.split("+")[0] != "source_only", a))
        picks = [s for s in (*selections, "oracle") if any(k[1] == s for k in cells)]
        lines += [f"### {direction}", "",
                  "| adapter | selection | " + " | ".join(HEADERS[k] for k in OPEN_METRICS) + " |",
                  "|---|---|" + "---|" * len(OPEN_METRICS)]
        for adapter in adapters:
            for pick in picks:
                if (adapter, pick, "h_score") in cells:
                    lines.append(f"| {adapter} | {pick} | " + " | ".join(_cell(cells[adapter, pick, k]) for k in OPEN_METRICS)
                                 + " |")
        lines.append("")
    return lines
