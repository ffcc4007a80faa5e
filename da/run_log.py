"""What a run writes while it trains: TensorBoard events, metrics.jsonl, and the progress bar."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary
from tqdm.auto import tqdm

from da.run_files import truncate_metrics

#: Metrics shown in TensorBoard's hparams tab (logged as scalars under the same tags).
HPARAM_METRICS = ("hparam/target_test_acc", "hparam/source_test_acc", "hparam/source_val_acc")


@dataclass
class ResumePoint:
    """Where a resumed run picks up: its stage and step, and that step on TensorBoard's axis."""

    stage: str
    step: int
    global_step: int
    #: The run's stage names in order (metrics rows of later stages are dropped too).
    order: dict[str, int] = field(default_factory=lambda: {"pretrain": 0, "adapt": 1})


class RunLog:
    """TensorBoard writer, ``metrics.jsonl`` rows and a tqdm progress bar for one run folder."""

    def __init__(self, run_dir: Path, hparams: dict[str, Any], total_steps: int, show_progress: bool = True,
                 resume: ResumePoint | None = None) -> None:
        self.metrics_path = run_dir / "metrics.jsonl"
        if resume is None:
            self.tb = SummaryWriter(log_dir=str(run_dir / "tb"))
            self._write_hparams(hparams)
        else:  # forget what was logged after the checkpoint: the resumed run logs it again
            self.tb = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=resume.global_step + 1)
            truncate_metrics(self.metrics_path, resume.stage, resume.step, resume.order)
        done = 0 if resume is None else resume.global_step
        self.bar = tqdm(total=total_steps, initial=done, disable=not show_progress, dynamic_ncols=True, mininterval=0.5)
        self._postfix: dict[str, str] = {}

    def _write_hparams(self, hparams: dict[str, Any]) -> None:
        # add_hparams() would open a second events file in a sub-folder; writing the three
        # summaries into this writer keeps one run = one folder in TensorBoard.
        flat = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items()}
        for summary in hparams_summary(flat, {m: math.nan for m in HPARAM_METRICS}):
            self.tb.file_writer.add_summary(summary)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.tb.add_scalar(tag, value, step)

    def progress(self, steps: int = 1, **shown: float) -> None:
        if shown:
            self._postfix.update({k: f"{v:.3g}" for k, v in shown.items()})
            self.bar.set_postfix(self._postfix, refresh=False)
        self.bar.update(steps)

    def describe(self, text: str) -> None:
        self.bar.set_description(text, refresh=False)

    def metrics_row(self, row: dict[str, Any]) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def close(self) -> None:
        self.bar.close()
        self.tb.flush()
        self.tb.close()


class NullLog:
    """What ranks other than 0 log under torch.distributed: nothing (rank 0 writes every file)."""

    def scalars(self, values: dict[str, float], step: int) -> None:
        pass

    def progress(self, steps: int = 1, **shown: float) -> None:
        pass

    def describe(self, text: str) -> None:
        pass

    def metrics_row(self, row: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass
