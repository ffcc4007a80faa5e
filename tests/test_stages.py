"""A run as a list of stages: a stage written outside da/ runs through the shared skeleton, the
TensorBoard axis and evaluation rows continue across stages, exact resume inside a later stage,
and bad stage lists get one line."""
from __future__ import annotations

import json
from typing import Iterator

import pytest
import torch
import torch.nn.functional as F

from conftest import one_line_error, stop_at, tiny_config
from da.checkpoint import load_checkpoint
from da.composition import build_config, train
from da.errors import DAError
from da import Adapter, register_adapter
from da.registry import ADAPTERS, STAGES, register_stage
from da.stages.base import ParamGroup, Stage, Update
from da.composition.stages import stage_specs
from da.train import TIMING_FIELDS


class HeadOnTarget(Stage):
    """A test stage: the head alone, trained to minimise the entropy of target predictions, reading
    only target batches; ``state_dict`` counts the target images it saw (resumed exactly)."""

    label = "head tuning"

    def __init__(self, steps: int = 6, lr: float = 0.05) -> None:
        self.n, self.lr, self.seen = steps, lr, 0

    def steps(self, run) -> int:
        return self.n

    def optimizers(self, run, done):
        return {"head": [ParamGroup("head", run.model.head)]}

    def samplers(self, run):
        return {"target": run.domains.target_train.sampler(8, run.generator)}

    def step(self, ctx, step, batch, log) -> Iterator[Update]:
        x, y = batch["target"]
        assert (y == -1).all()  # target labels are hidden from every stage
        self.seen += len(x)
        with torch.no_grad():
            f = ctx.run.model.features(x)
        p = F.softmax(ctx.run.model.head(f), 1)
        loss = -(p * p.clamp_min(1e-8).log()).sum(1).mean()
        yield Update(loss, "head", {"head_tuning/entropy": loss.detach()} if log else {})

    def images_per_step(self, run) -> int:
        return 8

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = state["seen"]


if "head_on_target" not in STAGES:
    register_stage("head_on_target")(HeadOnTarget)

STAGE_CONFIG = tiny_config(stages=["pretrain", "adapt", {"name": "head_on_target", "steps": 6}],
                           train={"steps": 6, "batch_size": 16, "eval_every": 3, "log_every": 1, "checkpoint_every": 2})


def test_a_stage_from_outside_da_runs_after_adaptation_on_one_axis(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    summary = train(build_config(STAGE_CONFIG), out, show_progress=False)
    assert [s["name"] for s in summary["stages"]] == ["pretrain", "adapt", "head_on_target"]
    # Evaluation rows number the steps after pretraining in one sequence: adapt 3, 6; then 9, 12.
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in rows] == [("pretrain", 4), ("adapt", 3), ("adapt", 6),
                                                       ("head_on_target", 9), ("head_on_target", 12)]
    assert [h["step"] for h in summary["history"]] == [3, 6, 9, 12]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tb")).Reload()
    # TensorBoard's global step: pretraining 1-4, adaptation 5-10, the new stage 11-16.
    assert [e.step for e in events.Scalars("head_tuning/entropy")] == list(range(11, 17))
    assert [e.step for e in events.Scalars("lr/head.head")] == list(range(11, 17))
    state = load_checkpoint(out / "checkpoint.pt")
    assert (state["stage"], state["stage_index"], state["step"]) == ("head_on_target", 2, 6)
    assert state["stage_state"] == {"seen": 48}


def test_the_new_stage_trains_the_head_and_nothing_else(tmp_path):
    two = tiny_config(train={"steps": 6, "batch_size": 16, "eval_every": 3, "checkpoint_every": 2})
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    train(build_config(two), tmp_path / "a", show_progress=False)
    train(build_config(STAGE_CONFIG), tmp_path / "b", show_progress=False)
    a, b = load_checkpoint(tmp_path / "a" / "checkpoint.pt"), load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    for key, value in a["model"]["extractor"].items():
        assert torch.equal(value, b["model"]["extractor"][key]), key  # the stage's optimizer holds the head alone
    assert not torch.equal(a["model"]["head"]["weight"], b["model"]["head"]["weight"])


