"""The README's adapter example runs as printed (on the synthetic pair instead of MNIST -> USPS)."""
from __future__ import annotations

import re
import subprocess
import sys

import yaml

from conftest import ROOT, tiny_config


def test_write_your_own_adapter_example_runs_as_pasted(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Write your own adapter"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.splitlines()) < 30
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(out_root=str(tmp_path / "runs"))))
    script = tmp_path / "my_adapters.py"
    script.write_text(code.replace("configs/mnist_usps/source_only.yaml", str(config)))
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert re.search(r"target accuracy \d\.\d{3}", result.stdout)
    summary = yaml.safe_load((tmp_path / "runs" / "mean_match" / "summary.json").read_text())
    assert summary["adapter"] == "mean_match"
    metrics = (tmp_path / "runs" / "mean_match" / "metrics.jsonl").read_text()
    assert metrics  # the run trained and evaluated
