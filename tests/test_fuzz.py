"""Generated configs and command lines thrown at `da train --dry-run`: valid, or one clean error line."""
from __future__ import annotations

import string

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from da.cli import main

KEYS = ["name", "seed", "device", "deterministic", "out_root", "data", "model", "adapter", "pretrain", "train",
        "source", "target", "root", "steps", "lr", "batch_size", "extractor", "backbone", "weight", "hidden",
        "layer", "dims", "inherit", "eval_every", "lr_schedule", "download", "kernel_powers", "estimator"]
NAMES = ["dann", "mmd", "coral", "subspace", "source_only", "synthetic", "mnist", "usps", "lenet", "freeze",
         "finetune", "inv", "cpu", "auto", "logits", "both"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.sampled_from(NAMES), st.text(max_size=12))
keys = st.one_of(st.sampled_from(KEYS), st.text(string.ascii_letters + "._-", min_size=1, max_size=10), st.integers(0, 9))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(keys, inner, max_size=4)), max_leaves=12)
configs = st.dictionaries(keys, values, max_size=6)
broken_yaml = st.text(alphabet=":{}[]-,'\"\n\t #&*!|>%@`abc123", max_size=60)
set_args = st.lists(st.builds(lambda k, v: f"{k}={v}", st.text(string.ascii_letters + "._", max_size=16),
                              st.text(max_size=10)), max_size=3)


def check(capsys, args: list[str]) -> None:
    try:
        code = main(args)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    out, err = capsys.readouterr()
    assert code in (0, 2), (args, code, err)
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in err, err


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=configs, sets=set_args)
def test_generated_configs_validate_or_fail_with_one_line(config, sets, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    check(capsys, ["train", "-c", str(path), "--dry-run", *[x for s in sets for x in ("--set", s)]])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=broken_yaml)
def test_generated_yaml_text_never_gives_a_traceback(text, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    check(capsys, ["train", "-c", str(path), "--dry-run"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=st.lists(st.one_of(st.sampled_from(["train", "eval", "adapters", "-c", "--set", "--out", "--resume",
                                                "--dry-run", "-q", "--checkpoint", "configs/mnist_usps/dann.yaml"]),
                               st.text(max_size=8)), max_size=6))
def test_generated_command_lines_never_give_a_traceback(args, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # nothing a generated --out could create lands in the repository
    if "train" in args and "--dry-run" not in args:
        args = [*args, "--dry-run"]
    if "eval" in args or "--resume" in args:  # these read run folders; generated ones do not exist
        args = [a for a in args if a not in ("eval", "--resume")] or ["adapters"]
    check(capsys, args)
