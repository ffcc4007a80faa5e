"""MCD (Saito et al. 2018): the discrepancy, the paper's classifiers and the three sub-steps."""
from __future__ import annotations

from types import SimpleNamespace

import torch

from da.stages.base import OptimSettings
from da.stages.mcd import MCD, classifier, discrepancy
from da.train.model import Model
from da.train.skeleton import make_optimizer


def test_discrepancy_is_the_mean_absolute_difference_of_the_softmax_outputs():
    a = torch.tensor([[10.0, -10.0], [0.0, 0.0]])
    b = torch.tensor([[-10.0, 10.0], [0.0, 0.0]])
    assert torch.isclose(discrepancy(a, b), torch.tensor(0.5), atol=1e-4)  # row 1: |1-0| twice; row 2: 0
    assert discrepancy(a, a) == 0


def test_each_classifier_is_three_layers_with_batch_norm_and_dropout():
    head = classifier(8, 3, hidden=16)
    kinds = [type(m).__name__ for m in head]
    assert kinds.count("Linear") == 3 and kinds.count("BatchNorm1d") == 2 and kinds.count("Dropout") == 2
    assert head(torch.randn(5, 8)).shape == (5, 3)


class Recorder(torch.nn.Module):
    """The extractor, recording the batch-size and domain mix of every forward."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.ReLU())
        self.out_features = 8
        self.seen: list[str] = []

    def forward(self, x):
        mean = float(x.mean())  # source images have mean ~0, target ones ~5, a batch of both ~2.5
        self.seen.append("source" if mean < 1 else "target" if mean > 4 else "both")
        return self.net(x)


def one_step(num_k: int = 2):
    """One MCD step through the loop's optimizers: per sub-step, which parts moved; the extractor's inputs."""
    torch.manual_seed(0)
    model = Model(Recorder(), torch.nn.Linear(8, 3), torch.nn.Identity())
    run = SimpleNamespace(model=model, device=torch.device("cpu"), domains=SimpleNamespace(num_classes=3),
                          config=SimpleNamespace(train=SimpleNamespace(steps=10)))
    stage = MCD(num_k=num_k, hidden=16)
    stage.fill_slots(run, fresh=True)
    optimizers = {k: make_optimizer(groups, 0.1, OptimSettings(lr=0.1))[0] for k, groups in stage.optimizers(run, 0).items()}
    parts = {"extractor": model.extractor, "head": model.head, "head_2": model.head_2}
    batch = {"source": (torch.randn(6, 1, 3, 4), torch.tensor([0, 1, 2, 0, 1, 2])),
             "target": (torch.randn(6, 1, 3, 4) * 0.01 + 5, torch.full((6,), -1))}
    moved = []
    for update in stage.step(SimpleNamespace(run=run, steps=10), 1, batch, log=False):
        before = {k: [p.detach().clone() for p in m.parameters()] for k, m in parts.items()}
        for name in update.optimizer_names():
            optimizers[name].zero_grad(set_to_none=True)
        update.loss.backward()
        for name in update.optimizer_names():
            optimizers[name].step()
        moved.append({k for k, m in parts.items() if any(not torch.equal(a, p) for a, p in zip(before[k], m.parameters()))})
    return moved, model.extractor.seen


def test_the_three_steps_touch_the_parts_the_paper_says():
    moved, _ = one_step(num_k=2)
    assert moved == [{"extractor", "head", "head_2"},  # A: source cross-entropy through everything
                     {"head", "head_2"},               # B: classifiers maximise the discrepancy
                     {"extractor"}, {"extractor"}]     # C (num_k times): extractor minimises it


def test_every_forward_sees_one_domain_so_batch_norm_never_mixes_them():
    _, seen = one_step(num_k=2)
    assert seen == ["source", "source", "target", "target", "target"]  # A; B: source then target; C twice


def test_mcd_runs_and_resumes_exactly_mid_stage(tmp_path, monkeypatch):
    from conftest import tiny_config
    from methods_helpers import resumed_equals_uninterrupted

    config = {**tiny_config(), "adapter": {"name": "mcd", "num_k": 2, "hidden": 16}}
    resumed_equals_uninterrupted(config, tmp_path, monkeypatch, "mcd", 3)
