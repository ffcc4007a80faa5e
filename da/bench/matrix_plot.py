"""matrix.png: target accuracy per (source domain, target domain), one panel per adapter.

A benchmark over many domains (configs/benchmarks/digits_pairs.yaml, digits_multi_source.yaml)
reads better as a grid than as bars: rows are source domains (a multi-source run's sources are
joined by ``+``), columns target domains, the colour and the number in a cell the mean target
test accuracy over seeds (std below it), an empty cell a pair the benchmark does not run.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from da.bench.plan import parse_direction
from da.bench.aggregate import Row, adapter_rank, summarize
from da.run_files import replace_atomically


def matrix_cells(rows: Sequence[Row], selection: str = "last") -> dict[str, dict[tuple[str, str], tuple[float, float, int]]]:
    """adapter -> {(source, target): (mean %, std %, seeds)} for the rows of ``selection``."""
    out: dict[str, dict[tuple[str, str], tuple[float, float, int]]] = {}
    for s in summarize(rows):
        if s["selection"] == selection:
            out.setdefault(s["adapter"], {})[parse_direction(s["direction"])] = (100 * s["mean"], 100 * s["std"], s["n"])
    return out


def wants_matrix(rows: Sequence[Row]) -> bool:
    """More than one source or more than one target among the rows' directions."""
    pairs = {parse_direction(str(r["direction"])) for r in rows}
    return len({s for s, _ in pairs}) > 1 or len({t for _, t in pairs}) > 1


def matrix_plot(rows: Sequence[Row], path: Path | str, selection: str = "last") -> None:
    """Write matrix.png atomically: one source x target heat map per adapter (colour 0-100%)."""
    # Imported here, for start-up time: matplotlib loads only when a figure is drawn.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cells = matrix_cells(rows, selection)
    if not cells:
        raise ValueError(f"no result rows with selection {selection!r} to plot")
    adapters = sorted(cells, key=adapter_rank)
    pairs = {pair for grid in cells.values() for pair in grid}
    sources = sorted({s for s, _ in pairs})
    targets = sorted({t for _, t in pairs})
    columns = min(4, len(adapters))
    panel_rows = math.ceil(len(adapters) / columns)
    side = 0.75
    fig = Figure(figsize=(columns * (1.6 + side * len(targets)), panel_rows * (1.0 + side * len(sources))),
                 layout="constrained")
    FigureCanvasAgg(fig)
    image = None
    for i, adapter in enumerate(adapters):
        ax = fig.add_subplot(panel_rows, columns, i + 1)
        grid = [[cells[adapter].get((s, t), (math.nan, 0.0, 0))[0] for t in targets] for s in sources]
        image = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto")
        for r, s in enumerate(sources):
            for c, t in enumerate(targets):
                if (s, t) in cells[adapter]:
                    mean, std, n = cells[adapter][(s, t)]
                    text = f"{mean:.1f}" + (f"\n±{std:.1f}" if n > 1 else "")
                    ax.text(c, r, text, ha="center", va="center", fontsize=7, color="white" if mean < 60 else "black")
        ax.set_xticks(range(len(targets)), targets, rotation=30, ha="right", fontsize=7)
        ax.set_yticks(range(len(sources)), sources if i % columns == 0 else [""] * len(sources), fontsize=7)
        ax.set_title(adapter, fontsize=9)
    seeds = sorted({n for grid in cells.values() for _, _, n in grid.values()})
    fig.suptitle(f"Target test accuracy (%), rows: source, columns: target; selection: {selection}; "
                 f"seeds per cell: {'/'.join(map(str, seeds))}", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=fig.axes, shrink=0.8, label="target test accuracy (%)")
    replace_atomically(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=120))
