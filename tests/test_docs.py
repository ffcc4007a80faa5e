"""The docs stay true: every `da ...` command in README.md and docs/*.md is checked, and every
python block of docs/adapters.md and docs/add_a_dataset.md runs.

A `da train` command runs with --dry-run appended (its config loads and validates), a `da bench`
command with --dry-run (the benchmark file loads and its runs are listed) into a temporary
folder, `da adapters` as is, `da eval` on a run folder a fixture trains on the synthetic pair.
Run folders the docs name (`runs/dann`) stand for that fixture's run; placeholders in angle
brackets are filled in below. The commands that are not checked, and why, are listed in SKIPPED.
"""
from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, tiny_config

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: Code spans that name a command in prose rather than give one to run.
NAMES = {"da train", "da eval", "da bench", "da adapters", "da data", "da train --resume", "da bench --jobs N",
         "da train --nproc N", "da validators", "da tune"}

#: Commands not checked, with the reason.
SKIPPED = {
    "da data": "`da data` reads a user's image folders; tests/test_image_errors.py checks it on folders it makes",
    "da tune": "a search trains many runs; tests/test_tune.py runs da tune's searches on the synthetic pair",
}

#: Placeholders the docs use, and what stands in for them.
PLACEHOLDERS = {
    "<adapter>": "dann",
    "<the benchmark's seed-0 pretraining checkpoint>": "{run}/checkpoint.pt",
}
#: Words that stand for an argument (a whole argument of the command), and what stands in for them.
PLACEHOLDER_ARGS = {"RUN": "runs/dann", "RUN_DIR": "runs/dann", "N": "2"}


def doc_commands() -> list[tuple[str, str]]:
    """(file name, command) for every `da ...` line of a shell block and every `da ...` code span."""
    found: list[tuple[str, str]] = []
    for path in DOCS:
        text = path.read_text()
        for lang, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S):
            if lang not in ("bash", "sh", "shell", "console", ""):
                continue
            body = body.replace("\\\n", " ")
            for line in body.splitlines():
                command = re.sub(r"\s+#.*$", "", line).strip()
                if command.startswith("da "):
                    found.append((path.name, command))
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        for span in re.findall(r"`([^`]+)`", prose):
            command = " ".join(span.split())
            if command.startswith("da ") and command not in NAMES:
                found.append((path.name, command))
    first: dict[str, str] = {}
    for name, command in found:
        first.setdefault(command, name)
    return sorted((name, command) for command, name in first.items())


COMMANDS = doc_commands()


