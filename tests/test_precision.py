"""Mixed precision (``train.precision``) and compilation (``train.compile``): every adapter trains a
few steps under bf16 autocast on CPU with finite losses, the forward really runs in bf16, fp16 runs
with its gradient scaler (resumed exactly), and both settings are recorded in summary.json."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import open_set_source, stopped_then_resumed, tiny_config
from da.composition import build_config, train
from da.registry import ADAPTERS
from da.train import TIMING_FIELDS

import da.adapters  # noqa: F401
from da.adapters.base import trained_by_stage


def adapter_names() -> list[str]:
    return [name for name, cls in ADAPTERS.items() if not trained_by_stage(cls)]


def config_for(name: str, precision: str, **train_kw) -> dict:
    cfg = tiny_config(model={"bottleneck": 16}, pretrain={"steps": 2, "batch_size": 16},
                      train={"steps": 3, "batch_size": 16, "eval_every": 3, "log_every": 1, "precision": precision,
                             **train_kw})
    cfg["adapter"] = {"name": name}
    cfg["data"]["source"] = open_set_source(name, cfg["data"]["source"])
    return cfg


@pytest.mark.parametrize("name", adapter_names())
def test_every_adapter_trains_under_bf16_autocast_with_finite_losses(name, tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    summary = train(build_config(config_for(name, "bf16")), run_dir, show_progress=False)  # a non-finite loss raises
    assert summary["precision"] == "bf16" and summary["compile"] is False
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb")).Reload()
    losses = [e.value for e in events.Scalars("loss/total")]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)


def test_bf16_runs_the_forward_in_bf16_and_the_adapter_loss_in_float32(tmp_path, monkeypatch):
    seen: dict[str, torch.dtype] = {}
    from da.adapters.mmd import MMD

    real_loss = MMD.loss

    def loss(self, f_s, f_t, **kw):
        seen["adapter_input"] = f_s.dtype
        return real_loss(self, f_s, f_t, **kw)

    monkeypatch.setattr(MMD, "loss", loss)
    config = build_config(config_for("mmd", "bf16"))
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    from da.composition import model as model_module

    real_build = model_module.build_model

    def build(*args, **kwargs):
        m = real_build(*args, **kwargs)
        def record(mod, inp, out):
            seen.setdefault("head_output", out.dtype)

        m.head.register_forward_hook(record)
        return m

    monkeypatch.setattr("da.composition.driver.build_model", build)
    train(config, run_dir, show_progress=False)
    assert seen["head_output"] == torch.bfloat16  # the forward ran under autocast
    assert seen["adapter_input"] == torch.float32  # kernels computed in float32


def test_fp16_with_its_gradient_scaler_resumes_exactly(tmp_path, monkeypatch):
    config = build_config(config_for("dann", "fp16", steps=6, checkpoint_every=2))
    (tmp_path / "ref").mkdir()
    reference = train(config, tmp_path / "ref", show_progress=False)
    assert reference["precision"] == "fp16"
    resumed = stopped_then_resumed(config, tmp_path / "stopped", monkeypatch, 3)
    assert resumed == {k: v for k, v in reference.items() if k not in TIMING_FIELDS}


@pytest.mark.slow
def test_compiled_extractor_and_head_train_and_keep_their_checkpoint_keys(tmp_path):
    from da.checkpoint import load_checkpoint

    run_dir = tmp_path / "r"
    run_dir.mkdir()
    summary = train(build_config(config_for("dann", "fp32", compile=True)), run_dir, show_progress=False)
    assert summary["compile"] is True
    keys = load_checkpoint(run_dir / "checkpoint.pt")["model"]["extractor"].keys()
    assert not any("_orig_mod" in k for k in keys)


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_the_device_has_it_and_summary_says_which_ran(tmp_path, monkeypatch, native):
    from da.train import precision

    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    summary = train(build_config(config_for("dann", "auto")), run_dir, show_progress=False)
    assert summary["precision"] == ("bf16" if native else "fp32")
    assert precision.Precision("auto", torch.device("cpu")).dtype == (torch.bfloat16 if native else None)
    assert precision.resolve("fp16", torch.device("cpu")) == "fp16"  # an explicit choice is kept