def test_resume_in_the_middle_of_a_later_stage_is_exact(tmp_path, monkeypatch):
    config = build_config(STAGE_CONFIG)
    (tmp_path / "ref").mkdir()
    reference = train(config, tmp_path / "ref", show_progress=False)
    from da.errors import Interrupted

    run_dir = tmp_path / "stopped"
    run_dir.mkdir()
    stop_at(monkeypatch, 3, stage="head_on_target")
    with pytest.raises(Interrupted):
        train(config, run_dir, show_progress=False)
    assert load_checkpoint(run_dir / "checkpoint.pt")["stage_index"] == 2
    monkeypatch.undo()
    resumed = train(config, run_dir, resume=True, show_progress=False)
    strip = lambda s: {k: v for k, v in s.items() if k not in TIMING_FIELDS}
    assert strip(resumed) == strip(reference)
    assert load_checkpoint(run_dir / "checkpoint.pt")["stage_state"] == {"seen": 48}


def test_a_stage_trained_adapter_runs_its_stage_in_place_of_adapt(tmp_path):
    (tmp_path / "r").mkdir()
    config = tiny_config(train={"steps": 2, "eval_every": 2})
    config["adapter"] = {"name": "subspace", "dims": 8, "classifier": "linear"}
    summary = train(build_config(config), tmp_path / "r", show_progress=False)
    assert [(s["name"], s["steps"]) for s in summary["stages"]] == [("pretrain", 4), ("subspace", 2)]
    assert summary["hparams"] == {"dims": 8, "classifier": "linear"}


@pytest.mark.parametrize("adapter, stages, message", [
    ({"name": "adda"}, ["pretrain", "adapt"],
     "adapter 'adda' is trained by stage 'adda', which config key stages (pretrain, adapt) does not list; "
     "write stages: [pretrain, adda]"),
    ([{"name": "dann"}, {"name": "mcd"}], None,
     "config key adapter[1]: adapter 'mcd' is trained by stage 'mcd', not a loss, so it cannot join an adapter list"),
    ({"name": "mcd", "num_k": 2}, ["pretrain", {"name": "mcd", "num_k": 3}],
     "config keys adapter.num_k and stages[1].num_k give stage 'mcd' different values; set it in one place"),
    ({"name": "adda", "hiden": 3}, None, "adapter 'adda' (stage 'adda') does not take 'hiden'; did you mean adapter.hidden?"),
])
def test_stage_trained_adapters_refuse_what_cannot_run_in_one_line(adapter, stages, message):
    config = tiny_config()
    config["adapter"] = adapter
    if stages is not None:
        config["stages"] = stages
    with pytest.raises(DAError) as caught:
        build_config(config)
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("adapter, stages", [
    ({"name": "adda"}, ["pretrain", "adapt"]),
    ([{"name": "dann"}, {"name": "subspace"}], None),
])
def test_da_train_refuses_a_stage_trained_adapter_that_cannot_run_before_a_run_folder_exists(
        adapter, stages, write_config, cli, tmp_path):
    config = tiny_config(out_root=str(tmp_path / "runs"))
    config["adapter"] = adapter
    if stages is not None:
        config["stages"] = stages
    code, _, err = cli("train", "-c", write_config(config))
    assert code == 2 and "is trained by stage" in one_line_error(err)
    assert not (tmp_path / "runs").exists()


def test_a_stage_listed_before_the_stage_that_fills_its_slot_is_refused():
    @register_stage("reads_transform")
    class ReadsTransform(Stage):
        needs_slots = ("transform",)

    try:
        config = tiny_config(stages=["pretrain", "reads_transform", "adapt"])
        with pytest.raises(DAError, match=r"stages\[1\]: stage 'reads_transform' needs the model's transform slot, "
                                          r"which no stage before it fills; put subspace before it"):
            build_config(config)
        config["stages"] = ["pretrain", {"name": "subspace", "dims": 4}, "reads_transform"]
        config["train"] = {**config["train"], "steps": 0}
        build_config(config)  # filled first: accepted
    finally:
        STAGES._entries.pop("reads_transform")


