"""``train``: a run from its config to ``summary.json``, as a list of stages run by one skeleton."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from da.checkpoint import load_checkpoint
from da.composition.config import build_config
from da.composition.model import build_model
from da.composition.preflight import preflight
from da.config import Config, dump_yaml, flat_keys, to_dict
from da.domains import Domains
from da.errors import DAError
from da.composition.stages import build_stage, stage_specs
from da.run_files import write_json, write_text_atomic
from da.run_log import NullLog, ResumePoint, RunLog
from da.stages.base import Stage
from da.train.distributed import Dist, init_from_env
from da.train.model import Model
from da.train.precision import Precision
from da.train.run import Run, stop_on_signals
from da.train.run_state import Throughput
from da.train.seeding import pick_device, seed_everything
from da.train.skeleton import run_stage
from da.train.summary import flat_hparams, make_summary, target_labels_record


def build_stages(config: Config) -> list[Stage]:
    """The run's stages (``da.config.stages.stage_specs``), built with their settings."""
    return [build_stage(name, kwargs) for name, kwargs in stage_specs(config)]


def fill_slots_for_resume(run: Run, upto: int) -> None:
    """Give the model the slots stages ``0..upto`` fill, in their trained shape, before a checkpoint
    taken in stage ``upto`` loads its weights."""
    for stage in run.stages[: upto + 1]:
        stage.fill_slots(run, fresh=False)


def restored_model(config: Config, domains: Domains, device: torch.device, state: dict[str, Any]) -> Model:
    """The model of a checkpoint (``da eval``): built from its config, with the slots its stages had
    filled by then, and the checkpoint's weights."""
    model = build_model(config, domains, device)
    stages = build_stages(config)
    run = Run(config=config, run_dir=Path("."), device=device, domains=domains, model=model, log=NullLog(),
              generator=torch.Generator(), stages=stages)
    fill_slots_for_resume(run, resume_index(stages, state))
    model.load_state_dict(state["model"])
    return model


def resume_index(stages: list[Stage], state: dict[str, Any]) -> int:
    """Where in the stage list a checkpoint was taken (checked against the list the config gives)."""
    index = state.get("stage_index")
    names = [s.name for s in stages]
    if index is None and state["stage"] in names:  # a checkpoint from before stage lists
        index = names.index(state["stage"])
    if index is None or index >= len(stages) or names[index] != state["stage"]:
        raise DAError(f"the checkpoint was taken in stage {state['stage']!r}, which this config's stages "
                      f"({', '.join(names)}) do not hold there; resume with the config the run was started with")
    return index


def train(config: Config, run_dir: Path, show_progress: bool = True, resume: bool = False,
          domains: Domains | None = None,
          on_evaluation: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Run the config's stages into ``run_dir``; with ``resume``, continue from its ``checkpoint.pt``.

    Under torchrun every rank calls it with the same folder; rank 0 alone writes into it and returns
    the summary (the other ranks return an empty dict). ``domains``: the splits ``preflight`` loaded."""
    started = time.perf_counter()
    here = init_from_env()
    state = load_checkpoint(run_dir / "checkpoint.pt") if resume else None
    if state is not None:
        check_same_config(run_dir, config, state)
    if state is None and here.main:
        write_text_atomic(run_dir / "config.yaml", dump_yaml(config))
    seed_everything(config.seed, config.deterministic, config.train.compile)
    device = pick_device(config.device, here)
    if here.on and config.train.unfreeze is not None:
        raise DAError("config key train.unfreeze is not supported with several processes (DDP fixes the trained "
                      "parameters when it starts); drop train.unfreeze or run one process")
    domains = domains if domains is not None else preflight(config, device, here.world_size)
    if domains.target_labelled is not None and here.main:
        write_json(run_dir / "target_labels.json", target_labels_record(config, domains, indices=True))
    model = build_model(config, domains, device)
    prepare_model(model, config, here)
    stages = build_stages(config)
    run = Run(config=config, run_dir=run_dir, device=device, domains=domains, model=model, log=NullLog(),
              generator=torch.Generator().manual_seed(config.seed), stages=stages, throughput=Throughput(started=started),
              dist=here, precision=Precision(config.train.precision, device), on_evaluation=on_evaluation)
    start, resume_at = 0, None
    if state is not None:
        start = resume_index(stages, state)
        resume_at = ResumePoint(state["stage"], state["step"], run.global_offset(start) + state["step"],
                                {s.name: i for i, s in enumerate(stages)})
        fill_slots_for_resume(run, start)  # the slots' shapes before the model, the first part, loads
        run.resume(state, start)
    total = sum(run.stage_steps())
    if here.main:
        run.log = RunLog(run_dir, flat_hparams(config), total, show_progress, resume_at)
    try:
        with stop_on_signals(run):
            for index in range(start, len(stages)):
                run_stage(run, index, state if index == start else None)
        if here.main:
            accuracies = run.evaluations.accuracies
            run.log.scalars({f"hparam/{k}": accuracies[k] for k in ("target_test_acc", "source_test_acc", "source_val_acc")},
                            total)
    finally:
        run.log.close()
    if not here.main:
        return {}
    summary = make_summary(run)
    write_json(run_dir / "summary.json", summary)
    return summary


def check_same_config(run_dir: Path, config: Config, state: dict[str, Any]) -> None:
    """A run resumes with the config its checkpoint was taken with (an edited config.yaml, or a
    checkpoint copied from another run, would silently mix two experiments)."""
    try:
        saved = to_dict(build_config(yaml.safe_load(state["config"])))
    except (DAError, yaml.YAMLError, KeyError, TypeError):
        raise DAError(f"the checkpoint in {run_dir} holds no config this version can read; start a new run") from None
    now = to_dict(config)
    if saved != now:
        a, b = flat_keys(saved), flat_keys(now)
        differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        raise DAError(f"{run_dir / 'config.yaml'} differs from the config its checkpoint was taken with in "
                      f"{', '.join(differ[:6])}{' ...' if len(differ) > 6 else ''}; put config.yaml back as it was to "
                      f"resume, or start a new run with da train -c")


def prepare_model(model: Model, config: Config, here: Dist) -> None:
    """``train.sync_batch_norm`` (several processes) and ``train.compile``, in place."""
    if config.train.sync_batch_norm and here.on:
        if not torch.cuda.is_available():
            raise DAError("config key train.sync_batch_norm needs CUDA GPUs (torch's SyncBatchNorm runs on GPU modules "
                          "only); set it false on CPU, where each rank normalises with its own batch's statistics")
        model.extractor = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model.extractor)
    if config.train.compile:
        model.extractor.compile()
        model.head.compile()
