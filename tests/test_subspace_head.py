"""Subspace alignment with the paper's 1-nearest-neighbour classifier (Fernando et al. 2013)."""
from __future__ import annotations

import pytest
import torch

from da.cli import main
from da.composition import build_config, train
from da.errors import DAError
from da.models.head import NearestNeighbourHead
from da.stages.subspace import SubspaceAlignment
from conftest import one_line_error, tiny_config


def test_nearest_neighbour_head_predicts_the_label_of_the_most_similar_bank_row():
    g = torch.Generator().manual_seed(0)
    bank, labels = torch.randn(50, 6, generator=g), torch.arange(50) % 5
    head = NearestNeighbourHead(5, bank, labels)
    queries = torch.randn(30, 6, generator=g)
    cosine = torch.nn.functional.normalize(queries, dim=1) @ torch.nn.functional.normalize(bank, dim=1).T
    assert torch.equal(head(queries).argmax(1), labels[cosine.argmax(1)])
    assert torch.allclose(head(bank[:5]).max(1).values, torch.full((5,), 1 / head.temperature), atol=1e-4)


def test_nearest_neighbour_head_round_trips_through_a_state_dict_into_an_empty_head():
    head = NearestNeighbourHead(3, torch.randn(20, 4), torch.arange(20) % 3)
    empty = NearestNeighbourHead(3)
    with pytest.raises(RuntimeError, match="empty bank"):
        empty(torch.randn(2, 4))
    empty.load_state_dict(head.state_dict())
    x = torch.randn(7, 4)
    assert torch.equal(empty(x), head(x))


def test_subspace_nn_classifies_by_aligned_source_neighbours():
    """fit with labels gives init_head a bank of aligned source features: a source feature is its own neighbour."""
    adapter = SubspaceAlignment(10, dims=4)
    f_s, f_t, y_s = torch.randn(60, 10), torch.randn(60, 10) + 1.0, torch.arange(60) % 3
    adapter.fit(f_s, f_t, y_s=y_s)
    head = adapter.init_head(torch.nn.Linear(10, 3))
    assert isinstance(head, NearestNeighbourHead) and not list(head.parameters())
    assert torch.equal(head(adapter(f_s, "source")).argmax(1), y_s)


def subspace_config(**train_section) -> dict:
    cfg = tiny_config(train={"extractor": "freeze", "fit_samples": 64, **train_section})
    cfg["adapter"] = {"name": "subspace", "dims": 8}
    return cfg


def test_a_subspace_nn_run_evaluates_once_and_da_eval_reproduces_it(tmp_path, capsys):
    run_dir = tmp_path / "sa"
    run_dir.mkdir()
    summary = train(build_config(subspace_config(steps=0)), run_dir, show_progress=False)
    assert [row["step"] for row in summary["history"]] == [0]
    assert summary["selection"]["im"]["step"] == 0
    assert main(["eval", str(run_dir)]) == 0
    assert "matches summary.json" in capsys.readouterr().out


def test_a_subspace_nn_run_with_training_steps_is_refused_when_the_config_is_read():
    with pytest.raises(DAError, match="train.steps must be 0, not 5; set train.steps: 0"):
        build_config(subspace_config(steps=5))


def test_subspace_on_named_blocks_fits_their_features_and_reloads(tmp_path, capsys):
    """adapter.blocks: the adapter fits and transforms LeNet's conv2 maps (800) next to its fc
    features (500), the checkpoint records them, and ``da eval`` rebuilds the model from the run folder."""
    cfg = subspace_config(steps=0)
    cfg["adapter"].update(blocks=["conv2", "fc"], standardize=True)
    run_dir = tmp_path / "sa"
    run_dir.mkdir()
    summary = train(build_config(cfg), run_dir, show_progress=False)
    state = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert state["transform"]["mean_s"].shape == (1300,) and state["transform"]["basis_s"].shape == (1300, 8)
    assert 0.0 <= summary["target_test_acc"] <= 1.0
    assert main(["eval", str(run_dir)]) == 0
    assert "matches summary.json" in capsys.readouterr().out


def test_an_unknown_subspace_block_is_refused_with_the_blocks_listed(write_config, cli):
    cfg = subspace_config(steps=0)
    cfg["adapter"]["blocks"] = ["conv2", "conv3"]
    code, _, err = cli("train", "-c", str(write_config(cfg)))
    assert code != 0
    assert one_line_error(err) == ("da: error: config key adapter.blocks: no block 'conv3'; backbone lenet has "
                                   "blocks (bottom to top): conv1, conv2, fc")