def test_a_plugin_adapter_with_the_old_update_interface_is_refused_in_one_line():
    @register_adapter("old_style")
    class OldStyle(Adapter):
        def loss(self, f_s, f_t, **kw):
            return f_s.sum() * 0, {}

        def update(self, model, batch, *, progress, log):
            yield None

    try:
        config = tiny_config()
        config["adapter"] = {"name": "old_style"}
        with pytest.raises(DAError, match=r"adapter 'old_style' defines update\(\), which adapters no longer have: "
                                          r"an adapter is a loss; a method that trains in its own way is a stage"):
            build_config(config)
    finally:
        ADAPTERS._entries.pop("old_style")


@pytest.mark.parametrize("stages, message", [
    (["pretrain", "adapt", "nope"], "stages[2].name: unknown stage 'nope'"),
    (["pretrain", "adapt", "adapt"], "stages lists adapt more than once"),
    ([{"name": "head_on_target", "stepz": 3}], "stage 'head_on_target' does not take 'stepz'"),
    ([{"steps": 3}], "stages[0] must be a stage name or a section with a name"),
    ([], "stages must be a non-empty list"),
])
def test_bad_stage_lists_get_one_line(stages, message, write_config, cli):
    code, _, err = cli("train", "-c", write_config(tiny_config(stages=stages)), "--dry-run")
    assert code == 2 and message in one_line_error(err)


def test_a_stage_that_needs_a_source_model_before_it_is_refused():
    class NeedsSource(HeadOnTarget):
        needs_source_model = True

    if "needs_source" not in STAGES:
        register_stage("needs_source")(NeedsSource)
    with pytest.raises(DAError, match=r"stages\[0\]: stage 'needs_source' needs a model trained on the source first"):
        build_config(tiny_config(stages=["needs_source", "pretrain"]))
    build_config(tiny_config(stages=["pretrain", "needs_source"]))  # after source pretraining: fine
    build_config(tiny_config(stages=["needs_source"], pretrain={"steps": 0, "checkpoint": "x.pt"}))


def test_resuming_with_another_stage_list_is_refused(tmp_path, monkeypatch):
    from da.errors import Interrupted

    run_dir = tmp_path / "r"
    run_dir.mkdir()
    stop_at(monkeypatch, 2, stage="head_on_target")
    with pytest.raises(Interrupted):
        train(build_config(STAGE_CONFIG), run_dir, show_progress=False)
    monkeypatch.undo()
    with pytest.raises(DAError, match="differs from the config its checkpoint was taken with in stages"):
        train(build_config(tiny_config()), run_dir, resume=True, show_progress=False)


def test_the_stage_written_in_docs_stages_md_registers_and_runs(tmp_path):
    import re

    from conftest import ROOT

    text = (ROOT / "docs" / "stages.md").read_text()
    block, _ = re.findall(r"```python\n(.*?)```", text, re.S)
    if "head_entropy" not in STAGES:
        exec(compile(block, "docs/stages.md", "exec"), {"__name__": "docs_stages"})
    config = build_config(tiny_config(stages=["pretrain", "adapt", {"name": "head_entropy", "steps": 3, "batch_size": 8}]))
    (tmp_path / "r").mkdir()
    summary = train(config, tmp_path / "r", show_progress=False)
    assert summary["stages"][-1] == {"name": "head_entropy", "steps": 3}
    with pytest.raises(DAError, match="needs a model trained on the source first"):
        build_config(tiny_config(stages=["head_entropy"]))


