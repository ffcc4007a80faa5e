"""The benchmark report: results.csv, results.md beside published figures, and the plots."""
from __future__ import annotations

import csv
import itertools
from pathlib import Path

import pytest
import torch

from da.bench.report import (
    COLUMNS,
    SELECTIONS,
    TABLE_SELECTIONS,
    Anchor,
    accuracy_figure,
    accuracy_plot,
    augmentation_note,
    load_anchors,
    markdown,
    summarize,
    write_csv,
)
from da.bench.tsne import add_to_projector, subsample, tsne_plot

ROOT = Path(__file__).resolve().parents[1]
ANCHORS_FILE = ROOT / "da" / "bench" / "anchors.yaml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def row(adapter: str, direction: str, seed: int, selection: str, acc: float, **kw) -> dict:
    return {"adapter": adapter, "direction": direction, "seed": seed, "selection": selection, "step": 100 * seed,
            "target_test_acc": acc, "source_test_acc": 0.99, "wall_s": 12.5, "run": f"{adapter}-{seed}", **kw}


def grid(adapters=("source_only", "dann", "target_only"), directions=("mnist->usps", "usps->mnist"),
         seeds=(0, 1)) -> list[dict]:
    """Every cell; accuracy 0.80 for seed 0 and 0.90 for seed 1 unless an adapter overrides it."""
    return [row(a, d, s, sel, 0.80 + 0.10 * s)
            for a, d, s, sel in itertools.product(adapters, directions, seeds, SELECTIONS)]


def table_row(md: str, heading: str, first_cell: str) -> list[str]:
    """The cells of the markdown table row starting with ``first_cell`` under ``heading``."""
    section = md.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} under {heading!r}:\n{section}")


# ---------------------------------------------------------------- csv

def test_csv_has_exactly_the_rows_given_in_order(tmp_path):
    rows = grid()[::-1]  # reversed: write_csv must sort
    path = tmp_path / "results.csv"
    write_csv(path, rows)
    with path.open() as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == COLUMNS
        read = list(reader)
    assert len(read) == len(rows)
    as_given = {(r["adapter"], r["direction"], str(r["seed"]), r["selection"], str(r["target_test_acc"]))
                for r in rows}
    assert {(r["adapter"], r["direction"], r["seed"], r["selection"], r["target_test_acc"]) for r in read} == as_given
    keys = [(r["direction"], r["adapter"], int(r["seed"]), SELECTIONS.index(r["selection"])) for r in read]
    assert keys == sorted(keys)


def test_csv_rejects_duplicates_and_missing_columns(tmp_path):
    with pytest.raises(ValueError, match="two result rows"):
        write_csv(tmp_path / "r.csv", [row("dann", "mnist->usps", 0, "last", 0.9)] * 2)
    bad = row("dann", "mnist->usps", 0, "last", 0.9)
    del bad["wall_s"]
    with pytest.raises(ValueError, match="wall_s"):
        write_csv(tmp_path / "r.csv", [bad])
    assert not (tmp_path / "r.csv").exists()


