"""End-to-end runs on the synthetic pair: the run-folder contract, TensorBoard tags, failures."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import one_line_error, open_set_source, tb_tags, tiny_config
from da import Adapter, register_adapter
from da.checkpoint import load_checkpoint
from da.adapters.base import trained_by_stage
from da.composition import build_config, train
from da.registry import ADAPTERS

CONTRACT = ["config.yaml", "summary.json", "metrics.jsonl", "tb", "checkpoint.pt"]
SUMMARY_KEYS = {"adapter", "seed", "steps", "source_test_acc", "target_test_acc", "wall_s", "train_imgs_per_s"}


def test_smoke_run_writes_the_whole_run_contract(write_config, tmp_path, cli):
    out = tmp_path / "run"
    code, stdout, err = cli("train", "-c", write_config(tiny_config()), "--out", out, "-q")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(CONTRACT)
    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["adapter"] == "dann" and summary["steps"] == 6 and summary["train_imgs_per_s"] > 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in rows] == [("pretrain", 4), ("adapt", 3), ("adapt", 6)]
    assert rows[-1]["target_test_acc"] == summary["target_test_acc"]
    confusion = torch.tensor(summary["target_test_confusion"])  # rows: true class; of the final model
    assert confusion.shape == (4, 4) and confusion.sum() == 128  # the synthetic pair: 4 classes, 128 test images
    assert confusion.trace().item() / 128 == pytest.approx(summary["target_test_acc"])
    assert summary["target_test_per_class_acc"] == [round((confusion[i, i] / confusion[i].sum()).item(), 4) for i in range(4)]
    tags, has_hparams = tb_tags(out)
    expected = {"loss/total", "loss/task", "loss/adapter", "adapter/reversal_weight", "adapter/discriminator_acc",
                "adapter/domain_loss", "lr/extractor", "lr/head", "lr/adapter", "acc/source_val", "acc/target_test",
                "acc/source_test", "pretrain/loss", "hparam/target_test_acc"}
    assert expected <= tags, expected - tags
    assert has_hparams
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["step"] == 6 and {"model", "optimizers", "samplers"} <= set(state)
    # The resolved config reruns as it is.
    code, _, err = cli("train", "-c", out / "config.yaml", "--dry-run")
    assert code == 0, err


def test_existing_out_folder_is_never_overwritten(write_config, tmp_path, cli):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    code, _, err = cli("train", "-c", write_config(tiny_config()), "--out", out, "-q")
    assert code == 2
    assert "already exists" in one_line_error(err)
    assert [p.name for p in out.iterdir()] == ["precious.txt"]


def test_runs_started_at_once_get_distinct_folders(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from da.run_dir import create_run_dir

    with ThreadPoolExecutor(8) as pool:
        dirs = list(pool.map(lambda _: create_run_dir(None, str(tmp_path / "runs"), "dann"), range(8)))
    assert len(set(dirs)) == 8 and all(d.is_dir() for d in dirs)
    assert sorted(d.name for d in dirs) == sorted(["dann"] + [f"dann-{i}" for i in range(2, 9)])


class NanAfterFour(Adapter):
    """Test-only: a finite loss for 4 steps, then NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def loss(self, f_s, f_t, **_):
        self.calls += 1
        value = (f_s.mean() - f_t.mean()) ** 2
        return (value * float("nan") if self.calls > 4 else value), {}


@pytest.fixture
def nan_adapter(monkeypatch):
    """Registers NanAfterFour for one test only, leaving the global registry as it was."""
    monkeypatch.setattr(ADAPTERS, "_entries", dict(ADAPTERS._entries))
    register_adapter("test_nan_after_4")(NanAfterFour)


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(write_config, tmp_path, cli, nan_adapter):
    cfg = tiny_config(adapter={"name": "test_nan_after_4"}, train={"steps": 8, "checkpoint_every": 2, "eval_every": 2})
    cfg["adapter"] = {"name": "test_nan_after_4"}
    out = tmp_path / "run"
    code, _, err = cli("train", "-c", write_config(cfg), "--out", out, "-q")
    assert code == 2
    line = one_line_error(err)
    assert "nan at adaptation step 5" in line and "step 4" in line
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4
    assert not (out / "summary.json").exists()


def test_missing_data_offline_says_where_it_looked(write_config, tmp_path, cli, monkeypatch):
    empty = tmp_path / "empty_root"
    empty.mkdir()
    # Without network: the download must fail fast (a proxy on a closed port).
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for download in ("false", "true"):
        cfg = tiny_config(data={"source": "mnist", "target": "usps", "root": str(empty), "source_val_size": 100})
        code, _, err = cli("train", "-c", write_config(cfg), "--set", f"data.download={download}",
                           "--out", tmp_path / f"run_{download}", "-q")
        assert code == 2
        line = one_line_error(err)
        assert f"MNIST is not under {empty}" in line and "DA_DATA_ROOT" in line