def test_the_stage_trained_method_written_in_docs_stages_md_fills_its_slot_and_resumes(tmp_path, monkeypatch):
    import re

    from conftest import ROOT
    from methods_helpers import resumed_equals_uninterrupted

    text = (ROOT / "docs" / "stages.md").read_text()
    _, block = re.findall(r"```python\n(.*?)```", text, re.S)
    exec(compile(block, "docs/stages.md", "exec"), {"__name__": "docs_stages"})
    try:
        config = tiny_config(train={"steps": 4, "eval_every": 2, "extractor": "freeze"})
        config["adapter"] = {"name": "centre", "samples": 40}
        assert [name for name, _ in stage_specs(build_config(config))] == ["pretrain", "centre"]
        resumed_equals_uninterrupted(config, tmp_path, monkeypatch, "centre", 2)
        state = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
        assert state["model"]["transform"]["means"].abs().sum() > 0
    finally:
        STAGES._entries.pop("centre", None)
        ADAPTERS._entries.pop("centre", None)


def test_inv_step_is_transfer_learning_librarys_schedule_per_iteration_whatever_the_run_length():
    from da.train import lr_factor

    assert lr_factor("inv_step", 0.0, 0) == 1.0
    assert lr_factor("inv_step", 0.5, 1000) == pytest.approx(2 ** -0.75)
    assert lr_factor("inv_step", 0.1, 1000) == lr_factor("inv_step", 0.9, 1000)  # the run's length plays no part
    assert lr_factor("inv", 0.5, 1000) == pytest.approx(6 ** -0.75)


def test_the_closing_line_names_the_stages_that_replace_joint_adaptation():
    from da.cli import run_label

    stages = lambda *names: [{"name": n, "steps": 10} for n in names]
    assert run_label({"adapter": "dann", "stages": stages("pretrain", "adapt")}) == "dann"
    assert run_label({"adapter": "subspace", "stages": stages("pretrain", "subspace")}) == "subspace"
    assert run_label({"adapter": "source_only", "stages": stages("pretrain", "shot", "self_train")}) == \
        "source_only + shot, self_train"


def test_train_optimizer_adam_steps_by_the_learning_rate_whatever_the_gradient_scale():
    """Adam's first step moves every parameter by about lr (its update is normalised), SGD's by lr x
    gradient; pretraining keeps SGD when the adaptation stage uses Adam."""
    from da.stages.pretrain import Pretrain
    from da.train.skeleton import make_optimizer

    config = build_config({**tiny_config(), "train": {"optimizer": "adam", "betas": [0.5, 0.999], "lr": 0.01}})
    run = type("FakeRun", (), {"config": config})()
    moved = {}
    for stage in (STAGES.get("adapt")(), Pretrain()):
        layer = torch.nn.Linear(3, 1, bias=False)
        before = layer.weight.detach().clone()
        optimizer, _ = make_optimizer([ParamGroup("layer", layer)], 0.01, stage.settings(run))
        (1000.0 * layer(torch.ones(1, 3))).sum().backward()  # gradient 1000 on each weight
        optimizer.step()
        moved[stage.name] = (before - layer.weight.detach()).abs()
    assert torch.allclose(moved["adapt"], torch.full((1, 3), 0.01), rtol=1e-3)
    assert (moved["pretrain"] > 1.0).all()  # SGD: lr x 1000


def test_pretrain_label_smoothing_keeps_the_source_model_from_full_confidence(tmp_path):
    """With smoothing 0.5 the cross-entropy is smallest at a softmax that is not one-hot, so the
    trained source model is less confident than one trained without smoothing."""
    from da.evaluate import load_run
    from da.train.model import predictions

    confidences = {}
    for smoothing in (0.0, 0.5):
        cfg = {**tiny_config(pretrain={"steps": 60, "batch_size": 16, "lr": 0.05, "label_smoothing": smoothing},
                             train={"steps": 0}), "adapter": {"name": "source_only"}}
        run_dir = tmp_path / str(smoothing)
        run_dir.mkdir()
        train(build_config(cfg), run_dir, show_progress=False)
        model, domains, _ = load_run(run_dir)
        with model.eval_mode():
            logits, _ = predictions(model.predict("source", adapted=False), domains.source_test)
        confidences[smoothing] = logits.softmax(1).max(1).values.mean().item()
    assert confidences[0.5] < confidences[0.0] - 0.05, confidences
