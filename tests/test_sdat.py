"""SDAT (Rangwani et al., ICML 2022) as ``train.sam_rho``: the adapt stage's sharpness-aware step.

Each step first climbs ``rho`` along the normalised gradient of the task loss alone (the adapter's
discriminator gets none, so it is not perturbed), then takes the full loss there and steps from the
weights before the climb (val-iisc/SDAT, ``examples/cdan_sdat.py``). The SAM optimizer is
``da.train.sam`` (tests/test_sam.py checks it alone); these tests watch it inside a run.
"""
from __future__ import annotations

import torch

from da.stages.adapt import Adapt
from da.train.sam import SAM
from conftest import one_line_error, tiny_config

RHO = 0.05
SDAT = tiny_config(adapter={"name": "dann", "hidden": 8}, train={"sam_rho": RHO, "steps": 4, "eval_every": 4})


def test_each_adapt_step_climbs_rho_along_the_normalised_task_gradient_and_restores_before_the_update(tmp_path, monkeypatch):
    from da.composition import build_config, train

    seen: dict = {"climbs": [], "restored": []}
    begin, first_step, restore = Adapt.begin, SAM.first_step, SAM.restore

    def watch_begin(self, ctx):
        seen["model"] = ctx.run.model
        begin(self, ctx)

    def watch_first_step(self, zero_grad=False):
        params = [p for g in self.param_groups for p in g["params"]]
        before = {p: p.detach().clone() for p in params}
        grads = {p: p.grad.detach().clone() for p in params if p.grad is not None}
        first_step(self, zero_grad)
        seen["climbs"].append((before, grads, {p: p.detach().clone() for p in params}))

    def watch_restore(self):
        restore(self)
        if seen["climbs"] and len(seen["restored"]) < len(seen["climbs"]):
            seen["restored"].append({p: p.detach().clone() for p in seen["climbs"][-1][0]})

    monkeypatch.setattr(Adapt, "begin", watch_begin)
    monkeypatch.setattr(SAM, "first_step", watch_first_step)
    monkeypatch.setattr(SAM, "restore", watch_restore)
    (tmp_path / "run").mkdir()
    train(build_config(SDAT), tmp_path / "run", show_progress=False)

    model = seen["model"]
    assert len(seen["climbs"]) == 4 and len(seen["restored"]) == 4, "one climb and one restore per step"
    adapter = {id(p) for p in model.adapter.parameters()}
    for (before, grads, after), restored in zip(seen["climbs"], seen["restored"]):
        assert not any(id(p) in adapter for p in grads), "the climb's loss is the task loss: no discriminator gradient"
        assert any(id(p) in {id(q) for q in model.extractor.parameters()} for p in grads)
        norm = torch.stack([g.norm() for g in grads.values()]).norm()
        for p, w in before.items():
            expected = w + RHO * grads[p] / (norm + 1e-12) if p in grads else w
            assert torch.allclose(after[p], expected, atol=1e-7), "w + rho g / ||g||"
            assert torch.equal(restored[p], w), "back to w, bitwise, before the base optimizer steps"


def test_sdat_resumes_exactly(tmp_path, monkeypatch):
    from methods_helpers import resumed_equals_uninterrupted

    resumed_equals_uninterrupted(SDAT, tmp_path, monkeypatch, "adapt", 2)


def test_sdat_changes_the_run(tmp_path):
    from da.composition import build_config, train

    def run(rho: float) -> float:
        (tmp_path / str(rho)).mkdir()
        cfg = {**SDAT, "train": {**SDAT["train"], "sam_rho": rho}}
        return train(build_config(cfg), tmp_path / str(rho), show_progress=False)["source_val_acc"]

    assert run(0.0) != run(0.5)


def test_a_negative_rho_is_one_line_before_a_run_folder(cli, write_config):
    path = write_config({**SDAT, "train": {**SDAT["train"], "sam_rho": -0.1}})
    code, _, err = cli("train", "-c", path, "--out", path.parent / "run")
    assert code == 2 and "train.sam_rho" in one_line_error(err)
    assert not (path.parent / "run").exists()


def test_sam_rho_with_a_stage_that_trains_in_its_own_way_is_one_line(cli, write_config):
    for extra in ({"adapter": {"name": "mcd"}},
                  {"adapter": {"name": "source_only"}, "stages": ["pretrain", {"name": "self_train", "steps": 2}]}):
        path = write_config({**SDAT, **extra})
        code, _, err = cli("train", "-c", path, "--dry-run")
        assert code == 2 and "train.sam_rho" in one_line_error(err)
