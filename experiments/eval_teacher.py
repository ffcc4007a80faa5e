"""Accuracies of the mean teacher kept in a finished self-training run's last checkpoint.

A ``self_train`` stage with ``teacher: ema`` saves its teacher (the exponential moving average of
the student, Tarvainen & Valpola 2017) in the checkpoint's stage state. This script evaluates that
teacher on the run's splits, beside the student the run reported, to compare the two without
training again (``final_model: teacher`` makes the teacher a run's result).

    python experiments/eval_teacher.py RUN_DIR [RUN_DIR ...]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from da.errors import DAError
from da.evaluate import load_run
from da.stages.teacher import EMATeacher


def teacher_accuracies(run_dir: Path) -> dict[str, float]:
    """The run's model with its saved teacher's weights, evaluated on the run's splits."""
    model, domains, state = load_run(run_dir)
    teacher = (state.get("stage_state") or {}).get("teacher")
    if state["stage"] != "self_train" or teacher is None:
        raise DAError(f"{run_dir}: its last checkpoint is not from a self_train stage with a teacher")
    students = {"extractor": model.extractor, "head": model.head}
    ema = EMATeacher(students)
    ema.load_state_dict(teacher)
    ema.copy_to(students)
    return model.evaluate(domains, adapted=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for run_dir in args.runs:
        try:
            teacher = teacher_accuracies(run_dir)
        except DAError as exc:
            print(f"eval_teacher: error: {exc}", file=sys.stderr)
            return 2
        student = json.loads((run_dir / "summary.json").read_text())
        print(f"{run_dir}: student target_test_acc={student['target_test_acc']:.4f} "
              f"teacher target_test_acc={teacher['target_test_acc']:.4f} "
              f"(source_val {student['source_val_acc']:.4f} / {teacher['source_val_acc']:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
