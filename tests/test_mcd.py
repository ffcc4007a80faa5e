"""MCD (Saito et al. 2018): the discrepancy and the three sub-steps."""
from __future__ import annotations

import torch

from da.adapters.mcd import discrepancy


def test_discrepancy_is_the_mean_absolute_difference_of_the_softmax_outputs():
    a = torch.tensor([[10.0, -10.0], [0.0, 0.0]])
    b = torch.tensor([[-10.0, 10.0], [0.0, 0.0]])
    assert torch.isclose(discrepancy(a, b), torch.tensor(0.5), atol=1e-4)  # row 1: |1-0| twice; row 2: 0
    assert discrepancy(a, a) == 0


def drive_one_step(model, adapter, batch):
    """One MCD step through the loop's optimizers; per sub-step, which parts moved."""
    from da.train.skeleton import make_optimizer
    from da.stages.base import OptimSettings

    settings = OptimSettings(lr=0.1)
    optimizers = {k: make_optimizer(groups, 0.1, settings)[0] for k, groups in adapter.optimizers(model).items()}
    parts = {"extractor": model.extractor, "head": model.head, "head_2": adapter.head_2}
    moved = []
    for update in adapter.update(model, batch, progress=0.0, log=False):
        before = {k: [p.detach().clone() for p in m.parameters()] for k, m in parts.items()}
        names = update.optimizer_names()
        for name in names:
            optimizers[name].zero_grad(set_to_none=True)
        update.loss.backward()
        for name in names:
            optimizers[name].step()
        moved.append({k for k, m in parts.items()
                      if any(not torch.equal(a, p) for a, p in zip(before[k], m.parameters()))})
    return moved


def test_the_three_steps_touch_the_parts_the_paper_says():
    from da.adapters.mcd import MCD
    from da.train.model import Model

    torch.manual_seed(0)
    extractor = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.ReLU())
    model = Model(extractor, torch.nn.Linear(8, 3), MCD(feature_dim=8, num_classes=3, num_k=2))
    batch = {"source": (torch.randn(6, 1, 3, 4), torch.tensor([0, 1, 2, 0, 1, 2])),
             "target": (torch.randn(6, 1, 3, 4) + 1, torch.full((6,), -1))}
    moved = drive_one_step(model, model.adapter, batch)
    assert moved == [{"extractor", "head", "head_2"},  # A: source cross-entropy through everything
                     {"head", "head_2"},               # B: classifiers maximise the discrepancy
                     {"extractor"}, {"extractor"}]     # C (num_k times): extractor minimises it


def test_mcd_runs_and_resumes_exactly_mid_stage(tmp_path, monkeypatch):
    from conftest import tiny_config
    from methods_helpers import resumed_equals_uninterrupted

    config = {**tiny_config(), "adapter": {"name": "mcd", "num_k": 2}}
    resumed_equals_uninterrupted(config, tmp_path, monkeypatch, "adapt", 3)
