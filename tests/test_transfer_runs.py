"""The transfer experiments' runs resume as the bench's do (one implementation: da.bench.worker.execute_run)."""
from __future__ import annotations

import sys

import pytest

from conftest import ROOT, tiny_config
from da.errors import DAError

sys.path.insert(0, str(ROOT / "experiments"))
from transfer_runs import Runner  # noqa: E402


def test_runner_skips_a_done_run_even_with_a_default_spelled_out_and_refuses_another_config(tmp_path, capsys):
    runner = Runner(tmp_path, total=3)
    raw = tiny_config(pretrain={"steps": 2}, train={"steps": 2, "eval_every": 2, "checkpoint_every": 2})
    first = runner.run("dann/seed0", raw)
    assert "finished" in capsys.readouterr().out
    # Spelling out one of dann's defaults is the same config: the bench worker's default filling applies here too.
    spelled = {**raw, "adapter": {**raw["adapter"], "gamma": 10.0}}
    again = runner.run("dann/seed0", spelled)
    assert "skipped" in capsys.readouterr().out
    assert again["target_test_acc"] == first["target_test_acc"]
    with pytest.raises(DAError, match="different config"):
        runner.run("dann/seed0", {**raw, "adapter": {**raw["adapter"], "gamma": 5.0}})