def _run(tmp_path, name: str, **sections):
    config = build_config(tiny_config(**sections))
    run_dir = tmp_path / name
    run_dir.mkdir()
    return config, train(config, run_dir, show_progress=False), run_dir


def test_frozen_extractor_stays_bit_identical_and_head_learns(tmp_path):
    pre, _, pre_dir = _run(tmp_path, "pre", pretrain={"steps": 5}, train={"steps": 0})
    before = load_checkpoint(pre_dir / "checkpoint.pt")
    _, summary, run_dir = _run(tmp_path, "frozen", pretrain={"steps": 0, "checkpoint": str(pre_dir / "checkpoint.pt")},
                               train={"extractor": "freeze", "steps": 6})
    after = load_checkpoint(run_dir / "checkpoint.pt")
    for key, value in before["model"]["extractor"].items():
        assert torch.equal(value, after["model"]["extractor"][key]), key
    assert not torch.equal(before["model"]["head"]["weight"], after["model"]["head"]["weight"])
    assert [g for g in after["optimizers"]["main"]["param_groups"]] and len(after["optimizers"]["main"]["param_groups"]) == 2


def test_extractor_lr_multiplier_reaches_its_parameter_group(tmp_path):
    _, _, run_dir = _run(tmp_path, "mult", train={"extractor_lr_mult": 0.1, "lr": 0.02, "lr_schedule": "constant"})
    groups = load_checkpoint(run_dir / "checkpoint.pt")["optimizers"]["main"]["param_groups"]
    assert [g["lr"] for g in groups] == pytest.approx([0.002, 0.02, 0.02])


def test_pretrain_checkpoint_must_fit_the_backbone(write_config, tmp_path, cli):
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint at all")
    cfg = tiny_config(pretrain={"checkpoint": str(bogus)})
    code, _, err = cli("train", "-c", write_config(cfg), "--out", tmp_path / "r", "-q")
    assert code == 2 and "cannot be read" in one_line_error(err)


def test_da_adapters_lists_every_adapter_with_a_description(cli):
    code, out, _ = cli("adapters")
    assert code == 0
    listed = {line.split()[0]: line for line in out.splitlines()}
    for name in ADAPTERS.names():
        assert name in listed and len(listed[name].split()) > 2


@pytest.mark.parametrize("name", ADAPTERS.names())
def test_every_registered_adapter_changes_what_the_loop_trains(name, tmp_path, monkeypatch):
    """Each adapter runs through the one loop, and its part reaches the model: a gradient adapter's
    loss changes the extractor (against the same run with that loss times 0: same draws, same
    steps), a closed-form one maps the two domains' features apart, source_only changes nothing."""
    from da.evaluate import load_run

    adapter = {"name": name, "hidden": 32} if name == "dann" else {"name": name}
    if name == "subspace":
        adapter.update(dims=8, classifier="linear")  # the 1-NN classifier has no steps: test_subspace_head.py
    cfg = tiny_config(train={"steps": 3, "eval_every": 3, "fit_samples": 64})
    cfg["adapter"] = adapter
    cfg["data"]["source"] = open_set_source(name, cfg["data"]["source"])

    def run(folder: str) -> tuple[dict, dict]:
        (tmp_path / folder).mkdir()
        summary = train(build_config(cfg), tmp_path / folder, show_progress=False)
        return summary, load_checkpoint(tmp_path / folder / "checkpoint.pt")["model"]["extractor"]

    summary, extractor = run("with")
    assert summary["adapter"] == name and "pretrain_target_test_acc" in summary
    cls = ADAPTERS.get(name)
    if name == "subspace":  # a closed-form fit in the model's transform slot
        model, domains, _ = load_run(tmp_path / "with")
        with torch.no_grad(), model.eval_mode():
            f = model.features(domains.target_test.images(torch.arange(64)))
            assert not torch.allclose(model.transform(f, "source"), model.transform(f, "target"))
        return
    if trained_by_stage(cls):
        return  # a method that trains in its own way (ADDA, MCD): its own tests check what its sub-steps train
    real = cls.loss

    def zeroed(self, *args, **kwargs):
        loss, scalars = real(self, *args, **kwargs)
        return loss * 0.0, scalars

    monkeypatch.setattr(cls, "loss", zeroed)
    _, without = run("without")
    same = all(torch.equal(extractor[k], without[k]) for k in extractor)
    assert same == (not cls.aligns_by_gradient), \
        f"{name}: the extractor {'ignores' if same else 'depends on'} the adapter's loss"
