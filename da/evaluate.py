"""`da eval`: recompute a run's accuracies from one of its checkpoints."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from da.checkpoint import load_checkpoint
from da.config import load_config
from da.domains import load_domains
from da.errors import DAError
from da.train import build_model, pick_device, seed_everything


def evaluate_run(run_dir: Path, checkpoint: Path | None = None) -> dict[str, Any]:
    """Accuracies of ``checkpoint`` (default: the run's last) on the run's splits, and where it stood."""
    if not (run_dir / "config.yaml").is_file():
        raise DAError(f"{run_dir} is not a run folder (no config.yaml); give the folder da train wrote")
    config = load_config(run_dir / "config.yaml")
    state = load_checkpoint(checkpoint or run_dir / "checkpoint.pt")
    seed_everything(config.seed, deterministic=False)
    device = pick_device(config.device)
    domains = load_domains(config.data, device)
    model = build_model(config, domains, device)
    model.load(state)
    accs = model.evaluate(domains, adapted=state["stage"] == "adapt")
    return {"stage": state["stage"], "step": state["step"], **accs}
