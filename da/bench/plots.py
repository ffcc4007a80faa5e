"""accuracy.png: a benchmark's accuracy per adapter and direction as bars."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from da.bench.aggregate import FIRST, LAST, Row, adapter_rank, summarize
from da.run_files import replace_atomically

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def accuracy_plot(rows: Sequence[Row], path: Path | str, selection: str = "last") -> None:
    """Write accuracy.png (:func:`accuracy_figure`) atomically."""
    fig = accuracy_figure(rows, selection)
    replace_atomically(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=120))


def accuracy_figure(rows: Sequence[Row], selection: str = "last") -> "Figure":
    """accuracy.png's figure: one bar group per adapter, one bar per direction, each labelled with its mean,
    error bars = std over seeds; dashed lines mark source_only's mean per direction. The accuracy
    axis starts just below the lowest bar (less its std), where the differences show, not at 0."""
    # Imported here, for start-up time: matplotlib loads only when a figure is drawn.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    stats = [s for s in summarize(rows) if s["selection"] == selection]
    if not stats:
        raise ValueError(f"no result rows with selection {selection!r} to plot")
    directions = sorted({s["direction"] for s in stats})
    adapters = sorted({s["adapter"] for s in stats}, key=adapter_rank)
    cells = {(s["adapter"], s["direction"]): s for s in stats}
    width = 0.8 / len(directions)

    fig = Figure(figsize=(max(6.0, 1.1 * len(adapters) + 2), 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lows: list[float] = []
    highs: list[float] = []
    for i, direction in enumerate(directions):
        colour = f"C{i}"
        xs = [j + (i - (len(directions) - 1) / 2) * width for j in range(len(adapters))]
        found = [cells.get((a, direction)) for a in adapters]
        means = [100 * s["mean"] if s else math.nan for s in found]
        stds = [100 * s["std"] if s else 0.0 for s in found]
        bars = ax.bar(xs, means, width, yerr=stds, capsize=3, color=colour, label=direction)
        ax.bar_label(bars, labels=["" if math.isnan(m) else f"{m:.1f}" for m in means], padding=2, fontsize="small")
        lows += [m - s for m, s in zip(means, stds) if not math.isnan(m)]
        highs += [m + s for m, s in zip(means, stds) if not math.isnan(m)]
        baseline = cells.get((FIRST, direction))
        if baseline:
            ax.axhline(100 * baseline["mean"], color=colour, linestyle="--", linewidth=1, zorder=3,
                       label=f"{FIRST} mean, {direction}")
    ax.set_xticks(range(len(adapters)), [_tick_label(a) for a in adapters], rotation=20, ha="right")
    ax.set_ylim(*accuracy_axis(lows, highs))
    ax.set_ylabel("target test accuracy (%)")
    seeds = sorted({s["n"] for s in stats})
    ax.set_title(f"Target test accuracy, selection: {selection}" + (" (upper bound only)" if selection == "oracle"
                 else "") + f"\nerror bars: std over {'/'.join(map(str, seeds))} seeds")
    fig.legend(loc="outside right upper", fontsize="small")
    return fig


def _tick_label(adapter: str) -> str:
    return f"{adapter}\n(upper bound)" if adapter == LAST else adapter


def accuracy_axis(lows: Sequence[float], highs: Sequence[float]) -> tuple[float, float]:
    """The accuracy axis (%): from a round 5 below the lowest bar (mean - std), so that bars of 92 and
    95 differ visibly, to a little above the highest (room for the value labels), within [0, 100]."""
    bottom = max(0.0, 5 * math.floor((min(lows) - 2) / 5))
    top = min(100.0, max(highs) + 0.1 * (max(highs) - bottom) + 1)
    return bottom, max(top, bottom + 1)
