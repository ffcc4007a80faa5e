"""`da eval`: recompute a run's accuracies from one of its checkpoints."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from da.checkpoint import load_checkpoint
from da.composition import load_config
from da.composition.driver import restored_model
from da.domains import Domains, load_domains
from da.errors import DAError
from da.train import Model, pick_device, seed_everything


def load_run(run_dir: Path, checkpoint: Path | None = None) -> tuple[Model, Domains, dict[str, Any]]:
    """A run's model with the weights of ``checkpoint`` (default: its last), its data, and the checkpoint."""
    if not (run_dir / "config.yaml").is_file():
        raise DAError(f"{run_dir} is not a run folder (no config.yaml); give the folder da train wrote")
    config = load_config(run_dir / "config.yaml")
    state = load_checkpoint(checkpoint or run_dir / "checkpoint.pt")
    seed_everything(config.seed, deterministic=False)
    device = pick_device(config.device)
    domains = load_domains(config.data, device, config.model)
    return restored_model(config, domains, device, state), domains, state


def evaluate_run(run_dir: Path, checkpoint: Path | None = None) -> dict[str, Any]:
    """Accuracies of ``checkpoint`` (default: the run's last) on the run's splits, and where it stood."""
    model, domains, state = load_run(run_dir, checkpoint)
    accs = model.evaluate(domains, adapted=state["stage"] != "pretrain")
    return {"stage": state["stage"], "step": state["step"], **accs}
