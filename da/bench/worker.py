"""One run of a sweep, made idempotent: a finished run is skipped, a cut-off one resumed.

Launchers call it as a subprocess (``python -m da.bench.worker OUT SPEC_JSON``), so every run
gets a fresh interpreter whatever starts it: a local pool or a Ray task on another machine.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from da.bench.plan import RunSpec
from da.checkpoint import load_checkpoint
from da.composition import build_config, load_config, train
from da.config import settable_params, to_dict
from da.errors import DAError
from da.registry import ADAPTERS
from da.train.distributed import init_from_env, shutdown

#: Written into a run folder after its summary.json: the sweep skips folders that have it.
DONE = "done"


def resolved_config(spec: RunSpec, out: Path) -> dict[str, Any]:
    """The spec's config with the sweep's output folder filled in (pretraining checkpoints)."""
    text = json.dumps(spec.config).replace("{out}", str(out.resolve()).replace("\\", "/"))
    return json.loads(text)


def execute(spec: RunSpec, out: Path) -> str:
    """Bring the run of ``spec`` to done; returns what happened: finished, resumed, or skipped."""
    return execute_run(out / spec.key, build_config(resolved_config(spec, out)), spec.after)


def execute_run(run_dir: Path, config: Any, after: str | None = None) -> str:
    """Bring the run of ``config`` in ``run_dir`` to done: "skipped" when it is done, "resumed" from
    its last checkpoint when it was cut off, else "finished" from scratch (a folder cut off before
    its first checkpoint has nothing to keep). A DAError when the folder holds a run of another
    config. ``after`` names the pretraining run whose checkpoint the config loads, taken relative
    to the folder above ``run_dir``'s when comparing configs. Shared by ``da bench`` and the
    transfer experiments (experiments/transfer_runs.py)."""
    here = init_from_env()  # under torchrun (--nproc-per-run): rank 0 looks at the folder and tells the others
    try:
        state, error = _state(run_dir, config, after) if here.main else None, None
    except DAError as exc:
        state, error = None, str(exc)
    state, error = here.broadcast((state, error))
    if error:
        raise DAError(error)
    if state == "done":
        if here.main and not (run_dir / DONE).exists():  # killed between summary.json and the marker
            (run_dir / DONE).write_text("")
        return "skipped"
    if state == "to run" and here.main:
        shutil.rmtree(run_dir, ignore_errors=True)  # cut off before its first checkpoint: nothing to keep
        run_dir.mkdir(parents=True)
    here.broadcast(None)  # the folder is ready before any rank starts
    train(config, run_dir, show_progress=False, resume=state == "to resume")
    if here.main:
        (run_dir / DONE).write_text("")
    here.barrier()  # every rank leaves the group together, once rank 0 has marked the run done
    return "resumed" if state == "to resume" else "finished"


def status(spec: RunSpec, out: Path) -> str:
    """What ``execute`` would do with the run of ``spec``, without doing it: "to run", "done",
    "to resume", or "holds another config" (``execute`` would stop with an error)."""
    try:
        return _state(out / spec.key, build_config(resolved_config(spec, out)), spec.after)
    except DAError:
        return "holds another config"


def _state(run_dir: Path, config: Any, after: str | None) -> str:
    """The run folder's state: "to run", "done" or "to resume"; a DAError when it holds a run of another config."""
    if not run_dir.exists():
        return "to run"
    _check_same_config(run_dir, config, after)
    if (run_dir / DONE).exists() or _summary_complete(run_dir):
        return "done"
    try:
        load_checkpoint(run_dir / "checkpoint.pt")
    except DAError:
        return "to run"
    return "to resume"


def _check_same_config(run_dir: Path, config: Any, after: str | None) -> None:
    if not (run_dir / "config.yaml").exists():
        return
    if _comparable(to_dict(load_config(run_dir / "config.yaml")), after) != _comparable(to_dict(config), after):
        raise DAError(f"{run_dir} holds a run made with a different config; delete it or pick another --out")


def _comparable(config: dict[str, Any], after: str | None) -> dict[str, Any]:
    """``config`` with its pretraining checkpoint's path taken relative to the sweep's folder (when it
    is the pretraining run ``after``'s), so a benchmark folder that was moved or renamed still resumes,
    and with the adapters' defaults filled in."""
    tail = f"/{after}/checkpoint.pt"
    checkpoint = str(config["pretrain"].get("checkpoint") or "").replace("\\", "/")
    if after and checkpoint.endswith(tail):
        config["pretrain"]["checkpoint"] = "{out}" + tail
    adapters = config["adapter"] if isinstance(config["adapter"], list) else [config["adapter"]]
    for adapter in adapters:
        _fill_defaults(adapter)
    return config


def _fill_defaults(adapter: dict[str, Any]) -> None:
    """Add the adapter's constructor defaults that ``adapter`` leaves out, so that a config that
    spells out a default (``class_weights: none``) and one that omits it compare equal."""
    try:
        cls = ADAPTERS.get(adapter.get("name"))
    except DAError:
        return
    for name, param in settable_params(cls).items():
        if param.default is not param.empty:
            default = list(param.default) if isinstance(param.default, tuple) else param.default
            adapter.setdefault(name, default)


def _summary_complete(run_dir: Path) -> bool:
    try:
        return "target_test_acc" in json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return False


def main(argv: list[str]) -> int:
    out, spec = Path(argv[0]), RunSpec.from_json(argv[1])
    try:
        print(execute(spec, out))
    except DAError as exc:
        print(f"da: error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