def test_the_docs_have_commands_to_check():
    names = {name for name, _ in COMMANDS}
    assert {"README.md", "runs.md", "benchmarks.md"} <= names
    assert len(COMMANDS) >= 15


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A run trained on the synthetic pair: what `runs/dann` stands for in the docs."""
    from da.composition import load_config, train

    tmp = tmp_path_factory.mktemp("docs_run")
    cfg = tmp / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(train={"steps": 2, "eval_every": 2, "log_every": 1, "checkpoint_every": 2},
                                              pretrain={"steps": 2})))
    run = tmp / "dann"
    run.mkdir()
    train(load_config(cfg), run, show_progress=False)
    return run


@pytest.fixture(scope="module")
def stopped_run(finished_run, tmp_path_factory) -> Path:
    """A run folder with no summary.json: what `da train --resume runs/dann` resumes."""
    run = tmp_path_factory.mktemp("docs_stopped") / "dann"
    run.mkdir()
    shutil.copy(finished_run / "config.yaml", run / "config.yaml")
    return run


def checked_argv(command: str, run: Path, stopped: Path, tmp: Path) -> list[str]:
    """The argv that checks ``command`` without training: --dry-run appended, folders replaced,
    --nproc dropped (a dry run under torchrun checks the same config, in N interpreters)."""
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value.format(run=run))
    argv = [PLACEHOLDER_ARGS.get(a, a) for a in shlex.split(command)[1:]]
    folder = stopped if "--resume" in argv else run
    argv = [re.sub(r"^runs/dann(?=/|$)", str(folder), a) for a in argv]
    argv = [str(run / "checkpoint.pt") if a == "other.pt" else a for a in argv]
    if "--nproc" in argv:  # the config is what a dry run checks; test_distributed.py starts torchrun itself
        i = argv.index("--nproc")
        del argv[i:i + 2]
    if argv[0] == "train":
        argv.append("--dry-run")
    elif argv[0] == "validators":  # graded on the fixture's run, whatever folder the docs name
        argv = ["validators", str(run), "--out", str(tmp / "validators")]
    elif argv[0] == "bench":
        argv.append("--dry-run")
        if "--out" not in argv:
            argv += ["--out", str(tmp / "bench")]
    return argv


@pytest.mark.parametrize("where,command", COMMANDS, ids=[f"{w}:{c}" for w, c in COMMANDS])
def test_doc_command_runs(where, command, finished_run, stopped_run, tmp_path, cli, monkeypatch):
    subcommand = command.split()[1]
    if f"da {subcommand}" in SKIPPED:
        pytest.skip(SKIPPED[f"da {subcommand}"])
    assert subcommand in ("train", "bench", "adapters", "stages", "eval", "validators"), f"{where}: no check for `{command}`"
    monkeypatch.chdir(ROOT)  # the docs' paths are relative to the repository root
    argv = checked_argv(command, finished_run, stopped_run, tmp_path)
    code, out, err = cli(*argv)
    assert code == 0, f"{where}: `{command}` (checked as da {' '.join(argv)}) exited {code}: {err}"
    if subcommand == "adapters":
        assert "dann" in out and "mmd" in out
    if subcommand == "stages":
        assert "adapt" in out and "mcd" in out
    if subcommand == "eval" and "--checkpoint" not in argv:
        assert "matches summary.json" in out


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def run_page_blocks(page: str, config_path: str, registries: list, tmp_path: Path, monkeypatch) -> int:
    """Run each python block of ``docs/<page>`` as a script, with ``config_path`` replaced by the tiny
    synthetic config and what it registers in ``registries`` dropped afterwards; the number of blocks."""
    blocks = python_blocks(ROOT / "docs" / page)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(out_root=str(tmp_path / "runs"))))
    for registry in registries:
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    monkeypatch.chdir(tmp_path)
    for i, code in enumerate(blocks):
        code = code.replace(config_path, str(config))
        exec(compile(code, f"docs/{page} block {i}", "exec"), {"__name__": "__main__"})
    return len(blocks)


def test_adapters_page_python_blocks_run(tmp_path, monkeypatch, capsys):
    """Each python block of docs/adapters.md runs as printed (as a script: ``__name__ == "__main__"``),
    on the synthetic pair instead of MNIST -> USPS; what it registers is dropped afterwards."""
    from da.registry import ADAPTERS

    assert run_page_blocks("adapters.md", "configs/mnist_usps/source_only.yaml", [ADAPTERS], tmp_path, monkeypatch)
    # the write-your-own example trained with its adapter and printed the accuracy
    assert re.search(r"target accuracy \d\.\d{3}", capsys.readouterr().out)
    summary = yaml.safe_load((tmp_path / "runs" / "mean_match" / "summary.json").read_text())
    assert summary["adapter"] == "mean_match"


def test_add_a_dataset_page_python_blocks_run(tmp_path, monkeypatch, capsys):
    """Each python block of docs/add_a_dataset.md runs as printed (as a script), its run on the tiny
    config's settings instead of MNIST -> USPS's; what it registers is dropped afterwards."""
    from da.registry import BACKBONES, DATASETS

    assert run_page_blocks("add_a_dataset.md", "configs/mnist_usps/dann.yaml", [DATASETS, BACKBONES], tmp_path,
                           monkeypatch) == 4
    # the data set trained a run and printed its accuracy; the folder and the backbone are registered as written
    assert re.search(r"target accuracy \d\.\d{3}", capsys.readouterr().out)
    summary = yaml.safe_load((tmp_path / "runs" / "gratings" / "summary.json").read_text())
    assert summary["source"] == summary["target"] == "gratings" and len(summary["target_test_per_class_acc"]) == 4
    stripes = DATASETS.get("stripes")  # a data set with options: direction (required), noise
    assert [(o.name, o.required) for o in stripes.options] == [("direction", True), ("noise", False)]
    assert stripes.load(tmp_path, "target", kwargs={"direction": "columns"}).name == "stripes/columns/0.3"
    gratings, photos, cnn = DATASETS.get("gratings"), DATASETS.get("my_photos"), BACKBONES.get("small_cnn")
    assert gratings.num_classes == 4 and gratings.description.startswith("Sine gratings")
    assert photos.image_spec == {"folder": "my_photos/train", "test_folder": "my_photos/test"}
    net = cnn.build()
    assert net.out_features == cnn.out_features == 256 and tuple(n for n, _ in net.blocks()) == cnn.block_names


def test_readme_adapter_example_is_the_tested_one():
    """The README's short example is the start of the one docs/adapters.md runs, line for line."""
    readme = python_blocks(ROOT / "README.md")
    tested = "\n".join(python_blocks(ROOT / "docs" / "adapters.md"))
    assert readme
    for block in readme:
        for line in block.splitlines():
            assert line in tested.splitlines(), f"README line not in docs/adapters.md's tested example: {line!r}"


#: Pages other work adds (image data sets; ADDA, MCD, self-training, SHOT): linked before they land.
PAGES_TO_COME = {"datasets.md", "methods.md"}


def heading_anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_between_the_docs_reach_a_page_and_a_heading():
    anchors = {path.resolve(): {heading_anchor(h) for h in re.findall(r"^#+ (.+)$", path.read_text(), re.M)}
               for path in DOCS}
    for path in DOCS:
        prose = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if re.match(r"\w+://", target):
                continue
            file, _, anchor = target.partition("#")
            page = (path.parent / file).resolve() if file else path.resolve()
            if not page.exists() and page.name in PAGES_TO_COME:
                continue
            assert page.exists(), f"{path.name}: link to {target}: no such file"
            if anchor and page.suffix == ".md":
                assert anchor in anchors[page], f"{path.name}: link to {target}: no such heading"
