"""Multi-source adaptation: data.source as a list, a batch from each source, one adapter per source
or one on the pooled sources, and the leave-one-domain-out benchmark's plan."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from da.adapters.per_source import PerSource
from da.bench.plan import load_bench_config, parse_direction, plan_runs
from da.data.domain import DomainData, Split
from da.data.multi_source import pool
from da.data import register_dataset
from da.registry import DATASETS
from tests.conftest import ROOT, tiny_config

DOMAINS = ("mnist", "mnist_m", "syndigits", "usps", "optdigits")


def _tiny(name: str, channels: int, classes: int, shift: float, n: int = 96):
    def make(root: Path, download: bool, role: str) -> DomainData:
        g = torch.Generator().manual_seed(hash(name) % 1000)
        patterns = torch.rand(classes, channels, 28, 28, generator=g) * 2 - 1
        split = lambda m: Split((patterns[torch.arange(m) % classes] * 0.8 + shift
                                 + 0.3 * torch.randn(m, channels, 28, 28, generator=g)).clamp(-1, 1),
                                torch.arange(m) % classes)
        return DomainData(name, split(n), split(n // 2), classes)
    return make


for _name, _channels, _classes, _shift in (("ms_grey", 1, 3, 0.0), ("ms_colour", 3, 3, 0.2),
                                            ("ms_target", 3, 3, -0.2), ("ms_two", 1, 2, 0.0)):
    if _name not in DATASETS:
        register_dataset(_name)(_tiny(_name, _channels, _classes, _shift))


def multi_config(tmp_path: Path, **train) -> dict:
    return tiny_config(data={"source": ["ms_grey", "ms_colour"], "target": "ms_target", "source_val_size": 24},
                       train=train, out_root=str(tmp_path / "runs"))


def test_pooled_sources_keep_their_origin_and_share_one_format():
    grey, colour = (DATASETS.get(n).load(Path("."), "source") for n in ("ms_grey", "ms_colour"))
    pooled = pool([grey, colour])
    assert pooled.train.input_shape == (3, 28, 28) and len(pooled.train) == 192
    assert torch.equal(pooled.train.x[:96, 1], grey.train.x[:, 0])
    assert pooled.train.part.tolist() == [0] * 96 + [1] * 96 and pooled.name == "ms_grey+ms_colour"
    sub = pooled.train.subset(torch.tensor([0, 100, 5]))
    assert sub.part.tolist() == [0, 1, 0] and sub.hide_labels().part.tolist() == [0, 1, 0]


def test_a_batch_holds_batch_size_images_from_each_source_and_resumes_exactly():
    pooled = pool([DATASETS.get(n).load(Path("."), "source") for n in ("ms_grey", "ms_colour")])
    sampler = pooled.train.sampler(8, torch.Generator().manual_seed(0))
    x, y = sampler.next()
    assert x.shape == (16, 3, 28, 28)
    first_rows = [int((pooled.train.x == row).flatten(1).all(1).nonzero()[0]) for row in x]
    assert all(i < 96 for i in first_rows[:8]) and all(i >= 96 for i in first_rows[8:])
    for _ in range(20):  # past an epoch of each source
        sampler.next()
    state = sampler.state_dict()
    expected = [sampler.next() for _ in range(15)]
    resumed = pooled.train.sampler(8, torch.Generator().manual_seed(99))
    resumed.load_state_dict(state)
    for (xe, ye), (xr, yr) in zip(expected, (resumed.next() for _ in range(15))):
        assert torch.equal(xe, xr) and torch.equal(ye, yr)


@pytest.mark.parametrize("mode", ["per_source", "pooled"])
def test_multi_source_runs_with_one_adapter_per_source_or_one_pooled(cli, write_config, tmp_path, mode):
    cfg = multi_config(tmp_path, multi_source=mode)
    code, _, err = cli("train", "-c", write_config(cfg), "--quiet", "--out", tmp_path / "run")
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert 0 <= summary["target_test_acc"] <= 1
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"]["adapter"]
    copies = {key.split(".")[1] for key in state if key.startswith("copies.")}
    assert copies == ({"0", "1"} if mode == "per_source" else set())


def test_per_source_averages_each_sources_loss_against_the_target():
    from da.adapters.dann import DANN

    torch.manual_seed(0)
    adapter = PerSource(["a", "b"], lambda: DANN(feature_dim=4, hidden=8))
    f_s, f_t = torch.randn(6, 4, requires_grad=True), torch.randn(3, 4, requires_grad=True)
    loss, _ = adapter.loss(f_s, f_t, logits_s=torch.randn(6, 2), logits_t=torch.randn(3, 2),
                           y_s=torch.zeros(6, dtype=torch.long), progress=0.5)
    parts = [a.loss(f, f_t, logits_s=torch.randn(3, 2), logits_t=torch.randn(3, 2), y_s=torch.zeros(3, dtype=torch.long),
                    progress=0.5)[0] for a, f in zip(adapter.copies, f_s.chunk(2))]
    assert torch.allclose(loss, (parts[0] + parts[1]) / 2)
    loss.backward()
    assert f_s.grad[:3].abs().sum() > 0 and f_s.grad[3:].abs().sum() > 0 and f_t.grad.abs().sum() > 0


@pytest.mark.parametrize("source, target, names", [(["ms_grey", "ms_two"], "ms_target", "ms_two has 2 classes but ms_grey has 3"),
                                                   (["ms_grey", "ms_colour"], "ms_two", "has 3 classes but target ms_two has 2")])
def test_sources_with_another_class_set_get_one_line(cli, write_config, tmp_path, source, target, names):
    cfg = tiny_config(data={"source": source, "target": target, "source_val_size": 24}, out_root=str(tmp_path / "runs"))
    code, out, err = cli("train", "-c", write_config(cfg), "--quiet")
    assert code == 2 and names in err and len(err.strip().splitlines()) == 1, err


def test_a_source_list_with_a_repeat_gets_one_line(cli, write_config, tmp_path):
    cfg = tiny_config(data={"source": ["ms_grey", "ms_grey"], "target": "ms_target"}, out_root=str(tmp_path / "runs"))
    code, _, err = cli("train", "-c", write_config(cfg), "--dry-run")
    assert code == 2 and "list of distinct names" in err and len(err.strip().splitlines()) == 1, err


def test_leave_one_out_benchmark_lists_the_right_runs(cli, tmp_path):
    path = ROOT / "configs" / "benchmarks" / "digits_multi_source.yaml"
    code, out, err = cli("bench", "-c", path, "--dry-run", "--out", tmp_path / "bench")
    assert code == 0, err
    runs = [r for r in plan_runs(load_bench_config(path)) if r.adapter != "pretrain"]
    assert len(runs) + out.count(" pretrain seed ") == len(out.strip().splitlines()) - 1
    by_adapter = Counter(r.adapter for r in runs)
    assert by_adapter == {"source_only": 25 * 3, "dann_pooled": 5 * 3, "dann_multi": 5 * 3, "target_only": 5 * 3}
    for run in runs:
        source, target = parse_direction(run.direction)
        cfg = run.config
        if "+" in source:  # a leave-one-out direction: the other four domains are the sources
            assert sorted(cfg["data"]["source"] if run.adapter != "target_only" else [target]) == \
                (sorted(set(DOMAINS) - {target}) if run.adapter != "target_only" else [target])
            assert run.adapter != "dann_multi" or cfg["train"]["multi_source"] == "per_source"
            assert run.adapter != "dann_pooled" or cfg["train"]["multi_source"] == "pooled"
        else:  # single sources: source_only only
            assert run.adapter == "source_only" and cfg["data"]["source"] == source
        assert f"{run.direction} {run.adapter} seed {run.seed}: to run" in out
    targets = Counter(parse_direction(r.direction)[1] for r in runs if r.adapter == "source_only" and r.seed == 0)
    assert targets == {d: 5 for d in DOMAINS}  # four single sources and the pooled four, per target


def test_a_batch_larger_than_the_smallest_source_is_refused_before_a_run_folder(cli, write_config, tmp_path):
    cfg = multi_config(tmp_path, batch_size=90)  # the pool has 168 training images, each source about 84
    code, _, err = cli("train", "-c", write_config(cfg), "--quiet", "--out", tmp_path / "run")
    assert code == 2 and "(the smallest source)" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()