def test_rewriting_results_csv_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "results.csv"
    write_csv(path, grid(adapters=("dann",)))
    first = path.read_text()
    write_csv(path, grid(adapters=("mmd",)))
    assert "mmd" in path.read_text() and "dann" not in path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]  # no temporary file left

    # A write killed halfway leaves the old file whole and no temporary file behind.
    write_csv(path, grid(adapters=("dann",)))
    write_text = Path.write_text

    def dies_halfway(self, text, *args, **kwargs):
        write_text(self, text[: len(text) // 2], *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        write_csv(path, grid(adapters=("coral",)))
    monkeypatch.undo()
    assert path.read_text() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


# ---------------------------------------------------------------- summary and markdown

def test_summarize_sample_std_and_n():
    rows = [row("dann", "mnist->usps", s, "last", a) for s, a in enumerate((0.80, 0.90, 0.95))]
    rows.append(row("dann", "usps->mnist", 0, "last", 0.7))
    stats = {(s["direction"], s["adapter"], s["selection"]): s for s in summarize(rows)}
    three = stats["mnist->usps", "dann", "last"]
    assert three["n"] == 3
    assert three["mean"] == pytest.approx(0.88333333)
    assert three["std"] == pytest.approx(0.0763763, abs=1e-6)  # ddof=1; ddof=0 would give 0.0624
    one = stats["usps->mnist", "dann", "last"]
    assert (one["n"], one["mean"], one["std"]) == (1, pytest.approx(0.7), 0.0)


def test_markdown_cells_are_mean_and_sample_std_in_percent():
    md = markdown(grid(), [])
    cells = table_row(md, "## mnist->usps", "dann")
    assert cells[1:] == ["85.0 ± 7.1"] * len(TABLE_SELECTIONS)  # seeds 0.80, 0.90; the other validators: validators.md
    assert md.count("n = 2 seeds per cell.") == 2  # once per direction table


def test_markdown_notes_an_odd_cell_count():
    rows = grid(adapters=("dann",), directions=("mnist->usps",), seeds=(0, 1, 2))
    rows = [r for r in rows if not (r["selection"] == "im" and r["seed"] == 2)]
    cells = table_row(markdown(rows, []), "## mnist->usps", "dann")
    assert cells[3] == "85.0 ± 7.1 (n = 2)"
    assert cells[1] == "90.0 ± 10.0"


def test_results_say_when_runs_trained_on_augmented_batches():
    plain = {"data": {"augment": None}}
    augmented = {"data": {"augment": {"rotate": 10.0, "scale": [0.75, 1.3], "translate": 0.1, "domains": ["source"]}}}
    assert augmentation_note([plain, plain]) is None
    note = augmentation_note([augmented, augmented, plain])
    assert "2 of 3 runs" in note and '"scale": [0.75, 1.3]' in note
    md = markdown(grid(), [], notes=[note])
    assert md.index(note) < md.index("## mnist->usps")


def test_markdown_order_and_bounds_are_labelled():
    md = markdown(grid(adapters=("target_only", "mmd", "dann", "source_only")), [])
    section = md.split("## mnist->usps\n", 1)[1].split("\n## ", 1)[0]
    header = next(line for line in section.splitlines() if line.startswith("| adapter"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "adapter", "last", "source_val", "im", "snd", "entropy", "bnm", "oracle (target test, upper bound only)"]
    body = [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ")][1:]
    assert body[0].startswith("source_only")
    assert body[-1] == "target_only (upper bound: trained on target labels)"
    assert body[1:3] == ["dann", "mmd"]


# ---------------------------------------------------------------- anchors

def test_anchors_file_transcribes_the_published_figures():
    anchors = load_anchors(ANCHORS_FILE)
    by_key = {(a.protocol, a.method): a for a in anchors}
    assert (by_key["A", "DANN"].m_to_u, by_key["A", "DANN"].u_to_m) == (91.7, 95.2)
    assert (by_key["B", "source only"].m_to_u, by_key["B", "source only"].u_to_m) == (75.2, 57.1)
    assert (by_key["C", "DeepCORAL"].m_to_u, by_key["C", "target only"].u_to_m) == (97.1, 98.9)
    assert len(anchors) == 11 + 3 + 5 + 6 + 9 + 9
    assert by_key["S", "SHOT"].accuracy("mnist->usps_shot") == 97.9 and by_key["S", "SHOT"].m_to_u is None
    assert ("A", "SHOT") not in by_key, "SHOT's figures are on its own USPS division, not protocol A's"
    assert by_key["O31", "DANN"].accuracy("amazon->webcam") == 91.4 and by_key["O31", "DANN"].m_to_u is None
    assert by_key["OH", "MCC"].accuracy("real_world->product") == 85.6
    assert {a.protocol_description for a in anchors if a.protocol == "A"} == {
        "full sets, LeNet, USPS resized 16 -> 28 (ours)"}
    assert "oracle" in by_key["A", "CDAN"].selection
    header = ANCHORS_FILE.read_text().split("protocols:")[0]
    assert "Transfer-Learning-Library" in header and "SKADA-Bench" in header and "ADDA" in header
    assert ".md" not in header and "/" not in header  # names its sources, not file paths


def test_malformed_anchors_file_names_itself(tmp_path):
    bad = tmp_path / "anchors.yaml"
    bad.write_text("protocols:\n  - id: A\n    figures: [{method: DANN}]\n")
    with pytest.raises(ValueError, match="anchors.yaml"):
        load_anchors(bad)


def test_published_figures_sit_beside_the_matching_adapter():
    anchors = load_anchors(ANCHORS_FILE)
    md = markdown(grid(adapters=("source_only", "dann", "mmd", "cdan+mcc", "mine", "target_only")), anchors)
    published = md.split("## Published figures", 1)[1]
    lines = published.splitlines()

    def rows_for(adapter: str, direction: str) -> list[list[str]]:
        section = published.split(f"### {direction}\n", 1)[1].split("\n### ", 1)[0]
        return [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
                if line.startswith(f"| {adapter} |")]

    dann = rows_for("dann", "mnist->usps")
    assert [(r[1], r[4], r[5].split(":")[0]) for r in dann] == [
        ("DANN", "91.7", "Protocol A"), ("DANN", "77.1", "Protocol B"), ("DANN", "92.6", "Protocol C")]
    assert dann[0][5] == "Protocol A: full sets, LeNet, USPS resized 16 -> 28 (ours)"
    assert "Transfer-Learning-Library" in dann[0][6] and "ADDA paper" in dann[1][6]
    assert dann[0][2] == "85.0 ± 7.1" and dann[0][3] == "85.0 ± 7.1"  # ours: last, oracle
    assert [(r[1], r[4]) for r in rows_for("mmd", "usps->mnist")] == [("DAN", "89.5"), ("DAN", "86.3")]
    assert [(r[1], r[4], r[5].split(":")[0]) for r in rows_for("target_only", "usps->mnist")] == [
        ("target only", "98.9", "Protocol C")]
    # A composite or unknown adapter gets no published figure, not its parts' figures.
    assert rows_for("cdan+mcc", "mnist->usps") == [] and rows_for("mine", "mnist->usps") == []
    assert any(line.startswith("No published figure for: cdan+mcc, mine") for line in lines)
    assert any(line.startswith("- Protocol B: 2,000 MNIST / 1,800 USPS subsets") for line in lines)


def test_anchor_for_an_unknown_direction_is_left_out():
    anchor = Anchor("A", "desc", "DANN", 91.7, 95.2, "src")
    md = markdown([row("dann", "svhn->mnist", 0, "last", 0.5)], [anchor])
    assert "91.7" not in md and "95.2" not in md


def test_one_seed_writes_the_figure_without_a_spread():
    rows = grid(adapters=("source_only", "dann"), directions=("mnist->usps",), seeds=(0,))
    rows += [row("mmd", "mnist->usps", s, "last", a, score=0.5) for s, a in ((0, 0.8), (1, 0.9))]
    md = markdown(rows, [])
    assert table_row(md, "## mnist->usps", "dann")[1] == "80.0"  # not "80.0 ± 0.0"
    assert table_row(md, "## mnist->usps", "mmd")[1] == "85.0 ± 7.1 (n = 2)"  # two seeds keep their std
    assert "± 0.0" not in md


# ---------------------------------------------------------------- plots

def test_accuracy_plot_labels_each_bar_and_starts_where_the_differences_show():
    rows = [row(a, d, s, "last", acc + 0.01 * s)
            for a, acc in (("source_only", 0.75), ("dann", 0.92), ("target_only", 0.97))
            for d in ("mnist->usps", "usps->mnist") for s in (0, 1)]
    ax = accuracy_figure(rows).axes[0]
    labels = sorted(text.get_text() for text in ax.texts)
    assert labels == sorted(["75.5", "92.5", "97.5"] * 2)  # each bar's mean, in percent
    bottom, top = ax.get_ylim()
    assert 60 <= bottom <= 75 - 0.7  # below the lowest bar and its error bar, far above 0
    assert 97.5 < top <= 100
    close = [row(a, "mnist->usps", 0, "last", acc) for a, acc in (("dann", 0.92), ("mmd", 0.95))]
    assert accuracy_figure(close).axes[0].get_ylim()[0] >= 85  # 92 against 95 shows as a difference



def test_accuracy_plot_writes_a_png(tmp_path):
    path = tmp_path / "accuracy.png"
    accuracy_plot(grid(adapters=("source_only", "dann", "cdan+mcc", "target_only")), path)
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000
    accuracy_plot(grid(), path, selection="oracle")  # over an existing file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accuracy.png"]
    with pytest.raises(ValueError, match="no result rows"):
        accuracy_plot(grid(), tmp_path / "none.png", selection="no_such_rule")


def features(seed: int, n: int = 40, d: int = 64, shift: float = 0.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"source": torch.randn(n, d, generator=g), "target": torch.randn(n, d, generator=g) + shift}


def test_tsne_plot_writes_a_png(tmp_path):
    g = torch.Generator().manual_seed(0)
    labels = {k: torch.randint(0, 3, (40,), generator=g) for k in ("source", "target")}
    path = tmp_path / "tsne.png"
    tsne_plot(features(0, shift=3.0), features(1), path, labels=labels, per_domain=25, seed=0, max_iter=250)
    assert path.read_bytes()[:8] == PNG_MAGIC
    tsne_plot(features(0), features(1), path, per_domain=15, max_iter=250)  # no labels, over the old file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tsne.png"]


def test_subsample_picks_the_same_rows_before_and_after():
    labels = {"source": torch.arange(40), "target": torch.arange(40) + 100}
    before = subsample(features(0), labels, per_domain=10, seed=3)
    after = subsample(features(1), labels, per_domain=10, seed=3)
    assert before[1] == ["source"] * 10 + ["target"] * 10
    assert torch.equal(before[2], after[2])  # the same images on both panels
    assert not torch.equal(before[2], subsample(features(0), labels, per_domain=10, seed=4)[2])
    with pytest.raises(ValueError, match="labels"):
        subsample(features(0), {"source": torch.arange(3), "target": torch.arange(40)})


def test_projector_gets_points_with_domain_and_class(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    labels = {"source": torch.zeros(40, dtype=torch.long), "target": torch.ones(40, dtype=torch.long)}
    with SummaryWriter(log_dir=str(tmp_path)) as writer:
        add_to_projector(writer, *subsample(features(0), labels, per_domain=5), tag="after", step=7)
    metadata = next(tmp_path.rglob("metadata.tsv")).read_text().splitlines()
    assert metadata[0] == "domain\tclass"
    assert metadata[1:] == ["source\t0"] * 5 + ["target\t1"] * 5
    tensors = next(tmp_path.rglob("tensors.tsv")).read_text().splitlines()
    assert len(tensors) == 10 and len(tensors[0].split("\t")) == 64
    assert "after" in next(tmp_path.rglob("projector_config.pbtxt")).read_text()


def test_markdown_compute_section_sums_every_run_pretraining_included():
    walls = [{"direction": "mnist->usps", "adapter": a, "wall_s": w}
             for a, w in [("dann", 200.0), ("dann", 220.0), ("pretrain", 60.0), ("source_only", 100.0)]]
    md = markdown(grid(), [], walls)
    section = md.split("## Compute\n", 1)[1]
    body = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| mnist")]
    assert body == [["mnist->usps", "pretrain", "1", "60", "1.0"], ["mnist->usps", "source_only", "1", "100", "1.7"],
                    ["mnist->usps", "dann", "2", "210", "7.0"]]
    assert "In all: 4 runs, 9.7 min." in section
    assert "## Compute" not in markdown(grid(), [])


def test_markdown_per_class_section_averages_each_class_over_seeds():
    per_class = [{"direction": "mnist->usps", "adapter": "dann", "acc": [0.9, 0.5, None]},
                 {"direction": "mnist->usps", "adapter": "dann", "acc": [0.7, 0.6, 0.8]},
                 {"direction": "mnist->usps", "adapter": "source_only", "acc": [1.0, 0.25, None]}]
    md = markdown(grid(), [], per_class=per_class)
    assert table_row(md, "### mnist->usps", "dann") == ["dann", "80.0", "55.0", "80.0"]  # None: class absent
    assert table_row(md, "### mnist->usps", "source_only (no adaptation)")[1:] == ["100.0", "25.0", "-"]
    assert md.index("## Per class") < md.index("## Published figures")
    assert "## Per class" not in markdown(grid(), [])


# ---------------------------------------------------------------- grids of settings

def test_each_rule_picks_per_seed_the_setting_with_its_best_score():
    """mmd swept over two weights: the rules compare scores across the settings, seed by seed."""
    rows = []
    #            setting,          seed, im score, im acc, oracle acc, last acc
    for label, seed, im, im_acc, oracle, last in [("mmd@weight=1", 0, 2.0, 0.85, 0.86, 0.84),
                                                  ("mmd@weight=3", 0, 2.5, 0.80, 0.81, 0.79),
                                                  ("mmd@weight=1", 1, 2.2, 0.87, 0.88, 0.86),
                                                  ("mmd@weight=3", 1, 2.1, 0.83, 0.90, 0.82)]:
        common = {"family": "mmd"}
        rows += [row(label, "mnist->usps", seed, "im", im_acc, score=im, **common),
                 row(label, "mnist->usps", seed, "oracle", oracle, score=oracle, **common),
                 row(label, "mnist->usps", seed, "last", last, score=None, **common)]
    rows += [row("dann", "mnist->usps", s, sel, 0.9, score=None if sel == "last" else 0.5, family="dann")
             for s in (0, 1) for sel in ("im", "oracle", "last")]
    md = markdown(rows)
    heading = "### mnist->usps: mmd (2 settings)"
    assert table_row(md, heading, "im") == ["im", "83.5 ± 4.9", "0: weight=3, 1: weight=1"]
    assert table_row(md, heading, "oracle (target test, upper bound only)")[1:] == ["88.0 ± 2.8", "0: weight=1, 1: weight=3"]
    # weight=1's last checkpoints average 0.85, weight=3's 0.805.
    assert table_row(md, heading, "best setting in hindsight, last (upper bound only)")[1:] == [
        "85.0 ± 1.4", "weight=1 for every seed"]
    assert "dann (" not in md.split("## Settings picked without target labels", 1)[1]  # one setting: no grid


def test_no_settings_section_without_a_grid():
    assert "Settings picked" not in markdown(grid())


def test_grid_settings_are_listed_in_order_of_their_values():
    md = markdown(grid(adapters=("mmd@weight=10", "mmd@weight=3", "mmd@weight=0.3", "source_only")), [])
    section = md.split("## mnist->usps\n", 1)[1].split("\n## ", 1)[0]
    body = [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ")][1:]
    assert body == ["source_only (no adaptation)", "mmd@weight=0.3", "mmd@weight=3", "mmd@weight=10"]


def test_the_adapter_each_rule_would_pick_per_seed_target_only_aside():
    rows = []
    for adapter, accs, entropy in [("source_only", (0.75, 0.77), (-0.3, -0.3)), ("dann", (0.92, 0.93), (-0.2, -0.1)),
                                   ("entropy", (0.84, 0.85), (-0.05, -0.05)), ("target_only", (0.97, 0.97), (0.0, 0.0))]:
        for seed in (0, 1):
            rows += [row(adapter, "mnist->usps", seed, "entropy", accs[seed], score=entropy[seed]),
                     row(adapter, "mnist->usps", seed, "oracle", accs[seed], score=accs[seed]),
                     row(adapter, "mnist->usps", seed, "last", accs[seed], score=None)]
    md = markdown(rows)
    heading = "### mnist->usps: every adapter"
    # Entropy minimisation wins the entropy validator's vote; target_only never enters.
    assert table_row(md, heading, "entropy")[1:] == ["84.5 ± 0.7", "0: entropy, 1: entropy"]
    assert table_row(md, heading, "oracle (target test, upper bound only)")[1:] == ["92.5 ± 0.7", "0: dann, 1: dann"]
    assert table_row(md, heading, "best adapter in hindsight, last (upper bound only)")[1:] == [
        "92.5 ± 0.7", "dann for every seed"]
    assert "Adapter picked" not in markdown(grid())  # rows without scores: nothing to compare
