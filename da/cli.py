"""The ``da`` command: ``da train``, ``da eval``, ``da bench``, ``da validators``, ``da tune``, ``da data``,
``da adapters``, ``da stages``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from da.errors import DAError, Interrupted
from da.run_dir import create_run_dir

#: Written into a run folder that stopped on an error (its message); removed when it resumes.
FAILED = "failed"


def one_line(text: str) -> str:
    """``text`` with control characters (a newline in a user's argument) shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (no usage dump) and exits with 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def cmd_train(args: argparse.Namespace) -> int:
    """``da train``: check the config, then run it (or resume a run) into a new run folder."""
    # Imported here, not at the top, for start-up time: each command loads only the modules it uses.
    from da.composition import load_config, preflight, train
    from da.train.distributed import init_from_env, launched, shutdown
    from da.train.seeding import pick_device

    if args.nproc is not None and not launched() and not args.dry_run:
        return launch_ranks(args)
    if args.resume:
        run_dir = Path(args.resume)
        if args.config or args.set or args.out:
            raise DAError("--resume continues a run with its own config.yaml; drop -c, --set and --out")
        if (run_dir / "summary.json").exists():
            raise DAError(f"run {run_dir} already finished (summary.json exists); nothing to resume")
        config = load_config(run_dir / "config.yaml")
    elif not args.config:
        raise DAError("da train needs -c CONFIG (or --resume RUN_DIR)")
    else:
        config = load_config(args.config, args.set)
    if args.dry_run:
        print(f"config {args.config or args.resume} is valid{dry_run_data_check(config, args.nproc or 1)}")
        return 0
    here = init_from_env()
    try:
        device = pick_device(config.device, here)
        domains = preflight(config, device, here.world_size)  # before a run folder exists
        if not args.resume:
            run_dir = _shared_run_dir(here, args, config)
        if here.main:
            print(f"run folder: {run_dir}", flush=True)
            (run_dir / FAILED).unlink(missing_ok=True)
        try:
            summary = train(config, run_dir, show_progress=not args.quiet and here.main, resume=bool(args.resume),
                            domains=domains)
        except Interrupted:
            raise
        except DAError as exc:  # the folder says so; its last checkpoint, if any, is kept
            if here.main:
                (run_dir / FAILED).write_text(one_line(str(exc)) + "\n")
            raise
        here.barrier()  # every rank leaves the group together, once rank 0 has written summary.json
    finally:
        shutdown()
    if here.main:
        print(f"{run_label(summary)}: target_test_acc={summary['target_test_acc']:.4f} "
              f"source_test_acc={summary['source_test_acc']:.4f} wall_s={summary['wall_s']:.0f} "
              f"train_imgs_per_s={summary['train_imgs_per_s']:.0f} -> {run_dir}")
    return 0


def run_label(summary: dict) -> str:
    """What the closing line calls the run: the adapter, and the stages after pretraining when they
    are not the adapter's own stage alone (shot_self_training.yaml: "source_only + shot, self_train"; adda.yaml: "adda")."""
    later = [s["name"] for s in summary.get("stages", []) if s["name"] != "pretrain"]
    return summary["adapter"] if later in ([], ["adapt"], [summary["adapter"]]) else f"{summary['adapter']} + {', '.join(later)}"


def dry_run_data_check(config, world_size: int) -> str:
    """What ``--dry-run`` adds about the data: its sizes checked, or why they could not be."""
    # Imported here, not at the top, for start-up time: each command loads only the modules it uses.
    import torch

    from da.composition import preflight
    from da.data.dataset_entry import dataset_spec
    from da.data.dataset_options import show_options

    sources = config.data.source if isinstance(config.data.source, list) else [config.data.source]
    named = [dataset_spec(v) for v in (*sources, config.data.target) if isinstance(v, str) or "name" in v]
    generated = [entry.name + (f" ({show_options(options)})" if options else "") for entry, options in named
                 if entry.generated]
    if generated:  # a dry run builds nothing: a generated domain's first build takes up to a minute
        return f" (data not checked: {', '.join(generated)} is generated and cached on the first run)"
    try:
        domains = preflight(config, torch.device("cpu"), world_size)
    except DAError as exc:
        if "is not under" in str(exc) or "does not exist" in str(exc):  # data absent here: the config may still be right
            return f" (data not checked: {one_line(str(exc)).split(';')[0]})"
        raise
    given = [f"{entry.name} ({show_options(options)})" for entry, options in named if options]
    shift = f"; {domains.label_sets.describe()}" if domains.setting != "closed" else ""
    return f" (batch and split sizes checked against the data{': ' + ', '.join(given) if given else ''}{shift})"


def _shared_run_dir(here, args: argparse.Namespace, config) -> Path:
    """The new run folder, created by rank 0 and told to the other ranks (or rank 0's error)."""
    outcome: Path | DAError | None = None
    if here.main:
        try:
            outcome = create_run_dir(args.out, config.out_root, config.name)
        except DAError as exc:
            outcome = exc
    outcome = here.broadcast(outcome)
    if isinstance(outcome, DAError):
        raise outcome
    return outcome


def launch_ranks(args: argparse.Namespace) -> int:
    """``da train --nproc N``: the config checked here, then the same command under torchrun."""
    # Imported here, not at the top, for start-up time: each command loads only the modules it uses.
    from da.composition import load_config
    from da.train.launch import launch_ranks as launch

    if args.nproc < 1:
        raise DAError(f"--nproc must be at least 1, got {args.nproc}")
    if args.config:  # a bad config is one line from this process, before any rank starts
        load_config(args.config, args.set)
    argv = ["train", *(["-c", args.config] if args.config else []), *(x for kv in args.set for x in ("--set", kv)),
            *(["--out", args.out] if args.out else []), *(["--resume", args.resume] if args.resume else []),
            *(["-q"] if args.quiet else []), *(["--dry-run"] if args.dry_run else [])]
    return launch(argv, args.nproc)


def cmd_eval(args: argparse.Namespace) -> int:
    """``da eval``: a run's accuracies recomputed from a checkpoint, compared with its summary.json."""
    # Imported here, not at the top, for start-up time: each command loads only the modules it uses.
    from da.evaluate import evaluate_run

    run_dir = Path(args.run_dir)
    result = evaluate_run(run_dir, Path(args.checkpoint) if args.checkpoint else None)
    print(json.dumps(result))
    summary_path = run_dir / "summary.json"
    if args.checkpoint is None and summary_path.exists():
        try:
            summary = json.loads(summary_path.read_text())
        except ValueError:
            raise DAError(f"{summary_path} is truncated or not JSON; the accuracies above come from the checkpoint") from None
        keys = ("source_val_acc", "source_test_acc", "target_test_acc")
        differ = [k for k in keys if abs(summary[k] - result[k]) > 1e-9]
        if differ:
            print(f"differs from summary.json in {', '.join(differ)}", file=sys.stderr)
            return 1
        print("matches summary.json")
    return 0


def cmd_adapters(args: argparse.Namespace) -> int:
    """``da adapters``: the registered adapters, one line each (plugins' load errors as warnings)."""
    # Imported here, not at the top, for start-up time: each command loads only the modules it uses.
    import da.adapters  # noqa: F401  (registers the built-in adapters)
    from da.adapters.base import summary_line, trained_by_stage
    from da.registry import ADAPTERS

    entries = [(name, summary_line(cls) + (f" [stage {cls.stage}]" if trained_by_stage(cls) else ""))
               for name, cls in ADAPTERS.items()]
    return print_entries(entries, ADAPTERS.plugin_errors)


def cmd_stages(args: argparse.Namespace) -> int:
    """``da stages``: the registered stages, one line each (plugins' load errors as warnings)."""
    # Imported here, not at the top, for start-up time: each command loads only the modules it uses.
    import da.stages  # noqa: F401  (registers the built-in stages)
    from da.adapters.base import summary_line
    from da.registry import STAGES

    return print_entries([(name, summary_line(cls)) for name, cls in STAGES.items()], STAGES.plugin_errors)


def print_entries(entries: list[tuple[str, str]], plugin_errors: list[str]) -> int:
    """One line per registry entry (name, description), then any plugin that failed to load."""
    width = max(len(name) for name, _ in entries)
    for name, line in entries:
        print(f"{name:<{width}}  {line}")
    for message in plugin_errors:
        print(f"warning: {message}", file=sys.stderr)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``da bench``: plan a benchmark's runs, run them (locally or on Ray) and write its report."""
    # Imported here, not at the top, for start-up time: each command loads only the modules it uses.
    from da.bench.launch import PerRun
    from da.bench.plan import load_bench_config, narrow, parse_grid_flags, widen
    from da.bench.run import list_runs, run_bench

    grid_adapters = [a.strip() for a in args.adapters.split(",") if a.strip()] if args.adapters else None
    whole = load_bench_config(Path(args.config), parse_grid_flags(args.grid), grid_adapters)
    bench = narrow(whole, args.seeds, args.adapters, args.directions)
    whole = widen(whole, bench)
    if args.jobs < 1:
        raise DAError(f"--jobs must be at least 1, got {args.jobs}")
    per_run = PerRun(args.nproc_per_run, args.gpus_per_run)
    per_run.check(args.launcher, args.jobs)
    out = Path(args.out) if args.out else Path(bench.out_root) / bench.name
    if args.dry_run:
        list_runs(bench, out, echo=lambda line: print(line, flush=True), whole=whole)
        return 0
    run_bench(bench, out, args.launcher, args.jobs, args.address, echo=lambda line: print(line, flush=True), whole=whole,
              per_run=per_run)
    return 0


def cmd_validators(args: argparse.Namespace) -> int:
    """``da validators``: how well each validator chooses, over finished runs or benchmarks."""
    # Imported here, not at the top, for start-up time: each command loads only the modules it uses.
    from da.bench.validator_report import report

    chosen = [v.strip() for v in args.validators.split(",") if v.strip()] if args.validators else None
    report([Path(p) for p in args.paths], Path(args.out) if args.out else None, chosen,
           echo=lambda line: print(line, flush=True))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    """``da tune``: a seeded, resumable Optuna search whose objective is a validator; then, optionally,
    its best config on other tasks."""
    # Imported here, not at the top, for start-up time: each command loads only the modules it uses.
    from da.bench.tune import check_objective, report_on, tune

    check_objective(args.objective)
    if args.launcher == "local" and args.address:
        raise DAError("--address names a Ray cluster: add --launcher ray")
    seeds = [int(s) for s in args.report_seeds.split(",")] if args.report_seeds else [0, 1, 2]
    directions = [d.strip() for d in args.report_on.split(",") if d.strip()] if args.report_on else []
    out = Path(args.out) if args.out else Path("runs") / "tune" / f"{Path(args.config).stem}-{args.objective}"
    tune(args.config, args.set, args.trials, args.objective, out, args.space, args.sampler, args.seed, args.pruner,
         echo=lambda line: print(line, flush=True), launcher=args.launcher,
         jobs=args.jobs if args.launcher == "ray" else 1, address=args.address)
    if directions:
        results = report_on(out, directions, seeds, args.jobs, echo=lambda line: print(line, flush=True),
                            sets=args.report_set)
        print(f"best.yaml on {', '.join(directions)}: {results}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """``da data``: what an image folder, an image list or a config's domains hold."""
    # Imported here, not at the top, for start-up time: each command loads only the modules it uses.
    from da.composition import load_config
    from da.data.describe import describe_path

    path = Path(args.path)
    config = None
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        config = load_config(path)  # a config's names and settings checked against the registries, as da train checks them
    bad = describe_path(path, echo=lambda line: print(line, flush=True))
    if config is not None and not bad:
        print_label_sets(config)
    return 1 if bad else 0


def print_label_sets(config) -> None:
    """``da data CONFIG``: the shared and private classes, when a domain lists its classes or a setting is set."""
    specs = [v for v in (config.data.source, config.data.target) if not isinstance(v, list)]
    if config.data.setting is None and not any(isinstance(v, dict) and "classes" in v for v in specs):
        return
    # Imported here, not at the top, for start-up time: each command loads only the modules it uses.
    import torch

    from da.domains import load_domains

    sets = load_domains(config.data, torch.device("cpu"), config.model).label_sets
    print(f"label sets: {sets.describe()}")
    for side in ("shared", "source_private", "target_private"):
        print(f"  {side.replace('_', '-')}: {', '.join(getattr(sets, side)) or '-'}")


def add_selection_commands(sub: argparse._SubParsersAction) -> None:
    """``da validators`` and ``da tune``: choosing without target labels."""
    p = sub.add_parser("validators", help="grade the validators on finished runs: correlation with target accuracy, picks")
    p.add_argument("paths", nargs="+", metavar="PATH", help="run folders or benchmark folders (searched recursively)")
    p.add_argument("--validators", help="comma-separated subset (default: every one the runs scored)")
    p.add_argument("--out", help="folder for validators.md / .csv / .png (default: the folder given, or the common parent)")
    p.set_defaults(func=cmd_validators)
    p = sub.add_parser("tune", help="search hyperparameters on Optuna with a validator as the objective")
    p.add_argument("-c", "--config", required=True, help="the config to tune, e.g. configs/mnist_usps/dann.yaml")
    p.add_argument("--trials", type=int, required=True, help="trials to finish (complete or pruned)")
    p.add_argument("--objective", required=True, help="the validator to maximise (never target accuracy), e.g. im")
    p.add_argument("--out", help="search folder; rerunning into it resumes (default: runs/tune/<config>-<objective>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value (repeatable)")
    p.add_argument("--space", action="append", default=[], metavar="KEY=SPEC",
                   help="add or replace a range, e.g. adapter.weight=log:0.1:10, train.lr=log:1e-3:0.05, "
                        "adapter.hidden=choice:256,1024 (default: what the adapter and stages declare)")
    p.add_argument("--sampler", choices=("tpe", "random"), default="tpe", help="Optuna sampler (seeded)")
    p.add_argument("--seed", type=int, default=0, help="the search's seed (the runs keep the config's seed)")
    p.add_argument("--pruner", choices=("median", "none"), default="median", help="stop trials below the median early")
    p.add_argument("--report-on", metavar="DIRECTIONS", help="then run best.yaml on these tasks, e.g. 'mnist->usps'")
    p.add_argument("--report-seeds", metavar="SEEDS", help="seeds of --report-on (default 0,1,2)")
    p.add_argument("--report-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a value of best.yaml for --report-on (repeatable), e.g. train.steps=3600")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at once: trials with --launcher ray, and the runs of --report-on")
    p.add_argument("--launcher", choices=("local", "ray"), default="local",
                   help="where trials run: here one after another, or on Ray Tune (--jobs at once)")
    p.add_argument("--address", help="Ray cluster address for --launcher ray (default: start a local Ray)")
    p.set_defaults(func=cmd_tune)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="da", description="Domain adaptation experiments.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    p = sub.add_parser("train", help="run one adaptation experiment")
    p.add_argument("-c", "--config", help="YAML config file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.steps=500 (repeatable)")
    p.add_argument("--out", help="run folder to create (must not exist); default: <out_root>/<name>")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last checkpoint")
    p.add_argument("--dry-run", action="store_true", help="validate the config and stop")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="run on N processes of this machine with torch.distributed (starts torchrun); several "
                        "machines: torchrun --nnodes ... -m da.cli train ...")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("eval", help="recompute a run's accuracies from its checkpoint")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--checkpoint", help="a checkpoint file (default: RUN_DIR/checkpoint.pt)")
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("bench", help="run adapters x directions x seeds and tabulate the results")
    p.add_argument("-c", "--config", required=True, help="benchmark YAML, e.g. configs/benchmarks/mnist_usps.yaml")
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1 (default: the benchmark's)")
    p.add_argument("--adapters", help="comma-separated subset of the benchmark's adapters")
    p.add_argument("--directions", help="comma-separated, quoted in a shell, e.g. 'mnist->usps,usps->mnist'")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="sweep a config value over these values (repeatable: every combination), for the "
                        "--adapters given or every adapter, e.g. --grid adapter.weight=0.3,1,3")
    p.add_argument("--out", help="benchmark folder; rerunning into it skips finished runs (default: <out_root>/<name>)")
    p.add_argument("--launcher", choices=("local", "ray"), default="local", help="where runs execute")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (local processes, or local Ray CPUs)")
    p.add_argument("--address", help="Ray cluster address for --launcher ray (default: start a local Ray)")
    p.add_argument("--nproc-per-run", type=int, default=1, metavar="N",
                   help="processes per run: each run is one DDP run of N ranks under torchrun (default 1)")
    p.add_argument("--gpus-per-run", type=int, default=0, metavar="G",
                   help="with --launcher ray: GPUs Ray reserves for each run, one rank per GPU (default 0)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the benchmark and list its runs, each done, to resume or to run; run nothing")
    p.set_defaults(func=cmd_bench)
    add_selection_commands(sub)
    p = sub.add_parser("data", help="describe an image folder, an image list or a config's domains before training")
    p.add_argument("path", metavar="PATH", help="a folder (DIR/<class>/<image>, or a folder of such domains), "
                                                "a 'path label' list file, or a config file")
    p.set_defaults(func=cmd_data)
    p = sub.add_parser("adapters", help="list the registered adapters (losses, and methods trained by a stage)")
    p.set_defaults(func=cmd_adapters)
    p = sub.add_parser("stages", help="list the registered stages (ways of training)")
    p.set_defaults(func=cmd_stages)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DAError as exc:
        print(f"da: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("da: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
